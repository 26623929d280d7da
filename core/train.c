/* train.c - the training loop, and a run directory that survives anything.
 *
 * trainer_* is one optimizer step at a time (the benchmark uses it alone);
 * train_run adds the run directory: resolved config, metrics, checkpoints,
 * resume, preemption and the final weights. */
#include "train.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blas.h"
#include "checkpoint.h"
#include "mixture.h"
#include "optim.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t derive_total_steps(const run_config *cfg, int world) {
    const train_config *t = &cfg->train;
    if (t->steps > 0) return t->steps;
    int64_t per_step = (int64_t)t->micro_batch * t->seq_len * t->grad_accum * world;
    return (t->tokens + per_step - 1) / per_step;
}

/* ------------------------------------------------------------- one step */

/* Whether a CUDA device is usable, asked of the CUDA runtime through dlopen
 * so that a CPU run does not map the CUDA libraries (cuBLASLt alone adds
 * about 150 MB of resident memory to every rank). */
static int cuda_device_present(char *why, size_t size) {
    void *rt = dlopen("libcudart.so.13", RTLD_NOW | RTLD_LOCAL);
    if (!rt) rt = dlopen("libcudart.so", RTLD_NOW | RTLD_LOCAL);
    if (!rt) {
        snprintf(why, size, "no usable GPU (the CUDA runtime library libcudart is not installed)");
        return 0;
    }
    int (*device_count)(int *) = (int (*)(int *))dlsym(rt, "cudaGetDeviceCount");
    const char *(*error_string)(int) = (const char *(*)(int))dlsym(rt, "cudaGetErrorString");
    int count = 0, rc = device_count ? device_count(&count) : -1;
    if (rc != 0 || count == 0)
        snprintf(why, size, "no usable GPU (cudaGetDeviceCount: error %d '%s')", rc,
                 rc > 0 && error_string ? error_string(rc) : "no device");
    dlclose(rt);
    return rc == 0 && count > 0;
}

/* run.backend: the trainer computes on the CPU backend in this version; the
 * GPU kernels (cuda/) are checked by `make gpu-check` but not yet driven by
 * the model. Say so rather than pretend: "cuda" stops, "auto" explains. */
static int choose_backend(const run_config *cfg, int root, ps_error *err) {
    if (strcmp(cfg->backend, "cpu") == 0) return 0;
    char why[512];
    int have_gpu = cuda_device_present(why, sizeof why);
    const char *not_wired = "a GPU is present, but presight train does not drive the GPU backend yet "
                            "(cuda/ passes make gpu-check; wiring it into the trainer is the next step)";
    if (strcmp(cfg->backend, "cuda") == 0)
        return ps_fail(err, "run.backend = \"cuda\": %s; use run.backend = \"cpu\" or \"auto\"",
                       have_gpu ? not_wired : why);
    if (root) fprintf(stderr, "run.backend = \"auto\": %s; using the CPU backend\n", have_gpu ? not_wired : why);
    return 0;
}

int trainer_init(trainer *t, const run_config *cfg, comm *c, ps_error *err) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->comm = c;
    const train_config *tc = &cfg->train;
    if (blas_init(err)) return -1;
    if (dataset_open(&t->data, cfg, err)) return -1;
    if (t->data->vocab_size > cfg->model.vocab) {
        ps_fail(err, "model.vocab = %d is smaller than the data's vocabulary (%d ids, %s)", cfg->model.vocab,
                t->data->vocab_size, t->data->description);
        trainer_free(t);
        return -1;
    }
    if (model_init(&t->model, &cfg->model, backend_cpu(), err) ||
        sharded_init(&t->shards, cfg, &t->model.layout, t->model.ops, c, err) ||
        !(t->acts = model_activations_alloc(&t->model.layout, tc->micro_batch, tc->seq_len,
                                            cfg->parallel.recompute_blocks, err))) {
        trainer_free(t);
        return -1;
    }
    t->model.hooks = sharded_hooks(&t->shards);
    size_t n = (size_t)tc->micro_batch * tc->seq_len;
    t->window = malloc((size_t)tc->micro_batch * (tc->seq_len + 1) * sizeof(int));
    t->inputs = malloc(n * sizeof(int));
    t->targets = malloc(n * sizeof(int));
    if (!t->window || !t->inputs || !t->targets) {
        trainer_free(t);
        return ps_fail(err, "out of memory for token buffers");
    }
    t->total_steps = derive_total_steps(cfg, comm_size(c));
    return 0;
}

