/* engine_start.h - a training stage's GPU engine (gpu_engine.h) on this
 * rank's GPU: the NCCL ids shared over MPI, the engine created over the
 * shard group (every rank under ddp) and, with hybrid sharding, the
 * replicas, and the host slices uploaded. Pretraining and adapt start it
 * the same way. */
#ifndef PRESIGHT_ENGINE_START_H
#define PRESIGHT_ENGINE_START_H

#include "comm.h"
#include "config.h"
#include "gpu_engine.h"
#include "sharding.h"

/* Collective over c. sh: sharded_init_host's state (its owned slices and
 * moments are uploaded); grad_accum: the micro-batches of every step (the
 * engine reduces ddp/zero1 gradients at the last one). */
int engine_start(const gpu_engine_api *gpu, const run_config *cfg, const model_layout *L, sharded_state *sh, comm *c,
                 int grad_accum, gpu_engine **out, ps_error *err);

/* After finish_backward: the global gradient norm from this rank's sum of
 * squares (the shard group's slices partition the model; ddp: a group of one). */
int engine_grad_norm(const sharded_state *sh, double sumsq, double *norm, ps_error *err);

#endif
