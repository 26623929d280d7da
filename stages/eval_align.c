/* eval_align.c - mutual k-NN alignment of the LLM with vision encoders (see eval_align.h). */
#include "eval_align.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_file.h"
#include "mknn.h"

typedef struct captions {
    char **image, **text;
    size_t n;
} captions;

static void captions_free(captions *c) {
    for (size_t i = 0; i < c->n; i++) free(c->image[i]), free(c->text[i]);
    free(c->image), free(c->text);
    memset(c, 0, sizeof *c);
}

static int captions_read(const char *path, captions *c, ps_error *err) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "r");
    if (!f) return ps_fail(err, "eval.align_captions = '%s': cannot open", path);
    char *line = NULL;
    size_t cap = 0, no = 0;
    int rc = 0;
    for (ssize_t len; !rc && (len = getline(&line, &cap, f)) > 0;) {
        no++;
        if (len <= 1) continue;
        json_object *o = json_tokener_parse(line), *im, *tx;
        if (!o || !json_object_object_get_ex(o, "image", &im) || !json_object_object_get_ex(o, "caption", &tx) ||
            !json_object_is_type(im, json_type_string) || !json_object_is_type(tx, json_type_string)) {
            rc = ps_fail(err, "%s:%zu: expected a JSON object with strings \"image\" and \"caption\"", path, no);
        } else {
            char **a = realloc(c->image, sizeof *a * (c->n + 1)), **b = a ? realloc(c->text, sizeof *b * (c->n + 1)) : NULL;
            if (a) c->image = a;
            if (b) c->text = b;
            if (!a || !b) rc = ps_fail(err, "out of memory");
            else {
                c->image[c->n] = strdup(json_object_get_string(im));
                c->text[c->n] = strdup(json_object_get_string(tx));
                c->n++;
            }
        }
        json_object_put(o);
    }
    free(line);
    fclose(f);
    return rc;
}

/* LLM features [n][layers + 1][dim] of the captions' texts. */
static int llm_features(eval_model *em, char *const *text, size_t n, int batch, float *out, ps_error *err) {
    const model_config *c = &em->cfg.model;
    int L = c->layers + 1, D = c->dim, T = c->context;
    int rc = 0;
    for (size_t first = 0; first < n && !rc; first += (size_t)batch) {
        int B = (int)(n - first < (size_t)batch ? n - first : (size_t)batch), seq = 1;
        tokenizer_ids *ids = calloc((size_t)B, sizeof *ids);
        if (!ids) return ps_fail(err, "out of memory");
        for (int b = 0; b < B && !rc; b++) {
            rc = tokenizer_encode(em->tok, text[first + b], strlen(text[first + b]), 0, &ids[b], err);
            if (!rc && ids[b].n == 0) rc = ps_fail(err, "caption %zu is empty", first + b);
            if (!rc && ids[b].n > (size_t)T) ids[b].n = (size_t)T;
            if (!rc && (int)ids[b].n > seq) seq = (int)ids[b].n;
        }
        size_t cells = (size_t)B * seq;
        int *tok = malloc(sizeof *tok * cells), *sid = malloc(sizeof *sid * cells), *grp = malloc(sizeof *grp * cells);
        double *hidden = malloc(sizeof *hidden * (size_t)B * L * D);
        model_activations *acts = NULL;
        if (!rc && (!tok || !sid || !grp || !hidden)) rc = ps_fail(err, "out of memory");
        if (!rc && !(acts = model_activations_alloc_forward(&em->model.layout, B, seq, err))) rc = -1;
        for (int b = 0; b < B && !rc; b++)
            for (int t = 0; t < seq; t++) {
                size_t k = (size_t)b * seq + t;
                int in = (size_t)t < ids[b].n;
                tok[k] = in ? (int)ids[b].ids[t] : 0, sid[k] = in ? 0 : -1, grp[k] = in ? b : -1;
            }
        if (!rc) {
            model_batch mb = {.batch = B, .seq = seq, .tokens = tok, .sample = sid, .pool_group = grp, .n_groups = B,
                              .hidden = hidden};
            rc = model_forward_batch(&em->model, &em->params, acts, &mb, NULL, err);
        }
        for (size_t i = 0; !rc && i < (size_t)B * L * D; i++) out[first * L * D + i] = (float)hidden[i];
        model_activations_free(acts);
        for (int b = 0; b < B; b++) tokenizer_ids_free(&ids[b]);
        free(ids), free(tok), free(sid), free(grp), free(hidden);
    }
    return rc;
}

