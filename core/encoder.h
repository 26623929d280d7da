/* encoder.h - a frozen vision encoder: a small op list run on core/cnn.c.
 *
 * The network comes as text, one op per line (written by
 * datasets/tools/encoder_convert.js from the TF.js graph; tensors by name):
 *   conv   OUT IN W B SH SW SAME|VALID none|relu|relu6
 *   dwconv OUT IN W B SH SW SAME|VALID none|relu|relu6
 *   add    OUT A B
 *   maxpool|avgpool OUT IN K S SAME|VALID   k x k pooling (average excludes the pad)
 *   concat OUT A B ...         channels side by side (2 to 8 inputs)
 *   pool   OUT IN              global average (the feature vector)
 *   block  NAME TENSOR         a block's output: pooled per layer, or the grid
 * The input tensor is called "input": [size, size, 3] after preprocessing.
 * Weights come in as buffers (enc_weight); core reads no files.
 *
 * The third encoder, "patches", learns nothing: the preprocessed image cut
 * into grid x grid patches, each averaged down to sub x sub cells of RGB
 * (width 3*sub*sub). It is the control for what pretraining adds. */
#ifndef PRESIGHT_ENCODER_H
#define PRESIGHT_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct enc_weight {
    const char *name;
    int ndim, shape[4];
    const float *data;
} enc_weight;

/* How a picture becomes the network's input. */
typedef struct enc_preprocess {
    int size;           /* input is size x size */
    float norm_mul;     /* x = (v / 255) * norm_mul - norm_sub */
    float norm_sub;
    int pad_square;     /* pad to square with pad_color first (LLaVA's "pad") */
    uint8_t pad_color;  /* the mean colour: 127 = int(0.5 * 255), as LLaVA truncates its mean */
} enc_preprocess;

typedef struct encoder encoder;

typedef struct enc_block_info {
    const char *name;
    int h, w, c;
} enc_block_info;

/* Builds the network from its op list and weights (shapes checked against
 * each op); the weights must outlive the encoder. */
int encoder_build(encoder **out, const char *graph, const enc_weight *weights, int n_weights,
                  const enc_preprocess *prep, ps_error *err);
/* The non-learned control: grid x grid tokens of width 3*sub*sub. */
int encoder_build_patches(encoder **out, int grid, int sub, const enc_preprocess *prep, ps_error *err);
void encoder_free(encoder *e);

int encoder_blocks(const encoder *e);
const enc_block_info *encoder_block(const encoder *e, int i);
int encoder_find_block(const encoder *e, const char *name);
const enc_preprocess *encoder_prep(const encoder *e);

/* Preprocesses an RGB image [h, w, 3] into the input [size, size, 3]:
 * optional pad to square, v / 255, bilinear resize (align corners), then
 * x * norm_mul - norm_sub, each step rounded to float as TF.js does. */
int encoder_preprocess(const enc_preprocess *p, const uint8_t *rgb, int h, int w, float *input, ps_error *err);

/* Runs one preprocessed image. grid (may be NULL) receives block grid_block's
 * output [h*w, c]; pooled (may be NULL) every block's spatial mean,
 * concatenated in block order. */
int encoder_forward(encoder *e, const float *input, int grid_block, float *grid, float *pooled);

/* Sum of all blocks' widths (the length of forward's pooled). */
int encoder_pooled_width(const encoder *e);

/* Floating-point operations of one forward pass (multiply-adds count 2), for
 * the benchmark's share-of-peak figure. */
double encoder_flops(const encoder *e);

/* One forward pass timed by op kind (seconds) and the FLOPs of the
 * GEMM convolutions, for the benchmark's share-of-peak figures. */
typedef struct enc_profile {
    double conv_s, depthwise_s, other_s, conv_flops, depthwise_flops;
} enc_profile;
void encoder_profile(encoder *e, const float *input, enc_profile *p);

#endif
