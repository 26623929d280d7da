/* adapt_data.h - an adaptation stage's samples: the LLaVA JSONL templated,
 * the pictures' features found, the broken samples counted, and the order.
 *
 * Every line of adapt.data ({"id", "image", "image_set", "conversations"})
 * is templated once at load (chat_template.h: plain for align, chat for
 * blind and sft; blind withholds the pictures: the <image> mark is removed
 * and no visual rows are spliced). A line that is not JSON, lacks a field,
 * cannot be templated, whose picture failed to encode (/valid = 0), or whose
 * trained tokens would all fall past train.seq_len after the splice, is
 * "bad": counted, named by id, and left out; past adapt.max_bad of the lines
 * the load fails with the ids. A picture the features files lack is an
 * error (the wrong features folder), not a bad sample.
 *
 * The order (adapt_order_step) is LLaVA's modality-grouped megabatches: per
 * epoch, the samples with a picture and those without are each shuffled
 * (seeded by train.seed and the epoch) and cut into megabatches of
 * adapt.batch; the full megabatches of both kinds are shuffled together and
 * the two remainders form one last, mixed megabatch. It depends on the
 * samples' modality, the seed and the batch only: the same for every model
 * (and tokenizer) of a study. */
#ifndef PRESIGHT_ADAPT_DATA_H
#define PRESIGHT_ADAPT_DATA_H

#include <stdint.h>

#include "chat_template.h"
#include "config.h"
#include "error.h"
#include "feature_file.h"

typedef struct adapt_sample {
    char *id;
    int set;          /* features file index; -1: no picture (language-only, or withheld) */
    int row;          /* its row there */
    int line;         /* its line of adapt.data (0-based, blank lines not counted) */
    chat_tokens tok;
} adapt_sample;

typedef struct adapt_data {
    adapt_sample *s;      /* the good samples, in file order */
    int n;
    int64_t lines;        /* lines read */
    int n_bad;
    char **bad;           /* [n_bad] "id: why" */
    int n_sets;
    char **set_names;     /* [n_sets] image_set of each file */
    features_file **files;/* [n_sets] adapt.features/<set>.h5 */
    features_meta meta;   /* of the first file: the encoder */
    int width;            /* token width */
    int visual;           /* samples with a picture (spliced) */
    /* the order */
    int batch, n_megabatches; /* per epoch */
    int *order;           /* [n] sample indices, megabatch after megabatch */
    int *mb_start;        /* [n_megabatches + 1] into order */
    int64_t order_epoch;  /* the epoch order holds (-1 none) */
    uint64_t seed;
} adapt_data;

/* Loads cfg->adapt.data with tpl in style; picture rows of visual_tokens
 * (for the truncation check at cfg->train.seq_len). Fails past
 * adapt.max_bad, naming the bad ids (the first 20 and how many). */
int adapt_data_load(adapt_data *d, const run_config *cfg, const chat_template *tpl, chat_style style,
                    int withhold_images, ps_error *err);
void adapt_data_free(adapt_data *d);

/* The samples of global step `step` (0-based, over every epoch): *first
 * points into an internal array valid until the next call, *n of them. */
int adapt_order_step(adapt_data *d, int64_t step, const int **first, int *n, ps_error *err);
/* Steps over adapt.epochs. */
int64_t adapt_total_steps(const adapt_data *d, int epochs);

/* The features of sample i resized to tokens rows: out [tokens, width]. */
int adapt_data_features(adapt_data *d, int i, int tokens, float *out, ps_error *err);

#endif
