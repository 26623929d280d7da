/* train.h - the training loop: data -> forward/backward -> AdamW, with
 * progress lines, JSONL metrics and the run directory. */
#ifndef PRESIGHT_TRAIN_H
#define PRESIGHT_TRAIN_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "dataset.h"
#include "gpu_engine.h"
#include "model.h"
#include "sharding.h"

/* Exit status of `presight train` when it stopped early on SIGTERM/SIGUSR1
 * after writing a checkpoint: batch scripts requeue on it (EX_TEMPFAIL). */
#define PRESIGHT_EXIT_PREEMPTED 75

typedef struct trainer {
    run_config cfg;
    model model;
    sharded_state shards;           /* parameters, gradients, optimizer state */
    model_activations *acts;
    dataset *data;
    comm *comm;
    int *window, *inputs, *targets; /* [micro_batch][seq+1], [micro_batch * seq] x2 */
    const gpu_engine_api *gpu;      /* the GPU engine (run.backend = cuda, or auto with a GPU); NULL: CPU */
    gpu_engine *engine;             /* its state; shards then holds only the host copy of the owned slices */
    int64_t total_steps;
    int64_t step;                   /* optimizer steps done */
    double tokens;                  /* tokens trained on so far */
} trainer;

typedef struct train_step_stats {
    int64_t step;        /* 1-based number of the step just done */
    double loss;         /* mean over the global batch */
    double lr;
    double grad_norm;    /* before clipping */
    double seconds;
    double tokens;       /* tokens in the global batch */
} train_step_stats;

/* Builds the model (initialised from train.seed), optimizer state and data,
 * on the backend run.backend selects (every rank agrees on it). */
int trainer_init(trainer *t, const run_config *cfg, comm *c, ps_error *err);
/* One optimizer step (grad_accum micro-batches on every rank). */
int trainer_step(trainer *t, train_step_stats *stats, ps_error *err);
void trainer_free(trainer *t);

/* A whole run: writes the resolved config into run.dir, trains for the
 * configured steps with a progress line every train.log_every steps, appends
 * one JSON line per step to run.dir/metrics.jsonl, checkpoints into
 * run.dir/checkpoints, and writes the final weights to run.dir/model.h5 and a
 * summary to run.dir/final.json (last: it marks the run complete).
 * Pointed at a run.dir that holds a run of the same config it resumes from
 * the newest valid checkpoint (a complete run returns at once). Returns 0,
 * -1 on error, or PRESIGHT_EXIT_PREEMPTED after checkpointing on SIGTERM or
 * SIGUSR1. */
int train_run(const run_config *cfg, comm *c, ps_error *err);

#endif
