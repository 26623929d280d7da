/* config.h - run configuration: libconfig files plus key=value overrides.
 *
 * Every key presight understands is declared once, in the schema table of
 * core/config.c (path, type, range, default, help). Loading walks the
 * libconfig tree and rejects any setting the schema does not know; each value
 * is type- and range-checked; every error names the file and line (or the
 * command-line override), the key and what is allowed. The resolved config
 * (every key, defaults filled in) is written back in libconfig syntax into the
 * run directory, from which it loads again unchanged.
 *
 * A config file may pull a model preset in with libconfig's
 *   @include "model/1b.cfg"
 * (resolved relative to the including file's folder). */
#ifndef PRESIGHT_CONFIG_H
#define PRESIGHT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"

#define CONFIG_STR_MAX 1024

typedef struct model_config {
    int vocab;          /* model.vocab       vocabulary size (embedding rows) */
    int dim;            /* model.dim         residual width */
    int layers;         /* model.layers      transformer blocks */
    int heads;          /* model.heads       query heads */
    int kv_heads;       /* model.kv_heads    key/value heads; divides heads */
    int ffn_dim;        /* model.ffn_dim     SwiGLU hidden width */
    int context;        /* model.context     maximum sequence length (RoPE table size) */
    double rope_theta;  /* model.rope_theta  RoPE base, default 500000 */
    double norm_eps;    /* model.norm_eps    RMSNorm epsilon, default 1e-5 */
    int tied_head;      /* model.tied_head   output head shares the embedding (bool) */
    double init_std;    /* model.init_std    normal init std, default 0.02 */
} model_config;

typedef struct train_config {
    int micro_batch;       /* train.micro_batch   sequences per micro-batch per rank */
    int seq_len;           /* train.seq_len       tokens per sequence (<= model.context) */
    int grad_accum;        /* train.grad_accum    micro-batches per optimizer step */
    int64_t steps;         /* train.steps         optimizer steps; 0 = derive from train.tokens */
    int64_t tokens;        /* train.tokens        token budget; used when train.steps = 0 */
    double lr;             /* train.lr            peak learning rate */
    double min_lr;         /* train.min_lr        floor of the cosine decay */
    int64_t warmup_steps;  /* train.warmup_steps  linear warm-up from 0 to lr */
    double beta1;          /* train.beta1 */
    double beta2;          /* train.beta2 */
    double adam_eps;       /* train.eps */
    double weight_decay;   /* train.weight_decay  decoupled; never applied to norm weights */
    double grad_clip;      /* train.grad_clip     clip by global norm; 0 = off */
    int64_t seed;          /* train.seed */
    int log_every;         /* train.log_every     progress line every N steps */
} train_config;

typedef struct data_config {
    char kind[32];               /* data.kind   "text" (bytes of a UTF-8 file) | "shards" (one source) | "mixture" */
    char path[CONFIG_STR_MAX];   /* data.path   file (text), one source's shard folder (shards), the shards root (mixture) */
    char mixture[CONFIG_STR_MAX];   /* data.mixture  a name under config/mixtures/ or a mixture file (kind mixture) */
    char weights[CONFIG_STR_MAX];   /* data.weights  inline override of the mixture's weights, "code:0.35,web:0.40" */
    double reasoning_share;         /* data.reasoning_share  target share of reasoning segments; -1 = unset */
    double visual_share;            /* data.visual_share     target share of visual segments; -1 = unset */
    char tokenizer[CONFIG_STR_MAX]; /* data.tokenizer  vocabulary file the shards must have been made with ("" = any) */
    char tokenizer_kind[16];        /* data.tokenizer_kind  "plain" | "llama3" | "cl100k" */
} data_config;

typedef struct parallel_config {
    char strategy[16];          /* parallel.strategy  "ddp" | "zero1" | "fsdp" */
    int shard_group;            /* parallel.shard_group  ranks per shard group (hybrid); 0 = all ranks */
    int reshard_after_forward;  /* parallel.reshard_after_forward  fsdp: free gathered units after forward */
    int prefetch;               /* parallel.prefetch  fsdp: gather the next unit while computing this one */
    int recompute_blocks;       /* parallel.recompute_blocks  activation checkpointing per block */
} parallel_config;

typedef struct checkpoint_config {
    int64_t every_steps;        /* checkpoint.every_steps  0 = only by time and at the end */
    double every_minutes;       /* checkpoint.every_minutes  0 = only by steps */
    int keep;                   /* checkpoint.keep  newest checkpoints kept */
} checkpoint_config;

