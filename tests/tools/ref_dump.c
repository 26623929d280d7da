/* ref_dump - one training step of presight, written out for the PyTorch check.
 *
 *   ref_dump CONFIG OUT.h5 [key=value ...]
 *
 * Builds the model of CONFIG on the CPU backend, initialises it from
 * train.seed, draws deterministic tokens [micro_batch, seq_len] and their
 * next-token targets (a few masked with -1 to exercise ignore_index), runs
 * forward and backward once and one AdamW step (lr = train.lr, step 1, no
 * clipping), and writes OUT.h5:
 *
 *   /model/<tensor>        weights before the step (Meta names, float32)
 *   /tokens, /targets      int32 [micro_batch, seq_len]
 *   /logits                float32 [micro_batch, seq_len, vocab], forward output
 *   /loss                  float64 [1], mean cross-entropy over counted targets
 *   /grad/<tensor>         d loss / d tensor
 *   /after_step/<tensor>   weights after one AdamW step
 *   /hparams.<key>         float64 [1] each: the model and optimizer settings
 *                          the reference needs (so it never parses libconfig)
 *
 * The /model group carries the resolved config text as its "config" attribute.
 * tests/reference/torch_reference.py reads this file and redoes everything in
 * PyTorch. Exits non-zero with the error message on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "blas.h"
#include "config.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "weights_h5.h"

static int die(const char *what, const ps_error *err) {
    fprintf(stderr, "ref_dump: %s: %s\n", what, err->msg);
    return 1;
}

/* Tokens are a [micro_batch, seq_len + 1] stream; inputs are its first seq_len
 * columns and targets its last seq_len (next-token prediction). Roughly one
 * target in eight, and always the first of each sequence, is masked with -1. */
static void make_batch(int *tokens, int *targets, int batch, int seq, int vocab, uint64_t seed) {
    uint64_t tok_key = rng_key(seed, "ref_dump.tokens"), mask_key = rng_key(seed, "ref_dump.mask");
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t < seq; t++) {
            uint64_t at = (uint64_t)b * (seq + 1) + t;
            tokens[b * seq + t] = (int)rng_below(tok_key, at, (uint64_t)vocab);
            targets[b * seq + t] = (int)rng_below(tok_key, at + 1, (uint64_t)vocab);
        }
        targets[b * seq] = -1;
        for (int t = 1; t < seq; t++)
            if (rng_below(mask_key, (uint64_t)b * seq + t, 8) == 0) targets[b * seq + t] = -1;
    }
}

static int write_hparam(h5_file *f, const char *key, double value, ps_error *err) {
    char name[96];
    snprintf(name, sizeof name, "hparams.%s", key);
    return h5_write_double(f, name, value, err);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONFIG OUT.h5 [key=value ...]\n", argv[0]);
        return 2;
    }
    const char *cfg_path = argv[1], *out_path = argv[2];
    ps_error err = {{0}};
    run_config cfg;
    if (config_load(&cfg, cfg_path, argc - 3, argv + 3, &err)) return die("loading the config", &err);
    if (blas_init(&err)) return die("loading a BLAS", &err);

    const model_config *mc = &cfg.model;
    const train_config *tc = &cfg.train;
    int B = tc->micro_batch, T = tc->seq_len, V = mc->vocab, n = B * T;

    model m;
    if (model_init(&m, mc, backend_cpu(), &err)) return die("building the model", &err);
    const model_layout *L = &m.layout;
    model_params params, grads, mom, vel;
    if (model_params_alloc(&params, L, &err) || model_params_alloc(&grads, L, &err) ||
        model_params_alloc(&mom, L, &err) || model_params_alloc(&vel, L, &err))
        return die("allocating parameters", &err);
    model_init_weights(&params, L, (uint64_t)tc->seed);
    model_activations *acts = model_activations_alloc(L, B, T, 0, &err);
    if (!acts) return die("allocating activations", &err);

    int *tokens = malloc((size_t)n * sizeof *tokens), *targets = malloc((size_t)n * sizeof *targets);
    real *logits = malloc((size_t)n * V * sizeof *logits);
    if (!tokens || !targets || !logits) {
        fprintf(stderr, "ref_dump: out of memory\n");
        return 1;
    }
    make_batch(tokens, targets, B, T, V, (uint64_t)tc->seed);

    /* The resolved config, as the "config" attribute of /model. */
    char *config_text = NULL;
    size_t config_len = 0;
    FILE *mem = open_memstream(&config_text, &config_len);
    if (!mem || run_config_write(&cfg, mem, &err)) return die("writing the config text", &err);
    fclose(mem);

    h5_file *f = h5_create(out_path, &err);
    if (!f) return die("creating the output", &err);
    long long tok_dims[2] = {B, T}, logit_dims[3] = {B, T, V};
    int rc = h5_write_params(f, "model", L, &params, config_text, &err);
    rc = rc || h5_write_ints(f, "tokens", tokens, 2, tok_dims, &err);
    rc = rc || h5_write_ints(f, "targets", targets, 2, tok_dims, &err);

    double loss = model_forward(&m, &params, acts, tokens, targets, B, T);
    memcpy(logits, model_logits(acts), (size_t)n * V * sizeof *logits); /* backward overwrites them */
    for (int u = 0; u < L->n_units; u++) m.ops->zero(grads.unit[u], L->units[u].size);
    model_backward(&m, &params, &grads, acts, tokens, targets, B, T, 1);

    rc = rc || h5_write_reals(f, "logits", logits, 3, logit_dims, &err);
    rc = rc || h5_write_double(f, "loss", loss, &err);
    rc = rc || h5_write_params(f, "grad", L, &grads, NULL, &err);

    adamw_step(m.ops, L, &params, &grads, &mom, &vel, tc, tc->lr, 1, 1.0);
    rc = rc || h5_write_params(f, "after_step", L, &params, NULL, &err);

    const struct { const char *key; double value; } hp[] = {
        {"vocab", mc->vocab},           {"dim", mc->dim},
        {"layers", mc->layers},         {"heads", mc->heads},
        {"kv_heads", mc->kv_heads},     {"ffn_dim", mc->ffn_dim},
        {"context", mc->context},       {"rope_theta", mc->rope_theta},
        {"norm_eps", mc->norm_eps},     {"tied_head", mc->tied_head},
        {"lr", tc->lr},                 {"beta1", tc->beta1},
        {"beta2", tc->beta2},           {"eps", tc->adam_eps},
        {"weight_decay", tc->weight_decay},
    };
    for (size_t i = 0; i < sizeof hp / sizeof hp[0] && !rc; i++) rc = write_hparam(f, hp[i].key, hp[i].value, &err);

    if (rc) {
        h5_close(f, 0, NULL);
        return die(out_path, &err);
    }
    if (h5_close(f, 1, &err)) return die(out_path, &err);

    int n_valid = 0;
    for (int i = 0; i < n; i++) n_valid += targets[i] >= 0;
    printf("ref_dump: %s -> %s: %zu params, tokens [%d, %d], %d of %d targets counted, loss %.6f (%s)\n",
           cfg_path, out_path, L->n_params, B, T, n_valid, n, loss, blas_describe());

    free(config_text);
    free(tokens);
    free(targets);
    free(logits);
    model_activations_free(acts);
    model_params_free(&params);
    model_params_free(&grads);
    model_params_free(&mom);
    model_params_free(&vel);
    model_free(&m);
    return 0;
}
