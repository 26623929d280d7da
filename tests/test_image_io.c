/* test_image_io.c - pictures in, checked against decoders no one here wrote.
 *
 * PNG: every golden picture (grey 1/8-bit, palette, 16-bit RGB, RGBA) decodes
 * through libpng to the bytes pngjs gave TF.js (SHA-256 in the goldens'
 * manifest, alpha composited on white). JPEG: the same bytes as libjpeg's own
 * `djpeg -ppm`, colour and greyscale; a truncated JPEG and a truncated PNG are
 * errors naming the file, never pixels. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdlib.h>

#include "encoder.h"
#include "image_io.h"
#include "sha256.h"
#include "test_util.h"

#define GOLDEN "tests/fixtures/encoders/mobilenet_v2_mid"
#define PICTURES "data/encoders/skimage/usr/lib/python3/dist-packages/skimage/data"

static void to_root(void) { test_chdir_to_repo_root(GOLDEN "/manifest.json"); }

TestSuite(image_io, .init = to_root, .timeout = 120);

Test(image_io, png_matches_pngjs_for_every_colour_type) {
    json_object *m = json_object_from_file(GOLDEN "/manifest.json"), *images;
    cr_assert(m && json_object_object_get_ex(m, "images", &images));
    int n = (int)json_object_array_length(images);
    for (int i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(images, i), *id, *sha, *hh, *ww;
        cr_assert(json_object_object_get_ex(o, "id", &id) && json_object_object_get_ex(o, "rgb_sha256", &sha) &&
                  json_object_object_get_ex(o, "height", &hh) && json_object_object_get_ex(o, "width", &ww));
        char path[512], hex[65];
        snprintf(path, sizeof path, PICTURES "/%s.png", json_object_get_string(id));
        uint8_t *rgb;
        int h, w;
        ps_error err = {{0}};
        cr_assert_eq(image_load(path, &rgb, &h, &w, &err), 0, "%s", err.msg);
        cr_expect_eq(h, json_object_get_int(hh), "%s", path);
        cr_expect_eq(w, json_object_get_int(ww), "%s", path);
        sha256_hex(rgb, (size_t)h * w * 3, hex);
        cr_expect_str_eq(hex, json_object_get_string(sha), "%s decodes differently from pngjs", path);
        free(rgb);
    }
    cr_assert_geq(n, 20);
    json_object_put(m);
}

/* Reads `djpeg -ppm` output (P6, maxval 255) of path. */
static uint8_t *djpeg(const char *path, int *h, int *w) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "djpeg -ppm '%s'", path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    int maxval;
    cr_assert_eq(fscanf(p, "P6 %d %d %d", w, h, &maxval), 3, "djpeg output of %s", path);
    fgetc(p);
    size_t n = (size_t)*h * *w * 3;
    uint8_t *px = malloc(n);
    cr_assert_eq(fread(px, 1, n, p), n);
    cr_assert_eq(pclose(p), 0);
    return px;
}

static void expect_same_as_djpeg(const char *path) {
    int h, w, rh, rw;
    uint8_t *rgb, *ref = djpeg(path, &rh, &rw);
    ps_error err = {{0}};
    cr_assert_eq(image_load(path, &rgb, &h, &w, &err), 0, "%s", err.msg);
    cr_assert_eq(h, rh);
    cr_assert_eq(w, rw);
    cr_expect_eq(memcmp(rgb, ref, (size_t)h * w * 3), 0, "%s differs from djpeg", path);
    free(rgb), free(ref);
}

Test(image_io, jpeg_matches_djpeg) {
    if (system("command -v djpeg >/dev/null && command -v cjpeg >/dev/null")) cr_skip_test("djpeg/cjpeg missing (make deps)");
    expect_same_as_djpeg(PICTURES "/rocket.jpg");
    expect_same_as_djpeg(PICTURES "/retina.jpg");
    expect_same_as_djpeg(PICTURES "/hubble_deep_field.jpg");
    /* A greyscale JPEG, made by libjpeg's cjpeg: djpeg writes it as PGM, so
     * compare against the grey value repeated, as libjpeg's RGB conversion does. */
    const char *grey = "build/tests/grey.jpg";
    cr_assert_eq(system("djpeg -pnm " PICTURES "/rocket.jpg | cjpeg -grayscale > build/tests/grey.jpg"), 0);
    int h, w;
    uint8_t *rgb;
    ps_error err = {{0}};
    cr_assert_eq(image_load(grey, &rgb, &h, &w, &err), 0, "%s", err.msg);
    FILE *p = popen("djpeg -pnm build/tests/grey.jpg", "r");
    int rw, rh, maxval;
    cr_assert_eq(fscanf(p, "P5 %d %d %d", &rw, &rh, &maxval), 3);
    fgetc(p);
    cr_assert_eq(rw, w);
    cr_assert_eq(rh, h);
    for (size_t i = 0; i < (size_t)h * w; i++) {
        int v = fgetc(p);
        if (rgb[3 * i] != v || rgb[3 * i + 1] != v || rgb[3 * i + 2] != v) cr_assert_fail("grey pixel %zu differs", i);
    }
    pclose(p);
    free(rgb);
}

Test(image_io, damaged_pictures_are_errors_naming_the_file) {
    uint8_t *rgb = NULL;
    int h, w;
    ps_error err = {{0}};
    cr_assert_eq(image_load(PICTURES "/truncated.jpg", &rgb, &h, &w, &err), -1);
    cr_assert(strstr(err.msg, "truncated.jpg") && strstr(err.msg, "corrupt JPEG"), "%s", err.msg);
    /* A PNG cut in half. */
    FILE *in = fopen(PICTURES "/chelsea.png", "rb"), *out = fopen("build/tests/half.png", "wb");
    cr_assert(in && out);
    char buf[60000];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n / 2, out);
    fclose(in), fclose(out);
    cr_assert_eq(image_load("build/tests/half.png", &rgb, &h, &w, &err), -1);
    cr_assert(strstr(err.msg, "half.png") && strstr(err.msg, "corrupt PNG"), "%s", err.msg);
    cr_assert_eq(image_load("build/tests/none.png", &rgb, &h, &w, &err), -1);
    cr_assert(strstr(err.msg, "none.png"), "%s", err.msg);
    out = fopen("build/tests/text.png", "wb");
    fputs("not a picture", out);
    fclose(out);
    cr_assert_eq(image_load("build/tests/text.png", &rgb, &h, &w, &err), -1);
    cr_assert(strstr(err.msg, "neither PNG nor JPEG"), "%s", err.msg);
}

/* LLaVA's pad: a 2x4 picture centred in 4x4 of the pad colour, then resized. */
Test(image_io, pad_square_centres_on_the_mean_colour) {
    enc_preprocess p = {.size = 4, .norm_mul = 2.0f, .norm_sub = 1.0f, .pad_square = 1, .pad_color = 127};
    uint8_t rgb[2 * 4 * 3];
    memset(rgb, 255, sizeof rgb);
    float x[4 * 4 * 3];
    ps_error err = {{0}};
    cr_assert_eq(encoder_preprocess(&p, rgb, 2, 4, x, &err), 0);
    float pad = (float)((float)(127 / 255.0) * 2.0) - 1.0f;
    for (int r = 0; r < 4; r++)
        for (int q = 0; q < 12; q++) cr_assert_float_eq(x[r * 12 + q], r == 1 || r == 2 ? 1.0f : pad, 1e-6, "row %d", r);
}
