/* plan.c - memory, FLOPs and time of a training run (see plan.h). */
#include "plan.h"

#include <math.h>
#include <string.h>

#include "mm_model.h"
#include "projector.h"
#include "sharding.h"

/* ---------------------------------------------------------------- stages */

plan_stage plan_stage_of(const run_config *cfg) {
    if (!cfg->adapt.data[0]) return PLAN_PRETRAIN;
    if (!strcmp(cfg->adapt.stage, "blind")) return PLAN_BLIND;
    if (!strcmp(cfg->adapt.stage, "sft")) return PLAN_SFT;
    return PLAN_ALIGN;
}

const char *plan_stage_name(plan_stage st) {
    static const char *const names[] = {"pretrain", "align", "blind", "sft"};
    return names[st];
}

int plan_adapt_layout(model_layout *L, plan_stage st, int encoder_width, ps_error *err) {
    if (st == PLAN_PRETRAIN) return 0;
    projector pj;
    if (projector_add(L, encoder_width, &pj, err)) return -1;
    model_layout_set_trainable(L, 0, L->llm_units, st != PLAN_ALIGN);
    model_layout_set_trainable(L, pj.unit, pj.unit + 1, st != PLAN_BLIND);
    return 0;
}

/* The projector's unit holds W x D + D + D x D + D (projector.h). */
int plan_projector_width(const model_layout *L) {
    if (L->n_units <= L->llm_units) return 0;
    double D = L->cfg.dim, size = (double)L->units[L->llm_units].size;
    return (int)((size - D * D - 2 * D) / D);
}

double plan_train_flops(const model_layout *L, plan_stage st, int seq, double n_tokens, double n_visual) {
    const model_config *c = &L->cfg;
    double attention = 12.0 * c->layers * (double)c->dim * seq;
    double matmul_weights = (model_train_flops(L, seq, 1.0) - attention) / 6.0;
    double flops = model_train_flops(L, seq, n_tokens);
    if (st == PLAN_ALIGN) flops -= 2.0 * matmul_weights * n_tokens; /* no weight gradient in the frozen LLM */
    double W = plan_projector_width(L), D = c->dim;
    if (W > 0 && st != PLAN_BLIND && st != PLAN_PRETRAIN) flops += n_visual * (6.0 * (W * D + D * D) - 2.0 * W * D);
    return flops;
}

/* ------------------------------------------------------------------ cpu */

/* Largest unit that trains (the collectives reduce gradients: frozen units
 * have none), padded to whole slices of a group of g ranks, in bytes. */
static size_t largest_padded(const model_layout *L, int g) {
    size_t most = 0;
    for (int u = 0; u < L->n_units; u++) {
        if (!L->units[u].trainable) continue;
        size_t padded = (L->units[u].size + (size_t)g - 1) / (size_t)g * (size_t)g;
        if (padded > most) most = padded;
    }
    return most * sizeof(real);
}

/* Buffers a binomial reduce-then-scatter (Open MPI's libnbc
 * MPI_Ireduce_scatter_block, which fsdp's per-unit reduce-scatter runs on)
 * writes on group rank r of p: it allocates two full-unit buffers and
 * receives a partial sum into one of them in each round r receives in (its
 * rank divisible by 2^round and a partner above it); a lone rank copies its
 * send buffer into one. Returns how many of the two it touches. */
static int binomial_buffers(int r, int p) {
    if (p == 1) return 1;
    int n = 0;
    for (int round = 1; (1 << (round - 1)) < p; round++) {
        if (r % (1 << round)) break;              /* sends its partial sum and leaves */
        if (r + (1 << (round - 1)) < p) n++;      /* receives one */
    }
    return n < 2 ? n : 2;
}

