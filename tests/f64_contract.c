/* f64_contract.c - finite differences of the model contract, in double.
 *
 * One batch exercises everything the adaptation stage uses at once: projected
 * image rows (token -1) fed by a projector (mlp2x_gelu) from features, two
 * samples packed into one sequence with positions restarting at 0, padding,
 * masked targets and a global-batch loss divisor. The analytic gradients
 * (model_backward_batch's embedding-row gradient, then projector_backward)
 * of every tensor, of the embedding rows and of the features are compared
 * with central differences of the loss; then with the decoder frozen, the
 * projector's gradients must not change and the decoder's must not exist.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "model.h"
#include "projector.h"
#include "rng.h"

enum { B = 2, S = 9, IN = 5, N = B * S };

/* Sequence 0: sample 0 = BOS, 3 image rows, 2 text | sample 1 = 3 text rows;
 * sequence 1: BOS, 2 image rows, 3 text, 3 padding. */
static const int k_tokens[N] = {1, -1, -1, -1, 7, 9, 4, 11, 2, 1, -1, -1, 3, 8, 20, 5, 5, 5};
static const int k_sample[N] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, -1, -1, -1};
static const int k_pos[N] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 2, 3, 4, 5, 0, 0, 0};
static const int k_targets[N] = {-1, -1, -1, 7, 9, 13, 11, 2, 6, -1, -1, 3, 8, 20, 17, 4, 4, 4};
enum { N_EMBEDS = 5 };

typedef struct fixture {
    model m;
    projector pj;
    model_params params, grads;
    model_activations *acts;
    projector_acts pacts;
    real features[N_EMBEDS * IN], embeds[N_EMBEDS * 16], d_embeds[N_EMBEDS * 16], d_features[N_EMBEDS * IN];
    double divisor;
} fixture;

