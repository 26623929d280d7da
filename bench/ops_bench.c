/* ops_bench.c - time of each CPU backend operation at the shapes of one
 * training step of a model (default: config/bench.cfg's 25M model, micro-batch
 * 8 x 256 tokens), and where a step's time goes.
 *
 * usage: ops_bench [batch seq dim heads kv_heads ffn vocab layers [reps]]
 * Each op is run reps times (default 7); the best time is kept, which filters
 * out other processes on a shared machine. Prints one line per op and a
 * per-step estimate: ops x calls per step (layers, forward and backward).
 * OPS_BENCH_FILTER=attention times only the ops whose name contains it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "blas.h"
#include "rng.h"
#include "simd.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static real *buf(size_t n, uint64_t seed, double scale) {
    real *p = NULL;
    if (posix_memalign((void **)&p, 64, (n ? n : 1) * sizeof(real))) {
        fprintf(stderr, "ops_bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (real)(scale * (2 * rng_uniform(seed, i) - 1));
    return p;
}

static int reps = 7;
static const char *filter; /* OPS_BENCH_FILTER: only the ops whose name contains it */
static double step_total = 0;

/* Times `stmt` (best of reps after one warm-up) and adds calls_per_step x best to the step estimate. */
#define TIME_OP(name, calls_per_step, flops, stmt)                                                                  \
    do {                                                                                                            \
        if (filter && !strstr(name, filter)) break;                                                                 \
        stmt;                                                                                                       \
        double best = 1e30;                                                                                         \
        for (int r_ = 0; r_ < reps; r_++) {                                                                         \
            double t_ = now_seconds();                                                                              \
            stmt;                                                                                                   \
            t_ = now_seconds() - t_;                                                                                \
            if (t_ < best) best = t_;                                                                               \
        }                                                                                                           \
        step_total += (calls_per_step) * best;                                                                      \
        if ((flops) > 0)                                                                                            \
            printf("%-34s %9.3f ms  x%-3d %8.1f GFLOP/s\n", name, best * 1e3, (int)(calls_per_step),               \
                   (flops) / best / 1e9);                                                                           \
        else                                                                                                        \
            printf("%-34s %9.3f ms  x%-3d\n", name, best * 1e3, (int)(calls_per_step));                            \
    } while (0)

