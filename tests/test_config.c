/* test_config.c - the config schema, loader, overrides, validation and writer.
 *
 * Paths are relative to the repository root (config/..., tests/fixtures/
 * config/...); the suite changes there first when run from elsewhere. Each
 * malformed fixture is asserted to give its own message, by substring. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define FIX "tests/fixtures/config/"

/* Finds the repository root: the working directory, the prefix of __FILE__
 * when it was compiled with an absolute path, or a folder above the test
 * binary (build/tests/test_config). */
static int try_root(const char *dir) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/config/tiny.cfg", dir);
    return access(probe, R_OK) == 0 && chdir(dir) == 0;
}

static void to_repo_root(void) {
    if (access("config/tiny.cfg", R_OK) == 0) return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *t = strstr(dir, "tests/test_config.c");
    if (t && t != dir) {
        *t = 0;
        if (try_root(dir)) return;
    }
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) return;
    dir[n] = 0;
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) return;
        *slash = 0;
        if (try_root(dir)) return;
    }
}

TestSuite(config, .init = to_repo_root);

/* Loads path with overrides and expects failure whose message holds every
 * one of the given substrings. */
static void expect_fail(const char *path, int n_ov, char **ov, const char *const *needles) {
    run_config cfg;
    ps_error err = {{0}};
    int rc = config_load(&cfg, path, n_ov, ov, &err);
    cr_assert_eq(rc, -1, "%s loaded, but should have failed", path);
    for (const char *const *n = needles; *n; n++)
        cr_expect(strstr(err.msg, *n) != NULL, "message for %s lacks \"%s\":\n  %s", path, *n, err.msg);
}

#define EXPECT_FAIL(path, ...)                                  \
    do {                                                        \
        static const char *const needles_[] = {__VA_ARGS__, NULL}; \
        expect_fail(path, 0, NULL, needles_);                   \
    } while (0)

static void load_ok(run_config *cfg, const char *path, int n_ov, char **ov) {
    ps_error err = {{0}};
    int rc = config_load(cfg, path, n_ov, ov, &err);
    cr_assert_eq(rc, 0, "%s failed to load: %s", path, err.msg);
}

static void override_fails(const char *assignment, const char *const *needles) {
    run_config cfg;
    load_ok(&cfg, "config/tiny.cfg", 0, NULL);
    run_config before = cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_override(&cfg, assignment, &err), -1, "override '%s' was accepted", assignment);
    for (const char *const *n = needles; *n; n++)
        cr_expect(strstr(err.msg, *n) != NULL, "message for '%s' lacks \"%s\":\n  %s", assignment, *n, err.msg);
    cr_expect(memcmp(&before, &cfg, sizeof cfg) == 0, "a failed override changed the config");
}

#define OVERRIDE_FAILS(text, ...)                               \
    do {                                                        \
        static const char *const needles_[] = {__VA_ARGS__, NULL}; \
        override_fails(text, needles_);                         \
    } while (0)

/* Field-by-field equality of two configs (source aside). */
static void assert_same(const run_config *a, const run_config *b) {
#define SAME_I(f) cr_expect_eq(a->f, b->f, #f ": %lld vs %lld", (long long)a->f, (long long)b->f)
#define SAME_F(f) cr_expect(a->f == b->f, #f ": %.17g vs %.17g", a->f, b->f)
#define SAME_S(f) cr_expect_str_eq(a->f, b->f, #f ": '%s' vs '%s'", a->f, b->f)
    SAME_I(model.vocab);
    SAME_I(model.dim);
    SAME_I(model.layers);
    SAME_I(model.heads);
    SAME_I(model.kv_heads);
    SAME_I(model.ffn_dim);
    SAME_I(model.context);
    SAME_F(model.rope_theta);
    SAME_F(model.norm_eps);
    SAME_I(model.tied_head);
    SAME_F(model.init_std);
    SAME_I(train.micro_batch);
    SAME_I(train.seq_len);
    SAME_I(train.grad_accum);
    SAME_I(train.steps);
    SAME_I(train.tokens);
    SAME_F(train.lr);
    SAME_F(train.min_lr);
    SAME_I(train.warmup_steps);
    SAME_F(train.beta1);
    SAME_F(train.beta2);
    SAME_F(train.adam_eps);
    SAME_F(train.weight_decay);
    SAME_F(train.grad_clip);
    SAME_I(train.seed);
    SAME_I(train.log_every);
    SAME_S(data.kind);
    SAME_S(data.path);
    SAME_S(run_dir);
    SAME_S(backend);
    SAME_I(threads);
    /* The whole model and train structs too (config_defaults zeroes padding). */
    cr_expect(memcmp(&a->model, &b->model, sizeof a->model) == 0, "model structs differ");
    cr_expect(memcmp(&a->train, &b->train, sizeof a->train) == 0, "train structs differ");
    cr_expect(memcmp(&a->data, &b->data, sizeof a->data) == 0, "data structs differ");
#undef SAME_I
#undef SAME_F
#undef SAME_S
}

