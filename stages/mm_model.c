/* mm_model.c - LLM + projector: layout, loading, the <image> splice (mm_model.h). */
#include "mm_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"

int mm_model_init(mm_model *mm, const model_config *cfg, int encoder_width, const backend_ops *ops, ps_error *err) {
    memset(mm, 0, sizeof *mm);
    if (model_init(&mm->m, cfg, ops, err)) return -1;
    if (projector_add(&mm->m.layout, encoder_width, &mm->pj, err)) {
        model_free(&mm->m);
        return -1;
    }
    return 0;
}

void mm_model_free(mm_model *mm) { model_free(&mm->m); }

/* The report's verdict: every LLM tensor loaded, the projector whole or new. */
static int judge(const mm_model *mm, const char *path, const checkpoint_weights_report *cr, mm_load_report *rep,
                 ps_error *err) {
    const model_layout *L = &mm->m.layout;
    int proj_loaded = 0, proj_new = 0;
    memset(rep, 0, sizeof *rep);
    for (int i = 0; i < L->n_tensors; i++) {
        int is_proj = L->tensors[i].unit == mm->pj.unit;
        if (cr->status[i] == CKPT_TENSOR_LOADED) {
            if (is_proj) proj_loaded++;
            else rep->llm_tensors++;
        } else if (is_proj) {
            proj_new++;
        } else {
            return ps_fail(err, "%s: has no %s: not a model of this shape (model.* of the run)", path,
                           L->tensors[i].name);
        }
    }
    if (proj_loaded && proj_new) return ps_fail(err, "%s: holds only part of the projector (mm_projector.*)", path);
    rep->adapted = proj_loaded > 0;
    rep->verified = cr->verified;
    checkpoint_weights_describe(cr, L, rep->text, sizeof rep->text);
    return 0;
}

int mm_model_load(const mm_model *mm, const char *path, model_params *p, mm_load_report *rep, ps_error *err) {
    checkpoint_weights_report cr = {0};
    int rc = checkpoint_read_model(path, &mm->m.layout, p, NULL, &cr, err);
    if (!rc) rc = judge(mm, path, &cr, rep, err);
    checkpoint_weights_report_free(&cr);
    return rc;
}

int mm_model_load_sharded(const mm_model *mm, const char *path, comm *c, const shard_view *mine, mm_load_report *rep,
                          ps_error *err) {
    checkpoint_weights_report cr = {0};
    int rc = checkpoint_load_weights(path, c, &mm->m.layout, mine, NULL, &cr, err);
    /* The report is the same on every rank (the file's names), so is the verdict. */
    if (!rc) rc = judge(mm, path, &cr, rep, err);
    checkpoint_weights_report_free(&cr);
    return rc;
}

