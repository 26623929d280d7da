/* test_train.c - the optimizer, the schedule, the text dataset and a tiny
 * model that must overfit one short sequence. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "model.h"
#include "optim.h"
#include "text_dataset.h"

static train_config schedule(double lr, double min_lr, int64_t warmup) {
    train_config t = {0};
    t.lr = lr;
    t.min_lr = min_lr;
    t.warmup_steps = warmup;
    return t;
}

Test(schedule, warmup_then_cosine_to_floor) {
    train_config t = schedule(3e-4, 3e-5, 10);
    cr_assert_float_eq(lr_at(&t, 0, 100), 3e-5, 1e-12);   /* 1/10 of peak on the first step */
    cr_assert_float_eq(lr_at(&t, 9, 100), 3e-4, 1e-12);   /* peak at the end of warm-up */
    cr_assert_float_eq(lr_at(&t, 10, 100), 3e-4, 1e-12);  /* cosine starts at the peak */
    cr_assert_float_eq(lr_at(&t, 99, 100), 3e-5, 1e-12);  /* and ends on the floor */
    double mid = lr_at(&t, 10 + 89 / 2, 100);
    cr_assert(fabs(mid - (3e-4 + 3e-5) / 2) < 3e-6, "midpoint %g", mid);
    for (int s = 11; s < 100; s++) cr_assert(lr_at(&t, s, 100) <= lr_at(&t, s - 1, 100));
}

Test(schedule, clipping) {
    cr_assert_float_eq(clip_scale(0.5, 1.0), 1.0, 0);
    cr_assert_float_eq(clip_scale(4.0, 1.0), 0.25, 1e-15);
    cr_assert_float_eq(clip_scale(4.0, 0.0), 1.0, 0); /* 0 = off */
}

Test(text_dataset, same_index_same_sequence) {
    dataset *a, *b;
    ps_error err;
    cr_assert_eq(text_dataset_open(&a, "tests/fixtures/text/tiny.txt", 42, &err), 0, "%s", err.msg);
    cr_assert_eq(text_dataset_open(&b, "tests/fixtures/text/tiny.txt", 42, &err), 0, "%s", err.msg);
    int x[4 * 33], y[2 * 33];
    cr_assert_eq(a->ops->read(a, 100, 4, 32, x, &err), 0);
    cr_assert_eq(b->ops->read(b, 102, 2, 32, y, &err), 0);
    cr_assert_eq(memcmp(x + 2 * 33, y, sizeof y), 0, "sequence 102 differs between reads");
    for (int i = 0; i < 4 * 33; i++) cr_assert(x[i] >= 0 && x[i] < a->vocab_size);
    dataset_close(a);
    dataset_close(b);
}

Test(text_dataset, missing_file_is_named) {
    dataset *d;
    ps_error err;
    cr_assert_eq(text_dataset_open(&d, "no/such/file.txt", 1, &err), -1);
    cr_assert(strstr(err.msg, "no/such/file.txt"), "%s", err.msg);
}

/* A tiny model trained on one fixed sequence must drive its loss to near 0. */
Test(overfit, tiny_model_memorises_a_sequence) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    model_config c = {.vocab = 64, .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn_dim = 128,
                      .context = 32, .rope_theta = 500000, .norm_eps = 1e-5, .tied_head = 0, .init_std = 0.02};
    model m;
    cr_assert_eq(model_init(&m, &c, backend_cpu(), &err), 0, "%s", err.msg);
    model_params p, g, mo, v;
    model_params_alloc(&p, &m.layout, &err);
    model_params_alloc(&g, &m.layout, &err);
    model_params_alloc(&mo, &m.layout, &err);
    model_params_alloc(&v, &m.layout, &err);
    model_init_weights(&p, &m.layout, 1);
    int seq = 24, tokens[24], targets[24];
    const char *text = "the cat sat on the mat!!";
    for (int i = 0; i < seq; i++) tokens[i] = text[i] % 64;
    for (int i = 0; i < seq; i++) targets[i] = i + 1 < seq ? tokens[i + 1] : tokens[0];
    model_activations *a = model_activations_alloc(&m.layout, 1, seq, 0, &err);
    train_config t = {.lr = 1e-2, .min_lr = 1e-2, .warmup_steps = 1, .beta1 = 0.9, .beta2 = 0.95,
                      .adam_eps = 1e-8, .weight_decay = 0.0};
    double first = 0, loss = 0;
    for (int step = 0; step < 150; step++) {
        for (int u = 0; u < m.layout.n_units; u++) backend_cpu()->zero(g.unit[u], m.layout.units[u].size);
        loss = model_forward(&m, &p, a, tokens, targets, 1, seq);
        if (step == 0) first = loss;
        model_backward(&m, &p, &g, a, tokens, targets, 1, seq, 1);
        adamw_step(backend_cpu(), &m.layout, &p, &g, &mo, &v, &t, t.lr, step + 1, 1.0);
    }
    cr_assert(first > 3.5, "initial loss %g should be near log(64) = 4.16", first);
    cr_assert(loss < 0.05, "loss after 150 steps is %g, expected < 0.05", loss);
    model_activations_free(a);
    model_params_free(&p);
    model_params_free(&g);
    model_params_free(&mo);
    model_params_free(&v);
    model_free(&m);
}
