/* h5_attr.c - see h5_attr.h. */
#include "h5_attr.h"

#include <stdlib.h>
#include <string.h>

char *h5_attr_string(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            char *v = NULL;
            hid_t m = H5Tcopy(H5T_C_S1);
            H5Tset_size(m, H5T_VARIABLE);
            H5Tset_cset(m, H5Tget_cset(t));
            if (H5Aread(a, m, &v) >= 0 && v) out = strdup(v);
            if (v) H5free_memory(v);
            H5Tclose(m);
        } else {
            size_t n = H5Tget_size(t);
            if ((out = calloc(n + 1, 1)) && H5Aread(a, t, out) < 0) free(out), out = NULL;
        }
    }
    H5Tclose(t), H5Aclose(a);
    return out;
}

static int attr_number(hid_t obj, const char *name, hid_t mem, void *v, int integer_only) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    int ok = (c == H5T_INTEGER || (!integer_only && c == H5T_FLOAT)) && H5Aread(a, mem, v) >= 0;
    H5Tclose(t), H5Aclose(a);
    return ok ? 0 : -1;
}

int h5_attr_double(hid_t obj, const char *name, double *v) { return attr_number(obj, name, H5T_NATIVE_DOUBLE, v, 0); }
int h5_attr_int(hid_t obj, const char *name, long long *v) { return attr_number(obj, name, H5T_NATIVE_LLONG, v, 1); }
