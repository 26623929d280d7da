/* test_plan.c - stages/plan.c and sharded_state_bytes: preset parameter and
 * FLOP counts against hand-computed values, the fsdp state falling as 1/N,
 * the GPU model's parts adding up and its verdicts on the presets, the CPU
 * model's per-rank MPI term, and sharded_state_bytes equal to what a real
 * sharded state allocates at its peak (one rank, an MPI singleton; the
 * multi-rank check against real RSS is tests/t_memory.sh). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "comm.h"
#include "config.h"
#include "model.h"
#include "plan.h"
#include "mm_model.h"
#include "projector.h"
#include "sharding.h"
#include "study.h"

static void load_preset(const char *name, run_config *cfg, model_layout *L) {
    char path[128];
    snprintf(path, sizeof path, "config/model/%s.cfg", name);
    ps_error err = {{0}};
    cr_assert_eq(config_load_model(cfg, path, 0, NULL, &err), 0, "%s: %s", path, err.msg);
    cr_assert_eq(model_layout_init(L, &cfg->model, &err), 0, "%s: %s", path, err.msg);
}

/* By hand (seq 2048, vocab 32000, untied head):
 *   block = 2D + D(H + 2KV)hd + H hd D + 3DF; params = 2VD + D + layers x block
 *   matmul weights = layers (D(H + 2KV)hd + H hd D + 3DF) + VD (the head)
 *   FLOPs/token = 6 matmul weights + 12 layers D seq */
static const struct {
    const char *name;
    double params, matmul_weights, flops_per_token;
} presets[] = {
    {"340m", 348701696, 315883520, 2499280896},
    {"1b", 1104218112, 1038614528, 7036993536},
    {"3b", 3015355392, 2916876288, 19615186944},
    {"7b", 7241732096, 7110393856, 45883588608},
    {"13b", 13015864320, 12851609600, 82142822400},
};

Test(plan, preset_parameters_and_flops) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        run_config cfg;
        model_layout L;
        load_preset(presets[i].name, &cfg, &L);
        cr_expect_eq((double)L.n_params, presets[i].params, "%s: %zu parameters", presets[i].name, L.n_params);
        double f = model_train_flops(&L, 2048, 1.0);
        cr_expect_eq(f, presets[i].flops_per_token, "%s: %.0f FLOPs per token", presets[i].name, f);
        cr_expect_eq(f, 6 * presets[i].matmul_weights + 12.0 * L.cfg.layers * L.cfg.dim * 2048);
        /* A step of the study's batch: 1024 x 2048 tokens. */
        cr_expect_float_eq(model_train_flops(&L, 2048, 1024.0 * 2048), presets[i].flops_per_token * 1024 * 2048, 1e3);
        model_layout_free(&L);
    }
}

/* fsdp: owned params, grads, m, v shrink as 1/N; the gathered units do not:
 * at the peak (backward of a block) the unit in use, the next one prefetched,
 * its gradient and the previous unit's gradient in its reduce-scatter with
 * the receive slice, i.e. 16 P / N + 16 U + 4 U / N bytes (U the largest unit). */
Test(plan, fsdp_state_falls_as_one_over_n) {
    run_config cfg;
    model_layout L;
    load_preset("7b", &cfg, &L);
    double P = (double)L.n_params, U = 0, prev = INFINITY;
    for (int u = 0; u < L.n_units; u++)
        if (L.units[u].size > U) U = (double)L.units[u].size;
    static const int ranks[] = {1, 2, 4, 8, 16, 64, 512};
    for (size_t i = 0; i < sizeof ranks / sizeof *ranks; i++) {
        int N = ranks[i];
        double got = (double)sharded_state_bytes(&L, STRATEGY_FSDP, N, 1, 1);
        double want = 16 * P / N + 16 * U + 4 * U / N;
        cr_expect(fabs(got - want) / want < 0.01, "%d ranks: %.4g bytes, expected about %.4g", N, got, want);
        cr_expect(got < prev, "%d ranks: %.4g bytes, not below %.4g", N, got, prev);
        prev = got;
    }
    /* Without prefetch one unit less; without resharding every unit stays gathered through forward. */
    double base = (double)sharded_state_bytes(&L, STRATEGY_FSDP, 8, 1, 1);
    cr_expect_float_eq(base - (double)sharded_state_bytes(&L, STRATEGY_FSDP, 8, 1, 0), 4 * U, 4 * U * 0.01);
    cr_expect_gt((double)sharded_state_bytes(&L, STRATEGY_FSDP, 8, 0, 1), base + 4 * (P - 4 * U));
    /* ddp holds everything 4 times over at any N; zero1 2 full copies + 3 slices. */
    cr_expect_eq((double)sharded_state_bytes(&L, STRATEGY_DDP, 8, 1, 1), 16 * P);
    cr_expect(fabs((double)sharded_state_bytes(&L, STRATEGY_ZERO1, 8, 1, 1) - (8 * P + 12 * P / 8)) < 4.0 * 24 * L.n_units);
    model_layout_free(&L);
}

