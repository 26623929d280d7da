/* engine_check.cu - the GPU engine (cuda/engine.cu, stages/gpu_engine.h) on
 * the model contract of core/model.h, against core/model.c on the CPU
 * backend (the fp32 reference the PyTorch check covers):
 *   - a packed batch (two samples per sequence, embedding rows, padding,
 *     positions restarting per sample): forward_batch's loss, per-row
 *     log-probs and pooled hidden states against model_forward_batch;
 *   - the same with the sample ids dropped on the engine (plain causal):
 *     the log-probs must then differ (the negative control);
 *   - a plain causal batch (the flash kernels): log-probs against the CPU;
 *   - train_batch with the embedding and the first block frozen: the loss
 *     (with a loss_divisor), d loss / d embeds and the trainable units'
 *     gradients against model_backward_batch; frozen units' gradient
 *     buffers untouched, the gradient norm over trainable units only; after
 *     an optimizer step the frozen units' weights are bit-identical;
 * under ddp, zero1 and fsdp with a tied head (frozen units gathered for use;
 * the tied head frozen with the embedding). bf16 activations and
 * weights against fp32: tolerances are relative L2 errors (see TOL_*).
 * Runs on the CPU emulator build (tests/t_gpu_contract.sh) or a GPU.
 * Exit 0 pass, 1 fail, 77 no usable GPU. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "gpu.h"

extern "C" {
#include "backend.h"
#include "model.h"
}
#include "one_rank.cuh"

/* Measured on the emulator (bf16 like the GPU): log-probs 7e-4 (packed and
 * plain), pooled hidden states 4e-3, gradients 6e-3 to 8e-3, losses 1e-4
 * relative; the negative control differs by 1e-1. */
static const double TOL_LOGP = 2e-3, TOL_HIDDEN = 1.5e-2, TOL_GRAD = 5e-2, TOL_LOSS = 2e-3;

static int g_fail;

static void verdict(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verdict(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  %-4s ", ok ? "ok" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) g_fail = 1;
}

static double rel_l2(const double *a, const double *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        r += b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static double rel_l2f(const float *a, const float *b, size_t n) {
    std::vector<double> x(a, a + n), y(b, b + n);
    return rel_l2(x.data(), y.data(), n);
}

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 1) {}
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    int below(int n) { return (int)(next() % (uint64_t)n); }
    double normal() {
        double u = ((next() >> 11) + 0.5) / 9007199254740992.0, v = ((next() >> 11) + 0.5) / 9007199254740992.0;
        return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
    }
};

static float bf16_round(float x) { return gpu_bf16_to_float(gpu_float_to_bf16(x)); }

/* A batch of B sequences of S rows, as an adaptation stage packs them. */
struct Packed {
    int B, S, n;
    std::vector<int> tokens, targets, positions, sample, group;
    std::vector<float> embeds;
    int n_embeds = 0, n_groups = 2;
};

/* Sequence 0: sample 0 (rows 0-9, rows 2-5 image rows), sample 1 (10-19),
 * padding (20-); sequence 1: sample 0 (0-15, rows 0-3 image rows), sample 1
 * (16-). Targets: the next token within the sample (none where the next row
 * is an image row, nor on a sample's last row). Pooling: group 0 = seq 0 sample 0, 1 = seq 1 sample 1. */
