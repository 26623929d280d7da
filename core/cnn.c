/* cnn.c - convolution, depthwise convolution, pooling and resizing for the
 * vision encoders. See cnn.h for layouts and padding. */
#include "cnn.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "blas.h"

int cnn_out_size(int in, int k, int stride, int same, int *pad_before) {
    int out = same ? (in + stride - 1) / stride : (in - k + stride) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *pad_before = same ? total / 2 : 0;
    return out;
}

static inline float activate(float v, enum cnn_act act) {
    if (act == CNN_ACT_NONE) return v;
    v = v > 0.0f ? v : 0.0f;
    return act == CNN_ACT_RELU6 && v > 6.0f ? 6.0f : v;
}

size_t cnn_conv_scratch(int h, int w, int cin, int kh, int kw, int sh, int sw, int same) {
    if (kh == 1 && kw == 1 && sh == 1 && sw == 1) return 0;
    int ph, pw;
    int oh = cnn_out_size(h, kh, sh, same, &ph), ow = cnn_out_size(w, kw, sw, same, &pw);
    return (size_t)oh * ow * kh * kw * cin;
}

/* Rows [lo, hi) of the patch matrix: row (oy, ox) holds x[iy, ix, :] for ky,
 * kx in order, zeros outside the image: the HWIO kernel seen as
 * [kh*kw*cin, cout]. */
static void im2col_rows(const float *x, int h, int w, int cin, int kh, int kw, int sh, int sw, int same, int lo, int hi,
                        float *col) {
    int ph, pw;
    cnn_out_size(h, kh, sh, same, &ph);
    int ow = cnn_out_size(w, kw, sw, same, &pw);
    size_t row = (size_t)kh * kw * cin;
    for (int r = lo; r < hi; r++) {
        int oy = r / ow, ox = r % ow;
        float *dst = col + (size_t)r * row;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh - ph + ky;
            for (int kx = 0; kx < kw; kx++, dst += cin) {
                int ix = ox * sw - pw + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                    memset(dst, 0, sizeof(float) * cin);
                else
                    memcpy(dst, x + ((size_t)iy * w + ix) * cin, sizeof(float) * cin);
            }
        }
    }
}

static void bias_act(float *y, size_t lo, size_t hi, int c, const float *bias, enum cnn_act act) {
    for (size_t r = lo; r < hi; r++) {
        float *v = y + r * c;
        for (int i = 0; i < c; i++) v[i] = activate(v[i] + bias[i], act);
    }
}

/* One parallel region per conv: each thread builds its own rows of the patch
 * matrix, multiplies them (blas_gemm runs one call per thread inside a region)
 * and adds bias + activation while they are in cache; three barriers became
 * one, which matters on a shared machine where a late thread stalls the rest. */
void cnn_conv2d(const float *x, int h, int w, int cin, const float *wt, const float *bias, int kh, int kw, int cout,
                int sh, int sw, int same, enum cnn_act act, float *y, float *scratch) {
    int ph, pw;
    int rows = cnn_out_size(h, kh, sh, same, &ph) * cnn_out_size(w, kw, sw, same, &pw);
    int direct = cnn_conv_scratch(h, w, cin, kh, kw, sh, sw, same) == 0, k = kh * kw * cin;
    double macs = (double)rows * k * cout;
#pragma omp parallel if (macs > 2e6)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int lo = (int)((long)rows * t / nt), hi = (int)((long)rows * (t + 1) / nt);
        if (hi > lo) {
            const float *a = x + (size_t)lo * cin;
            if (!direct) {
                im2col_rows(x, h, w, cin, kh, kw, sh, sw, same, lo, hi, scratch);
                a = scratch + (size_t)lo * k;
            }
            blas_gemm(0, 0, hi - lo, cout, k, 1.0f, a, k, wt, cout, 0.0f, y + (size_t)lo * cout, cout);
            bias_act(y, lo, hi, cout, bias, act);
        }
    }
}

