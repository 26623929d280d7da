/* mknn.c - mutual k-NN alignment (see mknn.h for the definition and its source).
 * Similarities are float32 dot products from the BLAS (blas.h), 256 rows at a time, as the
 * reference implementation's torch matmul computes them; the top-k of each row is kept by
 * insertion (k is small). */
#include "mknn.h"

#include "blas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The k-th smallest of a[0..n) (0-based); reorders a (Hoare quickselect, median-of-three
 * pivot: no sort of the whole item for one quantile). */
static float select_kth(float *a, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        float pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j], a[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* torch.quantile's linear interpolation, on unsorted values (reordered). */
static double quantile_linear(float *v, size_t n, double q) {
    double pos = q * (double)(n - 1);
    size_t at = (size_t)floor(pos);
    float low = select_kth(v, n, at);
    if (at >= n - 1) return low;
    float high = v[at + 1];
    for (size_t i = at + 2; i < n; i++) high = v[i] < high ? v[i] : high; /* the next order statistic */
    return low + (pos - (double)at) * ((double)high - low);
}

static int clamp_threshold(const float *feats, size_t n, size_t row, double q, mknn_quantile how, float *out,
                           ps_error *err) {
    size_t total = how == MKNN_QUANTILE_EXACT ? n * row : row;
    float *abs_values = malloc(sizeof *abs_values * total);
    if (!abs_values) return ps_fail(err, "mutual k-NN: out of memory for %zu values", total);
    if (how == MKNN_QUANTILE_EXACT) {
        for (size_t i = 0; i < total; i++) abs_values[i] = fabsf(feats[i]);
        size_t at = (size_t)(q * (double)total); /* Python's int() truncates */
        *out = select_kth(abs_values, total, at < total ? at : total - 1);
    } else {
        double sum = 0;
        for (size_t item = 0; item < n; item++) {
            for (size_t i = 0; i < row; i++) abs_values[i] = fabsf(feats[item * row + i]);
            sum += quantile_linear(abs_values, row, q);
        }
        *out = (float)(sum / (double)n);
    }
    free(abs_values);
    return 0;
}

int mknn_prepare(float *feats, size_t n, int layers, int dim, double q, mknn_quantile how, ps_error *err) {
    if (n == 0 || layers < 1 || dim < 1)
        return ps_fail(err, "mutual k-NN: empty features (%zu items, %d layers, dim %d)", n, layers, dim);
    if (!(q > 0 && q <= 1)) return ps_fail(err, "mutual k-NN: quantile %g, expected in (0, 1]", q);
    size_t row = (size_t)layers * (size_t)dim, total = n * row;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(feats[i])) return ps_fail(err, "mutual k-NN: feature %zu of item %zu is not finite", i % row, i / row);
    if (q < 1) {
        float t = 0;
        if (clamp_threshold(feats, n, row, q, how, &t, err)) return -1;
        for (size_t i = 0; i < total; i++) feats[i] = feats[i] > t ? t : feats[i] < -t ? -t : feats[i];
    }
    for (size_t r = 0; r < n * (size_t)layers; r++) {
        float *x = feats + r * (size_t)dim;
        double ss = 0;
        for (int d = 0; d < dim; d++) ss += (double)x[d] * x[d];
        double norm = sqrt(ss);
        float scale = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
        for (int d = 0; d < dim; d++) x[d] *= scale;
    }
    return 0;
}

/* Keeps the k best (similarity, index) of one row: larger similarity first, lower index on ties. */
static void insert_best(double *best_sim, int32_t *best_idx, int *have, int k, double sim, int32_t idx) {
    int at = *have < k ? *have : k;
    if (at == k && !(sim > best_sim[k - 1])) return;
    while (at > 0 && sim > best_sim[at - 1]) {
        if (at < k) best_sim[at] = best_sim[at - 1], best_idx[at] = best_idx[at - 1];
        at--;
    }
    best_sim[at] = sim, best_idx[at] = idx;
    if (*have < k) (*have)++;
}

/* Rows per similarity block: a block of B rows against all n is one GEMM. */
#define MKNN_BLOCK 256

