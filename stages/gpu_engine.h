/* gpu_engine.h - the trainer's GPU path, as a plug-in.
 *
 * The GPU trainer (cuda/engine.cu) is built into its own shared library,
 * build/libpresight-cuda.so, which presight loads with dlopen only when
 * run.backend asks for the GPU. CPU ranks therefore never map the CUDA
 * libraries (cuBLASLt alone costs about 150 MB of resident memory), and
 * presight starts on machines without them.
 *
 * The engine holds the whole training state on the device: fp32 master
 * weights, gradient slice and AdamW moments of this rank's slices (shard.h,
 * the same slices the CPU path and the checkpoints use), bf16 weights for the
 * GEMMs (whole units under ddp/zero1, gathered one unit ahead under fsdp),
 * bf16 activations. Collectives are NCCL on a stream of their own, ordered
 * against the compute stream with events: fsdp gathers the next unit while
 * the current one computes and reduce-scatters each unit's gradient as soon
 * as its backward is done; ddp all-reduces each unit's gradient as its
 * backward ends; with hybrid sharding the gradient slices are then summed
 * over the replicas (a second communicator). Frozen units (model_unit.trainable
 * 0) hold weights only: no gradient, no moments, no reduction, no share in
 * the gradient norm; under fsdp they are still gathered for use. The engine
 * runs the decoder's units (layout.llm_units) and a projector (core/projector.h,
 * the unit of the mm_projector.* tensors), which may train; any other extra
 * unit must be frozen there. Greedy decoding keeps its KV cache on the device.
 * The host sees the state only at upload (start, resume) and
 * download (checkpoints), and two numbers per step (loss, gradient norm). */
#ifndef PRESIGHT_GPU_ENGINE_H
#define PRESIGHT_GPU_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"
#include "shard.h"

/* Raised whenever gpu_engine_api or a struct it takes changes: the loader
 * (stages/backend_select.c) refuses a library of another number. 2: the
 * model_batch contract (train_batch, forward_batch, gradients), frozen units.
 * 3: greedy_decode (KV cache on the device), projector_forward/_backward.
 * 4: greedy_decode_embeds (embedding rows in the prompts), score_batch
 * (evaluation's forward of any shape, fp32 log-probs and argmax); the
 * entries of ABI 3 keep their signatures. */
#define GPU_ENGINE_ABI 4
#define GPU_ENGINE_SYMBOL "presight_gpu_engine"
#define GPU_ENGINE_LIBRARY "libpresight-cuda.so"
#define GPU_ENGINE_ID_BYTES 128

typedef struct gpu_engine gpu_engine;

typedef struct gpu_engine_setup {
    const model_layout *layout;
    const shard_layout *slices;   /* this rank's slices under the strategy */
    int strategy;                 /* STRATEGY_DDP, _ZERO1, _FSDP (sharding.h) */
    int micro_batch, seq_len, grad_accum;
    int recompute_blocks, reshard_after_forward, prefetch;
    int rank, world;              /* this rank in the communicator the gathers and reductions use: the
                                   * shard group (zero1, fsdp) or every rank (ddp) */
    const void *nccl_id;          /* its NCCL id (GPU_ENGINE_ID_BYTES, from its rank 0); NULL: no NCCL */
    int replica_rank, replicas;   /* hybrid sharding: the copies of this rank's slices (replicas 1 otherwise) */
    const void *replica_nccl_id;  /* their communicator's NCCL id (replicas > 1) */
    int local_rank;               /* picks the GPU: local_rank % devices; -1: from the launcher's environment */
    float beta1, beta2, adam_eps, weight_decay;
    void *op_marks; /* NULL; or an OpMarks * (cuda/block.cuh) told of each op of the passes (gpu_check's
                     * per-op breakdown of a step) */
} gpu_engine_setup;

typedef struct gpu_engine_memory {
    size_t peak_bytes;        /* most bytes asked of the caching allocator at once (presight plan's allocator figure) */
    size_t peak_class_bytes;  /* the same in the allocator's size classes (up to 25% rounding) */
    size_t reserved_bytes;    /* most bytes held from cudaMalloc */
    size_t device_used_bytes; /* most device memory in use (cudaMemGetInfo: + CUDA context, NCCL, cuBLASLt) */
    long long step_mallocs;   /* cudaMalloc calls during the last step (0 once warm) */
} gpu_engine_memory;

