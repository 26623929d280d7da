/* config.c - run configuration: one schema table, libconfig files, key=value
 * overrides, cross-key validation and an atomic, round-tripping writer.
 *
 * Every key lives in the schema table below (path, type, range, default,
 * member, help). Loading walks the whole libconfig tree and rejects anything
 * the table does not know; every message names FILE:LINE (of the file the
 * setting is written in, an @included one included) or the override text. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <libconfig.h>

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ schema */

typedef enum key_type { K_INT, K_INT64, K_FLOAT, K_BOOL, K_STRING, K_ENUM } key_type;

enum { OPEN_MIN = 1, OPEN_MAX = 2 }; /* float bounds that are exclusive */

typedef struct key_spec {
    const char *path;             /* "group.name" */
    key_type type;
    size_t off, size;             /* member of run_config */
    long long imin, imax, idef;   /* K_INT, K_INT64, K_BOOL (default); strings: imin = min length */
    double fmin, fmax, fdef;      /* K_FLOAT */
    unsigned flags;               /* OPEN_MIN / OPEN_MAX */
    const char *sdef;             /* K_STRING, K_ENUM */
    const char *const *allowed;   /* K_ENUM: NULL-terminated */
    const char *help;
} key_spec;

#define MEMBER_SIZE(f) sizeof(((run_config *)0)->f)
/* A compile-time check that the member has the size the type implies (an
 * int key on an int64_t member, say, fails to build). */
#define SIZE_IS(f, n) (MEMBER_SIZE(f) + 0 * sizeof(char[MEMBER_SIZE(f) == (n) ? 1 : -1]))

#define KINT(p, f, lo, hi, def, h)                                                              \
    { .path = p, .type = K_INT, .off = offsetof(run_config, f), .size = SIZE_IS(f, sizeof(int)), \
      .imin = lo, .imax = hi, .idef = def, .help = h }
#define KI64(p, f, lo, hi, def, h)                                                    \
    { .path = p, .type = K_INT64, .off = offsetof(run_config, f),                     \
      .size = SIZE_IS(f, sizeof(int64_t)), .imin = lo, .imax = hi, .idef = def, .help = h }
#define KFLT(p, f, lo, hi, fl, def, h)                                                              \
    { .path = p, .type = K_FLOAT, .off = offsetof(run_config, f), .size = SIZE_IS(f, sizeof(double)), \
      .fmin = lo, .fmax = hi, .flags = fl, .fdef = def, .help = h }
#define KBOOL(p, f, def, h)                                                                       \
    { .path = p, .type = K_BOOL, .off = offsetof(run_config, f), .size = SIZE_IS(f, sizeof(int)), \
      .imin = 0, .imax = 1, .idef = def, .help = h }
#define KSTR(p, f, minlen, def, h)                                                                \
    { .path = p, .type = K_STRING, .off = offsetof(run_config, f), .size = MEMBER_SIZE(f), .imin = minlen, \
      .sdef = def, .help = h }
#define KENUM(p, f, list, def, h)                                                                        \
    { .path = p, .type = K_ENUM, .off = offsetof(run_config, f), .size = MEMBER_SIZE(f), .allowed = list, \
      .sdef = def, .help = h }

/* Extend these lists as readers and backends arrive ("shards", "mixture"). */
static const char *const data_kinds[] = {"text", "shards", "mixture", NULL};
static const char *const tokenizer_kinds[] = {"plain", "llama3", "cl100k", NULL};
static const char *const backends[] = {"cpu", "cuda", "auto", NULL};
static const char *const strategies[] = {"ddp", "zero1", "fsdp", NULL};
static const char *const adapt_stages[] = {"align", "blind", "sft", NULL};
static const char *const projectors[] = {"mlp2x_gelu", NULL};

