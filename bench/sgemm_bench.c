/* sgemm_bench.c - the sgemm rate of the BLAS presight loaded: the best over
 * square and large sizes (the BLAS's peak), and, given a config, the rate on
 * that model's own training-step GEMMs (issue 18: the model's FLOP/s is
 * judged against what the BLAS does on the same shapes).
 *
 * usage: sgemm_bench [CONFIG [key=value ...]]
 * Prints one JSON object. The shapes are those of core/backend_cpu.c's
 * matmul_forward (NT) and matmul_backward (NN for the input gradient, TN with
 * beta 1 for the weight gradient), for every linear layer of one micro-batch
 * (micro_batch x seq_len tokens), run through blas_gemm like the model's, so
 * split over the same threads. shapes_gflops = their FLOPs / their time,
 * each shape weighted by how often a step runs it (layers, or 1 for the
 * head); the attention products are not in it. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "blas.h"
#include "config.h"
#include "rng.h"
#include "simd.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best seconds of `reps` runs (after one warm-up) of C[m,n] = op(A) op(B) + beta C. */
static double gemm_seconds(int ta, int tb, int m, int n, int k, double beta, int reps) {
    real *a = malloc(sizeof(real) * m * k), *b = malloc(sizeof(real) * n * k), *c = calloc((size_t)m * n, sizeof(real));
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_bench: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < (long)m * k; i++) a[i] = (real)(rng_uniform(1, i) - 0.5);
    for (long i = 0; i < (long)n * k; i++) b[i] = (real)(rng_uniform(2, i) - 0.5);
    int lda = ta ? m : k, ldb = tb ? k : n;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t = now_seconds();
        blas_gemm(ta, tb, m, n, k, 1, a, lda, b, ldb, (real)beta, c, n);
        t = now_seconds() - t;
        if (r > 0 && t < best) best = t;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* The training step's linear layers: out_dim x in_dim, and how many per step. */
static void model_shapes(const run_config *cfg, double *flops, double *seconds) {
    const model_config *c = &cfg->model;
    int hd = c->dim / c->heads, n = cfg->train.micro_batch * cfg->train.seq_len;
    int lin[5][3] = {{(c->heads + 2 * c->kv_heads) * hd, c->dim, c->layers}, /* wqkv */
                     {c->dim, c->heads * hd, c->layers},                     /* wo */
                     {2 * c->ffn_dim, c->dim, c->layers},                    /* w1 | w3 */
                     {c->dim, c->ffn_dim, c->layers},                        /* w2 */
                     {c->vocab, c->dim, 1}};                                 /* head */
    *flops = *seconds = 0;
    for (int i = 0; i < 5; i++) {
        int out = lin[i][0], in = lin[i][1], times = lin[i][2];
        double f = 2.0 * n * out * in;
        double t = gemm_seconds(0, 1, n, out, in, 0, 3)    /* forward */
                   + gemm_seconds(0, 0, n, in, out, 0, 3)  /* input gradient */
                   + gemm_seconds(1, 0, out, in, n, 1, 3); /* weight gradient */
        printf(",\"shape_%dx%d_gflops\":%.1f", out, in, 3 * f / t / 1e9);
        *flops += times * 3 * f;
        *seconds += times * t;
    }
}

int main(int argc, char **argv) {
    ps_error err;
    run_config cfg;
    if (argc >= 2 && config_load_model(&cfg, argv[1], argc - 2, argv + 2, &err)) {
        fprintf(stderr, "sgemm_bench: %s\n", err.msg);
        return 1;
    }
    if (blas_init(&err)) {
        fprintf(stderr, "sgemm_bench: %s\n", err.msg);
        return 1;
    }
    static const int sizes[][3] = {{1024, 1024, 1024}, {2048, 2048, 2048}, {2048, 1536, 512}, {2048, 8192, 512}};
    double best = 0;
    printf("{\"blas\":\"%s\",\"threads\":%d,\"simd\":\"%s\"", blas_describe(), blas_threads(), simd_describe());
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int m = sizes[i][0], n = sizes[i][1], k = sizes[i][2];
        double g = 2.0 * m * n * k / gemm_seconds(0, 1, m, n, k, 0, 5) / 1e9;
        printf(",\"gflops_%dx%dx%d\":%.1f", m, n, k, g);
        if (g > best) best = g;
    }
    printf(",\"best_gflops\":%.1f", best);
    if (argc >= 2) {
        double flops, seconds;
        model_shapes(&cfg, &flops, &seconds);
        printf(",\"shapes_tokens\":%d,\"shapes_gflops\":%.1f", cfg.train.micro_batch * cfg.train.seq_len,
               flops / seconds / 1e9);
    }
    printf("}\n");
    return 0;
}
