/* test_contract.c - the model contract the stages use (model_batch), in the
 * product's float32 build: packed samples are isolated from each other,
 * scoring is independent of batch composition, frozen units cost nothing and
 * are never touched, forward-only activations are smaller and agree with the
 * training forward (within float32 rounding), pooled hidden states are the means they claim to be.
 * Gradients are checked by finite differences in f64_contract.c and against
 * PyTorch in t_torch_reference.sh. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "model.h"
#include "projector.h"
#include "rng.h"

static model_config small_config(void) {
    model_config c = {.vocab = 64, .dim = 32, .layers = 2, .heads = 4, .kv_heads = 2, .ffn_dim = 64,
                      .context = 64, .rope_theta = 10000, .norm_eps = 1e-5, .tied_head = 0, .init_std = 0.1};
    return c;
}

typedef struct fixture {
    model m;
    model_params p;
} fixture;

static void setup(fixture *f, model_config c) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    cr_assert_eq(model_init(&f->m, &c, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(model_params_alloc(&f->p, &f->m.layout, &err), 0, "%s", err.msg);
    model_init_weights(&f->p, &f->m.layout, 3);
}

static void teardown(fixture *f) {
    model_params_free(&f->p);
    model_free(&f->m);
}

static void random_tokens(int *x, int n, int vocab, uint64_t seed) {
    for (int i = 0; i < n; i++) x[i] = (int)rng_below(seed, (uint64_t)i, (uint64_t)vocab);
}

static int g_training_acts; /* logits_of uses training activations instead of forward-only ones */

/* Forward of a batch into its own activations; returns the logits (caller frees). */
static real *logits_of(fixture *f, const model_batch *b, double *log_probs) {
    ps_error err;
    model_activations *a = g_training_acts ? model_activations_alloc(&f->m.layout, b->batch, b->seq, 0, &err)
                                           : model_activations_alloc_forward(&f->m.layout, b->batch, b->seq, &err);
    cr_assert_not_null(a, "%s", err.msg);
    model_batch bb = *b;
    bb.log_probs = log_probs;
    cr_assert_eq(model_forward_batch(&f->m, &f->p, a, &bb, NULL, &err), 0, "%s", err.msg);
    size_t count = (size_t)b->batch * b->seq * f->m.layout.cfg.vocab;
    real *out = malloc(count * sizeof(real));
    memcpy(out, model_logits(a), count * sizeof(real));
    model_activations_free(a);
    return out;
}

/* Three samples packed into one sequence, positions restarting per sample:
 * changing the middle sample's tokens leaves the others' logits bit-identical
 * (with forward-only and with training activations). */
static void packed_samples_case(int training) {
    g_training_acts = training;
    fixture f;
    setup(&f, small_config());
    enum { S = 24 };
    int V = f.m.layout.cfg.vocab, tokens[S], sample[S], pos[S];
    const int starts[] = {0, 10, 18, S};
    for (int s = 0; s < 3; s++)
        for (int t = starts[s]; t < starts[s + 1]; t++) sample[t] = s, pos[t] = t - starts[s];
    random_tokens(tokens, S, V, 1);
    model_batch b = {.batch = 1, .seq = S, .tokens = tokens, .positions = pos, .sample = sample};
    real *before = logits_of(&f, &b, NULL);
    for (int t = starts[1]; t < starts[2]; t++) tokens[t] = (tokens[t] + 7) % V;
    real *after = logits_of(&f, &b, NULL);
    for (int t = 0; t < S; t++) {
        int same = memcmp(before + (size_t)t * V, after + (size_t)t * V, V * sizeof(real)) == 0;
        if (sample[t] == 1)
            cr_expect(!same, "row %d of the changed sample did not change (negative control)", t);
        else
            cr_expect(same, "row %d of sample %d changed when sample 1 did", t, sample[t]);
    }
    /* The packed sample 2 agrees with itself run alone (float32 rounding apart). */
    model_batch alone = {.batch = 1, .seq = S - starts[2], .tokens = tokens + starts[2]};
    real *single = logits_of(&f, &alone, NULL);
    for (int t = 0; t < alone.seq; t++)
        for (int j = 0; j < V; j++)
            cr_assert(fabs(single[(size_t)t * V + j] - after[(size_t)(starts[2] + t) * V + j]) < 1e-5,
                      "packed sample 2 row %d differs from the sample alone", t);
    free(before);
    free(after);
    free(single);
    teardown(&f);
    g_training_acts = 0;
}

