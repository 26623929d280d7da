/* sharding.h - data-parallel training state: DDP, ZeRO-1 and FSDP as one
 * mechanism with different ownership.
 *
 * Every rank owns a slice of every parameter unit (shard.h) and keeps the
 * fp32 master copy, gradient and AdamW moments of that slice only; the
 * optimizer runs on the slice. What differs is who holds the rest:
 *   ddp    slices of the whole (a shard group of one): full parameters and
 *          gradients everywhere, gradients all-reduced;
 *   zero1  full parameters and gradients everywhere, gradients
 *          reduce-scattered to the owners, updated slices all-gathered;
 *   fsdp   only the slice: a unit is all-gathered just before the model uses
 *          it (the next one prefetched), freed afterwards, and its gradient
 *          reduce-scattered as soon as its backward is done.
 * With parallel.shard_group = G, slices span groups of G ranks and the
 * groups are replicas of each other (hybrid sharding): gradients are then
 * also all-reduced across groups. */
#ifndef PRESIGHT_SHARDING_H
#define PRESIGHT_SHARDING_H

#include "comm.h"
#include "config.h"
#include "model.h"
#include "shard.h"

typedef enum { STRATEGY_DDP, STRATEGY_ZERO1, STRATEGY_FSDP } strategy_kind;

typedef struct sharded_state {
    strategy_kind kind;
    const model_layout *layout;
    const backend_ops *ops;
    comm *world;    /* every data-parallel rank (borrowed) */
    comm *group;    /* the shard group (owned; a copy of world when it is all of it) */
    comm *replicas; /* the same slice across groups (owned; NULL without hybrid sharding) */
    shard_layout slices;
    size_t *padded; /* [units] slices.world * shard_len */

    /* What the model reads and writes: full units (fsdp: gathered on demand). */
    model_params params, grads;
    /* This rank's slices (ddp/zero1: owned points into params). A frozen
     * unit (model_unit.trainable = 0) has owned only: owned_grad, adam_m and
     * adam_v are NULL, it is never reduced, counted in the gradient norm or
     * updated; fsdp still gathers it for use. */
    real **owned, **owned_grad, **adam_m, **adam_v;
    real *frozen_scratch; /* where model_backward writes frozen units' dw (see sharding.c) */

    /* fsdp */
    int reshard_after_forward, prefetch;
    comm_request **gather_pending;      /* [units] all-gather in flight into params.unit[u] */
    comm_request **scatter_pending;     /* [units] reduce-scatter in flight from grads.unit[u] */
    real **scatter_recv;                /* [units] its receive buffer, added into owned_grad when done */
    ps_error hook_error;                /* first error inside a hook (hooks return nothing) */
    int hook_failed;
    model_hooks hooks;

    /* Only the owned slices and moments, on the host (sharded_init_host). */
    int host_only;

    /* Memory, for the planner check: bytes this state holds now and at most;
     * fsdp's all-gathers started (prefetches included), for the tests. */
    size_t bytes_now, bytes_peak;
    size_t gathers;
} sharded_state;

int strategy_parse(const char *name, strategy_kind *out, ps_error *err);

/* Sets up slices and buffers; initialises the owned slices from seed (every
 * strategy gives bit-identical initial weights). */
int sharded_init(sharded_state *s, const run_config *cfg, const model_layout *L, const backend_ops *ops, comm *world,
                 ps_error *err);
/* The host side of a state that lives on the GPU (stages/gpu_engine.h): the
 * same groups and slices, but only the owned parameter slices and AdamW
 * moments (initialised from seed as above), for upload and checkpoints. */
int sharded_init_host(sharded_state *s, const run_config *cfg, const model_layout *L, comm *world, ps_error *err);
void sharded_free(sharded_state *s);

/* The model hooks to install (NULL for ddp and zero1, which keep full units). */
const model_hooks *sharded_hooks(sharded_state *s);

/* Before a step's micro-batches: zero the gradients. */
void sharded_begin_step(sharded_state *s);
/* After the last backward: finish the gradient reduction into owned_grad
 * (fsdp reduces each micro-batch as its backward goes; ddp and zero1 reduce
 * once per step, here). */
int sharded_reduce_gradients(sharded_state *s, ps_error *err);
/* Global gradient norm over owned slices (agreed by every rank). */
int sharded_grad_norm(sharded_state *s, double *norm, ps_error *err);
/* AdamW on the owned slices, then whatever the strategy needs to make the
 * parameters whole again (zero1: all-gather). */
int sharded_optimizer_step(sharded_state *s, const train_config *t, double lr, int64_t step, double grad_scale,
                           ps_error *err);
/* After loading owned slices from a checkpoint: make the full copies agree. */
int sharded_after_load(sharded_state *s, ps_error *err);

/* The slices as the checkpoint module sees them. */
shard_view sharded_view(sharded_state *s);

/* Bytes per rank for parameters, gradients and optimizer state of a strategy
 * at their peak (the planner and the memory test use it): bytes_peak of a
 * real run. It replays what sharded_init and the fsdp hooks allocate and free
 * over a step (owned slices, full or gathered units, gradient units, scatter
 * receive slices), in the order the model calls the hooks. Exact for any
 * train.grad_accum under ddp and zero1, and under fsdp with resharding after
 * forward; with parallel.reshard_after_forward = false it counts the worst
 * case of grad_accum >= 2 (one unit's gradient more than grad_accum = 1).
 * Returns 0 when it cannot allocate its bookkeeping. */
size_t sharded_state_bytes(const model_layout *L, strategy_kind kind, int group_size, int reshard_after_forward,
                           int prefetch);
/* The same for a given train.grad_accum (sharded_state_bytes is its worst
 * case, grad_accum >= 2). It matters when the step's peak falls in a forward
 * pass, as when every decoder unit is frozen (adapt's align stage): one unit's
 * gradient and receive slice more with accumulation. Layouts with extra units
 * are replayed as stages/adapt.c drives them (see replay_micro_batch). */
size_t sharded_state_bytes_accum(const model_layout *L, strategy_kind kind, int group_size, int reshard_after_forward,
                                 int prefetch, int grad_accum);

#endif
