/* test_ops_f32.c - the float CPU backend against naive double computations.
 *
 * At realistic sizes (head_dim 64, dim 256, sequences longer than one
 * attention block, rows above the multi-threading threshold) every kernel
 * must agree with a plain double-precision loop to ~1e-5 of the output's
 * scale, and two runs on the same inputs must be bit-identical. The exact
 * gradient checks live in f64_ops.c; this file checks what float and the fast
 * paths (vectorised exp, BLAS, OpenMP) change. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "blas.h"
#include "rng.h"

#define TOL 1e-5

/* ---------------------------------------------------------------- helpers */

static real *alloc_r(size_t n) {
    real *p = calloc(n ? n : 1, sizeof(real));
    cr_assert_not_null(p);
    return p;
}

static double *alloc_d(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    cr_assert_not_null(p);
    return p;
}

static void fill_uniform(real *x, size_t n, uint64_t seed, double lo, double hi) {
    uint64_t key = rng_key(seed, "test_ops_f32");
    for (size_t i = 0; i < n; i++) x[i] = (real)(lo + (hi - lo) * rng_uniform(key, i));
}

/* max |got - want| <= tol * max |want|: the error relative to the output's scale. */
static void expect_close(const char *what, const real *got, const double *want, size_t n, double tol) {
    double max_err = 0, max_ref = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= max_err)) max_err = e, at = i;
        if (fabs(want[i]) > max_ref) max_ref = fabs(want[i]);
    }
    cr_assert(max_err <= tol * max_ref, "%s: error %.3g of the scale %.3g (at [%zu]: got %.9g, want %.9g)", what,
              max_err / (max_ref > 0 ? max_ref : 1), max_ref, at, (double)got[at], want[at]);
}

Test(ops_f32, blas_loads) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    cr_assert_eq(blas_init(&err), 0, "blas_init must be idempotent");
    cr_assert(blas_threads() >= 1);
    cr_assert(strstr(blas_describe(), "thread") != NULL, "%s", blas_describe());
}

/* ----------------------------------------------------------------- matmul */

Test(ops_f32, matmul) {
    const backend_ops *ops = backend_cpu();
    const int n = 256, in_dim = 256, out_dim = 384;
    size_t ni = (size_t)n * in_dim, nw = (size_t)out_dim * in_dim, no = (size_t)n * out_dim;
    real *in = alloc_r(ni), *w = alloc_r(nw), *out = alloc_r(no), *g = alloc_r(no);
    real *din = alloc_r(ni), *dw = alloc_r(nw);
    fill_uniform(in, ni, 1, -1, 1);
    fill_uniform(w, nw, 2, -1, 1);
    fill_uniform(g, no, 3, -1, 1);
    fill_uniform(dw, nw, 4, -1, 1);
    double *want_out = alloc_d(no), *want_din = alloc_d(ni), *want_dw = alloc_d(nw);
    for (size_t i = 0; i < nw; i++) want_dw[i] = dw[i];
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out_dim; o++) {
            double s = 0;
            for (int k = 0; k < in_dim; k++) s += (double)in[(size_t)i * in_dim + k] * w[(size_t)o * in_dim + k];
            want_out[(size_t)i * out_dim + o] = s;
            double gv = g[(size_t)i * out_dim + o];
            for (int k = 0; k < in_dim; k++) {
                want_din[(size_t)i * in_dim + k] += gv * w[(size_t)o * in_dim + k];
                want_dw[(size_t)o * in_dim + k] += gv * in[(size_t)i * in_dim + k];
            }
        }
    ops->matmul_forward(out, in, w, n, in_dim, out_dim);
    for (size_t i = 0; i < ni; i++) din[i] = 1e3f;
    ops->matmul_backward(din, dw, g, in, w, n, in_dim, out_dim);
    expect_close("matmul out", out, want_out, no, TOL);
    expect_close("matmul din", din, want_din, ni, TOL);
    expect_close("matmul dw (accumulated)", dw, want_dw, nw, TOL);
    free(in), free(w), free(out), free(g), free(din), free(dw), free(want_out), free(want_din), free(want_dw);
}

/* ---------------------------------------------------------------- rmsnorm */

