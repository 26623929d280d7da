/* image_set.c - image HDF5 and picture lists. See image_set.h. */
#include "image_set.h"

#include <hdf5.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5_attr.h"
#include "image_io.h"

struct image_set {
    char path[1024], name[256];
    int n;
    char **ids;
    char **files;       /* list: picture paths */
    hid_t file, pixels; /* HDF5: open handles */
    uint64_t *offsets;
    int32_t *shapes;    /* [n, 3] */
};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ids_unique(char **ids, int n, const char **dup) {
    if (n <= 1) return 1;
    char **s = malloc(sizeof(char *) * (n > 0 ? n : 1));
    if (!s) return 0;
    memcpy(s, ids, sizeof(char *) * n);
    qsort(s, n, sizeof(char *), cmp_str);
    int ok = 1;
    for (int i = 1; i < n && ok; i++)
        if (!strcmp(s[i - 1], s[i])) ok = 0, *dup = s[i]; /* the caller's string: s holds its pointers */
    free(s);
    return ok;
}

static void base_name(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    snprintf(out, n, "%s", b ? b + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* ---- picture lists ------------------------------------------------------ */

static int open_list(image_set *s, ps_error *err) {
    FILE *f = fopen(s->path, "r");
    if (!f) return ps_fail(err, "%s: cannot open the image list", s->path);
    char dir[1024], line[4096];
    snprintf(dir, sizeof dir, "%s", s->path);
    snprintf(dir, sizeof dir, "%s", dirname(dir));
    int cap = 0, lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        char *tab = strchr(line, '\t'), *p = tab ? tab + 1 : line;
        if (tab) *tab = 0;
        if (!*p || (tab && !line[0])) {
            rc = ps_fail(err, "%s:%d: empty id or path", s->path, lineno);
            break;
        }
        if (s->n == cap) {
            cap = cap ? 2 * cap : 256;
            s->ids = realloc(s->ids, sizeof(char *) * cap), s->files = realloc(s->files, sizeof(char *) * cap);
            if (!s->ids || !s->files) { rc = ps_fail(err, "%s: out of memory", s->path); break; }
        }
        char full[4096 + 1024];
        snprintf(full, sizeof full, "%s%s%s", p[0] == '/' ? "" : dir, p[0] == '/' ? "" : "/", p);
        s->ids[s->n] = strdup(line), s->files[s->n] = strdup(full);
        s->n++;
    }
    fclose(f);
    return rc;
}

/* ---- image HDF5 --------------------------------------------------------- */

static int read_vlen_strings(hid_t f, const char *file, const char *name, int n, char ***out, ps_error *err) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return ps_fail(err, "%s: dataset /%s missing", file, name);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    hssize_t got = H5Sget_simple_extent_npoints(sp);
    int rc = 0;
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) <= 0 || H5Sget_simple_extent_ndims(sp) != 1)
        rc = ps_fail(err, "%s: /%s must be a 1-d variable-length string dataset", file, name);
    else if (n >= 0 && got != n)
        rc = ps_fail(err, "%s: /%s has %lld entries, expected %d", file, name, (long long)got, n);
    else {
        char **v = calloc(got > 0 ? got : 1, sizeof(char *));
        hid_t m = H5Tcopy(H5T_C_S1);
        H5Tset_size(m, H5T_VARIABLE);
        H5Tset_cset(m, H5T_CSET_UTF8);
        if (!v || H5Dread(d, m, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) rc = ps_fail(err, "%s: reading /%s failed", file, name);
        else {
            *out = malloc(sizeof(char *) * (got > 0 ? got : 1));
            for (hssize_t i = 0; i < got; i++) (*out)[i] = strdup(v[i] ? v[i] : "");
            H5Dvlen_reclaim(m, sp, H5P_DEFAULT, v);
        }
        free(v);
        H5Tclose(m);
    }
    H5Tclose(t), H5Sclose(sp), H5Dclose(d);
    return rc;
}

/* A numeric dataset of the given rank and class, read as mem_type. */
static int read_numeric(hid_t f, const char *file, const char *name, int rank, H5T_class_t cls, hid_t mem_type,
                        hsize_t *dims, void **out, size_t elem, ps_error *err) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return ps_fail(err, "%s: dataset /%s missing", file, name);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int rc = 0;
    if (H5Tget_class(t) != cls || H5Sget_simple_extent_ndims(sp) != rank)
        rc = ps_fail(err, "%s: /%s must be a %d-d %s dataset", file, name, rank, cls == H5T_INTEGER ? "integer" : "float");
    else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        size_t n = 1;
        for (int i = 0; i < rank; i++) n *= dims[i];
        if (out) {
            *out = malloc(elem * (n ? n : 1));
            if (!*out || H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
                rc = ps_fail(err, "%s: reading /%s failed", file, name);
        }
    }
    H5Tclose(t), H5Sclose(sp), H5Dclose(d);
    return rc;
}

