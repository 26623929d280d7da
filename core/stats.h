/* stats.h - the statistics every evaluation result carries.
 *
 *   mean(x)            = sum x_i / n
 *   stderr(x)          = sqrt(sum (x_i - mean)^2 / (n - 1)) / sqrt(n)     (lm-evaluation-harness's
 *                        mean_stderr: the sample standard deviation over sqrt n; NaN for n < 2)
 *   bootstrap of mean  : B resamples of n items drawn with replacement, item j of resample b
 *                        = x[rng_below(key, b * n + j, n)] with key = rng_key(seed, purpose); the
 *                        interval is the (1-level)/2 and (1+level)/2 quantiles of the B means,
 *                        linearly interpolated (numpy's default quantile).
 *   paired bootstrap   : the same on d_i = a_i - b_i (two runs scored on the same items).
 *   weighted perplexity: exp(-sum ll_i / sum w_i) (lm-eval's weighted_perplexity: w = words,
 *                        bytes or tokens of item i); its standard error is the standard
 *                        deviation of the statistic over B item resamples.
 *
 * Everything is a pure function of its inputs and the seed: the same call gives the same
 * interval on any machine and any number of ranks. */
#ifndef PRESIGHT_STATS_H
#define PRESIGHT_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct stats_interval {
    double lo, hi;
} stats_interval;

double stats_mean(const double *x, size_t n);
double stats_sample_stddev(const double *x, size_t n);
double stats_stderr(const double *x, size_t n);

/* Linear-interpolation quantile of sorted[0..n) at q in [0, 1] (numpy's "linear"). */
double stats_quantile_sorted(const double *sorted, size_t n, double q);

/* Percentile bootstrap interval of the mean of x (iters >= 1, 0 < level < 1, n >= 1). */
int stats_bootstrap_mean(const double *x, size_t n, int iters, double level, uint64_t seed, stats_interval *out,
                         ps_error *err);

/* Percentile bootstrap interval of mean(a - b) over the same n items. */
int stats_bootstrap_paired(const double *a, const double *b, size_t n, int iters, double level, uint64_t seed,
                           stats_interval *out, ps_error *err);

/* exp(-sum ll / sum w); NaN when sum w <= 0. */
double stats_weighted_perplexity(const double *ll, const double *w, size_t n);

/* Bootstrap standard error of stats_weighted_perplexity (NaN for n < 2). */
int stats_weighted_perplexity_stderr(const double *ll, const double *w, size_t n, int iters, uint64_t seed,
                                     double *out, ps_error *err);

#endif
