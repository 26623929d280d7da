/* decode.c - greedy decoding over a KV cache (see decode.h). */
#include "decode.h"

#include <stdlib.h>
#include <string.h>

size_t model_kv_cache_bytes(const model_layout *L, int batch, int max_len) {
    size_t kv_dim = (size_t)L->cfg.kv_heads * L->head_dim;
    return 2 * (size_t)L->cfg.layers * batch * max_len * kv_dim * sizeof(real) + (size_t)batch * sizeof(int);
}

int model_kv_cache_alloc(model_kv_cache *kc, const model_layout *L, int batch, int max_len, ps_error *err) {
    memset(kc, 0, sizeof *kc);
    if (batch <= 0 || max_len <= 0 || max_len > L->cfg.context)
        return ps_fail(err, "a KV cache of %d x %d rows does not fit model.context %d", batch, max_len,
                       L->cfg.context);
    kc->batch = batch;
    kc->max_len = max_len;
    kc->layers = L->cfg.layers;
    kc->kv_dim = L->cfg.kv_heads * L->head_dim;
    size_t rows = (size_t)kc->layers * batch * max_len * kc->kv_dim;
    kc->k = malloc(2 * rows * sizeof(real));
    kc->len = calloc((size_t)batch, sizeof(int));
    if (!kc->k || !kc->len) {
        model_kv_cache_free(kc);
        return ps_fail(err, "out of memory for a KV cache (%.1f MB)", model_kv_cache_bytes(L, batch, max_len) / 1e6);
    }
    kc->v = kc->k + rows;
    return 0;
}

void model_kv_cache_free(model_kv_cache *kc) {
    free(kc->k);
    free(kc->len);
    kc->k = kc->v = NULL;
    kc->len = NULL;
}

static int argmax(const real *row, int vocab) {
    int best = 0;
    for (int j = 1; j < vocab; j++)
        if (row[j] > row[best]) best = j;
    return best;
}

/* The state of one decode: the cache, the two forward-only activations
 * (prompt-sized for the prefill, one row per sequence for the steps) and the
 * int buffers of the batches. */
typedef struct decoder {
    model_kv_cache cache;
    model_activations *prefill, *step;
    int *ints;
} decoder;

static void decoder_free(decoder *d) {
    model_kv_cache_free(&d->cache);
    model_activations_free(d->prefill);
    model_activations_free(d->step);
    free(d->ints);
}

static int check_prompts(const model *m, const int *prompt_len, int stride, int batch, int max_new, int *longest,
                         ps_error *err) {
    if (batch <= 0 || max_new <= 0 || stride <= 0)
        return ps_fail(err, "greedy decoding needs batch, prompt stride and max_new > 0 (%d, %d, %d)", batch, stride,
                       max_new);
    if (m->layout.head_dim > 512) return ps_fail(err, "decoding supports head_dim <= 512 (%d)", m->layout.head_dim);
    *longest = 0;
    for (int b = 0; b < batch; b++) {
        if (prompt_len[b] < 1 || prompt_len[b] > stride)
            return ps_fail(err, "prompt %d: length %d is outside [1, %d]", b, prompt_len[b], stride);
        if (prompt_len[b] > *longest) *longest = prompt_len[b];
    }
    if (*longest + max_new - 1 > m->layout.cfg.context)
        return ps_fail(err, "a prompt of %d tokens and %d new ones exceed model.context %d", *longest, max_new,
                       m->layout.cfg.context);
    return 0;
}

/* The prompts as one padded batch: sequence b is sample b, the rest padding. */
static int prefill(model *m, const model_params *P, decoder *d, const int *prompts, int stride, const int *len,
                   int batch, int S, const real *embeds, int n_embeds, int *first, real *logits, int max_new,
                   ps_error *err) {
    int *tokens = d->ints, *sample = tokens + (size_t)batch * S, V = m->layout.cfg.vocab;
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < S; t++) {
            tokens[b * S + t] = t < len[b] ? prompts[(size_t)b * stride + t] : 0;
            sample[b * S + t] = t < len[b] ? b : -1;
        }
    /* rows b * S + t keep the prompts' order, so the k-th -1 row is still embeds[k] */
    model_batch bt = {.batch = batch, .seq = S, .tokens = tokens, .sample = sample, .embeds = embeds,
                      .n_embeds = n_embeds, .cache = &d->cache, .cache_mode = MODEL_CACHE_PREFILL};
    if (model_forward_batch(m, P, d->prefill, &bt, NULL, err)) return -1;
    const real *all = model_logits(d->prefill);
    for (int b = 0; b < batch; b++) {
        const real *row = all + ((size_t)b * S + len[b] - 1) * V;
        first[b] = argmax(row, V);
        if (logits) memcpy(logits + (size_t)b * max_new * V, row, (size_t)V * sizeof(real));
        d->cache.len[b] = len[b];
    }
    return 0;
}

int model_greedy_decode(model *m, const model_params *P, const int *prompts, int stride, const int *len, int batch,
                        int max_new, int *out, real *logits, ps_error *err) {
    return model_greedy_decode_embeds(m, P, prompts, stride, len, batch, NULL, 0, max_new, out, logits, err);
}

int model_greedy_decode_embeds(model *m, const model_params *P, const int *prompts, int stride, const int *len,
                               int batch, const real *embeds, int n_embeds, int max_new, int *out, real *logits,
                               ps_error *err) {
    int S = 0, V = m->layout.cfg.vocab;
    if (check_prompts(m, len, stride, batch, max_new, &S, err)) return -1;
    decoder d = {0};
    int rc = -1;
    if (model_kv_cache_alloc(&d.cache, &m->layout, batch, S + max_new - 1, err) ||
        !(d.prefill = model_activations_alloc_forward(&m->layout, batch, S, err)) ||
        !(d.step = model_activations_alloc_forward(&m->layout, batch, 1, err)))
        goto done;
    if (!(d.ints = malloc(((size_t)2 * batch * S + 3 * (size_t)batch) * sizeof(int)))) {
        ps_fail(err, "out of memory for decoding %d prompts", batch);
        goto done;
    }
    int *first = d.ints + (size_t)2 * batch * S, *tokens = first + batch, *positions = tokens + batch;
    if (prefill(m, P, &d, prompts, stride, len, batch, S, embeds, n_embeds, first, logits, max_new, err)) goto done;
    for (int b = 0; b < batch; b++) out[(size_t)b * max_new] = first[b];
    for (int step = 1; step < max_new; step++) {
        for (int b = 0; b < batch; b++) {
            tokens[b] = out[(size_t)b * max_new + step - 1];
            positions[b] = d.cache.len[b];
        }
        model_batch bt = {.batch = batch, .seq = 1, .tokens = tokens, .positions = positions, .cache = &d.cache,
                          .cache_mode = MODEL_CACHE_STEP};
        if (model_forward_batch(m, P, d.step, &bt, NULL, err)) goto done;
        const real *all = model_logits(d.step);
        for (int b = 0; b < batch; b++) {
            out[(size_t)b * max_new + step] = argmax(all + (size_t)b * V, V);
            if (logits) memcpy(logits + ((size_t)b * max_new + step) * V, all + (size_t)b * V, (size_t)V * sizeof(real));
            d.cache.len[b]++;
        }
    }
    rc = 0;
done:
    decoder_free(&d);
    return rc;
}
