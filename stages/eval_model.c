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
    if (rc) eval_model_close(em);
    return rc;
}

void eval_model_close(eval_model *em) {
    model_params_free(&em->params);
    model_free(&em->model);
    tokenizer_free(em->tok);
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

int eval_model_score(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                     double *tokens, ps_error *err) {
    if (batch < 1) batch = 1;
    uint32_t *scratch = malloc(sizeof *scratch * (size_t)batch * (size_t)em->cfg.model.context);
    if (!scratch) return ps_fail(err, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i += (size_t)batch) {
        size_t m = n - i < (size_t)batch ? n - i : (size_t)batch;
        rc = score_chunk(em, req + i, m, ll + i, greedy + i, tokens, scratch, err);
    }
    free(scratch);
    return rc;
}

static int generate_chunk(eval_model *em, const tokenizer_ids *prompts, size_t n, int max_new, uint32_t **out,
                          size_t *n_out, ps_error *err) {
    int ctx = em->cfg.model.context, keep = ctx - max_new + 1, stride = 1;
    if (keep < 1) return ps_fail(err, "eval.max_new_tokens = %d leaves no room in model.context = %d", max_new, ctx);
    for (size_t i = 0; i < n; i++) {
        if (prompts[i].n == 0) return ps_fail(err, "an empty prompt");
        int len = prompts[i].n < (size_t)keep ? (int)prompts[i].n : keep;
        if (len > stride) stride = len;
    }
    int *p = calloc((size_t)n * stride, sizeof *p), *len = calloc(n, sizeof *len);
    int *gen = malloc(sizeof *gen * n * (size_t)max_new);
    int rc = p && len && gen ? 0 : ps_fail(err, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        len[i] = prompts[i].n < (size_t)keep ? (int)prompts[i].n : keep;
        const uint32_t *src = prompts[i].ids + prompts[i].n - len[i]; /* the last tokens */
        for (int t = 0; t < len[i]; t++) p[i * stride + t] = (int)src[t];
    }
    if (!rc) rc = model_greedy_decode(&em->model, &em->params, p, stride, len, (int)n, max_new, gen, NULL, err);
    for (size_t i = 0; i < n && !rc; i++) {
        out[i] = malloc(sizeof **out * (size_t)max_new);
        if (!out[i]) {
            rc = ps_fail(err, "out of memory");
            break;
        }
        size_t k = 0;
        for (int t = 0; t < max_new && gen[i * max_new + t] != (int)em->prefix; t++) out[i][k++] = (uint32_t)gen[i * max_new + t];
        n_out[i] = k;
    }
    free(p), free(len), free(gen);
    return rc;
}

int eval_model_generate(eval_model *em, const tokenizer_ids *prompts, size_t n, int batch, int max_new,
                        uint32_t **out, size_t *n_out, ps_error *err) {
    if (batch < 1) batch = 1;
    for (size_t i = 0; i < n; i++) out[i] = NULL, n_out[i] = 0;
    for (size_t i = 0; i < n; i += (size_t)batch) {
        size_t m = n - i < (size_t)batch ? n - i : (size_t)batch;
        if (generate_chunk(em, prompts + i, m, max_new, out + i, n_out + i, err)) return -1;
    }
    return 0;
}