static char tmpdir[64];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/presight_test_config_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    char p[512];
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tmpdir);
}

/* Writes cfg to a file, checks nothing but that file is left, loads it back
 * and compares every field. */
static void round_trip(const run_config *cfg) {
    make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/config.cfg", tmpdir);
    ps_error err = {{0}};
    cr_assert_eq(run_config_write_file(cfg, path, &err), 0, "write failed: %s", err.msg);
    cr_expect_eq(dir_entries(tmpdir), 1, "the write left more than config.cfg behind");
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_expect_neq(access(tmp, F_OK), 0, "%s was left behind", tmp);
    run_config back;
    int rc = config_load(&back, path, 0, NULL, &err);
    if (rc) {
        FILE *f = fopen(path, "r");
        char text[8192] = {0};
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = 0;
            fclose(f);
        }
        remove_tmpdir();
        cr_assert_fail("reloading the written config failed: %s\n%s", err.msg, text);
    }
    cr_expect_str_eq(back.source, path);
    assert_same(cfg, &back);
    remove_tmpdir();
}

/* ------------------------------------------------------------------ presets */

Test(config, tiny_preset_loads) {
    run_config c;
    load_ok(&c, "config/tiny.cfg", 0, NULL);
    cr_expect_eq(c.model.vocab, 512);
    cr_expect_eq(c.model.dim, 64);
    cr_expect_eq(c.model.layers, 2);
    cr_expect_eq(c.model.heads, 4);
    cr_expect_eq(c.model.kv_heads, 2);
    cr_expect_eq(c.model.ffn_dim, 128);
    cr_expect_eq(c.model.context, 256);
    cr_expect_eq(c.model.tied_head, 0);
    cr_expect_eq(c.train.micro_batch, 4);
    cr_expect_eq(c.train.seq_len, 32);
    cr_expect_eq(c.train.steps, 20);
    cr_expect_eq(c.train.warmup_steps, 5);
    cr_expect(c.train.lr == 1e-3);
    cr_expect_eq(c.train.log_every, 5);
    cr_expect_str_eq(c.data.kind, "text");
    cr_expect_str_eq(c.data.path, "tests/fixtures/text/tiny.txt");
    cr_expect_str_eq(c.run_dir, "runs/tiny");
    cr_expect_str_eq(c.backend, "cpu");
    cr_expect_str_eq(c.source, "config/tiny.cfg");
    /* untouched keys keep their defaults */
    cr_expect(c.model.rope_theta == 500000.0);
    cr_expect(c.train.beta2 == 0.95);
    cr_expect(c.train.adam_eps == 1e-8);
    cr_expect_eq(c.train.seed, 42);
}

Test(config, run_presets_load_and_validate) {
    const char *files[] = {"config/tiny.cfg", "config/quickstart.cfg", "config/bench.cfg"};
    for (int i = 0; i < 3; i++) {
        run_config c;
        ps_error err = {{0}};
        load_ok(&c, files[i], 0, NULL);
        cr_expect_eq(config_validate(&c, &err), 0, "%s: %s", files[i], err.msg);
    }
    run_config q, b;
    load_ok(&q, "config/quickstart.cfg", 0, NULL);
    cr_expect_eq(q.train.steps, 200);
    cr_expect_eq(q.train.seq_len, 256);
    cr_expect_str_eq(q.data.kind, "mixture");
    cr_expect_str_eq(q.data.mixture, "mix6");
    cr_expect_str_eq(q.data.path, "data/shards");
    cr_expect_str_eq(q.run_dir, "runs/quickstart");
    load_ok(&b, "config/bench.cfg", 0, NULL);
    cr_expect_eq(b.train.steps, 10);
    cr_expect_str_eq(b.run_dir, "runs/bench");
}

