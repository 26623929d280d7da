/* test_eval_items.c - the path the eval stage runs, with a stand-in for the model: a task
 * file and its format sample -> requests (Llama 3 ids) -> prediction records -> JSONL ->
 * results. The stand-in scores a continuation by -(its token count), so that the expected
 * answers can be worked out from the requests alone. */
#include <criterion/criterion.h>
#include <math.h>
#include <unistd.h>

#include "eval_items.h"
#include "eval_score.h"
#include "test_util.h"

#define LLAMA3_PATH "build/vocab/llama3.tiktoken"
#define EOT 128001u

static tokenizer *tok;

static void setup(void) {
    test_chdir_to_repo_root(LLAMA3_PATH);
    if (access(LLAMA3_PATH, R_OK) != 0) cr_assert_fail("%s is missing: run `make test-data`", LLAMA3_PATH);
    ps_error err;
    cr_assert_eq(tokenizer_load(&tok, LLAMA3_PATH, TOKENIZER_LLAMA3, &err), 0, "%s", err.msg);
}
static void teardown(void) { tokenizer_free(tok); }

static task_def *load_task(const char *cfg, const char *data) {
    char override[512];
    snprintf(override, sizeof override, "data=%s", data);
    char *ov[] = {override};
    task_def *t;
    ps_error err;
    cr_assert_eq(task_load(&t, cfg, 1, ov, &err), 0, "%s", err.msg);
    return t;
}

static char *decode(const tokenizer_ids *ids) {
    tokenizer_bytes b = {0};
    ps_error err;
    cr_assert_eq(tokenizer_decode(tok, ids->ids, ids->n, &b, &err), 0);
    char *s = strndup((const char *)b.bytes, b.n);
    tokenizer_bytes_free(&b);
    return s;
}

Test(items, piqa_requests_predictions_results, .init = setup, .fini = teardown) {
    task_def *t = load_task("config/tasks/piqa.cfg", "tests/fixtures/tasks/piqa.jsonl");
    task_item *items;
    size_t n;
    ps_error err;
    cr_assert_eq(task_read_items(t, &items, &n, &err), 0, "%s", err.msg);
    eval_item_requests reqs;
    cr_assert_eq(eval_build_requests(t, &items[0], tok, EOT, 2048, &reqs, &err), 0, "%s", err.msg);
    cr_assert_eq(reqs.n, 2);
    char *ctx = decode(&reqs.req[0].context), *c0 = decode(&reqs.req[0].continuation);
    cr_expect_str_eq(ctx, "Question: How do I keep a bike chain from rusting?\nAnswer:");
    cr_expect_str_eq(c0, " Wipe it dry and oil it after riding in rain.", "the \" \" delimiter leads the choice");
    free(ctx), free(c0);
    /* the stand-in model: ll = -(continuation tokens) */
    eval_prediction p;
    cr_assert_eq(eval_item_prediction(t, &items[0], &reqs, &p, &err), 0, "%s", err.msg);
    p.n_loglikelihoods = reqs.n;
    p.loglikelihoods = malloc(sizeof(double) * 2);
    p.greedy = calloc(2, sizeof(int));
    for (int i = 0; i < 2; i++) p.loglikelihoods[i] = -(double)reqs.req[i].continuation.n;
    int shorter = reqs.req[1].continuation.n < reqs.req[0].continuation.n;
    cr_expect_eq(p.n_continuations, 2);
    cr_expect_eq(p.context.n, reqs.req[0].context.n);
    cr_expect_str_eq(p.kind, "multiple_choice");
    cr_expect_eq(strlen(p.prov.task_sha256), 64);
    /* through the file and back, then scored */
    char path[] = "/tmp/presight-test-items-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    cr_assert_eq(eval_prediction_write(f, &p, &err), 0);
    fclose(f);
    eval_prediction *back;
    size_t m, torn;
    cr_assert_eq(eval_predictions_read(path, &back, &m, &torn, &err), 0, "%s", err.msg);
    eval_score_opts o;
    eval_score_opts_default(&o);
    eval_result *r = NULL;
    size_t nr = 0;
    cr_assert_eq(eval_score_task(back, m, &o, &r, &nr, &err), 0, "%s", err.msg);
    cr_assert_eq(nr, 2);
    cr_expect_str_eq(r[0].metric, "acc");
    /* gold is 0: right exactly when choice 0 has fewer tokens (ties pick 0) */
    cr_expect_float_eq(r[0].value, shorter ? 0.0 : 1.0, 1e-12);
    free(r);
    eval_predictions_free(back, m);
    eval_prediction_clear(&p);
    eval_item_requests_free(&reqs);
    task_items_free(items, n);
    task_free(t);
    unlink(path);
}

