/* engine.cu - the GPU trainer behind stages/gpu_engine.h (read that first).
 *
 * One rank, one GPU. Every unit (core/model.h) has on the device:
 *   master, m, v, gslice   fp32, this rank's slice (shard.h), what AdamW reads and writes;
 *   w                      bf16, the whole unit, what the GEMMs read: always present
 *                          under ddp and zero1, gathered from wslice (the bf16 copy of
 *                          every rank's slice) just before use under fsdp;
 *   g                      fp32, the whole unit's gradient: always present under ddp
 *                          (where it is gslice) and zero1, only from the unit's backward
 *                          to its reduce-scatter under fsdp.
 * The forward and backward pass is core/model.c's, op for op (cuda/block.cuh),
 * on a model_batch (token rows, embedding rows, positions, sample ids);
 * greedy decoding keeps its KV cache on the device, and a projector unit
 * (core/projector.h) runs and trains here too.
 * A frozen unit has master and w (or wslice) only: no g, gslice, m, v.
 *
 * Two streams. Compute runs on gpu.h's stream; collectives on `side`. Before
 * a collective touches a buffer the side stream waits for an event recorded
 * on the compute stream (so the buffer's producer is done), and the compute
 * stream waits for the collective's event before it reads the result. A
 * buffer the side stream used is freed only after the compute stream has
 * waited for it, so the caching allocator's stream-ordered reuse stays safe.
 * fsdp keeps one reduce-scatter in flight (bounded memory) and gathers one
 * unit ahead (parallel.prefetch). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "block.cuh"
#include "gpu_internal.cuh"

extern "C" {
#include "gpu_engine.h"
#include "sharding.h"
}

static_assert(sizeof(real) == sizeof(float), "the GPU engine exchanges fp32 slices with the host");
static_assert(GPU_ENGINE_ID_BYTES == GPU_COMM_ID_BYTES, "NCCL id size");

namespace {

struct Unit {
    size_t size, len, padded, start; /* elements: unit, slice (padded), whole padded unit, slice offset */
    float *master, *m, *v, *gslice;
    gpu_bf16 *wslice, *w;
    float *g, *recv;
    cudaEvent_t gathered, reduced;
    bool gathering, reducing;
    bool trains;
};

/* The projector (core/projector.h) when the layout has one: its unit and
 * tensors, and what its backward keeps from the forward (bf16, [n] rows). */
struct Projector {
    int unit = -1, w0, b0, w2, b2, in_dim;
    int n = 0, cap = 0;
    gpu_bf16 *feat = NULL, *h = NULL, *g = NULL, *y = NULL; /* [n, in_dim], [n, D] x 3 */
    float *f32 = NULL;                                     /* host <-> device staging [n, max(in_dim, D)] */
};

/* A forward's hidden-state pooling (model_batch.hidden), on the device. */
struct Pool {
    double *out;       /* [n_groups][layers + 1][D] sums */
    const int *group;  /* [n] */
};

} // namespace

struct gpu_engine {
    gpu_engine_setup s;
    Dims d;
    int kind, n_units, last, tied; /* last: the head's unit (layout.llm_units - 1) */
    std::vector<Unit> units;
    gpu_comm *comm;     /* gathers and reductions: the shard group, or every rank under ddp */
    gpu_comm *replica;  /* hybrid sharding: the same slices on other groups; NULL otherwise */
    cudaStream_t side;
    cudaEvent_t compute_mark;
    std::vector<gpu_bf16 *> x; /* [layers + 1]: block inputs, then the last block's output */
    std::vector<BlockActs> acts;
    Scratch sc;
    gpu_bf16 *lnf, *logits;
    float *rstdf, *cos_sin;
    int *pos, *tokens, *targets;  /* device, [grad_accum * n] */
    int *h_tokens, *h_targets;    /* pinned staging of the same */
    double *loss, *sumsq;         /* device, [grad_accum], [n_units] */
    int *n_valid;
    std::vector<int> valid;       /* counted targets per micro-batch (known on the host) */
    std::vector<double> divisor;  /* what each micro-batch's loss sum is divided by */
    /* Packed batches, allocated on first use (pretraining never needs them):
     * positions, sample ids, embedding rows' row indices, pooling groups [n];
     * embeds and their gradient [n, D]; log-probs [n]. */
    int *bpos, *bsample, *brows, *bgroup;
    float *bembeds, *bgrad;
    double *blogp;
    int n_rows; /* embedding rows of the current batch */
    Projector pj;
    ps_error err;
    int failed;
    long long mallocs_at_step;
    long long step_mallocs;
    size_t device_used; /* most seen, sampled when a step's backward is done */
    char desc[512];
};

