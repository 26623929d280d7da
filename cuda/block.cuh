/* block.cuh - one transformer block on the GPU, composed from the ops of
 * gpu.h exactly as core/model.c composes the backend table, for the trainer
 * (cuda/engine.cu) and the check (cuda/check/gpu_check.cu).
 *
 *   ln1 = rmsnorm(x);  qkv = rope(ln1 wqkv^T);  att = attention(qkv)
 *   x_mid = x + att wo^T;  ln2 = rmsnorm(x_mid);  h13 = ln2 w13^T
 *   x_out = x_mid + swiglu(h13) w2^T
 *
 * The residual adds ride in the GEMM epilogues. Weights are bf16 views into
 * a unit at core/model.c's offsets; gradients fp32 views at the same offsets. */
#ifndef PRESIGHT_BLOCK_CUH
#define PRESIGHT_BLOCK_CUH

#include <math.h>
#include <string.h>

#include <vector>

#include "gpu.h"

extern "C" {
#include "config.h"
}

/* One block's weights (bf16) or gradients (fp32), at core/model.c's offsets. */
template <class T> struct BlockW {
    T *attn_norm, *wqkv, *wo, *ffn_norm, *w13, *w2;
};

struct Dims {
    int B, S, n, D, H, KV, hd, QKV, HD, F, V, layers;
    float eps;
    const float *cos_sin; /* device RoPE table [context, hd/2, 2] */
    const int *pos;       /* device positions [n] */
    const int *sample;    /* device sample ids [n] (packed samples, -1 padding); NULL: plain causal */
};

static inline Dims make_dims(const model_config &c, int B, int S) {
    Dims d;
    d.B = B;
    d.S = S;
    d.n = B * S;
    d.D = c.dim;
    d.H = c.heads;
    d.KV = c.kv_heads;
    d.hd = c.dim / c.heads;
    d.QKV = (c.heads + 2 * c.kv_heads) * d.hd;
    d.HD = c.heads * d.hd;
    d.F = c.ffn_dim;
    d.V = c.vocab;
    d.layers = c.layers;
    d.eps = (float)c.norm_eps;
    d.cos_sin = NULL;
    d.pos = NULL;
    d.sample = NULL;
    return d;
}

static inline size_t block_params(const Dims &d) {
    return 2 * (size_t)d.D + (size_t)d.QKV * d.D + (size_t)d.D * d.HD + 3 * (size_t)d.F * d.D;
}

/* A NULL unit (a frozen unit's gradient) gives NULL views: the ops skip them. */
template <class T> static inline BlockW<T> block_view(T *u, const Dims &d) {
    BlockW<T> b;
    if (!u) {
        memset(&b, 0, sizeof b);
        return b;
    }
    b.attn_norm = u;
    b.wqkv = b.attn_norm + d.D;
    b.wo = b.wqkv + (size_t)d.QKV * d.D;
    b.ffn_norm = b.wo + (size_t)d.D * d.HD;
    b.w13 = b.ffn_norm + d.D;
    b.w2 = b.w13 + 2 * (size_t)d.F * d.D;
    return b;
}

/* What the backward of a block reads: x (its input) and x_out are borrowed. */
struct BlockActs {
    gpu_bf16 *x, *x_mid, *x_out, *ln1, *ln2, *qkv, *att, *h13, *hs;
    float *rstd1, *rstd2, *lse;
};

/* Activation gradients of one block, reused block after block. */
struct Scratch {
    gpu_bf16 *dx, *dln, *dqkv, *datt, *dh13, *dhs;
};

/* Bytes of the buffers alloc_block_acts takes (x and x_out are borrowed). */
static inline size_t block_acts_bytes(const Dims &d) {
    size_t n = d.n;
    return 2 * (n * d.D * 3 + n * d.QKV + n * d.HD + n * 3 * d.F) + 4 * (2 * n + (size_t)d.B * d.H * d.S);
}

static inline size_t scratch_bytes(const Dims &d) {
    size_t n = d.n;
    return 2 * (n * d.D * 2 + n * d.QKV + n * d.HD + n * 3 * d.F);
}

/* Allocates the block's own buffers (not x, x_out); -1 when one failed (the
 * allocator recorded why). Free with free_block_acts. */
