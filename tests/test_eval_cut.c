/* test_eval_cut.c - inputs longer than model.context in presight eval (stages/eval_model.c):
 * a request or prompt with a picture loses text only, never the picture's rows nor the
 * continuation: first the earliest tokens after the picture, then the earliest before it.
 * Each cut request must score (and each cut prompt decode) bit for bit as the request written
 * already cut by hand, and report how many tokens it lost; cutting other tokens (the first
 * ones, a negative control) gives another log-likelihood; a picture and a continuation that
 * alone exceed model.context are refused. On a small random model on the CPU backend. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "eval_model.h"
#include "rng.h"

enum { VOCAB = 64, DIM = 32, CTX = 24, VISUAL = 3 };

static eval_model em;
static real embeds[VISUAL * DIM];

static void open_model(void) {
    memset(&em, 0, sizeof em);
    model_config *c = &em.cfg.model;
    *c = (model_config){.vocab = VOCAB, .dim = DIM, .layers = 1, .heads = 2, .kv_heads = 1, .ffn_dim = 64,
                        .context = CTX, .rope_theta = 10000.0, .norm_eps = 1e-5, .init_std = 0.2};
    ps_error err;
    cr_assert_eq(model_init(&em.model, c, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(model_params_alloc(&em.params, &em.model.layout, &err), 0, "%s", err.msg);
    model_init_weights(&em.params, &em.model.layout, 5);
    em.stop = VOCAB; /* never produced: every output has max_new tokens */
    for (int i = 0; i < VISUAL * DIM; i++) embeds[i] = (real)(rng_uniform(3, (uint64_t)i) - 0.5);
}

static void close_model(void) {
    model_params_free(&em.params);
    model_free(&em.model);
}

TestSuite(eval_cut, .init = open_model, .fini = close_model);

/* ids[from..to) of 1 + (i * 7) % 60, as a request's context. */
static void fill(uint32_t *out, int from, int to) {
    for (int i = from; i < to; i++) *out++ = (uint32_t)(1 + (i * 7) % 60);
}

static eval_request picture_request(uint32_t *ctx, size_t n_ctx, int image_at, uint32_t *cont) {
    return (eval_request){.context = {ctx, n_ctx, n_ctx}, .continuation = {cont, 2, 2}, .visual = VISUAL,
                          .image_at = image_at, .embeds = embeds};
}

Test(eval_cut, picture_request_loses_text_after_the_picture_first) {
    uint32_t whole[30], cut_by_hand[19], first_cut[19], cont[2] = {5, 9};
    fill(whole, 0, 30);
    /* 30 + 2 + 3 rows, 11 too many: ids 2..12 (after the picture at 2) go */
    fill(cut_by_hand, 0, 2), fill(cut_by_hand + 2, 13, 30);
    fill(first_cut, 11, 30); /* the first 11 ids instead, the picture first */
    eval_request req[3] = {picture_request(whole, 30, 2, cont), picture_request(cut_by_hand, 19, 2, cont),
                           picture_request(first_cut, 19, 0, cont)};
    double ll[3];
    int greedy[3], cut[3];
    ps_error err;
    cr_assert_eq(eval_model_score_cut(&em, req, 3, 2, ll, greedy, cut, NULL, &err), 0, "%s", err.msg);
    cr_expect(cut[0] == 11 && cut[1] == 0 && cut[2] == 0, "cut %d %d %d", cut[0], cut[1], cut[2]);
    cr_expect(memcmp(&ll[0], &ll[1], sizeof ll[0]) == 0, "cut %.17g, by hand %.17g", ll[0], ll[1]);
    cr_expect(greedy[0] == greedy[1]);
    cr_expect(ll[0] != ll[2], "negative control: cutting the first ids gives %.17g too", ll[2]);
}

Test(eval_cut, picture_request_then_loses_text_before_it) {
    uint32_t whole[30], cut_by_hand[19], cont[2] = {5, 9};
    fill(whole, 0, 30);
    /* the picture before id 25: the 5 ids after it go, then the first 6 */
    fill(cut_by_hand, 6, 25);
    eval_request req[2] = {picture_request(whole, 30, 25, cont), picture_request(cut_by_hand, 19, 19, cont)};
    double ll[2];
    int greedy[2], cut[2];
    ps_error err;
    cr_assert_eq(eval_model_score_cut(&em, req, 2, 1, ll, greedy, cut, NULL, &err), 0, "%s", err.msg);
    cr_expect(cut[0] == 11 && cut[1] == 0, "cut %d %d", cut[0], cut[1]);
    cr_expect(memcmp(&ll[0], &ll[1], sizeof ll[0]) == 0, "cut %.17g, by hand %.17g", ll[0], ll[1]);
}

Test(eval_cut, text_request_counts_its_cut_and_a_picture_too_large_is_refused) {
    uint32_t whole[30], cont[2] = {5, 9};
    fill(whole, 0, 30);
    eval_request text = {.context = {whole, 30, 30}, .continuation = {cont, 2, 2}};
    double ll;
    int greedy, cut;
    ps_error err;
    cr_assert_eq(eval_model_score_cut(&em, &text, 1, 1, &ll, &greedy, &cut, NULL, &err), 0, "%s", err.msg);
    cr_expect_eq(cut, 30 + 2 - 1 - CTX, "the input (context + continuation)[:-1] keeps its last %d ids", CTX);
    eval_request big = picture_request(whole, 30, 2, cont);
    big.visual = CTX - 1; /* with the 2 continuation ids: one row too many, whatever text goes */
    real *rows = calloc((size_t)big.visual * DIM, sizeof *rows);
    big.embeds = rows;
    cr_expect_eq(eval_model_score_cut(&em, &big, 1, 1, &ll, &greedy, &cut, NULL, &err), -1);
    cr_expect(strstr(err.msg, "do not fit model.context") != NULL, "%s", err.msg);
    free(rows);
}

Test(eval_cut, picture_prompt_decodes_as_the_prompt_cut_by_hand) {
    uint32_t whole[30], cut_by_hand[18];
    fill(whole, 0, 30);
    /* max_new 4: 24 - 4 + 1 = 21 rows; 30 + 3 is 12 too many: ids 2..13 go */
    fill(cut_by_hand, 0, 2), fill(cut_by_hand + 2, 14, 30);
    eval_prompt p[2] = {{.ids = whole, .n = 30, .visual = VISUAL, .image_at = 2, .embeds = embeds},
                        {.ids = cut_by_hand, .n = 18, .visual = VISUAL, .image_at = 2, .embeds = embeds}};
    uint32_t *out[2];
    size_t n_out[2];
    int cut[2];
    ps_error err;
    cr_assert_eq(eval_model_generate_cut(&em, p, 2, 2, 4, out, n_out, cut, &err), 0, "%s", err.msg);
    cr_expect(cut[0] == 12 && cut[1] == 0, "cut %d %d", cut[0], cut[1]);
    cr_assert(n_out[0] == 4 && n_out[1] == 4);
    cr_expect(memcmp(out[0], out[1], 4 * sizeof *out[0]) == 0, "the same tokens as the prompt cut by hand");
    free(out[0]), free(out[1]);
    p[0].visual = 22; /* the picture alone exceeds what max_new leaves: refused */
    real *rows = calloc(22 * DIM, sizeof *rows);
    p[0].embeds = rows;
    cr_expect_eq(eval_model_generate_cut(&em, p, 1, 1, 4, out, n_out, cut, &err), -1);
    free(rows);
}
