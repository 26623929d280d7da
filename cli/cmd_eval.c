/* cmd_eval.c - presight eval CONFIG [key=value ...] (a model over task files, the eval
 * stage) and presight eval rescore PREDICTIONS (the stored outputs, no model). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "comm.h"
#include "config.h"
#include "eval_answer.h"
#include "eval_records.h"
#include "eval_score.h"
#include "eval_stage.h"
#include "runner.h"

static void eval_help(FILE *out) {
    fprintf(out,
            "usage: presight eval CONFIG [key=value ...]\n"
            "       presight eval rescore PREDICTIONS [key=value ...]\n\n"
            "presight eval CONFIG runs the model CONFIG's run trained (run.dir/model.h5, else its newest\n"
            "checkpoint, or eval.checkpoint=FILE) over the task files of eval.tasks (comma-separated,\n"
            "config/tasks/*.cfg) with the tokenizer it was trained with, and writes into eval.out\n"
            "(default run.dir/eval): predictions.jsonl (one line per item, appended as items finish),\n"
            "results.jsonl (per task, subset and metric), config.cfg, metrics.jsonl, final.json.\n"
            "Multiple choice and perplexity are lm-evaluation-harness's log-likelihood rules; VQA items\n"
            "are answered by greedy decoding (eval.max_new_tokens) and parsed. Items are split across\n"
            "MPI ranks with the same results for any number of ranks; an interrupted evaluation\n"
            "resumes, skipping the items already in predictions.jsonl.\n"
            "An adapted model (presight adapt: align or sft) sees each VQA item's picture: its features\n"
            "from eval.features=DIR (default the run's adapt.features), projected and spliced where\n"
            "<image> stands in sft's chat prompt; a language-only model answers from the text\n"
            "(predictions record image_input).\n"
            "  presight eval runs/tiny/config.cfg eval.tasks=config/tasks/piqa.cfg,config/tasks/wikitext.cfg\n"
            "Keys: eval.batch (sequences per forward), eval.items_per_step, eval.limit (items per task),\n"
            "eval.max_new_tokens; eval.align=FEATURES.h5[,...] adds the mutual k-NN alignment of caption\n"
            "features with those encoders' (eval.align_captions, eval.align_k).\n\n"
            "presight eval rescore:\n"
            "Re-scores a stored predictions.jsonl without the model: every generated answer is parsed\n"
            "again with the chosen parser setting, every log-likelihood scored again, and the results\n"
            "(one line per task, subset and metric, with standard errors, parse failures and the\n"
            "provenance of the run) are written to a results file and printed as a table, closed by the\n"
            "category and overall means of the tasks' accuracies (task \"mean\").\n\n"
            "keys:\n"
            "  tiers=123          parser tiers: 1 option letter, 2 whole option text, 3 longest\n"
            "                     contained option text (any subset, e.g. tiers=1)\n"
            "  relaxed=0.05       relative tolerance of the relaxed numeric match\n"
            "  out=PATH           results file (default: results-rescored.jsonl beside PREDICTIONS)\n"
            "  predictions_out=PATH  also write the predictions with the new parsed/tier/correct\n"
            "  bootstrap=1000     bootstrap resamples for perplexity standard errors\n"
            "  seed=1234          their seed\n"
            "The parser is %s.\n",
            EVAL_PARSER_VERSION);
}

typedef struct rescore_args {
    const char *predictions, *out, *predictions_out;
    eval_score_opts opts;
    char default_out[4096];
} rescore_args;

static int parse_double(const char *key, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "presight eval rescore: %s=%s: expected a number in [%g, %g]\n", key, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_rescore_args(int argc, char **argv, rescore_args *a) {
    memset(a, 0, sizeof *a);
    eval_score_opts_default(&a->opts);
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            if (a->predictions) {
                fprintf(stderr, "presight eval rescore: one predictions file, got '%s' too\n", argv[i]);
                return -1;
            }
            a->predictions = argv[i];
            continue;
        }
        *eq = 0;
        const char *key = argv[i], *v = eq + 1;
        double x;
        if (!strcmp(key, "tiers")) {
            int t = eval_tiers_parse(v);
            if (t < 0) {
                fprintf(stderr, "presight eval rescore: tiers=%s: expected digits from 1, 2, 3 (e.g. 123, 1, 13)\n", v);
                return -1;
            }
            a->opts.tiers = (unsigned)t;
        } else if (!strcmp(key, "relaxed")) {
            if (parse_double(key, v, 0, 1, &a->opts.relaxed_tolerance)) return -1;
        } else if (!strcmp(key, "bootstrap")) {
            if (parse_double(key, v, 2, 1e7, &x)) return -1;
            a->opts.bootstrap_iters = (int)x;
        } else if (!strcmp(key, "seed")) {
            if (parse_double(key, v, 0, 9007199254740992.0, &x)) return -1;
            a->opts.seed = (uint64_t)x;
        } else if (!strcmp(key, "out")) {
            a->out = v;
        } else if (!strcmp(key, "predictions_out")) {
            a->predictions_out = v;
        } else {
            fprintf(stderr, "presight eval rescore: unknown key '%s' (see --help)\n", key);
            return -1;
        }
    }
    if (!a->predictions) {
        fprintf(stderr, "presight eval rescore: which predictions.jsonl? (see --help)\n");
        return -1;
    }
    if (!a->out) {
        const char *slash = strrchr(a->predictions, '/');
        int dir = slash ? (int)(slash - a->predictions + 1) : 0;
        snprintf(a->default_out, sizeof a->default_out, "%.*sresults-rescored.jsonl", dir, a->predictions);
        a->out = a->default_out;
    }
    return 0;
}

static void print_table(const eval_result *r, size_t n) {
    printf("%-16s %-16s %-12s %-18s %12s %10s %8s %8s\n", "task", "category", "subset", "metric", "value", "stderr",
           "n", "unparsed");
    for (size_t i = 0; i < n; i++)
        printf("%-16s %-16s %-12s %-18s %12.6g %10.4g %8zu %8zu\n", r[i].task, r[i].category, r[i].subset[0] ? r[i].subset : "-", r[i].metric, r[i].value,
               r[i].stderr_, r[i].n, r[i].parse_failures);
}

static int cmd_rescore(int argc, char **argv) {
    rescore_args a;
    if (parse_rescore_args(argc, argv, &a)) return 2;
    ps_error err;
    eval_prediction *preds;
    size_t n, torn;
    eval_result *results = NULL;
    size_t n_results = 0;
    if (eval_predictions_read(a.predictions, &preds, &n, &torn, &err)) {
        fprintf(stderr, "presight eval rescore: %s\n", err.msg);
        return 1;
    }
    if (torn) fprintf(stderr, "presight eval rescore: %s: skipped a torn last line (an interrupted write)\n", a.predictions);
    int rc = n ? 0 : ps_fail(&err, "%s: no predictions", a.predictions);
    if (!rc) rc = eval_score_all(preds, n, &a.opts, &results, &n_results, &err);
    if (!rc) {
        /* summarise a copy of the task rows: *out grows while r is read */
        eval_result *tasks = malloc(sizeof *tasks * (n_results ? n_results : 1));
        rc = tasks ? 0 : ps_fail(&err, "out of memory");
        if (!rc) memcpy(tasks, results, sizeof *tasks * n_results);
        if (!rc) rc = eval_summarize(tasks, n_results, &results, &n_results, &err);
        free(tasks);
    }
    if (!rc) rc = eval_results_write_file(a.out, results, n_results, &err);
    if (!rc && a.predictions_out) rc = eval_predictions_write_file(a.predictions_out, preds, n, &err);
    if (rc) fprintf(stderr, "presight eval rescore: %s\n", err.msg);
    else {
        print_table(results, n_results);
        printf("%zu predictions re-scored with %s, tiers %s: %s\n", n, EVAL_PARSER_VERSION,
               n_results ? results[0].tiers : "", a.out);
    }
    free(results);
    eval_predictions_free(preds, n);
    return rc ? 1 : 0;
}