static const key_spec schema[] = {
    /* model: the defaults are the 340m preset (config/model/340m.cfg) */
    KINT("model.vocab", model.vocab, 1, 1 << 24, 32000, "vocabulary size (embedding rows)"),
    KINT("model.dim", model.dim, 1, 65536, 1024, "residual width"),
    KINT("model.layers", model.layers, 1, 1024, 24, "transformer blocks"),
    KINT("model.heads", model.heads, 1, 1024, 16, "query heads; divides model.dim"),
    KINT("model.kv_heads", model.kv_heads, 1, 1024, 8, "key/value heads; divides model.heads"),
    KINT("model.ffn_dim", model.ffn_dim, 1, 1 << 20, 2816, "SwiGLU hidden width"),
    KINT("model.context", model.context, 1, 1 << 20, 2048, "maximum sequence length (RoPE table size)"),
    KFLT("model.rope_theta", model.rope_theta, 0.0, 1e12, OPEN_MIN, 500000.0, "RoPE base"),
    KFLT("model.norm_eps", model.norm_eps, 0.0, 1.0, OPEN_MIN, 1e-5, "RMSNorm epsilon"),
    KBOOL("model.tied_head", model.tied_head, 0, "output head shares the embedding matrix"),
    KFLT("model.init_std", model.init_std, 0.0, 1.0, OPEN_MIN, 0.02, "std of the normal weight init"),

    KINT("train.micro_batch", train.micro_batch, 1, 65536, 8, "sequences per micro-batch per rank"),
    KINT("train.seq_len", train.seq_len, 1, 1 << 20, 2048, "tokens per sequence (<= model.context)"),
    KINT("train.grad_accum", train.grad_accum, 1, 65536, 1, "micro-batches per optimizer step"),
    KI64("train.steps", train.steps, 0, INT64_MAX, 0, "optimizer steps; 0 = derive from train.tokens"),
    KI64("train.tokens", train.tokens, 0, INT64_MAX, 0,
         "token budget, used when train.steps = 0 (overrides take 30B, 5M, 100k)"),
    KFLT("train.lr", train.lr, 0.0, 1.0, OPEN_MIN, 3e-4, "peak learning rate"),
    KFLT("train.min_lr", train.min_lr, 0.0, 1.0, 0, 3e-5, "floor of the cosine decay (<= train.lr)"),
    KI64("train.warmup_steps", train.warmup_steps, 0, INT64_MAX, 1024, "linear warm-up from 0 to train.lr"),
    KFLT("train.beta1", train.beta1, 0.0, 1.0, OPEN_MAX, 0.9, "AdamW first-moment decay"),
    KFLT("train.beta2", train.beta2, 0.0, 1.0, OPEN_MAX, 0.95, "AdamW second-moment decay"),
    KFLT("train.eps", train.adam_eps, 0.0, 1.0, OPEN_MIN, 1e-8, "AdamW epsilon"),
    KFLT("train.weight_decay", train.weight_decay, 0.0, 10.0, 0, 0.1, "decoupled weight decay (never on norm weights)"),
    KFLT("train.grad_clip", train.grad_clip, 0.0, DBL_MAX, 0, 1.0, "clip by global norm; 0 = off"),
    KI64("train.seed", train.seed, 0, INT64_MAX, 42, "random seed (init and data order)"),
    KINT("train.log_every", train.log_every, 1, INT_MAX, 10, "progress line every N steps"),

    KENUM("data.kind", data.kind, data_kinds, "text",
          "data reader: \"text\" (bytes of a UTF-8 file), \"shards\" (one ingested source), \"mixture\" (sources by weight)"),
    KSTR("data.path", data.path, 0, "",
         "text: the file; shards: one source's folder (DIR/NAME); mixture: the shards root (DIR)"),
    KSTR("data.mixture", data.mixture, 0, "",
         "kind mixture: a name under config/mixtures/ (mix6, pooled, code, ...) or the path of a mixture file"),
    KSTR("data.weights", data.weights, 0, "",
         "kind mixture: weights that replace the mixture's, \"code:0.35,web:0.40,...\" (kinds or sources)"),
    KFLT("data.reasoning_share", data.reasoning_share, -1.0, 1.0, 0, -1.0,
         "target share of reasoning-labelled segments, solved from DIR/label_rates.tsv; -1 = unset"),
    KFLT("data.visual_share", data.visual_share, -1.0, 1.0, 0, -1.0,
         "target share of visual-labelled segments (the rest in proportion); -1 = unset"),
    KSTR("data.tokenizer", data.tokenizer, 0, "",
         "vocabulary file the shards must have been tokenized with (checked by SHA-256); \"\" = any"),
    KENUM("data.tokenizer_kind", data.tokenizer_kind, tokenizer_kinds, "plain",
          "special tokens of data.tokenizer: plain (a trained vocabulary), llama3, cl100k"),

    KENUM("parallel.strategy", parallel.strategy, strategies, "ddp",
          "ddp: replicate everything; zero1: shard optimizer state; fsdp: shard parameters, gradients and optimizer state"),
    KINT("parallel.shard_group", parallel.shard_group, 0, 1 << 20, 0,
         "ranks per shard group (hybrid sharding: shard within, replicate across); 0 = all ranks"),
    KBOOL("parallel.reshard_after_forward", parallel.reshard_after_forward, 1,
          "fsdp: free a gathered unit after its forward and gather it again for backward"),
    KBOOL("parallel.prefetch", parallel.prefetch, 1, "fsdp: start gathering the next unit while this one computes"),
    KBOOL("parallel.recompute_blocks", parallel.recompute_blocks, 0,
          "activation checkpointing: keep block inputs only, recompute the rest in backward"),

    KI64("checkpoint.every_steps", checkpoint.every_steps, 0, INT64_MAX, 1000, "checkpoint every N steps; 0 = off"),
    KFLT("checkpoint.every_minutes", checkpoint.every_minutes, 0.0, 1e9, 0, 30.0,
         "checkpoint every N minutes of training; 0 = off"),
    KINT("checkpoint.keep", checkpoint.keep, 1, 1 << 20, 3, "newest checkpoints kept in run.dir/checkpoints"),

    KSTR("eval.tasks", eval.tasks, 0, "", "presight eval: task files (config/tasks/*.cfg), comma-separated"),
    KSTR("eval.checkpoint", eval.checkpoint, 0, "",
         "presight eval: the weights file; \"\" = run.dir/model.h5, else the newest checkpoint"),
    KSTR("eval.out", eval.out, 0, "", "presight eval: output folder; \"\" = run.dir/eval"),
    KINT("eval.batch", eval.batch, 1, 65536, 8, "presight eval: sequences per forward pass"),
    KINT("eval.items_per_step", eval.items_per_step, 1, 1 << 24, 32,
         "presight eval: items per step (the unit of progress and resume)"),
    KI64("eval.limit", eval.limit, 0, INT64_MAX, 0, "presight eval: the first N items of each task; 0 = all"),
    KINT("eval.max_new_tokens", eval.max_new_tokens, 1, 1 << 20, 16, "presight eval: greedy decoding length"),
    KI64("eval.every", eval.every, 0, INT64_MAX, 0,
         "pretraining and adapt: held-out loss every N steps (metrics.jsonl, progress line); 0 = off"),
    KSTR("eval.align", eval.align, 0, "",
         "presight eval: features files (data/features/<encoder>/<set>.h5) to align the LLM with, comma-separated"),
    KSTR("eval.align_captions", eval.align_captions, 0, "data/images/captions.jsonl",
         "presight eval: the captions of eval.align's pictures (JSONL: image, caption)"),
    KINT("eval.align_k", eval.align_k, 1, 1 << 20, 20, "presight eval: k of the mutual k-NN alignment"),
    KINT("eval.batches", eval.batches, 1, 1 << 20, 4, "pretraining: held-out micro-batches per evaluation"),
    KSTR("eval.heldout", eval.heldout, 0, "",
         "pretraining: held-out documents for eval.every, a task file of kind rolling (config/tasks/wikitext.cfg)"),
    KSTR("eval.features", eval.features, 0, "",
         "presight eval of an adapted model: folder of the pictures' features files (<set>.h5); \"\" = its adapt.features"),
    KENUM("adapt.stage", adapt.stage, adapt_stages, "align",
          "align: the projector alone on captions; blind: the LLM on instructions, pictures withheld; sft: projector + LLM"),
    KSTR("adapt.init", adapt.init, 0, "", "the pretrained run (or the previous stage's): a run.dir or a weights file"),
    KSTR("adapt.init_sha256", adapt.init_sha256, 0, "", "SHA-256 of adapt.init's weights (set by the stage; a changed init is refused)"),
    KSTR("adapt.features", adapt.features, 0, "", "folder of the encoder's features files, <image_set>.h5 (data/features/ENCODER)"),
    KSTR("adapt.data", adapt.data, 0, "", "LLaVA JSONL: data/images/align.jsonl (align) or instruct.jsonl (blind, sft)"),
    KSTR("adapt.encoder", adapt.encoder, 0, "", "the features' encoder (set from the files; a different one is refused)"),
    KSTR("adapt.encoder_sha256", adapt.encoder_sha256, 0, "", "the encoder's weights_sha256 (set from the files)"),
    KINT("adapt.encoder_width", adapt.encoder_width, 0, 1 << 20, 0, "visual token width (set from the files; 0 = unset)"),
    KINT("adapt.visual_tokens", adapt.visual_tokens, 1, 1 << 16, 576, "projected rows per picture, a square (576 = 24 x 24)"),
    KENUM("adapt.projector", adapt.projector, projectors, "mlp2x_gelu", "projector shape (LLaVA's)"),
    KINT("adapt.batch", adapt.batch, 1, 1 << 24, 512, "samples per optimizer step (the global batch, any number of ranks)"),
    KINT("adapt.epochs", adapt.epochs, 1, 1 << 16, 1, "passes over adapt.data"),
    KI64("adapt.max_samples", adapt.max_samples, 0, INT64_MAX, 0, "use the first N lines of adapt.data; 0 = all"),
    KFLT("adapt.warmup_ratio", adapt.warmup_ratio, 0.0, 1.0, 0, 0.03, "share of the steps in linear warm-up (align 0.06, sft 0.03)"),
    KBOOL("adapt.pack", adapt.pack, 1, "pack samples into sequences (each keeps its own positions and attention)"),
    KFLT("adapt.max_bad", adapt.max_bad, 0.0, 1.0, 0, 0.01,
         "share of samples whose template fails or whose answer is truncated away before the stage fails"),
    KSTR("adapt.heldout", adapt.heldout, 0, "",
         "held-out samples (JSONL as adapt.data) for eval.every: their answer-token loss while adapting"),

    KSTR("run.dir", run_dir, 1, "runs/default", "where config, metrics and weights go"),
    KENUM("run.backend", backend, backends, "cpu", "compute backend"),
    KINT("run.threads", threads, 0, 4096, 0, "CPU threads; 0 = all cores"),
};

