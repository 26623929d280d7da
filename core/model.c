/* model.c - the Llama-3-style decoder, written against the backend table. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ---------------------------------------------------------------- layout */

/* Tables grow as tensors and units are added: a stage appends its own units
 * (a projector) after the decoder's. */
static int grow(void **p, int count, size_t elem) {
    if (count & (count - 1)) return 0; /* capacity is the next power of two */
    void *q = realloc(*p, (size_t)(count ? 2 * count : 1) * elem);
    if (!q) return -1;
    *p = q;
    return 0;
}

static int add_tensor(model_layout *L, const char *name, int unit, int rows, int cols, int kind) {
    if (grow((void **)&L->tensors, L->n_tensors, sizeof *L->tensors)) return -1;
    model_tensor *t = &L->tensors[L->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->unit = unit;
    t->offset = L->units[unit].size;
    t->rows = rows;
    t->cols = cols;
    t->is_norm = kind == MODEL_TENSOR_NORM;
    t->is_bias = kind == MODEL_TENSOR_BIAS;
    L->units[unit].size += (size_t)rows * cols;
    L->n_params += (size_t)rows * cols;
    return 0;
}

static int add_unit(model_layout *L) {
    if (grow((void **)&L->units, L->n_units, sizeof *L->units)) return -1;
    L->units[L->n_units] = (model_unit){.size = 0, .trainable = 1};
    return L->n_units++;
}

int model_layout_add_unit(model_layout *L, ps_error *err) {
    int u = add_unit(L);
    if (u < 0) ps_fail(err, "out of memory adding a unit to the model layout");
    return u;
}

int model_layout_add_tensor(model_layout *L, const char *name, int unit, int rows, int cols, int kind,
                            ps_error *err) {
    if (unit < L->llm_units || unit >= L->n_units || rows <= 0 || cols <= 0)
        return ps_fail(err, "tensor %s: unit %d or shape [%d, %d] is invalid (extra units start at %d)", name, unit,
                       rows, cols, L->llm_units);
    if (model_layout_find(L, name) >= 0) return ps_fail(err, "tensor %s is already in the model layout", name);
    if (add_tensor(L, name, unit, rows, cols, kind)) return ps_fail(err, "out of memory adding tensor %s", name);
    return 0;
}

void model_layout_set_trainable(model_layout *L, int first, int end, int trainable) {
    for (int u = first < 0 ? 0 : first; u < end && u < L->n_units; u++) L->units[u].trainable = trainable != 0;
}

void model_layout_count(const model_layout *L, model_param_counts *c) {
    memset(c, 0, sizeof *c);
    for (int u = 0; u < L->n_units; u++) {
        size_t n = L->units[u].size;
        if (L->units[u].trainable) {
            c->trainable += n;
            c->trainable_units++;
        } else {
            c->frozen += n;
            c->frozen_units++;
        }
        if (u >= L->llm_units) {
            c->extra += n;
            c->extra_units++;
        }
    }
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
    int hd = L->head_dim, rc = 0;
    for (int u = 0; u < cfg->layers + 2; u++) rc |= add_unit(L) < 0;
    L->llm_units = L->n_units;
    char name[MODEL_TENSOR_NAME_MAX];
    rc |= add_tensor(L, "tok_embeddings.weight", 0, V, D, MODEL_TENSOR_MATRIX);
    for (int l = 0; l < cfg->layers && !rc; l++) {
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
            rc |= add_tensor(L, name, u, rows[p], cols[p], parts[p].norm ? MODEL_TENSOR_NORM : MODEL_TENSOR_MATRIX);
        }
    }
    int last = L->llm_units - 1;
    rc |= add_tensor(L, "norm.weight", last, D, 1, MODEL_TENSOR_NORM);
    if (!cfg->tied_head) rc |= add_tensor(L, "output.weight", last, V, D, MODEL_TENSOR_MATRIX);
    if (rc) {
        model_layout_free(L);
        return ps_fail(err, "out of memory for the model layout");
    }
    /* Pretraining trains everything (add_unit's default); a stage freezes units explicitly. */
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

/* One allocation for the units (all, or the trainable ones only), each unit
 * 64-byte aligned; the others stay NULL. */
static int alloc_units(model_params *p, const model_layout *L, int trainable_only, ps_error *err) {
    memset(p, 0, sizeof *p);
    size_t total = 0;
    for (int u = 0; u < L->n_units; u++)
        if (!trainable_only || L->units[u].trainable) total += (L->units[u].size + 15) & ~(size_t)15;
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
        if (trainable_only && !L->units[u].trainable) continue;
        p->unit[u] = p->memory + at;
        at += (L->units[u].size + 15) & ~(size_t)15;
    }
    return 0;
}

