/* encoder_weights.h - the presight encoder weights file (HDF5), written once
 * by `make encoder-data` (datasets/tools/encoder_h5.py) from the TF.js model:
 *   /tensors/<name>  float32 in TF layouts (conv HWIO, depthwise HWCM)
 *   attributes       format = "presight-encoder-weights", format_version = 1,
 *                    encoder, source, source_sha256, graph (the op list of
 *                    core/encoder.h), feature, input_size, resize, norm_mul,
 *                    norm_sub
 * Loading checks the layout, names the file and the key at fault, and hashes
 * the file (its SHA-256 goes into every features file). */
#ifndef PRESIGHT_ENCODER_WEIGHTS_H
#define PRESIGHT_ENCODER_WEIGHTS_H

#include "encoder.h"
#include "error.h"

typedef struct encoder_weights {
    char encoder[64];
    char source[256];
    char sha256[65];    /* of the weights file itself */
    char *graph;
    enc_preprocess prep;
    enc_weight *tensors;
    int n_tensors;
} encoder_weights;

int encoder_weights_load(encoder_weights *w, const char *path, ps_error *err);
void encoder_weights_free(encoder_weights *w);


#endif
