/* text_dataset.h - byte-level reader of one text file (see text.c). */
#ifndef PRESIGHT_TEXT_DATASET_H
#define PRESIGHT_TEXT_DATASET_H

#include <stdint.h>

#include "dataset.h"

/* Byte tokens 0..255, then <|begin_of_text|>, <|end_of_text|> and two reserved ids. */
#define TEXT_SPECIALS 4

int text_dataset_open(dataset **out, const char *path, uint64_t seed, ps_error *err);

#endif
