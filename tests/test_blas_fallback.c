/* test_blas_fallback.c - blas_gemm without a BLAS library (core/blas.c).
 *
 * blas_gemm returns nothing, and the library never aborts: when no BLAS
 * loads (PRESIGHT_BLAS names a missing file here) it computes the product
 * element by element. Checked for every transpose combination with strides
 * wider than the rows, against sums written out here. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "blas.h"

Test(blas_fallback, every_transpose_without_a_blas) {
    setenv("PRESIGHT_BLAS", "/nonexistent/libnoblas.so", 1);
    ps_error err;
    cr_assert_neq(blas_init(&err), 0, "a missing BLAS loaded");
    enum { M = 5, N = 4, K = 3, LD = 9 };
    real a[LD * LD], b[LD * LD], c[LD * LD];
    for (int i = 0; i < LD * LD; i++) {
        a[i] = (real)((i * 7) % 11 - 5) / 4;
        b[i] = (real)((i * 5) % 13 - 6) / 8;
    }
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int i = 0; i < LD * LD; i++) c[i] = (real)i;
            blas_gemm(ta, tb, M, N, K, (real)0.5, a, LD, b, LD, (real)2, c, LD);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double sum = 0;
                    for (int p = 0; p < K; p++)
                        sum += (double)(ta ? a[p * LD + i] : a[i * LD + p]) * (double)(tb ? b[j * LD + p] : b[p * LD + j]);
                    double want = 0.5 * sum + 2.0 * (i * LD + j);
                    cr_expect_lt(fabs(c[i * LD + j] - want), 1e-5, "trans %d %d: c[%d][%d] = %g, want %g", ta, tb, i,
                                 j, (double)c[i * LD + j], want);
                }
            cr_expect_eq(c[M * LD], (real)(M * LD), "a row outside C was written");
        }
}
