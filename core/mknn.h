/* mknn.h - mutual k-nearest-neighbour alignment between two representations of the same
 * n items (Huh et al., "The Platonic Representation Hypothesis", and their code
 * minyoungg/platonic-rep: measure_alignment.py, metrics.py).
 *
 * A representation is a float tensor feats[n][layers][dim] (row-major): for an LLM, each
 * layer's hidden state mean-pooled over a caption's tokens, the embedding output as layer 0;
 * for a vision encoder, each block's pooled vector.
 *
 *   prepare:   t = threshold of |feats| (below), feats = clamp(feats, -t, t); then every
 *              (item, layer) row x = x / max(||x||_2, 1e-12)        (torch F.normalize)
 *   threshold: MKNN_QUANTILE_MEAN (their default): the mean over items of the q-quantile of
 *              that item's layers*dim values |x| (linear interpolation, torch.quantile);
 *              MKNN_QUANTILE_EXACT (their --precise): sorted(|all values|)[floor(q * numel)]
 *   NN_A(i)  = the k items j != i with the largest <a_i, a_j> (float32, as their torch
 *              matmul; ties: the lower index first)
 *   score    = mean_i |NN_A(i) ∩ NN_B(i)| / k
 *   aligned  = max over (layer of A, layer of B) of score (their compute_score, which starts
 *              at 0 and keeps the first pair that is strictly best).
 * Needs 1 <= k <= n - 1. Independent representations score about k / (n - 1); identical
 * ones score 1. */
#ifndef PRESIGHT_MKNN_H
#define PRESIGHT_MKNN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum mknn_quantile { MKNN_QUANTILE_MEAN, MKNN_QUANTILE_EXACT } mknn_quantile;

/* Clamps and L2-normalises feats[n][layers][dim] in place (q in (0, 1]; q = 1 skips the
 * clamp, as theirs does). */
int mknn_prepare(float *feats, size_t n, int layers, int dim, double q, mknn_quantile how, ps_error *err);

/* nn[i*k .. i*k+k) = NN(i) of the rows x_i = feats + i * stride (dim floats each), sorted by
 * similarity, largest first. */
int mknn_neighbours(const float *feats, size_t n, size_t stride, int dim, int k, int32_t *nn, ps_error *err);

/* mean_i |nn_a(i) ∩ nn_b(i)| / k over neighbour lists from mknn_neighbours. */
double mknn_overlap(const int32_t *nn_a, const int32_t *nn_b, size_t n, int k);

typedef struct mknn_result {
    double score;      /* the maximum over layer pairs */
    int layer_a;       /* the pair that reached it (-1, -1 when every pair scored 0) */
    int layer_b;
    double *pairs;     /* [layers_a * layers_b] every pair's score (malloc'd; free with mknn_result_free) */
} mknn_result;

/* An LLM's caption feature for one item: out[l][d] = mean over t in [begin, end) of
 * hidden[l * layer_stride + t * dim + d], for every layer l (the embedding output is layer
 * 0 when the caller's hidden states have it first). end > begin. */
int mknn_pool_mean(const float *hidden, int layers, size_t layer_stride, int dim, size_t begin, size_t end, float *out,
                   ps_error *err);

/* Both tensors already prepared (mknn_prepare). */
int mknn_align(const float *a, int layers_a, int dim_a, const float *b, int layers_b, int dim_b, size_t n, int k,
               mknn_result *out, ps_error *err);
void mknn_result_free(mknn_result *r);

/* The paper's alignment: the LLM's features against each of n_enc encoders' (all
 * prepared), *mean = the mean of the n_enc maximum scores; each[e] (may be NULL) keeps every
 * encoder's result (free each with mknn_result_free). */
int mknn_align_encoders(const float *llm, int layers, int dim, const float *const *vision, const int *vision_layers,
                        const int *vision_dims, int n_enc, size_t n, int k, double *mean, mknn_result *each,
                        ps_error *err);

#endif