#define N_KEYS ((int)(sizeof schema / sizeof schema[0]))

static const key_spec *find_key(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(schema[i].path, path) == 0) return &schema[i];
    return NULL;
}

static size_t group_len(const char *path) {
    const char *dot = strchr(path, '.');
    return dot ? (size_t)(dot - path) : strlen(path);
}

/* Whether two dotted paths share their group (both must have one). */
static int same_group(const char *a, const char *b) {
    size_t n = group_len(a);
    return strchr(a, '.') && strchr(b, '.') && group_len(b) == n && strncmp(a, b, n) == 0;
}

static const char *leaf_of(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* Whether name is one of the schema's groups (model, train, data, parallel, checkpoint, run). */
static int is_group(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < N_KEYS; i++)
        if (group_len(schema[i].path) == n && strncmp(schema[i].path, name, n) == 0) return 1;
    return 0;
}

/* Appends to buf (bounded), keeping it NUL-terminated. */
static void cat(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static void group_list(char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < N_KEYS; i++) {
        size_t n = group_len(schema[i].path);
        if (i > 0 && same_group(schema[i - 1].path, schema[i].path)) continue;
        cat(buf, cap, "%s%.*s", buf[0] ? ", " : "", (int)n, schema[i].path);
    }
}

static void group_keys(const char *group, size_t n, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < N_KEYS; i++)
        if (group_len(schema[i].path) == n && strncmp(schema[i].path, group, n) == 0)
            cat(buf, cap, "%s%s", buf[0] ? ", " : "", leaf_of(schema[i].path));
}

/* Optimal-string-alignment distance (edits plus adjacent swaps). */
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int d[65][65];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

static int close_enough(const char *typed, int dist) {
    size_t n = strlen(typed);
    int limit = n <= 3 ? 1 : n <= 6 ? 2 : 3;
    return dist <= limit;
}

/* The schema key closest to path, or NULL when none is close. Compares the
 * whole path and also the leaf alone (so "train.dim" or a bare "dim" at the
 * top level find "model.dim"); a typed leaf that begins a key's leaf
 * ("warmup" for "warmup_steps") counts as close. */
static const key_spec *suggest_key(const char *path) {
    const key_spec *best = NULL;
    int best_d = 1000;
    const char *leaf = leaf_of(path);
    for (int i = 0; i < N_KEYS; i++) {
        const char *kleaf = leaf_of(schema[i].path);
        int d = edit_distance(path, schema[i].path);
        if (!close_enough(path, d)) d = 1000;
        int same = same_group(path, schema[i].path);
        int dl = edit_distance(leaf, kleaf);
        if (close_enough(leaf, dl)) {
            dl += same ? 0 : 1;
            if (dl < d) d = dl;
        }
        size_t ll = strlen(leaf);
        if (ll >= 3 && strncmp(kleaf, leaf, ll) == 0) {
            int dp = same ? 1 : 2;
            if (dp < d) d = dp;
        }
        if (d < best_d) best_d = d, best = &schema[i];
    }
    return best_d < 1000 ? best : NULL;
}

static int unknown_key(ps_error *err, const char *path) {
    const key_spec *s = suggest_key(path);
    if (s) return ps_fail(err, "unknown key '%s' (did you mean '%s'?)", path, s->path);
    char list[1024];
    if (strchr(path, '.')) {
        size_t n = group_len(path);
        char group[64];
        snprintf(group, sizeof group, "%.*s", (int)(n < 63 ? n : 63), path);
        if (is_group(group)) {
            group_keys(path, n, list, sizeof list);
            return ps_fail(err, "unknown key '%s' (%s keys: %s)", path, group, list);
        }
    }
    group_list(list, sizeof list);
    return ps_fail(err, "unknown key '%s' (keys are group.name with groups %s; `presight train --help` lists them)",
                   path, list);
}

static int unknown_group(ps_error *err, const char *path) {
    char list[1024];
    if (strchr(path, '.')) {
        size_t n = group_len(path);
        group_keys(path, n, list, sizeof list);
        return ps_fail(err, "unknown group '%s' (groups do not nest; %.*s keys: %s)", path, (int)n, path, list);
    }
    group_list(list, sizeof list);
    const char *best = NULL;
    int best_d = 1000;
    for (int i = 0; i < N_KEYS; i++) {
        char g[64];
        size_t n = group_len(schema[i].path);
        snprintf(g, sizeof g, "%.*s", (int)(n < 63 ? n : 63), schema[i].path);
        int d = edit_distance(path, g);
        if (close_enough(path, d) && d < best_d) best_d = d, best = schema[i].path;
    }
    if (best)
        return ps_fail(err, "unknown group '%s' (did you mean '%.*s'?)", path, (int)group_len(best), best);
    return ps_fail(err, "unknown group '%s' (allowed groups: %s)", path, list);
}

/* ------------------------------------------------------------------ values */

typedef struct kval {
    long long i;   /* K_INT, K_INT64, K_BOOL */
    double f;      /* K_FLOAT */
    const char *s; /* K_STRING, K_ENUM */
} kval;

static void *member(run_config *cfg, const key_spec *k) { return (char *)cfg + k->off; }
static const void *cmember(const run_config *cfg, const key_spec *k) { return (const char *)cfg + k->off; }

static const char *type_name(key_type t) {
    switch (t) {
    case K_INT: return "int";
    case K_INT64: return "int64";
    case K_FLOAT: return "float";
    case K_BOOL: return "bool";
    case K_STRING: return "string";
    case K_ENUM: return "enum";
    }
    return "?";
}

/* Shortest %g that reads back as the same double. */
static void fmt_double(char *buf, size_t cap, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* Whole numbers below 1e9 read better without an exponent (500000). */
    if (strstr(buf, "e+") && v > -1e9 && v < 1e9 && v == (double)(long long)v) snprintf(buf, cap, "%.0f", v);
}

