/* adapt.c - an adaptation stage on the job runner (adapt.h). */
#include "adapt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapt_data.h"
#include "backend_select.h"
#include "blas.h"
#include "checkpoint.h"
#include "engine_start.h"
#include "mm_model.h"
#include "optim.h"
#include "runner.h"
#include "sha256.h"
#include "sharding.h"
#include "weights_h5.h"

typedef enum { STAGE_ALIGN, STAGE_BLIND, STAGE_SFT } stage_kind;

/* Samples (of data, in this order) cut into sequence rows. */
typedef struct row_plan {
    adapt_data *data;
    const int *samples;
    int n_samples;
    int *row_first, *row_count, n_rows; /* [rows] first sample (into samples), how many */
} row_plan;

typedef struct adapter {
    run_config cfg;
    comm *comm;
    stage_kind kind;
    char init_weights[CONFIG_STR_MAX + 16];
    chat_template tpl;
    adapt_data data;
    mm_model mm;
    sharded_state shards;
    model_activations *acts;
    projector_acts pacts;
    mm_batch mb;
    int *mb_sample;         /* [rows] data sample of each placement (-1: a blank picture) */
    float *feat;            /* [visual_tokens, width] one picture */
    real *pin, *emb, *demb; /* [rows, width], [rows, dim] x2 */
    row_plan plan;          /* the step's: its megabatch's samples */
    adapt_data held_data;   /* eval.every > 0: adapt.heldout's samples */
    row_plan held;          /* all of them, in file order */
    int *held_order;
    double held_counted;    /* their trained tokens */
    int llm_trains, proj_trains;
    const gpu_engine_api *gpu; /* the GPU engine (run.backend = cuda, or auto with a GPU); NULL: the CPU */
    gpu_engine *engine;        /* its state; shards then holds the host copy of the owned slices */
    int accum;                 /* the engine's micro-batches per step: the most of any step */
    unsigned char *dirty;      /* [accum] the engine's loss slot k holds a real micro-batch's loss */
    int64_t padded;            /* all-padding micro-batches run to empty such slots (this attempt) */
    int64_t total_steps, step;
    double tokens, last_loss;
    mm_load_report init_report;
} adapter;

/* ------------------------------------------------------------ the config */

static int stage_of(const char *name, stage_kind *k) {
    *k = !strcmp(name, "align") ? STAGE_ALIGN : !strcmp(name, "blind") ? STAGE_BLIND : STAGE_SFT;
    return 0;
}

/* A resolved key: set it when empty, else it must agree. */
static int agree(char *key_value, size_t size, const char *found, const char *key, const char *where, ps_error *err) {
    if (!key_value[0]) {
        snprintf(key_value, size, "%s", found);
        return 0;
    }
    if (strcmp(key_value, found))
        return ps_fail(err, "%s = \"%s\", but %s has \"%s\"", key, key_value, where, found);
    return 0;
}

/* model.*, data.* and the encoder from adapt.init and the features. */
static int resolve_init(adapter *a, run_config *init, ps_error *err) {
    run_config *cfg = &a->cfg;
    if (!cfg->adapt.init[0]) return ps_fail(err, "adapt.init is empty: name the pretrained run (or the previous stage's)");
    if (!cfg->adapt.data[0]) return ps_fail(err, "adapt.data is empty: name the JSONL (data/images/align.jsonl, ...)");
    if (a->kind != STAGE_BLIND && !cfg->adapt.features[0])
        return ps_fail(err, "adapt.features is empty: name the encoder's features folder (data/features/ENCODER)");
    if (mm_run_resolve(cfg->adapt.init, a->init_weights, sizeof a->init_weights, init, err)) return -1;
    cfg->model = init->model;
    cfg->data = init->data;
    /* An adapted init fixes the encoder. */
    if (init->adapt.encoder_width > 0) {
        const char *w = "adapt.init's config";
        if (agree(cfg->adapt.encoder, sizeof cfg->adapt.encoder, init->adapt.encoder, "adapt.encoder", w, err) ||
            agree(cfg->adapt.encoder_sha256, sizeof cfg->adapt.encoder_sha256, init->adapt.encoder_sha256,
                  "adapt.encoder_sha256", w, err))
            return -1;
        if (cfg->adapt.encoder_width && cfg->adapt.encoder_width != init->adapt.encoder_width)
            return ps_fail(err, "adapt.encoder_width = %d, but adapt.init's model has %d", cfg->adapt.encoder_width,
                           init->adapt.encoder_width);
        cfg->adapt.encoder_width = init->adapt.encoder_width;
    }
    return 0;
}

static int resolve_encoder(adapter *a, ps_error *err) {
    run_config *cfg = &a->cfg;
    const adapt_data *d = &a->data;
    if (!d->n_sets) {
        if (!cfg->adapt.encoder_width)
            return ps_fail(err, "%s holds no picture and adapt.init is not an adapted model: no encoder to build a "
                                "projector for (set adapt.encoder_width)", cfg->adapt.data);
        return 0;
    }
    const char *w = "the features files";
    if (agree(cfg->adapt.encoder, sizeof cfg->adapt.encoder, d->meta.encoder, "adapt.encoder", w, err) ||
        agree(cfg->adapt.encoder_sha256, sizeof cfg->adapt.encoder_sha256, d->meta.weights_sha256,
              "adapt.encoder_sha256", w, err))
        return -1;
    if (cfg->adapt.encoder_width && cfg->adapt.encoder_width != d->width)
        return ps_fail(err, "adapt.encoder_width = %d, but %s hold %d-wide tokens", cfg->adapt.encoder_width, w,
                       d->width);
    cfg->adapt.encoder_width = d->width;
    return 0;
}

