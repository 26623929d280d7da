/* sharding.c - DDP, ZeRO-1 and FSDP over one set of slices (see sharding.h). */
#include "sharding.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int strategy_parse(const char *name, strategy_kind *out, ps_error *err) {
    if (!strcmp(name, "ddp")) *out = STRATEGY_DDP;
    else if (!strcmp(name, "zero1")) *out = STRATEGY_ZERO1;
    else if (!strcmp(name, "fsdp")) *out = STRATEGY_FSDP;
    else return ps_fail(err, "parallel.strategy = \"%s\": allowed \"ddp\", \"zero1\", \"fsdp\"", name);
    return 0;
}

/* ------------------------------------------------------------ allocation */

static real *alloc_zeroed(sharded_state *s, size_t count) {
    real *p = NULL;
    if (posix_memalign((void **)&p, 64, (count ? count : 1) * sizeof(real))) return NULL;
    memset(p, 0, count * sizeof(real));
    s->bytes_now += count * sizeof(real);
    if (s->bytes_now > s->bytes_peak) s->bytes_peak = s->bytes_now;
    return p;
}

static void release_buffer(sharded_state *s, real **p, size_t count) {
    if (!*p) return;
    free(*p);
    *p = NULL;
    s->bytes_now -= count * sizeof(real);
}

static real **unit_array(int n) { return calloc((size_t)n, sizeof(real *)); }

static int trains(const sharded_state *s, int u) { return s->layout->units[u].trainable; }

/* Elements of the buffer frozen units' weight gradients are written into and
 * never read: the largest frozen unit, gathered (0 when every unit trains).
 * model_backward still computes them; once it leaves dw of frozen units
 * alone (the model side of issue 10) this buffer can go. */
static size_t frozen_scratch_len(const model_layout *L, const size_t *padded) {
    size_t most = 0;
    for (int u = 0; u < L->n_units; u++)
        if (!L->units[u].trainable && padded[u] > most) most = padded[u];
    return most;
}

static int hook_fail(sharded_state *s) {
    s->hook_failed = 1;
    return -1;
}

/* ------------------------------------------------------------------ fsdp */

/* The unit the model's hooks will acquire after u, or -1 (nothing to
 * prefetch). head_gathered: whether the head's unit is gathered now. Only
 * the decoder's units are walked by the model (forward 0, 1..L, head;
 * backward head, L..1, then 0 when the embedding trains and is untied: a
 * frozen one is not visited, a tied one was acquired with the head). Units
 * past the decoder's (a projector) are gathered by their caller around its
 * own use (adapt: before the forward pass and after the backward one), so
 * none is prefetched, and none prefetches: prefetching the head from the
 * projector's backward gathered it once more after its last use, to be
 * used only by the next forward, stale across an optimizer step. */
static int prefetch_after(const model_layout *L, int u, int backward, int head_gathered) {
    int head = L->llm_units - 1;
    if (u > head) return -1;
    if (backward) {
        if (u > 1) return u - 1;
        return u == 1 && !L->cfg.tied_head && L->units[0].trainable ? 0 : -1;
    }
    /* A tied head takes the embedding again at the very end of the forward
     * pass (the head is gathered then): nothing follows it. */
    if (u == 0 && head_gathered) return -1;
    return u < head ? u + 1 : -1;
}

static int next_unit(const sharded_state *s, int u, int backward) {
    return prefetch_after(s->layout, u, backward, s->params.unit[s->layout->llm_units - 1] != NULL);
}

static int start_gather(sharded_state *s, int u) {
    if (s->params.unit[u]) return 0;
    if (!(s->params.unit[u] = alloc_zeroed(s, s->padded[u])))
        return ps_fail(&s->hook_error, "out of memory gathering unit %d", u);
    s->gathers++;
    return comm_iall_gather(s->group, s->owned[u], s->params.unit[u], s->slices.shard_len[u], &s->gather_pending[u],
                            &s->hook_error);
}

static int finish_scatter(sharded_state *s, int u) {
    if (!s->scatter_pending[u]) return 0;
    int rc = comm_wait(s->scatter_pending[u], &s->hook_error);
    s->scatter_pending[u] = NULL;
    if (rc) return -1;
    s->ops->accumulate(s->owned_grad[u], s->scatter_recv[u], s->slices.shard_len[u]);
    release_buffer(s, &s->scatter_recv[u], s->slices.shard_len[u]);
    release_buffer(s, &s->grads.unit[u], s->padded[u]);
    return 0;
}

