/* backend_cpu.c - the CPU implementation of the operations table (backend.h).
 *
 * One source for both precisions: `real` is float in the product and double
 * in the gradient-check build (-DPRESIGHT_REAL_DOUBLE).
 *
 * Speed: the matrix products (linear layers and the attention score/value
 * products) go through blas_gemm; everything else is a single pass of
 * OpenMP-parallel, vectorisable loops. Loops over fewer than PAR_MIN elements
 * stay on one thread (a parallel region costs more than they do). All the
 * threads are OpenMP's: blas_gemm splits big GEMMs over them and runs the
 * BLAS itself single-threaded (see blas.c for why), and attention runs its
 * (sequence, head) tasks in parallel with one-thread GEMMs inside.
 *
 * Determinism: no atomics, static schedules only, and every reduction has a
 * fixed order that does not depend on the thread count (per-column or
 * per-chunk partial sums combined in order). The same inputs give
 * bit-identical outputs run to run with the same thread count; all but the
 * GEMM-based ops (matmul, attention) even agree across thread counts. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "blas.h"

#include "simd.h"

/* Loops below this many elements run on one thread. */
#define PAR_MIN 32768

/* Work units for order-fixed reductions. */
#define MAX_CHUNKS 4096

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------------ exp */

#if REAL_IS_DOUBLE
static inline real exp_r(real x) { return exp(x); }
static inline real sqrt_r(real x) { return sqrt(x); }
#else
static inline real sqrt_r(real x) { return sqrtf(x); }
/* simd.h's expf (Cephes, 1.4 ulp, branch-free so that loops around it vectorise). */
static inline float exp_r(float x) { return simd_expf(x); }
#endif

/* The float kernels of the active instruction set (simd.h), and plain loops
 * in the double build. */
#if !REAL_IS_DOUBLE
#define VEC (simd_ops())
#endif

/* --------------------------------------------------------------- matmul */

static void matmul_forward(real *out, const real *in, const real *w, int n, int in_dim, int out_dim) {
    blas_gemm(0, 1, n, out_dim, in_dim, 1, in, in_dim, w, in_dim, 0, out, out_dim);
}

static void matmul_backward(real *din, real *dw, const real *dout, const real *in, const real *w, int n, int in_dim,
                            int out_dim) {
    if (din) blas_gemm(0, 0, n, in_dim, out_dim, 1, dout, out_dim, w, in_dim, 0, din, in_dim);
    if (dw) blas_gemm(1, 0, out_dim, in_dim, n, 1, dout, out_dim, in, in_dim, 1, dw, in_dim);
}

/* Fixed tiles of ROW_TILE rows (the last one padded through a scratch
 * copy): every GEMM has the same shape whatever n is, and for a given shape
 * a row's result depends on its own data only (tests/test_contract.c checks
 * it). The tiles run as tasks of one parallel region, so no GEMM is split
 * over threads either. */
#define ROW_TILE 64

static void matmul_tile(real *out, const real *in, const real *w, int rows, int in_dim, int out_dim) {
    if (rows == ROW_TILE) {
        blas_gemm(0, 1, ROW_TILE, out_dim, in_dim, 1, in, in_dim, w, in_dim, 0, out, out_dim);
        return;
    }
    real *a = calloc((size_t)ROW_TILE * in_dim, sizeof(real)), *c = malloc((size_t)ROW_TILE * out_dim * sizeof(real));
    if (a && c) {
        memcpy(a, in, (size_t)rows * in_dim * sizeof(real));
        blas_gemm(0, 1, ROW_TILE, out_dim, in_dim, 1, a, in_dim, w, in_dim, 0, c, out_dim);
        memcpy(out, c, (size_t)rows * out_dim * sizeof(real));
    } else {
        for (size_t i = 0; i < (size_t)rows * out_dim; i++) out[i] = NAN; /* out of memory: poison, never wrong numbers */
    }
    free(a);
    free(c);
}

static void matmul_forward_rows(real *out, const real *in, const real *w, int n, int in_dim, int out_dim) {
    int tiles = (n + ROW_TILE - 1) / ROW_TILE;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tiles; t++) {
        int r0 = t * ROW_TILE, rows = n - r0 < ROW_TILE ? n - r0 : ROW_TILE;
        matmul_tile(out + (size_t)r0 * out_dim, in + (size_t)r0 * in_dim, w, rows, in_dim, out_dim);
    }
}

/* ------------------------------------------------------------ embedding */

/* A negative token (padding) gives a zero row and no gradient; ids must
 * otherwise be below the table's row count (the op cannot check it). */
