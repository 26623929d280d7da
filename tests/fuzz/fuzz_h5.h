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

/* A dataset of the given shape (rank 1..3), which the recipe may flatten or
 * give one more axis; contents from the recipe. */
static inline void fuzz_dataset_shaped(hid_t where, const char *name, hid_t type, int rank, const uint64_t *shape,
                                       fuzz_bytes *b) {
    hsize_t dims[4] = {1, 1, 1, 1};
    uint64_t total = 1;
    uint8_t how = fuzz_u8(b);
    int r = how < 224 ? rank : how < 240 ? 1 : rank + 1;
    if (r > 4) r = 4;
    for (int i = 0; i < r; i++) {
        dims[i] = i < rank ? shape[i] : 1;
        if (r == 1 && rank > 1)
            for (int j = 1; j < rank; j++) dims[0] *= shape[j]; /* flattened */
        total *= dims[i];
    }
    if (total > (1u << 16)) return; /* too big to be interesting: leave it absent */
    hid_t space = H5Screate_simple(r, dims, NULL);
    hid_t set = H5Dcreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t bytes = (size_t)total * H5Tget_size(type);
    uint8_t *data = calloc(bytes ? bytes : 1, 1);
    if (data && set >= 0) {
        size_t take = bytes < b->n ? bytes : b->n;
        memcpy(data, b->p, take);
        b->p += take, b->n -= take;
        H5Dwrite(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    }
    free(data);
    if (set >= 0) H5Dclose(set);
    H5Sclose(space);
}

/* A dataset of n variable-length strings: "id-<k>" names, with the recipe
 * choosing duplicates, empty strings and raw bytes; or fixed-length strings. */
static inline void fuzz_strings(hid_t where, const char *name, uint64_t n, fuzz_bytes *b) {
    if (n > 4096) n = 4096;
    char **text = calloc(n ? n : 1, sizeof *text);
    char (*store)[40] = calloc(n ? n : 1, sizeof *store);
    if (!text || !store) {
        free(text), free(store);
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint8_t c = fuzz_u8(b);
        if (c < 200) snprintf(store[i], sizeof store[i], "id-%llu", (unsigned long long)i);
        else if (c < 220) snprintf(store[i], sizeof store[i], "id-%u", (unsigned)(fuzz_u8(b) % (n ? n : 1)));
        else if (c < 230) store[i][0] = '\0';
        else
            for (int k = 0; k < 39; k++) store[i][k] = (char)(fuzz_u8(b) | 1), store[i][39] = '\0';
        text[i] = store[i];
    }
    int fixed = fuzz_u8(b) >= 240;
    hsize_t dims[1] = {n};
    hid_t space = H5Screate_simple(1, dims, NULL), type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, fixed ? 40 : H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t set = H5Dcreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (set >= 0) {
        H5Dwrite(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed ? (const void *)store : (const void *)text);
        H5Dclose(set);
    }
    H5Tclose(type);
    H5Sclose(space);
    free(text), free(store);
}

/* A fresh file for one input (a private name under /dev/shm: HDF5 wants a path). */
static inline hid_t fuzz_h5_create(char *path, size_t size) {
    snprintf(path, size, "/dev/shm/presight-fuzz-%d.h5", (int)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

#endif
