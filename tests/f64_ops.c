/* f64_ops.c - every operation of the CPU backend, checked in double.
 *
 * Built with -DPRESIGHT_REAL_DOUBLE against the double-precision twin of
 * core/backend_cpu.c: the code under test is the product's own, only its
 * element type differs, so central differences are accurate to ~1e-10.
 *
 * For each op with a backward pass, L = sum(out * r) for a random r is the
 * scalar; every analytic input and parameter gradient is compared with
 * (L(x + h) - L(x - h)) / 2h. Gradient buffers are pre-filled first, so the
 * accumulate (+=) and overwrite (=) conventions of backend.h are checked too.
 * Ops without a backward pass (residual_add, accumulate, cross-entropy's
 * loss, AdamW, sum_squares, zero) are checked against naive computations. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "blas.h"
#include "rng.h"

#define FD_H 1e-6
#define GARBAGE 1234.5 /* pre-fill of gradients that must be overwritten */

/* ---------------------------------------------------------------- helpers */

static real *alloc_r(size_t n) {
    real *p = calloc(n ? n : 1, sizeof(real));
    cr_assert_not_null(p);
    return p;
}

static void fill_uniform(real *x, size_t n, uint64_t seed, double lo, double hi) {
    uint64_t key = rng_key(seed, "f64_ops");
    for (size_t i = 0; i < n; i++) x[i] = (real)(lo + (hi - lo) * rng_uniform(key, i));
}

static void fill_value(real *x, size_t n, double v) {
    for (size_t i = 0; i < n; i++) x[i] = (real)v;
}

/* The scalar L is kept as an unevaluated sum hi + lo (exact products by fma,
 * error-free additions): the central difference subtracts two nearly equal
 * sums, and a plain double sum's own rounding (~1e-16 |L| sqrt(n)), divided
 * by 2h, would swamp the comparison. (long double would do on x86, but not
 * under valgrind, which computes it in double.) */
typedef struct dd {
    double hi, lo;
} dd;

static dd dd_add(dd a, double b) {
    double s = a.hi + b, bb = s - a.hi;
    double err = (a.hi - (s - bb)) + (b - bb);
    a.hi = s;
    a.lo += err;
    return a;
}

static dd dot_r(const real *a, const real *b, size_t n) {
    dd s = {0, 0};
    for (size_t i = 0; i < n; i++) {
        double p = (double)a[i] * (double)b[i];
        s = dd_add(s, p);
        s.lo += fma((double)a[i], (double)b[i], -p);
    }
    return s;
}

static int close_enough(double a, double b) {
    double abs_err = fabs(a - b);
    double rel = abs_err / fmax(1e-8, fabs(a) + fabs(b));
    return rel < 1e-6 || abs_err < 1e-9;
}

typedef dd (*loss_fn)(void *ctx);

/* Compares analytic[i] with the central difference of f along x[i], for
 * i = 0, step, 2 step, ... < n. */
static void check_gradient(const char *what, loss_fn f, void *ctx, real *x, const real *analytic, size_t n,
                           size_t step) {
    int failures = 0, checked = 0;
    double worst = 0;
    char first[512] = "";
    for (size_t i = 0; i < n; i += step) {
        real save = x[i];
        real xp = save + (real)FD_H, xm = save - (real)FD_H;
        x[i] = xp;
        dd lp = f(ctx);
        x[i] = xm;
        dd lm = f(ctx);
        x[i] = save;
        double numeric = ((lp.hi - lm.hi) + (lp.lo - lm.lo)) / ((double)xp - (double)xm);
        checked++;
        {
            double ae = fabs(analytic[i] - numeric), re = ae / fmax(1e-8, fabs(analytic[i]) + fabs(numeric));
            double score = fmin(re / 1e-6, ae / 1e-9);
            if (score > worst) worst = score;
        }
        if (!close_enough(analytic[i], numeric)) {
            if (!failures)
                snprintf(first, sizeof first, "[%zu] analytic %.12g, numeric %.12g", i, (double)analytic[i], numeric);
            failures++;
        }
    }
    if (getenv("F64_OPS_VERBOSE")) fprintf(stderr, "%-80s worst %.3g of the tolerance\n", what, worst);
    cr_assert(checked > 0);
    cr_assert(failures == 0, "%s: %d of %d gradient entries disagree with central differences; first %s", what,
              failures, checked, first);
}

/* a - b elementwise into a new buffer (the part an accumulating op added). */
static real *minus(const real *a, const real *b, size_t n) {
    real *d = alloc_r(n);
    for (size_t i = 0; i < n; i++) d[i] = a[i] - b[i];
    return d;
}

static void expect_close_arrays(const char *what, const real *got, const double *want, size_t n, double tol) {
    double max_err = 0, max_ref = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= max_err)) max_err = e, at = i;
        if (fabs(want[i]) > max_ref) max_ref = fabs(want[i]);
    }
    cr_assert(max_err <= tol * fmax(1, max_ref), "%s: max error %.3g at [%zu] (got %.15g, want %.15g)", what, max_err,
              at, (double)got[at], want[at]);
}

/* ----------------------------------------------------------------- matmul */

typedef struct mm_ctx {
    real *out, *in, *w, *r;
    int n, in_dim, out_dim;
} mm_ctx;

static dd mm_loss(void *p) {
    mm_ctx *c = p;
    backend_cpu()->matmul_forward(c->out, c->in, c->w, c->n, c->in_dim, c->out_dim);
    return dot_r(c->out, c->r, (size_t)c->n * c->out_dim);
}

