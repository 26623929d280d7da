/* model.h - a Llama-3-style decoder: parameters, forward, backward.
 *
 *   x = embed(tokens)
 *   for each block:  x += wo( attention( rope( wqkv( rmsnorm(x) ) ) ) )
 *                    x += w2( silu(w1 h) * (w3 h) ),  h = rmsnorm(x)
 *   logits = output( rmsnorm(x) )        (output = embedding when tied)
 *   loss = mean cross-entropy of logits against next tokens
 *
 * Parameters live in "units", one flat buffer each: unit 0 holds the token
 * embedding, units 1..layers one transformer block each, and unit layers + 1
 * the final norm and (untied) output head; a stage may append units of its
 * own after those (a projector, core/projector.h). A unit is what FSDP
 * gathers and shards, and what trains or stays frozen; tensors are views at
 * fixed offsets into their unit. Tensors that are
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
    int is_bias;                      /* biases (extra units): init 0, no weight decay */
} model_tensor;

/* What kind of tensor model_layout_add_tensor adds (how it is initialised). */
enum { MODEL_TENSOR_MATRIX = 0, MODEL_TENSOR_NORM = 1, MODEL_TENSOR_BIAS = 2 };

/* 1 when AdamW's weight decay applies to the tensor (not to norms or biases). */
static inline int model_tensor_decays(const model_tensor *t) { return !t->is_norm && !t->is_bias; }

typedef struct model_unit {
    size_t size;   /* elements */
    int trainable; /* 1: gets gradients and optimizer state; 0: frozen (used, never updated) */
} model_unit;

/* The shape of the parameters, derived from a model_config alone. */
typedef struct model_layout {
    model_config cfg;
    int head_dim;
    int qkv_dim;        /* (heads + 2 * kv_heads) * head_dim */
    int n_units;        /* llm_units, then any extra units a stage appends (a projector) */
    int llm_units;      /* layers + 2: the decoder's units; unit llm_units - 1 holds norm (+ output) */
    model_unit *units;
    int n_tensors;
    model_tensor *tensors;
    size_t n_params;    /* sum of unit sizes */
} model_layout;

int model_layout_init(model_layout *layout, const model_config *cfg, ps_error *err);
void model_layout_free(model_layout *layout);
/* Index of a tensor by name, or -1. */
int model_layout_find(const model_layout *layout, const char *name);

/* Extra units, after the decoder's (a stage's own parameters, e.g. the
 * projector of core/projector.h): add_unit returns the new unit's index (or
 * -1), add_tensor appends a tensor of the given kind (MODEL_TENSOR_*) to an
 * extra unit. Both before any model_params_alloc. New units train. */
int model_layout_add_unit(model_layout *layout, ps_error *err);
int model_layout_add_tensor(model_layout *layout, const char *name, int unit, int rows, int cols, int kind,
                            ps_error *err);
/* Units [first, end) train (1) or are frozen (0). A frozen unit gets no
 * weight-gradient products and its gradient buffer is never touched (it may
 * be NULL, see model_grads_alloc); it is still acquired (gathered) for use. */
void model_layout_set_trainable(model_layout *layout, int first, int end, int trainable);

/* Parameter counts by kind, for the planner: trainable vs frozen, and how
 * many of them sit in extra (non-decoder) units. */
typedef struct model_param_counts {
    size_t trainable, frozen, extra;          /* elements */
    int trainable_units, frozen_units, extra_units;
} model_param_counts;
void model_layout_count(const model_layout *layout, model_param_counts *counts);

/* Parameters (or gradients, or optimizer moments: anything shaped like the
 * parameters): one pointer per unit into a single allocation. */
typedef struct model_params {
    real **unit;   /* unit[u] has layout->units[u].size elements */
    real *memory;  /* the one allocation behind all units */
} model_params;

int model_params_alloc(model_params *p, const model_layout *layout, ps_error *err);
/* Gradients: like model_params_alloc, but frozen units get no memory (NULL). */
int model_grads_alloc(model_params *g, const model_layout *layout, ps_error *err);
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
/* Forward-only activations (evaluation, scoring, decoding): one block's
 * buffers and two residual-stream buffers, nothing kept for backward;
 * model_backward_batch refuses them. */
model_activations *model_activations_alloc_forward(const model_layout *layout, int batch, int seq, ps_error *err);
size_t model_activations_forward_bytes(const model_layout *layout, int batch, int seq);
void model_activations_free(model_activations *a);
/* Logits [batch*seq, vocab] of the last forward pass (before backward overwrites them). */
const real *model_logits(const model_activations *a);

/* Hooks let the distributed runtime gather a unit's parameters just before
 * they are used and reduce its gradient as soon as it is complete. Units are
 * acquired in forward order 0, 1..layers, last (and 0 again for a tied head),
 * and in backward order last (and 0 when tied), layers..1, 0. After
 * acquire(u) the params' unit[u] pointer must be valid; after release(u) the
 * model does not touch it until the next acquire. grad_ready(u) follows the
 * last write into the gradient of unit u in a backward pass. acquire and
 * grad_ready return 0, or -1 when the unit could not be gathered or reduced
 * (out of memory, a failed collective): the pass then stops at once, touches
 * no parameter of that unit, and returns -1; the hooks' owner holds the
 * message. */
