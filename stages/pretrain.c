/* pretrain.c - pretraining: the trainer (one optimizer step at a time; the
 * benchmark uses it alone) and the stage the job runner drives with it. */
#include "pretrain.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_select.h"
#include "blas.h"
#include "checkpoint.h"
#include "engine_start.h"
#include "mixture.h"
#include "optim.h"
#include "runner.h"

static int64_t derive_total_steps(const run_config *cfg, int world) {
    const train_config *t = &cfg->train;
    if (t->steps > 0) return t->steps;
    int64_t per_step = (int64_t)t->micro_batch * t->seq_len * t->grad_accum * world;
    return (t->tokens + per_step - 1) / per_step;
}

/* ------------------------------------------------------------- one step */

/* The model and its training state: on the GPU engine, or on the CPU backend. */
static int build_state(trainer *t, ps_error *err) {
    const run_config *cfg = &t->cfg;
    if (model_init(&t->model, &cfg->model, backend_cpu(), err)) return -1;
    if (t->gpu)
        return sharded_init_host(&t->shards, cfg, &t->model.layout, t->comm, err) ||
               engine_start(t->gpu, cfg, &t->model.layout, &t->shards, t->comm, cfg->train.grad_accum, &t->engine, err);
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
    /* A step's micro-batches are read before its first backward pass (the
     * loss needs the counted targets of all of them). */
    size_t n = (size_t)tc->micro_batch * tc->seq_len * tc->grad_accum;
    t->window = malloc((size_t)tc->micro_batch * (tc->seq_len + 1) * sizeof(int));
    t->inputs = malloc(n * sizeof(int));
    t->targets = malloc(n * sizeof(int));
    t->counted = calloc((size_t)tc->grad_accum, sizeof *t->counted);
    t->means = calloc((size_t)tc->grad_accum, sizeof *t->means);
    if (!t->window || !t->inputs || !t->targets || !t->counted || !t->means) {
        trainer_free(t);
        return ps_fail(err, "out of memory for token buffers");
    }
    t->total_steps = derive_total_steps(cfg, comm_size(c));
    if (cfg->eval.every > 0 && heldout_set_open(&t->heldout, cfg, comm_rank(c), comm_size(c), cfg->run_dir, err)) {
        trainer_free(t);
        return -1;
    }
    return 0;
}

int trainer_init(trainer *t, const run_config *cfg, comm *c, ps_error *err) {
    const gpu_engine_api *gpu;
    memset(t, 0, sizeof *t);
    return backend_select(cfg, c, &gpu, err) ? -1 : trainer_init_on(t, cfg, c, gpu, err);
}

void trainer_free(trainer *t) {
    if (t->engine) t->gpu->destroy(t->engine);
    dataset_close(t->data);
    model_activations_free(t->acts);
    sharded_free(&t->shards);
    model_free(&t->model);
    heldout_set_free(&t->heldout);
    free(t->window);
    free(t->inputs);
    free(t->targets);
    free(t->counted);
    free(t->means);
    memset(t, 0, sizeof *t);
}

/* A fault on one rank, for the tests of failing jobs: PRESIGHT_FAULT=R:S
 * makes rank R's data read of the last micro-batch of step S (1-based) fail,
 * while the other ranks go on into that step's collectives. */
static int injected_fault(const trainer *t, int k) {
    const char *spec = getenv("PRESIGHT_FAULT");
    int rank, step;
    return spec && sscanf(spec, "%d:%d", &rank, &step) == 2 && rank == comm_rank(t->comm) &&
           step == t->step + 1 && k == t->cfg.train.grad_accum - 1;
}

/* Reads micro-batch k of this step for this rank into inputs[k] and
 * next-token targets[k]. The sequence indices depend on the global batch
 * only, not on how it is cut into ranks and micro-batches. Returns the
 * number of counted targets (>= 0, or -1 on error). */
static long load_micro_batch(trainer *t, int k, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    int B = tc->micro_batch, T = tc->seq_len, world = comm_size(t->comm), V = t->cfg.model.vocab;
    uint64_t first = ((uint64_t)(t->step * tc->grad_accum + k) * world + comm_rank(t->comm)) * (uint64_t)B;
    if (injected_fault(t, k))
        return ps_fail(err, "reading sequences %llu..%llu: injected fault (PRESIGHT_FAULT=%s)",
                       (unsigned long long)first, (unsigned long long)(first + B - 1), getenv("PRESIGHT_FAULT"));
    if (t->data->ops->read(t->data, first, B, T, t->window, err)) return -1;
    int *in = t->inputs + (size_t)k * B * T, *tg = t->targets + (size_t)k * B * T;
    long counted = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) {
            in[b * T + i] = t->window[b * (T + 1) + i];
            tg[b * T + i] = t->window[b * (T + 1) + i + 1];
            counted += tg[b * T + i] >= 0 && tg[b * T + i] < V;
        }
    return counted;
}