/* The same, always with a '.' or an exponent, so libconfig reads a float. */
static void fmt_float_literal(char *buf, size_t cap, double v) {
    fmt_double(buf, cap, v);
    if (!strpbrk(buf, ".eE")) cat(buf, cap, ".0");
}

static void allowed_list(const key_spec *k, char *buf, size_t cap) {
    buf[0] = 0;
    for (const char *const *a = k->allowed; *a; a++) cat(buf, cap, "%s\"%s\"", a == k->allowed ? "" : ", ", *a);
}

/* What a key accepts, in words: "1..1024", ">= 0", "> 0 and <= 1", ... */
static void range_text(const key_spec *k, char *buf, size_t cap) {
    char lo[64], hi[64];
    buf[0] = 0;
    switch (k->type) {
    case K_INT:
    case K_INT64:
        if (k->imax == INT_MAX || k->imax == INT64_MAX)
            snprintf(buf, cap, ">= %lld", k->imin);
        else
            snprintf(buf, cap, "%lld..%lld", k->imin, k->imax);
        break;
    case K_FLOAT:
        fmt_double(lo, sizeof lo, k->fmin);
        fmt_double(hi, sizeof hi, k->fmax);
        if (k->fmax >= DBL_MAX)
            snprintf(buf, cap, "%s %s", (k->flags & OPEN_MIN) ? ">" : ">=", lo);
        else
            snprintf(buf, cap, "%s %s and %s %s", (k->flags & OPEN_MIN) ? ">" : ">=", lo,
                     (k->flags & OPEN_MAX) ? "<" : "<=", hi);
        break;
    case K_BOOL: snprintf(buf, cap, "true, false"); break;
    case K_STRING:
        snprintf(buf, cap, "%s%zu bytes", k->imin > 0 ? "1.." : "up to ", k->size - 1);
        break;
    case K_ENUM: allowed_list(k, buf, cap); break;
    }
}

static void fetch(const run_config *cfg, const key_spec *k, kval *v) {
    const void *p = cmember(cfg, k);
    memset(v, 0, sizeof *v);
    switch (k->type) {
    case K_INT:
    case K_BOOL: v->i = *(const int *)p; break;
    case K_INT64: v->i = *(const int64_t *)p; break;
    case K_FLOAT: v->f = *(const double *)p; break;
    case K_STRING:
    case K_ENUM: v->s = (const char *)p; break;
    }
}

/* Range / allowed-value check of one value; the message names the key. */
static int check_value(const key_spec *k, const kval *v, ps_error *err) {
    char r[512], num[64];
    switch (k->type) {
    case K_INT:
    case K_INT64:
        if (v->i < k->imin || v->i > k->imax) {
            range_text(k, r, sizeof r);
            return ps_fail(err, "%s = %lld is out of range: allowed %s", k->path, v->i, r);
        }
        break;
    case K_BOOL:
        if (v->i != 0 && v->i != 1) return ps_fail(err, "%s = %lld must be true or false", k->path, v->i);
        break;
    case K_FLOAT: {
        double x = v->f;
        int finite = x == x && x <= DBL_MAX && x >= -DBL_MAX;
        int ok = finite && x >= k->fmin && x <= k->fmax && !((k->flags & OPEN_MIN) && x == k->fmin) &&
                 !((k->flags & OPEN_MAX) && x == k->fmax);
        if (!ok) {
            range_text(k, r, sizeof r);
            fmt_double(num, sizeof num, x);
            return ps_fail(err, "%s = %s is out of range: allowed %s", k->path, num, r);
        }
        break;
    }
    case K_STRING: {
        size_t n = strnlen(v->s, k->size);
        if (n >= k->size) return ps_fail(err, "%s is too long: at most %zu bytes", k->path, k->size - 1);
        if ((long long)n < k->imin) return ps_fail(err, "%s must not be empty", k->path);
        break;
    }
    case K_ENUM: {
        for (const char *const *a = k->allowed; *a; a++)
            if (strcmp(*a, v->s) == 0) return 0;
        allowed_list(k, r, sizeof r);
        return ps_fail(err, "%s = \"%.200s\" is not allowed: use one of %s", k->path, v->s, r);
    }
    }
    return 0;
}

static void store(run_config *cfg, const key_spec *k, const kval *v) {
    void *p = member(cfg, k);
    switch (k->type) {
    case K_INT:
    case K_BOOL: *(int *)p = (int)v->i; break;
    case K_INT64: *(int64_t *)p = (int64_t)v->i; break;
    case K_FLOAT: *(double *)p = v->f; break;
    case K_STRING:
    case K_ENUM:
        memset(p, 0, k->size);
        memcpy(p, v->s, strlen(v->s)); /* check_value bounded it */
        break;
    }
}

static int check_and_store(run_config *cfg, const key_spec *k, const kval *v, ps_error *err) {
    if (check_value(k, v, err)) return -1;
    store(cfg, k, v);
    return 0;
}

void config_defaults(run_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &schema[i];
        kval v = {.i = k->idef, .f = k->fdef, .s = k->sdef};
        store(cfg, k, &v);
    }
}

/* ------------------------------------------------------------------ loading */

#define MAX_CACHED 16

typedef struct load_ctx {
    const char *path;      /* the file given to config_load */
    const char *incdir;    /* its folder: @include paths resolve from here */
    struct {
        char *name, *text;
    } files[MAX_CACHED];
    int n_files;
} load_ctx;

/* The name under which to report a setting's file: libconfig 1.5 records an
 * included file under the name written in @include; prefix the folder it
 * was opened from. */
static void display_file(const load_ctx *ctx, const char *sf, char *buf, size_t cap) {
    if (!sf || strcmp(sf, ctx->path) == 0 || sf[0] == '/' || strcmp(ctx->incdir, ".") == 0)
        snprintf(buf, cap, "%s", sf ? sf : ctx->path);
    else
        snprintf(buf, cap, "%s/%s", ctx->incdir, sf);
}

static void where(const load_ctx *ctx, const config_setting_t *s, char *buf, size_t cap) {
    char file[CONFIG_STR_MAX + 64];
    display_file(ctx, config_setting_source_file(s), file, sizeof file);
    snprintf(buf, cap, "%s:%u", file, (unsigned)config_setting_source_line(s));
}

