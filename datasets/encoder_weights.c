/* encoder_weights.c - reads the encoder weights file. See encoder_weights.h. */
#include "encoder_weights.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5_attr.h"
#include "sha256.h"

static int copy_attr(hid_t f, const char *path, const char *name, char *dst, size_t n, ps_error *err) {
    char *s = h5_attr_string(f, name);
    if (!s) return ps_fail(err, "%s: attribute '%s' missing (re-run: make encoder-data)", path, name);
    snprintf(dst, n, "%s", s);
    free(s);
    return 0;
}

/* H5Lexists on every prefix: a missing group in between is not an error. */
static int path_exists(hid_t f, const char *key) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", key);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) return 0;
            if (!c) return 1;
            *p = c;
        }
    }
}

static int read_tensor(hid_t f, const char *path, const char *name, enc_weight *w, ps_error *err) {
    char key[256];
    snprintf(key, sizeof key, "tensors/%s", name);
    if (!path_exists(f, key))
        return ps_fail(err, "%s: tensor '/%s' missing", path, key);
    hid_t d = H5Dopen2(f, key, H5P_DEFAULT), s = H5Dget_space(d);
    hsize_t dims[4] = {1, 1, 1, 1};
    int nd = H5Sget_simple_extent_ndims(s);
    if (nd < 1 || nd > 4) {
        H5Sclose(s), H5Dclose(d);
        return ps_fail(err, "%s: tensor '/%s' has rank %d", path, key, nd);
    }
    H5Sget_simple_extent_dims(s, dims, NULL);
    size_t n = 1;
    w->ndim = nd;
    for (int i = 0; i < nd; i++) w->shape[i] = (int)dims[i], n *= dims[i];
    float *data = malloc(sizeof(float) * n);
    int rc = data && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 ? 0 : -1;
    H5Sclose(s), H5Dclose(d);
    if (rc) {
        free(data);
        return ps_fail(err, "%s: reading tensor '/%s' failed", path, key);
    }
    w->name = strdup(name);
    w->data = data;
    return 0;
}

static int has_tensor(const encoder_weights *w, const char *name) {
    for (int i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return 1;
    return 0;
}

/* Every weight a conv or dwconv line of the graph names (fields 4 and 5). */
static int read_graph_tensors(encoder_weights *w, hid_t f, const char *path, ps_error *err) {
    int lines = 1;
    for (const char *p = w->graph; *p; p++) lines += *p == '\n';
    w->tensors = calloc(2 * lines, sizeof *w->tensors);
    if (!w->tensors) return ps_fail(err, "%s: out of memory", path);
    char *g = strdup(w->graph), *save = NULL;
    int rc = 0;
    for (char *line = strtok_r(g, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "conv ", 5) && strncmp(line, "dwconv ", 7)) continue;
        char *s2 = NULL, *fld[5] = {0};
        int n = 0;
        for (char *t = strtok_r(line, " ", &s2); t && n < 5; t = strtok_r(NULL, " ", &s2)) fld[n++] = t;
        for (int k = 3; k < 5 && !rc && n == 5; k++)
            if (!has_tensor(w, fld[k])) rc = read_tensor(f, path, fld[k], &w->tensors[w->n_tensors++], err);
    }
    free(g);
    return rc;
}

static int read_header(encoder_weights *w, hid_t f, const char *path, ps_error *err) {
    char fmt[64];
    double version, size, mul, sub;
    if (copy_attr(f, path, "format", fmt, sizeof fmt, err)) return -1;
    if (strcmp(fmt, "presight-encoder-weights"))
        return ps_fail(err, "%s: format '%s', expected presight-encoder-weights", path, fmt);
    if (h5_attr_double(f, "format_version", &version) || version != 1)
        return ps_fail(err, "%s: format_version missing or not 1", path);
    if (copy_attr(f, path, "encoder", w->encoder, sizeof w->encoder, err) ||
        copy_attr(f, path, "source", w->source, sizeof w->source, err))
        return -1;
    if (h5_attr_double(f, "input_size", &size) || h5_attr_double(f, "norm_mul", &mul) || h5_attr_double(f, "norm_sub", &sub))
        return ps_fail(err, "%s: attribute input_size, norm_mul or norm_sub missing", path);
    char resize[64];
    if (copy_attr(f, path, "resize", resize, sizeof resize, err)) return -1;
    if (strcmp(resize, "bilinear_align_corners"))
        return ps_fail(err, "%s: resize '%s' not supported (bilinear_align_corners)", path, resize);
    if (size < 8 || size > 4096 || mul == 0) return ps_fail(err, "%s: input_size %g or norm_mul %g out of range", path, size, mul);
    w->prep = (enc_preprocess){.size = (int)size, .norm_mul = (float)mul, .norm_sub = (float)sub};
    w->prep.pad_color = 127; /* both models' inputs are centred on 0.5 */
    if (!(w->graph = h5_attr_string(f, "graph"))) return ps_fail(err, "%s: attribute 'graph' missing", path);
    return 0;
}

int encoder_weights_load(encoder_weights *w, const char *path, ps_error *err) {
    memset(w, 0, sizeof *w);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (sha256_file(path, w->sha256, err)) return ps_wrap(err, "encoder weights (run: make encoder-data)");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ps_fail(err, "%s: not an HDF5 file (re-run: make encoder-data)", path);
    int rc = read_header(w, f, path, err) || read_graph_tensors(w, f, path, err) ? -1 : 0;
    H5Fclose(f);
    if (rc) encoder_weights_free(w);
    return rc;
}

void encoder_weights_free(encoder_weights *w) {
    for (int i = 0; i < w->n_tensors; i++) free((char *)w->tensors[i].name), free((float *)w->tensors[i].data);
    free(w->tensors), free(w->graph);
    memset(w, 0, sizeof *w);
}