Test(ops_f32, rmsnorm) {
    const backend_ops *ops = backend_cpu();
    const int n = 512, dim = 256;
    const float eps = 1e-5f;
    size_t nx = (size_t)n * dim;
    real *x = alloc_r(nx), *w = alloc_r(dim), *out = alloc_r(nx), *rstd = alloc_r(n), *g = alloc_r(nx);
    real *dx = alloc_r(nx), *dw = alloc_r(dim);
    fill_uniform(x, nx, 10, -2, 2);
    fill_uniform(w, dim, 11, 0.5, 1.5);
    fill_uniform(g, nx, 12, -1, 1);
    fill_uniform(dx, nx, 13, -1, 1);
    fill_uniform(dw, dim, 14, -1, 1);
    double *want_out = alloc_d(nx), *want_dx = alloc_d(nx), *want_dw = alloc_d(dim);
    for (int j = 0; j < dim; j++) want_dw[j] = dw[j];
    for (int i = 0; i < n; i++) {
        const real *xi = x + (size_t)i * dim, *gi = g + (size_t)i * dim;
        double ss = 0, dot = 0;
        for (int j = 0; j < dim; j++) ss += (double)xi[j] * xi[j], dot += (double)gi[j] * w[j] * xi[j];
        double r = 1 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) {
            want_out[(size_t)i * dim + j] = xi[j] * r * w[j];
            want_dx[(size_t)i * dim + j] = r * w[j] * gi[j] - xi[j] * r * r * r / dim * dot;
            want_dw[j] += (double)gi[j] * xi[j] * r;
        }
    }
    ops->rmsnorm_forward(out, rstd, x, w, n, dim, eps);
    expect_close("rmsnorm out", out, want_out, nx, TOL);
    real *dx0 = alloc_r(nx);
    memcpy(dx0, dx, nx * sizeof(real));
    ops->rmsnorm_backward(dx, dw, g, x, w, rstd, n, dim);
    real *added = alloc_r(nx);
    for (size_t i = 0; i < nx; i++) added[i] = dx[i] - dx0[i];
    expect_close("rmsnorm dx (the accumulated part)", added, want_dx, nx, TOL);
    expect_close("rmsnorm dweight (accumulated)", dw, want_dw, dim, TOL);
    free(x), free(w), free(out), free(rstd), free(g), free(dx), free(dw), free(dx0), free(added);
    free(want_out), free(want_dx), free(want_dw);
}

/* ------------------------------------------------------------------- rope */

Test(ops_f32, rope) {
    const backend_ops *ops = backend_cpu();
    const int batch = 2, seq = 64, H = 4, KV = 2, hd = 64, half = hd / 2;
    const int n = batch * seq, stride = (H + 2 * KV) * hd, nh = H + KV;
    real *cs = alloc_r((size_t)seq * half * 2);
    for (int p = 0; p < seq; p++)
        for (int i = 0; i < half; i++) {
            double a = p * pow(500000.0, -2.0 * i / hd);
            cs[(p * half + i) * 2] = (real)cos(a);
            cs[(p * half + i) * 2 + 1] = (real)sin(a);
        }
    int *pos = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) pos[i] = i % seq;
    size_t nx = (size_t)n * stride;
    real *x = alloc_r(nx), *y = alloc_r(nx);
    fill_uniform(x, nx, 20, -1, 1);
    memcpy(y, x, nx * sizeof(real));
    double *want = alloc_d(nx);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < stride; j++) {
            const real *row = x + (size_t)i * stride;
            if (j >= nh * hd) {
                want[(size_t)i * stride + j] = row[j];
                continue;
            }
            int k = (j % hd) / 2;
            double c = cs[(pos[i] * half + k) * 2], s = cs[(pos[i] * half + k) * 2 + 1];
            double x0 = row[j & ~1], x1 = row[j | 1];
            want[(size_t)i * stride + j] = j % 2 == 0 ? x0 * c - x1 * s : x0 * s + x1 * c;
        }
    ops->rope_forward(y, cs, pos, n, stride, nh, hd);
    expect_close("rope forward", y, want, nx, TOL);
    ops->rope_backward(y, cs, pos, n, stride, nh, hd);
    double *orig = alloc_d(nx);
    for (size_t i = 0; i < nx; i++) orig[i] = x[i];
    expect_close("rope forward then backward", y, orig, nx, TOL);
    free(cs), free(pos), free(x), free(y), free(want), free(orig);
}