static int fsdp_acquire(void *ctx, int u, int backward) {
    sharded_state *s = ctx;
    if (s->hook_failed) return -1;
    if (start_gather(s, u)) return hook_fail(s);
    if (s->gather_pending[u]) {
        int rc = comm_wait(s->gather_pending[u], &s->hook_error);
        s->gather_pending[u] = NULL;
        if (rc) return hook_fail(s);
    }
    int next = s->prefetch ? next_unit(s, u, backward) : -1;
    if (next >= 0 && start_gather(s, next)) return hook_fail(s);
    /* With accumulation the previous micro-batch's reduce-scatter of this
     * unit may still be reading its gradient buffer: finish it first. */
    if (backward && finish_scatter(s, u)) return hook_fail(s);
    if (backward && !trains(s, u)) {
        s->grads.unit[u] = s->frozen_scratch;
        return 0;
    }
    if (backward && !s->grads.unit[u] && !(s->grads.unit[u] = alloc_zeroed(s, s->padded[u]))) {
        ps_fail(&s->hook_error, "out of memory for the gradient of unit %d", u);
        return hook_fail(s);
    }
    return 0;
}

static void fsdp_release(void *ctx, int u, int backward) {
    sharded_state *s = ctx;
    if (!backward && !s->reshard_after_forward) return;
    if (s->gather_pending[u]) return; /* a prefetch of it is in flight: keep the buffer */
    release_buffer(s, &s->params.unit[u], s->padded[u]);
}

static int fsdp_grad_ready(void *ctx, int u) {
    sharded_state *s = ctx;
    if (s->hook_failed) return -1;
    if (!trains(s, u)) return 0; /* a frozen unit's gradient goes nowhere */
    /* One reduce-scatter in flight at a time bounds the gradient memory. */
    for (int v = 0; v < s->layout->n_units; v++)
        if (finish_scatter(s, v)) return hook_fail(s);
    if (!(s->scatter_recv[u] = alloc_zeroed(s, s->slices.shard_len[u]))) {
        ps_fail(&s->hook_error, "out of memory reducing unit %d", u);
        return hook_fail(s);
    }
    if (comm_ireduce_scatter(s->group, s->grads.unit[u], s->scatter_recv[u], s->slices.shard_len[u],
                             &s->scatter_pending[u], &s->hook_error))
        return hook_fail(s);
    return 0;
}

/* ------------------------------------------------------------------ setup */

static int make_groups(sharded_state *s, const run_config *cfg, ps_error *err) {
    int world = comm_size(s->world), rank = comm_rank(s->world);
    int size = s->kind == STRATEGY_DDP ? 1 : (cfg->parallel.shard_group ? cfg->parallel.shard_group : world);
    if (world % size)
        return ps_fail(err, "parallel.shard_group = %d does not divide the %d ranks", cfg->parallel.shard_group, world);
    if (comm_split(s->world, rank / size, rank, &s->group, err)) return -1;
    if (s->kind != STRATEGY_DDP && size < world && comm_split(s->world, rank % size, rank, &s->replicas, err))
        return -1;
    return 0;
}

static int make_slices(sharded_state *s, ps_error *err) {
    const model_layout *L = s->layout;
    shard_layout *sl = &s->slices;
    sl->n_units = L->n_units;
    sl->rank = comm_rank(s->group);
    sl->world = comm_size(s->group);
    sl->unit_size = calloc((size_t)L->n_units, sizeof(size_t));
    sl->shard_len = calloc((size_t)L->n_units, sizeof(size_t));
    s->padded = calloc((size_t)L->n_units, sizeof(size_t));
    if (!sl->unit_size || !sl->shard_len || !s->padded) return ps_fail(err, "out of memory");
    for (int u = 0; u < L->n_units; u++) {
        sl->unit_size[u] = L->units[u].size;
        sl->shard_len[u] = (L->units[u].size + sl->world - 1) / sl->world;
        s->padded[u] = sl->shard_len[u] * sl->world;
    }
    return 0;
}

static int alloc_host_slices(sharded_state *s, uint64_t seed, ps_error *err);

