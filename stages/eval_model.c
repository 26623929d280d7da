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
#include "sharding.h"
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

int eval_model_use_gpu(eval_model *em, const gpu_engine_api *api, ps_error *err) {
    const model_layout *L = &em->model.layout;
    em->engine_layout = *L;
    em->engine_units = malloc(sizeof *em->engine_units * (size_t)L->n_units);
    em->engine_sizes = malloc(sizeof *em->engine_sizes * (size_t)L->n_units);
    if (!em->engine_units || !em->engine_sizes) return ps_fail(err, "out of memory");
    for (int u = 0; u < L->n_units; u++) {
        em->engine_units[u] = (model_unit){.size = L->units[u].size, .trainable = 0};
        em->engine_sizes[u] = L->units[u].size;
    }
    em->engine_layout.units = em->engine_units;
    em->engine_slices = (shard_layout){L->n_units, 0, 1, em->engine_sizes, em->engine_sizes};
    /* the engine's own [1, 1] batch is unused: scoring and decoding size their passes */
    gpu_engine_setup setup = {.layout = &em->engine_layout, .slices = &em->engine_slices, .strategy = STRATEGY_DDP,
                              .micro_batch = 1, .seq_len = 1, .grad_accum = 1, .rank = 0, .world = 1,
                              .replica_rank = 0, .replicas = 1, .local_rank = -1};
    if (!(em->engine = api->create(&setup, err))) return ps_wrap(err, "the GPU engine for evaluation");
    em->gpu = api;
    if (api->upload(em->engine, em->params.unit, NULL, NULL, err)) return ps_wrap(err, "the GPU engine: the weights");
    size_t len = strlen(em->describe);
    snprintf(em->describe + len, sizeof em->describe - len, "; on the GPU engine: %.300s", api->describe(em->engine));
    return 0;
}

void eval_model_close(eval_model *em) {
    if (em->engine) em->gpu->destroy(em->engine);
    em->engine = NULL, em->gpu = NULL;
    free(em->engine_units), free(em->engine_sizes);
    em->engine_units = NULL, em->engine_sizes = NULL;
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

/* The CPU's forward of mb (with targets and log_probs): best[k] = the argmax of row k's
 * logits (ties to the lowest id) for every row with a target. */
static int forward_cpu(eval_model *em, const model_batch *mb, int *best, ps_error *err) {
    int V = em->cfg.model.vocab;
    model_activations *acts = model_activations_alloc_forward(&em->model.layout, mb->batch, mb->seq, err);
    if (!acts) return -1;
    int rc = model_forward_batch(&em->model, &em->params, acts, mb, NULL, err);
    const real *logits = rc ? NULL : model_logits(acts);
    for (size_t k = 0; !rc && k < (size_t)mb->batch * mb->seq; k++) {
        if (mb->targets[k] < 0) continue;
        const real *z = logits + k * V;
        int b = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[b]) b = v;
        best[k] = b;
    }
    model_activations_free(acts);
    return rc;
}

/* The engine's pass length for inputs of `rows` rows: a power of two, at least 16, at most
 * model.context. */
static int length_class(const eval_model *em, int rows) {
    int ctx = em->cfg.model.context, c = 16;
    while (c < rows && c < ctx) c *= 2;
    return c < ctx ? c : ctx;
}

/* The rows request q runs as (after the cut to model.context): text (context +
 * continuation)[:-1], a picture's request its ids and the picture's rows. */
static int request_rows(const eval_model *em, const eval_request *q) {
    int ctx = em->cfg.model.context, rows = (int)(q->context.n + q->continuation.n) + (q->visual ? q->visual : -1);
    return rows < ctx ? rows : ctx;
}

/* The same on the GPU engine, mb padded to [rows, length_class(mb->seq)] (rows >= mb->batch).
 * The caller puts only requests of one length class in a pass, so a request's pass has the
 * shape [eval.batch, its own length class] whatever shares it: on a GPU the GEMMs' kernels
 * are chosen per shape, and this keeps what a request gets independent of the others. */
