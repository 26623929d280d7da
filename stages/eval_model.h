/* eval_model.h - the model side of `presight eval`: a trained model with the tokenizer it
 * was trained with, scoring lm-eval requests and decoding greedily.
 *
 * Weights: eval.checkpoint, else run.dir/model.h5 (a finished run), else the newest
 * run.dir/checkpoints/step_*.h5; read whole on each process (checkpoint_read_model), the
 * weights' checksum verified; checkpoint_sha256 is the SHA-256 of that file's bytes.
 * Tokenizer: data.tokenizer (data.tokenizer_kind); a byte-level run (data.kind = "text")
 * gets the byte vocabulary of datasets/text.c (ids 0..255, then the four specials).
 * The prefix (empty contexts, the first rolling window) is <|end_of_text|>.
 *
 * Scoring is forward-only and batch-invariant (core/model.h): each request is one row of a
 * padded batch (sample id -1 past its end), and its log-likelihood and greedy flag are
 * bit-identical whatever else shares the batch.
 *
 * Pictures (eval_model_open_visual): when the weights are an adapted model's (the
 * projector /model/mm_projector.* in the file, adapt.stage align or sft in its run's
 * config: the evaluated config's adapt.* group, else the config.cfg of the weights'
 * run), the model sees the pictures: each is looked up by id in the features files
 * (every <set>.h5 of eval.features, default the adapt stage's adapt.features; one
 * encoder, the adapt run's), resized to adapt.visual_tokens rows as adapt reads them,
 * projected one picture at a time (so a picture's rows do not depend on the batch) and
 * spliced where `<image>` stands in the chat template sft trained with
 * (chat_template_question, mm_model.h). Otherwise (a pretrained model, a blind pass)
 * the model is text only.
 *
 * Backends (eval_model_use_gpu): on the CPU backend everything above holds bit for bit.
 * On the GPU engine (run.backend = "cuda", stages/gpu_engine.h) scoring runs the engine's
 * score_batch and decoding its greedy_decode_embeds, in bf16 with fp32 logits: chosen answers
 * and greedy tokens are the CPU's unless two candidates lie within bf16 rounding, and
 * log-likelihoods agree within the engine's tolerance (a few 1e-2 nats per request on the
 * emulated engine's checks, cuda/check/engine_check.cu). Scoring passes hold requests of one
 * length class (rows rounded up to a power of two, >= 16, <= model.context) padded to
 * [eval.batch, class], a shape that depends on the request alone, so a request's numbers are
 * still bit-identical whatever shares its pass; decoding's prefill follows the longest prompt of its pass (on a
 * real GPU another shape may pick another GEMM kernel: tokens within bf16 rounding). Pictures
 * are projected on the CPU (fp32) either way. */
#ifndef PRESIGHT_EVAL_MODEL_H
#define PRESIGHT_EVAL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "chat_template.h"
#include "config.h"
#include "error.h"
#include "eval_items.h"
#include "feature_file.h"
#include "gpu_engine.h"
#include "model.h"
#include "projector.h"
#include "tokenizer.h"

typedef struct eval_model {
    run_config cfg;     /* the model's run config */
    model model;
    model_params params;
    tokenizer *tok;
    uint32_t prefix;    /* <|end_of_text|> */
    char weights[4096]; /* the file read */
    char weights_sha256[65];
    char describe[512]; /* "N tensors loaded ...; checksum verified" */
    uint32_t stop;      /* generation stops at it: the template's EOT with pictures, else prefix */
    /* pictures (eval_model_open_visual; image_input = 0: none of this is set) */
    int image_input;
    projector pj;       /* its unit follows the LLM's in model.layout */
    int visual_tokens, encoder_width;
    char encoder[64], stage[16];
    char features[CONFIG_STR_MAX]; /* the folder read */
    chat_template tpl;  /* sft's (chat_template_for_run) */
    int n_files;
    features_file **files;
    char **file_names;
    /* the GPU engine (eval_model_use_gpu); NULL: the CPU backend */
    const gpu_engine_api *gpu;
    gpu_engine *engine;
    model_layout engine_layout; /* model.layout with every unit frozen (the engine keeps a pointer) */
    model_unit *engine_units;
    size_t *engine_sizes;
    shard_layout engine_slices; /* one rank owning everything */
} eval_model;