Test(f64_ops, matmul) {
    const backend_ops *ops = backend_cpu();
    mm_ctx c = {.n = 7, .in_dim = 9, .out_dim = 5};
    size_t ni = (size_t)c.n * c.in_dim, nw = (size_t)c.out_dim * c.in_dim, no = (size_t)c.n * c.out_dim;
    c.in = alloc_r(ni), c.w = alloc_r(nw), c.out = alloc_r(no), c.r = alloc_r(no);
    fill_uniform(c.in, ni, 1, -1, 1);
    fill_uniform(c.w, nw, 2, -1, 1);
    fill_uniform(c.r, no, 3, -1, 1);

    /* Forward against a plain loop. */
    mm_loss(&c);
    double *ref = calloc(no, sizeof *ref);
    for (int i = 0; i < c.n; i++)
        for (int o = 0; o < c.out_dim; o++)
            for (int k = 0; k < c.in_dim; k++) ref[i * c.out_dim + o] += c.in[i * c.in_dim + k] * c.w[o * c.in_dim + k];
    expect_close_arrays("matmul forward", c.out, ref, no, 1e-14);

    real *din = alloc_r(ni), *dw = alloc_r(nw), *dw0 = alloc_r(nw);
    fill_value(din, ni, GARBAGE);             /* din is overwritten */
    fill_uniform(dw0, nw, 4, -1, 1);          /* dw accumulates */
    memcpy(dw, dw0, nw * sizeof(real));
    ops->matmul_backward(din, dw, c.r, c.in, c.w, c.n, c.in_dim, c.out_dim);
    real *dw_added = minus(dw, dw0, nw);
    check_gradient("matmul din", mm_loss, &c, c.in, din, ni, 1);
    check_gradient("matmul dw", mm_loss, &c, c.w, dw_added, nw, 1);

    /* NULL skips one half and leaves the other as computed. */
    real *din2 = alloc_r(ni), *dw2 = alloc_r(nw);
    ops->matmul_backward(din2, NULL, c.r, c.in, c.w, c.n, c.in_dim, c.out_dim);
    cr_assert(memcmp(din2, din, ni * sizeof(real)) == 0);
    ops->matmul_backward(NULL, dw2, c.r, c.in, c.w, c.n, c.in_dim, c.out_dim);
    for (size_t i = 0; i < nw; i++) cr_assert(close_enough(dw2[i], dw_added[i]));
    free(c.in), free(c.w), free(c.out), free(c.r), free(ref), free(din), free(dw), free(dw0), free(dw_added);
    free(din2), free(dw2);
}

/* blas_gemm splits large GEMMs into slabs of C over the threads (by rows,
 * else by columns): every transpose combination, padded strides, both splits. */
static void gemm_case(int ta, int tb, int m, int n, int k) {
    int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    int lda = a_cols + 3, ldb = b_cols + 1, ldc = n + 5;
    real *a = alloc_r((size_t)a_rows * lda), *b = alloc_r((size_t)b_rows * ldb), *c = alloc_r((size_t)m * ldc);
    fill_uniform(a, (size_t)a_rows * lda, 90, -1, 1);
    fill_uniform(b, (size_t)b_rows * ldb, 91, -1, 1);
    fill_uniform(c, (size_t)m * ldc, 92, -1, 1);
    double *want = malloc((size_t)m * ldc * sizeof *want);
    for (size_t i = 0; i < (size_t)m * ldc; i++) want[i] = c[i];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < k; l++)
                s += (double)(ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l]) *
                     (tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j]);
            want[(size_t)i * ldc + j] = 0.5 * s - 0.25 * want[(size_t)i * ldc + j];
        }
    blas_gemm(ta, tb, m, n, k, 0.5, a, lda, b, ldb, -0.25, c, ldc);
    char what[80];
    snprintf(what, sizeof what, "blas_gemm trans %d%d, %d x %d x %d (padding included)", ta, tb, m, n, k);
    expect_close_arrays(what, c, want, (size_t)m * ldc, 1e-14);
    free(a), free(b), free(c), free(want);
}

Test(f64_ops, blas_gemm_split) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    cr_assert_eq(blas_init(&err), 0, "blas_init must be idempotent");
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 300, 200, 50); /* split by rows */
            gemm_case(ta, tb, 70, 400, 60);  /* split by columns */
            gemm_case(ta, tb, 5, 3, 0);      /* k = 0: C = beta C */
        }
}

/* -------------------------------------------------------------- embedding */

typedef struct emb_ctx {
    real *out, *table, *r;
    const int *tokens;
    int n, dim;
} emb_ctx;

static dd emb_loss(void *p) {
    emb_ctx *c = p;
    backend_cpu()->embedding_forward(c->out, c->tokens, c->table, c->n, c->dim);
    return dot_r(c->out, c->r, (size_t)c->n * c->dim);
}

Test(f64_ops, embedding) {
    const backend_ops *ops = backend_cpu();
    static const int tokens[7] = {3, 0, 10, 3, 7, 3, 0}; /* repeats accumulate */
    const int vocab = 11;
    emb_ctx c = {.tokens = tokens, .n = 7, .dim = 9};
    size_t nt = (size_t)vocab * c.dim, no = (size_t)c.n * c.dim;
    c.table = alloc_r(nt), c.out = alloc_r(no), c.r = alloc_r(no);
    fill_uniform(c.table, nt, 5, -1, 1);
    fill_uniform(c.r, no, 6, -1, 1);
    emb_loss(&c);
    for (int i = 0; i < c.n; i++)
        cr_assert(memcmp(c.out + i * c.dim, c.table + tokens[i] * c.dim, c.dim * sizeof(real)) == 0);

    real *dt = alloc_r(nt), *dt0 = alloc_r(nt);
    fill_uniform(dt0, nt, 7, -1, 1);
    memcpy(dt, dt0, nt * sizeof(real));
    ops->embedding_backward(dt, c.r, tokens, c.n, c.dim);
    real *added = minus(dt, dt0, nt);
    check_gradient("embedding dtable", emb_loss, &c, c.table, added, nt, 1);
    free(c.table), free(c.out), free(c.r), free(dt), free(dt0), free(added);
}

/* Big enough for the multi-threaded path: column blocks over many rows. */
Test(f64_ops, embedding_backward_parallel_path) {
    const backend_ops *ops = backend_cpu();
    const int n = 300, dim = 130, vocab = 17;
    int *tokens = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) tokens[i] = (int)rng_below(9, (uint64_t)i, (uint64_t)vocab);
    real *g = alloc_r((size_t)n * dim), *dt = alloc_r((size_t)vocab * dim);
    fill_uniform(g, (size_t)n * dim, 8, -1, 1);
    fill_value(dt, (size_t)vocab * dim, 0.25);
    ops->embedding_backward(dt, g, tokens, n, dim);
    double *want = malloc((size_t)vocab * dim * sizeof *want);
    for (size_t i = 0; i < (size_t)vocab * dim; i++) want[i] = 0.25;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) want[(size_t)tokens[i] * dim + j] += g[(size_t)i * dim + j];
    expect_close_arrays("embedding_backward (parallel)", dt, want, (size_t)vocab * dim, 1e-13);
    free(tokens), free(g), free(dt), free(want);
}

/* ---------------------------------------------------------------- rmsnorm */