Test(contract, packed_samples_are_isolated) { packed_samples_case(0); }
Test(contract, packed_samples_are_isolated_in_training) { packed_samples_case(1); }

/* Without sample ids the rows see each other: the isolation above is the mask's doing. */
Test(contract, without_sample_ids_rows_mix) {
    fixture f;
    setup(&f, small_config());
    enum { S = 16 };
    int V = f.m.layout.cfg.vocab, tokens[S];
    random_tokens(tokens, S, V, 2);
    model_batch b = {.batch = 1, .seq = S, .tokens = tokens};
    real *before = logits_of(&f, &b, NULL);
    tokens[3] = (tokens[3] + 1) % V;
    real *after = logits_of(&f, &b, NULL);
    cr_expect(memcmp(before + 12 * V, after + 12 * V, V * sizeof(real)) != 0, "row 12 must see row 3");
    cr_expect(memcmp(before + 2 * V, after + 2 * V, V * sizeof(real)) == 0, "row 2 must not see row 3 (causal)");
    free(before);
    free(after);
    teardown(&f);
}

/* A row's log-probabilities are bit-identical whether it is scored alone or
 * in a batch of mixed lengths padded to the longest. */
Test(contract, scoring_is_batch_invariant) {
    fixture f;
    setup(&f, small_config());
    enum { B = 4, S = 40 };
    const int len[B] = {5, 40, 17, 29};
    int V = f.m.layout.cfg.vocab, tokens[B * S], targets[B * S], sample[B * S];
    random_tokens(tokens, B * S, V, 5);
    random_tokens(targets, B * S, V, 6);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S; t++) sample[b * S + t] = t < len[b] ? 0 : -1;
    double lp[B * S];
    model_batch all = {.batch = B, .seq = S, .tokens = tokens, .targets = targets, .sample = sample};
    free(logits_of(&f, &all, lp));
    for (int b = 0; b < B; b++) {
        double one[S];
        model_batch alone = {.batch = 1, .seq = len[b], .tokens = tokens + b * S, .targets = targets + b * S};
        free(logits_of(&f, &alone, one));
        for (int t = 0; t < len[b]; t++)
            cr_expect(one[t] == lp[b * S + t], "row %d of sequence %d: %.17g alone, %.17g in the batch", t, b, one[t],
                      lp[b * S + t]);
        for (int t = len[b]; t < S; t++) cr_expect(lp[b * S + t] == 0, "padding row %d of %d has a log-prob", t, b);
    }
    /* The control: the training forward's plain GEMMs, with this BLAS, give
     * rows other bits in another batch (information: another BLAS may not). */
    g_training_acts = 1;
    int differ = 0, rows = 0;
    double lp_train[B * S];
    free(logits_of(&f, &all, lp_train));
    for (int b = 0; b < B; b++) {
        double one[S];
        model_batch alone = {.batch = 1, .seq = len[b], .tokens = tokens + b * S, .targets = targets + b * S};
        free(logits_of(&f, &alone, one));
        for (int t = 0; t < len[b] - 1; t++, rows++) differ += one[t] != lp_train[b * S + t];
    }
    g_training_acts = 0;
    cr_log_info("training activations: %d of %d rows score differently alone and in the batch", differ, rows);
    teardown(&f);
}

