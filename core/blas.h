/* blas.h - the one GEMM presight needs, from a BLAS chosen at run time.
 *
 * presight does not link a BLAS: it dlopen()s one at start-up so that it can
 * pick the fast kernel for the CPU it finds (see README, "Which BLAS"):
 *   1. PRESIGHT_BLAS=openblas|blis|/path/to/lib.so forces a choice;
 *   2. otherwise OpenBLAS; on a CPU with AVX-512 that this OpenBLAS does not
 *      recognise (it would fall back to its slow generic kernel) presight sets
 *      OPENBLAS_CORETYPE=SkylakeX before loading it;
 *   3. the library is then checked on a small GEMM against a plain loop; if it
 *      computes wrong results presight says so and falls back to BLIS.
 * Thread count: PRESIGHT_THREADS, else OMP_NUM_THREADS, else all cores. The
 * BLAS itself runs single-threaded: blas_gemm splits each large GEMM over the
 * OpenMP threads, because OpenBLAS's own pool beside OpenMP's fought over the
 * cores (a bench step took 1.41 s that way, 1.09 s split by presight). */
#ifndef PRESIGHT_BLAS_H
#define PRESIGHT_BLAS_H

#include "error.h"
#include "real.h"

/* Loads and checks the BLAS once (later calls return at once). */
int blas_init(ps_error *err);

/* C[m,n] = alpha * op(A) @ op(B) + beta * C, row-major, with op(X) = X or X^T
 * (trans_a/trans_b nonzero means transposed); lda/ldb/ldc are row strides. */
void blas_gemm(int trans_a, int trans_b, int m, int n, int k, real alpha, const real *a, int lda, const real *b,
               int ldb, real beta, real *c, int ldc);

/* Human-readable description of the BLAS in use, e.g. "OpenBLAS 0.3.21 (SkylakeX kernel), 2 threads". */
const char *blas_describe(void);
int blas_threads(void);

#endif
