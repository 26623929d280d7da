/* stats.c - means, standard errors and deterministic bootstraps (see stats.h). */
#include "stats.h"

#include <math.h>
#include <stdlib.h>

#include "rng.h"

double stats_mean(const double *x, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

double stats_sample_stddev(const double *x, size_t n) {
    if (n < 2) return NAN;
    double mu = stats_mean(x, n), s = 0;
    for (size_t i = 0; i < n; i++) s += (x[i] - mu) * (x[i] - mu);
    return sqrt(s / (double)(n - 1));
}

double stats_stderr(const double *x, size_t n) {
    return n < 2 ? NAN : stats_sample_stddev(x, n) / sqrt((double)n);
}

double stats_quantile_sorted(const double *sorted, size_t n, double q) {
    if (n == 0) return NAN;
    double pos = q * (double)(n - 1);
    size_t at = (size_t)floor(pos);
    if (at >= n - 1) return sorted[n - 1];
    double frac = pos - (double)at;
    return sorted[at] + frac * (sorted[at + 1] - sorted[at]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int check_args(size_t n, int iters, double level, ps_error *err) {
    if (n == 0) return ps_fail(err, "bootstrap: no items");
    if (iters < 1) return ps_fail(err, "bootstrap: iters = %d, expected >= 1", iters);
    if (!(level > 0 && level < 1)) return ps_fail(err, "bootstrap: level = %g, expected in (0, 1)", level);
    return 0;
}

/* The B resampled means of x, sorted. */
static int resampled_means(const double *x, size_t n, int iters, uint64_t key, double **out, ps_error *err) {
    double *means = malloc(sizeof *means * (size_t)iters);
    if (!means) return ps_fail(err, "bootstrap: out of memory");
    for (int b = 0; b < iters; b++) {
        double s = 0;
        for (size_t j = 0; j < n; j++) s += x[rng_below(key, (uint64_t)b * n + j, n)];
        means[b] = s / (double)n;
    }
    qsort(means, (size_t)iters, sizeof *means, cmp_double);
    *out = means;
    return 0;
}

static int interval_of(const double *x, size_t n, int iters, double level, uint64_t key, stats_interval *out,
                       ps_error *err) {
    double *means = NULL;
    if (resampled_means(x, n, iters, key, &means, err)) return -1;
    out->lo = stats_quantile_sorted(means, (size_t)iters, (1 - level) / 2);
    out->hi = stats_quantile_sorted(means, (size_t)iters, (1 + level) / 2);
    free(means);
    return 0;
}

int stats_bootstrap_mean(const double *x, size_t n, int iters, double level, uint64_t seed, stats_interval *out,
                         ps_error *err) {
    if (check_args(n, iters, level, err)) return -1;
    return interval_of(x, n, iters, level, rng_key(seed, "stats.bootstrap"), out, err);
}

int stats_bootstrap_paired(const double *a, const double *b, size_t n, int iters, double level, uint64_t seed,
                           stats_interval *out, ps_error *err) {
    if (check_args(n, iters, level, err)) return -1;
    double *d = malloc(sizeof *d * n);
    if (!d) return ps_fail(err, "bootstrap: out of memory");
    for (size_t i = 0; i < n; i++) d[i] = a[i] - b[i];
    int rc = interval_of(d, n, iters, level, rng_key(seed, "stats.bootstrap"), out, err);
    free(d);
    return rc;
}

double stats_weighted_perplexity(const double *ll, const double *w, size_t n) {
    double s = 0, sw = 0;
    for (size_t i = 0; i < n; i++) s += ll[i], sw += w[i];
    return sw > 0 ? exp(-s / sw) : NAN;
}

int stats_weighted_perplexity_stderr(const double *ll, const double *w, size_t n, int iters, uint64_t seed,
                                     double *out, ps_error *err) {
    if (iters < 2) return ps_fail(err, "perplexity stderr: iters = %d, expected >= 2", iters);
    if (n < 2) {
        *out = NAN;
        return 0;
    }
    double *ppl = malloc(sizeof *ppl * (size_t)iters);
    if (!ppl) return ps_fail(err, "perplexity stderr: out of memory");
    uint64_t key = rng_key(seed, "stats.perplexity");
    for (int b = 0; b < iters; b++) {
        double s = 0, sw = 0;
        for (size_t j = 0; j < n; j++) {
            size_t at = rng_below(key, (uint64_t)b * n + j, n);
            s += ll[at], sw += w[at];
        }
        ppl[b] = sw > 0 ? exp(-s / sw) : NAN;
    }
    *out = stats_sample_stddev(ppl, (size_t)iters);
    free(ppl);
    return 0;
}