static inline int alloc_block_acts(const Dims &d, BlockActs &a, gpu_bf16 *x, gpu_bf16 *x_out) {
    size_t n = d.n;
    memset(&a, 0, sizeof a);
    a.x = x;
    a.x_out = x_out;
    a.x_mid = (gpu_bf16 *)gpu_malloc(n * d.D * 2);
    a.ln1 = (gpu_bf16 *)gpu_malloc(n * d.D * 2);
    a.ln2 = (gpu_bf16 *)gpu_malloc(n * d.D * 2);
    a.qkv = (gpu_bf16 *)gpu_malloc(n * d.QKV * 2);
    a.att = (gpu_bf16 *)gpu_malloc(n * d.HD * 2);
    a.h13 = (gpu_bf16 *)gpu_malloc(n * 2 * d.F * 2);
    a.hs = (gpu_bf16 *)gpu_malloc(n * d.F * 2);
    a.rstd1 = (float *)gpu_malloc(n * 4);
    a.rstd2 = (float *)gpu_malloc(n * 4);
    a.lse = (float *)gpu_malloc((size_t)d.B * d.H * d.S * 4);
    return a.x_mid && a.ln1 && a.ln2 && a.qkv && a.att && a.h13 && a.hs && a.rstd1 && a.rstd2 && a.lse ? 0 : -1;
}

static inline void free_block_acts(BlockActs &a) {
    for (void *p : {(void *)a.x_mid, (void *)a.ln1, (void *)a.ln2, (void *)a.qkv, (void *)a.att, (void *)a.h13,
                    (void *)a.hs, (void *)a.rstd1, (void *)a.rstd2, (void *)a.lse})
        gpu_free(p);
    memset(&a, 0, sizeof a);
}

static inline int alloc_scratch(const Dims &d, Scratch &s) {
    size_t n = d.n;
    s.dx = (gpu_bf16 *)gpu_malloc(n * d.D * 2);
    s.dln = (gpu_bf16 *)gpu_malloc(n * d.D * 2);
    s.dqkv = (gpu_bf16 *)gpu_malloc(n * d.QKV * 2);
    s.datt = (gpu_bf16 *)gpu_malloc(n * d.HD * 2);
    s.dh13 = (gpu_bf16 *)gpu_malloc(n * 2 * d.F * 2);
    s.dhs = (gpu_bf16 *)gpu_malloc(n * d.F * 2);
    return s.dx && s.dln && s.dqkv && s.datt && s.dh13 && s.dhs ? 0 : -1;
}

static inline void free_scratch(Scratch &s) {
    for (void *p : {(void *)s.dx, (void *)s.dln, (void *)s.dqkv, (void *)s.datt, (void *)s.dh13, (void *)s.dhs})
        gpu_free(p);
    memset(&s, 0, sizeof s);
}

/* Optional per-op timing: the check marks an event after each op. */
struct OpMarks {
    virtual void mark(const char *label) = 0;
    virtual ~OpMarks() {}
};
#define MARK(label)                                                                                                    \
    do {                                                                                                               \
        if (marks) marks->mark(label);                                                                                 \
    } while (0)

/* Decoding (the engine's greedy_decode): this layer's KV cache. The block
 * stores its roped keys and values at cache row slot[i] of each row (prefill
 * and steps); a step (len set, seq 1) then attends over the cache instead. */
struct BlockCache {
    gpu_bf16 *k, *v;  /* this layer's [batch, max_len, KV hd] */
    const int *slot;  /* [n] cache row of each row, -1: none (padding) */
    const int *len;   /* [batch] rows each query attends to (a step); NULL: a prefill */
    int max_len;
};