static plan_gpu gpu_plan(const char *preset, int nodes, int gpus_per_node) {
    run_config cfg;
    model_layout L;
    load_preset(preset, &cfg, &L);
    plan_gpu_opts o;
    plan_gpu_defaults(&o);
    o.nodes = nodes;
    o.gpus_per_node = gpus_per_node;
    plan_gpu g;
    ps_error err = {{0}};
    cr_assert_eq(plan_gpu_estimate(&L, &o, &g, &err), 0, "%s: %s", preset, err.msg);
    model_layout_free(&L);
    return g;
}

Test(plan, gpu_parts_add_up) {
    const char *names[] = {"340m", "1b", "3b", "7b", "13b"};
    for (int i = 0; i < 5; i++) {
        plan_gpu g = gpu_plan(names[i], 8, 8);
        cr_expect_float_eq(g.owned, g.master + g.grads + g.adam_m + g.adam_v + g.slice_bf16, 1);
        cr_expect_float_eq(g.buffers, g.grad_units + g.logits + g.attention + g.workspace + g.nccl + g.context, 1);
        cr_expect_float_eq(g.total_full, g.owned + g.gathered + g.act_full + g.buffers, 1);
        cr_expect_float_eq(g.total_ckpt, g.owned + g.gathered + g.act_ckpt + g.buffers, 1);
        cr_expect_lt(g.act_ckpt, g.act_full, "%s", names[i]);
        cr_expect_eq(g.micro_batch * g.grad_accum * g.gpus, 1024, "%s: %d x %d x %d GPUs", names[i], g.micro_batch,
                     g.grad_accum, g.gpus);
        cr_expect_eq(g.fits_full, g.total_full <= 80e9);
        cr_expect_eq(g.fits_ckpt, g.total_ckpt <= 80e9);
        /* Step time at MFU 0.40 of 989 TFLOP/s on 64 GPUs. */
        cr_expect_float_eq(g.step_seconds, presets[i].flops_per_token * 1024 * 2048 / (0.40 * 989e12 * 64), 1e-9);
        cr_expect_float_eq(g.tokens_per_s * g.step_seconds, 1024.0 * 2048, 1e-3);
    }
}

/* 7B by hand at micro-batch 1 x 2048 tokens (bf16; D 4096, q|k|v 6144, F 14336, 32 heads):
 * a block saves 2 (4D + qkv + D + 3F) + 8 + 4 x 32 = 139400 bytes per token. */
Test(plan, gpu_activations_by_hand) {
    run_config cfg;
    model_layout L;
    load_preset("7b", &cfg, &L);
    double block = 139400, top = 4 * 4096 + 4, scratch = 2.0 * (2 * 4096 + 6144 + 4096 + 3 * 14336);
    cr_expect_float_eq(plan_gpu_activation_bytes(&L, 1, 2048, 0), 2048 * (32 * block + top + scratch), 1);
    cr_expect_float_eq(plan_gpu_activation_bytes(&L, 1, 2048, 1), 2048 * (32 * 2.0 * 4096 + block + top + scratch), 1);
    cr_expect_float_eq(plan_gpu_activation_bytes(&L, 4, 2048, 1), 4 * plan_gpu_activation_bytes(&L, 1, 2048, 1), 1);
    model_layout_free(&L);
}

Test(plan, seven_b_fits_on_eight_gpus_with_checkpointing) {
    plan_gpu g = gpu_plan("7b", 1, 8);
    cr_expect(g.fits_ckpt, "7B, FSDP over 8 GPUs, checkpointing: %.1f GB", g.total_ckpt / 1e9);
    cr_expect_eq(g.shard_group, 8);
    /* 18 bytes per parameter over 8 GPUs (fp32 master, gradient, m, v + the bf16 copy): 16.3 GB owned. */
    cr_expect_float_eq(g.owned, 18.0 * 7241732096 / 8, 18.0 * 8 * 34);
}

