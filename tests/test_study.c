/* test_study.c - studies: expansion, stable ids, errors that name the run and
 * the key, array splitting, batch scripts and their dependencies, the
 * shipped study files, status from the run directories.
 *
 * Paths are relative to the repository root; the suite changes there first.
 * Scratch study files and dirs go under build/test-study/. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../slurm/study.h"
#include "config.h"

#define SCRATCH "build/test-study"

static int try_root(const char *dir) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/config/studies/tiny-local.cfg", dir);
    return access(probe, R_OK) == 0 && chdir(dir) == 0;
}

static void to_repo_root(void) {
    if (access("config/studies/tiny-local.cfg", R_OK) == 0) goto made;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *t = strstr(dir, "tests/test_study.c");
    if (t && t != dir) {
        *t = 0;
        if (try_root(dir)) goto made;
    }
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n > 0) {
        dir[n] = 0;
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(dir, '/');
            if (!slash || slash == dir) break;
            *slash = 0;
            if (try_root(dir)) goto made;
        }
    }
made:
    mkdir("build", 0755);
    mkdir(SCRATCH, 0755);
    /* No cluster: status must come from the run dirs alone. */
    unsetenv("SLURM_CONF");
    setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
}

TestSuite(study, .init = to_repo_root);

/* Writes a study file under SCRATCH whose base is config/tiny.cfg; returns its path. */
static const char *write_study(const char *name, const char *body) {
    static char path[PATH_MAX];
    char base[PATH_MAX];
    cr_assert(realpath("config/tiny.cfg", base), "config/tiny.cfg: %s", strerror(errno));
    snprintf(path, sizeof path, SCRATCH "/%s.cfg", name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s: %s", path, strerror(errno));
    fprintf(f, "name = \"%s\";\nbase = \"%s\";\ndir = \"" SCRATCH "/%s-dir\";\n%s\n", name, base, name, body);
    fclose(f);
    return path;
}

static void rm_rf(const char *path) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    cr_assert_eq(system(cmd), 0);
}

static const char *TWO_STAGES =
    "stages = (\n"
    "  { name = \"pretrain\"; command = \"train\"; resources = { ranks_per_node = 2; time = \"00:10:00\"; }; },\n"
    "  { name = \"plan\"; command = \"plan\"; depends_on = \"pretrain\"; args = [ \"{dep}/config.cfg\" ];\n"
    "    stdout = \"plan.txt\"; done_file = \"plan.txt\"; }\n"
    ");\n"
    "slurm = { throttle = 3; signal_seconds = 90; };\n";

static void load_ok(study *s, const char *path) {
    ps_error err = {{0}};
    int rc = study_load(s, path, NULL, &err);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
}

static void load_fails(const char *path, const char *const *needles) {
    study s;
    ps_error err = {{0}};
    cr_assert_eq(study_load(&s, path, NULL, &err), -1, "%s loaded, but should have failed", path);
    for (const char *const *n = needles; *n; n++)
        cr_expect(strstr(err.msg, *n) != NULL, "message lacks \"%s\":\n  %s", *n, err.msg);
}

#define LOAD_FAILS(path, ...)                                                                                          \
    do {                                                                                                               \
        static const char *const needles_[] = {__VA_ARGS__, NULL};                                                     \
        load_fails(path, needles_);                                                                                    \
    } while (0)

