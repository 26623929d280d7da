/* one_rank.cuh - the GPU engine (stages/gpu_engine.h) on one rank, as the
 * check programs open it: slices over a group of one (whole units), no NCCL,
 * AdamW moments starting at zero. */
#ifndef PRESIGHT_ONE_RANK_CUH
#define PRESIGHT_ONE_RANK_CUH

#include <algorithm>
#include <vector>

extern "C" {
#include "gpu_engine.h"
#include "sharding.h"
}

extern "C" const gpu_engine_api *presight_gpu_engine(void);

struct OneRank {
    const gpu_engine_api *api = NULL;
    gpu_engine *e = NULL;
    shard_layout sl = {};
    std::vector<size_t> size;
};

/* An engine for layout L at [B, S] under strategy, holding params (whole
 * units). -1 with err when it cannot be made (too large: err says why). */
static inline int one_rank_open(OneRank &r, const model_layout *L, int strategy, int B, int S, float weight_decay,
                                void *op_marks, real *const *params, ps_error *err) {
    r.api = presight_gpu_engine();
    r.size.resize(L->n_units);
    for (int u = 0; u < L->n_units; u++) r.size[u] = L->units[u].size;
    r.sl = {L->n_units, 0, 1, r.size.data(), r.size.data()};
    gpu_engine_setup s = {};
    s.layout = L;
    s.slices = &r.sl;
    s.strategy = strategy;
    s.micro_batch = B;
    s.seq_len = S;
    s.grad_accum = 1;
    s.reshard_after_forward = 1;
    s.prefetch = 1;
    s.world = 1;
    s.replicas = 1;
    s.local_rank = gpu_local_rank();
    s.beta1 = 0.9f;
    s.beta2 = 0.95f;
    s.adam_eps = 1e-8f;
    s.weight_decay = weight_decay;
    s.op_marks = op_marks;
    if (!(r.e = r.api->create(&s, err))) return -1;
    size_t most = 0;
    for (size_t n : r.size) most = std::max(most, n);
    std::vector<float> zeros(most, 0.f);
    std::vector<real *> z(L->n_units, zeros.data());
    return r.api->upload(r.e, params, z.data(), z.data(), err);
}

static inline void one_rank_close(OneRank &r) {
    if (r.e) r.api->destroy(r.e);
    r.e = NULL;
}

#endif
