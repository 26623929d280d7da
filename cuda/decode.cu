/* decode.cu - the kernels of greedy decoding with a KV cache (the engine's
 * greedy_decode, stages/gpu_engine.h): filling the cache, one query per
 * sequence against it, the last row of each sequence, the argmax of fp32
 * logits and the step-to-step bookkeeping, all on the device so that a step
 * needs no host round trip. Semantics as core/backend.h's kv_cache_write and
 * attention_decode, in bf16 storage with fp32 arithmetic. */
#include <math.h>

#include "gpu_internal.cuh"

/* One block per row: its k and v heads to cache row slot[i] (none when < 0). */
__global__ void kv_cache_write_kernel(bf16 *k_cache, bf16 *v_cache, const bf16 *qkv, const int *slot, int row_stride,
                                      int k_offset, int kv_dim) {
    size_t i = blockIdx.x;
    int s = slot[i];
    if (s < 0) return;
    const bf16 *k = qkv + i * row_stride + k_offset, *v = k + kv_dim;
    for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) {
        k_cache[(size_t)s * kv_dim + c] = k[c];
        v_cache[(size_t)s * kv_dim + c] = v[c];
    }
}

void gpu_kv_cache_write(gpu_bf16 *k_cache, gpu_bf16 *v_cache, const gpu_bf16 *qkv, const int *slot, int n, int heads,
                        int kv_heads, int head_dim) {
    if (n <= 0) return;
    int R = (heads + 2 * kv_heads) * head_dim;
    LAUNCH(kv_cache_write_kernel, n, 128, 0, gpu_stream_(), (bf16 *)k_cache, (bf16 *)v_cache, (const bf16 *)qkv, slot,
           R, heads * head_dim, kv_heads * head_dim);
    gpu_after_launch("gpu_kv_cache_write");
}

enum { DEC_WARPS = 4, DEC_MAX_PER_LANE = 8 }; /* head_dim <= 32 * 8 */

/* One block per (sequence, query head): warp w walks cache rows w, w + 4, ...
 * with an online softmax (each lane holds head_dim / 32 of the output), then
 * warp 0 merges the four partial results. Scores and sums in fp32. */
template <int PER>
__global__ void attention_decode_kernel(bf16 *out, const bf16 *q, int q_stride, const bf16 *k_cache,
                                        const bf16 *v_cache, const int *len, int max_len, int H, int KV, int hd,
                                        float scale) {
    __shared__ float s_max[DEC_WARPS], s_sum[DEC_WARPS], s_acc[DEC_WARPS][32 * PER];
    int b = blockIdx.x / H, h = blockIdx.x % H, g = h / (H / KV);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, kvd = KV * hd, L = len[b];
    const bf16 *qr = q + (size_t)b * q_stride + (size_t)h * hd;
    const bf16 *K = k_cache + (size_t)b * max_len * kvd + (size_t)g * hd;
    const bf16 *V = v_cache + (size_t)b * max_len * kvd + (size_t)g * hd;
    float qv[PER], acc[PER], m = -INFINITY, s = 0.f;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = lane + 32 * i;
        qv[i] = j < hd ? __bfloat162float(qr[j]) * scale : 0.f;
        acc[i] = 0.f;
    }
    for (int t = warp; t < L; t += DEC_WARPS) {
        const bf16 *kr = K + (size_t)t * kvd, *vr = V + (size_t)t * kvd;
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            int j = lane + 32 * i;
            if (j < hd) dot += qv[i] * __bfloat162float(kr[j]);
        }
        dot = warp_sum(dot);
        float mn = fmaxf(m, dot), c = m == -INFINITY ? 0.f : __expf(m - mn), p = __expf(dot - mn);
        s = s * c + p;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            int j = lane + 32 * i;
            acc[i] = acc[i] * c + (j < hd ? p * __bfloat162float(vr[j]) : 0.f);
        }
        m = mn;
    }
    if (lane == 0) {
        s_max[warp] = m;
        s_sum[warp] = s;
    }
#pragma unroll
    for (int i = 0; i < PER; i++) s_acc[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    if (warp != 0) return;
    float M = -INFINITY, S = 0.f;
    for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, s_max[w]);
    float f[DEC_WARPS];
    for (int w = 0; w < DEC_WARPS; w++) {
        f[w] = s_max[w] == -INFINITY ? 0.f : __expf(s_max[w] - M);
        S += s_sum[w] * f[w];
    }
    bf16 *o = out + ((size_t)b * H + h) * hd;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = lane + 32 * i;
        if (j >= hd) continue;
        float x = 0.f;
        for (int w = 0; w < DEC_WARPS; w++) x += s_acc[w][j] * f[w];
        o[j] = __float2bfloat16(x / S);
    }
}