typedef struct gpu_engine_api {
    int abi; /* GPU_ENGINE_ABI */
    /* 1 when a usable GPU is present; 0 with the reason in why. */
    int (*available)(char *why, size_t size);
    /* Rank 0 makes the NCCL id, every rank passes it to create. */
    int (*unique_id)(void *id, ps_error *err);
    gpu_engine *(*create)(const gpu_engine_setup *setup, ps_error *err);
    void (*destroy)(gpu_engine *e);
    /* The owned slices (params, AdamW m and v, fp32, shard.h's view) host ->
     * device; the bf16 weights are then made whole (all-gathered). */
    int (*upload)(gpu_engine *e, real *const *params, real *const *m, real *const *v, ps_error *err);
    /* The owned slices device -> host (for a checkpoint). */
    int (*download)(gpu_engine *e, real **params, real **m, real **v, ps_error *err);
    /* Micro-batch k of grad_accum of a step: forward and backward of one
     * [micro_batch, seq_len] model_batch (core/model.h: token rows and
     * embedding rows (token -1, from embeds), positions, sample ids with
     * padding, loss_divisor; no KV cache), gradients accumulated into the
     * trainable units with loss_scale times d(loss). Frozen units get no
     * weight-gradient GEMMs; blocks below the lowest trainable unit are not
     * visited unless embeds_grad asks for d loss / d embeds, which is written
     * (=) before the call returns (the step then waits for the device).
     * Packed batches (sample ids) run attention on the GEMM path with the
     * sample mask; plain causal batches keep the flash kernels. */
    int (*train_batch)(gpu_engine *e, int k, const model_batch *batch, float loss_scale, ps_error *err);
    /* Forward only (between steps; no gradient touched): fills result (may
     * be NULL) as model_forward_batch does, and the batch's log_probs and
     * pooled hidden states when asked. Waits for the device. */
    int (*forward_batch)(gpu_engine *e, const model_batch *batch, model_result *result, ps_error *err);
    /* After the last micro-batch: finishes the gradient reduction; returns this
     * rank's sum of the micro-batches' losses (each loss_sum over its
     * loss_divisor, or over its counted targets) and the sum of squares of
     * its owned gradient slices of trainable units (the caller sums both over ranks). */
    int (*finish_backward)(gpu_engine *e, double *loss_sum, double *grad_sumsq, ps_error *err);
    /* The owned gradient slices of the trainable units device -> host
     * (grads[u], shard.h's view; frozen units' entries are not touched), as
     * finish_backward left them: for checks against the CPU backend. */
    int (*gradients)(gpu_engine *e, real **grads, ps_error *err);
    /* AdamW on the owned slices of the trainable units (weight decay where
     * model_tensor_decays), gradients times grad_scale; the bf16
     * weights follow; gradients are zeroed for the next step. */
    int (*optimizer_step)(gpu_engine *e, double lr, int64_t step, double grad_scale, ps_error *err);
    /* Greedy decoding between steps, as core/decode.h's model_greedy_decode
     * (the same arguments and results; logits may be NULL, else fp32
     * [batch, max_new, vocab]): the prompts run once through the forward
     * (one sample per sequence, padding after the shorter prompts), which
     * stores each layer's roped keys and values (bf16) in a KV cache on the
     * device; each step then feeds one token per sequence at its own length
     * and attends over the cache. The argmax is taken on the device from
     * fp32 logits of the last rows, so a step without logits needs no host
     * round trip. recompute = 1 instead re-runs the whole forward over every
     * prefix for every token (no cache): the reference and the benchmark's
     * peer. Waits for the device. */
    int (*greedy_decode)(gpu_engine *e, const int *prompts, int prompt_stride, const int *prompt_len, int batch,
                         int max_new, int recompute, int *out, real *logits, ps_error *err);
    /* The projector (core/projector.h's mlp2x_gelu: Linear + bias, erf GELU,
     * Linear + bias) on the device with its unit's weights, as
     * projector_forward: out [n, dim] from features [n, in_dim] (host, fp32),
     * for train_batch's embeds. Keeps what its backward needs. -1 when the
     * layout has no projector. */
    int (*projector_forward)(gpu_engine *e, const real *features, int n, real *out, ps_error *err);
    /* Backward of the last projector_forward from dout [n, dim] (train_batch's
     * embeds_grad of micro-batch k): when the projector trains its weight and
     * bias gradients accumulate into its unit and are reduced like the
     * decoder's (finish_backward, the gradient norm and optimizer_step cover
     * them); dfeatures [n, in_dim] is written unless NULL. */
    int (*projector_backward)(gpu_engine *e, int k, const real *dout, real *dfeatures, ps_error *err);
    void (*memory)(gpu_engine *e, gpu_engine_memory *out);
    /* "NVIDIA H200 (sm_90, 132 SMs, 139.8 GB), NCCL 2.27.3" */
    const char *(*describe)(gpu_engine *e);
    /* ABI 4. greedy_decode with embedding rows in the prompts, as core/decode.h's
     * model_greedy_decode_embeds: every prompt token of -1 takes its input from
     * embeds [n_embeds, dim] (host, fp32), the k-th such row of the prompts
     * (prompt 0's first, in order) reading embeds[k]; n_embeds must equal their
     * count (greedy_decode is this with none). Their rows enter the prefill (and
     * every pass of recompute = 1) and so the KV cache. */
    int (*greedy_decode_embeds)(gpu_engine *e, const int *prompts, int prompt_stride, const int *prompt_len, int batch,
                                const real *embeds, int n_embeds, int max_new, int recompute, int *out, real *logits,
                                ps_error *err);
    /* Evaluation's forward (between steps; no gradient, no hidden states, no
     * KV cache): a model_batch of any [batch, seq] shape (seq <= model.context;
     * tokens, embedding rows, positions, sample ids with padding, as
     * forward_batch), buffers from the caching allocator. The final norm and
     * the head run on fixed chunks of rows into fp32 logits (the GEMM's shape
     * does not depend on the batch): log_probs[i] (needs targets) =
     * log-softmax of row i's logits at targets[i], 0 without a target, and
     * argmax[i] (may be NULL) = the row's largest logit, ties to the lowest id
     * (padding rows: unspecified). A row's values depend only on its own
     * sample's rows and the batch's [batch, seq] shape. Waits for the device. */
    int (*score_batch)(gpu_engine *e, const model_batch *batch, int *argmax, ps_error *err);
} gpu_engine_api;

/* The symbol the library exports. */
typedef const gpu_engine_api *(*gpu_engine_entry)(void);

#endif