Test(items, winogrande_partial_requests, .init = setup, .fini = teardown) {
    task_def *t = load_task("config/tasks/winogrande.cfg", "tests/fixtures/tasks/winogrande.jsonl");
    task_item *items;
    size_t n;
    ps_error err;
    cr_assert_eq(task_read_items(t, &items, &n, &err), 0);
    eval_item_requests reqs;
    cr_assert_eq(eval_build_requests(t, &items[0], tok, EOT, 2048, &reqs, &err), 0, "%s", err.msg);
    cr_assert_eq(reqs.n, 2);
    for (int i = 0; i < 2; i++) {
        char *c = decode(&reqs.req[i].continuation);
        cr_expect_str_eq(c, " was too big.", "the fixed continuation after context %d", i);
        free(c);
    }
    char *c1 = decode(&reqs.req[1].context);
    cr_expect_str_eq(c1, "The trophy did not fit in the suitcase because the suitcase");
    free(c1);
    eval_prediction p;
    cr_assert_eq(eval_item_prediction(t, &items[0], &reqs, &p, &err), 0);
    cr_expect_eq(p.n_request_contexts, 2, "partial records each request's context");
    eval_prediction_clear(&p);
    eval_item_requests_free(&reqs);
    task_items_free(items, n);
    task_free(t);
}

Test(items, wikitext_rolling_windows_cover_the_document_once, .init = setup, .fini = teardown) {
    task_def *t = load_task("config/tasks/wikitext.cfg", "tests/fixtures/tasks/wikitext.jsonl");
    task_item *items;
    size_t n;
    ps_error err;
    cr_assert_eq(task_read_items(t, &items, &n, &err), 0);
    eval_item_requests reqs;
    size_t max_len = 8;
    cr_assert_eq(eval_build_requests(t, &items[0], tok, EOT, max_len, &reqs, &err), 0, "%s", err.msg);
    size_t T = reqs.document.n, covered = 0;
    cr_assert(T > max_len, "the sample spans several windows (%zu tokens)", T);
    cr_expect_eq((size_t)reqs.n, (T + max_len - 1) / max_len, "windows of max_len predictions each");
    cr_expect(reqs.req[0].context.n == 1 && reqs.req[0].context.ids[0] == EOT, "end-of-text before the first window");
    for (int i = 0; i < reqs.n; i++) {
        const eval_request *r = &reqs.req[i];
        cr_expect(!memcmp(r->continuation.ids, reqs.document.ids + covered, r->continuation.n * sizeof(uint32_t)));
        covered += r->continuation.n;
        cr_expect_leq(r->context.n + r->continuation.n - 1, max_len, "window %d fits the model", i);
        if (i > 0) cr_expect_eq(r->context.n + r->continuation.n, max_len + 1, "later windows are full");
    }
    cr_expect_eq(covered, T);
    eval_prediction p;
    cr_assert_eq(eval_item_prediction(t, &items[0], &reqs, &p, &err), 0);
    /* counted on the raw page: len(re.split(r"\s+", page)) = 25, 85 UTF-8 bytes (python3) */
    cr_expect_eq(p.words, 25);
    cr_expect_eq(p.bytes, 85);
    cr_expect_eq(p.tokens, (long long)T);
    cr_expect_eq(p.windows, reqs.n);
    eval_prediction_clear(&p);
    eval_item_requests_free(&reqs);
    task_items_free(items, n);
    task_free(t);
}
