/* eval_stage.c - `presight eval CONFIG` on the job runner (see eval_stage.h). */
#include "eval_stage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend_select.h"
#include "eval_align.h"
#include "eval_items.h"
#include "eval_model.h"
#include "eval_records.h"
#include "eval_score.h"
#include "runner.h"
#include "tasks.h"

typedef struct task_slot {
    task_def *def;
    task_info info;
    task_item *items;
    size_t n;
} task_slot;

typedef struct entry {
    int task;
    size_t item;
} entry;

/* One item's work in a step: its requests (language: lm-eval's; VQA: one per option
 * letter), the VQA prompt, and where its numbers sit in the step's exchange buffer. */
typedef struct item_work {
    eval_item_requests reqs;
    tokenizer_ids prompt; /* VQA: the ids without the picture's rows */
    int vqa;
    int visual, image_at; /* VQA with its picture: rows spliced before prompt.ids[image_at] */
    eval_picture picture; /* where its features are */
    real *embeds;         /* [visual, dim] projected, on the rank that runs it */
    size_t slot;          /* first double of its numbers */
} item_work;

typedef struct stage_ctx {
    run_config cfg; /* the job's: run.dir = the eval folder */
    comm *c;
    eval_model em;
    task_slot *tasks;
    int n_tasks;
    entry *list;
    size_t n_items, done; /* done: items already in predictions.jsonl */
    FILE *pred;           /* rank 0 */
    char pred_path[CONFIG_STR_MAX + 32], results_path[CONFIG_STR_MAX + 32];
    double started;
    size_t items_this_run;
} stage_ctx;

static const char *const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* ------------------------------------------------------------------ tasks */

static int load_tasks(stage_ctx *s, ps_error *err) {
    char *list = strdup(s->cfg.eval.tasks);
    if (!list) return ps_fail(err, "out of memory");
    int rc = 0;
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name && !rc; name = strtok_r(NULL, ",", &save)) {
        while (*name == ' ') name++;
        for (char *e = name + strlen(name); e > name && e[-1] == ' ';) *--e = 0;
        if (!*name) continue;
        task_slot *grown = realloc(s->tasks, sizeof *grown * (size_t)(s->n_tasks + 1));
        if (!grown) {
            rc = ps_fail(err, "out of memory");
            break;
        }
        s->tasks = grown;
        task_slot *t = &s->tasks[s->n_tasks];
        memset(t, 0, sizeof *t);
        rc = task_load(&t->def, name, 0, NULL, err);
        if (rc) break;
        s->n_tasks++;
        t->info = task_get_info(t->def);
        rc = task_read_items(t->def, &t->items, &t->n, err);
        if (!rc && s->cfg.eval.limit > 0 && t->n > (size_t)s->cfg.eval.limit) {
            for (size_t i = (size_t)s->cfg.eval.limit; i < t->n; i++) task_item_clear(&t->items[i]);
            t->n = (size_t)s->cfg.eval.limit;
        }
        if (!rc && !t->n) rc = ps_fail(err, "%s: no items in %s", name, t->info.data);
    }
    free(list);
    if (!rc && !s->n_tasks && !s->cfg.eval.align[0])
        rc = ps_fail(err, "eval.tasks and eval.align are empty: name task files, e.g. eval.tasks=config/tasks/piqa.cfg");
    for (int i = 0; i < s->n_tasks && !rc; i++) s->n_items += s->tasks[i].n;
    if (!rc && !(s->list = malloc(sizeof *s->list * (s->n_items ? s->n_items : 1)))) rc = ps_fail(err, "out of memory");
    size_t k = 0;
    for (int i = 0; i < s->n_tasks && !rc; i++)
        for (size_t j = 0; j < s->tasks[i].n; j++) s->list[k++] = (entry){i, j};
    return rc;
}

static void free_tasks(stage_ctx *s) {
    for (int i = 0; i < s->n_tasks; i++) {
        task_items_free(s->tasks[i].items, s->tasks[i].n);
        task_free(s->tasks[i].def);
    }
    free(s->tasks);
    free(s->list);
}

