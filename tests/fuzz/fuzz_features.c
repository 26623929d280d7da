/* fuzz_features - a features file from any tool (datasets/feature_file.h),
 * structure-aware (fuzz_h5.h): /features of any type, rank and shape against
 * the grid attributes, /pooled/<block> present or not, /ids with duplicates,
 * empty or raw names, /valid, every attribute absent or of another type.
 * features_open accepts it or names the problem; on a file it accepted,
 * every read either fails with a message or fills exactly the floats asked
 * for (ASan checks the bounds). */
#include <stdlib.h>

#include "feature_file.h"
#include "fuzz_h5.h"
#include "fuzz_input.h"

static void write_features(hid_t file, fuzz_bytes *b, uint64_t n, uint64_t gh, uint64_t gw, uint64_t width) {
    fuzz_string_attr(file, "format", "presight-features", b);
    fuzz_number_attr(file, "format_version", H5T_STD_I32LE, 1, b);
    fuzz_string_attr(file, "encoder", "mobilenet_v2_mid", b);
    fuzz_string_attr(file, "layer", "block_16", b);
    fuzz_number_attr(file, "grid_h", H5T_STD_I32LE, gh, b);
    fuzz_number_attr(file, "grid_w", H5T_STD_I32LE, gw, b);
    uint64_t shape[3] = {n, gh * gw, width};
    if (fuzz_u8(b) >= 8) fuzz_dataset_shaped(file, "features", fuzz_type(b, H5T_IEEE_F32LE), 3, shape, b);
    if (fuzz_u8(b) >= 8) fuzz_strings(file, "ids", fuzz_u8(b) < 230 ? n : fuzz_count(b, n + 2), b);
    if (fuzz_u8(b) >= 128) fuzz_dataset(file, "valid", fuzz_type(b, H5T_STD_U8LE), n, b);
    if (fuzz_u8(b) >= 64) {
        hid_t g = H5Gcreate2(file, "pooled", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        int blocks = fuzz_u8(b) % 4;
        for (int k = 0; k < blocks && g >= 0; k++) {
            char name[16];
            snprintf(name, sizeof name, "block_%d", k);
            uint64_t pshape[2] = {n, fuzz_count(b, 16)};
            fuzz_dataset_shaped(g, name, fuzz_type(b, H5T_IEEE_F32LE), 2, pshape, b);
        }
        if (g >= 0) H5Gclose(g);
    }
}

static void read_back(features_file *f, fuzz_bytes *b) {
    const features_meta *m = features_meta_of(f);
    int n = features_count(f), tokens = m->grid_h * m->grid_w;
    for (int k = 0; k < 3 && n > 0; k++) {
        int row = (int)(fuzz_count(b, (uint64_t)n) % (uint64_t)(n + 1)); /* n itself is out of range */
        ps_error err = {0};
        float *grid = malloc(((size_t)tokens * m->width + 1) * sizeof *grid);
        if (grid && features_read_grid(f, row, grid, &err)) FUZZ_CHECK(err.msg[0], "grid refused without a message");
        free(grid);
        int want = 1 + fuzz_u8(b) % 9; /* 1..9 visual tokens: resized from the grid */
        float *tok = malloc(((size_t)want * m->width + 1) * sizeof *tok);
        ps_error terr = {0};
        if (tok && features_read_tokens(f, row, want, tok, &terr)) FUZZ_CHECK(terr.msg[0], "tokens refused silently");
        free(tok);
        if (m->n_blocks > 0) {
            int blk = fuzz_u8(b) % m->n_blocks;
            float *pooled = malloc(((size_t)m->block_widths[blk] + 1) * sizeof *pooled);
            ps_error perr = {0};
            if (pooled && features_read_pooled(f, row, m->block_names[blk], pooled, &perr))
                FUZZ_CHECK(perr.msg[0], "pooled refused silently");
            free(pooled);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    uint64_t n = fuzz_count(&b, 6), gh = fuzz_count(&b, 4), gw = fuzz_count(&b, 4), width = fuzz_count(&b, 8);
    char path[64];
    hid_t file = fuzz_h5_create(path, sizeof path);
    if (file < 0) return 0;
    write_features(file, &b, n, gh, gw, width);
    H5Fclose(file);
    features_file *f = NULL;
    ps_error err = {0};
    if (features_open(&f, path, NULL, 0, &err) == 0) {
        read_back(f, &b);
        features_free(f);
    } else {
        FUZZ_CHECK(err.msg[0], "refused without a message");
    }
    unlink(path);
    return 0;
}
