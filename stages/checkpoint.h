/* checkpoint.h - one HDF5 file per checkpoint, written collectively.
 *
 * Every tensor is stored whole, at its logical shape, so a checkpoint written
 * by N ranks loads on M ranks for any N, M. Layout (h5py/h5dump readable):
 *   /model/<tensor>       float32 weights          (Meta names, see model.h)
 *   /optim/m/<tensor>     float32 AdamW first moment
 *   /optim/v/<tensor>     float32 AdamW second moment
 *   /state                attributes: step, total_steps, seed, tokens, elapsed_s,
 *                         data_state (uint64[4]), world_size, strategy,
 *                         format_version, checksum (uint64), config (text)
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

/* Rank 0 only: deletes all but the newest `keep` complete checkpoints of DIR
 * (and any stale .tmp files). */
int checkpoint_prune(const char *dir, int keep, ps_error *err);

#endif