static void embedding_forward(real *out, const int *tokens, const real *table, int n, int dim) {
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        if (tokens[i] >= 0)
            memcpy(out + (size_t)i * dim, table + (size_t)tokens[i] * dim, (size_t)dim * sizeof(real));
        else
            memset(out + (size_t)i * dim, 0, (size_t)dim * sizeof(real));
    }
}

/* Threads own column blocks, so repeated tokens never race and the sum over
 * rows is taken in row order whatever the thread count. */
static void embedding_backward(real *dtable, const real *dout, const int *tokens, int n, int dim) {
    const int block = 64;
    int n_blocks = (dim + block - 1) / block;
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int cb = 0; cb < n_blocks; cb++) {
        int j0 = cb * block, j1 = j0 + block < dim ? j0 + block : dim;
        for (int i = 0; i < n; i++) {
            if (tokens[i] < 0) continue;
            real *d = dtable + (size_t)tokens[i] * dim;
            const real *g = dout + (size_t)i * dim;
#pragma omp simd
            for (int j = j0; j < j1; j++) d[j] += g[j];
        }
    }
}

/* -------------------------------------------------------------- rmsnorm */

static void rmsnorm_forward(real *out, real *rstd, const real *x, const real *weight, int n, int dim, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const real *xi = x + (size_t)i * dim;
        real *oi = out + (size_t)i * dim;
        real ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < dim; j++) ss += xi[j] * xi[j];
        real r = (real)(1.0 / sqrt((double)ss / dim + (double)eps));
        rstd[i] = r;
#pragma omp simd
        for (int j = 0; j < dim; j++) oi[j] = xi[j] * r * weight[j];
    }
}

/* y = x r w with r = (mean(x^2) + eps)^-1/2:
 *   dx_j += r w_j g_j - x_j r^3 / dim * sum_k g_k w_k x_k
 *   dw_j += sum_i g_ij x_ij r_i */
static void rmsnorm_backward(real *dx, real *dweight, const real *dout, const real *x, const real *weight,
                             const real *rstd, int n, int dim) {
    int par = (size_t)n * dim >= PAR_MIN;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            const real *xi = x + (size_t)i * dim, *gi = dout + (size_t)i * dim;
            real *di = dx + (size_t)i * dim;
            real dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < dim; j++) dot += gi[j] * weight[j] * xi[j];
            real r = rstd[i], c = dot * r * r * r / (real)dim;
#pragma omp simd
            for (int j = 0; j < dim; j++) di[j] += r * weight[j] * gi[j] - c * xi[j];
        }
        if (dweight) {
            const int block = 32;
            int n_blocks = (dim + block - 1) / block;
#pragma omp for schedule(static)
            for (int cb = 0; cb < n_blocks; cb++) {
                int j0 = cb * block, len = j0 + block < dim ? block : dim - j0;
                real acc[32] = {0};
                for (int i = 0; i < n; i++) {
                    const real *xi = x + (size_t)i * dim + j0, *gi = dout + (size_t)i * dim + j0;
                    real r = rstd[i];
#pragma omp simd
                    for (int j = 0; j < len; j++) acc[j] += gi[j] * xi[j] * r;
                }
                for (int j = 0; j < len; j++) dweight[j0 + j] += acc[j];
            }
        }
    }
}

/* ----------------------------------------------------------------- rope */

/* Rotates each interleaved pair by +angle (sign 1) or -angle (sign -1). */
static void rope_apply(real *x, const real *cos_sin, const int *pos, int n, int row_stride, int n_heads, int head_dim,
                       real sign) {
    int half = head_dim / 2;
#pragma omp parallel for schedule(static) if ((size_t)n * n_heads * head_dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const real *cs = cos_sin + (size_t)pos[i] * half * 2;
        real *row = x + (size_t)i * row_stride;
        for (int h = 0; h < n_heads; h++) {
            real *p = row + (size_t)h * head_dim;
#pragma omp simd
            for (int k = 0; k < half; k++) {
                real c = cs[2 * k], s = sign * cs[2 * k + 1];
                real a = p[2 * k], b = p[2 * k + 1];
                p[2 * k] = a * c - b * s;
                p[2 * k + 1] = a * s + b * c;
            }
        }
    }
}

static void rope_forward(real *x, const real *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                         int head_dim) {
    rope_apply(x, cos_sin, pos, n, row_stride, n_heads, head_dim, 1);
}

static void rope_backward(real *dx, const real *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                          int head_dim) {
    rope_apply(dx, cos_sin, pos, n, row_stride, n_heads, head_dim, -1);
}

/* ------------------------------------------------------------ attention */

/* Query rows are processed in blocks of ATT_BLOCK so that only the causal
 * (lower) part of the score matrix is computed: block [i0, i1) needs keys
 * [0, i1). Forward and backward use the same blocks, so the entries above the
 * diagonal inside a diagonal block are always ones this code zeroed. */