/* ------------------------------------------------------------------ one item */

static int vqa_prompt_text(const task_item *it, char **out, ps_error *err) {
    size_t n = strlen(it->context);
    if (!(*out = malloc(n + 2))) return ps_fail(err, "out of memory");
    memcpy(*out, it->context, n);
    memcpy(*out + n, "\n", 2);
    return 0;
}

static int copy_ids(const int *ids, int n, tokenizer_ids *out, ps_error *err) {
    if (!(out->ids = malloc(sizeof *out->ids * (size_t)(n ? n : 1)))) return ps_fail(err, "out of memory");
    for (int i = 0; i < n; i++) out->ids[i] = (uint32_t)ids[i];
    out->n = out->cap = (size_t)n;
    return 0;
}

/* An adapted model's VQA item: sft's chat prompt with the picture (chat_template_question),
 * one request per option letter, the letter as an answer's text after the prompt. */
static int build_visual(stage_ctx *s, const task_slot *t, const task_item *it, item_work *w, ps_error *err) {
    const chat_template *tpl = &s->em.tpl;
    chat_tokens q = {0};
    int has_image = it->image != NULL;
    int rc = has_image ? eval_model_find_picture(&s->em, it->image, &w->picture, err) : 0;
    if (!rc) rc = chat_template_question(tpl, it->context, has_image, &q, err);
    if (rc) rc = ps_wrap(err, "%s item %s", t->info.name, it->id);
    if (!rc) rc = copy_ids(q.ids, q.n, &w->prompt, err);
    w->visual = has_image ? s->em.visual_tokens : 0;
    w->image_at = q.image_at;
    if (!rc && it->n_choices > 26) rc = ps_fail(err, "%s item %s: more than 26 options", t->info.name, it->id);
    if (!rc && it->n_choices > 0 && !(w->reqs.req = calloc((size_t)it->n_choices, sizeof *w->reqs.req)))
        rc = ps_fail(err, "out of memory");
    for (int i = 0; i < it->n_choices && !rc; i++, w->reqs.n = i) {
        eval_request *r = &w->reqs.req[i];
        chat_tokens letter = {0};
        rc = chat_tokens_append_text(tpl, &letter, &letters[i], 1, 1, err);
        if (!rc) rc = copy_ids(q.ids, q.n, &r->context, err);
        if (!rc) rc = copy_ids(letter.ids, letter.n, &r->continuation, err);
        r->visual = w->visual, r->image_at = w->image_at;
        chat_tokens_free(&letter);
    }
    chat_tokens_free(&q);
    return rc;
}

static int build_work(stage_ctx *s, const entry *e, item_work *w, ps_error *err) {
    const task_slot *t = &s->tasks[e->task];
    const task_item *it = &t->items[e->item];
    memset(w, 0, sizeof *w);
    if (t->info.kind != TASK_VQA)
        return eval_build_requests(t->def, it, s->em.tok, s->em.prefix, (size_t)s->cfg.model.context, &w->reqs, err);
    w->vqa = 1;
    if (s->em.image_input) return build_visual(s, t, it, w, err);
    char *prompt;
    if (vqa_prompt_text(it, &prompt, err)) return -1;
    int rc = tokenizer_encode(s->em.tok, prompt, strlen(prompt), 0, &w->prompt, err);
    if (!rc && it->n_choices > 26) rc = ps_fail(err, "%s item %s: more than 26 options", t->info.name, it->id);
    if (!rc && it->n_choices > 0 && !(w->reqs.req = calloc((size_t)it->n_choices, sizeof *w->reqs.req)))
        rc = ps_fail(err, "out of memory");
    for (int i = 0; i < it->n_choices && !rc; i++, w->reqs.n = i) {
        char letter[2] = {letters[i], 0};
        rc = eval_encode_pair(s->em.tok, prompt, letter, s->em.prefix, &w->reqs.req[i].context,
                              &w->reqs.req[i].continuation, &w->reqs.req[i].merged, err);
    }
    free(prompt);
    return rc;
}

