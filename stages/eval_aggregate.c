/* eval_aggregate.c - existence by size, MME acc+, MMBench circular, means by key. */
#include "eval_aggregate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

int eval_size_split(double a) {
    if (!(a >= 0 && a <= 1)) return -1;
    return a < 0.3 ? EVAL_SIZE_SMALL : a < 0.6 ? EVAL_SIZE_MEDIUM : EVAL_SIZE_LARGE;
}

const char *eval_size_name(int split) {
    static const char *const names[] = {"small", "medium", "large"};
    return split >= 0 && split < EVAL_N_SIZES ? names[split] : "?";
}

int eval_existence_by_size(const double *area_share, const double *correct, size_t n, eval_by_size *out,
                           ps_error *err) {
    memset(out, 0, sizeof *out);
    if (!n) return ps_fail(err, "existence by size: no items");
    double *by[EVAL_N_SIZES];
    for (int s = 0; s < EVAL_N_SIZES; s++) by[s] = malloc(sizeof(double) * n);
    if (!by[0] || !by[1] || !by[2]) {
        for (int s = 0; s < EVAL_N_SIZES; s++) free(by[s]);
        return ps_fail(err, "existence by size: out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int s = eval_size_split(area_share[i]);
        if (s < 0) rc = ps_fail(err, "existence by size: item %zu has area share %g, expected in [0, 1]", i, area_share[i]);
        else by[s][out->n[s]++] = correct[i];
    }
    if (!rc) {
        int splits = 0;
        for (int s = 0; s < EVAL_N_SIZES; s++) {
            out->acc[s] = out->n[s] ? stats_mean(by[s], out->n[s]) : NAN;
            out->stderr_[s] = stats_stderr(by[s], out->n[s]);
            if (out->n[s]) out->macro += out->acc[s], splits++;
        }
        out->macro /= splits;
        out->weighted = stats_mean(correct, n);
        out->weighted_stderr = stats_stderr(correct, n);
    }
    for (int s = 0; s < EVAL_N_SIZES; s++) free(by[s]);
    return rc;
}

/* Item indices sorted by key (ties by index), so that groups are runs. */
static int cmp_by_key(const void *a, const void *b, void *keys) {
    const char *const *key = keys;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(key[x], key[y]);
    return c ? c : (x > y) - (x < y);
}

static size_t *order_by_key(const char *const *key, size_t n, ps_error *err) {
    size_t *order = malloc(sizeof *order * (n ? n : 1));
    if (!order) return ps_fail(err, "out of memory"), NULL;
    for (size_t i = 0; i < n; i++) {
        if (!key[i]) {
            free(order);
            return ps_fail(err, "item %zu has no group key", i), NULL;
        }
        order[i] = i;
    }
    qsort_r(order, n, sizeof *order, cmp_by_key, (void *)key);
    return order;
}

int eval_mme_category(const char *const *image, const double *correct, size_t n, int pairs_only, eval_mme *out,
                      ps_error *err) {
    memset(out, 0, sizeof *out);
    if (!n) return ps_fail(err, "MME: no items");
    size_t *order = order_by_key(image, n, err);
    if (!order) return ps_wrap(err, "MME");
    double right = 0, both = 0;
    for (size_t at = 0; at < n;) {
        size_t end = at, all = 1;
        while (end < n && !strcmp(image[order[end]], image[order[at]])) {
            right += correct[order[end]];
            all &= correct[order[end]] == 1;
            end++;
        }
        if (pairs_only && end - at != 2) {
            ps_fail(err, "MME: image %s has %zu questions, expected 2", image[order[at]], end - at);
            free(order);
            return -1;
        }
        both += (double)all;
        out->images++;
        at = end;
    }
    free(order);
    out->questions = n;
    out->acc = right / (double)n;
    out->acc_plus = both / (double)out->images;
    out->score = 100.0 * (out->acc + out->acc_plus);
    return 0;
}

int eval_mmbench_circular(const char *const *group, const double *correct, size_t n, eval_circular *out,
                          ps_error *err) {
    memset(out, 0, sizeof *out);
    if (!n) return ps_fail(err, "MMBench circular: no items");
    size_t *order = order_by_key(group, n, err);
    double *per_group = malloc(sizeof *per_group * n);
    if (!order || !per_group) {
        free(order), free(per_group);
        return ps_fail(err, "MMBench circular: out of memory");
    }
    for (size_t at = 0; at < n;) {
        size_t end = at;
        int all = 1;
        while (end < n && !strcmp(group[order[end]], group[order[at]])) all &= correct[order[end++]] == 1;
        per_group[out->groups++] = all;
        at = end;
    }
    out->acc = stats_mean(per_group, out->groups);
    out->stderr_ = stats_stderr(per_group, out->groups);
    out->vanilla = stats_mean(correct, n);
    free(order), free(per_group);
    return 0;
}

int eval_circular_answer(int answer, int n_options, int rotation) {
    if (n_options < 1 || answer < 0 || answer >= n_options) return -1;
    return ((answer - rotation) % n_options + n_options) % n_options;
}

void eval_groups_free(eval_groups *g) {
    for (size_t i = 0; i < g->n; i++) free(g->groups[i].key);
    free(g->groups);
    memset(g, 0, sizeof *g);
}

int eval_group_means(const char *const *key, const double *score, size_t n, eval_groups *out, ps_error *err) {
    memset(out, 0, sizeof *out);
    if (!n) return ps_fail(err, "group means: no items");
    size_t *order = order_by_key(key, n, err);
    double *values = malloc(sizeof *values * n);
    out->groups = calloc(n, sizeof *out->groups);
    if (!order || !values || !out->groups) {
        free(order), free(values), free(out->groups);
        out->groups = NULL;
        return ps_fail(err, "group means: out of memory");
    }
    for (size_t at = 0; at < n;) {
        size_t end = at, m = 0;
        while (end < n && !strcmp(key[order[end]], key[order[at]])) values[m++] = score[order[end++]];
        eval_group *g = &out->groups[out->n++];
        g->key = strdup(key[order[at]]);
        g->mean = stats_mean(values, m);
        g->stderr_ = stats_stderr(values, m);
        g->n = m;
        out->macro += g->mean;
        at = end;
    }
    out->macro /= (double)out->n;
    free(order), free(values);
    return 0;
}