static inline void block_fwd(const Dims &d, const BlockW<gpu_bf16> &w, const BlockActs &a, OpMarks *marks,
                             const BlockCache *kc = NULL) {
    int n = d.n;
    gpu_rmsnorm_forward(a.ln1, a.rstd1, a.x, w.attn_norm, n, d.D, d.eps);
    MARK("rmsnorm");
    gpu_matmul_forward(a.qkv, a.ln1, w.wqkv, NULL, n, d.D, d.QKV);
    MARK("gemm qkv");
    gpu_rope_forward(a.qkv, d.cos_sin, d.pos, n, d.QKV, d.H + d.KV, d.hd);
    MARK("rope");
    if (kc) gpu_kv_cache_write(kc->k, kc->v, a.qkv, kc->slot, n, d.H, d.KV, d.hd);
    if (kc && kc->len)
        gpu_attention_decode(a.att, a.qkv, d.QKV, kc->k, kc->v, kc->len, d.B, kc->max_len, d.H, d.KV, d.hd);
    else if (d.sample)
        gpu_attention_forward_masked(a.att, a.lse, a.qkv, d.sample, d.B, d.S, d.H, d.KV, d.hd);
    else
        gpu_attention_forward(a.att, a.lse, a.qkv, d.B, d.S, d.H, d.KV, d.hd);
    MARK("attention fwd");
    gpu_matmul_forward(a.x_mid, a.att, w.wo, a.x, n, d.HD, d.D);
    MARK("gemm wo (+residual)");
    gpu_rmsnorm_forward(a.ln2, a.rstd2, a.x_mid, w.ffn_norm, n, d.D, d.eps);
    MARK("rmsnorm");
    gpu_matmul_forward(a.h13, a.ln2, w.w13, NULL, n, d.D, 2 * d.F);
    MARK("gemm w13");
    gpu_swiglu_forward(a.hs, a.h13, n, d.F);
    MARK("swiglu");
    gpu_matmul_forward(a.x_out, a.hs, w.w2, a.x_mid, n, d.F, d.D);
    MARK("gemm w2 (+residual)");
}

/* s.dx: d(block output) on entry, d(block input) on exit (the residual
 * path's gradient passes through; rmsnorm_backward adds the norm's). A
 * frozen block passes g with NULL views: no weight-gradient GEMMs. */
static inline void block_bwd(const Dims &d, const BlockW<gpu_bf16> &w, const BlockW<float> &g, const BlockActs &a,
                             const Scratch &s, OpMarks *marks) {
    int n = d.n;
    gpu_matmul_backward(s.dhs, g.w2, s.dx, a.hs, w.w2, n, d.F, d.D);
    MARK("gemm w2 bwd");
    gpu_swiglu_backward(s.dh13, s.dhs, a.h13, n, d.F);
    MARK("swiglu bwd");
    gpu_matmul_backward(s.dln, g.w13, s.dh13, a.ln2, w.w13, n, d.D, 2 * d.F);
    MARK("gemm w13 bwd");
    gpu_rmsnorm_backward(s.dx, g.ffn_norm, s.dln, a.x_mid, w.ffn_norm, a.rstd2, n, d.D);
    MARK("rmsnorm bwd");
    gpu_matmul_backward(s.datt, g.wo, s.dx, a.att, w.wo, n, d.HD, d.D);
    MARK("gemm wo bwd");
    if (d.sample)
        gpu_attention_backward_masked(s.dqkv, s.datt, a.att, a.lse, a.qkv, d.sample, d.B, d.S, d.H, d.KV, d.hd);
    else
        gpu_attention_backward(s.dqkv, s.datt, a.att, a.lse, a.qkv, d.B, d.S, d.H, d.KV, d.hd);
    MARK("attention bwd");
    gpu_rope_backward(s.dqkv, d.cos_sin, d.pos, n, d.QKV, d.H + d.KV, d.hd);
    MARK("rope bwd");
    gpu_matmul_backward(s.dln, g.wqkv, s.dqkv, a.ln1, w.wqkv, n, d.D, d.QKV);
    MARK("gemm qkv bwd");
    gpu_rmsnorm_backward(s.dx, g.attn_norm, s.dln, a.x, w.attn_norm, a.rstd1, n, d.D);
    MARK("rmsnorm bwd");
}

/* The RoPE table as core/model.c builds it (angles in double). */
static inline std::vector<float> rope_table(int max_pos, int head_dim, double theta) {
    int half = head_dim / 2;
    std::vector<float> t((size_t)max_pos * half * 2);
    for (int pos = 0; pos < max_pos; pos++)
        for (int i = 0; i < half; i++) {
            double angle = pos * pow(theta, -2.0 * i / head_dim);
            t[((size_t)pos * half + i) * 2 + 0] = (float)cos(angle);
            t[((size_t)pos * half + i) * 2 + 1] = (float)sin(angle);
        }
    return t;
}

#endif