/* Bytes of MPI temporaries rank writes at the step's peak, per strategy, as
 * measured with Open MPI 4.1.4 (tuned and libnbc collectives; another MPI or
 * another algorithm choice changes this term):
 *   fsdp   the reduce-scatter of the unit in flight (libnbc, binomial):
 *          0, 1 or 2 full units, by rank (binomial_buffers); exact.
 *   zero1  MPI_Reduce_scatter_block (tuned: reduce to rank 0 then scatter):
 *          counted like fsdp's; measured within one unit of it.
 *   ddp    MPI_Allreduce in place (tuned: ring): two segments of unit / p
 *          (one at p = 2, none alone).
 * With hybrid sharding the owned slices are also all-reduced across the
 * replica groups (ring again, on slices). Everything else MPI needs is in
 * the process baseline. */
static size_t collective_bytes(strategy_kind kind, const model_layout *L, int ranks, int group, int rank) {
    size_t bytes = 0;
    if (kind == STRATEGY_DDP) {
        if (ranks > 1) bytes = (ranks > 2 ? 2 : 1) * (largest_padded(L, ranks) / (size_t)ranks);
        return bytes;
    }
    bytes = (size_t)binomial_buffers(rank % group, group) * largest_padded(L, group);
    int replicas = ranks / group;
    if (replicas > 1) bytes += (replicas > 2 ? 2 : 1) * (largest_padded(L, group) / (size_t)group / (size_t)replicas);
    return bytes;
}

int plan_cpu_rank(const run_config *cfg, const model_layout *L, int ranks, int rank, plan_cpu *out, ps_error *err) {
    memset(out, 0, sizeof *out);
    strategy_kind kind;
    if (strategy_parse(cfg->parallel.strategy, &kind, err)) return -1;
    if (ranks < 1 || rank < 0 || rank >= ranks) return ps_fail(err, "rank %d of %d ranks", rank, ranks);
    int group = kind == STRATEGY_DDP ? 1 : (cfg->parallel.shard_group ? cfg->parallel.shard_group : ranks);
    if (ranks % group)
        return ps_fail(err, "parallel.shard_group = %d does not divide the %d ranks", cfg->parallel.shard_group, ranks);
    const train_config *t = &cfg->train;
    if (t->seq_len > L->cfg.context)
        return ps_fail(err, "train.seq_len = %d exceeds model.context = %d", t->seq_len, L->cfg.context);
    out->ranks = ranks;
    out->rank = rank;
    out->group = group;
    out->state = sharded_state_bytes_accum(L, kind, group, cfg->parallel.reshard_after_forward, cfg->parallel.prefetch,
                                           cfg->train.grad_accum);
    if (!out->state) return ps_fail(err, "out of memory");
    size_t owned = 0, trained = 0;
    for (int u = 0; u < L->n_units; u++) {
        size_t len = (L->units[u].size + (size_t)group - 1) / (size_t)group;
        owned += len;
        trained += L->units[u].trainable ? len : 0;
    }
    /* m and v of trainable units; fsdp adds the slice (every unit) and its
     * gradient, zero1 the gradient slice (trainable units). */
    out->owned = (2 * trained + (kind == STRATEGY_FSDP ? owned + trained : kind == STRATEGY_ZERO1 ? trained : 0)) *
                 sizeof(real);
    out->units = out->state - out->owned;
    out->activations = model_activations_bytes(L, t->micro_batch, t->seq_len, cfg->parallel.recompute_blocks);
    /* One micro-batch as read, and the step's micro-batches as inputs and
     * targets (with their counts and mean losses). */
    out->tokens = (size_t)t->micro_batch * ((size_t)t->seq_len + 1 + 2 * (size_t)t->seq_len * t->grad_accum) * sizeof(int) +
                  (size_t)t->grad_accum * (sizeof(long) + sizeof(double));
    out->rope = (size_t)L->cfg.context * (size_t)(L->head_dim / 2) * 2 * sizeof(real);
    out->collectives = collective_bytes(kind, L, ranks, group, rank);
    out->process = PLAN_CPU_PROCESS_BYTES;
    out->total = out->state + out->activations + out->tokens + out->rope + out->collectives + out->process;
    return 0;
}

