/* report_stats.c - runs into groups (seeds pooled), the bootstrap intervals of every mean,
 * paired comparisons against the baseline group, and each group's mixture shares. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "report.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "stats.h"

static int is_seed_axis(const char *name) {
    return strstr(name, "seed") != NULL;
}

static void group_label(const report_run *r, char *out, size_t cap) {
    size_t len = 0;
    out[0] = 0;
    for (int a = 0; a < r->n_axes && len < cap; a++) {
        if (is_seed_axis(r->axis[a])) continue;
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", r->value[a]);
    }
    if (!out[0]) snprintf(out, cap, "%s", r->n_axes ? "all" : r->name);
}

/* The group's item vector of measure m: the per-item mean over its runs, which must have
 * been scored on the same items. */
static int pool_items(report *R, report_group *g, int m, ps_error *err) {
    const report_items *first = &R->runs[g->runs[0]].items[m];
    if (!first->n) return 0;
    report_items *it = &g->items[m];
    it->key = calloc(first->n, sizeof *it->key);
    it->x = calloc(first->n, sizeof *it->x);
    if (!it->key || !it->x) return ps_fail(err, "out of memory");
    it->n = first->n;
    for (size_t i = 0; i < first->n; i++)
        if (!(it->key[i] = strdup(first->key[i]))) return ps_fail(err, "out of memory");
    for (int k = 0; k < g->n_runs; k++) {
        const report_run *r = &R->runs[g->runs[k]];
        const report_items *ri = &r->items[m];
        if (ri->n != first->n)
            return ps_fail(err, "group %s, %s: run %s has %zu items, run %s %zu: seeds scored on different items", g->label,
                           report_measure_name(m), r->name, ri->n, R->runs[g->runs[0]].name, first->n);
        for (size_t i = 0; i < ri->n; i++) {
            if (strcmp(ri->key[i], first->key[i]))
                return ps_fail(err, "group %s, %s: run %s has item %s where run %s has %s", g->label,
                               report_measure_name(m), r->name, ri->key[i], R->runs[g->runs[0]].name, first->key[i]);
            it->x[i] += ri->x[i] / g->n_runs;
        }
    }
    return 0;
}

static int group_intervals(report *R, report_group *g, int m, ps_error *err) {
    g->item_lo[m] = g->item_hi[m] = g->seed_lo[m] = g->seed_hi[m] = NAN;
    double vals[1024];
    int n = 0;
    for (int k = 0; k < g->n_runs && n < 1024; k++) {
        double v = R->runs[g->runs[k]].measure[m];
        if (!isnan(v)) vals[n++] = v;
    }
    g->value[m] = n ? stats_mean(vals, (size_t)n) : NAN;
    stats_interval ci;
    if (n >= 2) {
        if (stats_bootstrap_mean(vals, (size_t)n, R->o.iters, R->o.level, R->o.seed, &ci, err)) return -1;
        g->seed_lo[m] = ci.lo, g->seed_hi[m] = ci.hi;
    }
    if (report_measure_itemwise(m) && g->items[m].n) {
        if (stats_bootstrap_mean(g->items[m].x, g->items[m].n, R->o.iters, R->o.level, R->o.seed, &ci, err))
            return -1;
        g->item_lo[m] = ci.lo, g->item_hi[m] = ci.hi;
    }
    return 0;
}

/* Group g against the baseline b on the items both have. */
static int paired(report *R, const report_group *b, report_group *g, int m, ps_error *err) {
    g->diff[m] = g->diff_lo[m] = g->diff_hi[m] = NAN;
    g->diff_n[m] = 0;
    const report_items *x = &g->items[m], *y = &b->items[m];
    if (!x->n || !y->n) return 0;
    size_t cap = x->n < y->n ? x->n : y->n, n = 0;
    double *a = malloc(sizeof *a * cap), *c = malloc(sizeof *c * cap);
    if (!a || !c) {
        free(a), free(c);
        return ps_fail(err, "out of memory");
    }
    for (size_t i = 0, j = 0; i < x->n && j < y->n;) {
        int d = strcmp(x->key[i], y->key[j]);
        if (d == 0) a[n] = x->x[i++], c[n++] = y->x[j++];
        else if (d < 0) i++;
        else j++;
    }
    int rc = 0;
    if (n) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += a[i] - c[i];
        g->diff[m] = s / (double)n;
        g->diff_n[m] = n;
        stats_interval ci;
        rc = stats_bootstrap_paired(a, c, n, R->o.iters, R->o.level, R->o.seed, &ci, err);
        if (!rc) g->diff_lo[m] = ci.lo, g->diff_hi[m] = ci.hi;
    }
    free(a), free(c);
    return rc;
}