static int alloc_state(sharded_state *s, uint64_t seed, ps_error *err) {
    if (s->host_only) return alloc_host_slices(s, seed, err);
    const model_layout *L = s->layout;
    int n = L->n_units;
    s->params.unit = unit_array(n);
    s->grads.unit = unit_array(n);
    s->owned = unit_array(n);
    s->owned_grad = unit_array(n);
    s->adam_m = unit_array(n);
    s->adam_v = unit_array(n);
    s->scatter_recv = unit_array(n);
    s->gather_pending = calloc((size_t)n, sizeof(comm_request *));
    s->scatter_pending = calloc((size_t)n, sizeof(comm_request *));
    if (!s->params.unit || !s->grads.unit || !s->owned || !s->owned_grad || !s->adam_m || !s->adam_v ||
        !s->scatter_recv || !s->gather_pending || !s->scatter_pending)
        return ps_fail(err, "out of memory");
    /* A frozen unit has parameters only: no gradient, no optimizer moments. */
    size_t scratch = frozen_scratch_len(L, s->padded);
    if (scratch && !(s->frozen_scratch = alloc_zeroed(s, scratch)))
        return ps_fail(err, "out of memory for the frozen units' scratch gradient (%zu elements)", scratch);
    for (int u = 0; u < n; u++) {
        size_t len = s->slices.shard_len[u], start = shard_start(&s->slices, u);
        int train = trains(s, u);
        if (train && (!(s->adam_m[u] = alloc_zeroed(s, len)) || !(s->adam_v[u] = alloc_zeroed(s, len))))
            return ps_fail(err, "out of memory for optimizer state (%zu elements)", len);
        if (s->kind == STRATEGY_FSDP) {
            if (!(s->owned[u] = alloc_zeroed(s, len)) || (train && !(s->owned_grad[u] = alloc_zeroed(s, len))))
                return ps_fail(err, "out of memory for unit %d's slice", u);
            model_init_range(L, u, start, start + shard_count(&s->slices, u), s->owned[u], seed);
            continue;
        }
        if (!(s->params.unit[u] = alloc_zeroed(s, s->padded[u])) ||
            (train && !(s->grads.unit[u] = alloc_zeroed(s, s->padded[u]))))
            return ps_fail(err, "out of memory for unit %d (%zu elements)", u, s->padded[u]);
        model_init_range(L, u, 0, L->units[u].size, s->params.unit[u], seed);
        s->owned[u] = s->params.unit[u] + start;
        if (!train) s->grads.unit[u] = s->frozen_scratch;
        else if (s->kind == STRATEGY_DDP) s->owned_grad[u] = s->grads.unit[u];
        else if (!(s->owned_grad[u] = alloc_zeroed(s, len))) return ps_fail(err, "out of memory");
    }
    return 0;
}

/* The owned slices and their AdamW moments only: the host copy of a state
 * that lives on the GPU (checkpoints read and write it). */
static int alloc_host_slices(sharded_state *s, uint64_t seed, ps_error *err) {
    const model_layout *L = s->layout;
    int n = L->n_units;
    s->owned = unit_array(n);
    s->adam_m = unit_array(n);
    s->adam_v = unit_array(n);
    if (!s->owned || !s->adam_m || !s->adam_v) return ps_fail(err, "out of memory");
    for (int u = 0; u < n; u++) {
        size_t len = s->slices.shard_len[u], start = shard_start(&s->slices, u);
        if (!(s->owned[u] = alloc_zeroed(s, len)) || !(s->adam_m[u] = alloc_zeroed(s, len)) ||
            !(s->adam_v[u] = alloc_zeroed(s, len)))
            return ps_fail(err, "out of memory for unit %d's slice (%zu elements)", u, len);
        model_init_range(L, u, start, start + shard_count(&s->slices, u), s->owned[u], seed);
    }
    return 0;
}

static int sharded_setup(sharded_state *s, const run_config *cfg, const model_layout *L, const backend_ops *ops,
                         comm *world, int host_only, ps_error *err) {
    memset(s, 0, sizeof *s);
    s->host_only = host_only;
    s->layout = L;
    s->ops = ops;
    s->world = world;
    s->reshard_after_forward = cfg->parallel.reshard_after_forward;
    s->prefetch = cfg->parallel.prefetch;
    if (strategy_parse(cfg->parallel.strategy, &s->kind, err) || make_groups(s, cfg, err) || make_slices(s, err) ||
        alloc_state(s, (uint64_t)cfg->train.seed, err)) {
        sharded_free(s);
        return -1;
    }
    s->hooks = (model_hooks){s, fsdp_acquire, fsdp_release, fsdp_grad_ready};
    return 0;
}