void cnn_depthwise(const float *x, int h, int w, int c, const float *wt, const float *bias, int kh, int kw, int sh,
                   int sw, int same, enum cnn_act act, float *y) {
    int ph, pw;
    int oh = cnn_out_size(h, kh, sh, same, &ph), ow = cnn_out_size(w, kw, sw, same, &pw);
#pragma omp parallel for schedule(static)
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            float *out = y + ((size_t)oy * ow + ox) * c;
            memcpy(out, bias, sizeof(float) * c);
            for (int ky = 0; ky < kh; ky++) {
                int iy = oy * sh - ph + ky;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < kw; kx++) {
                    int ix = ox * sw - pw + kx;
                    if (ix < 0 || ix >= w) continue;
                    const float *in = x + ((size_t)iy * w + ix) * c, *k = wt + ((size_t)ky * kw + kx) * c;
#pragma omp simd
                    for (int i = 0; i < c; i++) out[i] += in[i] * k[i];
                }
            }
            for (int i = 0; i < c; i++) out[i] = activate(out[i], act);
        }
}

static void pool2d(const float *x, int h, int w, int c, int k, int stride, int same, int average, float *y) {
    int ph, pw;
    int oh = cnn_out_size(h, k, stride, same, &ph), ow = cnn_out_size(w, k, stride, same, &pw);
#pragma omp parallel for schedule(static)
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            float *out = y + ((size_t)oy * ow + ox) * c;
            int n = 0;
            for (int i = 0; i < c; i++) out[i] = average ? 0.0f : -INFINITY;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * stride - ph + ky;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < k; kx++) {
                    int ix = ox * stride - pw + kx;
                    if (ix < 0 || ix >= w) continue;
                    const float *in = x + ((size_t)iy * w + ix) * c;
                    n++;
                    if (average)
                        for (int i = 0; i < c; i++) out[i] += in[i];
                    else
                        for (int i = 0; i < c; i++) out[i] = in[i] > out[i] ? in[i] : out[i];
                }
            }
            if (average)
                for (int i = 0; i < c; i++) out[i] /= (float)n;
        }
}

void cnn_maxpool(const float *x, int h, int w, int c, int k, int stride, int same, float *y) {
    pool2d(x, h, w, c, k, stride, same, 0, y);
}

void cnn_avgpool(const float *x, int h, int w, int c, int k, int stride, int same, float *y) {
    pool2d(x, h, w, c, k, stride, same, 1, y);
}

void cnn_add(const float *a, const float *b, size_t n, float *y) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void cnn_global_mean(const float *x, int h, int w, int c, float *out) {
    size_t n = (size_t)h * w;
    for (int i = 0; i < c; i++) {
        double s = 0.0; /* double: a 112x112 sum in float would lose digits */
        for (size_t p = 0; p < n; p++) s += x[p * c + i];
        out[i] = (float)(s / (double)n);
    }
}

/* One axis of the sampling: the two source indices and the weight of the second. */
static void sample_axis(int o, int in, int out, int align, int *lo, int *hi, double *frac) {
    double pos;
    if (align && out > 1)
        pos = (double)(in - 1) / (double)(out - 1) * o;
    else if (align)
        pos = 0.0;
    else {
        pos = (double)in / (double)out * (o + 0.5) - 0.5;
        if (pos < 0.0) pos = 0.0;
    }
    int f = (int)floor(pos);
    if (f < 0) f = 0;
    if (f > in - 1) f = in - 1;
    *lo = f;
    *hi = (int)ceil(pos) < in - 1 ? (int)ceil(pos) : in - 1;
    *frac = pos - f;
}

void cnn_resize_bilinear(const float *x, int h, int w, int c, int oh, int ow, int align_corners, float *y) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < oh; r++) {
        int r0, r1;
        double fr;
        sample_axis(r, h, oh, align_corners, &r0, &r1, &fr);
        for (int q = 0; q < ow; q++) {
            int c0, c1;
            double fc;
            sample_axis(q, w, ow, align_corners, &c0, &c1, &fc);
            const float *tl = x + ((size_t)r0 * w + c0) * c, *tr = x + ((size_t)r0 * w + c1) * c;
            const float *bl = x + ((size_t)r1 * w + c0) * c, *br = x + ((size_t)r1 * w + c1) * c;
            float *out = y + ((size_t)r * ow + q) * c;
            for (int i = 0; i < c; i++) {
                double top = tl[i] + (tr[i] - (double)tl[i]) * fc;
                double bottom = bl[i] + (br[i] - (double)bl[i]) * fc;
                out[i] = (float)(top + (bottom - top) * fr);
            }
        }
    }
}