typedef struct rms_ctx {
    real *out, *rstd, *x, *w, *r;
    int n, dim;
    float eps;
} rms_ctx;

static dd rms_loss(void *p) {
    rms_ctx *c = p;
    backend_cpu()->rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->n, c->dim, c->eps);
    return dot_r(c->out, c->r, (size_t)c->n * c->dim);
}

static void rmsnorm_case(int n, int dim, size_t step) {
    const backend_ops *ops = backend_cpu();
    rms_ctx c = {.n = n, .dim = dim, .eps = 1e-5f};
    size_t nx = (size_t)n * dim;
    c.out = alloc_r(nx), c.rstd = alloc_r(n), c.x = alloc_r(nx), c.w = alloc_r(dim), c.r = alloc_r(nx);
    fill_uniform(c.x, nx, 10, -1, 1);
    fill_uniform(c.w, dim, 11, 0.5, 1.5);
    fill_uniform(c.r, nx, 12, -1, 1);
    rms_loss(&c);
    double *ref = malloc(nx * sizeof *ref);
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)c.x[i * dim + j] * c.x[i * dim + j];
        double r = 1 / sqrt(ss / dim + (double)c.eps);
        cr_assert(fabs(c.rstd[i] - r) <= 1e-14 * r, "rstd[%d] %.17g vs %.17g", i, (double)c.rstd[i], r);
        for (int j = 0; j < dim; j++) ref[(size_t)i * dim + j] = c.x[i * dim + j] * r * c.w[j];
    }
    expect_close_arrays("rmsnorm forward", c.out, ref, nx, 1e-14);

    /* Both gradients accumulate. */
    real *dx = alloc_r(nx), *dx0 = alloc_r(nx), *dw = alloc_r(dim), *dw0 = alloc_r(dim);
    fill_uniform(dx0, nx, 13, -1, 1);
    fill_uniform(dw0, dim, 14, -1, 1);
    memcpy(dx, dx0, nx * sizeof(real));
    memcpy(dw, dw0, dim * sizeof(real));
    ops->rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, n, dim);
    real *dx_added = minus(dx, dx0, nx), *dw_added = minus(dw, dw0, dim);
    check_gradient("rmsnorm dx", rms_loss, &c, c.x, dx_added, nx, step);
    check_gradient("rmsnorm dweight", rms_loss, &c, c.w, dw_added, dim, 1);
    free(c.out), free(c.rstd), free(c.x), free(c.w), free(c.r), free(ref);
    free(dx), free(dx0), free(dw), free(dw0), free(dx_added), free(dw_added);
}

Test(f64_ops, rmsnorm) { rmsnorm_case(7, 9, 1); }

/* n * dim above the single-thread threshold: the parallel path. */
Test(f64_ops, rmsnorm_parallel_path) { rmsnorm_case(70, 601, 997); }

/* ------------------------------------------------------------------- rope */

typedef struct rope_ctx {
    real *x, *tmp, *r, *cs;
    const int *pos;
    int n, stride, n_heads, hd;
} rope_ctx;

static dd rope_loss(void *p) {
    rope_ctx *c = p;
    size_t nx = (size_t)c->n * c->stride;
    memcpy(c->tmp, c->x, nx * sizeof(real));
    backend_cpu()->rope_forward(c->tmp, c->cs, c->pos, c->n, c->stride, c->n_heads, c->hd);
    return dot_r(c->tmp, c->r, nx);
}

static real *rope_table(int max_pos, int hd, double theta) {
    int half = hd / 2;
    real *cs = alloc_r((size_t)max_pos * half * 2);
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            double a = p * pow(theta, -2.0 * i / hd);
            cs[(p * half + i) * 2] = cos(a);
            cs[(p * half + i) * 2 + 1] = sin(a);
        }
    return cs;
}

Test(f64_ops, rope) {
    const backend_ops *ops = backend_cpu();
    /* batch 2, seq 5, heads 4, kv_heads 2, head_dim 6: q and k heads (6) rotate, v heads (2) do not. */
    const int batch = 2, seq = 5, H = 4, KV = 2, hd = 6;
    int pos[10];
    for (int i = 0; i < batch * seq; i++) pos[i] = i % seq;
    rope_ctx c = {.pos = pos, .n = batch * seq, .stride = (H + 2 * KV) * hd, .n_heads = H + KV, .hd = hd};
    size_t nx = (size_t)c.n * c.stride;
    c.x = alloc_r(nx), c.tmp = alloc_r(nx), c.r = alloc_r(nx);
    c.cs = rope_table(seq, hd, 10.0);
    fill_uniform(c.x, nx, 20, -1, 1);
    fill_uniform(c.r, nx, 21, -1, 1);

    /* Forward against the definition. */
    rope_loss(&c);
    for (int i = 0; i < c.n; i++)
        for (int j = 0; j < c.stride; j++) {
            double want = c.x[i * c.stride + j];
            if (j < c.n_heads * hd) {
                int k = (j % hd) / 2;
                double a = pos[i] * pow(10.0, -2.0 * k / hd), x0 = c.x[i * c.stride + (j & ~1)],
                       x1 = c.x[i * c.stride + (j | 1)];
                want = (j % 2 == 0) ? x0 * cos(a) - x1 * sin(a) : x0 * sin(a) + x1 * cos(a);
            }
            cr_assert(fabs(c.tmp[i * c.stride + j] - want) < 1e-14, "rope[%d][%d] %.17g vs %.17g", i, j,
                      (double)c.tmp[i * c.stride + j], want);
        }

    /* Backward (in place, the inverse rotation) is the gradient; it overwrites dx by construction. */
    real *g = alloc_r(nx);
    memcpy(g, c.r, nx * sizeof(real));
    ops->rope_backward(g, c.cs, pos, c.n, c.stride, c.n_heads, hd);
    check_gradient("rope dx", rope_loss, &c, c.x, g, nx, 1);

    /* Forward then backward on the same buffer returns the original (rotation is orthogonal). */
    memcpy(c.tmp, c.x, nx * sizeof(real));
    ops->rope_forward(c.tmp, c.cs, pos, c.n, c.stride, c.n_heads, hd);
    ops->rope_backward(c.tmp, c.cs, pos, c.n, c.stride, c.n_heads, hd);
    for (size_t i = 0; i < nx; i++) cr_assert(fabs(c.tmp[i] - c.x[i]) < 1e-15, "rope round trip [%zu]", i);
    free(c.x), free(c.tmp), free(c.r), free(c.cs), free(g);
}

