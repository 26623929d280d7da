/* test_eval_requests.c - lm-eval's request construction on token ids: rolling windows
 * worked by hand, (context, continuation) encoding with the Llama 3 vocabulary, the model
 * input and acc / acc_norm. The same rules are compared with lm-eval's own Python on many
 * random cases in tests/t_eval_reference.sh. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "eval_requests.h"
#include "test_util.h"

#define LLAMA3_PATH "build/vocab/llama3.tiktoken"

Test(rolling, worked_example_ten_tokens_four_positions) {
    /* n = 10, L = 4: ([P], t0..t3), (t3, t4..t7), (t5..t7, t8 t9) */
    eval_window *w;
    size_t n;
    ps_error err;
    cr_assert_eq(eval_rolling_windows(10, 4, 1, &w, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_expect(w[0].prefix && w[0].cont_begin == 0 && w[0].cont_end == 4);
    cr_expect(!w[1].prefix && w[1].ctx_begin == 3 && w[1].cont_begin == 4 && w[1].cont_end == 8);
    cr_expect(!w[2].prefix && w[2].ctx_begin == 5 && w[2].cont_begin == 8 && w[2].cont_end == 10);
    free(w);
    cr_assert_eq(eval_rolling_windows(3, 4, 1, &w, &n, &err), 0);
    cr_expect(n == 1 && w[0].prefix && w[0].cont_end == 3, "a short document is one window");
    free(w);
    cr_assert_eq(eval_rolling_windows(0, 4, 1, &w, &n, &err), 0);
    cr_expect(n == 0 && !w);
    cr_expect_eq(eval_rolling_windows(5, 4, 5, &w, &n, &err), -1, "context_len > max_len");
}

Test(requests, model_input_and_truncation) {
    const uint32_t ctx[] = {1, 2, 3}, cont[] = {4, 5};
    uint32_t input[10];
    size_t n, first;
    ps_error err;
    cr_assert_eq(eval_request_input(ctx, 3, cont, 2, 10, input, &n, &first, &err), 0);
    cr_expect(n == 4 && first == 2 && input[0] == 1 && input[3] == 4, "n %zu first %zu", n, first);
    /* (ctx + cont)[-4:][:-1] = 2 3 4; positions 1, 2 predict 4, 5 */
    cr_assert_eq(eval_request_input(ctx, 3, cont, 2, 3, input, &n, &first, &err), 0);
    cr_expect(n == 3 && first == 1 && input[0] == 2 && input[2] == 4, "n %zu first %zu", n, first);
    cr_expect_eq(eval_request_input(ctx, 3, cont, 2, 1, input, &n, &first, &err), -1);
    cr_expect_eq(eval_request_input(ctx, 3, cont, 0, 4, input, &n, &first, &err), -1);
}

static tokenizer *llama3(void) {
    test_chdir_to_repo_root(LLAMA3_PATH);
    if (access(LLAMA3_PATH, R_OK) != 0) cr_assert_fail("%s is missing: run `make test-data`", LLAMA3_PATH);
    tokenizer *t;
    ps_error err;
    cr_assert_eq(tokenizer_load(&t, LLAMA3_PATH, TOKENIZER_LLAMA3, &err), 0, "%s", err.msg);
    return t;
}

static void expect_text(const tokenizer *t, const tokenizer_ids *ids, const char *want) {
    tokenizer_bytes b = {0};
    ps_error err;
    cr_assert_eq(tokenizer_decode(t, ids->ids, ids->n, &b, &err), 0);
    cr_expect(b.n == strlen(want) && !memcmp(b.bytes, want, b.n), "decoded '%.*s', expected '%s'", (int)b.n,
              (const char *)b.bytes, want);
    tokenizer_bytes_free(&b);
}

Test(requests, encode_pair_the_lm_eval_way) {
    tokenizer *t = llama3();
    tokenizer_ids ctx = {0}, cont = {0}, alone = {0};
    ps_error err;
    int merged;
    cr_assert_eq(eval_encode_pair(t, "Question: Is water wet?\nAnswer:", " yes", 128001, &ctx, &cont, &merged, &err), 0);
    expect_text(t, &ctx, "Question: Is water wet?\nAnswer:");
    expect_text(t, &cont, " yes");
    cr_assert_eq(tokenizer_encode(t, " yes", 4, 0, &alone, &err), 0);
    cr_expect(cont.n == 1 && alone.n == 1 && cont.ids[0] == alone.ids[0] && !merged);
    /* a trailing space moves onto the continuation: "Answer:" + "  yes" */
    cr_assert_eq(eval_encode_pair(t, "Answer: ", " yes", 128001, &ctx, &cont, &merged, &err), 0);
    expect_text(t, &ctx, "Answer:");
    expect_text(t, &cont, "  yes");
    /* an empty context is the prefix token alone */
    cr_assert_eq(eval_encode_pair(t, "", "Hello world", 128001, &ctx, &cont, &merged, &err), 0);
    cr_expect(ctx.n == 1 && ctx.ids[0] == 128001);
    expect_text(t, &cont, "Hello world");
    /* no delimiter: "unbeliev" + "able" encodes whole as one run, so the split is by
     * count and the flag says a token spans the boundary */
    cr_assert_eq(eval_encode_pair(t, "unbeliev", "able", 128001, &ctx, &cont, &merged, &err), 0);
    tokenizer_ids whole = {0};
    cr_assert_eq(tokenizer_encode(t, "unbelievable", 12, 0, &whole, &err), 0);
    cr_expect_eq(ctx.n + cont.n, whole.n, "ctx + cont is the whole encoding");
    cr_expect(!memcmp(cont.ids, whole.ids + ctx.n, cont.n * sizeof *cont.ids));
    int direct = memcmp(whole.ids, ctx.ids, ctx.n * sizeof *ctx.ids) != 0;
    cr_expect_eq(merged, direct);
    tokenizer_ids_free(&ctx), tokenizer_ids_free(&cont), tokenizer_ids_free(&alone), tokenizer_ids_free(&whole);
    tokenizer_free(t);
}

Test(mc, acc_and_acc_norm_worked) {
    /* lls -4, -6 over "a" (1 char) and "abcdef" (6): acc picks 0, acc_norm -4 vs -1 picks 1 */
    const double ll[] = {-4, -6};
    const char *const choices[] = {"a", "abcdef"};
    eval_mc_result r = eval_mc_score(ll, choices, 2, 1);
    cr_expect(r.pred == 0 && r.acc == 0 && r.pred_norm == 1 && r.acc_norm == 1);
    /* characters, not bytes: "abc" -3 (per char -1, per byte -1) against "é" -1.2 (per
     * char -1.2, per byte -0.6): acc picks "é", acc_norm "abc", acc_bytes "é" */
    const double ll2[] = {-3, -1.2};
    const char *const choices2[] = {"abc", "é"};
    r = eval_mc_score(ll2, choices2, 2, 0);
    cr_expect(r.pred == 1 && r.pred_norm == 0 && r.pred_bytes == 1, "%d %d %d", r.pred, r.pred_norm, r.pred_bytes);
    /* ties: the first maximum */
    const double tie[] = {-2, -2};
    r = eval_mc_score(tie, choices, 2, 0);
    cr_expect(r.pred == 0);
}

Test(counts, words_bytes_chars) {
    cr_expect_eq(eval_word_count("Hello  world\n"), 3, "re.split gives ['Hello', 'world', '']");
    cr_expect_eq(eval_word_count(""), 1);
    cr_expect_eq(eval_word_count("a\xc2\xa0" "b"), 2, "NO-BREAK SPACE is whitespace to Python");
    cr_expect_eq(eval_char_count("h\xc3\xa9"), 2);
    cr_expect_eq(eval_rstrip_len("ab \t\n", 5), 2);
}
