/* eval_score.h - one task's predictions to its results, with or without the model: the
 * eval stage calls it after the model has filled the predictions, `presight eval rescore`
 * calls it on a stored predictions.jsonl with other settings.
 *
 * By kind and scorer (each value with its standard error; per-item scores are written
 * back into the predictions: parsed, tier, correct):
 *   multiple_choice, partial / acc  acc, acc_norm (lm-eval's, eval_requests.h)
 *   loglikelihood / lambada         perplexity = exp(-mean ll) (bootstrap stderr), acc =
 *                                   share of items whose continuation is greedy
 *   rolling / perplexity            word_perplexity, byte_perplexity, bits_per_byte,
 *                                   token_perplexity (sum ll over sum count; bootstrap)
 *   vqa / choice                    acc by the three-tier parser (unparsed = wrong, counted
 *                                   in parse_failures), per item_category too (as subset);
 *                                   acc_letter_ll: argmax of letter_loglikelihoods == gold
 *   vqa / exact, relaxed            acc: any answer matches (eval_answer.h)
 *   vqa / vqa                       acc: VQA accuracy over the answers
 *   vqa / mme                       per item_category (subset) acc, acc_plus, score; score
 *                                   (the sum over categories); answers[0] is "yes"/"no"
 *   vqa / mmbench                   acc (circular over group), acc_vanilla
 *   vqa / existence                 acc_small/medium/large, acc (sample-weighted, the
 *                                   paper's), acc_macro (lmms-eval's)
 * Results carry parser = EVAL_PARSER_VERSION and the tiers used, and the provenance of the
 * first prediction. */
#ifndef PRESIGHT_EVAL_SCORE_H
#define PRESIGHT_EVAL_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "eval_records.h"

typedef struct eval_score_opts {
    unsigned tiers;           /* EVAL_TIER_* bits; default all */
    double relaxed_tolerance; /* default 0.05 */
    int bootstrap_iters;      /* perplexity standard errors; default 1000 */
    uint64_t seed;            /* of those bootstraps; default 1234 (lm-eval's bootstrap seed) */
    int mme_pairs_only;       /* every MME image has exactly two questions; default 1 */
} eval_score_opts;

void eval_score_opts_default(eval_score_opts *o);

/* Scores preds[0..n) (all of one task, same kind and scorer) and appends its results to
 * *results (realloc'd; *n_results counts). */
int eval_score_task(eval_prediction *preds, size_t n, const eval_score_opts *o, eval_result **results,
                    size_t *n_results, ps_error *err);

/* Splits preds by task (in order of first appearance) and scores each. */
int eval_score_all(eval_prediction *preds, size_t n, const eval_score_opts *o, eval_result **results,
                   size_t *n_results, ps_error *err);

/* The task name of summary rows. */
#define EVAL_SUMMARY_TASK "mean"

/* The paper's means: per category, the unweighted mean of its tasks' headline accuracy
 * (subset "", metric "acc"; LAMBADA's and MME's are left out: a perplexity task's accuracy
 * and a 0-2800 score do not average with the rest), then "overall" over all those tasks.
 * Rows task = "mean", category = the category or "overall", n = the number of tasks, stderr
 * = sqrt(sum se^2) / tasks (independent tasks). Appended to *out. */
int eval_summarize(const eval_result *r, size_t n, eval_result **out, size_t *n_out, ps_error *err);

#endif
