/* feature_file.c - writing and validating features files. See feature_file.h. */
#include "feature_file.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn.h"
#include "h5_attr.h"
#include "image_set.h"
#include "out_file.h"

/* IEEE half precision as an HDF5 type; the library converts float32 to it. */
static hid_t half_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

static void put_str(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &v);
    H5Aclose(a), H5Sclose(s), H5Tclose(t);
}

static void put_int(hid_t obj, const char *name, long long v) {
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a), H5Sclose(s);
}

/* ---- writer ------------------------------------------------------------- */

struct features_writer {
    out_file out; /* NAME.tmp, its room reserved before HDF5 writes */
    hid_t file, feats, valid, *pooled;
    features_meta m;
    int n;
};

static hid_t make_dataset(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims, const hsize_t *chunk) {
    hid_t s = H5Screate_simple(rank, dims, NULL), p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(p, rank, chunk);
    hid_t d = H5Dcreate2(loc, name, type, s, H5P_DEFAULT, p, H5P_DEFAULT);
    H5Pclose(p), H5Sclose(s);
    return d;
}

static int write_ids(hid_t f, char **ids, int n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate_simple(1, dims, NULL);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t d = H5Dcreate2(f, "ids", t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d >= 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) >= 0 ? 0 : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(s), H5Tclose(t);
    return rc;
}

static void write_attrs(hid_t f, const features_meta *m) {
    put_str(f, "format", "presight-features");
    put_int(f, "format_version", 1);
    put_str(f, "encoder", m->encoder);
    put_str(f, "layer", m->layer);
    put_str(f, "set", m->set);
    put_str(f, "weights_sha256", m->weights_sha256);
    put_str(f, "preprocessing", m->preprocessing);
    put_int(f, "grid_h", m->grid_h);
    put_int(f, "grid_w", m->grid_w);
}

/* The bytes a features file takes at most: its rows, ids and HDF5's own structures (chunk
 * indexes, heaps, headers: tens of KB, plus a little per row). */
static double features_bytes(const features_meta *m, char **ids, int n) {
    double row = (double)m->grid_h * m->grid_w * m->width * (m->float16 ? 2 : 4) + 1;
    for (int b = 0; b < m->n_blocks; b++) row += 4.0 * m->block_widths[b];
    double names = 0;
    for (int i = 0; i < n; i++) names += (double)strlen(ids[i]) + 32;
    return (double)n * (row + 64) + names + 65536;
}

/* A full disk or a quota is found before the first row, not at H5Fclose (out_file.h says
 * why): the free space first, then the file's blocks reserved. */
