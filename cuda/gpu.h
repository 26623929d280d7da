/* gpu.h - the GPU backend (CUDA, Hopper): device, memory, stream, GEMMs,
 * fused kernels, attention and NCCL, behind a plain C API.
 *
 * Precision: activations, gathered parameters and activation gradients are
 * bf16; every reduction and every product accumulates in fp32; parameter
 * gradients, fp32 master weights and the AdamW moments are fp32.
 *
 * Semantics follow core/backend.h op for op (same layouts, same
 * accumulate/overwrite conventions), so that every GPU op can be checked
 * against core/backend_cpu.c (cuda/check/gpu_check.cu does). Differences:
 *   - parameter gradients (matmul dw, rmsnorm dweight, embedding dtable) are
 *     fp32 and ACCUMULATE, as in backend.h;
 *   - attention keeps the row log-sum-exp [batch, heads, seq] (fp32) instead
 *     of the probabilities, and its backward reads out (the forward output)
 *     instead of probs: flash-style, nothing of size seq^2 is stored;
 *   - cross_entropy leaves its results on the device (no host sync).
 *
 * Execution: every op is enqueued on ONE compute stream (gpu_stream()) and
 * returns at once; nothing synchronises except gpu_sync(), gpu_copy_to_host()
 * and gpu_event_ms(). Errors of asynchronous work are recorded (the first one
 * wins) and reported by gpu_sync() / gpu_error(). PRESIGHT_GPU_SYNC=1 makes
 * every op synchronise and check, to pin an asynchronous fault to its op.
 *
 * Memory: gpu_malloc/gpu_free are a caching allocator (size-class free lists
 * over cudaMalloc): a block freed is reused by the next request of its class,
 * so a training step after the first does no cudaMalloc (gpu_mem_stats counts
 * them). Reuse is stream-ordered: safe because all work is on the one stream.
 * Ops that need scratch take it from this allocator. */
#ifndef PRESIGHT_GPU_H
#define PRESIGHT_GPU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "error.h" /* C linkage for ps_fail, also when a C++ file includes this first */

/* bf16 as stored (the upper half of an IEEE float). */
typedef uint16_t gpu_bf16;

static inline float gpu_bf16_to_float(gpu_bf16 h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline gpu_bf16 gpu_float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (gpu_bf16)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (gpu_bf16)(bits >> 16);
}

/* ---------------------------------------------------------------- device */

/* 1 when a usable GPU is present (a CUDA device of compute capability 9.0 or
 * later: the build targets sm_90); 0 otherwise, with a plain message in err,
 * e.g. "no usable GPU (cudaGetDeviceCount: error 35 'CUDA driver version is
 * insufficient for CUDA runtime version'); using the CPU backend". */
int gpu_available(ps_error *err);

/* The node-local rank from the launcher's environment (OMPI_COMM_WORLD_LOCAL_RANK,
 * SLURM_LOCALID, MPI_LOCALRANKID, LOCAL_RANK), 0 when none is set. */
int gpu_local_rank(void);

/* Selects device local_rank % device_count, creates the compute stream, the
 * cuBLASLt handle and its workspace. Idempotent. */
int gpu_init(int local_rank, ps_error *err);
/* Frees everything gpu_init and the allocator hold. */
void gpu_shutdown(void);

typedef struct gpu_info {
    char name[256];
    int device, device_count;
    int cc_major, cc_minor;
    int sm_count;
    int clock_khz, mem_clock_khz, mem_bus_bits;
    size_t total_mem, l2_bytes, smem_per_block_optin;
    int driver_version, runtime_version;
} gpu_info;
int gpu_get_info(gpu_info *info, ps_error *err);

/* The compute stream (a cudaStream_t). */
void *gpu_stream(void);
/* Waits for the stream; 0, or -1 with the first recorded error. */
int gpu_sync(ps_error *err);
/* The first recorded asynchronous error without waiting: 0 none, -1 (err filled). */
int gpu_error(ps_error *err);
/* Forget a recorded error (tests that provoke one). */
void gpu_clear_error(void);

