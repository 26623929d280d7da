/* image_io.h - PNG and JPEG pictures into 8-bit RGB, through libpng and libjpeg.
 *
 * Every PNG colour type is accepted: greyscale (1 to 16 bits), palette (with
 * or without tRNS), RGB, with or without alpha. 16-bit samples are scaled to
 * 8 bits with rounding (libpng's png_set_scale_16: round(v * 255 / 65535)).
 * Alpha is composited on white, IMAGE_BACKGROUND, in the stored (gamma-encoded)
 * values: out = round((c * a + 255 * (255 - a)) / 255). JPEG is decoded by
 * libjpeg's default (islow) IDCT to RGB, as `djpeg` does; a JPEG that libjpeg
 * only warns about (truncated, corrupt data) is an error here, so a damaged
 * picture never becomes features silently. The format is told by the first
 * bytes, not the name. */
#ifndef PRESIGHT_IMAGE_IO_H
#define PRESIGHT_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define IMAGE_BACKGROUND 255

/* Decodes path into *rgb (malloc'd, h * w * 3 bytes). */
int image_load(const char *path, uint8_t **rgb, int *h, int *w, ps_error *err);
/* The same from bytes in memory; name is used in messages. */
int image_decode(const uint8_t *data, size_t n, const char *name, uint8_t **rgb, int *h, int *w, ps_error *err);

#endif