#define ATT_BLOCK 64

typedef struct att_shape {
    int seq, heads, kv_heads, hd;
    int qkv_stride; /* (heads + 2 kv_heads) hd */
    int out_stride; /* heads hd */
    real scale;
} att_shape;

static att_shape att_shape_of(int seq, int heads, int kv_heads, int head_dim) {
    att_shape s;
    s.seq = seq;
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.hd = head_dim;
    s.qkv_stride = (heads + 2 * kv_heads) * head_dim;
    s.out_stride = heads * head_dim;
    s.scale = (real)(1.0 / sqrt((double)head_dim));
    return s;
}

/* Row-wise causal softmax of the scaled scores in p[seq, seq] for rows
 * [i0, i1): row i keeps columns 0..i, the rest of the row becomes 0. */
/* Row of probabilities: the first len entries (exponentials) divided by their
 * sum, the rest of the seq-wide row 0. */
static inline void normalise_row(real *row, int len, int seq, real sum) {
    real inv = 1 / sum;
#if REAL_IS_DOUBLE
    for (int j = 0; j < len; j++) row[j] *= inv;
#else
    VEC->scale(row, len, inv);
#endif
    for (int j = len; j < seq; j++) row[j] = 0;
}

static void causal_softmax_rows(real *p, int seq, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        real *row = p + (size_t)i * seq;
        int len = i + 1;
#if REAL_IS_DOUBLE
        real mx = row[0];
        for (int j = 0; j < len; j++) mx = mx < row[j] ? row[j] : mx;
        real sum = 0;
        for (int j = 0; j < len; j++) {
            real e = exp_r(row[j] - mx);
            row[j] = e;
            sum += e;
        }
#else
        const simd_set *v = VEC;
        real sum = v->exp_store_sum(row, len, v->max(row, len));
#endif
        normalise_row(row, len, seq, sum);
    }
}

/* The same under a sample mask: row i keeps the columns j <= i whose sample id
 * equals its own (sid is the sequence's [seq] ids); a padding row (id -1)
 * becomes all 0. Masked entries are exact zeros, so they add nothing to the
 * sums and the other samples' scores cannot reach a row's result. */
static void masked_softmax_rows(real *p, const int *sid, int seq, int i0, int i1) {
    for (int i = i0; i < i1; i++) {
        real *row = p + (size_t)i * seq;
        int len = i + 1, me = sid[i];
        if (me < 0) {
            memset(row, 0, (size_t)seq * sizeof(real));
            continue;
        }
        real mx = row[i];
        for (int j = 0; j < len; j++)
            if (sid[j] == me && row[j] > mx) mx = row[j];
        real sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < len; j++) {
            real e = sid[j] == me ? exp_r(row[j] - mx) : 0;
            row[j] = e;
            sum += e;
        }
        normalise_row(row, len, seq, sum);
    }
}

/* One (sequence, query head): P = softmax(mask(Q K^T scale)), O = P V. The
 * mask is causal, and also by sample id when sample is not NULL. */
static void attention_forward_head(real *out, real *probs, const real *qkv, const int *sample, const att_shape *s,
                                   int b, int h) {
    int seq = s->seq, R = s->qkv_stride, kvh = h / (s->heads / s->kv_heads);
    const real *base = qkv + (size_t)b * seq * R;
    const real *Q = base + (size_t)h * s->hd, *K = base + (size_t)(s->heads + kvh) * s->hd;
    const real *V = base + (size_t)(s->heads + s->kv_heads + kvh) * s->hd;
    real *P = probs + ((size_t)b * s->heads + h) * seq * seq;
    real *O = out + (size_t)b * seq * s->out_stride + (size_t)h * s->hd;
    for (int i0 = 0; i0 < seq; i0 += ATT_BLOCK) {
        int i1 = i0 + ATT_BLOCK < seq ? i0 + ATT_BLOCK : seq;
        blas_gemm(0, 1, i1 - i0, i1, s->hd, s->scale, Q + (size_t)i0 * R, R, K, R, 0, P + (size_t)i0 * seq, seq);
        if (sample)
            masked_softmax_rows(P, sample + (size_t)b * seq, seq, i0, i1);
        else
            causal_softmax_rows(P, seq, i0, i1);
        blas_gemm(0, 0, i1 - i0, s->hd, i1, 1, P + (size_t)i0 * seq, seq, V, R, 0, O + (size_t)i0 * s->out_stride,
                  s->out_stride);
    }
}

/* Attention runs its independent (sequence, head) tasks on the OpenMP threads,
 * each task's small GEMMs on its own thread (blas_gemm does not split inside a
 * parallel region). Measured on 2 cores at batch 8, seq 256, 8 heads of 64:
 * 5.2 ms forward / 7.1 ms backward, against 10 / 13 ms for the heads one
 * after the other with each GEMM split over the threads. With fewer tasks
 * than threads, the heads run in turn and the GEMMs are split instead. */