/* ---------------------------------------------------------------- memory */

void *gpu_malloc(size_t bytes); /* NULL on failure (the reason is recorded: gpu_error) */
void gpu_free(void *ptr);       /* NULL is fine */
void gpu_empty_cache(void);     /* returns cached free blocks to CUDA */

typedef struct gpu_mem_stats {
    size_t in_use, peak_in_use;     /* bytes handed out (rounded to size classes) */
    size_t reserved, peak_reserved; /* bytes held from cudaMalloc */
    size_t requested_in_use, peak_requested; /* bytes asked for */
    long long n_alloc, n_cuda_malloc, n_cuda_free;
} gpu_mem_stats;
void gpu_mem_stats_get(gpu_mem_stats *s);
void gpu_mem_reset_peak(void);

/* Copies on the compute stream; to_host waits for it. 0 ok, -1 error. */
int gpu_copy_to_device(void *dst, const void *src, size_t bytes, ps_error *err);
int gpu_copy_to_host(void *dst, const void *src, size_t bytes, ps_error *err);
/* Device-to-device, asynchronous. */
void gpu_copy(void *dst, const void *src, size_t bytes);
/* Byte fill, asynchronous (0xff poisons bf16 and fp32 with NaN). */
void gpu_memset(void *dst, int byte, size_t bytes);

/* ---------------------------------------------------------------- events */

typedef struct gpu_event gpu_event;
gpu_event *gpu_event_new(void);
void gpu_event_free(gpu_event *e);
void gpu_event_record(gpu_event *e);
/* Milliseconds between two recorded events (waits for end). */
float gpu_event_ms(gpu_event *start, gpu_event *end);

/* ----------------------------------------------------------- conversions */

void gpu_f32_to_bf16(gpu_bf16 *dst, const float *src, size_t count);
void gpu_bf16_to_f32(float *dst, const gpu_bf16 *src, size_t count);

/* ----------------------------------------------------------------- GEMMs */

/* cuBLASLt, bf16 operands, fp32 accumulation; algorithms chosen by the
 * heuristic once per shape/alignment and cached.
 *
 * out[n, out_dim] = in[n, in_dim] @ w[out_dim, in_dim]^T (+ residual[n, out_dim]
 * when residual is non-NULL: the residual add fused into the GEMM epilogue;
 * residual may alias out). */
void gpu_matmul_forward(gpu_bf16 *out, const gpu_bf16 *in, const gpu_bf16 *w, const gpu_bf16 *residual, int n,
                        int in_dim, int out_dim);
/* din[n, in_dim] = dout @ w (bf16, overwrite; skipped when NULL);
 * dw[out_dim, in_dim] += dout^T @ in (fp32, ACCUMULATES; skipped when NULL). */
void gpu_matmul_backward(gpu_bf16 *din, float *dw, const gpu_bf16 *dout, const gpu_bf16 *in, const gpu_bf16 *w, int n,
                         int in_dim, int out_dim);

/* Element types of gpu_gemm. */
enum { GPU_BF16 = 0, GPU_F32 = 1 };

/* The general form, row-major like blas_gemm: C[m,n] = alpha op(A) op(B) + beta C,
 * op(X) = X or X^T, lda/ldb/ldc row strides, a_type/b_type GPU_BF16, c_type
 * GPU_BF16 or GPU_F32; batch > 1 repeats it with the given element strides. */
void gpu_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const void *A, int lda, long long stride_a,
              const void *B, int ldb, long long stride_b, float beta, void *C, int c_type, int ldc,
              long long stride_c, int batch);
/* Number of distinct GEMM shapes seen (each ran the heuristic once). */
int gpu_gemm_cache_size(void);

/* --------------------------------------------------------------- kernels */

