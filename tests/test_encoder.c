/* test_encoder.c - presight's MobileNetV2-1.4 and InceptionV3 against TensorFlow.js.
 *
 * tests/fixtures/encoders/<model> holds what TF.js computed
 * (datasets/tools/encoder_golden.js: pngjs decoding, resizeBilinear with
 * aligned corners, the nsfwjs graph): every block's pooled vector for 26 real
 * PNG pictures of scikit-image (greyscale, palette, 1- and 16-bit, RGBA among
 * them) and full grids of a few. presight decodes the same files with libpng,
 * preprocesses and runs the network; each tensor must agree to
 * ||a - b|| / ||b|| <= 1e-4 and max |a - b| <= 1e-3 max |b|. A negative
 * control (channels fed as BGR) must fail the same check. The fast tier (test_util.h)
 * compares the pooled vectors of four pictures, one of each PNG kind (8-bit grey, 16-bit
 * RGB, palette, RGBA), instead of all; make test compares all. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>

#include "blas.h"
#include "encoder.h"
#include "encoder_weights.h"
#include "image_io.h"
#include "test_util.h"

#define GOLDEN_ROOT "tests/fixtures/encoders"
#define PICTURES "data/encoders/skimage/usr/lib/python3/dist-packages/skimage/data"
#define FAST_PICTURES " camera chessboard_RGB green_palette logo "

static float *read_f32(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc(bytes);
    cr_assert_eq(fread(v, 1, bytes, f), (size_t)bytes);
    fclose(f);
    *n = bytes / sizeof(float);
    return v;
}

/* The tolerance; returns 1 when a agrees with reference b. */
static int agrees(const float *a, const float *b, size_t n, double *rel, double *maxrel) {
    double d2 = 0, b2 = 0, dmax = 0, bmax = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        d2 += d * d, b2 += (double)b[i] * b[i];
        if (d > dmax) dmax = d;
        if (fabs(b[i]) > bmax) bmax = fabs(b[i]);
    }
    *rel = sqrt(d2 / (b2 > 0 ? b2 : 1e-30));
    *maxrel = dmax / (bmax > 0 ? bmax : 1e-30);
    return *rel <= 1e-4 && *maxrel <= 1e-3;
}

static struct {
    encoder_weights w;
    encoder *enc;
    json_object *manifest;
    char golden[256];
} fx;

