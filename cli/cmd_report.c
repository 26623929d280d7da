/* cmd_report.c - presight report STUDY|RUN... [--out DIR]: tables and plots (stages/report.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "report.h"

static void report_help(FILE *out) {
    fprintf(out,
            "usage: presight report STUDY|RUN... [--out DIR] [options]\n\n"
            "Turns collected results into report.md, CSV tables and PNG plots (gnuplot, pngcairo), each\n"
            "plot beside the table it shows and the gnuplot script that redraws it from its CSV.\n\n"
            "STUDY: a study dir after `presight study collect` (results.jsonl + collected/<id>/ or runs/<id>/).\n"
            "RUN:   a dir holding results.jsonl, predictions.jsonl, metrics.jsonl (or one level below).\n\n"
            "Per group of runs (runs that differ only in a seed axis): language perplexity and accuracy,\n"
            "VQA per category and overall, existence small/medium/large/overall, alignment, the mixture's\n"
            "reasoning and visual shares; bootstrap intervals over items and over seeds; paired\n"
            "comparisons of every group against the first on the same items; training-loss curves;\n"
            "ranking, mix interpolation, share plots and grid heatmap when the runs span them; the\n"
            "paper's headline table beside the mix0/mix6 groups.\n\n"
            "options:\n"
            "  --out DIR         where to write (default: STUDY/report, or ./report for run dirs)\n"
            "  --bootstrap N     resamples (default 1000)\n"
            "  --level X         interval level (default 0.95)\n"
            "  --seed N          bootstrap seed (default 1234)\n"
            "  --mixtures DIR    mixture files (default config/mixtures, here or beside the binary's tree)\n"
            "  --paper DIR       the paper's tables (default config/paper, likewise)\n"
            "  --no-plots        CSV and .gp scripts only (no gnuplot needed)\n"
            "  --vqa parsed|letter  score VQA and existence items by the parsed generated answer\n"
            "                    (default, the paper's) or by the option letter with the highest\n"
            "                    log-likelihood after the prompt (for models too small to answer)\n\n"
            "Exit status: 0 ok, 1 failed (the message names the file at fault), 2 bad usage.\n");
}

static int number(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "presight report: %s needs a number in [%g, %g]\n", opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* A default folder of the source tree (config/...): from the working directory when it is
 * there, else beside the binary (build/presight -> ../config/...), so that a report can be
 * made from anywhere. */
static const char *tree_dir(const char *rel, char *buf, size_t cap) {
    if (access(rel, R_OK) == 0) return rel;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return rel;
    exe[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return rel;
        *slash = 0;
    }
    snprintf(buf, cap, "%s/%s", exe, rel);
    return access(buf, R_OK) == 0 ? buf : rel;
}

static void print_cell(double v, double scale, int digits) {
    if (isnan(v)) printf(" %8s", "-");
    else printf(" %8.*f", digits, scale * v);
}

int cmd_report(int argc, char **argv) {
    if (wants_help(argc, argv)) return report_help(stdout), 0;
    report_opts o;
    report_opts_default(&o);
    char mixtures[4200], paper[4200];
    o.mixtures_dir = tree_dir(o.mixtures_dir, mixtures, sizeof mixtures);
    o.paper_dir = tree_dir(o.paper_dir, paper, sizeof paper);
    const char *out = NULL;
    int plot = 1, n_paths = 0;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    if (!paths) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        int rc = 0;
        if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--mixtures") && v) o.mixtures_dir = v, i++;
        else if (!strcmp(a, "--paper") && v) o.paper_dir = v, i++;
        else if (!strcmp(a, "--no-plots")) plot = 0;
        else if (!strcmp(a, "--vqa") && v && (!strcmp(v, "parsed") || !strcmp(v, "letter")))
            o.vqa_letter = !strcmp(v, "letter"), i++;
        else if (!strcmp(a, "--bootstrap")) rc = number(a, v, 1, 1e7, &x), o.iters = (int)x, i++;
        else if (!strcmp(a, "--level")) rc = number(a, v, 0.5, 0.999, &x), o.level = x, i++;
        else if (!strcmp(a, "--seed")) rc = number(a, v, 0, 9007199254740992.0, &x), o.seed = (uint64_t)x, i++;
        else if (a[0] == '-') {
            fprintf(stderr, "presight report: unknown option '%s' (see --help)\n", a);
            rc = -1;
        } else paths[n_paths++] = a;
        if (rc) return free(paths), 2;
    }
    if (!n_paths) {
        report_help(stderr);
        free(paths);
        return 2;
    }
    char def[4096];
    if (!out) {
        snprintf(def, sizeof def, "%s", n_paths == 1 ? paths[0] : ".");
        strncat(def, "/report", sizeof def - strlen(def) - 1);
        out = def;
    }
    report R;
    ps_error err;
    int rc = report_load(&R, paths, n_paths, &o, &err);
    free(paths);
    if (!rc) {
        rc = report_write(&R, out, plot, &err);
        if (!rc) {
            printf("%-28s %5s %8s %8s %8s %8s %8s %8s %8s\n", "group", "seeds", "ppl", "lang", "General", "Knowl.",
                   "OCR&Ch.", "Vision-C", "VQA");
            for (int g = 0; g < R.n_groups; g++) {
                const report_group *G = &R.groups[g];
                printf("%-28.28s %5d", G->label, G->n_runs);
                print_cell(G->value[RM_PPL], 1, 3);
                print_cell(G->value[RM_LANG_ACC], 100, 1);
                for (int m = RM_VQA_GENERAL; m <= RM_VQA_OVERALL; m++) print_cell(G->value[m], 100, 1);
                putchar('\n');
            }
            if (R.n_missing) printf("%d run%s without results yet (listed in report.md): %s\n", R.n_missing, R.n_missing == 1 ? "" : "s", R.missing);
            printf("report: %s/report.md\n", out);
            if (plot) {
                const char *pngs[] = {"vqa", "existence", "paired", "ranking", "mix", "shares", "grid", "axes", "loss"};
                for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
                    char p[4200];
                    snprintf(p, sizeof p, "%s/%s.png", out, pngs[i]);
                    FILE *f = fopen(p, "r");
                    if (f) printf("plot:   %s\n", p), fclose(f);
                }
            }
        }
        report_free(&R);
    }
    if (rc) {
        fprintf(stderr, "presight report: %s\n", err.msg);
        return 1;
    }
    return 0;
}