/* Rank 0 hashes adapt.init's weights; every rank gets the verdict. */
static int resolve_init_sha(adapter *a, ps_error *err) {
    char msg[2048 + 80] = {0};
    char hex[65] = "";
    if (comm_rank(a->comm) == 0 && sha256_file(a->init_weights, hex, err)) snprintf(msg + 65, sizeof msg - 65, "%s", err->msg);
    memcpy(msg, hex, 65);
    if (comm_broadcast(a->comm, msg, sizeof msg, 0, err)) return -1;
    if (msg[65]) return ps_fail(err, "%s", msg + 65);
    return agree(a->cfg.adapt.init_sha256, sizeof a->cfg.adapt.init_sha256, msg, "adapt.init_sha256",
                 "adapt.init's weights (changed since this run began?)", err);
}

static void print_bad(const adapter *a) {
    const adapt_data *d = &a->data;
    if (!d->n_bad || comm_rank(a->comm) != 0) return;
    printf("%d of %lld samples left out (adapt.max_bad = %g):\n", d->n_bad, (long long)d->lines, a->cfg.adapt.max_bad);
    for (int i = 0; i < d->n_bad && i < 20; i++) printf("  %s\n", d->bad[i]);
    if (d->n_bad > 20) printf("  ... and %d more\n", d->n_bad - 20);
    fflush(stdout);
}

static int start_engine(adapter *a, ps_error *err);
static int open_heldout(adapter *a, ps_error *err);

/* Everything that makes the resolved config: every rank does the same. */
static int prepare(adapter *a, const run_config *given, comm *c, ps_error *err) {
    memset(a, 0, sizeof *a);
    a->cfg = *given;
    a->comm = c;
    stage_of(given->adapt.stage, &a->kind);
    run_config init;
    if (resolve_init(a, &init, err) || chat_template_for_run(&a->tpl, &a->cfg, err) ||
        adapt_data_load(&a->data, &a->cfg, &a->tpl, a->kind == STAGE_ALIGN ? CHAT_PLAIN : CHAT_CHAT,
                        a->kind == STAGE_BLIND, err) ||
        resolve_encoder(a, err) || resolve_init_sha(a, err) || open_heldout(a, err))
        return -1;
    a->total_steps = adapt_total_steps(&a->data, a->cfg.adapt.epochs);
    a->cfg.train.steps = a->total_steps;
    a->cfg.train.warmup_steps = (int64_t)ceil(a->cfg.adapt.warmup_ratio * (double)a->total_steps);
    if (config_validate(&a->cfg, err)) return ps_wrap(err, "the resolved adapt config");
    return 0;
}

/* ------------------------------------------------------------- the state */

static int build_state(adapter *a, ps_error *err) {
    const run_config *cfg = &a->cfg;
    if (blas_init(err) || mm_model_init(&a->mm, &cfg->model, cfg->adapt.encoder_width, backend_cpu(), err)) return -1;
    model_layout *L = &a->mm.m.layout;
    a->llm_trains = a->kind != STAGE_ALIGN;
    a->proj_trains = a->kind != STAGE_BLIND;
    model_layout_set_trainable(L, 0, L->llm_units, a->llm_trains);
    model_layout_set_trainable(L, a->mm.pj.unit, a->mm.pj.unit + 1, a->proj_trains);
    int B = cfg->train.micro_batch, T = cfg->train.seq_len, rows = B * T;
    if (a->gpu) {
        if (sharded_init_host(&a->shards, cfg, L, a->comm, err)) return -1;
    } else if (sharded_init(&a->shards, cfg, L, a->mm.m.ops, a->comm, err) ||
               !(a->acts = model_activations_alloc(L, B, T, cfg->parallel.recompute_blocks, err)) ||
               projector_acts_alloc(&a->pacts, &a->mm.pj, rows, err)) {
        return -1;
    }
    if (mm_batch_alloc(&a->mb, B, T, err)) return -1;
    if (!a->gpu) a->mm.m.hooks = sharded_hooks(&a->shards);
    size_t W = (size_t)cfg->adapt.encoder_width, D = (size_t)cfg->model.dim;
    a->mb_sample = malloc((size_t)rows * sizeof *a->mb_sample);
    a->feat = malloc((size_t)cfg->adapt.visual_tokens * W * sizeof *a->feat);
    a->pin = malloc((size_t)rows * W * sizeof *a->pin);
    a->emb = malloc((size_t)rows * D * sizeof *a->emb);
    a->demb = malloc((size_t)rows * D * sizeof *a->demb);
    /* The last megabatch (both remainders) holds up to 2 * batch - 2 samples. */
    a->plan.data = &a->data;
    a->plan.row_first = malloc((size_t)2 * cfg->adapt.batch * sizeof *a->plan.row_first);
    a->plan.row_count = malloc((size_t)2 * cfg->adapt.batch * sizeof *a->plan.row_count);
    if (!a->mb_sample || !a->feat || !a->pin || !a->emb || !a->demb || !a->plan.row_first || !a->plan.row_count)
        return ps_fail(err, "out of memory for the adapt buffers");
    /* The init weights: every LLM tensor, and the projector when adapt.init is adapted. */
    shard_view view = sharded_view(&a->shards);
    if (mm_model_load_sharded(&a->mm, a->init_weights, a->comm, &view, &a->init_report, err) ||
        sharded_after_load(&a->shards, err))
        return ps_wrap(err, "adapt.init %s", a->init_weights);
    if (a->gpu && start_engine(a, err)) return -1;
    if (a->kind == STAGE_BLIND && !a->init_report.adapted && comm_rank(a->comm) == 0)
        printf("note: blind pass from a pretrained model: the projector keeps its initial values\n");
    return 0;
}