static double param_count(const model_config *m) {
    double V = m->vocab, D = m->dim, H = m->heads, KV = m->kv_heads, F = m->ffn_dim, hd = D / H;
    double per_layer = 2 * D + D * (H + 2 * KV) * hd + H * hd * D + 3 * D * F;
    return V * D * (m->tied_head ? 1 : 2) + D + m->layers * per_layer;
}

Test(config, preset_parameter_counts) {
    run_config c;
    load_ok(&c, "config/tiny.cfg", 0, NULL);
    cr_expect(param_count(&c.model) == 139584.0);
    load_ok(&c, "config/quickstart.cfg", 0, NULL);
    cr_expect(param_count(&c.model) >= 5e6 && param_count(&c.model) <= 20e6, "%g", param_count(&c.model));
    load_ok(&c, "config/bench.cfg", 0, NULL);
    cr_expect(param_count(&c.model) >= 24e6 && param_count(&c.model) <= 26e6, "%g", param_count(&c.model));
}

/* Each study scale: the preset file alone (only a model group) plus the two
 * keys a run must set. */
Test(config, model_presets_load_and_validate) {
    static const struct {
        const char *name;
        int layers, dim, heads, kv_heads, ffn;
        double params;
    } scales[] = {
        {"340m", 24, 1024, 16, 8, 2816, 348701696.0},   {"1b", 16, 2048, 32, 8, 8192, 1104218112.0},
        {"3b", 28, 3072, 24, 8, 8192, 3015355392.0},    {"7b", 32, 4096, 32, 8, 14336, 7241732096.0},
        {"13b", 40, 5120, 40, 40, 13824, 13015864320.0},
    };
    char *ov[] = {"train.steps=100", "data.path=corpus.txt"};
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "config/model/%s.cfg", scales[i].name);
        run_config c;
        ps_error err = {{0}};
        int rc = config_load(&c, path, 2, ov, &err);
        cr_assert_eq(rc, 0, "model/%s.cfg: %s", scales[i].name, err.msg);
        cr_expect_eq(c.model.layers, scales[i].layers, "%s", scales[i].name);
        cr_expect_eq(c.model.dim, scales[i].dim, "%s", scales[i].name);
        cr_expect_eq(c.model.heads, scales[i].heads, "%s", scales[i].name);
        cr_expect_eq(c.model.kv_heads, scales[i].kv_heads, "%s", scales[i].name);
        cr_expect_eq(c.model.ffn_dim, scales[i].ffn, "%s", scales[i].name);
        cr_expect_eq(c.model.vocab, 32000);
        cr_expect_eq(c.model.context, 2048);
        cr_expect_eq(c.model.tied_head, 0);
        cr_expect(param_count(&c.model) == scales[i].params, "%s: %.0f", scales[i].name, param_count(&c.model));
    }
}

