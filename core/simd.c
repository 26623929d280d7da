/* simd.c - the plain-C kernel set (the reference the vector sets are tested
 * against) and the run-time choice between the sets (see simd.h). */
#include "simd.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* ------------------------------------------------------------- scalar */

static float max_c(const float *x, int n) {
    float mx = x[0];
    for (int j = 0; j < n; j++) mx = mx < x[j] ? x[j] : mx;
    return mx;
}

static float exp_store_sum_c(float *x, int n, float shift) {
    float sum = 0;
    for (int j = 0; j < n; j++) {
        float e = simd_expf(x[j] - shift);
        x[j] = e;
        sum += e;
    }
    return sum;
}

static float exp_sum_c(const float *x, int n, float shift) {
    float sum = 0;
    for (int j = 0; j < n; j++) sum += simd_expf(x[j] - shift);
    return sum;
}

static void scale_c(float *x, int n, float k) {
    for (int j = 0; j < n; j++) x[j] *= k;
}

static void swiglu_forward_c(float *o, const float *a, const float *b, int n) {
    for (int j = 0; j < n; j++) {
        float sig = 1 / (1 + simd_expf(-a[j]));
        o[j] = a[j] * sig * b[j];
    }
}

static void swiglu_backward_c(float *da, float *db, const float *g, const float *a, const float *b, int n) {
    for (int j = 0; j < n; j++) {
        float sig = 1 / (1 + simd_expf(-a[j]));
        da[j] = g[j] * b[j] * sig * (1 + a[j] * (1 - sig));
        db[j] = g[j] * (a[j] * sig);
    }
}

static void adamw_c(float *p, const float *g, float *m, float *v, size_t n, const simd_adamw *k) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * k->gs;
        float mi = k->b1 * m[i] + k->c1 * gi;
        float vi = k->b2 * v[i] + k->c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi * k->inv_bc1, vhat = vi * k->inv_bc2;
        p[i] -= k->lr * (mhat / (sqrtf(vhat) + k->eps) + k->wd * p[i]);
    }
}

static const simd_set scalar_set = {
    .name = "scalar",
    .lanes = 1,
    .max = max_c,
    .exp_store_sum = exp_store_sum_c,
    .exp_sum = exp_sum_c,
    .scale = scale_c,
    .swiglu_forward = swiglu_forward_c,
    .swiglu_backward = swiglu_backward_c,
    .adamw = adamw_c,
};

/* ----------------------------------------------------------- dispatch */

/* What the CPU reports (cpuid via gcc's __builtin_cpu_supports), and what the
 * OS saves (the builtin checks XCR0 for the AVX and AVX-512 states). */
static int cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && cpu_has_avx2();
#else
    return 0;
#endif
}

const simd_set *simd_ops_named(const char *name) {
    if (!strcasecmp(name, "scalar")) return &scalar_set;
    if (!strcasecmp(name, "avx2")) return cpu_has_avx2() ? simd_avx2_set() : NULL;
    if (!strcasecmp(name, "avx512")) return cpu_has_avx512() ? simd_avx512_set() : NULL;
    return NULL;
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const simd_set *g_set = &scalar_set;
static char g_desc[160];

static void pick(void) {
    const simd_set *best = simd_ops_named("avx512");
    if (!best) best = simd_ops_named("avx2");
    if (!best) best = &scalar_set;
    const char *want = getenv("PRESIGHT_SIMD");
    const char *note = "";
    if (want && *want) {
        const simd_set *s = simd_ops_named(want);
        if (s && s->lanes <= best->lanes)
            best = s;
        else
            note = " (PRESIGHT_SIMD not available here: ignored)";
    }
    g_set = best;
    snprintf(g_desc, sizeof g_desc, "%s%s (cpu:%s%s%s)", best->name, note, cpu_has_avx512() ? " avx512f" : "",
             cpu_has_avx2() ? " avx2 fma" : "", cpu_has_avx2() ? "" : " no avx2");
}

const simd_set *simd_ops(void) {
    pthread_once(&g_once, pick);
    return g_set;
}

const char *simd_describe(void) {
    pthread_once(&g_once, pick);
    return g_desc;
}
