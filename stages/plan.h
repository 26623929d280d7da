/* plan.h - what a training run costs before it runs: memory per rank or GPU,
 * FLOPs and time.
 *
 * Two memory models:
 *   cpu  presight's CPU trainer exactly as it allocates today (fp32
 *        everything): the sharded state at its peak (sharded_state_bytes),
 *        the saved activations (model_activations_bytes), token buffers, the
 *        RoPE table, the temporary buffers MPI's collectives touch, and a
 *        measured process baseline. tests/t_memory.sh checks it against the
 *        peak RSS of real runs at 1, 2 and 4 ranks.
 *   gpu  the GPU engine's layout (cuda/engine.cu; the details are listed in
 *        plan.c): bf16 activations and gathered units, fp32 master weights,
 *        gradient slice and AdamW moments in the owned shard, FSDP over
 *        every GPU of the job or within a node (hybrid). make gpu-check
 *        compares it with the allocator's peak of a real run.
 * FLOPs follow model_train_flops (PaLM's convention, the one MFU is quoted in). */
#ifndef PRESIGHT_PLAN_H
#define PRESIGHT_PLAN_H

#include <stddef.h>

#include "config.h"
#include "error.h"
#include "model.h"

/* ------------------------------------------------------------------ cpu */

/* What a presight process holds besides the buffers listed in plan_cpu:
 * code and libraries (Open MPI, HDF5, OpenBLAS, libconfig), MPI's shared-
 * memory transport, OpenBLAS and OpenMP thread buffers, malloc's own pages.
 * Measured as peak RSS minus every counted buffer, on Debian 12 (Open MPI
 * 4.1.4, HDF5 1.10, OpenBLAS 0.3.21), 1 to 4 ranks, 1 or 2 threads: 24 to
 * 28 MiB (a 140k-parameter model peaks at 30 to 33 MiB in all). */
#define PLAN_CPU_PROCESS_BYTES ((size_t)26 << 20)

typedef struct plan_cpu {
    int ranks, rank;    /* world size, this rank */
    int group;          /* ranks a unit is sharded over (1 for ddp) */
    size_t owned;       /* this rank's slices, fp32: AdamW m, v (+ params and gradients under fsdp, + gradient under
                         * zero1); frozen units (model_unit.trainable = 0) have no moments nor gradients */
    size_t units;       /* full units (ddp, zero1) or gathered units and gradient buffers in flight (fsdp), at the peak */
    size_t state;       /* owned + units = sharded_state_bytes */
    size_t activations; /* model_activations_bytes(train.micro_batch, train.seq_len, parallel.recompute_blocks) */
    size_t tokens;      /* the trainer's token window, inputs and targets */
    size_t rope;        /* the RoPE table */
    size_t collectives; /* MPI temporaries this rank writes during the step's peak (see plan.c) */
    size_t process;     /* PLAN_CPU_PROCESS_BYTES */
    size_t total;       /* the peak RSS to expect */
} plan_cpu;

/* The estimate for one rank of a run of cfg (train.*, parallel.*) on ranks
 * ranks. Returns 0, or -1 with err (bad strategy, shard group, ...). */
int plan_cpu_rank(const run_config *cfg, const model_layout *L, int ranks, int rank, plan_cpu *out, ps_error *err);

/* ------------------------------------------------------------------ gpu */

typedef struct plan_gpu_opts {
    int nodes, gpus_per_node;
    int shard_group;      /* GPUs one copy of the model is sharded over: 0 = all of them (FSDP), gpus_per_node = hybrid */
    double gpu_mem;       /* bytes a GPU offers */
    int global_batch;     /* sequences per optimizer step */
    int seq;              /* tokens per sequence */
    int micro_batch;      /* sequences per micro-batch per GPU; 0 = the largest that fits */
    double mfu;           /* model FLOPs utilisation, 0..1 */
    double peak_flops;    /* per GPU, FLOP/s (dense bf16) */
    double tokens;        /* token budget of the run */
} plan_gpu_opts;

/* Defaults: one node of 8 H100 80GB, the study's batch (1024 x 2048), the
 * H100 SXM datasheet's 989 TFLOP/s dense bf16 at MFU 0.40, 30B tokens. */
void plan_gpu_defaults(plan_gpu_opts *o);

typedef struct plan_gpu {
    int gpus, shard_group, replicas;
    int per_gpu_batch;            /* sequences per GPU per step = micro_batch x grad_accum */
    int micro_batch, grad_accum;
    const char *micro_batch_why;  /* "given", "largest that fits without checkpointing", ... */
    /* owned shard, fp32 (+ its bf16 copy), bytes */
    double master, grads, adam_m, adam_v, slice_bf16, owned;
    /* gathered units, bf16: the unit in use and the next one, prefetched */
    double gathered;
    /* activations of one micro-batch, bf16, with their backward scratch */
    double act_full, act_ckpt;
    /* buffers */
    double grad_units;   /* fp32 gradient of the unit in backward and of the one in its reduce-scatter (+ a receive slice with accumulation) */
    double logits;       /* bf16 logits (dlogits in place) + the cross-entropy's 8 bytes per row */
    double attention;    /* the flash attention backward's fp32 scratch (dQ, row sums) */
    double workspace;    /* cuBLASLt */
    double nccl;         /* NCCL communicator buffers */
    double context;      /* CUDA context */
    double buffers;      /* the six above */
    double total_full, total_ckpt;
    int fits_full, fits_ckpt;
    /* time */
    double step_tokens, step_flops, recompute_flops; /* model FLOPs per step; extra hardware FLOPs with checkpointing */
    double step_seconds, tokens_per_s;
    double steps, run_seconds, gpu_hours;            /* for the token budget */
} plan_gpu;

/* Memory per GPU and time of a run of L under o. Returns 0, or -1 with err
 * (the global batch does not split over the GPUs, a given micro-batch does
 * not divide the per-GPU batch, ...). */
int plan_gpu_estimate(const model_layout *L, const plan_gpu_opts *o, plan_gpu *out, ps_error *err);

/* Bytes of one micro-batch's activations under the gpu model (exposed for the tests). */
double plan_gpu_activation_bytes(const model_layout *L, int micro_batch, int seq, int checkpointing);

#endif