int model_params_alloc(model_params *p, const model_layout *L, ps_error *err) { return alloc_units(p, L, 0, err); }

int model_grads_alloc(model_params *g, const model_layout *L, ps_error *err) { return alloc_units(g, L, 1, err); }

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
        if (t->is_norm || t->is_bias) {
            for (long j = 0; j < count; j++) w[j] = t->is_norm ? 1 : 0;
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
 * a single one reused by every layer when blocks are recomputed in backward
 * (and in forward-only mode, which also keeps only two residual buffers and
 * no backward scratch). */
struct model_activations {
    int batch, seq, recompute, forward_only;
    size_t n; /* batch * seq */
    real *x;      /* [layers + 1][n][D] residual stream entering block l; x[layers] leaves the last (forward-only: [2]) */
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
    /* The last forward's batch, as the passes use it: */
    int *pos;    /* [n] position of each row (RoPE) */
    int *tok;    /* [n] token ids; -1 for embedding rows and padding (no table row) */
    int *tgt;    /* [n] targets; -1 for padding */
    int *sid;    /* [n] sample ids (used when has_sample) */
    int *eidx;   /* [n] row of `embeds` a row reads, or -1 */
    int *slot;   /* [n] KV cache row of each row, or -1 */
    int *klen;   /* [batch] rows each sequence attends to in a decode step */
    int has_sample, n_embeds;
    real *memory;
    int *ints;
};

enum { N_INT_ARRAYS = 6 }; /* pos, tok, tgt, sid, eidx, slot ([n] each); klen is [batch] more */

typedef struct activation_part {
    real **ptr;
    size_t count;
} activation_part;

enum { ACT_TRAIN = 0, ACT_RECOMPUTE = 1, ACT_FORWARD = 2 };

/* The one list of activation buffers and their sizes; alloc and the planner both read it. */
static size_t activation_parts(const model_layout *L, int batch, int seq, int mode, model_activations *a,
                               activation_part *parts) {
    const model_config *c = &L->cfg;
    size_t n = (size_t)batch * seq, Ly = (size_t)c->layers, D = (size_t)c->dim, F = (size_t)c->ffn_dim;
    size_t HD = (size_t)c->heads * L->head_dim, QKV = (size_t)L->qkv_dim, V = (size_t)c->vocab;
    size_t probs = (size_t)batch * c->heads * seq * seq, slots = mode == ACT_TRAIN ? Ly : 1;
    size_t back = mode == ACT_FORWARD ? 0 : 1, residual = mode == ACT_FORWARD ? 2 : Ly + 1;
    size_t k = 0;
#define PART(field, elements) parts[k++] = (activation_part){&a->field, (elements)}
    PART(x, residual * n * D);
    PART(x_mid, slots * n * D);
    PART(ln1, slots * n * D);
    PART(ln2, slots * n * D);
    PART(rstd1, slots * n);
    PART(rstd2, slots * n);
    PART(qkv, slots * n * QKV);
    PART(probs, back * slots * probs); /* forward-only attention keeps no probabilities */
    PART(att, slots * n * HD);
    PART(h13, slots * n * 2 * F);
    PART(hs, slots * n * F);
    PART(lnf, n * D);
    PART(rstdf, n);
    PART(logits, n * V);
    PART(dx, back * n * D);
    PART(dln, back * n * D);
    PART(dqkv, back * n * QKV);
    PART(datt, back * n * HD);
    PART(dh13, back * n * 2 * F);
    PART(dhs, back * n * F);
    PART(att_scratch, back * probs);
#undef PART
    return k;
}

#define ACTIVATION_PARTS_MAX 32
static size_t padded(size_t count) { return (count + 15) & ~(size_t)15; } /* 64-byte aligned parts */

static size_t ints_of(int batch, int seq) { return (size_t)N_INT_ARRAYS * batch * seq + (size_t)batch; }

static size_t bytes_of(const model_layout *L, int batch, int seq, int mode) {
    model_activations scratch;
    activation_part parts[ACTIVATION_PARTS_MAX];
    size_t n_parts = activation_parts(L, batch, seq, mode, &scratch, parts), total = 0;
    for (size_t i = 0; i < n_parts; i++) total += padded(parts[i].count);
    return total * sizeof(real) + ints_of(batch, seq) * sizeof(int);
}

size_t model_activations_bytes(const model_layout *L, int batch, int seq, int recompute) {
    return bytes_of(L, batch, seq, recompute ? ACT_RECOMPUTE : ACT_TRAIN);
}

size_t model_activations_forward_bytes(const model_layout *L, int batch, int seq) {
    return bytes_of(L, batch, seq, ACT_FORWARD);
}

static model_activations *alloc_mode(const model_layout *L, int batch, int seq, int mode, ps_error *err) {
    if (batch <= 0 || seq <= 0 || seq > L->cfg.context) {
        ps_fail(err, "batch %d x sequence length %d does not fit model.context %d", batch, seq, L->cfg.context);
        return NULL;
    }
    if (mode == ACT_FORWARD && L->head_dim > 512) {
        ps_fail(err, "forward-only passes support head_dim <= 512 (%d)", L->head_dim);
        return NULL;
    }
    model_activations *a = calloc(1, sizeof *a);
    if (!a) {
        ps_fail(err, "out of memory for activations");
        return NULL;
    }
    activation_part parts[ACTIVATION_PARTS_MAX];
    size_t n_parts = activation_parts(L, batch, seq, mode, a, parts), total = 0, n = (size_t)batch * seq;
    for (size_t i = 0; i < n_parts; i++) total += padded(parts[i].count);
    if (posix_memalign((void **)&a->memory, 64, total * sizeof(real)) ||
        !(a->ints = malloc(ints_of(batch, seq) * sizeof(int)))) {
        ps_fail(err, "out of memory for activations (%.1f MB for batch %d x seq %d)", total * sizeof(real) / 1e6,
                batch, seq);
        model_activations_free(a);
        return NULL;
    }
    real *at = a->memory;
    for (size_t i = 0; i < n_parts; i++) {
        *parts[i].ptr = parts[i].count ? at : NULL;
        at += padded(parts[i].count);
    }
    int **arrays[N_INT_ARRAYS] = {&a->pos, &a->tok, &a->tgt, &a->sid, &a->eidx, &a->slot};
    for (int i = 0; i < N_INT_ARRAYS; i++) *arrays[i] = a->ints + (size_t)i * n;
    a->klen = a->ints + (size_t)N_INT_ARRAYS * n;
    a->batch = batch;
    a->seq = seq;
    a->n = n;
    a->recompute = mode != ACT_TRAIN;
    a->forward_only = mode == ACT_FORWARD;
    return a;
}

model_activations *model_activations_alloc(const model_layout *L, int batch, int seq, int recompute, ps_error *err) {
    return alloc_mode(L, batch, seq, recompute ? ACT_RECOMPUTE : ACT_TRAIN, err);
}

model_activations *model_activations_alloc_forward(const model_layout *L, int batch, int seq, ps_error *err) {
    return alloc_mode(L, batch, seq, ACT_FORWARD, err);
}

void model_activations_free(model_activations *a) {
    if (!a) return;
    free(a->memory);
    free(a->ints);
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
static real *final_norm_of(const model_params *p, const model_layout *L) { return p->unit[L->llm_units - 1]; }
static real *head_of(const model_params *p, const model_layout *L) {
    real *u = L->cfg.tied_head ? p->unit[0] : p->unit[L->llm_units - 1];
    return !u || L->cfg.tied_head ? u : u + L->cfg.dim;
}
static int trains(const model *m, int unit) { return m->layout.units[unit].trainable; }

/* A failed hook fills err and makes the pass return -1 before it touches the unit. */
static int hook_acquire(const model *m, int unit, int backward, ps_error *err) {
    if (m->hooks && m->hooks->acquire && m->hooks->acquire(m->hooks->ctx, unit, backward))
        return ps_fail(err, "unit %d could not be gathered for the %s pass", unit, backward ? "backward" : "forward");
    return 0;
}
static void hook_release(const model *m, int unit, int backward) {
    if (m->hooks && m->hooks->release) m->hooks->release(m->hooks->ctx, unit, backward);
}
static int hook_grad_ready(const model *m, int unit, ps_error *err) {
    if (m->hooks && m->hooks->grad_ready && m->hooks->grad_ready(m->hooks->ctx, unit))
        return ps_fail(err, "the gradient of unit %d could not be reduced", unit);
    return 0;
}

/* One block's saved activations: slot l, or the single shared slot when recomputing. */
typedef struct block_acts {
    real *x, *x_mid, *x_out, *ln1, *ln2, *rstd1, *rstd2, *qkv, *probs, *att, *h13, *hs;
} block_acts;

/* The residual stream entering block l (l = layers: leaving the last block).
 * Forward-only activations alternate between two buffers. */
static real *residual(const model *m, const model_activations *a, int l) {
    size_t at = a->forward_only ? (size_t)(l % 2) : (size_t)l;
    return a->x + at * a->n * m->layout.cfg.dim;
}

static block_acts block_slot(const model *m, const model_activations *a, int l) {
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    size_t n = a->n, D = (size_t)c->dim, s = a->recompute ? 0 : (size_t)l;
    size_t probs = (size_t)a->batch * c->heads * a->seq * a->seq;
    block_acts b;
    b.x = residual(m, a, l);
    b.x_out = residual(m, a, l + 1);
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

/* The decode state of the forward in progress (NULL outside model_forward_batch). */
typedef struct cache_use {
    model_kv_cache *cache;
    int mode;
} cache_use;

/* Attention of block l: plain causal, by sample, or against the KV cache. */
static void block_attention(const model *m, const model_activations *a, block_acts *b, int l, const cache_use *cu) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    if (cu && cu->mode != MODEL_CACHE_NONE) {
        model_kv_cache *kc = cu->cache;
        size_t layer = (size_t)l * kc->batch * kc->max_len * kc->kv_dim;
        ops->kv_cache_write(kc->k + layer, kc->v + layer, b->qkv, a->slot, (int)a->n, c->heads, c->kv_heads,
                            L->head_dim);
        if (cu->mode == MODEL_CACHE_STEP) {
            ops->attention_decode(b->att, b->qkv, L->qkv_dim, kc->k + layer, kc->v + layer, a->klen, a->batch,
                                  kc->max_len, c->heads, c->kv_heads, L->head_dim);
            return;
        }
    }
    if (a->forward_only)
        ops->attention_forward_rows(b->att, b->qkv, a->has_sample ? a->sid : NULL, a->batch, a->seq, c->heads,
                                    c->kv_heads, L->head_dim);
    else if (a->has_sample)
        ops->attention_forward_masked(b->att, b->probs, b->qkv, a->sid, a->batch, a->seq, c->heads, c->kv_heads,
                                      L->head_dim);
    else
        ops->attention_forward(b->att, b->probs, b->qkv, a->batch, a->seq, c->heads, c->kv_heads, L->head_dim);
}

/* Forward-only passes take the row-invariant product (see backend.h). */
static void linear(const model *m, const model_activations *a, real *out, const real *in, const real *w, int n,
                   int in_dim, int out_dim) {
    if (a->forward_only)
        m->ops->matmul_forward_rows(out, in, w, n, in_dim, out_dim);
    else
        m->ops->matmul_forward(out, in, w, n, in_dim, out_dim);
}

/* Block l forward. with_output = 0 (recompute in backward) stops before the
 * last projection: the backward pass needs everything but the block's output. */
static void block_forward(const model *m, const block_params *w, const model_activations *a, block_acts *b, int l,
                          const cache_use *cu, int with_output) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    int n = (int)a->n, D = c->dim, F = c->ffn_dim, HD = c->heads * L->head_dim, QKV = L->qkv_dim;
    size_t nD = a->n * D;
    float eps = (float)c->norm_eps;
    ops->rmsnorm_forward(b->ln1, b->rstd1, b->x, w->attn_norm, n, D, eps);
    linear(m, a, b->qkv, b->ln1, w->wqkv, n, D, QKV);
    ops->rope_forward(b->qkv, m->rope_cos_sin, a->pos, n, QKV, c->heads + c->kv_heads, L->head_dim);
    block_attention(m, a, b, l, cu);
    linear(m, a, b->x_mid, b->att, w->wo, n, HD, D);
    ops->residual_add(b->x_mid, b->x_mid, b->x, nD);

    ops->rmsnorm_forward(b->ln2, b->rstd2, b->x_mid, w->ffn_norm, n, D, eps);
    linear(m, a, b->h13, b->ln2, w->w13, n, D, 2 * F);
    ops->swiglu_forward(b->hs, b->h13, n, F);
    if (!with_output) return;
    linear(m, a, b->x_out, b->hs, w->w2, n, F, D);
    ops->residual_add(b->x_out, b->x_out, b->x_mid, nD);
}

/* Block l backward: a->dx holds d(block output) on entry and d(block input)
 * on exit. g's pointers are NULL for a frozen block: no weight gradients. */
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

/* ------------------------------------------------------------ the batch */

static int check_rows(const model *m, const model_batch *bt, ps_error *err) {
    const model_config *c = &m->layout.cfg;
    int n = bt->batch * bt->seq, wants = 0;
    for (int i = 0; i < n; i++) {
        int pad = bt->sample && bt->sample[i] < 0, tok = bt->tokens[i];
        if (tok < -1 || tok >= c->vocab) return ps_fail(err, "batch row %d: token %d is outside [-1, %d)", i, tok, c->vocab);
        if (bt->positions && (bt->positions[i] < 0 || bt->positions[i] >= c->context))
            return ps_fail(err, "batch row %d: position %d is outside [0, model.context %d)", i, bt->positions[i],
                           c->context);
        if (bt->sample && bt->sample[i] < -1) return ps_fail(err, "batch row %d: sample id %d < -1", i, bt->sample[i]);
        if (bt->pool_group && (bt->pool_group[i] < -1 || bt->pool_group[i] >= bt->n_groups))
            return ps_fail(err, "batch row %d: pooling group %d is outside [-1, %d)", i, bt->pool_group[i],
                           bt->n_groups);
        wants += !pad && tok == -1;
    }
    if (wants != bt->n_embeds || (wants && !bt->embeds))
        return ps_fail(err, "the batch has %d embedding rows (token -1) but %d rows in embeds%s", wants, bt->n_embeds,
                       wants && !bt->embeds ? " (embeds is NULL)" : "");
    return 0;
}

static int check_cache(const model_activations *a, const model_batch *bt, ps_error *err) {
    const model_kv_cache *kc = bt->cache;
    if (bt->cache_mode == MODEL_CACHE_NONE) return 0;
    if (!kc || kc->batch != bt->batch) return ps_fail(err, "the KV cache is missing or sized for another batch");
    if (bt->cache_mode == MODEL_CACHE_PREFILL && bt->seq > kc->max_len)
        return ps_fail(err, "a prefill of %d rows exceeds the KV cache's %d", bt->seq, kc->max_len);
    if (bt->cache_mode == MODEL_CACHE_STEP) {
        if (bt->seq != 1 || bt->sample) return ps_fail(err, "a decode step takes one row per sequence, no sample ids");
        for (int b = 0; b < bt->batch; b++)
            if (kc->len[b] < 0 || kc->len[b] >= kc->max_len)
                return ps_fail(err, "sequence %d: the KV cache is full (%d of %d rows)", b, kc->len[b], kc->max_len);
    }
    (void)a;
    return 0;
}

static int check_batch(const model *m, const model_activations *a, const model_batch *bt, ps_error *err) {
    if (bt->batch != a->batch || bt->seq != a->seq)
        return ps_fail(err, "batch [%d, %d] does not match the activations [%d, %d]", bt->batch, bt->seq, a->batch,
                       a->seq);
    if (!bt->tokens) return ps_fail(err, "the batch has no tokens");
    if (bt->log_probs && !bt->targets) return ps_fail(err, "log-probabilities need targets");
    if (bt->hidden && (!bt->pool_group || bt->n_groups <= 0))
        return ps_fail(err, "pooled hidden states need pool_group and n_groups > 0");
    if (check_rows(m, bt, err)) return -1;
    return check_cache(a, bt, err);
}

/* The batch as the passes use it: padding rows lose their token and target,
 * embedding rows get their row of embeds, cache rows their slot. */
static void prepare_rows(model_activations *a, const model_batch *bt) {
    int n = (int)a->n, seq = a->seq, k = 0;
    a->has_sample = bt->sample != NULL;
    for (int i = 0; i < n; i++) {
        int pad = bt->sample && bt->sample[i] < 0, t = i % seq;
        a->pos[i] = bt->positions ? bt->positions[i] : t;
        a->sid[i] = bt->sample ? bt->sample[i] : 0;
        a->tok[i] = pad ? -1 : bt->tokens[i];
        a->eidx[i] = !pad && bt->tokens[i] == -1 ? k++ : -1;
        a->tgt[i] = !bt->targets || pad ? -1 : bt->targets[i];
        a->slot[i] = -1;
    }
    a->n_embeds = k;
    const model_kv_cache *kc = bt->cache;
    if (bt->cache_mode == MODEL_CACHE_PREFILL)
        for (int i = 0; i < n; i++) a->slot[i] = a->tok[i] == -1 && a->eidx[i] < 0 ? -1 : (i / seq) * kc->max_len + i % seq;
    if (bt->cache_mode == MODEL_CACHE_STEP)
        for (int b = 0; b < a->batch; b++) {
            a->slot[b] = b * kc->max_len + kc->len[b];
            a->klen[b] = kc->len[b] + 1;
        }
}

/* Hidden-state pooling: level l of every group gets the sum of its rows of x. */
static void pool_level(const model *m, const model_batch *bt, const real *x, int level) {
    const model_config *c = &m->layout.cfg;
    size_t stride = (size_t)(c->layers + 1) * c->dim;
    m->ops->pool_sum(bt->hidden + (size_t)level * c->dim, stride, x, bt->pool_group, bt->batch * bt->seq, c->dim);
}

static void pool_finish(const model *m, const model_batch *bt) {
    const model_config *c = &m->layout.cfg;
    size_t per_group = (size_t)(c->layers + 1) * c->dim;
    for (int g = 0; g < bt->n_groups; g++) {
        int count = 0;
        for (int i = 0; i < bt->batch * bt->seq; i++) count += bt->pool_group[i] == g;
        for (size_t j = 0; j < per_group && count; j++) bt->hidden[g * per_group + j] /= count;
    }
}

int model_forward_batch(model *m, const model_params *P, model_activations *a, const model_batch *bt,
                        model_result *res, ps_error *err) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    if (check_batch(m, a, bt, err)) return -1;
    prepare_rows(a, bt);
    int n = (int)a->n, D = c->dim, head = L->llm_units - 1;
    size_t nD = a->n * D;
    cache_use cu = {bt->cache, bt->cache_mode};
    if (bt->hidden)
        for (size_t j = 0; j < (size_t)bt->n_groups * (c->layers + 1) * D; j++) bt->hidden[j] = 0;

    if (hook_acquire(m, 0, 0, err)) return -1;
    ops->embedding_forward(a->x, a->tok, embedding_of(P), n, D);
    hook_release(m, 0, 0);
    if (a->n_embeds) { /* embedding rows: the token rows are 0 there, so adding the gathered rows places them */
        ops->embedding_forward(a->ln1, a->eidx, bt->embeds, n, D);
        ops->accumulate(a->x, a->ln1, nD);
    }
    if (bt->hidden) pool_level(m, bt, a->x, 0);
    for (int l = 0; l < c->layers; l++) {
        if (hook_acquire(m, 1 + l, 0, err)) return -1;
        block_params w = block_view(P, L, l);
        block_acts b = block_slot(m, a, l);
        block_forward(m, &w, a, &b, l, &cu, 1);
        hook_release(m, 1 + l, 0);
        if (bt->hidden && l + 1 < c->layers) pool_level(m, bt, b.x_out, l + 1);
    }
    if (hook_acquire(m, head, 0, err) || (c->tied_head && hook_acquire(m, 0, 0, err))) return -1;
    ops->rmsnorm_forward(a->lnf, a->rstdf, residual(m, a, c->layers), final_norm_of(P, L), n, D, (float)c->norm_eps);
    linear(m, a, a->logits, a->lnf, head_of(P, L), n, D, c->vocab);
    if (c->tied_head) hook_release(m, 0, 0);
    hook_release(m, head, 0);
    if (bt->hidden) {
        pool_level(m, bt, a->lnf, c->layers);
        pool_finish(m, bt);
    }
    model_result r = {0, 0, 0};
    if (bt->targets) {
        r.loss_sum = ops->cross_entropy(a->logits, a->tgt, n, c->vocab, -1, 0, &r.n_counted);
        if (r.n_counted) r.loss = bt->loss_divisor > 0 ? r.loss_sum / bt->loss_divisor : r.loss_sum / r.n_counted;
        if (bt->log_probs) ops->log_prob(bt->log_probs, a->logits, a->tgt, n, c->vocab, -1);
    }
    if (res) *res = r;
    return 0;
}