static int cmd_eval_model(int argc, char **argv) {
    run_config cfg;
    ps_error err = {{0}};
    comm *world = NULL;
    if (config_load(&cfg, argv[1], argc - 2, argv + 2, &err)) {
        fprintf(stderr, "presight eval: %s\n", err.msg);
        return 2;
    }
    if (cfg.threads > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", cfg.threads);
        setenv("PRESIGHT_THREADS", n, 1);
    }
    if (comm_world(&world, &argc, &argv, &err)) {
        fprintf(stderr, "presight eval: %s\n", err.msg);
        return 1;
    }
    int rc = eval_stage_run(&cfg, world, &err);
    if (rc < 0) fprintf(stderr, "presight eval (rank %d): %s\n", comm_rank(world), err.msg);
    if (rc == -1 && comm_size(world) > 1) {
        /* this rank alone failed: the others may wait in a collective */
        fflush(stdout);
        comm_abort(world, 1);
    }
    comm_free(world);
    comm_shutdown();
    return rc == PRESIGHT_EXIT_PREEMPTED ? PRESIGHT_EXIT_PREEMPTED : rc ? 1 : 0;
}

int cmd_eval(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "rescore")) {
        if (wants_help(argc, argv)) return eval_help(stdout), 0;
        return cmd_rescore(argc, argv);
    }
    if (wants_help(argc, argv)) return eval_help(stdout), 0;
    if (argc < 2) {
        eval_help(stderr);
        return 2;
    }
    return cmd_eval_model(argc, argv);
}