static const study_run *find_run(const study *s, const char *label) {
    for (int i = 0; i < s->n_runs; i++) {
        char l[512];
        study_run_label(s, &s->runs[i], l, sizeof l);
        if (strcmp(l, label) == 0) return &s->runs[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------ expansion */

Test(study, tiny_local_expands_to_four_runs_two_stages) {
    study s;
    load_ok(&s, "config/studies/tiny-local.cfg");
    cr_assert_eq(s.n_runs, 4);
    cr_assert_eq(s.n_stages, 2);
    cr_expect_str_eq(s.stages[0].command, "train");
    cr_expect_eq(s.stages[1].dep, 0);
    cr_expect_eq(s.n_groups, 1);
    /* The last axis varies fastest; overrides are `set` first, then the axes in order. */
    const char *labels[] = {"train.lr=0.001 train.seed=1", "train.lr=0.001 train.seed=2", "train.lr=0.003 train.seed=1",
                            "train.lr=0.003 train.seed=2"};
    for (int i = 0; i < 4; i++) {
        char l[256];
        study_run_label(&s, &s.runs[i], l, sizeof l);
        cr_expect_str_eq(l, labels[i]);
        cr_expect_eq(s.runs[i].index, i);
        cr_expect_eq(strlen(s.runs[i].id), STUDY_ID_LEN);
        cr_expect_eq(strspn(s.runs[i].id, "0123456789abcdef"), STUDY_ID_LEN);
        cr_assert_eq(s.runs[i].n_overrides, s.n_set + 2);
        cr_expect_str_eq(s.runs[i].overrides[0], "train.steps=600");
        cr_expect(strncmp(s.runs[i].overrides[s.n_set], "train.lr=", 9) == 0);
        cr_expect(strncmp(s.runs[i].overrides[s.n_set + 1], "train.seed=", 11) == 0);
        char dir[256];
        snprintf(dir, sizeof dir, "runs/studies/tiny-local/runs/%s", s.runs[i].id);
        cr_expect_str_eq(s.runs[i].dir, dir);
        cr_expect_eq(s.runs[i].res[0].ranks_per_node, 2);
        cr_expect_eq(s.runs[i].res[1].ranks_per_node, 1);
    }
    study_free(&s);
}

Test(study, ids_are_pinned) {
    /* Ids name run directories: the hash must never change between versions. */
    const char *names[] = {"train.lr", "train.seed"}, *values[] = {"0.001", "1"};
    char id[STUDY_ID_LEN + 1];
    study_id(2, names, values, id);
    cr_expect_str_eq(id, "2bf463f26cae");
    /* Order of the pairs does not matter; the values do. */
    const char *names2[] = {"train.seed", "train.lr"}, *values2[] = {"1", "0.001"};
    char id2[STUDY_ID_LEN + 1];
    study_id(2, names2, values2, id2);
    cr_expect_str_eq(id, id2);
    values2[0] = "2";
    study_id(2, names2, values2, id2);
    cr_expect_str_neq(id, id2);
}

Test(study, ids_stay_when_values_axes_or_grids_are_added) {
    const char *path = write_study("ids-a", "axes = ( { key = \"train.lr\"; values = [ 1e-3, 3e-3 ]; },\n"
                                            "         { key = \"train.seed\"; values = [ 1, 2 ]; } );\n"
                                            "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    study a;
    load_ok(&a, path);
    cr_assert_eq(a.n_runs, 4);
    /* An unrelated axis value (a new seed, and a new lr), values reordered, a number written another way. */
    path = write_study("ids-b", "axes = ( { key = \"train.lr\"; values = [ 0.003, 0.001, 1e-2 ]; },\n"
                                "         { key = \"train.seed\"; values = [ 3, 2, 1 ]; } );\n"
                                "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    study b;
    load_ok(&b, path);
    cr_assert_eq(b.n_runs, 9);
    for (int i = 0; i < a.n_runs; i++) {
        char l[256];
        study_run_label(&a, &a.runs[i], l, sizeof l);
        const study_run *r = find_run(&b, l);
        cr_assert(r, "run %s is gone", l);
        cr_expect_str_eq(r->id, a.runs[i].id, "run %s changed id", l);
    }
    /* A new grid (with an axis of its own) leaves the first grid's ids alone. */
    path = write_study("ids-c",
                       "grids = (\n"
                       "  { axes = ( { key = \"train.lr\"; values = [ 1e-3, 3e-3 ]; },\n"
                       "             { key = \"train.seed\"; values = [ 1, 2 ]; } ); },\n"
                       "  { name = \"wd\"; axes = ( { key = \"train.weight_decay\"; values = [ 0.0, 0.1 ]; } ); }\n"
                       ");\n"
                       "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    study c;
    load_ok(&c, path);
    cr_assert_eq(c.n_runs, 6);
    for (int i = 0; i < a.n_runs; i++) cr_expect_str_eq(c.runs[i].id, a.runs[i].id);
    for (int i = 4; i < 6; i++)
        for (int j = 0; j < 4; j++) cr_expect_str_neq(c.runs[i].id, c.runs[j].id);
    study_free(&a);
    study_free(&b);
    study_free(&c);
}

Test(study, duplicate_assignments_across_grids_are_one_run) {
    const char *path = write_study("dup", "grids = (\n"
                                          "  { axes = ( { key = \"train.lr\"; values = [ 1e-3, 3e-3 ]; } ); },\n"
                                          "  { axes = ( { key = \"train.lr\"; values = [ 3e-3, 1e-2 ]; } ); }\n"
                                          ");\n"
                                          "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    study s;
    load_ok(&s, path);
    cr_expect_eq(s.n_runs, 3);
    cr_expect_eq(s.n_duplicates, 1);
    for (int i = 0; i < s.n_runs; i++) cr_expect_eq(s.runs[i].index, i);
    study_free(&s);
}

Test(study, bundles_flatten_includes_sets_and_resources) {
    const char *path = write_study(
        "bundles", "axes = ( { name = \"scale\"; bundles = \"scales\"; values = [ \"small\", \"wide\" ]; },\n"
                   "         { name = \"extra\"; values = ( { name = \"inline\"; train = { lr = 2e-3; }; } ); } );\n"
                   "scales = (\n"
                   "  { name = \"small\";\n"
                   "    @include \"../../config/model/tiny.cfg\"\n"
                   "  },\n"
                   "  { name = \"wide\"; model = { dim = 128; ffn_dim = 256; }; set = [ \"train.micro_batch=2\" ];\n"
                   "    resources = { pretrain = { nodes = 2; time = \"1:00:00\"; }; }; }\n"
                   ");\n"
                   "stages = ( { name = \"pretrain\"; command = \"train\"; resources = { nodes = 1; }; } );\n");
    study s;
    load_ok(&s, path);
    cr_assert_eq(s.n_runs, 2);
    const study_run *small = find_run(&s, "scale=small extra=inline"), *wide = find_run(&s, "scale=wide extra=inline");
    cr_assert(small && wide);
    int found_dim = 0, found_lr = 0;
    for (int i = 0; i < small->n_overrides; i++) {
        found_dim |= strcmp(small->overrides[i], "model.dim=64") == 0;
        found_lr |= strcmp(small->overrides[i], "train.lr=0.002") == 0;
    }
    cr_expect(found_dim, "the included preset's model.dim is missing");
    cr_expect(found_lr, "the inline bundle's train.lr is missing");
    int found_mb = 0;
    for (int i = 0; i < wide->n_overrides; i++) found_mb |= strcmp(wide->overrides[i], "train.micro_batch=2") == 0;
    cr_expect(found_mb);
    cr_expect_eq(small->res[0].nodes, 1);
    cr_expect_eq(wide->res[0].nodes, 2);
    cr_expect_str_eq(wide->res[0].time, "1:00:00");
    cr_expect_eq(s.n_groups, 2);
    cr_expect_neq(small->group, wide->group);
    study_free(&s);
}

/* ------------------------------------------------------------------ errors */

Test(study, bad_axis_value_names_the_run_and_the_key) {
    const char *path = write_study("bad-value", "axes = ( { key = \"train.lr\"; values = [ 1e-3, 3e-3 ]; },\n"
                                                "         { key = \"model.heads\"; values = [ 4, 3 ]; } );\n"
                                                "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    study s;
    load_ok(&s, path);
    ps_error err = {{0}};
    cr_assert_eq(study_plan(&s, 1, NULL, &err), -1, "a run with model.heads=3 (dim 64) validated");
    /* Run 1 is the first with heads=3: lr=0.001, heads=3. */
    cr_expect(strstr(err.msg, "run 1 ") != NULL, "no run index: %s", err.msg);
    cr_expect(strstr(err.msg, s.runs[1].id) != NULL, "no run id: %s", err.msg);
    cr_expect(strstr(err.msg, "model.heads=3") != NULL, "no assignment: %s", err.msg);
    cr_expect(strstr(err.msg, "model.heads") != NULL, "no key: %s", err.msg);
    study_free(&s);

    path = write_study("bad-key", "axes = ( { key = \"train.lrr\"; values = [ 1e-3 ]; } );\n"
                                  "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    load_ok(&s, path);
    cr_assert_eq(study_plan(&s, 1, NULL, &err), -1);
    cr_expect(strstr(err.msg, "run 0 ") && strstr(err.msg, "train.lrr"), "%s", err.msg);
    study_free(&s);

    path = write_study("bad-type", "axes = ( { key = \"train.seed\"; values = [ \"many\" ]; } );\n"
                                   "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    load_ok(&s, path);
    cr_assert_eq(study_plan(&s, 1, NULL, &err), -1);
    cr_expect(strstr(err.msg, "run 0 ") && strstr(err.msg, "train.seed") && strstr(err.msg, "many"), "%s", err.msg);
    study_free(&s);
}

Test(study, malformed_study_files_say_where) {
    const char *path =
        write_study("unknown-top", "axis = ( );\nstages = ( { name = \"p\"; command = \"train\"; } );\n");
    LOAD_FAILS(path, "unknown-top.cfg:4", "unknown setting 'axis'");
    path = write_study("unknown-bundle", "axes = ( { name = \"m\"; bundles = \"mixes\"; values = [ \"mix9\" ]; } );\n"
                                         "mixes = ( { name = \"mix0\"; data = { mixture = \"mix0\"; }; } );\n"
                                         "stages = ( { name = \"p\"; command = \"train\"; } );\n");
    LOAD_FAILS(path, "unknown-bundle.cfg:4", "no bundle named \"mix9\"", "mix0");
    path = write_study("twice", "axes = ( { key = \"train.lr\"; values = [ 0.001, 1e-3 ]; } );\n"
                                "stages = ( { name = \"p\"; command = \"train\"; } );\n");
    LOAD_FAILS(path, "lists \"0.001\" twice");
    path = write_study("no-stages", "axes = ( { key = \"train.lr\"; values = [ 0.001 ]; } );\n");
    LOAD_FAILS(path, "'stages' is missing");
    path = write_study("bad-dep", "stages = ( { name = \"a\"; command = \"train\"; depends_on = \"b\"; } );\n");
    LOAD_FAILS(path, "depends_on \"b\"", "not an earlier stage");
    path = write_study("bad-time",
                       "stages = ( { name = \"a\"; command = \"train\"; resources = { time = \"soon\"; }; } );\n");
    LOAD_FAILS(path, "bad-time.cfg:4", "not a SLURM time");
    path = write_study("bad-res", "stages = ( { name = \"a\"; command = \"train\"; resources = { gpus = 8; }; } );\n");
    LOAD_FAILS(path, "unknown setting 'gpus'", "gpus_per_node");
    path = write_study("syntax", "axes = ( { key = \"train.lr\"; values = [ 1, ]; } );\n");
    LOAD_FAILS(path, "syntax.cfg:4");
}

/* ------------------------------------------------------------------ plan files */

Test(study, plan_writes_runs_tsv_and_configs_and_keeps_started_runs) {
    const char *path = write_study("plan", "axes = ( { key = \"train.lr\"; values = [ 1e-3, 3e-3 ]; } );\n"
                                           "set = [ \"train.steps=5\" ];\n"
                                           "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    rm_rf(SCRATCH "/plan-dir");
    study s;
    load_ok(&s, path);
    ps_error err = {{0}};
    cr_assert_eq(study_plan(&s, 1, NULL, &err), 0, "%s", err.msg);
    FILE *f = fopen(SCRATCH "/plan-dir/runs.tsv", "r");
    cr_assert(f);
    char line[1024];
    int lines = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#') {
            char want[256];
            snprintf(want, sizeof want, "%d\t%s\truns/%s\ttrain.steps=5 train.lr=", lines, s.runs[lines].id,
                     s.runs[lines].id);
            cr_expect(strncmp(line, want, strlen(want)) == 0, "runs.tsv line %d: %s", lines, line);
            lines++;
        }
    fclose(f);
    cr_expect_eq(lines, 2);
    /* The resolved config loads as is and holds the run's values. */
    char cfg_path[512];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.cfg", s.runs[1].dir);
    run_config cfg;
    cr_assert_eq(config_load(&cfg, cfg_path, 0, NULL, &err), 0, "%s", err.msg);
    cr_expect_float_eq(cfg.train.lr, 3e-3, 1e-12);
    cr_expect_eq(cfg.train.steps, 5);
    study_free(&s);

    /* Run 0 starts; then the study changes under it: plan refuses, naming the run. */
    load_ok(&s, path);
    char started[512];
    snprintf(started, sizeof started, "%s/pretrain", s.runs[0].dir);
    cr_assert_eq(mkdir(started, 0755), 0);
    study_free(&s);
    path = write_study("plan", "axes = ( { key = \"train.lr\"; values = [ 1e-3, 3e-3 ]; } );\n"
                               "set = [ \"train.steps=6\" ];\n"
                               "stages = ( { name = \"pretrain\"; command = \"train\"; } );\n");
    load_ok(&s, path);
    cr_assert_eq(study_plan(&s, 1, NULL, &err), -1, "a started run's config was changed");
    cr_expect(strstr(err.msg, "run 0 ") && strstr(err.msg, "has started"), "%s", err.msg);
    study_free(&s);
}

/* ------------------------------------------------------------------ arrays and scripts */

Test(study, arrays_split_at_max_array_size_and_line_up_across_stages) {
    const char *path = write_study("arrays", "axes = ( { key = \"train.seed\"; values = [ 1, 2, 3, 4, 5 ]; } );\n");
    FILE *f = fopen(path, "a");
    fputs(TWO_STAGES, f);
    fclose(f);
    study s;
    load_ok(&s, path);
    cr_assert_eq(s.n_runs, 5);
    study_array *a;
    int n;
    ps_error err = {{0}};
    cr_assert_eq(study_arrays(&s, 2, 0, &a, &n, &err), 0, "%s", err.msg);
    /* 3 windows (0-1, 2-3, 4) x 2 stages. */
    cr_assert_eq(n, 6);
    const int offsets[] = {0, 2, 4};
    const char *specs[] = {"0-1%3", "0-1%3", "0%3"};
    for (int k = 0; k < 2; k++)
        for (int w = 0; w < 3; w++) {
            study_array *x = &a[k * 3 + w];
            cr_expect_eq(x->stage, k);
            cr_expect_eq(x->offset, offsets[w]);
            cr_expect_str_eq(x->spec, specs[w]);
            /* Task ids below MaxArraySize; task id + offset = runs.tsv index. */
            for (int t = 0; t < x->n_tasks; t++) cr_expect_lt(x->tasks[t], 2);
        }
    study_arrays_free(a, n);

    /* Runs whose every stage is done are left out; the stages still line up. */
    for (int k = 0; k < 2; k++) {
        char p[512];
        snprintf(p, sizeof p, "mkdir -p %s/%s && touch %s/%s/%s", s.runs[1].dir, s.stages[k].name, s.runs[1].dir,
                 s.stages[k].name, s.stages[k].done_file);
        cr_assert_eq(system(p), 0);
    }
    cr_assert_eq(study_arrays(&s, 1000, 1, &a, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(a[0].spec, "0,2-4%3");
    cr_expect_str_eq(a[1].spec, "0,2-4%3");
    study_arrays_free(a, n);
    rm_rf(SCRATCH "/arrays-dir");
    study_free(&s);
}

Test(study, sbatch_script_and_command_have_requeue_signal_and_dependency) {
    const char *path = write_study("script", "axes = ( { key = \"train.seed\"; values = [ 1, 2 ]; } );\n");
    FILE *f = fopen(path, "a");
    fputs(TWO_STAGES, f);
    fclose(f);
    rm_rf(SCRATCH "/script-dir");
    study s;
    load_ok(&s, path);
    ps_error err = {{0}};
    cr_assert_eq(study_plan(&s, 1, NULL, &err), 0, "%s", err.msg);
    char *pre = study_sbatch_script(&s, 0, 0, "/opt/presight/bin/presight", "/work", &err);
    cr_assert(pre, "%s", err.msg);
    const char *want[] = {"#!/bin/bash\n",
                          "#SBATCH --job-name=script-pretrain\n",
                          "#SBATCH --nodes=1\n",
                          "#SBATCH --ntasks-per-node=2\n",
                          "#SBATCH --time=00:10:00\n",
                          "#SBATCH --requeue\n",
                          "#SBATCH --open-mode=append\n",
                          "#SBATCH --signal=B:USR1@90\n",
                          "#SBATCH --chdir=/work\n",
                          "PRESIGHT_BIN='/opt/presight/bin/presight'\n",
                          "STAGE='pretrain'\n",
                          "STAGE_COMMAND='train'\n",
                          "STAGE_ARGV=('{config}' 'run.dir={dir}')\n",
                          "DONE_FILE='final.json'\n",
                          "srun \"--mpi=$SRUN_MPI\"",
                          "SRUN_MPI='pmix'\n",
                          "trap 'got_usr1=1; forward USR1' USR1",
                          "trap 'got_term=1; forward TERM' TERM",
                          "scontrol requeue \"$SLURM_JOB_ID\"",
                          "[ $rc -eq 75 ]",
                          "exit 0\n",
                          NULL};
    for (const char *const *w = want; *w; w++) cr_expect(strstr(pre, *w), "pretrain script lacks %s", *w);
    /* Every #SBATCH line comes before the first command, or sbatch ignores it. */
    const char *first_command = strstr(pre, "\nPRESIGHT_BIN=");
    const char *last_sbatch = NULL;
    for (const char *p = pre; (p = strstr(p, "\n#SBATCH")); p++) last_sbatch = p;
    cr_expect(last_sbatch && first_command && last_sbatch < first_command, "an #SBATCH line follows a command");
    /* The template's own defaults are not repeated. */
    cr_expect(!strstr(pre, "#SBATCH --output=presight-"), "the template's #SBATCH defaults leaked in");
    free(pre);

    char *plan = study_sbatch_script(&s, 1, 0, "/opt/presight/bin/presight", "/work", &err);
    cr_assert(plan, "%s", err.msg);
    cr_expect(strstr(plan, "DEP_STAGE='pretrain'\n") && strstr(plan, "STAGE_STDOUT='plan.txt'\n") &&
                  strstr(plan, "STAGE_ARGV=('{dep}/config.cfg')\n") && strstr(plan, "#SBATCH --ntasks-per-node=1\n"),
              "plan script:\n%s", plan);
    free(plan);

    study_array *a;
    int n;
    cr_assert_eq(study_arrays(&s, 1001, 0, &a, &n, &err), 0);
    cr_assert_eq(n, 2);
    snprintf(a[1].script, sizeof a[1].script, "x.sbatch");
    char **argv = study_sbatch_argv(&s, &a[1], "4242");
    cr_assert(argv);
    int has_dep = 0, has_kill = 0, has_array = 0, has_offset = 0;
    for (char **p = argv; *p; p++) {
        has_dep |= strcmp(*p, "--dependency=aftercorr:4242") == 0;
        has_kill |= strcmp(*p, "--kill-on-invalid-dep=yes") == 0;
        has_array |= strcmp(*p, "--array=0-1%3") == 0;
        has_offset |= strcmp(*p, "--export=ALL,ARRAY_OFFSET=0") == 0;
    }
    cr_expect(has_dep && has_kill && has_array && has_offset);
    for (char **p = argv; *p; p++) free(*p);
    free(argv);
    study_arrays_free(a, n);
    study_free(&s);
}

Test(study, the_template_is_compiled_in) {
    cr_expect(strstr(slurm_sbatch_template, "#!/bin/bash"));
    cr_expect(strstr(slurm_sbatch_template, "PRESIGHT_BIN"));
    cr_expect(strstr(slurm_sbatch_template, "CHECKPOINT_GLOB"));
    cr_expect(strstr(slurm_sbatch_template, ".incomplete."));
}

/* ------------------------------------------------------------------ shipped studies */

Test(study, shipped_studies_expand_to_the_ablation_matrix) {
    struct {
        const char *path;
        int runs;
        int groups;
    } want[] = {
        {"config/studies/tiny-local.cfg", 4, 1},         {"config/studies/single-source.cfg", 16, 1},
        {"config/studies/proportion-sweeps.cfg", 10, 1}, {"config/studies/vision-grid.cfg", 30, 1},
        {"config/studies/mix-interpolation.cfg", 11, 1}, {"config/studies/scale-tokens.cfg", 35, 4},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        study s;
        load_ok(&s, want[i].path);
        cr_expect_eq(s.n_runs, want[i].runs, "%s: %d runs", want[i].path, s.n_runs);
        cr_expect_eq(s.n_groups, want[i].groups, "%s: %d resource groups", want[i].path, s.n_groups);
        /* Every run's config resolves (leniently: keys still to come are skipped) and has a cost. */
        for (int r = 0; r < s.n_runs; r++) {
            run_config cfg;
            ps_error err = {{0}};
            char skipped[1024] = "";
            cr_assert_eq(study_run_config_lenient(&s, &s.runs[r], &cfg, skipped, sizeof skipped, &err), 0,
                         "%s run %d: %s", want[i].path, r, err.msg);
            double flops, tokens;
            cr_assert_eq(study_run_compute(&s, &s.runs[r], &cfg, &flops, &tokens, &err), 0, "%s", err.msg);
            cr_expect_gt(flops, 0);
        }
        study_free(&s);
    }
    /* mix6 at 3B on 50B tokens: 6 x 3.0e9 x 5e10 plus attention, about 700 GPU-hours at 40% of 989 TFLOP/s. */
    study s;
    load_ok(&s, "config/studies/mix-interpolation.cfg");
    const study_run *mix6 = find_run(&s, "mixture=mix6");
    cr_assert(mix6);
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(study_run_config_lenient(&s, mix6, &cfg, NULL, 0, &err), 0);
    double flops, tokens;
    study_run_compute(&s, mix6, &cfg, &flops, &tokens, &err);
    cr_expect(tokens >= 50e9 && tokens < 50.01e9, "tokens %g", tokens);
    double hours = flops / (0.4 * 989e12) / 3600;
    cr_expect(hours > 600 && hours < 800, "mix6 GPU-hours %g", hours);
    study_free(&s);
}

/* ------------------------------------------------------------------ status */

Test(study, status_from_run_dirs_without_slurm) {
    const char *path = write_study("status", "axes = ( { key = \"train.seed\"; values = [ 1, 2, 3, 4 ]; } );\n");
    FILE *f = fopen(path, "a");
    fputs(TWO_STAGES, f);
    fclose(f);
    rm_rf(SCRATCH "/status-dir");
    study s;
    load_ok(&s, path);
    char cmd[2048];
    /* run 0: both stages done, after one restart; run 1: pretrain running; run 2: pretrain failed; run 3: nothing. */
    snprintf(
        cmd, sizeof cmd,
        "set -e; d=%s; mkdir -p $d/pretrain $d/plan; touch $d/pretrain/final.json $d/plan/plan.txt;"
        "printf '%%s\\n' 't start job=local' 't end rc=75 preempted' 't start job=local' 't end rc=0 done' "
        ">$d/pretrain.attempts;"
        "d=%s; mkdir -p $d/pretrain; echo 't start job=local' >$d/pretrain.attempts;"
        "d=%s; mkdir -p $d/pretrain; printf '%%s\\n' 't start job=local' 't end rc=1 failed' >$d/pretrain.attempts",
        s.runs[0].dir, s.runs[1].dir, s.runs[2].dir);
    cr_assert_eq(system(cmd), 0);
    study_run_status *st;
    char note[256];
    ps_error err = {{0}};
    cr_assert_eq(study_status(&s, &st, note, sizeof note, &err), 0, "%s", err.msg);
    cr_expect(strstr(note, "no SLURM here"), "%s", note);
    cr_expect_eq(st[0].state, STUDY_DONE);
    cr_expect_eq(st[0].restarts, 1);
    cr_expect_eq(st[1].state, STUDY_RUNNING);
    cr_expect_eq(st[2].state, STUDY_FAILED);
    cr_expect_eq(st[2].stage[1].state, STUDY_BLOCKED);
    cr_expect_eq(st[3].state, STUDY_PENDING);
    study_status_free(&s, st);

    /* collect: one row per run, the done run's final.json fields included. */
    snprintf(cmd, sizeof cmd,
             "echo '{\"steps\":5,\"final_loss\":1.25,\"tokens\":640,\"note\":\"a,b\"}' >%s/pretrain/final.json",
             s.runs[0].dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(study_collect(&s, NULL, &err), 0, "%s", err.msg);
    f = fopen(SCRATCH "/status-dir/results.csv", "r");
    cr_assert(f);
    char line[1024];
    cr_assert(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, "index,id,state,train.seed,steps,final_loss,tokens,note\n");
    cr_assert(fgets(line, sizeof line, f));
    char want[256];
    snprintf(want, sizeof want, "0,%s,done,1,5,1.25,640,\"a,b\"\n", s.runs[0].id);
    cr_expect_str_eq(line, want);
    int rows = 1;
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    cr_expect_eq(rows, 4);
    study_free(&s);
}
