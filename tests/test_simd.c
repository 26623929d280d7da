/* test_simd.c - each vector kernel set of core/simd.h against the plain-C
 * set, on every set this CPU can run (AVX2, AVX-512; a set the CPU lacks is
 * reported and skipped), and the plain-C exp against libm's in double.
 *
 * Tolerances: element-wise results within 4e-7 relative (a few ulp: fused
 * multiply-adds round once where plain C rounds twice) plus 1e-30 absolute;
 * where the formula cancels (AdamW's moment update b1 m + (1 - b1) g, the
 * SwiGLU gate gradient's 1 + a (1 - sig a)) within 4e-7 of the row's largest
 * value instead; sums within 1e-6 relative (W lane partial sums instead of
 * one chain).
 * Lengths cover the tail (n mod W != 0), one element, and a vocab row.
 * Negative controls: a result off by 1e-5 relative, and a NaN where the
 * reference is finite, must fail the same comparison. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "simd.h"

#define ELEM_TOL 4e-7
#define SUM_TOL 1e-6

static const int lengths[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 1344, 8192 + 5};
#define N_LENGTHS (int)(sizeof lengths / sizeof lengths[0])
#define MAX_LEN (8192 + 5)

static void fill(float *x, int n, uint64_t seed, double lo, double hi) {
    uint64_t key = rng_key(seed, "test_simd");
    for (int i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * rng_uniform(key, (uint64_t)i));
}

/* |got - want| <= tol |want| + 1e-30 for every element; NaN only where want is NaN. */
static int close_all(const float *got, const float *want, int n, double tol, int *at) {
    for (int i = 0; i < n; i++) {
        if (isnan(want[i]) && isnan(got[i])) continue;
        double e = fabs((double)got[i] - (double)want[i]);
        if (!(e <= tol * fabs((double)want[i]) + 1e-30)) {
            *at = i;
            return 0;
        }
    }
    return 1;
}

/* The same against tol x the largest |want| of the row (for cancelling formulas). */
static int close_scaled(const float *got, const float *want, int n, double tol, int *at) {
    double scale = 0;
    for (int i = 0; i < n; i++)
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
    for (int i = 0; i < n; i++) {
        if (isnan(want[i]) && isnan(got[i])) continue;
        if (!(fabs((double)got[i] - (double)want[i]) <= tol * scale + 1e-30)) {
            *at = i;
            return 0;
        }
    }
    return 1;
}

static void expect_scaled(const char *set, const char *what, int n, const float *got, const float *want,
                          double tol) {
    int at = -1;
    cr_expect(close_scaled(got, want, n, tol, &at), "%s %s n=%d: [%d] got %.9g, want %.9g", set, what, n, at,
              at >= 0 ? (double)got[at] : 0.0, at >= 0 ? (double)want[at] : 0.0);
}

static void expect_close(const char *set, const char *what, int n, const float *got, const float *want,
                         double tol) {
    int at = -1;
    cr_expect(close_all(got, want, n, tol, &at), "%s %s n=%d: [%d] got %.9g, want %.9g", set, what, n, at,
              at >= 0 ? (double)got[at] : 0.0, at >= 0 ? (double)want[at] : 0.0);
}

static void expect_sum(const char *set, const char *what, int n, float got, float want) {
    cr_expect(fabs((double)got - want) <= SUM_TOL * fabs((double)want), "%s %s n=%d: sum %.9g, want %.9g", set,
              what, n, (double)got, (double)want);
}