static int check_format(image_set *s, ps_error *err) {
    char *fmt = h5_attr_string(s->file, "format"), *set = h5_attr_string(s->file, "set");
    long long version = 0;
    int bad = !fmt || strcmp(fmt, "presight-images") || h5_attr_int(s->file, "format_version", &version) || version != 1;
    int rc = bad ? ps_fail(err, "%s: root attributes format '%s' / format_version %lld, expected presight-images / 1",
                           s->path, fmt ? fmt : "(missing)", version)
                 : 0;
    if (set) snprintf(s->name, sizeof s->name, "%s", set);
    free(fmt), free(set);
    return rc;
}

static int open_h5(image_set *s, ps_error *err) {
    if ((s->file = H5Fopen(s->path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return ps_fail(err, "%s: cannot open as HDF5", s->path);
    hsize_t dp[1], doff[1], dsh[2];
    if (check_format(s, err) ||
        read_numeric(s->file, s->path, "pixels", 1, H5T_INTEGER, H5T_NATIVE_UINT8, dp, NULL, 1, err) ||
        read_numeric(s->file, s->path, "offsets", 1, H5T_INTEGER, H5T_NATIVE_UINT64, doff, (void **)&s->offsets, 8, err) ||
        read_numeric(s->file, s->path, "shapes", 2, H5T_INTEGER, H5T_NATIVE_INT32, dsh, (void **)&s->shapes, 4, err))
        return -1;
    s->n = (int)doff[0];
    if (dsh[0] != doff[0] || dsh[1] != 3)
        return ps_fail(err, "%s: /shapes is [%llu, %llu], expected [%d, 3]", s->path, (unsigned long long)dsh[0],
                       (unsigned long long)dsh[1], s->n);
    for (int i = 0; i < s->n; i++) {
        const int32_t *sh = s->shapes + 3 * i;
        if (sh[0] < 1 || sh[1] < 1 || sh[2] != 3 ||
            s->offsets[i] + (uint64_t)sh[0] * sh[1] * 3 > dp[0])
            return ps_fail(err, "%s: image %d (/shapes %d x %d x %d at /offsets %llu) lies outside /pixels (%llu bytes)",
                           s->path, i, sh[0], sh[1], sh[2], (unsigned long long)s->offsets[i], (unsigned long long)dp[0]);
    }
    if (read_vlen_strings(s->file, s->path, "ids", s->n, &s->ids, err)) return -1;
    s->pixels = H5Dopen2(s->file, "pixels", H5P_DEFAULT);
    return 0;
}

int image_set_open(image_set **out, const char *path, ps_error *err) {
    image_set *s = calloc(1, sizeof *s);
    if (!s) return ps_fail(err, "%s: out of memory", path);
    s->file = s->pixels = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    base_name(path, s->name, sizeof s->name);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    size_t len = strlen(path);
    int rc = len > 3 && !strcmp(path + len - 3, ".h5") ? open_h5(s, err) : open_list(s, err);
    const char *dup = NULL;
    if (!rc && s->n == 0) rc = ps_fail(err, "%s: no images", path);
    if (!rc && !ids_unique(s->ids, s->n, &dup)) rc = ps_fail(err, "%s: id '%s' appears twice (/ids must be unique)", path, dup);
    if (rc) {
        image_set_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void image_set_close(image_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        if (s->ids) free(s->ids[i]);
        if (s->files) free(s->files[i]);
    }
    free(s->ids), free(s->files), free(s->offsets), free(s->shapes);
    if (s->pixels >= 0) H5Dclose(s->pixels);
    if (s->file >= 0) H5Fclose(s->file);
    free(s);
}

int image_set_count(const image_set *s) { return s->n; }
const char *image_set_id(const image_set *s, int i) { return s->ids[i]; }
const char *image_set_name(const image_set *s) { return s->name; }

int image_set_load(image_set *s, int i, uint8_t **rgb, int *h, int *w, ps_error *err) {
    if (i < 0 || i >= s->n) return ps_fail(err, "%s: image %d is out of range (%d images)", s->path, i, s->n);
    if (s->files) return image_load(s->files[i], rgb, h, w, err);
    const int32_t *sh = s->shapes + 3 * i;
    hsize_t start = s->offsets[i], count = (hsize_t)sh[0] * sh[1] * 3;
    uint8_t *px = malloc(count);
    if (!px) return ps_fail(err, "%s[%s]: out of memory", s->path, s->ids[i]);
    hid_t fs = H5Dget_space(s->pixels), ms = H5Screate_simple(1, &count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    herr_t r = H5Dread(s->pixels, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, px);
    H5Sclose(ms), H5Sclose(fs);
    if (r < 0) {
        free(px);
        return ps_fail(err, "%s: reading /pixels of image '%s' failed", s->path, s->ids[i]);
    }
    *rgb = px, *h = sh[0], *w = sh[1];
    return 0;
}
