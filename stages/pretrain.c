/* train.c - the training loop, and a run directory that survives anything.
 *
 * trainer_* is one optimizer step at a time (the benchmark uses it alone);
 * train_run adds the run directory: resolved config, metrics, checkpoints,
 * resume, preemption and the final weights. */
#include "pretrain.h"

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
 * so that a CPU run under run.backend = "auto" does not map the engine and
 * its CUDA libraries (cuBLASLt alone adds about 150 MB of resident memory to
 * every rank): 1 yes, 0 no (why says so), -1 no CUDA runtime library to ask. */
static int cuda_device_present(char *why, size_t size) {
    void *rt = dlopen("libcudart.so.13", RTLD_NOW | RTLD_LOCAL);
    if (!rt) rt = dlopen("libcudart.so", RTLD_NOW | RTLD_LOCAL);
    if (!rt) return -1;
    int (*device_count)(int *) = (int (*)(int *))dlsym(rt, "cudaGetDeviceCount");
    const char *(*error_string)(int) = (const char *(*)(int))dlsym(rt, "cudaGetErrorString");
    int count = 0, rc = device_count ? device_count(&count) : -1;
    if (rc != 0 || count == 0)
        snprintf(why, size, "no usable GPU (cudaGetDeviceCount: error %d '%s')", rc,
                 rc > 0 && error_string ? error_string(rc) : "no device");
    dlclose(rt);
    return rc == 0 && count > 0;
}

/* The GPU engine: build/libpresight-cuda.so next to the presight binary, or
 * the library PRESIGHT_CUDA_ENGINE names (the CPU emulator's build, in the
 * tests). Loaded once and never unloaded (CUDA libraries do not unload). */
static const gpu_engine_api *load_gpu_engine(char *why, size_t size) {
    static const gpu_engine_api *api;
    if (api) return api;
    char path[4096];
    const char *forced = getenv("PRESIGHT_CUDA_ENGINE");
    if (forced && *forced) snprintf(path, sizeof path, "%s", forced);
    else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
        if (n <= 0) n = 0;
        path[n] = 0;
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, 64, "%s", GPU_ENGINE_LIBRARY);
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, size, "the GPU engine %.1000s does not load (%.300s); build presight where nvcc is installed", path,
                 dlerror());
        return NULL;
    }
    gpu_engine_entry entry = (gpu_engine_entry)dlsym(lib, GPU_ENGINE_SYMBOL);
    const gpu_engine_api *found = entry ? entry() : NULL;
    if (!found || found->abi != GPU_ENGINE_ABI) {
        snprintf(why, size, "%.1000s is not a GPU engine of this presight (ABI %d, expected %d); rebuild", path,
                 found ? found->abi : -1, GPU_ENGINE_ABI);
        return NULL;
    }
    return api = found;
}

/* run.backend: "cpu"; "cuda" (stop with the reason when a rank has no usable
 * GPU); "auto" (the GPU when every rank has one, else the CPU, saying why).
 * Every rank must choose the same: one missing GPU decides for all. */
static int select_backend(const run_config *cfg, comm *c, const gpu_engine_api **gpu, ps_error *err) {
    *gpu = NULL;
    if (strcmp(cfg->backend, "cpu") == 0) return 0;
    char why[1536] = "";
    const gpu_engine_api *api = NULL;
    const char *forced = getenv("PRESIGHT_CUDA_ENGINE");
    /* "auto" maps the engine (and cuBLASLt) only when the CUDA runtime saw a GPU. */
    int probe = (forced && *forced) || strcmp(cfg->backend, "cuda") == 0 ? 1 : cuda_device_present(why, sizeof why);
    if (probe < 0) snprintf(why, sizeof why, "no CUDA runtime library (libcudart) to ask for a GPU");
    int ask_engine = probe > 0;
    if (ask_engine) {
        api = load_gpu_engine(why, sizeof why);
        if (api && !api->available(why, sizeof why)) api = NULL;
    }
    double missing = api ? 0 : 1;
    if (comm_all_reduce_sum_double(c, &missing, 1, err)) return -1;
    if (missing == 0) {
        *gpu = api;
        return 0;
    }
    if (api) snprintf(why, sizeof why, "%.0f of %d ranks have no usable GPU", missing, comm_size(c));
    if (strcmp(cfg->backend, "cuda") == 0)
        return ps_fail(err, "run.backend = \"cuda\": %s; use run.backend = \"cpu\" or \"auto\"", why);
    if (comm_rank(c) == 0) fprintf(stderr, "run.backend = \"auto\": %s; using the CPU backend\n", why);
    return 0;
}

