/* test_frozen.c - frozen units in the sharded training state (mpi/sharding.h).
 *
 * A unit with model_unit.trainable = 0 gets no gradient buffer and no AdamW
 * moments, is never reduced (all-reduce or reduce-scatter), adds nothing to
 * the gradient norm and keeps its weights bit-identical through optimizer
 * steps; FSDP still gathers it. The trainable units' gradients are the same
 * as when every unit trains. Runs on one rank under ddp, zero1 and fsdp. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "comm.h"
#include "config.h"
#include "model.h"
#include "plan.h"
#include "sharding.h"
#include "test_util.h"

static comm *world;

static void setup(void) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    ps_error err = {{0}};
    test_chdir_to_repo_root("config/tiny.cfg");
    cr_assert_eq(comm_world(&world, NULL, NULL, &err), 0, "comm_world: %s", err.msg);
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
}

static void teardown(void) {
    comm_free(world);
    comm_shutdown();
}

TestSuite(frozen, .init = setup, .fini = teardown, .timeout = 60);

#define FROZEN 1 /* the first transformer block */

typedef struct run_result {
    double norm;         /* gradient norm of the first step */
    double unit_ss[16];  /* per unit, the sum of squares of its reduced gradient (first step) */
    double bytes;        /* collective payload of the first step */
    size_t peak, replay; /* bytes_peak of the state, sharded_state_bytes */
    int n_units;
} run_result;

/* Two optimizer steps of the tiny model (one micro-batch each, two with
 * accumulation) with unit FROZEN frozen or not. */
