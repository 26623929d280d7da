/* eval_model.h - the model side of `presight eval`: a trained model with the tokenizer it
 * was trained with, scoring lm-eval requests and decoding greedily.
 *
 * Weights: eval.checkpoint, else run.dir/model.h5 (a finished run), else the newest
 * run.dir/checkpoints/step_*.h5; read whole on each process (checkpoint_read_model), the
 * weights' checksum verified; checkpoint_sha256 is the SHA-256 of that file's bytes.
 * Tokenizer: data.tokenizer (data.tokenizer_kind); a byte-level run (data.kind = "text")
 * gets the byte vocabulary of datasets/text.c (ids 0..255, then the four specials).
 * The prefix (empty contexts, the first rolling window) is <|end_of_text|>.
 *
 * Scoring is forward-only and batch-invariant (core/model.h): each request is one row of a
 * padded batch (sample id -1 past its end), and its log-likelihood and greedy flag are
 * bit-identical whatever else shares the batch. */
#ifndef PRESIGHT_EVAL_MODEL_H
#define PRESIGHT_EVAL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "eval_items.h"
#include "model.h"
#include "tokenizer.h"

typedef struct eval_model {
    run_config cfg;     /* the model's run config */
    model model;
    model_params params;
    tokenizer *tok;
    uint32_t prefix;    /* <|end_of_text|> */
    char weights[4096]; /* the file read */
    char weights_sha256[65];
    char describe[512]; /* "N tensors loaded ...; checksum verified" */
} eval_model;

/* Opens cfg's model. scratch_dir holds the byte vocabulary of a byte-level run. */
int eval_model_open(eval_model *em, const run_config *cfg, const char *scratch_dir, ps_error *err);
void eval_model_close(eval_model *em);

/* The tokenizer cfg's model was trained with, and its <|end_of_text|> id (see above). */
int eval_tokenizer_open(const run_config *cfg, const char *scratch_dir, tokenizer **tok, uint32_t *eot,
                        ps_error *err);

/* Which weights file eval_model_open reads for cfg (path, size bytes). */
int eval_model_weights_path(const run_config *cfg, char *path, size_t size, ps_error *err);

/* Scores req[0..n) in forward passes of up to batch rows: ll[i] = the summed
 * log-probability of request i's continuation, greedy[i] = 1 when every continuation
 * token is the argmax (ties to the lowest id). *tokens (may be NULL) += input tokens run. */
int eval_model_score(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                     double *tokens, ps_error *err);

/* Greedy continuation of n prompts (token ids) by max_new tokens each, stopping a sequence's
 * output at <|end_of_text|> (not included): out[i] (malloc'd ids, *n_out[i] of them). Prompts
 * longer than model.context - max_new keep their last tokens (an error when none fit). */
int eval_model_generate(eval_model *em, const tokenizer_ids *prompts, size_t n, int batch, int max_new,
                        uint32_t **out, size_t *n_out, ps_error *err);

#endif