static int forward_engine(eval_model *em, const model_batch *mb, int rows, int *best, ps_error *err) {
    int B = rows > mb->batch ? rows : mb->batch, S = length_class(em, mb->seq), T = mb->seq;
    size_t cells = (size_t)B * S;
    int *tok = calloc(cells, sizeof *tok), *tgt = malloc(sizeof *tgt * cells), *sid = malloc(sizeof *sid * cells);
    int *pos = calloc(cells, sizeof *pos), *arg = calloc(cells, sizeof *arg);
    double *lp = calloc(cells, sizeof *lp);
    int rc = tok && tgt && sid && pos && arg && lp ? 0 : ps_fail(err, "out of memory");
    if (!rc && T > S) rc = ps_fail(err, "internal: a scoring pass of %d rows, more than its length class %d", T, S);
    for (size_t k = 0; !rc && k < cells; k++) tgt[k] = -1, sid[k] = -1;
    for (int b = 0; !rc && b < mb->batch; b++)
        for (int t = 0; t < T; t++) { /* row order kept: the k-th -1 row still reads embeds[k] */
            size_t from = (size_t)b * T + t, to = (size_t)b * S + t;
            tok[to] = mb->tokens[from], tgt[to] = mb->targets[from];
            sid[to] = mb->sample ? mb->sample[from] : 0;
            pos[to] = mb->positions ? mb->positions[from] : t;
        }
    if (!rc) {
        model_batch pb = {.batch = B, .seq = S, .tokens = tok, .targets = tgt, .positions = pos, .sample = sid,
                          .embeds = mb->embeds, .n_embeds = mb->n_embeds, .log_probs = lp};
        rc = em->gpu->score_batch(em->engine, &pb, arg, err);
    }
    for (int b = 0; !rc && b < mb->batch; b++)
        for (int t = 0; t < T; t++) {
            size_t from = (size_t)b * T + t, to = (size_t)b * S + t;
            mb->log_probs[from] = lp[to];
            best[from] = arg[to];
        }
    free(tok), free(tgt), free(sid), free(pos), free(arg), free(lp);
    return rc;
}

/* mb's log_probs and best (see forward_cpu) on the model's backend; rows: the pass size. */
static int forward_scores(eval_model *em, const model_batch *mb, int rows, int *best, ps_error *err) {
    return em->engine ? forward_engine(em, mb, rows, best, err) : forward_cpu(em, mb, best, err);
}

static int score_chunk(eval_model *em, const eval_request *req, size_t n, int rows, double *ll, int *greedy, int *cut,
                       double *tokens, uint32_t *scratch, ps_error *err) {
    size_t ctx = (size_t)em->cfg.model.context, seq = 1;
    row *r = calloc(n, sizeof *r);
    if (!r) return ps_fail(err, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        r[i].input = scratch + i * ctx;
        const eval_request *q = &req[i];
        rc = eval_request_input(q->context.ids, q->context.n, q->continuation.ids, q->continuation.n, ctx, r[i].input,
                                &r[i].n_input, &r[i].first, err);
        /* the input is (context + continuation)[:-1], its first tokens cut to fit (lm-eval's way) */
        if (!rc) cut[i] = (int)(q->context.n + q->continuation.n - 1 - r[i].n_input);
        if (r[i].n_input > seq) seq = r[i].n_input;
    }
    int B = (int)n, T = (int)seq;
    size_t cells = (size_t)B * T;
    int *tok = malloc(sizeof *tok * cells), *tgt = malloc(sizeof *tgt * cells), *sid = malloc(sizeof *sid * cells);
    int *best = malloc(sizeof *best * cells);
    double *lp = malloc(sizeof *lp * cells);
    if (!rc && (!tok || !tgt || !sid || !lp || !best)) rc = ps_fail(err, "out of memory");
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
        rc = forward_scores(em, &mb, rows, best, err);
    }
    for (int b = 0; b < B && !rc; b++) {
        double sum = 0;
        int all = 1;
        for (size_t t = r[b].first; t < r[b].n_input; t++) {
            size_t k = (size_t)b * T + t;
            sum += lp[k];
            if (best[k] != tgt[k]) all = 0;
        }
        ll[b] = sum;
        greedy[b] = all;
        if (tokens) *tokens += (double)r[b].n_input;
    }
    free(tok), free(tgt), free(sid), free(lp), free(best), free(r);
    return rc;
}