/* The forward-only activations compute what the training ones do, in less memory. */
Test(contract, forward_only_matches_training_forward) {
    fixture f;
    setup(&f, small_config());
    enum { B = 2, S = 32 };
    int V = f.m.layout.cfg.vocab, tokens[B * S], targets[B * S];
    random_tokens(tokens, B * S, V, 7);
    random_tokens(targets, B * S, V, 8);
    ps_error err;
    model_activations *train = model_activations_alloc(&f.m.layout, B, S, 0, &err);
    double loss = model_forward(&f.m, &f.p, train, tokens, targets, B, S);
    model_batch b = {.batch = B, .seq = S, .tokens = tokens, .targets = targets};
    double lp[B * S], sum = 0;
    real *fwd = logits_of(&f, &b, lp);
    /* Not bit-identical: the forward-only pass takes the row-invariant products. */
    double worst = 0;
    for (size_t i = 0; i < (size_t)B * S * V; i++) worst = fmax(worst, fabs(fwd[i] - model_logits(train)[i]));
    cr_assert(worst < 1e-5, "forward-only logits differ from the training forward's by %g", worst);
    for (int i = 0; i < B * S; i++) sum -= lp[i];
    cr_assert(fabs(sum / (B * S) - loss) < 1e-6 * loss, "mean -log p %.15g vs loss %.15g", sum / (B * S), loss);
    size_t full = model_activations_bytes(&f.m.layout, B, S, 0), fo = model_activations_forward_bytes(&f.m.layout, B, S);
    cr_log_info("activations: training %zu bytes, forward-only %zu", full, fo);
    cr_assert(fo * 2 < full, "forward-only %zu bytes is not much below training %zu", fo, full);
    model_activations *fo_acts = model_activations_alloc_forward(&f.m.layout, B, S, &err);
    cr_assert(model_backward_batch(&f.m, &f.p, &f.p, fo_acts, &b, 1, &err) == -1, "backward over forward-only activations");
    model_activations_free(fo_acts);
    free(fwd);
    model_activations_free(train);
    teardown(&f);
}

/* Pooled hidden states: level 0 is the mean of the embedding rows of a group;
 * every level of a group is the same whether its rows sit in a padded batch
 * next to others or alone. */
Test(contract, pooled_hidden_states) {
    fixture f;
    setup(&f, small_config());
    enum { B = 2, S = 12 };
    const model_layout *L = &f.m.layout;
    int V = L->cfg.vocab, D = L->cfg.dim, levels = L->cfg.layers + 1, tokens[B * S], group[B * S], sample[B * S];
    random_tokens(tokens, B * S, V, 9);
    for (int i = 0; i < B * S; i++) {
        int t = i % S, b = i / S;
        sample[i] = b == 0 && t >= 9 ? -1 : 0;              /* sequence 0 has 9 rows */
        group[i] = sample[i] < 0 ? -1 : t >= 2 ? b : -1;   /* pool rows 2.. of each sequence */
    }
    double hidden[B * 3 * 32];
    model_batch b = {.batch = B, .seq = S, .tokens = tokens, .sample = sample, .pool_group = group, .n_groups = B,
                     .hidden = hidden};
    free(logits_of(&f, &b, NULL));
    const real *emb = model_tensor_data(&f.p, L, model_layout_find(L, "tok_embeddings.weight"));
    for (int d = 0; d < D; d++) {
        double mean = 0;
        for (int t = 2; t < 9; t++) mean += emb[(size_t)tokens[t] * D + d];
        cr_assert(fabs(mean / 7 - hidden[d]) < 1e-6, "level 0, dim %d: %g vs %g", d, hidden[d], mean / 7);
    }
    double alone[3 * 32];
    int group1[9];
    for (int t = 0; t < 9; t++) group1[t] = t >= 2 ? 0 : -1;
    model_batch one = {.batch = 1, .seq = 9, .tokens = tokens, .pool_group = group1, .n_groups = 1, .hidden = alone};
    free(logits_of(&f, &one, NULL));
    for (int j = 0; j < levels * D; j++)
        cr_assert_eq(alone[j], hidden[j], "pooled value %d differs alone (%.17g) and batched (%.17g)", j, alone[j],
                     hidden[j]);
    teardown(&f);
}

/* ------------------------------------------------------- frozen units */

/* An ops table that counts weight-gradient GEMMs and norm-weight gradients. */
static const backend_ops *g_cpu;
static int g_dw_calls, g_dnorm_calls;
static void counting_matmul_backward(real *din, real *dw, const real *dout, const real *in, const real *w, int n,
                                     int in_dim, int out_dim) {
    g_dw_calls += dw != NULL;
    g_cpu->matmul_backward(din, dw, dout, in, w, n, in_dim, out_dim);
}
static void counting_rmsnorm_backward(real *dx, real *dweight, const real *dout, const real *x, const real *weight,
                                      const real *rstd, int n, int dim) {
    g_dnorm_calls += dweight != NULL;
    g_cpu->rmsnorm_backward(dx, dweight, dout, x, weight, rstd, n, dim);
}

