#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "blas.h"
#include "optim.h"
#include "weights_h5.h"

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
    if (model_init(&t->model, &cfg->model, backend_cpu(), err)) {
        trainer_free(t);
        return -1;
    }
    model_layout *L = &t->model.layout;
    if (model_params_alloc(&t->params, L, err) || model_params_alloc(&t->grads, L, err) ||
        model_params_alloc(&t->adam_m, L, err) || model_params_alloc(&t->adam_v, L, err) ||
        !(t->acts = model_activations_alloc(L, tc->micro_batch, tc->seq_len, err))) {
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
    model_init_weights(&t->params, L, (uint64_t)tc->seed);
    t->total_steps = derive_total_steps(cfg, comm_size(c));
    return 0;
}

void trainer_free(trainer *t) {
    dataset_close(t->data);
    model_activations_free(t->acts);
    model_params_free(&t->params);
    model_params_free(&t->grads);
    model_params_free(&t->adam_m);
    model_params_free(&t->adam_v);
    model_free(&t->model);
    free(t->window);
    free(t->inputs);
    free(t->targets);
    memset(t, 0, sizeof *t);
}

/* Reads micro-batch k of this step for this rank and splits it into inputs and next-token targets. */
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
    const backend_ops *ops = t->model.ops;
    model_layout *L = &t->model.layout;
    int world = comm_size(t->comm);
    double start = now_seconds(), loss = 0;

    for (int u = 0; u < L->n_units; u++) ops->zero(t->grads.unit[u], L->units[u].size);
    for (int k = 0; k < tc->grad_accum; k++) {
        if (load_micro_batch(t, k, err)) return -1;
        loss += model_forward(&t->model, &t->params, t->acts, t->inputs, t->targets, tc->micro_batch, tc->seq_len);
        /* Gradients of the mean over accumulation steps and ranks: each micro-batch counts 1/(accum*world). */
        model_backward(&t->model, &t->params, &t->grads, t->acts, t->inputs, t->targets, tc->micro_batch,
                       tc->seq_len, (real)(1.0 / ((double)tc->grad_accum * world)));
    }
    /* Data parallel: sum the gradients (each already scaled by 1/world) and the losses. */
    for (int u = 0; u < L->n_units; u++)
        if (comm_all_reduce_sum(t->comm, t->grads.unit[u], L->units[u].size, err)) return -1;
    if (comm_all_reduce_sum_double(t->comm, &loss, 1, err)) return -1;
    loss /= (double)tc->grad_accum * world;

    double norm = grad_global_norm(ops, L, &t->grads);
    double lr = lr_at(tc, t->step, t->total_steps);
    adamw_step(ops, L, &t->params, &t->grads, &t->adam_m, &t->adam_v, tc, lr, t->step + 1, clip_scale(norm, tc->grad_clip));
    t->step++;

    stats->step = t->step;
    stats->loss = loss;
    stats->lr = lr;
    stats->grad_norm = norm;
    stats->seconds = now_seconds() - start;
    stats->tokens = (double)tc->micro_batch * tc->seq_len * tc->grad_accum * world;
    if (!isfinite(loss)) return ps_fail(err, "step %lld: the loss is %f; stopping before it spreads", (long long)t->step, loss);
    return 0;
}

/* --------------------------------------------------------- the whole run */