int mknn_neighbours(const float *feats, size_t n, size_t stride, int dim, int k, int32_t *nn, ps_error *err) {
    if (k < 1 || (size_t)k >= n) return ps_fail(err, "mutual k-NN: k = %d needs 1 <= k <= n - 1 (n = %zu)", k, n);
    if (n > INT32_MAX / 2) return ps_fail(err, "mutual k-NN: %zu items is too many", n);
    if (blas_init(err)) return ps_wrap(err, "mutual k-NN");
    size_t block = n < MKNN_BLOCK ? n : MKNN_BLOCK;
    float *sim = malloc(sizeof *sim * block * n);
    if (!sim) return ps_fail(err, "mutual k-NN: out of memory for a %zu x %zu block", block, n);
    int failed = 0;
    for (size_t from = 0; from < n; from += block) {
        size_t rows = n - from < block ? n - from : block;
        /* sim[r][j] = <x_{from+r}, x_j> in float32, as their torch code computes it */
        blas_gemm(0, 1, (int)rows, (int)n, dim, 1, feats + from * stride, (int)stride, feats, (int)stride, 0, sim,
                  (int)n);
#pragma omp parallel
        {
            double *best_sim = malloc(sizeof *best_sim * (size_t)k);
            if (!best_sim) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (size_t r = 0; r < rows; r++) {
                if (!best_sim) continue;
                size_t i = from + r;
                int have = 0;
                for (size_t j = 0; j < n; j++)
                    if (j != i) insert_best(best_sim, nn + i * (size_t)k, &have, k, sim[r * n + j], (int32_t)j);
            }
            free(best_sim);
        }
    }
    free(sim);
    return failed ? ps_fail(err, "mutual k-NN: out of memory") : 0;
}

double mknn_overlap(const int32_t *nn_a, const int32_t *nn_b, size_t n, int k) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        const int32_t *a = nn_a + i * (size_t)k, *b = nn_b + i * (size_t)k;
        int common = 0;
        for (int x = 0; x < k; x++)
            for (int y = 0; y < k; y++)
                if (a[x] == b[y]) {
                    common++;
                    break;
                }
        sum += (double)common / k;
    }
    return sum / (double)n;
}

void mknn_result_free(mknn_result *r) {
    free(r->pairs);
    r->pairs = NULL;
}

static int32_t *neighbours_of_layers(const float *feats, int layers, int dim, size_t n, int k, ps_error *err) {
    int32_t *nn = malloc(sizeof *nn * (size_t)layers * n * (size_t)k);
    if (!nn) return ps_fail(err, "mutual k-NN: out of memory"), NULL;
    for (int l = 0; l < layers; l++)
        if (mknn_neighbours(feats + (size_t)l * dim, n, (size_t)layers * dim, dim, k, nn + (size_t)l * n * k, err)) {
            free(nn);
            return NULL;
        }
    return nn;
}

int mknn_align(const float *a, int layers_a, int dim_a, const float *b, int layers_b, int dim_b, size_t n, int k,
               mknn_result *out, ps_error *err) {
    memset(out, 0, sizeof *out);
    out->layer_a = out->layer_b = -1;
    if (layers_a < 1 || layers_b < 1 || dim_a < 1 || dim_b < 1)
        return ps_fail(err, "mutual k-NN: empty features (layers %d x %d, dims %d x %d)", layers_a, layers_b, dim_a, dim_b);
    int32_t *nn_a = neighbours_of_layers(a, layers_a, dim_a, n, k, err);
    if (!nn_a) return -1;
    int32_t *nn_b = neighbours_of_layers(b, layers_b, dim_b, n, k, err);
    out->pairs = malloc(sizeof *out->pairs * (size_t)layers_a * layers_b);
    if (!nn_b || !out->pairs) {
        free(nn_a), free(nn_b), mknn_result_free(out);
        return nn_b ? ps_fail(err, "mutual k-NN: out of memory") : -1;
    }
    for (int i = 0; i < layers_a; i++)
        for (int j = 0; j < layers_b; j++) {
            double s = mknn_overlap(nn_a + (size_t)i * n * k, nn_b + (size_t)j * n * k, n, k);
            out->pairs[i * layers_b + j] = s;
            if (s > out->score) out->score = s, out->layer_a = i, out->layer_b = j;
        }
    free(nn_a), free(nn_b);
    return 0;
}

int mknn_pool_mean(const float *hidden, int layers, size_t layer_stride, int dim, size_t begin, size_t end, float *out,
                   ps_error *err) {
    if (end <= begin) return ps_fail(err, "mean pool: empty token range [%zu, %zu)", begin, end);
    for (int l = 0; l < layers; l++) {
        for (int d = 0; d < dim; d++) {
            double s = 0;
            for (size_t t = begin; t < end; t++) s += hidden[(size_t)l * layer_stride + t * (size_t)dim + d];
            out[(size_t)l * dim + d] = (float)(s / (double)(end - begin));
        }
    }
    return 0;
}

int mknn_align_encoders(const float *llm, int layers, int dim, const float *const *vision, const int *vision_layers,
                        const int *vision_dims, int n_enc, size_t n, int k, double *mean, mknn_result *each,
                        ps_error *err) {
    if (n_enc < 1) return ps_fail(err, "mutual k-NN: no encoders");
    double sum = 0;
    for (int e = 0; e < n_enc; e++) {
        mknn_result r;
        if (mknn_align(llm, layers, dim, vision[e], vision_layers[e], vision_dims[e], n, k, &r, err)) {
            for (int j = 0; each && j < e; j++) mknn_result_free(&each[j]);
            return ps_wrap(err, "encoder %d", e);
        }
        sum += r.score;
        if (each) each[e] = r;
        else mknn_result_free(&r);
    }
    *mean = sum / n_enc;
    return 0;
}