double pretrain_loss_scale(long counted, double global_counted, int grad_accum, int world, long full) {
    if (global_counted == (double)full * grad_accum * world) return 1.0 / ((double)grad_accum * world);
    return global_counted > 0 ? counted / global_counted : 0;
}

/* Every micro-batch of the step on this rank, and the counted targets of the
 * whole global batch (summed over micro-batches and ranks before any
 * backward pass: the loss is the per-token mean over all of them). */
static int load_step(trainer *t, double *global, ps_error *err) {
    *global = 0;
    for (int k = 0; k < t->cfg.train.grad_accum; k++) {
        long n = load_micro_batch(t, k, err);
        if (n < 0) return -1;
        t->counted[k] = n;
        *global += (double)n;
    }
    return comm_all_reduce_sum_double(t->comm, global, 1, err);
}

/* The global batch's mean loss from this rank's micro-batch means: with every
 * target counted (pretraining) the mean of the means, as it always was; else
 * each mean weighted by its count. */
static int global_loss(trainer *t, const double *means, double global, double *loss, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    int world = comm_size(t->comm);
    long full = (long)tc->micro_batch * tc->seq_len;
    *loss = 0;
    if (global == (double)full * tc->grad_accum * world) {
        for (int k = 0; k < tc->grad_accum; k++) *loss += means[k];
        if (comm_all_reduce_sum_double(t->comm, loss, 1, err)) return -1;
        *loss /= (double)tc->grad_accum * world;
        return 0;
    }
    for (int k = 0; k < tc->grad_accum; k++) *loss += means[k] * (double)t->counted[k];
    if (comm_all_reduce_sum_double(t->comm, loss, 1, err)) return -1;
    *loss = global > 0 ? *loss / global : 0;
    return 0;
}

/* Forward and backward of this rank's micro-batches on the CPU backend, the
 * gradients reduced to their owners; each micro-batch's mean loss and the
 * global gradient norm. */
static int cpu_gradients(trainer *t, double global, double *means, double *norm, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    sharded_state *s = &t->shards;
    int world = comm_size(t->comm), B = tc->micro_batch, T = tc->seq_len;
    sharded_begin_step(s);
    for (int k = 0; k < tc->grad_accum; k++) {
        const int *in = t->inputs + (size_t)k * B * T, *tg = t->targets + (size_t)k * B * T;
        model_batch mb = {.batch = B, .seq = T, .tokens = in, .targets = tg};
        model_result r;
        /* A hook that failed (an FSDP gather out of memory) stopped the pass; its message says why. */
        if (model_forward_batch(&t->model, &s->params, t->acts, &mb, &r, err))
            return s->hook_failed ? ps_fail(err, "%s", s->hook_error.msg) : -1;
        means[k] = r.loss;
        /* Each micro-batch's gradient of its mean counts counted/global:
         * summed over micro-batches and ranks it is the gradient of the
         * global per-token mean. */
        real scale = (real)pretrain_loss_scale(t->counted[k], global, tc->grad_accum, world, (long)B * T);
        if (model_backward_batch(&t->model, &s->params, &s->grads, t->acts, &mb, scale, err))
            return s->hook_failed ? ps_fail(err, "%s", s->hook_error.msg) : -1;
    }
    return sharded_reduce_gradients(s, err) || sharded_grad_norm(s, norm, err);
}

/* The same on the GPU engine: the micro-batches are queued on the device;
 * the step waits for the device once, for two numbers. The engine reports
 * the sum of its micro-batches' mean losses only (*loss): the step's loss is
 * then the mean of those means, the per-token mean when every target counts
 * (its gradient is the per-token mean in any case). */
static int gpu_gradients(trainer *t, double global, double *loss, double *norm, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    int world = comm_size(t->comm), B = tc->micro_batch, T = tc->seq_len;
    for (int k = 0; k < tc->grad_accum; k++) {
        float scale = (float)pretrain_loss_scale(t->counted[k], global, tc->grad_accum, world, (long)B * T);
        model_batch mb = {.batch = B, .seq = T, .tokens = t->inputs + (size_t)k * B * T,
                          .targets = t->targets + (size_t)k * B * T};
        if (t->gpu->train_batch(t->engine, k, &mb, scale, err)) return -1;
    }
    double sumsq = 0;
    return t->gpu->finish_backward(t->engine, loss, &sumsq, err) || engine_grad_norm(&t->shards, sumsq, norm, err);
}