typedef struct hook_log {
    int acquired[8], ready[8];
} hook_log;
static int log_acquire(void *ctx, int unit, int backward) {
    if (backward) ((hook_log *)ctx)->acquired[unit]++;
    return 0;
}
static void log_release(void *ctx, int unit, int backward) { (void)ctx, (void)unit, (void)backward; }
static int log_ready(void *ctx, int unit) {
    ((hook_log *)ctx)->ready[unit]++;
    return 0;
}

/* A frozen decoder with a trainable projector in front: no weight gradients
 * for the decoder (dw = NULL, no norm-weight gradient), its gradient buffers
 * may be NULL, and the embedding-row gradient equals the one of the
 * unfrozen model bit for bit. */
Test(contract, frozen_decoder_trains_only_the_projector) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    model_config c = small_config();
    g_cpu = backend_cpu();
    backend_ops counting = *g_cpu;
    counting.matmul_backward = counting_matmul_backward;
    counting.rmsnorm_backward = counting_rmsnorm_backward;
    model m;
    cr_assert_eq(model_init(&m, &c, &counting, &err), 0, "%s", err.msg);
    projector pj;
    cr_assert_eq(projector_add(&m.layout, 20, &pj, &err), 0, "%s", err.msg);
    model_layout *L = &m.layout;
    cr_assert_eq(L->n_units, L->llm_units + 1);
    model_params p, g_all, g_frozen;
    cr_assert_eq(model_params_alloc(&p, L, &err), 0);
    model_init_weights(&p, L, 4);
    cr_assert_eq(model_params_alloc(&g_all, L, &err), 0);
    model_layout_set_trainable(L, 0, L->llm_units, 0);
    model_param_counts counts;
    model_layout_count(L, &counts);
    cr_assert_eq(counts.trainable, (size_t)20 * 32 + 32 + 32 * 32 + 32);
    cr_assert_eq(counts.extra, counts.trainable);
    cr_assert_eq(counts.frozen_units, L->llm_units);
    cr_assert_eq(model_grads_alloc(&g_frozen, L, &err), 0);
    for (int u = 0; u < L->llm_units; u++) cr_assert_null(g_frozen.unit[u]);

    enum { B = 2, S = 16, P = 6 };
    int tokens[B * S], targets[B * S];
    random_tokens(tokens, B * S, c.vocab, 10);
    random_tokens(targets, B * S, c.vocab, 11);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++) tokens[b * S + 2 + t] = -1, targets[b * S + 1 + t] = -1; /* image after BOS */
    real features[B * P * 20], embeds[B * P * 32], d_embeds[2][B * P * 32];
    for (int i = 0; i < B * P * 20; i++) features[i] = (real)rng_normal(12, (uint64_t)i);
    projector_acts pa;
    cr_assert_eq(projector_acts_alloc(&pa, &pj, B * P, &err), 0);
    projector_forward(&counting, &pj, L, &p, &pa, features, B * P, embeds);
    model_activations *a = model_activations_alloc(L, B, S, 0, &err);
    model_params *grads[2] = {&g_all, &g_frozen};
    for (int run = 0; run < 2; run++) {
        model_layout_set_trainable(L, 0, L->llm_units, run == 0);
        model_batch b = {.batch = B, .seq = S, .tokens = tokens, .targets = targets, .embeds = embeds,
                         .n_embeds = B * P, .embeds_grad = d_embeds[run]};
        hook_log log = {{0}, {0}};
        model_hooks hooks = {&log, log_acquire, log_release, log_ready};
        m.hooks = &hooks;
        cr_assert_eq(model_forward_batch(&m, &p, a, &b, NULL, &err), 0, "%s", err.msg);
        g_dw_calls = g_dnorm_calls = 0;
        cr_assert_eq(model_backward_batch(&m, &p, grads[run], a, &b, 1, &err), 0, "%s", err.msg);
        if (run == 1) {
            cr_assert_eq(g_dw_calls, 0, "%d weight-gradient GEMMs for a frozen decoder", g_dw_calls);
            cr_assert_eq(g_dnorm_calls, 0, "%d norm-weight gradients for a frozen decoder", g_dnorm_calls);
            for (int u = 0; u < L->llm_units; u++) cr_assert_eq(log.ready[u], 0, "grad_ready(%d) for a frozen unit", u);
            for (int u = 1; u < L->llm_units; u++) cr_assert_eq(log.acquired[u], 1, "unit %d not gathered", u);
        } else {
            cr_assert_eq(g_dw_calls, 1 + 4 * c.layers);
        }
        m.hooks = NULL;
    }
    cr_assert_eq(memcmp(d_embeds[0], d_embeds[1], sizeof d_embeds[0]), 0, "frozen changes the embedding-row gradient");
    real nonzero = 0;
    for (int i = 0; i < B * P * 32; i++) nonzero += fabsf(d_embeds[1][i]);
    cr_assert(nonzero > 0, "no gradient reached the embedding rows");
    projector_backward(&counting, &pj, L, &p, &g_frozen, &pa, features, B * P, d_embeds[1], NULL);
    const real *gb2 = model_tensor_data(&g_frozen, L, pj.b2);
    for (int d = 0; d < 32; d++) {
        double sum = 0;
        for (int i = 0; i < B * P; i++) sum += d_embeds[1][i * 32 + d];
        cr_assert(fabs(gb2[d] - sum) < 1e-6, "bias gradient %d: %g vs %g", d, gb2[d], sum);
    }
    projector_acts_free(&pa);
    model_activations_free(a);
    model_params_free(&p);
    model_params_free(&g_all);
    model_params_free(&g_frozen);
    model_free(&m);
}

