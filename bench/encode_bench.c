/* encode_bench.c - images/s of presight's vision encoder, forward only, one
 * image at a time (as presight encode runs it), after a warm-up; prints JSON.
 *
 * usage: encode_bench WEIGHTS.h5 [images] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "blas.h"
#include "encoder.h"
#include "encoder_weights.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: encode_bench WEIGHTS.h5 [images]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 20;
    ps_error err = {{0}};
    encoder_weights w;
    encoder *e;
    if (blas_init(&err) || encoder_weights_load(&w, argv[1], &err) ||
        encoder_build(&e, w.graph, w.tensors, w.n_tensors, &w.prep, &err)) {
        fprintf(stderr, "encode_bench: %s\n", err.msg);
        return 1;
    }
    size_t in = (size_t)w.prep.size * w.prep.size * 3;
    float *x = malloc(sizeof(float) * in), *pooled = malloc(sizeof(float) * encoder_pooled_width(e));
    for (size_t i = 0; i < in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    const enc_block_info *last = encoder_block(e, encoder_blocks(e) - 1);
    float *grid = malloc(sizeof(float) * last->h * last->w * last->c);
    for (int i = 0; i < 3; i++) encoder_forward(e, x, encoder_blocks(e) - 1, grid, pooled);
    double best = 1e30, total = 0;
    for (int i = 0; i < n; i++) {
        double t0 = now_s();
        encoder_forward(e, x, encoder_blocks(e) - 1, grid, pooled);
        double dt = now_s() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    double flops = encoder_flops(e);
    enc_profile pr, best_pr = {1e30, 1e30, 1e30, 0, 0};
    for (int i = 0; i < 5; i++) { /* the fastest of 5 per op kind */
        encoder_profile(e, x, &pr);
        if (pr.conv_s < best_pr.conv_s) best_pr.conv_s = pr.conv_s;
        if (pr.depthwise_s < best_pr.depthwise_s) best_pr.depthwise_s = pr.depthwise_s;
        if (pr.other_s < best_pr.other_s) best_pr.other_s = pr.other_s;
        best_pr.conv_flops = pr.conv_flops, best_pr.depthwise_flops = pr.depthwise_flops;
    }
    printf("{\"encoder\": \"%s\", \"images\": %d, \"threads\": %d, \"blas\": \"%s\", \"images_per_s\": %.3f, "
           "\"best_images_per_s\": %.3f, \"gflop_per_image\": %.4f, \"gflops\": %.2f, "
           "\"conv_ms\": %.3f, \"conv_gflops\": %.2f, \"depthwise_ms\": %.3f, \"depthwise_gflops\": %.2f, \"other_ms\": %.3f}\n",
           w.encoder, n, blas_threads(), blas_describe(), n / total, 1.0 / best, flops / 1e9, flops / 1e9 * n / total,
           best_pr.conv_s * 1e3, best_pr.conv_flops / best_pr.conv_s / 1e9, best_pr.depthwise_s * 1e3,
           best_pr.depthwise_flops / best_pr.depthwise_s / 1e9, best_pr.other_s * 1e3);
    free(x), free(pooled), free(grid);
    encoder_free(e);
    encoder_weights_free(&w);
    return 0;
}
