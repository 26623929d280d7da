/* test_checkpoint.c - stages/checkpoint.c on one rank (an MPI singleton).
 *
 * Criterion runs each test in its own process, so each initialises MPI once
 * (comm_world) and finalises it in the suite's fini. Files go to a fresh
 * folder under $TMPDIR (or /tmp), removed afterwards. The multi-rank cases
 * (N ranks write, M read, replicas) are tests/t_checkpoint_mpi.sh. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "comm.h"
#include "model.h"
#include "rng.h"
#include "shard.h"

static comm *world;
static char dir[256];

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void) {
    /* mpirun is not involved, but Open MPI's singleton start checks these too. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    ps_error err = {{0}};
    cr_assert_eq(comm_world(&world, NULL, NULL, &err), 0, "comm_world: %s", err.msg);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/presight_ckpt_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    if (dir[0]) nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    comm_free(world);
    comm_shutdown();
}

TestSuite(checkpoint, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------------ fixtures */

/* A model with its params, m and v, and a one-rank shard view of them. */
typedef struct fixture {
    model_layout L;
    model_params p, m, v;
    shard_layout s;
    shard_view view;
} fixture;

static model_config small_config(int vocab) {
    model_config c;
    memset(&c, 0, sizeof c);
    c.vocab = vocab, c.dim = 16, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.ffn_dim = 24, c.context = 16;
    c.rope_theta = 500000, c.norm_eps = 1e-5, c.init_std = 0.02;
    return c;
}

/* Fills every element from (seed, group, unit, index): distinct per checkpoint. */
static void fill(fixture *f, uint64_t seed) {
    model_params *ps[3] = {&f->p, &f->m, &f->v};
    for (int g = 0; g < 3; g++)
        for (int u = 0; u < f->L.n_units; u++)
            for (size_t i = 0; i < f->L.units[u].size; i++)
                ps[g]->unit[u][i] = (real)((double)(rng_u64(seed * 7 + (uint64_t)g, (uint64_t)u << 32 | i) >> 40) /
                                           16777216.0 - 0.5 + g);
}