/* -------------------------------------------------------------- attention */

typedef struct att_ctx {
    real *out, *probs, *qkv, *r;
    const int *sample; /* NULL: plain causal */
    int batch, seq, H, KV, hd;
} att_ctx;

static dd att_loss(void *p) {
    att_ctx *c = p;
    if (c->sample)
        backend_cpu()->attention_forward_masked(c->out, c->probs, c->qkv, c->sample, c->batch, c->seq, c->H, c->KV,
                                                c->hd);
    else
        backend_cpu()->attention_forward(c->out, c->probs, c->qkv, c->batch, c->seq, c->H, c->KV, c->hd);
    return dot_r(c->out, c->r, (size_t)c->batch * c->seq * c->H * c->hd);
}

/* May row i attend to row j (of one sequence)? Causal, and within the sample when ids are given. */
static int allowed(const int *sample_row, int i, int j) {
    if (j > i) return 0;
    return !sample_row || (sample_row[i] >= 0 && sample_row[j] == sample_row[i]);
}

/* Explicit loops: masked scores, softmax, weighted sum of values; a row
 * that may attend to nothing (padding) gets zeros. */
static void naive_attention(double *out, double *probs, const real *qkv, const int *sample, int B, int S, int H,
                            int KV, int hd) {
    int R = (H + 2 * KV) * hd, group = H / KV;
    double *s = malloc(S * sizeof *s);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / group;
            const int *ids = sample ? sample + (size_t)b * S : NULL;
            for (int i = 0; i < S; i++) {
                const real *q = qkv + (size_t)(b * S + i) * R + h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < S; j++) {
                    if (!allowed(ids, i, j)) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    const real *k = qkv + (size_t)(b * S + j) * R + (H + g) * hd;
                    double d = 0;
                    for (int t = 0; t < hd; t++) d += (double)q[t] * k[t];
                    s[j] = d / sqrt((double)hd);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < S; j++) sum += (s[j] = allowed(ids, i, j) ? exp(s[j] - mx) : 0);
                double *p = probs + (((size_t)b * H + h) * S + i) * S;
                for (int j = 0; j < S; j++) p[j] = sum > 0 ? s[j] / sum : 0;
                double *o = out + (size_t)(b * S + i) * H * hd + h * hd;
                for (int t = 0; t < hd; t++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += p[j] * qkv[(size_t)(b * S + j) * R + (H + KV + g) * hd + t];
                    o[t] = acc;
                }
            }
        }
    free(s);
}

static void attention_case(int batch, int seq, int H, int KV, int hd, size_t step) {
    const backend_ops *ops = backend_cpu();
    att_ctx c = {.batch = batch, .seq = seq, .H = H, .KV = KV, .hd = hd};
    size_t n = (size_t)batch * seq, nq = n * (H + 2 * KV) * hd, no = n * H * hd, np = (size_t)batch * H * seq * seq;
    c.qkv = alloc_r(nq), c.out = alloc_r(no), c.probs = alloc_r(np), c.r = alloc_r(no);
    fill_uniform(c.qkv, nq, 30 + KV, -1.5, 1.5);
    fill_uniform(c.r, no, 31, -1, 1);
    fill_value(c.probs, np, GARBAGE); /* every entry is written, zeros above the diagonal */
    att_loss(&c);

    double *ref_out = malloc(no * sizeof *ref_out), *ref_p = malloc(np * sizeof *ref_p);
    naive_attention(ref_out, ref_p, c.qkv, NULL, batch, seq, H, KV, hd);
    expect_close_arrays("attention out", c.out, ref_out, no, 1e-13);
    expect_close_arrays("attention probs", c.probs, ref_p, np, 1e-13);
    for (int bh = 0; bh < batch * H; bh++)
        for (int i = 0; i < seq; i++)
            for (int j = i + 1; j < seq; j++)
                cr_assert(c.probs[((size_t)bh * seq + i) * seq + j] == 0, "probs above the diagonal must be 0");

    /* dqkv is overwritten: pre-fill with garbage. */
    real *dqkv = alloc_r(nq), *scratch = alloc_r(np);
    fill_value(dqkv, nq, GARBAGE);
    fill_value(scratch, np, GARBAGE);
    ops->attention_backward(dqkv, scratch, c.r, c.probs, c.qkv, batch, seq, H, KV, hd);
    char what[96];
    snprintf(what, sizeof what, "attention dqkv (batch %d, seq %d, heads %d, kv_heads %d, head_dim %d)", batch, seq,
             H, KV, hd);
    check_gradient(what, att_loss, &c, c.qkv, dqkv, nq, step);
    free(c.qkv), free(c.out), free(c.probs), free(c.r), free(ref_out), free(ref_p), free(dqkv), free(scratch);
}

Test(f64_ops, attention_gqa) { attention_case(2, 5, 4, 2, 6, 1); }
Test(f64_ops, attention_mha) { attention_case(2, 5, 4, 4, 6, 1); }
Test(f64_ops, attention_mqa) { attention_case(2, 5, 4, 1, 6, 1); }
/* Longer than one query block of the blocked causal implementation. */
Test(f64_ops, attention_multi_block) { attention_case(1, 150, 2, 1, 4, 7); }
/* Enough (sequence, kv head) tasks for the multi-threaded path, two query blocks. */
Test(f64_ops, attention_parallel_tasks) { attention_case(2, 70, 4, 2, 4, 5); }
Test(f64_ops, attention_seq1) { attention_case(3, 1, 2, 1, 4, 1); }

/* Packed samples and padding: sequence 0 holds samples 0 | 1 | 2, sequence 1
 * samples 5 | 6 then padding. Forward against the naive loops (probs exactly
 * 0 outside the mask); the shared backward against central differences. */
