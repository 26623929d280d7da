/* cmd_plan.c - presight plan CONFIG: what a config costs before running it. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "model.h"
#include "plan.h"

static const char *const presets[] = {"340m", "1b", "3b", "7b", "13b"};
#define N_PRESETS (int)(sizeof presets / sizeof *presets)

static void plan_help(FILE *out) {
    fprintf(out,
            "usage: presight plan CONFIG [key=value ...] [options]\n"
            "       presight plan --all [options]\n\n"
            "Prints the parameter count of the model CONFIG describes (by part) and the training FLOPs\n"
            "per token, then what a GPU run of it needs: memory per GPU by part (owned shards, gathered\n"
            "units, activations with and without checkpointing, buffers), whether that fits, and the\n"
            "step time and run time at a given MFU. --all prints one line per preset (340m-13b, from\n"
            "config/model/) at the same settings.\n\n"
            "options (GPU plan; defaults: the study's settings on one node of 8 H100 80GB):\n"
            "  --nodes N            nodes (1)\n"
            "  --gpus-per-node G    GPUs per node (8)\n"
            "  --gpu-mem GB         memory per GPU, in 10^9 bytes (80)\n"
            "  --global-batch SEQ   sequences per optimizer step over all GPUs (1024); the sequence\n"
            "                       length is train.seq_len (2048 unless the config says otherwise)\n"
            "  --micro-batch M      sequences per micro-batch per GPU (default: the largest that fits)\n"
            "  --mfu X              model FLOPs utilisation (0.40)\n"
            "  --peak-tflops T      peak dense bf16 TFLOP/s per GPU (989, H100 SXM datasheet)\n"
            "  --cpu-ranks N        also the CPU trainer's peak memory per rank for this config's\n"
            "                       train.* and parallel.* settings on N MPI ranks, ending with a line\n"
            "                       cpu_rank_bytes=R0,R1,... (bytes, rank order)\n"
            "The token budget is train.tokens (the study's default 30B when the config sets none).\n"
            "An adapt config (config/adapt/*.cfg, adapt.data set) is planned as presight adapt runs it: the LLM\n"
            "of adapt.init (or this config's model.* when adapt.init names no run), the projector appended, the\n"
            "LLM frozen in align (weights only, still gathered under fsdp); its tokens are counted from\n"
            "adapt.data (samples x (visual tokens + templated text), cut at train.seq_len) over adapt.epochs,\n"
            "and the global batch is adapt.batch samples packed into train.seq_len rows (--global-batch\n"
            "overrides it). The GPU model's assumptions are listed in stages/plan.c.\n");
}

static void print_count(const char *what, double n) {
    printf("  %-28s %14.0f  (%.1f M)\n", what, n, n / 1e6);
}

static void print_params(const run_config *cfg, const model_layout *L) {
    const model_config *c = &cfg->model;
    /* The decoder's units: embedding, blocks, final norm + head (units past llm_units are extras, a projector). */
    int head_unit = L->llm_units - 1;
    double embed = (double)L->units[0].size, blocks = 0, head = (double)L->units[head_unit].size;
    for (int u = 1; u < head_unit; u++) blocks += (double)L->units[u].size;
    printf("%s: %d layers, dim %d, %d heads (%d kv, head dim %d), ffn %d, vocab %d, context %d, %s head\n",
           cfg->source, c->layers, c->dim, c->heads, c->kv_heads, L->head_dim, c->ffn_dim, c->vocab, c->context,
           c->tied_head ? "tied" : "untied");
    print_count("embedding", embed);
    print_count("transformer blocks", blocks);
    print_count("final norm + output head", head);
    if (L->n_units > L->llm_units) {
        char what[64];
        snprintf(what, sizeof what, "projector (%d -> %d, 2 layers)", plan_projector_width(L), c->dim);
        print_count(what, (double)L->units[L->llm_units].size);
    }
    print_count("total parameters", (double)L->n_params);
    double frozen = 0;
    int frozen_units = 0;
    for (int u = 0; u < L->n_units; u++)
        if (!L->units[u].trainable) {
            frozen += (double)L->units[u].size;
            frozen_units++;
        }
    if (frozen_units) {
        print_count("trainable parameters", (double)L->n_params - frozen);
        printf("  %-28s %14.0f  (%.1f M in %d units: no gradients, no optimizer state)\n", "frozen parameters", frozen,
               frozen / 1e6, frozen_units);
    }
    int seq = cfg->train.seq_len <= c->context ? cfg->train.seq_len : c->context;
    printf("  %-28s %14.4g  (6N + attention, PaLM convention, seq %d)\n", "training FLOPs per token",
           model_train_flops(L, seq, 1.0), seq);
}