double plan_forward_flops(const model_layout *L, int seq, double n_tokens) {
    return model_train_flops(L, seq, n_tokens) / 3.0;
}

/* An adapt stage's own buffers on one rank, as stages/adapt.c's
 * build_state allocates them for micro-batches of B x T rows: the
 * projector's activations (h, g, dg: 3 x rows x dim), the projector's input
 * and output and the output's gradient (pin rows x W, emb and demb rows x
 * dim), one picture's features (float, V x W), the batch (mm_batch: tokens,
 * targets, positions, sample ids, image blocks, placements), the step's row
 * plan; and, when data is given, every sample's templated ids and train
 * flags (adapt_data keeps them all). */
static size_t adapt_bytes(const run_config *cfg, const model_layout *L, const plan_adapt_data *data) {
    size_t rows = (size_t)cfg->train.micro_batch * (size_t)cfg->train.seq_len, D = (size_t)cfg->model.dim;
    size_t W = (size_t)plan_projector_width(L), V = (size_t)cfg->adapt.visual_tokens;
    size_t bytes = (3 * rows * D + rows * W + 2 * rows * D) * sizeof(real) + V * W * sizeof(float);
    bytes += rows * (6 * sizeof(int) + sizeof(mm_placement)) + rows * sizeof(int); /* mm_batch, mb_sample */
    bytes += 4 * (size_t)cfg->adapt.batch * sizeof(int);                           /* row_first, row_count */
    if (data) bytes += (size_t)(data->text_tokens * (sizeof(int) + 1)) + (size_t)(data->samples + data->bad) * 64;
    return bytes;
}

int plan_cpu_adapt_rank(const run_config *cfg, const model_layout *L, const plan_adapt_data *data, int ranks, int rank,
                        plan_cpu *out, ps_error *err) {
    run_config c = *cfg;
    /* Micro-batches per step on a rank: more than one when the step's
     * samples do not fit one micro-batch per rank (packing aside). */
    c.train.grad_accum = cfg->adapt.batch > cfg->train.micro_batch * ranks ? 2 : 1;
    if (plan_cpu_rank(&c, L, ranks, rank, out, err)) return -1;
    out->tokens = 0; /* the batch is counted in adapt_bytes */
    out->adapt = adapt_bytes(cfg, L, data);
    out->total = out->state + out->activations + out->rope + out->collectives + out->process + out->adapt;
    return 0;
}

