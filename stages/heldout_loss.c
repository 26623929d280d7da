/* heldout_loss.c - the held-out loss of eval.every (see heldout_loss.h). */
#include "heldout_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_model.h"
#include "tasks.h"
#include "tokenizer.h"

/* The documents' tokens, each after <|end_of_text|>, as one stream (only as many as needed). */
static int stream(const run_config *cfg, const char *scratch_dir, size_t want, tokenizer_ids *out, ps_error *err) {
    task_def *t = NULL;
    task_item *items = NULL;
    size_t n = 0;
    tokenizer *tok = NULL;
    uint32_t eot;
    int rc = task_load(&t, cfg->eval.heldout, 0, NULL, err);
    if (!rc && task_get_info(t).kind != TASK_ROLLING)
        rc = ps_fail(err, "eval.heldout = '%s': a task of kind rolling, not %s", cfg->eval.heldout,
                     task_kind_name(task_get_info(t).kind));
    if (!rc) rc = task_read_items(t, &items, &n, err);
    if (!rc) rc = eval_tokenizer_open(cfg, scratch_dir, &tok, &eot, err);
    for (size_t i = 0; i < n && !rc && out->n < want; i++) {
        tokenizer_ids one = {0};
        rc = tokenizer_encode(tok, items[i].context, strlen(items[i].context), 0, &one, err);
        size_t need = out->n + 1 + one.n;
        if (!rc && need > out->cap) {
            uint32_t *grown = realloc(out->ids, sizeof *grown * need);
            if (!grown) rc = ps_fail(err, "out of memory");
            else out->ids = grown, out->cap = need;
        }
        if (!rc) {
            out->ids[out->n++] = eot;
            memcpy(out->ids + out->n, one.ids, sizeof *one.ids * one.n);
            out->n += one.n;
        }
        tokenizer_ids_free(&one);
    }
    if (!rc && out->n < 2) rc = ps_fail(err, "eval.heldout = '%s': no text", cfg->eval.heldout);
    tokenizer_free(tok);
    task_items_free(items, n);
    task_free(t);
    return rc;
}

int heldout_set_open(heldout_set *h, const run_config *cfg, int rank, int world, const char *scratch_dir, ps_error *err) {
    memset(h, 0, sizeof *h);
    if (!cfg->eval.heldout[0]) return ps_fail(err, "eval.every = %lld needs eval.heldout (a rolling task file)", (long long)cfg->eval.every);
    h->batches = cfg->eval.batches, h->rows = cfg->train.micro_batch, h->seq = cfg->train.seq_len;
    size_t cells = (size_t)h->batches * h->rows * h->seq, T = (size_t)h->seq;
    tokenizer_ids s = {0};
    int rc = stream(cfg, scratch_dir, (size_t)h->batches * h->rows * world * (T + 1), &s, err);
    h->inputs = malloc(sizeof *h->inputs * cells), h->targets = malloc(sizeof *h->targets * cells);
    if (!rc && (!h->inputs || !h->targets)) rc = ps_fail(err, "out of memory");
    /* global row g holds stream[g (T + 1) ...]: inputs the first T, targets shifted by one */
    for (size_t r = 0; !rc && r < (size_t)h->batches * h->rows; r++) {
        size_t b = r / (size_t)h->rows, g = (b * (size_t)world + (size_t)rank) * (size_t)h->rows + r % (size_t)h->rows;
        for (size_t t = 0; t < T; t++) {
            size_t k = g * (T + 1) + t, cell = r * T + t;
            h->inputs[cell] = k < s.n ? (int)s.ids[k] : 0;
            h->targets[cell] = k + 1 < s.n ? (int)s.ids[k + 1] : -1;
        }
    }
    /* every rank's count: the tokens of the first batches x world x rows rows */
    for (size_t g = 0; !rc && g < (size_t)h->batches * h->rows * world; g++)
        for (size_t t = 0; t < T; t++) h->counted += g * (T + 1) + t + 1 < s.n;
    tokenizer_ids_free(&s);
    if (rc) heldout_set_free(h);
    return rc;
}

void heldout_set_free(heldout_set *h) {
    free(h->inputs), free(h->targets);
    memset(h, 0, sizeof *h);
}

/* One held-out micro-batch's summed loss: on the CPU backend, or on the GPU engine. */
typedef struct heldout_forward {
    model *m;
    const model_params *params;
    model_activations *acts;
    const gpu_engine_api *gpu;
    gpu_engine *engine;
} heldout_forward;

static int forward_sum(const heldout_forward *f, const heldout_set *h, const int *in, const int *tg, long counted,
                       double *sum, ps_error *err) {
    if (f->engine) {
        model_batch b = {.batch = h->rows, .seq = h->seq, .tokens = in, .targets = tg};
        model_result r;
        if (f->gpu->forward_batch(f->engine, &b, &r, err)) return -1;
        *sum = r.loss_sum;
    } else {
        *sum = model_forward(f->m, f->params, f->acts, in, tg, h->rows, h->seq) * (double)counted;
    }
    return 0;
}

static int set_loss(const heldout_set *h, const heldout_forward *f, comm *c, double *loss, ps_error *err) {
    double sum = 0;
    size_t cells = (size_t)h->rows * h->seq;
    for (int b = 0; b < h->batches; b++) {
        const int *tg = h->targets + b * cells;
        long counted = 0;
        for (size_t i = 0; i < cells; i++) counted += tg[i] >= 0;
        /* a batch with nothing to count still runs: FSDP's gathers need every rank */
        double part = 0;
        if (forward_sum(f, h, h->inputs + b * cells, tg, counted, &part, err)) return -1;
        if (counted && !isfinite(part)) return ps_fail(err, "held-out micro-batch %d: the loss is %f", b, part);
        if (counted) sum += part;
    }
    if (comm_all_reduce_sum_double(c, &sum, 1, err)) return -1;
    *loss = h->counted ? sum / (double)h->counted : NAN;
    return 0;
}

int heldout_set_loss(const heldout_set *h, model *m, const model_params *params, model_activations *acts, comm *c,
                     double *loss, ps_error *err) {
    heldout_forward f = {.m = m, .params = params, .acts = acts};
    return set_loss(h, &f, c, loss, err);
}

int heldout_set_loss_gpu(const heldout_set *h, const gpu_engine_api *gpu, gpu_engine *e, comm *c, double *loss,
                         ps_error *err) {
    heldout_forward f = {.gpu = gpu, .engine = e};
    return set_loss(h, &f, c, loss, err);
}
