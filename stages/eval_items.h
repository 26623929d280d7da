/* eval_items.h - from a task item to the model's requests and back to a prediction record:
 * the glue the eval stage runs for every item.
 *
 *   task_item --eval_build_requests--> requests (token ids, lm-eval's rules)
 *             --the model: log-likelihood and greedy flag of each request's continuation,
 *               or generated text for VQA--> eval_item_prediction fills everything else
 *             --eval_prediction_write--> predictions.jsonl --eval_score_task--> results
 *
 * Requests by kind (eval_requests.h has the rules):
 *   multiple_choice  (context, delimiter + choice_i) for each choice
 *   partial          (choice_i, delimiter + target) for each choice
 *   loglikelihood    (context, target)
 *   rolling          one request per window of encode(text): ([prefix] or the tokens
 *                    before, the window's tokens); the item's log-likelihood is their sum
 *   vqa              none here: the prompt, image splice and chat template belong to the
 *                    model's side; the stage records output and output_ids. */
#ifndef PRESIGHT_EVAL_ITEMS_H
#define PRESIGHT_EVAL_ITEMS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "real.h"
#include "eval_records.h"
#include "eval_requests.h"
#include "tasks.h"
#include "tokenizer.h"

typedef struct eval_request {
    tokenizer_ids context, continuation;
    int merged; /* a token spans the context/continuation boundary (eval_encode_pair) */
    /* A picture (an adapted model, eval_model.h): visual > 0 rows spliced before
     * context.ids[image_at] (mm_model.h's splice), their inputs embeds [visual, dim]
     * (projected). visual = 0: text only (the zeroed default). */
    int visual, image_at;
    const real *embeds;
} eval_request;

typedef struct eval_item_requests {
    eval_request *req;
    int n;
    tokenizer_ids document; /* rolling: encode(text) */
    size_t n_windows;
} eval_item_requests;

/* prefix: the id used for an empty context and before the first rolling window;
 * max_len: the model's positions (rolling windows). */
int eval_build_requests(const task_def *t, const task_item *it, const tokenizer *tok, uint32_t prefix, size_t max_len,
                        eval_item_requests *out, ps_error *err);
void eval_item_requests_free(eval_item_requests *r);

/* A prediction record for it with everything but the model's numbers: task, category, kind,
 * scorer, id, line, choices, gold, answers, image, group, item_category, area_share, the
 * token ids of the requests (context_ids: the first request's context, request_context_ids
 * each one's for partial; continuation_ids: each request's; rolling: the document as one
 * list) and, for rolling, tokens, words,
 * bytes (of count_text, lm-eval's way) and windows. reqs may be NULL (VQA). The caller then
 * sets loglikelihoods/greedy (or loglikelihood for rolling; output for VQA) and prov. */
int eval_item_prediction(const task_def *t, const task_item *it, const eval_item_requests *reqs, eval_prediction *out,
                         ps_error *err);

#endif
