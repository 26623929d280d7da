/* eval_model.c - a trained model for evaluation: load, score requests, decode (see eval_model.h). */
#include "eval_model.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "decode.h"
#include "mm_model.h"
#include "sha256.h"

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int eval_model_weights_path(const run_config *cfg, char *path, size_t size, ps_error *err) {
    if (cfg->eval.checkpoint[0]) {
        if (!file_exists(cfg->eval.checkpoint)) return ps_fail(err, "eval.checkpoint '%s': no such file", cfg->eval.checkpoint);
        snprintf(path, size, "%s", cfg->eval.checkpoint);
        return 0;
    }
    snprintf(path, size, "%s/model.h5", cfg->run_dir);
    if (file_exists(path)) return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", cfg->run_dir);
    DIR *d = opendir(dir);
    char best[256] = "";
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        /* step_NNNNNNNN.h5 sorts by name; .tmp files are incomplete */
        if (!strncmp(e->d_name, "step_", 5) && len > 3 && !strcmp(e->d_name + len - 3, ".h5") && len < sizeof best &&
            strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    if (d) closedir(d);
    if (!best[0])
        return ps_fail(err, "run.dir '%s' holds no model.h5 and no checkpoint (set eval.checkpoint=FILE)", cfg->run_dir);
    snprintf(path, size, "%s/%s", dir, best);
    return 0;
}

/* datasets/text.c's ids as a tiktoken file: one token per byte, ranks 0..255. */
static int write_byte_vocab(const char *path, ps_error *err) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()); /* ranks may write it at once */
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot create", tmp);
    for (int b = 0; b < 256; b++) fprintf(f, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    if (fclose(f) || rename(tmp, path)) { /* a full disk: say so, and leave no .tmp behind */
        ps_fail(err, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int eval_tokenizer_open(const run_config *cfg, const char *scratch_dir, tokenizer **tok, uint32_t *eot,
                        ps_error *err) {
    const data_config *d = &cfg->data;
    char path[4200];
    tokenizer_kind kind = TOKENIZER_PLAIN;
    *tok = NULL;
    if (d->tokenizer[0]) {
        snprintf(path, sizeof path, "%s", d->tokenizer);
        if (tokenizer_kind_parse(d->tokenizer_kind, &kind, err)) return -1;
    } else if (!strcmp(d->kind, "text")) {
        snprintf(path, sizeof path, "%s/bytes.tiktoken", scratch_dir);
        if (write_byte_vocab(path, err)) return -1;
    } else {
        return ps_fail(err, "data.tokenizer is not set: which tokenizer was the model trained with? (set data.tokenizer=FILE)");
    }
    if (tokenizer_load(tok, path, kind, err)) return -1;
    int64_t id = tokenizer_special_id(*tok, "<|end_of_text|>");
    int rc = tokenizer_vocab_size(*tok) > (size_t)cfg->model.vocab
                 ? ps_fail(err, "tokenizer %s has %zu ids, more than model.vocab = %d", path, tokenizer_vocab_size(*tok),
                           cfg->model.vocab)
             : id < 0 ? ps_fail(err, "tokenizer %s has no <|end_of_text|>", path)
                      : 0;
    if (rc) {
        tokenizer_free(*tok);
        *tok = NULL;
        return -1;
    }
    *eot = (uint32_t)id;
    return 0;
}

int eval_model_open(eval_model *em, const run_config *cfg, const char *scratch_dir, ps_error *err) {
    memset(em, 0, sizeof *em);
    em->cfg = *cfg;
    if (eval_model_weights_path(cfg, em->weights, sizeof em->weights, err)) return -1;
    if (model_init(&em->model, &cfg->model, backend_cpu(), err)) return -1;
    checkpoint_weights_report rep = {0};
    int rc = model_params_alloc(&em->params, &em->model.layout, err);
    if (!rc) rc = checkpoint_read_model(em->weights, &em->model.layout, &em->params, NULL, &rep, err);
    if (!rc && rep.fresh) rc = ps_fail(err, "%s: lacks %d of the model's tensors", em->weights, rep.fresh);
    if (!rc) checkpoint_weights_describe(&rep, &em->model.layout, em->describe, sizeof em->describe);
    checkpoint_weights_report_free(&rep);
    if (!rc) rc = sha256_file(em->weights, em->weights_sha256, err);
    if (!rc) rc = eval_tokenizer_open(cfg, scratch_dir, &em->tok, &em->prefix, err);
    em->stop = em->prefix;
    if (rc) eval_model_close(em);
    return rc;
}

/* ------------------------------------------------------------ pictures */

/* The adapt.* group describing the weights: the evaluated config's, else that of the
 * weights' own run (eval.checkpoint naming an adapted file). 0: not an adapt run. */
static int adapt_group(const run_config *cfg, const char *weights, adapt_config *out) {
    if (cfg->adapt.encoder_width > 0) {
        *out = cfg->adapt;
        return 1;
    }
    run_config *own = malloc(sizeof *own);
    char w[4096];
    ps_error ignored; /* no run config beside the file: a plain pretrained model */
    int found = own && !mm_run_resolve(weights, w, sizeof w, own, &ignored) && own->adapt.encoder_width > 0;
    if (found) *out = own->adapt;
    free(own);
    return found;
}

static int name_order(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every <set>.h5 of em->features, in name order, all of the adapt run's encoder. */
static int open_features(eval_model *em, const adapt_config *ad, ps_error *err) {
    DIR *d = opendir(em->features);
    if (!d)
        return ps_fail(err, "eval.features '%s': no such folder (the adapt stage's features; set eval.features=DIR)",
                       em->features);
    int rc = 0, cap = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5")) continue; /* NAME.h5.tmp is unfinished */
        if (em->n_files == cap) {
            cap = cap ? 2 * cap : 8;
            char **grown = realloc(em->file_names, sizeof *grown * (size_t)cap);
            if (!grown) rc = ps_fail(err, "out of memory");
            else em->file_names = grown;
        }
        if (!rc && !(em->file_names[em->n_files++] = strdup(e->d_name))) rc = ps_fail(err, "out of memory");
    }
    closedir(d);
    if (!rc && !em->n_files) rc = ps_fail(err, "eval.features '%s' holds no features file (*.h5)", em->features);
    if (rc) return -1;
    qsort(em->file_names, (size_t)em->n_files, sizeof *em->file_names, name_order);
    if (!(em->files = calloc((size_t)em->n_files, sizeof *em->files))) return ps_fail(err, "out of memory");
    for (int i = 0; i < em->n_files; i++) {
        char path[2 * CONFIG_STR_MAX];
        snprintf(path, sizeof path, "%s/%s", em->features, em->file_names[i]);
        if (features_open(&em->files[i], path, NULL, 0, err)) return ps_wrap(err, "eval.features");
        const features_meta *m = features_meta_of(em->files[i]);
        if (m->width != ad->encoder_width || (ad->encoder[0] && strcmp(m->encoder, ad->encoder)) ||
            (ad->encoder_sha256[0] && strcmp(m->weights_sha256, ad->encoder_sha256)))
            return ps_fail(err, "%s: features of encoder %s (width %d, weights %.12s), but the model was adapted to %s "
                                "(width %d, weights %.12s)",
                           path, m->encoder, m->width, m->weights_sha256, ad->encoder, ad->encoder_width,
                           ad->encoder_sha256);
    }
    return 0;
}

/* The projector and what sees the pictures, once the weights are loaded. */
static int open_pictures(eval_model *em, const adapt_config *ad, ps_error *err) {
    em->image_input = 1;
    if (chat_template_for_run(&em->tpl, &em->cfg, err)) {
        em->image_input = 0;
        return -1;
    }
    em->stop = (uint32_t)em->tpl.eot;
    em->visual_tokens = ad->visual_tokens;
    em->encoder_width = ad->encoder_width;
    snprintf(em->encoder, sizeof em->encoder, "%s", ad->encoder);
    snprintf(em->stage, sizeof em->stage, "%s", ad->stage);
    snprintf(em->features, sizeof em->features, "%s", em->cfg.eval.features[0] ? em->cfg.eval.features : ad->features);
    if (!em->features[0]) return ps_fail(err, "adapt.features of the model's run is empty: set eval.features=DIR");
    return open_features(em, ad, err);
}

int eval_model_open_visual(eval_model *em, const run_config *cfg, const char *scratch_dir, ps_error *err) {
    char weights[4096];
    adapt_config ad;
    if (eval_model_weights_path(cfg, weights, sizeof weights, err)) return -1;
    if (!adapt_group(cfg, weights, &ad)) return eval_model_open(em, cfg, scratch_dir, err);
    memset(em, 0, sizeof *em);
    em->cfg = *cfg;
    snprintf(em->weights, sizeof em->weights, "%s", weights);
    mm_model mm;
    if (mm_model_init(&mm, &cfg->model, ad.encoder_width, backend_cpu(), err)) return -1;
    em->model = mm.m; /* the LLM's units, then the projector's: model_free frees both */
    em->pj = mm.pj;
    mm_load_report rep;
    int rc = model_params_alloc(&em->params, &em->model.layout, err);
    if (!rc) {
        model_init_weights(&em->params, &em->model.layout, (uint64_t)cfg->train.seed);
        rc = mm_model_load(&mm, em->weights, &em->params, &rep, err);
    }
    if (!rc) snprintf(em->describe, sizeof em->describe, "%.500s", rep.text);
    if (!rc) rc = sha256_file(em->weights, em->weights_sha256, err);
    if (!rc) rc = eval_tokenizer_open(cfg, scratch_dir, &em->tok, &em->prefix, err);
    em->stop = em->prefix;
    /* a blind pass never saw a picture; a pretrained file has no projector */
    if (!rc && rep.adapted && strcmp(ad.stage, "blind")) rc = open_pictures(em, &ad, err);
    if (rc) eval_model_close(em);
    return rc;
}

int eval_model_find_picture(const eval_model *em, const char *id, eval_picture *out, ps_error *err) {
    out->file = out->row = -1;
    for (int i = 0; i < em->n_files; i++) {
        int row = features_find(em->files[i], id);
        if (row < 0) continue;
        if (out->file >= 0)
            return ps_fail(err, "picture '%s' is in both %s/%s and %s: which one?", id, em->features,
                           em->file_names[out->file], em->file_names[i]);
        out->file = i, out->row = row;
    }
    if (out->file < 0)
        return ps_fail(err, "picture '%s' is in none of the features files of %s (eval.features: the image sets the "
                            "task's pictures come from)", id, em->features);
    if (!features_valid(em->files[out->file], out->row))
        return ps_fail(err, "picture '%s' (%s/%s) failed to encode (/valid = 0)", id, em->features,
                       em->file_names[out->file]);
    return 0;
}

int eval_model_project(eval_model *em, eval_picture pic, real *out, ps_error *err) {
    int V = em->visual_tokens, W = em->encoder_width;
    float *f = malloc(sizeof *f * (size_t)V * W);
    real *in = malloc(sizeof *in * (size_t)V * W);
    projector_acts acts = {0};
    int rc = f && in ? 0 : ps_fail(err, "out of memory");
    if (!rc) rc = features_read_tokens(em->files[pic.file], pic.row, V, f, err);
    if (!rc) rc = projector_acts_alloc(&acts, &em->pj, V, err);
    if (!rc) {
        for (size_t i = 0; i < (size_t)V * W; i++) in[i] = (real)f[i];
        projector_forward(em->model.ops, &em->pj, &em->model.layout, &em->params, &acts, in, V, out);
    }
    projector_acts_free(&acts);
    free(f), free(in);
    return rc;
}

void eval_model_close(eval_model *em) {
    model_params_free(&em->params);
    model_free(&em->model);
    tokenizer_free(em->tok);
    for (int i = 0; i < em->n_files; i++) {
        features_free(em->files[i]);
        free(em->file_names[i]);
    }
    free(em->files);
    free(em->file_names);
    em->files = NULL, em->file_names = NULL, em->n_files = 0;
    if (em->image_input) chat_template_free(&em->tpl);
    em->image_input = 0;
    /* closing twice (after a failed open) is harmless */
    memset(&em->params, 0, sizeof em->params);
    memset(&em->model, 0, sizeof em->model);
    em->tok = NULL;
}

/* One request's row: input ids and where its continuation is predicted. */
typedef struct row {
    uint32_t *input;
    size_t n_input, first;
} row;

static int score_chunk(eval_model *em, const eval_request *req, size_t n, double *ll, int *greedy, double *tokens,
                       uint32_t *scratch, ps_error *err) {
    size_t ctx = (size_t)em->cfg.model.context, seq = 1;
    row *r = calloc(n, sizeof *r);
    if (!r) return ps_fail(err, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        r[i].input = scratch + i * ctx;
        const eval_request *q = &req[i];
        rc = eval_request_input(q->context.ids, q->context.n, q->continuation.ids, q->continuation.n, ctx, r[i].input,
                                &r[i].n_input, &r[i].first, err);
        if (r[i].n_input > seq) seq = r[i].n_input;
    }
    int B = (int)n, T = (int)seq, V = em->cfg.model.vocab;
    size_t cells = (size_t)B * T;
    int *tok = malloc(sizeof *tok * cells), *tgt = malloc(sizeof *tgt * cells), *sid = malloc(sizeof *sid * cells);
    double *lp = malloc(sizeof *lp * cells);
    model_activations *acts = NULL;
    if (!rc && (!tok || !tgt || !sid || !lp)) rc = ps_fail(err, "out of memory");
    if (!rc) acts = model_activations_alloc_forward(&em->model.layout, B, T, err);
    if (!rc && !acts) rc = -1;
    for (int b = 0; b < B && !rc; b++)
        for (int t = 0; t < T; t++) {
            size_t k = (size_t)b * T + t;
            int in = (size_t)t < r[b].n_input;
            tok[k] = in ? (int)r[b].input[t] : 0;
            sid[k] = in ? 0 : -1;
            /* position t predicts input[t + 1], or the continuation's last token at the end */
            size_t j = (size_t)t + 1;
            tgt[k] = !in || (size_t)t < r[b].first ? -1
                     : j < r[b].n_input             ? (int)r[b].input[j]
                                                    : (int)req[b].continuation.ids[req[b].continuation.n - 1];
        }
    if (!rc) {
        model_batch mb = {.batch = B, .seq = T, .tokens = tok, .targets = tgt, .sample = sid, .log_probs = lp};
        rc = model_forward_batch(&em->model, &em->params, acts, &mb, NULL, err);
    }
    const real *logits = rc ? NULL : model_logits(acts);
    for (int b = 0; b < B && !rc; b++) {
        double sum = 0;
        int all = 1;
        for (size_t t = r[b].first; t < r[b].n_input; t++) {
            size_t k = (size_t)b * T + t;
            sum += lp[k];
            const real *z = logits + k * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (z[v] > z[best]) best = v;
            if (best != tgt[k]) all = 0;
        }
        ll[b] = sum;
        greedy[b] = all;
        if (tokens) *tokens += (double)r[b].n_input;
    }
    model_activations_free(acts);
    free(tok), free(tgt), free(sid), free(lp), free(r);
    return rc;
}

/* A request with a picture as mm_model.h's splice has it: context (train 0), then the
 * continuation (train 1), so that the shifted labels make the continuation the targets. */
static int request_sample(const eval_request *q, chat_tokens *c, ps_error *err) {
    size_t n = q->context.n + q->continuation.n;
    if (!q->continuation.n) return ps_fail(err, "an empty continuation");
    c->ids = malloc(sizeof *c->ids * n);
    c->train = malloc(n);
    if (!c->ids || !c->train) return ps_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int cont = i >= q->context.n;
        c->ids[i] = (int)(cont ? q->continuation.ids[i - q->context.n] : q->context.ids[i]);
        c->train[i] = (unsigned char)cont;
    }
    c->n = c->cap = (int)n;
    c->n_train = (int)q->continuation.n;
    c->image_at = q->image_at;
    return 0;
}

/* Requests idx[0..n) of req, each with its picture, as one padded batch. */
static int score_visual_chunk(eval_model *em, const eval_request *req, const size_t *idx, size_t n, double *ll,
                              int *greedy, double *tokens, ps_error *err) {
    int ctx = em->cfg.model.context, D = em->cfg.model.dim, V = em->cfg.model.vocab, seq = 2;
    chat_tokens *c = calloc(n, sizeof *c);
    int rc = c ? 0 : ps_fail(err, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const eval_request *q = &req[idx[i]];
        rc = request_sample(q, &c[i], err);
        int rows = c[i].n + q->visual;
        if (!rc && rows > ctx)
            rc = ps_fail(err, "a prompt with its picture (%d rows) does not fit model.context = %d", rows, ctx);
        if (rows > seq) seq = rows;
    }
    mm_batch b = {0};
    real *embeds = NULL;
    double *lp = NULL;
    model_activations *acts = NULL;
    if (!rc) rc = mm_batch_alloc(&b, (int)n, seq, err);
    for (size_t i = 0; i < n && !rc; i++)
        if (mm_batch_add(&b, &c[i], req[idx[i]].visual, 0, err) != 1) rc = ps_fail(err, "internal: no row for a request");
    if (!rc && !(embeds = malloc(sizeof *embeds * ((size_t)b.n_embeds * D + 1)))) rc = ps_fail(err, "out of memory");
    if (!rc && !(lp = malloc(sizeof *lp * (size_t)n * seq))) rc = ps_fail(err, "out of memory");
    for (int k = 0, at = 0; k < b.n_images && !rc; at += b.image_rows[k++]) /* row order: sample order */
        memcpy(embeds + (size_t)at * D, req[idx[b.image_sample[k]]].embeds, sizeof *embeds * (size_t)b.image_rows[k] * D);
    if (!rc && !(acts = model_activations_alloc_forward(&em->model.layout, (int)n, seq, err))) rc = -1;
    if (!rc) {
        model_batch mb = mm_batch_view(&b, embeds, NULL, 0);
        mb.log_probs = lp;
        rc = model_forward_batch(&em->model, &em->params, acts, &mb, NULL, err);
    }
    const real *logits = rc ? NULL : model_logits(acts);
    for (size_t i = 0; i < n && !rc; i++) {
        const mm_placement *pl = &b.placed[i];
        double sum = 0;
        int all = 1;
        for (int t = 0; t < pl->len; t++) {
            size_t k = (size_t)pl->row * seq + pl->start + t;
            if (b.targets[k] < 0) continue;
            sum += lp[k];
            const real *z = logits + k * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (z[v] > z[best]) best = v;
            if (best != b.targets[k]) all = 0;
        }
        ll[idx[i]] = sum;
        greedy[idx[i]] = all;
        if (tokens) *tokens += (double)(pl->len - 1);
    }
    model_activations_free(acts);
    mm_batch_free(&b);
    for (size_t i = 0; i < n; i++) chat_tokens_free(&c[i]);
    free(c), free(embeds), free(lp);
    return rc;
}

int eval_model_score(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                     double *tokens, ps_error *err) {
    if (batch < 1) batch = 1;
    uint32_t *scratch = malloc(sizeof *scratch * (size_t)batch * (size_t)em->cfg.model.context);
    eval_request *text = malloc(sizeof *text * (n ? n : 1));
    size_t *at = malloc(sizeof *at * (n ? n : 1)), *pic = malloc(sizeof *pic * (n ? n : 1)), n_text = 0, n_pic = 0;
    double *tll = malloc(sizeof *tll * (n ? n : 1));
    int *tgr = malloc(sizeof *tgr * (n ? n : 1));
    int rc = scratch && text && at && pic && tll && tgr ? 0 : ps_fail(err, "out of memory");
    /* requests with a picture go in passes of their own; every result is batch-invariant */
    for (size_t i = 0; i < n && !rc; i++) {
        if (req[i].visual > 0) pic[n_pic++] = i;
        else at[n_text] = i, text[n_text++] = req[i];
    }
    for (size_t i = 0; i < n_text && !rc; i += (size_t)batch) {
        size_t m = n_text - i < (size_t)batch ? n_text - i : (size_t)batch;
        rc = score_chunk(em, text + i, m, tll + i, tgr + i, tokens, scratch, err);
    }
    for (size_t i = 0; i < n_text && !rc; i++) ll[at[i]] = tll[i], greedy[at[i]] = tgr[i];
    for (size_t i = 0; i < n_pic && !rc; i += (size_t)batch) {
        size_t m = n_pic - i < (size_t)batch ? n_pic - i : (size_t)batch;
        rc = score_visual_chunk(em, req, pic + i, m, ll, greedy, tokens, err);
    }
    free(scratch), free(text), free(at), free(pic), free(tll), free(tgr);
    return rc;
}

static int generate_chunk(eval_model *em, const eval_prompt *prompts, size_t n, int max_new, uint32_t **out,
                          size_t *n_out, ps_error *err) {
    int ctx = em->cfg.model.context, keep = ctx - max_new + 1, stride = 1, D = em->cfg.model.dim, n_embeds = 0;
    if (keep < 1) return ps_fail(err, "eval.max_new_tokens = %d leaves no room in model.context = %d", max_new, ctx);
    for (size_t i = 0; i < n; i++) {
        if (prompts[i].n == 0) return ps_fail(err, "an empty prompt");
        int rows = (int)prompts[i].n + prompts[i].visual;
        if (prompts[i].visual && rows > keep)
            return ps_fail(err, "a prompt with its picture (%d rows) and eval.max_new_tokens = %d exceed model.context = %d",
                           rows, max_new, ctx);
        int len = rows < keep ? rows : keep;
        if (len > stride) stride = len;
        n_embeds += prompts[i].visual;
    }
    int *p = calloc((size_t)n * stride, sizeof *p), *len = calloc(n, sizeof *len);
    int *gen = malloc(sizeof *gen * n * (size_t)max_new);
    real *embeds = malloc(sizeof *embeds * ((size_t)n_embeds * D + 1));
    int rc = p && len && gen && embeds ? 0 : ps_fail(err, "out of memory");
    for (size_t i = 0, e = 0; i < n && !rc; i++) {
        const eval_prompt *q = &prompts[i];
        if (q->visual) { /* mm_model.h's splice of the whole prompt */
            chat_tokens c = {.n = (int)q->n, .image_at = q->image_at};
            if (!(c.ids = malloc(sizeof *c.ids * q->n))) {
                rc = ps_fail(err, "out of memory");
                break;
            }
            for (size_t t = 0; t < q->n; t++) c.ids[t] = (int)q->ids[t];
            len[i] = mm_splice_ids(&c, q->visual, p + i * stride);
            free(c.ids);
            memcpy(embeds + e * D, q->embeds, sizeof *embeds * (size_t)q->visual * D);
            e += (size_t)q->visual;
            continue;
        }
        len[i] = q->n < (size_t)keep ? (int)q->n : keep;
        const uint32_t *src = q->ids + q->n - len[i]; /* the last tokens */
        for (int t = 0; t < len[i]; t++) p[i * stride + t] = (int)src[t];
    }
    if (!rc)
        rc = model_greedy_decode_embeds(&em->model, &em->params, p, stride, len, (int)n, embeds, n_embeds, max_new, gen,
                                        NULL, err);
    for (size_t i = 0; i < n && !rc; i++) {
        out[i] = malloc(sizeof **out * (size_t)max_new);
        if (!out[i]) {
            rc = ps_fail(err, "out of memory");
            break;
        }
        size_t k = 0;
        for (int t = 0; t < max_new && gen[i * max_new + t] != (int)em->stop; t++) out[i][k++] = (uint32_t)gen[i * max_new + t];
        n_out[i] = k;
    }
    free(p), free(len), free(gen), free(embeds);
    return rc;
}

int eval_model_generate_visual(eval_model *em, const eval_prompt *prompts, size_t n, int batch, int max_new,
                               uint32_t **out, size_t *n_out, ps_error *err) {
    if (batch < 1) batch = 1;
    for (size_t i = 0; i < n; i++) out[i] = NULL, n_out[i] = 0;
    for (size_t i = 0; i < n; i += (size_t)batch) {
        size_t m = n - i < (size_t)batch ? n - i : (size_t)batch;
        if (generate_chunk(em, prompts + i, m, max_new, out + i, n_out + i, err)) return -1;
    }
    return 0;
}

int eval_model_generate(eval_model *em, const tokenizer_ids *prompts, size_t n, int batch, int max_new,
                        uint32_t **out, size_t *n_out, ps_error *err) {
    eval_prompt *p = malloc(sizeof *p * (n ? n : 1));
    if (!p) return ps_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) p[i] = (eval_prompt){.ids = prompts[i].ids, .n = prompts[i].n};
    int rc = eval_model_generate_visual(em, p, n, batch, max_new, out, n_out, err);
    free(p);
    return rc;
}