static void free_work(item_work *w) {
    eval_item_requests_free(&w->reqs);
    tokenizer_ids_free(&w->prompt);
    free(w->embeds);
}

/* Doubles item w puts into the exchange: language 2 per request (ll, greedy); VQA one per
 * letter, then the output's length and ids; last, the most tokens any of its inputs lost to
 * model.context (0: none was cut). */
static size_t work_slots(const stage_ctx *s, const item_work *w) {
    return (w->vqa ? (size_t)w->reqs.n + 1 + (size_t)s->cfg.eval.max_new_tokens : 2 * (size_t)w->reqs.n) + 1;
}

/* This rank's items of the step: every request scored in one pool of batches, every VQA
 * prompt decoded in another; numbers into buf at each item's slot. */
static int score_mine(stage_ctx *s, item_work *w, const size_t *mine, size_t n_mine, double *buf, double *tokens,
                      ps_error *err) {
    size_t n_req = 0, n_gen = 0;
    for (size_t i = 0; i < n_mine; i++) n_req += (size_t)w[mine[i]].reqs.n, n_gen += (size_t)w[mine[i]].vqa;
    eval_request *req = malloc(sizeof *req * (n_req ? n_req : 1));
    double *ll = malloc(sizeof *ll * (n_req ? n_req : 1));
    int *greedy = malloc(sizeof *greedy * (n_req ? n_req : 1));
    eval_prompt *prompts = malloc(sizeof *prompts * (n_gen ? n_gen : 1));
    uint32_t **out = calloc(n_gen ? n_gen : 1, sizeof *out);
    size_t *n_out = calloc(n_gen ? n_gen : 1, sizeof *n_out);
    int *cut = calloc(n_req ? n_req : 1, sizeof *cut), *gcut = calloc(n_gen ? n_gen : 1, sizeof *gcut);
    int rc = req && ll && greedy && prompts && out && n_out && cut && gcut ? 0 : ps_fail(err, "out of memory");
    size_t r = 0, g = 0, D = (size_t)s->cfg.model.dim;
    for (size_t i = 0; i < n_mine && !rc; i++) {
        item_work *x = &w[mine[i]];
        /* each picture projected alone: its rows do not depend on the rest of the step */
        if (x->visual && !(x->embeds = malloc(sizeof *x->embeds * (size_t)x->visual * D))) rc = ps_fail(err, "out of memory");
        if (!rc && x->visual) rc = eval_model_project(&s->em, x->picture, x->embeds, err);
        for (int k = 0; k < x->reqs.n && !rc; k++) req[r] = x->reqs.req[k], req[r++].embeds = x->embeds;
        if (x->vqa)
            prompts[g++] = (eval_prompt){.ids = x->prompt.ids, .n = x->prompt.n, .visual = x->visual,
                                         .image_at = x->image_at, .embeds = x->embeds};
    }
    if (!rc) rc = eval_model_score_cut(&s->em, req, n_req, s->cfg.eval.batch, ll, greedy, cut, tokens, err);
    if (!rc && n_gen)
        rc = eval_model_generate_cut(&s->em, prompts, n_gen, s->cfg.eval.batch, s->cfg.eval.max_new_tokens, out,
                                     n_out, gcut, err);
    r = g = 0;
    for (size_t i = 0; i < n_mine && !rc; i++) {
        item_work *x = &w[mine[i]];
        double *b = buf + x->slot, *lost = b + work_slots(s, x) - 1;
        for (int k = 0; k < x->reqs.n; k++, r++) {
            if (x->vqa) b[k] = ll[r];
            else b[2 * k] = ll[r], b[2 * k + 1] = greedy[r];
            if (cut[r] > *lost) *lost = cut[r];
        }
        if (x->vqa && gcut[g] > *lost) *lost = gcut[g];
        if (x->vqa) {
            b[x->reqs.n] = (double)n_out[g];
            for (size_t t = 0; t < n_out[g]; t++) b[x->reqs.n + 1 + t] = out[g][t];
            *tokens += (double)(x->prompt.n + (size_t)x->visual + n_out[g]);
            g++;
        }
    }
    for (size_t i = 0; i < n_gen; i++) free(out[i]);
    free(req), free(ll), free(greedy), free(prompts), free(out), free(n_out), free(cut), free(gcut);
    return rc;
}