/* ------------------------------------------------------------------ gpu
 *
 * The GPU engine's layout (cuda/engine.cu), counted as it allocates; the
 * GPU-hours side is an estimate at a given MFU:
 *
 *  - Sharding: FSDP over the shard group (every GPU of the job, or the GPUs
 *    of one node with replicas across nodes: hybrid). Each GPU owns 1/S of
 *    every unit (padded to whole slices) and keeps, in fp32, the master
 *    weights, the gradient slice and AdamW's m and v of it (16 bytes per
 *    owned parameter; 4 for a frozen unit, weights only), plus the slice in
 *    bf16, the source of the gathers.
 *  - Gathered units in bf16: the unit in use and the next one, prefetched
 *    (2 bytes per parameter, each counted at the largest unit).
 *  - Gradients: the unit in backward is written into a fp32 full-unit
 *    buffer and reduce-scattered into the gradient slice while the next unit
 *    computes (with gradient accumulation into a slice of its own, then
 *    added): two full-unit fp32 buffers (+ one slice), at the largest unit
 *    that trains (frozen units have no gradient).
 *  - Adapt stages (a projected GPU engine: today's adapt runs on the CPU):
 *    the projector's GELU input, output and backward scratch and its input
 *    features, bf16, for every row of the micro-batch (an upper bound: only
 *    the pictures' rows go through it); blind does not use it.
 *  - Activations in bf16 for the micro-batch, with a fused (flash) attention
 *    that keeps no seq x seq probabilities, only a fp32 log-sum-exp per head
 *    and token. Per layer and token a block saves its input x, the normed
 *    input, q|k|v after RoPE, the attention output, x after the attention
 *    residual, the normed feed-forward input, w1|w3 outputs, the SwiGLU
 *    output (2 bytes each) and two fp32 RMSNorm reciprocals: the CPU
 *    trainer's list (model.c) minus the probabilities. The top keeps the
 *    last x, the final norm's output and its reciprocal. Backward needs one
 *    block's worth of bf16 scratch (dx, dln, dqkv, datt, dh13, dhs).
 *    Per-block checkpointing keeps only each block's input (2 bytes x dim
 *    per token per layer) plus one block's full set, recomputed in backward.
 *  - Logits in bf16 [tokens, vocab], overwritten in place by their gradient
 *    (the fused cross-entropy keeps 8 bytes per row).
 *  - The attention backward's scratch, for the block in backward: flash
 *    (head_dim 64 or 128) dQ accumulated in fp32, the row sums of dO * O and
 *    with grouped queries every head's dK, dV (fp32) for the group's sum;
 *    the GEMM path (other head dims) the seq x seq scores per head.
 *  - cuBLASLt workspace: 32 MiB (NVIDIA's recommendation for Hopper), once.
 *  - Tokens, targets, RoPE table and a few scalars: under a megabyte.
 *  - NCCL: 1 GB per communicator; one under FSDP, two under hybrid sharding.
 *    Measured on an H200 (NCCL 2.28.3, CUDA 13.0): a one-rank communicator
 *    and an all-reduce take 578 MiB; with peers each ring/tree channel adds
 *    send/receive buffers per peer (NCCL_BUFFSIZE 4 MiB for the Simple
 *    protocol, plus LL and LL128), about 0.3 GB more at 16-32 channels.
 *    To re-measure on 8 GPUs; NVLS (NCCL_NVLS_ENABLE) may add more.
 *  - CUDA context: 0.55 GB, measured on an H200 (518 MiB per nvidia-smi
 *    after cudaFree(0), 527 MiB per cudaMemGetInfo; a cuBLASLt handle adds
 *    2 MiB).
 *  - "GB" is 10^9 bytes: an "80 GB" H100 has 80 GiB (85.9e9 bytes, a
 *    little less usable), so the difference, about 5 GB, is left for the
 *    caching allocator's fragmentation.
 *  - Time: model FLOPs (model_train_flops) / (MFU x peak x GPUs). With
 *    checkpointing the GPUs also recompute each block's forward pass
 *    (recompute_flops: hardware FLOPs that MFU does not count). */

#define GB 1e9
#define GPU_CUBLASLT_WORKSPACE (32.0 * 1048576)
#define GPU_NCCL_PER_COMM (1.0 * GB)
#define GPU_CUDA_CONTEXT (0.55 * GB)

void plan_gpu_defaults(plan_gpu_opts *o) {
    memset(o, 0, sizeof *o);
    o->nodes = 1;
    o->gpus_per_node = 8;
    o->shard_group = 0;
    o->gpu_mem = 80 * GB;
    o->global_batch = 1024;
    o->seq = 2048;
    o->micro_batch = 0;
    o->mfu = 0.40;
    o->peak_flops = 989e12;
    o->tokens = 30e9;
}

double plan_gpu_activation_bytes(const model_layout *L, int micro_batch, int seq, int checkpointing) {
    const model_config *c = &L->cfg;
    double n = (double)micro_batch * seq, D = c->dim, F = c->ffn_dim, QKV = L->qkv_dim;
    double HD = (double)c->heads * L->head_dim;
    /* x, ln1, qkv, att, x_mid, ln2, h13, hs in bf16; rstd1, rstd2 and the log-sum-exp per head in fp32 */
    double block = 2.0 * (D + D + QKV + HD + D + D + 2 * F + F) + 4.0 * 2 + 4.0 * c->heads;
    double top = 2.0 * D + 2.0 * D + 4.0;                      /* last x, final norm output, its rstd */
    double scratch = 2.0 * (D + D + QKV + HD + 2 * F + F);    /* dx, dln, dqkv, datt, dh13, dhs */
    double per_token = checkpointing ? c->layers * 2.0 * D + block : c->layers * block;
    return n * (per_token + top + scratch);
}

