/* image_io.c - PNG (libpng) and JPEG (libjpeg) decoding. See image_io.h. */
#include "image_io.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>

#define MAX_SIDE 20000 /* larger pictures are refused, not decoded into gigabytes */

/* ---- PNG ---------------------------------------------------------------- */

typedef struct png_src {
    const uint8_t *data;
    size_t n, at;
    char msg[256];
} png_src;

static void png_read_mem(png_structp p, png_bytep out, png_size_t len) {
    png_src *s = png_get_io_ptr(p);
    if (s->at + len > s->n) png_error(p, "file ends early");
    memcpy(out, s->data + s->at, len);
    s->at += len;
}

static void png_on_error(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(p, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

/* Every colour type -> 8-bit RGBA, then alpha composited on the background. */
static void png_transforms(png_structp p, png_infop info) {
    int type = png_get_color_type(p, info), depth = png_get_bit_depth(p, info);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(p);
    if (png_get_valid(p, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(p);
    if (depth == 16) png_set_scale_16(p);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(p);
    png_set_add_alpha(p, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
}

static void composite(const uint8_t *rgba, size_t n, uint8_t *rgb) {
    for (size_t i = 0; i < n; i++) {
        unsigned a = rgba[4 * i + 3];
        for (int c = 0; c < 3; c++)
            rgb[3 * i + c] = (uint8_t)((rgba[4 * i + c] * a + IMAGE_BACKGROUND * (255 - a) + 127) / 255);
    }
}

/* libpng 1.6 allocates a text chunk's declared length before reading it (no limit applies
 * to tEXt): a 218-byte file declaring a 512 MB chunk took 512 MB and 13 s (fuzz_image_decode;
 * tests/fuzz/seeds/fuzz_image_decode/huge-text-chunk.png). So every chunk's length is
 * checked against the bytes that follow it before libpng sees the file. */
static int png_chunks_fit(const uint8_t *d, size_t n, const char *name, ps_error *err) {
    for (size_t at = 8; n >= 8 && at <= n - 8;) { /* libpng reads a chunk's length and type: 8 bytes */
        uint32_t len = (uint32_t)d[at] << 24 | (uint32_t)d[at + 1] << 16 | (uint32_t)d[at + 2] << 8 | d[at + 3];
        if ((uint64_t)len + 12 > n - at)
            return ps_fail(err, "%s: corrupt PNG (chunk %.4s at byte %zu declares %u bytes, the file has %zu more)",
                           name, (const char *)d + at + 4, at, len, n - at - 8);
        if (!memcmp(d + at + 4, "IEND", 4)) break;
        at += 12 + (size_t)len;
    }
    return 0;
}

static int decode_png(const uint8_t *data, size_t n, const char *name, uint8_t **rgb, int *h, int *w, ps_error *err) {
    if (png_chunks_fit(data, n, name, err)) return -1;
    png_src src = {data, n, 0, ""};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    uint8_t *volatile rgba = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&p, NULL, NULL);
        return ps_fail(err, "%s: out of memory", name);
    }
    if (setjmp(png_jmpbuf(p))) {
        free(rgba), free(rows);
        png_destroy_read_struct(&p, &info, NULL);
        return ps_fail(err, "%s: corrupt PNG (libpng: %s)", name, src.msg);
    }
    png_set_read_fn(p, &src, png_read_mem);
    png_read_info(p, info);
    png_uint_32 width = png_get_image_width(p, info), height = png_get_image_height(p, info);
    if (width > MAX_SIDE || height > MAX_SIDE) png_error(p, "picture larger than 20000 pixels a side");
    png_transforms(p, info);
    rgba = malloc((size_t)width * height * 4);
    rows = malloc(sizeof(png_bytep) * height);
    if (!rgba || !rows) png_error(p, "out of memory");
    for (png_uint_32 r = 0; r < height; r++) rows[r] = rgba + (size_t)r * width * 4;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    uint8_t *out = malloc((size_t)width * height * 3);
    if (!out) png_error(p, "out of memory");
    composite(rgba, (size_t)width * height, out);
    free(rgba), free(rows);
    png_destroy_read_struct(&p, &info, NULL);
    *rgb = out, *h = (int)height, *w = (int)width;
    return 0;
}

/* ---- JPEG --------------------------------------------------------------- */

typedef struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
} jpeg_fail;

static void jpeg_on_error(j_common_ptr c) { longjmp(((jpeg_fail *)c->err)->jump, 1); }

/* Warnings are counted (num_warnings) and become our error; nothing is printed. */
static void jpeg_quiet(j_common_ptr c) { (void)c; }

static int decode_jpeg(const uint8_t *data, size_t n, const char *name, uint8_t **rgb, int *h, int *w, ps_error *err) {
    struct jpeg_decompress_struct c;
    jpeg_fail fail;
    uint8_t *volatile out = NULL;
    c.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_on_error;
    fail.mgr.output_message = jpeg_quiet;
    if (setjmp(fail.jump)) {
        char msg[JMSG_LENGTH_MAX];
        fail.mgr.format_message((j_common_ptr)&c, msg);
        jpeg_destroy_decompress(&c);
        free(out);
        return ps_fail(err, "%s: corrupt JPEG (libjpeg: %s)", name, msg);
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, data, (unsigned long)n);
    jpeg_read_header(&c, TRUE);
    c.out_color_space = JCS_RGB; /* libjpeg converts greyscale and YCbCr; CMYK is refused by it */
    jpeg_start_decompress(&c);
    if (c.output_width > MAX_SIDE || c.output_height > MAX_SIDE || c.output_components != 3 ||
        !(out = malloc((size_t)c.output_width * c.output_height * 3))) {
        jpeg_destroy_decompress(&c);
        return ps_fail(err, "%s: JPEG too large or not 3 components after conversion", name);
    }
    while (c.output_scanline < c.output_height) {
        JSAMPROW row = out + (size_t)c.output_scanline * c.output_width * 3;
        jpeg_read_scanlines(&c, &row, 1);
    }
    jpeg_finish_decompress(&c);
    long warnings = fail.mgr.num_warnings;
    *h = (int)c.output_height, *w = (int)c.output_width;
    jpeg_destroy_decompress(&c);
    if (warnings) {
        free(out);
        return ps_fail(err, "%s: corrupt JPEG (libjpeg gave %ld warning(s), e.g. a truncated file)", name, warnings);
    }
    *rgb = out;
    return 0;
}

int image_decode(const uint8_t *data, size_t n, const char *name, uint8_t **rgb, int *h, int *w, ps_error *err) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && !memcmp(data, png_magic, 8)) return decode_png(data, n, name, rgb, h, w, err);
    if (n >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return decode_jpeg(data, n, name, rgb, h, w, err);
    return ps_fail(err, "%s: neither PNG nor JPEG (first bytes)", name);
}

int image_load(const char *path, uint8_t **rgb, int *h, int *w, ps_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ps_fail(err, "%s: cannot open", path);
    uint8_t *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap && !(data = realloc(data, cap = cap ? 2 * cap : 1 << 16))) {
            fclose(f);
            return ps_fail(err, "%s: out of memory", path);
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? ps_fail(err, "%s: read error", path) : image_decode(data, n, path, rgb, h, w, err);
    free(data);
    return rc;
}
