/* mixture.h - the sampler over ingested sources (data.kind "shards" and
 * "mixture"), mixture files, and the category-share solver.
 *
 * A mixture file (config/mixtures/NAME.cfg, libconfig) names weights over kinds
 * of text or single sources; a kind expands into its corpora, pooled by
 * tokens or weighed as written (config/mixtures/README.md). Optional targets
 * data.reasoning_share and data.visual_share re-weigh the sources so that
 * the mixture's reasoning and visual shares (weights x label rates, as the
 * study computes them) hit the targets while staying as close as possible to
 * the file's weights.
 *
 * The sampler: sequence i draws its source from a counter-based RNG of
 * (seed, i) by weight, then a window of seq_len + 1 tokens at a position of
 * that source's token stream (its documents back to back, each followed by
 * the end-of-text id) also drawn from (seed, i). Nothing else: no state
 * beyond the step the trainer derives i from, the same sequence for the same
 * index on any number of ranks, before or after a resume. */
#ifndef PRESIGHT_MIXTURE_H
#define PRESIGHT_MIXTURE_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "dataset.h"
#include "labels.h"
#include "shards.h"

#define MIXTURE_MAX_SOURCES 256

typedef struct mixture_plan {
    char name[SHARD_NAME_MAX]; /* the mixture's name (or the source's, for kind "shards") */
    char file[CONFIG_STR_MAX]; /* the mixture file read ("" for kind "shards") */
    char root[CONFIG_STR_MAX]; /* the shards root */
    int n_sources;
    char source[MIXTURE_MAX_SOURCES][SHARD_NAME_MAX];
    char component[MIXTURE_MAX_SOURCES][SHARD_NAME_MAX]; /* the kind (or source) it came in by */
    double base[MIXTURE_MAX_SOURCES];   /* weight from the file (and data.weights), sum 1 */
    double weight[MIXTURE_MAX_SOURCES]; /* weight used: base, or solved for the category shares */
    uint64_t tokens[MIXTURE_MAX_SOURCES];
    /* label rates (fractions), when DIR/label_rates.tsv covers every source */
    int have_rates;
    label_rates rates[MIXTURE_MAX_SOURCES];
    /* the category solve, when data.reasoning_share or data.visual_share is set */
    int solved, feasible;
    double target_reasoning, target_visual;     /* -1 = unset */
    double achieved_reasoning, achieved_visual; /* of weight[] */
} mixture_plan;

/* Resolves data.* of cfg (kind "shards" or "mixture") into per-source
 * weights: reads the mixture file, the cards under the root and, if present
 * (needed for the share targets), DIR/label_rates.tsv. */
int mixture_plan_load(mixture_plan *p, const run_config *cfg, ps_error *err);

/* Reasoning and visual shares of weights w (fractions; -1 when rates are missing). */
void mixture_category_shares(const mixture_plan *p, const double *w, double *reasoning, double *visual);

/* The dataset of data.kind "shards" or "mixture" (dataset_open calls it). */
int mixture_dataset_open(dataset **out, const run_config *cfg, ps_error *err);

/* For a dataset from mixture_dataset_open (others: 0 / NULL). */
int mixture_n_sources(const dataset *ds);
const mixture_plan *mixture_plan_of(const dataset *ds);
/* How many of sequences [first, first + count) each source serves
 * (per_source[n_sources]); draws only the source, reads no tokens. */
void mixture_count_sources(const dataset *ds, uint64_t first, uint64_t count, uint64_t *per_source);
/* Prints the tokens drawn per source by sequences [0, n_sequences) of
 * seq_len + 1 tokens (the whole run so far, over all ranks: the trainer
 * calls it at the end with steps x grad_accum x world x micro_batch), next
 * to the weights. Recomputed from the RNG, so it is exact after resumes. */
void mixture_log_tokens(const dataset *ds, uint64_t n_sequences, int seq_len, FILE *out);

/* ---- the category-share solver ------------------------------------------- */

typedef struct category_solution {
    int feasible;          /* the targets were reached */
    double reasoning;      /* shares of the returned weights */
    double visual;
    double kl;             /* KL(w || base) */
    int support;           /* sources with a nonzero weight */
} category_solution;

/* Weights w (>= 0, sum 1, zero where base is zero) with sum w_i a_i = r and
 * sum w_i b_i = v (a, b: reasoning and visual rates, fractions; r or v < 0:
 * that target unset), closest to base in KL(w || base): w_i is base_i
 * times exp(l1 a_i + l2 b_i), renormalised, so sources with the same rates
 * keep their proportions ("the rest in proportion"). An unreachable target
 * is replaced by the nearest reachable one (feasible = 0). */
int category_solve(int n, const double *base, const double *a, const double *b, double r, double v, double *w,
                   category_solution *sol, ps_error *err);

#endif
