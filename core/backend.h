/* backend.h - the table of numeric operations the model is written against.
 *
 * The model (core/model.c) never computes anything itself: every forward and
 * backward operation goes through a backend_ops table. core/backend_cpu.c is
 * the fp32 reference (and the fast CPU path); cuda/ implements the same table
 * for GPUs, and every GPU test compares against the CPU one.
 *
 * Layout conventions (row-major throughout):
 *   - a batch of activations is [n, width] with n = batch * seq tokens,
 *     token t of sequence b at row b * seq + t;
 *   - a linear weight is [out_dim, in_dim], as torch.nn.Linear stores it;
 *   - attention reads one fused qkv buffer [n, (heads + 2 * kv_heads) * head_dim]
 *     whose row holds q heads, then k heads, then v heads.
 *
 * Gradient conventions (state them once, follow them everywhere):
 *   - parameter gradients ACCUMULATE (+=): callers zero them per step, and
 *     micro-batches of gradient accumulation simply add up;
 *   - rmsnorm_backward's dx ACCUMULATES (+=), because its input is the
 *     residual stream whose gradient already holds the skip path;
 *   - every other activation gradient is OVERWRITTEN (=).
 */
#ifndef PRESIGHT_BACKEND_H
#define PRESIGHT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "real.h"

typedef struct backend_ops {
    const char *name;

    /* out[n, out_dim] = in[n, in_dim] @ w[out_dim, in_dim]^T */
    void (*matmul_forward)(real *out, const real *in, const real *w, int n, int in_dim, int out_dim);
    /* din[n, in_dim] = dout @ w (overwrite; skipped when din is NULL);
     * dw[out_dim, in_dim] += dout^T @ in (skipped when dw is NULL). */
    void (*matmul_backward)(real *din, real *dw, const real *dout, const real *in, const real *w, int n,
                            int in_dim, int out_dim);

    /* The same product, but each output row depends on its input row alone:
     * bit-identical for a row whatever n is and wherever the row sits (for a
     * given thread count). Forward-only passes use it, so that scoring a row
     * does not depend on what else is in the batch. */
    void (*matmul_forward_rows)(real *out, const real *in, const real *w, int n, int in_dim, int out_dim);

    /* out[i, :] = table[tokens[i], :] */
    void (*embedding_forward)(real *out, const int *tokens, const real *table, int n, int dim);
    /* dtable[tokens[i], :] += dout[i, :] */
    void (*embedding_backward)(real *dtable, const real *dout, const int *tokens, int n, int dim);

    /* rstd[i] = 1 / sqrt(mean(x[i,:]^2) + eps); out[i,:] = x[i,:] * rstd[i] * weight[:].
     * rstd is saved for the backward pass. */
    void (*rmsnorm_forward)(real *out, real *rstd, const real *x, const real *weight, int n, int dim, float eps);
    /* dx += d/dx, dweight += d/dweight (both accumulate; see above). */
    void (*rmsnorm_backward)(real *dx, real *dweight, const real *dout, const real *x, const real *weight,
                             const real *rstd, int n, int dim);

    /* Rotary position embedding, in place, Meta's interleaved layout: within
     * each head, the pair (x[2i], x[2i+1]) is rotated by angle pos * freq_i.
     * x is [n, row_stride]; the first n_heads * head_dim entries of each row
     * are rotated (q and k heads sit side by side in the fused qkv row).
     * cos_sin is [max_pos, head_dim / 2, 2] = (cos, sin) of pos * freq_i,
     * precomputed by the model; pos[i] is the position of row i. */
    void (*rope_forward)(real *x, const real *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                         int head_dim);
    /* The gradient of a rotation is the inverse rotation: applied in place to dx. */
    void (*rope_backward)(real *dx, const real *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                          int head_dim);

    /* Causal grouped-query attention over the fused qkv [batch*seq, (H + 2*KVH) * hd]
     * (after rope). Query head h uses kv head h / (H / KVH). Scores are scaled by
     * 1/sqrt(hd). out is [batch*seq, H * hd]. probs [batch, H, seq, seq] receives
     * the softmax (zeros above the diagonal) and is kept for the backward pass. */
    void (*attention_forward)(real *out, real *probs, const real *qkv, int batch, int seq, int heads,
                              int kv_heads, int head_dim);
    /* dqkv (same shape as qkv) is overwritten. scratch holds at least
     * batch * heads * seq * seq reals (the backend may use less). */
    void (*attention_backward)(real *dqkv, real *scratch, const real *dout, const real *probs, const real *qkv,
                               int batch, int seq, int heads, int kv_heads, int head_dim);

    /* The same over packed samples: sample[b * seq + t] is the sample id of
     * each row. Row i attends to rows j <= i of its own sequence with the same
     * sample id; a row with sample id -1 (padding) attends to nothing and its
     * output row is 0. probs gets zeros outside that mask, so attention_backward
     * serves both. A row's output does not depend on the other samples' values
     * (bit-identical, as long as they are finite). */
    void (*attention_forward_masked)(real *out, real *probs, const real *qkv, const int *sample, int batch, int seq,
                                     int heads, int kv_heads, int head_dim);
    /* Forward-only attention, row by row: row i of sequence b attends to rows
     * j <= i with its sample id (sample NULL: all of them), scores and sums in
     * double in a fixed order; padding rows (id -1) give 0. A row's output
     * depends on the rows it attends to alone (not on seq, batch or the other
     * samples), and equals attention_decode's for the same keys and values.
     * Keeps no probabilities: no backward. */
    void (*attention_forward_rows)(real *out, const real *qkv, const int *sample, int batch, int seq, int heads,
                                   int kv_heads, int head_dim);
    /* One new query per sequence against a KV cache (greedy decoding).
     * q is [batch, q_stride] (the first heads * head_dim entries are used),
     * k_cache and v_cache [batch, max_len, kv_heads * head_dim]; sequence b
     * attends to cache rows 0..len[b] - 1 (the new token's own k, v included).
     * out is [batch, heads * head_dim]. Scores in double, fixed order. */
    void (*attention_decode)(real *out, const real *q, int q_stride, const real *k_cache, const real *v_cache,
                             const int *len, int batch, int max_len, int heads, int kv_heads, int head_dim);

    /* Copies the k and v heads of row i of the fused qkv [n, (H + 2 KVH) hd]
     * to row slot[i] of k_cache and v_cache ([rows, KVH hd] each) for each
     * slot[i] >= 0 (filling a KV cache). */
    void (*kv_cache_write)(real *k_cache, real *v_cache, const real *qkv, const int *slot, int n, int heads,
                           int kv_heads, int head_dim);
    /* out[group[i] * out_stride + j] += x[i, j] for the rows with group[i] >= 0,
     * in double, rows in order (mean-pooling hidden states; the caller divides). */
    void (*pool_sum)(double *out, size_t out_stride, const real *x, const int *group, int n, int dim);

    /* out[i, :] += bias[:] for n rows of dim (the bias of a Linear layer). */
    void (*bias_forward)(real *out, const real *bias, int n, int dim);
    /* dbias[:] += sum over rows of dout[i, :] (fixed row order). */
    void (*bias_backward)(real *dbias, const real *dout, int n, int dim);
    /* out[i] = gelu(x[i]) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): PyTorch's
     * nn.GELU() (approximate='none'), LLaVA's mlp2x_gelu. out may alias x. */
    void (*gelu_forward)(real *out, const real *x, size_t count);
    /* dx[i] = dout[i] (Phi(x) + x phi(x)) (overwrite; dx may alias dout). */
    void (*gelu_backward)(real *dx, const real *dout, const real *x, size_t count);

    /* h13 is [n, 2 * ffn]: gate a = h13[:, :ffn], up b = h13[:, ffn:].
     * out[n, ffn] = silu(a) * b, silu(a) = a * sigmoid(a). */
    void (*swiglu_forward)(real *out, const real *h13, int n, int ffn);
    /* dh13 [n, 2 * ffn] is overwritten. */
    void (*swiglu_backward)(real *dh13, const real *dout, const real *h13, int n, int ffn);

    /* out[i] = a[i] + b[i] for i < count (out may alias a or b). */
    void (*residual_add)(real *out, const real *a, const real *b, size_t count);
    /* y[i] += x[i] */
    void (*accumulate)(real *y, const real *x, size_t count);

    /* Softmax cross-entropy of logits [n, vocab] against targets[n]; rows whose
     * target is ignore_index (or outside [0, vocab)) contribute nothing.
     * Returns the SUM of the per-token losses (in double) and stores the number
     * of counted rows in *n_valid. When grad_scale != 0 the logits buffer is
     * overwritten in place by grad_scale * (softmax - onehot) for counted rows
     * and by zeros for ignored rows; when grad_scale == 0 logits are left alone. */
    double (*cross_entropy)(real *logits, const int *targets, int n, int vocab, int ignore_index,
                            real grad_scale, int *n_valid);

    /* Per-row log-probability of the target: out[i] = log softmax(logits[i])[targets[i]]
     * in double, 0 for rows whose target is ignore_index or outside [0, vocab).
     * logits are left alone; each row is computed on its own (the result for a
     * row does not depend on the other rows). */
    void (*log_prob)(double *out, const real *logits, const int *targets, int n, int vocab, int ignore_index);

    /* AdamW with decoupled weight decay and bias correction, on count elements:
     *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
     *   p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * p )
     * with g = grad[i] * grad_scale and t = step (1-based). */
    void (*adamw_update)(real *param, const real *grad, real *m, real *v, size_t count, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int64_t step, float grad_scale);

    /* Sum of squares of x (for the global gradient norm), accumulated in double. */
    double (*sum_squares)(const real *x, size_t count);

    /* x[i] = 0 */
    void (*zero)(real *x, size_t count);
} backend_ops;

/* The CPU backend (core/backend_cpu.c). Threads come from OpenMP and the BLAS. */
const backend_ops *backend_cpu(void);

#endif