/* -------------------------------------------------------------- attention */

typedef struct att_ref {
    double *out, *probs, *dqkv;
} att_ref;

/* Naive causal GQA attention forward and backward in double. */
static att_ref naive_attention(const real *qkv, const real *dout, int B, int S, int H, int KV, int hd) {
    int R = (H + 2 * KV) * hd, group = H / KV, HD = H * hd;
    att_ref r;
    r.out = alloc_d((size_t)B * S * HD);
    r.probs = alloc_d((size_t)B * H * S * S);
    r.dqkv = alloc_d((size_t)B * S * R);
    double scale = 1 / sqrt((double)hd);
    double *dp = alloc_d(S);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / group;
#define Qp(i) (qkv + (size_t)(b * S + (i)) * R + h * hd)
#define Kp(i) (qkv + (size_t)(b * S + (i)) * R + (H + g) * hd)
#define Vp(i) (qkv + (size_t)(b * S + (i)) * R + (H + KV + g) * hd)
            for (int i = 0; i < S; i++) {
                double *p = r.probs + (((size_t)b * H + h) * S + i) * S, mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double d = 0;
                    for (int t = 0; t < hd; t++) d += (double)Qp(i)[t] * Kp(j)[t];
                    p[j] = d * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - mx));
                for (int j = 0; j <= i; j++) p[j] /= sum;
                for (int t = 0; t < hd; t++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += p[j] * Vp(j)[t];
                    r.out[(size_t)(b * S + i) * HD + h * hd + t] = acc;
                }
                /* backward of row i */
                const real *dO = dout + (size_t)(b * S + i) * HD + h * hd;
                double rowdot = 0;
                for (int j = 0; j <= i; j++) {
                    double d = 0;
                    for (int t = 0; t < hd; t++) d += (double)dO[t] * Vp(j)[t];
                    dp[j] = d;
                    rowdot += p[j] * d;
                }
                double *dq = r.dqkv + (size_t)(b * S + i) * R + h * hd;
                for (int j = 0; j <= i; j++) {
                    double ds = p[j] * (dp[j] - rowdot);
                    double *dk = r.dqkv + (size_t)(b * S + j) * R + (H + g) * hd;
                    double *dv = r.dqkv + (size_t)(b * S + j) * R + (H + KV + g) * hd;
                    for (int t = 0; t < hd; t++) {
                        dq[t] += ds * Kp(j)[t] * scale;
                        dk[t] += ds * Qp(i)[t] * scale;
                        dv[t] += p[j] * dO[t];
                    }
                }
            }
#undef Qp
#undef Kp
#undef Vp
        }
    free(dp);
    return r;
}

static void attention_case(int B, int S, int H, int KV, int hd) {
    const backend_ops *ops = backend_cpu();
    int R = (H + 2 * KV) * hd, HD = H * hd;
    size_t nq = (size_t)B * S * R, no = (size_t)B * S * HD, np = (size_t)B * H * S * S;
    real *qkv = alloc_r(nq), *dout = alloc_r(no), *out = alloc_r(no), *probs = alloc_r(np);
    real *dqkv = alloc_r(nq), *scratch = alloc_r(np);
    fill_uniform(qkv, nq, 30, -2, 2);
    fill_uniform(dout, no, 31, -1, 1);
    for (size_t i = 0; i < nq; i++) dqkv[i] = 1e3f; /* overwritten */
    for (size_t i = 0; i < np; i++) probs[i] = 1e3f;
    att_ref ref = naive_attention(qkv, dout, B, S, H, KV, hd);
    ops->attention_forward(out, probs, qkv, B, S, H, KV, hd);
    ops->attention_backward(dqkv, scratch, dout, probs, qkv, B, S, H, KV, hd);
    char what[128];
    snprintf(what, sizeof what, "attention out (B %d S %d H %d KV %d hd %d)", B, S, H, KV, hd);
    expect_close(what, out, ref.out, no, TOL);
    snprintf(what, sizeof what, "attention probs (B %d S %d H %d KV %d hd %d)", B, S, H, KV, hd);
    expect_close(what, probs, ref.probs, np, TOL);
    /* q, k and v parts separately: each has its own scale. */
    const char *part[3] = {"dq", "dk", "dv"};
    int off[4] = {0, H * hd, (H + KV) * hd, R};
    for (int p = 0; p < 3; p++) {
        int w = off[p + 1] - off[p];
        size_t rows = (size_t)B * S;
        real *got = alloc_r(rows * w);
        double *want = alloc_d(rows * w);
        for (size_t i = 0; i < rows; i++)
            for (int j = 0; j < w; j++) {
                got[i * w + j] = dqkv[i * R + off[p] + j];
                want[i * w + j] = ref.dqkv[i * R + off[p] + j];
            }
        snprintf(what, sizeof what, "attention %s (B %d S %d H %d KV %d hd %d)", part[p], B, S, H, KV, hd);
        expect_close(what, got, want, rows * w, TOL);
        free(got), free(want);
    }
    free(qkv), free(dout), free(out), free(probs), free(dqkv), free(scratch);
    free(ref.out), free(ref.probs), free(ref.dqkv);
}