Test(config, defaults_are_the_340m_preset) {
    run_config d;
    config_defaults(&d);
    cr_expect_eq(d.model.vocab, 32000);
    cr_expect_eq(d.model.dim, 1024);
    cr_expect_eq(d.model.layers, 24);
    cr_expect_eq(d.model.heads, 16);
    cr_expect_eq(d.model.kv_heads, 8);
    cr_expect_eq(d.model.ffn_dim, 2816);
    cr_expect_eq(d.model.context, 2048);
    cr_expect(d.model.norm_eps == 1e-5);
    cr_expect(d.model.init_std == 0.02);
    cr_expect_eq(d.train.micro_batch, 8);
    cr_expect_eq(d.train.seq_len, 2048);
    cr_expect_eq(d.train.grad_accum, 1);
    cr_expect_eq(d.train.steps, 0);
    cr_expect_eq(d.train.tokens, 0);
    cr_expect(d.train.lr == 3e-4);
    cr_expect(d.train.min_lr == 3e-5);
    cr_expect_eq(d.train.warmup_steps, 1024);
    cr_expect(d.train.beta1 == 0.9);
    cr_expect(d.train.weight_decay == 0.1);
    cr_expect(d.train.grad_clip == 1.0);
    cr_expect_eq(d.train.log_every, 10);
    cr_expect_str_eq(d.data.kind, "text");
    cr_expect_str_eq(d.data.path, "");
    cr_expect_str_eq(d.run_dir, "runs/default");
    cr_expect_str_eq(d.backend, "cpu");
    cr_expect_eq(d.threads, 0);
    /* Defaults are in range; only the two "set me" rules fail. */
    ps_error err = {{0}};
    cr_expect_eq(config_validate(&d, &err), -1);
    cr_expect(strstr(err.msg, "train.steps") != NULL, "%s", err.msg);
    cr_expect_eq(config_override(&d, "train.steps=10", &err), 0, "%s", err.msg);
    cr_expect_eq(config_validate(&d, &err), -1);
    cr_expect(strstr(err.msg, "data.path") != NULL, "%s", err.msg);
    cr_expect_eq(config_override(&d, "data.path=x.txt", &err), 0, "%s", err.msg);
    cr_expect_eq(config_validate(&d, &err), 0, "%s", err.msg);
    /* Defaults, with those two set, match the 340m preset file. */
    run_config p;
    char *ov[] = {"train.steps=10", "data.path=x.txt"};
    int rc = config_load(&p, "config/model/340m.cfg", 2, ov, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    assert_same(&d, &p);
}

Test(config, include_resolves_from_the_including_folder) {
    run_config c;
    load_ok(&c, FIX "include_ok.cfg", 0, NULL);
    cr_expect_eq(c.model.dim, 64);
    cr_expect_eq(c.train.steps, 10);
}

Test(config, int64_with_L_suffix) {
    run_config c;
    load_ok(&c, FIX "int64_with_L.cfg", 0, NULL);
    cr_expect_eq(c.train.tokens, 30000000000LL);
    cr_expect_eq(c.train.steps, 0);
}

Test(config, load_model_skips_budget_and_data_rules) {
    run_config c;
    ps_error err = {{0}};
    cr_expect_eq(config_load_model(&c, FIX "cross_no_budget.cfg", 0, NULL, &err), 0, "%s", err.msg);
    cr_expect_eq(config_load_model(&c, FIX "cross_no_data.cfg", 0, NULL, &err), 0, "%s", err.msg);
    cr_expect_eq(config_load_model(&c, FIX "cross_kv_heads.cfg", 0, NULL, &err), -1);
    cr_expect(strstr(err.msg, "model.kv_heads") != NULL, "%s", err.msg);
    cr_expect_eq(config_load_model(&c, FIX "unknown_key.cfg", 0, NULL, &err), -1);
}

Test(config, failed_load_leaves_config_untouched) {
    run_config c, before;
    load_ok(&c, "config/tiny.cfg", 0, NULL);
    before = c;
    ps_error err = {{0}};
    cr_expect_eq(config_load(&c, FIX "out_of_range.cfg", 0, NULL, &err), -1);
    char *ov[] = {"train.seq_len=100000"};
    cr_expect_eq(config_load(&c, "config/tiny.cfg", 1, ov, &err), -1);
    cr_expect(memcmp(&before, &c, sizeof c) == 0);
}

/* ------------------------------------------------------------------ overrides */

Test(config, overrides_apply) {
    run_config c;
    char *ov[] = {"train.steps=200", "model.layers=4", "train.lr=2e-3", "model.tied_head=true",
                  "data.path=\"other.txt\"", "run.backend=auto", " run.threads = 3 ", "train.seed=7"};
    load_ok(&c, "config/tiny.cfg", 8, ov);
    cr_expect_eq(c.train.steps, 200);
    cr_expect_eq(c.model.layers, 4);
    cr_expect(c.train.lr == 2e-3);
    cr_expect_eq(c.model.tied_head, 1);
    cr_expect_str_eq(c.data.path, "other.txt");
    cr_expect_str_eq(c.backend, "auto");
    cr_expect_eq(c.threads, 3);
    cr_expect_eq(c.train.seed, 7);
    cr_expect_eq(c.model.dim, 64, "keys not overridden keep the file's value");
}

Test(config, overrides_apply_in_order) {
    run_config c;
    char *ov[] = {"train.steps=5", "train.steps=6"};
    load_ok(&c, "config/tiny.cfg", 2, ov);
    cr_expect_eq(c.train.steps, 6);
}

Test(config, int64_override_suffixes) {
    static const struct {
        const char *text;
        long long want;
    } cases[] = {
        {"train.tokens=30B", 30000000000LL}, {"train.tokens=5M", 5000000LL},   {"train.tokens=100k", 100000LL},
        {"train.tokens=1.5B", 1500000000LL}, {"train.tokens=2T", 2000000000000LL}, {"train.tokens=123", 123LL},
        {"train.tokens=9000000000", 9000000000LL}, {"train.tokens=7G", 7000000000LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_config c;
        load_ok(&c, "config/tiny.cfg", 0, NULL);
        ps_error err = {{0}};
        cr_expect_eq(config_override(&c, cases[i].text, &err), 0, "%s: %s", cases[i].text, err.msg);
        cr_expect_eq(c.train.tokens, cases[i].want, "%s gave %lld", cases[i].text, (long long)c.train.tokens);
    }
    /* steps = 0 with a token budget validates */
    run_config c;
    char *ov[] = {"train.steps=0", "train.tokens=30B"};
    load_ok(&c, "config/tiny.cfg", 2, ov);
    cr_expect_eq(c.train.tokens, 30000000000LL);
}

Test(config, override_errors) {
    OVERRIDE_FAILS("model.dimm=4", "override 'model.dimm=4'", "unknown key 'model.dimm'", "did you mean 'model.dim'?");
    OVERRIDE_FAILS("train.warmup=10", "unknown key 'train.warmup'", "did you mean 'train.warmup_steps'?");
    OVERRIDE_FAILS("dim=4", "unknown key 'dim'", "did you mean 'model.dim'?");
    OVERRIDE_FAILS("model.zzzzzzzz=4", "unknown key 'model.zzzzzzzz'", "model keys: vocab, dim");
    OVERRIDE_FAILS("model.dim=abc", "override 'model.dim=abc'", "model.dim must be a decimal integer", "'abc'");
    OVERRIDE_FAILS("model.dim=64.5", "model.dim must be a decimal integer");
    OVERRIDE_FAILS("model.dim=1k", "model.dim must be a decimal integer");
    OVERRIDE_FAILS("model.dim=", "model.dim must be a decimal integer");
    OVERRIDE_FAILS("model.dim=99999999999999999999", "model.dim must be a decimal integer");
    OVERRIDE_FAILS("model.dim=3000000000", "model.dim = 3000000000 is out of range: allowed 1..65536");
    OVERRIDE_FAILS("train.tokens=30X", "train.tokens must be an integer, optionally with a k/M/B/T suffix", "'30X'");
    OVERRIDE_FAILS("train.tokens=1.0000000001k", "train.tokens must be an integer");
    OVERRIDE_FAILS("train.tokens=-5", "train.tokens = -5 is out of range: allowed >= 0");
    OVERRIDE_FAILS("train.lr=fast", "override 'train.lr=fast'", "train.lr must be a finite number");
    OVERRIDE_FAILS("train.lr=nan", "train.lr must be a finite number");
    OVERRIDE_FAILS("train.lr=inf", "train.lr must be a finite number");
    OVERRIDE_FAILS("train.lr=0", "train.lr = 0 is out of range: allowed > 0 and <= 1");
    OVERRIDE_FAILS("train.beta1=1", "train.beta1 = 1 is out of range: allowed >= 0 and < 1");
    OVERRIDE_FAILS("model.tied_head=yes", "model.tied_head must be true or false", "'yes'");
    OVERRIDE_FAILS("model.heads=0", "override 'model.heads=0'", "model.heads = 0 is out of range: allowed 1..1024");
    OVERRIDE_FAILS("run.backend=gpu", "run.backend = \"gpu\" is not allowed", "\"cpu\", \"cuda\", \"auto\"");
    OVERRIDE_FAILS("data.kind=shardz", "data.kind = \"shardz\" is not allowed", "\"text\"");
    OVERRIDE_FAILS("run.dir=", "run.dir must not be empty");
    OVERRIDE_FAILS("train.steps", "override 'train.steps'", "expected key=value");
    OVERRIDE_FAILS("=5", "expected key=value");
    OVERRIDE_FAILS("", "expected key=value");
}

Test(config, override_errors_through_load) {
    char *bad_key[] = {"model.dimm=4"};
    static const char *const n1[] = {"override 'model.dimm=4': unknown key 'model.dimm' (did you mean 'model.dim'?)",
                                     NULL};
    expect_fail("config/tiny.cfg", 1, bad_key, n1);
    char *bad_val[] = {"train.steps=many"};
    static const char *const n2[] = {"override 'train.steps=many'", "train.steps must be an integer", NULL};
    expect_fail("config/tiny.cfg", 1, bad_val, n2);
    char *no_eq[] = {"train.steps"};
    static const char *const n3[] = {"override 'train.steps'", "expected key=value", NULL};
    expect_fail("config/tiny.cfg", 1, no_eq, n3);
    /* cross-key rules see the overridden values */
    char *seq[] = {"train.seq_len=512"};
    static const char *const n4[] = {"config/tiny.cfg (with overrides)",
                                     "train.seq_len = 512 exceeds model.context = 256", NULL};
    expect_fail("config/tiny.cfg", 1, seq, n4);
    char *kv[] = {"model.kv_heads=3"};
    static const char *const n5[] = {"model.heads = 4 is not a multiple of model.kv_heads = 3", NULL};
    expect_fail("config/tiny.cfg", 1, kv, n5);
    char *lr[] = {"train.min_lr=0.01"};
    static const char *const n6[] = {"train.min_lr = 0.01 is above train.lr = 0.001", NULL};
    expect_fail("config/tiny.cfg", 1, lr, n6);
    char *budget[] = {"train.steps=0"};
    static const char *const n7[] = {"set one", "train.steps", "train.tokens", NULL};
    expect_fail("config/tiny.cfg", 1, budget, n7);
    char *dim[] = {"model.dim=66"};
    static const char *const n8[] = {"model.dim = 66 is not divisible by model.heads = 4", NULL};
    expect_fail("config/tiny.cfg", 1, dim, n8);
}

Test(config, string_override_strips_one_pair_of_quotes) {
    run_config c;
    load_ok(&c, "config/tiny.cfg", 0, NULL);
    ps_error err = {{0}};
    cr_assert_eq(config_override(&c, "run.dir='runs/a b'", &err), 0, "%s", err.msg);
    cr_expect_str_eq(c.run_dir, "runs/a b");
    cr_assert_eq(config_override(&c, "run.dir=\"\"x\"\"", &err), 0, "%s", err.msg);
    cr_expect_str_eq(c.run_dir, "\"x\"");
    cr_assert_eq(config_override(&c, "run.dir=a=b", &err), 0, "%s", err.msg);
    cr_expect_str_eq(c.run_dir, "a=b");
}

/* ------------------------------------------------------------------ malformed files */

Test(config, syntax_error_names_file_and_line) {
    EXPECT_FAIL(FIX "syntax_error.cfg", FIX "syntax_error.cfg:4: syntax error");
}

Test(config, missing_file) {
    EXPECT_FAIL(FIX "no_such_file.cfg", FIX "no_such_file.cfg: cannot read config file", "No such file");
}

Test(config, unknown_key_suggests_and_names_line) {
    EXPECT_FAIL(FIX "unknown_key.cfg", FIX "unknown_key.cfg:5: unknown key 'model.dimm' (did you mean 'model.dim'?)");
}

Test(config, unknown_key_without_suggestion_lists_group) {
    EXPECT_FAIL(FIX "unknown_key_far.cfg", FIX "unknown_key_far.cfg:4: unknown key 'train.frobnicate'",
                "train keys: micro_batch, seq_len", "log_every");
}

Test(config, unknown_group) {
    EXPECT_FAIL(FIX "unknown_group.cfg", FIX "unknown_group.cfg:3: unknown group 'modle' (did you mean 'model'?)");
    EXPECT_FAIL(FIX "unknown_group_far.cfg", FIX "unknown_group_far.cfg:2: unknown group 'optimizer'",
                "allowed groups: model, train, data, parallel, checkpoint, eval, adapt, run");
    EXPECT_FAIL(FIX "group_as_value.cfg", FIX "group_as_value.cfg:2: 'model' must be a group");
}

Test(config, wrong_types) {
    EXPECT_FAIL(FIX "type_string_for_int.cfg",
                FIX "type_string_for_int.cfg:4: model.dim must be an integer (got a string)");
    EXPECT_FAIL(FIX "type_float_for_int.cfg",
                FIX "type_float_for_int.cfg:4: model.layers must be an integer (got a float)");
    EXPECT_FAIL(FIX "type_int_for_bool.cfg",
                FIX "type_int_for_bool.cfg:4: model.tied_head must be true or false (got an integer)");
}

Test(config, out_of_range) {
    EXPECT_FAIL(FIX "out_of_range.cfg", FIX "out_of_range.cfg:4: model.heads = 0 is out of range: allowed 1..1024");
    EXPECT_FAIL(FIX "float_out_of_range.cfg",
                FIX "float_out_of_range.cfg:4: train.beta2 = 1 is out of range: allowed >= 0 and < 1");
}

Test(config, bad_enum_lists_allowed_values) {
    EXPECT_FAIL(FIX "bad_enum.cfg", FIX "bad_enum.cfg:4: run.backend = \"gpu\" is not allowed",
                "\"cpu\", \"cuda\", \"auto\"");
}

Test(config, big_integer_without_L_is_caught) {
    EXPECT_FAIL(FIX "int64_without_L.cfg", FIX "int64_without_L.cfg:4: train.tokens = 10000000000 needs the L suffix",
                "10000000000L");
    EXPECT_FAIL(FIX "int_wrap.cfg", FIX "int_wrap.cfg:4: model.dim = 4294967360 is out of range: allowed 1..65536");
}

Test(config, cross_key_rules) {
    EXPECT_FAIL(FIX "cross_kv_heads.cfg",
                FIX "cross_kv_heads.cfg: model.heads = 4 is not a multiple of model.kv_heads = 3");
    EXPECT_FAIL(FIX "cross_seq_len.cfg", FIX "cross_seq_len.cfg: train.seq_len = 512 exceeds model.context = 256");
    EXPECT_FAIL(FIX "cross_no_budget.cfg", "train.steps and train.tokens are both 0: set one");
    EXPECT_FAIL(FIX "cross_no_data.cfg", "data.path is empty", "data.kind = \"text\"");
    EXPECT_FAIL(FIX "cross_head_dim.cfg", "head_dim", "= 9 must be even");
}

Test(config, errors_in_included_files_name_them) {
    EXPECT_FAIL(FIX "include_syntax.cfg", FIX "sub/model_syntax.cfg:4: syntax error");
    EXPECT_FAIL(FIX "include_bad_key.cfg",
                FIX "sub/model_bad_key.cfg:5: unknown key 'model.kv_head' (did you mean 'model.kv_heads'?)");
    EXPECT_FAIL(FIX "include_missing.cfg", FIX "include_missing.cfg:2: cannot open include file",
                "relative to 'tests/fixtures/config'");
}

/* ------------------------------------------------------------------ writing */

Test(config, round_trip_presets) {
    const char *files[] = {"config/tiny.cfg", "config/quickstart.cfg", "config/bench.cfg",
                           FIX "include_ok.cfg", FIX "int64_with_L.cfg"};
    for (int i = 0; i < 5; i++) {
        run_config c;
        load_ok(&c, files[i], 0, NULL);
        round_trip(&c);
    }
}

Test(config, round_trip_awkward_values) {
    run_config c;
    char *ov[] = {
        "train.lr=0.30000000000000004", "train.min_lr=1e-300",       "train.tokens=9007199254740993",
        "train.seed=9223372036854775807", "train.steps=2147483648", "train.warmup_steps=2147483647",
        "model.rope_theta=1e12",        "model.norm_eps=2.2250738585072014e-308", "train.grad_clip=0",
        "train.beta1=0",                "train.weight_decay=10",    "model.init_std=0.1",
        "data.path=a \"quoted\" \\path\\ with\ttab\nnewline\x01#;{}.txt", "run.dir=runs/ü/日本",
        "model.tied_head=1",            "run.backend=cuda",         "run.threads=4096",
    };
    load_ok(&c, "config/tiny.cfg", (int)(sizeof ov / sizeof ov[0]), ov);
    cr_expect_eq(c.train.tokens, 9007199254740993LL);
    round_trip(&c);
    /* the defaults, plus the two keys that have to be set, too */
    config_defaults(&c);
    ps_error err = {{0}};
    cr_assert_eq(config_override(&c, "train.steps=1", &err), 0, "%s", err.msg);
    cr_assert_eq(config_override(&c, "data.path=x.txt", &err), 0, "%s", err.msg);
    round_trip(&c);
}

Test(config, write_uses_L_only_when_needed_and_float_literals) {
    run_config c;
    char *ov[] = {"train.tokens=30B", "train.lr=1", "model.rope_theta=10000"};
    load_ok(&c, "config/tiny.cfg", 3, ov);
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    ps_error err = {{0}};
    cr_assert_eq(run_config_write(&c, mem, &err), 0, "%s", err.msg);
    fclose(mem);
    cr_expect(strstr(text, "tokens        = 30000000000L;") != NULL, "%s", text);
    cr_expect(strstr(text, "steps         = 20;") != NULL, "%s", text);
    cr_expect(strstr(text, "lr            = 1.0;") != NULL, "%s", text);
    cr_expect(strstr(text, "rope_theta    = 10000.0;") != NULL, "%s", text);
    cr_expect(strstr(text, "# source: config/tiny.cfg") != NULL, "%s", text);
    cr_expect(strstr(text, "model =") && strstr(text, "train =") && strstr(text, "data =") && strstr(text, "run ="));
    free(text);
}

Test(config, write_file_is_atomic_and_replaces) {
    run_config c;
    load_ok(&c, "config/tiny.cfg", 0, NULL);
    make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/config.cfg", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("old contents\n", f);
    fclose(f);
    ps_error err = {{0}};
    cr_expect_eq(run_config_write_file(&c, path, &err), 0, "%s", err.msg);
    cr_expect_eq(dir_entries(tmpdir), 1);
    run_config back;
    cr_expect_eq(config_load(&back, path, 0, NULL, &err), 0, "%s", err.msg);
    /* a write into a missing folder fails cleanly and leaves nothing */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/config.cfg", tmpdir);
    cr_expect_eq(run_config_write_file(&c, bad, &err), -1);
    cr_expect(strstr(err.msg, "missing/config.cfg.tmp") != NULL, "%s", err.msg);
    cr_expect_eq(dir_entries(tmpdir), 1);
    remove_tmpdir();
}

Test(config, print_keys_lists_every_key) {
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    config_print_keys(mem);
    fclose(mem);
    static const char *const keys[] = {
        "model.vocab", "model.dim", "model.layers", "model.heads", "model.kv_heads", "model.ffn_dim",
        "model.context", "model.rope_theta", "model.norm_eps", "model.tied_head", "model.init_std",
        "train.micro_batch", "train.seq_len", "train.grad_accum", "train.steps", "train.tokens", "train.lr",
        "train.min_lr", "train.warmup_steps", "train.beta1", "train.beta2", "train.eps", "train.weight_decay",
        "train.grad_clip", "train.seed", "train.log_every", "data.kind", "data.path", "run.dir", "run.backend",
        "run.threads",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_expect(strstr(text, keys[i]) != NULL, "%s missing from the key table", keys[i]);
    cr_expect(strstr(text, "1..1024") != NULL);
    cr_expect(strstr(text, "\"cpu\", \"cuda\", \"auto\"") != NULL);
    cr_expect(strstr(text, "runs/default") != NULL);
    free(text);
}