/* A prompt with a picture that does not fit `room` rows loses text, never the picture's rows
 * nor ids[fixed..n) (a continuation): first the earliest ids after the picture (the start of
 * the question: its end, the assistant's turn and what is scored stay next to each other),
 * then the earliest before it (the template's opening). LLaVA cuts the end of the spliced
 * sequence instead, which would cut the answer being scored or asked for. *before and *after:
 * the ids to drop there (0 and 0: it fits); -1 when the picture and ids[fixed..n) alone do not
 * fit. */
static int picture_cut(int n, int image_at, int visual, int fixed, int room, int *before, int *after) {
    int excess = n + visual - room;
    *before = *after = 0;
    if (excess <= 0) return 0;
    *after = excess < fixed - image_at ? excess : fixed - image_at;
    *before = excess - *after < image_at ? excess - *after : image_at;
    return *before + *after < excess ? -1 : 0;
}

/* A request with a picture as mm_model.h's splice has it: context (train 0), then the
 * continuation (train 1), so that the shifted labels make the continuation the targets;
 * cut to fit ctx rows (picture_cut; *cut: the ids dropped). */
static int request_sample(const eval_request *q, int ctx, chat_tokens *c, int *cut, ps_error *err) {
    int n_ctx = (int)q->context.n, n = n_ctx + (int)q->continuation.n, before, after;
    if (!q->continuation.n) return ps_fail(err, "an empty continuation");
    if (picture_cut(n, q->image_at, q->visual, n_ctx, ctx, &before, &after))
        return ps_fail(err, "a picture (%d rows) and its continuation (%zu tokens) do not fit model.context = %d",
                       q->visual, q->continuation.n, ctx);
    c->ids = malloc(sizeof *c->ids * (size_t)n);
    c->train = malloc((size_t)n);
    if (!c->ids || !c->train) return ps_fail(err, "out of memory");
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (i < before || (i >= q->image_at && i < q->image_at + after)) continue;
        int cont = i >= n_ctx;
        c->ids[m] = (int)(cont ? q->continuation.ids[i - n_ctx] : q->context.ids[i]);
        c->train[m++] = (unsigned char)cont;
    }
    c->n = m;
    c->cap = n;
    c->n_train = (int)q->continuation.n;
    c->image_at = q->image_at - before;
    *cut = before + after;
    return 0;
}

