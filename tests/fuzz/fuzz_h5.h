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

/* ---- mutating a valid file ----------------------------------------------
 * For readers whose files carry a checksum or many interlocking parts (a
 * checkpoint), a recipe rarely builds a file that gets past the first check.
 * Instead a valid file written by presight itself is copied and mutated in
 * place through the HDF5 API: each dataset or attribute kept (most recipe
 * bytes), deleted, replaced by one of another type or shape, or some of its
 * elements overwritten with recipe bytes. */

typedef enum { FUZZ_KEPT = 0, FUZZ_DELETED, FUZZ_RETYPED, FUZZ_RESHAPED, FUZZ_OVERWRITTEN } fuzz_mutation;

/* Writes image[0..n) to a private name under /dev/shm and opens it for writing. */
static inline hid_t fuzz_h5_from_image(char *path, size_t size, const void *image, size_t n) {
    snprintf(path, size, "/dev/shm/presight-fuzz-%d.h5", (int)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = fwrite(image, 1, n, f);
    if (fclose(f) || put != n) return -1;
    return H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
}

/* The whole dataset's bytes in its own type (NULL when it cannot be read), to tell whether
 * overwrites changed it in the end: a later overwrite can put back the bytes an earlier
 * one replaced (the fuzzer learns them from the comparison), and then nothing changed. */
static inline uint8_t *fuzz_read_all(hid_t set, hid_t type, size_t bytes) {
    uint8_t *all = bytes && bytes <= (16u << 20) ? (uint8_t *)malloc(bytes) : NULL;
    if (all && H5Dread(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) < 0) free(all), all = NULL;
    return all;
}

/* Overwrites 1..8 elements of a dataset (at recipe offsets) with recipe
 * bytes, in the dataset's own type; *changed is set when a stored byte differs afterwards. */
static inline void fuzz_overwrite(hid_t set, fuzz_bytes *b, int *changed) {
    hid_t space = H5Dget_space(set), type = H5Dget_type(set);
    hssize_t n = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    size_t esize = type < 0 ? 0 : H5Tget_size(type);
    uint8_t *before = NULL;
    if (n > 0 && esize > 0 && esize <= 16 && H5Tget_class(type) != H5T_STRING &&
        (before = fuzz_read_all(set, type, (size_t)n * esize))) {
        int k = 1 + fuzz_u8(b) % 8;
        for (int i = 0; i < k; i++) {
            /* a flat index, as coordinates of the dataset's rank (at most 4) */
            hsize_t dims[4] = {1, 1, 1, 1}, at[4] = {0, 0, 0, 0}, one[1] = {1};
            int rank = H5Sget_simple_extent_ndims(space);
            if (rank < 1 || rank > 4) break;
            H5Sget_simple_extent_dims(space, dims, NULL);
            uint64_t flat = fuzz_u32(b) % (uint64_t)n;
            for (int d = rank - 1; d >= 0; d--) at[d] = flat % dims[d], flat /= dims[d];
            uint8_t now[16] = {0};
            for (size_t j = 0; j < esize; j++) now[j] = fuzz_u8(b);
            hid_t mem = H5Screate_simple(1, one, NULL), fs = H5Scopy(space);
            H5Sselect_elements(fs, H5S_SELECT_SET, 1, at);
            H5Dwrite(set, type, mem, fs, H5P_DEFAULT, now);
            H5Sclose(fs);
            H5Sclose(mem);
        }
        uint8_t *after = fuzz_read_all(set, type, (size_t)n * esize);
        if (!after || memcmp(before, after, (size_t)n * esize)) *changed = 1;
        free(after);
    }
    free(before);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
}

/* Mutates the dataset `name` of where as the recipe says; returns what it did
 * (FUZZ_OVERWRITTEN only when a stored byte changed). */
static inline fuzz_mutation fuzz_mutate_dataset(hid_t where, const char *name, fuzz_bytes *b) {
    uint8_t c = fuzz_u8(b);
    if (c < 200 || H5Lexists(where, name, H5P_DEFAULT) <= 0) return FUZZ_KEPT;
    hid_t set = H5Dopen2(where, name, H5P_DEFAULT);
    if (set < 0) return FUZZ_KEPT;
    if (c >= 240) {
        int changed = 0;
        fuzz_overwrite(set, b, &changed);
        H5Dclose(set);
        return changed ? FUZZ_OVERWRITTEN : FUZZ_KEPT;
    }
    hid_t space = H5Dget_space(set), type = H5Dget_type(set);
    hsize_t dims[3] = {1, 1, 1};
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank >= 1 && rank <= 3) H5Sget_simple_extent_dims(space, dims, NULL);
    else rank = 1;
    H5Sclose(space);
    H5Dclose(set);
    H5Ldelete(where, name, H5P_DEFAULT);
    fuzz_mutation what = FUZZ_DELETED;
    if (c >= 208) {
        uint64_t shape[3] = {dims[0], dims[1], dims[2]};
        hid_t now = type;
        if (c < 224) {
            now = fuzz_type(b, H5T_STD_I32LE); /* another type (or int32), the same shape */
            what = FUZZ_RETYPED;
        } else {
            int axis = (int)(fuzz_u8(b) % (unsigned)rank); /* one axis longer or shorter */
            shape[axis] = fuzz_u8(b) & 1 ? shape[axis] + 1 + fuzz_u8(b) % 3 : shape[axis] / 2;
            what = FUZZ_RESHAPED;
        }
        fuzz_dataset_shaped(where, name, now, rank, shape, b);
    }
    H5Tclose(type);
    return what;
}

/* Mutates the attribute `name` of where: kept, deleted, or replaced by a
 * number (of its own type or another) or a string. */
static inline fuzz_mutation fuzz_mutate_attr(hid_t where, const char *name, fuzz_bytes *b) {
    uint8_t c = fuzz_u8(b);
    if (c < 216 || H5Aexists(where, name) <= 0) return FUZZ_KEPT;
    hid_t attr = H5Aopen(where, name, H5P_DEFAULT), type = attr < 0 ? -1 : H5Aget_type(attr);
    uint64_t good = 0;
    int numeric = type >= 0 && H5Tget_class(type) == H5T_INTEGER;
    if (numeric) {
        hid_t space = H5Aget_space(attr);
        if (H5Sget_simple_extent_npoints(space) == 1) H5Aread(attr, H5T_NATIVE_UINT64, &good);
        H5Sclose(space);
    }
    hid_t expected = numeric ? H5Tcopy(type) : H5Tcopy(H5T_STD_I64LE);
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    H5Adelete(where, name);
    if (c >= 228) {
        if (c < 244) fuzz_number_attr(where, name, expected, good + (fuzz_u8(b) & 1), b);
        else fuzz_string_attr(where, name, "ddp", b);
    }
    H5Tclose(expected);
    return c < 228 ? FUZZ_DELETED : FUZZ_RETYPED;
}

#endif
