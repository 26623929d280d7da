/* test_checkpoint_v2.c - checkpoint format 2 (stages/checkpoint.h): moments
 * of trainable units only; weights-only loads of a subset, reporting which
 * tensors were loaded and which are new; the light serial reader; format 1
 * files (tests/fixtures/checkpoint_v1) still load. One rank. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "checkpoint.h"
#include "comm.h"
#include "config.h"
#include "model.h"
#include "sharding.h"
#include "test_util.h"

static comm *world;
static char dir[256];

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    test_chdir_to_repo_root("tests/fixtures/checkpoint_v1/config.cfg");
    ps_error err = {{0}};
    cr_assert_eq(comm_world(&world, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    snprintf(dir, sizeof dir, "/tmp/presight_ckpt2_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    comm_free(world);
    comm_shutdown();
}

TestSuite(checkpoint_v2, .init = setup, .fini = teardown, .timeout = 60);

static const char *V1 = "tests/fixtures/checkpoint_v1/checkpoints/step_00000002.h5";

/* The sharded state of the tiny config with overrides (layers, strategy, ...). */
typedef struct state {
    run_config cfg;
    model_layout L;
    sharded_state s;
} state;

static void make_state(state *st, int frozen_unit, int n, char **over) {
    ps_error err = {{0}};
    cr_assert_eq(config_load(&st->cfg, "config/tiny.cfg", n, over, &err), 0, "%s", err.msg);
    cr_assert_eq(model_layout_init(&st->L, &st->cfg.model, &err), 0, "%s", err.msg);
    if (frozen_unit >= 0) st->L.units[frozen_unit].trainable = 0;
    cr_assert_eq(sharded_init(&st->s, &st->cfg, &st->L, backend_cpu(), world, &err), 0, "%s", err.msg);
    /* Moments that are not zero, so that a mix-up shows. */
    for (int u = 0; u < st->L.n_units; u++)
        for (size_t i = 0; st->s.adam_m[u] && i < st->s.slices.shard_len[u]; i++) {
            st->s.adam_m[u][i] = (real)(0.001 * (double)(i % 97) + u);
            st->s.adam_v[u][i] = (real)(0.002 * (double)(i % 89) + u);
        }
}

static void free_state(state *st) {
    sharded_free(&st->s);
    model_layout_free(&st->L);
}

static void write_ckpt(state *st, int64_t step) {
    ps_error err = {{0}};
    checkpoint_state cs;
    memset(&cs, 0, sizeof cs);
    cs.step = step;
    snprintf(cs.strategy, sizeof cs.strategy, "ddp");
    shard_view v = sharded_view(&st->s);
    cr_assert_eq(checkpoint_write(dir, world, &st->L, &v, &cs, "config", &err), 0, "%s", err.msg);
}

static void path_of(char *out, size_t size, int64_t step) { snprintf(out, size, "%s/step_%08lld.h5", dir, (long long)step); }

static int has_link(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    int yes = H5Lexists(f, name, H5P_DEFAULT) > 0;
    H5Fclose(f);
    return yes;
}

static int format_version(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t a = H5Aopen_by_name(f, "state", "format_version", H5P_DEFAULT, H5P_DEFAULT);
    int v = -1;
    H5Aread(a, H5T_NATIVE_INT, &v);
    H5Aclose(a);
    H5Fclose(f);
    return v;
}

Test(checkpoint_v2, moments_of_trainable_units_only) {
    state a;
    make_state(&a, 1, 0, NULL); /* block 0 frozen */
    write_ckpt(&a, 3);
    char path[512];
    path_of(path, sizeof path, 3);
    cr_expect_eq(format_version(path), 2);
    cr_expect(has_link(path, "/model/layers.0.attention.wq.weight"));
    cr_expect(!has_link(path, "/optim/m/layers.0.attention.wq.weight"), "a frozen tensor's moments were stored");
    cr_expect(!has_link(path, "/optim/v/layers.0.feed_forward.w2.weight"));
    cr_expect(has_link(path, "/optim/m/layers.1.attention.wq.weight"));
    /* It reads back (resume) with the same units frozen, bit for bit. */
    state b;
    make_state(&b, 1, 1, (char *[]){"train.seed=7"});
    shard_view v = sharded_view(&b.s);
    checkpoint_state cs;
    ps_error err = {{0}};
    cr_assert_eq(checkpoint_read(path, world, &b.L, &v, &cs, NULL, &err), 0, "%s", err.msg);
    for (int u = 0; u < a.L.n_units; u++) {
        size_t n = a.s.slices.shard_len[u] * sizeof(real);
        cr_expect_eq(memcmp(a.s.owned[u], b.s.owned[u], n), 0, "unit %d's weights differ", u);
        if (a.s.adam_m[u]) cr_expect_eq(memcmp(a.s.adam_m[u], b.s.adam_m[u], n), 0, "unit %d's m differs", u);
    }
    free_state(&b);
    /* With every unit trainable the frozen moments are missing: not this run's file. */
    make_state(&b, -1, 0, NULL);
    v = sharded_view(&b.s);
    cr_expect_neq(checkpoint_read(path, world, &b.L, &v, &cs, NULL, &err), 0);
    cr_expect(strstr(err.msg, "/optim/m/layers.0") != NULL, "%s", err.msg);
    free_state(&b);
    free_state(&a);
}

Test(checkpoint_v2, a_frozen_run_refuses_moments_it_does_not_keep) {
    state a, b;
    make_state(&a, -1, 0, NULL);
    write_ckpt(&a, 4);
    make_state(&b, 1, 0, NULL);
    char path[512];
    path_of(path, sizeof path, 4);
    shard_view v = sharded_view(&b.s);
    checkpoint_state cs;
    ps_error err = {{0}};
    cr_expect_neq(checkpoint_read(path, world, &b.L, &v, &cs, NULL, &err), 0);
    cr_expect(strstr(err.msg, "freezes") != NULL, "%s", err.msg);
    free_state(&b);
    free_state(&a);
}