/* out[i,:] = table[tokens[i],:] (a negative token gives a zero row). tokens on the device. */
void gpu_embedding_forward(gpu_bf16 *out, const int *tokens, const gpu_bf16 *table, int n, int dim);
/* dtable[tokens[i],:] += dout[i,:] (fp32, atomics: the order of repeated tokens varies). */
void gpu_embedding_backward(float *dtable, const gpu_bf16 *dout, const int *tokens, int n, int dim);

/* rstd[i] = 1/sqrt(mean(x[i]^2) + eps) (fp32); out = x * rstd * weight. */
void gpu_rmsnorm_forward(gpu_bf16 *out, float *rstd, const gpu_bf16 *x, const gpu_bf16 *weight, int n, int dim,
                         float eps);
/* dx += d/dx (bf16), dweight += d/dweight (fp32, deterministic; skipped when NULL). */
void gpu_rmsnorm_backward(gpu_bf16 *dx, float *dweight, const gpu_bf16 *dout, const gpu_bf16 *x,
                          const gpu_bf16 *weight, const float *rstd, int n, int dim);

/* RoPE in place, Meta's interleaved pairs, as backend.h; cos_sin fp32
 * [max_pos, head_dim/2, 2] and pos[n] on the device. */
void gpu_rope_forward(gpu_bf16 *x, const float *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                      int head_dim);
void gpu_rope_backward(gpu_bf16 *dx, const float *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                       int head_dim);

/* out[n, ffn] = silu(h13[:, :ffn]) * h13[:, ffn:]; backward overwrites dh13 [n, 2 ffn]. */
void gpu_swiglu_forward(gpu_bf16 *out, const gpu_bf16 *h13, int n, int ffn);
void gpu_swiglu_backward(gpu_bf16 *dh13, const gpu_bf16 *dout, const gpu_bf16 *h13, int n, int ffn);

/* out = a + b (out may alias a or b); y += x. */
void gpu_residual_add(gpu_bf16 *out, const gpu_bf16 *a, const gpu_bf16 *b, size_t count);
void gpu_accumulate(gpu_bf16 *y, const gpu_bf16 *x, size_t count);

/* Softmax cross-entropy of bf16 logits [n, vocab], fused: one pass of online
 * softmax per row (max and sum together), no probability copy. Rows whose
 * target is ignore_index or outside [0, vocab) count nothing. Writes the SUM
 * of the losses (double) to *loss_sum and the counted rows to *n_valid, both
 * device pointers (either may be NULL). When grad_scale != 0 the logits are
 * overwritten by grad_scale * (softmax - onehot) (zeros for ignored rows). */
void gpu_cross_entropy(gpu_bf16 *logits, const int *targets, int n, int vocab, int ignore_index, float grad_scale,
                       double *loss_sum, int *n_valid);

/* Embedding rows (model_batch's tokens of -1): x[rows[k], :] = embeds[k, :]
 * (fp32 in, bf16 out) for k < count; the backward gathers the gradient,
 * dembeds[k, :] = dx[rows[k], :] (fp32, overwritten). rows on the device. */
void gpu_rows_scatter(gpu_bf16 *x, const float *embeds, const int *rows, int count, int dim);
void gpu_rows_gather(float *dembeds, const gpu_bf16 *dx, const int *rows, int count, int dim);

/* Per-row log-probability of the target, as backend.h's log_prob: out[i] =
 * log softmax(logits[i])[targets[i]] (double), 0 for rows whose target is
 * outside [0, vocab). Each row on its own. out on the device. */
void gpu_log_prob(double *out, const gpu_bf16 *logits, const int *targets, int n, int vocab);

/* out[group[i] * out_stride + j] += x[i, j] for rows with group[i] >= 0, in
 * double, rows in order (deterministic), as backend.h's pool_sum. */
void gpu_pool_sum(double *out, size_t out_stride, const gpu_bf16 *x, const int *group, int n, int dim);