/* Rank 0: item e's prediction record from its work and the exchanged numbers. */
static int make_prediction(stage_ctx *s, const entry *e, const item_work *w, const double *b, eval_prediction *p,
                           ps_error *err) {
    const task_slot *t = &s->tasks[e->task];
    const task_item *it = &t->items[e->item];
    eval_prediction_init(p);
    if (eval_item_prediction(t->def, it, w->vqa ? NULL : &w->reqs, p, err)) return -1;
    memcpy(p->prov.checkpoint_sha256, s->em.weights_sha256, 65);
    snprintf(p->prov.task_sha256, sizeof p->prov.task_sha256, "%s", t->info.sha256);
    p->prov.seed = s->cfg.train.seed;
    p->prov.image_input = w->visual > 0;
    if (s->em.image_input) snprintf(p->prov.encoder, sizeof p->prov.encoder, "%s", s->em.encoder);
    if (w->visual) p->image_at = w->image_at, p->visual_tokens = w->visual;
    p->truncated = b[work_slots(s, w) - 1] > 0;
    int n = w->reqs.n;
    if (t->info.kind == TASK_ROLLING) {
        p->loglikelihood = 0;
        for (int k = 0; k < n; k++) p->loglikelihood += b[2 * k];
        return 0;
    }
    if (!w->vqa) {
        p->loglikelihoods = malloc(sizeof *p->loglikelihoods * (n ? n : 1));
        p->greedy = malloc(sizeof *p->greedy * (n ? n : 1));
        if (!p->loglikelihoods || !p->greedy) return ps_fail(err, "out of memory");
        for (int k = 0; k < n; k++) p->loglikelihoods[k] = b[2 * k], p->greedy[k] = b[2 * k + 1] != 0;
        p->n_loglikelihoods = n;
        return 0;
    }
    if (n) {
        if (!(p->letter_loglikelihoods = malloc(sizeof *p->letter_loglikelihoods * n))) return ps_fail(err, "out of memory");
        memcpy(p->letter_loglikelihoods, b, sizeof *b * n);
        p->n_letter_loglikelihoods = n;
    }
    size_t len = (size_t)b[n];
    p->context.ids = malloc(sizeof *p->context.ids * (w->prompt.n ? w->prompt.n : 1));
    p->output_ids.ids = malloc(sizeof *p->output_ids.ids * (len ? len : 1));
    if (!p->context.ids || !p->output_ids.ids) return ps_fail(err, "out of memory");
    memcpy(p->context.ids, w->prompt.ids, sizeof *w->prompt.ids * w->prompt.n);
    p->context.n = w->prompt.n;
    for (size_t k = 0; k < len; k++) p->output_ids.ids[k] = (uint32_t)b[n + 1 + k];
    p->output_ids.n = len;
    tokenizer_bytes text = {0};
    int rc = tokenizer_decode(s->em.tok, p->output_ids.ids, len, &text, err);
    if (!rc && !(p->output = malloc(text.n + 1))) rc = ps_fail(err, "out of memory");
    if (!rc) memcpy(p->output, text.bytes, text.n), p->output[text.n] = 0;
    tokenizer_bytes_free(&text);
    return rc;
}

/* ------------------------------------------------------------------ the stage */