namespace {

int efail(gpu_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int efail(gpu_engine *e, const char *fmt, ...) {
    if (e->failed) return -1;
    e->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err.msg, sizeof e->err.msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Collects the first failure: the engine's own, or an op's recorded error.
 * Running out of memory is the usual one: say what to change. */
int check(gpu_engine *e, ps_error *err) {
    if (!e->failed) {
        ps_error op;
        if (gpu_error(&op)) efail(e, "%s", op.msg);
    }
    if (!e->failed) return 0;
    int oom = strstr(e->err.msg, "out of GPU memory") || strstr(e->err.msg, "cudaMalloc failed");
    return ps_fail(err, "GPU: %s%s", e->err.msg,
                   oom ? ". `presight plan CONFIG` shows the memory per GPU by part: lower train.micro_batch "
                         "(raise train.grad_accum to keep the batch), set parallel.recompute_blocks = true, or "
                         "shard over more GPUs (parallel.strategy = \"fsdp\")"
                       : "");
}

template <class T> T *dev_alloc(gpu_engine *e, size_t count, const char *what) {
    T *p = (T *)gpu_malloc(count * sizeof(T));
    if (!p) {
        ps_error why;
        why.msg[0] = 0;
        gpu_error(&why);
        efail(e, "out of GPU memory for %s (%zu bytes): %s", what, count * sizeof(T), why.msg);
    }
    return p;
}

__global__ void add_f32_kernel(float *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

void add_f32(float *y, const float *x, size_t n) {
    if (!n) return;
    LAUNCH(add_f32_kernel, grid_1d(n, 256, 132 * 16), 256, 0, gpu_stream_(), y, x, n);
    gpu_after_launch("engine add_f32");
}

/* ------------------------------------------------------- stream ordering */

void side_after_compute(gpu_engine *e) {
    cudaEventRecord(e->compute_mark, gpu_stream_());
    cudaStreamWaitEvent(e->side, e->compute_mark, 0);
}

void compute_after(cudaEvent_t ev) { cudaStreamWaitEvent(gpu_stream_(), ev, 0); }

/* ----------------------------------------------------------- collectives */

/* Unit u's bf16 slices of every rank into u.w, on the side stream. */
int start_gather(gpu_engine *e, int ui) {
    Unit &u = e->units[ui];
    if (u.w) return 0; /* present, or in flight */
    if (!(u.w = dev_alloc<gpu_bf16>(e, u.padded, "a gathered unit"))) return -1;
    side_after_compute(e);
    ps_error why;
    if (e->comm) {
        if (gpu_all_gather(e->comm, u.wslice, u.w, u.len, GPU_BF16, &why)) return efail(e, "%s", why.msg);
    } else {
        cudaMemcpyAsync(u.w, u.wslice, u.len * sizeof(gpu_bf16), cudaMemcpyDeviceToDevice, e->side);
    }
    cudaEventRecord(u.gathered, e->side);
    u.gathering = true;
    return 0;
}

void wait_gather(Unit &u) {
    if (!u.gathering) return;
    compute_after(u.gathered);
    u.gathering = false;
}

/* Whether a reduce-scatter can write the gradient slice itself: when it is
 * the step's only one for the unit (zero1; fsdp without accumulation), the
 * slice, zero before, simply receives it: no receive buffer, no addition. */
bool scatter_into_slice(const gpu_engine *e) { return e->kind == STRATEGY_ZERO1 || e->s.grad_accum == 1; }

/* The reduction of unit u's gradient has been consumed: free what it used. */
void finish_reduction(gpu_engine *e, int ui) {
    Unit &u = e->units[ui];
    if (!u.reducing) return;
    compute_after(u.reduced);
    u.reducing = false;
    if (e->kind == STRATEGY_DDP) return; /* all-reduced in place: g is gslice */
    if (u.recv) add_f32(u.gslice, u.recv, u.len);
    gpu_free(u.recv);
    u.recv = NULL;
    if (e->kind == STRATEGY_FSDP) {
        gpu_free(u.g);
        u.g = NULL;
    }
}

void finish_reductions(gpu_engine *e) {
    for (int ui = 0; ui < e->n_units; ui++) finish_reduction(e, ui);
}

/* Unit u's gradient is complete for this micro-batch: reduce it when the
 * strategy wants it now (fsdp: every micro-batch; ddp, zero1: the last). */
int reduce_gradient(gpu_engine *e, int ui, int last_micro_batch) {
    Unit &u = e->units[ui];
    ps_error why;
    if (e->kind != STRATEGY_FSDP && !last_micro_batch) return 0;
    if (e->kind == STRATEGY_DDP) {
        if (!e->comm) return 0;
        side_after_compute(e);
        if (gpu_all_reduce(e->comm, u.g, u.g, u.size, GPU_F32, &why)) return efail(e, "%s", why.msg);
    } else {
        if (e->kind == STRATEGY_FSDP) finish_reductions(e); /* one in flight */
        float *out = u.gslice;
        if (!scatter_into_slice(e) && !(out = u.recv = dev_alloc<float>(e, u.len, "a reduce-scatter slice")))
            return -1;
        side_after_compute(e);
        if (e->comm) {
            if (gpu_reduce_scatter(e->comm, u.g, out, u.len, GPU_F32, &why)) return efail(e, "%s", why.msg);
        } else {
            cudaMemcpyAsync(out, u.g, u.len * sizeof(float), cudaMemcpyDeviceToDevice, e->side);
        }
    }
    cudaEventRecord(u.reduced, e->side);
    u.reducing = true;
    return 0;
}

/* ------------------------------------------------------- unit lifecycle */

/* The unit the passes want after u: forward 0, 1..L, last; backward the reverse. */
int next_unit(const gpu_engine *e, int ui, int backward) {
    if (ui > e->last) return -1; /* an extra unit (the projector) is used on its own */
    if (backward) return ui > 0 ? ui - 1 : -1;
    return ui + 1 <= e->last ? ui + 1 : -1;
}

/* Makes unit u's weights (and in backward its gradient buffer) usable on the compute stream. */
int acquire(gpu_engine *e, int ui, int backward) {
    Unit &u = e->units[ui];
    if (e->kind == STRATEGY_FSDP) {
        if (start_gather(e, ui)) return -1;
        wait_gather(u);
        int next = e->s.prefetch ? next_unit(e, ui, backward) : -1;
        if (next >= 0 && start_gather(e, next)) return -1;
        /* With accumulation this unit's previous reduce-scatter may still read
         * g (a tied head's embedding): finish it, which frees g, first. */
        if (backward) finish_reduction(e, ui);
        if (backward && u.trains && !u.g) {
            if (!(u.g = dev_alloc<float>(e, u.padded, "a unit's gradient"))) return -1;
            gpu_zero(u.g, u.padded * sizeof(float));
        }
    }
    return e->failed ? -1 : 0;
}

void release(gpu_engine *e, int ui, int backward) {
    Unit &u = e->units[ui];
    if (e->kind != STRATEGY_FSDP || u.gathering) return;
    if (!backward && (!e->s.reshard_after_forward || (ui == 0 && e->tied))) return; /* a tied head reads it again */
    gpu_free(u.w);
    u.w = NULL;
}

/* ---------------------------------------------------------- the passes */

BlockActs &block_acts(gpu_engine *e, int l) {
    BlockActs &a = e->acts[e->s.recompute_blocks ? 0 : l];
    a.x = e->x[l];
    a.x_out = e->x[l + 1];
    return a;
}

/* Level `level` of the pooled hidden states: the sums of x's rows per group. */
void pool_level(const gpu_engine *e, const Pool *pool, const gpu_bf16 *x, int level) {
    if (!pool) return;
    const Dims &d = e->d;
    gpu_pool_sum(pool->out + (size_t)level * d.D, (size_t)(d.layers + 1) * d.D, x, pool->group, d.n, d.D);
}

/* Embedding (token rows; embedding rows from bembeds), the blocks; the head's
 * unit is acquired and held at the end. */
int forward(gpu_engine *e, const int *tokens, const Pool *pool) {
    const Dims &d = e->d;
    OpMarks *marks = (OpMarks *)e->s.op_marks;
    if (acquire(e, 0, 0)) return -1;
    gpu_embedding_forward(e->x[0], tokens, e->units[0].w, d.n, d.D); /* token -1: a zero row */
    release(e, 0, 0);
    if (e->n_rows) gpu_rows_scatter(e->x[0], e->bembeds, e->brows, e->n_rows, d.D);
    MARK("embedding");
    pool_level(e, pool, e->x[0], 0);
    for (int l = 0; l < d.layers; l++) {
        if (acquire(e, 1 + l, 0)) return -1;
        block_fwd(d, block_view(e->units[1 + l].w, d), block_acts(e, l), marks);
        release(e, 1 + l, 0);
        if (l + 1 < d.layers) pool_level(e, pool, e->x[l + 1], l + 1);
    }
    return acquire(e, e->last, 0);
}

/* The final norm and the logits (the head's unit held from the forward). */
void head_forward(gpu_engine *e) {
    const Dims &d = e->d;
    OpMarks *marks = (OpMarks *)e->s.op_marks;
    Unit &top = e->units[e->last];
    gpu_bf16 *head = e->tied ? e->units[0].w : top.w + d.D;
    gpu_rmsnorm_forward(e->lnf, e->rstdf, e->x[d.layers], top.w, d.n, d.D, d.eps);
    MARK("rmsnorm");
    gpu_matmul_forward(e->logits, e->lnf, head, NULL, d.n, d.D, d.V);
    MARK("gemm head");
}

/* Does anything below block l (l = layers: below the head) need d(input)?
 * As core/model.c: a trainable unit there, or the embedding rows' gradient. */
bool needs_grad_below(const gpu_engine *e, int l, bool want_embeds_grad) {
    if (e->units[0].trains || (want_embeds_grad && e->n_rows)) return true;
    for (int j = 0; j < l; j++)
        if (e->units[1 + j].trains) return true;
    return false;
}

/* Head, loss and the backward pass; the last unit is held from the forward.
 * Frozen units get no weight gradients (NULL views), and the pass stops
 * below the lowest block that still needs one (or d embeds). */
int backward(gpu_engine *e, int k, const int *tokens, const int *targets, float loss_scale, bool want_embeds_grad) {
    const Dims &d = e->d;
    OpMarks *marks = (OpMarks *)e->s.op_marks;
    int last = e->last, last_mb = k == e->s.grad_accum - 1;
    Unit &top = e->units[last];
    gpu_bf16 *normw = top.w, *head = e->tied ? e->units[0].w : top.w + d.D;
    head_forward(e);
    int valid = e->valid[k];
    gpu_cross_entropy(e->logits, targets, d.n, d.V, -1, valid ? (float)(loss_scale / e->divisor[k]) : 0.f,
                      e->loss + k, e->n_valid + k);
    MARK("cross-entropy (fwd+bwd)");
    /* No counted target: no gradient (grad_scale 0 leaves the logits in place). */
    if (!valid) gpu_zero(e->logits, (size_t)d.n * d.V * sizeof(gpu_bf16));
    bool head_trains = e->tied ? e->units[0].trains : top.trains;
    if (!head_trains && !top.trains && !needs_grad_below(e, d.layers, want_embeds_grad)) {
        release(e, last, 1);
        if (e->tied) release(e, 0, 1);
        return e->failed ? -1 : 0; /* nothing to compute */
    }

    if (acquire(e, last, 1) || (e->tied && acquire(e, 0, 1))) return -1;
    float *g_norm = top.trains ? top.g : NULL;
    float *g_head = !head_trains ? NULL : e->tied ? e->units[0].g : top.g + d.D;
    gpu_matmul_backward(e->sc.dln, g_head, e->logits, e->lnf, head, d.n, d.D, d.V);
    MARK("gemm head bwd");
    gpu_zero(e->sc.dx, (size_t)d.n * d.D * sizeof(gpu_bf16));
    gpu_rmsnorm_backward(e->sc.dx, g_norm, e->sc.dln, e->x[d.layers], normw, e->rstdf, d.n, d.D);
    MARK("rmsnorm bwd");
    if (top.trains && reduce_gradient(e, last, last_mb)) return -1;
    release(e, last, 1);
    int l = d.layers - 1;
    for (; l >= 0 && (e->units[1 + l].trains || needs_grad_below(e, l, want_embeds_grad)); l--) {
        int ui = 1 + l;
        Unit &u = e->units[ui];
        if (acquire(e, ui, 1)) return -1;
        BlockW<gpu_bf16> w = block_view(u.w, d);
        BlockActs &a = block_acts(e, l);
        if (e->s.recompute_blocks) block_fwd(d, w, a, marks); /* writes x[l+1] again, identically */
        block_bwd(d, w, block_view(u.trains ? u.g : (float *)NULL, d), a, e->sc, marks);
        if (u.trains && reduce_gradient(e, ui, last_mb)) return -1;
        release(e, ui, 1);
    }
    if (l < 0 && e->units[0].trains) { /* every block was visited: dx is d(embedding output) */
        if (acquire(e, 0, 1)) return -1;
        gpu_embedding_backward(e->units[0].g, e->sc.dx, tokens, d.n, d.D);
        MARK("embedding bwd");
        if (reduce_gradient(e, 0, last_mb)) return -1;
        release(e, 0, 1);
    } else if (e->tied) {
        release(e, 0, 1);
    }
    if (l < 0 && want_embeds_grad && e->n_rows) gpu_rows_gather(e->bgrad, e->sc.dx, e->brows, e->n_rows, d.D);
    return e->failed ? -1 : 0;
}

void zero_gradients(gpu_engine *e) {
    for (Unit &u : e->units) {
        if (u.g) gpu_zero(u.g, u.padded * sizeof(float));
        if (u.gslice && u.gslice != u.g) gpu_zero(u.gslice, u.len * sizeof(float));
    }
}

/* ------------------------------------------------------------ set-up */

int alloc_unit(gpu_engine *e, int ui) {
    const shard_layout *sl = e->s.slices;
    Unit &u = e->units[ui];
    u.size = sl->unit_size[ui];
    u.len = sl->shard_len[ui];
    u.padded = u.len * (size_t)sl->world;
    u.start = (size_t)sl->rank * u.len;
    u.trains = e->s.layout->units[ui].trainable != 0;
    if (!(u.master = dev_alloc<float>(e, u.len, "master weights"))) return -1;
    if (u.trains && (!(u.m = dev_alloc<float>(e, u.len, "AdamW m")) || !(u.v = dev_alloc<float>(e, u.len, "AdamW v"))))
        return -1;
    if (e->kind == STRATEGY_FSDP) {
        if ((u.trains && !(u.gslice = dev_alloc<float>(e, u.len, "a gradient slice"))) ||
            !(u.wslice = dev_alloc<gpu_bf16>(e, u.len, "a bf16 slice")))
            return -1;
        gpu_zero(u.wslice, u.len * sizeof(gpu_bf16)); /* the padding stays zero */
    } else {
        if (!(u.w = dev_alloc<gpu_bf16>(e, u.padded, "bf16 weights")) ||
            (u.trains && !(u.g = dev_alloc<float>(e, u.padded, "gradients"))))
            return -1;
        gpu_zero(u.w, u.padded * sizeof(gpu_bf16));
        if (u.trains) {
            u.gslice = e->kind == STRATEGY_DDP ? u.g : dev_alloc<float>(e, u.len, "a gradient slice");
            if (!u.gslice) return -1;
        }
    }
    if (cudaEventCreateWithFlags(&u.gathered, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&u.reduced, cudaEventDisableTiming) != cudaSuccess)
        return efail(e, "cudaEventCreate failed");
    return 0;
}

int alloc_activations(gpu_engine *e) {
    const Dims &d = e->d;
    size_t n = d.n;
    e->x.assign(d.layers + 1, NULL);
    for (gpu_bf16 *&p : e->x)
        if (!(p = dev_alloc<gpu_bf16>(e, n * d.D, "block inputs"))) return -1;
    e->acts.resize(e->s.recompute_blocks ? 1 : d.layers);
    for (BlockActs &a : e->acts)
        if (alloc_block_acts(d, a, NULL, NULL)) return efail(e, "out of GPU memory for activations");
    if (alloc_scratch(d, e->sc)) return efail(e, "out of GPU memory for activation gradients");
    int accum = e->s.grad_accum;
    e->lnf = dev_alloc<gpu_bf16>(e, n * d.D, "the final norm");
    e->logits = dev_alloc<gpu_bf16>(e, n * d.V, "logits");
    e->rstdf = dev_alloc<float>(e, n, "the final norm");
    e->tokens = dev_alloc<int>(e, n * accum, "tokens");
    e->targets = dev_alloc<int>(e, n * accum, "targets");
    e->loss = dev_alloc<double>(e, accum + 1, "losses"); /* [accum]: forward_batch's */
    e->n_valid = dev_alloc<int>(e, accum + 1, "losses");
    e->sumsq = dev_alloc<double>(e, e->n_units, "the gradient norm");
    if (e->failed) return -1;
    if (cudaMallocHost((void **)&e->h_tokens, n * accum * sizeof(int)) != cudaSuccess ||
        cudaMallocHost((void **)&e->h_targets, n * accum * sizeof(int)) != cudaSuccess)
        return efail(e, "cudaMallocHost failed for the token staging buffers");
    e->valid.assign(accum, 0);
    e->divisor.assign(accum, 0.0);
    return 0;
}

int alloc_rope(gpu_engine *e, const model_config &c, ps_error *err) {
    std::vector<float> table = rope_table(c.context, e->d.hd, c.rope_theta);
    std::vector<int> pos(e->d.n);
    for (int i = 0; i < e->d.n; i++) pos[i] = i % e->d.S;
    if (!(e->cos_sin = dev_alloc<float>(e, table.size(), "the RoPE table")) ||
        !(e->pos = dev_alloc<int>(e, pos.size(), "positions")))
        return -1;
    if (gpu_copy_to_device(e->cos_sin, table.data(), table.size() * sizeof(float), err) ||
        gpu_copy_to_device(e->pos, pos.data(), pos.size() * sizeof(int), err))
        return -1;
    e->d.cos_sin = e->cos_sin;
    e->d.pos = e->pos;
    return 0;
}

int open_comm(gpu_engine *e, ps_error *err) {
    if (cudaStreamCreateWithFlags(&e->side, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreateWithFlags(&e->compute_mark, cudaEventDisableTiming) != cudaSuccess)
        return ps_fail(err, "GPU: cannot create the collectives' stream");
    ps_error why;
    int have_nccl = gpu_comm_available(&why);
    if (e->s.world > 1 && !have_nccl)
        return ps_fail(err, "GPU: %d ranks need NCCL to exchange gradients: %s", e->s.world, why.msg);
    if (e->s.replicas > 1 && (!have_nccl || !e->s.replica_nccl_id))
        return ps_fail(err, "GPU: hybrid sharding over %d replicas needs NCCL: %s", e->s.replicas,
                       have_nccl ? "no NCCL id for the replicas" : why.msg);
    /* At world size 1 NCCL is still used when present, so the path is exercised. */
    if (have_nccl && e->s.nccl_id) {
        if (!(e->comm = gpu_comm_init(e->s.world, e->s.rank, e->s.nccl_id, err))) return -1;
        gpu_comm_set_stream(e->comm, e->side);
    }
    if (e->s.replicas > 1) {
        if (!(e->replica = gpu_comm_init(e->s.replicas, e->s.replica_rank, e->s.replica_nccl_id, err))) return -1;
        gpu_comm_set_stream(e->replica, e->side);
    }
    return 0;
}

void describe(gpu_engine *e) {
    gpu_info info;
    ps_error ignored;
    gpu_get_info(&info, &ignored);
    int nv = gpu_comm_version();
    char nccl[64] = "no NCCL (world size 1)";
    if (e->comm && nv) snprintf(nccl, sizeof nccl, "NCCL %d.%d.%d", nv / 10000, nv / 100 % 100, nv % 100);
    else if (e->comm) snprintf(nccl, sizeof nccl, "NCCL (version unknown)");
    snprintf(e->desc, sizeof e->desc, "%s (device %d of %d, sm_%d%d, %d SMs, %.1f GB), %s, %s", info.name, info.device,
             info.device_count, info.cc_major, info.cc_minor, info.sm_count, info.total_mem / 1e9,
             gpu_attention_get_impl() == GPU_ATT_FLASH ? "flash attention" : "GEMM attention", nccl);
}

/* ------------------------------------------------------------- the API */

int api_available(char *why, size_t size) {
    ps_error err;
    if (gpu_available(&err)) return 1;
    char *tail = strstr(err.msg, "; using the CPU backend");
    if (tail) *tail = 0;
    snprintf(why, size, "%s", err.msg);
    return 0;
}

int api_unique_id(void *id, ps_error *err) { return gpu_comm_unique_id(id, err); }

void api_destroy(gpu_engine *e);

/* The projector's tensors (core/projector.c's names), all in one extra unit. */
int find_projector(gpu_engine *e, const model_layout *L, ps_error *err) {
    static const char *names[4] = {"mm_projector.0.weight", "mm_projector.0.bias", "mm_projector.2.weight",
                                   "mm_projector.2.bias"};
    int at[4] = {-1, -1, -1, -1};
    for (int t = 0; t < L->n_tensors; t++)
        for (int k = 0; k < 4; k++)
            if (!strcmp(L->tensors[t].name, names[k])) at[k] = t;
    if (at[0] < 0 && at[1] < 0 && at[2] < 0 && at[3] < 0) return 0;
    for (int k = 0; k < 4; k++)
        if (at[k] < 0 || L->tensors[at[k]].unit != L->tensors[at[0]].unit || L->tensors[at[k]].unit < L->llm_units)
            return ps_fail(err, "GPU engine: the layout holds part of a projector (%s missing or in another unit)",
                           names[k]);
    Projector &p = e->pj;
    p.unit = L->tensors[at[0]].unit;
    p.w0 = at[0], p.b0 = at[1], p.w2 = at[2], p.b2 = at[3];
    p.in_dim = L->tensors[at[0]].cols;
    return 0;
}

gpu_engine *api_create(const gpu_engine_setup *s, ps_error *err) {
    const model_config &c = s->layout->cfg;
    if (s->strategy != STRATEGY_DDP && s->slices->world != s->world) {
        ps_fail(err, "GPU engine: slices over %d ranks but a communicator of %d", s->slices->world, s->world);
        return NULL;
    }
    int local = s->local_rank >= 0 ? s->local_rank : gpu_local_rank();
    if (gpu_init(local, err)) return NULL;
    gpu_engine *e = new gpu_engine();
    e->s = *s;
    e->kind = s->strategy;
    e->d = make_dims(c, s->micro_batch, s->seq_len);
    e->n_units = s->layout->n_units;
    e->last = s->layout->llm_units - 1;
    e->tied = c.tied_head;
    e->units.assign(e->n_units, Unit());
    int rc = find_projector(e, s->layout, err);
    for (int u = s->layout->llm_units; u < e->n_units && !rc; u++)
        if (s->layout->units[u].trainable && u != e->pj.unit)
            rc = ps_fail(err, "GPU engine: unit %d (after the decoder's %d) trains, but the engine runs the decoder's "
                              "units and a projector only; freeze it there or use run.backend = \"cpu\"",
                         u, s->layout->llm_units);
    if (!rc) rc = open_comm(e, err);
    for (int u = 0; !rc && u < e->n_units; u++) rc = alloc_unit(e, u);
    if (!rc) rc = alloc_activations(e);
    if (!rc) rc = alloc_rope(e, c, err);
    if (!rc || e->failed) rc = check(e, err);
    if (rc) {
        api_destroy(e);
        return NULL;
    }
    describe(e);
    return e;
}

void api_destroy(gpu_engine *e) {
    if (!e) return;
    ps_error ignored;
    gpu_sync(&ignored);
    if (e->side) cudaStreamSynchronize(e->side);
    for (Unit &u : e->units) {
        if (u.gslice != u.g) gpu_free(u.gslice);
        for (void *p : {(void *)u.master, (void *)u.m, (void *)u.v, (void *)u.wslice, (void *)u.w, (void *)u.g,
                        (void *)u.recv})
            gpu_free(p);
        if (u.gathered) cudaEventDestroy(u.gathered);
        if (u.reduced) cudaEventDestroy(u.reduced);
    }
    for (gpu_bf16 *p : e->x) gpu_free(p);
    for (BlockActs &a : e->acts) free_block_acts(a);
    free_scratch(e->sc);
    for (void *p : {(void *)e->lnf, (void *)e->logits, (void *)e->rstdf, (void *)e->cos_sin, (void *)e->pos,
                    (void *)e->tokens, (void *)e->targets, (void *)e->loss, (void *)e->n_valid, (void *)e->sumsq,
                    (void *)e->bpos, (void *)e->bsample, (void *)e->brows, (void *)e->bgroup, (void *)e->bembeds,
                    (void *)e->bgrad, (void *)e->blogp, (void *)e->pj.feat, (void *)e->pj.h, (void *)e->pj.g,
                    (void *)e->pj.y})
        gpu_free(p);
    if (e->pj.f32) cudaFreeHost(e->pj.f32);
    if (e->h_tokens) cudaFreeHost(e->h_tokens);
    if (e->h_targets) cudaFreeHost(e->h_targets);
    gpu_comm_free(e->comm);
    gpu_comm_free(e->replica);
    if (e->compute_mark) cudaEventDestroy(e->compute_mark);
    if (e->side) cudaStreamDestroy(e->side);
    delete e;
    gpu_empty_cache();
}

/* zero1: every rank updated its slice of the whole bf16 units; share them. */
int zero1_gather_all(gpu_engine *e, bool frozen_too) {
    if (e->kind != STRATEGY_ZERO1 || !e->comm || e->s.world == 1) return 0;
    side_after_compute(e);
    ps_error why;
    for (Unit &u : e->units)
        if ((u.trains || frozen_too) && gpu_all_gather(e->comm, u.w + u.start, u.w, u.len, GPU_BF16, &why))
            return efail(e, "%s", why.msg);
    cudaEventRecord(e->units[0].gathered, e->side);
    compute_after(e->units[0].gathered);
    return 0;
}

/* Whole bf16 units from the master slices: ddp and zero1 hold them, fsdp
 * keeps the bf16 slices it gathers from. */
int refresh_bf16(gpu_engine *e) {
    for (int ui = 0; ui < e->n_units; ui++) {
        Unit &u = e->units[ui];
        if (e->kind == STRATEGY_FSDP) {
            gpu_f32_to_bf16(u.wslice, u.master, u.len);
            continue;
        }
        gpu_f32_to_bf16(u.w + u.start, u.master, u.len);
    }
    return zero1_gather_all(e, true);
}

int api_upload(gpu_engine *e, real *const *params, real *const *m, real *const *v, ps_error *err) {
    for (int ui = 0; ui < e->n_units; ui++) {
        Unit &u = e->units[ui];
        size_t bytes = u.len * sizeof(float);
        if (gpu_copy_to_device(u.master, params[ui], bytes, err) ||
            (u.trains && (gpu_copy_to_device(u.m, m[ui], bytes, err) || gpu_copy_to_device(u.v, v[ui], bytes, err))))
            return -1;
    }
    refresh_bf16(e);
    zero_gradients(e);
    return check(e, err);
}

int api_download(gpu_engine *e, real **params, real **m, real **v, ps_error *err) {
    for (int ui = 0; ui < e->n_units; ui++) {
        Unit &u = e->units[ui];
        size_t bytes = u.len * sizeof(float);
        if (gpu_copy_to_host(params[ui], u.master, bytes, err) ||
            (u.trains && (gpu_copy_to_host(m[ui], u.m, bytes, err) || gpu_copy_to_host(v[ui], u.v, bytes, err))))
            return -1;
    }
    return check(e, err);
}

/* ------------------------------------------------------------ batches */

/* A device buffer made on first use (packed batches only; pretraining's
 * memory stays what presight plan counts). */
template <class T> int lazy(gpu_engine *e, T *&p, size_t count, const char *what) {
    if (!p) p = dev_alloc<T>(e, count, what);
    return p ? 0 : -1;
}

/* -1, with the engine's own failure in err when it has one (else err is set). */
int fail_out(gpu_engine *e, ps_error *err) {
    if (e->failed) check(e, err);
    return -1;
}

/* The checks of core/model.c's check_batch on the rows of a batch of n rows. */
int check_rows(const gpu_engine *e, const model_batch *b, int n, ps_error *err) {
    const Dims &d = e->d;
    const model_config &c = e->s.layout->cfg;
    if (!b->tokens) return ps_fail(err, "GPU engine: the batch has no tokens");
    if (b->cache || b->cache_mode != MODEL_CACHE_NONE)
        return ps_fail(err, "GPU engine: forward_batch takes no KV cache (the engine's cache lives on the device: "
                            "use greedy_decode)");
    if (b->log_probs && !b->targets) return ps_fail(err, "GPU engine: log-probabilities need targets");
    if (b->hidden && (!b->pool_group || b->n_groups <= 0))
        return ps_fail(err, "GPU engine: pooled hidden states need pool_group and n_groups > 0");
    int wants = 0;
    for (int i = 0; i < n; i++) {
        int pad = b->sample && b->sample[i] < 0, tok = b->tokens[i];
        if (tok < -1 || tok >= d.V) return ps_fail(err, "batch row %d: token %d is outside [-1, %d)", i, tok, d.V);
        if (b->positions && (b->positions[i] < 0 || b->positions[i] >= c.context))
            return ps_fail(err, "batch row %d: position %d is outside [0, model.context %d)", i, b->positions[i],
                           c.context);
        if (b->sample && b->sample[i] < -1) return ps_fail(err, "batch row %d: sample id %d < -1", i, b->sample[i]);
        if (b->pool_group && (b->pool_group[i] < -1 || b->pool_group[i] >= b->n_groups))
            return ps_fail(err, "batch row %d: pooling group %d is outside [-1, %d)", i, b->pool_group[i], b->n_groups);
        wants += !pad && tok == -1;
    }
    if (wants != b->n_embeds || (wants && !b->embeds))
        return ps_fail(err, "the batch has %d embedding rows (token -1) but %d rows in embeds%s", wants, b->n_embeds,
                       wants && !b->embeds ? " (embeds is NULL)" : "");
    return 0;
}

/* The same, and the batch's shape must be the engine's (training, forward_batch). */
int check_batch(const gpu_engine *e, const model_batch *b, ps_error *err) {
    const Dims &d = e->d;
    if (b->batch != d.B || b->seq != d.S)
        return ps_fail(err, "GPU engine: batch [%d, %d] does not match the engine's [%d, %d] (micro_batch, seq_len)",
                       b->batch, b->seq, d.B, d.S);
    return check_rows(e, b, d.n, err);
}

/* The batch onto the device, as core/model.c's prepare_rows: padding rows
 * lose their token and target, embedding rows are listed. Tokens and targets
 * go through the pinned staging of slot `slot` (asynchronous); the packed
 * parts are copied synchronously. Returns the counted targets. */
int stage_batch(gpu_engine *e, int slot, const model_batch *b, ps_error *err) {
    const Dims &d = e->d;
    size_t n = d.n, off = (size_t)slot * n;
    int *tok = e->h_tokens + off, *tgt = e->h_targets + off, valid = 0;
    std::vector<int> rows;
    for (size_t i = 0; i < n; i++) {
        int pad = b->sample && b->sample[i] < 0;
        tok[i] = pad ? -1 : b->tokens[i];
        tgt[i] = !b->targets || pad ? -1 : b->targets[i];
        valid += tgt[i] >= 0 && tgt[i] < d.V;
        if (!pad && b->tokens[i] == -1) rows.push_back((int)i);
    }
    cudaMemcpyAsync(e->tokens + off, tok, n * sizeof(int), cudaMemcpyHostToDevice, gpu_stream_());
    cudaMemcpyAsync(e->targets + off, tgt, n * sizeof(int), cudaMemcpyHostToDevice, gpu_stream_());
    e->n_rows = (int)rows.size();
    e->d.pos = e->pos;
    e->d.sample = NULL;
    if (b->positions) {
        if (lazy(e, e->bpos, n, "batch positions") || gpu_copy_to_device(e->bpos, b->positions, n * sizeof(int), err))
            return -1;
        e->d.pos = e->bpos;
    }
    if (b->sample) {
        if (lazy(e, e->bsample, n, "sample ids") || gpu_copy_to_device(e->bsample, b->sample, n * sizeof(int), err))
            return -1;
        e->d.sample = e->bsample;
    }
    if (e->n_rows) {
        size_t bytes = rows.size() * d.D * sizeof(float);
        if (lazy(e, e->brows, n, "embedding rows") || lazy(e, e->bembeds, n * d.D, "embedding rows") ||
            gpu_copy_to_device(e->brows, rows.data(), rows.size() * sizeof(int), err) ||
            gpu_copy_to_device(e->bembeds, b->embeds, bytes, err))
            return -1;
    }
    return valid;
}

int api_train_batch(gpu_engine *e, int k, const model_batch *b, float loss_scale, ps_error *err) {
    const Dims &d = e->d;
    if (k < 0 || k >= e->s.grad_accum) return ps_fail(err, "GPU engine: micro-batch %d of %d", k, e->s.grad_accum);
    if (check_batch(e, b, err)) return -1;
    if (!b->targets) return ps_fail(err, "GPU engine: a training batch needs targets");
    if (k == 0) {
        gpu_mem_stats ms;
        gpu_mem_stats_get(&ms);
        e->mallocs_at_step = ms.n_cuda_malloc;
    }
    int valid = stage_batch(e, k, b, err);
    if (valid < 0) return fail_out(e, err);
    e->valid[k] = valid;
    e->divisor[k] = b->loss_divisor > 0 ? b->loss_divisor : valid;
    bool want = b->embeds_grad && e->n_rows;
    if (want && lazy(e, e->bgrad, (size_t)d.n * d.D, "the embedding rows' gradient")) return check(e, err);
    size_t off = (size_t)k * d.n;
    if (!forward(e, e->tokens + off, NULL)) backward(e, k, e->tokens + off, e->targets + off, loss_scale, want);
    if (check(e, err)) return -1; /* a failure inside the passes is in e->err */
    if (want) return gpu_copy_to_host(b->embeds_grad, e->bgrad, (size_t)e->n_rows * d.D * sizeof(float), err);
    return 0;
}

/* fsdp: a forward-only pass leaves no unit gathered (nothing follows it). */
void release_all(gpu_engine *e) {
    if (e->kind != STRATEGY_FSDP) return;
    for (int ui = 0; ui <= e->last; ui++) release(e, ui, 1);
}

int api_forward_batch(gpu_engine *e, const model_batch *b, model_result *result, ps_error *err) {
    const Dims &d = e->d;
    if (check_batch(e, b, err)) return -1;
    int slot = e->s.grad_accum; /* its loss slot, past the training micro-batches' */
    if (stage_batch(e, 0, b, err) < 0) return fail_out(e, err);
    size_t stride = (size_t)(d.layers + 1) * d.D, hidden_n = b->hidden ? (size_t)b->n_groups * stride : 0;
    Pool pool = {NULL, NULL};
    if (b->hidden) {
        if (lazy(e, e->bgroup, d.n, "pooling groups") ||
            gpu_copy_to_device(e->bgroup, b->pool_group, d.n * sizeof(int), err) ||
            !(pool.out = dev_alloc<double>(e, hidden_n, "pooled hidden states")))
            return fail_out(e, err);
        gpu_zero(pool.out, hidden_n * sizeof(double));
        pool.group = e->bgroup;
    }
    int rc = forward(e, e->tokens, b->hidden ? &pool : NULL);
    if (!rc) {
        head_forward(e);
        pool_level(e, b->hidden ? &pool : NULL, e->lnf, d.layers);
        if (b->targets) gpu_cross_entropy(e->logits, e->targets, d.n, d.V, -1, 0.f, e->loss + slot, e->n_valid + slot);
        if (b->log_probs && !lazy(e, e->blogp, d.n, "log-probabilities"))
            gpu_log_prob(e->blogp, e->logits, e->targets, d.n, d.V);
    }
    release_all(e);
    model_result r = {0, 0, 0};
    if (!rc && !check(e, err) && b->targets) {
        if (gpu_copy_to_host(&r.loss_sum, e->loss + slot, sizeof(double), err) ||
            gpu_copy_to_host(&r.n_counted, e->n_valid + slot, sizeof(int), err))
            rc = -1;
        if (!rc && r.n_counted) r.loss = r.loss_sum / (b->loss_divisor > 0 ? b->loss_divisor : r.n_counted);
        if (!rc && b->log_probs && gpu_copy_to_host(b->log_probs, e->blogp, d.n * sizeof(double), err)) rc = -1;
    }
    if (!rc && !e->failed && b->hidden) {
        if (gpu_copy_to_host(b->hidden, pool.out, hidden_n * sizeof(double), err)) rc = -1;
        for (int g = 0; !rc && g < b->n_groups; g++) { /* the sums become means */
            int count = 0;
            for (int i = 0; i < d.n; i++) count += b->pool_group[i] == g;
            for (size_t j = 0; j < stride && count; j++) b->hidden[g * stride + j] /= count;
        }
    }
    gpu_free(pool.out);
    if (rc || check(e, err)) return -1;
    if (result) *result = r;
    return 0;
}

/* Hybrid sharding: each group reduced its gradients; the groups' slices are summed. */
int sum_over_replicas(gpu_engine *e) {
    if (!e->replica) return 0;
    side_after_compute(e);
    ps_error why;
    for (Unit &u : e->units)
        if (u.trains && gpu_all_reduce(e->replica, u.gslice, u.gslice, u.len, GPU_F32, &why))
            return efail(e, "%s", why.msg);
    cudaEventRecord(e->compute_mark, e->side);
    compute_after(e->compute_mark);
    return 0;
}

int api_finish_backward(gpu_engine *e, double *loss_sum, double *grad_sumsq, ps_error *err) {
    finish_reductions(e);
    sum_over_replicas(e);
    for (int ui = 0; ui < e->n_units; ui++) /* frozen units have no share in the norm */
        if (e->units[ui].trains) gpu_sum_squares(e->sumsq + ui, e->units[ui].gslice, e->units[ui].len);
        else gpu_zero(e->sumsq + ui, sizeof(double));
    OpMarks *marks = (OpMarks *)e->s.op_marks;
    MARK("grad norm");
    int accum = e->s.grad_accum;
    std::vector<double> loss(accum), sumsq(e->n_units);
    if (gpu_copy_to_host(loss.data(), e->loss, accum * sizeof(double), err) ||
        gpu_copy_to_host(sumsq.data(), e->sumsq, e->n_units * sizeof(double), err))
        return -1;
    *loss_sum = 0;
    for (int k = 0; k < accum; k++) *loss_sum += e->valid[k] ? loss[k] / e->divisor[k] : 0.0;
    *grad_sumsq = 0;
    for (double s : sumsq) *grad_sumsq += s;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) e->device_used = std::max(e->device_used, total_b - free_b);
    return check(e, err);
}

int api_optimizer_step(gpu_engine *e, double lr, int64_t step, double grad_scale, ps_error *err) {
    const model_layout *L = e->s.layout;
    for (int t = 0; t < L->n_tensors; t++) {
        const model_tensor *T = &L->tensors[t];
        Unit &u = e->units[T->unit];
        if (!u.trains) continue;
        size_t count = u.start < u.size ? std::min(u.len, u.size - u.start) : 0; /* real data in the slice */
        size_t lo = std::max(T->offset, u.start), hi = std::min(T->offset + (size_t)T->rows * T->cols, u.start + count);
        if (lo >= hi) continue;
        size_t at = lo - u.start;
        gpu_bf16 *out = e->kind == STRATEGY_FSDP ? u.wslice + at : u.w + lo;
        gpu_adamw_update(u.master + at, out, u.gslice + at, u.m + at, u.v + at, hi - lo, (float)lr,
                         e->s.beta1, e->s.beta2, e->s.adam_eps, model_tensor_decays(T) ? e->s.weight_decay : 0.f, step,
                         (float)grad_scale);
    }
    OpMarks *marks = (OpMarks *)e->s.op_marks;
    MARK("adamw");
    zero1_gather_all(e, false);
    zero_gradients(e);
    MARK("zero grads");
    gpu_mem_stats ms;
    gpu_mem_stats_get(&ms);
    e->step_mallocs = ms.n_cuda_malloc - e->mallocs_at_step;
    return check(e, err);
}

void api_memory(gpu_engine *e, gpu_engine_memory *out) {
    gpu_mem_stats ms;
    gpu_mem_stats_get(&ms);
    out->peak_bytes = ms.peak_requested;
    out->peak_class_bytes = ms.peak_in_use;
    out->reserved_bytes = ms.peak_reserved;
    out->device_used_bytes = e->device_used;
    out->step_mallocs = e->step_mallocs;
}

int api_gradients(gpu_engine *e, real **grads, ps_error *err) {
    for (int ui = 0; ui < e->n_units; ui++) {
        Unit &u = e->units[ui];
        if (u.trains && gpu_copy_to_host(grads[ui], u.gslice, u.len * sizeof(float), err)) return -1;
    }
    return check(e, err);
}

const char *api_describe(gpu_engine *e) { return e->desc; }

/* ------------------------------------------------------------- decoding */

/* A forward-only pass over [B, S] rows for decoding: the residual stream in
 * two buffers used in turn, one block's activations reused by every block,
 * then only the last row of each sequence through the final norm and the head
 * into fp32 logits (no [B S, vocab] logits, and argmax ties are rarer than in
 * bf16). Buffers come from the caching allocator, so a pass per step of the
 * recompute mode costs no cudaMalloc once warm. */
struct DecodePass {
    Dims d;
    gpu_bf16 *x[2] = {NULL, NULL}, *last = NULL, *lnf = NULL;
    BlockActs a = {};
    float *rstd = NULL, *logits = NULL;
    int *tokens = NULL, *pos = NULL, *sample = NULL, *slot = NULL, *rows = NULL; /* [n] x 4, [B] */
    int *erows = NULL, n_erows = 0; /* embedding rows (token -1): their row indices [n_erows] */
    float *embeds = NULL;           /* and inputs [n_erows, D] */
};

void free_pass(DecodePass &p) {
    free_block_acts(p.a);
    for (void *q : {(void *)p.x[0], (void *)p.x[1], (void *)p.last, (void *)p.lnf, (void *)p.rstd, (void *)p.logits,
                    (void *)p.tokens, (void *)p.pos, (void *)p.sample, (void *)p.slot, (void *)p.rows,
                    (void *)p.erows, (void *)p.embeds})
        gpu_free(q);
    p = DecodePass();
}

int alloc_pass(gpu_engine *e, DecodePass &p, int B, int S) {
    p.d = make_dims(e->s.layout->cfg, B, S);
    p.d.cos_sin = e->cos_sin;
    size_t n = p.d.n, D = p.d.D;
    p.x[0] = dev_alloc<gpu_bf16>(e, n * D, "decoding activations");
    p.x[1] = dev_alloc<gpu_bf16>(e, n * D, "decoding activations");
    p.last = dev_alloc<gpu_bf16>(e, (size_t)B * D, "decoding activations");
    p.lnf = dev_alloc<gpu_bf16>(e, (size_t)B * D, "decoding activations");
    p.rstd = dev_alloc<float>(e, B, "decoding activations");
    p.logits = dev_alloc<float>(e, (size_t)B * p.d.V, "decoding logits");
    p.tokens = dev_alloc<int>(e, n, "decoding rows");
    p.pos = dev_alloc<int>(e, n, "decoding rows");
    p.sample = dev_alloc<int>(e, n, "decoding rows");
    p.slot = dev_alloc<int>(e, n, "decoding rows");
    p.rows = dev_alloc<int>(e, B, "decoding rows");
    if (e->failed) return -1;
    if (alloc_block_acts(p.d, p.a, NULL, NULL)) return efail(e, "out of GPU memory for decoding activations");
    p.d.pos = p.pos;
    return 0;
}

/* The KV cache: bf16 [layers][batch][max_len][KV hd] keys and values, the
 * rows each sequence holds, and what the steps read and write. */
struct KvCache {
    gpu_bf16 *k = NULL, *v = NULL;
    int *len = NULL, *klen = NULL, *next = NULL, *out = NULL; /* [B] x 3, [B, max_new] */
    int max_len = 0;
    size_t layer = 0; /* elements per layer */
};

void free_cache(KvCache &c) {
    for (void *q : {(void *)c.k, (void *)c.v, (void *)c.len, (void *)c.klen, (void *)c.next, (void *)c.out})
        gpu_free(q);
    c = KvCache();
}

/* The embedding (embedding rows from p.embeds) and the blocks (with the
 * cache when kc: a prefill when klen is NULL, else a step); the last block's
 * output is p.x[layers & 1]. */
int pass_blocks(gpu_engine *e, DecodePass &p, KvCache *kc, const int *klen) {
    const Dims &d = p.d;
    if (acquire(e, 0, 0)) return -1;
    gpu_embedding_forward(p.x[0], p.tokens, e->units[0].w, d.n, d.D); /* token -1: padding, a zero row */
    release(e, 0, 0);
    if (p.n_erows) gpu_rows_scatter(p.x[0], p.embeds, p.erows, p.n_erows, d.D);
    for (int l = 0; l < d.layers; l++) {
        if (acquire(e, 1 + l, 0)) return -1;
        p.a.x = p.x[l & 1];
        p.a.x_out = p.x[(l + 1) & 1];
        BlockCache bc = {kc ? kc->k + l * kc->layer : NULL, kc ? kc->v + l * kc->layer : NULL, p.slot, klen,
                         kc ? kc->max_len : 0};
        block_fwd(d, block_view(e->units[1 + l].w, d), p.a, NULL, kc ? &bc : NULL);
        release(e, 1 + l, 0);
    }
    return e->failed ? -1 : 0;
}

/* pass_blocks, then the last rows' logits and their argmax into next. */
int decode_forward(gpu_engine *e, DecodePass &p, KvCache *kc, const int *klen, int *next) {
    const Dims &d = p.d;
    if (pass_blocks(e, p, kc, klen) || acquire(e, e->last, 0)) return -1;
    Unit &top = e->units[e->last];
    const gpu_bf16 *head = e->tied ? e->units[0].w : top.w + d.D;
    gpu_rows_copy(p.last, p.x[d.layers & 1], p.rows, d.B, d.D);
    gpu_rmsnorm_forward(p.lnf, p.rstd, p.last, top.w, d.B, d.D, d.eps);
    gpu_gemm(0, 1, d.B, d.V, d.D, 1.f, p.lnf, d.D, 0, head, d.D, 0, 0.f, p.logits, GPU_F32, d.V, 0, 1);
    gpu_argmax_rows(next, p.logits, d.B, d.V);
    return e->failed ? -1 : 0;
}

/* The chosen token's logits of step `step` into logits [batch, max_new, V]. */
int copy_logits(gpu_engine *e, const DecodePass &p, int step, int max_new, real *logits, ps_error *err) {
    if (!logits) return 0;
    const Dims &d = p.d;
    std::vector<float> row((size_t)d.B * d.V);
    if (gpu_copy_to_host(row.data(), p.logits, row.size() * sizeof(float), err)) return -1;
    for (int b = 0; b < d.B; b++)
        memcpy(logits + ((size_t)b * max_new + step) * d.V, row.data() + (size_t)b * d.V, (size_t)d.V * sizeof(float));
    return 0;
}

/* The padded prefix batch [B, S] of rows 0..cur[b] - 1 (prompt, then the
 * tokens chosen so far): sample b, padding after; cache slots when max_len. */
int stage_prefix(gpu_engine *e, DecodePass &p, const int *prompts, int stride, const int *len, const int *cur,
                 const int *out, const real *embeds, int max_new, int max_len, ps_error *err) {
    int B = p.d.B, S = p.d.S;
    std::vector<int> tok((size_t)B * S), sid(tok.size()), pos(tok.size()), slot(tok.size()), rows(B), erows;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < S; t++) {
            size_t i = (size_t)b * S + t;
            bool in = t < cur[b];
            tok[i] = !in ? -1 : t < len[b] ? prompts[(size_t)b * stride + t] : out[(size_t)b * max_new + t - len[b]];
            if (in && tok[i] == -1) erows.push_back((int)i); /* row order is prompt order: the k-th reads embeds[k] */
            sid[i] = in ? b : -1;
            pos[i] = t;
            slot[i] = in && max_len ? b * max_len + t : -1;
        }
        rows[b] = b * S + cur[b] - 1;
    }
    p.n_erows = (int)erows.size();
    if (p.n_erows) {
        size_t count = erows.size() * p.d.D;
        if (!(p.erows = dev_alloc<int>(e, erows.size(), "decoding embedding rows")) ||
            !(p.embeds = dev_alloc<float>(e, count, "decoding embedding rows")) ||
            gpu_copy_to_device(p.erows, erows.data(), erows.size() * sizeof(int), err) ||
            gpu_copy_to_device(p.embeds, embeds, count * sizeof(float), err))
            return -1;
    }
    size_t bytes = tok.size() * sizeof(int);
    bool bad = gpu_copy_to_device(p.tokens, tok.data(), bytes, err) ||
               gpu_copy_to_device(p.sample, sid.data(), bytes, err) ||
               gpu_copy_to_device(p.pos, pos.data(), bytes, err) ||
               gpu_copy_to_device(p.slot, slot.data(), bytes, err) ||
               gpu_copy_to_device(p.rows, rows.data(), B * sizeof(int), err);
    return bad ? -1 : 0;
}

/* core/decode.c's checks on the prompts; *longest gets the longest. */
int check_prompts(const gpu_engine *e, const int *prompts, const int *len, int stride, int batch, int n_embeds,
                  const real *embeds, int max_new, int *longest, ps_error *err) {
    if (batch <= 0 || max_new <= 0 || stride <= 0)
        return ps_fail(err, "greedy decoding needs batch, prompt stride and max_new > 0 (%d, %d, %d)", batch, stride,
                       max_new);
    if (e->d.hd > 256) return ps_fail(err, "GPU engine: decoding supports head_dim <= 256 (%d)", e->d.hd);
    *longest = 0;
    for (int b = 0; b < batch; b++) {
        if (len[b] < 1 || len[b] > stride)
            return ps_fail(err, "prompt %d: length %d is outside [1, %d]", b, len[b], stride);
        *longest = std::max(*longest, len[b]);
    }
    int rows = 0, V = e->d.V;
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < len[b]; t++) {
            int tok = prompts[(size_t)b * stride + t];
            if (tok < -1 || tok >= V) return ps_fail(err, "prompt %d, token %d: %d is outside [-1, %d)", b, t, tok, V);
            rows += tok == -1;
        }
    if (rows != n_embeds || (rows && !embeds))
        return ps_fail(err, "the prompts have %d embedding rows (token -1) but %d rows in embeds%s", rows, n_embeds,
                       rows && !embeds ? " (embeds is NULL)" : "");
    int context = e->s.layout->cfg.context;
    if (*longest + max_new - 1 > context)
        return ps_fail(err, "a prompt of %d tokens and %d new ones exceed model.context %d", *longest, max_new,
                       context);
    return 0;
}

/* Every token re-runs the forward over the whole prefix: one pass per step. */
int decode_recompute(gpu_engine *e, const int *prompts, int stride, const int *len, int B, const real *embeds,
                     int max_new, int *out, real *logits, ps_error *err) {
    std::vector<int> cur(len, len + B), next(B);
    int *dnext = dev_alloc<int>(e, B, "decoding tokens");
    int rc = dnext ? 0 : -1;
    for (int step = 0; step < max_new && !rc; step++) {
        int S = *std::max_element(cur.begin(), cur.end());
        DecodePass p;
        rc = alloc_pass(e, p, B, S);
        if (!rc) rc = stage_prefix(e, p, prompts, stride, len, cur.data(), out, embeds, max_new, 0, err);
        p.d.sample = p.sample;
        if (!rc) rc = decode_forward(e, p, NULL, NULL, dnext);
        if (!rc) rc = gpu_copy_to_host(next.data(), dnext, B * sizeof(int), err);
        if (!rc) rc = copy_logits(e, p, step, max_new, logits, err);
        for (int b = 0; b < B && !rc; b++) {
            out[(size_t)b * max_new + step] = next[b];
            cur[b]++;
        }
        free_pass(p);
    }
    gpu_free(dnext);
    return rc;
}

/* Prefill, then one-token steps over the cache; the tokens stay on the
 * device (decode_advance) until the end. */
int decode_cached(gpu_engine *e, const int *prompts, int stride, const int *len, int B, int S, const real *embeds,
                  int max_new, int *out, real *logits, ps_error *err) {
    const Dims &d = e->d;
    KvCache kc;
    kc.max_len = S + max_new - 1;
    kc.layer = (size_t)B * kc.max_len * d.KV * d.hd;
    kc.k = dev_alloc<gpu_bf16>(e, kc.layer * d.layers, "the KV cache");
    kc.v = dev_alloc<gpu_bf16>(e, kc.layer * d.layers, "the KV cache");
    kc.len = dev_alloc<int>(e, B, "the KV cache");
    kc.klen = dev_alloc<int>(e, B, "the KV cache");
    kc.next = dev_alloc<int>(e, B, "the KV cache");
    kc.out = dev_alloc<int>(e, (size_t)B * max_new, "decoded tokens");
    DecodePass pre, st;
    std::vector<int> rows(B);
    for (int b = 0; b < B; b++) rows[b] = b;
    int rc = e->failed || alloc_pass(e, pre, B, S) || alloc_pass(e, st, B, 1) ? -1 : 0;
    if (!rc) rc = stage_prefix(e, pre, prompts, stride, len, len, out, embeds, max_new, kc.max_len, err);
    pre.d.sample = pre.sample;
    if (!rc) rc = gpu_copy_to_device(kc.len, len, B * sizeof(int), err) ||
                  gpu_copy_to_device(st.rows, rows.data(), B * sizeof(int), err);
    if (!rc) rc = decode_forward(e, pre, &kc, NULL, kc.next) || copy_logits(e, pre, 0, max_new, logits, err);
    if (!rc)
        gpu_decode_advance(kc.out, max_new, 0, kc.next, st.tokens, st.pos, st.slot, kc.len, kc.klen, kc.max_len, B, 0);
    for (int step = 1; step < max_new && !rc; step++) {
        rc = decode_forward(e, st, &kc, kc.klen, kc.next) || copy_logits(e, st, step, max_new, logits, err);
        if (!rc) gpu_decode_advance(kc.out, max_new, step, kc.next, st.tokens, st.pos, st.slot, kc.len, kc.klen,
                                    kc.max_len, B, 1);
    }
    if (!rc) rc = gpu_copy_to_host(out, kc.out, (size_t)B * max_new * sizeof(int), err);
    free_pass(pre);
    free_pass(st);
    free_cache(kc);
    return rc;
}

int api_greedy_decode_embeds(gpu_engine *e, const int *prompts, int stride, const int *len, int batch,
                             const real *embeds, int n_embeds, int max_new, int recompute, int *out, real *logits,
                             ps_error *err) {
    int S = 0;
    if (check_prompts(e, prompts, len, stride, batch, n_embeds, embeds, max_new, &S, err)) return -1;
    if (check(e, err)) return -1;
    int rc = recompute ? decode_recompute(e, prompts, stride, len, batch, embeds, max_new, out, logits, err)
                       : decode_cached(e, prompts, stride, len, batch, S, embeds, max_new, out, logits, err);
    release_all(e);
    if (e->failed) return check(e, err), -1;
    return rc || check(e, err) ? -1 : 0;
}

int api_greedy_decode(gpu_engine *e, const int *prompts, int stride, const int *len, int batch, int max_new,
                      int recompute, int *out, real *logits, ps_error *err) {
    return api_greedy_decode_embeds(e, prompts, stride, len, batch, NULL, 0, max_new, recompute, out, logits, err);
}

/* ------------------------------------------------------------- scoring */

/* Rows the head of score_batch takes at a time: a fixed GEMM shape
 * [SCORE_ROWS, D] x [D, vocab] whatever the batch (the last chunk padded with
 * zero rows), so a row's logits do not depend on the batch's size, and the
 * fp32 logits stay bounded (SCORE_ROWS x vocab x 4 bytes: 128 MB at 128k). */
const int SCORE_ROWS = 256;

/* The batch's rows onto the device as the pass's (as stage_batch: padding
 * rows lose their token and target). */
int stage_score(gpu_engine *e, DecodePass &p, const model_batch *b, int *dtargets, ps_error *err) {
    size_t n = p.d.n;
    std::vector<int> tok(n), pos(n), sid(n), tgt(n, -1), erows;
    for (size_t i = 0; i < n; i++) {
        int pad = b->sample && b->sample[i] < 0;
        tok[i] = pad ? -1 : b->tokens[i];
        if (!pad && b->targets) tgt[i] = b->targets[i];
        if (!pad && b->tokens[i] == -1) erows.push_back((int)i);
        pos[i] = b->positions ? b->positions[i] : (int)(i % p.d.S);
        sid[i] = b->sample ? b->sample[i] : 0;
    }
    p.d.sample = b->sample ? p.sample : NULL;
    p.n_erows = (int)erows.size();
    size_t bytes = n * sizeof(int);
    if (gpu_copy_to_device(p.tokens, tok.data(), bytes, err) || gpu_copy_to_device(p.pos, pos.data(), bytes, err) ||
        gpu_copy_to_device(p.sample, sid.data(), bytes, err) || gpu_copy_to_device(dtargets, tgt.data(), bytes, err))
        return -1;
    if (!p.n_erows) return 0;
    size_t count = erows.size() * p.d.D;
    if (!(p.erows = dev_alloc<int>(e, erows.size(), "scoring embedding rows")) ||
        !(p.embeds = dev_alloc<float>(e, count, "scoring embedding rows")))
        return -1;
    return gpu_copy_to_device(p.erows, erows.data(), erows.size() * sizeof(int), err) ||
                   gpu_copy_to_device(p.embeds, b->embeds, count * sizeof(float), err)
               ? -1
               : 0;
}

/* The final norm of every row, then the head on SCORE_ROWS rows at a time:
 * fp32 logits, their log-probabilities at the targets and their argmax. */
int score_head(gpu_engine *e, DecodePass &p, const int *dtargets, double *dlogp, int *dbest) {
    const Dims &d = p.d;
    size_t chunks = ((size_t)d.n + SCORE_ROWS - 1) / SCORE_ROWS, rows = chunks * SCORE_ROWS;
    gpu_bf16 *lnf = dev_alloc<gpu_bf16>(e, rows * d.D, "scoring's final norm");
    float *rstd = dev_alloc<float>(e, d.n, "scoring's final norm");
    float *logits = dev_alloc<float>(e, (size_t)SCORE_ROWS * d.V, "scoring logits");
    if (e->failed) {
        gpu_free(lnf), gpu_free(rstd), gpu_free(logits);
        return -1;
    }
    Unit &top = e->units[e->last];
    const gpu_bf16 *head = e->tied ? e->units[0].w : top.w + d.D;
    gpu_zero(lnf, rows * d.D * sizeof(gpu_bf16));
    gpu_rmsnorm_forward(lnf, rstd, p.x[d.layers & 1], top.w, d.n, d.D, d.eps);
    for (size_t c = 0; c < chunks; c++) {
        size_t at = c * SCORE_ROWS;
        int m = (int)std::min((size_t)SCORE_ROWS, (size_t)d.n - at);
        gpu_gemm(0, 1, SCORE_ROWS, d.V, d.D, 1.f, lnf + at * d.D, d.D, 0, head, d.D, 0, 0.f, logits, GPU_F32, d.V, 0,
                 1);
        gpu_log_prob_f32(dlogp + at, logits, dtargets + at, m, d.V);
        gpu_argmax_rows(dbest + at, logits, m, d.V);
    }
    gpu_free(lnf), gpu_free(rstd), gpu_free(logits);
    return e->failed ? -1 : 0;
}

int api_score_batch(gpu_engine *e, const model_batch *b, int *argmax, ps_error *err) {
    const model_config &c = e->s.layout->cfg;
    if (b->batch <= 0 || b->seq <= 0 || b->seq > c.context)
        return ps_fail(err, "GPU engine: a scoring batch of [%d, %d] (seq in [1, model.context %d])", b->batch, b->seq,
                       c.context);
    if (b->hidden) return ps_fail(err, "GPU engine: score_batch pools no hidden states (use forward_batch)");
    if (check_rows(e, b, b->batch * b->seq, err) || check(e, err)) return -1;
    DecodePass p;
    size_t n = (size_t)b->batch * b->seq;
    int *dtargets = dev_alloc<int>(e, n, "scoring targets"), *dbest = dev_alloc<int>(e, n, "scoring argmax");
    double *dlogp = dev_alloc<double>(e, n, "scoring log-probabilities");
    int rc = e->failed || alloc_pass(e, p, b->batch, b->seq) ? -1 : 0;
    if (!rc) rc = stage_score(e, p, b, dtargets, err);
    if (!rc) rc = pass_blocks(e, p, NULL, NULL);
    if (!rc) rc = acquire(e, e->last, 0) || score_head(e, p, dtargets, dlogp, dbest);
    release_all(e);
    if (!rc && !e->failed && b->log_probs) rc = gpu_copy_to_host(b->log_probs, dlogp, n * sizeof(double), err);
    if (!rc && !e->failed && argmax) rc = gpu_copy_to_host(argmax, dbest, n * sizeof(int), err);
    free_pass(p);
    gpu_free(dtargets), gpu_free(dbest), gpu_free(dlogp);
    if (rc || e->failed) return fail_out(e, err);
    return check(e, err);
}

/* ------------------------------------------------------------ projector */

/* The buffers of n rows (grown when needed). */
int projector_buffers(gpu_engine *e, int n) {
    Projector &p = e->pj;
    if (n <= p.cap) return 0;
    for (gpu_bf16 **q : {&p.feat, &p.h, &p.g, &p.y}) {
        gpu_free(*q);
        *q = NULL;
    }
    if (p.f32) cudaFreeHost(p.f32);
    p.f32 = NULL;
    p.cap = 0;
    size_t D = e->d.D, wide = std::max((size_t)p.in_dim, D);
    if (!(p.feat = dev_alloc<gpu_bf16>(e, (size_t)n * p.in_dim, "projector activations")) ||
        !(p.h = dev_alloc<gpu_bf16>(e, (size_t)n * D, "projector activations")) ||
        !(p.g = dev_alloc<gpu_bf16>(e, (size_t)n * D, "projector activations")) ||
        !(p.y = dev_alloc<gpu_bf16>(e, (size_t)n * D, "projector activations")))
        return -1;
    if (cudaMallocHost((void **)&p.f32, (size_t)n * wide * sizeof(float)) != cudaSuccess)
        return efail(e, "cudaMallocHost failed for the projector's staging buffer");
    p.cap = n;
    return 0;
}

/* host fp32 [count] -> device bf16, through the pinned staging buffer. */
int to_bf16(gpu_engine *e, gpu_bf16 *dst, const real *src, size_t count, ps_error *err) {
    float *dev = dev_alloc<float>(e, count, "projector staging");
    if (!dev) return -1;
    memcpy(e->pj.f32, src, count * sizeof(float));
    int rc = gpu_copy_to_device(dev, e->pj.f32, count * sizeof(float), err);
    if (!rc) gpu_f32_to_bf16(dst, dev, count);
    gpu_free(dev);
    return rc;
}

int from_bf16(gpu_engine *e, real *dst, const gpu_bf16 *src, size_t count, ps_error *err) {
    float *dev = dev_alloc<float>(e, count, "projector staging");
    if (!dev) return -1;
    gpu_bf16_to_f32(dev, src, count);
    int rc = gpu_copy_to_host(e->pj.f32, dev, count * sizeof(float), err);
    if (!rc) memcpy(dst, e->pj.f32, count * sizeof(float));
    gpu_free(dev);
    return rc;
}

/* Tensor t's view into a whole unit's weights or gradient (NULL stays NULL). */
template <class T> T *tensor_in(gpu_engine *e, T *unit, int t) {
    return unit ? unit + e->s.layout->tensors[t].offset : NULL;
}

int api_projector_forward(gpu_engine *e, const real *features, int n, real *out, ps_error *err) {
    Projector &p = e->pj;
    if (p.unit < 0) return ps_fail(err, "GPU engine: the layout has no projector (mm_projector.*)");
    if (n <= 0) return ps_fail(err, "GPU engine: a projector pass of %d rows", n);
    int D = e->d.D;
    if (projector_buffers(e, n) || acquire(e, p.unit, 0) ||
        to_bf16(e, p.feat, features, (size_t)n * p.in_dim, err))
        return fail_out(e, err);
    gpu_bf16 *w = e->units[p.unit].w;
    gpu_matmul_forward(p.h, p.feat, tensor_in(e, w, p.w0), NULL, n, p.in_dim, D);
    gpu_bias_forward(p.h, tensor_in(e, w, p.b0), n, D);
    gpu_gelu_forward(p.g, p.h, (size_t)n * D);
    gpu_matmul_forward(p.y, p.g, tensor_in(e, w, p.w2), NULL, n, D, D);
    gpu_bias_forward(p.y, tensor_in(e, w, p.b2), n, D);
    release(e, p.unit, 1);
    p.n = n;
    if (from_bf16(e, out, p.y, (size_t)n * D, err)) return fail_out(e, err);
    return check(e, err);
}

int api_projector_backward(gpu_engine *e, int k, const real *dout, real *dfeatures, ps_error *err) {
    Projector &p = e->pj;
    if (p.unit < 0 || !p.n) return ps_fail(err, "GPU engine: a projector backward without its forward");
    if (k < 0 || k >= e->s.grad_accum) return ps_fail(err, "GPU engine: micro-batch %d of %d", k, e->s.grad_accum);
    Unit &u = e->units[p.unit];
    if (!u.trains && !dfeatures) return 0; /* nothing to compute */
    int n = p.n, D = e->d.D;
    gpu_bf16 *dg = dev_alloc<gpu_bf16>(e, (size_t)n * D, "the projector's gradient");
    gpu_bf16 *dfeat = dfeatures ? dev_alloc<gpu_bf16>(e, (size_t)n * p.in_dim, "the projector's gradient") : NULL;
    int rc = !dg || (dfeatures && !dfeat) || acquire(e, p.unit, 1) ||
             to_bf16(e, p.y, dout, (size_t)n * D, err); /* y now holds dout */
    if (!rc) {
        const gpu_bf16 *w = u.w;
        float *g = u.trains ? u.g : NULL;
        gpu_bias_backward(tensor_in(e, g, p.b2), p.y, n, D);
        gpu_matmul_backward(dg, tensor_in(e, g, p.w2), p.y, p.g, tensor_in(e, w, p.w2), n, D, D);
        gpu_gelu_backward(dg, dg, p.h, (size_t)n * D);
        gpu_bias_backward(tensor_in(e, g, p.b0), dg, n, D);
        gpu_matmul_backward(dfeat, tensor_in(e, g, p.w0), dg, p.feat, tensor_in(e, w, p.w0), n, p.in_dim, D);
        if (u.trains) rc = reduce_gradient(e, p.unit, k == e->s.grad_accum - 1);
        release(e, p.unit, 1);
    }
    if (!rc && dfeatures) rc = from_bf16(e, dfeatures, dfeat, (size_t)n * p.in_dim, err);
    gpu_free(dg);
    gpu_free(dfeat);
    if (rc || e->failed) return fail_out(e, err);
    return check(e, err);
}

const gpu_engine_api g_api = {
    .abi = GPU_ENGINE_ABI,
    .available = api_available,
    .unique_id = api_unique_id,
    .create = api_create,
    .destroy = api_destroy,
    .upload = api_upload,
    .download = api_download,
    .train_batch = api_train_batch,
    .forward_batch = api_forward_batch,
    .finish_backward = api_finish_backward,
    .gradients = api_gradients,
    .optimizer_step = api_optimizer_step,
    .greedy_decode = api_greedy_decode,
    .projector_forward = api_projector_forward,
    .projector_backward = api_projector_backward,
    .memory = api_memory,
    .describe = api_describe,
    .greedy_decode_embeds = api_greedy_decode_embeds,
    .score_batch = api_score_batch,
};

} // namespace

extern "C" const gpu_engine_api *presight_gpu_engine(void) { return &g_api; }