static void adapter_free(adapter *a) {
    if (a->engine) a->gpu->destroy(a->engine);
    free(a->dirty);
    chat_template_free(&a->tpl);
    adapt_data_free(&a->data);
    adapt_data_free(&a->held_data);
    free(a->held_order);
    free(a->held.row_first);
    free(a->held.row_count);
    model_activations_free(a->acts);
    projector_acts_free(&a->pacts);
    mm_batch_free(&a->mb);
    sharded_free(&a->shards);
    mm_model_free(&a->mm);
    free(a->mb_sample);
    free(a->feat);
    free(a->pin);
    free(a->emb);
    free(a->demb);
    free(a->plan.row_first);
    free(a->plan.row_count);
}

/* -------------------------------------------------------------- one step */

static int sample_rows(const adapter *a, const adapt_data *d, int i) {
    const chat_tokens *t = &d->s[i].tok;
    int n = t->n + (t->image_at >= 0 ? a->cfg.adapt.visual_tokens : 0);
    return n < a->cfg.train.seq_len ? n : a->cfg.train.seq_len;
}

/* p's samples cut into rows (next fit, in their order; independent of the
 * ranks), their trained tokens and their tokens. */
static void plan_rows(const adapter *a, row_plan *p, double *counted, double *tokens) {
    int T = a->cfg.train.seq_len, used = 0;
    p->n_rows = 0;
    *counted = *tokens = 0;
    for (int k = 0; k < p->n_samples; k++) {
        int i = p->samples[k], len = sample_rows(a, p->data, i);
        const chat_tokens *t = &p->data->s[i].tok;
        if (p->n_rows == 0 || !a->cfg.adapt.pack || used + len > T) {
            p->row_first[p->n_rows] = k;
            p->row_count[p->n_rows++] = 0;
            used = 0;
        }
        p->row_count[p->n_rows - 1]++;
        used += len;
        *counted += mm_sample_targets(t, t->image_at >= 0 ? a->cfg.adapt.visual_tokens : 0, T);
        *tokens += len;
    }
}

/* The rows of global step `step` (its megabatch). */
static int plan_step_at(adapter *a, int64_t step, double *counted, double *tokens, ps_error *err) {
    row_plan *p = &a->plan;
    if (adapt_order_step(&a->data, step, &p->samples, &p->n_samples, err)) return -1;
    plan_rows(a, p, counted, tokens);
    return 0;
}

static int plan_step(adapter *a, double *counted, double *tokens, ps_error *err) {
    return plan_step_at(a, a->step, counted, tokens, err);
}

/* Micro-batches per rank for p's rows: as many on every rank. */
static int micro_batches(const adapter *a, const row_plan *p) {
    int W = comm_size(a->comm), B = a->cfg.train.micro_batch;
    int per_rank = (p->n_rows + W - 1) / W;
    return (per_rank + B - 1) / B;
}

/* Fills a->mb with micro-batch k of p on this rank: local rows k*B .. k*B+B-1,
 * local row j being global row j * world + rank. */
static int fill_micro_batch(adapter *a, const row_plan *p, int k, ps_error *err) {
    int W = comm_size(a->comm), r = comm_rank(a->comm), B = a->cfg.train.micro_batch, V = a->cfg.adapt.visual_tokens;
    mm_batch_clear(&a->mb);
    for (int j = k * B; j < (k + 1) * B; j++) {
        int g = j * W + r;
        if (g >= p->n_rows) break;
        for (int q = 0; q < p->row_count[g]; q++) {
            int i = p->samples[p->row_first[g] + q];
            if (mm_batch_add(&a->mb, &p->data->s[i].tok, V, 1, err) != 1)
                return ps_fail(err, "internal: sample %s does not fit its planned row", p->data->s[i].id);
            a->mb_sample[a->mb.n_samples - 1] = i;
        }
        mm_batch_new_row(&a->mb);
    }
    /* Align's backward runs through the frozen LLM only for visual rows; a
     * rank without any (a short last megabatch) gets one blank picture row
     * (no target: its gradient is exactly 0) so that every rank takes the
     * same path through the model (FSDP gathers units collectively). */
    if (!a->llm_trains && a->mb.n_embeds == 0) {
        chat_tokens blank = {.n = 0, .image_at = 0};
        if (mm_batch_add(&a->mb, &blank, 1, 1, err) != 1) return ps_fail(err, "internal: no row for a blank picture");
        a->mb_sample[a->mb.n_samples - 1] = -1;
    }
    return 0;
}

/* The projector's input for a->mb (filled from p), in row order. */
static int gather_features(adapter *a, const row_plan *p, ps_error *err) {
    int V = a->cfg.adapt.visual_tokens, Wd = a->cfg.adapt.encoder_width;
    size_t at = 0;
    for (int b = 0; b < a->mb.n_images; b++) {
        int i = a->mb_sample[a->mb.image_sample[b]];
        size_t n = (size_t)a->mb.image_rows[b] * Wd;
        if (i < 0) {
            memset(a->pin + at, 0, n * sizeof *a->pin);
        } else {
            if (adapt_data_features(p->data, i, V, a->feat, err)) return -1;
            for (size_t e = 0; e < n; e++) a->pin[at + e] = (real)a->feat[e];
        }
        at += n;
    }
    return 0;
}

