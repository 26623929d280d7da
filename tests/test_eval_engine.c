/* test_eval_engine.c - presight eval's scoring and decoding with pictures on the GPU engine
 * (stages/eval_model.c's engine path), through the engine's CPU emulator build
 * (build/emu/libpresight-cuda.so, loaded as presight loads it), against the CPU backend on a
 * small random model: requests with projected-picture rows score within TOL nats of the CPU
 * (bf16 activations); a request alone gives the same bits as in a mixed pass of the same
 * eval.batch; a request cut to model.context scores, and a prompt cut to it decodes, as the
 * one cut by hand; another picture's rows move the scores and the tokens (negative
 * controls). A random model's greedy tokens have near-ties that bf16 may flip, so the
 * engine's tokens are compared with the CPU's where a trained model gives clear margins:
 * cuda/check/engine_check.cu (greedy_decode_embeds) and tests/t_eval_gpu.sh (presight eval). */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_model.h"
#include "rng.h"

#define ENGINE "build/emu/libpresight-cuda.so"
/* Measured: at most 5.5e-2 nats per request of 2 tokens (a random model, init_std 0.2: logits
 * up to about 10, whose bf16 rounding is 4e-2). */
#define TOL 0.15

enum { VOCAB = 64, DIM = 32, CTX = 24, VISUAL = 3 };

static eval_model cpu, gpu;
static real pic_a[VISUAL * DIM], pic_b[VISUAL * DIM];
static const gpu_engine_api *api;

