/* report.h - `presight report`: collected results -> report.md, CSV tables, PNG plots.
 *
 * Input, one of:
 *   a study dir (what `presight study collect` leaves): STUDY/results.jsonl names every
 *     run (index, id, axes); each run's files are in STUDY/collected/<id>/ (copied there by
 *     collect) or else in its run dir STUDY/runs/<id>/, searched one level deep:
 *     results.jsonl and predictions.jsonl (eval/ first), metrics.jsonl (pretrain/ first: the
 *     adapt stages write one too);
 *   run dirs: each holds (at most one level down) a results.jsonl; its name is the folder's.
 *
 * A run's measures (RM_*): language perplexity (wikitext word perplexity, else the first
 * perplexity) and accuracy (the "mean" row of category language, eval_summarize's), VQA per
 * paper category from the per-item correct flags of predictions.jsonl (an item's category is
 * its item_category when that names a paper category, else its task's category), overall =
 * the unweighted mean of the four, existence by the object's area share (small < 0.3 <=
 * medium < 0.6 <= large) and overall (all items), alignment (a results row whose metric
 * starts with "mknn").
 *
 * Runs that differ only in a seed axis (an axis whose name contains "seed") form a group; a
 * group's value is the mean over its seeds; its item vector the per-item mean over seeds.
 * Intervals: percentile bootstrap over items (stats_bootstrap_mean on the group's item
 * vector; the overall VQA through items weighted N / (C n_c), whose plain mean is the macro
 * mean) and, with >= 2 seeds, over the seeds' values. Paired: every group against the
 * baseline (the first) on the items both have: mean difference and its paired bootstrap
 * interval (stats_bootstrap_paired).
 *
 * Errors name the file (and line) at fault: a result row without a value, predictions
 * without correct flags, provenance that differs between a run's results rows or between
 * results and predictions of one task (checkpoint_sha256, task_sha256), seeds of a group
 * scored on different items. A study's run with no files at all (not run yet, failed) is
 * left out and listed in report.md. */
#ifndef PRESIGHT_REPORT_H
#define PRESIGHT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "eval_records.h"

enum {
    RM_PPL, RM_BYTE_PPL, RM_LANG_ACC,
    RM_VQA_GENERAL, RM_VQA_KNOWLEDGE, RM_VQA_OCR, RM_VQA_VISION, RM_VQA_OVERALL,
    RM_EXIST_SMALL, RM_EXIST_MEDIUM, RM_EXIST_LARGE, RM_EXIST_OVERALL,
    RM_ALIGN,
    RM_COUNT
};

/* Column name (CSV) and heading (report.md) of a measure. */
const char *report_measure_name(int m);
const char *report_measure_title(int m);
/* Whether a measure has per-item vectors (bootstrap and paired comparisons). */
int report_measure_itemwise(int m);

#define REPORT_MAX_AXES 16

typedef struct report_items {
    size_t n;
    char **key; /* "task\x1fid", sorted */
    double *x;
} report_items;

typedef struct report_run {
    char name[256], id[64], dir[4096];
    int n_axes;
    char axis[REPORT_MAX_AXES][128], value[REPORT_MAX_AXES][128];
    eval_result *res;
    size_t n_res;
    double measure[RM_COUNT]; /* NaN when the run lacks it */
    report_items items[RM_COUNT];
    size_t n_loss;
    double *step, *loss;
    int vqa_letter; /* score VQA and existence items by their letter log-likelihoods (report_opts) */
} report_run;

typedef struct report_group {
    char label[512];
    int n_runs, *runs;
    double value[RM_COUNT];                      /* mean over seeds */
    double item_lo[RM_COUNT], item_hi[RM_COUNT]; /* bootstrap over items (NaN: none) */
    double seed_lo[RM_COUNT], seed_hi[RM_COUNT]; /* bootstrap over seeds (NaN: < 2 seeds) */
    report_items items[RM_COUNT];                /* mean over seeds per item */
    double diff[RM_COUNT], diff_lo[RM_COUNT], diff_hi[RM_COUNT]; /* against group 0 */
    size_t diff_n[RM_COUNT];
    double reasoning, visual; /* mixture shares in [0, 1], NaN when unknown */
    char mixture[128];
} report_group;

typedef struct report_opts {
    int iters;
    double level;
    uint64_t seed;
    const char *mixtures_dir; /* config/mixtures */
    const char *paper_dir;    /* config/paper */
    int vqa_letter;           /* 1: an item is right when the gold letter has the highest log-likelihood
                               * after the prompt (lm-eval's way, for models too small to answer in
                               * words); 0 (default): the generated answer, parsed (the paper's) */
} report_opts;

typedef struct report {
    report_opts o;
    int n_runs, n_groups;
    report_run *runs;
    report_group *groups;
    int n_missing;      /* a study's runs without results or metrics (not run yet, failed) */
    char missing[4096]; /* their names and ids, comma-separated */
} report;

void report_opts_default(report_opts *o);

/* Loads paths (one study dir, or run dirs), computes measures, groups, intervals. */
int report_load(report *R, const char *const *paths, int n_paths, const report_opts *o, ps_error *err);
void report_free(report *R);

/* Internal steps (report_load calls them; tests may too). */
int report_run_measures(report_run *run, const char *results_path, const char *predictions_path, ps_error *err);
int report_groups(report *R, ps_error *err);
int report_shares(report *R, ps_error *err);

/* Writes report.md, the CSV tables and .gp scripts into out and, when plot != 0, the PNGs (gnuplot). */
int report_write(const report *R, const char *out, int plot, ps_error *err);

/* The paper's headline table (paper_dir/headline.tsv) beside the groups named mix0/mix6. */
int report_write_targets(const report *R, const char *out, FILE *md, ps_error *err);

#endif