int sharded_init(sharded_state *s, const run_config *cfg, const model_layout *L, const backend_ops *ops, comm *world,
                 ps_error *err) {
    return sharded_setup(s, cfg, L, ops, world, 0, err);
}

int sharded_init_host(sharded_state *s, const run_config *cfg, const model_layout *L, comm *world, ps_error *err) {
    return sharded_setup(s, cfg, L, NULL, world, 1, err);
}

void sharded_free(sharded_state *s) {
    int n = s->slices.n_units;
    for (int u = 0; u < n; u++) {
        ps_error ignored;
        if (s->gather_pending && s->gather_pending[u]) comm_wait(s->gather_pending[u], &ignored);
        if (s->scatter_pending && s->scatter_pending[u]) comm_wait(s->scatter_pending[u], &ignored);
        if (s->params.unit) free(s->params.unit[u]);
        if (s->grads.unit && s->grads.unit[u] != s->frozen_scratch) free(s->grads.unit[u]);
        if ((s->kind == STRATEGY_FSDP || s->host_only) && s->owned) free(s->owned[u]);
        if (s->kind != STRATEGY_DDP && s->owned_grad) free(s->owned_grad[u]);
        if (s->adam_m) free(s->adam_m[u]);
        if (s->adam_v) free(s->adam_v[u]);
        if (s->scatter_recv) free(s->scatter_recv[u]);
    }
    free(s->frozen_scratch);
    free(s->params.unit);
    free(s->grads.unit);
    free(s->owned);
    free(s->owned_grad);
    free(s->adam_m);
    free(s->adam_v);
    free(s->scatter_recv);
    free(s->gather_pending);
    free(s->scatter_pending);
    free(s->slices.unit_size);
    free(s->slices.shard_len);
    free(s->padded);
    comm_free(s->group);
    comm_free(s->replicas);
    memset(s, 0, sizeof *s);
}

const model_hooks *sharded_hooks(sharded_state *s) { return s->kind == STRATEGY_FSDP ? &s->hooks : NULL; }

/* ------------------------------------------------------------------- step */

void sharded_begin_step(sharded_state *s) {
    for (int u = 0; u < s->slices.n_units; u++) {
        if (!trains(s, u)) continue;
        if (s->kind != STRATEGY_FSDP) s->ops->zero(s->grads.unit[u], s->padded[u]);
        if (s->kind != STRATEGY_DDP) s->ops->zero(s->owned_grad[u], s->slices.shard_len[u]);
    }
}

int sharded_reduce_gradients(sharded_state *s, ps_error *err) {
    const int n = s->slices.n_units;
    if (s->hook_failed) return ps_fail(err, "%s", s->hook_error.msg);
    for (int u = 0; u < n; u++) {
        if (!trains(s, u)) continue; /* frozen: nothing to reduce */
        switch (s->kind) {
        case STRATEGY_DDP:
            if (comm_all_reduce_sum(s->world, s->grads.unit[u], s->layout->units[u].size, err)) return -1;
            break;
        case STRATEGY_ZERO1:
            if (comm_reduce_scatter(s->group, s->grads.unit[u], s->owned_grad[u], s->slices.shard_len[u], err))
                return -1;
            break;
        case STRATEGY_FSDP:
            if (finish_scatter(s, u)) return ps_fail(err, "%s", s->hook_error.msg);
            break;
        }
        if (s->replicas && comm_all_reduce_sum(s->replicas, s->owned_grad[u], s->slices.shard_len[u], err)) return -1;
    }
    return 0;
}

int sharded_grad_norm(sharded_state *s, double *norm, ps_error *err) {
    double sum = 0;
    for (int u = 0; u < s->slices.n_units; u++)
        if (trains(s, u)) sum += s->ops->sum_squares(s->owned_grad[u], s->slices.shard_len[u]);
    /* Slices of one group partition the model; replicas hold the same sums. */
    if (s->slices.world > 1 && comm_all_reduce_sum_double(s->group, &sum, 1, err)) return -1;
    *norm = sqrt(sum);
    return 0;
}