static int att_parallel(int tasks, int seq, int head_dim) {
    return tasks >= omp_get_max_threads() && omp_get_max_threads() > 1 && (size_t)seq * seq * head_dim >= 8192;
}

static void attention_forward(real *out, real *probs, const real *qkv, int batch, int seq, int heads, int kv_heads,
                              int head_dim) {
    att_shape s = att_shape_of(seq, heads, kv_heads, head_dim);
    int tasks = batch * heads;
#pragma omp parallel for schedule(static) if (att_parallel(tasks, seq, head_dim))
    for (int t = 0; t < tasks; t++) attention_forward_head(out, probs, qkv, NULL, &s, t / heads, t % heads);
}

static void attention_forward_masked(real *out, real *probs, const real *qkv, const int *sample, int batch, int seq,
                                     int heads, int kv_heads, int head_dim) {
    att_shape s = att_shape_of(seq, heads, kv_heads, head_dim);
    int tasks = batch * heads;
#pragma omp parallel for schedule(static) if (att_parallel(tasks, seq, head_dim))
    for (int t = 0; t < tasks; t++) attention_forward_head(out, probs, qkv, sample, &s, t / heads, t % heads);
}

/* q . k in double with four partial sums in a fixed order: the same result
 * wherever the vectors sit in memory (no alignment-dependent vector peeling),
 * four times the instruction-level parallelism of one chain. */
static double dot4(const real *q, const real *k, int hd) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int d = 0;
    for (; d + 4 <= hd; d += 4) {
        s0 += (double)q[d] * k[d];
        s1 += (double)q[d + 1] * k[d + 1];
        s2 += (double)q[d + 2] * k[d + 2];
        s3 += (double)q[d + 3] * k[d + 3];
    }
    for (; d < hd; d++) s0 += (double)q[d] * k[d];
    return (s0 + s1) + (s2 + s3);
}

/* One query row against key/value rows 0..len-1 (row stride kv_stride),
 * keeping those whose id equals me when ids is not NULL: scores, softmax
 * and the weighted sum of values in double, rows in order. score is len
 * doubles of scratch. Decoding and forward-only attention share it, so a
 * decode step reproduces the forward pass exactly. */
static void attend_row(real *o, const real *q, const real *K, const real *V, size_t kv_stride, int len, const int *ids,
                       int me, int hd, double scale, double *score) {
    double mx = -INFINITY, sum = 0, acc[512];
    for (int j = 0; j < len; j++) {
        score[j] = ids && ids[j] != me ? -INFINITY : dot4(q, K + (size_t)j * kv_stride, hd) * scale;
        if (score[j] > mx) mx = score[j];
    }
    for (int d = 0; d < hd; d++) acc[d] = 0;
    for (int j = 0; j < len; j++) {
        if (score[j] == -INFINITY) continue;
        double w = exp(score[j] - mx);
        const real *v = V + (size_t)j * kv_stride;
        sum += w;
        for (int d = 0; d < hd; d++) acc[d] += w * v[d];
    }
    for (int d = 0; d < hd; d++) o[d] = sum > 0 ? (real)(acc[d] / sum) : 0;
}

/* head_dim bound of attend_row's accumulator; model_greedy_decode and the
 * forward-only path check it before they get here. */
#define ROW_HD_MAX 512

/* Tasks are (sequence, head) pairs, each with its own score scratch. */
static void attention_forward_rows(real *out, const real *qkv, const int *sample, int batch, int seq, int heads,
                                   int kv_heads, int head_dim) {
    if (head_dim > ROW_HD_MAX) return;
    int R = (heads + 2 * kv_heads) * head_dim, group = heads / kv_heads, tasks = batch * heads;
    double scale = 1.0 / sqrt((double)head_dim);
#pragma omp parallel for schedule(static) if ((size_t)tasks * seq * seq * head_dim >= PAR_MIN)
    for (int t = 0; t < tasks; t++) {
        int b = t / heads, h = t % heads, g = h / group;
        const int *ids = sample ? sample + (size_t)b * seq : NULL;
        const real *base = qkv + (size_t)b * seq * R;
        double *score = malloc((size_t)seq * sizeof *score);
        for (int i = 0; i < seq; i++) {
            real *o = out + ((size_t)b * seq + i) * heads * head_dim + (size_t)h * head_dim;
            if (!score || (ids && ids[i] < 0)) { /* padding (or out of memory: NaN, never wrong numbers) */
                for (int d = 0; d < head_dim; d++) o[d] = score ? 0 : NAN;
                continue;
            }
            attend_row(o, base + (size_t)i * R + (size_t)h * head_dim, base + (size_t)(heads + g) * head_dim,
                       base + (size_t)(heads + kv_heads + g) * head_dim, (size_t)R, i + 1, ids, ids ? ids[i] : 0,
                       head_dim, scale, score);
        }
        free(score);
    }
}