static Packed make_packed(const model_config &c, int B, int S, Rng &rng) {
    Packed p;
    p.B = B;
    p.S = S;
    p.n = B * S;
    p.tokens.resize(p.n);
    p.targets.assign(p.n, -1);
    p.positions.resize(p.n);
    p.sample.resize(p.n);
    p.group.assign(p.n, -1);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S; t++) {
            int i = b * S + t, sid, start, image;
            if (b % 2 == 0) {
                sid = t < 10 ? 0 : t < 20 ? 1 : -1;
                start = t < 10 ? 0 : t < 20 ? 10 : 20;
                image = t >= 2 && t <= 5;
            } else {
                sid = t < 16 ? 0 : 1;
                start = t < 16 ? 0 : 16;
                image = t <= 3;
            }
            p.sample[i] = sid;
            p.positions[i] = sid < 0 ? 0 : t - start;
            p.tokens[i] = image && sid >= 0 ? -1 : rng.below(c.vocab);
            if (p.tokens[i] == -1) p.n_embeds++;
            if (b == 0 && sid == 0) p.group[i] = 0;
            if (b == 1 && sid == 1) p.group[i] = 1;
        }
    for (int i = 0; i + 1 < p.n; i++)
        if (p.sample[i] >= 0 && p.sample[i + 1] == p.sample[i] && (i + 1) % S != 0 && p.tokens[i + 1] >= 0)
            p.targets[i] = p.tokens[i + 1];
    p.embeds.resize((size_t)p.n_embeds * c.dim);
    for (float &x : p.embeds) x = bf16_round((float)(0.05 * rng.normal()));
    return p;
}

static model_batch as_batch(Packed &p, bool packed) {
    model_batch b = {};
    b.batch = p.B;
    b.seq = p.S;
    b.tokens = p.tokens.data();
    b.targets = p.targets.data();
    if (packed) {
        b.positions = p.positions.data();
        b.sample = p.sample.data();
    }
    b.embeds = p.embeds.data();
    b.n_embeds = p.n_embeds;
    return b;
}

