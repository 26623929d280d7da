/* ref_contract - presight's model contract on fixed batches, written out for
 * the PyTorch check (tests/reference/torch_reference.py --contract).
 *
 *   ref_contract CONFIG OUT.h5
 *
 * Builds the model of CONFIG plus a projector (mlp2x_gelu, input width 12),
 * freezes the decoder, initialises everything from train.seed (projector
 * biases set off zero so that their paths carry values) and writes:
 *
 *   /model/<tensor>          all weights, decoder and projector (Meta / LLaVA names)
 *   a.*  an adaptation step: a [2, 16] batch with projected image rows
 *        (token -1), two samples packed into sequence 0 with positions
 *        restarting at 0, a jump in sequence 1's positions, then padding: a.tokens, a.targets,
 *        a.positions, a.sample, a.features [7, 12]; outputs a.logits, a.loss,
 *        a.embeds (the projector's rows), a.embeds_grad, a.features_grad and
 *        a.grad.<projector tensor>; a.frozen_grads = number of decoder units
 *        that have a gradient buffer (must be 0)
 *   b.*  forward-only scoring of a padded batch of lengths 16, 7, 11:
 *        b.tokens, b.targets, b.sample, b.pool_group; outputs b.log_probs and
 *        b.hidden [3, layers + 1, dim] (mean over rows 1.. of each sequence)
 *   c.*  greedy decoding with the KV cache: c.prompts [3, 9], c.prompt_len
 *        (5, 9, 2), 6 new tokens each: c.tokens [3, 6], c.logits [3, 6, vocab]
 *   hparams.<key>            as ref_dump writes them, plus hparams.in_dim
 *
 * Exits non-zero with the error message on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "blas.h"
#include "config.h"
#include "decode.h"
#include "model.h"
#include "projector.h"
#include "rng.h"
#include "weights_h5.h"

enum { IN_DIM = 12, A_B = 2, A_S = 16, A_EMB = 7, B_B = 3, B_S = 16, C_B = 3, C_STRIDE = 9, C_NEW = 6 };

static int die(const char *what, const ps_error *err) {
    fprintf(stderr, "ref_contract: %s: %s\n", what, err->msg);
    return 1;
}

/* Sequence 0: sample 0 = [tok, 4 image rows, 3 tok], sample 1 = 8 tok;
 * sequence 1: sample 0 = [tok, 3 image rows, 6 tok], then 6 padding rows.
 * Sample 1's positions restart at 0; sequence 1's positions jump by 3 after
 * its image rows (RoPE sees only position differences within a sample, so a
 * restart alone would look the same as no positions at all).
 * Targets: the next token within a sample, -1 on image rows, on each
 * sample's last row and on padding. */
static void adaptation_batch(int *tok, int *tgt, int *pos, int *sid, int vocab, uint64_t key) {
    static const int layout[A_B][A_S] = {
        {0, 1, 1, 1, 1, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2}, /* 0 text, 1 image, 2 text of sample 1 */
        {0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3}, /* 3 padding */
    };
    for (int b = 0; b < A_B; b++)
        for (int t = 0; t < A_S; t++) {
            int i = b * A_S + t, kind = layout[b][t];
            sid[i] = kind == 3 ? -1 : kind == 2 ? 1 : 0;
            pos[i] = kind == 2 ? t - 8 : kind == 3 ? 0 : b == 1 && t >= 4 ? t + 3 : t;
            tok[i] = kind == 1 ? -1 : (int)rng_below(key, (uint64_t)i, (uint64_t)vocab);
        }
    for (int i = 0; i < A_B * A_S; i++) {
        int last = i % A_S == A_S - 1 || sid[i + 1] != sid[i];
        tgt[i] = last || sid[i] < 0 || tok[i + 1] < 0 || tok[i] < 0 ? -1 : tok[i + 1];
    }
}

static int write_ints(h5_file *f, const char *name, const int *x, int rank, long long d0, long long d1,
                      ps_error *err) {
    long long dims[2] = {d0, d1};
    return h5_write_ints(f, name, x, rank, dims, err);
}

static int write_reals(h5_file *f, const char *name, const real *x, int rank, const long long *dims, ps_error *err) {
    return h5_write_reals(f, name, x, rank, dims, err);
}