/* Every kernel of set v against the scalar set c, on inputs in [lo, hi]. */
static void compare_sets(const simd_set *v, const simd_set *c, double lo, double hi, uint64_t seed) {
    float *x = malloc(MAX_LEN * sizeof *x), *y = malloc(MAX_LEN * sizeof *y), *z = malloc(MAX_LEN * sizeof *z);
    float *a = malloc(MAX_LEN * sizeof *a), *b = malloc(MAX_LEN * sizeof *b), *g = malloc(MAX_LEN * sizeof *g);
    float *o1 = malloc(MAX_LEN * sizeof *o1), *o2 = malloc(MAX_LEN * sizeof *o2);
    float *p1 = malloc(MAX_LEN * sizeof *p1), *p2 = malloc(MAX_LEN * sizeof *p2);
    float *m1 = malloc(MAX_LEN * sizeof *m1), *m2 = malloc(MAX_LEN * sizeof *m2);
    float *v1 = malloc(MAX_LEN * sizeof *v1), *v2 = malloc(MAX_LEN * sizeof *v2);
    cr_assert(x && y && z && a && b && g && o1 && o2 && p1 && p2 && m1 && m2 && v1 && v2);
    for (int li = 0; li < N_LENGTHS; li++) {
        int n = lengths[li];
        fill(x, n, seed + (uint64_t)li, lo, hi);
        cr_expect_eq(v->max(x, n), c->max(x, n), "%s max n=%d", v->name, n);
        float mx = c->max(x, n);
        expect_sum(v->name, "exp_sum", n, v->exp_sum(x, n, mx), c->exp_sum(x, n, mx));
        memcpy(y, x, n * sizeof *x), memcpy(z, x, n * sizeof *x);
        float sy = v->exp_store_sum(y, n, mx), sz = c->exp_store_sum(z, n, mx);
        expect_sum(v->name, "exp_store_sum", n, sy, sz);
        cr_expect_eq(sy, v->exp_sum(x, n, mx), "%s: exp_store_sum and exp_sum must agree exactly (n=%d)", v->name, n);
        expect_close(v->name, "exp_store_sum values", n, y, z, ELEM_TOL);
        v->scale(y, n, 0.37f), c->scale(z, n, 0.37f);
        expect_close(v->name, "scale", n, y, z, ELEM_TOL);

        fill(a, n, seed + 100 + li, lo, hi), fill(b, n, seed + 200 + li, -2, 2), fill(g, n, seed + 300 + li, -1, 1);
        v->swiglu_forward(o1, a, b, n), c->swiglu_forward(o2, a, b, n);
        expect_close(v->name, "swiglu_forward", n, o1, o2, ELEM_TOL);
        v->swiglu_backward(o1, p1, g, a, b, n), c->swiglu_backward(o2, p2, g, a, b, n);
        expect_scaled(v->name, "swiglu_backward da", n, o1, o2, ELEM_TOL);
        expect_close(v->name, "swiglu_backward db", n, p1, p2, ELEM_TOL);

        fill(p1, n, seed + 400 + li, -1, 1), fill(m1, n, seed + 500 + li, -1e-3, 1e-3);
        fill(v1, n, seed + 600 + li, 0, 1e-6);
        memcpy(p2, p1, n * sizeof *p1), memcpy(m2, m1, n * sizeof *m1), memcpy(v2, v1, n * sizeof *v1);
        simd_adamw k = {0.9f, 0.95f, 0.1f, 0.05f, 1 / (1 - 0.729f), 1 / (1 - 0.857375f), 1e-3f, 1e-8f, 0.1f, 0.5f};
        fill(g, n, seed + 700 + li, -1e-2, 1e-2);
        v->adamw(p1, g, m1, v1, (size_t)n, &k), c->adamw(p2, g, m2, v2, (size_t)n, &k);
        expect_scaled(v->name, "adamw param", n, p1, p2, ELEM_TOL);
        expect_scaled(v->name, "adamw m", n, m1, m2, ELEM_TOL);
        expect_scaled(v->name, "adamw v", n, v1, v2, ELEM_TOL);
    }
    free(x), free(y), free(z), free(a), free(b), free(g), free(o1), free(o2);
    free(p1), free(p2), free(m1), free(m2), free(v1), free(v2);
}

static void compare_named(const char *name) {
    const simd_set *v = simd_ops_named(name), *c = simd_ops_named("scalar");
    cr_assert_not_null(c);
    if (!v) {
        cr_log_info("test_simd: this CPU has no %s: that set is not tested here", name);
        return;
    }
    cr_assert_str_eq(v->name, name);
    compare_sets(v, c, -4, 4, 1);       /* logits, gates */
    compare_sets(v, c, -120, 100, 2);   /* clamped exp range, overflowing sigmoid */
    compare_sets(v, c, -1e-3, 1e-3, 3); /* near zero */
}