static void attention_decode(real *out, const real *q, int q_stride, const real *k_cache, const real *v_cache,
                             const int *len, int batch, int max_len, int heads, int kv_heads, int head_dim) {
    if (head_dim > ROW_HD_MAX) return;
    int tasks = batch * heads, kvw = kv_heads * head_dim, group = heads / kv_heads;
    double scale = 1.0 / sqrt((double)head_dim);
#pragma omp parallel for schedule(static) if (tasks > 1 && omp_get_max_threads() > 1)
    for (int t = 0; t < tasks; t++) {
        int b = t / heads, h = t % heads, g = h / group;
        size_t cache = (size_t)b * max_len * kvw + (size_t)g * head_dim;
        real *o = out + (size_t)b * heads * head_dim + (size_t)h * head_dim;
        double *score = malloc((size_t)(len[b] > 0 ? len[b] : 1) * sizeof *score);
        if (score)
            attend_row(o, q + (size_t)b * q_stride + (size_t)h * head_dim, k_cache + cache, v_cache + cache,
                       (size_t)kvw, len[b], NULL, 0, head_dim, scale, score);
        else
            for (int d = 0; d < head_dim; d++) o[d] = NAN;
        free(score);
    }
}

/* One (sequence, kv head) and all the query heads that share it, so that the
 * dK and dV sums over those heads are taken in a fixed order by one worker.
 * ds is seq * seq scratch. */
static void attention_backward_group(real *dqkv, real *ds, const real *dout, const real *probs, const real *qkv,
                                     const att_shape *s, int b, int g) {
    int seq = s->seq, R = s->qkv_stride, hd = s->hd, group = s->heads / s->kv_heads;
    const real *base = qkv + (size_t)b * seq * R;
    real *dbase = dqkv + (size_t)b * seq * R;
    const real *K = base + (size_t)(s->heads + g) * hd, *V = base + (size_t)(s->heads + s->kv_heads + g) * hd;
    real *dK = dbase + (size_t)(s->heads + g) * hd, *dV = dbase + (size_t)(s->heads + s->kv_heads + g) * hd;
    for (int i = 0; i < seq; i++) {
        memset(dK + (size_t)i * R, 0, (size_t)hd * sizeof(real));
        memset(dV + (size_t)i * R, 0, (size_t)hd * sizeof(real));
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        const real *Q = base + (size_t)h * hd;
        real *dQ = dbase + (size_t)h * hd;
        const real *P = probs + ((size_t)b * s->heads + h) * seq * seq;
        const real *dO = dout + (size_t)b * seq * s->out_stride + (size_t)h * hd;
        for (int i0 = 0; i0 < seq; i0 += ATT_BLOCK) {
            int i1 = i0 + ATT_BLOCK < seq ? i0 + ATT_BLOCK : seq;
            /* dP = dO V^T, then dS = P (dP - rowsum(P dP)) in place. */
            blas_gemm(0, 1, i1 - i0, i1, hd, 1, dO + (size_t)i0 * s->out_stride, s->out_stride, V, R, 0,
                      ds + (size_t)i0 * seq, seq);
            for (int i = i0; i < i1; i++) {
                real *d = ds + (size_t)i * seq;
                const real *p = P + (size_t)i * seq;
                int len = i + 1;
                real dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j < len; j++) dot += p[j] * d[j];
#pragma omp simd
                for (int j = 0; j < len; j++) d[j] = p[j] * (d[j] - dot);
                for (int j = len; j < i1; j++) d[j] = 0;
            }
            /* dQ = dS K scale (each query head's dQ is its own: overwrite). */
            blas_gemm(0, 0, i1 - i0, hd, i1, s->scale, ds + (size_t)i0 * seq, seq, K, R, 0, dQ + (size_t)i0 * R, R);
        }
        /* dK += dS^T Q scale, dV += P^T dO: key block [j0, j1) sees query rows j0..seq-1. */
        for (int j0 = 0; j0 < seq; j0 += ATT_BLOCK) {
            int j1 = j0 + ATT_BLOCK < seq ? j0 + ATT_BLOCK : seq;
            blas_gemm(1, 0, j1 - j0, hd, seq - j0, s->scale, ds + (size_t)j0 * seq + j0, seq, Q + (size_t)j0 * R, R,
                      1, dK + (size_t)j0 * R, R);
            blas_gemm(1, 0, j1 - j0, hd, seq - j0, 1, P + (size_t)j0 * seq + j0, seq,
                      dO + (size_t)j0 * s->out_stride, s->out_stride, 1, dV + (size_t)j0 * R, R);
        }
    }
}