/* Part a: features -> projector -> frozen decoder, loss and its gradients. */
static int part_a(model *m, const projector *pj, model_params *P, h5_file *f, uint64_t seed, ps_error *err) {
    const model_layout *L = &m->layout;
    int D = L->cfg.dim, V = L->cfg.vocab, n = A_B * A_S;
    int tok[A_B * A_S], tgt[A_B * A_S], pos[A_B * A_S], sid[A_B * A_S];
    adaptation_batch(tok, tgt, pos, sid, V, rng_key(seed, "ref_contract.a"));
    real features[A_EMB * IN_DIM], embeds[A_EMB * 512], d_embeds[A_EMB * 512], d_features[A_EMB * IN_DIM];
    if (D > 512) return ps_fail(err, "ref_contract supports model.dim <= 512");
    for (int i = 0; i < A_EMB * IN_DIM; i++) features[i] = (real)rng_normal(rng_key(seed, "ref_contract.features"), (uint64_t)i);
    model_params G;
    if (model_grads_alloc(&G, L, err)) return -1;
    int have = 0;
    for (int u = 0; u < L->llm_units; u++) have += G.unit[u] != NULL;
    for (int u = L->llm_units; u < L->n_units; u++) m->ops->zero(G.unit[u], L->units[u].size);
    projector_acts pa;
    model_activations *a = model_activations_alloc(L, A_B, A_S, 0, err);
    if (!a || projector_acts_alloc(&pa, pj, A_EMB, err)) return -1;
    projector_forward(m->ops, pj, L, P, &pa, features, A_EMB, embeds);
    model_batch bt = {.batch = A_B, .seq = A_S, .tokens = tok, .targets = tgt, .positions = pos, .sample = sid,
                      .embeds = embeds, .n_embeds = A_EMB, .embeds_grad = d_embeds};
    model_result r;
    if (model_forward_batch(m, P, a, &bt, &r, err)) return -1;
    real *logits = malloc((size_t)n * V * sizeof(real));
    if (!logits) return ps_fail(err, "out of memory");
    memcpy(logits, model_logits(a), (size_t)n * V * sizeof(real));
    if (model_backward_batch(m, P, &G, a, &bt, 1, err)) return -1;
    projector_backward(m->ops, pj, L, P, &G, &pa, features, A_EMB, d_embeds, d_features);
    long long ld[3] = {A_B, A_S, V}, ed[2] = {A_EMB, D}, fd[2] = {A_EMB, IN_DIM};
    int rc = write_ints(f, "a.tokens", tok, 2, A_B, A_S, err) || write_ints(f, "a.targets", tgt, 2, A_B, A_S, err) ||
             write_ints(f, "a.positions", pos, 2, A_B, A_S, err) || write_ints(f, "a.sample", sid, 2, A_B, A_S, err) ||
             write_reals(f, "a.features", features, 2, fd, err) || write_reals(f, "a.logits", logits, 3, ld, err) ||
             h5_write_double(f, "a.loss", r.loss, err) || write_reals(f, "a.embeds", embeds, 2, ed, err) ||
             write_reals(f, "a.embeds_grad", d_embeds, 2, ed, err) ||
             write_reals(f, "a.features_grad", d_features, 2, fd, err) || h5_write_double(f, "a.frozen_grads", have, err);
    for (int i = 0; i < L->n_tensors && !rc; i++) {
        const model_tensor *t = &L->tensors[i];
        if (t->unit < L->llm_units) continue;
        char name[96];
        snprintf(name, sizeof name, "a.grad.%s", t->name);
        long long dims[2] = {t->rows, t->cols};
        rc = write_reals(f, name, model_tensor_data(&G, L, i), t->cols == 1 ? 1 : 2, dims, err);
    }
    printf("ref_contract: a: loss %.6f over %d targets, %d image rows\n", r.loss, r.n_counted, A_EMB);
    free(logits);
    projector_acts_free(&pa);
    model_activations_free(a);
    model_params_free(&G);
    return rc ? -1 : 0;
}

/* Part b: forward-only log-probabilities and pooled hidden states of a padded batch. */
static int part_b(model *m, model_params *P, h5_file *f, uint64_t seed, ps_error *err) {
    const model_layout *L = &m->layout;
    int D = L->cfg.dim, V = L->cfg.vocab, levels = L->cfg.layers + 1, n = B_B * B_S;
    const int len[B_B] = {16, 7, 11};
    int tok[B_B * B_S], tgt[B_B * B_S], sid[B_B * B_S], group[B_B * B_S];
    uint64_t key = rng_key(seed, "ref_contract.b");
    for (int i = 0; i < n; i++) {
        int b = i / B_S, t = i % B_S, in = t < len[b];
        tok[i] = (int)rng_below(key, (uint64_t)i, (uint64_t)V);
        tgt[i] = in && t + 1 < len[b] ? (int)rng_below(key, (uint64_t)(n + i), (uint64_t)V) : -1;
        sid[i] = in ? 0 : -1;
        group[i] = in && t >= 1 ? b : -1;
    }
    double lp[B_B * B_S], *hidden = malloc((size_t)B_B * levels * D * sizeof(double));
    real lp_r[B_B * B_S], *hidden_r = malloc((size_t)B_B * levels * D * sizeof(real));
    model_activations *a = model_activations_alloc_forward(L, B_B, B_S, err);
    if (!a || !hidden || !hidden_r) return -1;
    model_batch bt = {.batch = B_B, .seq = B_S, .tokens = tok, .targets = tgt, .sample = sid, .log_probs = lp,
                      .pool_group = group, .n_groups = B_B, .hidden = hidden};
    if (model_forward_batch(m, P, a, &bt, NULL, err)) return -1;
    for (int i = 0; i < n; i++) lp_r[i] = (real)lp[i];
    for (size_t i = 0; i < (size_t)B_B * levels * D; i++) hidden_r[i] = (real)hidden[i];
    long long hd[3] = {B_B, levels, D}, pd[2] = {B_B, B_S};
    int rc = write_ints(f, "b.tokens", tok, 2, B_B, B_S, err) || write_ints(f, "b.targets", tgt, 2, B_B, B_S, err) ||
             write_ints(f, "b.sample", sid, 2, B_B, B_S, err) || write_ints(f, "b.pool_group", group, 2, B_B, B_S, err) ||
             write_reals(f, "b.log_probs", lp_r, 2, pd, err) || write_reals(f, "b.hidden", hidden_r, 3, hd, err);
    free(hidden);
    free(hidden_r);
    model_activations_free(a);
    return rc ? -1 : 0;
}