int report_groups(report *R, ps_error *err) {
    R->groups = calloc((size_t)R->n_runs + 1, sizeof *R->groups);
    if (!R->groups) return ps_fail(err, "out of memory");
    R->n_groups = 0;
    for (int i = 0; i < R->n_runs; i++) {
        char label[512];
        group_label(&R->runs[i], label, sizeof label);
        int g = 0;
        while (g < R->n_groups && strcmp(R->groups[g].label, label)) g++;
        report_group *G = &R->groups[g];
        if (g == R->n_groups) {
            R->n_groups++;
            snprintf(G->label, sizeof G->label, "%s", label);
            if (!(G->runs = calloc((size_t)R->n_runs, sizeof *G->runs))) return ps_fail(err, "out of memory");
        }
        G->runs[G->n_runs++] = i;
    }
    for (int g = 0; g < R->n_groups; g++)
        for (int m = 0; m < RM_COUNT; m++)
            if ((report_measure_itemwise(m) && pool_items(R, &R->groups[g], m, err)) ||
                group_intervals(R, &R->groups[g], m, err))
                return -1;
    for (int g = 0; g < R->n_groups; g++)
        for (int m = 0; m < RM_COUNT; m++)
            if (report_measure_itemwise(m) && paired(R, &R->groups[0], &R->groups[g], m, err)) return -1;
    return 0;
}

/* ------------------------------------------------------------------ shares */

#define N_KINDS 6
static const char *const kinds[N_KINDS] = {"web", "encyclopedia", "academia", "literature", "math", "code"};

/* paper_dir/label_rates.tsv: kind, reasoning(any) %, visual(any) % (STUDY.md). */
static int read_rates(const char *dir, double reasoning[N_KINDS], double visual[N_KINDS], ps_error *err) {
    char path[PATH_MAX], line[512];
    snprintf(path, sizeof path, "%s/label_rates.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return ps_fail(err, "%s: cannot read the label rates (--paper DIR)", path);
    int seen = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n') continue;
        char kind[64];
        double r, v;
        if (sscanf(line, "%63s %lf %lf", kind, &r, &v) != 3) {
            fclose(f);
            return ps_fail(err, "%s:%d: expected: kind reasoning%% visual%%", path, lineno);
        }
        for (int k = 0; k < N_KINDS; k++)
            if (!strcmp(kind, kinds[k])) reasoning[k] = r / 100, visual[k] = v / 100, seen |= 1 << k;
    }
    fclose(f);
    for (int k = 0; k < N_KINDS; k++)
        if (!(seen & (1 << k))) return ps_fail(err, "%s: no rates for kind %s", path, kinds[k]);
    return 0;
}

/* The shares of a mixture file's kind weights; NaN when it weighs no kinds. */
static int mixture_shares(const report_opts *o, const char *name, const double *rr, const double *rv, double *reasoning,
                          double *visual, ps_error *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.cfg", o->mixtures_dir, name);
    config_t c;
    config_init(&c);
    config_set_include_dir(&c, o->mixtures_dir);
    if (!config_read_file(&c, path)) {
        int rc = ps_fail(err, "%s:%d: %s (the mixture of a run; --mixtures DIR)", path, config_error_line(&c),
                         config_error_text(&c));
        config_destroy(&c);
        return rc;
    }
    double sum = 0, r = 0, v = 0;
    for (int k = 0; k < N_KINDS; k++) {
        char key[64];
        double w;
        snprintf(key, sizeof key, "weights.%s", kinds[k]);
        if (config_lookup_float(&c, key, &w) == CONFIG_TRUE) sum += w, r += w * rr[k], v += w * rv[k];
    }
    config_destroy(&c);
    *reasoning = sum > 0 ? r / sum : NAN;
    *visual = sum > 0 ? v / sum : NAN;
    return 0;
}

int report_shares(report *R, ps_error *err) {
    double rr[N_KINDS], rv[N_KINDS];
    int have_rates = -1;
    for (int g = 0; g < R->n_groups; g++) {
        report_group *G = &R->groups[g];
        const report_run *r = &R->runs[G->runs[0]];
        G->reasoning = G->visual = NAN;
        for (int a = 0; a < r->n_axes; a++) {
            if (strstr(r->axis[a], "reasoning_share")) G->reasoning = atof(r->value[a]);
            if (strstr(r->axis[a], "visual_share")) G->visual = atof(r->value[a]);
            if (strstr(r->axis[a], "mixture")) snprintf(G->mixture, sizeof G->mixture, "%s", r->value[a]);
        }
        if (!G->mixture[0] || strchr(G->mixture, '/')) continue;
        if (have_rates < 0) have_rates = read_rates(R->o.paper_dir, rr, rv, err) == 0;
        if (!have_rates) return -1;
        double sr, sv;
        if (mixture_shares(&R->o, G->mixture, rr, rv, &sr, &sv, err)) return ps_wrap(err, "group %s", G->label);
        if (isnan(G->reasoning)) G->reasoning = sr;
        if (isnan(G->visual)) G->visual = sv;
    }
    return 0;
}