void gpu_attention_decode(gpu_bf16 *out, const gpu_bf16 *q, int q_stride, const gpu_bf16 *k_cache,
                          const gpu_bf16 *v_cache, const int *len, int batch, int max_len, int heads, int kv_heads,
                          int head_dim) {
    if (batch <= 0) return;
    if (heads <= 0 || kv_heads <= 0 || heads % kv_heads || head_dim <= 0 || head_dim > 32 * DEC_MAX_PER_LANE) {
        gpu_record_error("gpu_attention_decode: bad shape (heads %d, kv_heads %d, head_dim %d <= %d)", heads,
                         kv_heads, head_dim, 32 * DEC_MAX_PER_LANE);
        return;
    }
    float scale = (float)(1.0 / sqrt((double)head_dim));
    unsigned grid = (unsigned)batch * heads;
    int per = (head_dim + 31) / 32;
    bf16 *o = (bf16 *)out;
    const bf16 *qq = (const bf16 *)q, *kc = (const bf16 *)k_cache, *vc = (const bf16 *)v_cache;
#define DEC_CASE(P)                                                                                                    \
    LAUNCH(attention_decode_kernel<P>, grid, 32 * DEC_WARPS, 0, gpu_stream_(), o, qq, q_stride, kc, vc, len, max_len, \
           heads, kv_heads, head_dim, scale)
    if (per <= 1) DEC_CASE(1);
    else if (per <= 2) DEC_CASE(2);
    else if (per <= 4) DEC_CASE(4);
    else DEC_CASE(8);
#undef DEC_CASE
    gpu_after_launch("gpu_attention_decode");
}

__global__ void rows_copy_kernel(bf16 *out, const bf16 *x, const int *rows, int dim) {
    size_t k = blockIdx.x;
    const bf16 *src = x + (size_t)rows[k] * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) out[k * dim + j] = src[j];
}

void gpu_rows_copy(gpu_bf16 *out, const gpu_bf16 *x, const int *rows, int count, int dim) {
    if (count <= 0 || dim <= 0) return;
    LAUNCH(rows_copy_kernel, count, 128, 0, gpu_stream_(), (bf16 *)out, (const bf16 *)x, rows, dim);
    gpu_after_launch("gpu_rows_copy");
}

/* One block per row: the largest value, ties to the lowest index (NaN never
 * wins), as core/decode.c's argmax. */
__global__ void argmax_kernel(int *out, const float *x, int cols) {
    __shared__ float sv[256];
    __shared__ int si[256];
    const float *r = x + (size_t)blockIdx.x * cols;
    float best = -INFINITY;
    int at = -1;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) { /* rising j: a tie keeps the first */
        float v = r[j];
        if (v == v && (at < 0 || v > best)) {
            best = v;
            at = j;
        }
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = at;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            float v = sv[threadIdx.x + w], u = sv[threadIdx.x];
            int i = si[threadIdx.x + w], j = si[threadIdx.x];
            if (i >= 0 && (j < 0 || v > u || (v == u && i < j))) {
                sv[threadIdx.x] = v;
                si[threadIdx.x] = i;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = si[0] < 0 ? 0 : si[0];
}

void gpu_argmax_rows(int *out, const float *x, int n, int cols) {
    if (n <= 0 || cols <= 0) return;
    LAUNCH(argmax_kernel, n, 256, 0, gpu_stream_(), out, x, cols);
    gpu_after_launch("gpu_argmax_rows");
}

/* After step `step` chose next[b]: record it, feed it to the next step at the
 * sequence's cache length, and count the row the step appended. */
__global__ void decode_advance_kernel(int *out, int max_new, int step, const int *next, int *tokens, int *pos,
                                      int *slot, int *len, int *klen, int max_len, int batch, int appended) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    out[(size_t)b * max_new + step] = next[b];
    int l = len[b] + appended;
    len[b] = l;
    tokens[b] = next[b];
    pos[b] = l;
    slot[b] = b * max_len + l;
    klen[b] = l + 1;
}

void gpu_decode_advance(int *out, int max_new, int step, const int *next, int *tokens, int *pos, int *slot, int *len,
                        int *klen, int max_len, int batch, int appended) {
    if (batch <= 0) return;
    LAUNCH(decode_advance_kernel, grid_1d((size_t)batch, 128), 128, 0, gpu_stream_(), out, max_new, step, next, tokens,
           pos, slot, len, klen, max_len, batch, appended);
    gpu_after_launch("gpu_decode_advance");
}

/* Scoring (the engine's score_batch): one block per row of fp32 logits, the
 * log-softmax of the target in fp32 (max, then the sum of exp), returned in
 * double; 0 for a row without a target. The block size is fixed, so a row's
 * value depends on that row alone (batch-invariant). */
__global__ void log_prob_f32_kernel(double *out, const float *logits, const int *targets, int vocab) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    int t = targets[row];
    if (t < 0 || t >= vocab) {
        if (threadIdx.x == 0) out[row] = 0.0;
        return;
    }
    const float *x = logits + row * vocab;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, x[j]);
    mx = block_max(mx, sh);
    float sum = 0.f;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(x[j] - mx);
    sum = block_sum(sum, sh);
    if (threadIdx.x == 0) out[row] = (double)x[t] - (double)mx - log((double)sum);
}

void gpu_log_prob_f32(double *out, const float *logits, const int *targets, int n, int vocab) {
    if (n <= 0 || vocab <= 0) return;
    LAUNCH(log_prob_f32_kernel, n, 256, 0, gpu_stream_(), out, logits, targets, vocab);
    gpu_after_launch("gpu_log_prob_f32");
}