static void setup(fixture *f, int frozen_llm) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    model_config c = {.vocab = 23, .dim = 16, .layers = 2, .heads = 4, .kv_heads = 2, .ffn_dim = 24, .context = 16,
                      .rope_theta = 10000, .norm_eps = 1e-5, .tied_head = 0, .init_std = 0.3};
    cr_assert_eq(model_init(&f->m, &c, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(projector_add(&f->m.layout, IN, &f->pj, &err), 0, "%s", err.msg);
    model_layout *L = &f->m.layout;
    model_layout_set_trainable(L, 0, L->llm_units, !frozen_llm);
    cr_assert_eq(model_params_alloc(&f->params, L, &err), 0);
    cr_assert_eq(model_grads_alloc(&f->grads, L, &err), 0);
    model_init_weights(&f->params, L, 7);
    for (int i = 0; i < L->n_tensors; i++) { /* norms and biases away from their initial 1 and 0 */
        const model_tensor *t = &L->tensors[i];
        if (!t->is_norm && !t->is_bias) continue;
        real *w = model_tensor_data(&f->params, L, i);
        for (int j = 0; j < t->rows; j++) w[j] = (t->is_norm ? 1 : 0) + 0.3 * rng_normal(rng_key(11, t->name), (uint64_t)j);
    }
    for (int i = 0; i < N_EMBEDS * IN; i++) f->features[i] = rng_normal(12, (uint64_t)i);
    f->acts = model_activations_alloc(L, B, S, 0, &err);
    cr_assert_not_null(f->acts, "%s", err.msg);
    cr_assert_eq(projector_acts_alloc(&f->pacts, &f->pj, N_EMBEDS, &err), 0);
    f->divisor = 10;
}

static void teardown(fixture *f) {
    projector_acts_free(&f->pacts);
    model_activations_free(f->acts);
    model_params_free(&f->params);
    model_params_free(&f->grads);
    model_free(&f->m);
}

static model_batch batch_of(fixture *f) {
    model_batch b = {.batch = B, .seq = S, .tokens = k_tokens, .targets = k_targets, .positions = k_pos,
                     .sample = k_sample, .embeds = f->embeds, .n_embeds = N_EMBEDS, .embeds_grad = f->d_embeds,
                     .loss_divisor = f->divisor};
    return b;
}

/* Loss of the decoder on the current embedding rows. */
static double loss_of_embeds(fixture *f) {
    model_batch b = batch_of(f);
    model_result r;
    ps_error err;
    cr_assert_eq(model_forward_batch(&f->m, &f->params, f->acts, &b, &r, &err), 0, "%s", err.msg);
    return r.loss;
}

/* Loss of features -> projector -> decoder. */
static double loss_of(fixture *f) {
    projector_forward(f->m.ops, &f->pj, &f->m.layout, &f->params, &f->pacts, f->features, N_EMBEDS, f->embeds);
    return loss_of_embeds(f);
}

static void backward(fixture *f) {
    loss_of(f);
    model_batch b = batch_of(f);
    ps_error err;
    cr_assert_eq(model_backward_batch(&f->m, &f->params, &f->grads, f->acts, &b, 1, &err), 0, "%s", err.msg);
    projector_backward(f->m.ops, &f->pj, &f->m.layout, &f->params, &f->grads, &f->pacts, f->features, N_EMBEDS,
                       f->d_embeds, f->d_features);
}

static double worst_rel;

static void expect_derivative(const char *what, long j, double analytic, double numeric) {
    double rel = fabs(numeric - analytic) / fmax(1e-7, fabs(numeric) + fabs(analytic));
    if (rel > worst_rel) worst_rel = rel;
    cr_expect(rel < 1e-6 || fabs(numeric - analytic) < 1e-9, "%s[%ld]: analytic %.10g vs finite difference %.10g",
              what, j, analytic, numeric);
}

static void probe(fixture *f, const char *what, real *x, const real *g, long count, double (*loss)(fixture *)) {
    const double h = 1e-5;
    for (int p = 0; p < 8; p++) {
        long j = (long)rng_below(rng_key(5, what), (uint64_t)p, (uint64_t)count);
        real saved = x[j];
        x[j] = saved + h;
        double up = loss(f);
        x[j] = saved - h;
        double down = loss(f);
        x[j] = saved;
        expect_derivative(what, j, g[j], (up - down) / (2 * h));
    }
}

Test(contract_gradcheck, projector_prefix_packed_padded) {
    fixture f;
    setup(&f, 0);
    const model_layout *L = &f.m.layout;
    backward(&f);
    worst_rel = 0;
    for (int i = 0; i < L->n_tensors; i++) {
        const model_tensor *t = &L->tensors[i];
        probe(&f, t->name, model_tensor_data(&f.params, L, i), model_tensor_data(&f.grads, L, i),
              (long)t->rows * t->cols, loss_of);
    }
    probe(&f, "features", f.features, f.d_features, N_EMBEDS * IN, loss_of);
    real keep[N_EMBEDS * 16];
    memcpy(keep, f.d_embeds, sizeof keep);
    loss_of(&f); /* the embedding rows of the unperturbed projector and features */
    probe(&f, "embeds", f.embeds, keep, N_EMBEDS * 16, loss_of_embeds);
    cr_log_info("worst relative error %.2e", worst_rel);
    teardown(&f);
}

/* The loss is the sum over counted targets divided by loss_divisor. */
Test(contract_gradcheck, loss_divisor_scales_the_sum) {
    fixture f;
    setup(&f, 0);
    double global = loss_of(&f);
    f.divisor = 0;
    double mean = loss_of(&f);
    int counted = 0;
    for (int i = 0; i < N; i++) counted += k_targets[i] >= 0 && k_sample[i] >= 0;
    cr_assert_eq(counted, 10); /* the padding rows' targets do not count */
    cr_assert(fabs(global * 10 - mean * counted) < 1e-12, "sum %g vs %g", global * 10, mean * counted);
    teardown(&f);
}

/* A frozen decoder: the projector and the features get the same gradients,
 * the decoder none (its gradient buffers do not even exist). */
Test(contract_gradcheck, frozen_decoder) {
    fixture all, frozen;
    setup(&all, 0);
    setup(&frozen, 1);
    backward(&all);
    backward(&frozen);
    const model_layout *L = &frozen.m.layout;
    for (int u = 0; u < L->llm_units; u++) cr_assert_null(frozen.grads.unit[u]);
    int u = frozen.pj.unit;
    cr_assert_eq(memcmp(all.grads.unit[u], frozen.grads.unit[u], L->units[u].size * sizeof(real)), 0,
                 "freezing the decoder changed the projector's gradients");
    cr_assert_eq(memcmp(all.d_features, frozen.d_features, sizeof all.d_features), 0);
    worst_rel = 0;
    for (int i = 0; i < L->n_tensors; i++)
        if (L->tensors[i].unit == u)
            probe(&frozen, L->tensors[i].name, model_tensor_data(&frozen.params, L, i),
                  model_tensor_data(&frozen.grads, L, i), (long)L->tensors[i].rows * L->tensors[i].cols, loss_of);
    teardown(&all);
    teardown(&frozen);
}

/* Recomputing blocks in backward (activation checkpointing) under the sample
 * mask gives bit-identical gradients. */
Test(contract_gradcheck, recompute_is_exact_with_samples) {
    fixture plain, again;
    setup(&plain, 0);
    setup(&again, 0);
    ps_error err;
    model_activations_free(again.acts);
    again.acts = model_activations_alloc(&again.m.layout, B, S, 1, &err);
    backward(&plain);
    backward(&again);
    const model_layout *L = &plain.m.layout;
    for (int u = 0; u < L->n_units; u++)
        cr_assert_eq(memcmp(plain.grads.unit[u], again.grads.unit[u], L->units[u].size * sizeof(real)), 0,
                     "unit %d differs with recomputation", u);
    cr_assert_eq(memcmp(plain.d_features, again.d_features, sizeof plain.d_features), 0);
    teardown(&plain);
    teardown(&again);
}
