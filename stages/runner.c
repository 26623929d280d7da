/* runner.c - run directory, metrics, progress, checkpoints, resume and
 * preemption for every stage (see runner.h). */
#include "runner.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"

struct job {
    run_config cfg;
    comm *comm;
    char *config_text;
    char ckpt_dir[CONFIG_STR_MAX + 32];
    FILE *metrics;          /* rank 0 */
    double elapsed_before;  /* seconds of earlier attempts */
    double started, last_checkpoint;
};

const char *const job_resumable_keys[] = {"parallel.", "checkpoint.", "run.", "train.log_every",
                                          "train.micro_batch", "train.grad_accum", NULL};

double job_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

const run_config *job_config(const job *j) { return &j->cfg; }
comm *job_comm(const job *j) { return j->comm; }
const char *job_checkpoint_dir(const job *j) { return j->ckpt_dir; }
const char *job_config_text(const job *j) { return j->config_text; }

/* --------------------------------------------------------- preemption */

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) { stop_requested = sig; }

/* A job starts with no stop requested (a process may run several jobs). */
static void catch_stop_signals(void) {
    stop_requested = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* ------------------------------------------------------- run directory */

static int make_dirs(const char *path, ps_error *err) {
    char buf[CONFIG_STR_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/') continue;
        char saved = *p;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ps_fail(err, "run.dir: cannot create %s: %s", buf, strerror(errno));
        if (!saved) break;
        *p = saved;
    }
    return 0;
}

static int exists(const char *dir, const char *name) {
    char path[CONFIG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static char *config_text(const run_config *cfg) {
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    if (!mem) return NULL;
    run_config_write(cfg, mem, NULL);
    fclose(mem);
    return text;
}

/* A run.dir that holds a run must hold this run: same model, data and
 * schedule. Anything else is refused, naming what differs. */
static int check_same_run(const run_config *cfg, ps_error *err) {
    char path[CONFIG_STR_MAX + 64], diff[4096];
    snprintf(path, sizeof path, "%s/config.cfg", cfg->run_dir);
    run_config before;
    if (config_load(&before, path, 0, NULL, err)) return ps_wrap(err, "run.dir '%s' holds a run whose config", cfg->run_dir);
    if (config_diff(&before, cfg, job_resumable_keys, diff, sizeof diff))
        return ps_fail(err, "run.dir '%s' holds a run of another config (%s): %s. Pick another run.dir, or resume with "
                            "the same settings", cfg->run_dir, path, diff);
    return 0;
}

static int prepare_run_dir(const run_config *cfg, comm *c, int *complete, ps_error *err) {
    /* Rank 0 decides; the others follow its verdict. */
    double verdict[2] = {0, 0}; /* complete, failed */
    if (comm_rank(c) == 0) {
        if (exists(cfg->run_dir, "config.cfg") && check_same_run(cfg, err)) verdict[1] = 1;
        else if (exists(cfg->run_dir, "final.json")) verdict[0] = 1;
        else if (make_dirs(cfg->run_dir, err)) verdict[1] = 1;
        else {
            char ckpt[CONFIG_STR_MAX + 32];
            snprintf(ckpt, sizeof ckpt, "%s/checkpoints", cfg->run_dir);
            if (make_dirs(ckpt, err)) verdict[1] = 1;
        }
    }
    ps_error ignored;
    if (comm_broadcast(c, verdict, sizeof verdict, 0, &ignored)) return ps_fail(err, "broadcast failed");
    if (verdict[1]) {
        if (comm_rank(c) != 0) ps_fail(err, "rank 0 refused the run directory");
        return JOB_FAILED_EVERYWHERE;
    }
    *complete = verdict[0] != 0;
    return 0;
}

int job_open(job **out, const run_config *cfg, comm *c, int *complete, ps_error *err) {
    *out = NULL;
    *complete = 0;
    catch_stop_signals();
    job *j = calloc(1, sizeof *j);
    /* Every rank fails alike: the text is the same everywhere. */
    if (!j || !(j->config_text = config_text(cfg))) {
        free(j);
        ps_fail(err, "out of memory");
        return JOB_FAILED_EVERYWHERE;
    }
    j->cfg = *cfg;
    j->comm = c;
    snprintf(j->ckpt_dir, sizeof j->ckpt_dir, "%s/checkpoints", cfg->run_dir);
    *out = j;
    return prepare_run_dir(cfg, c, complete, err);
}

void job_close(job *j) {
    if (!j) return;
    if (j->metrics) fclose(j->metrics);
    free(j->config_text);
    free(j);
}

/* ------------------------------------------------------------ metrics */

/* Keeps the metrics of steps <= step: the steps after the checkpoint are
 * run again and logged again, identically. Written aside, then renamed. */
static int truncate_metrics(const char *dir, int64_t step, ps_error *err) {
    char path[CONFIG_STR_MAX + 64], tmp[CONFIG_STR_MAX + 80], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *in = fopen(path, "r");
    if (!in) return 0;
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return ps_fail(err, "%s: cannot write", tmp);
    }
    while (fgets(line, sizeof line, in)) {
        long long s = -1;
        if (sscanf(line, "{\"step\":%lld", &s) == 1 && s <= step && strchr(line, '\n')) fputs(line, out);
    }
    fclose(in);
    if (fflush(out) || fsync(fileno(out)) || fclose(out) || rename(tmp, path))
        return ps_fail(err, "%s: rewriting failed", path);
    return 0;
}

void job_report_heldout(job_step_report *out, double loss) {
    size_t f = strlen(out->fields), g = strlen(out->progress);
    snprintf(out->fields + f, sizeof out->fields - f, ",\"heldout_loss\":%.17g", loss);
    snprintf(out->progress + g, sizeof out->progress - g, " | held-out %.4f", loss);
}

double job_logged_number(const job *j, int64_t step, const char *key) {
    char path[CONFIG_STR_MAX + 64], line[4096], pattern[96];
    snprintf(path, sizeof path, "%s/metrics.jsonl", j->cfg.run_dir);
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    FILE *in = fopen(path, "r");
    double value = 0;
    long long s;
    while (in && fgets(line, sizeof line, in)) {
        const char *at = strstr(line, pattern);
        if (sscanf(line, "{\"step\":%lld", &s) == 1 && s == step && at) {
            value = strtod(at + strlen(pattern), NULL);
            break;
        }
    }
    if (in) fclose(in);
    return value;
}

static void format_duration(char *out, size_t size, double s) {
    if (s < 60) snprintf(out, size, "%.0fs", s);
    else if (s < 3600) snprintf(out, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(out, size, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void print_progress(const job_progress *p, const job_step_report *r, double seconds_per_step,
                           double tokens_per_s) {
    char eta[32];
    format_duration(eta, sizeof eta, seconds_per_step * (p->total_steps - p->step));
    printf("step %6lld/%lld | %s | %.0f tok/s | ETA %s\n", (long long)p->step, (long long)p->total_steps,
           r->progress, tokens_per_s, eta);
    fflush(stdout);
}

/* ---------------------------------------------------------------- steps */

/* Every rank must agree on whether to checkpoint and whether to stop. */
static int agree(comm *c, int *checkpoint_now, int *stop_now, ps_error *err) {
    double votes[2] = {*checkpoint_now, stop_requested ? 1 : 0};
    if (comm_all_reduce_sum_double(c, votes, 2, err)) return -1;
    *checkpoint_now = votes[0] > 0;
    *stop_now = votes[1] > 0;
    return 0;
}

static double elapsed(const job *j) { return j->elapsed_before + job_now() - j->started; }

static int save(job *j, const job_stage *stage, job_progress *p, ps_error *err) {
    p->elapsed_s = elapsed(j);
    if (stage->save(stage->ctx, j, p, err)) return -1;
    j->last_checkpoint = job_now();
    if (comm_rank(j->comm) == 0) return checkpoint_prune(j->ckpt_dir, j->cfg.checkpoint.keep, err);
    return 0;
}

/* A metrics line that cannot be written (a full disk, a quota) stops the run
 * with the reason: carrying on would leave a run whose record has holes. The
 * checkpoints before it stay, so it resumes once there is room. */
static int log_step(job *j, const job_progress *p, const job_step_report *r, double step_seconds, ps_error *err) {
    errno = 0;
    int bad = fprintf(j->metrics, "{\"step\":%lld,%s,\"tokens\":%.0f,\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
                      (long long)p->step, r->fields, p->tokens, r->tokens / step_seconds, elapsed(j)) < 0;
    bad |= fflush(j->metrics) != 0 || ferror(j->metrics);
    if (bad)
        return ps_fail(err, "%s/metrics.jsonl: writing step %lld failed: %s (stopping; resume once there is room)",
                       j->cfg.run_dir, (long long)p->step, errno ? strerror(errno) : "write error");
    return 0;
}

static int run_steps(job *j, const job_stage *stage, job_progress *p, int *ran, int *preempted, ps_error *err) {
    const run_config *cfg = &j->cfg;
    const checkpoint_config *cc = &cfg->checkpoint;
    int root = comm_rank(j->comm) == 0;
    double window_start = job_now(), window_tokens = 0;
    int64_t window_steps = 0;
    while (p->step < p->total_steps) {
        job_step_report r;
        memset(&r, 0, sizeof r);
        double start = job_now();
        if (stage->step(stage->ctx, p, &r, err)) return -1;
        double now = job_now();
        p->step++;
        p->tokens += r.tokens;
        *ran = 1;
        window_tokens += r.tokens;
        window_steps++;
        if (root) {
            if (log_step(j, p, &r, now - start, err)) return -1;
            if (p->step % cfg->train.log_every == 0 || p->step == p->total_steps || window_steps == 1)
                print_progress(p, &r, (now - window_start) / window_steps, window_tokens / (now - window_start));
        }
        int due = (cc->every_steps > 0 && p->step % cc->every_steps == 0) ||
                  (cc->every_minutes > 0 && now - j->last_checkpoint >= 60 * cc->every_minutes);
        int stop = 0;
        if (agree(j->comm, &due, &stop, err)) return -1;
        if ((due || stop || p->step == p->total_steps) && save(j, stage, p, err)) return -1;
        if (stop) {
            if (root) printf("stopping on signal at step %lld: checkpoint written; exit %d to requeue\n",
                             (long long)p->step, PRESIGHT_EXIT_PREEMPTED);
            *preempted = 1;
            return 0;
        }
    }
    return 0;
}

/* One number of every rank, indexed by rank (caller frees). */
static double *gather_per_rank(comm *c, double mine, ps_error *err) {
    int world = comm_size(c);
    double *all = calloc((size_t)world, sizeof *all);
    if (!all) {
        ps_fail(err, "out of memory");
        return NULL;
    }
    all[comm_rank(c)] = mine;
    if (comm_all_reduce_sum_double(c, all, (size_t)world, err)) {
        free(all);
        return NULL;
    }
    return all;
}

static double peak_rss_mb(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* final.json: the runner's fields, then the stage's; written last. */
static int write_final(job *j, const job_stage *stage, const job_progress *p, int ran, ps_error *err) {
    int root = comm_rank(j->comm) == 0, n = comm_size(j->comm);
    char final[CONFIG_STR_MAX + 32], tmp[CONFIG_STR_MAX + 40];
    snprintf(final, sizeof final, "%s/final.json", j->cfg.run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    double seconds = elapsed(j);
    double *rss = gather_per_rank(j->comm, peak_rss_mb(), err);
    if (!rss) return -1;
    FILE *f = root ? fopen(tmp, "w") : NULL;
    if (f) {
        fprintf(f, "{\"steps\":%lld,\"tokens\":%.0f,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"ranks\":%d",
                (long long)p->step, p->tokens, seconds, p->tokens / seconds, n);
        fprintf(f, ",\"peak_rss_mb\":[");
        for (int i = 0; i < n; i++) fprintf(f, "%s%.1f", i ? "," : "", rss[i]);
        fprintf(f, "]");
    }
    free(rss);
    /* The stage's part is collective: it runs on every rank even when rank 0
     * could not open the file (which it then reports). */
    job_progress done = *p;
    done.elapsed_s = seconds;
    int rc = stage->finish(stage->ctx, j, &done, ran, f, err);
    if (root && !f) return ps_fail(err, "%s: cannot write", tmp);
    if (!f) return rc;
    fprintf(f, "}\n");
    if (fflush(f) || fsync(fileno(f))) rc = rc ? rc : ps_fail(err, "%s: write failed", tmp);
    fclose(f);
    if (rc == 0 && rename(tmp, final)) return ps_fail(err, "%s: cannot rename to %s", tmp, final);
    if (rc) unlink(tmp);
    return rc;
}

/* Rank 0's files for this attempt: config.cfg, metrics.jsonl cut back to the
 * resumed step, opened for appending. */
static int open_outputs(job *j, int64_t step, ps_error *err) {
    if (comm_rank(j->comm) != 0) return 0;
    char path[CONFIG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/config.cfg", j->cfg.run_dir);
    if (run_config_write_file(&j->cfg, path, err) || truncate_metrics(j->cfg.run_dir, step, err)) return -1;
    snprintf(path, sizeof path, "%s/metrics.jsonl", j->cfg.run_dir);
    if (!(j->metrics = fopen(path, "a"))) return ps_fail(err, "%s: cannot open for writing", path);
    return 0;
}

int job_run(job *j, const job_stage *stage, int64_t total_steps, ps_error *err) {
    job_progress p = {0, total_steps, 0, 0};
    int found = stage->resume(stage->ctx, j, &p, err);
    if (found < 0) return -1;
    p.total_steps = total_steps;
    j->elapsed_before = p.elapsed_s;
    if (open_outputs(j, p.step, err)) return -1;
    j->started = j->last_checkpoint = job_now();
    int ran = 0, preempted = 0;
    if (run_steps(j, stage, &p, &ran, &preempted, err)) return -1;
    if (preempted) return PRESIGHT_EXIT_PREEMPTED;
    return write_final(j, stage, &p, ran, err);
}
