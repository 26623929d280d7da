/* optim.h - AdamW over the model's tensors, the learning-rate schedule and
 * gradient clipping by global norm. */
#ifndef PRESIGHT_OPTIM_H
#define PRESIGHT_OPTIM_H

#include <stdint.h>

#include "config.h"
#include "model.h"

/* Learning rate of optimizer step `step` (0-based) out of total_steps: linear
 * warm-up from lr/warmup to lr over warmup_steps, then cosine decay to min_lr
 * at the last step. */
double lr_at(const train_config *t, int64_t step, int64_t total_steps);

/* Global L2 norm of the gradients (all units). */
double grad_global_norm(const backend_ops *ops, const model_layout *L, const model_params *grads);

/* One AdamW update of every tensor: weight decay on matrices and embeddings,
 * never on norm weights; grads multiplied by grad_scale (clipping) first.
 * m and v are shaped like the parameters; step is 1-based. */
void adamw_step(const backend_ops *ops, const model_layout *L, model_params *params, const model_params *grads,
                model_params *m, model_params *v, const train_config *t, double lr, int64_t step, double grad_scale);

/* The clipping factor for a gradient of global norm `norm`: min(1, clip / norm). */
double clip_scale(double norm, double clip);

#endif