/* An NCCL id for the ranks of c: its rank 0 makes it, MPI carries it (with a
 * byte saying whether it exists). 1: id holds one; 0: NCCL is missing. */
static int share_nccl_id(trainer *t, comm *c, unsigned char *id, char *why, size_t size, ps_error *err) {
    unsigned char msg[GPU_ENGINE_ID_BYTES + 1];
    memset(msg, 0, sizeof msg);
    ps_error failed;
    if (comm_rank(c) == 0) {
        msg[GPU_ENGINE_ID_BYTES] = t->gpu->unique_id(msg, &failed) == 0;
        if (!msg[GPU_ENGINE_ID_BYTES]) snprintf(why, size, "%s", failed.msg);
    }
    if (comm_broadcast(c, msg, sizeof msg, 0, err)) return -1;
    memcpy(id, msg, GPU_ENGINE_ID_BYTES);
    return msg[GPU_ENGINE_ID_BYTES];
}

/* Creates the engine on this rank's GPU and hands it the initial slices. Its
 * collectives run over the shard group (every rank under ddp), and with
 * hybrid sharding also over the replicas, each with its own NCCL id. */
static int start_gpu_engine(trainer *t, ps_error *err) {
    const run_config *cfg = &t->cfg;
    sharded_state *sh = &t->shards;
    comm *main = sh->kind == STRATEGY_DDP ? t->comm : sh->group;
    unsigned char id[GPU_ENGINE_ID_BYTES], replica_id[GPU_ENGINE_ID_BYTES];
    char why[2048] = "";
    int have_id = share_nccl_id(t, main, id, why, sizeof why, err), have_replica_id = 0;
    if (have_id < 0) return -1;
    if (comm_size(main) > 1 && !have_id)
        return ps_fail(err, "%d GPU ranks need NCCL%s%s", comm_size(main), comm_rank(main) == 0 ? ": " : " (see rank 0)",
                       why);
    if (sh->replicas && (have_replica_id = share_nccl_id(t, sh->replicas, replica_id, why, sizeof why, err)) < 0)
        return -1;
    gpu_engine_setup setup = {
        .layout = &t->model.layout,
        .slices = &sh->slices,
        .strategy = sh->kind,
        .micro_batch = cfg->train.micro_batch,
        .seq_len = cfg->train.seq_len,
        .grad_accum = cfg->train.grad_accum,
        .recompute_blocks = cfg->parallel.recompute_blocks,
        .reshard_after_forward = cfg->parallel.reshard_after_forward,
        .prefetch = cfg->parallel.prefetch,
        .rank = comm_rank(main),
        .world = comm_size(main),
        .nccl_id = have_id ? id : NULL,
        .replica_rank = sh->replicas ? comm_rank(sh->replicas) : 0,
        .replicas = sh->replicas ? comm_size(sh->replicas) : 1,
        .replica_nccl_id = have_replica_id ? replica_id : NULL,
        .local_rank = -1,
        .beta1 = (float)cfg->train.beta1,
        .beta2 = (float)cfg->train.beta2,
        .adam_eps = (float)cfg->train.adam_eps,
        .weight_decay = (float)cfg->train.weight_decay,
    };
    if (!(t->engine = t->gpu->create(&setup, err))) return -1;
    return t->gpu->upload(t->engine, sh->owned, sh->adam_m, sh->adam_v, err);
}

/* The model and its training state: on the GPU engine, or on the CPU backend. */
static int build_state(trainer *t, ps_error *err) {
    const run_config *cfg = &t->cfg;
    if (model_init(&t->model, &cfg->model, backend_cpu(), err)) return -1;
    if (t->gpu) return sharded_init_host(&t->shards, cfg, &t->model.layout, t->comm, err) || start_gpu_engine(t, err);
    if (sharded_init(&t->shards, cfg, &t->model.layout, t->model.ops, t->comm, err) ||
        !(t->acts = model_activations_alloc(&t->model.layout, cfg->train.micro_batch, cfg->train.seq_len,
                                            cfg->parallel.recompute_blocks, err)))
        return -1;
    t->model.hooks = sharded_hooks(&t->shards);
    return 0;
}

