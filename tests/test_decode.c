/* test_decode.c - greedy decoding with the KV cache against re-running the
 * whole causal forward on every prefix.
 *
 * The model has config/model/tiny.cfg's shape and is trained for 150 steps
 * on four sequences of the text fixture until it knows them by heart, so
 * that prompts taken from them continue differently (a model that repeats
 * one token would agree with anything). Prompts of different lengths share
 * one batch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "decode.h"
#include "model.h"
#include "optim.h"
#include "test_util.h"
#include "text_dataset.h"

#define FIXTURE "tests/fixtures/text/tiny.txt"

enum { TRAIN_SEQS = 4, TRAIN_LEN = 64 };
static model g_model;
static model_params g_params;
static int g_text[TRAIN_SEQS * (TRAIN_LEN + 1)]; /* the sequences it learns */

static void train_tiny(void) {
    test_chdir_to_repo_root(FIXTURE);
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    model_config c = {.vocab = 512, .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn_dim = 128,
                      .context = 256, .rope_theta = 500000, .norm_eps = 1e-5, .tied_head = 0, .init_std = 0.02};
    cr_assert_eq(model_init(&g_model, &c, backend_cpu(), &err), 0, "%s", err.msg);
    model_params g, mo, v;
    cr_assert_eq(model_params_alloc(&g_params, &g_model.layout, &err), 0);
    cr_assert_eq(model_params_alloc(&g, &g_model.layout, &err), 0);
    cr_assert_eq(model_params_alloc(&mo, &g_model.layout, &err), 0);
    cr_assert_eq(model_params_alloc(&v, &g_model.layout, &err), 0);
    model_init_weights(&g_params, &g_model.layout, 42);
    dataset *d;
    cr_assert_eq(text_dataset_open(&d, FIXTURE, 42, &err), 0, "%s", err.msg);
    enum { B = TRAIN_SEQS, T = TRAIN_LEN };
    int tokens[B * T], targets[B * T];
    model_activations *a = model_activations_alloc(&g_model.layout, B, T, 0, &err);
    train_config t = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .weight_decay = 0.0};
    double loss = 0;
    cr_assert_eq(d->ops->read(d, 0, B, T, g_text, &err), 0, "%s", err.msg);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            tokens[b * T + i] = g_text[b * (T + 1) + i];
            targets[b * T + i] = g_text[b * (T + 1) + i + 1];
        }
    for (int step = 0; step < 150; step++) {
        for (int u = 0; u < g_model.layout.n_units; u++) backend_cpu()->zero(g.unit[u], g_model.layout.units[u].size);
        loss = model_forward(&g_model, &g_params, a, tokens, targets, B, T);
        model_backward(&g_model, &g_params, &g, a, tokens, targets, B, T, 1);
        adamw_step(backend_cpu(), &g_model.layout, &g_params, &g, &mo, &v, &t, t.lr, step + 1, 1.0);
    }
    cr_log_info("tiny model trained 150 steps: loss %.3f", loss);
    cr_assert(loss < 0.5, "the tiny model did not learn its sequences (loss %g)", loss);
    dataset_close(d);
    model_activations_free(a);
    model_params_free(&g);
    model_params_free(&mo);
    model_params_free(&v);
}

static void untrain(void) {
    model_params_free(&g_params);
    model_free(&g_model);
}

/* The logits of the last row of a full causal forward over tokens[0, len):
 * the training path (GEMM attention) or the forward-only one. */
static void last_logits(const int *tokens, int len, int forward_only, real *out) {
    ps_error err;
    model_activations *a = forward_only ? model_activations_alloc_forward(&g_model.layout, 1, len, &err)
                                        : model_activations_alloc(&g_model.layout, 1, len, 0, &err);
    cr_assert_not_null(a, "%s", err.msg);
    model_batch b = {.batch = 1, .seq = len, .tokens = tokens};
    cr_assert_eq(model_forward_batch(&g_model, &g_params, a, &b, NULL, &err), 0, "%s", err.msg);
    int V = g_model.layout.cfg.vocab;
    memcpy(out, model_logits(a) + (size_t)(len - 1) * V, (size_t)V * sizeof(real));
    model_activations_free(a);
}

