/* test_pretrain.c - the loss over a global batch (stages/pretrain.h).
 *
 * With answer-only targets, micro-batches count different numbers of
 * targets. Micro-batch gradients scaled by pretrain_loss_scale and summed
 * must be the gradient of the per-token mean over the whole batch, which is
 * one forward/backward over all its sequences at once; a mean of
 * micro-batch means (the negative control) is not. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "blas.h"
#include "model.h"
#include "pretrain.h"

Test(loss_scale, every_target_counted_keeps_the_old_expression) {
    /* Bit-identical to 1 / (accum * world), the pretraining scale before. */
    for (int accum = 1; accum <= 4; accum++)
        for (int world = 1; world <= 3; world++) {
            double full = 128, global = full * accum * world;
            cr_expect_eq(pretrain_loss_scale(128, global, accum, world, 128), 1.0 / ((double)accum * world));
        }
}

Test(loss_scale, masked_targets_weigh_by_count) {
    cr_expect_eq(pretrain_loss_scale(10, 40, 2, 1, 128), 0.25);
    cr_expect_eq(pretrain_loss_scale(0, 40, 2, 1, 128), 0.0);
    cr_expect_eq(pretrain_loss_scale(0, 0, 2, 1, 128), 0.0);
}

/* Sum of squared differences of two gradients, relative to the first's. */
static double relative_difference(const model_layout *L, const model_params *a, const model_params *b) {
    double diff = 0, ref = 0;
    for (int u = 0; u < L->n_units; u++)
        for (size_t i = 0; i < L->units[u].size; i++) {
            double d = (double)a->unit[u][i] - (double)b->unit[u][i];
            diff += d * d;
            ref += (double)a->unit[u][i] * a->unit[u][i];
        }
    return sqrt(diff / ref);
}

Test(global_batch, gradient_is_the_per_token_mean) {
    ps_error err = {{0}};
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    model_config cfg = {.vocab = 64, .dim = 32, .layers = 2, .heads = 4, .kv_heads = 2, .ffn_dim = 64,
                        .context = 32, .rope_theta = 10000, .norm_eps = 1e-5, .init_std = 0.02};
    model m;
    cr_assert_eq(model_init(&m, &cfg, backend_cpu(), &err), 0, "%s", err.msg);
    const model_layout *L = &m.layout;
    model_params p, whole, split, means;
    cr_assert_eq(model_params_alloc(&p, L, &err) || model_params_alloc(&whole, L, &err) ||
                     model_params_alloc(&split, L, &err) || model_params_alloc(&means, L, &err),
                 0, "%s", err.msg);
    model_init_weights(&p, L, 7);
    enum { B = 4, T = 16, HALF = B / 2 * T };
    int tokens[B * T], targets[B * T];
    long counted[2] = {0, 0};
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (i * 11 + 5) % cfg.vocab;
        /* Answer-only targets: the first micro-batch (sequences 0, 1) counts
         * 4 targets, the second 24. */
        int pos = i % T, seq = i / T;
        int keep = seq < 2 ? pos >= T - 2 : pos >= 4;
        targets[i] = keep ? (i * 7 + 3) % cfg.vocab : -1;
        counted[i >= HALF] += keep;
    }
    double global = (double)(counted[0] + counted[1]);
    model_activations *a = model_activations_alloc(L, B, T, 0, &err);
    cr_assert_not_null(a, "%s", err.msg);
    model_forward(&m, &p, a, tokens, targets, B, T);
    model_backward(&m, &p, &whole, a, tokens, targets, B, T, 1);
    model_activations_free(a);
    a = model_activations_alloc(L, B / 2, T, 0, &err);
    cr_assert_not_null(a, "%s", err.msg);
    for (int k = 0; k < 2; k++) {
        const int *in = tokens + k * HALF, *tg = targets + k * HALF;
        model_forward(&m, &p, a, in, tg, B / 2, T);
        model_backward(&m, &p, &split, a, in, tg, B / 2, T, (real)pretrain_loss_scale(counted[k], global, 2, 1, HALF));
        model_forward(&m, &p, a, in, tg, B / 2, T);
        model_backward(&m, &p, &means, a, in, tg, B / 2, T, (real)0.5); /* the mean of means */
    }
    double good = relative_difference(L, &whole, &split), bad = relative_difference(L, &whole, &means);
    cr_expect_lt(good, 1e-5, "global-batch gradient differs from the whole batch's by %g", good);
    cr_expect_gt(bad, 1e-2, "the mean of micro-batch means should differ (got %g): the test cannot fail", bad);
    model_activations_free(a);
    model_params_free(&p);
    model_params_free(&whole);
    model_params_free(&split);
    model_params_free(&means);
    model_free(&m);
}
