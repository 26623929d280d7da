/* eval_align.h - the alignment score of `presight eval` (eval.align): mutual k-NN
 * (core/mknn.h, k = eval.align_k) between the LLM's caption features and each vision
 * encoder's image features, for the pictures of eval.align_captions found in every
 * features file (the first eval.limit of them when it is set).
 *
 *   LLM       each caption (encode(caption), at most model.context tokens) is one row of a
 *             forward-only batch; every layer's hidden states (the embedding output, each
 *             block's, the last after the final norm) mean-pooled over its tokens
 *   vision    each block's pooled vector (/pooled/<block>); blocks differ in width, so each
 *             block is its own representation (prepared alone), and an encoder's score is
 *             the maximum over (LLM layer, block) pairs
 *   result    per encoder (subset = the encoder name) and their mean (subset ""): rows of
 *             task "alignment", metric "mknn"; the layer pair that reached each maximum is
 *             printed. */
#ifndef PRESIGHT_EVAL_ALIGN_H
#define PRESIGHT_EVAL_ALIGN_H

#include <stddef.h>

#include "error.h"
#include "eval_model.h"
#include "eval_records.h"

/* Appends the alignment rows to *results (realloc'd, *n counts). */
int eval_align_run(eval_model *em, const run_config *cfg, eval_result **results, size_t *n, ps_error *err);

#endif