Test(plan, thirteen_b_does_not_fit_on_one_gpu) {
    plan_gpu g = gpu_plan("13b", 1, 1);
    cr_expect(!g.fits_ckpt && !g.fits_full, "13B on 1 GPU: %.1f GB with checkpointing", g.total_ckpt / 1e9);
    cr_expect_gt(g.owned, 230e9); /* 18 x 13.0B */
}

Test(plan, gpu_rejects_uneven_batches) {
    run_config cfg;
    model_layout L;
    load_preset("1b", &cfg, &L);
    plan_gpu_opts o;
    plan_gpu_defaults(&o);
    o.gpus_per_node = 6; /* 1024 sequences do not split over 6 GPUs */
    plan_gpu g;
    ps_error err = {{0}};
    cr_expect_eq(plan_gpu_estimate(&L, &o, &g, &err), -1);
    cr_expect(strstr(err.msg, "1024") != NULL, "%s", err.msg);
    plan_gpu_defaults(&o);
    o.micro_batch = 3; /* does not divide 128 sequences per GPU */
    cr_expect_eq(plan_gpu_estimate(&L, &o, &g, &err), -1);
    model_layout_free(&L);
}

/* The CPU model's MPI term under fsdp: a binomial reduce-scatter touches 0, 1
 * or 2 full units by rank (1 alone); the total is the sum of the parts. */
Test(plan, cpu_rank_parts) {
    run_config cfg;
    ps_error err = {{0}};
    char *over[] = {"parallel.strategy=fsdp", "train.micro_batch=2", "train.seq_len=64"};
    cr_assert_eq(config_load_model(&cfg, "config/tiny.cfg", 3, over, &err), 0, "%s", err.msg);
    model_layout L;
    cr_assert_eq(model_layout_init(&L, &cfg.model, &err), 0);
    size_t U = 0;
    for (int u = 0; u < L.n_units; u++)
        if (L.units[u].size > U) U = L.units[u].size;
    static const struct { int ranks, units[4]; } cases[] = {{1, {1}}, {2, {1, 0}}, {3, {2, 0, 0}}, {4, {2, 0, 1, 0}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int r = 0; r < cases[c].ranks; r++) {
            plan_cpu p;
            cr_assert_eq(plan_cpu_rank(&cfg, &L, cases[c].ranks, r, &p, &err), 0, "%s", err.msg);
            size_t padded = (U + (size_t)cases[c].ranks - 1) / (size_t)cases[c].ranks * (size_t)cases[c].ranks;
            cr_expect_eq(p.collectives, (size_t)cases[c].units[r] * padded * sizeof(real), "%d ranks, rank %d",
                         cases[c].ranks, r);
            cr_expect_eq(p.total, p.state + p.activations + p.tokens + p.rope + p.collectives + p.process);
            cr_expect_eq(p.state, p.owned + p.units);
            cr_expect_eq(p.activations, model_activations_bytes(&L, 2, 64, 0));
        }
    plan_cpu p;
    cr_expect_eq(plan_cpu_rank(&cfg, &L, 3, 0, &p, &(ps_error){{0}}), 0);
    cfg.parallel.shard_group = 2;
    cr_expect_eq(plan_cpu_rank(&cfg, &L, 3, 0, &p, &err), -1, "a shard group of 2 does not divide 3 ranks");
    model_layout_free(&L);
}

/* -------------------------------------- sharded_state_bytes = bytes_peak */

static comm *world;

static void mpi_setup(void) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    ps_error err = {{0}};
    cr_assert_eq(comm_world(&world, NULL, NULL, &err), 0, "comm_world: %s", err.msg);
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
}

static void mpi_teardown(void) {
    comm_free(world);
    comm_shutdown();
}

TestSuite(state_bytes, .init = mpi_setup, .fini = mpi_teardown, .timeout = 60);

/* Two optimizer steps of the tiny model the way trainer_step drives the
 * sharded state; bytes_peak must equal the replay. */