/* Loads one model's weights, network and goldens (each test names its model). */
static void use_model(const char *model) {
    char path[512];
    snprintf(fx.golden, sizeof fx.golden, GOLDEN_ROOT "/%s", model);
    ps_error err = {{0}};
    cr_assert_eq(blas_init(&err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "data/encoders/%s.h5", model);
    cr_assert_eq(encoder_weights_load(&fx.w, path, &err), 0, "%s (make test-data fetches it)", err.msg);
    cr_assert_eq(encoder_build(&fx.enc, fx.w.graph, fx.w.tensors, fx.w.n_tensors, &fx.w.prep, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/manifest.json", fx.golden);
    fx.manifest = json_object_from_file(path);
    cr_assert(fx.manifest, "%s missing", path);
}

static void setup(void) { test_chdir_to_repo_root(GOLDEN_ROOT "/mobilenet_v2_mid/manifest.json"); }

static void teardown(void) {
    encoder_free(fx.enc);
    encoder_weights_free(&fx.w);
    json_object_put(fx.manifest);
    memset(&fx, 0, sizeof fx);
}

static json_object *key(json_object *o, const char *k) {
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, k, &v), "manifest: '%s' missing", k);
    return v;
}

/* Runs one picture; bgr swaps channels 0 and 2 first (the negative control). */
static void run_picture(const char *id, int bgr, float *grid, int grid_block, float *pooled) {
    char path[512];
    snprintf(path, sizeof path, PICTURES "/%s.png", id);
    ps_error err = {{0}};
    uint8_t *rgb;
    int h, w;
    cr_assert_eq(image_load(path, &rgb, &h, &w, &err), 0, "%s", err.msg);
    if (bgr)
        for (size_t i = 0; i < (size_t)h * w; i++) {
            uint8_t t = rgb[3 * i];
            rgb[3 * i] = rgb[3 * i + 2], rgb[3 * i + 2] = t;
        }
    int s = fx.w.prep.size;
    float *input = malloc(sizeof(float) * s * s * 3);
    cr_assert_eq(encoder_preprocess(&fx.w.prep, rgb, h, w, input, &err), 0, "%s", err.msg);
    cr_assert_eq(encoder_forward(fx.enc, input, grid_block, grid, pooled), 0);
    free(input), free(rgb);
}

/* Compares every block of the pictures named in only (NULL: all); returns
 * how many tensors failed. */
static int compare_pooled(int bgr, const char *only, int control) {
    size_t n;
    char path[512];
    snprintf(path, sizeof path, "%s/pooled.f32", fx.golden);
    float *want = read_f32(path, &n);
    json_object *images = key(fx.manifest, "images"), *blocks = key(fx.manifest, "blocks");
    int per = encoder_pooled_width(fx.enc), nb = (int)json_object_array_length(blocks), failed = 0;
    cr_assert_eq(nb, encoder_blocks(fx.enc));
    cr_assert_eq(n, (size_t)per * json_object_array_length(images));
    float *got = malloc(sizeof(float) * per);
    double worst = 0;
    int compared = 0;
    for (int i = 0; i < (int)json_object_array_length(images); i++) {
        const char *id = json_object_get_string(key(json_object_array_get_idx(images, i), "id"));
        if (only && !strstr(only, id)) continue;
        compared++;
        run_picture(id, bgr, NULL, -1, got);
        size_t off = 0;
        for (int b = 0; b < nb; b++) {
            const enc_block_info *bi = encoder_block(fx.enc, b);
            cr_assert_str_eq(bi->name, json_object_get_string(key(json_object_array_get_idx(blocks, b), "name")));
            double rel, maxrel;
            if (!agrees(got + off, want + (size_t)i * per + off, bi->c, &rel, &maxrel)) {
                failed++;
                if (!control) cr_log_error("%s, block %s: rel %.2e, max %.2e", id, bi->name, rel, maxrel);
            }
            if (rel > worst) worst = rel;
            off += bi->c;
        }
    }
    cr_log_info("pooled (%s%s, %d pictures): worst relative L2 %.3e, %d tensors outside the tolerance",
                bgr ? "BGR" : "RGB", control ? ", negative control" : "", compared, worst, failed);
    free(got), free(want);
    return failed;
}

TestSuite(encoder, .init = setup, .fini = teardown, .timeout = 300);

static void check_grids(void) {
    json_object *grids = key(fx.manifest, "grids");
    cr_assert_geq(json_object_array_length(grids), 2);
    for (size_t g = 0; g < json_object_array_length(grids); g++) {
        json_object *o = json_object_array_get_idx(grids, g);
        const char *id = json_object_get_string(key(o, "image")), *blk = json_object_get_string(key(o, "block"));
        char path[512];
        snprintf(path, sizeof path, "%s/%s", fx.golden, json_object_get_string(key(o, "file")));
        size_t n;
        float *want = read_f32(path, &n);
        int b = encoder_find_block(fx.enc, blk);
        cr_assert_geq(b, 0, "block %s", blk);
        const enc_block_info *bi = encoder_block(fx.enc, b);
        cr_assert_eq(n, (size_t)bi->h * bi->w * bi->c);
        float *got = malloc(sizeof(float) * n);
        run_picture(id, 0, got, b, NULL);
        double rel, maxrel;
        cr_expect(agrees(got, want, n, &rel, &maxrel), "%s %s grid: rel %.2e, max %.2e", id, blk, rel, maxrel);
        cr_log_info("grid %s %s [%d,%d,%d]: rel %.3e, max %.3e", id, blk, bi->h, bi->w, bi->c, rel, maxrel);
        free(got), free(want);
    }
}

Test(encoder, mobilenet_pooled_vectors_match_tfjs) {
    use_model("mobilenet_v2_mid");
    cr_assert_eq(compare_pooled(0, test_fast_tier() ? FAST_PICTURES : NULL, 0), 0);
}

Test(encoder, mobilenet_grids_match_tfjs) {
    use_model("mobilenet_v2_mid");
    check_grids();
}

/* The negative control: the same check must fail when channels are swapped
 * (on colour pictures: a grey one reads the same either way). Of 3 x 19
 * tensors, the first layers already differ; most must fail. */
Test(encoder, mobilenet_bgr_input_fails_the_comparison) {
    use_model("mobilenet_v2_mid");
    cr_assert_gt(compare_pooled(1, " chelsea coffee astronaut ", 1), 45);
}

Test(encoder, inception_pooled_vectors_match_tfjs) {
    use_model("inception_v3");
    cr_assert_eq(compare_pooled(0, test_fast_tier() ? FAST_PICTURES : NULL, 0), 0);
}

Test(encoder, inception_grids_match_tfjs) {
    use_model("inception_v3");
    check_grids();
}

/* InceptionV3's control: the wrong padding mode (SAME where the graph says
 * VALID, on the stem) shifts every later grid; it must fail as well. */
Test(encoder, inception_wrong_padding_fails_the_comparison) {
    use_model("inception_v3");
    char *g = strdup(fx.w.graph), *at = strstr(g, "conv activation_2 ");
    cr_assert(at);
    char *pad = strstr(at, "VALID");
    memcpy(pad, "SAME ", 5); /* "SAME " keeps the line's length; the parser splits on spaces */
    encoder *wrong;
    ps_error err = {{0}};
    cr_assert_eq(encoder_build(&wrong, g, fx.w.tensors, fx.w.n_tensors, &fx.w.prep, &err), 0, "%s", err.msg);
    encoder_free(fx.enc);
    fx.enc = wrong;
    /* The grids change size (147 -> 149 wide after the stem), so compare pooled vectors. */
    cr_assert_gt(compare_pooled(0, " chelsea coffee ", 1), 20);
    free(g);
}