/* Part c: batched greedy decoding with the KV cache. */
static int part_c(model *m, model_params *P, h5_file *f, uint64_t seed, ps_error *err) {
    int V = m->layout.cfg.vocab, prompts[C_B * C_STRIDE], len[C_B] = {5, 9, 2}, out[C_B * C_NEW];
    uint64_t key = rng_key(seed, "ref_contract.c");
    for (int i = 0; i < C_B * C_STRIDE; i++) prompts[i] = (int)rng_below(key, (uint64_t)i, (uint64_t)V);
    real *logits = malloc((size_t)C_B * C_NEW * V * sizeof(real));
    if (!logits || model_greedy_decode(m, P, prompts, C_STRIDE, len, C_B, C_NEW, out, logits, err)) return -1;
    long long ld[3] = {C_B, C_NEW, V}, one = C_B;
    int rc = write_ints(f, "c.prompts", prompts, 2, C_B, C_STRIDE, err) ||
             h5_write_ints(f, "c.prompt_len", len, 1, &one, err) || write_ints(f, "c.tokens", out, 2, C_B, C_NEW, err) ||
             write_reals(f, "c.logits", logits, 3, ld, err);
    free(logits);
    return rc ? -1 : 0;
}

static int write_hparams(h5_file *f, const model_config *mc, ps_error *err) {
    const struct { const char *key; double value; } hp[] = {
        {"vocab", mc->vocab},       {"dim", mc->dim},         {"layers", mc->layers},
        {"heads", mc->heads},       {"kv_heads", mc->kv_heads}, {"ffn_dim", mc->ffn_dim},
        {"context", mc->context},   {"rope_theta", mc->rope_theta}, {"norm_eps", mc->norm_eps},
        {"tied_head", mc->tied_head}, {"in_dim", IN_DIM},
    };
    for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "hparams.%s", hp[i].key);
        if (h5_write_double(f, name, hp[i].value, err)) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG OUT.h5\n", argv[0]);
        return 2;
    }
    ps_error err = {{0}};
    run_config cfg;
    if (config_load(&cfg, argv[1], 0, NULL, &err)) return die("loading the config", &err);
    if (blas_init(&err)) return die("loading a BLAS", &err);
    if (cfg.model.context < 16) return die(argv[1], &(ps_error){.msg = "ref_contract needs model.context >= 16"});
    model m;
    projector pj;
    if (model_init(&m, &cfg.model, backend_cpu(), &err) || projector_add(&m.layout, IN_DIM, &pj, &err))
        return die("building the model", &err);
    model_layout *L = &m.layout;
    model_layout_set_trainable(L, 0, L->llm_units, 0);
    model_params P;
    if (model_params_alloc(&P, L, &err)) return die("allocating parameters", &err);
    uint64_t seed = (uint64_t)cfg.train.seed;
    model_init_weights(&P, L, seed);
    for (int i = 0; i < L->n_tensors; i++)
        if (L->tensors[i].is_bias)
            for (int j = 0; j < L->tensors[i].rows; j++)
                model_tensor_data(&P, L, i)[j] = (real)(0.1 * rng_normal(rng_key(seed, L->tensors[i].name), (uint64_t)j));
    h5_file *f = h5_create(argv[2], &err);
    if (!f) return die("creating the output", &err);
    int rc = h5_write_params(f, "model", L, &P, NULL, &err) || part_a(&m, &pj, &P, f, seed, &err) ||
             part_b(&m, &P, f, seed, &err) || part_c(&m, &P, f, seed, &err) || write_hparams(f, &cfg.model, &err);
    if (rc) {
        h5_close(f, 0, NULL);
        return die(argv[2], &err);
    }
    if (h5_close(f, 1, &err)) return die(argv[2], &err);
    printf("ref_contract: %s -> %s (%zu parameters, %zu in the projector)\n", argv[1], argv[2], L->n_params,
           L->units[pj.unit].size);
    model_params_free(&P);
    model_free(&m);
    return 0;
}