int sharded_optimizer_step(sharded_state *s, const train_config *t, double lr, int64_t step, double grad_scale,
                           ps_error *err) {
    const model_layout *L = s->layout;
    for (int i = 0; i < L->n_tensors; i++) {
        const model_tensor *tensor = &L->tensors[i];
        int u = tensor->unit;
        if (!trains(s, u)) continue; /* frozen: the weights stay bit-identical */
        size_t start = shard_start(&s->slices, u), end = start + shard_count(&s->slices, u);
        size_t t_begin = tensor->offset, t_end = t_begin + (size_t)tensor->rows * tensor->cols;
        size_t lo = t_begin > start ? t_begin : start, hi = t_end < end ? t_end : end;
        if (lo >= hi) continue;
        size_t at = lo - start;
        s->ops->adamw_update(s->owned[u] + at, s->owned_grad[u] + at, s->adam_m[u] + at, s->adam_v[u] + at, hi - lo,
                             (float)lr, (float)t->beta1, (float)t->beta2, (float)t->adam_eps,
                             model_tensor_decays(tensor) ? (float)t->weight_decay : 0.0f, step, (float)grad_scale);
    }
    return sharded_after_load(s, err);
}

int sharded_after_load(sharded_state *s, ps_error *err) {
    if (s->kind != STRATEGY_ZERO1 || s->host_only) return 0;
    for (int u = 0; u < s->slices.n_units; u++)
        if (comm_all_gather(s->group, s->owned[u], s->params.unit[u], s->slices.shard_len[u], err)) return -1;
    return 0;
}

shard_view sharded_view(sharded_state *s) {
    shard_view v;
    v.layout = &s->slices;
    v.params = s->owned;
    v.m = s->adam_m;
    v.v = s->adam_v;
    if (s->kind == STRATEGY_DDP) v.writer = comm_rank(s->world) == 0;
    else v.writer = !s->replicas || comm_rank(s->replicas) == 0;
    return v;
}

/* ---------------------------------------------------------------- memory */

/* The allocations above, replayed without memory: the same buffers in the
 * same order as sharded_init, the fsdp hooks (in the order model_forward and
 * model_backward call them) and sharded_reduce_gradients make, with their
 * sizes, so bytes_peak of a real run equals what this returns. */
typedef struct mem_replay {
    const model_layout *L;
    int n, reshard, prefetch;
    const size_t *len, *padded;         /* [units] slice and gathered sizes, elements */
    char *params, *gathering, *grads, *scattering; /* [units] flags */
    size_t now, peak;                   /* bytes */
} mem_replay;

static void replay_add(mem_replay *r, size_t elements) {
    r->now += elements * sizeof(real);
    if (r->now > r->peak) r->peak = r->now;
}
static void replay_sub(mem_replay *r, size_t elements) { r->now -= elements * sizeof(real); }

static void replay_gather(mem_replay *r, int u) {
    if (r->params[u]) return;
    r->params[u] = r->gathering[u] = 1;
    replay_add(r, r->padded[u]);
}

static void replay_acquire(mem_replay *r, int u, int backward) {
    replay_gather(r, u);
    r->gathering[u] = 0;
    int next = r->prefetch ? prefetch_after(r->L, u, backward, r->params[r->L->llm_units - 1]) : -1;
    if (next >= 0) replay_gather(r, next);
    if (backward && !r->grads[u] && r->L->units[u].trainable) {
        r->grads[u] = 1;
        replay_add(r, r->padded[u]);
    }
}

static void replay_release(mem_replay *r, int u, int backward) {
    if ((!backward && !r->reshard) || r->gathering[u] || !r->params[u]) return;
    r->params[u] = 0;
    replay_sub(r, r->padded[u]);
}

static void replay_finish_scatters(mem_replay *r) {
    for (int u = 0; u < r->n; u++) {
        if (!r->scattering[u]) continue;
        r->scattering[u] = 0;
        replay_sub(r, r->len[u]);
        if (r->grads[u]) replay_sub(r, r->padded[u]);
        r->grads[u] = 0;
    }
}

static void replay_grad_ready(mem_replay *r, int u) {
    if (!r->L->units[u].trainable) return;
    replay_finish_scatters(r);
    r->scattering[u] = 1;
    replay_add(r, r->len[u]);
}

static int replay_trains(const mem_replay *r, int u) { return r->L->units[u].trainable; }

/* model_backward_batch's test for visiting block l and below: some unit
 * below trains, or the embedding rows' gradient flows (an extra unit, the
 * projector, trains: every micro-batch is taken to hold a picture). */
static int replay_grad_below(const mem_replay *r, int l) {
    for (int u = r->L->llm_units; u < r->n; u++)
        if (replay_trains(r, u)) return 1;
    for (int u = 0; u <= l; u++)
        if (replay_trains(r, u)) return 1;
    return 0;
}

