/* pretrain.h - pretraining: data -> forward/backward -> AdamW, one optimizer
 * step at a time (trainer_*), and as a stage on the job runner (runner.h). */
#ifndef PRESIGHT_PRETRAIN_H
#define PRESIGHT_PRETRAIN_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "dataset.h"
#include "gpu_engine.h"
#include "heldout_loss.h"
#include "model.h"
#include "runner.h"
#include "sharding.h"

typedef struct trainer {
    run_config cfg;
    model model;
    sharded_state shards;           /* parameters, gradients, optimizer state */
    model_activations *acts;
    dataset *data;
    comm *comm;
    int *window;                    /* [micro_batch][seq+1]: one micro-batch as read */
    int *inputs, *targets;          /* [grad_accum][micro_batch * seq]: the step's micro-batches */
    long *counted;                  /* [grad_accum] targets that count (>= 0) in each */
    double *means;                  /* [grad_accum] their mean losses */
    double last_loss;               /* of the last step */
    const gpu_engine_api *gpu;      /* the GPU engine (run.backend = cuda, or auto with a GPU); NULL: CPU */
    gpu_engine *engine;             /* its state; shards then holds only the host copy of the owned slices */
    int64_t total_steps;
    int64_t step;                   /* optimizer steps done */
    double tokens;                  /* tokens trained on so far */
    heldout_set heldout;            /* eval.every > 0: the held-out loss's fixed set */
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

/* The scale of micro-batch gradients (model_backward's loss_scale) that makes
 * their sum over micro-batches and ranks the gradient of the per-token mean
 * loss over the global batch: counted / global_counted, the counted targets
 * of the micro-batch and of the global batch. With every target counted
 * (global_counted = full * grad_accum * world, full = micro_batch * seq) it
 * is 1 / (grad_accum * world), computed as before answer-only targets. */
double pretrain_loss_scale(long counted, double global_counted, int grad_accum, int world, long full);

/* A whole pretraining run on the job runner (runner.h: run.dir, metrics,
 * checkpoints, resume, preemption, final.json); model.h5 in run.dir holds
 * the final weights. Returns 0, -1 (this rank failed: main ends the job),
 * JOB_FAILED_EVERYWHERE, or PRESIGHT_EXIT_PREEMPTED. */
int pretrain_run(const run_config *cfg, comm *c, ps_error *err);

#endif