/* The projector's ops (projector.cu), as backend.h's bias_* and gelu_*:
 * out[i, :] += bias (bf16); dbias[:] += the column sums of dout (fp32,
 * ACCUMULATES, deterministic; skipped when NULL); the exact erf GELU
 * (out may alias x) and its backward (overwrites dx; dx may alias dout). */
void gpu_bias_forward(gpu_bf16 *out, const gpu_bf16 *bias, int n, int dim);
void gpu_bias_backward(float *dbias, const gpu_bf16 *dout, int n, int dim);
void gpu_gelu_forward(gpu_bf16 *out, const gpu_bf16 *x, size_t count);
void gpu_gelu_backward(gpu_bf16 *dx, const gpu_bf16 *dout, const gpu_bf16 *x, size_t count);

/* Decoding with a KV cache (decode.cu), as backend.h's kv_cache_write and
 * attention_decode on bf16 caches [rows, kv_heads * head_dim]: row i of the
 * fused qkv [n, (H + 2 KVH) hd] goes to cache row slot[i] (none when < 0);
 * query b of q [batch, q_stride] attends to rows 0..len[b] - 1 of sequence
 * b's max_len rows (fp32 online softmax, head_dim <= 256); out [batch, H hd].
 * rows_copy: out[k, :] = x[rows[k], :] (bf16). argmax_rows: out[i] = the
 * index of row i's largest value, ties to the lowest (as core/decode.c).
 * decode_advance: after a step chose next[b] (device), records it at
 * out[b * max_new + step], adds `appended` rows to len[b] and sets the next
 * step's token, position, cache slot (b * max_len + len[b]) and klen
 * (len[b] + 1). Every pointer on the device. */
void gpu_kv_cache_write(gpu_bf16 *k_cache, gpu_bf16 *v_cache, const gpu_bf16 *qkv, const int *slot, int n, int heads,
                        int kv_heads, int head_dim);
void gpu_attention_decode(gpu_bf16 *out, const gpu_bf16 *q, int q_stride, const gpu_bf16 *k_cache,
                          const gpu_bf16 *v_cache, const int *len, int batch, int max_len, int heads, int kv_heads,
                          int head_dim);
void gpu_rows_copy(gpu_bf16 *out, const gpu_bf16 *x, const int *rows, int count, int dim);
void gpu_argmax_rows(int *out, const float *x, int n, int cols);
/* log-softmax(logits[i])[targets[i]] of fp32 logits [n, vocab] into out[i] (0 without a target). */
void gpu_log_prob_f32(double *out, const float *logits, const int *targets, int n, int vocab);
void gpu_decode_advance(int *out, int max_new, int step, const int *next, int *tokens, int *pos, int *slot, int *len,
                        int *klen, int max_len, int batch, int appended);

/* AdamW as backend.h on fp32 master params, grads and moments; param_bf16
 * (may be NULL) receives the updated parameters in bf16. */
void gpu_adamw_update(float *param, gpu_bf16 *param_bf16, const float *grad, float *m, float *v, size_t count,
                      float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                      float grad_scale);

/* Sum of squares of fp32 x, in double, deterministic; written to the device *out. */
void gpu_sum_squares(double *out, const float *x, size_t count);

/* x[0..bytes) = 0 */
void gpu_zero(void *x, size_t bytes);

/* ------------------------------------------------------------- attention */

/* Causal GQA over the fused qkv [batch*seq, (H + 2 KVH) hd] (after rope), as
 * backend.h: query head h reads kv head h / (H / KVH), scores scaled by
 * 1/sqrt(hd). out [batch*seq, H hd] bf16; lse [batch, H, seq] fp32 (natural
 * log of each row's softmax normaliser) is kept for the backward pass. */
void gpu_attention_forward(gpu_bf16 *out, float *lse, const gpu_bf16 *qkv, int batch, int seq, int heads,
                           int kv_heads, int head_dim);
