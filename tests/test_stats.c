/* test_stats.c - means, lm-eval's standard error, the deterministic bootstraps, and the
 * mutual k-NN properties (the numpy reference is tests/t_mknn.sh). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "mknn.h"
#include "rng.h"
#include "stats.h"

Test(stats, mean_and_lm_eval_stderr) {
    const double x[] = {1, 2, 3, 4};
    cr_assert_float_eq(stats_mean(x, 4), 2.5, 1e-15);
    /* sum of squares 5, / (n - 1) = 5/3, sqrt / sqrt(4) */
    cr_assert_float_eq(stats_sample_stddev(x, 4), sqrt(5.0 / 3.0), 1e-15);
    cr_assert_float_eq(stats_stderr(x, 4), sqrt(5.0 / 3.0) / 2.0, 1e-15);
    /* accuracy 0/1 items: stderr = sqrt(p(1-p) n/(n-1)) / sqrt(n) */
    const double acc[] = {1, 0, 1, 1, 0};
    cr_assert_float_eq(stats_stderr(acc, 5), sqrt(0.6 * 0.4 * 5.0 / 4.0) / sqrt(5.0), 1e-15);
    cr_assert(isnan(stats_stderr(x, 1)));
}

Test(stats, quantile_is_numpy_linear) {
    const double s[] = {1, 2, 3, 4};
    cr_assert_float_eq(stats_quantile_sorted(s, 4, 0.25), 1.75, 1e-15); /* np.quantile([1,2,3,4], .25) */
    cr_assert_float_eq(stats_quantile_sorted(s, 4, 0.975), 3.925, 1e-12);
    cr_assert_float_eq(stats_quantile_sorted(s, 4, 1.0), 4.0, 1e-15);
    cr_assert_float_eq(stats_quantile_sorted(s, 4, 0.0), 1.0, 1e-15);
}

Test(stats, bootstrap_is_deterministic_and_covers_the_mean) {
    double x[200];
    for (int i = 0; i < 200; i++) x[i] = rng_uniform(7, (uint64_t)i) < 0.3;
    stats_interval a, b, c;
    ps_error err;
    cr_assert_eq(stats_bootstrap_mean(x, 200, 1000, 0.95, 42, &a, &err), 0);
    cr_assert_eq(stats_bootstrap_mean(x, 200, 1000, 0.95, 42, &b, &err), 0);
    cr_assert_eq(stats_bootstrap_mean(x, 200, 1000, 0.95, 43, &c, &err), 0);
    cr_assert(a.lo == b.lo && a.hi == b.hi, "same seed, same interval");
    cr_assert(a.lo != c.lo || a.hi != c.hi, "another seed, another interval");
    double mu = stats_mean(x, 200), se = stats_stderr(x, 200);
    cr_assert(a.lo < mu && mu < a.hi);
    /* the percentile interval's half-width is about 1.96 standard errors */
    cr_assert(fabs((a.hi - a.lo) / 2 - 1.96 * se) < 0.25 * 1.96 * se, "half-width %g vs 1.96 se %g",
              (a.hi - a.lo) / 2, 1.96 * se);
    cr_assert_eq(stats_bootstrap_mean(x, 0, 10, 0.95, 1, &a, &err), -1);
    cr_assert_eq(stats_bootstrap_mean(x, 5, 10, 1.5, 1, &a, &err), -1);
}

Test(stats, paired_bootstrap) {
    double a[100], b[100];
    for (int i = 0; i < 100; i++) a[i] = b[i] = rng_uniform(3, (uint64_t)i) < 0.5;
    stats_interval r;
    ps_error err;
    cr_assert_eq(stats_bootstrap_paired(a, b, 100, 500, 0.95, 1, &r, &err), 0);
    cr_assert(r.lo == 0 && r.hi == 0, "identical runs differ by exactly 0");
    for (int i = 0; i < 100; i++) a[i] = b[i] + (i % 4 == 0); /* a is better on a quarter */
    cr_assert_eq(stats_bootstrap_paired(a, b, 100, 500, 0.95, 1, &r, &err), 0);
    cr_assert(r.lo > 0.1 && r.hi < 0.4 && r.lo < 0.25 && 0.25 < r.hi, "[%g, %g]", r.lo, r.hi);
}

