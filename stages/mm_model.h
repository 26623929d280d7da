/* mm_model.h - the multimodal model: LLM + projector, loading, the splice.
 *
 * One definition shared by `presight adapt` and `presight eval`:
 *
 *   layout   the LLM's (model.* of the run config: units 0 .. layers + 1),
 *            then the projector's unit (core/projector.h, projector_add with
 *            in_dim = the vision encoder's width): tensors
 *            /model/mm_projector.{0,2}.{weight,bias}. An adapted model is a
 *            plain format-2 checkpoint of this layout; its run config carries
 *            the adapt.* group (stage, init, features, encoder, encoder_width,
 *            visual_tokens, ...).
 *   loading  a plain pretrained file (every LLM tensor loaded, the projector
 *            "new": it keeps the values it was initialised with) or an
 *            adapted one (every tensor loaded). Anything else (an LLM tensor
 *            missing, half a projector, another shape) is an error.
 *   splice   LLaVA's: the picture of a templated sample (chat_template.h)
 *            becomes visual_tokens rows whose token is -1 (model_batch reads
 *            their input from embeds, the projected features), placed where
 *            `<image>` stood. Truncation happens after the splice, at seq
 *            rows. Each sample gets positions 0, 1, ... and its own sample id
 *            in its sequence row (attention stays inside a sample), padding
 *            has id -1. Targets follow LLaVA's shifted labels: label j is
 *            token j when it is trained (an answer or caption token), else -1
 *            (every prompt token, every visual row); the target of row j is
 *            label j + 1. So no visual or prompt token is ever a target; the
 *            row before an answer's first token (the last visual row in
 *            align's "BOS <image> caption") predicts it. */
#ifndef PRESIGHT_MM_MODEL_H
#define PRESIGHT_MM_MODEL_H

#include <stddef.h>

#include "chat_template.h"
#include "comm.h"
#include "config.h"
#include "error.h"
#include "model.h"
#include "projector.h"
#include "shard.h"

typedef struct mm_model {
    model m;       /* m.layout: the LLM's units (m.layout.llm_units of them), then the projector's */
    projector pj;  /* pj.unit: the projector's unit */
} mm_model;

/* The layout of cfg's LLM with a projector from encoder_width to model.dim. */
int mm_model_init(mm_model *mm, const model_config *cfg, int encoder_width, const backend_ops *ops, ps_error *err);
void mm_model_free(mm_model *mm);

typedef struct mm_load_report {
    int adapted;          /* 1: the projector came from the file; 0: a pretrained LLM, projector new */
    int llm_tensors;      /* LLM tensors loaded (all of them) */
    int verified;         /* the file's weights checksum matched */
    char text[1024];      /* checkpoint_weights_describe's line */
} mm_load_report;

/* Whole parameters p (model_params_alloc on mm->m.layout, the projector's
 * values already initialised, model_init_weights) from a checkpoint or
 * model.h5 at path, on one process. */
int mm_model_load(const mm_model *mm, const char *path, model_params *p, mm_load_report *rep, ps_error *err);
/* The same into this rank's slices (collective over c; c NULL: one process). */
int mm_model_load_sharded(const mm_model *mm, const char *path, comm *c, const shard_view *mine, mm_load_report *rep,
                          ps_error *err);

/* A run (directory) or a weights file: path of its weights (DIR/model.h5 of
 * a complete run) and the run's resolved config (DIR/config.cfg; for a file,
 * the config.cfg of its run: the folder holding it, or above checkpoints/). */
int mm_run_resolve(const char *run_or_file, char *weights, size_t size, run_config *cfg, ps_error *err);

/* Where one sample landed in a batch. */
typedef struct mm_placement {
    int row, start, len; /* sequence row, first row index within it, rows kept */
    int truncated;       /* rows cut away at seq */
    int n_train;         /* targets left after truncation (0: the answer was cut away) */
    int image;           /* its image block index, -1 none */
} mm_placement;

/* A micro-batch being filled; rows are b * seq + t as model_batch has them. */
typedef struct mm_batch {
    int batch, seq;
    int *tokens, *targets, *positions, *sample; /* [batch * seq] */
    int n_embeds;         /* rows whose token is -1, in row order */
    int n_images;         /* image blocks (one per sample with a picture) */
    int *image_sample;    /* [n_images] the sample (mm_batch_add order) of each block */
    int *image_rows;      /* [n_images] its rows kept (visual_tokens unless truncated) */
    int n_samples;
    mm_placement *placed; /* [n_samples] */
    long n_counted;       /* targets that count */
    int cap_samples, row, used; /* where the next sample goes: row, rows used in it */
} mm_batch;

int mm_batch_alloc(mm_batch *b, int batch, int seq, ps_error *err);
void mm_batch_free(mm_batch *b);
/* Empties the batch: every row padding (token 0, target -1, sample -1). */
void mm_batch_clear(mm_batch *b);
/* Splices sample s with visual_tokens picture rows (when s->image_at >= 0)
 * into the batch. pack = 1: after the previous sample in its row when it
 * fits whole, else at the start of the next row; pack = 0: one sample per
 * row. A sample longer than seq is truncated, alone in its row. Returns 1
 * placed (b->placed[b->n_samples - 1] says how), 0 no room left (nothing
 * changed), -1 error. */
int mm_batch_add(mm_batch *b, const chat_tokens *s, int visual_tokens, int pack, ps_error *err);
/* Makes the next mm_batch_add start a new sequence row (a caller's own
 * row plan, e.g. rows dealt to ranks). */
void mm_batch_new_row(mm_batch *b);
/* The spliced token row of s alone: out [s->n + v] (v = visual_tokens when s has a
 * picture, else 0) holds s's ids with -1 for each picture row, as mm_batch_add places
 * them (evaluation prompts for decoding; s->train is not read and may be NULL); returns
 * its length. */
int mm_splice_ids(const chat_tokens *s, int visual_tokens, int *out);
/* Targets sample s keeps after splicing visual_tokens rows and truncating
 * at seq rows (what mm_batch_add's placement reports as n_train). */
int mm_sample_targets(const chat_tokens *s, int visual_tokens, int seq);
/* The model_batch of b with embeds [n_embeds, dim] (and embeds_grad, may
 * be NULL) and a loss divisor (0: this batch's own mean). */
model_batch mm_batch_view(const mm_batch *b, const real *embeds, real *embeds_grad, double loss_divisor);
/* The projector's input in row order: out [n_embeds, width] from
 * features[k] = the [visual_tokens, width] rows of sample k's picture (the
 * first image_rows of each block are used). */
void mm_batch_gather(const mm_batch *b, const float *const *features, int width, real *out);

#endif