static void projector_hook(adapter *a, int what) {
    const model_hooks *h = a->mm.m.hooks;
    if (!h) return;
    int u = a->mm.pj.unit;
    if (what == 0) h->acquire(h->ctx, u, 0);
    else if (what == 1) h->acquire(h->ctx, u, 1);
    else if (what == 2) h->grad_ready(h->ctx, u);
    else h->release(h->ctx, u, 1);
}

/* PRESIGHT_ADAPT_DUMP=FILE (one rank, step 1, micro-batch 0): the batch,
 * the projector's input, the weights before the step, the micro-batch's
 * loss and the gradients of the trainable tensors, for the PyTorch
 * reference (tests/reference/adapt_reference.py). */
static int dump_micro_batch(adapter *a, double counted, double loss_sum, ps_error *err) {
    const char *path = getenv("PRESIGHT_ADAPT_DUMP");
    if (!path || a->step != 0 || comm_size(a->comm) != 1) return 0;
    const model_layout *L = &a->mm.m.layout;
    const model_config *mc = &a->cfg.model;
    sharded_state *s = &a->shards;
    h5_file *f = h5_create(path, err);
    if (!f) return -1;
    long long bs[2] = {a->mb.batch, a->mb.seq}, fd[2] = {a->mb.n_embeds, a->cfg.adapt.encoder_width};
    long long ns = a->mb.n_samples;
    const struct { const char *key; double value; } hp[] = {
        {"vocab", mc->vocab}, {"dim", mc->dim}, {"layers", mc->layers}, {"heads", mc->heads},
        {"kv_heads", mc->kv_heads}, {"ffn_dim", mc->ffn_dim}, {"context", mc->context},
        {"rope_theta", mc->rope_theta}, {"norm_eps", mc->norm_eps}, {"tied_head", mc->tied_head},
        {"in_dim", a->cfg.adapt.encoder_width}, {"visual_tokens", a->cfg.adapt.visual_tokens},
    };
    int lines[2 * 4096];
    if (ns > (long long)(sizeof lines / sizeof lines[0])) ns = sizeof lines / sizeof lines[0];
    for (int i = 0; i < ns; i++) lines[i] = a->mb_sample[i] < 0 ? -1 : a->data.s[a->mb_sample[i]].line;
    int rc = h5_write_ints(f, "tokens", a->mb.tokens, 2, bs, err) || h5_write_ints(f, "targets", a->mb.targets, 2, bs, err) ||
             h5_write_ints(f, "positions", a->mb.positions, 2, bs, err) ||
             h5_write_ints(f, "sample", a->mb.sample, 2, bs, err) ||
             h5_write_ints(f, "lines", lines, 1, &ns, err) ||
             h5_write_reals(f, "features", a->pin, 2, fd, err) || h5_write_double(f, "loss_sum", loss_sum, err) ||
             h5_write_double(f, "counted", counted, err) ||
             h5_write_double(f, "style_plain", a->kind == STAGE_ALIGN, err) ||
             h5_write_params(f, "model", L, &s->params, NULL, err);
    for (size_t i = 0; !rc && i < sizeof hp / sizeof hp[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "hparams.%s", hp[i].key);
        rc = h5_write_double(f, name, hp[i].value, err);
    }
    for (int t = 0; !rc && t < L->n_tensors; t++) {
        const model_tensor *mt = &L->tensors[t];
        if (!L->units[mt->unit].trainable) continue;
        char name[MODEL_TENSOR_NAME_MAX + 8];
        snprintf(name, sizeof name, "grad.%s", mt->name);
        long long d[2] = {mt->rows, mt->cols};
        rc = h5_write_reals(f, name, s->grads.unit[mt->unit] + mt->offset, mt->cols == 1 ? 1 : 2, d, err);
    }
    return h5_close(f, !rc, err) || rc ? -1 : 0;
}

/* Forward and backward of micro-batch k; adds its summed loss. */
static int micro_step(adapter *a, int k, double counted, double *loss_sum, ps_error *err) {
    sharded_state *s = &a->shards;
    const projector *pj = &a->mm.pj;
    model_layout *L = &a->mm.m.layout;
    const backend_ops *ops = a->mm.m.ops;
    if (fill_micro_batch(a, &a->plan, k, err) || gather_features(a, &a->plan, err)) return -1;
    int n = a->mb.n_embeds, uses_proj = a->kind != STAGE_BLIND;
    if (uses_proj) {
        projector_hook(a, 0);
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
        if (n) projector_forward(ops, pj, L, &s->params, &a->pacts, a->pin, n, a->emb);
    }
    model_batch bt = mm_batch_view(&a->mb, a->emb, a->proj_trains && n ? a->demb : NULL, counted > 0 ? counted : 1);
    model_result res;
    if (model_forward_batch(&a->mm.m, &s->params, a->acts, &bt, &res, err)) return -1;
    if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    /* A micro-batch without targets (a blank picture row) may leave
     * embeds_grad unwritten: its gradient is 0. */
    if (bt.embeds_grad) memset(a->demb, 0, (size_t)n * a->cfg.model.dim * sizeof *a->demb);
    if (model_backward_batch(&a->mm.m, &s->params, &s->grads, a->acts, &bt, 1, err)) return -1;
    if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    if (a->proj_trains) {
        projector_hook(a, 1);
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
        if (n) projector_backward(ops, pj, L, &s->params, &s->grads, &a->pacts, a->pin, n, a->demb, NULL);
        projector_hook(a, 2);
        projector_hook(a, 3);
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    } else if (uses_proj) {
        projector_hook(a, 3);
    }
    *loss_sum += res.loss_sum;
    return k == 0 ? dump_micro_batch(a, counted, res.loss_sum, err) : 0;
}