Test(simd, avx2_equals_scalar) { compare_named("avx2"); }

Test(simd, avx512_equals_scalar) { compare_named("avx512"); }

/* The plain-C exp itself, against libm in double: within 2 ulp on [-87, 88]. */
Test(simd, scalar_exp_against_libm) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = (float)(-87.0 + 175.0 * i / 200000.0);
        double want = exp((double)x), got = simd_expf(x);
        double ulp = ldexp(1.0, ilogb(want) - 23);
        double e = fabs(got - want) / ulp;
        if (e > worst) worst = e;
    }
    cr_expect(worst <= 2.0, "simd_expf: %.2f ulp from libm's exp", worst);
    cr_expect(isnan(simd_expf(NAN)), "a NaN must stay NaN");
}

/* NaN in, NaN out, in every set (a diverged run must not look finite). */
Test(simd, nan_propagates) {
    const char *names[] = {"scalar", "avx2", "avx512"};
    for (int s = 0; s < 3; s++) {
        const simd_set *v = simd_ops_named(names[s]);
        if (!v) continue;
        float x[40];
        for (int i = 0; i < 40; i++) x[i] = (float)i * 0.1f;
        x[5] = NAN, x[37] = NAN;
        float mx = v->max(x, 40);
        cr_expect(!isnan(mx), "%s max: a NaN past x[0] is skipped, as in the scalar loop", names[s]);
        cr_expect(isnan(v->exp_sum(x, 40, mx)), "%s exp_sum must be NaN", names[s]);
        float o[40], b[40];
        for (int i = 0; i < 40; i++) b[i] = 1;
        v->swiglu_forward(o, x, b, 40);
        cr_expect(isnan(o[5]) && isnan(o[37]) && !isnan(o[6]), "%s swiglu NaN lanes", names[s]);
    }
}

/* The active set is one this CPU can run, and PRESIGHT_SIMD narrower sets exist. */
Test(simd, active_set_is_runnable) {
    const simd_set *a = simd_ops();
    cr_assert_not_null(a);
    cr_assert_not_null(simd_ops_named(a->name), "%s", simd_describe());
    cr_assert_null(simd_ops_named("avx1024"));
    cr_assert(strstr(simd_describe(), a->name) == simd_describe(), "%s", simd_describe());
}

/* Negative controls: the comparison catches a 1e-5 relative error and a stray NaN. */
Test(simd, negative_control) {
    float want[20], got[20];
    for (int i = 0; i < 20; i++) want[i] = got[i] = 1.0f + (float)i;
    int at = -1;
    cr_assert(close_all(got, want, 20, ELEM_TOL, &at));
    got[13] *= 1.00001f;
    cr_assert(!close_all(got, want, 20, ELEM_TOL, &at) && at == 13, "an error of 1e-5 must fail");
    cr_assert(!close_scaled(got, want, 20, 1e-6, &at) && at == 13, "an error of 2e-4 of the scale must fail");
    got[13] = want[13], got[4] = NAN;
    cr_assert(!close_all(got, want, 20, ELEM_TOL, &at) && at == 4, "a NaN must fail");
    cr_assert(!close_scaled(got, want, 20, ELEM_TOL, &at) && at == 4, "a NaN must fail");
}

/* PRESIGHT_SIMD picks the set (each Criterion test runs in a process of its
 * own, so the one-time choice is made here, after setenv). */
Test(simd, env_picks_scalar) {
    setenv("PRESIGHT_SIMD", "scalar", 1);
    cr_assert_str_eq(simd_ops()->name, "scalar", "%s", simd_describe());
}

/* A set the CPU lacks (or a misspelt name) is ignored in favour of the widest, and said so. */
Test(simd, env_unavailable_is_ignored) {
    setenv("PRESIGHT_SIMD", "avx1024", 1);
    const simd_set *widest = simd_ops_named("avx512") ? simd_ops_named("avx512")
                             : simd_ops_named("avx2") ? simd_ops_named("avx2")
                                                      : simd_ops_named("scalar");
    cr_assert_eq(simd_ops(), widest, "%s", simd_describe());
    cr_assert(strstr(simd_describe(), "ignored") != NULL, "%s", simd_describe());
}