static void check_peak(int n_over, char **over) {
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load(&cfg, "config/tiny.cfg", n_over, over, &err), 0, "%s", err.msg);
    model m;
    cr_assert_eq(model_init(&m, &cfg.model, backend_cpu(), &err), 0, "%s", err.msg);
    sharded_state s;
    cr_assert_eq(sharded_init(&s, &cfg, &m.layout, m.ops, world, &err), 0, "%s", err.msg);
    m.hooks = sharded_hooks(&s);
    int B = cfg.train.micro_batch, T = cfg.train.seq_len;
    model_activations *a = model_activations_alloc(&m.layout, B, T, cfg.parallel.recompute_blocks, &err);
    cr_assert_not_null(a, "%s", err.msg);
    int *tokens = malloc((size_t)B * T * sizeof *tokens), *targets = malloc((size_t)B * T * sizeof *targets);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (i * 7) % cfg.model.vocab;
        targets[i] = (i * 7 + 3) % cfg.model.vocab;
    }
    for (int step = 1; step <= 2; step++) {
        sharded_begin_step(&s);
        for (int k = 0; k < cfg.train.grad_accum; k++) {
            model_forward(&m, &s.params, a, tokens, targets, B, T);
            model_backward(&m, &s.params, &s.grads, a, tokens, targets, B, T, (real)(1.0 / cfg.train.grad_accum));
            cr_assert(!s.hook_failed, "%s", s.hook_error.msg);
        }
        cr_assert_eq(sharded_reduce_gradients(&s, &err), 0, "%s", err.msg);
        cr_assert_eq(sharded_optimizer_step(&s, &cfg.train, 1e-3, step, 1.0, &err), 0, "%s", err.msg);
    }
    strategy_kind kind;
    cr_assert_eq(strategy_parse(cfg.parallel.strategy, &kind, &err), 0);
    size_t want = sharded_state_bytes(&m.layout, kind, 1, cfg.parallel.reshard_after_forward, cfg.parallel.prefetch);
    cr_expect_eq(s.bytes_peak, want, "%s %s %s: bytes_peak %zu, sharded_state_bytes %zu", over[0],
                 n_over > 1 ? over[1] : "", n_over > 2 ? over[2] : "", s.bytes_peak, want);
    free(tokens);
    free(targets);
    model_activations_free(a);
    sharded_free(&s);
    model_free(&m);
}

Test(state_bytes, ddp) { check_peak(1, (char *[]){"parallel.strategy=ddp"}); }
Test(state_bytes, zero1) { check_peak(1, (char *[]){"parallel.strategy=zero1"}); }
Test(state_bytes, fsdp) { check_peak(1, (char *[]){"parallel.strategy=fsdp"}); }
Test(state_bytes, fsdp_accumulating) { check_peak(2, (char *[]){"parallel.strategy=fsdp", "train.grad_accum=3"}); }
Test(state_bytes, fsdp_no_prefetch) { check_peak(2, (char *[]){"parallel.strategy=fsdp", "parallel.prefetch=false"}); }
Test(state_bytes, fsdp_tied) { check_peak(2, (char *[]){"parallel.strategy=fsdp", "model.tied_head=true"}); }
Test(state_bytes, fsdp_no_reshard_accumulating) {
    check_peak(3, (char *[]){"parallel.strategy=fsdp", "parallel.reshard_after_forward=false", "train.grad_accum=2"});
}
Test(state_bytes, fsdp_tied_no_reshard) {
    check_peak(3, (char *[]){"parallel.strategy=fsdp", "model.tied_head=true", "parallel.reshard_after_forward=false"});
}

/* ------------------------- fsdp with a projector after the head (adapt) */

enum { ADAPT_ALIGN, ADAPT_SFT, ADAPT_BLIND };

/* Two optimizer steps of one micro-batch each, driving the sharded state
 * the way stages/adapt.c's micro_step does: the projector's unit acquired
 * before the forward pass, its backward after the model's. Checks that
 * nothing stays gathered past a step (a unit gathered then is used only by
 * the next forward: stale after the optimizer step), that every use of a
 * unit gathers it once (want_gathers per micro-batch, counted by hand from
 * model_backward_batch's walk), and bytes_peak = sharded_state_bytes. */