Test(ops_f32, attention_seq64) { attention_case(2, 64, 4, 2, 64); }
Test(ops_f32, attention_seq200_gqa) { attention_case(2, 200, 4, 2, 64); }
Test(ops_f32, attention_mha_mqa) {
    attention_case(1, 96, 4, 4, 64);
    attention_case(1, 96, 4, 1, 64);
}

/* ----------------------------------------------------------------- swiglu */

Test(ops_f32, swiglu) {
    const backend_ops *ops = backend_cpu();
    const int n = 256, ffn = 344;
    size_t nh = (size_t)n * 2 * ffn, no = (size_t)n * ffn;
    real *h13 = alloc_r(nh), *out = alloc_r(no), *g = alloc_r(no), *dh = alloc_r(nh);
    fill_uniform(h13, nh, 40, -8, 8);
    fill_uniform(g, no, 41, -1, 1);
    double *want_out = alloc_d(no), *want_dh = alloc_d(nh);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ffn; j++) {
            const real *row = h13 + (size_t)i * 2 * ffn;
            double a = row[j], b = row[ffn + j], gv = g[(size_t)i * ffn + j];
            double sig = 1 / (1 + exp(-a));
            want_out[(size_t)i * ffn + j] = a * sig * b;
            want_dh[(size_t)i * 2 * ffn + j] = gv * b * sig * (1 + a * (1 - sig));
            want_dh[(size_t)i * 2 * ffn + ffn + j] = gv * a * sig;
        }
    ops->swiglu_forward(out, h13, n, ffn);
    for (size_t i = 0; i < nh; i++) dh[i] = 1e3f;
    ops->swiglu_backward(dh, g, h13, n, ffn);
    expect_close("swiglu out", out, want_out, no, TOL);
    expect_close("swiglu dh13", dh, want_dh, nh, TOL);
    free(h13), free(out), free(g), free(dh), free(want_out), free(want_dh);
}

/* ---------------------------------------------------------- cross-entropy */

Test(ops_f32, cross_entropy) {
    const backend_ops *ops = backend_cpu();
    const int n = 128, vocab = 1000;
    size_t nl = (size_t)n * vocab;
    real *logits = alloc_r(nl), *work = alloc_r(nl);
    int *targets = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) targets[i] = i % 10 == 3 ? -1 : (int)rng_below(7, (uint64_t)i, (uint64_t)vocab);
    fill_uniform(logits, nl, 50, -6, 6);
    logits[5] = 300; /* exp would overflow a float without the max subtraction */
    logits[vocab + 7] = -300;
    int valid = 0;
    double want_loss = 0;
    double *want_grad = alloc_d(nl);
    for (int i = 0; i < n; i++) valid += targets[i] >= 0;
    double scale = 1.0 / valid;
    for (int i = 0; i < n; i++) {
        if (targets[i] < 0) continue;
        const real *row = logits + (size_t)i * vocab;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < vocab; j++) mx = fmax(mx, row[j]);
        for (int j = 0; j < vocab; j++) s += exp(row[j] - mx);
        want_loss += log(s) + mx - row[targets[i]];
        for (int j = 0; j < vocab; j++)
            want_grad[(size_t)i * vocab + j] = scale * (exp(row[j] - mx) / s - (j == targets[i]));
    }
    memcpy(work, logits, nl * sizeof(real));
    int nv = 0;
    double loss0 = ops->cross_entropy(work, targets, n, vocab, -1, 0, &nv);
    cr_assert(memcmp(work, logits, nl * sizeof(real)) == 0, "grad_scale 0 must leave the logits alone");
    cr_assert_eq(nv, valid);
    double loss1 = ops->cross_entropy(work, targets, n, vocab, -1, (real)scale, &nv);
    cr_assert(fabs(loss0 - want_loss) < 1e-5 * want_loss, "loss %.9g want %.9g", loss0, want_loss);
    cr_assert(fabs(loss1 - want_loss) < 1e-5 * want_loss, "loss %.9g want %.9g", loss1, want_loss);
    expect_close("cross_entropy gradient", work, want_grad, nl, TOL);
    for (int i = 0; i < n; i++)
        if (targets[i] < 0)
            for (int j = 0; j < vocab; j++) cr_assert(work[(size_t)i * vocab + j] == 0);
    free(logits), free(work), free(targets), free(want_grad);
}

