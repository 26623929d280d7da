#include "optim.h"

#include <math.h>

double lr_at(const train_config *t, int64_t step, int64_t total_steps) {
    if (step < t->warmup_steps) return t->lr * (double)(step + 1) / (double)t->warmup_steps;
    int64_t decay_steps = total_steps - t->warmup_steps;
    if (decay_steps <= 1) return t->lr;
    double progress = (double)(step - t->warmup_steps) / (double)(decay_steps - 1);
    if (progress > 1) progress = 1;
    return t->min_lr + 0.5 * (t->lr - t->min_lr) * (1.0 + cos(M_PI * progress));
}

double grad_global_norm(const backend_ops *ops, const model_layout *L, const model_params *grads) {
    double sum = 0;
    for (int u = 0; u < L->n_units; u++)
        if (L->units[u].trainable) sum += ops->sum_squares(grads->unit[u], L->units[u].size); /* frozen: no buffer */
    return sqrt(sum);
}

double clip_scale(double norm, double clip) {
    if (clip <= 0 || !(norm > clip)) return 1.0;
    return clip / norm;
}

void adamw_step(const backend_ops *ops, const model_layout *L, model_params *params, const model_params *grads,
                model_params *m, model_params *v, const train_config *t, double lr, int64_t step, double grad_scale) {
    for (int i = 0; i < L->n_tensors; i++) {
        const model_tensor *tensor = &L->tensors[i];
        if (!L->units[tensor->unit].trainable) continue; /* frozen: no gradient, no moments, no update */
        size_t count = (size_t)tensor->rows * tensor->cols;
        double decay = model_tensor_decays(tensor) ? t->weight_decay : 0.0; /* norms and biases: none */
        ops->adamw_update(model_tensor_data(params, L, i), model_tensor_data(grads, L, i), model_tensor_data(m, L, i),
                          model_tensor_data(v, L, i), count, (float)lr, (float)t->beta1, (float)t->beta2,
                          (float)t->adam_eps, (float)decay, step, (float)grad_scale);
    }
}
