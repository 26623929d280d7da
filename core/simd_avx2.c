/* simd_avx2.c - the kernels of simd.h in AVX2 + FMA, 8 lanes (simd_body.h). */
#include <math.h>

#include "simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define W 8
#define TGT __attribute__((target("avx2,fma")))
typedef __m256 V;
#define LD _mm256_loadu_ps
#define ST _mm256_storeu_ps
#define SET1 _mm256_set1_ps
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define MUL _mm256_mul_ps
#define DIV _mm256_div_ps
#define FMA _mm256_fmadd_ps
#define FNMA _mm256_fnmadd_ps
#define MAX _mm256_max_ps
#define MIN _mm256_min_ps
#define SQRT _mm256_sqrt_ps

/* Pairwise: (l0 + l4) + (l2 + l6) + ... a fixed order. */
static inline __attribute__((always_inline)) TGT float HSUM(V x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) TGT float HMAX(V x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) TGT V POW2I(V k) {
    __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

#include "simd_body.h"

static const simd_set avx2_set = {
    .name = "avx2",
    .lanes = W,
    .max = v_max,
    .exp_store_sum = v_exp_store_sum,
    .exp_sum = v_exp_sum,
    .scale = v_scale,
    .swiglu_forward = v_swiglu_forward,
    .swiglu_backward = v_swiglu_backward,
    .adamw = v_adamw,
};

const simd_set *simd_avx2_set(void) { return &avx2_set; }
#else
const simd_set *simd_avx2_set(void) { return NULL; }
#endif
