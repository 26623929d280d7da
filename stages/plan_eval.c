/* plan_eval.c - what an eval stage reads, counted from its task files (plan.h,
 * plan_eval_count). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plan.h"
#include "tasks.h"
#include "tokenizer.h"

/* Tokens of text: the run's tokenizer, or bytes (tok NULL: a byte-level run). */
static double text_tokens(const tokenizer *tok, const char *text) {
    if (!text) return 0;
    if (!tok) return (double)strlen(text);
    tokenizer_ids ids = {0};
    ps_error ignored;
    double n = tokenizer_encode(tok, text, strlen(text), 0, &ids, &ignored) ? (double)strlen(text) : (double)ids.n;
    tokenizer_ids_free(&ids);
    return n;
}

/* The rows the model reads for one item: each (context, continuation) pair
 * whole for multiple choice and partial (a pair per choice), the document
 * for rolling, and for VQA the question, the picture's rows and the
 * decoded tokens (each a one-row step). */
static double item_tokens(const tokenizer *tok, task_kind kind, const task_item *it, int visual, int max_new) {
    double n = 0;
    switch (kind) {
    case TASK_MULTIPLE_CHOICE:
        for (int c = 0; c < it->n_choices; c++) n += text_tokens(tok, it->context) + text_tokens(tok, it->choices[c]);
        break;
    case TASK_PARTIAL:
        for (int c = 0; c < it->n_choices; c++) n += text_tokens(tok, it->choices[c]) + text_tokens(tok, it->target);
        break;
    case TASK_LOGLIKELIHOOD: n = text_tokens(tok, it->context) + text_tokens(tok, it->target); break;
    case TASK_ROLLING: n = text_tokens(tok, it->context); break;
    case TASK_VQA: n = text_tokens(tok, it->context) + (it->image ? visual : 0) + max_new; break;
    }
    return n;
}

static int regular(const char *path) {
    struct stat st;
    return path && !stat(path, &st) && S_ISREG(st.st_mode);
}

static int count_task(const char *path, const tokenizer *tok, const run_config *cfg, int visual, plan_eval_data *d,
                      ps_error *err) {
    task_def *t;
    task_item *items = NULL;
    size_t n = 0;
    if (!regular(path)) return ps_fail(err, "%s: not a regular file", path);
    if (task_load(&t, path, 0, NULL, err)) return -1;
    if (!regular(task_get_info(t).data)) {
        task_free(t);
        return ps_fail(err, "%s: its data is not a regular file", path);
    }
    if (task_read_items(t, &items, &n, err)) {
        task_free(t);
        return -1;
    }
    task_kind kind = task_get_info(t).kind;
    size_t used = cfg->eval.limit > 0 && (size_t)cfg->eval.limit < n ? (size_t)cfg->eval.limit : n;
    for (size_t i = 0; i < used; i++) d->tokens += item_tokens(tok, kind, &items[i], visual, cfg->eval.max_new_tokens);
    d->items += (long)used;
    d->tasks++;
    task_items_free(items, n);
    task_free(t);
    return 0;
}

int plan_eval_count(const run_config *cfg, int visual_tokens, plan_eval_data *d, ps_error *err) {
    memset(d, 0, sizeof *d);
    tokenizer *tok = NULL;
    if (strcmp(cfg->data.kind, "text") != 0) {
        tokenizer_kind kind;
        if (tokenizer_kind_parse(cfg->data.tokenizer_kind, &kind, err) ||
            tokenizer_load(&tok, cfg->data.tokenizer, kind, err))
            return ps_wrap(err, "the run's tokenizer (data.tokenizer)");
    }
    char list[CONFIG_STR_MAX];
    snprintf(list, sizeof list, "%s", cfg->eval.tasks);
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        ps_error why = {{0}};
        if (!count_task(p, tok, cfg, visual_tokens, d, &why)) continue;
        size_t len = strlen(d->skipped);
        snprintf(d->skipped + len, sizeof d->skipped - len, "%s%s", len ? ", " : "", p);
        d->skipped_tasks++;
    }
    if (tok) tokenizer_free(tok);
    return 0;
}
