/* sgemm_bench.c - the best sgemm rate of the BLAS presight loaded, on square
 * sizes and on the shapes of the bench model's GEMMs. Prints one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "blas.h"
#include "rng.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of `reps` runs of C[m,n] = A[m,k] B[n,k]^T, in GFLOP/s. */
static double gemm_rate(int m, int n, int k, int reps) {
    real *a = malloc(sizeof(real) * m * k), *b = malloc(sizeof(real) * n * k), *c = malloc(sizeof(real) * m * n);
    for (long i = 0; i < (long)m * k; i++) a[i] = (real)(rng_uniform(1, i) - 0.5);
    for (long i = 0; i < (long)n * k; i++) b[i] = (real)(rng_uniform(2, i) - 0.5);
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t = now_seconds();
        blas_gemm(0, 1, m, n, k, 1, a, k, b, k, 0, c, n);
        t = now_seconds() - t;
        if (r > 0 && t < best) best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / best / 1e9;
}

int main(void) {
    ps_error err;
    if (blas_init(&err)) {
        fprintf(stderr, "sgemm_bench: %s\n", err.msg);
        return 1;
    }
    static const int sizes[][3] = {{1024, 1024, 1024}, {2048, 2048, 2048}, {2048, 1536, 512}, {2048, 8192, 512}};
    double best = 0;
    printf("{\"blas\":\"%s\",\"threads\":%d", blas_describe(), blas_threads());
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        double g = gemm_rate(sizes[i][0], sizes[i][1], sizes[i][2], 5);
        printf(",\"gflops_%dx%dx%d\":%.1f", sizes[i][0], sizes[i][1], sizes[i][2], g);
        if (g > best) best = g;
    }
    printf(",\"best_gflops\":%.1f}\n", best);
    return 0;
}