static int argmax(const real *x, int n) {
    int best = 0;
    for (int j = 1; j < n; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

TestSuite(decode, .init = train_tiny, .fini = untrain, .timeout = 300);

Test(decode, cached_greedy_equals_full_forward) {
    enum { B = TRAIN_SEQS, STRIDE = 32, NEW = 24 };
    int prompts[B * STRIDE] = {0}, len[B] = {9, 23, 4, 16}, out[B * NEW], V = g_model.layout.cfg.vocab;
    char text[B][STRIDE + 1];
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < len[b]; t++) prompts[b * STRIDE + t] = g_text[b * (TRAIN_LEN + 1) + t];
        for (int t = 0; t < len[b]; t++) text[b][t] = prompts[b * STRIDE + t] >= 32 && prompts[b * STRIDE + t] < 127 ? (char)prompts[b * STRIDE + t] : '?';
        text[b][len[b]] = 0;
    }
    real *logits = malloc((size_t)B * NEW * V * sizeof(real)), *ref = malloc((size_t)V * sizeof(real));
    ps_error err;
    cr_assert_eq(model_greedy_decode(&g_model, &g_params, prompts, STRIDE, len, B, NEW, out, logits, &err), 0, "%s",
                 err.msg);
    double worst_train = 0;
    int exact = 1, distinct_first = 0;
    for (int b = 0; b < B; b++) {
        int seq[STRIDE + NEW];
        memcpy(seq, prompts + b * STRIDE, (size_t)len[b] * sizeof(int));
        char shown[NEW + 1];
        for (int k = 0; k < NEW; k++) {
            const real *got = logits + ((size_t)b * NEW + k) * V;
            last_logits(seq, len[b] + k, 0, ref);
            cr_assert_eq(out[b * NEW + k], argmax(ref, V), "prompt %d token %d: cached %d, full forward %d", b, k,
                         out[b * NEW + k], argmax(ref, V));
            for (int j = 0; j < V; j++) worst_train = fmax(worst_train, fabs(got[j] - ref[j]));
            last_logits(seq, len[b] + k, 1, ref);
            exact = exact && memcmp(got, ref, (size_t)V * sizeof(real)) == 0;
            seq[len[b] + k] = out[b * NEW + k];
            shown[k] = out[b * NEW + k] >= 32 && out[b * NEW + k] < 127 ? (char)out[b * NEW + k] : '?';
        }
        shown[NEW] = 0;
        cr_log_info("prompt \"%s\" -> \"%s\"", text[b], shown);
        int repeats = 1;
        for (int k = 1; k < NEW; k++) repeats += out[b * NEW + k] == out[b * NEW];
        cr_assert(repeats < NEW, "prompt %d decodes one token over and over: the model is too weak to test with", b);
        for (int o = 0; o < b; o++) distinct_first += memcmp(out + b * NEW, out + o * NEW, NEW * sizeof(int)) != 0;
    }
    cr_assert_eq(distinct_first, B * (B - 1) / 2, "some prompts have the same continuation");
    cr_log_info("cached logits vs the training forward: max |diff| %.2e; vs the forward-only pass: %s", worst_train,
                exact ? "bit-identical" : "not bit-identical");
    cr_assert(worst_train < 1e-5, "cached logits differ from the full forward by %g", worst_train);
    cr_assert(exact, "cached logits are not bit-identical to the forward-only pass over the prefix");
    free(logits);
    free(ref);
}

/* Prompts whose rows 2..2+NV are embedding rows (token -1). */
enum { EB = 3, ESTRIDE = 24, ENEW = 12, NV = 5 };
static const int e_len[EB] = {11, 20, 8};

/* The prompts of b, their embedding rows: the token embedding of the text's
 * own token when exact, else that row plus a seeded perturbation. */
static void embed_prompts(int *prompts, real *embeds, int perturb) {
    int D = g_model.layout.cfg.dim;
    const real *emb = g_params.unit[0]; /* tok_embeddings [vocab, dim] first in unit 0 */
    int k = 0;
    for (int b = 0; b < EB; b++)
        for (int t = 0; t < e_len[b]; t++) {
            int tok = g_text[b * (TRAIN_LEN + 1) + t];
            int visual = t >= 2 && t < 2 + NV;
            prompts[b * ESTRIDE + t] = visual ? -1 : tok;
            if (!visual) continue;
            for (int j = 0; j < D; j++)
                embeds[(size_t)k * D + j] = emb[(size_t)tok * D + j] + (perturb ? 0.05f * sinf(0.7f * (float)(k * D + j)) : 0);
            k++;
        }
}

/* The logits of the last row of a forward-only pass over one prompt with embedding rows. */
static void last_logits_embeds(const int *tokens, int len, const real *embeds, int n_embeds, real *out) {
    ps_error err;
    model_activations *a = model_activations_alloc_forward(&g_model.layout, 1, len, &err);
    cr_assert_not_null(a, "%s", err.msg);
    model_batch b = {.batch = 1, .seq = len, .tokens = tokens, .embeds = embeds, .n_embeds = n_embeds};
    cr_assert_eq(model_forward_batch(&g_model, &g_params, a, &b, NULL, &err), 0, "%s", err.msg);
    int V = g_model.layout.cfg.vocab;
    memcpy(out, model_logits(a) + (size_t)(len - 1) * V, (size_t)V * sizeof(real));
    model_activations_free(a);
}