typedef struct eval_config {
    char tasks[CONFIG_STR_MAX];      /* eval.tasks       task files, comma-separated */
    char checkpoint[CONFIG_STR_MAX]; /* eval.checkpoint  weights file; "" = run.dir's model.h5 or newest checkpoint */
    char out[CONFIG_STR_MAX];        /* eval.out         output folder; "" = run.dir/eval */
    int batch;                       /* eval.batch       requests (sequences) per forward pass */
    int items_per_step;              /* eval.items_per_step  items per runner step (progress, resume unit) */
    int64_t limit;                   /* eval.limit       first N items of each task; 0 = all */
    int max_new_tokens;              /* eval.max_new_tokens  greedy decoding length (VQA) */
    int64_t every;                   /* eval.every       pretraining: held-out loss every N steps; 0 = off */
    int batches;                     /* eval.batches     pretraining: held-out micro-batches per evaluation */
    char align[CONFIG_STR_MAX];      /* eval.align       features files (presight encode) for alignment, comma-separated */
    char align_captions[CONFIG_STR_MAX]; /* eval.align_captions  JSONL with "image" and "caption" */
    int align_k;                     /* eval.align_k     mutual k-NN's k */
    char heldout[CONFIG_STR_MAX];    /* eval.heldout     pretraining: the held-out documents (a rolling task file) */
    char features[CONFIG_STR_MAX];   /* eval.features    an adapted model's pictures: folder of <set>.h5; "" = adapt.features */
} eval_config;
/* adapt.*: `presight adapt` (stages/adapt.h); model.* and data.* of an adapt
 * run are its adapt.init run's. */
typedef struct adapt_config {
    char stage[16];                   /* adapt.stage          "align" | "blind" | "sft" */
    char init[CONFIG_STR_MAX];        /* adapt.init           the pretrained run, or the previous stage's (a run.dir or weights file) */
    char init_sha256[65];             /* adapt.init_sha256    SHA-256 of adapt.init's weights file (resolved; "" = compute) */
    char features[CONFIG_STR_MAX];    /* adapt.features       folder of <image_set>.h5 features files (one encoder) */
    char data[CONFIG_STR_MAX];        /* adapt.data           LLaVA JSONL: align.jsonl (captions) or instruct.jsonl */
    char encoder[64];                 /* adapt.encoder        the features' encoder (resolved; "" = from the files) */
    char encoder_sha256[65];          /* adapt.encoder_sha256 its weights_sha256 (resolved) */
    int encoder_width;                /* adapt.encoder_width  token width (resolved; 0 = from the files) */
    int visual_tokens;                /* adapt.visual_tokens  projected rows per picture (a square: 576 = 24 x 24) */
    char projector[16];               /* adapt.projector      "mlp2x_gelu" */
    int batch;                        /* adapt.batch          samples per optimizer step (global batch) */
    int epochs;                       /* adapt.epochs         passes over adapt.data */
    int64_t max_samples;              /* adapt.max_samples    0 = every line; else the first N (quickstart, tests) */
    double warmup_ratio;              /* adapt.warmup_ratio   share of the steps warming up (train.warmup_steps derived) */
    int pack;                         /* adapt.pack           pack samples into sequences (else one per sequence) */
    double max_bad;                   /* adapt.max_bad        share of samples that may be broken or cut away before the stage fails */
    char heldout[CONFIG_STR_MAX];     /* adapt.heldout        held-out samples (JSONL as adapt.data) for eval.every */
} adapt_config;

typedef struct run_config {
    model_config model;
    train_config train;
    data_config data;
    parallel_config parallel;
    checkpoint_config checkpoint;
    eval_config eval;
    adapt_config adapt;
    char run_dir[CONFIG_STR_MAX]; /* run.dir      where config, metrics and weights go */
    char backend[16];             /* run.backend  "cpu" (later "cuda", "auto") */
    int threads;                  /* run.threads  CPU threads; 0 = all cores */
    char source[CONFIG_STR_MAX];  /* the file this config was loaded from (not a key) */
} run_config;

/* Fills cfg with every default. */
void config_defaults(run_config *cfg);

/* Loads path, then applies overrides ("key=value" strings, in order), then
 * validates the whole config (ranges and cross-key rules such as
 * heads % kv_heads == 0 and seq_len <= context). Returns 0 or -1 with err. */
int config_load(run_config *cfg, const char *path, int n_overrides, char **overrides, ps_error *err);

/* Like config_load, but validates only what describes the model: every
 * key's range and the model.* cross-key rules (no step/token budget, data
 * path or seq_len check), for commands such as `presight plan`. */
int config_load_model(run_config *cfg, const char *path, int n_overrides, char **overrides, ps_error *err);

/* Applies one "key=value" override to cfg (after a load). */
int config_override(run_config *cfg, const char *assignment, ps_error *err);

/* Cross-key checks; config_load calls it, callers that edit cfg by hand may too. */
int config_validate(const run_config *cfg, ps_error *err);

/* Writes every key, in libconfig syntax, loadable by config_load. */
int run_config_write(const run_config *cfg, FILE *out, ps_error *err);
int run_config_write_file(const run_config *cfg, const char *path, ps_error *err);

/* Compares every key except those in ignore (NULL-terminated; an entry
 * ending in '.' names a whole group, e.g. "parallel."). Returns how many
 * differ and lists them in out as "key = b-value (was a-value); ...". */
int config_diff(const run_config *a, const run_config *b, const char *const *ignore, char *out, size_t size);

/* Prints the schema (key, type, range, default, help) for --help. */
void config_print_keys(FILE *out);

#endif
