/* h5_attr.h - reading HDF5 attributes as the encoder files store them
 * (fixed- or variable-length strings, any integer or float type). */
#ifndef PRESIGHT_H5_ATTR_H
#define PRESIGHT_H5_ATTR_H

#include <hdf5.h>

/* A malloc'd copy of a string attribute, or NULL when absent or not a string. */
char *h5_attr_string(hid_t obj, const char *name);
/* A numeric attribute as double / long long; -1 when absent or not numeric. */
int h5_attr_double(hid_t obj, const char *name, double *v);
int h5_attr_int(hid_t obj, const char *name, long long *v);

#endif
