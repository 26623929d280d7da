/* fuzz_image_set - an image-set file (data/images/<set>.h5, datasets/image_set.h),
 * structure-aware (fuzz_h5.h): /pixels, /offsets and /shapes of any type,
 * rank and length, offsets and shapes pointing anywhere, /ids with
 * duplicates, /source, attributes absent or of another type. image_set_open
 * accepts it or names the problem; on a set it accepted, every image either
 * fails with a message or loads h * w * 3 readable bytes. */
#include <stdlib.h>

#include "fuzz_h5.h"
#include "fuzz_input.h"
#include "image_set.h"

static void write_set(hid_t file, fuzz_bytes *b, uint64_t n) {
    fuzz_string_attr(file, "format", "presight-images", b);
    fuzz_number_attr(file, "format_version", H5T_STD_I32LE, 1, b);
    fuzz_string_attr(file, "set", "fuzz", b);
    fuzz_number_attr(file, "seed", H5T_STD_I64LE, 1, b);
    /* Pictures of 2 x 3 pixels laid end to end, unless the recipe says otherwise. */
    uint64_t shapes[64 * 3], offsets[64], total = 0;
    for (uint64_t i = 0; i < n; i++) {
        int odd = fuzz_u8(b) >= 230;
        shapes[3 * i] = odd ? fuzz_u32(b) % 70000 : 2;
        shapes[3 * i + 1] = odd ? fuzz_u32(b) % 70000 : 3;
        shapes[3 * i + 2] = odd ? fuzz_u8(b) % 5 : 3;
        offsets[i] = fuzz_u8(b) >= 240 ? fuzz_u32(b) : total;
        total += 18;
    }
    uint64_t pixel_count = fuzz_u8(b) >= 230 ? fuzz_count(b, total) : total;
    if (fuzz_u8(b) >= 8) fuzz_dataset(file, "pixels", fuzz_type(b, H5T_STD_U8LE), pixel_count, b);
    hid_t off_type = fuzz_type(b, H5T_STD_U64LE), shape_type = fuzz_type(b, H5T_STD_I32LE);
    if (fuzz_u8(b) >= 8) {
        hsize_t d[1] = {n};
        hid_t sp = H5Screate_simple(1, d, NULL), set = H5Dcreate2(file, "offsets", off_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (set >= 0) H5Dwrite(set, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets), H5Dclose(set);
        H5Sclose(sp);
    }
    if (fuzz_u8(b) >= 8) {
        hsize_t d[2] = {n, fuzz_u8(b) < 240 ? 3 : 2};
        hid_t sp = H5Screate_simple(2, d, NULL), set = H5Dcreate2(file, "shapes", shape_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        uint64_t packed[64 * 3];
        for (uint64_t i = 0; i < n * d[1]; i++) packed[i] = shapes[(i / d[1]) * 3 + i % d[1]];
        if (set >= 0) H5Dwrite(set, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed), H5Dclose(set);
        H5Sclose(sp);
    }
    if (fuzz_u8(b) >= 8) fuzz_strings(file, "ids", fuzz_u8(b) < 230 ? n : fuzz_count(b, n + 2), b);
    if (fuzz_u8(b) >= 32) fuzz_strings(file, "source", n, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    uint64_t n = fuzz_count(&b, 8) % 64;
    char path[64];
    hid_t file = fuzz_h5_create(path, sizeof path);
    if (file < 0) return 0;
    write_set(file, &b, n);
    H5Fclose(file);
    image_set *s = NULL;
    ps_error err = {0};
    if (image_set_open(&s, path, &err) == 0) {
        int count = image_set_count(s);
        for (int i = 0; i <= count && i < 8; i++) { /* i == count: one past the end */
            uint8_t *rgb = NULL;
            int h = 0, w = 0;
            ps_error lerr = {0};
            if (image_set_load(s, i, &rgb, &h, &w, &lerr) == 0) {
                FUZZ_CHECK(rgb && h > 0 && w > 0, "image %d: %d x %d", i, h, w);
                unsigned sum = 0;
                for (size_t k = 0; k < (size_t)h * w * 3; k++) sum += rgb[k];
                (void)sum;
                free(rgb);
            } else {
                FUZZ_CHECK(lerr.msg[0], "image %d refused without a message", i);
            }
        }
        image_set_close(s);
    } else {
        FUZZ_CHECK(err.msg[0], "refused without a message");
    }
    unlink(path);
    return 0;
}