/* A 1-layer run's weights into a 2-layer model: layers.1.* are new (they keep
 * their initial values), everything else loaded and the checksum verified. */
Test(checkpoint_v2, weights_only_with_new_tensors) {
    state a, b;
    make_state(&a, -1, 1, (char *[]){"model.layers=1"});
    write_ckpt(&a, 5);
    make_state(&b, -1, 1, (char *[]){"train.seed=9"});
    char path[512];
    path_of(path, sizeof path, 5);
    real *fresh = malloc(b.L.units[2].size * sizeof *fresh);
    memcpy(fresh, b.s.owned[2], b.L.units[2].size * sizeof *fresh);
    shard_view v = sharded_view(&b.s);
    checkpoint_weights_report rep;
    ps_error err = {{0}};
    cr_assert_eq(checkpoint_load_weights(path, world, &b.L, &v, NULL, &rep, &err), 0, "%s", err.msg);
    char text[2048];
    checkpoint_weights_describe(&rep, &b.L, text, sizeof text);
    cr_log_info("%s", text);
    cr_expect_eq(rep.loaded, a.L.n_tensors, "%s", text);
    cr_expect_eq(rep.fresh, b.L.n_tensors - a.L.n_tensors, "%s", text);
    cr_expect_eq(rep.unused, 0);
    cr_expect(rep.verified, "%s", text);
    cr_expect(strstr(text, "layers.1.attention.wq.weight") != NULL, "%s", text);
    int t = model_layout_find(&b.L, "layers.0.attention.wq.weight");
    cr_expect_eq(rep.status[t], CKPT_TENSOR_LOADED);
    cr_expect_eq(rep.status[model_layout_find(&b.L, "layers.1.attention.wq.weight")], CKPT_TENSOR_NEW);
    cr_expect_eq(memcmp(b.s.owned[0], a.s.owned[0], a.L.units[0].size * sizeof(real)), 0, "embedding not loaded");
    cr_expect_eq(memcmp(b.s.owned[1], a.s.owned[1], a.L.units[1].size * sizeof(real)), 0, "block 0 not loaded");
    cr_expect_eq(memcmp(b.s.owned[2], fresh, b.L.units[2].size * sizeof(real)), 0, "a new block was overwritten");
    checkpoint_weights_report_free(&rep);
    /* A named subset: layers.0 only; the rest is skipped and not verified. */
    cr_assert_eq(checkpoint_load_weights(path, world, &b.L, &v, (const char *[]){"layers.0.", NULL}, &rep, &err), 0,
                 "%s", err.msg);
    cr_expect_eq(rep.loaded, 9);
    cr_expect_gt(rep.unused, 0);
    cr_expect(!rep.verified);
    checkpoint_weights_report_free(&rep);
    free(fresh);
    free_state(&b);
    free_state(&a);
}

/* Negative control of the verification: one changed weight in the file. */
Test(checkpoint_v2, a_corrupt_weight_is_caught) {
    state a;
    make_state(&a, -1, 0, NULL);
    write_ckpt(&a, 6);
    char path[512];
    path_of(path, sizeof path, 6);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t set = H5Dopen2(f, "/model/norm.weight", H5P_DEFAULT);
    float x[64];
    cr_assert_eq(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    x[3] += 1;
    cr_assert_eq(H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    H5Dclose(set);
    H5Fclose(f);
    model_params p;
    ps_error err = {{0}};
    cr_assert_eq(model_params_alloc(&p, &a.L, &err), 0);
    checkpoint_weights_report rep;
    cr_expect_neq(checkpoint_read_model(path, &a.L, &p, NULL, &rep, &err), 0, "a changed weight went unnoticed");
    cr_expect(strstr(err.msg, "checksum") != NULL, "%s", err.msg);
    checkpoint_weights_report_free(&rep);
    model_params_free(&p);
    free_state(&a);
}

/* Format 1 (a file of the tree before format 2): the full reader and the
 * serial weights reader agree on every weight. */
Test(checkpoint_v2, format_1_still_loads) {
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load(&cfg, "tests/fixtures/checkpoint_v1/config.cfg", 0, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(format_version(V1), 1);
    model_layout L;
    cr_assert_eq(model_layout_init(&L, &cfg.model, &err), 0, "%s", err.msg);
    sharded_state s;
    cr_assert_eq(sharded_init(&s, &cfg, &L, backend_cpu(), world, &err), 0, "%s", err.msg);
    shard_view v = sharded_view(&s);
    checkpoint_state cs;
    cr_assert_eq(checkpoint_read(V1, world, &L, &v, &cs, NULL, &err), 0, "%s", err.msg);
    cr_expect_eq(cs.step, 2);
    model_params p;
    cr_assert_eq(model_params_alloc(&p, &L, &err), 0);
    checkpoint_weights_report rep;
    cr_assert_eq(checkpoint_read_model(V1, &L, &p, NULL, &rep, &err), 0, "%s", err.msg);
    cr_expect_eq(rep.format_version, 1);
    cr_expect_eq(rep.loaded, L.n_tensors);
    cr_expect(!rep.verified);
    for (int u = 0; u < L.n_units; u++)
        cr_expect_eq(memcmp(p.unit[u], s.owned[u], L.units[u].size * sizeof(real)), 0, "unit %d differs", u);
    checkpoint_weights_report_free(&rep);
    model_params_free(&p);
    sharded_free(&s);
    model_layout_free(&L);
}