/* One micro-batch as adapt drives it, which is model_forward then
 * model_backward when the layout has no extra unit: each extra unit (the
 * projector) is acquired before the forward pass and released after the
 * backward one (with its gradient when it trains); a frozen extra unit is
 * not used at all (the blind stage's projector). */
static void replay_micro_batch(mem_replay *r) {
    int head = r->L->llm_units - 1, tied = r->L->cfg.tied_head;
    for (int u = head + 1; u < r->n; u++)
        if (replay_trains(r, u)) replay_acquire(r, u, 0);
    replay_acquire(r, 0, 0);
    replay_release(r, 0, 0);
    for (int u = 1; u < head; u++) {
        replay_acquire(r, u, 0);
        replay_release(r, u, 0);
    }
    replay_acquire(r, head, 0);
    if (tied) replay_acquire(r, 0, 0);
    if (tied) replay_release(r, 0, 0);
    replay_release(r, head, 0);

    int head_trains = tied ? replay_trains(r, 0) : replay_trains(r, head);
    if (head_trains || replay_trains(r, head) || replay_grad_below(r, head - 1)) {
        replay_acquire(r, head, 1);
        if (tied) replay_acquire(r, 0, 1);
        replay_grad_ready(r, head);
        replay_release(r, head, 1);
        int u = head - 1;
        for (; u >= 1 && (replay_trains(r, u) || replay_grad_below(r, u - 1)); u--) {
            replay_acquire(r, u, 1);
            replay_grad_ready(r, u);
            replay_release(r, u, 1);
        }
        if (u < 1 && replay_trains(r, 0)) {
            if (!tied) replay_acquire(r, 0, 1);
            replay_grad_ready(r, 0);
            replay_release(r, 0, 1);
        } else if (tied) {
            replay_release(r, 0, 1);
        }
    }
    for (int u = head + 1; u < r->n; u++) {
        if (!replay_trains(r, u)) continue;
        replay_acquire(r, u, 1);
        replay_grad_ready(r, u);
        replay_release(r, u, 1);
    }
}

size_t sharded_state_bytes(const model_layout *L, strategy_kind kind, int group_size, int reshard_after_forward,
                           int prefetch) {
    return sharded_state_bytes_accum(L, kind, group_size, reshard_after_forward, prefetch, 2);
}

size_t sharded_state_bytes_accum(const model_layout *L, strategy_kind kind, int group_size, int reshard_after_forward,
                                 int prefetch, int grad_accum) {
    int n = L->n_units, g = kind == STRATEGY_DDP || group_size < 1 ? 1 : group_size;
    size_t *len = calloc((size_t)n, sizeof *len), *padded = calloc((size_t)n, sizeof *padded);
    char *flags = calloc((size_t)n, 4);
    size_t peak = 0;
    if (!len || !padded || !flags) goto done;
    mem_replay r = {L, n, reshard_after_forward, prefetch, len, padded, flags, flags + n, flags + 2 * n, flags + 3 * n,
                    0, 0};
    for (int u = 0; u < n; u++) {
        len[u] = (L->units[u].size + (size_t)g - 1) / (size_t)g;
        padded[u] = len[u] * (size_t)g;
    }
    replay_add(&r, frozen_scratch_len(L, padded));
    for (int u = 0; u < n; u++) {
        size_t train = L->units[u].trainable ? 1 : 0; /* frozen: the parameters alone */
        replay_add(&r, 2 * len[u] * train); /* AdamW m, v */
        if (kind == STRATEGY_FSDP) replay_add(&r, (1 + train) * len[u]); /* owned slice and its gradient */
        else replay_add(&r, (1 + train) * padded[u] + (kind == STRATEGY_ZERO1 ? len[u] * train : 0)); /* full units (+ owned grad) */
    }
    if (kind == STRATEGY_FSDP) {
        /* Two micro-batches: with accumulation the last reduce-scatter of one
         * is still in flight during the next one's forward pass; without, the
         * step's sharded_reduce_gradients finishes it first. */
        replay_micro_batch(&r);
        if (grad_accum < 2) replay_finish_scatters(&r);
        replay_micro_batch(&r);
        replay_finish_scatters(&r);
    }
    peak = r.peak;
done:
    free(len);
    free(padded);
    free(flags);
    return peak;
}