/* This rank's micro-batches on the CPU backend, the gradients reduced to
 * their owners: the summed loss over the megabatch's trained tokens. */
static int cpu_gradients(adapter *a, double counted, double *loss, double *norm, ps_error *err) {
    double loss_sum = 0;
    sharded_begin_step(&a->shards);
    int n_micro = micro_batches(a, &a->plan);
    for (int k = 0; k < n_micro; k++)
        if (micro_step(a, k, counted, &loss_sum, err)) return -1;
    *loss = loss_sum;
    return sharded_reduce_gradients(&a->shards, err) || sharded_grad_norm(&a->shards, norm, err);
}

/* ------------------------------------------------- one step on the GPU */

/* The engine takes a fixed number of micro-batches per step (gpu_engine.h:
 * ddp and zero1 reduce at micro-batch grad_accum - 1, and the loss of
 * finish_backward sums every slot a step wrote): the most of any step of the
 * run (planned here; the plan depends on the data and the ranks only). */
static int start_engine(adapter *a, ps_error *err) {
    double counted, tokens;
    a->accum = 1;
    for (int64_t s = 0; s < a->total_steps; s++) {
        if (plan_step_at(a, s, &counted, &tokens, err)) return -1;
        if (micro_batches(a, &a->plan) > a->accum) a->accum = micro_batches(a, &a->plan);
    }
    if (!(a->dirty = calloc((size_t)a->accum, 1))) return ps_fail(err, "out of memory");
    return engine_start(a->gpu, &a->cfg, &a->mm.m.layout, &a->shards, a->comm, a->accum, &a->engine, err);
}

/* Micro-batch k of this rank into the engine's slot: the projector on the
 * device, its output as the batch's embedding rows, their gradient back to
 * it. When the projector trains every rank runs it on every micro-batch
 * (fsdp gathers its unit, ddp and zero1 reduce its gradient at the last
 * slot: collectives); a micro-batch without pictures passes one zero row
 * whose gradient is 0. */
static int gpu_micro_step(adapter *a, int k, int slot, double counted, ps_error *err) {
    const gpu_engine_api *g = a->gpu;
    if (fill_micro_batch(a, &a->plan, k, err) || gather_features(a, &a->plan, err)) return -1;
    int n = a->mb.n_embeds, rows = n ? n : 1;
    size_t D = (size_t)a->cfg.model.dim;
    if (a->proj_trains) {
        if (!n) memset(a->pin, 0, (size_t)a->cfg.adapt.encoder_width * sizeof *a->pin);
        if (g->projector_forward(a->engine, a->pin, rows, a->emb, err)) return -1;
    }
    memset(a->demb, 0, (size_t)rows * D * sizeof *a->demb);
    model_batch bt = mm_batch_view(&a->mb, a->emb, a->proj_trains && n ? a->demb : NULL, counted > 0 ? counted : 1);
    if (g->train_batch(a->engine, slot, &bt, 1.0f, err)) return -1;
    if (a->proj_trains && g->projector_backward(a->engine, slot, a->demb, NULL, err)) return -1;
    a->dirty[slot] = 1;
    return 0;
}

/* An all-padding micro-batch (no target: no loss, a zero gradient) into a
 * slot an earlier, longer step left a loss in. */
static int gpu_padding(adapter *a, int slot, ps_error *err) {
    mm_batch_clear(&a->mb);
    model_batch bt = mm_batch_view(&a->mb, NULL, NULL, 1);
    if (a->gpu->train_batch(a->engine, slot, &bt, 1.0f, err)) return -1;
    a->dirty[slot] = 0;
    a->padded++;
    return 0;
}

/* The step's n micro-batches go to slots 0 .. n - 2 and accum - 1 (where ddp
 * and zero1 reduce); the slots between are emptied when they hold a loss.
 * Every rank has the same n, so every rank makes the same calls. *loss: this
 * rank's share of the per-token mean (each slot's sum over counted). */
static int gpu_gradients(adapter *a, double counted, double *loss, double *norm, ps_error *err) {
    int n_micro = micro_batches(a, &a->plan), last = a->accum - 1;
    if (n_micro > a->accum)
        return ps_fail(err, "internal: step %lld has %d micro-batches, the engine was made for %d", (long long)a->step + 1,
                       n_micro, a->accum);
    for (int k = 0; k + 1 < n_micro; k++)
        if (gpu_micro_step(a, k, k, counted, err)) return -1;
    for (int slot = n_micro - 1; slot < last; slot++)
        if (a->dirty[slot] && gpu_padding(a, slot, err)) return -1;
    if (gpu_micro_step(a, n_micro - 1, last, counted, err)) return -1;
    double sumsq = 0;
    return a->gpu->finish_backward(a->engine, loss, &sumsq, err) || engine_grad_norm(&a->shards, sumsq, norm, err);
}

typedef struct adapt_step_stats {
    double loss, lr, grad_norm, tokens, counted;
} adapt_step_stats;

