#include "weights_h5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct h5_file {
    hid_t id;
    int writing;
    char path[1024], tmp_path[1040];
};

static hid_t mem_real_type(void) { return REAL_IS_DOUBLE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }

/* HDF5 prints its own error stack by default; presight reports errors itself. */
static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

h5_file *h5_create(const char *path, ps_error *err) {
    quiet_hdf5();
    h5_file *f = calloc(1, sizeof *f);
    if (!f) {
        ps_fail(err, "out of memory");
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->tmp_path, sizeof f->tmp_path, "%s.tmp", path);
    f->writing = 1;
    f->id = H5Fcreate(f->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f->id < 0) {
        ps_fail(err, "%s: cannot create HDF5 file", f->tmp_path);
        free(f);
        return NULL;
    }
    return f;
}

h5_file *h5_open_read(const char *path, ps_error *err) {
    quiet_hdf5();
    h5_file *f = calloc(1, sizeof *f);
    if (!f) {
        ps_fail(err, "out of memory");
        return NULL;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    if (access(path, R_OK) != 0 || (f->id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        ps_fail(err, "%s: cannot open as HDF5 (missing, unreadable or not an HDF5 file)", path);
        free(f);
        return NULL;
    }
    return f;
}

int h5_close(h5_file *f, int commit, ps_error *err) {
    if (!f) return 0;
    int rc = 0;
    if (f->writing && commit && H5Fflush(f->id, H5F_SCOPE_GLOBAL) < 0)
        rc = ps_fail(err, "%s: flush failed", f->tmp_path);
    if (H5Fclose(f->id) < 0 && rc == 0) rc = ps_fail(err, "%s: close failed", f->writing ? f->tmp_path : f->path);
    if (f->writing) {
        if (commit && rc == 0) {
            /* fsync the data before the rename makes it visible under its real name. */
            FILE *fp = fopen(f->tmp_path, "rb");
            if (fp) {
                fsync(fileno(fp));
                fclose(fp);
            }
            if (rename(f->tmp_path, f->path) != 0) rc = ps_fail(err, "%s: rename to %s failed", f->tmp_path, f->path);
        } else {
            unlink(f->tmp_path);
        }
    }
    free(f);
    return rc;
}

static int write_array(h5_file *f, hid_t where, const char *name, hid_t file_type, hid_t mem_type, const void *data,
                       int rank, const hsize_t *dims, ps_error *err) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t set = H5Dcreate2(where, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (set < 0 || H5Dwrite(set, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = ps_fail(err, "%s: writing dataset %s failed", f->tmp_path, name);
    if (set >= 0) H5Dclose(set);
    H5Sclose(space);
    return rc;
}

static int write_string_attr(hid_t where, const char *name, const char *text) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(text) + 1);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr >= 0 && H5Awrite(attr, type, text) >= 0 ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return rc;
}

int h5_write_params(h5_file *f, const char *group, const model_layout *L, const model_params *p,
                    const char *config_text, ps_error *err) {
    hid_t g = H5Gcreate2(f->id, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return ps_fail(err, "%s: cannot create group /%s", f->tmp_path, group);
    int rc = 0;
    if (config_text && write_string_attr(g, "config", config_text))
        rc = ps_fail(err, "%s: writing the config attribute failed", f->tmp_path);
    for (int i = 0; i < L->n_tensors && rc == 0; i++) {
        const model_tensor *t = &L->tensors[i];
        hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};
        rc = write_array(f, g, t->name, H5T_IEEE_F32LE, mem_real_type(), model_tensor_data(p, L, i), t->cols == 1 ? 1 : 2,
                         dims, err);
    }
    H5Gclose(g);
    return rc;
}

int h5_read_params(h5_file *f, const char *group, const model_layout *L, model_params *p, ps_error *err) {
    hid_t g = H5Gopen2(f->id, group, H5P_DEFAULT);
    if (g < 0) return ps_fail(err, "%s: has no group /%s", f->path, group);
    int rc = 0;
    for (int i = 0; i < L->n_tensors && rc == 0; i++) {
        const model_tensor *t = &L->tensors[i];
        hid_t set = H5Dopen2(g, t->name, H5P_DEFAULT);
        if (set < 0) {
            rc = ps_fail(err, "%s: tensor /%s/%s is missing (the file is for another model shape?)", f->path, group,
                         t->name);
            break;
        }
        hid_t space = H5Dget_space(set);
        hsize_t dims[3] = {0, 0, 0};
        int rank = H5Sget_simple_extent_ndims(space);
        if (rank >= 1 && rank <= 2) H5Sget_simple_extent_dims(space, dims, NULL);
        long long rows = (long long)dims[0], cols = rank == 2 ? (long long)dims[1] : 1;
        if (rank < 1 || rank > 2 || rows != t->rows || cols != t->cols)
            rc = ps_fail(err, "%s: tensor /%s/%s has shape [%lld, %lld], the model expects [%d, %d]", f->path, group,
                         t->name, rows, cols, t->rows, t->cols);
        else if (H5Dread(set, mem_real_type(), H5S_ALL, H5S_ALL, H5P_DEFAULT, model_tensor_data(p, L, i)) < 0)
            rc = ps_fail(err, "%s: reading /%s/%s failed", f->path, group, t->name);
        H5Sclose(space);
        H5Dclose(set);
    }
    H5Gclose(g);
    return rc;
}

static int dims_of(int rank, const long long *in, hsize_t *out) {
    for (int i = 0; i < rank; i++) out[i] = (hsize_t)in[i];
    return rank;
}

int h5_write_ints(h5_file *f, const char *name, const int *data, int rank, const long long *dims, ps_error *err) {
    hsize_t d[8];
    return write_array(f, f->id, name, H5T_STD_I32LE, H5T_NATIVE_INT, data, dims_of(rank, dims, d), d, err);
}

int h5_write_reals(h5_file *f, const char *name, const real *data, int rank, const long long *dims, ps_error *err) {
    hsize_t d[8];
    return write_array(f, f->id, name, REAL_IS_DOUBLE ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, mem_real_type(), data,
                       dims_of(rank, dims, d), d, err);
}

int h5_write_double(h5_file *f, const char *name, double value, ps_error *err) {
    hsize_t one = 1;
    return write_array(f, f->id, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, 1, &one, err);
}
