/* projector.c - LLaVA's mlp2x_gelu on the backend table (see projector.h). */
#include "projector.h"

#include <stdlib.h>

int projector_add(model_layout *L, int in_dim, projector *pj, ps_error *err) {
    int D = L->cfg.dim;
    if (in_dim <= 0) return ps_fail(err, "projector input width %d must be positive", in_dim);
    int u = model_layout_add_unit(L, err);
    if (u < 0) return -1;
    pj->in_dim = in_dim;
    pj->dim = D;
    pj->unit = u;
    static const struct { const char *name; int cols_in, kind; } parts[] = {
        {"mm_projector.0.weight", 1, MODEL_TENSOR_MATRIX},
        {"mm_projector.0.bias", 0, MODEL_TENSOR_BIAS},
        {"mm_projector.2.weight", 0, MODEL_TENSOR_MATRIX},
        {"mm_projector.2.bias", 0, MODEL_TENSOR_BIAS},
    };
    int *index[] = {&pj->w0, &pj->b0, &pj->w2, &pj->b2};
    for (int i = 0; i < 4; i++) {
        int cols = parts[i].kind == MODEL_TENSOR_BIAS ? 1 : parts[i].cols_in ? in_dim : D;
        if (model_layout_add_tensor(L, parts[i].name, u, D, cols, parts[i].kind, err)) return -1;
        *index[i] = L->n_tensors - 1;
    }
    return 0;
}

int projector_acts_alloc(projector_acts *a, const projector *pj, int n, ps_error *err) {
    size_t rows = (size_t)n * pj->dim;
    a->n = n;
    a->h = malloc(3 * rows * sizeof(real));
    if (!a->h) return ps_fail(err, "out of memory for projector activations (%d rows)", n);
    a->g = a->h + rows;
    a->dg = a->g + rows;
    return 0;
}

void projector_acts_free(projector_acts *a) {
    free(a->h);
    a->h = a->g = a->dg = NULL;
}

void projector_forward(const backend_ops *ops, const projector *pj, const model_layout *L, const model_params *P,
                       projector_acts *a, const real *features, int n, real *out) {
    int D = pj->dim;
    ops->matmul_forward(a->h, features, model_tensor_data(P, L, pj->w0), n, pj->in_dim, D);
    ops->bias_forward(a->h, model_tensor_data(P, L, pj->b0), n, D);
    ops->gelu_forward(a->g, a->h, (size_t)n * D);
    ops->matmul_forward(out, a->g, model_tensor_data(P, L, pj->w2), n, D, D);
    ops->bias_forward(out, model_tensor_data(P, L, pj->b2), n, D);
}

void projector_backward(const backend_ops *ops, const projector *pj, const model_layout *L, const model_params *P,
                        model_params *G, projector_acts *a, const real *features, int n, const real *dout,
                        real *dfeatures) {
    int D = pj->dim, trains = L->units[pj->unit].trainable;
    real *gw0 = trains ? model_tensor_data(G, L, pj->w0) : NULL, *gw2 = trains ? model_tensor_data(G, L, pj->w2) : NULL;
    if (trains) ops->bias_backward(model_tensor_data(G, L, pj->b2), dout, n, D);
    ops->matmul_backward(a->dg, gw2, dout, a->g, model_tensor_data(P, L, pj->w2), n, D, D);
    ops->gelu_backward(a->dg, a->dg, a->h, (size_t)n * D);
    if (trains) ops->bias_backward(model_tensor_data(G, L, pj->b0), a->dg, n, D);
    ops->matmul_backward(dfeatures, gw0, a->dg, features, model_tensor_data(P, L, pj->w0), n, pj->in_dim, D);
}
