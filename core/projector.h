/* projector.h - LLaVA's mlp2x_gelu projector in front of the decoder.
 *
 *   embeds = W2 gelu(W0 features + b0) + b2      (nn.Linear, nn.GELU(), nn.Linear)
 *
 * features are [n, in_dim] (a vision encoder's tokens); the result is
 * [n, dim] rows for model_batch.embeds (the rows whose token is -1). The
 * projector is one extra unit of the model layout, appended after the
 * decoder's, with LLaVA's tensor names mm_projector.0.weight [dim, in_dim],
 * mm_projector.0.bias [dim], mm_projector.2.weight [dim, dim],
 * mm_projector.2.bias [dim]: "LLM + projector" is one layout, so one set of
 * parameters, gradients, optimizer state and checkpoint covers both. Weights
 * start as normal(0, model.init_std), biases at 0 (model_init_weights).
 * The model's hooks cover the decoder's units only: under FSDP the caller
 * gathers the projector's unit around projector_forward / _backward. */
#ifndef PRESIGHT_PROJECTOR_H
#define PRESIGHT_PROJECTOR_H

#include "backend.h"
#include "error.h"
#include "model.h"

typedef struct projector {
    int in_dim, dim; /* dim = the decoder's model.dim */
    int unit;        /* its unit in the layout */
    int w0, b0, w2, b2; /* tensor indices */
} projector;

/* Appends the projector's unit and tensors to layout (before any parameters
 * are allocated). */
int projector_add(model_layout *layout, int in_dim, projector *pj, ps_error *err);

/* What the backward pass needs from the forward, for n rows. */
typedef struct projector_acts {
    int n;
    real *h;  /* [n, dim] W0 x + b0 (GELU's input) */
    real *g;  /* [n, dim] gelu(h) */
    real *dg; /* [n, dim] backward scratch */
} projector_acts;

int projector_acts_alloc(projector_acts *a, const projector *pj, int n, ps_error *err);
void projector_acts_free(projector_acts *a);

/* out [n, dim] = the projector on features [n, in_dim]; n <= a->n. */
void projector_forward(const backend_ops *ops, const projector *pj, const model_layout *layout,
                       const model_params *params, projector_acts *a, const real *features, int n, real *out);
/* Backward from dout = d loss / d out (model_batch.embeds_grad): the
 * projector's weight and bias gradients accumulate (+=) into grads when its
 * unit trains; dfeatures [n, in_dim] is overwritten unless NULL. */
void projector_backward(const backend_ops *ops, const projector *pj, const model_layout *layout,
                        const model_params *params, model_params *grads, projector_acts *a, const real *features,
                        int n, const real *dout, real *dfeatures);

#endif
