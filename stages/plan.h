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
 * FLOPs follow model_train_flops (PaLM's convention, the one MFU is quoted in);
 * an adapt stage's (plan_train_flops) count what its passes compute.
 *
 * An adapt config (adapt.data set: the files of config/adapt/) is planned as
 * stages/adapt.c builds it: the LLM of adapt.init, the projector appended
 * (plan_adapt_layout), the LLM frozen in align (weights only: no gradient,
 * no moments, still gathered under fsdp), the projector unused in blind;
 * its tokens are counted from adapt.data (plan_adapt.c). */
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

/* ---------------------------------------------------------------- stages */

typedef enum { PLAN_PRETRAIN = 0, PLAN_ALIGN, PLAN_BLIND, PLAN_SFT } plan_stage;

/* adapt.data set: an adapt config, of its adapt.stage; else pretraining. */
plan_stage plan_stage_of(const run_config *cfg);
const char *plan_stage_name(plan_stage st);

/* The layout of stage st as stages/adapt.c builds it (L from model.* of the
 * pretrained run): the projector (encoder_width -> model.dim) appended, the
 * LLM frozen in align, the projector frozen in blind. Pretraining: nothing. */
int plan_adapt_layout(model_layout *L, plan_stage st, int encoder_width, ps_error *err);

/* The projector's input width, from its unit's size (0 without one). */
int plan_projector_width(const model_layout *L);

/* Model FLOPs of a training pass over n_tokens rows of length-seq
 * sequences, n_visual of them pictures' rows, as stage st computes them,
 * per matmul weight and row: forward 2, the input's gradient 2, the
 * weight's gradient 2 (PaLM's 6N), plus the attention term of
 * model_train_flops (12 x layers x dim x seq, forward and the input's
 * gradient: no weights).
 *   pretrain, sft, blind  the LLM 6 per weight (model_train_flops)
 *   align                 the LLM 4: frozen, but the gradient still flows
 *                         through every block down to the pictures' rows
 *   projector (align, sft, visual rows only): 6 per weight less the
 *                         features' gradient of its first matmul (2 x in x
 *                         dim: nothing asks for it); blind: 0 (unused). */
double plan_train_flops(const model_layout *L, plan_stage st, int seq, double n_tokens, double n_visual);

/* What an adapt stage trains on, counted from adapt.data: the first
 * adapt.max_samples lines (0: all), each templated as the stage does
 * (chat_template.h with the pretrained run's encoding; align plain, sft
 * and blind chat; blind without the picture) and spliced: its text ids
 * plus adapt.visual_tokens rows per picture, cut at train.seq_len. Lines
 * that are not JSON or cannot be templated are skipped (counted in bad);
 * the stage's own adapt.max_bad verdict is not repeated here. */
typedef struct plan_adapt_data {
    long samples, visual, bad;  /* usable lines, those with a picture, skipped lines */
    double text_tokens;         /* templated ids, summed (before the splice) */
    double rows;                /* spliced rows after truncation, summed: one epoch's tokens */
    double visual_rows;         /* of which pictures' rows */
    int epochs;                 /* adapt.epochs */
    long steps;                 /* optimizer steps over the epochs, as adapt_total_steps counts them */
} plan_adapt_data;

/* cfg: the adapt config with model.* and data.* of the pretrained run
 * (whose data.tokenizer gives the encoding). Returns 0, or -1 with err
 * (adapt.data missing, the tokenizer missing, ...). */
int plan_adapt_count(const run_config *cfg, plan_adapt_data *out, ps_error *err);

/* An adapt config made plannable: model.* and data.* from adapt.init when
 * it names a run (else the config's own; from says which, and why),
 * adapt.encoder_width from the config, adapt.init's config or the first
 * <set>.h5 of adapt.features. -1 with err when the width stays unknown. */
int plan_adapt_resolve(run_config *cfg, char *from, size_t size, ps_error *err);

/* What an eval stage reads: eval.tasks (the first eval.limit items of each),
 * in the run's tokens (data.tokenizer, or bytes for a byte-level run): per
 * item every (context, continuation) pair whole (multiple choice, partial,
 * loglikelihood), the document (rolling), or the question + visual_tokens
 * rows for a picture + eval.max_new_tokens decoded rows (VQA; chat template
 * marks not counted). A task file or data file that cannot be read is
 * listed in skipped, not an error (users' copies of public sets). */
typedef struct plan_eval_data {
    long tasks, items, skipped_tasks;
    double tokens;
    char skipped[1024];
} plan_eval_data;

int plan_eval_count(const run_config *cfg, int visual_tokens, plan_eval_data *out, ps_error *err);

/* Model FLOPs of a forward pass over n_tokens rows (evaluation): a third of
 * model_train_flops (2 per matmul weight and row, the attention's forward). */
double plan_forward_flops(const model_layout *L, int seq, double n_tokens);

/* ------------------------------------------------------------------ cpu */

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
    size_t adapt;       /* adapt stages: the projector's activations and adapt.c's buffers, the samples' ids (see plan.c) */
    size_t process;     /* PLAN_CPU_PROCESS_BYTES */
    size_t total;       /* the peak RSS to expect */
} plan_cpu;

/* The estimate for one rank of a run of cfg (train.*, parallel.*) on ranks
 * ranks. Returns 0, or -1 with err (bad strategy, shard group, ...). */
int plan_cpu_rank(const run_config *cfg, const model_layout *L, int ranks, int rank, plan_cpu *out, ps_error *err);
/* The same for an adapt config (L from plan_adapt_layout; data may be NULL:
 * the samples' ids are then not counted). */
int plan_cpu_adapt_rank(const run_config *cfg, const model_layout *L, const plan_adapt_data *data, int ranks, int rank,
                        plan_cpu *out, ps_error *err);

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
    plan_stage stage;     /* what trains (plan_train_flops); pretraining by default */
    double visual_share;  /* adapt: the share of rows that are pictures' rows */
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
    /* adapt: the projector's activations (GELU input and output, backward scratch) and its input, bf16, every row */
    double projector_acts;
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