/* ------------------------------------------------- AdamW, reductions, misc */

Test(ops_f32, adamw) {
    const backend_ops *ops = backend_cpu();
    const size_t count = 100003;
    real *p = alloc_r(count), *g = alloc_r(count), *m = alloc_r(count), *v = alloc_r(count);
    double *hp = alloc_d(count), *hm = alloc_d(count), *hv = alloc_d(count);
    fill_uniform(p, count, 60, -1, 1);
    fill_uniform(g, count, 61, -1e-2, 1e-2);
    for (size_t i = 0; i < count; i++) hp[i] = p[i];
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.7f;
    for (int64_t t = 1; t <= 3; t++) {
        ops->adamw_update(p, g, m, v, count, lr, b1, b2, eps, wd, t, gs);
        for (size_t i = 0; i < count; i++) {
            double gg = (double)g[i] * gs;
            hm[i] = (double)b1 * hm[i] + (1 - (double)b1) * gg;
            hv[i] = (double)b2 * hv[i] + (1 - (double)b2) * gg * gg;
            double mh = hm[i] / (1 - pow(b1, (double)t)), vh = hv[i] / (1 - pow(b2, (double)t));
            hp[i] -= (double)lr * (mh / (sqrt(vh) + (double)eps) + (double)wd * hp[i]);
        }
    }
    /* |p| <= 1 and float rounds p itself to ~6e-8 a step: a few ulps in all. */
    double max_err = 0;
    for (size_t i = 0; i < count; i++) max_err = fmax(max_err, fabs(p[i] - hp[i]));
    cr_assert(max_err < 4e-7, "adamw max error %.3g", max_err);
    expect_close("adamw m", m, hm, count, TOL);
    expect_close("adamw v", v, hv, count, TOL);
    free(p), free(g), free(m), free(v), free(hp), free(hm), free(hv);
}

Test(ops_f32, sum_squares_embedding_elementwise) {
    const backend_ops *ops = backend_cpu();
    const size_t count = 1000003;
    real *x = alloc_r(count);
    fill_uniform(x, count, 70, -1, 1);
    double want = 0;
    for (size_t i = 0; i < count; i++) want += (double)x[i] * x[i];
    double got = ops->sum_squares(x, count);
    cr_assert(fabs(got - want) < 1e-12 * want, "sum_squares %.17g want %.17g", got, want);

    const int n = 512, dim = 256, vocab = 300;
    int *tok = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) tok[i] = (int)rng_below(71, (uint64_t)i, (uint64_t)vocab);
    real *table = alloc_r((size_t)vocab * dim), *out = alloc_r((size_t)n * dim), *dt = alloc_r((size_t)vocab * dim);
    fill_uniform(table, (size_t)vocab * dim, 72, -1, 1);
    ops->embedding_forward(out, tok, table, n, dim);
    for (int i = 0; i < n; i++)
        cr_assert(memcmp(out + (size_t)i * dim, table + (size_t)tok[i] * dim, dim * sizeof(real)) == 0);
    ops->embedding_backward(dt, out, tok, n, dim);
    double *want_dt = alloc_d((size_t)vocab * dim);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) want_dt[(size_t)tok[i] * dim + j] += out[(size_t)i * dim + j];
    expect_close("embedding_backward", dt, want_dt, (size_t)vocab * dim, TOL);

    real *a = alloc_r(count), *b = alloc_r(count);
    fill_uniform(b, count, 73, -1, 1);
    ops->residual_add(a, x, b, count);
    for (size_t i = 0; i < count; i++) cr_assert(a[i] == x[i] + b[i]);
    ops->accumulate(a, b, count);
    for (size_t i = 0; i < count; i++) cr_assert(a[i] == (x[i] + b[i]) + b[i]);
    ops->zero(a, count);
    for (size_t i = 0; i < count; i++) cr_assert(a[i] == 0);
    free(x), free(tok), free(table), free(out), free(dt), free(want_dt), free(a), free(b);
}