static const char *file_text(load_ctx *ctx, const char *name) {
    for (int i = 0; i < ctx->n_files; i++)
        if (strcmp(ctx->files[i].name, name) == 0) return ctx->files[i].text;
    if (ctx->n_files == MAX_CACHED) return NULL;
    FILE *f = fopen(name, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    while (text) {
        if (len + 1 >= cap) {
            char *bigger = realloc(text, cap * 2);
            if (!bigger) {
                free(text);
                text = NULL;
                break;
            }
            text = bigger, cap *= 2;
        }
        size_t got = fread(text + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    if (!text) return NULL;
    text[len] = 0;
    char *nm = strdup(name);
    if (!nm) {
        free(text);
        return NULL;
    }
    ctx->files[ctx->n_files].name = nm;
    ctx->files[ctx->n_files].text = text;
    ctx->n_files++;
    return text;
}

static void ctx_free(load_ctx *ctx) {
    for (int i = 0; i < ctx->n_files; i++) {
        free(ctx->files[i].name);
        free(ctx->files[i].text);
    }
    ctx->n_files = 0;
}

static int name_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '*'; }

/* libconfig 1.5 reads an integer literal without the L suffix into a 32-bit
 * int, silently wrapping (3000000000 becomes -1294967296). Finds the literal
 * in the source text and returns 1, with its true value, when it did not fit
 * and libconfig's wrapped value is what the setting holds. */
static int wrapped_literal(load_ctx *ctx, const config_setting_t *s, long long stored, long long *truth,
                           int *saturated) {
    char file[CONFIG_STR_MAX + 64];
    display_file(ctx, config_setting_source_file(s), file, sizeof file);
    const char *text = file_text(ctx, file);
    const char *name = config_setting_name(s);
    if (!text || !name) return 0;
    unsigned line = config_setting_source_line(s);
    const char *p = text;
    for (unsigned l = 1; l < line && *p; p++)
        if (*p == '\n') l++;
    size_t nl = strlen(name);
    for (const char *q = p; (q = strstr(q, name)) != NULL; q += nl) {
        int newlines = 0;
        for (const char *c = p; c < q; c++) newlines += *c == '\n';
        if (newlines > 4) break;
        if ((q > text && name_char(q[-1])) || name_char(q[nl])) continue;
        const char *v = q + nl;
        while (isspace((unsigned char)*v)) v++;
        if (*v != '=' && *v != ':') continue;
        v++;
        while (isspace((unsigned char)*v)) v++;
        errno = 0;
        char *end;
        unsigned long long u;
        int neg = 0;
        const char *digits = v;
        if (*digits == '-' || *digits == '+') neg = *digits == '-', digits++;
        if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
            u = strtoull(digits + 2, &end, 16);
            if (end == digits + 2) return 0;
        } else {
            if (!isdigit((unsigned char)*digits)) return 0;
            u = strtoull(digits, &end, 10);
        }
        if (*end == 'L' || *end == '.' || *end == 'e' || *end == 'E') return 0;
        int sat = errno == ERANGE || u > (unsigned long long)LLONG_MAX;
        long long t = sat ? (neg ? LLONG_MIN : LLONG_MAX) : (neg ? -(long long)u : (long long)u);
        if (t == stored) return 0; /* it fit */
        /* Only a literal whose 32-bit wrap is what libconfig stored counts
         * (anything else is a different setting of the same name). */
        if ((int)(unsigned)(unsigned long long)t != stored) continue;
        *truth = t;
        *saturated = sat;
        return 1;
    }
    return 0;
}

static const char *setting_type_name(int type) {
    switch (type) {
    case CONFIG_TYPE_INT: return "an integer";
    case CONFIG_TYPE_INT64: return "a 64-bit integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    }
    return "nothing";
}

static int wrong_type(ps_error *err, const key_spec *k, const char *got) {
    char r[512];
    switch (k->type) {
    case K_INT:
    case K_INT64: return ps_fail(err, "%s must be an integer (got %s)", k->path, got);
    case K_FLOAT: return ps_fail(err, "%s must be a number (got %s)", k->path, got);
    case K_BOOL: return ps_fail(err, "%s must be true or false (got %s)", k->path, got);
    case K_STRING: return ps_fail(err, "%s must be a string in double quotes (got %s)", k->path, got);
    case K_ENUM:
        allowed_list(k, r, sizeof r);
        return ps_fail(err, "%s must be a string, one of %s (got %s)", k->path, r, got);
    }
    return -1;
}

/* Reads one leaf setting into cfg; messages carry no location yet. */
static int load_leaf(run_config *cfg, const key_spec *k, const config_setting_t *s, load_ctx *ctx,
                     ps_error *err) {
    int t = config_setting_type(s);
    kval v = {0};
    switch (k->type) {
    case K_INT:
    case K_INT64:
        if (t == CONFIG_TYPE_INT) {
            v.i = config_setting_get_int(s);
            long long truth = 0;
            int saturated = 0;
            if (wrapped_literal(ctx, s, v.i, &truth, &saturated)) {
                if (saturated)
                    return ps_fail(err, "%s: the value does not fit in 64 bits", k->path);
                if (k->type == K_INT64)
                    return ps_fail(err,
                                   "%s = %lld needs the L suffix (%lldL): libconfig truncates integers "
                                   "without it to 32 bits",
                                   k->path, truth, truth);
                v.i = truth; /* out of any int key's range: check_value says so */
            }
        } else if (t == CONFIG_TYPE_INT64) {
            v.i = config_setting_get_int64(s);
        } else {
            return wrong_type(err, k, setting_type_name(t));
        }
        break;
    case K_FLOAT:
        if (t == CONFIG_TYPE_FLOAT)
            v.f = config_setting_get_float(s);
        else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            v.f = (double)config_setting_get_int64(s);
        else
            return wrong_type(err, k, setting_type_name(t));
        break;
    case K_BOOL:
        if (t != CONFIG_TYPE_BOOL) return wrong_type(err, k, setting_type_name(t));
        v.i = config_setting_get_bool(s) ? 1 : 0;
        break;
    case K_STRING:
    case K_ENUM:
        if (t != CONFIG_TYPE_STRING) return wrong_type(err, k, setting_type_name(t));
        v.s = config_setting_get_string(s);
        if (!v.s) v.s = "";
        break;
    }
    return check_and_store(cfg, k, &v, err);
}

static int walk(run_config *cfg, const config_setting_t *grp, const char *prefix, load_ctx *ctx,
                ps_error *err) {
    int n = config_setting_length(grp);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(s);
        char path[256], loc[CONFIG_STR_MAX + 128];
        if (!name) name = "?";
        if (prefix)
            snprintf(path, sizeof path, "%s.%s", prefix, name);
        else
            snprintf(path, sizeof path, "%s", name);
        where(ctx, s, loc, sizeof loc);
        if (config_setting_is_group(s)) {
            if (prefix || !is_group(path)) {
                unknown_group(err, path);
                return ps_wrap(err, "%s", loc);
            }
            if (walk(cfg, s, path, ctx, err)) return -1;
            continue;
        }
        const key_spec *k = find_key(path);
        if (!k) {
            if (!prefix && is_group(path))
                ps_fail(err, "'%s' must be a group: %s = { ... };", path, path);
            else
                unknown_key(err, path);
            return ps_wrap(err, "%s", loc);
        }
        if (load_leaf(cfg, k, s, ctx, err)) return ps_wrap(err, "%s", loc);
    }
    return 0;
}

static int validate_model(const run_config *cfg, ps_error *err);
/* libconfig 1.5's scanner calls exit() when an @include names something it cannot read as
 * a file ("input in flex scanner failed": @include "" or a folder kills the process;
 * found by the fuzz_config campaign, tests/fuzz/seeds/fuzz_config/include-empty.cfg). So
 * every @include that exists is checked first, nested ones too: it must be a file. */
static int check_includes(const char *path, const char *incdir, int depth, ps_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* libconfig reports it */
    char line[4096];
    int rc = 0, no = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "@include", 8)) continue;
        const char *q = strchr(p + 8, '"'), *end = q ? strchr(q + 1, '"') : NULL;
        if (!q || !end) continue; /* a syntax error: libconfig names it */
        char inc[CONFIG_STR_MAX + 8];
        int n = (int)(end - q - 1);
        if (q[1] == '/') snprintf(inc, sizeof inc, "%.*s", n, q + 1);
        else snprintf(inc, sizeof inc, "%s/%.*s", incdir, n, q + 1);
        struct stat st;
        int found = stat(inc, &st) == 0; /* a missing file libconfig reports by itself */
        if (!found && n > 0) continue;
        if (n == 0 || !S_ISREG(st.st_mode))
            rc = ps_fail(err, "%s:%d: @include \"%.*s\" is not a readable file (@include paths are relative to '%s')",
                         path, no, n, q + 1, incdir);
        else if (depth >= 8)
            rc = ps_fail(err, "%s:%d: @include nested more than 8 deep", path, no);
        else
            rc = check_includes(inc, incdir, depth + 1, err);
    }
    fclose(f);
    return rc;
}

