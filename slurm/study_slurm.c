/* study_slurm.c - batch scripts, array jobs and their dependencies:
 * `presight study submit`.
 *
 * Each stage becomes one array job per (resource group, index window): the
 * array task id plus ARRAY_OFFSET is the run's index in runs.tsv. A stage
 * that depends on another is submitted with --dependency=aftercorr:<array>,
 * so task i waits for task i of the same group and window of the earlier
 * stage, and only for its success; both arrays list the same task ids. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "study.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "study_internal.h"

/* ------------------------------------------------------------------ processes */

int study_command(char *const argv[], char *out, size_t cap, int merge_stderr) {
    int fds[2] = {-1, -1};
    if (out && pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        if (out) close(fds[0]), close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (out) {
            dup2(fds[1], 1);
            dup2(merge_stderr ? fds[1] : devnull, 2);
            close(fds[0]);
            close(fds[1]);
        } else {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    size_t len = 0;
    if (out) {
        close(fds[1]);
        char buf[4096];
        ssize_t n;
        while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
            if (n < 0) continue;
            size_t take = len + (size_t)n < cap ? (size_t)n : (cap > len + 1 ? cap - len - 1 : 0);
            memcpy(out + len, buf, take);
            len += take;
        }
        close(fds[0]);
        out[len < cap ? len : cap - 1] = 0;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status) == 127 ? -1 : WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int study_have_program(const char *name) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *copy = strdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", *d ? d : ".", name);
        found = access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

int study_cluster_max_array_size(void) {
    if (!study_have_program("scontrol")) return 0;
    char *argv[] = {"scontrol", "show", "config", NULL};
    char *out = malloc(1 << 20);
    if (!out) return 0;
    int size = 0;
    if (study_command(argv, out, 1 << 20, 0) == 0) {
        const char *p = strstr(out, "MaxArraySize");
        if (p && (p = strchr(p, '='))) size = atoi(p + 1);
    }
    free(out);
    return size > 0 ? size : 0;
}

/* ------------------------------------------------------------------ arrays */

static int run_fully_done(const study *s, const study_run *r) {
    for (int k = 0; k < s->n_stages; k++)
        if (!study_stage_done(s, r, k)) return 0;
    return 1;
}

static void array_spec(study_array *a, int throttle) {
    size_t len = 0;
    a->spec[0] = 0;
    for (int i = 0; i < a->n_tasks;) {
        int j = i;
        while (j + 1 < a->n_tasks && a->tasks[j + 1] == a->tasks[j] + 1) j++;
        int n = j > i
                    ? snprintf(a->spec + len, sizeof a->spec - len, "%s%d-%d", len ? "," : "", a->tasks[i], a->tasks[j])
                    : snprintf(a->spec + len, sizeof a->spec - len, "%s%d", len ? "," : "", a->tasks[i]);
        if (n < 0 || (size_t)n >= sizeof a->spec - len) break;
        len += (size_t)n;
        i = j + 1;
    }
    if (throttle > 0) snprintf(a->spec + len, sizeof a->spec - len, "%%%d", throttle);
}

void study_arrays_free(study_array *arrays, int n_arrays) {
    if (!arrays) return;
    for (int i = 0; i < n_arrays; i++) free(arrays[i].tasks);
    free(arrays);
}

int study_arrays(const study *s, int max_array_size, int only_pending, study_array **arrays, int *n_arrays,
                 ps_error *err) {
    *arrays = NULL;
    *n_arrays = 0;
    if (max_array_size < 1) return ps_fail(err, "MaxArraySize %d: must be at least 1", max_array_size);
    char *keep = malloc((size_t)s->n_runs + 1);
    if (!keep) return ps_fail(err, "out of memory");
    for (int i = 0; i < s->n_runs; i++) keep[i] = !only_pending || !run_fully_done(s, &s->runs[i]);
    int windows = s->n_runs ? (s->n_runs - 1) / max_array_size + 1 : 0;
    int cap = s->n_stages * s->n_groups * (windows ? windows : 1);
    study_array *v = calloc((size_t)cap + 1, sizeof *v);
    if (!v) {
        free(keep);
        return ps_fail(err, "out of memory");
    }
    int n = 0;
    for (int k = 0; k < s->n_stages; k++)
        for (int g = 0; g < s->n_groups; g++)
            for (int w = 0; w < windows; w++) {
                int lo = w * max_array_size, hi = lo + max_array_size;
                if (hi > s->n_runs) hi = s->n_runs;
                int count = 0;
                for (int i = lo; i < hi; i++) count += keep[i] && s->runs[i].group == g;
                if (!count) continue;
                study_array *a = &v[n];
                a->stage = k;
                a->group = g;
                a->offset = lo;
                if (!(a->tasks = malloc((size_t)count * sizeof *a->tasks))) {
                    free(keep);
                    study_arrays_free(v, n);
                    return ps_fail(err, "out of memory");
                }
                for (int i = lo; i < hi; i++)
                    if (keep[i] && s->runs[i].group == g) a->tasks[a->n_tasks++] = i - lo;
                array_spec(a, s->throttle);
                n++;
            }
    free(keep);
    *arrays = v;
    *n_arrays = n;
    return 0;
}

/* ------------------------------------------------------------------ scripts */

typedef struct text {
    char *buf;
    size_t len, cap;
    int oom;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...) {
    if (t->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (t->len + (size_t)n + 1 > cap) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->oom = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A bash single-quoted word. */
static void add_quoted(text *t, const char *s) {
    add(t, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            add(t, "'\\''");
        else
            add(t, "%c", *p);
    }
    add(t, "'");
}

static void add_var(text *t, const char *name, const char *value, const char *comment) {
    add(t, "%s=", name);
    add_quoted(t, value ? value : "");
    if (comment) add(t, "  # %s", comment);
    add(t, "\n");
}

/* The script file name of stage/group. */
static void script_name(const study *s, int stage, int group, char *buf, size_t cap) {
    if (s->n_groups == 1)
        snprintf(buf, cap, "%s.sbatch", s->stages[stage].name);
    else
        snprintf(buf, cap, "%s.r%d.sbatch", s->stages[stage].name, group);
}

char *study_sbatch_script(const study *s, int stage, int group, const char *presight_bin, const char *workdir,
                          ps_error *err) {
    const study_stage *st = &s->stages[stage];
    const study_run *first = NULL;
    int n_in_group = 0;
    for (int i = 0; i < s->n_runs; i++)
        if (s->runs[i].group == group) {
            if (!first) first = &s->runs[i];
            n_in_group++;
        }
    if (!first) {
        ps_fail(err, "stage %s: resource group %d has no runs", st->name, group);
        return NULL;
    }
    const study_resources *r = &first->res[stage];
    char study_dir[PATH_MAX];
    if (!realpath(s->dir, study_dir)) {
        ps_fail(err, "%s: %s (run `presight study plan` first)", s->dir, strerror(errno));
        return NULL;
    }
    text t = {0};
    add(&t, "#!/bin/bash\n");
    add(&t, "# Study %s, stage %s: presight %s, one array task per run (task id + ARRAY_OFFSET = runs.tsv index).\n",
        s->name, st->name, st->command);
    add(&t,
        "# Written by `presight study submit %s` from slurm/pretrain.sbatch (its documentation follows\n"
        "# below); rewritten on every submit, edit the study instead.\n",
        s->path);
    if (s->n_groups > 1)
        add(&t, "# Resource group %d of %d: %d of the study's %d runs (they share these resources).\n", group,
            s->n_groups, n_in_group, s->n_runs);
    add(&t, "#SBATCH --job-name=%s-%s\n", s->name, st->name);
    add(&t, "#SBATCH --nodes=%d\n", r->nodes);
    add(&t, "#SBATCH --ntasks-per-node=%d\n", r->ranks_per_node);
    if (r->gpus_per_node > 0) add(&t, "#SBATCH --gpus-per-node=%d\n", r->gpus_per_node);
    if (r->cpus_per_task > 0) add(&t, "#SBATCH --cpus-per-task=%d\n", r->cpus_per_task);
    if (r->time) add(&t, "#SBATCH --time=%s\n", r->time);
    if (r->partition) add(&t, "#SBATCH --partition=%s\n", r->partition);
    if (r->account) add(&t, "#SBATCH --account=%s\n", r->account);
    if (r->qos) add(&t, "#SBATCH --qos=%s\n", r->qos);
    if (r->mem) add(&t, "#SBATCH --mem=%s\n", r->mem);
    add(&t, "#SBATCH --requeue\n");
    add(&t, "#SBATCH --open-mode=append\n");
    if (s->signal_seconds > 0) add(&t, "#SBATCH --signal=B:USR1@%d\n", s->signal_seconds);
    add(&t, "#SBATCH --chdir=%s\n", workdir);
    add(&t, "#SBATCH --output=%s/logs/%s-%%A_%%a.out\n", study_dir, st->name);
    for (int i = 0; i < r->n_extra; i++) add(&t, "#SBATCH %s\n", r->extra[i]);
    add(&t, "\n");
    add_var(&t, "PRESIGHT_BIN", presight_bin, NULL);
    add_var(&t, "STUDY_DIR", study_dir, NULL);
    add(&t, "RUNS_TSV=\"$STUDY_DIR/sbatch/runs.tsv\"  # the runs as submitted\n");
    add_var(&t, "STAGE", st->name, NULL);
    add_var(&t, "STAGE_COMMAND", st->command, NULL);
    add(&t, "STAGE_ARGV=(");
    for (int i = 0; i < st->n_args; i++) {
        add(&t, i ? " " : "");
        add_quoted(&t, st->args[i]);
    }
    add(&t, ")\n");
    add_var(&t, "DONE_FILE", st->done_file, NULL);
    add_var(&t, "DEP_STAGE", st->dep >= 0 ? s->stages[st->dep].name : "", NULL);
    add_var(&t, "DEP_DONE_FILE", st->dep >= 0 ? s->stages[st->dep].done_file : "", NULL);
    add_var(&t, "STAGE_STDOUT", st->stdout_file ? st->stdout_file : "", NULL);
    add_var(&t, "SRUN_MPI", s->mpi, NULL);
    add(&t, "MAX_REQUEUES=%d\n", s->max_requeues);
    add(&t, "# ARRAY_OFFSET comes from `sbatch --export=ALL,ARRAY_OFFSET=N` (0 when absent).\n\n");

    /* The template, without its shebang and #SBATCH defaults. */
    const char *p = slurm_sbatch_template;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int skip = (p == slurm_sbatch_template && strncmp(p, "#!", 2) == 0) || strncmp(p, "#SBATCH", 7) == 0;
        if (!skip) add(&t, "%.*s\n", (int)n, p);
        p += n + (end ? 1 : 0);
    }
    if (t.oom) {
        free(t.buf);
        ps_fail(err, "out of memory");
        return NULL;
    }
    return t.buf;
}

static int write_file(const char *path, const char *content, mode_t mode, ps_error *err) {
    char tmp[4400 + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = fputs(content, f) < 0;
    if (fclose(f) || bad) {
        unlink(tmp);
        return ps_fail(err, "%s: write failed", tmp);
    }
    chmod(tmp, mode);
    if (rename(tmp, path)) return ps_fail(err, "%s: %s", path, strerror(errno));
    return 0;
}

int study_write_scripts(const study *s, study_array *arrays, int n_arrays, const char *presight_bin, ps_error *err) {
    char dir[PATH_MAX], path[4400], workdir[PATH_MAX];
    if (!getcwd(workdir, sizeof workdir)) return ps_fail(err, "getcwd: %s", strerror(errno));
    study_path(s, dir, sizeof dir, "sbatch");
    if (study_mkdirs(dir, err)) return -1;
    study_path(s, path, sizeof path, "logs");
    if (study_mkdirs(path, err)) return -1;
    for (int k = 0; k < s->n_stages; k++)
        for (int g = 0; g < s->n_groups; g++) {
            char name[256];
            script_name(s, k, g, name, sizeof name);
            char *script = study_sbatch_script(s, k, g, presight_bin, workdir, err);
            if (!script) return -1;
            snprintf(path, sizeof path, "%s/%s", dir, name);
            int rc = write_file(path, script, 0755, err);
            free(script);
            if (rc) return -1;
            for (int i = 0; i < n_arrays; i++)
                if (arrays[i].stage == k && arrays[i].group == g)
                    snprintf(arrays[i].script, sizeof arrays[i].script, "%s", path);
        }
    snprintf(path, sizeof path, "%s/runs.tsv", dir);
    return study_write_runs_tsv(s, path, err);
}

char **study_sbatch_argv(const study *s, const study_array *a, const char *dependency) {
    (void)s;
    char **v = calloc(10, sizeof *v);
    if (!v) return NULL;
    int n = 0, bad = 0;
    bad |= !(v[n++] = strdup("sbatch"));
    bad |= !(v[n++] = strdup("--parsable"));
    bad |= asprintf(&v[n++], "--array=%s", a->spec) < 0;
    bad |= asprintf(&v[n++], "--export=ALL,ARRAY_OFFSET=%d", a->offset) < 0;
    if (dependency) {
        bad |= asprintf(&v[n++], "--dependency=aftercorr:%s", dependency) < 0;
        bad |= !(v[n++] = strdup("--kill-on-invalid-dep=yes"));
    }
    bad |= !(v[n++] = strdup(a->script));
    if (bad) {
        for (int i = 0; i < n; i++) free(v[i]);
        free(v);
        return NULL;
    }
    return v;
}

static void free_argv(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

/* ------------------------------------------------------------------ queued jobs */

/* The array job ids recorded in STUDY/jobs.tsv that squeue still lists.
 * Returns how many (0 when SLURM does not answer). */
int study_queued_jobs(const study *s, char *list, size_t cap) {
    if (list && cap) list[0] = 0;
    char path[PATH_MAX];
    study_path(s, path, sizeof path, "jobs.tsv");
    char *jobs = study_read_text(path);
    if (!jobs) return 0;
    if (!study_have_program("squeue")) {
        free(jobs);
        return 0;
    }
    struct passwd *pw = getpwuid(geteuid());
    char *argv[] = {"squeue", "-h", "-u", pw ? pw->pw_name : "root", "-o", "%F", NULL};
    size_t cap_out = 1 << 22;
    char *out = malloc(cap_out);
    int count = 0;
    if (out && study_command(argv, out, cap_out, 0) == 0) {
        for (char *line = strtok(jobs, "\n"); line; line = strtok(NULL, "\n")) {
            if (line[0] == '#') continue;
            char *f = strchr(line, '\t');
            f = f ? strchr(f + 1, '\t') : NULL; /* stage, group, job id */
            if (!f) continue;
            long id = strtol(f + 1, NULL, 10);
            if (id <= 0) continue;
            char needle[32];
            snprintf(needle, sizeof needle, "%ld\n", id);
            int found = 0;
            for (char *p = out; (p = strstr(p, needle)); p++)
                if (p == out || p[-1] == '\n') {
                    found = 1;
                    break;
                }
            if (!found) continue;
            count++;
            if (list && strlen(list) + 24 < cap)
                snprintf(list + strlen(list), cap - strlen(list), "%s%ld", list[0] ? "," : "", id);
        }
    }
    free(out);
    free(jobs);
    return count;
}

/* Whether writing sbatch/runs.tsv now would change the runs queued jobs read. */
int study_guard_queued(const study *s, int force, ps_error *err, int *n_queued) {
    char ids[1024];
    int queued = study_queued_jobs(s, ids, sizeof ids);
    if (n_queued) *n_queued = queued;
    if (!queued || force) return 0;
    char path[PATH_MAX], tmp[PATH_MAX + 16];
    study_path(s, path, sizeof path, "sbatch/runs.tsv");
    snprintf(tmp, sizeof tmp, "%s.check", path);
    if (study_write_runs_tsv(s, tmp, err)) return -1;
    char *a = study_read_text(path), *b = study_read_text(tmp);
    int same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    unlink(tmp);
    if (same) return 0;
    return ps_fail(err,
                   "jobs of an earlier submission of this study are still queued (%s), and the study's runs changed "
                   "since: their tasks read %s by index. Wait for them, cancel them (scancel %s), or pass --force",
                   ids, path, ids);
}

/* ------------------------------------------------------------------ submit */

static void self_path(char *buf, size_t cap) {
    const char *env = getenv("PRESIGHT_BIN");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        return;
    }
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n > 0)
        buf[n] = 0;
    else
        snprintf(buf, cap, "presight");
}

int study_presight_bin(char *buf, size_t cap) {
    self_path(buf, cap);
    return 0;
}

int study_submit(study *s, int dry_run, int force, FILE *out, ps_error *err) {
    if (study_plan(s, 1, out, err)) return -1;
    int queued = 0;
    if (study_guard_queued(s, force, err, &queued)) return -1;
    if (queued && !dry_run && !force) {
        char ids[1024];
        study_queued_jobs(s, ids, sizeof ids);
        return ps_fail(err,
                       "jobs of an earlier submission of this study are still queued (%s): submitting again "
                       "would run the same tasks twice. Follow them with `presight study status`, cancel "
                       "them (scancel %s), or pass --force",
                       ids, ids);
    }
    if (!dry_run && !study_have_program("sbatch"))
        return ps_fail(err, "sbatch is not on PATH: submit from a SLURM login node (or use --dry-run to write and "
                            "print the scripts, or `presight study run --local`)");
    int cluster_max = study_cluster_max_array_size(), max = s->max_array_size;
    if (cluster_max > 0 && (max == 0 || max > cluster_max)) max = cluster_max;
    if (max == 0) max = 1001; /* SLURM's default */
    study_array *arrays = NULL;
    int n_arrays = 0;
    if (study_arrays(s, max, 1, &arrays, &n_arrays, err)) return -1;
    char bin[PATH_MAX];
    self_path(bin, sizeof bin);
    if (study_write_scripts(s, arrays, n_arrays, bin, err)) {
        study_arrays_free(arrays, n_arrays);
        return -1;
    }
    char dir[PATH_MAX];
    study_path(s, dir, sizeof dir, "sbatch");
    if (out) {
        const char *from = max == cluster_max         ? " (the cluster's, from scontrol show config)"
                           : max == s->max_array_size ? " (the study's slurm.max_array_size)"
                                                      : " (SLURM's default; scontrol did not answer)";
        fprintf(out, "\narrays of at most %d tasks%s; scripts in %s/\n", max, from, dir);
    }
    if (n_arrays == 0) {
        if (out) fprintf(out, "every run is done: nothing to submit\n");
        study_arrays_free(arrays, 0);
        return 0;
    }
    FILE *jobs = NULL;
    char jobs_path[PATH_MAX];
    study_path(s, jobs_path, sizeof jobs_path, "jobs.tsv");
    if (!dry_run) {
        int fresh = access(jobs_path, F_OK) != 0;
        if (!(jobs = fopen(jobs_path, "a"))) {
            study_arrays_free(arrays, n_arrays);
            return ps_fail(err, "%s: %s", jobs_path, strerror(errno));
        }
        if (fresh) fprintf(jobs, "# stage\tgroup\tjob id\tarray offset\tarray\tscript\n");
        time_t now = time(NULL);
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
        fprintf(jobs, "# submitted %s\n", when);
        fflush(jobs);
    }
    int rc = 0;
    for (int i = 0; i < n_arrays && !rc; i++) {
        study_array *a = &arrays[i];
        const study_stage *st = &s->stages[a->stage];
        char dep[64] = "";
        if (st->dep >= 0) {
            for (int j = 0; j < i; j++)
                if (arrays[j].stage == st->dep && arrays[j].group == a->group && arrays[j].offset == a->offset) {
                    if (dry_run)
                        snprintf(dep, sizeof dep, "<job id of %s[%d]>", s->stages[st->dep].name, j);
                    else
                        snprintf(dep, sizeof dep, "%ld", arrays[j].job_id);
                }
        }
        char **argv = study_sbatch_argv(s, a, dep[0] ? dep : NULL);
        if (!argv) {
            rc = ps_fail(err, "out of memory");
            break;
        }
        if (dry_run) {
            if (out) {
                fprintf(out, "[%d] ", i);
                for (char **p = argv; *p; p++) fprintf(out, "%s%s", p == argv ? "" : " ", *p);
                fprintf(out, "   # %s: %d task%s\n", st->name, a->n_tasks, a->n_tasks == 1 ? "" : "s");
            }
        } else {
            char reply[4096];
            int status = study_command(argv, reply, sizeof reply, 1);
            long id = status == 0 ? strtol(reply, NULL, 10) : 0;
            if (id <= 0) {
                char cmd[2048] = "";
                for (char **p = argv; *p; p++)
                    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s%s", p == argv ? "" : " ", *p);
                rc = ps_fail(err, "%s failed (exit %d): %s%s", cmd, status, reply,
                             i ? " (the arrays submitted before it are recorded in jobs.tsv)" : "");
            } else {
                a->job_id = id;
                fprintf(jobs, "%s\t%d\t%ld\t%d\t%s\t%s\n", st->name, a->group, id, a->offset, a->spec, a->script);
                fflush(jobs);
                if (out)
                    fprintf(out, "submitted %s: job %ld, array %s (%d task%s)%s%s\n", st->name, id, a->spec, a->n_tasks,
                            a->n_tasks == 1 ? "" : "s", dep[0] ? ", after (aftercorr) job " : "", dep);
            }
        }
        free_argv(argv);
    }
    if (jobs) fclose(jobs);
    if (!rc && out && !dry_run) fprintf(out, "follow it with: presight study status %s --dir %s\n", s->path, s->dir);
    if (!rc && out && dry_run) fprintf(out, "(dry run: nothing submitted)\n");
    study_arrays_free(arrays, n_arrays);
    return rc;
}
