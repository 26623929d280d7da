/* cnn.h - the convolutional kernels of the vision encoders (forward only).
 *
 * Tensors are one image, NHWC without the N: [h, w, c] row-major float.
 * Weights are in TensorFlow's layouts, as the TF.js graphs hold them:
 * conv HWIO [kh, kw, cin, cout], depthwise HWCM [kh, kw, c, 1]; batch norm
 * is already folded into weights and bias by the graph (the "_bn_offset").
 * Padding follows TensorFlow: SAME gives ceil(in / stride) outputs and pads
 * floor(total / 2) before, the rest after; VALID pads nothing. */
#ifndef PRESIGHT_CNN_H
#define PRESIGHT_CNN_H

#include <stddef.h>
#include <stdint.h>

enum cnn_act { CNN_ACT_NONE, CNN_ACT_RELU, CNN_ACT_RELU6 };

/* Output size of one spatial axis and the padding before it. */
int cnn_out_size(int in, int k, int stride, int same, int *pad_before);

/* y = act(conv(x, w) + bias): im2col (skipped for 1x1 stride-1 kernels) and
 * one GEMM on the BLAS of core/blas.h. scratch holds oh*ow*kh*kw*cin floats
 * (cnn_conv_scratch says how many; may be NULL when that is 0). */
size_t cnn_conv_scratch(int h, int w, int cin, int kh, int kw, int sh, int sw, int same);
void cnn_conv2d(const float *x, int h, int w, int cin, const float *wt, const float *bias, int kh, int kw, int cout,
                int sh, int sw, int same, enum cnn_act act, float *y, float *scratch);

/* Depthwise conv with channel multiplier 1, threads over output rows. */
void cnn_depthwise(const float *x, int h, int w, int c, const float *wt, const float *bias, int kh, int kw, int sh,
                   int sw, int same, enum cnn_act act, float *y);

/* k x k max / average pooling with TF padding; average pooling counts only
 * the positions inside the image (TensorFlow's SAME average excludes the pad). */
void cnn_maxpool(const float *x, int h, int w, int c, int k, int stride, int same, float *y);
void cnn_avgpool(const float *x, int h, int w, int c, int k, int stride, int same, float *y);

void cnn_add(const float *a, const float *b, size_t n, float *y);

/* Mean over the h*w positions: out[c]. */
void cnn_global_mean(const float *x, int h, int w, int c, float *out);

/* Bilinear resize of [h, w, c] to [oh, ow, c]. align_corners = 1 is
 * TensorFlow's resizeBilinear(alignCorners = true) as nsfwjs feeds its models
 * (corners map to corners); 0 is half-pixel centres (PyTorch's
 * interpolate(align_corners = False)), used to resize feature grids. Sample
 * positions are computed in double and each result rounded to float once, as
 * TF.js's CPU kernel does. */
void cnn_resize_bilinear(const float *x, int h, int w, int c, int oh, int ow, int align_corners, float *y);

#endif