int features_create(features_writer **out, const char *path, const features_meta *m, char **ids, int n, ps_error *err) {
    features_writer *w = calloc(1, sizeof *w);
    if (!w) return ps_fail(err, "%s: out of memory", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->m = *m, w->n = n;
    double bytes = features_bytes(m, ids, n);
    if (out_file_begin(&w->out, path, bytes, err)) {
        free(w);
        return -1;
    }
    errno = 0;
    if ((w->file = H5Fcreate(w->out.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        ps_fail(err, "%s: cannot create%s%s", w->out.tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
        out_file_discard(&w->out);
        free(w);
        return -1;
    }
    if (out_file_reserve(&w->out, bytes, err)) {
        features_close(w, 0, 0, NULL);
        return -1;
    }
    hsize_t tokens = (hsize_t)m->grid_h * m->grid_w, nn = n > 0 ? n : 1;
    hsize_t dims[3] = {(hsize_t)n, tokens, (hsize_t)m->width}, chunk[3] = {1, tokens, (hsize_t)m->width};
    hid_t ft = m->float16 ? half_type() : H5Tcopy(H5T_IEEE_F32LE);
    w->feats = make_dataset(w->file, "features", ft, 3, dims, chunk);
    H5Tclose(ft);
    hsize_t vc[1] = {nn < 4096 ? nn : 4096};
    w->valid = make_dataset(w->file, "valid", H5T_STD_U8LE, 1, dims, vc);
    hid_t g = H5Gcreate2(w->file, "pooled", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    w->pooled = calloc(m->n_blocks > 0 ? m->n_blocks : 1, sizeof(hid_t));
    for (int b = 0; b < m->n_blocks; b++) {
        hsize_t pd[2] = {(hsize_t)n, (hsize_t)m->block_widths[b]}, pc[2] = {nn < 256 ? nn : 256, pd[1]};
        w->pooled[b] = make_dataset(g, m->block_names[b], H5T_IEEE_F32LE, 2, pd, pc);
    }
    H5Gclose(g);
    write_attrs(w->file, m);
    if (w->feats < 0 || w->valid < 0 || write_ids(w->file, ids, n)) {
        ps_fail(err, "%s: creating datasets failed%s%s", w->out.tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
        features_close(w, 0, 0, NULL);
        return -1;
    }
    *out = w;
    return 0;
}

/* Writes one row [1, dims...] of a dataset at index i. */
static int write_row(hid_t d, int rank, const hsize_t *row_dims, int i, hid_t mem_type, const void *data) {
    hsize_t start[3] = {(hsize_t)i, 0, 0}, count[3] = {1, row_dims[0], row_dims[1]};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t r = H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, data);
    H5Sclose(ms), H5Sclose(fs);
    return r < 0 ? -1 : 0;
}

int features_write_row(features_writer *w, int i, const float *grid, const float *pooled, ps_error *err) {
    const features_meta *m = &w->m;
    size_t tokens = (size_t)m->grid_h * m->grid_w, most = tokens * m->width;
    for (int b = 0; b < m->n_blocks; b++)
        if ((size_t)m->block_widths[b] > most) most = m->block_widths[b];
    float *nan = NULL;
    errno = 0; /* what out_file_cause reads if a write below fails */
    if (!grid) { /* a failed picture: NaN everywhere, so that nothing uses it by mistake */
        if (!(nan = malloc(sizeof(float) * most))) return ps_fail(err, "%s: out of memory", w->out.tmp);
        for (size_t k = 0; k < most; k++) nan[k] = NAN;
    }
    uint8_t ok = grid != NULL;
    hsize_t fd[2] = {tokens, (hsize_t)m->width}, one[2] = {1, 1};
    int rc = write_row(w->feats, 3, fd, i, H5T_NATIVE_FLOAT, grid ? grid : nan) | write_row(w->valid, 1, one, i, H5T_NATIVE_UINT8, &ok);
    size_t off = 0;
    for (int b = 0; b < m->n_blocks; b++) {
        hsize_t pd[2] = {(hsize_t)m->block_widths[b], 1};
        rc |= write_row(w->pooled[b], 2, pd, i, H5T_NATIVE_FLOAT, grid ? pooled + off : nan);
        off += m->block_widths[b];
    }
    free(nan);
    return rc ? ps_fail(err, "%s: writing row %d failed%s%s", w->out.tmp, i, OUT_FILE_CAUSE_SEP, out_file_cause()) : 0;
}

int features_close(features_writer *w, int commit, int n_failed, ps_error *err) {
    int rc = 0;
    if (commit) put_int(w->file, "n_failed", n_failed);
    for (int b = 0; b < w->m.n_blocks; b++)
        if (w->pooled[b] >= 0) H5Dclose(w->pooled[b]);
    if (w->feats >= 0) H5Dclose(w->feats);
    if (w->valid >= 0) H5Dclose(w->valid);
    errno = 0;
    if (H5Fclose(w->file) < 0) rc = ps_fail(err, "%s: close failed%s%s", w->out.tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
    if (commit && !rc) rc = out_file_commit(&w->out, err);
    else out_file_discard(&w->out);
    free(w->pooled), free(w);
    return rc;
}

/* What a reader accepts: far past any real encoder (a 24 x 24 grid of 4096
 * floats is 2.4M floats a row), small enough that no count overflows. */
#define FEATURES_MAX_GRID 4096
#define FEATURES_MAX_ROWS (1 << 30)
#define FEATURES_MAX_WIDTH (1 << 20)
#define FEATURES_MAX_ROW_FLOATS (1 << 28)

/* ---- reader and validation ---------------------------------------------- */

struct features_file {
    char path[1024];
    hid_t file, feats;
    features_meta m;
    int n;
    char **ids;
    int *order;     /* row indices sorted by id, for features_find */
    uint8_t *valid;
    float *row;     /* one grid, [tokens, width] */
};

/* Problems are collected so that one message names all of them. */
typedef struct problems {
    char text[1800];
    int count;
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *p, const char *fmt, ...) {
    size_t at = strlen(p->text);
    if (at + 4 >= sizeof p->text) return;
    if (p->count++) at += snprintf(p->text + at, sizeof p->text - at, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->text + at, sizeof p->text - at, fmt, ap);
    va_end(ap);
}

static int dataset_dims(hid_t f, const char *name, int rank, hsize_t *dims, H5T_class_t *cls, size_t *size) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), s = H5Dget_space(d), t = H5Dget_type(d);
    int ok = H5Sget_simple_extent_ndims(s) == rank;
    if (ok) H5Sget_simple_extent_dims(s, dims, NULL);
    *cls = H5Tget_class(t), *size = H5Tget_size(t);
    H5Tclose(t), H5Sclose(s), H5Dclose(d);
    return ok ? 0 : -2;
}

static void check_attrs(features_file *ff, problems *p) {
    hid_t f = ff->file;
    char *fmt = h5_attr_string(f, "format");
    long long version = 0, gh = 0, gw = 0;
    if (!fmt || strcmp(fmt, "presight-features")) problem(p, "attribute format is '%s', expected presight-features", fmt ? fmt : "(missing)");
    if (h5_attr_int(f, "format_version", &version) || version != 1) problem(p, "attribute format_version missing or not 1");
    free(fmt);
    const char *names[] = {"encoder", "layer"};
    char *dst[] = {ff->m.encoder, ff->m.layer};
    for (int i = 0; i < 2; i++) {
        char *v = h5_attr_string(f, names[i]);
        if (!v) problem(p, "attribute %s missing", names[i]);
        else snprintf(dst[i], 64, "%s", v);
        free(v);
    }
    char *v;
    if ((v = h5_attr_string(f, "set"))) snprintf(ff->m.set, sizeof ff->m.set, "%s", v), free(v);
    if ((v = h5_attr_string(f, "weights_sha256"))) snprintf(ff->m.weights_sha256, sizeof ff->m.weights_sha256, "%s", v), free(v);
    if ((v = h5_attr_string(f, "preprocessing"))) snprintf(ff->m.preprocessing, sizeof ff->m.preprocessing, "%s", v), free(v);
    if (h5_attr_int(f, "grid_h", &gh) || h5_attr_int(f, "grid_w", &gw) || gh < 1 || gw < 1)
        problem(p, "integer attributes grid_h and grid_w missing or < 1");
    else if (gh > FEATURES_MAX_GRID || gw > FEATURES_MAX_GRID)
        problem(p, "grid_h x grid_w = %lld x %lld is past %d on a side", (long long)gh, (long long)gw, FEATURES_MAX_GRID);
    else
        ff->m.grid_h = (int)gh, ff->m.grid_w = (int)gw;
}

static void check_datasets(features_file *ff, problems *p) {
    hsize_t d[3];
    H5T_class_t cls;
    size_t size;
    int r = dataset_dims(ff->file, "features", 3, d, &cls, &size);
    if (r) problem(p, "/features %s", r == -1 ? "missing" : "is not 3-d [N, tokens, width]");
    else {
        if (cls != H5T_FLOAT || (size != 2 && size != 4)) problem(p, "/features must be float16 or float32");
        /* Sizes that would overflow the row buffer or the int counts are refused before any allocation. */
        if (d[0] > FEATURES_MAX_ROWS || d[2] > FEATURES_MAX_WIDTH || d[1] * d[2] > FEATURES_MAX_ROW_FLOATS)
            problem(p, "/features [%llu, %llu, %llu] is larger than presight reads (at most %d rows of %d floats)",
                    (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2], FEATURES_MAX_ROWS,
                    FEATURES_MAX_ROW_FLOATS);
        else
            ff->n = (int)d[0], ff->m.width = (int)d[2], ff->m.float16 = size == 2;
        if (ff->m.grid_h > 0 && d[1] != (hsize_t)ff->m.grid_h * ff->m.grid_w)
            problem(p, "/features has %llu tokens, grid_h x grid_w = %d", (unsigned long long)d[1], ff->m.grid_h * ff->m.grid_w);
    }
    if ((r = dataset_dims(ff->file, "valid", 1, d, &cls, &size)) == 0) {
        if (cls != H5T_INTEGER || size != 1 || (int)d[0] != ff->n) problem(p, "/valid must be uint8 [N = %d]", ff->n);
    } else if (r == -2)
        problem(p, "/valid is not 1-d");
    if (H5Lexists(ff->file, "pooled", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(ff->file, "pooled", H5P_DEFAULT);
        H5G_info_t info;
        H5Gget_info(g, &info);
        for (hsize_t i = 0; i < info.nlinks && ff->m.n_blocks < 64; i++) {
            char name[64];
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
            if (dataset_dims(g, name, 2, d, &cls, &size) || cls != H5T_FLOAT || (int)d[0] != ff->n)
                problem(p, "/pooled/%s must be float [N = %d, width]", name, ff->n);
            else {
                snprintf(ff->m.block_names[ff->m.n_blocks], 64, "%s", name);
                ff->m.block_widths[ff->m.n_blocks++] = (int)d[1];
            }
        }
        H5Gclose(g);
    }
}

static features_file *sort_target;
static int cmp_rows(const void *a, const void *b) {
    return strcmp(sort_target->ids[*(const int *)a], sort_target->ids[*(const int *)b]);
}

static void check_ids(features_file *ff, char **expect, int n_expect, problems *p) {
    hsize_t d[1];
    H5T_class_t cls;
    size_t size;
    if (dataset_dims(ff->file, "ids", 1, d, &cls, &size) || cls != H5T_STRING) {
        problem(p, "/ids missing or not a 1-d string dataset");
        return;
    }
    if ((int)d[0] != ff->n) problem(p, "/ids has %llu entries, /features %d rows", (unsigned long long)d[0], ff->n);
    hid_t ds = H5Dopen2(ff->file, "ids", H5P_DEFAULT), t = H5Dget_type(ds);
    int vlen = H5Tis_variable_str(t) > 0;
    H5Tclose(t);
    if (!vlen) {
        H5Dclose(ds);
        problem(p, "/ids must hold variable-length strings");
        return;
    }
    char **raw = calloc(d[0] ? d[0] : 1, sizeof(char *));
    hid_t m = H5Tcopy(H5T_C_S1);
    H5Tset_size(m, H5T_VARIABLE);
    H5Tset_cset(m, H5T_CSET_UTF8);
    if (H5Dread(ds, m, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) problem(p, "/ids could not be read");
    ff->ids = calloc(d[0] ? d[0] : 1, sizeof(char *));
    for (hsize_t i = 0; i < d[0]; i++) ff->ids[i] = strdup(raw[i] ? raw[i] : "");
    hid_t sp = H5Dget_space(ds);
    H5Dvlen_reclaim(m, sp, H5P_DEFAULT, raw);
    H5Sclose(sp), H5Tclose(m), H5Dclose(ds), free(raw);
    int n = (int)d[0] < ff->n ? (int)d[0] : ff->n;
    for (hsize_t i = (hsize_t)n; i < d[0]; i++) free(ff->ids[i]); /* more ids than rows: a problem above; keep n */
    ff->n = n;
    const char *dup;
    if (!ids_unique(ff->ids, n, &dup)) problem(p, "/ids: '%s' appears twice", dup);
    ff->order = malloc(sizeof(int) * (n ? n : 1));
    for (int i = 0; i < n; i++) ff->order[i] = i;
    sort_target = ff;
    qsort(ff->order, n, sizeof(int), cmp_rows);
    if (!expect) return;
    if (n_expect != n) problem(p, "%d ids, the image set has %d", n, n_expect);
    int missing = 0;
    for (int i = 0; i < n_expect; i++)
        if (features_find(ff, expect[i]) < 0 && missing++ < 3) problem(p, "image set id '%s' not in /ids", expect[i]);
    if (missing > 3) problem(p, "... %d image set ids missing in all", missing);
}

int features_open(features_file **out, const char *path, char **expect_ids, int n_expect, ps_error *err) {
    features_file *ff = calloc(1, sizeof *ff);
    if (!ff) return ps_fail(err, "%s: out of memory", path);
    snprintf(ff->path, sizeof ff->path, "%s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    ff->feats = -1;
    if (access(path, R_OK) || (ff->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        free(ff);
        return ps_fail(err, "%s: cannot open as HDF5", path);
    }
    problems p = {"", 0};
    check_attrs(ff, &p);
    check_datasets(ff, &p);
    check_ids(ff, expect_ids, n_expect, &p);
    if (p.count) {
        features_free(ff);
        return ps_fail(err, "%s: %d problem(s): %s", path, p.count, p.text);
    }
    ff->feats = H5Dopen2(ff->file, "features", H5P_DEFAULT);
    ff->valid = malloc(ff->n ? ff->n : 1);
    memset(ff->valid, 1, ff->n);
    if (H5Lexists(ff->file, "valid", H5P_DEFAULT) > 0) {
        hid_t d = H5Dopen2(ff->file, "valid", H5P_DEFAULT);
        H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ff->valid);
        H5Dclose(d);
    }
    ff->row = malloc(sizeof(float) * (size_t)ff->m.grid_h * ff->m.grid_w * ff->m.width);
    *out = ff;
    return 0;
}

void features_free(features_file *ff) {
    if (!ff) return;
    if (ff->ids)
        for (int i = 0; i < ff->n; i++) free(ff->ids[i]);
    free(ff->ids), free(ff->order), free(ff->valid), free(ff->row);
    if (ff->feats >= 0) H5Dclose(ff->feats);
    H5Fclose(ff->file);
    free(ff);
}

const features_meta *features_meta_of(const features_file *f) { return &f->m; }
int features_count(const features_file *f) { return f->n; }
int features_valid(const features_file *f, int row) { return row >= 0 && row < f->n && f->valid[row]; }

int features_find(const features_file *f, const char *id) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(f->ids[f->order[mid]], id);
        if (!c) return f->order[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int read_grid(features_file *f, int row, ps_error *err) {
    if (row < 0 || row >= f->n) return ps_fail(err, "%s: row %d out of range (N = %d)", f->path, row, f->n);
    if (!f->valid[row]) return ps_fail(err, "%s: image '%s' failed to encode (/valid = 0)", f->path, f->ids[row]);
    hsize_t tokens = (hsize_t)f->m.grid_h * f->m.grid_w;
    hsize_t start[3] = {(hsize_t)row, 0, 0}, count[3] = {1, tokens, (hsize_t)f->m.width};
    hid_t fs = H5Dget_space(f->feats), ms = H5Screate_simple(3, count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t r = H5Dread(f->feats, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, f->row);
    H5Sclose(ms), H5Sclose(fs);
    return r < 0 ? ps_fail(err, "%s: reading /features row %d failed", f->path, row) : 0;
}

int features_read_grid(features_file *f, int row, float *out, ps_error *err) {
    if (read_grid(f, row, err)) return -1;
    memcpy(out, f->row, sizeof(float) * (size_t)f->m.grid_h * f->m.grid_w * f->m.width);
    return 0;
}

int features_read_tokens(features_file *f, int row, int tokens, float *out, ps_error *err) {
    int side = (int)lround(sqrt((double)tokens));
    if (side * side != tokens) return ps_fail(err, "visual tokens %d is not a square (576 = 24 x 24)", tokens);
    if (read_grid(f, row, err)) return -1;
    const features_meta *m = &f->m;
    if (side == m->grid_h && side == m->grid_w) memcpy(out, f->row, sizeof(float) * tokens * m->width);
    else cnn_resize_bilinear(f->row, m->grid_h, m->grid_w, m->width, side, side, 0, out);
    return 0;
}

int features_read_pooled(features_file *f, int row, const char *block, float *out, ps_error *err) {
    int b = 0;
    while (b < f->m.n_blocks && strcmp(f->m.block_names[b], block)) b++;
    if (b == f->m.n_blocks) return ps_fail(err, "%s: no /pooled/%s", f->path, block);
    if (row < 0 || row >= f->n || !f->valid[row]) return ps_fail(err, "%s: row %d out of range or failed", f->path, row);
    char name[80];
    snprintf(name, sizeof name, "pooled/%s", block);
    hid_t d = H5Dopen2(f->file, name, H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t start[2] = {(hsize_t)row, 0}, count[2] = {1, (hsize_t)f->m.block_widths[b]};
    hid_t ms = H5Screate_simple(2, count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t r = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
    return r < 0 ? ps_fail(err, "%s: reading /%s row %d failed", f->path, name, row) : 0;
}