/* Requests idx[0..n) of req, each with its picture, as one padded batch. */
static int score_visual_chunk(eval_model *em, const eval_request *req, const size_t *idx, size_t n, int rows_per_pass,
                              double *ll, int *greedy, int *cut, double *tokens, ps_error *err) {
    int ctx = em->cfg.model.context, D = em->cfg.model.dim, seq = 2;
    chat_tokens *c = calloc(n, sizeof *c);
    int rc = c ? 0 : ps_fail(err, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const eval_request *q = &req[idx[i]];
        rc = request_sample(q, ctx, &c[i], &cut[idx[i]], err);
        int rows = c[i].n + q->visual;
        if (!rc && rows > seq) seq = rows;
    }
    mm_batch b = {0};
    real *embeds = NULL;
    double *lp = NULL;
    int *best = NULL;
    if (!rc) rc = mm_batch_alloc(&b, (int)n, seq, err);
    for (size_t i = 0; i < n && !rc; i++)
        if (mm_batch_add(&b, &c[i], req[idx[i]].visual, 0, err) != 1) rc = ps_fail(err, "internal: no row for a request");
    if (!rc && !(embeds = malloc(sizeof *embeds * ((size_t)b.n_embeds * D + 1)))) rc = ps_fail(err, "out of memory");
    if (!rc && (!(lp = malloc(sizeof *lp * (size_t)n * seq)) || !(best = malloc(sizeof *best * (size_t)n * seq))))
        rc = ps_fail(err, "out of memory");
    for (int k = 0, at = 0; k < b.n_images && !rc; at += b.image_rows[k++]) /* row order: sample order */
        memcpy(embeds + (size_t)at * D, req[idx[b.image_sample[k]]].embeds, sizeof *embeds * (size_t)b.image_rows[k] * D);
    if (!rc) {
        model_batch mb = mm_batch_view(&b, embeds, NULL, 0);
        mb.log_probs = lp;
        rc = forward_scores(em, &mb, rows_per_pass, best, err);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const mm_placement *pl = &b.placed[i];
        double sum = 0;
        int all = 1;
        for (int t = 0; t < pl->len; t++) {
            size_t k = (size_t)pl->row * seq + pl->start + t;
            if (b.targets[k] < 0) continue;
            sum += lp[k];
            if (best[k] != b.targets[k]) all = 0;
        }
        ll[idx[i]] = sum;
        greedy[idx[i]] = all;
        if (tokens) *tokens += (double)(pl->len - 1);
    }
    mm_batch_free(&b);
    for (size_t i = 0; i < n; i++) chat_tokens_free(&c[i]);
    free(c), free(embeds), free(lp), free(best);
    return rc;
}

int eval_model_score(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                     double *tokens, ps_error *err) {
    int *cut = malloc(sizeof *cut * (n ? n : 1));
    if (!cut) return ps_fail(err, "out of memory");
    int rc = eval_model_score_cut(em, req, n, batch, ll, greedy, cut, tokens, err);
    free(cut);
    return rc;
}

int eval_model_score_cut(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                         int *cut, double *tokens, ps_error *err) {
    if (batch < 1) batch = 1;
    uint32_t *scratch = malloc(sizeof *scratch * (size_t)batch * (size_t)em->cfg.model.context);
    eval_request *text = malloc(sizeof *text * (n ? n : 1));
    size_t *at = malloc(sizeof *at * (n ? n : 1)), *pic = malloc(sizeof *pic * (n ? n : 1)), n_text = 0, n_pic = 0;
    double *tll = malloc(sizeof *tll * (n ? n : 1));
    int *tgr = malloc(sizeof *tgr * (n ? n : 1)), *tcut = malloc(sizeof *tcut * (n ? n : 1));
    int rc = scratch && text && at && pic && tll && tgr && tcut ? 0 : ps_fail(err, "out of memory");
    /* requests with a picture go in passes of their own; every result is batch-invariant. On
     * the engine a pass also holds one length class only (forward_engine), taken shortest first;
     * on the CPU there is one class (0) and the order is the requests'. */
    int ctx = em->cfg.model.context;
    for (int cls = !em->engine ? 0 : ctx < 16 ? ctx : 16, done = 0; !rc && !done; cls = cls * 2 < ctx ? cls * 2 : ctx) {
        size_t t0 = n_text, p0 = n_pic;
        done = !em->engine || cls >= ctx;
        for (size_t i = 0; i < n; i++) {
            if (em->engine && length_class(em, request_rows(em, &req[i])) != cls) continue;
            if (req[i].visual > 0) pic[n_pic++] = i;
            else at[n_text] = i, text[n_text++] = req[i];
        }
        for (size_t i = t0; i < n_text && !rc; i += (size_t)batch) {
            size_t m = n_text - i < (size_t)batch ? n_text - i : (size_t)batch;
            rc = score_chunk(em, text + i, m, batch, tll + i, tgr + i, tcut + i, tokens, scratch, err);
        }
        for (size_t i = p0; i < n_pic && !rc; i += (size_t)batch) {
            size_t m = n_pic - i < (size_t)batch ? n_pic - i : (size_t)batch;
            rc = score_visual_chunk(em, req, pic + i, m, batch, ll, greedy, cut, tokens, err);
        }
    }
    for (size_t i = 0; i < n_text && !rc; i++) ll[at[i]] = tll[i], greedy[at[i]] = tgr[i], cut[at[i]] = tcut[i];
    free(scratch), free(text), free(at), free(pic), free(tll), free(tgr), free(tcut);
    return rc;
}