void trainer_free(trainer *t) {
    dataset_close(t->data);
    model_activations_free(t->acts);
    sharded_free(&t->shards);
    model_free(&t->model);
    free(t->window);
    free(t->inputs);
    free(t->targets);
    memset(t, 0, sizeof *t);
}

/* Reads micro-batch k of this step for this rank and splits it into inputs
 * and next-token targets. The sequence indices depend on the global batch
 * only, not on how it is cut into ranks and micro-batches. */
static int load_micro_batch(trainer *t, int k, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    int B = tc->micro_batch, T = tc->seq_len, world = comm_size(t->comm);
    uint64_t first = ((uint64_t)(t->step * tc->grad_accum + k) * world + comm_rank(t->comm)) * (uint64_t)B;
    if (t->data->ops->read(t->data, first, B, T, t->window, err)) return -1;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            t->inputs[b * T + i] = t->window[b * (T + 1) + i];
            t->targets[b * T + i] = t->window[b * (T + 1) + i + 1];
        }
    return 0;
}

int trainer_step(trainer *t, train_step_stats *stats, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    sharded_state *s = &t->shards;
    int world = comm_size(t->comm);
    double start = now_seconds(), loss = 0, norm = 0;

    sharded_begin_step(s);
    for (int k = 0; k < tc->grad_accum; k++) {
        if (load_micro_batch(t, k, err)) return -1;
        loss += model_forward(&t->model, &s->params, t->acts, t->inputs, t->targets, tc->micro_batch, tc->seq_len);
        /* Each micro-batch's gradient counts 1/(accum * world): summed over
         * micro-batches and ranks it is the gradient of the global mean. */
        model_backward(&t->model, &s->params, &s->grads, t->acts, t->inputs, t->targets, tc->micro_batch,
                       tc->seq_len, (real)(1.0 / ((double)tc->grad_accum * world)));
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    }
    if (sharded_reduce_gradients(s, err) || comm_all_reduce_sum_double(t->comm, &loss, 1, err) ||
        sharded_grad_norm(s, &norm, err))
        return -1;
    loss /= (double)tc->grad_accum * world;
    double lr = lr_at(tc, t->step, t->total_steps);
    if (sharded_optimizer_step(s, tc, lr, t->step + 1, clip_scale(norm, tc->grad_clip), err)) return -1;
    t->step++;

    stats->step = t->step;
    stats->loss = loss;
    stats->lr = lr;
    stats->grad_norm = norm;
    stats->seconds = now_seconds() - start;
    stats->tokens = (double)tc->micro_batch * tc->seq_len * tc->grad_accum * world;
    t->tokens += stats->tokens;
    if (!isfinite(loss))
        return ps_fail(err, "step %lld: the loss is %f; stopping before it spreads", (long long)t->step, loss);
    return 0;
}

/* --------------------------------------------------------- preemption */

static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) { stop_requested = sig; }

