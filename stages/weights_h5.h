/* weights_h5.h - model tensors in HDF5, at their full logical shapes.
 *
 * Layout of a file (readable with h5py and h5dump):
 *   /<group>/<tensor name>   float32 dataset, [rows, cols] or [rows] for vectors,
 *                            names as in Meta's Llama checkpoints
 *   /<group> attribute "config": the resolved libconfig text of the run
 * The same layout holds weights ("model"), gradients ("grad") and optimizer
 * moments; checkpoints add groups beside them. Files are written to a
 * temporary name and renamed only when complete. */
#ifndef PRESIGHT_WEIGHTS_H5_H
#define PRESIGHT_WEIGHTS_H5_H

#include "error.h"
#include "model.h"

typedef struct h5_file h5_file;

/* Creates path.tmp for writing; h5_commit renames it to path when all is written. */
h5_file *h5_create(const char *path, ps_error *err);
h5_file *h5_open_read(const char *path, ps_error *err);
/* Closes; when the file was being written and commit is nonzero, flushes and renames
 * path.tmp over path; otherwise a file being written is removed. */
int h5_close(h5_file *f, int commit, ps_error *err);

/* Writes every tensor of params into /group (created), with an optional "config" attribute. */
int h5_write_params(h5_file *f, const char *group, const model_layout *L, const model_params *p,
                    const char *config_text, ps_error *err);
/* Reads every tensor of the layout from /group; a missing tensor or a shape that
 * differs is an error naming the file, tensor and both shapes. */
int h5_read_params(h5_file *f, const char *group, const model_layout *L, model_params *p, ps_error *err);

/* Small arrays and scalars (token ids, a loss) for tests and metadata. */
int h5_write_ints(h5_file *f, const char *name, const int *data, int rank, const long long *dims, ps_error *err);
int h5_write_reals(h5_file *f, const char *name, const real *data, int rank, const long long *dims, ps_error *err);
int h5_write_double(h5_file *f, const char *name, double value, ps_error *err);

#endif
