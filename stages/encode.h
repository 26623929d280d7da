/* encode.h - the encode stage: an image set through a frozen vision encoder
 * into data/features/<encoder>/<set>.h5 (datasets/feature_file.h).
 *
 * The set is cut into parts of part_size images; part p belongs to rank
 * p mod ranks, which writes it to <set>.parts/part_<start>_<end>.h5 (.tmp,
 * renamed when complete). A part already there is kept, so a killed job
 * resumes where it stopped; rank 0 assembles the parts in order once all
 * exist. Every number depends only on the image, so any rank count gives
 * the same file. SIGTERM or SIGUSR1: the current part is finished, then
 * encode_run returns ENCODE_PREEMPTED (75, requeue).
 * (Its own small loop for now; written to move onto the shared job runner.) */
#ifndef PRESIGHT_ENCODE_H
#define PRESIGHT_ENCODE_H

#include <stdio.h>

#include "comm.h"
#include "error.h"

#define ENCODE_PREEMPTED 75

typedef struct encode_config {
    char encoder[64];    /* mobilenet_v2_mid (any converted weights file), or patches */
    char weights[1024];  /* encoder weights file; default data/encoders/<encoder>.h5 */
    char images[1024];   /* image HDF5 (data/images/<set>.h5) or a picture list */
    char out_dir[1024];  /* features go to <out_dir>/<encoder>/<set>.h5 */
    char layer[64];      /* block whose grid is /features; "" = the last */
    int float16;         /* /features as float16 (else float32) */
    int pad_square;      /* LLaVA's pad: square with the mean colour before resizing */
    int part_size;       /* images per part file */
    int patch_grid;      /* patches encoder: grid x grid tokens ... */
    int patch_sub;       /* ... of sub x sub RGB cells each */
    int patch_size;      /* patches encoder input side */
    int threads;         /* 0 = PRESIGHT_THREADS / all cores */
} encode_config;

/* Defaults, then the file's `encode { ... }` group, then key=value overrides
 * (encode.layer=expanded_conv_12). */
int encode_config_load(encode_config *c, const char *path, int n_overrides, char **overrides, ps_error *err);
void encode_config_print_keys(FILE *out);

/* 0 done, ENCODE_PREEMPTED on a stop signal, -1 on error. */
int encode_run(const encode_config *c, comm *world, ps_error *err);

/* The features file encode_run writes for c (after its set name is known). */
void encode_output_path(const encode_config *c, const char *set, char *out, size_t n);

#endif