/* An adapt stage: what trains, the sequence, the data. */
static void print_adapt(const run_config *cfg, const model_layout *L, const char *from, const plan_adapt_data *d,
                        const char *data_error) {
    plan_stage st = plan_stage_of(cfg);
    const adapt_config *a = &cfg->adapt;
    printf("\nadapt stage %s (%s)\n", plan_stage_name(st), from);
    printf("  trains: %s; frozen units keep weights only (no gradients, no AdamW moments) and are still gathered "
           "under fsdp\n",
           st == PLAN_ALIGN ? "the projector (the LLM is frozen)"
           : st == PLAN_BLIND ? "the LLM (the projector is not used: pictures withheld)"
                              : "the projector and the LLM");
    printf("  sequence: train.seq_len %d rows; a picture is adapt.visual_tokens = %d rows of the projector's output "
           "(%d-wide features in), spliced where <image> stands; %s\n",
           cfg->train.seq_len, a->visual_tokens, plan_projector_width(L),
           a->pack ? "samples packed into rows" : "one sample per row");
    if (!d) {
        printf("  data: not counted (%s); the GPU budget falls back to train.tokens\n", data_error);
        return;
    }
    printf("  data: %s, %ld samples (%ld with a picture%s), %ld lines skipped\n", a->data, d->samples, d->visual,
           st == PLAN_BLIND ? ": withheld" : "", d->bad);
    printf("  tokens per epoch: %.0f = %.0f visual + %.0f templated text rows, after cutting at %d (mean %.1f a "
           "sample)\n",
           d->rows, d->visual_rows, d->rows - d->visual_rows, cfg->train.seq_len, d->rows / d->samples);
    printf("  x %d epoch%s = %.0f tokens in %ld steps of adapt.batch %d samples\n", d->epochs, d->epochs > 1 ? "s" : "",
           d->rows * d->epochs, d->steps, a->batch);
    printf("  training FLOPs per token: %.4g (%s)\n",
           plan_train_flops(L, st, cfg->train.seq_len, d->rows, d->visual_rows) / d->rows,
           st == PLAN_ALIGN ? "the frozen LLM 4N: forward and the input's gradient, no weight gradient; + attention; "
                              "+ the projector's on visual rows"
                            : "6N + attention; + the projector's on visual rows");
}

/* ------------------------------------------------------------- options */

typedef struct plan_args {
    const char *config;
    int all;
    int cpu_ranks;
    int global_batch_given;
    plan_gpu_opts gpu;
    int n_overrides;
    char **overrides;
} plan_args;