static int load(run_config *cfg, const char *path, int n_overrides, char **overrides, int model_only,
                ps_error *err) {
    if (!cfg || !path) return ps_fail(err, "config_load: no config or no path given");
    if (n_overrides > 0 && !overrides) return ps_fail(err, "config_load: %d overrides but no array", n_overrides);
    run_config tmp;
    config_defaults(&tmp);
    if (strlen(path) >= sizeof tmp.source)
        return ps_fail(err, "%.64s...: config path is longer than %zu bytes", path, sizeof tmp.source - 1);
    snprintf(tmp.source, sizeof tmp.source, "%s", path);

    char incdir[CONFIG_STR_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(incdir, sizeof incdir, ".");
    else if (slash == path)
        snprintf(incdir, sizeof incdir, "/");
    else
        snprintf(incdir, sizeof incdir, "%.*s", (int)(slash - path), path);

    if (check_includes(path, incdir, 0, err)) return -1;
    load_ctx ctx = {.path = path, .incdir = incdir};
    config_t lc;
    config_init(&lc);
    config_set_include_dir(&lc, incdir);
    errno = 0;
    if (!config_read_file(&lc, path)) {
        int e = errno;
        int rc;
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
            rc = ps_fail(err, "%s: cannot read config file: %s", path, e ? strerror(e) : "I/O error");
        } else {
            char file[CONFIG_STR_MAX + 64];
            const char *text = config_error_text(&lc);
            display_file(&ctx, config_error_file(&lc), file, sizeof file);
            int include = text && strstr(text, "include") != NULL;
            rc = ps_fail(err, "%s:%d: %s%s%s%s", file, config_error_line(&lc), text ? text : "parse error",
                         include ? " (@include paths are relative to '" : "", include ? incdir : "",
                         include ? "')" : "");
        }
        config_destroy(&lc);
        return rc;
    }
    int rc = walk(&tmp, config_root_setting(&lc), NULL, &ctx, err);
    ctx_free(&ctx);
    config_destroy(&lc);
    if (rc) return -1;

    for (int i = 0; i < n_overrides; i++)
        if (config_override(&tmp, overrides[i], err)) return -1;

    if (model_only ? validate_model(&tmp, err) : config_validate(&tmp, err))
        return ps_wrap(err, "%s%s", path, n_overrides > 0 ? " (with overrides)" : "");
    memcpy(cfg, &tmp, sizeof tmp); /* padding included: callers may memcmp */
    return 0;
}

int config_load(run_config *cfg, const char *path, int n_overrides, char **overrides, ps_error *err) {
    return load(cfg, path, n_overrides, overrides, 0, err);
}

int config_load_model(run_config *cfg, const char *path, int n_overrides, char **overrides, ps_error *err) {
    return load(cfg, path, n_overrides, overrides, 1, err);
}

/* ------------------------------------------------------------------ overrides */