Test(stats, weighted_perplexity) {
    /* two documents: ll -10 over 5 words, -20 over 5 words: exp(30/10) */
    const double ll[] = {-10, -20}, w[] = {5, 5};
    cr_assert_float_eq(stats_weighted_perplexity(ll, w, 2), exp(3.0), 1e-12);
    double se;
    ps_error err;
    cr_assert_eq(stats_weighted_perplexity_stderr(ll, w, 2, 200, 1, &se, &err), 0);
    cr_assert(se > 0 && isfinite(se));
    const double same[] = {-10, -10};
    cr_assert_eq(stats_weighted_perplexity_stderr(same, w, 2, 200, 1, &se, &err), 0);
    cr_assert_float_eq(se, 0.0, 1e-12);
}

/* ------------------------------------------------------------ mutual k-NN */

static float *random_features(size_t n, int layers, int dim, uint64_t key) {
    float *x = malloc(sizeof *x * n * layers * dim);
    for (size_t i = 0; i < n * layers * dim; i++) x[i] = (float)rng_normal(key, i);
    return x;
}

Test(mknn, identical_features_score_one) {
    size_t n = 80;
    float *a = random_features(n, 2, 8, 11), *b = malloc(sizeof *b * n * 2 * 8);
    memcpy(b, a, sizeof *b * n * 2 * 8);
    ps_error err;
    cr_assert_eq(mknn_prepare(a, n, 2, 8, 0.95, MKNN_QUANTILE_MEAN, &err), 0, "%s", err.msg);
    cr_assert_eq(mknn_prepare(b, n, 2, 8, 0.95, MKNN_QUANTILE_MEAN, &err), 0);
    mknn_result r;
    cr_assert_eq(mknn_align(a, 2, 8, b, 2, 8, n, 20, &r, &err), 0, "%s", err.msg);
    cr_assert_float_eq(r.score, 1.0, 1e-15);
    cr_assert_float_eq(r.pairs[0], 1.0, 1e-15);
    cr_assert_float_eq(r.pairs[3], 1.0, 1e-15);
    cr_assert(r.pairs[1] < 0.5, "different layers of random features are not aligned: %g", r.pairs[1]);
    cr_assert(r.layer_a == 0 && r.layer_b == 0, "the first strictly best pair is kept");
    mknn_result_free(&r);
    free(a), free(b);
}

Test(mknn, independent_features_score_about_k_over_n_minus_1) {
    size_t n = 400;
    int k = 20;
    float *a = random_features(n, 1, 32, 21), *b = random_features(n, 1, 32, 22);
    ps_error err;
    cr_assert_eq(mknn_prepare(a, n, 1, 32, 0.95, MKNN_QUANTILE_EXACT, &err), 0);
    cr_assert_eq(mknn_prepare(b, n, 1, 32, 0.95, MKNN_QUANTILE_EXACT, &err), 0);
    mknn_result r;
    cr_assert_eq(mknn_align(a, 1, 32, b, 1, 32, n, k, &r, &err), 0);
    double expect = (double)k / (double)(n - 1);
    /* each item's overlap is hypergeometric, variance about k p (1-p); the mean of 400 */
    double sd = sqrt(k * expect * (1 - expect)) / k / sqrt((double)n);
    cr_assert(fabs(r.score - expect) < 5 * sd, "score %g, expected %g +- %g", r.score, expect, 5 * sd);
    mknn_result_free(&r);
    free(a), free(b);
}