static void fixture_init_cfg(fixture *f, model_config c, uint64_t seed) {
    memset(f, 0, sizeof *f);
    ps_error err = {{0}};
    cr_assert_eq(model_layout_init(&f->L, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_params_alloc(&f->p, &f->L, &err), 0);
    cr_assert_eq(model_params_alloc(&f->m, &f->L, &err), 0);
    cr_assert_eq(model_params_alloc(&f->v, &f->L, &err), 0);
    int n = f->L.n_units;
    f->s.n_units = n;
    f->s.rank = 0;
    f->s.world = 1;
    f->s.unit_size = calloc((size_t)n, sizeof(size_t));
    f->s.shard_len = calloc((size_t)n, sizeof(size_t));
    for (int u = 0; u < n; u++) f->s.unit_size[u] = f->s.shard_len[u] = f->L.units[u].size;
    f->view.layout = &f->s;
    f->view.params = f->p.unit;
    f->view.m = f->m.unit;
    f->view.v = f->v.unit;
    f->view.writer = 1;
    fill(f, seed);
}

static void fixture_init(fixture *f, int vocab, uint64_t seed) { fixture_init_cfg(f, small_config(vocab), seed); }

static void fixture_free(fixture *f) {
    model_params_free(&f->p);
    model_params_free(&f->m);
    model_params_free(&f->v);
    free(f->s.unit_size);
    free(f->s.shard_len);
    model_layout_free(&f->L);
}

static checkpoint_state state_for(long long step) {
    checkpoint_state st;
    memset(&st, 0, sizeof st);
    st.step = step;
    st.total_steps = 5000;
    st.seed = 0x1234567890abcdefULL;
    st.tokens = 1e9 + 0.5 * (double)step;
    st.elapsed_s = 3600.25;
    for (int i = 0; i < 4; i++) st.data_state[i] = ~(uint64_t)0 - (uint64_t)i * 99 - (uint64_t)step;
    st.world_size = 8;
    snprintf(st.strategy, sizeof st.strategy, "fsdp_hybrid");
    return st;
}

static const char *CONFIG = "model = {\n  vocab = 37;\n  dim = 16;\n};\ntrain = { lr = 3e-4; };\n";

static void write_step(fixture *f, long long step) {
    ps_error err = {{0}};
    checkpoint_state st = state_for(step);
    cr_assert_eq(checkpoint_write(dir, world, &f->L, &f->view, &st, CONFIG, &err), 0, "write: %s", err.msg);
}

static void path_of(char *out, size_t size, long long step) { snprintf(out, size, "%s/step_%08lld.h5", dir, step); }

/* Bitwise equality of every element of two fixtures. */
static void expect_same(const fixture *a, const fixture *b) {
    const model_params *pa[3] = {&a->p, &a->m, &a->v}, *pb[3] = {&b->p, &b->m, &b->v};
    for (int g = 0; g < 3; g++)
        for (int u = 0; u < a->L.n_units; u++)
            cr_assert_eq(memcmp(pa[g]->unit[u], pb[g]->unit[u], a->L.units[u].size * sizeof(real)), 0,
                         "group %d unit %d differs after the round trip", g, u);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* ------------------------------------------------------------------ tests */

Test(checkpoint, round_trip_is_bitwise) {
    fixture a, b;
    fixture_init(&a, 37, 1);
    fixture_init(&b, 37, 2); /* different contents, overwritten by the read */
    write_step(&a, 10);
    char path[512];
    path_of(path, sizeof path, 10);
    ps_error err = {{0}};
    checkpoint_state st;
    cr_assert_eq(checkpoint_read(path, world, &b.L, &b.view, &st, NULL, &err), 0, "read: %s", err.msg);
    expect_same(&a, &b);
    fixture_free(&a);
    fixture_free(&b);
}

Test(checkpoint, state_and_config_round_trip) {
    fixture a;
    fixture_init(&a, 37, 1);
    write_step(&a, 123456789);
    char path[512];
    path_of(path, sizeof path, 123456789);
    ps_error err = {{0}};
    checkpoint_state st, want = state_for(123456789);
    memset(&st, 0x55, sizeof st);
    char *config = NULL;
    cr_assert_eq(checkpoint_read(path, world, &a.L, &a.view, &st, &config, &err), 0, "read: %s", err.msg);
    cr_expect_eq(st.step, want.step);
    cr_expect_eq(st.total_steps, want.total_steps);
    cr_expect_eq(st.seed, want.seed);
    cr_expect_eq(st.tokens, want.tokens);
    cr_expect_eq(st.elapsed_s, want.elapsed_s);
    for (int i = 0; i < 4; i++) cr_expect_eq(st.data_state[i], want.data_state[i], "data_state[%d]", i);
    cr_expect_eq(st.world_size, 8);
    cr_expect_str_eq(st.strategy, "fsdp_hybrid");
    cr_assert_not_null(config);
    cr_expect_str_eq(config, CONFIG);
    free(config);

    /* Without a config text, none comes back; world_size 0 means "the writing world". */
    checkpoint_state st2 = state_for(5);
    st2.world_size = 0;
    cr_assert_eq(checkpoint_write(dir, world, &a.L, &a.view, &st2, NULL, &err), 0, "%s", err.msg);
    path_of(path, sizeof path, 5);
    config = (char *)"stale";
    cr_assert_eq(checkpoint_read(path, world, &a.L, &a.view, &st, &config, &err), 0, "read: %s", err.msg);
    cr_expect_null(config);
    cr_expect_eq(st.world_size, 1);
    fixture_free(&a);
}

Test(checkpoint, no_tmp_left_and_failed_write_keeps_the_old_file) {
    fixture a;
    fixture_init(&a, 37, 1);
    write_step(&a, 7);
    char path[512], tmp[600];
    path_of(path, sizeof path, 7);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_expect_eq(access(tmp, F_OK), -1, "%s remains after a successful write", tmp);
    long before = file_size(path);
    cr_assert_gt(before, 0);

    /* A write of the same step that cannot complete (its .tmp name is taken by
     * a folder) fails and leaves the complete checkpoint as it was. */
    cr_assert_eq(mkdir(tmp, 0755), 0);
    fill(&a, 99);
    ps_error err = {{0}};
    checkpoint_state st = state_for(7);
    cr_expect_eq(checkpoint_write(dir, world, &a.L, &a.view, &st, CONFIG, &err), -1);
    cr_expect(strstr(err.msg, tmp) != NULL, "error does not name %s: %s", tmp, err.msg);
    rmdir(tmp);
    fixture b;
    fixture_init(&b, 37, 3);
    cr_assert_eq(checkpoint_read(path, world, &b.L, &b.view, &st, NULL, &err), 0, "read: %s", err.msg);
    fixture a1;
    fixture_init(&a1, 37, 1);
    expect_same(&a1, &b);
    fixture_free(&a);
    fixture_free(&a1);
    fixture_free(&b);
}

Test(checkpoint, empty_or_missing_folder_has_none) {
    fixture a;
    fixture_init(&a, 37, 1);
    ps_error err = {{0}};
    char where[600], loaded[512] = "x";
    cr_expect_eq(checkpoint_load_latest(dir, world, &a.L, &a.view, NULL, NULL, loaded, sizeof loaded, &err), 0,
                 "%s", err.msg);
    cr_expect_str_eq(loaded, "");
    snprintf(where, sizeof where, "%s/never_created", dir);
    cr_expect_eq(checkpoint_load_latest(where, world, &a.L, &a.view, NULL, NULL, NULL, 0, &err), 0, "%s", err.msg);
    /* A stale .tmp alone is not a checkpoint. */
    snprintf(where, sizeof where, "%s/step_00000009.h5.tmp", dir);
    FILE *fp = fopen(where, "w");
    fputs("partial", fp);
    fclose(fp);
    cr_expect_eq(checkpoint_load_latest(dir, world, &a.L, &a.view, NULL, NULL, NULL, 0, &err), 0, "%s", err.msg);
    fixture_free(&a);
}

/* Writes steps 1 (seed 1) and 2 (seed 2), damages step 2 with `damage`, and
 * expects load_latest to report it and load step 1. */
static void expect_fallback(void (*damage)(const char *path), const char *reason) {
    fixture a1, a2, b;
    fixture_init(&a1, 37, 1);
    fixture_init(&a2, 37, 2);
    fixture_init(&b, 37, 3);
    write_step(&a1, 1);
    write_step(&a2, 2);
    char p2[512], loaded[512];
    path_of(p2, sizeof p2, 2);
    damage(p2);
    ps_error err = {{0}};
    checkpoint_state st;
    cr_expect_eq(checkpoint_read(p2, world, &b.L, &b.view, &st, NULL, &err), -1, "the damaged file was read");
    cr_expect(strstr(err.msg, reason) != NULL, "error lacks \"%s\": %s", reason, err.msg);
    cr_expect(strstr(err.msg, p2) != NULL, "error does not name the file: %s", err.msg);
    cr_assert_eq(checkpoint_load_latest(dir, world, &b.L, &b.view, &st, NULL, loaded, sizeof loaded, &err), 1,
                 "load_latest: %s", err.msg);
    cr_expect(strstr(loaded, "step_00000001.h5") != NULL, "loaded %s", loaded);
    cr_expect_eq(st.step, 1);
    expect_same(&a1, &b);
    fixture_free(&a1);
    fixture_free(&a2);
    fixture_free(&b);
}

static void truncate_half(const char *path) {
    long size = file_size(path);
    cr_assert_gt(size, 0);
    cr_assert_eq(truncate(path, size / 2), 0);
}

Test(checkpoint, truncated_file_falls_back_to_the_previous) { expect_fallback(truncate_half, "cannot open as HDF5"); }

/* The fixture's tok_embeddings.weight of /model starts with this pattern
 * (written by flip_pattern_write), which locates raw data in the file. */
static const uint32_t PATTERN[8] = {0x3f123456, 0x3f23456a, 0x3f3456ab, 0x3f456abc,
                                    0x3f56abcd, 0x3f6abcde, 0x3f7bcdef, 0x3f0cdef1};

static void flip_a_data_byte(const char *path) {
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    long size = file_size(path);
    unsigned char *buf = malloc((size_t)size);
    cr_assert_eq(fread(buf, 1, (size_t)size, fp), (size_t)size);
    unsigned char *hit = memmem(buf, (size_t)size, PATTERN, sizeof PATTERN);
    cr_assert_not_null(hit, "the known pattern is not in %s", path);
    cr_assert_null(memmem(hit + 1, (size_t)(buf + size - hit - 1), PATTERN, sizeof PATTERN), "pattern found twice");
    long at = (long)(hit - buf) + 4 * 3 + 1; /* a mantissa byte of element 3 */
    fseek(fp, at, SEEK_SET);
    unsigned char byte = (unsigned char)(buf[at] ^ 0x10);
    cr_assert_eq(fwrite(&byte, 1, 1, fp), 1);
    fclose(fp);
    free(buf);
}

Test(checkpoint, flipped_data_byte_fails_the_checksum) {
    /* Step 2 carries the pattern; the generic helper writes fills, so do it by hand here. */
    fixture a1, a2, b;
    fixture_init(&a1, 37, 1);
    fixture_init(&a2, 37, 2);
    fixture_init(&b, 37, 3);
    int emb = model_layout_find(&a2.L, "tok_embeddings.weight");
    cr_assert_geq(emb, 0);
    memcpy(model_tensor_data(&a2.p, &a2.L, emb), PATTERN, sizeof PATTERN);
    write_step(&a1, 1);
    write_step(&a2, 2);
    char p2[512], loaded[512];
    path_of(p2, sizeof p2, 2);

    ps_error err = {{0}};
    checkpoint_state st;
    cr_assert_eq(checkpoint_read(p2, world, &b.L, &b.view, &st, NULL, &err), 0, "intact: %s", err.msg);
    flip_a_data_byte(p2);
    cr_expect_eq(checkpoint_read(p2, world, &b.L, &b.view, &st, NULL, &err), -1, "the corrupt file was read");
    cr_expect(strstr(err.msg, "checksum mismatch") && strstr(err.msg, "corrupt") && strstr(err.msg, p2),
              "unexpected message: %s", err.msg);
    cr_assert_eq(checkpoint_load_latest(dir, world, &b.L, &b.view, &st, NULL, loaded, sizeof loaded, &err), 1,
                 "load_latest: %s", err.msg);
    cr_expect(strstr(loaded, "step_00000001.h5") != NULL, "loaded %s", loaded);
    expect_same(&a1, &b);
    fixture_free(&a1);
    fixture_free(&a2);
    fixture_free(&b);
}

static void delete_a_dataset(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    cr_assert_geq(H5Ldelete(f, "/optim/v/norm.weight", H5P_DEFAULT), 0);
    H5Fclose(f);
}

Test(checkpoint, missing_dataset_falls_back_to_the_previous) {
    expect_fallback(delete_a_dataset, "/optim/v/norm.weight is missing");
}

static void garbage(const char *path) {
    FILE *fp = fopen(path, "wb");
    fputs("this is not an HDF5 file\n", fp);
    fclose(fp);
}

Test(checkpoint, non_hdf5_file_falls_back_to_the_previous) { expect_fallback(garbage, "cannot open as HDF5"); }

Test(checkpoint, every_checkpoint_unusable_is_an_error) {
    fixture a;
    fixture_init(&a, 37, 1);
    write_step(&a, 4);
    char p[512];
    path_of(p, sizeof p, 4);
    truncate_half(p);
    ps_error err = {{0}};
    cr_expect_eq(checkpoint_load_latest(dir, world, &a.L, &a.view, NULL, NULL, NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "none of the 1 checkpoints is usable"), "unexpected message: %s", err.msg);
    fixture_free(&a);
}

Test(checkpoint, shape_mismatch_is_an_error_not_a_fallback) {
    fixture other, mine, b;
    fixture_init(&mine, 41, 1);  /* vocab 41: the model being resumed */
    fixture_init(&other, 37, 2); /* vocab 37: another model */
    fixture_init(&b, 41, 3);
    write_step(&mine, 1);
    write_step(&other, 2);
    char p2[512];
    path_of(p2, sizeof p2, 2);
    ps_error err = {{0}};
    checkpoint_state st;
    cr_expect_eq(checkpoint_read(p2, world, &b.L, &b.view, &st, NULL, &err), -1);
    cr_expect(strstr(err.msg, p2) && strstr(err.msg, "/model/tok_embeddings.weight") && strstr(err.msg, "[37, 16]") &&
                  strstr(err.msg, "[41, 16]"),
              "message should name the file, tensor and both shapes: %s", err.msg);
    /* Step 1 would load, but falling back would silently resume from the wrong run. */
    memset(&err, 0, sizeof err);
    cr_expect_eq(checkpoint_load_latest(dir, world, &b.L, &b.view, &st, NULL, NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "tok_embeddings.weight") && strstr(err.msg, "[37, 16]") && strstr(err.msg, "[41, 16]"),
              "unexpected message: %s", err.msg);

    /* A tied-head model against an untied file of the same shapes otherwise:
     * the file holds a tensor the model lacks, which is another model too. */
    fixture tied;
    model_config c = small_config(37);
    c.tied_head = 1;
    fixture_init_cfg(&tied, c, 4);
    cr_expect_eq(checkpoint_read(p2, world, &tied.L, &tied.view, &st, NULL, &err), -1);
    cr_expect(strstr(err.msg, "/model/output.weight") && strstr(err.msg, "another model"), "unexpected message: %s",
              err.msg);
    fixture_free(&tied);
    fixture_free(&mine);
    fixture_free(&other);
    fixture_free(&b);
}

Test(checkpoint, prune_keeps_the_newest) {
    fixture a;
    fixture_init(&a, 37, 1);
    long long steps[] = {3, 100, 20, 1000, 7};
    for (int i = 0; i < 5; i++) write_step(&a, steps[i]);
    char p[600];
    snprintf(p, sizeof p, "%s/step_00000050.h5.tmp", dir); /* a stale partial write */
    FILE *fp = fopen(p, "w");
    fclose(fp);
    snprintf(p, sizeof p, "%s/notes.txt", dir); /* not ours: untouched */
    fp = fopen(p, "w");
    fclose(fp);
    ps_error err = {{0}};
    cr_assert_eq(checkpoint_prune(dir, 2, &err), 0, "%s", err.msg);
    long long kept[] = {100, 1000}, gone[] = {3, 7, 20};
    for (int i = 0; i < 2; i++) {
        path_of(p, sizeof p, kept[i]);
        cr_expect_eq(access(p, F_OK), 0, "%s was deleted", p);
    }
    for (int i = 0; i < 3; i++) {
        path_of(p, sizeof p, gone[i]);
        cr_expect_eq(access(p, F_OK), -1, "%s was kept", p);
    }
    snprintf(p, sizeof p, "%s/step_00000050.h5.tmp", dir);
    cr_expect_eq(access(p, F_OK), -1, "the stale .tmp was kept");
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    cr_expect_eq(access(p, F_OK), 0, "an unrelated file was deleted");
    cr_expect_eq(checkpoint_prune(dir, 0, &err), -1, "keep 0 should be refused");
    char loaded[512];
    cr_expect_eq(checkpoint_load_latest(dir, world, &a.L, &a.view, NULL, NULL, loaded, sizeof loaded, &err), 1);
    cr_expect(strstr(loaded, "step_00001000.h5") != NULL, "loaded %s", loaded);
    fixture_free(&a);
}

Test(checkpoint, a_view_without_writers_is_refused) {
    /* On one rank, writer = 0 leaves every element unwritten: refused before any file exists. */
    fixture a;
    fixture_init(&a, 37, 1);
    a.view.writer = 0;
    ps_error err = {{0}};
    checkpoint_state st = state_for(3);
    cr_expect_eq(checkpoint_write(dir, world, &a.L, &a.view, &st, CONFIG, &err), -1);
    cr_expect(strstr(err.msg, "writer") != NULL, "unexpected message: %s", err.msg);
    char p[512];
    path_of(p, sizeof p, 3);
    cr_expect_eq(access(p, F_OK), -1, "%s was written", p);
    fixture_free(&a);
}