static void attention_backward(real *dqkv, real *scratch, const real *dout, const real *probs, const real *qkv,
                               int batch, int seq, int heads, int kv_heads, int head_dim) {
    att_shape s = att_shape_of(seq, heads, kv_heads, head_dim);
    int tasks = batch * kv_heads;
    if (att_parallel(tasks, seq, head_dim)) {
        /* At most batch * kv_heads threads, each with its own seq x seq slice of
         * scratch (which holds batch * heads of them). */
#pragma omp parallel for schedule(static)
        for (int t = 0; t < tasks; t++)
            attention_backward_group(dqkv, scratch + (size_t)omp_get_thread_num() * seq * seq, dout, probs, qkv, &s,
                                     t / kv_heads, t % kv_heads);
    } else {
        for (int t = 0; t < tasks; t++)
            attention_backward_group(dqkv, scratch, dout, probs, qkv, &s, t / kv_heads, t % kv_heads);
    }
}

static void kv_cache_write(real *k_cache, real *v_cache, const real *qkv, const int *slot, int n, int heads,
                           int kv_heads, int head_dim) {
    size_t kvw = (size_t)kv_heads * head_dim, stride = (size_t)(heads + 2 * kv_heads) * head_dim;
    for (int i = 0; i < n; i++) {
        if (slot[i] < 0) continue;
        const real *row = qkv + (size_t)i * stride + (size_t)heads * head_dim;
        memcpy(k_cache + (size_t)slot[i] * kvw, row, kvw * sizeof(real));
        memcpy(v_cache + (size_t)slot[i] * kvw, row + kvw, kvw * sizeof(real));
    }
}

/* Rows in order, so every group's sum has one fixed order. */
static void pool_sum(double *out, size_t out_stride, const real *x, const int *group, int n, int dim) {
    for (int i = 0; i < n; i++) {
        if (group[i] < 0) continue;
        double *o = out + (size_t)group[i] * out_stride;
        const real *xi = x + (size_t)i * dim;
#pragma omp simd
        for (int j = 0; j < dim; j++) o[j] += (double)xi[j];
    }
}

/* ---------------------------------------------------------- bias, GELU */

static void bias_forward(real *out, const real *bias, int n, int dim) {
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        real *o = out + (size_t)i * dim;
#pragma omp simd
        for (int j = 0; j < dim; j++) o[j] += bias[j];
    }
}

/* Column blocks per thread, rows summed in order: independent of the thread count. */
static void bias_backward(real *dbias, const real *dout, int n, int dim) {
    const int block = 64;
    int n_blocks = (dim + block - 1) / block;
#pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int cb = 0; cb < n_blocks; cb++) {
        int j0 = cb * block, j1 = j0 + block < dim ? j0 + block : dim;
        for (int i = 0; i < n; i++) {
            const real *g = dout + (size_t)i * dim;
#pragma omp simd
            for (int j = j0; j < j1; j++) dbias[j] += g[j];
        }
    }
}

/* The exact (erf) GELU, evaluated in double: the projector is small next to
 * the LLM, and double keeps float32 results within an ulp of PyTorch's. */
static void gelu_forward(real *out, const real *x, size_t count) {
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) {
        double v = x[i];
        out[i] = (real)(0.5 * v * (1.0 + erf(v * M_SQRT1_2)));
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
static void gelu_backward(real *dx, const real *dout, const real *x, size_t count) {
    const double inv_sqrt_2pi = 0.39894228040143267794;
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) {
        double v = x[i];
        double d = 0.5 * (1.0 + erf(v * M_SQRT1_2)) + v * inv_sqrt_2pi * exp(-0.5 * v * v);
        dx[i] = (real)((double)dout[i] * d);
    }
}

/* --------------------------------------------------------------- swiglu */

static void swiglu_forward(real *out, const real *h13, int n, int ffn) {
#pragma omp parallel for schedule(static) if ((size_t)n * ffn >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const real *a = h13 + (size_t)i * 2 * ffn, *b = a + ffn;
        real *o = out + (size_t)i * ffn;
#if REAL_IS_DOUBLE
        for (int j = 0; j < ffn; j++) {
            real sig = 1 / (1 + exp_r(-a[j]));
            o[j] = a[j] * sig * b[j];
        }
#else
        VEC->swiglu_forward(o, a, b, ffn);
#endif
    }
}