static int generate_chunk(eval_model *em, const eval_prompt *prompts, size_t n, int max_new, uint32_t **out,
                          size_t *n_out, int *cut, ps_error *err) {
    int ctx = em->cfg.model.context, keep = ctx - max_new + 1, stride = 1, D = em->cfg.model.dim, n_embeds = 0;
    if (keep < 1) return ps_fail(err, "eval.max_new_tokens = %d leaves no room in model.context = %d", max_new, ctx);
    for (size_t i = 0; i < n; i++) {
        const eval_prompt *q = &prompts[i];
        if (q->n == 0) return ps_fail(err, "an empty prompt");
        int rows = (int)q->n + q->visual, before, after;
        if (q->visual && picture_cut((int)q->n, q->image_at, q->visual, (int)q->n, keep, &before, &after))
            return ps_fail(err, "a picture (%d rows) and eval.max_new_tokens = %d exceed model.context = %d", q->visual,
                           max_new, ctx);
        int len = rows < keep ? rows : keep;
        cut[i] = rows - len;
        if (len > stride) stride = len;
        n_embeds += q->visual;
    }
    int *p = calloc((size_t)n * stride, sizeof *p), *len = calloc(n, sizeof *len);
    int *gen = malloc(sizeof *gen * n * (size_t)max_new);
    real *embeds = malloc(sizeof *embeds * ((size_t)n_embeds * D + 1));
    int rc = p && len && gen && embeds ? 0 : ps_fail(err, "out of memory");
    for (size_t i = 0, e = 0; i < n && !rc; i++) {
        const eval_prompt *q = &prompts[i];
        if (q->visual) { /* mm_model.h's splice of the prompt, cut around the picture to fit */
            int before, after;
            picture_cut((int)q->n, q->image_at, q->visual, (int)q->n, keep, &before, &after);
            chat_tokens c = {.n = 0, .image_at = q->image_at - before};
            if (!(c.ids = malloc(sizeof *c.ids * q->n))) {
                rc = ps_fail(err, "out of memory");
                break;
            }
            for (int t = 0; t < (int)q->n; t++)
                if (t >= before && (t < q->image_at || t >= q->image_at + after)) c.ids[c.n++] = (int)q->ids[t];
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
    if (!rc && em->engine)
        rc = em->gpu->greedy_decode_embeds(em->engine, p, stride, len, (int)n, embeds, n_embeds, max_new, 0, gen, NULL,
                                           err);
    else if (!rc)
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

int eval_model_generate_cut(eval_model *em, const eval_prompt *prompts, size_t n, int batch, int max_new,
                            uint32_t **out, size_t *n_out, int *cut, ps_error *err) {
    if (batch < 1) batch = 1;
    for (size_t i = 0; i < n; i++) out[i] = NULL, n_out[i] = 0;
    for (size_t i = 0; i < n; i += (size_t)batch) {
        size_t m = n - i < (size_t)batch ? n - i : (size_t)batch;
        if (generate_chunk(em, prompts + i, m, max_new, out + i, n_out + i, cut + i, err)) return -1;
    }
    return 0;
}

int eval_model_generate_visual(eval_model *em, const eval_prompt *prompts, size_t n, int batch, int max_new,
                               uint32_t **out, size_t *n_out, ps_error *err) {
    int *cut = malloc(sizeof *cut * (n ? n : 1));
    if (!cut) return ps_fail(err, "out of memory");
    int rc = eval_model_generate_cut(em, prompts, n, batch, max_new, out, n_out, cut, err);
    free(cut);
    return rc;
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
