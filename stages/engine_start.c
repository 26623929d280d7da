/* engine_start.c - a training stage's GPU engine (engine_start.h). */
#include "engine_start.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* An NCCL id for the ranks of c: its rank 0 makes it, MPI carries it (with a
 * byte saying whether it exists). 1: id holds one; 0: NCCL is missing. */
static int share_nccl_id(const gpu_engine_api *gpu, comm *c, unsigned char *id, char *why, size_t size,
                         ps_error *err) {
    unsigned char msg[GPU_ENGINE_ID_BYTES + 1];
    memset(msg, 0, sizeof msg);
    ps_error failed;
    if (comm_rank(c) == 0) {
        msg[GPU_ENGINE_ID_BYTES] = gpu->unique_id(msg, &failed) == 0;
        if (!msg[GPU_ENGINE_ID_BYTES]) snprintf(why, size, "%s", failed.msg);
    }
    if (comm_broadcast(c, msg, sizeof msg, 0, err)) return -1;
    memcpy(id, msg, GPU_ENGINE_ID_BYTES);
    return msg[GPU_ENGINE_ID_BYTES];
}

int engine_start(const gpu_engine_api *gpu, const run_config *cfg, const model_layout *L, sharded_state *sh, comm *c,
                 int grad_accum, gpu_engine **out, ps_error *err) {
    *out = NULL;
    comm *main = sh->kind == STRATEGY_DDP ? c : sh->group;
    unsigned char id[GPU_ENGINE_ID_BYTES], replica_id[GPU_ENGINE_ID_BYTES];
    char why[2048] = "";
    int have_id = share_nccl_id(gpu, main, id, why, sizeof why, err), have_replica_id = 0;
    if (have_id < 0) return -1;
    if (comm_size(main) > 1 && !have_id)
        return ps_fail(err, "%d GPU ranks need NCCL%s%s", comm_size(main), comm_rank(main) == 0 ? ": " : " (see rank 0)",
                       why);
    if (sh->replicas && (have_replica_id = share_nccl_id(gpu, sh->replicas, replica_id, why, sizeof why, err)) < 0)
        return -1;
    gpu_engine_setup setup = {
        .layout = L,
        .slices = &sh->slices,
        .strategy = sh->kind,
        .micro_batch = cfg->train.micro_batch,
        .seq_len = cfg->train.seq_len,
        .grad_accum = grad_accum,
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
    if (!(*out = gpu->create(&setup, err))) return -1;
    return gpu->upload(*out, sh->owned, sh->adam_m, sh->adam_v, err);
}

int engine_grad_norm(const sharded_state *sh, double sumsq, double *norm, ps_error *err) {
    if (sh->slices.world > 1 && comm_all_reduce_sum_double(sh->group, &sumsq, 1, err)) return -1;
    *norm = sqrt(sumsq);
    return 0;
}