static void masked_attention_case(int H, int KV, int hd) {
    enum { B = 2, S = 9 };
    static const int sample[B * S] = {0, 0, 0, 1, 1, 2, 2, 2, 2, 5, 5, 5, 5, 6, 6, -1, -1, -1};
    const backend_ops *ops = backend_cpu();
    att_ctx c = {.batch = B, .seq = S, .H = H, .KV = KV, .hd = hd, .sample = sample};
    size_t n = (size_t)B * S, nq = n * (H + 2 * KV) * hd, no = n * H * hd, np = (size_t)B * H * S * S;
    c.qkv = alloc_r(nq), c.out = alloc_r(no), c.probs = alloc_r(np), c.r = alloc_r(no);
    fill_uniform(c.qkv, nq, 40 + KV, -1.5, 1.5);
    fill_uniform(c.r, no, 41, -1, 1);
    fill_value(c.probs, np, GARBAGE);
    att_loss(&c);
    double *ref_out = malloc(no * sizeof *ref_out), *ref_p = malloc(np * sizeof *ref_p);
    naive_attention(ref_out, ref_p, c.qkv, sample, B, S, H, KV, hd);
    expect_close_arrays("masked attention out", c.out, ref_out, no, 1e-13);
    expect_close_arrays("masked attention probs", c.probs, ref_p, np, 1e-13);
    for (size_t i = 0; i < np; i++) cr_assert(ref_p[i] != 0 || c.probs[i] == 0, "probs[%zu] outside the mask", i);

    /* The row-by-row forward-only op computes the same. */
    real *rows = alloc_r(no);
    fill_value(rows, no, GARBAGE);
    ops->attention_forward_rows(rows, c.qkv, sample, B, S, H, KV, hd);
    expect_close_arrays("row-by-row attention out", rows, ref_out, no, 1e-13);

    real *dqkv = alloc_r(nq), *scratch = alloc_r(np);
    fill_value(dqkv, nq, GARBAGE);
    ops->attention_backward(dqkv, scratch, c.r, c.probs, c.qkv, B, S, H, KV, hd);
    check_gradient("masked attention dqkv", att_loss, &c, c.qkv, dqkv, nq, 1);
    for (int t = 15; t < 18; t++) /* padding rows get no gradient */
        for (int j = 0; j < (H + 2 * KV) * hd; j++) cr_assert(dqkv[(size_t)t * (H + 2 * KV) * hd + j] == 0);
    free(c.qkv), free(c.out), free(c.probs), free(c.r), free(ref_out), free(ref_p), free(rows), free(dqkv);
    free(scratch);
}

Test(f64_ops, attention_masked_gqa) { masked_attention_case(4, 2, 6); }
Test(f64_ops, attention_masked_mqa) { masked_attention_case(4, 1, 4); }

/* Without sample ids the row-by-row op is plain causal attention. */
Test(f64_ops, attention_rows_causal) {
    enum { B = 2, S = 70, H = 2, KV = 1, hd = 4 };
    size_t n = (size_t)B * S, nq = n * (H + 2 * KV) * hd, no = n * H * hd, np = (size_t)B * H * S * S;
    real *qkv = alloc_r(nq), *out = alloc_r(no);
    fill_uniform(qkv, nq, 44, -1.5, 1.5);
    double *ref_out = malloc(no * sizeof *ref_out), *ref_p = malloc(np * sizeof *ref_p);
    naive_attention(ref_out, ref_p, qkv, NULL, B, S, H, KV, hd);
    backend_cpu()->attention_forward_rows(out, qkv, NULL, B, S, H, KV, hd);
    expect_close_arrays("row-by-row causal attention", out, ref_out, no, 1e-13);
    free(qkv), free(out), free(ref_out), free(ref_p);
}

/* A decode step: the last query of each sequence against a cache holding
 * that sequence's keys and values equals the last row of full attention;
 * kv_cache_write puts the rows where the step reads them. */
Test(f64_ops, attention_decode_and_cache_write) {
    enum { B = 3, S = 7, H = 4, KV = 2, hd = 6, MAX = 10 };
    const int len[B] = {7, 3, 5};
    const backend_ops *ops = backend_cpu();
    int R = (H + 2 * KV) * hd, kvw = KV * hd;
    size_t n = (size_t)B * S, nq = n * R, no = n * H * hd, np = (size_t)B * H * S * S;
    real *qkv = alloc_r(nq), *kc = alloc_r((size_t)B * MAX * kvw), *vc = alloc_r((size_t)B * MAX * kvw);
    real *q = alloc_r((size_t)B * R), *out = alloc_r((size_t)B * H * hd);
    fill_uniform(qkv, nq, 45, -1.5, 1.5);
    fill_value(kc, (size_t)B * MAX * kvw, GARBAGE);
    fill_value(vc, (size_t)B * MAX * kvw, GARBAGE);
    int slot[B * S];
    for (int i = 0; i < B * S; i++) slot[i] = i % S < len[i / S] ? (i / S) * MAX + i % S : -1;
    ops->kv_cache_write(kc, vc, qkv, slot, B * S, H, KV, hd);
    for (int b = 0; b < B; b++) memcpy(q + (size_t)b * R, qkv + ((size_t)b * S + len[b] - 1) * R, R * sizeof(real));
    ops->attention_decode(out, q, R, kc, vc, len, B, MAX, H, KV, hd);
    double *ref_out = malloc(no * sizeof *ref_out), *ref_p = malloc(np * sizeof *ref_p);
    int sample[B * S];
    for (int i = 0; i < B * S; i++) sample[i] = i % S < len[i / S] ? 0 : -1;
    naive_attention(ref_out, ref_p, qkv, sample, B, S, H, KV, hd);
    for (int b = 0; b < B; b++)
        expect_close_arrays("decode step", out + (size_t)b * H * hd, ref_out + ((size_t)b * S + len[b] - 1) * H * hd,
                            (size_t)H * hd, 1e-13);
    free(qkv), free(kc), free(vc), free(q), free(out), free(ref_out), free(ref_p);
}

/* ------------------------------------------------------------ bias, GELU */

typedef struct bias_ctx {
    real *out, *x, *bias, *r;
    int n, dim;
} bias_ctx;

static dd bias_loss(void *p) {
    bias_ctx *c = p;
    memcpy(c->out, c->x, (size_t)c->n * c->dim * sizeof(real));
    backend_cpu()->bias_forward(c->out, c->bias, c->n, c->dim);
    return dot_r(c->out, c->r, (size_t)c->n * c->dim);
}