int trainer_step(trainer *t, train_step_stats *stats, ps_error *err) {
    const train_config *tc = &t->cfg.train;
    int world = comm_size(t->comm);
    double start = job_now(), loss = 0, norm = 0, global = 0;
    if (load_step(t, &global, err)) return -1;
    if (t->engine) {
        if (gpu_gradients(t, global, &loss, &norm, err) || comm_all_reduce_sum_double(t->comm, &loss, 1, err))
            return -1;
        loss /= (double)tc->grad_accum * world;
    } else if (cpu_gradients(t, global, t->means, &norm, err) || global_loss(t, t->means, global, &loss, err))
        return -1;
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
    stats->seconds = job_now() - start;
    stats->tokens = (double)tc->micro_batch * tc->seq_len * tc->grad_accum * world;
    t->tokens += stats->tokens;
    if (!isfinite(loss))
        return ps_fail(err, "step %lld: the loss is %f; stopping before it spreads", (long long)t->step, loss);
    return 0;
}

/* ------------------------------------------------ the stage on the runner */

/* Every eval.every steps (and at the last): the held-out loss into metrics.jsonl and the progress line. */
static int heldout_step(trainer *t, job_step_report *out, ps_error *err) {
    int64_t every = t->cfg.eval.every;
    if (every <= 0 || (t->step % every && t->step != t->total_steps)) return 0;
    double loss;
    if (t->engine ? heldout_set_loss_gpu(&t->heldout, t->gpu, t->engine, t->comm, &loss, err)
                  : heldout_set_loss(&t->heldout, &t->model, &t->shards.params, t->acts, t->comm, &loss, err))
        return -1;
    if (t->shards.hook_failed) return ps_fail(err, "%s", t->shards.hook_error.msg);
    job_report_heldout(out, loss);
    return 0;
}

static int stage_step(void *ctx, const job_progress *p, job_step_report *out, ps_error *err) {
    trainer *t = ctx;
    (void)p;
    train_step_stats s;
    if (trainer_step(t, &s, err)) return -1;
    out->tokens = s.tokens;
    snprintf(out->fields, sizeof out->fields, "\"loss\":%.17g,\"lr\":%.6e,\"grad_norm\":%.6f", s.loss, s.lr,
             s.grad_norm);
    snprintf(out->progress, sizeof out->progress, "loss %.4f | lr %.2e | grad norm %.3f", s.loss, s.lr,
             s.grad_norm);
    t->last_loss = s.loss;
    return heldout_step(t, out, err);
}

static int stage_save(void *ctx, job *j, const job_progress *p, ps_error *err) {
    trainer *t = ctx;
    checkpoint_state st;
    memset(&st, 0, sizeof st);
    st.step = t->step;
    st.total_steps = t->total_steps;
    st.seed = (uint64_t)t->cfg.train.seed;
    st.tokens = t->tokens;
    st.elapsed_s = p->elapsed_s;
    st.data_state[0] = (uint64_t)t->step;
    st.world_size = comm_size(t->comm);
    snprintf(st.strategy, sizeof st.strategy, "%s", t->cfg.parallel.strategy);
    shard_view view = sharded_view(&t->shards);
    if (t->engine && t->gpu->download(t->engine, view.params, view.m, view.v, err)) return -1;
    return checkpoint_write(job_checkpoint_dir(j), t->comm, &t->model.layout, &view, &st, job_config_text(j), err);
}

static int stage_resume(void *ctx, job *j, job_progress *p, ps_error *err) {
    trainer *t = ctx;
    shard_view view = sharded_view(&t->shards);
    checkpoint_state st;
    char loaded[CONFIG_STR_MAX + 64];
    int found = checkpoint_load_latest(job_checkpoint_dir(j), t->comm, &t->model.layout, &view, &st, NULL, loaded,
                                       sizeof loaded, err);
    if (found <= 0) return found;
    if (sharded_after_load(&t->shards, err) ||
        (t->engine && t->gpu->upload(t->engine, view.params, view.m, view.v, err)))
        return -1;
    t->step = p->step = st.step;
    t->tokens = p->tokens = st.tokens;
    p->elapsed_s = st.elapsed_s;
    if (comm_rank(t->comm) == 0) {
        printf("resumed from %s at step %lld (written by %d ranks, %s)\n", loaded, (long long)st.step, st.world_size,
               st.strategy);
        fflush(stdout);
    }
    return 1;
}

