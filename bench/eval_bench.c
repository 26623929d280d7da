/* eval_bench.c - the eval stage's two model loops on one config's model (random weights:
 * throughput does not depend on them).
 * usage: eval_bench CONFIG [key=value ...]
 *   scoring   multiple-choice requests (a 3/4 context, a 1/4 continuation of train.seq_len
 *             tokens) through eval_model_score, eval.batch rows per pass, against the
 *             training forward (model_forward, training activations) of the same
 *             train.micro_batch x train.seq_len tokens;
 *   decoding  eval.max_new_tokens greedy tokens after a seq_len / 2 prompt for eval.batch
 *             prompts with the KV cache (model_greedy_decode), against recomputing the whole
 *             forward on each prefix (what a decoder without a cache does).
 * Prints one JSON object: score_tokens_per_s, forward_tokens_per_s, decode tokens/s with
 * and without the cache, decode_cache_speedup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "config.h"
#include "decode.h"
#include "eval_model.h"
#include "runner.h"

static int fail(const ps_error *err) {
    fprintf(stderr, "eval_bench: %s\n", err->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: eval_bench CONFIG [key=value ...]\n"), 2;
    run_config cfg;
    ps_error err = {{0}};
    eval_model em;
    memset(&em, 0, sizeof em);
    if (config_load(&cfg, argv[1], argc - 2, argv + 2, &err) || blas_init(&err)) return fail(&err);
    em.cfg = cfg;
    if (model_init(&em.model, &cfg.model, backend_cpu(), &err) || model_params_alloc(&em.params, &em.model.layout, &err))
        return fail(&err);
    model_init_weights(&em.params, &em.model.layout, 1);
    int B = cfg.train.micro_batch, T = cfg.train.seq_len, V = cfg.model.vocab, R = cfg.eval.batch;
    int n_req = 4 * R, ctx = T * 3 / 4, cont = T - ctx;
    /* scoring */
    eval_request *req = calloc((size_t)n_req, sizeof *req);
    double *ll = malloc(sizeof *ll * n_req);
    int *greedy = malloc(sizeof *greedy * n_req);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < n_req; i++) {
        req[i].context.ids = malloc(sizeof(uint32_t) * ctx), req[i].continuation.ids = malloc(sizeof(uint32_t) * cont);
        req[i].context.n = req[i].context.cap = (size_t)ctx, req[i].continuation.n = req[i].continuation.cap = (size_t)cont;
        for (int t = 0; t < ctx; t++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, req[i].context.ids[t] = (uint32_t)(x % V);
        for (int t = 0; t < cont; t++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, req[i].continuation.ids[t] = (uint32_t)(x % V);
    }
    double tokens = 0;
    if (eval_model_score(&em, req, (size_t)R, R, ll, greedy, NULL, &err)) return fail(&err); /* warm-up */
    double t0 = job_now();
    if (eval_model_score(&em, req, (size_t)n_req, R, ll, greedy, &tokens, &err)) return fail(&err);
    double score_s = job_now() - t0;
    /* the training forward of the same tokens */
    model_activations *acts = model_activations_alloc(&em.model.layout, B, T, 0, &err);
    int *tok = malloc(sizeof *tok * B * T), *tgt = malloc(sizeof *tgt * B * T);
    if (!acts) return fail(&err);
    for (int i = 0; i < B * T; i++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, tok[i] = (int)(x % V), tgt[i] = (int)((x >> 20) % V);
    model_forward(&em.model, &em.params, acts, tok, tgt, B, T);
    int reps = (int)(tokens / (B * T)) > 0 ? (int)(tokens / (B * T)) : 1;
    t0 = job_now();
    for (int r = 0; r < reps; r++) model_forward(&em.model, &em.params, acts, tok, tgt, B, T);
    double fwd_s = job_now() - t0;
    model_activations_free(acts);
    /* decoding */
    int P = T / 2, N = cfg.eval.max_new_tokens;
    int *prompts = malloc(sizeof *prompts * R * P), *len = malloc(sizeof *len * R), *out = malloc(sizeof *out * R * N);
    for (int i = 0; i < R * P; i++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, prompts[i] = (int)(x % V);
    for (int i = 0; i < R; i++) len[i] = P;
    t0 = job_now();
    if (model_greedy_decode(&em.model, &em.params, prompts, P, len, R, N, out, NULL, &err)) return fail(&err);
    double cached_s = job_now() - t0;
    /* without a cache: the whole forward-only pass over each prefix, argmax of the last row */
    int *seq = malloc(sizeof *seq * R * (P + N));
    t0 = job_now();
    for (int b = 0; b < R; b++) memcpy(seq + b * (P + N), prompts + b * P, sizeof *seq * P);
    int mismatch = 0;
    for (int s = 0; s < N; s++) {
        int L = P + s;
        int *in = malloc(sizeof *in * R * L);
        for (int b = 0; b < R; b++) memcpy(in + b * L, seq + b * (P + N), sizeof *in * L);
        model_activations *fa = model_activations_alloc_forward(&em.model.layout, R, L, &err);
        model_batch mb = {.batch = R, .seq = L, .tokens = in};
        if (!fa || model_forward_batch(&em.model, &em.params, fa, &mb, NULL, &err)) return fail(&err);
        const real *z = model_logits(fa);
        for (int b = 0; b < R; b++) {
            const real *row = z + ((size_t)b * L + L - 1) * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (row[v] > row[best]) best = v;
            seq[b * (P + N) + L] = best;
            mismatch += best != out[b * N + s];
        }
        model_activations_free(fa);
        free(in);
    }
    double recompute_s = job_now() - t0;
    double gen = (double)R * N;
    printf("{\"score_tokens_per_s\":%.1f,\"forward_tokens_per_s\":%.1f,\"score_vs_forward\":%.3f,"
           "\"decode_cached_tokens_per_s\":%.1f,\"decode_recompute_tokens_per_s\":%.1f,\"decode_cache_speedup\":%.2f,"
           "\"decode_mismatches\":%d,\"rows\":%d,\"seq_len\":%d,\"prompt\":%d,\"new_tokens\":%d,\"blas\":\"%s\"}\n",
           tokens / score_s, reps * (double)B * T / fwd_s, (tokens / score_s) / (reps * (double)B * T / fwd_s),
           gen / cached_s, gen / recompute_s, recompute_s / cached_s, mismatch, R, T, P, N, blas_describe());
    return mismatch ? 1 : 0;
}