static void trim(const char **b, const char **e) {
    while (*b < *e && isspace((unsigned char)**b)) (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

/* [+-]digits, whole string, into a long long. */
static int parse_int(const char *s, long long *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

/* parse_int plus a k/K (1e3), M (1e6), B/G (1e9) or T (1e12) suffix, where a
 * decimal mantissa is allowed as long as the result is whole ("1.5B"). */
static int parse_int_suffixed(const char *s, long long *out) {
    size_t n = strlen(s);
    if (n == 0) return -1;
    long long mult = 0;
    switch (s[n - 1]) {
    case 'k':
    case 'K': mult = 1000LL; break;
    case 'M': mult = 1000000LL; break;
    case 'B':
    case 'G': mult = 1000000000LL; break;
    case 'T': mult = 1000000000000LL; break;
    }
    if (!mult) return parse_int(s, out);
    const char *p = s, *end = s + n - 1;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p == '-', p++;
    if (p == end || !isdigit((unsigned char)*p)) return -1;
    long long whole = 0, frac = 0, scale = 1;
    for (; p < end && isdigit((unsigned char)*p); p++)
        if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, *p - '0', &whole)) return -1;
    if (p < end && *p == '.') {
        p++;
        if (p == end) return -1;
        for (; p < end && isdigit((unsigned char)*p); p++) {
            if (scale >= 1000000000000LL) return -1; /* more decimals than any suffix can use */
            frac = frac * 10 + (*p - '0');
            scale *= 10;
        }
    }
    if (p != end) return -1;
    long long v, f;
    if (__builtin_mul_overflow(whole, mult, &v)) return -1;
    if (__builtin_mul_overflow(frac, mult, &f) || f % scale) return -1;
    if (__builtin_add_overflow(v, f / scale, &v)) return -1;
    *out = neg ? -v : v;
    return 0;
}

int config_override(run_config *cfg, const char *assignment, ps_error *err) {
    if (!cfg || !assignment) return ps_fail(err, "config_override: no config or no override given");
    const char *eq = strchr(assignment, '=');
    const char *kb = assignment, *ke = eq ? eq : assignment + strlen(assignment);
    trim(&kb, &ke);
    if (!eq || kb == ke)
        return ps_fail(err, "override '%s': expected key=value (e.g. train.steps=200)", assignment);
    char key[128];
    if ((size_t)(ke - kb) >= sizeof key) {
        unknown_key(err, "(too long)");
        return ps_wrap(err, "override '%.200s'", assignment);
    }
    memcpy(key, kb, (size_t)(ke - kb));
    key[ke - kb] = 0;
    const key_spec *k = find_key(key);
    if (!k) {
        unknown_key(err, key);
        return ps_wrap(err, "override '%s'", assignment);
    }

    const char *raw = eq + 1;
    char val[CONFIG_STR_MAX + 8];
    kval v = {0};
    if (k->type == K_STRING || k->type == K_ENUM) {
        size_t n = strlen(raw);
        if (n >= 2 && (raw[0] == '"' || raw[0] == '\'') && raw[n - 1] == raw[0]) raw++, n -= 2;
        if (n >= k->size) return ps_fail(err, "override '%.200s...': %s is too long: at most %zu bytes", assignment,
                                         k->path, k->size - 1);
        memcpy(val, raw, n);
        val[n] = 0;
        v.s = val;
    } else {
        const char *vb = raw, *ve = raw + strlen(raw);
        trim(&vb, &ve);
        if ((size_t)(ve - vb) >= sizeof val) ve = vb + sizeof val - 1;
        memcpy(val, vb, (size_t)(ve - vb));
        val[ve - vb] = 0;
        int bad = 0;
        const char *want = "";
        switch (k->type) {
        case K_INT:
            bad = parse_int(val, &v.i) != 0;
            want = "must be a decimal integer";
            break;
        case K_INT64:
            bad = parse_int_suffixed(val, &v.i) != 0;
            want = "must be an integer, optionally with a k/M/B/T suffix such as 30B";
            break;
        case K_FLOAT: {
            char *end;
            errno = 0;
            v.f = strtod(val, &end);
            bad = !*val || *end || errno == ERANGE || !(v.f == v.f) || v.f > DBL_MAX || v.f < -DBL_MAX;
            want = "must be a finite number";
            break;
        }
        case K_BOOL:
            if (strcasecmp(val, "true") == 0 || strcmp(val, "1") == 0)
                v.i = 1;
            else if (strcasecmp(val, "false") == 0 || strcmp(val, "0") == 0)
                v.i = 0;
            else
                bad = 1;
            want = "must be true or false (or 1/0)";
            break;
        default: break;
        }
        if (bad) return ps_fail(err, "override '%s': %s %s (got '%s')", assignment, k->path, want, val);
    }
    if (check_and_store(cfg, k, &v, err)) return ps_wrap(err, "override '%s'", assignment);
    return 0;
}

/* ------------------------------------------------------------------ validation */

/* Every key's range, then the rules among model.* keys. */
static int validate_model(const run_config *cfg, ps_error *err) {
    if (!cfg) return ps_fail(err, "config_validate: no config");
    for (int i = 0; i < N_KEYS; i++) {
        kval v;
        fetch(cfg, &schema[i], &v);
        if (check_value(&schema[i], &v, err)) return -1;
    }
    const model_config *m = &cfg->model;
    if (m->heads % m->kv_heads != 0)
        return ps_fail(err,
                       "model.heads = %d is not a multiple of model.kv_heads = %d (each key/value head "
                       "serves heads/kv_heads query heads)",
                       m->heads, m->kv_heads);
    if (m->dim % m->heads != 0)
        return ps_fail(err, "model.dim = %d is not divisible by model.heads = %d (head_dim = dim/heads must be whole)",
                       m->dim, m->heads);
    if ((m->dim / m->heads) % 2 != 0)
        return ps_fail(err, "head_dim = model.dim / model.heads = %d / %d = %d must be even (RoPE rotates pairs)",
                       m->dim, m->heads, m->dim / m->heads);
    return 0;
}

int config_validate(const run_config *cfg, ps_error *err) {
    if (validate_model(cfg, err)) return -1;
    const model_config *m = &cfg->model;
    const train_config *t = &cfg->train;
    if (t->seq_len > m->context)
        return ps_fail(err,
                       "train.seq_len = %d exceeds model.context = %d (raise model.context or lower train.seq_len)",
                       t->seq_len, m->context);
    if (t->steps <= 0 && t->tokens <= 0)
        return ps_fail(err,
                       "train.steps and train.tokens are both 0: set one, train.steps (optimizer steps) or "
                       "train.tokens (token budget), e.g. train.steps=1000 or train.tokens=30B");
    if (t->min_lr > t->lr) {
        char a[64], b[64];
        fmt_double(a, sizeof a, t->min_lr);
        fmt_double(b, sizeof b, t->lr);
        return ps_fail(err, "train.min_lr = %s is above train.lr = %s (the decay floor must not exceed the peak)", a,
                       b);
    }
    if (t->warmup_steps < 0)
        return ps_fail(err, "train.warmup_steps = %lld must be >= 0", (long long)t->warmup_steps);
    const data_config *d = &cfg->data;
    if (strcmp(d->kind, "text") == 0 && d->path[0] == 0)
        return ps_fail(err, "data.path is empty: data.kind = \"text\" needs a file (data.path = \"corpus.txt\";)");
    if (strcmp(d->kind, "text") != 0 && d->path[0] == 0)
        return ps_fail(err, "data.path is empty: data.kind = \"%s\" needs the shards folder (data.path = \"data/shards\";)",
                       d->kind);
    if (strcmp(d->kind, "mixture") == 0 && d->mixture[0] == 0 && d->weights[0] == 0)
        return ps_fail(err, "data.kind = \"mixture\" needs data.mixture (e.g. \"mix6\") or data.weights (\"code:0.5,web:0.5\")");
    if ((d->reasoning_share != -1 && (d->reasoning_share < 0 || d->reasoning_share > 1)) ||
        (d->visual_share != -1 && (d->visual_share < 0 || d->visual_share > 1)))
        return ps_fail(err, "data.reasoning_share and data.visual_share are fractions in [0, 1], or -1 for unset");
    return 0;
}

/* ------------------------------------------------------------------ writing */

/* Writes s as a libconfig string literal; returns the bytes written or -1. */
static int write_string(FILE *out, const char *s) {
    int total = 2;
    if (fputc('"', out) == EOF) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        switch (*p) {
        case '"': rc = fputs("\\\"", out); break;
        case '\\': rc = fputs("\\\\", out); break;
        case '\n': rc = fputs("\\n", out); break;
        case '\r': rc = fputs("\\r", out); break;
        case '\t': rc = fputs("\\t", out); break;
        case '\f': rc = fputs("\\f", out); break;
        default: rc = *p < 0x20 || *p == 0x7f ? fprintf(out, "\\x%02x", *p) : fputc(*p, out); break;
        }
        if (rc < 0) return -1;
        total += *p == '"' || *p == '\\' || *p == '\n' || *p == '\r' || *p == '\t' || *p == '\f' ? 2
                 : *p < 0x20 || *p == 0x7f                                                     ? 4
                                                                                               : 1;
    }
    return fputc('"', out) == EOF ? -1 : total;
}

