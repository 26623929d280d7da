/* image_set.h - the pictures an encode job reads: either the image HDF5 of
 * the image-sets stage (data/images/<set>.h5, layout in datasets/README.md,
 * "Image sets"), or a text list of picture files, one per line, "PATH" or
 * "ID<TAB>PATH" (the ID defaults to PATH as written; relative paths are taken
 * from the list's folder; '#' lines are comments).
 * Opening checks the layout and that ids are unique, naming file and dataset. */
#ifndef PRESIGHT_IMAGE_SET_H
#define PRESIGHT_IMAGE_SET_H

#include <stdint.h>

#include "error.h"

typedef struct image_set image_set;

int image_set_open(image_set **out, const char *path, ps_error *err);
void image_set_close(image_set *s);

int image_set_count(const image_set *s);
const char *image_set_id(const image_set *s, int i);
/* The set's name: the HDF5 "set" attribute, or the list's file name without extension. */
const char *image_set_name(const image_set *s);

/* Picture i as RGB (*rgb malloc'd, h * w * 3); decode errors name the path. */
int image_set_load(image_set *s, int i, uint8_t **rgb, int *h, int *w, ps_error *err);

/* 1 when the ids are unique; else 0 and the first duplicate in *dup. */
int ids_unique(char **ids, int n, const char **dup);

#endif