static int is_dir(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int exists(const char *p) {
    struct stat st;
    return !stat(p, &st);
}

int mm_run_resolve(const char *run, char *weights, size_t size, run_config *cfg, ps_error *err) {
    char dir[CONFIG_STR_MAX], conf[CONFIG_STR_MAX + 16];
    if (is_dir(run)) {
        snprintf(dir, sizeof dir, "%s", run);
        if ((size_t)snprintf(weights, size, "%s/model.h5", run) >= size) return ps_fail(err, "%s: path too long", run);
        if (!exists(weights))
            return ps_fail(err, "%s: no model.h5 (is the run complete? its final.json marks it)", run);
    } else {
        if (!exists(run)) return ps_fail(err, "%s: no such run directory or weights file", run);
        if ((size_t)snprintf(weights, size, "%s", run) >= size) return ps_fail(err, "%s: path too long", run);
        snprintf(dir, sizeof dir, "%s", run);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        size_t n = strlen(dir);
        if (n >= 11 && !strcmp(dir + n - 11, "checkpoints")) {
            dir[n - 11] = 0;
            if (!dir[0]) snprintf(dir, sizeof dir, ".");
            else if (dir[strlen(dir) - 1] == '/' && strlen(dir) > 1) dir[strlen(dir) - 1] = 0;
        }
    }
    snprintf(conf, sizeof conf, "%s/config.cfg", dir);
    if (!exists(conf)) return ps_fail(err, "%s: no config.cfg beside it (%s): not a presight run", run, conf);
    if (config_load_model(cfg, conf, 0, NULL, err)) return ps_wrap(err, "the config of run %s", run);
    return 0;
}

/* ---- the splice ---- */

int mm_batch_alloc(mm_batch *b, int batch, int seq, ps_error *err) {
    memset(b, 0, sizeof *b);
    if (batch <= 0 || seq <= 1) return ps_fail(err, "a batch of %d x %d rows", batch, seq);
    size_t n = (size_t)batch * seq;
    b->batch = batch;
    b->seq = seq;
    b->tokens = malloc(4 * n * sizeof(int));
    /* At most one sample per row position, so n bounds samples and images. */
    b->cap_samples = (int)n;
    b->image_sample = malloc(2 * n * sizeof(int));
    b->placed = malloc(n * sizeof *b->placed);
    if (!b->tokens || !b->image_sample || !b->placed) {
        mm_batch_free(b);
        return ps_fail(err, "out of memory for a %d x %d batch", batch, seq);
    }
    b->targets = b->tokens + n;
    b->positions = b->targets + n;
    b->sample = b->positions + n;
    b->image_rows = b->image_sample + n;
    mm_batch_clear(b);
    return 0;
}

void mm_batch_free(mm_batch *b) {
    free(b->tokens);
    free(b->image_sample);
    free(b->placed);
    memset(b, 0, sizeof *b);
}

void mm_batch_clear(mm_batch *b) {
    size_t n = (size_t)b->batch * b->seq;
    for (size_t i = 0; i < n; i++) {
        b->tokens[i] = 0;
        b->targets[i] = -1;
        b->positions[i] = 0;
        b->sample[i] = -1;
    }
    b->n_embeds = b->n_images = b->n_samples = 0;
    b->n_counted = 0;
    b->row = b->used = 0;
}

/* The id index of spliced row j of s (v visual rows at image_at), -1 for a picture row. */
static int spliced_index(const chat_tokens *s, int v, int j) {
    int at = s->image_at;
    if (at >= 0 && j >= at && j < at + v) return -1;
    return at >= 0 && j >= at + v ? j - v : j;
}

/* Token and label of spliced row j of s. */
static void spliced(const chat_tokens *s, int v, int j, int *token, int *label) {
    int k = spliced_index(s, v, j);
    *token = k < 0 ? -1 : s->ids[k];
    *label = k < 0 || !s->train[k] ? -1 : s->ids[k];
}

int mm_batch_add(mm_batch *b, const chat_tokens *s, int visual_tokens, int pack, ps_error *err) {
    int v = s->image_at >= 0 ? visual_tokens : 0;
    if (s->image_at >= 0 && visual_tokens <= 0) return ps_fail(err, "a picture with %d visual tokens", visual_tokens);
    int len = s->n + v;
    if (len < 1) return ps_fail(err, "an empty sample");
    int keep = len < b->seq ? len : b->seq;
    int row = b->row, start = b->used;
    if (start > 0 && (!pack || start + keep > b->seq)) {
        row++;
        start = 0;
    }
    if (row >= b->batch || b->n_samples >= b->cap_samples) return 0;
    int id = start == 0 ? 0 : b->sample[(size_t)row * b->seq + start - 1] + 1;
    size_t base = (size_t)row * b->seq + start;
    int n_train = 0, visual_kept = 0;
    for (int j = 0; j < keep; j++) {
        int tok, lab, next_tok, next_lab = -1;
        spliced(s, v, j, &tok, &lab);
        if (j + 1 < keep) spliced(s, v, j + 1, &next_tok, &next_lab);
        b->tokens[base + j] = tok;
        b->targets[base + j] = next_lab;
        b->positions[base + j] = j;
        b->sample[base + j] = id;
        n_train += next_lab >= 0;
        visual_kept += tok == -1;
    }
    mm_placement *pl = &b->placed[b->n_samples++];
    pl->row = row;
    pl->start = start;
    pl->len = keep;
    pl->truncated = len - keep;
    pl->n_train = n_train;
    pl->image = -1;
    if (v) {
        pl->image = b->n_images;
        b->image_sample[b->n_images] = b->n_samples - 1;
        b->image_rows[b->n_images] = visual_kept;
        b->n_images++;
        b->n_embeds += visual_kept;
    }
    b->n_counted += n_train;
    b->row = row;
    b->used = start + keep;
    return 1;
}

void mm_batch_new_row(mm_batch *b) {
    if (b->used > 0) {
        b->row++;
        b->used = 0;
    }
}

int mm_splice_ids(const chat_tokens *s, int visual_tokens, int *out) {
    int v = s->image_at >= 0 ? visual_tokens : 0;
    for (int j = 0; j < s->n + v; j++) {
        int k = spliced_index(s, v, j);
        out[j] = k < 0 ? -1 : s->ids[k];
    }
    return s->n + v;
}

int mm_sample_targets(const chat_tokens *s, int visual_tokens, int seq) {
    int v = s->image_at >= 0 ? visual_tokens : 0, n = 0;
    for (int k = 0; k < s->n; k++) {
        int j = s->image_at >= 0 && k >= s->image_at ? k + v : k; /* its spliced row */
        n += s->train[k] && j >= 1 && j < seq;
    }
    return n;
}

model_batch mm_batch_view(const mm_batch *b, const real *embeds, real *embeds_grad, double loss_divisor) {
    model_batch mb;
    memset(&mb, 0, sizeof mb);
    mb.batch = b->batch;
    mb.seq = b->seq;
    mb.tokens = b->tokens;
    mb.targets = b->targets;
    mb.positions = b->positions;
    mb.sample = b->sample;
    mb.embeds = embeds;
    mb.n_embeds = b->n_embeds;
    mb.embeds_grad = embeds_grad;
    mb.loss_divisor = loss_divisor;
    return mb;
}

void mm_batch_gather(const mm_batch *b, const float *const *features, int width, real *out) {
    size_t at = 0;
    for (int k = 0; k < b->n_images; k++) {
        const float *f = features[b->image_sample[k]];
        size_t n = (size_t)b->image_rows[k] * width;
        for (size_t i = 0; i < n; i++) out[at + i] = (real)f[i];
        at += n;
    }
}
