/* fuzz_h5.h - structure-aware fuzzing of HDF5 readers.
 *
 * Random bytes are rarely an HDF5 file, and a damaged superblock only tests
 * the HDF5 library. Instead the fuzzer's bytes are a recipe: each dataset and
 * attribute a reader expects is present or absent, of the expected type or
 * another (integer widths, signedness, float, string), of the expected rank
 * or another, with lengths and contents taken from the bytes. The file is
 * written through the HDF5 API, so it is always a valid HDF5 file that says
 * something a presight reader must either accept or refuse by name. */
#ifndef PRESIGHT_FUZZ_H5_H
#define PRESIGHT_FUZZ_H5_H

#include <hdf5.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* The recipe: bytes taken from the front; past the end everything reads 0. */
typedef struct fuzz_bytes {
    const uint8_t *p;
    size_t n;
} fuzz_bytes;

static inline uint8_t fuzz_u8(fuzz_bytes *b) {
    if (!b->n) return 0;
    b->n--;
    return *b->p++;
}
static inline uint32_t fuzz_u32(fuzz_bytes *b) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | fuzz_u8(b);
    return v;
}
/* A small count: usually within [0, hint], sometimes far past it. */
static inline uint64_t fuzz_count(fuzz_bytes *b, uint64_t hint) {
    uint8_t mode = fuzz_u8(b);
    if (mode < 200) return hint ? fuzz_u32(b) % (hint + 1) : 0;
    if (mode < 250) return hint + (fuzz_u8(b) % 4); /* just past */
    return fuzz_u32(b);                             /* anything */
}

/* Types a reader may meet instead of the one it wants. */
static inline hid_t fuzz_type(fuzz_bytes *b, hid_t expected) {
    static const hid_t *choices[] = {&H5T_STD_U8LE_g,  &H5T_STD_I8LE_g,  &H5T_STD_U16LE_g, &H5T_STD_I32LE_g,
                                     &H5T_STD_U32LE_g, &H5T_STD_I64LE_g, &H5T_STD_U64LE_g, &H5T_IEEE_F32LE_g,
                                     &H5T_IEEE_F64LE_g, &H5T_STD_U32BE_g};
    uint8_t c = fuzz_u8(b);
    if (c < 192) return expected;
    return *choices[c % (sizeof choices / sizeof *choices)];
}

/* A dataset of n elements (rank 1, or rank 2 as n x 1 when the recipe says so)
 * whose bytes come from the recipe, or from fill when the recipe runs out. */
static inline void fuzz_dataset(hid_t file, const char *name, hid_t type, uint64_t n, fuzz_bytes *b) {
    if (n > (1u << 16)) n = 1u << 16; /* a large extent is one more byte, not more memory */
    int rank = fuzz_u8(b) < 240 ? 1 : 2;
    hsize_t dims[2] = {n, 1};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t set = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t bytes = (size_t)n * H5Tget_size(type);
    uint8_t *data = calloc(bytes ? bytes : 1, 1);
    if (data) {
        size_t take = bytes < b->n ? bytes : b->n;
        memcpy(data, b->p, take);
        b->p += take, b->n -= take;
        if (set >= 0) H5Dwrite(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    }
    free(data);
    if (set >= 0) H5Dclose(set);
    H5Sclose(space);
}

/* An attribute that should be a number: absent, a number of some type, or a string. */
static inline void fuzz_number_attr(hid_t where, const char *name, hid_t expected, uint64_t good, fuzz_bytes *b) {
    uint8_t c = fuzz_u8(b);
    if (c < 16) return; /* absent */
    hid_t space = H5Screate(H5S_SCALAR), type;
    uint64_t value = c < 160 ? good : (uint64_t)fuzz_u32(b) << (fuzz_u8(b) % 33);
    if (c >= 240) {
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, 8);
    } else {
        type = H5Tcopy(fuzz_type(b, expected));
    }
    hid_t attr = H5Acreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    uint8_t buf[16] = {0};
    memcpy(buf, &value, sizeof value);
    if (attr >= 0) {
        if (H5Tget_class(type) == H5T_FLOAT) {
            double d = (double)value;
            H5Awrite(attr, H5T_NATIVE_DOUBLE, &d);
        } else if (H5Tget_class(type) == H5T_INTEGER) {
            H5Awrite(attr, H5T_NATIVE_UINT64, &value);
        } else {
            H5Awrite(attr, type, buf);
        }
        H5Aclose(attr);
    }
    H5Tclose(type);
    H5Sclose(space);
}

/* A string attribute: absent, the good value, a fixed- or variable-length
 * string of recipe bytes (any length up to 600, NULs and all), or a number. */
static inline void fuzz_string_attr(hid_t where, const char *name, const char *good, fuzz_bytes *b) {
    uint8_t c = fuzz_u8(b);
    if (c < 16) return;
    if (c >= 248) {
        fuzz_number_attr(where, name, H5T_STD_I32LE, 7, b);
        return;
    }
    char text[601];
    if (c < 160) {
        snprintf(text, sizeof text, "%s", good);
    } else {
        size_t n = fuzz_u8(b) * 600 / 255, take = n < b->n ? n : b->n;
        memcpy(text, b->p, take);
        text[take] = '\0';
        b->p += take, b->n -= take;
    }
    hid_t space = H5Screate(H5S_SCALAR), type = H5Tcopy(H5T_C_S1);
    const char *ptr = text;
    int variable = c & 1;
    H5Tset_size(type, variable ? H5T_VARIABLE : strlen(text) + 1);
    hid_t attr = H5Acreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
        H5Awrite(attr, type, variable ? (const void *)&ptr : (const void *)text);
        H5Aclose(attr);
    }
    H5Tclose(type);
    H5Sclose(space);
}

/* A fresh file for one input (a private name under /dev/shm: HDF5 wants a path). */
static inline hid_t fuzz_h5_create(char *path, size_t size) {
    snprintf(path, size, "/dev/shm/presight-fuzz-%d.h5", (int)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

#endif
