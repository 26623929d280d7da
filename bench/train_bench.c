/* train_bench.c - training throughput of presight on one config.
 * usage: train_bench CONFIG [key=value ...]
 * Runs one warm-up step, then train.steps timed steps, and prints one JSON
 * object: tokens/s, model FLOP/s (PaLM convention, see model_train_flops),
 * seconds per step and the BLAS in use. */
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "comm.h"
#include "config.h"
#include "sharding.h"
#include "pretrain.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: train_bench CONFIG [key=value ...]\n");
        return 2;
    }
    run_config cfg;
    ps_error err = {{0}};
    comm *world = NULL;
    trainer t;
    if (config_load(&cfg, argv[1], argc - 2, argv + 2, &err) || comm_world(&world, &argc, &argv, &err) ||
        trainer_init(&t, &cfg, world, &err)) {
        fprintf(stderr, "train_bench: %s\n", err.msg);
        return 1;
    }
    t.total_steps = cfg.train.steps + 1;
    train_step_stats s;
    double seconds = 0, tokens = 0, best = 1e30;
    for (int64_t i = 0; i <= cfg.train.steps; i++) {
        if (trainer_step(&t, &s, &err)) {
            fprintf(stderr, "train_bench: %s\n", err.msg);
            return 1;
        }
        if (i == 0) continue; /* warm-up: page faults, BLAS buffers */
        seconds += s.seconds;
        tokens += s.tokens;
        if (s.seconds < best) best = s.seconds;
    }
    double flops_per_token = model_train_flops(&t.model.layout, cfg.train.seq_len, 1.0);
    /* Collective payload per step, against the parameter bytes: DDP moves
     * about 2x them (all-reduce), FSDP about 3x (two all-gathers and a
     * reduce-scatter). */
    const sharded_state *sh = &t.shards;
    double comm = comm_bytes(world) + comm_bytes(sh->group) + (sh->replicas ? comm_bytes(sh->replicas) : 0);
    double param_bytes = 0;
    for (int u = 0; u < t.model.layout.n_units; u++) param_bytes += (double)sh->padded[u] * sizeof(real);
    double theory = (sh->kind == STRATEGY_FSDP ? 3.0 : 2.0) * param_bytes;
    gpu_engine_memory gm = {0};
    if (t.engine) t.gpu->memory(t.engine, &gm);
    if (comm_rank(world) != 0) goto done;
    printf("{\"params\":%zu,\"tokens_per_step\":%.0f,\"step_s\":%.4f,\"best_step_s\":%.4f,\"tokens_per_s\":%.1f,"
           "\"model_gflops\":%.2f,\"final_loss\":%.4f,\"blas\":\"%s\",\"threads\":%d,\"steps\":%lld,"
           "\"model\":{\"vocab\":%d,\"dim\":%d,\"layers\":%d,\"heads\":%d,\"kv_heads\":%d,\"ffn_dim\":%d,"
           "\"tied_head\":%d,\"rope_theta\":%g,\"norm_eps\":%g},\"micro_batch\":%d,\"seq_len\":%d,\"ranks\":%d,"
           "\"strategy\":\"%s\",\"comm_bytes_per_step\":%.0f,\"comm_theory_per_step\":%.0f,\"backend\":\"%s\","
           "\"gpu_peak_bytes\":%zu,\"gpu_device_used_bytes\":%zu,\"gpu_step_mallocs\":%lld}\n",
           t.model.layout.n_params, s.tokens, seconds / cfg.train.steps, best, tokens / seconds,
           flops_per_token * tokens / seconds / 1e9, s.loss, t.engine ? t.gpu->describe(t.engine) : blas_describe(),
           blas_threads(), (long long)cfg.train.steps,
           cfg.model.vocab, cfg.model.dim, cfg.model.layers, cfg.model.heads, cfg.model.kv_heads, cfg.model.ffn_dim,
           cfg.model.tied_head, cfg.model.rope_theta, cfg.model.norm_eps, cfg.train.micro_batch, cfg.train.seq_len,
           comm_size(world), cfg.parallel.strategy, comm / (double)(cfg.train.steps + 1), comm_size(world) > 1 ? theory : 0,
           t.engine ? "cuda" : "cpu", gm.peak_bytes, gm.device_used_bytes, gm.step_mallocs);
done:
    trainer_free(&t);
    comm_free(world);
    comm_shutdown();
    return 0;
}
