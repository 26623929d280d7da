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
    for (int u = 0; u < L->n_units; u++) {
        L->n_params += L->units[u].size;
        L->units[u].trainable = 1; /* pretraining trains everything; a stage freezes units explicitly */
    }
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

void model_init_range(const model_layout *L, int unit, size_t begin, size_t end, real *dst, uint64_t seed) {
    double out_scale = 1.0 / sqrt(2.0 * L->cfg.layers);
    for (int i = 0; i < L->n_tensors; i++) {
        const model_tensor *t = &L->tensors[i];
        size_t t_begin = t->offset, t_end = t->offset + (size_t)t->rows * t->cols;
        if (t->unit != unit || t_end <= begin || t_begin >= end) continue;
        size_t lo = t_begin > begin ? t_begin : begin, hi = t_end < end ? t_end : end;
        real *w = dst + (lo - begin);
        long count = (long)(hi - lo), first = (long)(lo - t_begin); /* index within the tensor */
        if (t->is_norm) {
            for (long j = 0; j < count; j++) w[j] = 1;
            continue;
        }
        double std = L->cfg.init_std * (is_block_output_projection(t->name) ? out_scale : 1.0);
        uint64_t key = rng_key(seed, t->name);
#pragma omp parallel for schedule(static)
        for (long j = 0; j < count; j++) w[j] = (real)(std * rng_normal(key, (uint64_t)(first + j)));
    }
}

void model_init_weights(model_params *p, const model_layout *L, uint64_t seed) {
    for (int u = 0; u < L->n_units; u++) model_init_range(L, u, 0, L->units[u].size, p->unit[u], seed);
}

/* ----------------------------------------------------------- activations */

/* Saved activations. Per-block buffers have `slots` copies: one per layer, or
 * a single one reused by every layer when blocks are recomputed in backward. */
struct model_activations {
    int batch, seq, recompute;
    size_t n; /* batch * seq */
    real *x;      /* [layers + 1][n][D] residual stream entering block l; x[layers] leaves the last */
    real *x_mid;  /* [slots][n][D] after the attention residual */
    real *ln1, *ln2;     /* [slots][n][D] normed inputs of attention and feed-forward */
    real *rstd1, *rstd2; /* [slots][n] */
    real *qkv;    /* [slots][n][qkv_dim] after rope */
    real *probs;  /* [slots][batch][heads][seq][seq] */
    real *att;    /* [slots][n][heads * hd] */
    real *h13;    /* [slots][n][2F] */
    real *hs;     /* [slots][n][F] swiglu output */
    real *lnf, *rstdf; /* [n][D], [n] */
    real *logits;      /* [n][V]; holds dlogits after backward */
    /* Backward scratch, one block's worth: */
    real *dx, *dln, *dqkv, *datt, *dh13, *dhs, *att_scratch;
    int *pos; /* [n] position of each row within its sequence */
    real *memory;
};

typedef struct activation_part {
    real **ptr;
    size_t count;
} activation_part;

/* The one list of activation buffers and their sizes; alloc and the planner both read it. */
static size_t activation_parts(const model_layout *L, int batch, int seq, int recompute, model_activations *a,
                               activation_part *parts) {
    const model_config *c = &L->cfg;
    size_t n = (size_t)batch * seq, Ly = (size_t)c->layers, D = (size_t)c->dim, F = (size_t)c->ffn_dim;
    size_t HD = (size_t)c->heads * L->head_dim, QKV = (size_t)L->qkv_dim, V = (size_t)c->vocab;
    size_t probs = (size_t)batch * c->heads * seq * seq, slots = recompute ? 1 : Ly;
    size_t k = 0;
#define PART(field, elements) parts[k++] = (activation_part){&a->field, (elements)}
    PART(x, (Ly + 1) * n * D);
    PART(x_mid, slots * n * D);
    PART(ln1, slots * n * D);
    PART(ln2, slots * n * D);
    PART(rstd1, slots * n);
    PART(rstd2, slots * n);
    PART(qkv, slots * n * QKV);
    PART(probs, slots * probs);
    PART(att, slots * n * HD);
    PART(h13, slots * n * 2 * F);
    PART(hs, slots * n * F);
    PART(lnf, n * D);
    PART(rstdf, n);
    PART(logits, n * V);
    PART(dx, n * D);
    PART(dln, n * D);
    PART(dqkv, n * QKV);
    PART(datt, n * HD);
    PART(dh13, n * 2 * F);
    PART(dhs, n * F);
    PART(att_scratch, probs);
#undef PART
    return k;
}

#define ACTIVATION_PARTS_MAX 32
static size_t padded(size_t count) { return (count + 15) & ~(size_t)15; } /* 64-byte aligned parts */

