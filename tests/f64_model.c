/* f64_model.c - finite-difference check of the whole model, in double.
 *
 * Built with -DPRESIGHT_REAL_DOUBLE against the double-precision twin of
 * core/model.c and core/backend_cpu.c: the code under test is the product's
 * own, only its element type differs. For every tensor, a handful of
 * elements are perturbed by +-h and the central difference of the mean loss
 * is compared with the analytic gradient. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "model.h"
#include "rng.h"

typedef struct fixture {
    model m;
    model_params params, grads;
    model_activations *acts;
    int batch, seq;
    int recompute; /* activation checkpointing: recompute each block in backward */
    int *tokens, *targets;
} fixture;

static model_config tiny_config(int tied, int kv_heads) {
    model_config c = {0};
    c.vocab = 23;
    c.dim = 16;
    c.layers = 2;
    c.heads = 4;
    c.kv_heads = kv_heads;
    c.ffn_dim = 24;
    c.context = 16;
    c.rope_theta = 10000;
    c.norm_eps = 1e-5;
    c.tied_head = tied;
    c.init_std = 0.3; /* large enough that every path carries a visible gradient */
    return c;
}

static void setup(fixture *f, model_config cfg) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    cr_assert_eq(model_init(&f->m, &cfg, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(model_params_alloc(&f->params, &f->m.layout, &err), 0);
    cr_assert_eq(model_params_alloc(&f->grads, &f->m.layout, &err), 0);
    model_init_weights(&f->params, &f->m.layout, 7);
    /* Norm weights away from 1 so their gradients are tested in general position. */
    for (int i = 0; i < f->m.layout.n_tensors; i++) {
        const model_tensor *t = &f->m.layout.tensors[i];
        if (!t->is_norm) continue;
        real *w = model_tensor_data(&f->params, &f->m.layout, i);
        for (int j = 0; j < t->rows; j++) w[j] = 1 + 0.3 * rng_normal(rng_key(11, t->name), (uint64_t)j);
    }
    f->batch = 2;
    f->seq = 7;
    int n = f->batch * f->seq;
    f->acts = model_activations_alloc(&f->m.layout, f->batch, f->seq, f->recompute, &err);
    cr_assert_not_null(f->acts, "%s", err.msg);
    f->tokens = malloc(n * sizeof(int));
    f->targets = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) {
        f->tokens[i] = (int)rng_below(3, (uint64_t)i, (uint64_t)cfg.vocab);
        f->targets[i] = (int)rng_below(4, (uint64_t)i, (uint64_t)cfg.vocab);
    }
    f->targets[3] = -1; /* masked targets must not contribute */
    f->targets[n - 1] = -1;
}

static void teardown(fixture *f) {
    model_activations_free(f->acts);
    model_params_free(&f->params);
    model_params_free(&f->grads);
    model_free(&f->m);
    free(f->tokens);
    free(f->targets);
}

static double loss_of(fixture *f) {
    return model_forward(&f->m, &f->params, f->acts, f->tokens, f->targets, f->batch, f->seq);
}

static void check_gradients(model_config cfg, int recompute) {
    fixture f = {.recompute = recompute};
    setup(&f, cfg);
    const model_layout *L = &f.m.layout;
    loss_of(&f);
    model_backward(&f.m, &f.params, &f.grads, f.acts, f.tokens, f.targets, f.batch, f.seq, 1.0);
    const double h = 1e-5;
    double worst = 0;
    for (int i = 0; i < L->n_tensors; i++) {
        const model_tensor *t = &L->tensors[i];
        real *w = model_tensor_data(&f.params, L, i), *g = model_tensor_data(&f.grads, L, i);
        long count = (long)t->rows * t->cols;
        for (int probe = 0; probe < 6; probe++) {
            long j = (long)rng_below(rng_key(5, t->name), (uint64_t)probe, (uint64_t)count);
            real saved = w[j];
            w[j] = saved + h;
            double up = loss_of(&f);
            w[j] = saved - h;
            double down = loss_of(&f);
            w[j] = saved;
            double numeric = (up - down) / (2 * h), analytic = g[j];
            double rel = fabs(numeric - analytic) / fmax(1e-7, fabs(numeric) + fabs(analytic));
            if (rel > worst) worst = rel;
            cr_expect(rel < 1e-6 || fabs(numeric - analytic) < 1e-9,
                      "%s[%ld]: analytic %.10g vs finite difference %.10g (rel %.2e)", t->name, j, analytic, numeric,
                      rel);
        }
    }
    cr_log_info("worst relative error %.2e", worst);
    teardown(&f);
}

Test(model_gradcheck, untied_gqa) { check_gradients(tiny_config(0, 2), 0); }
Test(model_gradcheck, tied_gqa) { check_gradients(tiny_config(1, 2), 0); }
Test(model_gradcheck, multi_head_kv) { check_gradients(tiny_config(0, 4), 0); }
Test(model_gradcheck, single_kv_head) { check_gradients(tiny_config(1, 1), 0); }
Test(model_gradcheck, recomputed_blocks) { check_gradients(tiny_config(0, 2), 1); }

/* Recomputing blocks in backward must give bit-identical gradients. */
Test(model_gradcheck, recompute_is_exact) {
    fixture plain = {.recompute = 0}, again = {.recompute = 1};
    setup(&plain, tiny_config(1, 2));
    setup(&again, tiny_config(1, 2));
    double l1 = loss_of(&plain), l2 = loss_of(&again);
    cr_assert_eq(l1, l2);
    model_backward(&plain.m, &plain.params, &plain.grads, plain.acts, plain.tokens, plain.targets, plain.batch,
                   plain.seq, 1.0);
    model_backward(&again.m, &again.params, &again.grads, again.acts, again.tokens, again.targets, again.batch,
                   again.seq, 1.0);
    const model_layout *L = &plain.m.layout;
    for (int u = 0; u < L->n_units; u++)
        cr_assert_eq(memcmp(plain.grads.unit[u], again.grads.unit[u], L->units[u].size * sizeof(real)), 0,
                     "unit %d differs with recomputation", u);
    teardown(&plain);
    teardown(&again);
}

/* The gradient of a micro-batch split must equal the whole batch's: the +=
 * convention of parameter gradients is what gradient accumulation rests on. */
Test(model_gradcheck, accumulation_adds_up) {
    fixture f = {.recompute = 0};
    setup(&f, tiny_config(0, 2));
    const model_layout *L = &f.m.layout;
    loss_of(&f);
    model_backward(&f.m, &f.params, &f.grads, f.acts, f.tokens, f.targets, f.batch, f.seq, 1.0);
    model_params twice;
    ps_error err;
    cr_assert_eq(model_params_alloc(&twice, L, &err), 0);
    for (int k = 0; k < 2; k++) {
        loss_of(&f);
        model_backward(&f.m, &f.params, &twice, f.acts, f.tokens, f.targets, f.batch, f.seq, 0.5);
    }
    for (int u = 0; u < L->n_units; u++)
        for (size_t j = 0; j < L->units[u].size; j++)
            cr_assert(fabs(twice.unit[u][j] - f.grads.unit[u][j]) <= 1e-12 * (1 + fabs(f.grads.unit[u][j])),
                      "unit %d element %zu: %g vs %g", u, j, twice.unit[u][j], f.grads.unit[u][j]);
    model_params_free(&twice);
    teardown(&f);
}