static int stage_step(void *ctx, const job_progress *p, job_step_report *out, ps_error *err) {
    stage_ctx *s = ctx;
    size_t K = (size_t)s->cfg.eval.items_per_step, first = (size_t)p->step * K;
    size_t end = first + K < s->n_items ? first + K : s->n_items, n = end - first;
    int rank = comm_rank(s->c), world = comm_size(s->c);
    item_work *w = calloc(n ? n : 1, sizeof *w);
    size_t *mine = malloc(sizeof *mine * (n ? n : 1)), n_mine = 0, slots = 0;
    int rc = w && mine ? 0 : ps_fail(err, "out of memory");
    /* every rank builds every item's requests (cheap next to the model) to agree on the slots */
    for (size_t i = 0; i < n && !rc; i++) {
        if (first + i < s->done) continue; /* already in predictions.jsonl */
        rc = build_work(s, &s->list[first + i], &w[i], err);
        w[i].slot = slots;
        slots += work_slots(s, &w[i]);
        if ((first + i) % (size_t)world == (size_t)rank) mine[n_mine++] = i;
    }
    double *buf = rc ? NULL : calloc(slots + 1, sizeof *buf);
    if (!rc && !buf) rc = ps_fail(err, "out of memory");
    if (!rc) rc = score_mine(s, w, mine, n_mine, buf, &buf[slots], err);
    if (!rc) rc = comm_all_reduce_sum_double(s->c, buf, slots + 1, err);
    size_t fresh = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (first + i < s->done) continue;
        fresh++;
        if (rank) continue;
        eval_prediction pr;
        rc = make_prediction(s, &s->list[first + i], &w[i], buf + w[i].slot, &pr, err);
        if (!rc && eval_prediction_write(s->pred, &pr, err)) rc = ps_wrap(err, "%s", s->pred_path);
        eval_prediction_clear(&pr);
    }
    if (!rc) {
        s->items_this_run += fresh;
        double rate = s->items_this_run / fmax(job_now() - s->started, 1e-9);
        out->tokens = buf[slots];
        snprintf(out->fields, sizeof out->fields, "\"items\":%zu,\"items_per_s\":%.3f", end, rate);
        snprintf(out->progress, sizeof out->progress, "items %zu/%zu | %.2f items/s", end, s->n_items, rate);
    }
    for (size_t i = 0; i < n; i++) free_work(&w[i]);
    free(w), free(mine), free(buf);
    return rc;
}

/* Predictions are appended and flushed per item: nothing else to save. */
static int stage_save(void *ctx, job *j, const job_progress *p, ps_error *err) {
    (void)ctx, (void)j, (void)p, (void)err;
    return 0;
}

/* Rank 0: the stored predictions must be the first items of this task list, in order. */
static int check_stored(const stage_ctx *s, const eval_prediction *pr, size_t n, ps_error *err) {
    if (n > s->n_items) return ps_fail(err, "%s: %zu predictions, more than the %zu items of eval.tasks", s->pred_path, n, s->n_items);
    for (size_t k = 0; k < n; k++) {
        const task_slot *t = &s->tasks[s->list[k].task];
        const task_item *it = &t->items[s->list[k].item];
        if (strcmp(pr[k].task, t->info.name) || strcmp(pr[k].id, it->id))
            return ps_fail(err, "%s:%zu: item %s/%s where %s/%s was expected (another task list?)", s->pred_path, k + 1,
                           pr[k].task, pr[k].id, t->info.name, it->id);
    }
    return 0;
}