static void run(const char *strategy, int freeze, run_result *out) {
    run_config cfg;
    ps_error err = {{0}};
    char opt[64];
    snprintf(opt, sizeof opt, "parallel.strategy=%s", strategy);
    cr_assert_eq(config_load(&cfg, "config/tiny.cfg", 2, (char *[]){opt, "train.grad_accum=2"}, &err), 0, "%s",
                 err.msg);
    model m;
    cr_assert_eq(model_init(&m, &cfg.model, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_lt(m.layout.n_units, 16);
    if (freeze) m.layout.units[FROZEN].trainable = 0;
    sharded_state s;
    cr_assert_eq(sharded_init(&s, &cfg, &m.layout, m.ops, world, &err), 0, "%s", err.msg);
    m.hooks = sharded_hooks(&s);
    size_t n = m.layout.units[FROZEN].size;
    real *before = malloc(n * sizeof *before);
    memcpy(before, s.owned[FROZEN], n * sizeof *before);
    if (freeze) {
        cr_expect_null(s.adam_m[FROZEN], "%s: a frozen unit has AdamW moments", strategy);
        cr_expect_null(s.adam_v[FROZEN], "%s: a frozen unit has AdamW moments", strategy);
        cr_expect_null(s.owned_grad[FROZEN], "%s: a frozen unit has a gradient slice", strategy);
        for (int u = 0; u < m.layout.n_units; u++)
            if (u != FROZEN) cr_expect_not_null(s.adam_m[u]);
    }
    int B = cfg.train.micro_batch, T = cfg.train.seq_len;
    model_activations *a = model_activations_alloc(&m.layout, B, T, 0, &err);
    cr_assert_not_null(a, "%s", err.msg);
    int *tokens = malloc((size_t)B * T * sizeof *tokens), *targets = malloc((size_t)B * T * sizeof *targets);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (i * 7) % cfg.model.vocab;
        targets[i] = (i * 7 + 3) % cfg.model.vocab;
    }
    for (int step = 1; step <= 2; step++) {
        comm *c = s.kind == STRATEGY_DDP ? world : s.group;
        double bytes = comm_bytes(c);
        sharded_begin_step(&s);
        for (int k = 0; k < cfg.train.grad_accum; k++) {
            model_forward(&m, &s.params, a, tokens, targets, B, T);
            model_backward(&m, &s.params, &s.grads, a, tokens, targets, B, T, (real)0.5);
            cr_assert(!s.hook_failed, "%s", s.hook_error.msg);
        }
        cr_assert_eq(sharded_reduce_gradients(&s, &err), 0, "%s", err.msg);
        double norm;
        cr_assert_eq(sharded_grad_norm(&s, &norm, &err), 0, "%s", err.msg);
        if (step == 1) {
            out->norm = norm;
            out->bytes = comm_bytes(c) - bytes;
            for (int u = 0; u < m.layout.n_units; u++)
                out->unit_ss[u] = s.owned_grad[u] ? s.ops->sum_squares(s.owned_grad[u], s.slices.shard_len[u]) : -1;
        }
        cr_assert_eq(sharded_optimizer_step(&s, &cfg.train, 1e-2, step, 1.0, &err), 0, "%s", err.msg);
    }
    int same = memcmp(before, s.owned[FROZEN], n * sizeof *before) == 0;
    if (freeze) cr_expect(same, "%s: AdamW changed a frozen unit's weights", strategy);
    else cr_expect(!same, "%s: a trainable unit did not change (the check above cannot fail)", strategy);
    out->n_units = m.layout.n_units;
    out->peak = s.bytes_peak;
    out->replay = sharded_state_bytes(&m.layout, s.kind, 1, cfg.parallel.reshard_after_forward, cfg.parallel.prefetch);
    free(before);
    free(tokens);
    free(targets);
    model_activations_free(a);
    sharded_free(&s);
    model_free(&m);
}

static void check(const char *strategy) {
    run_result all, frozen;
    run(strategy, 0, &all);
    run(strategy, 1, &frozen);
    /* The trainable units' gradients do not depend on the frozen one. */
    double want = 0;
    for (int u = 0; u < all.n_units; u++) {
        if (u == FROZEN) continue;
        cr_expect_eq(frozen.unit_ss[u], all.unit_ss[u], "%s: unit %d's gradient changed", strategy, u);
        want += all.unit_ss[u];
    }
    cr_expect_lt(fabs(frozen.norm - sqrt(want)), 1e-12 * sqrt(want), "%s: grad norm %.17g, expected %.17g (%.17g "
                 "with the frozen unit)", strategy, frozen.norm, sqrt(want), all.norm);
    cr_expect_lt(frozen.norm, all.norm);
    /* No reduction of the frozen unit: ddp all-reduces (2x) once per step,
     * fsdp reduce-scatters per micro-batch (2 here) but still gathers it. */
    size_t unit = 0;
    {
        run_config cfg;
        ps_error err;
        config_load(&cfg, "config/tiny.cfg", 0, NULL, &err);
        model_layout L;
        model_layout_init(&L, &cfg.model, &err);
        unit = L.units[FROZEN].size * sizeof(real);
        model_layout_free(&L);
    }
    double saved = all.bytes - frozen.bytes;
    double expect = !strcmp(strategy, "ddp") ? 2.0 * unit : !strcmp(strategy, "zero1") ? (double)unit : 2.0 * unit;
    cr_expect_eq(saved, expect, "%s: the step moved %.0f bytes fewer, expected %.0f (one unit: %zu)", strategy, saved,
                 expect, unit);
    /* Memory: the state's peak is the replay's, and smaller by the unit's
     * moments (and gradient). */
    cr_expect_eq(frozen.peak, frozen.replay, "%s: bytes_peak %zu, sharded_state_bytes %zu", strategy, frozen.peak,
                 frozen.replay);
    cr_expect_lt(frozen.peak, all.peak, "%s: freezing saved no memory", strategy);
}

Test(frozen, ddp) { check("ddp"); }
Test(frozen, zero1) { check("zero1"); }
Test(frozen, fsdp) { check("fsdp"); }

/* presight plan counts what a frozen unit does not hold: on the CPU its
 * moments (and gradient), as the replay of the state allocates; on the GPU
 * its gradient slice and moments, 12 of the 18 bytes per owned parameter. */
Test(frozen, plan) {
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load(&cfg, "config/tiny.cfg", 1, (char *[]){"parallel.strategy=fsdp"}, &err), 0, "%s", err.msg);
    model_layout L;
    cr_assert_eq(model_layout_init(&L, &cfg.model, &err), 0, "%s", err.msg);
    plan_cpu all, frozen;
    plan_gpu_opts o;
    plan_gpu_defaults(&o);
    o.seq = 32;
    plan_gpu gall, gfrozen;
    cr_assert_eq(plan_cpu_rank(&cfg, &L, 2, 0, &all, &err), 0, "%s", err.msg);
    cr_assert_eq(plan_gpu_estimate(&L, &o, &gall, &err), 0, "%s", err.msg);
    L.units[FROZEN].trainable = 0;
    cr_assert_eq(plan_cpu_rank(&cfg, &L, 2, 0, &frozen, &err), 0, "%s", err.msg);
    cr_assert_eq(plan_gpu_estimate(&L, &o, &gfrozen, &err), 0, "%s", err.msg);
    size_t slice = (L.units[FROZEN].size + 1) / 2 * sizeof(real);
    cr_expect_eq(all.owned - frozen.owned, 3 * slice, "owned %zu -> %zu, slice %zu", all.owned, frozen.owned, slice);
    cr_expect_eq(frozen.state, sharded_state_bytes(&L, STRATEGY_FSDP, 2, 1, 1));
    cr_expect_lt(frozen.total, all.total);
    double gslice = (double)((L.units[FROZEN].size + 7) / 8);
    cr_expect_eq(gall.owned - gfrozen.owned, 12.0 * gslice, "GPU owned %.0f -> %.0f", gall.owned, gfrozen.owned);
    cr_expect_eq(gall.master, gfrozen.master);
    model_layout_free(&L);
}