/* Does anything below block l (l = layers: below the head) need d(input)? */
static int needs_grad_below(const model *m, const model_batch *bt, int l) {
    if (trains(m, 0) || (bt->embeds_grad && bt->n_embeds)) return 1;
    for (int j = 0; j < l; j++)
        if (trains(m, 1 + j)) return 1;
    return 0;
}

int model_backward_batch(model *m, const model_params *P, model_params *G, model_activations *a,
                         const model_batch *bt, real loss_scale, ps_error *err) {
    const backend_ops *ops = m->ops;
    const model_layout *L = &m->layout;
    const model_config *c = &L->cfg;
    if (a->forward_only) return ps_fail(err, "forward-only activations keep nothing for a backward pass");
    if (bt->batch != a->batch || bt->seq != a->seq || !bt->targets)
        return ps_fail(err, "backward needs the forward's batch [%d, %d] with targets", a->batch, a->seq);
    if (bt->embeds_grad && bt->n_embeds != a->n_embeds)
        return ps_fail(err, "embeds_grad has %d rows, the forward had %d embedding rows", bt->n_embeds, a->n_embeds);
    int n = (int)a->n, D = c->dim, head = L->llm_units - 1, tied = c->tied_head;
    size_t nD = (size_t)n * D;
    int head_trains = tied ? trains(m, 0) : trains(m, head);
    if (!head_trains && !trains(m, head) && !needs_grad_below(m, bt, c->layers)) return 0; /* nothing to compute */

    /* d(loss)/dlogits, in place over the logits. Counting the valid rows
     * first keeps the scale exact when targets are masked. */
    int n_valid = 0;
    for (int i = 0; i < n; i++) {
        a->tgt[i] = a->has_sample && a->sid[i] < 0 ? -1 : bt->targets[i];
        n_valid += a->tgt[i] >= 0 && a->tgt[i] < c->vocab;
    }
    real scale = !n_valid ? 0 : bt->loss_divisor > 0 ? (real)(loss_scale / bt->loss_divisor) : loss_scale / n_valid;
    int counted = 0;
    ops->cross_entropy(a->logits, a->tgt, n, c->vocab, -1, scale, &counted);
    /* At scale 0 cross_entropy leaves the rows as logits (its forward-only
     * use): with nothing counted the gradient is 0, not the logits. */
    if (!n_valid) ops->zero(a->logits, (size_t)n * c->vocab);

    if (hook_acquire(m, head, 1, err) || (tied && hook_acquire(m, 0, 1, err))) return -1;
    ops->matmul_backward(a->dln, head_trains ? head_of(G, L) : NULL, a->logits, a->lnf, head_of(P, L), n, D,
                         c->vocab);
    ops->zero(a->dx, nD);
    ops->rmsnorm_backward(a->dx, trains(m, head) ? final_norm_of(G, L) : NULL, a->dln, residual(m, a, c->layers),
                          final_norm_of(P, L), a->rstdf, n, D);
    if (trains(m, head) && hook_grad_ready(m, head, err)) return -1;
    hook_release(m, head, 1);
    int l = c->layers - 1;
    for (; l >= 0 && (trains(m, 1 + l) || needs_grad_below(m, bt, l)); l--) {
        if (hook_acquire(m, 1 + l, 1, err)) return -1;
        block_params w = block_view(P, L, l), g = {0};
        if (trains(m, 1 + l)) g = block_view(G, L, l);
        block_acts b = block_slot(m, a, l);
        if (a->recompute) block_forward(m, &w, a, &b, l, NULL, 0);
        block_backward(m, &w, &g, a, &b);
        if (trains(m, 1 + l) && hook_grad_ready(m, 1 + l, err)) return -1;
        hook_release(m, 1 + l, 1);
    }
    if (l < 0 && trains(m, 0)) { /* every block was visited: dx is d(embedding output) */
        if (!tied && hook_acquire(m, 0, 1, err)) return -1;
        ops->embedding_backward(embedding_of(G), a->dx, a->tok, n, D);
        if (hook_grad_ready(m, 0, err)) return -1;
        hook_release(m, 0, 1);
    } else if (tied) {
        hook_release(m, 0, 1);
    }
    if (l < 0 && bt->embeds_grad && a->n_embeds) {
        ops->zero(bt->embeds_grad, (size_t)a->n_embeds * D);
        ops->embedding_backward(bt->embeds_grad, a->dx, a->eidx, n, D);
    }
    return 0;
}

double model_forward(model *m, const model_params *P, model_activations *a, const int *tokens, const int *targets,
                     int batch, int seq) {
    model_batch bt = {.batch = batch, .seq = seq, .tokens = tokens, .targets = targets};
    model_result r;
    ps_error err;
    if (model_forward_batch(m, P, a, &bt, &r, &err)) return NAN;
    return r.loss;
}

void model_backward(model *m, const model_params *P, model_params *G, model_activations *a, const int *tokens,
                    const int *targets, int batch, int seq, real loss_scale) {
    model_batch bt = {.batch = batch, .seq = seq, .tokens = tokens, .targets = targets};
    ps_error err;
    (void)model_backward_batch(m, P, G, a, &bt, loss_scale, &err);
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
