/* gemm.cu - bf16 GEMMs through cuBLASLt with fp32 accumulation.
 *
 * The API is row-major (as blas_gemm and backend.h); cuBLASLt is
 * column-major, so C = op(A) op(B) is issued as C^T = op(B)^T op(A)^T: the
 * row-major buffers, read column-major, are already the transposes.
 *
 * One descriptor set and heuristic result is cached per (shape, strides,
 * types, batch, pointer alignment): the heuristic runs once per shape, and
 * the alignment in the key keeps an algorithm that needs 256-byte aligned
 * operands from being used on a view at an odd offset. Workspace: 32 MiB (the
 * size cuBLAS recommends for Hopper), allocated once. */
#include <cublasLt.h>
#include <stdio.h>
#include <string.h>

#include <map>
#include <tuple>

#include "gpu_internal.cuh"

#define GEMM_WORKSPACE_BYTES ((size_t)32 << 20)

namespace {

struct GemmKey {
    int ta, tb, m, n, k, lda, ldb, ldc, c_type, batch, al_a, al_b, al_c, al_d;
    long long sa, sb, sc;
    bool operator<(const GemmKey &o) const {
        return std::tie(ta, tb, m, n, k, lda, ldb, ldc, c_type, batch, al_a, al_b, al_c, al_d, sa, sb, sc) <
               std::tie(o.ta, o.tb, o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.c_type, o.batch, o.al_a, o.al_b, o.al_c,
                        o.al_d, o.sa, o.sb, o.sc);
    }
};

struct GemmPlan {
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t a = NULL, b = NULL, c = NULL;
    cublasLtMatmulAlgo_t algo;
    int ok = 0;
};

cublasLtHandle_t g_lt = NULL;
void *g_ws = NULL;
std::map<GemmKey, GemmPlan> *g_plans = NULL;

const char *lt_status(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
    }
}

void free_plan(GemmPlan &p) {
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    p = GemmPlan();
}

#define LT_TRY(call)                                                                                                 \
    do {                                                                                                             \
        cublasStatus_t s_ = (call);                                                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                           \
            gpu_record_error("cuBLASLt %s: %s (GEMM %s%s m=%d n=%d k=%d batch=%d)", #call, lt_status(s_),            \
                             key.ta ? "T" : "N", key.tb ? "T" : "N", key.m, key.n, key.k, key.batch);                \
            free_plan(p);                                                                                            \
            return p;                                                                                                \
        }                                                                                                            \
    } while (0)

