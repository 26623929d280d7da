/* checkpoint.h - one HDF5 file per checkpoint, written collectively.
 *
 * Every tensor is stored whole, at its logical shape, so a checkpoint written
 * by N ranks loads on M ranks for any N, M. Layout (h5py/h5dump readable),
 * format_version 2:
 *   /model/<tensor>       float32 weights          (Meta names, see model.h)
 *   /optim/m/<tensor>     float32 AdamW first moment  (tensors of trainable units only)
 *   /optim/v/<tensor>     float32 AdamW second moment (the same)
 *   /state                attributes: step, total_steps, seed, tokens, elapsed_s,
 *                         data_state (uint64[4]), world_size, strategy,
 *                         format_version, checksum (uint64, every tensor stored),
 *                         model_checksum (uint64, /model alone), config (text)
 * Version 1 files (moments of every tensor, no model_checksum) still load.
 * The checksum is order-independent (a sum over every element of a hash of
 * (tensor, index, bits)), so each rank hashes its own slices and the sum over
 * ranks is the same for any N. A file is written as NAME.tmp and renamed to
 * NAME only after a flush; a reader that finds a truncated or corrupt file
 * reports it and falls back to the previous checkpoint. */
#ifndef PRESIGHT_CHECKPOINT_H
#define PRESIGHT_CHECKPOINT_H

#include <stdint.h>

#include "comm.h"
#include "error.h"
#include "model.h"
#include "shard.h"

typedef struct checkpoint_state {
    int64_t step;          /* optimizer steps done */
    int64_t total_steps;
    uint64_t seed;
    double tokens;         /* tokens trained on so far */
    double elapsed_s;      /* training seconds so far (across restarts) */
    uint64_t data_state[4];/* sampler state (the step alone for today's datasets) */
    int world_size;
    char strategy[16];
} checkpoint_state;

/* Collective over c (every rank calls it). Writes DIR/step_%08lld.h5 via a .tmp name. */
int checkpoint_write(const char *dir, comm *c, const model_layout *L, const shard_view *mine,
                     const checkpoint_state *st, const char *config_text, ps_error *err);

/* Collective. Reads PATH into this rank's slices and st; *config_text (malloc'd,
 * may be NULL) receives the stored config. Verifies shapes (an error names the
 * tensor and both shapes) and the checksum (an error says the file is corrupt). */
int checkpoint_read(const char *path, comm *c, const model_layout *L, shard_view *mine, checkpoint_state *st,
                    char **config_text, ps_error *err);

/* Collective. Tries DIR's checkpoints newest first; a file that fails to read
 * is reported on stderr (rank 0) and the previous one is tried. Returns 1 when
 * one was loaded (path in loaded_path), 0 when DIR holds none, -1 on error
 * (e.g. every checkpoint failed, or one is for another model shape). */
int checkpoint_load_latest(const char *dir, comm *c, const model_layout *L, shard_view *mine, checkpoint_state *st,
                           char **config_text, char *loaded_path, size_t path_size, ps_error *err);

/* Weights only, for a stage that starts from another run's weights: the
 * tensors of L whose names start with one of select's prefixes (a NULL-
 * terminated list; NULL: every tensor) are read from PATH's /model (a
 * checkpoint, a run's model.h5, or a weights_h5 file) into mine's parameter
 * slices; moments are not read. A selected tensor the file lacks is new (its
 * slices keep what they hold, e.g. a projector's initial values); one of
 * another shape is an error naming both shapes. Each rank reads its own
 * slices with HDF5's serial driver; with c (NULL for one process) the ranks
 * agree on failure and verify the weights' checksum together, when the file
 * has one (format 2) and every tensor it stores was read. */
typedef enum { CKPT_TENSOR_SKIPPED = 0, CKPT_TENSOR_LOADED = 1, CKPT_TENSOR_NEW = 2 } checkpoint_tensor_status;

typedef struct checkpoint_weights_report {
    int format_version;     /* the file's (0: a weights file without /state) */
    int loaded, fresh, skipped; /* tensors of the layout: read, new (not in the file), not selected */
    int unused;             /* tensors of the file's /model not read */
    int verified;           /* 1: the weights' checksum matched */
    unsigned char *status;  /* [n_tensors] checkpoint_tensor_status */
} checkpoint_weights_report;

int checkpoint_load_weights(const char *path, comm *c, const model_layout *L, const shard_view *mine,
                            const char *const *select, checkpoint_weights_report *rep, ps_error *err);
/* The light serial reader (evaluation, tools): the same into whole parameters
 * p (model_params_alloc), on one process, no MPI. */
int checkpoint_read_model(const char *path, const model_layout *L, model_params *p, const char *const *select,
                          checkpoint_weights_report *rep, ps_error *err);
void checkpoint_weights_report_free(checkpoint_weights_report *rep);
/* "N tensors loaded, M new (names...), ...; checksum verified" */
void checkpoint_weights_describe(const checkpoint_weights_report *rep, const model_layout *L, char *out, size_t size);

/* Rank 0 only: deletes all but the newest `keep` complete checkpoints of DIR
 * (and any stale .tmp files). */
int checkpoint_prune(const char *dir, int keep, ps_error *err);

#endif