static int adapt_step(adapter *a, adapt_step_stats *st, ps_error *err) {
    const train_config *tc = &a->cfg.train;
    double counted, tokens, loss = 0, norm = 0;
    if (plan_step(a, &counted, &tokens, err)) return -1;
    if ((a->engine ? gpu_gradients(a, counted, &loss, &norm, err) : cpu_gradients(a, counted, &loss, &norm, err)) ||
        comm_all_reduce_sum_double(a->comm, &loss, 1, err))
        return -1;
    double lr = lr_at(tc, a->step, a->total_steps), clip = clip_scale(norm, tc->grad_clip);
    if (a->engine ? a->gpu->optimizer_step(a->engine, lr, a->step + 1, clip, err)
                  : sharded_optimizer_step(&a->shards, tc, lr, a->step + 1, clip, err))
        return -1;
    a->step++;
    st->loss = a->engine ? loss : counted > 0 ? loss / counted : 0;
    st->lr = lr;
    st->grad_norm = norm;
    st->tokens = tokens;
    st->counted = counted;
    a->tokens += tokens;
    if (!isfinite(st->loss))
        return ps_fail(err, "step %lld: the loss is %f; stopping before it spreads", (long long)a->step, st->loss);
    return 0;
}

/* ---------------------------------------------------- the held-out loss */

/* adapt.heldout (eval.every > 0): samples as adapt.data's, templated and
 * spliced as the stage trains (blind withholds their pictures), all of them,
 * cut into rows in file order: the same set for any number of ranks. */
static int open_heldout(adapter *a, ps_error *err) {
    const run_config *cfg = &a->cfg;
    if (cfg->eval.every <= 0) return 0;
    if (!cfg->adapt.heldout[0])
        return ps_fail(err, "eval.every = %lld needs adapt.heldout (held-out samples, a JSONL as adapt.data)",
                       (long long)cfg->eval.every);
    run_config *hc = malloc(sizeof *hc);
    if (!hc) return ps_fail(err, "out of memory");
    *hc = *cfg;
    snprintf(hc->adapt.data, sizeof hc->adapt.data, "%s", cfg->adapt.heldout);
    hc->adapt.max_samples = 0;
    int rc = adapt_data_load(&a->held_data, hc, &a->tpl, a->kind == STAGE_ALIGN ? CHAT_PLAIN : CHAT_CHAT,
                             a->kind == STAGE_BLIND, err);
    free(hc);
    if (rc) return ps_wrap(err, "adapt.heldout");
    const adapt_data *h = &a->held_data;
    if (h->n == 0) return ps_fail(err, "adapt.heldout = %s: no usable sample", cfg->adapt.heldout);
    if (h->n_sets && (strcmp(h->meta.encoder, cfg->adapt.encoder) || h->width != cfg->adapt.encoder_width))
        return ps_fail(err, "adapt.heldout = %s: its pictures' features are of encoder %s (%d wide), the stage's %s (%d)",
                       cfg->adapt.heldout, h->meta.encoder, h->width, cfg->adapt.encoder, cfg->adapt.encoder_width);
    a->held_order = malloc((size_t)h->n * sizeof *a->held_order);
    a->held.row_first = malloc((size_t)h->n * sizeof *a->held.row_first);
    a->held.row_count = malloc((size_t)h->n * sizeof *a->held.row_count);
    if (!a->held_order || !a->held.row_first || !a->held.row_count) return ps_fail(err, "out of memory");
    for (int i = 0; i < h->n; i++) a->held_order[i] = i;
    a->held.data = &a->held_data;
    a->held.samples = a->held_order;
    a->held.n_samples = h->n;
    double tokens;
    plan_rows(a, &a->held, &a->held_counted, &tokens);
    return 0;
}

/* The summed loss of a->mb (forward only) on the CPU backend; the projector
 * is gathered and released on every rank (fsdp) even without pictures. */
static int cpu_forward(adapter *a, double *loss_sum, ps_error *err) {
    sharded_state *s = &a->shards;
    int n = a->mb.n_embeds, uses_proj = a->kind != STAGE_BLIND;
    if (uses_proj) {
        projector_hook(a, 0);
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
        if (n) projector_forward(a->mm.m.ops, &a->mm.pj, &a->mm.m.layout, &s->params, &a->pacts, a->pin, n, a->emb);
        projector_hook(a, 3);
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    }
    model_batch bt = mm_batch_view(&a->mb, a->emb, NULL, 0);
    model_result res;
    if (model_forward_batch(&a->mm.m, &s->params, a->acts, &bt, &res, err)) return -1;
    if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    *loss_sum = res.loss_sum;
    return 0;
}

/* The same on the GPU engine (a micro-batch without pictures still runs the
 * projector on one zero row: fsdp gathers its unit on every rank). */
static int gpu_forward(adapter *a, double *loss_sum, ps_error *err) {
    int n = a->mb.n_embeds;
    if (a->kind != STAGE_BLIND) {
        if (!n) memset(a->pin, 0, (size_t)a->cfg.adapt.encoder_width * sizeof *a->pin);
        if (a->gpu->projector_forward(a->engine, a->pin, n ? n : 1, a->emb, err)) return -1;
    }
    model_batch bt = mm_batch_view(&a->mb, a->emb, NULL, 0);
    model_result res;
    if (a->gpu->forward_batch(a->engine, &bt, &res, err)) return -1;
    *loss_sum = res.loss_sum;
    return 0;
}

/* Collective: the mean loss over the held-out samples' trained tokens with
 * the model as it stands; every rank runs as many micro-batches. */
static int heldout_loss(adapter *a, double *loss, ps_error *err) {
    const row_plan *p = &a->held;
    int n_micro = micro_batches(a, p);
    double sum = 0;
    for (int k = 0; k < n_micro; k++) {
        double part = 0;
        if (fill_micro_batch(a, p, k, err) || gather_features(a, p, err) ||
            (a->engine ? gpu_forward(a, &part, err) : cpu_forward(a, &part, err)))
            return -1;
        if (!isfinite(part)) return ps_fail(err, "held-out micro-batch %d: the loss is %f", k, part);
        sum += part;
    }
    if (comm_all_reduce_sum_double(a->comm, &sum, 1, err)) return -1;
    *loss = a->held_counted > 0 ? sum / a->held_counted : NAN;
    return 0;
}

