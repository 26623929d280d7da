/* eval_aggregate.h - per-item scores to the numbers a report shows.
 *
 *   existence by size (MLE-Bench): the answer object's share of the image area sets the
 *     split: small [0, 0.3), medium [0.3, 0.6), large [0.6, 1]; per split the mean and
 *     standard error; overall = the sample-weighted mean (the paper's, = the mean over all
 *     items) and the macro mean of the non-empty splits (lmms-eval's port).
 *   MME: items grouped by image (two yes/no questions each); per category acc = mean over
 *     questions, acc+ = share of images with every question right, score = 100 (acc + acc+)
 *     (lmms-eval mme_aggregate_results: the mean over images of acc_img + acc+_img, which is
 *     the same); the total is the sum of category scores.
 *   MMBench circular evaluation: an item and its option-rotated copies form a group; the
 *     group counts right only when every copy is right.
 *   groups: a mean with its standard error per key (task, category), then the unweighted
 *     mean over keys (the paper's category and overall means). */
#ifndef PRESIGHT_EVAL_AGGREGATE_H
#define PRESIGHT_EVAL_AGGREGATE_H

#include <stddef.h>

#include "error.h"

enum { EVAL_SIZE_SMALL, EVAL_SIZE_MEDIUM, EVAL_SIZE_LARGE, EVAL_N_SIZES };

/* The split of an area share (-1 for a share outside [0, 1] or NaN). */
int eval_size_split(double area_share);
const char *eval_size_name(int split);

typedef struct eval_by_size {
    double acc[EVAL_N_SIZES], stderr_[EVAL_N_SIZES];
    size_t n[EVAL_N_SIZES];
    double weighted, weighted_stderr; /* the paper's overall */
    double macro;                     /* lmms-eval's overall */
} eval_by_size;

int eval_existence_by_size(const double *area_share, const double *correct, size_t n, eval_by_size *out,
                           ps_error *err);

typedef struct eval_mme {
    double acc, acc_plus, score; /* acc and acc+ in [0, 1]; score in [0, 200] */
    size_t questions, images;
} eval_mme;

/* image[i] names item i's image; correct[i] is 0 or 1. Every image needs >= 1 question;
 * lmms-eval requires exactly 2: pairs_only makes any other count an error naming the image. */
int eval_mme_category(const char *const *image, const double *correct, size_t n, int pairs_only, eval_mme *out,
                      ps_error *err);

typedef struct eval_circular {
    double acc, stderr_; /* over groups */
    size_t groups;
    double vanilla;      /* the plain mean over all items, for comparison */
} eval_circular;

int eval_mmbench_circular(const char *const *group, const double *correct, size_t n, eval_circular *out,
                          ps_error *err);

/* Option rotation for circular evaluation: copy r of an item with n options shows option
 * (i + r) % n at position i; the answer's new position is (answer - r + n) % n. */
int eval_circular_answer(int answer, int n_options, int rotation);

/* Means by key: key[i] names item i's group (a task or a category). */
typedef struct eval_group {
    char *key;
    double mean, stderr_;
    size_t n;
} eval_group;

typedef struct eval_groups {
    eval_group *groups; /* sorted by key */
    size_t n;
    double macro;       /* the unweighted mean of the group means */
} eval_groups;

int eval_group_means(const char *const *key, const double *score, size_t n, eval_groups *out, ps_error *err);
void eval_groups_free(eval_groups *g);

#endif
