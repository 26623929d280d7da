/* feature_file.h - cached encoder features (HDF5), written once per encoder and
 * image set by `presight encode`, read by every adaptation run; any tool may
 * write the same layout (README, "Vision encoders"):
 *   /features        float16 or float32 [N, tokens, width], chunked per image:
 *                    the grid of one layer, row-major (tokens = grid_h * grid_w)
 *   /pooled/<block>  float32 [N, width_b], each block's spatial mean (optional
 *                    for foreign files)
 *   /ids             variable-length UTF-8 strings [N], unique, the image set's
 *   /valid           uint8 [N] (optional): 0 where the picture could not be
 *                    decoded; its rows are NaN, never used silently
 *   attributes       format = "presight-features", format_version = 1, encoder,
 *                    layer, grid_h, grid_w (int); presight adds weights_sha256,
 *                    set, preprocessing, n_failed
 * The writer writes to NAME.tmp and renames; rows are written in any order. */
/* (Not features.h: that name would shadow glibc's <features.h> under -Idatasets.) */
#ifndef PRESIGHT_FEATURE_FILE_H
#define PRESIGHT_FEATURE_FILE_H

#include <stdint.h>

#include "error.h"

typedef struct features_meta {
    char encoder[64], layer[64], set[256], weights_sha256[65], preprocessing[512];
    int grid_h, grid_w, width;
    int float16;
    int n_blocks;
    char block_names[64][64];
    int block_widths[64];
} features_meta;

typedef struct features_writer features_writer;

/* Creates path.tmp with rows for ids[0..n). */
int features_create(features_writer **out, const char *path, const features_meta *m, char **ids, int n, ps_error *err);
/* Row i: grid [tokens, width] and pooled (blocks concatenated); NULL grid
 * marks the picture failed (NaN rows, valid = 0). */
int features_write_row(features_writer *w, int i, const float *grid, const float *pooled, ps_error *err);
/* Closes and renames path.tmp to path when commit (else removes it). */
int features_close(features_writer *w, int commit, int n_failed, ps_error *err);

typedef struct features_file features_file;

/* Opens and validates a features file; with expect_ids it must hold exactly
 * those ids (any order). Every problem found is named in one message. */
int features_open(features_file **out, const char *path, char **expect_ids, int n_expect, ps_error *err);
void features_free(features_file *f);
const features_meta *features_meta_of(const features_file *f);
int features_count(const features_file *f);
/* Row of an id, -1 if absent. */
int features_find(const features_file *f, const char *id);
int features_valid(const features_file *f, int row);

/* Row's grid resized to tokens visual tokens (a square: 576 = 24 x 24) with
 * bilinear half-pixel sampling, as Cambrian resizes to 576; out [tokens, width]. */
int features_read_tokens(features_file *f, int row, int tokens, float *out, ps_error *err);
/* Row's grid as stored, [grid_h * grid_w, width]. */
int features_read_grid(features_file *f, int row, float *out, ps_error *err);
/* Row's pooled vector of one block into out [width_b]. */
int features_read_pooled(features_file *f, int row, const char *block, float *out, ps_error *err);

#endif