/* Every eval.every steps (and at the last): into metrics.jsonl and the progress line. */
static int heldout_step(adapter *a, job_step_report *out, ps_error *err) {
    int64_t every = a->cfg.eval.every;
    if (every <= 0 || (a->step % every && a->step != a->total_steps)) return 0;
    double loss = NAN;
    if (heldout_loss(a, &loss, err)) return -1;
    job_report_heldout(out, loss);
    return 0;
}

/* ------------------------------------------------ the stage on the runner */

static int stage_step(void *ctx, const job_progress *p, job_step_report *out, ps_error *err) {
    adapter *a = ctx;
    (void)p;
    adapt_step_stats s;
    if (adapt_step(a, &s, err)) return -1;
    out->tokens = s.tokens;
    snprintf(out->fields, sizeof out->fields,
             "\"loss\":%.17g,\"lr\":%.6e,\"grad_norm\":%.6f,\"samples\":%d,\"targets\":%.0f", s.loss, s.lr,
             s.grad_norm, a->plan.n_samples, s.counted);
    snprintf(out->progress, sizeof out->progress, "loss %.4f | lr %.2e | grad norm %.3f | %d samples", s.loss, s.lr,
             s.grad_norm, a->plan.n_samples);
    a->last_loss = s.loss;
    return heldout_step(a, out, err);
}

static int stage_save(void *ctx, job *j, const job_progress *p, ps_error *err) {
    adapter *a = ctx;
    checkpoint_state st;
    memset(&st, 0, sizeof st);
    st.step = a->step;
    st.total_steps = a->total_steps;
    st.seed = (uint64_t)a->cfg.train.seed;
    st.tokens = a->tokens;
    st.elapsed_s = p->elapsed_s;
    st.data_state[0] = (uint64_t)a->step;
    st.world_size = comm_size(a->comm);
    snprintf(st.strategy, sizeof st.strategy, "%s", a->cfg.parallel.strategy);
    shard_view view = sharded_view(&a->shards);
    if (a->engine && a->gpu->download(a->engine, view.params, view.m, view.v, err)) return -1;
    return checkpoint_write(job_checkpoint_dir(j), a->comm, &a->mm.m.layout, &view, &st, job_config_text(j), err);
}

static int stage_resume(void *ctx, job *j, job_progress *p, ps_error *err) {
    adapter *a = ctx;
    shard_view view = sharded_view(&a->shards);
    checkpoint_state st;
    char loaded[CONFIG_STR_MAX + 64];
    int found = checkpoint_load_latest(job_checkpoint_dir(j), a->comm, &a->mm.m.layout, &view, &st, NULL, loaded,
                                       sizeof loaded, err);
    if (found <= 0) return found;
    if (sharded_after_load(&a->shards, err) ||
        (a->engine && a->gpu->upload(a->engine, view.params, view.m, view.v, err)))
        return -1;
    a->step = p->step = st.step;
    a->tokens = p->tokens = st.tokens;
    p->elapsed_s = st.elapsed_s;
    if (comm_rank(a->comm) == 0) {
        printf("resumed from %s at step %lld (written by %d ranks, %s)\n", loaded, (long long)st.step, st.world_size,
               st.strategy);
        fflush(stdout);
    }
    return 1;
}

/* The frozen LLM, checked rather than assumed: every frozen unit's owned
 * slice equals adapt.init's values bit for bit (on every rank). Returns the
 * number of differing elements over all ranks, or -1. */