static int parse_number(const char *flag, const char *text, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (!text || errno || end == text || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "presight plan: %s %s: expected a number in [%g, %g]\n", flag, text ? text : "(missing)", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_int(const char *flag, const char *text, int lo, int hi, int *out) {
    double v;
    if (parse_number(flag, text, lo, hi, &v)) return -1;
    if (v != (int)v) {
        fprintf(stderr, "presight plan: %s %s: expected a whole number\n", flag, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Flags take their value as the next word or after '='. key=value words
 * are config overrides, kept in order in args->overrides (argv reused). */
static int parse_args(int argc, char **argv, plan_args *a) {
    memset(a, 0, sizeof *a);
    plan_gpu_defaults(&a->gpu);
    a->overrides = argv;
    for (int i = 1; i < argc; i++) {
        char *word = argv[i];
        if (strncmp(word, "--", 2) != 0) {
            if (strchr(word, '=')) a->overrides[a->n_overrides++] = word;
            else if (!a->config) a->config = word;
            else {
                fprintf(stderr, "presight plan: unexpected argument '%s' (one CONFIG, then key=value overrides)\n", word);
                return -1;
            }
            continue;
        }
        if (!strcmp(word, "--all")) {
            a->all = 1;
            continue;
        }
        char name[64];
        const char *value, *eq = strchr(word, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - word), word);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", word);
            value = i + 1 < argc ? argv[++i] : NULL;
        }
        double gb, tflops;
        int rc;
        if (!strcmp(name, "--nodes")) rc = parse_int(name, value, 1, 1 << 20, &a->gpu.nodes);
        else if (!strcmp(name, "--gpus-per-node")) rc = parse_int(name, value, 1, 1024, &a->gpu.gpus_per_node);
        else if (!strcmp(name, "--global-batch")) {
            rc = parse_int(name, value, 1, 1 << 30, &a->gpu.global_batch);
            a->global_batch_given = 1;
        }
        else if (!strcmp(name, "--micro-batch")) rc = parse_int(name, value, 1, 1 << 20, &a->gpu.micro_batch);
        else if (!strcmp(name, "--cpu-ranks")) rc = parse_int(name, value, 1, 1 << 20, &a->cpu_ranks);
        else if (!strcmp(name, "--mfu")) rc = parse_number(name, value, 1e-6, 1, &a->gpu.mfu);
        else if (!strcmp(name, "--gpu-mem")) {
            rc = parse_number(name, value, 1e-3, 1e6, &gb);
            a->gpu.gpu_mem = gb * 1e9;
        } else if (!strcmp(name, "--peak-tflops")) {
            rc = parse_number(name, value, 1e-3, 1e9, &tflops);
            a->gpu.peak_flops = tflops * 1e12;
        } else {
            fprintf(stderr, "presight plan: unknown option %s (see presight plan --help)\n", name);
            return -1;
        }
        if (rc) return -1;
    }
    if (!a->config && !a->all) {
        plan_help(stderr);
        return -1;
    }
    if (a->config && a->all) {
        fprintf(stderr, "presight plan: give a CONFIG or --all, not both\n");
        return -1;
    }
    if (a->all && a->cpu_ranks) {
        fprintf(stderr, "presight plan: --cpu-ranks needs a CONFIG (its train and parallel settings)\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ printing */

static void human_count(char *out, size_t size, double v) {
    if (v >= 1e12) snprintf(out, size, "%.2fT", v / 1e12);
    else if (v >= 1e9) snprintf(out, size, "%.2fB", v / 1e9);
    else if (v >= 1e6) snprintf(out, size, "%.2fM", v / 1e6);
    else if (v >= 1e3) snprintf(out, size, "%.1fk", v / 1e3);
    else snprintf(out, size, "%.0f", v);
}

static void human_time(char *out, size_t size, double s) {
    if (s < 120) snprintf(out, size, "%.1f s", s);
    else if (s < 7200) snprintf(out, size, "%.1f min", s / 60);
    else if (s < 3 * 86400) snprintf(out, size, "%.1f h", s / 3600);
    else snprintf(out, size, "%.1f days", s / 86400);
}

/* The token budget: train.tokens, or the study's default. */
static double budget(const run_config *cfg, const char **why) {
    if (cfg->train.tokens > 0) {
        *why = "train.tokens";
        return (double)cfg->train.tokens;
    }
    *why = "the study's default; train.tokens is not set";
    return 30e9;
}

#define COLS_MAX 2

static void row(const char *label, const plan_gpu *g, int n, size_t offset) {
    printf("  %-44s", label);
    for (int i = 0; i < n; i++) printf(" %14.2f", *(const double *)((const char *)&g[i] + offset) / 1e9);
    printf("\n");
}
#define ROW(label, field) row(label, g, n, offsetof(plan_gpu, field))

static void yes_no_row(const char *label, const plan_gpu *g, int n, int ckpt) {
    printf("  %-44s", label);
    for (int i = 0; i < n; i++) printf(" %14s", (ckpt ? g[i].fits_ckpt : g[i].fits_full) ? "yes" : "no");
    printf("\n");
}

static int print_gpu(const run_config *cfg, const model_layout *L, const plan_gpu_opts *base, const plan_adapt_data *d,
                     int global_batch_given) {
    plan_gpu_opts o = *base;
    o.seq = cfg->train.seq_len;
    const char *why;
    o.tokens = budget(cfg, &why);
    plan_gpu g[COLS_MAX];
    char head[COLS_MAX][32];
    int n = 0, gpus = o.nodes * o.gpus_per_node;
    ps_error err = {{0}};
    o.stage = plan_stage_of(cfg);
    if (d) {
        o.tokens = d->rows * d->epochs;
        o.visual_share = d->visual_rows / d->rows;
        why = "adapt.data x adapt.epochs";
        /* adapt.batch samples packed into rows of seq, a whole number per GPU. */
        if (!global_batch_given) {
            int rows = (int)ceil(cfg->adapt.batch * (d->rows / d->samples) / o.seq);
            o.global_batch = (rows + gpus - 1) / gpus * gpus;
        }
    }
    /* FSDP over every GPU; and, with several nodes, sharded within a node and replicated across nodes. */
    o.shard_group = 0;
    if (plan_gpu_estimate(L, &o, &g[n], &err)) goto fail;
    snprintf(head[n++], sizeof head[0], "fsdp over %d", gpus);
    if (o.nodes > 1) {
        o.shard_group = o.gpus_per_node;
        if (plan_gpu_estimate(L, &o, &g[n], &err)) goto fail;
        snprintf(head[n++], sizeof head[0], "hybrid %dx%d", o.gpus_per_node, o.nodes);
    }
    /* An adapt stage's steps are its data's (each a padded global batch of rows). */
    for (int i = 0; d && i < n; i++) {
        g[i].steps = (double)d->steps;
        g[i].run_seconds = g[i].steps * g[i].step_seconds;
        g[i].gpu_hours = g[i].run_seconds * g[i].gpus / 3600.0;
    }
    char tokens[32];
    human_count(tokens, sizeof tokens, g[0].step_tokens);
    printf("\nGPU plan: %d node%s x %d GPUs = %d GPUs of %.0f GB; global batch %d sequences x %d tokens = %s tokens a step\n",
           o.nodes, o.nodes > 1 ? "s" : "", o.gpus_per_node, gpus, o.gpu_mem / 1e9, o.global_batch, o.seq, tokens);
    printf("  %-44s", "memory per GPU, GB (10^9 bytes)");
    for (int i = 0; i < n; i++) printf(" %14s", head[i]);
    printf("\n  %-44s", "shard group x replicas");
    for (int i = 0; i < n; i++) {
        char cell[32];
        snprintf(cell, sizeof cell, "%d x %d", g[i].shard_group, g[i].replicas);
        printf(" %14s", cell);
    }
    printf("\n  %-44s", "micro_batch x grad_accum (sequences per GPU)");
    for (int i = 0; i < n; i++) {
        char cell[32];
        snprintf(cell, sizeof cell, "%d x %d", g[i].micro_batch, g[i].grad_accum);
        printf(" %14s", cell);
    }
    printf("\n");
    ROW("owned shard, fp32", owned);
    ROW("  master weights", master);
    ROW("  gradients", grads);
    ROW("  AdamW m", adam_m);
    ROW("  AdamW v", adam_v);
    ROW("  bf16 copy (what the gathers read)", slice_bf16);
    ROW("gathered units, bf16 (in use + next)", gathered);
    ROW("activations, bf16, no checkpointing", act_full);
    ROW("activations, bf16, per-block checkpointing", act_ckpt);
    if (g[0].projector_acts > 0) ROW("projector activations + input, bf16", projector_acts);
    ROW("buffers", buffers);
    ROW("  gradient units, fp32 (+ in reduce-scatter)", grad_units);
    ROW("  logits bf16 + cross-entropy rows", logits);
    ROW("  attention backward scratch", attention);
    ROW("  cuBLASLt workspace", workspace);
    ROW("  NCCL", nccl);
    ROW("  CUDA context", context);
    ROW("total, no checkpointing", total_full);
    ROW("total, per-block checkpointing", total_ckpt);
    char label[64];
    snprintf(label, sizeof label, "fits in %.0f GB, no checkpointing", o.gpu_mem / 1e9);
    yes_no_row(label, g, n, 0);
    snprintf(label, sizeof label, "fits in %.0f GB, per-block checkpointing", o.gpu_mem / 1e9);
    yes_no_row(label, g, n, 1);
    for (int i = 0; i < n; i++)
        printf("  %s: micro_batch %d (%s)\n", head[i], g[i].micro_batch, g[i].micro_batch_why);
    printf("fits in %.0f GB: %s (with checkpointing: %s) with FSDP over %d GPU%s at micro_batch %d\n", o.gpu_mem / 1e9,
           g[0].fits_full ? "yes" : "no", g[0].fits_ckpt ? "yes" : "no", gpus, gpus > 1 ? "s" : "", g[0].micro_batch);
    /* What the caching allocator hands out (no context, no NCCL): final.json's gpu_peak_mb of a run. */
    printf("gpu_allocator_bytes=%.0f,%.0f (fsdp over %d, micro_batch %d: no checkpointing, per-block checkpointing)\n",
           g[0].total_full - g[0].nccl - g[0].context, g[0].total_ckpt - g[0].nccl - g[0].context, gpus,
           g[0].micro_batch);

    char tps[32], steps[32], run[32], step[32];
    human_count(tps, sizeof tps, g[0].tokens_per_s);
    human_count(steps, sizeof steps, g[0].steps);
    human_time(step, sizeof step, g[0].step_seconds);
    human_time(run, sizeof run, g[0].run_seconds);
    printf("\nstep: %.3g model FLOPs (%.3g per token, PaLM convention); per-block checkpointing recomputes "
           "%.3g more (hardware FLOPs, +%.0f%%)\n",
           g[0].step_flops, g[0].step_flops / g[0].step_tokens, g[0].recompute_flops,
           100 * g[0].recompute_flops / g[0].step_flops);
    printf("at MFU %.2f of %.0f TFLOP/s x %d GPUs: %s a step, %s tokens/s\n", o.mfu, o.peak_flops / 1e12, gpus, step, tps);
    human_count(tokens, sizeof tokens, o.tokens);
    printf("%s tokens (%s): %s steps, %s, %.0f GPU-hours\n", tokens, why, steps, run, g[0].gpu_hours);
    return 0;
fail:
    fprintf(stderr, "presight plan: %s\n", err.msg);
    return -1;
}

static int print_cpu(const run_config *cfg, const model_layout *L, const plan_adapt_data *d, int ranks) {
    enum { SHOWN = 8 };
    plan_cpu *p = calloc((size_t)ranks, sizeof *p);
    ps_error err = {{0}};
    if (!p) {
        fprintf(stderr, "presight plan: out of memory\n");
        return -1;
    }
    int adapt = plan_stage_of(cfg) != PLAN_PRETRAIN;
    for (int r = 0; r < ranks; r++)
        if (adapt ? plan_cpu_adapt_rank(cfg, L, d, ranks, r, &p[r], &err) : plan_cpu_rank(cfg, L, ranks, r, &p[r], &err)) {
            fprintf(stderr, "presight plan: %s\n", err.msg);
            free(p);
            return -1;
        }
    const train_config *t = &cfg->train;
    printf("\nCPU plan: presight's CPU trainer as it allocates today (fp32), %s over %d rank%s (shard group %d), "
           "micro_batch %d x seq %d, recompute_blocks %s\n",
           cfg->parallel.strategy, ranks, ranks > 1 ? "s" : "", p[0].group, t->micro_batch, t->seq_len,
           cfg->parallel.recompute_blocks ? "on" : "off");
    int shown = ranks < SHOWN ? ranks : SHOWN;
    printf("  %-44s", "peak RSS per rank, MiB");
    for (int r = 0; r < shown; r++) {
        char cell[24]; /* "rank " and any int */
        snprintf(cell, sizeof cell, "rank %d", r);
        printf(" %9s", cell);
    }
    printf("\n");
    struct {
        const char *label;
        size_t offset;
    } rows[] = {
        {"owned slices (m, v; fsdp: + params, grads)", offsetof(plan_cpu, owned)},
        {"full or gathered units + gradients in flight", offsetof(plan_cpu, units)},
        {"activations (model_activations_bytes)", offsetof(plan_cpu, activations)},
        {"token buffers", offsetof(plan_cpu, tokens)},
        {"RoPE table", offsetof(plan_cpu, rope)},
        {"MPI collective temporaries", offsetof(plan_cpu, collectives)},
        {"adapt: projector activations, buffers, samples", offsetof(plan_cpu, adapt)},
        {"process (libraries, MPI, threads; measured)", offsetof(plan_cpu, process)},
        {"total", offsetof(plan_cpu, total)},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        printf("  %-44s", rows[i].label);
        for (int r = 0; r < shown; r++)
            printf(" %9.1f", *(const size_t *)((const char *)&p[r] + rows[i].offset) / 1048576.0);
        printf("\n");
    }
    if (ranks > shown) printf("  (ranks %d..%d: every rank in cpu_rank_bytes)\n", shown, ranks - 1);
    printf("  assumes buffers above malloc's mmap threshold go back to the system when freed (a fixed threshold,\n"
           "  e.g. MALLOC_MMAP_THRESHOLD_=4194304); glibc's default dynamic threshold keeps freed units in the heap:\n"
           "  measured +10%% to +50%% per rank (tests/t_memory.sh)\n");
    printf("cpu_rank_bytes=");
    for (int r = 0; r < ranks; r++) printf("%s%zu", r ? "," : "", p[r].total);
    printf("\n");
    free(p);
    return 0;
}

/* The config and its layout; an adapt config's model comes from adapt.init
 * (from says where it came from) and gets the projector. */
static int load(const char *path, int n_overrides, char **overrides, run_config *cfg, model_layout *L, char *from,
                size_t size) {
    ps_error err = {{0}};
    plan_stage st = PLAN_PRETRAIN;
    if (config_load_model(cfg, path, n_overrides, overrides, &err)) goto fail;
    st = plan_stage_of(cfg);
    if (st != PLAN_PRETRAIN && plan_adapt_resolve(cfg, from, size, &err)) goto fail;
    if (model_layout_init(L, &cfg->model, &err)) goto fail;
    if (plan_adapt_layout(L, st, cfg->adapt.encoder_width, &err)) {
        model_layout_free(L);
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "presight plan: %s\n", err.msg);
    return -1;
}

/* One line per preset at the same settings: FSDP over every GPU. */
static int print_all(const plan_args *a) {
    plan_gpu_opts o = a->gpu;
    int gpus = o.nodes * o.gpus_per_node;
    for (int i = 0; i < N_PRESETS; i++) {
        char path[256];
        snprintf(path, sizeof path, "config/model/%s.cfg", presets[i]);
        run_config cfg;
        model_layout L;
        char from[16];
        if (load(path, a->n_overrides, a->overrides, &cfg, &L, from, sizeof from)) return -1;
        o.seq = cfg.train.seq_len;
        const char *why;
        o.tokens = budget(&cfg, &why);
        if (i == 0) {
            printf("presets at global batch %d x seq %d on %d x %d GPUs of %.0f GB, FSDP over all %d, MFU %.2f of %.0f "
                   "TFLOP/s (GB = 10^9 bytes)\n",
                   o.global_batch, o.seq, o.nodes, o.gpus_per_node, o.gpu_mem / 1e9, gpus, o.mfu, o.peak_flops / 1e12);
            printf("%-6s %8s %10s %8s %8s %8s %8s %8s %10s %10s %12s %10s\n", "preset", "params", "FLOP/tok", "owned",
                   "micro", "no ckpt", "ckpt", "fits", "step", "tokens/s", "budget", "GPU-hours");
        }
        plan_gpu g;
        ps_error err = {{0}};
        if (plan_gpu_estimate(&L, &o, &g, &err)) {
            fprintf(stderr, "presight plan: %s: %s\n", path, err.msg);
            model_layout_free(&L);
            return -1;
        }
        char params[16], micro[16], step[32], tps[16], run[32], fits[16];
        human_count(params, sizeof params, (double)L.n_params);
        snprintf(micro, sizeof micro, "%dx%d", g.micro_batch, g.grad_accum);
        human_time(step, sizeof step, g.step_seconds);
        human_count(tps, sizeof tps, g.tokens_per_s);
        human_time(run, sizeof run, g.run_seconds);
        snprintf(fits, sizeof fits, "%s/%s", g.fits_full ? "yes" : "no", g.fits_ckpt ? "yes" : "no");
        printf("%-6s %8s %10.3g %8.2f %8s %8.2f %8.2f %8s %10s %10s %12s %10.0f\n", presets[i], params,
               g.step_flops / g.step_tokens, g.owned / 1e9, micro, g.total_full / 1e9, g.total_ckpt / 1e9, fits, step,
               tps, run, g.gpu_hours);
        model_layout_free(&L);
    }
    printf("owned = fp32 master weights, gradient slice, AdamW m and v (16 bytes per parameter / %d); no ckpt / ckpt =\n"
           "total per GPU without / with per-block activation checkpointing at micro x accum; fits = in %.0f GB without /\n"
           "with checkpointing; budget = time for 30B tokens (train.tokens=... overrides it). presight plan CONFIG shows\n"
           "the parts.\n",
           gpus, o.gpu_mem / 1e9);
    return 0;
}

int cmd_plan(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        plan_help(stdout);
        return 0;
    }
    plan_args a;
    if (parse_args(argc, argv, &a)) return 2;
    if (a.all) return print_all(&a) ? 1 : 0;
    run_config cfg;
    model_layout L;
    char from[CONFIG_STR_MAX + 2200];
    if (load(a.config, a.n_overrides, a.overrides, &cfg, &L, from, sizeof from)) return 2;
    print_params(&cfg, &L);
    plan_adapt_data data, *d = NULL;
    if (plan_stage_of(&cfg) != PLAN_PRETRAIN) {
        ps_error err = {{0}};
        if (!plan_adapt_count(&cfg, &data, &err)) d = &data;
        print_adapt(&cfg, &L, from, d, err.msg);
    }
    int rc = print_gpu(&cfg, &L, &a.gpu, d, a.global_batch_given);
    if (!rc && a.cpu_ranks) rc = print_cpu(&cfg, &L, d, a.cpu_ranks);
    model_layout_free(&L);
    return rc ? 1 : 0;
}