size_t model_activations_bytes(const model_layout *L, int batch, int seq, int recompute) {
    model_activations scratch;
    activation_part parts[ACTIVATION_PARTS_MAX];
    size_t n_parts = activation_parts(L, batch, seq, recompute, &scratch, parts), total = 0;
    for (size_t i = 0; i < n_parts; i++) total += padded(parts[i].count);
    return total * sizeof(real) + (size_t)batch * seq * sizeof(int);
}

model_activations *model_activations_alloc(const model_layout *L, int batch, int seq, int recompute, ps_error *err) {
    if (seq > L->cfg.context) {
        ps_fail(err, "sequence length %d exceeds model.context %d", seq, L->cfg.context);
        return NULL;
    }
    model_activations *a = calloc(1, sizeof *a);
    if (!a) {
        ps_fail(err, "out of memory for activations");
        return NULL;
    }
    activation_part parts[ACTIVATION_PARTS_MAX];
    size_t n_parts = activation_parts(L, batch, seq, recompute, a, parts), total = 0, n = (size_t)batch * seq;
    for (size_t i = 0; i < n_parts; i++) total += padded(parts[i].count);
    if (posix_memalign((void **)&a->memory, 64, total * sizeof(real)) || !(a->pos = malloc(n * sizeof(int)))) {
        ps_fail(err, "out of memory for activations (%.1f MB for batch %d x seq %d)", total * sizeof(real) / 1e6,
                batch, seq);
        model_activations_free(a);
        return NULL;
    }
    real *at = a->memory;
    for (size_t i = 0; i < n_parts; i++) {
        *parts[i].ptr = at;
        at += padded(parts[i].count);
    }
    a->batch = batch;
    a->seq = seq;
    a->n = n;
    a->recompute = recompute;
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

static void hook_acquire(const model *m, int unit, int backward) {
    if (m->hooks && m->hooks->acquire) m->hooks->acquire(m->hooks->ctx, unit, backward);
}
static void hook_release(const model *m, int unit, int backward) {
    if (m->hooks && m->hooks->release) m->hooks->release(m->hooks->ctx, unit, backward);
}
static void hook_grad_ready(const model *m, int unit) {
    if (m->hooks && m->hooks->grad_ready) m->hooks->grad_ready(m->hooks->ctx, unit);
}

/* One block's saved activations: slot l, or the single shared slot when recomputing. */
typedef struct block_acts {
    real *x, *x_mid, *x_out, *ln1, *ln2, *rstd1, *rstd2, *qkv, *probs, *att, *h13, *hs;
} block_acts;

static block_acts block_slot(const model *m, const model_activations *a, int l) {
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    size_t n = a->n, D = (size_t)c->dim, s = a->recompute ? 0 : (size_t)l;
    size_t probs = (size_t)a->batch * c->heads * a->seq * a->seq;
    block_acts b;
    b.x = a->x + l * n * D;
    b.x_out = a->x + (l + 1) * n * D;
    b.x_mid = a->x_mid + s * n * D;
    b.ln1 = a->ln1 + s * n * D;
    b.ln2 = a->ln2 + s * n * D;
    b.rstd1 = a->rstd1 + s * n;
    b.rstd2 = a->rstd2 + s * n;
    b.qkv = a->qkv + s * n * L->qkv_dim;
    b.probs = a->probs + s * probs;
    b.att = a->att + s * n * c->heads * L->head_dim;
    b.h13 = a->h13 + s * n * 2 * c->ffn_dim;
    b.hs = a->hs + s * n * c->ffn_dim;
    return b;
}

/* Block l forward. with_output = 0 (recompute in backward) stops before the
 * last projection: the backward pass needs everything but the block's output. */
static void block_forward(const model *m, const block_params *w, const model_activations *a, block_acts *b,
                          int with_output) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    int n = (int)a->n, D = c->dim, F = c->ffn_dim, HD = c->heads * L->head_dim, QKV = L->qkv_dim;
    size_t nD = a->n * D;
    float eps = (float)c->norm_eps;
    ops->rmsnorm_forward(b->ln1, b->rstd1, b->x, w->attn_norm, n, D, eps);
    ops->matmul_forward(b->qkv, b->ln1, w->wqkv, n, D, QKV);
    ops->rope_forward(b->qkv, m->rope_cos_sin, a->pos, n, QKV, c->heads + c->kv_heads, L->head_dim);
    ops->attention_forward(b->att, b->probs, b->qkv, a->batch, a->seq, c->heads, c->kv_heads, L->head_dim);
    ops->matmul_forward(b->x_mid, b->att, w->wo, n, HD, D);
    ops->residual_add(b->x_mid, b->x_mid, b->x, nD);

    ops->rmsnorm_forward(b->ln2, b->rstd2, b->x_mid, w->ffn_norm, n, D, eps);
    ops->matmul_forward(b->h13, b->ln2, w->w13, n, D, 2 * F);
    ops->swiglu_forward(b->hs, b->h13, n, F);
    if (!with_output) return;
    ops->matmul_forward(b->x_out, b->hs, w->w2, n, F, D);
    ops->residual_add(b->x_out, b->x_out, b->x_mid, nD);
}

