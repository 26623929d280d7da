/* eval_records.h - what `presight eval` leaves behind: predictions.jsonl and results.jsonl.
 *
 * predictions.jsonl: one JSON object a line, one line per item, appended as items finish
 * (an interrupted run resumes by skipping the ids it finds; a torn last line is ignored).
 * Keys (absent when they do not apply to the kind):
 *   task, category, kind, scorer (the task file's), id, line (in the task's data file),
 *   item_category, image, group, area_share
 *   context_ids        [ids]        the context (MC, loglikelihood; VQA: the prompt)
 *   continuation_ids   [[ids], ...] one per request (MC: per choice; partial: the target
 *                                   after each context; rolling: one list, the document)
 *   request_context_ids [[ids], ...] partial only: each request's own context
 *   loglikelihoods     [ll, ...]    one per request; greedy [bool, ...] likewise
 *   choices            [text, ...]  (partial: the contexts), gold (index)
 *   answers            [text, ...]  (short-answer VQA)
 *   output, output_ids              the raw generated text and its ids (VQA)
 *   letter_loglikelihoods [ll, ...] log-likelihood of each option letter after the prompt
 *   loglikelihood, tokens, words, bytes, windows   (rolling)
 *   parsed, tier, correct           as scored when written (rescore recomputes them)
 *   image_at, visual_tokens         where the picture's rows were spliced into context_ids
 *                                   (before context_ids[image_at]) and how many (adapted models)
 *   truncated                       true when an input lost tokens to model.context (absent: none)
 *   checkpoint_sha256, task_sha256, encoder, seed, image_input  provenance of the run
 *                                   (image_input: true when the model saw the item's picture)
 * results.jsonl: one line per (task, subset, metric):
 *   task, category (the task file's), scorer, subset (an item_category such as MME's "color", or
 *   "" for the whole task), metric, value, stderr (null when undefined), n, parse_failures,
 *   checkpoint_sha256, task_sha256, parser, tiers, encoder, seed, image_input (the task's first item's)
 * Both are written to NAME.tmp and renamed when whole (eval_results_write_file); the
 * prediction writer appends one whole line per call and flushes it. */
#ifndef PRESIGHT_EVAL_RECORDS_H
#define PRESIGHT_EVAL_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct eval_provenance {
    char checkpoint_sha256[65];
    char task_sha256[65];
    char encoder[128];
    long long seed;
    int image_input; /* 1: the model saw the item's picture; 0: text only; -1 absent */
} eval_provenance;

typedef struct eval_ids {
    uint32_t *ids;
    size_t n;
} eval_ids;

typedef struct eval_prediction {
    char *task, *category, *kind, *scorer, *id, *item_category, *image, *group;
    size_t line;
    double area_share; /* NaN when absent */
    eval_ids context;
    eval_ids *continuations;
    int n_continuations;
    eval_ids *request_contexts; /* partial */
    int n_request_contexts;
    double *loglikelihoods;
    int *greedy;
    int n_loglikelihoods;
    char **choices;
    int n_choices;
    int gold; /* -1 when absent */
    char **answers;
    int n_answers;
    char *output;
    eval_ids output_ids;
    double *letter_loglikelihoods;
    int n_letter_loglikelihoods;
    int image_at, visual_tokens;          /* the picture's splice; -1 / 0 when absent */
    int truncated;                        /* 1: an input lost tokens to model.context ("truncated": true) */
    double loglikelihood;                 /* rolling */
    long long tokens, words, bytes, windows; /* rolling; -1 when absent */
    int parsed, tier;                     /* -1 / 0 when absent */
    double correct;                       /* NaN when absent */
    eval_provenance prov;
} eval_prediction;

/* A prediction with every field absent. */
void eval_prediction_init(eval_prediction *p);
void eval_prediction_clear(eval_prediction *p);

/* Appends p as one line and flushes. */
int eval_prediction_write(FILE *out, const eval_prediction *p, ps_error *err);

/* Writes p[0..n) to path.tmp, then renames it to path (a re-scored copy, say). */
int eval_predictions_write_file(const char *path, const eval_prediction *p, size_t n, ps_error *err);

/* Reads a whole predictions file; a last line without its newline that is not JSON (a
 * torn write) is skipped and counted in *torn (may be NULL); any other bad line is an
 * error naming PATH:LINE and the key. */
int eval_predictions_read(const char *path, eval_prediction **out, size_t *n, size_t *torn, ps_error *err);

/* Before a resumed run appends to path: cuts the bytes after the last newline (a torn
 * write), so that the next line starts on a line of its own; *cut (may be NULL) is how
 * many bytes went. A missing file is not an error (nothing to cut). */
int eval_predictions_trim_torn(const char *path, size_t *cut, ps_error *err);
void eval_predictions_free(eval_prediction *p, size_t n);

typedef struct eval_result {
    char task[128], category[128], scorer[16], subset[128], metric[64];
    double value, stderr_; /* stderr NaN -> null */
    size_t n, parse_failures;
    size_t truncated; /* items of the task whose input was cut to model.context (written when > 0) */
    char parser[32], tiers[8];
    eval_provenance prov;
} eval_result;

int eval_result_write(FILE *out, const eval_result *r, ps_error *err);
/* Writes results[0..n) to path.tmp, then renames it to path. */
int eval_results_write_file(const char *path, const eval_result *results, size_t n, ps_error *err);
int eval_results_read(const char *path, eval_result **out, size_t *n, ps_error *err);

#endif