static int stage_resume(void *ctx, job *j, job_progress *p, ps_error *err) {
    stage_ctx *s = ctx;
    (void)j;
    double done = 0;
    int rc = 0;
    if (comm_rank(s->c) == 0) {
        eval_prediction *pr = NULL;
        size_t n = 0, cut = 0;
        struct stat st;
        if (stat(s->pred_path, &st) == 0) {
            rc = eval_predictions_trim_torn(s->pred_path, &cut, err);
            if (!rc) rc = eval_predictions_read(s->pred_path, &pr, &n, NULL, err);
            if (!rc) rc = check_stored(s, pr, n, err);
            eval_predictions_free(pr, n);
            if (!rc && n) printf("resuming: %zu of %zu items in %s%s\n", n, s->n_items, s->pred_path, cut ? " (a torn last line cut)" : "");
        }
        if (!rc && !(s->pred = fopen(s->pred_path, "a"))) rc = ps_fail(err, "%s: cannot open for appending", s->pred_path);
        done = rc ? -1 : (double)n;
    }
    if (comm_broadcast(s->c, &done, sizeof done, 0, err)) return -1;
    if (done < 0) return rc ? -1 : ps_fail(err, "rank 0 could not read %s", s->pred_path);
    s->done = (size_t)done;
    p->step = (int64_t)(s->done / (size_t)s->cfg.eval.items_per_step);
    p->tokens = 0;
    s->started = job_now();
    return s->done > 0;
}

static void print_table(const eval_result *r, size_t n) {
    printf("%-18s %-14s %-12s %-18s %12s %10s %6s %8s\n", "task", "category", "subset", "metric", "value", "stderr", "n",
           "unparsed");
    for (size_t i = 0; i < n; i++)
        printf("%-18s %-14s %-12s %-18s %12.6g %10.4g %6zu %8zu\n", r[i].task, r[i].category,
               r[i].subset[0] ? r[i].subset : "-", r[i].metric, r[i].value, r[i].stderr_, r[i].n, r[i].parse_failures);
}

/* Rank 0: every prediction scored, written back with parsed/tier/correct, results whole. */
static int score_outputs(stage_ctx *s, size_t *n_results, ps_error *err) {
    eval_prediction *pr = NULL;
    size_t n = 0;
    eval_result *res = NULL, *tasks = NULL;
    *n_results = 0;
    eval_score_opts o;
    eval_score_opts_default(&o);
    int rc = eval_predictions_read(s->pred_path, &pr, &n, NULL, err);
    if (!rc && n) rc = eval_score_all(pr, n, &o, &res, n_results, err);
    if (!rc && !(tasks = malloc(sizeof *tasks * (*n_results ? *n_results : 1)))) rc = ps_fail(err, "out of memory");
    if (!rc) memcpy(tasks, res, sizeof *tasks * *n_results);
    if (!rc && *n_results) rc = eval_summarize(tasks, *n_results, &res, n_results, err); /* grows res while tasks is read */
    if (!rc && s->cfg.eval.align[0]) rc = eval_align_run(&s->em, &s->cfg, &res, n_results, err);
    if (!rc) rc = eval_predictions_write_file(s->pred_path, pr, n, err);
    if (!rc) rc = eval_results_write_file(s->results_path, res, *n_results, err);
    if (!rc) print_table(res, *n_results);
    free(tasks), free(res);
    eval_predictions_free(pr, n);
    return rc;
}

static int stage_finish(void *ctx, job *j, const job_progress *p, int last_step_ran, FILE *final, ps_error *err) {
    stage_ctx *s = ctx;
    (void)j, (void)last_step_ran;
    double ok = 1;
    size_t n_results = 0;
    int rc = 0;
    if (comm_rank(s->c) == 0) {
        if (s->pred && fclose(s->pred)) rc = ps_fail(err, "%s: write failed", s->pred_path);
        s->pred = NULL;
        if (!rc) rc = score_outputs(s, &n_results, err);
        if (!rc && final)
            fprintf(final, ",\"items\":%zu,\"tasks\":%d,\"results\":%zu,\"checkpoint\":\"%s\",\"checkpoint_sha256\":\"%s\"",
                    s->n_items, s->n_tasks, n_results, s->em.weights, s->em.weights_sha256);
        if (!rc) printf("done: %zu items of %d tasks in %.1fs: %s, %s\n", s->n_items, s->n_tasks, p->elapsed_s,
                        s->pred_path, s->results_path);
        ok = rc ? 0 : 1;
    }
    if (comm_broadcast(s->c, &ok, sizeof ok, 0, err)) return -1;
    return ok ? 0 : rc ? -1 : ps_fail(err, "rank 0 could not score the predictions");
}