int main(int argc, char **argv) {
    int B = 8, S = 256, D = 512, H = 8, KV = 4, F = 1344, V = 8192, layers = 6;
    if (argc >= 9) {
        B = atoi(argv[1]), S = atoi(argv[2]), D = atoi(argv[3]), H = atoi(argv[4]), KV = atoi(argv[5]);
        F = atoi(argv[6]), V = atoi(argv[7]), layers = atoi(argv[8]);
    }
    if (argc >= 10) reps = atoi(argv[9]);
    filter = getenv("OPS_BENCH_FILTER");
    ps_error err;
    if (blas_init(&err)) {
        fprintf(stderr, "ops_bench: %s\n", err.msg);
        return 1;
    }
    const backend_ops *ops = backend_cpu();
    int n = B * S, hd = D / H, QKV = (H + 2 * KV) * hd, HD = H * hd;
    size_t nD = (size_t)n * D;
    size_t per_layer = (size_t)D * QKV + (size_t)HD * D + 3 * (size_t)D * F + 2 * (size_t)D;
    size_t params = (size_t)layers * per_layer + 2 * (size_t)V * D + D;
    printf("ops_bench: batch %d seq %d dim %d heads %d kv_heads %d ffn %d vocab %d layers %d (%.1fM params); %s; "
           "kernels %s\n",
           B, S, D, H, KV, F, V, layers, params / 1e6, blas_describe(), simd_describe());

    real *x = buf(nD, 1, 1), *y = buf(nD, 2, 1), *z = buf(nD, 3, 1), *w = buf(D, 4, 1), *rstd = buf(n, 5, 1);
    real *dw = buf(D, 31, 0), *dhs = buf((size_t)n * F, 32, 1);
    real *qkv = buf((size_t)n * QKV, 6, 1), *dqkv = buf((size_t)n * QKV, 7, 1);
    real *att = buf((size_t)n * HD, 8, 1), *datt = buf((size_t)n * HD, 9, 1);
    real *probs = buf((size_t)B * H * S * S, 10, 0), *scratch = buf((size_t)B * H * S * S, 11, 0);
    real *h13 = buf((size_t)n * 2 * F, 12, 2), *dh13 = buf((size_t)n * 2 * F, 13, 1), *hs = buf((size_t)n * F, 14, 1);
    real *logits = buf((size_t)n * V, 15, 3), *logits_work = buf((size_t)n * V, 16, 0);
    real *wq = buf((size_t)QKV * D, 17, 0.05), *dwq = buf((size_t)QKV * D, 18, 0);
    real *w13 = buf((size_t)2 * F * D, 19, 0.05), *dw13 = buf((size_t)2 * F * D, 20, 0);
    real *w2 = buf((size_t)D * F, 21, 0.05), *dw2 = buf((size_t)D * F, 22, 0);
    real *head = buf((size_t)V * D, 23, 0.05), *dhead = buf((size_t)V * D, 24, 0);
    real *p = buf(params, 25, 1), *g = buf(params, 26, 1e-3), *m = buf(params, 27, 0), *v = buf(params, 28, 0);
    int *tokens = malloc(n * sizeof(int)), *pos = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) tokens[i] = (int)rng_below(29, (uint64_t)i, (uint64_t)V), pos[i] = i % S;
    real *cs = buf((size_t)S * hd, 30, 1);
    for (int t = 0; t < S; t++) /* real rotations: random entries shrank qkv into denormals over the reps */
        for (int k = 0; k < hd / 2; k++) {
            double ang = t * pow(500000.0, -2.0 * k / hd);
            cs[((size_t)t * (hd / 2) + k) * 2] = (real)cos(ang), cs[((size_t)t * (hd / 2) + k) * 2 + 1] = (real)sin(ang);
        }
    for (int i = 0; i < n * QKV; i++) qkv[i] *= (real)0.5;

    double L = layers, mm = 2.0 * n; /* flops per weight per matmul */
    printf("-- matrix products\n");
    TIME_OP("matmul fwd qkv", L, mm * QKV * D, ops->matmul_forward(qkv, x, wq, n, D, QKV));
    TIME_OP("matmul bwd qkv", L, 2 * mm * QKV * D, ops->matmul_backward(y, dwq, dqkv, x, wq, n, D, QKV));
    TIME_OP("matmul fwd wo", L, mm * HD * D, ops->matmul_forward(y, att, wq, n, HD, D));
    TIME_OP("matmul bwd wo", L, 2 * mm * HD * D, ops->matmul_backward(datt, dwq, y, att, wq, n, HD, D));
    TIME_OP("matmul fwd w13", L, mm * 2 * F * D, ops->matmul_forward(h13, x, w13, n, D, 2 * F));
    TIME_OP("matmul bwd w13", L, 2 * mm * 2 * F * D, ops->matmul_backward(y, dw13, dh13, x, w13, n, D, 2 * F));
    TIME_OP("matmul fwd w2", L, mm * F * D, ops->matmul_forward(y, hs, w2, n, F, D));
    TIME_OP("matmul bwd w2", L, 2 * mm * F * D, ops->matmul_backward(dhs, dw2, y, hs, w2, n, F, D));
    TIME_OP("matmul fwd head", 1, mm * V * D, ops->matmul_forward(logits_work, x, head, n, D, V));
    TIME_OP("matmul bwd head", 1, 2 * mm * V * D, ops->matmul_backward(y, dhead, logits_work, x, head, n, D, V));
    double att_flops = 4.0 * B * H * S * S * hd; /* both products, full square (PaLM convention) */
    for (int i = 0; i < n * QKV; i++) qkv[i] = (real)(0.5 * (2 * rng_uniform(6, i) - 1));
    TIME_OP("attention fwd", L, att_flops, ops->attention_forward(att, probs, qkv, B, S, H, KV, hd));
    TIME_OP("attention bwd", L, 2 * att_flops,
            ops->attention_backward(dqkv, scratch, datt, probs, qkv, B, S, H, KV, hd));
    printf("-- memory-bound ops\n");
    TIME_OP("rmsnorm fwd", 2 * L + 1, 0, ops->rmsnorm_forward(y, rstd, x, w, n, D, 1e-5f));
    TIME_OP("rmsnorm bwd", 2 * L + 1, 0, ops->rmsnorm_backward(z, dw, y, x, w, rstd, n, D));
    TIME_OP("rope fwd", L, 0, ops->rope_forward(qkv, cs, pos, n, QKV, H + KV, hd));
    TIME_OP("rope bwd", L, 0, ops->rope_backward(dqkv, cs, pos, n, QKV, H + KV, hd));
    TIME_OP("swiglu fwd", L, 0, ops->swiglu_forward(hs, h13, n, F));
    TIME_OP("swiglu bwd", L, 0, ops->swiglu_backward(dh13, hs, h13, n, F));
    TIME_OP("residual_add", 2 * L, 0, ops->residual_add(y, y, x, nD));
    TIME_OP("embedding fwd", 1, 0, ops->embedding_forward(y, tokens, head, n, D));
    TIME_OP("embedding bwd", 1, 0, ops->embedding_backward(dhead, x, tokens, n, D));
    int nv;
    TIME_OP("cross_entropy loss", 1, 0, ops->cross_entropy(logits, tokens, n, V, -1, 0, &nv));
    TIME_OP("cross_entropy grad", 1, 0, {
        memcpy(logits_work, logits, (size_t)n * V * sizeof(real));
        ops->cross_entropy(logits_work, tokens, n, V, -1, 1.0f / n, &nv);
    });
    TIME_OP("  (memcpy of the logits)", -1, 0, memcpy(logits_work, logits, (size_t)n * V * sizeof(real)));
    TIME_OP("zero (all gradients)", 1, 0, ops->zero(g, params));
    TIME_OP("sum_squares (all gradients)", 1, 0, ops->sum_squares(g, params));
    TIME_OP("adamw (all parameters)", 1, 0,
            ops->adamw_update(p, g, m, v, params, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 1.0f));
    printf("-- forward-only and adaptation ops (x0: not part of the training step)\n");
    int *sample = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) sample[i] = (i % S) / (S / 4); /* four packed samples per sequence */
    TIME_OP("matmul_forward_rows qkv", 0, mm * QKV * D, ops->matmul_forward_rows(qkv, x, wq, n, D, QKV));
    TIME_OP("matmul_forward_rows head", 0, mm * V * D, ops->matmul_forward_rows(logits_work, x, head, n, D, V));
    for (int i = 0; i < n * QKV; i++) qkv[i] = (real)(0.5 * (2 * rng_uniform(6, i) - 1));
    TIME_OP("attention fwd masked (4 samples)", 0, att_flops,
            ops->attention_forward_masked(att, probs, qkv, sample, B, S, H, KV, hd));
    TIME_OP("attention fwd rows (forward-only)", 0, att_flops / 2,
            ops->attention_forward_rows(att, qkv, NULL, B, S, H, KV, hd));
    TIME_OP("bias fwd", 0, 0, ops->bias_forward(y, w, n, D));
    TIME_OP("bias bwd", 0, 0, ops->bias_backward(dw, x, n, D));
    TIME_OP("gelu fwd", 0, 0, ops->gelu_forward(y, x, nD));
    TIME_OP("gelu bwd", 0, 0, ops->gelu_backward(z, y, x, nD));
    free(sample);
    double flops = n * (6.0 * ((double)layers * ((double)D * QKV + (double)HD * D + 3.0 * D * F) + (double)V * D) +
                        12.0 * layers * (double)D * S);
    printf("step estimate: %.3f s, %.1f model GFLOP/s, %.0f tokens/s\n", step_total, flops / step_total / 1e9,
           n / step_total);
    return 0;
}