/* out = a sig(a) b:  d/da = sig(a) (1 + a (1 - sig(a))) b,  d/db = a sig(a). */
static void swiglu_backward(real *dh13, const real *dout, const real *h13, int n, int ffn) {
#pragma omp parallel for schedule(static) if ((size_t)n * ffn >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        const real *a = h13 + (size_t)i * 2 * ffn, *b = a + ffn, *g = dout + (size_t)i * ffn;
        real *da = dh13 + (size_t)i * 2 * ffn, *db = da + ffn;
#if REAL_IS_DOUBLE
        for (int j = 0; j < ffn; j++) {
            real sig = 1 / (1 + exp_r(-a[j]));
            real silu = a[j] * sig;
            da[j] = g[j] * b[j] * sig * (1 + a[j] * (1 - sig));
            db[j] = g[j] * silu;
        }
#else
        VEC->swiglu_backward(da, db, g, a, b, ffn);
#endif
    }
}

/* ----------------------------------------------------------- elementwise */

static void residual_add(real *out, const real *a, const real *b, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) out[i] = a[i] + b[i];
}

static void accumulate(real *y, const real *x, size_t count) {
#pragma omp parallel for simd schedule(static) if (count >= PAR_MIN)
    for (size_t i = 0; i < count; i++) y[i] += x[i];
}

static void zero(real *x, size_t count) {
    const size_t chunk = 1 << 16;
    size_t n_chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n_chunks > 1)
    for (size_t c = 0; c < n_chunks; c++) memset(x + c * chunk, 0, min_size(chunk, count - c * chunk) * sizeof(real));
}

/* -------------------------------------------------------- cross-entropy */

/* One row: returns its loss; when grad_scale != 0 the row becomes
 * grad_scale * (softmax - onehot). */