typedef struct model_hooks {
    void *ctx;
    int (*acquire)(void *ctx, int unit, int backward);
    void (*release)(void *ctx, int unit, int backward);
    int (*grad_ready)(void *ctx, int unit);
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

/* A KV cache for decoding (core/decode.h allocates and drives it): for each
 * layer, the roped keys and the values of every row seen so far. */
typedef struct model_kv_cache {
    int batch, max_len, layers, kv_dim; /* kv_dim = kv_heads * head_dim */
    real *k, *v;                        /* [layers][batch][max_len][kv_dim] */
    int *len;                           /* [batch]: cache rows filled per sequence */
} model_kv_cache;

enum { MODEL_CACHE_NONE = 0, MODEL_CACHE_PREFILL, MODEL_CACHE_STEP };

/* One micro-batch as the stages see it: rows are token b * seq + t.
 *   tokens      [n]; a token of -1 takes its input embedding from `embeds`
 *               (the projected image tokens): the k-th such row, in row
 *               order, reads embeds[k]. Other ids must be < vocab.
 *   targets     NULL (no loss) or [n], -1 = not counted.
 *   positions   NULL: row t of a sequence sits at position t; else [n]
 *               positions in [0, context) (restarting at 0 per sample).
 *   sample      NULL: one sample per sequence (plain causal attention); else
 *               [n] sample ids: a row attends to earlier rows of its own
 *               sequence with the same id; id -1 marks padding, which has a
 *               zero input, attends to nothing and counts nowhere.
 *   embeds      [n_embeds, dim] rows for the tokens of -1 (n_embeds of them).
 *   embeds_grad NULL, or [n_embeds, dim]: backward writes (=) d loss/d embeds
 *               there, which a projector in front of the decoder trains on.
 *   loss_divisor  0: the loss is the mean over this batch's counted targets;
 *               > 0: the sum over them divided by this (a global batch's count).
 * Forward-only outputs (any activations):
 *   log_probs   NULL or [n]: log p(target) per row (0 where not counted).
 *   pool_group, n_groups, hidden: hidden states mean-pooled per group; row i
 *               belongs to group pool_group[i] in [0, n_groups) or to none
 *               (-1). hidden is [n_groups][layers + 1][dim]: the embedding
 *               output, then each block's output, the last one after the
 *               final norm (Hugging Face's output_hidden_states convention).
 *   cache, cache_mode  decoding (core/decode.c): PREFILL stores every row's
 *               keys and values at cache row t of its sequence; STEP (seq 1)
 *               appends row b at cache->len[b] and attends over the cache. */
typedef struct model_batch {
    int batch, seq;
    const int *tokens, *targets, *positions, *sample;
    const real *embeds;
    int n_embeds;
    real *embeds_grad;
    double loss_divisor;
    double *log_probs;
    const int *pool_group;
    int n_groups;
    double *hidden;
    model_kv_cache *cache;
    int cache_mode;
} model_batch;

/* What a forward pass reports (with targets). */
typedef struct model_result {
    double loss;     /* loss_sum / (loss_divisor, or n_counted); 0 when nothing counted */
    double loss_sum; /* summed cross-entropy over counted targets */
    int n_counted;   /* targets counted */
} model_result;

/* The general forward: checks the batch against the model (-1 with err
 * naming what is wrong), runs it, fills *result (may be NULL). */
int model_forward_batch(model *m, const model_params *params, model_activations *acts, const model_batch *batch,
                        model_result *result, ps_error *err);
/* Backward of the last forward of the same batch (which had targets, and
 * training activations). Parameter gradients accumulate (+=) into the
 * trainable units of grads; frozen units are neither read nor written, and
 * blocks below the lowest unit that needs a gradient are not visited at all.
 * grad_ready hooks fire for trainable units only. loss_scale multiplies the
 * gradient of the loss (use 1/grad_accum for accumulation). */
int model_backward_batch(model *m, const model_params *params, model_params *grads, model_activations *acts,
                         const model_batch *batch, real loss_scale, ps_error *err);

/* Forward over tokens [batch, seq]; when targets is non-NULL also returns the
 * mean loss over counted targets (ignore_index = -1 masks a target). */
double model_forward(model *m, const model_params *params, model_activations *acts, const int *tokens,
                     const int *targets, int batch, int seq);

/* model_forward and model_backward are model_forward_batch and
 * model_backward_batch on {tokens, targets, batch, seq}: pretraining's call,
 * bit-identical to the plain causal model. model_forward returns NAN when the
 * batch does not fit the activations or holds a token outside the vocabulary. */
/* Backward of the last forward (which must have had targets). Accumulates into
 * grads (+=); loss_scale multiplies the gradient of the mean loss (use
 * 1/grad_accum for accumulation). */
void model_backward(model *m, const model_params *params, model_params *grads, model_activations *acts,
                    const int *tokens, const int *targets, int batch, int seq, real loss_scale);

/* Model FLOPs of a training step on n_tokens of length-seq sequences:
 * 6 * (non-embedding params + head) * tokens plus attention 12 * layers * seq * dim / 2 (causal) per token. */
double model_train_flops(const model_layout *layout, int seq, double n_tokens);

#endif