/* Nothing below the lowest trainable unit is visited when no embedding-row
 * gradient is asked for: only the head trains here. */
Test(contract, backward_stops_at_the_lowest_trainable_unit) {
    fixture f;
    setup(&f, small_config());
    model_layout *L = &f.m.layout;
    model_layout_set_trainable(L, 0, L->llm_units - 1, 0);
    enum { B = 1, S = 8 };
    int tokens[S], targets[S];
    random_tokens(tokens, S, L->cfg.vocab, 13);
    random_tokens(targets, S, L->cfg.vocab, 14);
    ps_error err;
    model_params g;
    cr_assert_eq(model_grads_alloc(&g, L, &err), 0);
    model_activations *a = model_activations_alloc(L, B, S, 0, &err);
    hook_log log = {{0}, {0}};
    model_hooks hooks = {&log, log_acquire, log_release, log_ready};
    f.m.hooks = &hooks;
    model_batch b = {.batch = B, .seq = S, .tokens = tokens, .targets = targets};
    cr_assert_eq(model_forward_batch(&f.m, &f.p, a, &b, NULL, &err), 0);
    cr_assert_eq(model_backward_batch(&f.m, &f.p, &g, a, &b, 1, &err), 0);
    int head = L->llm_units - 1;
    cr_assert_eq(log.ready[head], 1);
    for (int u = 0; u < head; u++) cr_assert_eq(log.acquired[u] + log.ready[u], 0, "unit %d visited", u);
    model_activations_free(a);
    model_params_free(&g);
    teardown(&f);
}

/* Bad batches are refused with a message naming what is wrong. */
Test(contract, bad_batches_are_named) {
    fixture f;
    setup(&f, small_config());
    ps_error err;
    model_activations *a = model_activations_alloc_forward(&f.m.layout, 1, 4, &err);
    int tokens[4] = {1, 2, -1, 3}, pos[4] = {0, 1, 2, 64};
    model_batch b = {.batch = 1, .seq = 4, .tokens = tokens};
    cr_assert_eq(model_forward_batch(&f.m, &f.p, a, &b, NULL, &err), -1);
    cr_assert(strstr(err.msg, "embedding rows"), "%s", err.msg);
    tokens[2] = 64;
    cr_assert_eq(model_forward_batch(&f.m, &f.p, a, &b, NULL, &err), -1);
    cr_assert(strstr(err.msg, "token 64"), "%s", err.msg);
    tokens[2] = 5;
    b.positions = pos;
    cr_assert_eq(model_forward_batch(&f.m, &f.p, a, &b, NULL, &err), -1);
    cr_assert(strstr(err.msg, "position 64"), "%s", err.msg);
    b.positions = NULL;
    b.seq = 2;
    b.batch = 2;
    cr_assert_eq(model_forward_batch(&f.m, &f.p, a, &b, NULL, &err), -1);
    cr_assert(strstr(err.msg, "does not match"), "%s", err.msg);
    model_activations_free(a);
    teardown(&f);
}