/* ------------------------------------------------------------ determinism */

/* One pass of every op at a size where they all run multi-threaded; returns
 * a buffer holding everything they produced. */
static real *run_everything(size_t *len) {
    const backend_ops *ops = backend_cpu();
    const int B = 4, S = 128, H = 8, KV = 4, hd = 64, D = H * hd, F = 344, V = 512;
    const int n = B * S, R = (H + 2 * KV) * hd;
    size_t nq = (size_t)n * R, no = (size_t)n * D, np = (size_t)B * H * S * S, nl = (size_t)n * V;
    size_t total = nq + no + np + nq + no + n + D + no + D + (size_t)n * 2 * F + (size_t)n * F + nl + 4 + (size_t)V * D;
    real *all = alloc_r(total), *at = all;
    real *qkv = at;
    at += nq;
    real *out = at;
    at += no;
    real *probs = at;
    at += np;
    real *dqkv = at;
    at += nq;
    real *ln = at;
    at += no;
    real *rstd = at;
    at += n;
    real *dnw = at;
    at += D;
    real *dx = at;
    at += no;
    real *w = at;
    at += D;
    real *dh13 = at;
    at += (size_t)n * 2 * F;
    real *hs = at;
    at += (size_t)n * F;
    real *logits = at;
    at += nl;
    real *scalars = at;
    at += 4;
    real *dtable = at;
    at += (size_t)V * D;
    cr_assert(at == all + total);

    real *scratch = alloc_r(np), *h13 = alloc_r((size_t)n * 2 * F), *x = alloc_r(no);
    int *tok = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) tok[i] = (int)rng_below(80, (uint64_t)i, (uint64_t)V);
    fill_uniform(qkv, nq, 81, -2, 2);
    fill_uniform(x, no, 82, -2, 2);
    fill_uniform(w, D, 83, 0.5, 1.5);
    fill_uniform(h13, (size_t)n * 2 * F, 84, -4, 4);
    fill_uniform(logits, nl, 85, -4, 4);

    ops->attention_forward(out, probs, qkv, B, S, H, KV, hd);
    ops->attention_backward(dqkv, scratch, out, probs, qkv, B, S, H, KV, hd);
    ops->rmsnorm_forward(ln, rstd, x, w, n, D, 1e-5f);
    ops->rmsnorm_backward(dx, dnw, out, x, w, rstd, n, D);
    ops->swiglu_forward(hs, h13, n, F);
    ops->swiglu_backward(dh13, hs, h13, n, F);
    int nv;
    scalars[0] = (real)ops->cross_entropy(logits, tok, n, V, -1, 0.01f, &nv);
    scalars[1] = (real)ops->sum_squares(dqkv, nq);
    double ss = ops->sum_squares(qkv, nq);
    memcpy(&scalars[2], &ss, sizeof ss);
    ops->embedding_backward(dtable, dx, tok, n, D);
    free(scratch), free(h13), free(x), free(tok);
    *len = total;
    return all;
}

Test(ops_f32, deterministic) {
    size_t n1, n2;
    real *a = run_everything(&n1), *b = run_everything(&n2);
    cr_assert_eq(n1, n2);
    size_t first = n1;
    for (size_t i = 0; i < n1 && first == n1; i++)
        if (memcmp(&a[i], &b[i], sizeof(real))) first = i;
    cr_assert(first == n1, "two runs differ first at element %zu of %zu", first, n1);
    free(a), free(b);
}