/* An evaluation prompt for eval_model_generate_visual: ids with visual rows before
 * ids[image_at] (visual = 0: none), their inputs embeds [visual, dim]. */
typedef struct eval_prompt {
    const uint32_t *ids;
    size_t n;
    int visual, image_at;
    const real *embeds;
} eval_prompt;

/* Where a picture's features are: file index and row. */
typedef struct eval_picture {
    int file, row;
} eval_picture;

/* Opens cfg's model. scratch_dir holds the byte vocabulary of a byte-level run. */
int eval_model_open(eval_model *em, const run_config *cfg, const char *scratch_dir, ps_error *err);
/* The same, with pictures when cfg's weights are an adapted model's (see above). */
int eval_model_open_visual(eval_model *em, const run_config *cfg, const char *scratch_dir, ps_error *err);
void eval_model_close(eval_model *em);
/* Scores and decodes on the GPU engine api (backend_select's) from now on: the weights go to
 * this process's GPU (every unit frozen: no gradients, no optimizer state). */
int eval_model_use_gpu(eval_model *em, const gpu_engine_api *api, ps_error *err);

/* The features of picture id: in exactly one of the features files, encoded (valid). */
int eval_model_find_picture(const eval_model *em, const char *id, eval_picture *out, ps_error *err);
/* Its projected rows: out [visual_tokens, model.dim]. */
int eval_model_project(eval_model *em, eval_picture pic, real *out, ps_error *err);

/* The tokenizer cfg's model was trained with, and its <|end_of_text|> id (see above). */
int eval_tokenizer_open(const run_config *cfg, const char *scratch_dir, tokenizer **tok, uint32_t *eot,
                        ps_error *err);

/* Which weights file eval_model_open reads for cfg (path, size bytes). */
int eval_model_weights_path(const run_config *cfg, char *path, size_t size, ps_error *err);

/* Scores req[0..n) in forward passes of up to batch rows (requests with a picture in
 * passes of their own, each the picture spliced by mm_model.h): ll[i] = the summed
 * log-probability of request i's continuation, greedy[i] = 1 when every continuation
 * token is the argmax (ties to the lowest id). *tokens (may be NULL) += input tokens run.
 * A request longer than model.context loses its first context tokens (lm-eval's way); one
 * with a picture loses text only, never the picture's rows nor the continuation: first the
 * earliest tokens after the picture (the question's start), then the earliest before it (an
 * error when the picture and the continuation alone do not fit). */
int eval_model_score(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                     double *tokens, ps_error *err);
/* The same, with cut[i] = the tokens request i lost to model.context (0: whole). */
int eval_model_score_cut(eval_model *em, const eval_request *req, size_t n, int batch, double *ll, int *greedy,
                         int *cut, double *tokens, ps_error *err);

/* Greedy continuation of n prompts (token ids) by max_new tokens each, stopping a sequence's
 * output at <|end_of_text|> (not included): out[i] (malloc'd ids, *n_out[i] of them). Prompts
 * longer than model.context - max_new keep their last tokens (an error when none fit). */
int eval_model_generate(eval_model *em, const tokenizer_ids *prompts, size_t n, int batch, int max_new,
                        uint32_t **out, size_t *n_out, ps_error *err);
/* The same over prompts that may hold pictures (stopping at em->stop); a prompt with a
 * picture longer than model.context - max_new + 1 rows loses text as eval_model_score's
 * requests do (never the picture's rows; an error when they alone do not fit). */
int eval_model_generate_visual(eval_model *em, const eval_prompt *prompts, size_t n, int batch, int max_new,
                               uint32_t **out, size_t *n_out, ps_error *err);
/* The same, with cut[i] = the tokens prompt i lost to model.context (0: whole). */
int eval_model_generate_cut(eval_model *em, const eval_prompt *prompts, size_t n, int batch, int max_new,
                            uint32_t **out, size_t *n_out, int *cut, ps_error *err);

#endif
