/* decode.h - greedy decoding with a KV cache.
 *
 * The prompts run once through the forward pass (a padded batch, one sample
 * per sequence) which stores every layer's roped keys and values in the
 * cache; then each step feeds one token per sequence at its own length and
 * attends over the cache (backend attention_decode). Sequences of different
 * prompt lengths share one batch. The logits equal re-running the full
 * causal forward on each prefix within float32 rounding (tests/test_decode.c).
 * Prompts may hold embedding rows (token -1, a projected picture): their
 * inputs come from the caller's embeds rows, as in model_batch; a sequence's
 * tokens are the same whether it is decoded alone or in a padded batch of
 * mixed lengths (the forward is batch-invariant). */
#ifndef PRESIGHT_DECODE_H
#define PRESIGHT_DECODE_H

#include "error.h"
#include "model.h"

/* A cache for batch sequences of up to max_len rows (<= model.context). */
int model_kv_cache_alloc(model_kv_cache *kc, const model_layout *layout, int batch, int max_len, ps_error *err);
size_t model_kv_cache_bytes(const model_layout *layout, int batch, int max_len);
void model_kv_cache_free(model_kv_cache *kc);

/* Greedy continuation of batch prompts: prompts [batch, prompt_stride] with
 * prompt_len[b] in [1, prompt_stride] tokens each; writes max_new tokens per
 * sequence to out [batch, max_new] (argmax, ties to the lowest id) and, when
 * logits is not NULL, the logits each was chosen from [batch, max_new, vocab].
 * prompt_len + max_new - 1 must fit model.context. */
int model_greedy_decode(model *m, const model_params *params, const int *prompts, int prompt_stride,
                        const int *prompt_len, int batch, int max_new, int *out, real *logits, ps_error *err);
/* The same with embedding rows: every prompt token of -1 takes its input from
 * embeds [n_embeds, dim], the k-th such row of the prompts (prompt 0's first,
 * in order) reading embeds[k]; n_embeds must equal their count. */
int model_greedy_decode_embeds(model *m, const model_params *params, const int *prompts, int prompt_stride,
                               const int *prompt_len, int batch, const real *embeds, int n_embeds, int max_new,
                               int *out, real *logits, ps_error *err);

#endif