static double cross_entropy_row(real *row, int target, int vocab, real grad_scale) {
    real x_target = row[target];
#if REAL_IS_DOUBLE
    real mx = row[0];
    for (int j = 0; j < vocab; j++) mx = mx < row[j] ? row[j] : mx;
    real sum = 0;
    if (grad_scale != 0) {
        for (int j = 0; j < vocab; j++) {
            real e = exp_r(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        real k = grad_scale / sum;
        for (int j = 0; j < vocab; j++) row[j] *= k;
        row[target] -= grad_scale;
    } else {
        for (int j = 0; j < vocab; j++) sum += exp_r(row[j] - mx);
    }
#else
    const simd_set *v = VEC;
    real mx = v->max(row, vocab), sum;
    if (grad_scale != 0) {
        sum = v->exp_store_sum(row, vocab, mx);
        v->scale(row, vocab, grad_scale / sum);
        row[target] -= grad_scale;
    } else {
        sum = v->exp_sum(row, vocab, mx);
    }
#endif
    return log((double)sum) + (double)mx - (double)x_target;
}

static double cross_entropy(real *logits, const int *targets, int n, int vocab, int ignore_index, real grad_scale,
                            int *n_valid) {
    /* Rows are summed in fixed groups (sequentially inside a group, groups in
     * order), so the total does not depend on the thread count. */
    double group_loss[MAX_CHUNKS];
    int group_valid[MAX_CHUNKS];
    int per_group = n / MAX_CHUNKS + 1;
    int n_groups = (n + per_group - 1) / per_group;
#pragma omp parallel for schedule(static) if ((size_t)n * vocab >= PAR_MIN && n > 1)
    for (int gi = 0; gi < n_groups; gi++) {
        double loss = 0;
        int valid = 0;
        int r1 = (gi + 1) * per_group < n ? (gi + 1) * per_group : n;
        for (int i = gi * per_group; i < r1; i++) {
            real *row = logits + (size_t)i * vocab;
            int t = targets[i];
            if (t == ignore_index || t < 0 || t >= vocab) {
                if (grad_scale != 0) memset(row, 0, (size_t)vocab * sizeof(real));
                continue;
            }
            loss += cross_entropy_row(row, t, vocab, grad_scale);
            valid++;
        }
        group_loss[gi] = loss;
        group_valid[gi] = valid;
    }
    double total = 0;
    int valid = 0;
    for (int gi = 0; gi < n_groups; gi++) {
        total += group_loss[gi];
        valid += group_valid[gi];
    }
    if (n_valid) *n_valid = valid;
    return total;
}

/* log softmax(row)[target] in double, with the loss path's own loops. */
static double log_prob_row(const real *row, int target, int vocab) {
#if REAL_IS_DOUBLE
    real mx = row[0];
    for (int j = 0; j < vocab; j++) mx = mx < row[j] ? row[j] : mx;
    real sum = 0;
    for (int j = 0; j < vocab; j++) sum += exp_r(row[j] - mx);
#else
    const simd_set *v = VEC;
    real mx = v->max(row, vocab), sum = v->exp_sum(row, vocab, mx);
#endif
    return (double)row[target] - (double)mx - log((double)sum);
}

static void log_prob(double *out, const real *logits, const int *targets, int n, int vocab, int ignore_index) {
#pragma omp parallel for schedule(static) if ((size_t)n * vocab >= PAR_MIN && n > 1)
    for (int i = 0; i < n; i++) {
        int t = targets[i];
        out[i] = t == ignore_index || t < 0 || t >= vocab ? 0 : log_prob_row(logits + (size_t)i * vocab, t, vocab);
    }
}

/* ---------------------------------------------------------------- AdamW */

#if REAL_IS_DOUBLE
typedef struct adamw_consts {
    real b1, b2, c1, c2, inv_bc1, inv_bc2, lr, eps, wd, gs;
} adamw_consts;

static void adamw_block(real *param, const real *grad, real *m, real *v, size_t n, const adamw_consts *k) {
    for (size_t i = 0; i < n; i++) {
        real g = grad[i] * k->gs;
        real mi = k->b1 * m[i] + k->c1 * g;
        real vi = k->b2 * v[i] + k->c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        real mhat = mi * k->inv_bc1, vhat = vi * k->inv_bc2;
        param[i] -= k->lr * (mhat / (sqrt_r(vhat) + k->eps) + k->wd * param[i]);
    }
}
#else
/* simd.h's kernels: sqrtf's errno semantics keep gcc from vectorising a
 * plain loop (without -ffast-math), which made AdamW twice as slow. */
typedef simd_adamw adamw_consts;
static void adamw_block(real *param, const real *grad, real *m, real *v, size_t n, const adamw_consts *k) {
    VEC->adamw(param, grad, m, v, n, k);
}
#endif

static void adamw_update(real *param, const real *grad, real *m, real *v, size_t count, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
    adamw_consts k;
    k.b1 = beta1, k.b2 = beta2, k.c1 = 1 - (real)beta1, k.c2 = 1 - (real)beta2;
    k.inv_bc1 = (real)(1.0 / (1.0 - pow((double)beta1, (double)step)));
    k.inv_bc2 = (real)(1.0 / (1.0 - pow((double)beta2, (double)step)));
    k.lr = lr, k.eps = eps, k.wd = weight_decay, k.gs = grad_scale;
    /* Fixed blocks (a multiple of every vector width): each element takes the
     * same path, vector or scalar tail, whatever the thread count. */
    const size_t block = 4096;
    size_t n_blocks = count / block;
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
    for (size_t b = 0; b < n_blocks; b++) adamw_block(param + b * block, grad + b * block, m + b * block,
                                                      v + b * block, block, &k);
    size_t lo = n_blocks * block;
    adamw_block(param + lo, grad + lo, m + lo, v + lo, count - lo, &k);
}

/* ------------------------------------------------------------ reductions */

static double sum_squares(const real *x, size_t count) {
    /* Fixed chunks summed in order: the result does not depend on the thread count. */
    double part[MAX_CHUNKS];
    size_t chunk = count / MAX_CHUNKS + 1;
    if (chunk < 4096) chunk = 4096;
    size_t n_chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n_chunks > 1 && count >= PAR_MIN)
    for (size_t c = 0; c < n_chunks; c++) {
        const real *p = x + c * chunk;
        size_t len = min_size(chunk, count - c * chunk);
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t i = 0; i < len; i++) s += (double)p[i] * (double)p[i];
        part[c] = s;
    }
    double total = 0;
    for (size_t c = 0; c < n_chunks; c++) total += part[c];
    return total;
}

/* ------------------------------------------------------------------ table */

static const backend_ops cpu_ops = {
    .name = "cpu",
    .matmul_forward = matmul_forward,
    .matmul_backward = matmul_backward,
    .matmul_forward_rows = matmul_forward_rows,
    .embedding_forward = embedding_forward,
    .embedding_backward = embedding_backward,
    .rmsnorm_forward = rmsnorm_forward,
    .rmsnorm_backward = rmsnorm_backward,
    .rope_forward = rope_forward,
    .rope_backward = rope_backward,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .attention_forward_masked = attention_forward_masked,
    .attention_forward_rows = attention_forward_rows,
    .attention_decode = attention_decode,
    .kv_cache_write = kv_cache_write,
    .pool_sum = pool_sum,
    .bias_forward = bias_forward,
    .bias_backward = bias_backward,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .swiglu_forward = swiglu_forward,
    .swiglu_backward = swiglu_backward,
    .residual_add = residual_add,
    .accumulate = accumulate,
    .cross_entropy = cross_entropy,
    .log_prob = log_prob,
    .adamw_update = adamw_update,
    .sum_squares = sum_squares,
    .zero = zero,
};

const backend_ops *backend_cpu(void) { return &cpu_ops; }
