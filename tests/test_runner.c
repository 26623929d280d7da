/* test_runner.c - the job runner with a stage of its own (stages/runner.h).
 *
 * A counting stage (its state: one number, saved as a text file per
 * checkpoint) shows what the runner does for any stage: metrics lines with
 * the stage's fields, final.json with the runner's and the stage's fields,
 * a complete run.dir left alone, resume from the newest checkpoint with the
 * metrics cut back, SIGUSR1 -> checkpoint and PRESIGHT_EXIT_PREEMPTED, and a
 * run.dir of another config refused on every rank. One rank. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "config.h"
#include "runner.h"
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
    test_chdir_to_repo_root("config/tiny.cfg");
    ps_error err = {{0}};
    cr_assert_eq(comm_world(&world, NULL, NULL, &err), 0, "%s", err.msg);
    snprintf(dir, sizeof dir, "/tmp/presight_runner_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    comm_free(world);
    comm_shutdown();
}

TestSuite(runner, .init = setup, .fini = teardown, .timeout = 60);

typedef struct counter {
    long value;       /* the stage's state: sum of the step numbers so far */
    int64_t stop_at;  /* raise SIGUSR1 during this step (0: never) */
    int steps_run, finished, last_step_ran;
} counter;

static int count_step(void *ctx, const job_progress *p, job_step_report *out, ps_error *err) {
    (void)err;
    counter *c = ctx;
    c->value += p->step + 1;
    c->steps_run++;
    if (c->stop_at == p->step + 1) raise(SIGUSR1);
    out->tokens = 10;
    snprintf(out->fields, sizeof out->fields, "\"value\":%ld", c->value);
    snprintf(out->progress, sizeof out->progress, "value %ld", c->value);
    return 0;
}

static int count_save(void *ctx, job *j, const job_progress *p, ps_error *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/step_%08lld.h5", job_checkpoint_dir(j), (long long)p->step);
    FILE *f = fopen(path, "w");
    if (!f) return ps_fail(err, "%s: cannot write", path);
    fprintf(f, "%lld %ld %.0f\n", (long long)p->step, ((counter *)ctx)->value, p->tokens);
    return fclose(f) ? ps_fail(err, "%s: write failed", path) : 0;
}

static int count_resume(void *ctx, job *j, job_progress *p, ps_error *err) {
    (void)err;
    counter *c = ctx;
    for (int64_t step = p->total_steps; step > 0; step--) {
        char path[512];
        snprintf(path, sizeof path, "%s/step_%08lld.h5", job_checkpoint_dir(j), (long long)step);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long long s;
        int ok = fscanf(f, "%lld %ld %lf", &s, &c->value, &p->tokens) == 3;
        fclose(f);
        if (!ok) continue;
        p->step = s;
        return 1;
    }
    return 0;
}

static int count_finish(void *ctx, job *j, const job_progress *p, int last_step_ran, FILE *final, ps_error *err) {
    (void)j, (void)p, (void)err;
    counter *c = ctx;
    c->finished = 1;
    c->last_step_ran = last_step_ran;
    if (final) fprintf(final, ",\"value\":%ld", c->value);
    return 0;
}

/* One attempt of a 6-step run in run.dir = dir/name; returns job_run's code (1: complete already). */
static int attempt(const char *name, counter *c, const char *over) {
    char run_dir[400], *args[3];
    snprintf(run_dir, sizeof run_dir, "run.dir=%s/%s", dir, name);
    args[0] = run_dir;
    args[1] = "checkpoint.every_steps=2";
    args[2] = (char *)over;
    run_config cfg;
    ps_error err = {{0}};
    cr_assert_eq(config_load(&cfg, "config/tiny.cfg", over ? 3 : 2, args, &err), 0, "%s", err.msg);
    job *j;
    int complete;
    int rc = job_open(&j, &cfg, world, &complete, &err);
    if (rc == 0 && complete) {
        job_close(j);
        return 1;
    }
    if (rc == 0) {
        job_stage stage = {c, count_step, count_save, count_resume, count_finish};
        rc = job_run(j, &stage, 6, &err);
    }
    job_close(j);
    if (rc < 0) cr_log_info("%s", err.msg);
    return rc;
}

static int lines(const char *name, const char *file) {
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, file);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n++;
    if (f) fclose(f);
    return n;
}

static int contains(const char *name, const char *file, const char *text) {
    char path[512], buf[8192] = "";
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, file);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strstr(buf, text) != NULL;
}

Test(runner, a_whole_run_then_nothing_to_do) {
    counter c = {0};
    cr_assert_eq(attempt("whole", &c, NULL), 0);
    cr_expect_eq(c.steps_run, 6);
    cr_expect_eq(c.value, 21);
    cr_expect(c.finished && c.last_step_ran);
    cr_expect_eq(lines("whole", "metrics.jsonl"), 6);
    cr_expect(contains("whole", "metrics.jsonl", "{\"step\":6,\"value\":21,\"tokens\":60,"));
    cr_expect(contains("whole", "final.json", "{\"steps\":6,\"tokens\":60,"));
    cr_expect(contains("whole", "final.json", ",\"value\":21}"));
    cr_expect(contains("whole", "config.cfg", "steps"));
    counter again = {0};
    cr_expect_eq(attempt("whole", &again, NULL), 1, "a complete run.dir was not left alone");
    cr_expect_eq(again.steps_run, 0);
}

Test(runner, preempted_then_resumed) {
    counter c = {.stop_at = 3};
    cr_assert_eq(attempt("pre", &c, NULL), PRESIGHT_EXIT_PREEMPTED);
    cr_expect_eq(c.steps_run, 3);
    cr_expect(!c.finished);
    cr_expect_eq(lines("pre", "final.json"), 0, "a preempted run wrote final.json");
    /* The signal's checkpoint is step 3; the next attempt goes on from it. */
    counter d = {0};
    cr_assert_eq(attempt("pre", &d, NULL), 0);
    cr_expect_eq(d.steps_run, 3);
    cr_expect_eq(d.value, 21, "the resumed state is not the saved one");
    cr_expect_eq(lines("pre", "metrics.jsonl"), 6);
    cr_expect(contains("pre", "final.json", ",\"value\":21}"));
}

Test(runner, another_config_is_refused_everywhere) {
    counter c = {.stop_at = 2};
    cr_assert_eq(attempt("other", &c, NULL), PRESIGHT_EXIT_PREEMPTED);
    counter d = {0};
    cr_expect_eq(attempt("other", &d, "train.lr=0.5"), JOB_FAILED_EVERYWHERE);
    cr_expect_eq(d.steps_run, 0);
    /* A key that may change between attempts does not count. */
    cr_expect_eq(attempt("other", &d, "train.log_every=3"), 0);
}