static void bias_case(int n, int dim, size_t step) {
    bias_ctx c = {.n = n, .dim = dim};
    size_t nx = (size_t)n * dim;
    c.out = alloc_r(nx), c.x = alloc_r(nx), c.bias = alloc_r(dim), c.r = alloc_r(nx);
    fill_uniform(c.x, nx, 50, -1, 1);
    fill_uniform(c.bias, dim, 51, -1, 1);
    fill_uniform(c.r, nx, 52, -1, 1);
    bias_loss(&c);
    for (size_t i = 0; i < nx; i++) cr_assert(c.out[i] == c.x[i] + c.bias[i % dim]);
    real *db = alloc_r(dim), *db0 = alloc_r(dim);
    fill_uniform(db0, dim, 53, -1, 1); /* dbias accumulates */
    memcpy(db, db0, dim * sizeof(real));
    backend_cpu()->bias_backward(db, c.r, n, dim);
    real *added = minus(db, db0, dim);
    check_gradient("bias dbias", bias_loss, &c, c.bias, added, dim, step);
    free(c.out), free(c.x), free(c.bias), free(c.r), free(db), free(db0), free(added);
}

Test(f64_ops, bias) { bias_case(7, 9, 1); }
Test(f64_ops, bias_parallel_path) { bias_case(70, 601, 13); }

typedef struct gelu_ctx {
    real *out, *x, *r;
    size_t n;
} gelu_ctx;

static dd gelu_loss(void *p) {
    gelu_ctx *c = p;
    backend_cpu()->gelu_forward(c->out, c->x, c->n);
    return dot_r(c->out, c->r, c->n);
}

Test(f64_ops, gelu_erf) {
    gelu_ctx c = {.n = 41};
    c.out = alloc_r(c.n), c.x = alloc_r(c.n), c.r = alloc_r(c.n);
    fill_uniform(c.x, c.n, 60, -4, 4);
    fill_uniform(c.r, c.n, 61, -1, 1);
    gelu_loss(&c);
    /* x Phi(x) with Phi from erfc (another libm route than the op's erf), and torch.nn.GELU()(x) in float64
     * at a few points (printed by PyTorch 1.13). */
    for (size_t i = 0; i < c.n; i++)
        cr_assert(fabs(c.out[i] - c.x[i] * 0.5 * erfc(-c.x[i] / sqrt(2.0))) < 1e-15, "gelu(%g)", c.x[i]);
    real pts[3] = {-1, 0.5, 2}, want[3] = {-0.15865525393145702, 0.34573123063700656, 1.9544997361036416}, got[3];
    backend_cpu()->gelu_forward(got, pts, 3);
    for (int i = 0; i < 3; i++) cr_assert(fabs(got[i] - want[i]) < 1e-15, "gelu(%g) = %.17g", pts[i], got[i]);
    real *dx = alloc_r(c.n);
    fill_value(dx, c.n, GARBAGE); /* overwritten */
    backend_cpu()->gelu_backward(dx, c.r, c.x, c.n);
    check_gradient("gelu dx", gelu_loss, &c, c.x, dx, c.n, 1);
    free(c.out), free(c.x), free(c.r), free(dx);
}

/* ------------------------------------------- row-invariant ops, pooling */

/* matmul_forward_rows: the same product, and a row's result does not depend on n or its index. */
Test(f64_ops, matmul_forward_rows) {
    enum { N = 41, IN = 9, OUT = 7 };
    real *in = alloc_r(N * IN), *w = alloc_r(OUT * IN), *a = alloc_r(N * OUT), *b = alloc_r(N * OUT);
    fill_uniform(in, N * IN, 70, -1, 1);
    fill_uniform(w, OUT * IN, 71, -1, 1);
    backend_cpu()->matmul_forward(a, in, w, N, IN, OUT);
    backend_cpu()->matmul_forward_rows(b, in, w, N, IN, OUT);
    double *want = malloc(N * OUT * sizeof *want);
    for (int i = 0; i < N * OUT; i++) want[i] = a[i];
    expect_close_arrays("matmul_forward_rows", b, want, N * OUT, 1e-14);
    for (int n = 1; n < N; n += 3) {
        real *c = alloc_r((size_t)n * OUT);
        backend_cpu()->matmul_forward_rows(c, in + (size_t)(N - n) * IN, w, n, IN, OUT);
        cr_assert(memcmp(c, b + (size_t)(N - n) * OUT, (size_t)n * OUT * sizeof(real)) == 0, "rows depend on n = %d", n);
        free(c);
    }
    free(in), free(w), free(a), free(b), free(want);
}

Test(f64_ops, log_prob_and_pool_sum) {
    enum { N = 6, V = 11, D = 5 };
    real *logits = alloc_r(N * V);
    fill_uniform(logits, N * V, 80, -3, 3);
    int targets[N] = {0, 10, -1, 3, 11, 7};
    double lp[N];
    backend_cpu()->log_prob(lp, logits, targets, N, V, -1);
    for (int i = 0; i < N; i++) {
        double lse = 0;
        for (int j = 0; j < V; j++) lse += exp(logits[i * V + j]);
        double want = targets[i] < 0 || targets[i] >= V ? 0 : logits[i * V + targets[i]] - log(lse);
        cr_assert(fabs(lp[i] - want) < 1e-13, "row %d: %.15g vs %.15g", i, lp[i], want);
    }
    real *x = alloc_r(N * D);
    fill_uniform(x, N * D, 81, -1, 1);
    int group[N] = {1, -1, 0, 1, 1, 0};
    double sums[2 * 3 * D] = {0}; /* stride 3 D: level 1 of 3 */
    backend_cpu()->pool_sum(sums + D, 3 * D, x, group, N, D);
    for (int g = 0; g < 2; g++)
        for (int d = 0; d < D; d++) {
            double want = 0;
            for (int i = 0; i < N; i++) want += group[i] == g ? x[i * D + d] : 0;
            cr_assert(fabs(sums[g * 3 * D + D + d] - want) < 1e-15);
            cr_assert(sums[g * 3 * D + d] == 0 && sums[g * 3 * D + 2 * D + d] == 0, "pool_sum wrote another level");
        }
    free(logits), free(x);
}

/* ----------------------------------------------------------------- swiglu */

typedef struct swi_ctx {
    real *out, *h13, *r;
    int n, ffn;
} swi_ctx;

static dd swi_loss(void *p) {
    swi_ctx *c = p;
    backend_cpu()->swiglu_forward(c->out, c->h13, c->n, c->ffn);
    return dot_r(c->out, c->r, (size_t)c->n * c->ffn);
}