int run_config_write(const run_config *cfg, FILE *out, ps_error *err) {
    if (!cfg || !out) return ps_fail(err, "run_config_write: no config or no stream");
    fputs("# presight run configuration: every key, defaults filled in.\n# source: ", out);
    const char *src = cfg->source[0] ? cfg->source : "(defaults)";
    for (size_t i = 0; i < sizeof cfg->source && src[i]; i++)
        fputc(src[i] == '\n' || src[i] == '\r' ? '?' : src[i], out);
    fputs("\n# Loads again unchanged with: presight train --config <this file>\n", out);

    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &schema[i];
        size_t gl = group_len(k->path);
        int first = i == 0 || !same_group(schema[i - 1].path, k->path);
        if (first) fprintf(out, "\n%.*s =\n{\n", (int)gl, k->path);

        kval v;
        fetch(cfg, k, &v);
        char lit[64];
        fprintf(out, "  %-13s = ", leaf_of(k->path));
        int len = 0;
        switch (k->type) {
        case K_INT: len = fprintf(out, "%lld", v.i); break;
        case K_INT64: len = fprintf(out, "%lld%s", v.i, v.i > INT_MAX || v.i < INT_MIN ? "L" : ""); break;
        case K_BOOL: len = fprintf(out, "%s", v.i ? "true" : "false"); break;
        case K_FLOAT:
            if (!(v.f == v.f) || v.f > DBL_MAX || v.f < -DBL_MAX)
                return ps_fail(err, "run_config_write: %s is not a finite number", k->path);
            fmt_float_literal(lit, sizeof lit, v.f);
            len = fprintf(out, "%s", lit);
            break;
        case K_STRING:
        case K_ENUM:
            if (strnlen(v.s, k->size) >= k->size)
                return ps_fail(err, "run_config_write: %s is not a terminated string", k->path);
            len = write_string(out, v.s);
            break;
        }
        if (len < 0) return ps_fail(err, "run_config_write: %s", strerror(errno));
        fprintf(out, ";%*s # %s\n", len < 14 ? 14 - len : 0, "", k->help);
        int last = i == N_KEYS - 1 || !same_group(schema[i + 1].path, k->path);
        if (last) fputs("};\n", out);
    }
    if (ferror(out)) return ps_fail(err, "run_config_write: write error");
    return 0;
}

int run_config_write_file(const run_config *cfg, const char *path, ps_error *err) {
    if (!path) return ps_fail(err, "run_config_write_file: no path");
    char tmp[CONFIG_STR_MAX + 16];
    if (strlen(path) >= CONFIG_STR_MAX) return ps_fail(err, "%.64s...: path too long", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (run_config_write(cfg, f, err)) {
        fclose(f);
        unlink(tmp);
        return ps_wrap(err, "%s", path);
    }
    int rc = 0, e = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = -1, e = errno;
    if (fclose(f) != 0 && rc == 0) rc = -1, e = errno;
    if (rc) {
        unlink(tmp);
        return ps_fail(err, "%s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return ps_fail(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(e));
    }
    /* Make the rename itself durable; failure here loses nothing written. */
    char dir[CONFIG_STR_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (slash == path ? 1 : (int)(slash - path)) : 1, slash ? path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* ------------------------------------------------------------------ help */

static void default_text(const key_spec *k, char *buf, size_t cap) {
    switch (k->type) {
    case K_INT:
    case K_INT64: snprintf(buf, cap, "%lld", k->idef); break;
    case K_BOOL: snprintf(buf, cap, "%s", k->idef ? "true" : "false"); break;
    case K_FLOAT: fmt_double(buf, cap, k->fdef); break;
    case K_STRING:
    case K_ENUM: snprintf(buf, cap, "\"%s\"", k->sdef); break;
    }
}

void config_print_keys(FILE *out) {
    int wk = 3, wt = 4, wr = 7, wd = 7;
    char r[256], d[256];
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &schema[i];
        range_text(k, r, sizeof r);
        default_text(k, d, sizeof d);
        if ((int)strlen(k->path) > wk) wk = (int)strlen(k->path);
        if ((int)strlen(type_name(k->type)) > wt) wt = (int)strlen(type_name(k->type));
        if ((int)strlen(r) > wr) wr = (int)strlen(r);
        if ((int)strlen(d) > wd) wd = (int)strlen(d);
    }
    fprintf(out, "Config keys (in a file: group = { name = value; }; on the command line: group.name=value)\n\n");
    fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wk, "key", wt, "type", wr, "allowed", wd, "default", "description");
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &schema[i];
        if (i > 0 && !same_group(k->path, schema[i - 1].path)) fputc('\n', out);
        range_text(k, r, sizeof r);
        default_text(k, d, sizeof d);
        fprintf(out, "  %-*s  %-*s  %-*s  %-*s  %s\n", wk, k->path, wt, type_name(k->type), wr, r, wd, d, k->help);
    }
}

/* ------------------------------------------------------------------ diff */

static int key_in(const char *path, const char *const *list) {
    for (; list && *list; list++) {
        size_t n = strlen(*list);
        /* "group." matches the whole group, anything else the exact key. */
        if ((*list)[n - 1] == '.' ? strncmp(path, *list, n) == 0 : strcmp(path, *list) == 0) return 1;
    }
    return 0;
}

static void value_text(const run_config *cfg, const key_spec *k, char *buf, size_t cap) {
    kval v;
    fetch(cfg, k, &v);
    switch (k->type) {
    case K_INT:
    case K_INT64: snprintf(buf, cap, "%lld", (long long)v.i); break;
    case K_BOOL: snprintf(buf, cap, "%s", v.i ? "true" : "false"); break;
    case K_FLOAT: fmt_double(buf, cap, v.f); break;
    case K_STRING:
    case K_ENUM: snprintf(buf, cap, "\"%s\"", v.s); break;
    }
}

int config_diff(const run_config *a, const run_config *b, const char *const *ignore, char *out, size_t size) {
    int differ = 0;
    if (size) out[0] = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &schema[i];
        if (key_in(k->path, ignore)) continue;
        char va[CONFIG_STR_MAX + 8], vb[CONFIG_STR_MAX + 8];
        value_text(a, k, va, sizeof va);
        value_text(b, k, vb, sizeof vb);
        if (strcmp(va, vb) == 0) continue;
        cat(out, size, "%s%s = %s (was %s)", differ ? "; " : "", k->path, vb, va);
        differ++;
    }
    return differ;
}
