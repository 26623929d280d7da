/* model.h - a Llama-3-style decoder: parameters, forward, backward.
 *
 *   x = embed(tokens)
 *   for each block:  x += wo( attention( rope( wqkv( rmsnorm(x) ) ) ) )
 *                    x += w2( silu(w1 h) * (w3 h) ),  h = rmsnorm(x)
 *   logits = output( rmsnorm(x) )        (output = embedding when tied)
 *   loss = mean cross-entropy of logits against next tokens
 *
 * Parameters live in "units", one flat buffer each: unit 0 holds the token
 * embedding, units 1..layers one transformer block each, and the last unit the
 * final norm and (untied) output head. A unit is what FSDP gathers and
 * shards; tensors are views at fixed offsets into their unit. Tensors that are
 * used fused sit next to each other in the unit (wq|wk|wv, w1|w3), so one GEMM
 * serves them, while the tensor table still lists Meta's names and shapes
 * (layers.0.attention.wq.weight ...) for checkpoints and the PyTorch check. */
#ifndef PRESIGHT_MODEL_H
#define PRESIGHT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "error.h"
#include "real.h"

#define MODEL_TENSOR_NAME_MAX 64

typedef struct model_tensor {
    char name[MODEL_TENSOR_NAME_MAX]; /* Meta naming, e.g. "layers.3.feed_forward.w2.weight" */
    int unit;                         /* which flat buffer */
    size_t offset;                    /* in elements, within the unit */
    int rows, cols;                   /* logical shape; cols = 1 for vectors (stored as 1-D) */
    int is_norm;                      /* norm weights: init 1, no weight decay */
} model_tensor;

typedef struct model_unit {
    size_t size;   /* elements */
    int trainable; /* 1: gets gradients and optimizer state; 0: frozen (used, never updated) */
} model_unit;

/* The shape of the parameters, derived from a model_config alone. */
typedef struct model_layout {
    model_config cfg;
    int head_dim;
    int qkv_dim;        /* (heads + 2 * kv_heads) * head_dim */
    int n_units;        /* layers + 2 */
    model_unit *units;
    int n_tensors;
    model_tensor *tensors;
    size_t n_params;    /* sum of unit sizes */
} model_layout;

int model_layout_init(model_layout *layout, const model_config *cfg, ps_error *err);
void model_layout_free(model_layout *layout);
/* Index of a tensor by name, or -1. */
int model_layout_find(const model_layout *layout, const char *name);

/* Parameters (or gradients, or optimizer moments: anything shaped like the
 * parameters): one pointer per unit into a single allocation. */
typedef struct model_params {
    real **unit;   /* unit[u] has layout->units[u].size elements */
    real *memory;  /* the one allocation behind all units */
} model_params;

int model_params_alloc(model_params *p, const model_layout *layout, ps_error *err);
void model_params_free(model_params *p);
real *model_tensor_data(const model_params *p, const model_layout *layout, int tensor);

/* Llama initialisation: normal(0, init_std) for matrices, except the output
 * projection of each block (attention.wo, feed_forward.w2) scaled by
 * 1/sqrt(2 * layers); norm weights 1. Deterministic in seed, and each tensor
 * draws from its own stream so the values do not depend on the layout order. */
void model_init_weights(model_params *p, const model_layout *layout, uint64_t seed);
/* The same values for elements [begin, end) of one unit only, into dst
 * (dst[0] is element begin): how a sharded rank initialises its slice. */
void model_init_range(const model_layout *layout, int unit, size_t begin, size_t end, real *dst, uint64_t seed);

/* Saved activations of one forward pass of a [batch, seq] micro-batch. */
typedef struct model_activations model_activations;

/* With recompute_blocks set, only each block's input is kept and the block's
 * other activations are recomputed in the backward pass (activation
 * checkpointing): memory for one block instead of all of them. */
model_activations *model_activations_alloc(const model_layout *layout, int batch, int seq, int recompute_blocks,
                                           ps_error *err);
/* Bytes model_activations_alloc would take (the memory planner uses it). */
size_t model_activations_bytes(const model_layout *layout, int batch, int seq, int recompute_blocks);
void model_activations_free(model_activations *a);
/* Logits [batch*seq, vocab] of the last forward pass (before backward overwrites them). */
const real *model_logits(const model_activations *a);

/* Hooks let the distributed runtime gather a unit's parameters just before
 * they are used and reduce its gradient as soon as it is complete. Units are
 * acquired in forward order 0, 1..layers, last (and 0 again for a tied head),
 * and in backward order last (and 0 when tied), layers..1, 0. After
 * acquire(u) the params' unit[u] pointer must be valid; after release(u) the
 * model does not touch it until the next acquire. grad_ready(u) follows the
 * last write into the gradient of unit u in a backward pass. */
typedef struct model_hooks {
    void *ctx;
    void (*acquire)(void *ctx, int unit, int backward);
    void (*release)(void *ctx, int unit, int backward);
    void (*grad_ready)(void *ctx, int unit);
} model_hooks;

/* The model: layout + the backend it runs on + a RoPE table. */
typedef struct model {
    model_layout layout;
    const backend_ops *ops;
    real *rope_cos_sin;        /* [context, head_dim/2, 2] */
    const model_hooks *hooks;  /* NULL: every unit is always present */
} model;

int model_init(model *m, const model_config *cfg, const backend_ops *ops, ps_error *err);
void model_free(model *m);

/* Forward over tokens [batch, seq]; when targets is non-NULL also returns the
 * mean loss over counted targets (ignore_index = -1 masks a target). */
double model_forward(model *m, const model_params *params, model_activations *acts, const int *tokens,
                     const int *targets, int batch, int seq);

/* Backward of the last forward (which must have had targets). Accumulates into
 * grads (+=); loss_scale multiplies the gradient of the mean loss (use
 * 1/grad_accum for accumulation). */
void model_backward(model *m, const model_params *params, model_params *grads, model_activations *acts,
                    const int *tokens, const int *targets, int batch, int seq, real loss_scale);

/* Model FLOPs of a training step on n_tokens of length-seq sequences:
 * 6 * (non-embedding params + head) * tokens plus attention 12 * layers * seq * dim / 2 (causal) per token. */
double model_train_flops(const model_layout *layout, int seq, double n_tokens);

#endif