/* The attention backward's fp32 scratch for one block, as
 * gpu_attention_backward_scratch (cuda/attention.cu) counts it: flash
 * (head_dim 64 or 128) accumulates dQ, keeps the row sums of dO * O and,
 * with grouped queries, each head's dK, dV for the group's sum; the GEMM
 * path materialises S, dP (fp32), P, dS (bf16) per head and row, plus fp32
 * dK|dV. */
static double gpu_attention_scratch(const model_layout *L, int micro_batch, int seq) {
    double n = (double)micro_batch * seq, H = L->cfg.heads, hd = L->head_dim;
    int grouped = L->cfg.heads > L->cfg.kv_heads; /* the default backward sums a group's dK, dV through fp32 */
    if (L->head_dim == 64 || L->head_dim == 128) return 4.0 * n * (H * hd * (grouped ? 3 : 1) + H);
    return n * H * (12.0 * seq + 4.0) + 4.0 * n * 2 * L->cfg.kv_heads * hd;
}

/* Memory at micro-batch m; fills the memory fields of g. */
static void gpu_memory(const model_layout *L, const plan_gpu_opts *o, int m, plan_gpu *g) {
    int S = g->shard_group;
    double owned = 0, trained = 0, largest = 0, largest_trained = 0;
    for (int u = 0; u < L->n_units; u++) {
        double len = (double)((L->units[u].size + (size_t)S - 1) / (size_t)S);
        owned += len;
        trained += L->units[u].trainable ? len : 0; /* frozen units: weights only */
        if (len * S > largest) largest = len * S;
        if (L->units[u].trainable && len * S > largest_trained) largest_trained = len * S;
    }
    g->master = 4.0 * owned;
    g->grads = g->adam_m = g->adam_v = 4.0 * trained;
    g->slice_bf16 = 2.0 * owned;
    g->owned = g->master + g->grads + g->adam_m + g->adam_v + g->slice_bf16;
    g->gathered = 2 * 2.0 * largest;
    g->act_full = plan_gpu_activation_bytes(L, m, o->seq, 0);
    g->act_ckpt = plan_gpu_activation_bytes(L, m, o->seq, 1);
    double W = plan_projector_width(L);
    g->projector_acts = W > 0 && o->stage != PLAN_BLIND ? 2.0 * m * o->seq * (3.0 * L->cfg.dim + W) : 0;
    /* With accumulation the reduce-scatter lands in a slice of its own, then is added. */
    g->grad_units = 2 * 4.0 * largest_trained + (g->per_gpu_batch / m > 1 ? 4.0 * largest_trained / S : 0);
    double n = (double)m * o->seq;
    g->logits = 2.0 * n * L->cfg.vocab + 8.0 * n;
    g->attention = gpu_attention_scratch(L, m, o->seq);
    g->workspace = GPU_CUBLASLT_WORKSPACE;
    g->nccl = GPU_NCCL_PER_COMM * (g->replicas > 1 ? 2 : 1);
    g->context = GPU_CUDA_CONTEXT;
    g->buffers = g->grad_units + g->logits + g->attention + g->workspace + g->nccl + g->context;
    g->total_full = g->owned + g->gathered + g->act_full + g->projector_acts + g->buffers;
    g->total_ckpt = g->owned + g->gathered + g->act_ckpt + g->projector_acts + g->buffers;
    g->fits_full = g->total_full <= o->gpu_mem;
    g->fits_ckpt = g->total_ckpt <= o->gpu_mem;
    g->micro_batch = m;
    g->grad_accum = g->per_gpu_batch / m;
}