static void check_adapt(int stage, int tied, size_t want_gathers) {
    run_config cfg;
    ps_error err = {{0}};
    char *over[] = {"parallel.strategy=fsdp", "train.micro_batch=2", tied ? "model.tied_head=true" : "model.tied_head=false"};
    cr_assert_eq(config_load(&cfg, "config/tiny.cfg", 3, over, &err), 0, "%s", err.msg);
    enum { W = 12, V = 4 }; /* encoder width, visual rows per sample */
    model m;
    projector pj;
    cr_assert_eq(model_init(&m, &cfg.model, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(projector_add(&m.layout, W, &pj, &err), 0, "%s", err.msg);
    model_layout *L = &m.layout;
    int llm_trains = stage != ADAPT_ALIGN, proj_trains = stage != ADAPT_BLIND, uses_proj = proj_trains;
    model_layout_set_trainable(L, 0, L->llm_units, llm_trains);
    model_layout_set_trainable(L, pj.unit, pj.unit + 1, proj_trains);
    sharded_state s;
    cr_assert_eq(sharded_init(&s, &cfg, L, m.ops, world, &err), 0, "%s", err.msg);
    m.hooks = sharded_hooks(&s);
    const model_hooks *h = m.hooks;
    int B = cfg.train.micro_batch, T = cfg.train.seq_len, n = B * T, ne = uses_proj ? B * V : 0;
    model_activations *a = model_activations_alloc(L, B, T, 0, &err);
    cr_assert_not_null(a, "%s", err.msg);
    projector_acts pa;
    cr_assert_eq(projector_acts_alloc(&pa, &pj, n, &err), 0);
    int *tokens = malloc((size_t)n * sizeof *tokens), *targets = malloc((size_t)n * sizeof *targets);
    real *feat = calloc((size_t)n * W, sizeof *feat), *emb = calloc((size_t)n * cfg.model.dim, sizeof *emb),
         *demb = calloc((size_t)n * cfg.model.dim, sizeof *demb);
    for (int i = 0; i < n; i++) {
        tokens[i] = uses_proj && i % T >= 1 && i % T <= V ? -1 : (i * 7) % cfg.model.vocab; /* BOS, pictures, text */
        targets[i] = i % T > V ? (i * 7 + 3) % cfg.model.vocab : -1;
    }
    for (int i = 0; i < n * W; i++) feat[i] = (real)((i % 13) - 6) / 8;
    size_t before = s.gathers;
    for (int step = 1; step <= 2; step++) {
        sharded_begin_step(&s);
        if (uses_proj) {
            h->acquire(h->ctx, pj.unit, 0);
            projector_forward(m.ops, &pj, L, &s.params, &pa, feat, ne, emb);
        }
        model_batch bt = {.batch = B, .seq = T, .tokens = tokens, .targets = targets, .embeds = emb, .n_embeds = ne,
                          .embeds_grad = proj_trains ? demb : NULL};
        cr_assert_eq(model_forward_batch(&m, &s.params, a, &bt, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(model_backward_batch(&m, &s.params, &s.grads, a, &bt, 1, &err), 0, "%s", err.msg);
        if (proj_trains) {
            h->acquire(h->ctx, pj.unit, 1);
            projector_backward(m.ops, &pj, L, &s.params, &s.grads, &pa, feat, ne, demb, NULL);
            h->grad_ready(h->ctx, pj.unit);
        }
        if (uses_proj) h->release(h->ctx, pj.unit, 1);
        cr_assert(!s.hook_failed, "%s", s.hook_error.msg);
        cr_assert_eq(sharded_reduce_gradients(&s, &err), 0, "%s", err.msg);
        for (int u = 0; u < L->n_units; u++)
            cr_expect_null(s.params.unit[u], "stage %d tied %d step %d: unit %d (of %d) still gathered at the optimizer step",
                           stage, tied, step, u, L->n_units);
        cr_assert_eq(sharded_optimizer_step(&s, &cfg.train, 1e-3, step, 1.0, &err), 0, "%s", err.msg);
        cr_expect_eq(s.gathers - before, want_gathers, "stage %d tied %d step %d: %zu gathers, want %zu", stage, tied,
                     step, s.gathers - before, want_gathers);
        before = s.gathers;
    }
    size_t want = sharded_state_bytes_accum(L, STRATEGY_FSDP, 1, cfg.parallel.reshard_after_forward,
                                            cfg.parallel.prefetch, cfg.train.grad_accum);
    cr_expect_eq(s.bytes_peak, want, "stage %d tied %d: bytes_peak %zu, sharded_state_bytes %zu", stage, tied,
                 s.bytes_peak, want);
    free(tokens);
    free(targets);
    free(feat);
    free(emb);
    free(demb);
    projector_acts_free(&pa);
    model_activations_free(a);
    sharded_free(&s);
    model_free(&m);
}

/* Gathers per micro-batch, layers = 2 (units: embedding, 2 blocks, head, projector):
 *   align  forward projector + 4, backward head + 2 blocks (the frozen embedding is not visited): 8
 *   sft    forward 5, backward head, 2 blocks, embedding (the projector is still gathered): 9
 *   blind  the projector unused: forward 4, backward 4: 8
 *   tied   one more each: forward the embedding again with the head, backward the embedding with the head
 *          (align too: the tied head needs it) */
Test(state_bytes, fsdp_projector_stages) { /* one test: one MPI start-up for the five */
    check_adapt(ADAPT_ALIGN, 0, 8);
    check_adapt(ADAPT_SFT, 0, 9);
    check_adapt(ADAPT_BLIND, 0, 8);
    check_adapt(ADAPT_ALIGN, 1, 10);
    check_adapt(ADAPT_SFT, 1, 10);
}

/* ------------------------------------------------------- adapt stages */

/* plan_adapt_layout is the layout presight adapt trains: the same units as
 * mm_model_init's, and model_layout_count's trainable/frozen split per
 * stage; the projector's width is read back from its unit. */
Test(plan, adapt_layout_matches_the_model) {
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load_model(&cfg, "config/tiny.cfg", 0, NULL, &err), 0, "%s", err.msg);
    enum { W = 48 };
    mm_model mm;
    cr_assert_eq(mm_model_init(&mm, &cfg.model, W, backend_cpu(), &err), 0, "%s", err.msg);
    const model_layout *M = &mm.m.layout;
    size_t D = (size_t)cfg.model.dim, proj = W * D + D + D * D + D;
    for (plan_stage st = PLAN_ALIGN; st <= PLAN_SFT; st++) {
        model_layout L;
        cr_assert_eq(model_layout_init(&L, &cfg.model, &err), 0);
        cr_assert_eq(plan_adapt_layout(&L, st, W, &err), 0, "%s", err.msg);
        cr_assert_eq(L.n_units, M->n_units);
        for (int u = 0; u < L.n_units; u++) cr_expect_eq(L.units[u].size, M->units[u].size, "unit %d", u);
        cr_expect_eq(L.units[L.llm_units].size, proj);
        cr_expect_eq(plan_projector_width(&L), W);
        model_param_counts n;
        model_layout_count(&L, &n);
        size_t llm = M->n_params - proj;
        cr_expect_eq(n.trainable, st == PLAN_ALIGN ? proj : st == PLAN_BLIND ? llm : llm + proj, "stage %d", st);
        cr_expect_eq(n.frozen, st == PLAN_ALIGN ? llm : st == PLAN_BLIND ? proj : 0, "stage %d", st);
        model_layout_free(&L);
    }
    model_layout L;
    cr_assert_eq(model_layout_init(&L, &cfg.model, &err), 0);
    cr_expect_eq(plan_adapt_layout(&L, PLAN_PRETRAIN, W, &err), 0);
    cr_expect_eq(L.n_units, L.llm_units, "pretraining adds no projector");
    cr_expect_eq(plan_projector_width(&L), 0);
    model_layout_free(&L);
    mm_model_free(&mm);
}

/* FLOPs by hand for the tiny model (dim 64, 2 layers, 4 heads of 16 with
 * 2 kv heads, ffn 128, vocab 512, untied): matmul weights
 * 2 x (64 x 128 + 64 x 64 + 3 x 64 x 128) + 512 x 64 = 106496;
 * attention 12 x 2 x 64 x seq. Projector 48 -> 64: 6 x (48 x 64 + 64 x 64)
 * - 2 x 48 x 64 = 36864 per visual row. */
Test(plan, adapt_flops_by_hand) {
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load_model(&cfg, "config/tiny.cfg", 0, NULL, &err), 0, "%s", err.msg);
    model_layout L;
    cr_assert_eq(model_layout_init(&L, &cfg.model, &err), 0);
    cr_assert_eq(plan_adapt_layout(&L, PLAN_ALIGN, 48, &err), 0);
    double mw = 106496, attn = 12.0 * 2 * 64 * 64, tokens = 1000, visual = 300;
    cr_expect_float_eq(plan_train_flops(&L, PLAN_PRETRAIN, 64, tokens, 0), tokens * (6 * mw + attn), 1e-9);
    cr_expect_float_eq(plan_train_flops(&L, PLAN_SFT, 64, tokens, visual), tokens * (6 * mw + attn) + visual * 36864,
                       1e-9);
    cr_expect_float_eq(plan_train_flops(&L, PLAN_ALIGN, 64, tokens, visual), tokens * (4 * mw + attn) + visual * 36864,
                       1e-9);
    cr_expect_float_eq(plan_train_flops(&L, PLAN_BLIND, 64, tokens, visual), tokens * (6 * mw + attn), 1e-9);
    model_layout_free(&L);
}

/* The data count on three lines, bytes encoding (data.kind text), align's
 * plain template BOS caption EOS: "The flag of Monaco." is 19 bytes -> 21
 * ids + 16 visual rows = 37; a 100-byte caption -> 102 ids + 16, cut at 64
 * (its picture kept whole: it starts at row 1); a line that is not JSON is
 * skipped. blind withholds the pictures: no visual rows, the chat template. */
Test(plan, adapt_count_by_hand) {
    char path[] = "/tmp/plan_adapt_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    const char *conv = "{\"id\":\"%s\",\"image\":\"x.png\",\"image_set\":\"captions\",\"conversations\":"
                       "[{\"from\":\"human\",\"value\":\"<image>\"},{\"from\":\"gpt\",\"value\":\"%s\"}]}\n";
    char longer[101];
    memset(longer, 'x', 100);
    longer[100] = 0;
    fprintf(f, conv, "a", "The flag of Monaco.");
    fprintf(f, "not json\n\n");
    fprintf(f, conv, "b", longer);
    fclose(f);
    char data[64 + sizeof path];
    snprintf(data, sizeof data, "adapt.data=%s", path);
    char *over[] = {data, "adapt.stage=align", "adapt.visual_tokens=16", "train.seq_len=64", "adapt.batch=1"};
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load_model(&cfg, "config/tiny.cfg", 5, over, &err), 0, "%s", err.msg);
    plan_adapt_data d;
    cr_assert_eq(plan_adapt_count(&cfg, &d, &err), 0, "%s", err.msg);
    cr_expect_eq(d.samples, 2);
    cr_expect_eq(d.visual, 2);
    cr_expect_eq(d.bad, 1);
    cr_expect_float_eq(d.text_tokens, 21 + 102, 1e-9);
    cr_expect_float_eq(d.rows, 37 + 64, 1e-9);
    cr_expect_float_eq(d.visual_rows, 32, 1e-9);
    cr_expect_eq(d.steps, 2, "two pictures at adapt.batch 1");
    /* blind: BOS "USER: " "" "\n" "ASSISTANT: " answer EOT = 1 + 6 + 1 + 11 + answer + 1 */
    snprintf(cfg.adapt.stage, sizeof cfg.adapt.stage, "blind");
    cr_assert_eq(plan_adapt_count(&cfg, &d, &err), 0, "%s", err.msg);
    cr_expect_eq(d.visual, 0);
    cr_expect_float_eq(d.visual_rows, 0, 1e-9);
    cr_expect_float_eq(d.rows, (20 + 19) + 64, 1e-9, "%g", d.rows);
    unlink(path);
    /* what a study names need not be a file: /dev/zero would be one endless line */
    snprintf(cfg.adapt.data, sizeof cfg.adapt.data, "/dev/zero");
    cr_expect_eq(plan_adapt_count(&cfg, &d, &err), -1);
    cr_expect(strstr(err.msg, "not a regular file") != NULL, "%s", err.msg);
}

/* ----------------------------------------------- a study's every stage */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* study_stage_compute on a study of the tiny (byte-level) model: pretrain, then align over
 * the three lines of adapt_count_by_hand (101 rows an epoch, 2 epochs; no features: the
 * projector is not counted and the note says so), then eval of a rolling task of two
 * 11-byte documents. By hand (matmul weights 106496, attention 12 x 2 x 64 x seq):
 *   align  202 x (4 x 106496 + 12 x 2 x 64 x 64)          = 105906176 (frozen LLM)
 *   eval   22 x (2 x 106496 + 4 x 2 x 64 x 256 (context))  = 7569408   (forward) */
Test(plan, study_stages_by_hand) {
    char dir[] = "/tmp/plan_study_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[4][512], text[4096], cwd[1024];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    const char *names[] = {"align.jsonl", "align.cfg", "docs.jsonl", "docs.cfg"};
    for (int i = 0; i < 4; i++) snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
    const char *conv = "{\"id\":\"%s\",\"image\":\"x.png\",\"image_set\":\"captions\",\"conversations\":"
                       "[{\"from\":\"human\",\"value\":\"<image>\"},{\"from\":\"gpt\",\"value\":\"%s\"}]}\n";
    char longer[101], a[512], b[512];
    memset(longer, 'x', 100);
    longer[100] = 0;
    snprintf(a, sizeof a, conv, "a", "The flag of Monaco.");
    snprintf(b, sizeof b, conv, "b", longer);
    snprintf(text, sizeof text, "%snot json\n%s", a, b);
    write_file(path[0], text);
    snprintf(text, sizeof text, "adapt = { stage = \"align\"; data = \"%s\"; visual_tokens = 16; batch = 1; epochs = 2; };\n"
                                "train = { seq_len = 64; micro_batch = 2; };\n", path[0]);
    write_file(path[1], text);
    write_file(path[2], "{\"id\": \"1\", \"text\": \"hello world\"}\n{\"id\": \"2\", \"text\": \"world hello\"}\n");
    snprintf(text, sizeof text, "name = \"docs\"; category = \"language\"; data = \"%s\"; kind = \"rolling\"; "
                                "scorer = \"perplexity\"; text = \"{text}\"; count = \"{text}\"; id = \"id\";\n", path[2]);
    write_file(path[3], text);
    char study_path[600];
    snprintf(study_path, sizeof study_path, "%s/s.cfg", dir);
    snprintf(text, sizeof text,
             "name = \"s\"; base = \"%s/config/tiny.cfg\"; dir = \"%s/out\";\n"
             "axes = ( { key = \"train.seed\"; values = [ 1 ]; } );\n"
             "stages = ( { name = \"pretrain\"; command = \"train\"; },\n"
             "  { name = \"align\"; command = \"adapt\"; depends_on = \"pretrain\";\n"
             "    args = [ \"%s\", \"adapt.init={run}/pretrain\", \"run.dir={dir}\" ]; },\n"
             "  { name = \"eval\"; command = \"eval\"; depends_on = \"align\";\n"
             "    args = [ \"{dep}/config.cfg\", \"eval.tasks=%s\", \"eval.limit=2\" ]; } );\n",
             cwd, dir, path[1], path[3]);
    write_file(study_path, text);
    study s;
    ps_error err = {{0}};
    cr_assert_eq(study_load(&s, study_path, NULL, &err), 0, "%s", err.msg);
    run_config cfg;
    cr_assert_eq(study_run_config(&s, &s.runs[0], &cfg, &err), 0, "%s", err.msg);
    double flops, tokens;
    char note[600];
    cr_assert_eq(study_stage_compute(&s, &s.runs[0], &cfg, 1, &flops, &tokens, note, sizeof note, &err), 0, "%s", err.msg);
    cr_expect_float_eq(tokens, 202, 1e-9, "align tokens %g", tokens);
    cr_expect_float_eq(flops, 105906176.0, 1e-9, "align FLOPs %.17g", flops);
    cr_expect(strstr(note, "projector not counted") != NULL, "note: %s", note);
    cr_assert_eq(study_stage_compute(&s, &s.runs[0], &cfg, 2, &flops, &tokens, note, sizeof note, &err), 0, "%s", err.msg);
    cr_expect_float_eq(tokens, 22, 1e-9, "eval tokens %g", tokens);
    cr_expect_float_eq(flops, 7569408.0, 1e-9, "eval FLOPs %.17g", flops);
    cr_expect_eq(note[0], 0, "note: %s", note);
    /* the pretrain stage agrees with study_run_compute */
    double f0, t0;
    cr_assert_eq(study_stage_compute(&s, &s.runs[0], &cfg, 0, &flops, &tokens, note, sizeof note, &err), 0);
    cr_assert_eq(study_run_compute(&s, &s.runs[0], &cfg, &f0, &t0, &err), 0);
    cr_expect_eq(flops, f0);
    cr_expect_eq(tokens, t0);
    study_free(&s);
    char rm[700];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    cr_expect_eq(system(rm), 0);
}