static int run(int strategy, int tied, const char *name) {
    ps_error err;
    printf("%s:\n", name);
    model_config c = {};
    c.vocab = 128;
    c.dim = 128;
    c.layers = 2;
    c.heads = 2;
    c.kv_heads = 1; /* head_dim 64: the flash kernels for plain batches, GQA */
    c.ffn_dim = 256;
    c.context = 32;
    c.rope_theta = 10000.0;
    c.norm_eps = 1e-5;
    c.init_std = 0.05;
    c.tied_head = tied;
    const int B = 2, S = 24, n = B * S;
    model m;
    if (model_init(&m, &c, backend_cpu(), &err)) return printf("  FAIL cpu model: %s\n", err.msg), 1;
    const model_layout *L = &m.layout;
    model_params P;
    if (model_params_alloc(&P, L, &err)) return printf("  FAIL params: %s\n", err.msg), 1;
    model_init_weights(&P, L, 4321);
    for (int u = 0; u < L->n_units; u++) /* both start from the same bf16 values */
        for (size_t i = 0; i < L->units[u].size; i++) P.unit[u][i] = bf16_round(P.unit[u][i]);
    model_layout_set_trainable(&m.layout, 0, 2, 0); /* the embedding and block 0 frozen */
    model_activations *acts = model_activations_alloc(L, B, S, 0, &err);
    if (!acts) return printf("  FAIL activations: %s\n", err.msg), 1;
    Rng rng(7);
    Packed p = make_packed(c, B, S, rng);

    OneRank g;
    if (one_rank_open(g, L, strategy, B, S, 0.1f, NULL, P.unit, &err)) return printf("  FAIL engine: %s\n", err.msg), 1;
    printf("  engine: %s\n", g.api->describe(g.e));

    /* 1. forward only: loss, log-probs, pooled hidden states of a packed batch */
    size_t hn = (size_t)p.n_groups * (c.layers + 1) * c.dim;
    std::vector<double> lp_cpu(n), lp_gpu(n), hid_cpu(hn), hid_gpu(hn);
    model_batch bc = as_batch(p, true), bg = bc;
    bc.log_probs = lp_cpu.data();
    bc.pool_group = p.group.data();
    bc.n_groups = p.n_groups;
    bc.hidden = hid_cpu.data();
    bg = bc;
    bg.log_probs = lp_gpu.data();
    bg.hidden = hid_gpu.data();
    model_result rc, rg;
    if (model_forward_batch(&m, &P, acts, &bc, &rc, &err)) return printf("  FAIL cpu forward: %s\n", err.msg), 1;
    if (g.api->forward_batch(g.e, &bg, &rg, &err)) return printf("  FAIL engine forward: %s\n", err.msg), 1;
    double e_lp = rel_l2(lp_gpu.data(), lp_cpu.data(), n), e_h = rel_l2(hid_gpu.data(), hid_cpu.data(), hn);
    verdict(rg.n_counted == rc.n_counted && fabs(rg.loss - rc.loss) <= TOL_LOSS * fabs(rc.loss),
            "packed forward: loss %.6f vs cpu %.6f, counted %d vs %d", rg.loss, rc.loss, rg.n_counted, rc.n_counted);
    verdict(e_lp <= TOL_LOGP, "packed forward: per-row log-probs relL2 %.2e (tol %.0e)", e_lp, TOL_LOGP);
    verdict(e_h <= TOL_HIDDEN, "packed forward: pooled hidden states (%d groups x %d levels) relL2 %.2e (tol %.0e)",
            p.n_groups, c.layers + 1, e_h, TOL_HIDDEN);
    int pad_ok = 1;
    for (int i = 0; i < n; i++) pad_ok &= p.sample[i] >= 0 || lp_gpu[i] == 0.0;
    verdict(pad_ok, "padding rows count nowhere (log-prob 0)");

    /* 2. negative control: the same rows as one causal sample per sequence */
    model_batch plain = as_batch(p, false);
    std::vector<double> lp_plain(n);
    plain.log_probs = lp_plain.data();
    if (g.api->forward_batch(g.e, &plain, NULL, &err)) return printf("  FAIL engine forward: %s\n", err.msg), 1;
    double e_neg = rel_l2(lp_plain.data(), lp_cpu.data(), n);
    verdict(e_neg > 3 * TOL_LOGP, "negative control: without sample ids the log-probs differ, relL2 %.2e (> %.0e)",
            e_neg, 3 * TOL_LOGP);

    /* 3. a plain causal batch: the flash path against the CPU */
    std::vector<double> lpc_cpu(n), lpc_gpu(n);
    model_batch cc = plain, cg = plain;
    cc.log_probs = lpc_cpu.data();
    cg.log_probs = lpc_gpu.data();
    if (model_forward_batch(&m, &P, acts, &cc, NULL, &err) || g.api->forward_batch(g.e, &cg, NULL, &err))
        return printf("  FAIL plain forward: %s\n", err.msg), 1;
    double e_c = rel_l2(lpc_gpu.data(), lpc_cpu.data(), n);
    verdict(e_c <= TOL_LOGP, "plain causal forward (%s attention): log-probs relL2 %.2e", gpu_attention_get_impl() ==
            GPU_ATT_FLASH ? "flash" : "GEMM", e_c);

    /* 4. training with frozen units: loss, d embeds, trainable gradients */
    model_params G;
    if (model_grads_alloc(&G, L, &err)) return printf("  FAIL grads: %s\n", err.msg), 1;
    for (int u = 0; u < L->n_units; u++)
        if (G.unit[u]) memset(G.unit[u], 0, L->units[u].size * sizeof(real));
    std::vector<float> de_cpu(p.embeds.size()), de_gpu(p.embeds.size(), NAN);
    model_batch tc = as_batch(p, true), tg = tc;
    tc.embeds_grad = de_cpu.data();
    tg.embeds_grad = de_gpu.data();
    tc.loss_divisor = tg.loss_divisor = 40.0; /* a global batch's count */
    if (model_forward_batch(&m, &P, acts, &tc, &rc, &err) || model_backward_batch(&m, &P, &G, acts, &tc, 1.0f, &err))
        return printf("  FAIL cpu training pass: %s\n", err.msg), 1;
    double loss_sum = 0, sumsq = 0;
    if (g.api->train_batch(g.e, 0, &tg, 1.0f, &err) || g.api->finish_backward(g.e, &loss_sum, &sumsq, &err))
        return printf("  FAIL engine training pass: %s\n", err.msg), 1;
    verdict(fabs(loss_sum - rc.loss) <= TOL_LOSS * fabs(rc.loss), "train: loss (sum / loss_divisor) %.6f vs cpu %.6f",
            loss_sum, rc.loss);
    double e_de = rel_l2f(de_gpu.data(), de_cpu.data(), de_cpu.size());
    verdict(e_de <= TOL_GRAD, "train: d loss / d embeds (%d rows, through the frozen block) relL2 %.2e", p.n_embeds,
            e_de);
    std::vector<std::vector<float>> gg(L->n_units);
    std::vector<real *> gp(L->n_units);
    for (int u = 0; u < L->n_units; u++) {
        gg[u].assign(L->units[u].size, NAN); /* frozen units' buffers must stay NaN */
        gp[u] = gg[u].data();
    }
    if (g.api->gradients(g.e, gp.data(), &err)) return printf("  FAIL gradients: %s\n", err.msg), 1;
    double norm2 = 0;
    for (int u = 0; u < L->n_units; u++) {
        if (!L->units[u].trainable) {
            bool untouched = true;
            for (float x : gg[u]) untouched &= isnan(x);
            verdict(untouched, "frozen unit %d: no gradient written", u);
            continue;
        }
        for (float x : gg[u]) norm2 += (double)x * x;
        double e_g = rel_l2f(gg[u].data(), G.unit[u], gg[u].size());
        verdict(e_g <= TOL_GRAD, "train: unit %d gradient relL2 %.2e", u, e_g);
    }
    verdict(fabs(sumsq - norm2) <= 1e-6 * norm2, "gradient norm over the trainable units only: %.6e vs %.6e", sumsq,
            norm2);

    /* 5. an optimizer step leaves the frozen units as they were */
    if (g.api->optimizer_step(g.e, 1e-2, 1, 1.0, &err)) return printf("  FAIL optimizer: %s\n", err.msg), 1;
    std::vector<std::vector<float>> after(L->n_units), mv(2 * L->n_units);
    std::vector<real *> ap(L->n_units), mp(L->n_units), vp(L->n_units);
    for (int u = 0; u < L->n_units; u++) {
        after[u].assign(L->units[u].size, 0.f);
        mv[2 * u].assign(L->units[u].size, 0.f);
        mv[2 * u + 1].assign(L->units[u].size, 0.f);
        ap[u] = after[u].data();
        mp[u] = mv[2 * u].data();
        vp[u] = mv[2 * u + 1].data();
    }
    if (g.api->download(g.e, ap.data(), mp.data(), vp.data(), &err))
        return printf("  FAIL download: %s\n", err.msg), 1;
    for (int u = 0; u < L->n_units; u++) {
        bool same = !memcmp(after[u].data(), P.unit[u], L->units[u].size * sizeof(float));
        verdict(same == !L->units[u].trainable, "after a step: unit %d %s", u,
                L->units[u].trainable ? (same ? "did not change" : "changed") : (same ? "unchanged" : "CHANGED"));
    }
    one_rank_close(g);
    model_params_free(&G);
    model_params_free(&P);
    model_activations_free(acts);
    model_free(&m);
    return g_fail;
}

int main(void) {
    char why[512];
    if (!presight_gpu_engine()->available(why, sizeof why)) {
        printf("%s\n", why);
        return 77;
    }
    run(STRATEGY_DDP, 0, "ddp");
    run(STRATEGY_ZERO1, 0, "zero1");
    run(STRATEGY_FSDP, 1, "fsdp, tied head (frozen with the embedding)");
    printf(g_fail ? "FAIL\n" : "engine contract: ok\n");
    return g_fail;
}
