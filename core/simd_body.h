/* simd_body.h - the vector kernels of simd.h, written once over a few
 * macros and included by core/simd_avx2.c (8 lanes) and core/simd_avx512.c
 * (16 lanes), which define them. Each function is compiled for its ISA by a
 * target attribute (TGT), so the file builds under any -m flags (the fuzz
 * build has none); the product build also compiles each file with its own
 * -m flags (Makefile), so the AVX2 file holds no AVX-512 instruction.
 *
 * Lanes run the scalar set's steps (simd.c) with explicit fused
 * multiply-adds; tails (n mod W) run the scalar steps. Sums keep W partial
 * sums, reduced pairwise at the end, then add the tail in order. */

/* The macros each includer defines:
 *   W, V (vector of float), TGT (the target attribute),
 *   LD, ST, SET1, ADD, SUB, MUL, DIV, FMA(a,b,c)=a*b+c, FNMA(a,b,c)=c-a*b,
 *   MAX, MIN, SQRT, HSUM, HMAX, POW2I(k): 2^k for integral k in [-127, 128]. */

#define INL static inline __attribute__((always_inline)) TGT

/* exp of every lane: the steps of simd_expf. */
INL V vexp(V x) {
    x = MAX(SET1(-87.0f), x); /* this operand order keeps a NaN x */
    x = MIN(SET1(88.0f), x);
    V t = FMA(x, SET1(1.44269504088896341f), SET1(12582912.0f));
    V k = SUB(t, SET1(12582912.0f));
    V r = FNMA(k, SET1(0.693359375f), x);
    r = FMA(k, SET1(2.12194440e-4f), r);
    V z = MUL(r, r);
    V y = FMA(SET1(1.9875691500e-4f), r, SET1(1.3981999507e-3f));
    y = FMA(y, r, SET1(8.3334519073e-3f));
    y = FMA(y, r, SET1(4.1665795894e-2f));
    y = FMA(y, r, SET1(1.6666665459e-1f));
    y = FMA(y, r, SET1(5.0000001201e-1f));
    y = ADD(FMA(y, z, r), SET1(1.0f));
    return MUL(y, POW2I(k));
}

TGT static float v_max(const float *x, int n) {
    V acc = SET1(x[0]);
    int j = 0;
    for (; j + W <= n; j += W) acc = MAX(LD(x + j), acc); /* a NaN element leaves acc */
    float mx = HMAX(acc);
    if (x[0] != x[0]) mx = x[0];
    for (; j < n; j++) mx = mx < x[j] ? x[j] : mx;
    return mx;
}

TGT static float v_exp_store_sum(float *x, int n, float shift) {
    V acc = SET1(0), s = SET1(shift);
    int j = 0;
    for (; j + W <= n; j += W) {
        V e = vexp(SUB(LD(x + j), s));
        ST(x + j, e);
        acc = ADD(acc, e);
    }
    float sum = HSUM(acc);
    for (; j < n; j++) {
        float e = simd_expf(x[j] - shift);
        x[j] = e;
        sum += e;
    }
    return sum;
}

TGT static float v_exp_sum(const float *x, int n, float shift) {
    V acc = SET1(0), s = SET1(shift);
    int j = 0;
    for (; j + W <= n; j += W) acc = ADD(acc, vexp(SUB(LD(x + j), s)));
    float sum = HSUM(acc);
    for (; j < n; j++) sum += simd_expf(x[j] - shift);
    return sum;
}

TGT static void v_scale(float *x, int n, float k) {
    V kk = SET1(k);
    int j = 0;
    for (; j + W <= n; j += W) ST(x + j, MUL(LD(x + j), kk));
    for (; j < n; j++) x[j] *= k;
}

INL V vsigmoid(V a) { return DIV(SET1(1.0f), ADD(SET1(1.0f), vexp(SUB(SET1(0.0f), a)))); }

TGT static void v_swiglu_forward(float *o, const float *a, const float *b, int n) {
    int j = 0;
    for (; j + W <= n; j += W) {
        V av = LD(a + j);
        ST(o + j, MUL(MUL(av, vsigmoid(av)), LD(b + j)));
    }
    for (; j < n; j++) {
        float sig = 1 / (1 + simd_expf(-a[j]));
        o[j] = a[j] * sig * b[j];
    }
}

TGT static void v_swiglu_backward(float *da, float *db, const float *g, const float *a, const float *b, int n) {
    const V one = SET1(1.0f);
    int j = 0;
    for (; j + W <= n; j += W) {
        V av = LD(a + j), gv = LD(g + j), sig = vsigmoid(av);
        V d = MUL(MUL(MUL(gv, LD(b + j)), sig), FMA(av, SUB(one, sig), one));
        ST(da + j, d);
        ST(db + j, MUL(gv, MUL(av, sig)));
    }
    for (; j < n; j++) {
        float sig = 1 / (1 + simd_expf(-a[j]));
        da[j] = g[j] * b[j] * sig * (1 + a[j] * (1 - sig));
        db[j] = g[j] * (a[j] * sig);
    }
}

TGT static void v_adamw(float *p, const float *g, float *m, float *v, size_t n, const simd_adamw *k) {
    const V b1 = SET1(k->b1), b2 = SET1(k->b2), c1 = SET1(k->c1), c2 = SET1(k->c2);
    const V ib1 = SET1(k->inv_bc1), ib2 = SET1(k->inv_bc2), lr = SET1(k->lr), eps = SET1(k->eps);
    const V wd = SET1(k->wd), gs = SET1(k->gs);
    size_t i = 0;
    for (; i + W <= n; i += W) {
        V gi = MUL(LD(g + i), gs);
        V mi = FMA(b1, LD(m + i), MUL(c1, gi));
        V vi = FMA(b2, LD(v + i), MUL(MUL(c2, gi), gi));
        ST(m + i, mi);
        ST(v + i, vi);
        V pi = LD(p + i);
        V upd = FMA(wd, pi, DIV(MUL(mi, ib1), ADD(SQRT(MUL(vi, ib2)), eps)));
        ST(p + i, FNMA(lr, upd, pi));
    }
    for (; i < n; i++) {
        float gi = g[i] * k->gs;
        float mi = k->b1 * m[i] + k->c1 * gi;
        float vi = k->b2 * v[i] + k->c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi * k->inv_bc1, vhat = vi * k->inv_bc2;
        p[i] -= k->lr * (mhat / (sqrtf(vhat) + k->eps) + k->wd * p[i]);
    }
}

#undef INL