static long frozen_changes(adapter *a, ps_error *err) {
    model_layout *L = &a->mm.m.layout;
    sharded_state *s = &a->shards;
    real **ref = calloc((size_t)L->n_units, sizeof *ref);
    if (!ref) return ps_fail(err, "out of memory");
    long rc = 0;
    for (int u = 0; u < L->n_units && !rc; u++)
        if (!(ref[u] = calloc(s->slices.shard_len[u] ? s->slices.shard_len[u] : 1, sizeof(real))))
            rc = ps_fail(err, "out of memory");
    shard_view view = sharded_view(s);
    /* On the GPU the engine's master weights are the ones checked. */
    if (!rc && a->engine && a->gpu->download(a->engine, view.params, view.m, view.v, err)) rc = -1;
    view.params = ref;
    view.m = view.v = NULL;
    mm_load_report rep;
    if (!rc && mm_model_load_sharded(&a->mm, a->init_weights, a->comm, &view, &rep, err)) rc = -1;
    double diff = 0;
    for (int u = 0; u < L->n_units && !rc; u++) {
        if (L->units[u].trainable) continue;
        size_t n = shard_count(&s->slices, u);
        for (size_t e = 0; e < n; e++) diff += memcmp(&ref[u][e], &s->owned[u][e], sizeof(real)) != 0;
    }
    for (int u = 0; u < L->n_units; u++) free(ref[u]);
    free(ref);
    if (rc) return -1;
    if (comm_all_reduce_sum_double(a->comm, &diff, 1, err)) return -1;
    return (long)diff;
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static int stage_finish(void *ctx, job *j, const job_progress *p, int last_step_ran, FILE *f, ps_error *err) {
    adapter *a = ctx;
    long changed = 0;
    if (!a->llm_trains && (changed = frozen_changes(a, err)) < 0) return -1;
    if (changed > 0)
        return ps_fail(err, "the frozen LLM changed during %s: %ld values differ from adapt.init %s", a->cfg.adapt.stage,
                       changed, a->init_weights);
    if (comm_rank(a->comm) != 0) return 0;
    char ckpt[CONFIG_STR_MAX + 64], model[CONFIG_STR_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/step_%08lld.h5", job_checkpoint_dir(j), (long long)a->step);
    snprintf(model, sizeof model, "%s/model.h5", a->cfg.run_dir);
    unlink(model);
    if (link(ckpt, model) != 0) return ps_fail(err, "%s: cannot link to %s: %s", model, ckpt, strerror(errno));
    double loss = last_step_ran ? a->last_loss : job_logged_number(j, a->step, "loss");
    model_param_counts pc;
    model_layout_count(&a->mm.m.layout, &pc);
    const adapt_data *d = &a->data;
    if (f) {
        fprintf(f, ",\"final_loss\":%.17g,\"stage\":\"%s\",\"params\":%zu,\"trainable_params\":%zu,"
                   "\"projector_params\":%zu,\"strategy\":\"%s\",\"backend\":\"%s\",\"samples\":%d,"
                   "\"visual_samples\":%d,\"bad_samples\":%d,\"lines\":%lld",
                loss, a->cfg.adapt.stage, a->mm.m.layout.n_params, pc.trainable, pc.extra, a->cfg.parallel.strategy,
                a->engine ? "cuda" : "cpu", d->n, d->visual, d->n_bad, (long long)d->lines);
        fprintf(f, ",\"bad_ids\":[");
        for (int i = 0; i < d->n_bad && i < 100; i++) {
            if (i) fputc(',', f);
            json_string(f, d->bad[i]);
        }
        fprintf(f, "],\"encoder\":");
        json_string(f, a->cfg.adapt.encoder);
        fprintf(f, ",\"init\":");
        json_string(f, a->init_weights);
        fprintf(f, ",\"init_sha256\":\"%s\",\"init_projector\":\"%s\"", a->cfg.adapt.init_sha256,
                a->init_report.adapted ? "loaded" : "new");
        if (!a->llm_trains) fprintf(f, ",\"llm_unchanged\":true");
        if (a->engine)
            fprintf(f, ",\"gpu\":\"%s\",\"gpu_micro_batches\":%d,\"gpu_padding_micro_batches\":%lld",
                    a->gpu->describe(a->engine), a->accum, (long long)a->padded);
    }
    printf("done: %s, %lld steps, final loss %.4f, %.0f tokens in %.1fs; model (LLM + projector) in %s\n",
           a->cfg.adapt.stage, (long long)a->step, loss, a->tokens, p->elapsed_s, model);
    if (!a->llm_trains) printf("checked: every LLM tensor is bit-identical to %s\n", a->init_weights);
    return 0;
}

static void print_headline(const adapter *a) {
    const run_config *cfg = &a->cfg;
    model_param_counts pc;
    model_layout_count(&a->mm.m.layout, &pc);
    printf("presight adapt: %s | %s | %.2fM parameters, %.2fM training | %s x %d ranks | %s\n", cfg->adapt.stage,
           cfg->source, a->mm.m.layout.n_params / 1e6, pc.trainable / 1e6, cfg->parallel.strategy,
           comm_size(a->comm), a->engine ? a->gpu->describe(a->engine) : blas_describe());
    printf("init: %s (%s)\n", a->init_weights, a->init_report.text);
    printf("data: %s: %d samples (%d with a picture, %d visual tokens each), %d left out; %lld steps of %d samples\n",
           cfg->adapt.data, a->data.n, a->data.visual, cfg->adapt.visual_tokens, a->data.n_bad,
           (long long)a->total_steps, cfg->adapt.batch);
    if (a->data.n_sets) printf("encoder: %s (%d-wide tokens)\n", cfg->adapt.encoder, cfg->adapt.encoder_width);
    if (cfg->eval.every > 0)
        printf("held-out: %s: %d samples (%d with a picture), %d left out, %.0f trained tokens; every %lld steps\n",
               cfg->adapt.heldout, a->held_data.n, a->held_data.visual, a->held_data.n_bad, a->held_counted,
               (long long)cfg->eval.every);
    if (a->engine)
        printf("GPU engine: %d micro-batches of %d x %d per rank and step (the most of any step; shorter steps run "
               "fewer)\n", a->accum, cfg->train.micro_batch, cfg->train.seq_len);
    fflush(stdout);
}

int adapt_run(const run_config *given, comm *c, ps_error *err) {
    adapter *a = malloc(sizeof *a);
    if (!a) return ps_fail(err, "out of memory");
    /* The backend after the config (every rank the same verdict), before the run directory. */
    int rc = prepare(a, given, c, err) || backend_select(&a->cfg, c, &a->gpu, err);
    if (rc) {
        adapter_free(a);
        free(a);
        return JOB_FAILED_EVERYWHERE; /* every rank reads the same files and comes to the same verdict */
    }
    print_bad(a);
    int complete = 0;
    job *j = NULL;
    rc = job_open(&j, &a->cfg, c, &complete, err);
    if (rc || complete) {
        if (complete && comm_rank(c) == 0)
            printf("run.dir '%s' holds a complete run (final.json); nothing to do\n", a->cfg.run_dir);
    } else if (build_state(a, err)) {
        rc = -1;
    } else {
        if (comm_rank(c) == 0) print_headline(a);
        job_stage stage = {a, stage_step, stage_save, stage_resume, stage_finish};
        rc = job_run(j, &stage, a->total_steps, err);
    }
    job_close(j);
    adapter_free(a);
    free(a);
    return rc;
}