/* Block l backward: a->dx holds d(block output) on entry and d(block input) on exit. */
static void block_backward(const model *m, const block_params *w, block_params *g, model_activations *a,
                           const block_acts *b) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    int n = (int)a->n, D = c->dim, F = c->ffn_dim, HD = c->heads * L->head_dim, QKV = L->qkv_dim;
    /* x_out = x_mid + w2(swiglu(w13 ln2)): the skip path carries dx on to d x_mid. */
    ops->matmul_backward(a->dhs, g->w2, a->dx, b->hs, w->w2, n, F, D);
    ops->swiglu_backward(a->dh13, a->dhs, b->h13, n, F);
    ops->matmul_backward(a->dln, g->w13, a->dh13, b->ln2, w->w13, n, D, 2 * F);
    ops->rmsnorm_backward(a->dx, g->ffn_norm, a->dln, b->x_mid, w->ffn_norm, b->rstd2, n, D);
    /* x_mid = x + wo(attention(rope(wqkv ln1))). */
    ops->matmul_backward(a->datt, g->wo, a->dx, b->att, w->wo, n, HD, D);
    ops->attention_backward(a->dqkv, a->att_scratch, a->datt, b->probs, b->qkv, a->batch, a->seq, c->heads,
                            c->kv_heads, L->head_dim);
    ops->rope_backward(a->dqkv, m->rope_cos_sin, a->pos, n, QKV, c->heads + c->kv_heads, L->head_dim);
    ops->matmul_backward(a->dln, g->wqkv, a->dqkv, b->ln1, w->wqkv, n, D, QKV);
    ops->rmsnorm_backward(a->dx, g->attn_norm, a->dln, b->x, w->attn_norm, b->rstd1, n, D);
}

double model_forward(model *m, const model_params *P, model_activations *a, const int *tokens, const int *targets,
                     int batch, int seq) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    int n = batch * seq, D = c->dim, head = L->n_units - 1;
    if (n != (int)a->n) return NAN; /* activations were sized for another batch */

    hook_acquire(m, 0, 0);
    ops->embedding_forward(a->x, tokens, embedding_of(P), n, D);
    hook_release(m, 0, 0);
    for (int l = 0; l < c->layers; l++) {
        hook_acquire(m, 1 + l, 0);
        block_params w = block_view(P, L, l);
        block_acts b = block_slot(m, a, l);
        block_forward(m, &w, a, &b, 1);
        hook_release(m, 1 + l, 0);
    }
    hook_acquire(m, head, 0);
    if (c->tied_head) hook_acquire(m, 0, 0);
    ops->rmsnorm_forward(a->lnf, a->rstdf, a->x + (size_t)c->layers * n * D, final_norm_of(P, L), n, D,
                         (float)c->norm_eps);
    ops->matmul_forward(a->logits, a->lnf, head_of(P, L), n, D, c->vocab);
    if (c->tied_head) hook_release(m, 0, 0);
    hook_release(m, head, 0);
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
    int n = batch * seq, D = c->dim, head = L->n_units - 1;
    size_t nD = (size_t)n * D;

    /* d(mean loss)/dlogits, in place over the logits. Counting the valid rows
     * first keeps the scale exact when targets are masked. */
    int n_valid = 0;
    for (int i = 0; i < n; i++) n_valid += targets[i] >= 0 && targets[i] < c->vocab;
    int counted = 0;
    ops->cross_entropy(a->logits, targets, n, c->vocab, -1, n_valid ? loss_scale / n_valid : 0, &counted);

    hook_acquire(m, head, 1);
    if (c->tied_head) hook_acquire(m, 0, 1);
    ops->matmul_backward(a->dln, head_of(G, L), a->logits, a->lnf, head_of(P, L), n, D, c->vocab);
    ops->zero(a->dx, nD);
    ops->rmsnorm_backward(a->dx, final_norm_of(G, L), a->dln, a->x + c->layers * nD, final_norm_of(P, L), a->rstdf,
                          n, D);
    hook_grad_ready(m, head);
    hook_release(m, head, 1);
    for (int l = c->layers - 1; l >= 0; l--) {
        hook_acquire(m, 1 + l, 1);
        block_params w = block_view(P, L, l), g = block_view(G, L, l);
        block_acts b = block_slot(m, a, l);
        if (a->recompute) block_forward(m, &w, a, &b, 0);
        block_backward(m, &w, &g, a, &b);
        hook_grad_ready(m, 1 + l);
        hook_release(m, 1 + l, 1);
    }
    if (!c->tied_head) hook_acquire(m, 0, 1);
    ops->embedding_backward(embedding_of(G), a->dx, tokens, n, D);
    hook_grad_ready(m, 0);
    hook_release(m, 0, 1);
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