static void open_one(eval_model *em) {
    memset(em, 0, sizeof *em);
    model_config *c = &em->cfg.model;
    *c = (model_config){.vocab = VOCAB, .dim = DIM, .layers = 2, .heads = 2, .kv_heads = 1, .ffn_dim = 64,
                        .context = CTX, .rope_theta = 10000.0, .norm_eps = 1e-5, .init_std = 0.2};
    ps_error err;
    cr_assert_eq(model_init(&em->model, c, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(model_params_alloc(&em->params, &em->model.layout, &err), 0, "%s", err.msg);
    model_init_weights(&em->params, &em->model.layout, 5);
    em->stop = VOCAB; /* never produced */
}

/* The sanitizer build (tests/t_sanitizers.sh) does not load the emulated engine: it is built
 * without the sanitizers for presight, and its fibers switch stacks under ASan; the engine
 * runs under ASan + UBSan in its own build (build/engine_check_emu, tests/t_gpu_contract.sh). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void setup(void) {
#ifdef UNDER_ASAN
    cr_log_info("the sanitizer build: the emulated engine is not loaded here");
    api = NULL;
    return;
#endif
    void *lib = dlopen(ENGINE, RTLD_NOW | RTLD_LOCAL);
    gpu_engine_entry entry = lib ? (gpu_engine_entry)dlsym(lib, GPU_ENGINE_SYMBOL) : NULL;
    api = entry ? entry() : NULL;
    if (!api || api->abi != GPU_ENGINE_ABI) {
        cr_log_info("%s not built (or another ABI): the engine path is not checked here", ENGINE);
        api = NULL;
        return;
    }
    for (int i = 0; i < VISUAL * DIM; i++) {
        pic_a[i] = (real)(rng_uniform(3, (uint64_t)i) - 0.5);
        pic_b[i] = (real)(rng_uniform(4, (uint64_t)i) - 0.5);
    }
    open_one(&cpu);
    open_one(&gpu);
    ps_error err;
    cr_assert_eq(eval_model_use_gpu(&gpu, api, &err), 0, "%s", err.msg);
}

static void teardown(void) {
    if (!api) return;
    for (eval_model *em = &cpu; em; em = em == &cpu ? &gpu : NULL) {
        if (em->engine) em->gpu->destroy(em->engine);
        free(em->engine_units), free(em->engine_sizes);
        model_params_free(&em->params);
        model_free(&em->model);
    }
}

TestSuite(eval_engine, .init = setup, .fini = teardown);

static void fill(uint32_t *out, int from, int to) {
    for (int i = from; i < to; i++) *out++ = (uint32_t)(1 + (i * 7) % 60);
}

static eval_request picture_request(uint32_t *ctx, size_t n_ctx, int image_at, uint32_t *cont, const real *pic) {
    return (eval_request){.context = {ctx, n_ctx, n_ctx}, .continuation = {cont, 2, 2}, .visual = pic ? VISUAL : 0,
                          .image_at = image_at, .embeds = pic};
}

Test(eval_engine, picture_requests_score_as_on_the_cpu_alone_or_mixed) {
    if (!api) return;
    uint32_t c0[10], c1[6], c2[30], c3[19], cont[2] = {5, 9};
    fill(c0, 0, 10), fill(c1, 20, 26), fill(c2, 0, 30);
    fill(c3, 0, 2), fill(c3 + 2, 13, 30); /* c2 cut by hand: ids 2..12 after its picture at 2 */
    eval_request req[5] = {picture_request(c0, 10, 4, cont, pic_a), picture_request(c1, 6, 0, cont, pic_b),
                           picture_request(c1, 6, 0, cont, NULL), picture_request(c2, 30, 2, cont, pic_a),
                           picture_request(c3, 19, 2, cont, pic_a)};
    double lc[5], lg[5], alone;
    int gc[5], gg[5], cut[5], g1, cut1;
    ps_error err;
    cr_assert_eq(eval_model_score_cut(&cpu, req, 5, 3, lc, gc, cut, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(eval_model_score_cut(&gpu, req, 5, 3, lg, gg, cut, NULL, &err), 0, "%s", err.msg);
    double worst = 0;
    int bits = 0;
    for (int i = 0; i < 5; i++) worst = fmax(worst, fabs(lg[i] - lc[i])), bits += lg[i] == lc[i];
    cr_log_info("engine against cpu: max |difference| %.2e nats over 5 requests", worst);
    cr_expect(worst <= TOL, "log-likelihoods differ by %.3g > %g", worst, TOL);
    cr_expect(bits < 5, "the engine's numbers are all the CPU's bits: did the engine run?");
    cr_expect(cut[3] == 11 && cut[4] == 0);
    cr_expect(memcmp(&lg[3], &lg[4], sizeof lg[3]) == 0, "cut %.17g, by hand %.17g", lg[3], lg[4]);
    for (int i = 0; i < 5; i++) { /* each alone, in a pass of the same eval.batch (3) */
        cr_assert_eq(eval_model_score_cut(&gpu, &req[i], 1, 3, &alone, &g1, &cut1, NULL, &err), 0, "%s", err.msg);
        cr_expect(memcmp(&alone, &lg[i], sizeof alone) == 0 && g1 == gg[i], "request %d alone %.17g, mixed %.17g", i,
                  alone, lg[i]);
    }
    req[0].embeds = pic_b; /* negative control: another picture */
    cr_assert_eq(eval_model_score_cut(&gpu, &req[0], 1, 3, &alone, &g1, &cut1, NULL, &err), 0, "%s", err.msg);
    cr_expect(fabs(alone - lg[0]) > TOL, "another picture's rows moved the log-likelihood by %.3g only",
              fabs(alone - lg[0]));
}

Test(eval_engine, a_cut_picture_prompt_decodes_as_the_prompt_cut_by_hand) {
    if (!api) return;
    uint32_t whole[30], by_hand[18];
    fill(whole, 0, 30);
    fill(by_hand, 0, 2), fill(by_hand + 2, 14, 30); /* max_new 4: 21 rows fit; ids 2..13 go */
    eval_prompt p[3] = {{.ids = whole, .n = 30, .visual = VISUAL, .image_at = 2, .embeds = pic_a},
                        {.ids = by_hand, .n = 18, .visual = VISUAL, .image_at = 2, .embeds = pic_a},
                        {.ids = by_hand, .n = 18, .visual = VISUAL, .image_at = 2, .embeds = pic_b}};
    uint32_t *out[3];
    size_t n_out[3];
    int cut[3];
    ps_error err;
    for (int i = 0; i < 3; i++) /* one prompt per pass: the same shape each time */
        cr_assert_eq(eval_model_generate_cut(&gpu, &p[i], 1, 1, 4, &out[i], &n_out[i], &cut[i], &err), 0, "%s",
                     err.msg);
    cr_expect(cut[0] == 12 && cut[1] == 0, "cut %d %d", cut[0], cut[1]);
    cr_assert(n_out[0] == 4 && n_out[1] == 4 && n_out[2] == 4);
    cr_expect(memcmp(out[0], out[1], 4 * sizeof *out[0]) == 0, "engine: the cut prompt %u %u %u %u, by hand %u %u %u %u",
              out[0][0], out[0][1], out[0][2], out[0][3], out[1][0], out[1][1], out[1][2], out[1][3]);
    cr_expect(memcmp(out[1], out[2], 4 * sizeof *out[1]) != 0, "negative control: another picture, the same tokens");
    for (int i = 0; i < 3; i++) free(out[i]);
}