static void catch_stop_signals(void) {
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

/* Keys that may change between a run and its resumption: how it is laid out
 * on the machine, not what it computes. */
static const char *const resumable_changes[] = {"parallel.", "checkpoint.", "run.", "train.log_every",
                                                "train.micro_batch", "train.grad_accum", NULL};

/* A run.dir that holds a run must hold this run: same model, data and
 * schedule. Anything else is refused, naming what differs. */
static int check_same_run(const run_config *cfg, ps_error *err) {
    char path[CONFIG_STR_MAX + 64], diff[4096];
    snprintf(path, sizeof path, "%s/config.cfg", cfg->run_dir);
    run_config before;
    if (config_load(&before, path, 0, NULL, err)) return ps_wrap(err, "run.dir '%s' holds a run whose config", cfg->run_dir);
    if (config_diff(&before, cfg, resumable_changes, diff, sizeof diff))
        return ps_fail(err, "run.dir '%s' holds a run of another config (%s): %s. Pick another run.dir, or resume with "
                            "the same settings", cfg->run_dir, path, diff);
    return 0;
}

/* Keeps the metrics of steps <= step: the steps after the checkpoint are
 * trained again and logged again, identically. Written aside, then renamed. */
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

/* The loss metrics.jsonl logged for step (0 if none). */
static double logged_loss(const char *dir, int64_t step) {
    char path[CONFIG_STR_MAX + 64], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *in = fopen(path, "r");
    double loss = 0;
    long long s;
    while (in && fgets(line, sizeof line, in))
        if (sscanf(line, "{\"step\":%lld,\"loss\":%lf", &s, &loss) == 2 && s == step) break;
    if (in) fclose(in);
    return loss;
}

static void format_duration(char *out, size_t size, double s) {
    if (s < 60) snprintf(out, size, "%.0fs", s);
    else if (s < 3600) snprintf(out, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(out, size, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void print_progress(const train_step_stats *s, int64_t total, double seconds_per_step, double tokens_per_s) {
    char eta[32];
    format_duration(eta, sizeof eta, seconds_per_step * (total - s->step));
    printf("step %6lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s\n", (long long)s->step,
           (long long)total, s->loss, s->lr, s->grad_norm, tokens_per_s, eta);
    fflush(stdout);
}

typedef struct run_state {
    trainer t;
    char *config_text;
    char ckpt_dir[CONFIG_STR_MAX + 32];
    double elapsed_before; /* training seconds of earlier attempts */
    double started;
    double last_checkpoint;
    FILE *metrics;
} run_state;

static int save_checkpoint(run_state *r, ps_error *err) {
    trainer *t = &r->t;
    checkpoint_state st;
    memset(&st, 0, sizeof st);
    st.step = t->step;
    st.total_steps = t->total_steps;
    st.seed = (uint64_t)t->cfg.train.seed;
    st.tokens = t->tokens;
    st.elapsed_s = r->elapsed_before + now_seconds() - r->started;
    st.data_state[0] = (uint64_t)t->step;
    st.world_size = comm_size(t->comm);
    snprintf(st.strategy, sizeof st.strategy, "%s", t->cfg.parallel.strategy);
    shard_view view = sharded_view(&t->shards);
    if (checkpoint_write(r->ckpt_dir, t->comm, &t->model.layout, &view, &st, r->config_text, err)) return -1;
    r->last_checkpoint = now_seconds();
    if (comm_rank(t->comm) == 0) return checkpoint_prune(r->ckpt_dir, t->cfg.checkpoint.keep, err);
    return 0;
}

static int resume(run_state *r, ps_error *err) {
    trainer *t = &r->t;
    shard_view view = sharded_view(&t->shards);
    checkpoint_state st;
    char loaded[CONFIG_STR_MAX + 64];
    int found = checkpoint_load_latest(r->ckpt_dir, t->comm, &t->model.layout, &view, &st, NULL, loaded,
                                       sizeof loaded, err);
    if (found < 0) return -1;
    if (found == 0) return 0;
    if (sharded_after_load(&t->shards, err)) return -1;
    t->step = st.step;
    t->tokens = st.tokens;
    r->elapsed_before = st.elapsed_s;
    if (comm_rank(t->comm) == 0) {
        printf("resumed from %s at step %lld (written by %d ranks, %s)\n", loaded, (long long)st.step, st.world_size,
               st.strategy);
        fflush(stdout);
    }
    return 0;
}

/* Every rank must agree on whether to checkpoint and whether to stop. */
static int agree(comm *c, int *checkpoint_now, int *stop_now, ps_error *err) {
    double votes[2] = {*checkpoint_now, stop_requested ? 1 : 0};
    if (comm_all_reduce_sum_double(c, votes, 2, err)) return -1;
    *checkpoint_now = votes[0] > 0;
    *stop_now = votes[1] > 0;
    return 0;
}

/* Peak resident memory of every rank, in MB, indexed by rank (caller frees). */
static double *gather_peak_rss(comm *c, ps_error *err) {
    int world = comm_size(c);
    double *mb = calloc((size_t)world, sizeof *mb);
    if (!mb) return NULL;
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    mb[comm_rank(c)] = usage.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
    if (comm_all_reduce_sum_double(c, mb, (size_t)world, err)) {
        free(mb);
        return NULL;
    }
    return mb;
}

static int write_final(run_state *r, const train_step_stats *s, ps_error *err) {
    trainer *t = &r->t;
    const char *dir = t->cfg.run_dir;
    double *rss = gather_peak_rss(t->comm, err);
    if (!rss) return -1;
    /* The last checkpoint holds /model at full shapes: model.h5 is that file. */
    if (comm_rank(t->comm) != 0) {
        free(rss);
        return 0;
    }
    char ckpt[CONFIG_STR_MAX + 64], model[CONFIG_STR_MAX + 32], final[CONFIG_STR_MAX + 32], tmp[CONFIG_STR_MAX + 40];
    snprintf(ckpt, sizeof ckpt, "%s/step_%08lld.h5", r->ckpt_dir, (long long)t->step);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    unlink(model);
    if (link(ckpt, model) != 0) return ps_fail(err, "%s: cannot link to %s: %s", model, ckpt, strerror(errno));
    double elapsed = r->elapsed_before + now_seconds() - r->started;
    snprintf(final, sizeof final, "%s/final.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(rss);
        return ps_fail(err, "%s: cannot write", tmp);
    }
    fprintf(f, "{\"steps\":%lld,\"final_loss\":%.17g,\"tokens\":%.0f,\"seconds\":%.3f,\"tokens_per_s\":%.1f,"
               "\"params\":%zu,\"ranks\":%d,\"strategy\":\"%s\",\"peak_rss_mb\":[",
            (long long)t->step, s->loss, t->tokens, elapsed, t->tokens / elapsed, t->model.layout.n_params,
            comm_size(t->comm), t->cfg.parallel.strategy);
    for (int i = 0; i < comm_size(t->comm); i++) fprintf(f, "%s%.1f", i ? "," : "", rss[i]);
    fprintf(f, "]}\n");
    free(rss);
    if (fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp, final)) return ps_fail(err, "%s: write failed", final);
    /* Tokens drawn per source over the whole run (mixtures; recomputed from the RNG, exact across resumes). */
    const train_config *tc = &t->cfg.train;
    mixture_log_tokens(t->data, (uint64_t)t->step * tc->grad_accum * comm_size(t->comm) * tc->micro_batch,
                       tc->seq_len, stdout);
    printf("done: %lld steps, final loss %.4f, %.0f tokens in %.1fs; weights in %s\n", (long long)t->step, s->loss,
           t->tokens, elapsed, model);
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
    if (verdict[1]) return comm_rank(c) == 0 ? -1 : ps_fail(err, "rank 0 refused the run directory");
    *complete = verdict[0] != 0;
    return 0;
}

static int train_steps(run_state *r, train_step_stats *s, int *preempted, ps_error *err) {
    trainer *t = &r->t;
    const run_config *cfg = &t->cfg;
    int root = comm_rank(t->comm) == 0;
    double window_start = now_seconds(), window_tokens = 0;
    int64_t window_steps = 0;
    while (t->step < t->total_steps) {
        if (trainer_step(t, s, err)) return -1;
        window_tokens += s->tokens;
        window_steps++;
        double now = now_seconds(), rate = window_tokens / (now - window_start);
        if (root) {
            fprintf(r->metrics,
                    "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.6e,\"grad_norm\":%.6f,\"tokens\":%.0f,"
                    "\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
                    (long long)s->step, s->loss, s->lr, s->grad_norm, t->tokens, s->tokens / s->seconds,
                    r->elapsed_before + now - r->started);
            fflush(r->metrics);
            if (s->step % cfg->train.log_every == 0 || s->step == t->total_steps || window_steps == 1)
                print_progress(s, t->total_steps, (now - window_start) / window_steps, rate);
        }
        const checkpoint_config *cc = &cfg->checkpoint;
        int due = (cc->every_steps > 0 && s->step % cc->every_steps == 0) ||
                  (cc->every_minutes > 0 && now - r->last_checkpoint >= 60 * cc->every_minutes);
        int stop = 0;
        if (agree(t->comm, &due, &stop, err)) return -1;
        if ((due || stop || s->step == t->total_steps) && save_checkpoint(r, err)) return -1;
        if (stop) {
            if (root) printf("stopping on signal at step %lld: checkpoint written; exit %d to requeue\n",
                             (long long)s->step, PRESIGHT_EXIT_PREEMPTED);
            *preempted = 1;
            return 0;
        }
    }
    return 0;
}

int train_run(const run_config *cfg, comm *c, ps_error *err) {
    int root = comm_rank(c) == 0, complete = 0;
    catch_stop_signals();
    if (choose_backend(cfg, root, err) || prepare_run_dir(cfg, c, &complete, err)) return -1;
    if (complete) {
        if (root) printf("run.dir '%s' holds a complete run (final.json); nothing to do\n", cfg->run_dir);
        return 0;
    }
    run_state r;
    memset(&r, 0, sizeof r);
    snprintf(r.ckpt_dir, sizeof r.ckpt_dir, "%s/checkpoints", cfg->run_dir);
    if (trainer_init(&r.t, cfg, c, err)) return -1;
    int rc = -1, preempted = 0;
    char path[CONFIG_STR_MAX + 32];
    r.config_text = config_text(cfg);
    if (!r.config_text) {
        ps_fail(err, "out of memory");
        goto done;
    }
    if (resume(&r, err)) goto done;
    snprintf(path, sizeof path, "%s/config.cfg", cfg->run_dir);
    if (root && (run_config_write_file(cfg, path, err) || truncate_metrics(cfg->run_dir, r.t.step, err))) goto done;
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    if (root && !(r.metrics = fopen(path, "a"))) {
        ps_fail(err, "%s: cannot open for writing", path);
        goto done;
    }
    if (root) {
        printf("presight train: %s | %.2fM parameters | %s x %d ranks | %s | %lld steps of %d x %d tokens x %d accum\n",
               cfg->source, r.t.model.layout.n_params / 1e6, cfg->parallel.strategy, comm_size(c), blas_describe(),
               (long long)r.t.total_steps, cfg->train.micro_batch, cfg->train.seq_len, cfg->train.grad_accum);
        printf("data: %s\n", r.t.data->description);
        fflush(stdout);
    }
    r.started = r.last_checkpoint = now_seconds();
    train_step_stats s = {0};
    s.step = r.t.step;
    if (train_steps(&r, &s, &preempted, err)) goto done;
    if (preempted) {
        rc = PRESIGHT_EXIT_PREEMPTED;
        goto done;
    }
    if (s.loss == 0) s.loss = logged_loss(cfg->run_dir, r.t.step); /* resumed after the last step */
    rc = write_final(&r, &s, err);
done:
    if (r.metrics) fclose(r.metrics);
    free(r.config_text);
    trainer_free(&r.t);
    return rc;
}
