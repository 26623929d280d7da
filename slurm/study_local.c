/* study_local.c - `presight study run STUDY --local`: the same study without
 * SLURM, one task after another on this machine.
 *
 * Each task runs the very batch script SLURM would run (STUDY/sbatch/), with
 * TASK_INDEX naming the run and LAUNCH set to `mpirun -np N` for N > 1 ranks
 * (nothing for one), so that done-detection, moving aside incomplete
 * attempts, the attempts log and exit 75 behave exactly as on the cluster. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "study.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "study_internal.h"

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs `bash script` with the task's environment; its output goes to log
 * (appended) and, when echo is set, to out as well. Returns the exit status,
 * 128+signal, or -1. */
static int run_task(const char *script, int index, int ranks, int cpus, const char *log, FILE *echo) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[1]);
        char buf[64];
        snprintf(buf, sizeof buf, "%d", index);
        setenv("TASK_INDEX", buf, 1);
        if (ranks > 1) {
            snprintf(buf, sizeof buf, "mpirun -np %d", ranks);
            setenv("LAUNCH", buf, 1);
        } else {
            setenv("LAUNCH", "", 1);
        }
        if (cpus > 0 && !getenv("PRESIGHT_THREADS")) {
            snprintf(buf, sizeof buf, "%d", cpus);
            setenv("PRESIGHT_THREADS", buf, 1);
        }
        /* Not a SLURM task, even when started from inside an allocation. */
        unsetenv("SLURM_JOB_ID");
        unsetenv("SLURM_ARRAY_JOB_ID");
        unsetenv("SLURM_ARRAY_TASK_ID");
        unsetenv("SLURM_CPUS_PER_TASK");
        execlp("bash", "bash", script, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *lf = fopen(log, "a");
    char buf[8192];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (lf) fwrite(buf, 1, (size_t)n, lf);
        if (echo) {
            fwrite(buf, 1, (size_t)n, echo);
            fflush(echo);
        }
    }
    close(fds[0]);
    if (lf) fclose(lf);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* The last lines of a file, indented, to out. */
static void print_tail(FILE *out, const char *path, int lines) {
    char *text = study_read_text(path);
    if (!text) return;
    size_t len = strlen(text);
    const char *p = text + len;
    int seen = 0;
    while (p > text && seen <= lines)
        if (*--p == '\n') seen++;
    if (*p == '\n') p++;
    for (const char *line = p; *line;) {
        const char *end = strchr(line, '\n');
        int n = end ? (int)(end - line) : (int)strlen(line);
        fprintf(out, "    | %.*s\n", n, line);
        line += n + (end ? 1 : 0);
    }
    free(text);
}

int study_run_local(study *s, int verbose, FILE *out, ps_error *err) {
    if (study_plan(s, 1, out, err)) return -1;
    if (study_guard_queued(s, 0, err, NULL)) return -1;
    char bin[PATH_MAX];
    study_presight_bin(bin, sizeof bin);
    if (study_write_scripts(s, NULL, 0, bin, err)) return -1;

    int todo = 0;
    for (int i = 0; i < s->n_runs; i++)
        for (int k = 0; k < s->n_stages; k++) todo += !study_stage_done(s, &s->runs[i], k);
    if (out) {
        fprintf(out, "\nrunning %d task%s locally (%d already done)\n", todo, todo == 1 ? "" : "s",
                s->n_runs * s->n_stages - todo);
        fflush(out);
    }
    int n = 0, failed = 0, preempted = 0;
    double start_all = seconds_now();
    for (int i = 0; i < s->n_runs && !preempted; i++) {
        const study_run *r = &s->runs[i];
        char label[512];
        study_run_label(s, r, label, sizeof label);
        for (int k = 0; k < s->n_stages; k++) {
            const study_stage *st = &s->stages[k];
            if (study_stage_done(s, r, k)) continue;
            n++;
            if (out) fprintf(out, "[%d/%d] run %d (%s: %s) %s: ", n, todo, r->index, r->id, label, st->name);
            if (st->dep >= 0 && !study_stage_done(s, r, st->dep)) {
                if (out) fprintf(out, "skipped: %s did not finish\n", s->stages[st->dep].name);
                failed++;
                /* the rest of this run waits on the same failure */
                for (int j = k + 1; j < s->n_stages; j++) n += !study_stage_done(s, r, j);
                break;
            }
            char script[PATH_MAX], log[PATH_MAX];
            if (s->n_groups == 1)
                study_path(s, script, sizeof script, "sbatch/%s.sbatch", st->name);
            else
                study_path(s, script, sizeof script, "sbatch/%s.r%d.sbatch", st->name, r->group);
            study_path(s, log, sizeof log, "logs/%s-local-%d.out", st->name, r->index);
            int ranks = r->res[k].nodes * r->res[k].ranks_per_node;
            if (out) {
                if (ranks > 1)
                    fprintf(out, "mpirun -np %d\n", ranks);
                else
                    fprintf(out, "1 process\n");
                fflush(out);
            }
            double t0 = seconds_now();
            int rc = run_task(script, r->index, ranks, r->res[k].cpus_per_task, log, verbose ? out : NULL);
            double took = seconds_now() - t0;
            if (rc == 0 && study_stage_done(s, r, k)) {
                if (out) fprintf(out, "    done in %.1fs (log %s)\n", took, log);
                continue;
            }
            if (rc == 75) {
                if (out)
                    fprintf(out, "    stopped early (exit 75): run the same command again to resume it\n");
                preempted = 1;
                break;
            }
            failed++;
            if (out) {
                fprintf(out, "    failed (exit %d) after %.1fs; the end of %s:\n", rc, took, log);
                if (!verbose) print_tail(out, log, 15);
            }
            for (int j = k + 1; j < s->n_stages; j++) n += !study_stage_done(s, r, j);
            break;
        }
    }
    if (out) {
        fprintf(out, "\n%d task%s in %.1fs", n, n == 1 ? "" : "s", seconds_now() - start_all);
        if (failed) fprintf(out, ", %d failed", failed);
        fprintf(out, "\n\n");
    }
    if (study_collect(s, out, err)) return -1;
    if (preempted)
        return ps_fail(err, "stopped early (a task exited 75): run `presight study run %s --local` again to resume",
                       s->path);
    if (failed) return ps_fail(err, "%d task%s failed (logs in %s/logs/)", failed, failed == 1 ? "" : "s", s->dir);
    return 0;
}