static void write_mb_list(FILE *f, const char *key, const double *mb, int n) {
    fprintf(f, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s%.1f", i ? "," : "", mb[i]);
    fprintf(f, "]");
}

/* final.json's pretraining fields; model.h5 is the last checkpoint's file
 * (it holds /model at full shapes). */
static int stage_finish(void *ctx, job *j, const job_progress *p, int last_step_ran, FILE *f, ps_error *err) {
    trainer *t = ctx;
    int n = comm_size(t->comm);
    gpu_engine_memory gm = {0};
    if (t->engine) t->gpu->memory(t->engine, &gm);
    double mine = gm.peak_bytes / 1048576.0, *gpu_mb = calloc((size_t)n, sizeof *gpu_mb);
    if (!gpu_mb) return ps_fail(err, "out of memory");
    gpu_mb[comm_rank(t->comm)] = mine;
    if (comm_all_reduce_sum_double(t->comm, gpu_mb, (size_t)n, err)) {
        free(gpu_mb);
        return -1;
    }
    if (comm_rank(t->comm) != 0) {
        free(gpu_mb);
        return 0;
    }
    const char *dir = t->cfg.run_dir;
    double loss = last_step_ran ? t->last_loss : job_logged_number(j, t->step, "loss");
    char ckpt[CONFIG_STR_MAX + 64], model[CONFIG_STR_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/step_%08lld.h5", job_checkpoint_dir(j), (long long)t->step);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    unlink(model);
    int rc = 0;
    if (link(ckpt, model) != 0) rc = ps_fail(err, "%s: cannot link to %s: %s", model, ckpt, strerror(errno));
    if (f) {
        fprintf(f, ",\"final_loss\":%.17g,\"params\":%zu,\"strategy\":\"%s\",\"backend\":\"%s\"", loss,
                t->model.layout.n_params, t->cfg.parallel.strategy, t->engine ? "cuda" : "cpu");
        if (t->engine) {
            write_mb_list(f, "gpu_peak_mb", gpu_mb, n);
            fprintf(f, ",\"gpu_class_peak_mb\":%.1f,\"gpu_reserved_mb\":%.1f,\"gpu_device_used_mb\":%.1f,"
                       "\"gpu_step_mallocs\":%lld,\"gpu\":\"%s\"",
                    gm.peak_class_bytes / 1048576.0, gm.reserved_bytes / 1048576.0, gm.device_used_bytes / 1048576.0,
                    gm.step_mallocs, t->gpu->describe(t->engine));
        }
    }
    free(gpu_mb);
    if (rc) return rc;
    /* Tokens drawn per source over the whole run (mixtures; recomputed from the RNG, exact across resumes). */
    const train_config *tc = &t->cfg.train;
    mixture_log_tokens(t->data, (uint64_t)t->step * tc->grad_accum * n * tc->micro_batch, tc->seq_len, stdout);
    printf("done: %lld steps, final loss %.4f, %.0f tokens in %.1fs; weights in %s\n", (long long)t->step, loss,
           t->tokens, p->elapsed_s, model);
    return 0;
}

static void print_headline(const trainer *t) {
    const run_config *cfg = &t->cfg;
    printf("presight train: %s | %.2fM parameters | %s x %d ranks | %s | %lld steps of %d x %d tokens x %d accum\n",
           cfg->source, t->model.layout.n_params / 1e6, cfg->parallel.strategy, comm_size(t->comm),
           t->engine ? t->gpu->describe(t->engine) : blas_describe(), (long long)t->total_steps,
           cfg->train.micro_batch, cfg->train.seq_len, cfg->train.grad_accum);
    printf("data: %s\n", t->data->description);
    fflush(stdout);
}

int pretrain_run(const run_config *cfg, comm *c, ps_error *err) {
    int complete = 0;
    const gpu_engine_api *gpu;
    job *j = NULL;
    /* The backend first: a run that cannot start leaves no run directory behind. */
    if (backend_select(cfg, c, &gpu, err)) return JOB_FAILED_EVERYWHERE;
    int rc = job_open(&j, cfg, c, &complete, err);
    if (rc || complete) {
        if (complete && comm_rank(c) == 0)
            printf("run.dir '%s' holds a complete run (final.json); nothing to do\n", cfg->run_dir);
        job_close(j);
        return rc;
    }
    trainer t;
    if (trainer_init_on(&t, cfg, c, gpu, err)) {
        job_close(j);
        return -1;
    }
    if (comm_rank(c) == 0) print_headline(&t);
    job_stage stage = {&t, stage_step, stage_save, stage_resume, stage_finish};
    rc = job_run(j, &stage, t.total_steps, err);
    job_close(j);
    trainer_free(&t);
    return rc;
}