Test(decode, embedding_rows_equal_full_forward_and_are_batch_invariant) {
    int D = g_model.layout.cfg.dim, V = g_model.layout.cfg.vocab;
    int prompts[EB * ESTRIDE] = {0}, tokens[EB * ESTRIDE] = {0}, out[EB * ENEW], plain[EB * ENEW], len[EB];
    real *embeds = malloc(sizeof(real) * EB * NV * D), *logits = malloc(sizeof(real) * EB * ENEW * V);
    real *ref = malloc(sizeof(real) * V);
    ps_error err;
    for (int b = 0; b < EB; b++) {
        len[b] = e_len[b];
        for (int t = 0; t < len[b]; t++) tokens[b * ESTRIDE + t] = g_text[b * (TRAIN_LEN + 1) + t];
    }
    /* 1. rows that are exactly the tokens' embeddings decode exactly as the tokens do */
    embed_prompts(prompts, embeds, 0);
    cr_assert_eq(model_greedy_decode(&g_model, &g_params, tokens, ESTRIDE, len, EB, ENEW, plain, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(model_greedy_decode_embeds(&g_model, &g_params, prompts, ESTRIDE, len, EB, embeds, EB * NV, ENEW, out,
                                            NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(out, plain, sizeof out), 0, "embedding rows equal to the token embeddings changed the answer");
    /* 2. perturbed rows: each step's logits are the full forward's over prompt + output so far */
    embed_prompts(prompts, embeds, 1);
    cr_assert_eq(model_greedy_decode_embeds(&g_model, &g_params, prompts, ESTRIDE, len, EB, embeds, EB * NV, ENEW, out,
                                            logits, &err), 0, "%s", err.msg);
    int changed = memcmp(out, plain, sizeof out) != 0;
    for (int b = 0; b < EB; b++) {
        int seq[ESTRIDE + ENEW];
        memcpy(seq, prompts + b * ESTRIDE, sizeof(int) * len[b]);
        for (int k = 0; k < ENEW; k++) {
            last_logits_embeds(seq, len[b] + k, embeds + (size_t)b * NV * D, NV, ref);
            cr_assert_eq(memcmp(logits + ((size_t)b * ENEW + k) * V, ref, sizeof(real) * V), 0,
                         "prompt %d step %d: cached logits differ from the forward over the prefix", b, k);
            seq[len[b] + k] = out[b * ENEW + k];
        }
    }
    cr_log_info("perturbed picture rows %s the greedy answer", changed ? "changed" : "did not change");
    /* 3. each prompt alone (its own length, no padding) gives the batch's tokens and logits */
    real *alone = malloc(sizeof(real) * ENEW * V);
    for (int b = 0; b < EB; b++) {
        int one[ENEW];
        cr_assert_eq(model_greedy_decode_embeds(&g_model, &g_params, prompts + b * ESTRIDE, ESTRIDE, &len[b], 1,
                                                embeds + (size_t)b * NV * D, NV, ENEW, one, alone, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(one, out + b * ENEW, sizeof one), 0, "prompt %d: alone and in a padded batch differ", b);
        cr_assert_eq(memcmp(alone, logits + (size_t)b * ENEW * V, sizeof(real) * ENEW * V), 0,
                     "prompt %d: logits alone and in a padded batch differ", b);
    }
    /* 4. a wrong count of embedding rows is refused */
    cr_assert_eq(model_greedy_decode_embeds(&g_model, &g_params, prompts, ESTRIDE, len, EB, embeds, EB * NV - 1, ENEW, out,
                                            NULL, &err), -1);
    cr_assert(strstr(err.msg, "embedding rows"), "%s", err.msg);
    free(alone), free(embeds), free(logits), free(ref);
}

Test(decode_args, bad_requests_are_refused) {
    ps_error err;
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    model_config c = {.vocab = 16, .dim = 16, .layers = 1, .heads = 2, .kv_heads = 1, .ffn_dim = 16,
                      .context = 256, .rope_theta = 10000, .norm_eps = 1e-5, .init_std = 0.02};
    cr_assert_eq(model_init(&g_model, &c, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(model_params_alloc(&g_params, &g_model.layout, &err), 0);
    int prompt[4] = {1, 2, 3, 4}, len = 4, out[8];
    cr_assert_eq(model_greedy_decode(&g_model, &g_params, prompt, 4, &len, 1, 254, out, NULL, &err), -1);
    cr_assert(strstr(err.msg, "model.context"), "%s", err.msg);
    len = 0;
    cr_assert_eq(model_greedy_decode(&g_model, &g_params, prompt, 4, &len, 1, 2, out, NULL, &err), -1);
    cr_assert(strstr(err.msg, "length 0"), "%s", err.msg);
    untrain();
}
