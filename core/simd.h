/* simd.h - the CPU backend's element-wise float kernels, chosen at run time.
 *
 * The product is built with -march=native, but one binary should run each
 * CPU at its own width: the kernels below exist as plain C (the reference),
 * AVX2+FMA (8 lanes, core/simd_avx2.c) and AVX-512 (16 lanes,
 * core/simd_avx512.c), and simd_ops() hands out the widest the CPU reports
 * (cpuid, never assumed). PRESIGHT_SIMD=scalar|avx2|avx512 picks a narrower
 * one (one wider than the CPU has is refused in favour of the widest it
 * has); `make bench` uses PRESIGHT_SIMD=avx2 as an AVX2 proxy on AVX-512
 * machines.
 *
 * Every set computes the same formulas in the same order per lane; results
 * differ from the scalar set only by the rounding of fused multiply-adds
 * and the order of sums (lane partial sums, then the tail): within 1e-6
 * relative for sums and a few ulp element-wise (tests/test_simd.c). A given
 * set is deterministic, and each element's result depends on its position
 * in the row only, not on the thread count.
 *
 * float only: the double-precision gradient-check build keeps its own loops. */
#ifndef PRESIGHT_SIMD_H
#define PRESIGHT_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* AdamW's per-step constants (backend.h, adamw_update). */
typedef struct simd_adamw {
    float b1, b2, c1, c2, inv_bc1, inv_bc2, lr, eps, wd, gs;
} simd_adamw;

typedef struct simd_set {
    const char *name; /* "scalar", "avx2", "avx512" */
    int lanes;
    /* max of x[0..n), n >= 1 (NaNs other than x[0] are skipped, as the scalar loop does) */
    float (*max)(const float *x, int n);
    /* x[j] = exp(x[j] - shift) for j < n; returns their sum */
    float (*exp_store_sum)(float *x, int n, float shift);
    /* the same sum, x left alone */
    float (*exp_sum)(const float *x, int n, float shift);
    /* x[j] *= k */
    void (*scale)(float *x, int n, float k);
    /* o = silu(a) b */
    void (*swiglu_forward)(float *o, const float *a, const float *b, int n);
    /* da = g b sig(a) (1 + a (1 - sig(a))), db = g silu(a) */
    void (*swiglu_backward)(float *da, float *db, const float *g, const float *a, const float *b, int n);
    /* AdamW on elements [0, n) */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, const simd_adamw *k);
} simd_set;

/* The active set: detected once (thread-safe), PRESIGHT_SIMD honoured. */
const simd_set *simd_ops(void);

/* A named set ("scalar", "avx2", "avx512"), or NULL when this CPU (or this
 * build) cannot run it. For tests and benchmarks. */
const simd_set *simd_ops_named(const char *name);

/* "avx512 (cpu: avx512f avx2 fma)" and the like, for bench output. */
const char *simd_describe(void);

/* exp(x) = 2^k e^r with k = round(x / ln 2), |r| <= ln2 / 2, e^r from Cephes'
 * expf polynomial: within 1.4 ulp, branch-free so that loops around it
 * vectorise (glibc's expf only vectorises under -ffast-math). x is clamped to
 * [-87, 88] (exp(-87) ~ 1.6e-38 stands in for smaller results); NaN stays
 * NaN. The vector sets evaluate exactly these steps per lane. */
static inline float simd_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f + 12582912.0f; /* + 1.5 * 2^23 rounds to an integer */
    float k = t - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float z = r * r;
    float y = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
                1.6666665459e-1f) *
                   r +
               5.0000001201e-1f) *
                  z +
              r + 1.0f;
    float kk = k == k ? k : 0.0f; /* NaN x: y is NaN already; keeps the conversion below defined */
    uint32_t bits = (uint32_t)((int32_t)kk + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* The ISA files' sets (NULL where the compiler cannot target that ISA). */
const simd_set *simd_avx2_set(void);
const simd_set *simd_avx512_set(void);

#endif
