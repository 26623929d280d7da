/* eval_requests.h - language-task requests and their scores, as lm-evaluation-harness
 * builds and scores them, on token ids (the model is not needed here).
 *
 * Multiple choice (lm-eval ConfigurableTask + TemplateLM.loglikelihood + _encode_pair):
 *   request i = (context, " " + choice_i)               (target_delimiter " ")
 *   WinoGrande's partial form: (context_i, " " + target) (doc_to_text gives the gold index)
 *   encoding:  context == "" -> ([prefix], encode(continuation)); otherwise trailing
 *              whitespace of the context (Python's rstrip) moves to the front of the
 *              continuation, whole = encode(context + continuation), ctx = encode(context),
 *              continuation ids = whole[len(ctx):]. No BOS is added (HF causal default).
 *   model input: (ctx + cont)[-(max_len + 1):][:-1]; the last len(cont) positions predict
 *              cont; ll = the sum of their log-probabilities, greedy = every cont token
 *              is the argmax.
 *   acc      = [argmax_i ll_i == gold]; acc_norm = [argmax_i ll_i / chars(choice_i) ==
 *              gold]; acc_bytes divides by UTF-8 bytes instead (chars = Python len:
 *              code points). argmax is numpy's: the first maximum, a NaN wins.
 * Rolling perplexity (loglikelihood_rolling, utils.get_rolling_token_windows +
 *   make_disjoint_window, context_len = 1): the first window is ([prefix], t[0:L)); each
 *   later one predicts the next up to L tokens conditioned on the L + 1 - n tokens before
 *   them; every token is predicted exactly once. Per document ll = the sum over windows;
 *   word_perplexity = exp(-sum ll / sum words) with words = len(re.split(r"\s+", text)),
 *   byte_perplexity over UTF-8 bytes, bits_per_byte = -sum ll / sum bytes / ln 2, and
 *   token perplexity over tokens. The prefix is end-of-text as the issue states (lm-eval
 *   >= 0.4.3 uses the tokenizer's BOS when it has one: pass that id to match it). */
#ifndef PRESIGHT_EVAL_REQUESTS_H
#define PRESIGHT_EVAL_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tokenizer.h"

/* One rolling window over tokens t: context = [prefix] when prefix is set, else
 * t[ctx_begin, cont_begin); continuation = t[cont_begin, cont_end). */
typedef struct eval_window {
    int prefix;
    size_t ctx_begin, cont_begin, cont_end;
} eval_window;

/* Windows of n tokens (n = 0 gives none) for a model of max_len positions; *out is
 * malloc'd (free it), *n_out windows. context_len in [1, max_len] (lm-eval's argument;
 * perplexity uses 1). */
int eval_rolling_windows(size_t n, size_t max_len, size_t context_len, eval_window **out, size_t *n_out,
                         ps_error *err);

/* Encodes one (context, continuation) request the lm-eval way. prefix is the id used for
 * an empty context. *merged (may be NULL) is set when encode(context + continuation) does
 * not begin with encode(context) (a token spans the boundary; lm-eval splits anyway). */
int eval_encode_pair(const tokenizer *tok, const char *context, const char *continuation, uint32_t prefix,
                     tokenizer_ids *ctx, tokenizer_ids *cont, int *merged, ps_error *err);

/* The model's input for (ctx, cont) and where cont is predicted: input[0..*n_input),
 * positions *first_scored .. *n_input - 1 predict cont[0 .. n_cont). input holds
 * max_len ids. An empty continuation or one longer than max_len is an error. */
int eval_request_input(const uint32_t *ctx, size_t n_ctx, const uint32_t *cont, size_t n_cont, size_t max_len,
                       uint32_t *input, size_t *n_input, size_t *first_scored, ps_error *err);

typedef struct eval_mc_result {
    int pred, pred_norm, pred_bytes;
    int acc, acc_norm, acc_bytes;
} eval_mc_result;

/* ll[i] is choice i's summed log-likelihood; lengths come from texts[i] (the choices, or
 * the contexts in the partial form, as lm-eval does). */
eval_mc_result eval_mc_score(const double *ll, const char *const *texts, int n, int gold);

/* Python's len(text) on UTF-8 (code points; an invalid byte counts one). */
size_t eval_char_count(const char *text);
/* len(re.split(r"\s+", text)) with Python's Unicode whitespace. */
size_t eval_word_count(const char *text);
/* Bytes of Python's text.rstrip() (Unicode whitespace). */
size_t eval_rstrip_len(const char *text, size_t len);

#endif