static int make_dirs(const char *path, ps_error *err) {
    char buf[CONFIG_STR_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return ps_fail(err, "run.dir: cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return ps_fail(err, "run.dir: cannot create %s: %s", buf, strerror(errno));
    return 0;
}

static void format_duration(char *out, size_t size, double s) {
    if (s < 60) snprintf(out, size, "%.0fs", s);
    else if (s < 3600) snprintf(out, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(out, size, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void print_progress(const train_step_stats *s, int64_t total, double elapsed, double tokens_per_s) {
    char eta[32];
    format_duration(eta, sizeof eta, elapsed / s->step * (total - s->step));
    printf("step %6lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s\n", (long long)s->step,
           (long long)total, s->loss, s->lr, s->grad_norm, tokens_per_s, eta);
    fflush(stdout);
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

static int write_final_weights(trainer *t, const char *dir, ps_error *err) {
    char path[CONFIG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/model.h5", dir);
    char *text = config_text(&t->cfg);
    h5_file *f = h5_create(path, err);
    int rc = f ? h5_write_params(f, "model", &t->model.layout, &t->params, text, err) : -1;
    if (f && h5_close(f, rc == 0, rc == 0 ? err : NULL)) rc = -1;
    free(text);
    return rc;
}

static int refuse_existing_run(const char *dir, ps_error *err) {
    char path[CONFIG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    struct stat st;
    if (stat(path, &st) == 0)
        return ps_fail(err, "run.dir '%s' already holds a run (%s); pick another run.dir or move it away - "
                            "presight never writes over a run", dir, path);
    return 0;
}

int train_run(const run_config *cfg, comm *c, ps_error *err) {
    int root = comm_rank(c) == 0;
    const char *dir = cfg->run_dir;
    char path[CONFIG_STR_MAX + 32];
    if (root && (refuse_existing_run(dir, err) || make_dirs(dir, err))) return -1;
    trainer t;
    if (trainer_init(&t, cfg, c, err)) return -1;
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    if (root && run_config_write_file(cfg, path, err)) {
        trainer_free(&t);
        return -1;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *metrics = root ? fopen(path, "a") : NULL;
    if (root && !metrics) {
        trainer_free(&t);
        return ps_fail(err, "%s: cannot open for writing", path);
    }
    if (root) {
        printf("presight train: %s | %.2fM parameters | %s | %lld steps of %d x %d tokens x %d accum x %d ranks\n",
               cfg->source, t.model.layout.n_params / 1e6, blas_describe(), (long long)t.total_steps,
               cfg->train.micro_batch, cfg->train.seq_len, cfg->train.grad_accum, comm_size(c));
        printf("data: %s\n", t.data->description);
        fflush(stdout);
    }
    double start = now_seconds(), tokens = 0;
    train_step_stats s = {0};
    int rc = 0;
    while (t.step < t.total_steps) {
        if ((rc = trainer_step(&t, &s, err))) break;
        tokens += s.tokens;
        if (!root) continue;
        double elapsed = now_seconds() - start;
        fprintf(metrics,
                "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6e,\"grad_norm\":%.6f,\"tokens\":%.0f,\"tokens_per_s\":%.1f,"
                "\"elapsed_s\":%.3f}\n",
                (long long)s.step, s.loss, s.lr, s.grad_norm, tokens, s.tokens / s.seconds, elapsed);
        fflush(metrics);
        if (s.step % cfg->train.log_every == 0 || s.step == t.total_steps || s.step == 1)
            print_progress(&s, t.total_steps, elapsed, tokens / elapsed);
    }
    if (metrics) fclose(metrics);
    if (rc == 0 && root) rc = write_final_weights(&t, dir, err);
    if (rc == 0 && root) {
        snprintf(path, sizeof path, "%s/final.json", dir);
        FILE *f = fopen(path, "w");
        double elapsed = now_seconds() - start;
        if (f) {
            fprintf(f, "{\"steps\":%lld,\"final_loss\":%.6f,\"tokens\":%.0f,\"seconds\":%.3f,\"tokens_per_s\":%.1f,"
                       "\"params\":%zu}\n",
                    (long long)s.step, s.loss, tokens, elapsed, tokens / elapsed, t.model.layout.n_params);
            fclose(f);
        }
        printf("done: %lld steps, final loss %.4f, %.0f tokens in %.1fs; weights in %s/model.h5\n", (long long)s.step,
               s.loss, tokens, elapsed, dir);
    }
    trainer_free(&t);
    return rc;
}