/* dqkv (same shape as qkv) is overwritten; out and lse from the forward. */
void gpu_attention_backward(gpu_bf16 *dqkv, const gpu_bf16 *dout, const gpu_bf16 *out, const float *lse,
                            const gpu_bf16 *qkv, int batch, int seq, int heads, int kv_heads, int head_dim);

/* The same over packed samples (backend.h's attention_forward_masked):
 * sample[batch * seq] on the device; row i attends to rows j <= i of its
 * sequence with its sample id, a row of id -1 (padding) to nothing (output
 * 0). Always the GEMM path with the mask (the flash kernels are causal only). */
void gpu_attention_forward_masked(gpu_bf16 *out, float *lse, const gpu_bf16 *qkv, const int *sample, int batch,
                                  int seq, int heads, int kv_heads, int head_dim);
void gpu_attention_backward_masked(gpu_bf16 *dqkv, const gpu_bf16 *dout, const gpu_bf16 *out, const float *lse,
                                   const gpu_bf16 *qkv, const int *sample, int batch, int seq, int heads, int kv_heads,
                                   int head_dim);

/* Implementations behind the two calls above:
 *   GPU_ATT_FLASH: fused flash-style kernels (online softmax, tiles in shared
 *     memory, bf16 tensor cores through WMMA with fp32 accumulators), head_dim
 *     64 or 128; other head dims use GPU_ATT_GEMM;
 *   GPU_ATT_GEMM: S = Q K^T and P V through batched cuBLASLt GEMMs plus a
 *     masked-softmax kernel; materialises [batch, H, seq, seq] scratch.
 * Default FLASH; PRESIGHT_GPU_ATTENTION=gemm|flash overrides at gpu_init. */
enum { GPU_ATT_FLASH = 0, GPU_ATT_GEMM = 1 };
void gpu_attention_set_impl(int impl);
int gpu_attention_get_impl(void);
/* 1 when the flash kernels take this head_dim. */
int gpu_attention_flash_supports(int head_dim);
/* Bytes gpu_attention_backward takes from the allocator for one call (its
 * scratch, freed before it returns): stages/plan.c counts the same.
 * Flash backward: one CTA per 128 keys and query head, GQA group sums
 * through an fp32 buffer. Flash forward: one CTA per 128 queries and head,
 * S and O in accumulator fragments, no scratch. */
size_t gpu_attention_backward_scratch(int batch, int seq, int heads, int kv_heads, int head_dim);

/* ------------------------------------------------------------------ NCCL */

/* NCCL is loaded at run time (dlopen libnccl.so.2), so nothing else depends
 * on it being installed. Sum reductions, on the compute stream by default. */
typedef struct gpu_comm gpu_comm;
#define GPU_COMM_ID_BYTES 128
int gpu_comm_available(ps_error *err);               /* loads NCCL; 1 ok, 0 not (err says why) */
int gpu_comm_version(void);                          /* e.g. 22703, 0 if not loaded */
int gpu_comm_unique_id(void *id, ps_error *err);     /* id: GPU_COMM_ID_BYTES (rank 0 makes it, all share it) */
gpu_comm *gpu_comm_init(int world, int rank, const void *id, ps_error *err);
void gpu_comm_free(gpu_comm *c);
/* Runs c's collectives on stream (a cudaStream_t; NULL: the compute stream).
 * The caller orders them against the compute stream with events. */
void gpu_comm_set_stream(gpu_comm *c, void *stream);
int gpu_all_reduce(gpu_comm *c, const void *send, void *recv, size_t count, int type, ps_error *err);
int gpu_all_gather(gpu_comm *c, const void *send, void *recv, size_t send_count, int type, ps_error *err);
int gpu_reduce_scatter(gpu_comm *c, const void *send, void *recv, size_t recv_count, int type, ps_error *err);

#ifdef __cplusplus
}
#endif

#endif
