/* simd_avx512.c - the kernels of simd.h in AVX-512F, 16 lanes (simd_body.h). */
#include <math.h>

#include "simd.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define W 16
#define TGT __attribute__((target("avx512f,avx512dq,avx2,fma")))
typedef __m512 V;
#define LD _mm512_loadu_ps
#define ST _mm512_storeu_ps
#define SET1 _mm512_set1_ps
#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps
#define MUL _mm512_mul_ps
#define DIV _mm512_div_ps
#define FMA _mm512_fmadd_ps
#define FNMA _mm512_fnmadd_ps
#define MAX _mm512_max_ps
#define MIN _mm512_min_ps
#define SQRT _mm512_sqrt_ps

/* Halves added pairwise (512 -> 256 -> 128 -> 32 bits): a fixed order. */
static inline __attribute__((always_inline)) TGT float HSUM(V x) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) TGT float HMAX(V x) {
    __m256 h = _mm256_max_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) TGT V POW2I(V k) {
    __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(k), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}

#include "simd_body.h"

static const simd_set avx512_set = {
    .name = "avx512",
    .lanes = W,
    .max = v_max,
    .exp_store_sum = v_exp_store_sum,
    .exp_sum = v_exp_sum,
    .scale = v_scale,
    .swiglu_forward = v_swiglu_forward,
    .swiglu_backward = v_swiglu_backward,
    .adamw = v_adamw,
};

const simd_set *simd_avx512_set(void) { return &avx512_set; }
#else
const simd_set *simd_avx512_set(void) { return NULL; }
#endif