Test(f64_ops, swiglu) {
    const backend_ops *ops = backend_cpu();
    swi_ctx c = {.n = 7, .ffn = 9};
    size_t nh = (size_t)c.n * 2 * c.ffn, no = (size_t)c.n * c.ffn;
    c.h13 = alloc_r(nh), c.out = alloc_r(no), c.r = alloc_r(no);
    fill_uniform(c.h13, nh, 40, -4, 4);
    fill_uniform(c.r, no, 41, -1, 1);
    swi_loss(&c);
    for (int i = 0; i < c.n; i++)
        for (int j = 0; j < c.ffn; j++) {
            double a = c.h13[i * 2 * c.ffn + j], b = c.h13[i * 2 * c.ffn + c.ffn + j];
            double want = a / (1 + exp(-a)) * b;
            cr_assert(fabs(c.out[i * c.ffn + j] - want) < 1e-14, "swiglu[%d][%d]", i, j);
        }
    real *dh = alloc_r(nh);
    fill_value(dh, nh, GARBAGE); /* overwritten */
    ops->swiglu_backward(dh, c.r, c.h13, c.n, c.ffn);
    check_gradient("swiglu dh13", swi_loss, &c, c.h13, dh, nh, 1);
    free(c.h13), free(c.out), free(c.r), free(dh);
}

/* ---------------------------------------------------------- cross-entropy */

typedef struct ce_ctx {
    real *logits, *tmp;
    const int *targets;
    int n, vocab, ignore;
} ce_ctx;

/* Row by row, summed exactly: the op's own double sum over rows would put
 * ~1e-16 |L| of rounding into each central difference. */
static dd ce_loss(void *p) {
    ce_ctx *c = p;
    size_t nl = (size_t)c->n * c->vocab;
    memcpy(c->tmp, c->logits, nl * sizeof(real));
    dd loss = {0, 0};
    for (int i = 0; i < c->n; i++) {
        int nv = -1;
        real *row = c->tmp + (size_t)i * c->vocab;
        loss = dd_add(loss, backend_cpu()->cross_entropy(row, c->targets + i, 1, c->vocab, c->ignore, 0, &nv));
    }
    cr_assert(memcmp(c->tmp, c->logits, nl * sizeof(real)) == 0, "grad_scale 0 must leave the logits alone");
    return loss;
}

static void cross_entropy_case(const int *targets, int n, int vocab, int ignore, int want_valid) {
    const backend_ops *ops = backend_cpu();
    ce_ctx c = {.targets = targets, .n = n, .vocab = vocab, .ignore = ignore};
    size_t nl = (size_t)n * vocab;
    c.logits = alloc_r(nl), c.tmp = alloc_r(nl);
    fill_uniform(c.logits, nl, 50, -3, 3);
    /* A logit whose exp overflows a double: the max subtraction must keep the
     * row finite. (It is row 0's target, so that row's loss is ~0.) */
    cr_assert(targets[0] >= 0 && targets[0] < vocab && targets[0] != ignore);
    c.logits[targets[0]] = 800;

    /* Loss against a naive log-softmax. */
    double want = 0;
    for (int i = 0; i < n; i++) {
        int t = targets[i];
        if (t == ignore || t < 0 || t >= vocab) continue;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < vocab; j++) mx = fmax(mx, c.logits[i * vocab + j]);
        for (int j = 0; j < vocab; j++) s += exp(c.logits[i * vocab + j] - mx);
        want += -(c.logits[i * vocab + t] - mx - log(s));
    }
    int nv = -1;
    memcpy(c.tmp, c.logits, nl * sizeof(real));
    double got = ops->cross_entropy(c.tmp, targets, n, vocab, ignore, 0, &nv);
    cr_assert(memcmp(c.tmp, c.logits, nl * sizeof(real)) == 0, "grad_scale 0 must leave the logits alone");
    cr_assert_eq(nv, want_valid);
    cr_assert(isfinite(got) && fabs(got - want) < 1e-12 * fmax(1, fabs(want)), "cross_entropy loss %.17g, want %.17g",
              got, want);
    memcpy(c.tmp, c.logits, nl * sizeof(real));
    double got1 = ops->cross_entropy(c.tmp, targets, n, vocab, ignore, 1, &nv);
    cr_assert_eq(nv, want_valid);
    cr_assert(fabs(got1 - got) < 1e-14 * fmax(1, fabs(got)), "the loss must not depend on grad_scale");

    /* Gradient (grad_scale 1) against central differences of the loss. */
    real *grad = alloc_r(nl);
    memcpy(grad, c.tmp, nl * sizeof(real));
    check_gradient("cross_entropy dlogits", ce_loss, &c, c.logits, grad, nl, 1);
    for (int i = 0; i < n; i++) {
        int t = targets[i];
        if (t == ignore || t < 0 || t >= vocab)
            for (int j = 0; j < vocab; j++) cr_assert(grad[i * vocab + j] == 0, "ignored row %d must be zero", i);
    }

    /* grad_scale scales the gradient. */
    memcpy(c.tmp, c.logits, nl * sizeof(real));
    ops->cross_entropy(c.tmp, targets, n, vocab, ignore, 0.37, &nv);
    for (size_t i = 0; i < nl; i++) cr_assert(fabs(c.tmp[i] - 0.37 * grad[i]) < 1e-15, "grad_scale [%zu]", i);
    free(c.logits), free(c.tmp), free(grad);
}

Test(f64_ops, cross_entropy) {
    /* vocab 11; -1 is ignored, 11 and -4 are out of range and skipped too. */
    static const int targets[7] = {3, -1, 10, 0, 11, 7, -4};
    cross_entropy_case(targets, 7, 11, -1, 4);
}

Test(f64_ops, cross_entropy_ignore_index_in_range) {
    static const int targets[7] = {1, 5, 5, 2, 3, 5, 10};
    cross_entropy_case(targets, 7, 11, 5, 4);
}

