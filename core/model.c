/* model.c - the Llama-3-style decoder, written against the backend table. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ---------------------------------------------------------------- layout */

static int add_tensor(model_layout *L, int cap, const char *name, int unit, int rows, int cols, int is_norm) {
    if (L->n_tensors >= cap) return -1;
    model_tensor *t = &L->tensors[L->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->unit = unit;
    t->offset = L->units[unit].size;
    t->rows = rows;
    t->cols = cols;
    t->is_norm = is_norm;
    L->units[unit].size += (size_t)rows * cols;
    return 0;
}

int model_layout_init(model_layout *L, const model_config *cfg, ps_error *err) {
    memset(L, 0, sizeof *L);
    L->cfg = *cfg;
    int D = cfg->dim, H = cfg->heads, KV = cfg->kv_heads, F = cfg->ffn_dim, V = cfg->vocab;
    if (D <= 0 || H <= 0 || KV <= 0 || cfg->layers <= 0 || F <= 0 || V <= 0 || D % H || H % KV || (D / H) % 2)
        return ps_fail(err, "model shape is invalid (dim %d, heads %d, kv_heads %d, layers %d, ffn_dim %d, vocab %d)",
                       D, H, KV, cfg->layers, F, V);
    L->head_dim = D / H;
    L->qkv_dim = (H + 2 * KV) * L->head_dim;
    L->n_units = cfg->layers + 2;
    int cap = 2 + 9 * cfg->layers + 2;
    L->units = calloc((size_t)L->n_units, sizeof *L->units);
    L->tensors = calloc((size_t)cap, sizeof *L->tensors);
    if (!L->units || !L->tensors) {
        model_layout_free(L);
        return ps_fail(err, "out of memory for the model layout");
    }
    int hd = L->head_dim, rc = 0;
    char name[MODEL_TENSOR_NAME_MAX];
    rc |= add_tensor(L, cap, "tok_embeddings.weight", 0, V, D, 0);
    for (int l = 0; l < cfg->layers; l++) {
        int u = 1 + l;
        /* Order matters: wq|wk|wv and w1|w3 must be adjacent to be used as one GEMM. */
        static const struct { const char *suffix; int norm; } parts[] = {
            {"attention_norm.weight", 1}, {"attention.wq.weight", 0}, {"attention.wk.weight", 0},
            {"attention.wv.weight", 0},   {"attention.wo.weight", 0}, {"ffn_norm.weight", 1},
            {"feed_forward.w1.weight", 0}, {"feed_forward.w3.weight", 0}, {"feed_forward.w2.weight", 0}};
        const int rows[] = {D, H * hd, KV * hd, KV * hd, D, D, F, F, D};
        const int cols[] = {1, D, D, D, H * hd, 1, D, D, F};
        for (int p = 0; p < 9; p++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, parts[p].suffix);
            rc |= add_tensor(L, cap, name, u, rows[p], cols[p], parts[p].norm);
        }
    }
    int last = L->n_units - 1;
    rc |= add_tensor(L, cap, "norm.weight", last, D, 1, 1);
    if (!cfg->tied_head) rc |= add_tensor(L, cap, "output.weight", last, V, D, 0);
    if (rc) {
        model_layout_free(L);
        return ps_fail(err, "internal error: tensor table overflow");
    }
    for (int u = 0; u < L->n_units; u++) L->n_params += L->units[u].size;
    return 0;
}

void model_layout_free(model_layout *L) {
    free(L->units);
    free(L->tensors);
    L->units = NULL;
    L->tensors = NULL;
}