static int add_row(eval_result **results, size_t *n, const eval_model *em, const char *subset, double value,
                   size_t items, ps_error *err) {
    eval_result *r = realloc(*results, sizeof *r * (*n + 1));
    if (!r) return ps_fail(err, "out of memory");
    *results = r;
    eval_result *x = &r[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->task, sizeof x->task, "alignment");
    snprintf(x->category, sizeof x->category, "alignment");
    snprintf(x->scorer, sizeof x->scorer, "mknn");
    snprintf(x->subset, sizeof x->subset, "%s", subset);
    snprintf(x->metric, sizeof x->metric, "mknn_k%d", em->cfg.eval.align_k);
    x->value = value, x->stderr_ = NAN, x->n = items;
    memcpy(x->prov.checkpoint_sha256, em->weights_sha256, 65);
    snprintf(x->prov.encoder, sizeof x->prov.encoder, "%s", subset);
    x->prov.seed = em->cfg.train.seed;
    return 0;
}

/* One encoder's score: the maximum over its blocks of mknn against the prepared LLM tensor. */
static int encoder_score(features_file *ff, const int *rows, size_t n, const float *llm, int L, int D, int k,
                         double *best, char *where, size_t where_size, ps_error *err) {
    const features_meta *m = features_meta_of(ff);
    *best = 0;
    int rc = 0;
    for (int b = 0; b < m->n_blocks && !rc; b++) {
        int w = m->block_widths[b];
        float *v = malloc(sizeof *v * n * (size_t)w);
        if (!v) return ps_fail(err, "out of memory");
        for (size_t i = 0; i < n && !rc; i++) rc = features_read_pooled(ff, rows[i], m->block_names[b], v + i * w, err);
        if (!rc) rc = mknn_prepare(v, n, 1, w, 0.95, MKNN_QUANTILE_MEAN, err);
        mknn_result r = {0};
        if (!rc) rc = mknn_align(llm, L, D, v, 1, w, n, k, &r, err);
        if (!rc && (b == 0 || r.score > *best)) {
            *best = r.score;
            snprintf(where, where_size, "LLM layer %d x block %s", r.layer_a, m->block_names[b]);
        }
        mknn_result_free(&r);
        free(v);
    }
    return rc;
}

int eval_align_run(eval_model *em, const run_config *cfg, eval_result **results, size_t *n_results, ps_error *err) {
    captions cap;
    if (captions_read(cfg->eval.align_captions, &cap, err)) return -1;
    char *list = strdup(cfg->eval.align);
    features_file *ff[16];
    int n_ff = 0, rc = list ? 0 : ps_fail(err, "out of memory");
    for (char *save = NULL, *p = list ? strtok_r(list, ",", &save) : NULL; p && !rc; p = strtok_r(NULL, ",", &save)) {
        if (n_ff == 16) rc = ps_fail(err, "eval.align: at most 16 features files");
        else if (!(rc = features_open(&ff[n_ff], p, NULL, 0, err))) n_ff++;
    }
    /* the captions whose picture every file holds */
    size_t n = 0, limit = cfg->eval.limit > 0 ? (size_t)cfg->eval.limit : (size_t)-1;
    int *rows = malloc(sizeof *rows * (cap.n ? cap.n : 1) * (size_t)(n_ff ? n_ff : 1));
    char **text = malloc(sizeof *text * (cap.n ? cap.n : 1));
    if (!rc && (!rows || !text)) rc = ps_fail(err, "out of memory");
    for (size_t i = 0; i < cap.n && !rc && n < limit; i++) {
        int ok = 1;
        for (int e = 0; e < n_ff && ok; e++) {
            int r = features_find(ff[e], cap.image[i]);
            ok = r >= 0 && features_valid(ff[e], r);
            rows[(size_t)e * cap.n + n] = r;
        }
        if (ok) text[n++] = cap.text[i];
    }
    int k = cfg->eval.align_k, L = cfg->model.layers + 1, D = cfg->model.dim;
    if (!rc && (size_t)k >= n)
        rc = ps_fail(err, "eval.align: %zu captions with pictures in every features file; k = %d needs more than k", n, k);
    float *llm = rc ? NULL : malloc(sizeof *llm * n * (size_t)L * D);
    if (!rc && !llm) rc = ps_fail(err, "out of memory");
    if (!rc) rc = llm_features(em, text, n, cfg->eval.batch, llm, err);
    if (!rc) rc = mknn_prepare(llm, n, L, D, 0.95, MKNN_QUANTILE_MEAN, err);
    double sum = 0;
    for (int e = 0; e < n_ff && !rc; e++) {
        double s;
        char where[160];
        rc = encoder_score(ff[e], rows + (size_t)e * cap.n, n, llm, L, D, k, &s, where, sizeof where, err);
        const char *name = features_meta_of(ff[e])->encoder;
        if (!rc) rc = add_row(results, n_results, em, name, s, n, err);
        if (!rc) printf("alignment with %s: mutual %d-NN %.4f over %zu captions (%s)\n", name, k, s, n, where);
        sum += s;
    }
    if (!rc && n_ff) rc = add_row(results, n_results, em, "", sum / n_ff, n, err);
    free(llm), free(rows), free(text), free(list);
    for (int e = 0; e < n_ff; e++) features_free(ff[e]);
    captions_free(&cap);
    return rc;
}