GemmPlan make_plan(const GemmKey &key) {
    GemmPlan p;
    /* Column-major problem: C'[n x m] = op(B') op(A'), where A' is the row-major B, B' the row-major A. */
    const int m2 = key.n, n2 = key.m, k2 = key.k;
    const cudaDataType_t c_type = key.c_type == GPU_F32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasOperation_t op_a = key.tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* op on A' (= row-major B) */
    cublasOperation_t op_b = key.ta ? CUBLAS_OP_T : CUBLAS_OP_N; /* op on B' (= row-major A) */
    uint64_t a_rows = key.tb ? (uint64_t)k2 : (uint64_t)m2, a_cols = key.tb ? (uint64_t)m2 : (uint64_t)k2;
    uint64_t b_rows = key.ta ? (uint64_t)n2 : (uint64_t)k2, b_cols = key.ta ? (uint64_t)k2 : (uint64_t)n2;
    LT_TRY(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    LT_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    LT_TRY(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, a_rows, a_cols, key.ldb));
    LT_TRY(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, b_rows, b_cols, key.lda));
    LT_TRY(cublasLtMatrixLayoutCreate(&p.c, c_type, (uint64_t)m2, (uint64_t)n2, key.ldc));
    if (key.batch > 1) {
        int32_t bc = key.batch;
        int64_t sa = key.sb, sb = key.sa, sc = key.sc; /* A' is B, B' is A */
        LT_TRY(cublasLtMatrixLayoutSetAttribute(p.a, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        LT_TRY(cublasLtMatrixLayoutSetAttribute(p.a, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa));
        LT_TRY(cublasLtMatrixLayoutSetAttribute(p.b, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        LT_TRY(cublasLtMatrixLayoutSetAttribute(p.b, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb));
        LT_TRY(cublasLtMatrixLayoutSetAttribute(p.c, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        LT_TRY(cublasLtMatrixLayoutSetAttribute(p.c, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc));
    }
    cublasLtMatmulPreference_t pref = NULL;
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = GEMM_WORKSPACE_BYTES;
    uint32_t al_a = (uint32_t)key.al_b, al_b = (uint32_t)key.al_a, al_c = (uint32_t)key.al_c,
             al_d = (uint32_t)key.al_d;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                            sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d);
    cublasLtMatmulHeuristicResult_t res[8];
    int returned = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(g_lt, p.desc, p.a, p.b, p.c, p.c, pref, 8, res, &returned);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || returned == 0) {
        gpu_record_error("cuBLASLt heuristic: %s, %d algorithms (GEMM %s%s m=%d n=%d k=%d lda=%d ldb=%d ldc=%d "
                         "batch=%d c=%s alignments %d/%d/%d/%d)",
                         lt_status(s), returned, key.ta ? "T" : "N", key.tb ? "T" : "N", key.m, key.n, key.k, key.lda,
                         key.ldb, key.ldc, key.batch, key.c_type == GPU_F32 ? "f32" : "bf16", key.al_a, key.al_b,
                         key.al_c, key.al_d);
        free_plan(p);
        return p;
    }
    p.algo = res[0].algo;
    p.ok = 1;
    return p;
}

} // namespace

int gpu_gemm_init_(ps_error *err) {
    if (g_lt) return 0;
    cublasStatus_t s = cublasLtCreate(&g_lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        g_lt = NULL;
        return ps_fail(err, "cublasLtCreate: %s", lt_status(s));
    }
    g_ws = gpu_malloc(GEMM_WORKSPACE_BYTES);
    if (!g_ws) {
        cublasLtDestroy(g_lt);
        g_lt = NULL;
        return ps_fail(err, "cannot allocate the %zu MiB cuBLASLt workspace", GEMM_WORKSPACE_BYTES >> 20);
    }
    if (!g_plans) g_plans = new std::map<GemmKey, GemmPlan>;
    return 0;
}

void gpu_gemm_shutdown_(void) {
    if (g_plans) {
        for (auto &kv : *g_plans) free_plan(kv.second);
        g_plans->clear();
    }
    if (g_ws) gpu_free(g_ws);
    g_ws = NULL;
    if (g_lt) cublasLtDestroy(g_lt);
    g_lt = NULL;
}

int gpu_gemm_cache_size(void) { return g_plans ? (int)g_plans->size() : 0; }

/* D = alpha op(A) op(B) + beta C (row-major); C may be NULL when beta == 0, or alias D. */
static void gemm_impl(int trans_a, int trans_b, int m, int n, int k, float alpha, const void *A, int lda,
                      long long stride_a, const void *B, int ldb, long long stride_b, float beta, const void *C,
                      void *D, int c_type, int ldc, long long stride_c, int batch, const char *what) {
    if (m <= 0 || n <= 0 || batch <= 0) return;
    if (!g_lt) {
        gpu_record_error("%s: gpu_init has not run", what);
        return;
    }
    if (k <= 0) { /* an empty sum: D = beta C */
        gpu_record_error("%s: k = %d", what, k);
        return;
    }
    if (!C) C = D;
    GemmKey key;
    memset(&key, 0, sizeof key);
    key.ta = trans_a ? 1 : 0;
    key.tb = trans_b ? 1 : 0;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.c_type = c_type;
    key.batch = batch;
    key.sa = batch > 1 ? stride_a : 0;
    key.sb = batch > 1 ? stride_b : 0;
    key.sc = batch > 1 ? stride_c : 0;
    key.al_a = gpu_align_of(A);
    key.al_b = gpu_align_of(B);
    key.al_c = gpu_align_of(C);
    key.al_d = gpu_align_of(D);
    auto it = g_plans->find(key);
    if (it == g_plans->end()) it = g_plans->emplace(key, make_plan(key)).first;
    GemmPlan &p = it->second;
    if (!p.ok) {
        gpu_record_error("%s: no usable cuBLASLt plan (GEMM %s%s m=%d n=%d k=%d)", what, key.ta ? "T" : "N",
                         key.tb ? "T" : "N", m, n, k);
        return;
    }
    cublasStatus_t s = cublasLtMatmul(g_lt, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, D, p.c, &p.algo, g_ws,
                                      GEMM_WORKSPACE_BYTES, gpu_stream_());
    if (s != CUBLAS_STATUS_SUCCESS)
        gpu_record_error("%s: cublasLtMatmul: %s (GEMM %s%s m=%d n=%d k=%d batch=%d)", what, lt_status(s),
                         key.ta ? "T" : "N", key.tb ? "T" : "N", m, n, k, batch);
    gpu_after_launch(what);
}

void gpu_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const void *A, int lda, long long stride_a,
              const void *B, int ldb, long long stride_b, float beta, void *C, int c_type, int ldc,
              long long stride_c, int batch) {
    gemm_impl(trans_a, trans_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, beta != 0 ? C : NULL, C,
              c_type, ldc, stride_c, batch, "gpu_gemm");
}

void gpu_matmul_forward(gpu_bf16 *out, const gpu_bf16 *in, const gpu_bf16 *w, const gpu_bf16 *residual, int n,
                        int in_dim, int out_dim) {
    /* out[n, out] = in[n, in] @ w[out, in]^T (+ residual) */
    gemm_impl(0, 1, n, out_dim, in_dim, 1.0f, in, in_dim, 0, w, in_dim, 0, residual ? 1.0f : 0.0f,
              residual ? (const void *)residual : NULL, out, GPU_BF16, out_dim, 0, 1, "gpu_matmul_forward");
}

void gpu_matmul_backward(gpu_bf16 *din, float *dw, const gpu_bf16 *dout, const gpu_bf16 *in, const gpu_bf16 *w, int n,
                         int in_dim, int out_dim) {
    /* din[n, in] = dout[n, out] @ w[out, in] */
    if (din)
        gemm_impl(0, 0, n, in_dim, out_dim, 1.0f, dout, out_dim, 0, w, in_dim, 0, 0.0f, NULL, din, GPU_BF16, in_dim,
                  0, 1, "gpu_matmul_backward(din)");
    /* dw[out, in] += dout^T @ in, fp32 */
    if (dw)
        gemm_impl(1, 0, out_dim, in_dim, n, 1.0f, dout, out_dim, 0, in, in_dim, 0, 1.0f, dw, dw, GPU_F32, in_dim, 0,
                  1, "gpu_matmul_backward(dw)");
}