int plan_gpu_estimate(const model_layout *L, const plan_gpu_opts *o, plan_gpu *g, ps_error *err) {
    memset(g, 0, sizeof *g);
    if (o->nodes < 1 || o->gpus_per_node < 1) return ps_fail(err, "%d nodes x %d GPUs: both must be >= 1", o->nodes, o->gpus_per_node);
    if (o->seq < 1 || o->seq > L->cfg.context)
        return ps_fail(err, "sequence length %d: allowed 1..model.context = %d", o->seq, L->cfg.context);
    if (!(o->mfu > 0 && o->mfu <= 1)) return ps_fail(err, "MFU %g: allowed (0, 1]", o->mfu);
    if (!(o->peak_flops > 0) || !(o->gpu_mem > 0)) return ps_fail(err, "the peak FLOP/s and the GPU memory must be > 0");
    g->gpus = o->nodes * o->gpus_per_node;
    g->shard_group = o->shard_group ? o->shard_group : g->gpus;
    if (g->shard_group < 1 || g->gpus % g->shard_group)
        return ps_fail(err, "a shard group of %d GPUs does not divide the %d GPUs", g->shard_group, g->gpus);
    g->replicas = g->gpus / g->shard_group;
    if (o->global_batch < g->gpus || o->global_batch % g->gpus)
        return ps_fail(err, "a global batch of %d sequences does not split evenly over %d GPUs", o->global_batch, g->gpus);
    g->per_gpu_batch = o->global_batch / g->gpus;
    if (o->micro_batch > 0) {
        if (g->per_gpu_batch % o->micro_batch)
            return ps_fail(err, "micro-batch %d does not divide the %d sequences per GPU (global batch %d / %d GPUs)",
                           o->micro_batch, g->per_gpu_batch, o->global_batch, g->gpus);
        gpu_memory(L, o, o->micro_batch, g);
        g->micro_batch_why = "given";
    } else {
        /* The largest divisor of the per-GPU batch that fits without
         * checkpointing; failing that, with it; failing that, 1. */
        int chosen = 0;
        for (int pass = 0; pass < 2 && !chosen; pass++)
            for (int m = g->per_gpu_batch; m >= 1 && !chosen; m--) {
                if (g->per_gpu_batch % m) continue;
                gpu_memory(L, o, m, g);
                if (pass == 0 ? g->fits_full : g->fits_ckpt) chosen = m;
            }
        if (chosen) {
            g->micro_batch_why = g->fits_full ? "largest that fits without checkpointing"
                                              : "largest that fits with checkpointing";
        } else {
            gpu_memory(L, o, 1, g);
            g->micro_batch_why = "does not fit even at 1";
        }
    }
    const model_config *c = &L->cfg;
    g->step_tokens = (double)o->global_batch * o->seq;
    g->step_flops = plan_train_flops(L, o->stage, o->seq, g->step_tokens, g->step_tokens * o->visual_share);
    /* Recompute = the blocks' forward pass: 2 FLOPs per block matmul weight
     * per token, plus the forward third of the attention term. */
    double block_weights = (double)c->dim * L->qkv_dim + (double)c->heads * L->head_dim * c->dim + 3.0 * c->dim * c->ffn_dim;
    g->recompute_flops = g->step_tokens * c->layers * (2.0 * block_weights + 4.0 * c->dim * (double)o->seq);
    g->step_seconds = g->step_flops / (o->mfu * o->peak_flops * g->gpus);
    g->tokens_per_s = g->step_tokens / g->step_seconds;
    g->steps = ceil(o->tokens / g->step_tokens);
    g->run_seconds = g->steps * g->step_seconds;
    g->gpu_hours = g->run_seconds * g->gpus / 3600.0;
    return 0;
}
