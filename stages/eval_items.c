/* eval_items.c - task items to requests and prediction records (see eval_items.h). */
#include "eval_items.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void eval_item_requests_free(eval_item_requests *r) {
    for (int i = 0; i < r->n; i++) tokenizer_ids_free(&r->req[i].context), tokenizer_ids_free(&r->req[i].continuation);
    free(r->req);
    tokenizer_ids_free(&r->document);
    memset(r, 0, sizeof *r);
}

static int pair(const tokenizer *tok, const char *context, const char *delimiter, const char *continuation,
                uint32_t prefix, eval_request *out, ps_error *err) {
    size_t a = strlen(delimiter), b = strlen(continuation);
    char *cont = malloc(a + b + 1);
    if (!cont) return ps_fail(err, "out of memory");
    memcpy(cont, delimiter, a);
    memcpy(cont + a, continuation, b + 1);
    int rc = eval_encode_pair(tok, context, cont, prefix, &out->context, &out->continuation, &out->merged, err);
    free(cont);
    return rc;
}

static int ids_copy(tokenizer_ids *to, const uint32_t *ids, size_t n, ps_error *err) {
    to->ids = malloc(sizeof *to->ids * (n ? n : 1));
    if (!to->ids) return ps_fail(err, "out of memory");
    if (n) memcpy(to->ids, ids, sizeof *ids * n);
    to->n = to->cap = n;
    return 0;
}

static int rolling_requests(const task_item *it, const tokenizer *tok, uint32_t prefix, size_t max_len,
                            eval_item_requests *out, ps_error *err) {
    if (tokenizer_encode(tok, it->context, strlen(it->context), 0, &out->document, err)) return -1;
    eval_window *w;
    size_t n;
    if (eval_rolling_windows(out->document.n, max_len, 1, &w, &n, err)) return -1;
    out->req = calloc(n ? n : 1, sizeof *out->req);
    if (!out->req) return free(w), ps_fail(err, "out of memory");
    int rc = 0;
    const uint32_t *d = out->document.ids;
    for (size_t i = 0; i < n && !rc; i++) {
        eval_request *r = &out->req[i];
        out->n = (int)i + 1;
        rc = w[i].prefix ? ids_copy(&r->context, &prefix, 1, err)
                         : ids_copy(&r->context, d + w[i].ctx_begin, w[i].cont_begin - w[i].ctx_begin, err);
        if (!rc) rc = ids_copy(&r->continuation, d + w[i].cont_begin, w[i].cont_end - w[i].cont_begin, err);
    }
    out->n_windows = n;
    free(w);
    return rc;
}

int eval_build_requests(const task_def *t, const task_item *it, const tokenizer *tok, uint32_t prefix, size_t max_len,
                        eval_item_requests *out, ps_error *err) {
    memset(out, 0, sizeof *out);
    task_info info = task_get_info(t);
    int rc = 0;
    if (info.kind == TASK_ROLLING) {
        rc = rolling_requests(it, tok, prefix, max_len, out, err);
    } else if (info.kind == TASK_MULTIPLE_CHOICE || info.kind == TASK_PARTIAL) {
        out->req = calloc((size_t)(it->n_choices ? it->n_choices : 1), sizeof *out->req);
        if (!out->req) return ps_fail(err, "out of memory");
        for (int i = 0; i < it->n_choices && !rc; i++) {
            out->n = i + 1;
            rc = info.kind == TASK_MULTIPLE_CHOICE
                     ? pair(tok, it->context, info.delimiter, it->choices[i], prefix, &out->req[i], err)
                     : pair(tok, it->choices[i], info.delimiter, it->target, prefix, &out->req[i], err);
        }
    } else if (info.kind == TASK_LOGLIKELIHOOD) {
        out->req = calloc(1, sizeof *out->req);
        if (!out->req) return ps_fail(err, "out of memory");
        out->n = 1;
        rc = pair(tok, it->context, "", it->target, prefix, &out->req[0], err);
    }
    if (rc) {
        eval_item_requests_free(out);
        return ps_wrap(err, "task %s, item %s (%s:%zu)", info.name, it->id, info.data, it->line);
    }
    return 0;
}

static char **copy_strings(char *const *s, int n) {
    char **out = calloc((size_t)(n ? n : 1), sizeof *out);
    for (int i = 0; out && i < n; i++) out[i] = strdup(s[i]);
    return out;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int ids_to(eval_ids *to, const tokenizer_ids *from, ps_error *err) {
    to->ids = malloc(sizeof *to->ids * (from->n ? from->n : 1));
    if (!to->ids) return ps_fail(err, "out of memory");
    if (from->n) memcpy(to->ids, from->ids, sizeof *to->ids * from->n);
    to->n = from->n;
    return 0;
}

int eval_item_prediction(const task_def *t, const task_item *it, const eval_item_requests *reqs, eval_prediction *out,
                         ps_error *err) {
    eval_prediction_init(out);
    task_info info = task_get_info(t);
    out->task = strdup(info.name);
    out->category = strdup(info.category);
    out->kind = strdup(task_kind_name(info.kind));
    out->scorer = strdup(info.scorer);
    out->id = strdup(it->id);
    out->line = it->line;
    out->item_category = dup_or_null(it->item_category);
    out->image = dup_or_null(it->image);
    out->group = dup_or_null(it->group);
    out->area_share = it->area_share;
    out->gold = it->gold;
    if (it->n_choices) out->choices = copy_strings(it->choices, it->n_choices), out->n_choices = it->n_choices;
    if (it->n_answers) out->answers = copy_strings(it->answers, it->n_answers), out->n_answers = it->n_answers;
    snprintf(out->prov.task_sha256, sizeof out->prov.task_sha256, "%s", info.sha256);
    int rc = 0;
    if (reqs && info.kind == TASK_ROLLING) {
        out->continuations = calloc(1, sizeof *out->continuations);
        out->n_continuations = 1;
        rc = out->continuations ? ids_to(&out->continuations[0], &reqs->document, err) : ps_fail(err, "out of memory");
        out->tokens = (long long)reqs->document.n;
        out->windows = (long long)reqs->n_windows;
        out->words = (long long)eval_word_count(it->count_text);
        out->bytes = (long long)strlen(it->count_text);
    } else if (reqs && reqs->n) {
        rc = ids_to(&out->context, &reqs->req[0].context, err);
        out->continuations = calloc((size_t)reqs->n, sizeof *out->continuations);
        if (!out->continuations) rc = ps_fail(err, "out of memory");
        for (int i = 0; i < reqs->n && !rc; i++, out->n_continuations = i)
            rc = ids_to(&out->continuations[i], &reqs->req[i].continuation, err);
        if (!rc && info.kind == TASK_PARTIAL) {
            out->request_contexts = calloc((size_t)reqs->n, sizeof *out->request_contexts);
            if (!out->request_contexts) rc = ps_fail(err, "out of memory");
            for (int i = 0; i < reqs->n && !rc; i++, out->n_request_contexts = i)
                rc = ids_to(&out->request_contexts[i], &reqs->req[i].context, err);
        }
    }
    if (!rc && (!out->task || !out->id || (it->n_choices && !out->choices) || (it->n_answers && !out->answers)))
        rc = ps_fail(err, "out of memory");
    if (rc) eval_prediction_clear(out);
    return rc;
}