Test(mknn, neighbours_exclude_self_and_order_by_similarity) {
    /* four points on a line after normalisation: 2-d unit vectors at angles 0, 10, 30, 90 degrees */
    float x[8];
    const double deg[] = {0, 10, 30, 90};
    for (int i = 0; i < 4; i++) x[2 * i] = (float)cos(deg[i] * M_PI / 180), x[2 * i + 1] = (float)sin(deg[i] * M_PI / 180);
    int32_t nn[8];
    ps_error err;
    cr_assert_eq(mknn_neighbours(x, 4, 2, 2, 2, nn, &err), 0);
    cr_assert(nn[0] == 1 && nn[1] == 2, "0: %d %d", nn[0], nn[1]);
    cr_assert(nn[2] == 0 && nn[3] == 2, "1: %d %d", nn[2], nn[3]);
    cr_assert(nn[4] == 1 && nn[5] == 0, "2: %d %d", nn[4], nn[5]);
    cr_assert(nn[6] == 2 && nn[7] == 1, "3: %d %d", nn[6], nn[7]);
    cr_assert_eq(mknn_neighbours(x, 4, 2, 2, 4, nn, &err), -1, "k must be below n");
    cr_assert(strstr(err.msg, "k = 4"));
}

Test(mknn, clamp_threshold_modes) {
    /* one item, one layer, values 1..20: exact index int(.95*20) = 19 -> 20 (no clamp);
     * the mean mode's linear quantile at .95 is 1 + .95*19 = 19.05 */
    float x[20], y[20];
    for (int i = 0; i < 20; i++) x[i] = y[i] = (float)(i + 1);
    ps_error err;
    cr_assert_eq(mknn_prepare(x, 1, 1, 20, 0.95, MKNN_QUANTILE_MEAN, &err), 0);
    cr_assert_eq(mknn_prepare(y, 1, 1, 20, 0.95, MKNN_QUANTILE_EXACT, &err), 0);
    cr_assert_float_eq(x[19] / x[18], 19.05f / 19.0f, 1e-6, "the largest value is clamped to 19.05");
    cr_assert_float_eq(y[19] / y[18], 20.0f / 19.0f, 1e-6, "exact: nothing clamped");
    float bad[2] = {1, NAN};
    cr_assert_eq(mknn_prepare(bad, 1, 1, 2, 0.95, MKNN_QUANTILE_MEAN, &err), -1);
}

Test(mknn, pool_mean_and_encoder_average) {
    /* 2 layers x 3 tokens x 2 dims; pool tokens [1, 3) */
    const float hidden[] = {1, 2, 3, 4, 5, 6, /* layer 0 */ 10, 20, 30, 40, 50, 60};
    float out[4];
    ps_error err;
    cr_assert_eq(mknn_pool_mean(hidden, 2, 6, 2, 1, 3, out, &err), 0);
    cr_expect(out[0] == 4 && out[1] == 5 && out[2] == 40 && out[3] == 50, "%g %g %g %g", out[0], out[1], out[2], out[3]);
    cr_expect_eq(mknn_pool_mean(hidden, 2, 6, 2, 2, 2, out, &err), -1);
    /* an LLM identical to encoder 0 and independent of encoder 1: mean of 1 and about k/(n-1) */
    size_t n = 100;
    float *llm = random_features(n, 1, 8, 31), *same = malloc(sizeof *same * n * 8), *other = random_features(n, 2, 8, 32);
    memcpy(same, llm, sizeof *same * n * 8);
    mknn_prepare(llm, n, 1, 8, 0.95, MKNN_QUANTILE_MEAN, &err);
    mknn_prepare(same, n, 1, 8, 0.95, MKNN_QUANTILE_MEAN, &err);
    mknn_prepare(other, n, 2, 8, 0.95, MKNN_QUANTILE_MEAN, &err);
    const float *vision[] = {same, other};
    const int layers[] = {1, 2}, dims[] = {8, 8};
    double mean;
    mknn_result each[2];
    cr_assert_eq(mknn_align_encoders(llm, 1, 8, vision, layers, dims, 2, n, 10, &mean, each, &err), 0, "%s", err.msg);
    cr_expect_float_eq(each[0].score, 1.0, 1e-15);
    cr_expect(each[1].score < 0.3, "independent: %g", each[1].score);
    cr_expect_float_eq(mean, (1.0 + each[1].score) / 2, 1e-15);
    mknn_result_free(&each[0]), mknn_result_free(&each[1]);
    free(llm), free(same), free(other);
}
