/* mknn.c - mutual k-NN alignment (see mknn.h for the definition and its source). */
#include "mknn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* torch.quantile's linear interpolation on sorted values. */
static double quantile_linear(const float *sorted, size_t n, double q) {
    double pos = q * (double)(n - 1);
    size_t at = (size_t)floor(pos);
    if (at >= n - 1) return sorted[n - 1];
    return sorted[at] + (pos - (double)at) * ((double)sorted[at + 1] - sorted[at]);
}

static int clamp_threshold(const float *feats, size_t n, size_t row, double q, mknn_quantile how, float *out,
                           ps_error *err) {
    size_t total = how == MKNN_QUANTILE_EXACT ? n * row : row;
    float *abs_values = malloc(sizeof *abs_values * total);
    if (!abs_values) return ps_fail(err, "mutual k-NN: out of memory for %zu values", total);
    if (how == MKNN_QUANTILE_EXACT) {
        for (size_t i = 0; i < total; i++) abs_values[i] = fabsf(feats[i]);
        qsort(abs_values, total, sizeof *abs_values, cmp_float);
        size_t at = (size_t)(q * (double)total); /* Python's int() truncates */
        *out = abs_values[at < total ? at : total - 1];
    } else {
        double sum = 0;
        for (size_t item = 0; item < n; item++) {
            for (size_t i = 0; i < row; i++) abs_values[i] = fabsf(feats[item * row + i]);
            qsort(abs_values, row, sizeof *abs_values, cmp_float);
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

int mknn_neighbours(const float *feats, size_t n, size_t stride, int dim, int k, int32_t *nn, ps_error *err) {
    if (k < 1 || (size_t)k >= n) return ps_fail(err, "mutual k-NN: k = %d needs 1 <= k <= n - 1 (n = %zu)", k, n);
    if (n > INT32_MAX) return ps_fail(err, "mutual k-NN: %zu items is too many", n);
    int failed = 0;
#pragma omp parallel
    {
        double *best_sim = malloc(sizeof *best_sim * (size_t)k);
        if (!best_sim) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < n; i++) {
            if (!best_sim) continue;
            const float *xi = feats + i * stride;
            int have = 0;
            for (size_t j = 0; j < n; j++) {
                if (j == i) continue;
                const float *xj = feats + j * stride;
                double dot = 0;
                for (int d = 0; d < dim; d++) dot += (double)xi[d] * xj[d];
                insert_best(best_sim, nn + i * (size_t)k, &have, k, dot, (int32_t)j);
            }
        }
        free(best_sim);
    }
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