int model_layout_find(const model_layout *L, const char *name) {
    for (int i = 0; i < L->n_tensors; i++)
        if (strcmp(L->tensors[i].name, name) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------ parameters */

int model_params_alloc(model_params *p, const model_layout *L, ps_error *err) {
    memset(p, 0, sizeof *p);
    size_t total = 0;
    for (int u = 0; u < L->n_units; u++) total += (L->units[u].size + 15) & ~(size_t)15; /* 64-byte aligned units */
    p->unit = calloc((size_t)L->n_units, sizeof *p->unit);
    if (!p->unit || posix_memalign((void **)&p->memory, 64, total * sizeof(real) + 64)) {
        free(p->unit);
        p->unit = NULL;
        p->memory = NULL;
        return ps_fail(err, "out of memory allocating %zu parameters (%.1f MB)", total,
                       total * sizeof(real) / 1e6);
    }
    memset(p->memory, 0, total * sizeof(real));
    size_t at = 0;
    for (int u = 0; u < L->n_units; u++) {
        p->unit[u] = p->memory + at;
        at += (L->units[u].size + 15) & ~(size_t)15;
    }
    return 0;
}

void model_params_free(model_params *p) {
    free(p->unit);
    free(p->memory);
    p->unit = NULL;
    p->memory = NULL;
}

real *model_tensor_data(const model_params *p, const model_layout *L, int tensor) {
    const model_tensor *t = &L->tensors[tensor];
    return p->unit[t->unit] + t->offset;
}

static int is_block_output_projection(const char *name) {
    return strstr(name, "attention.wo.") != NULL || strstr(name, "feed_forward.w2.") != NULL;
}

void model_init_weights(model_params *p, const model_layout *L, uint64_t seed) {
    double out_scale = 1.0 / sqrt(2.0 * L->cfg.layers);
    for (int i = 0; i < L->n_tensors; i++) {
        const model_tensor *t = &L->tensors[i];
        real *w = model_tensor_data(p, L, i);
        long count = (long)t->rows * t->cols;
        if (t->is_norm) {
            for (long j = 0; j < count; j++) w[j] = 1;
            continue;
        }
        double std = L->cfg.init_std * (is_block_output_projection(t->name) ? out_scale : 1.0);
        uint64_t key = rng_key(seed, t->name);
#pragma omp parallel for schedule(static)
        for (long j = 0; j < count; j++) w[j] = (real)(std * rng_normal(key, (uint64_t)j));
    }
}

/* ----------------------------------------------------------- activations */

struct model_activations {
    int batch, seq;
    size_t n; /* batch * seq */
    /* Saved for backward, per layer l (arrays of layers blocks each): */
    real *x;      /* [layers + 1][n][D] residual stream entering block l; x[layers] leaves the last */
    real *x_mid;  /* [layers][n][D] after the attention residual */
    real *ln1, *ln2;     /* [layers][n][D] normed inputs of attention and feed-forward */
    real *rstd1, *rstd2; /* [layers][n] */
    real *qkv;    /* [layers][n][qkv_dim] after rope */
    real *probs;  /* [layers][batch][heads][seq][seq] */
    real *att;    /* [layers][n][heads * hd] */
    real *h13;    /* [layers][n][2F] */
    real *hs;     /* [layers][n][F] swiglu output */
    real *lnf, *rstdf; /* [n][D], [n] */
    real *logits;      /* [n][V]; holds dlogits after backward */
    /* Backward scratch, one layer's worth: */
    real *dx, *dln, *dqkv, *datt, *dh13, *dhs, *att_scratch;
    int *pos; /* [n] position of each row within its sequence */
    real *memory;
};

model_activations *model_activations_alloc(const model_layout *L, int batch, int seq, ps_error *err) {
    const model_config *c = &L->cfg;
    if (seq > c->context) {
        ps_fail(err, "sequence length %d exceeds model.context %d", seq, c->context);
        return NULL;
    }
    model_activations *a = calloc(1, sizeof *a);
    if (!a) {
        ps_fail(err, "out of memory for activations");
        return NULL;
    }
    size_t n = (size_t)batch * seq, Ly = (size_t)c->layers, D = (size_t)c->dim, F = (size_t)c->ffn_dim;
    size_t HD = (size_t)c->heads * L->head_dim, QKV = (size_t)L->qkv_dim, V = (size_t)c->vocab;
    size_t probs = (size_t)batch * c->heads * seq * seq;
    struct { real **ptr; size_t count; } parts[] = {
        {&a->x, (Ly + 1) * n * D}, {&a->x_mid, Ly * n * D}, {&a->ln1, Ly * n * D}, {&a->ln2, Ly * n * D},
        {&a->rstd1, Ly * n}, {&a->rstd2, Ly * n}, {&a->qkv, Ly * n * QKV}, {&a->probs, Ly * probs},
        {&a->att, Ly * n * HD}, {&a->h13, Ly * n * 2 * F}, {&a->hs, Ly * n * F}, {&a->lnf, n * D},
        {&a->rstdf, n}, {&a->logits, n * V}, {&a->dx, n * D}, {&a->dln, n * D}, {&a->dqkv, n * QKV},
        {&a->datt, n * HD}, {&a->dh13, n * 2 * F}, {&a->dhs, n * F}, {&a->att_scratch, probs},
    };
    size_t total = 0, n_parts = sizeof parts / sizeof parts[0];
    for (size_t i = 0; i < n_parts; i++) total += (parts[i].count + 15) & ~(size_t)15;
    if (posix_memalign((void **)&a->memory, 64, total * sizeof(real)) || !(a->pos = malloc(n * sizeof(int)))) {
        ps_fail(err, "out of memory for activations (%.1f MB for batch %d x seq %d)", total * sizeof(real) / 1e6,
                batch, seq);
        model_activations_free(a);
        return NULL;
    }
    real *at = a->memory;
    for (size_t i = 0; i < n_parts; i++) {
        *parts[i].ptr = at;
        at += (parts[i].count + 15) & ~(size_t)15;
    }
    a->batch = batch;
    a->seq = seq;
    a->n = n;
    for (size_t i = 0; i < n; i++) a->pos[i] = (int)(i % (size_t)seq);
    return a;
}

void model_activations_free(model_activations *a) {
    if (!a) return;
    free(a->memory);
    free(a->pos);
    free(a);
}

const real *model_logits(const model_activations *a) { return a->logits; }

/* ----------------------------------------------------------------- model */

int model_init(model *m, const model_config *cfg, const backend_ops *ops, ps_error *err) {
    memset(m, 0, sizeof *m);
    if (model_layout_init(&m->layout, cfg, err)) return -1;
    m->ops = ops;
    int half = m->layout.head_dim / 2;
    m->rope_cos_sin = malloc((size_t)cfg->context * half * 2 * sizeof(real));
    if (!m->rope_cos_sin) {
        model_free(m);
        return ps_fail(err, "out of memory for the RoPE table");
    }
    /* freq_i = theta^(-2i / head_dim), angles in double for accuracy at long contexts. */
    for (int pos = 0; pos < cfg->context; pos++)
        for (int i = 0; i < half; i++) {
            double angle = pos * pow(cfg->rope_theta, -2.0 * i / m->layout.head_dim);
            m->rope_cos_sin[((size_t)pos * half + i) * 2 + 0] = (real)cos(angle);
            m->rope_cos_sin[((size_t)pos * half + i) * 2 + 1] = (real)sin(angle);
        }
    return 0;
}

void model_free(model *m) {
    model_layout_free(&m->layout);
    free(m->rope_cos_sin);
    m->rope_cos_sin = NULL;
}

/* Pointers to one block's tensors (the layout puts them in this order). */
typedef struct block_params {
    real *attn_norm, *wqkv, *wo, *ffn_norm, *w13, *w2;
} block_params;

static block_params block_view(const model_params *p, const model_layout *L, int layer) {
    const model_config *c = &L->cfg;
    size_t D = (size_t)c->dim, HD = (size_t)c->heads * L->head_dim, F = (size_t)c->ffn_dim;
    real *u = p->unit[1 + layer];
    block_params b;
    b.attn_norm = u;
    b.wqkv = b.attn_norm + D;
    b.wo = b.wqkv + (size_t)L->qkv_dim * D;
    b.ffn_norm = b.wo + D * HD;
    b.w13 = b.ffn_norm + D;
    b.w2 = b.w13 + 2 * F * D;
    return b;
}

static real *embedding_of(const model_params *p) { return p->unit[0]; }
static real *final_norm_of(const model_params *p, const model_layout *L) { return p->unit[L->n_units - 1]; }
static real *head_of(const model_params *p, const model_layout *L) {
    return L->cfg.tied_head ? p->unit[0] : p->unit[L->n_units - 1] + L->cfg.dim;
}

double model_forward(model *m, const model_params *P, model_activations *a, const int *tokens, const int *targets,
                     int batch, int seq) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    int n = batch * seq, D = c->dim, F = c->ffn_dim, HD = c->heads * L->head_dim, QKV = L->qkv_dim;
    size_t nD = (size_t)n * D, probs = (size_t)batch * c->heads * seq * seq;
    float eps = (float)c->norm_eps;

    ops->embedding_forward(a->x, tokens, embedding_of(P), n, D);
    for (int l = 0; l < c->layers; l++) {
        block_params w = block_view(P, L, l);
        real *x = a->x + l * nD, *x_mid = a->x_mid + l * nD, *x_out = a->x + (l + 1) * nD;
        real *ln1 = a->ln1 + l * nD, *ln2 = a->ln2 + l * nD;
        real *qkv = a->qkv + (size_t)l * n * QKV, *att = a->att + (size_t)l * n * HD;
        real *h13 = a->h13 + (size_t)l * n * 2 * F, *hs = a->hs + (size_t)l * n * F;

        ops->rmsnorm_forward(ln1, a->rstd1 + (size_t)l * n, x, w.attn_norm, n, D, eps);
        ops->matmul_forward(qkv, ln1, w.wqkv, n, D, QKV);
        ops->rope_forward(qkv, m->rope_cos_sin, a->pos, n, QKV, c->heads + c->kv_heads, L->head_dim);
        ops->attention_forward(att, a->probs + l * probs, qkv, batch, seq, c->heads, c->kv_heads, L->head_dim);
        ops->matmul_forward(x_mid, att, w.wo, n, HD, D);
        ops->residual_add(x_mid, x_mid, x, nD);

        ops->rmsnorm_forward(ln2, a->rstd2 + (size_t)l * n, x_mid, w.ffn_norm, n, D, eps);
        ops->matmul_forward(h13, ln2, w.w13, n, D, 2 * F);
        ops->swiglu_forward(hs, h13, n, F);
        ops->matmul_forward(x_out, hs, w.w2, n, F, D);
        ops->residual_add(x_out, x_out, x_mid, nD);
    }
    ops->rmsnorm_forward(a->lnf, a->rstdf, a->x + c->layers * nD, final_norm_of(P, L), n, D, eps);
    ops->matmul_forward(a->logits, a->lnf, head_of(P, L), n, D, c->vocab);
    if (!targets) return 0;
    int n_valid = 0;
    double loss_sum = ops->cross_entropy(a->logits, targets, n, c->vocab, -1, 0, &n_valid);
    return n_valid ? loss_sum / n_valid : 0;
}

void model_backward(model *m, const model_params *P, model_params *G, model_activations *a, const int *tokens,
                    const int *targets, int batch, int seq, real loss_scale) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    int n = batch * seq, D = c->dim, F = c->ffn_dim, HD = c->heads * L->head_dim, QKV = L->qkv_dim;
    size_t nD = (size_t)n * D, probs = (size_t)batch * c->heads * seq * seq;

    /* d(mean loss)/dlogits, in place over the logits. Counting the valid rows
     * first keeps the scale exact when targets are masked. */
    int n_valid = 0;
    for (int i = 0; i < n; i++) n_valid += targets[i] >= 0 && targets[i] < c->vocab;
    int counted = 0;
    ops->cross_entropy(a->logits, targets, n, c->vocab, -1, n_valid ? loss_scale / n_valid : 0, &counted);

    ops->matmul_backward(a->dln, head_of(G, L), a->logits, a->lnf, head_of(P, L), n, D, c->vocab);
    ops->zero(a->dx, nD);
    ops->rmsnorm_backward(a->dx, final_norm_of(G, L), a->dln, a->x + c->layers * nD, final_norm_of(P, L), a->rstdf,
                          n, D);
    for (int l = c->layers - 1; l >= 0; l--) {
        block_params w = block_view(P, L, l), g = block_view(G, L, l);
        real *x = a->x + l * nD, *x_mid = a->x_mid + l * nD;
        real *ln1 = a->ln1 + l * nD, *ln2 = a->ln2 + l * nD;
        real *qkv = a->qkv + (size_t)l * n * QKV, *att = a->att + (size_t)l * n * HD;
        real *h13 = a->h13 + (size_t)l * n * 2 * F, *hs = a->hs + (size_t)l * n * F;

        /* x_out = x_mid + w2(swiglu(w13 ln2)): dx holds d x_out, the skip path carries it to d x_mid. */
        ops->matmul_backward(a->dhs, g.w2, a->dx, hs, w.w2, n, F, D);
        ops->swiglu_backward(a->dh13, a->dhs, h13, n, F);
        ops->matmul_backward(a->dln, g.w13, a->dh13, ln2, w.w13, n, D, 2 * F);
        ops->rmsnorm_backward(a->dx, g.ffn_norm, a->dln, x_mid, w.ffn_norm, a->rstd2 + (size_t)l * n, n, D);

        /* x_mid = x + wo(attention(rope(wqkv ln1))). */
        ops->matmul_backward(a->datt, g.wo, a->dx, att, w.wo, n, HD, D);
        ops->attention_backward(a->dqkv, a->att_scratch, a->datt, a->probs + l * probs, qkv, batch, seq, c->heads,
                                c->kv_heads, L->head_dim);
        ops->rope_backward(a->dqkv, m->rope_cos_sin, a->pos, n, QKV, c->heads + c->kv_heads, L->head_dim);
        ops->matmul_backward(a->dln, g.wqkv, a->dqkv, ln1, w.wqkv, n, D, QKV);
        ops->rmsnorm_backward(a->dx, g.attn_norm, a->dln, x, w.attn_norm, a->rstd1 + (size_t)l * n, n, D);
    }
    ops->embedding_backward(embedding_of(G), a->dx, tokens, n, D);
}

double model_train_flops(const model_layout *L, int seq, double n_tokens) {
    /* PaLM's convention (appendix B), the one MFU figures are quoted in:
     * 6 FLOPs per matmul weight per token (forward 2, backward 4), plus
     * 12 * layers * dim * seq per token for the attention score and value
     * products, counted without the causal halving. The embedding lookup is
     * free; the output head is a matmul and counts. */
    const model_config *c = &L->cfg;
    double matmul_weights = (double)c->layers * ((double)c->dim * L->qkv_dim + (double)c->heads * L->head_dim * c->dim +
                                                 3.0 * c->dim * c->ffn_dim) +
                            (double)c->vocab * c->dim;
    return n_tokens * (6.0 * matmul_weights + 12.0 * c->layers * (double)c->dim * seq);
}