/* The row-tiled product in float32 at shapes where the plain one splits over
 * threads and where OpenBLAS picks different kernels for different M: a
 * row's bits do not depend on how many rows come with it. */
Test(contract, row_tiled_matmul_is_row_invariant) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    enum { N = 40, K = 512, O = 2048 };
    real *in = malloc(sizeof(real) * N * K), *w = malloc(sizeof(real) * O * K);
    real *all = malloc(sizeof(real) * N * O), *part = malloc(sizeof(real) * N * O);
    for (int i = 0; i < N * K; i++) in[i] = (real)rng_normal(20, (uint64_t)i);
    for (int i = 0; i < O * K; i++) w[i] = (real)(0.05 * rng_normal(21, (uint64_t)i));
    const int outs[] = {96, O};
    for (int s = 0; s < 2; s++) {
        backend_cpu()->matmul_forward_rows(all, in, w, N, K, outs[s]);
        const int counts[] = {1, 5, 16, 17, 33};
        for (int c = 0; c < 5; c++) {
            int n = counts[c], first = N - n;
            backend_cpu()->matmul_forward_rows(part, in + (size_t)first * K, w, n, K, outs[s]);
            cr_assert_eq(memcmp(part, all + (size_t)first * outs[s], (size_t)n * outs[s] * sizeof(real)), 0,
                         "rows %d.. of a %d x %d product change when computed %d at a time", first, N, outs[s], n);
        }
    }
    free(in), free(w), free(all), free(part);
}

/* A hook that cannot gather a unit (an FSDP all-gather out of memory) stops
 * the pass: the model returns -1 and never reads the unit, whose pointer the
 * failed gather left NULL. The same for a gradient that cannot be reduced. */
typedef struct failing_hooks {
    int fail_unit, fail_backward, fail_ready;
    model_params *p;
} failing_hooks;
static int fail_acquire(void *ctx, int unit, int backward) {
    failing_hooks *h = ctx;
    if (unit == h->fail_unit && backward == h->fail_backward) {
        h->p->unit[unit] = NULL; /* what a failed gather leaves */
        return -1;
    }
    return 0;
}
static void no_release(void *ctx, int unit, int backward) { (void)ctx, (void)unit, (void)backward; }
static int fail_ready(void *ctx, int unit) { return unit == ((failing_hooks *)ctx)->fail_ready ? -1 : 0; }

Test(contract, a_failed_hook_stops_the_pass) {
    fixture f;
    setup(&f, small_config());
    enum { B = 2, S = 8 };
    int tokens[B * S], targets[B * S];
    random_tokens(tokens, B * S, 64, 11);
    random_tokens(targets, B * S, 64, 12);
    model_params g;
    ps_error err = {0};
    cr_assert_eq(model_params_alloc(&g, &f.m.layout, &err), 0, "%s", err.msg);
    model_activations *a = model_activations_alloc(&f.m.layout, B, S, 0, &err);
    cr_assert(a);
    model_batch b = {.batch = B, .seq = S, .tokens = tokens, .targets = targets};
    real *keep[8];
    for (int u = 0; u < f.m.layout.n_units; u++) keep[u] = f.p.unit[u];
    const int cases[][3] = {{1, 0, -1}, {3, 0, -1}, {2, 1, -1}, {-1, 0, 2}, {-1, 0, 0}}; /* unit, backward, ready */
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        failing_hooks h = {cases[k][0], cases[k][1], cases[k][2], &f.p};
        model_hooks hooks = {&h, fail_acquire, no_release, fail_ready};
        f.m.hooks = &hooks;
        err.msg[0] = '\0';
        int fwd = model_forward_batch(&f.m, &f.p, a, &b, NULL, &err);
        int bwd = fwd ? -1 : model_backward_batch(&f.m, &f.p, &g, a, &b, 1, &err);
        cr_assert(fwd || bwd, "case %zu: the pass went on past a failed hook", k);
        cr_assert(strstr(err.msg, "unit"), "case %zu: no message naming the unit (%s)", k, err.msg);
        for (int u = 0; u < f.m.layout.n_units; u++) f.p.unit[u] = keep[u];
    }
    f.m.hooks = NULL;
    model_activations_free(a);
    model_params_free(&g);
    teardown(&f);
}
