/* dataset.h - where training sequences come from.
 *
 * A dataset is a deterministic function from a global sequence index to a
 * sequence of seq_len + 1 tokens (inputs and next-token targets overlap by
 * one). Optimizer step s, micro-batch k, rank r of a world of w reads the
 * indices ((s * grad_accum + k) * w + r) * micro_batch + b, so the stream of
 * data does not depend on how it is cut up, and a resumed run needs no state
 * beyond the step. Implementations: the byte reader of a text file
 * (datasets/text.c) and the mixture sampler over HDF5 shards (datasets/mixture.c). */
#ifndef PRESIGHT_DATASET_H
#define PRESIGHT_DATASET_H

#include <stdint.h>

#include "config.h"
#include "error.h"

typedef struct dataset dataset;

typedef struct dataset_ops {
    /* tokens[i * (seq_len + 1) ...] receives sequence first_index + i, i < count. */
    int (*read)(dataset *ds, uint64_t first_index, int count, int seq_len, int *tokens, ps_error *err);
    void (*close)(dataset *ds);
} dataset_ops;

struct dataset {
    const dataset_ops *ops;
    int vocab_size;      /* every token id is < vocab_size */
    char description[256];
    void *impl;
};

/* Opens the dataset a config names (data.kind, data.path), seeded by train.seed. */
int dataset_open(dataset **out, const run_config *cfg, ps_error *err);
void dataset_close(dataset *ds);

#endif