Test(f64_ops, cross_entropy_parallel_path) {
    /* n * vocab above the single-thread threshold. */
    int n = 70, vocab = 600;
    int *targets = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) targets[i] = i % 9 == 4 ? -1 : (int)rng_below(51, (uint64_t)i, (uint64_t)vocab);
    const backend_ops *ops = backend_cpu();
    size_t nl = (size_t)n * vocab;
    real *logits = alloc_r(nl), *tmp = alloc_r(nl);
    fill_uniform(logits, nl, 52, -5, 5);
    memcpy(tmp, logits, nl * sizeof(real));
    int nv = 0, want_valid = 0;
    double got = ops->cross_entropy(tmp, targets, n, vocab, -1, 0.5, &nv), want = 0;
    for (int i = 0; i < n; i++) {
        int t = targets[i];
        if (t < 0) {
            for (int j = 0; j < vocab; j++) cr_assert(tmp[(size_t)i * vocab + j] == 0);
            continue;
        }
        want_valid++;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < vocab; j++) mx = fmax(mx, logits[(size_t)i * vocab + j]);
        for (int j = 0; j < vocab; j++) s += exp(logits[(size_t)i * vocab + j] - mx);
        want += log(s) + mx - logits[(size_t)i * vocab + t];
        for (int j = 0; j < vocab; j++) {
            double g = 0.5 * (exp(logits[(size_t)i * vocab + j] - mx) / s - (j == t));
            cr_assert(fabs(tmp[(size_t)i * vocab + j] - g) < 1e-15, "grad [%d][%d]", i, j);
        }
    }
    cr_assert_eq(nv, want_valid);
    cr_assert(fabs(got - want) < 1e-12 * want);
    free(targets), free(logits), free(tmp);
}

/* ------------------------------------------------------------------ AdamW */

/* The formula of backend.h, written out in double. */
static void adamw_hand(double *p, const double *g_raw, double *m, double *v, size_t count, float lr, float b1,
                       float b2, float eps, float wd, int64_t step, float gs) {
    for (size_t i = 0; i < count; i++) {
        double g = g_raw[i] * (double)gs;
        m[i] = (double)b1 * m[i] + (1 - (double)b1) * g;
        v[i] = (double)b2 * v[i] + (1 - (double)b2) * g * g;
        double mhat = m[i] / (1 - pow(b1, (double)step)), vhat = v[i] / (1 - pow(b2, (double)step));
        p[i] -= (double)lr * (mhat / (sqrt(vhat) + (double)eps) + (double)wd * p[i]);
    }
}

static void adamw_case(size_t count) {
    const backend_ops *ops = backend_cpu();
    real *p = alloc_r(count), *g = alloc_r(count), *m = alloc_r(count), *v = alloc_r(count);
    double *hp = malloc(count * 8), *hg = malloc(count * 8), *hm = calloc(count, 8), *hv = calloc(count, 8);
    fill_uniform(p, count, 60, -1, 1);
    fill_uniform(g, count, 61, -2, 2);
    for (size_t i = 0; i < count; i++) hp[i] = p[i], hg[i] = g[i];
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    for (int64_t step = 1; step <= 2; step++) {
        ops->adamw_update(p, g, m, v, count, lr, b1, b2, eps, wd, step, gs);
        adamw_hand(hp, hg, hm, hv, count, lr, b1, b2, eps, wd, step, gs);
        char what[64];
        snprintf(what, sizeof what, "adamw step %d param", (int)step);
        expect_close_arrays(what, p, hp, count, 1e-14);
        expect_close_arrays("adamw m", m, hm, count, 1e-14);
        expect_close_arrays("adamw v", v, hv, count, 1e-14);
    }
    free(p), free(g), free(m), free(v), free(hp), free(hg), free(hm), free(hv);
}

Test(f64_ops, adamw_one_and_two_steps) { adamw_case(13); }
Test(f64_ops, adamw_parallel_path) { adamw_case(100003); }

Test(f64_ops, adamw_first_step_is_sign) {
    /* With m = v = 0, step 1, no decay: p moves by lr * g / (|g| + eps) ~ lr * sign(g). */
    const backend_ops *ops = backend_cpu();
    real p[4] = {0, 0, 0, 0}, g[4] = {2, -3, 0.5, -0.25}, m[4] = {0}, v[4] = {0};
    ops->adamw_update(p, g, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 0, 1, 1);
    for (int i = 0; i < 4; i++) {
        double want = -(double)0.01f * g[i] / (fabs(g[i]) + (double)1e-8f);
        cr_assert(fabs(p[i] - want) < 1e-15, "p[%d] %.17g want %.17g", i, (double)p[i], want);
    }
}

/* ------------------------------------------------------ elementwise, reductions */

Test(f64_ops, residual_add_and_accumulate) {
    const backend_ops *ops = backend_cpu();
    const size_t sizes[2] = {7, 100003};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        real *a = alloc_r(n), *b = alloc_r(n), *out = alloc_r(n + 1), *y = alloc_r(n);
        fill_uniform(a, n, 70, -1, 1);
        fill_uniform(b, n, 71, -1, 1);
        out[n] = 42;
        ops->residual_add(out, a, b, n);
        for (size_t i = 0; i < n; i++) cr_assert(out[i] == a[i] + b[i]);
        cr_assert(out[n] == 42, "residual_add wrote past count");
        /* Aliasing: out == a, then out == b. */
        memcpy(y, a, n * sizeof(real));
        ops->residual_add(y, y, b, n);
        for (size_t i = 0; i < n; i++) cr_assert(y[i] == a[i] + b[i]);
        memcpy(y, b, n * sizeof(real));
        ops->residual_add(y, a, y, n);
        for (size_t i = 0; i < n; i++) cr_assert(y[i] == a[i] + b[i]);
        /* accumulate */
        memcpy(y, a, n * sizeof(real));
        ops->accumulate(y, b, n);
        ops->accumulate(y, b, n);
        for (size_t i = 0; i < n; i++) cr_assert(y[i] == (a[i] + b[i]) + b[i]);
        free(a), free(b), free(out), free(y);
    }
}

Test(f64_ops, sum_squares_and_zero) {
    const backend_ops *ops = backend_cpu();
    const size_t sizes[4] = {0, 7, 4097, 1000003};
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        real *x = alloc_r(n + 2);
        fill_uniform(x, n + 2, 80, -2, 2);
        long double want = 0;
        for (size_t i = 0; i < n; i++) want += (long double)x[i] * x[i];
        double got = ops->sum_squares(x, n);
        cr_assert(fabs(got - (double)want) <= 1e-13 * (double)want, "sum_squares(%zu) %.17g want %.17Lg", n, got,
                  want);
        real after0 = x[n], after1 = x[n + 1];
        ops->zero(x, n);
        for (size_t i = 0; i < n; i++) cr_assert(x[i] == 0, "zero [%zu]", i);
        cr_assert(x[n] == after0 && x[n + 1] == after1, "zero wrote past count");
        free(x);
    }
}

Test(f64_ops, name) { cr_assert_str_eq(backend_cpu()->name, "cpu"); }