/* ------------------------------------------------------------------ entry */

static int stage_init(stage_ctx *s, const run_config *cfg, comm *c, ps_error *err) {
    memset(s, 0, sizeof *s);
    s->c = c;
    s->cfg = *cfg;
    if (!cfg->eval.out[0] &&
        snprintf(s->cfg.eval.out, sizeof s->cfg.eval.out, "%s/eval", cfg->run_dir) >= (int)sizeof s->cfg.eval.out)
        return ps_fail(err, "run.dir '%s' is too long", cfg->run_dir);
    if (mkdir(s->cfg.eval.out, 0777) && errno != EEXIST) return ps_fail(err, "eval.out '%s': cannot create", s->cfg.eval.out);
    if (eval_model_open_visual(&s->em, cfg, s->cfg.eval.out, err)) return -1;
    const gpu_engine_api *gpu = NULL; /* run.backend: scoring and decoding on the CPU or the GPU engine */
    if (backend_select(cfg, c, &gpu, err) || (gpu && eval_model_use_gpu(&s->em, gpu, err))) return -1;
    if (s->em.image_input) /* the job's config records the features read: another folder is another evaluation */
        snprintf(s->cfg.eval.features, sizeof s->cfg.eval.features, "%s", s->em.features);
    /* The job runs in the eval folder; its config records the weights it read. */
    snprintf(s->cfg.run_dir, sizeof s->cfg.run_dir, "%s", s->cfg.eval.out);
    if (snprintf(s->cfg.eval.checkpoint, sizeof s->cfg.eval.checkpoint, "%s", s->em.weights) >=
        (int)sizeof s->cfg.eval.checkpoint)
        return ps_fail(err, "%s: path too long", s->em.weights);
    snprintf(s->pred_path, sizeof s->pred_path, "%s/predictions.jsonl", s->cfg.eval.out);
    snprintf(s->results_path, sizeof s->results_path, "%s/results.jsonl", s->cfg.eval.out);
    return load_tasks(s, err);
}

static void stage_free(stage_ctx *s) {
    if (s->pred) fclose(s->pred);
    eval_model_close(&s->em);
    free_tasks(s);
}

int eval_stage_run(const run_config *cfg, comm *c, ps_error *err) {
    stage_ctx s;
    int rc = stage_init(&s, cfg, c, err);
    /* every rank reads the same files: a failure is everywhere */
    if (rc) {
        stage_free(&s);
        return JOB_FAILED_EVERYWHERE;
    }
    job *j = NULL;
    int complete = 0;
    rc = job_open(&j, &s.cfg, c, &complete, err);
    if (!rc && complete) {
        if (comm_rank(c) == 0) printf("eval folder '%s' holds a complete evaluation (final.json); nothing to do\n", s.cfg.run_dir);
    } else if (!rc) {
        if (comm_rank(c) == 0) {
            printf("presight eval: %s | %zu items of %d tasks | %d ranks | weights %s (%s)\n", cfg->source, s.n_items,
                   s.n_tasks, comm_size(c), s.em.weights, s.em.describe);
            if (s.em.image_input)
                printf("image input: an adapted model (adapt.stage %s): encoder %s, %d visual tokens per picture, "
                       "features %s (%d files), sft's chat template\n",
                       s.em.stage, s.em.encoder, s.em.visual_tokens, s.em.features, s.em.n_files);
            else
                printf("image input: none (a language-only model): VQA items are answered from their text\n");
            fflush(stdout);
        }
        int64_t steps = (int64_t)((s.n_items + (size_t)s.cfg.eval.items_per_step - 1) / (size_t)s.cfg.eval.items_per_step);
        job_stage stage = {&s, stage_step, stage_save, stage_resume, stage_finish};
        rc = job_run(j, &stage, steps, err);
    }
    job_close(j);
    stage_free(&s);
    return rc;
}