/* trainer_init on a backend already chosen (gpu NULL: the CPU). */
static int trainer_init_on(trainer *t, const run_config *cfg, comm *c, const gpu_engine_api *gpu, ps_error *err) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->comm = c;
    t->gpu = gpu;
    const train_config *tc = &cfg->train;
    if (blas_init(err)) return -1;
    if (dataset_open(&t->data, cfg, err)) return -1;
    if (t->data->vocab_size > cfg->model.vocab) {
        ps_fail(err, "model.vocab = %d is smaller than the data's vocabulary (%d ids, %s)", cfg->model.vocab,
                t->data->vocab_size, t->data->description);
        trainer_free(t);
        return -1;
    }
    if (build_state(t, err)) {
        trainer_free(t);
        return -1;
    }
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

int trainer_init(trainer *t, const run_config *cfg, comm *c, ps_error *err) {
    const gpu_engine_api *gpu;
    memset(t, 0, sizeof *t);
    return select_backend(cfg, c, &gpu, err) ? -1 : trainer_init_on(t, cfg, c, gpu, err);
}

void trainer_free(trainer *t) {
    if (t->engine) t->gpu->destroy(t->engine);
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

/* Forward and backward of this rank's micro-batches on the CPU backend, the
 * gradients reduced to their owners; the sum of the micro-batches' mean
 * losses and the global gradient norm. */
static int cpu_gradients(trainer *t, double *loss, double *norm, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    sharded_state *s = &t->shards;
    int world = comm_size(t->comm);
    sharded_begin_step(s);
    for (int k = 0; k < tc->grad_accum; k++) {
        if (load_micro_batch(t, k, err)) return -1;
        *loss += model_forward(&t->model, &s->params, t->acts, t->inputs, t->targets, tc->micro_batch, tc->seq_len);
        /* Each micro-batch's gradient counts 1/(accum * world): summed over
         * micro-batches and ranks it is the gradient of the global mean. */
        model_backward(&t->model, &s->params, &s->grads, t->acts, t->inputs, t->targets, tc->micro_batch,
                       tc->seq_len, (real)(1.0 / ((double)tc->grad_accum * world)));
        if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    }
    return sharded_reduce_gradients(s, err) || sharded_grad_norm(s, norm, err);
}

/* The same on the GPU engine: the micro-batches are queued on the device as
 * they are read; the step waits for the device once, for two numbers. */
static int gpu_gradients(trainer *t, double *loss, double *norm, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    float scale = (float)(1.0 / ((double)tc->grad_accum * comm_size(t->comm)));
    for (int k = 0; k < tc->grad_accum; k++)
        if (load_micro_batch(t, k, err) || t->gpu->micro_batch(t->engine, k, t->inputs, t->targets, scale, err))
            return -1;
    double sumsq = 0;
    if (t->gpu->finish_backward(t->engine, loss, &sumsq, err)) return -1;
    /* Slices of the shard group partition the model (ddp: a group of one). */
    if (t->shards.slices.world > 1 && comm_all_reduce_sum_double(t->shards.group, &sumsq, 1, err)) return -1;
    *norm = sqrt(sumsq);
    return 0;
}

int trainer_step(trainer *t, train_step_stats *stats, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    int world = comm_size(t->comm);
    double start = now_seconds(), loss = 0, norm = 0;
    if ((t->engine ? gpu_gradients(t, &loss, &norm, err) : cpu_gradients(t, &loss, &norm, err)) ||
        comm_all_reduce_sum_double(t->comm, &loss, 1, err))
        return -1;
    loss /= (double)tc->grad_accum * world;
    double lr = lr_at(tc, t->step, t->total_steps);
    double clip = clip_scale(norm, tc->grad_clip);
    if (t->engine ? t->gpu->optimizer_step(t->engine, lr, t->step + 1, clip, err)
                  : sharded_optimizer_step(&t->shards, tc, lr, t->step + 1, clip, err))
        return -1;
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
    if (t->engine && t->gpu->download(t->engine, view.params, view.m, view.v, err)) return -1;
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
    if (sharded_after_load(&t->shards, err) ||
        (t->engine && t->gpu->upload(t->engine, view.params, view.m, view.v, err)))
        return -1;
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

/* One number of every rank, indexed by rank (caller frees). */
static double *gather_per_rank(comm *c, double mine, ps_error *err) {
    int world = comm_size(c);
    double *all = calloc((size_t)world, sizeof *all);
    if (!all) return NULL;
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

static void write_mb_list(FILE *f, const char *key, const double *mb, int n) {
    fprintf(f, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s%.1f", i ? "," : "", mb[i]);
    fprintf(f, "]");
}

static int write_final(run_state *r, const train_step_stats *s, ps_error *err) {
    trainer *t = &r->t;
    const char *dir = t->cfg.run_dir;
    gpu_engine_memory gm = {0};
    if (t->engine) t->gpu->memory(t->engine, &gm);
    double *rss = gather_per_rank(t->comm, peak_rss_mb(), err);
    double *gpu_mb = rss ? gather_per_rank(t->comm, gm.peak_bytes / 1048576.0, err) : NULL;
    if (!gpu_mb || comm_rank(t->comm) != 0) {
        free(rss);
        free(gpu_mb);
        return gpu_mb ? 0 : -1;
    }
    /* The last checkpoint holds /model at full shapes: model.h5 is that file. */
    char ckpt[CONFIG_STR_MAX + 64], model[CONFIG_STR_MAX + 32], final[CONFIG_STR_MAX + 32], tmp[CONFIG_STR_MAX + 40];
    snprintf(ckpt, sizeof ckpt, "%s/step_%08lld.h5", r->ckpt_dir, (long long)t->step);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    unlink(model);
    double elapsed = r->elapsed_before + now_seconds() - r->started;
    snprintf(final, sizeof final, "%s/final.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    FILE *f = NULL;
    if (link(ckpt, model) != 0) ps_fail(err, "%s: cannot link to %s: %s", model, ckpt, strerror(errno));
    else if (!(f = fopen(tmp, "w"))) ps_fail(err, "%s: cannot write", tmp);
    if (f) {
        int n = comm_size(t->comm);
        fprintf(f, "{\"steps\":%lld,\"final_loss\":%.17g,\"tokens\":%.0f,\"seconds\":%.3f,\"tokens_per_s\":%.1f,"
                   "\"params\":%zu,\"ranks\":%d,\"strategy\":\"%s\",\"backend\":\"%s\"",
                (long long)t->step, s->loss, t->tokens, elapsed, t->tokens / elapsed, t->model.layout.n_params, n,
                t->cfg.parallel.strategy, t->engine ? "cuda" : "cpu");
        write_mb_list(f, "peak_rss_mb", rss, n);
        if (t->engine) {
            write_mb_list(f, "gpu_peak_mb", gpu_mb, n);
            fprintf(f, ",\"gpu_class_peak_mb\":%.1f,\"gpu_reserved_mb\":%.1f,\"gpu_device_used_mb\":%.1f,"
                       "\"gpu_step_mallocs\":%lld,\"gpu\":\"%s\"",
                    gm.peak_class_bytes / 1048576.0, gm.reserved_bytes / 1048576.0, gm.device_used_bytes / 1048576.0,
                    gm.step_mallocs, t->gpu->describe(t->engine));
        }
        fprintf(f, "}\n");
    }
    free(rss);
    free(gpu_mb);
    if (!f) return -1;
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

/* A GPU job with several ranks cannot return from a failure on one rank: the
 * others may wait for it inside an NCCL collective (or its set-up) that never
 * completes, and freeing this rank's GPU state would wait on the same. Say
 * why, then end every rank. */
static void abort_gpu_job(comm *c, const ps_error *err) {
    fprintf(stderr, "presight train (rank %d): %s\n", comm_rank(c), err->msg);
    fprintf(stderr, "presight train (rank %d): stopping every rank of the job (the others may be waiting for this "
                    "one on the GPU)\n", comm_rank(c));
    fflush(stderr);
    comm_abort(c, 1);
}

int train_run(const run_config *cfg, comm *c, ps_error *err) {
    int root = comm_rank(c) == 0, complete = 0;
    catch_stop_signals();
    const gpu_engine_api *gpu;
    /* The backend first: a run that cannot start leaves no run directory behind. */
    if (select_backend(cfg, c, &gpu, err) || prepare_run_dir(cfg, c, &complete, err)) return -1;
    if (complete) {
        if (root) printf("run.dir '%s' holds a complete run (final.json); nothing to do\n", cfg->run_dir);
        return 0;
    }
    run_state r;
    memset(&r, 0, sizeof r);
    snprintf(r.ckpt_dir, sizeof r.ckpt_dir, "%s/checkpoints", cfg->run_dir);
    if (trainer_init_on(&r.t, cfg, c, gpu, err)) {
        if (gpu && comm_size(c) > 1) abort_gpu_job(c, err);
        return -1;
    }
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
               cfg->source, r.t.model.layout.n_params / 1e6, cfg->parallel.strategy, comm_size(c),
               r.t.engine ? r.t.gpu->describe(r.t.engine) : blas_describe(),
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
    if (rc < 0 && gpu && comm_size(c) > 1) abort_gpu_job(c, err);
    if (r.metrics) fclose(r.metrics);
    free(r.config_text);
    trainer_free(&r.t);
    return rc;
}
