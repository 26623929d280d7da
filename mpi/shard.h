/* shard.h - who owns which part of each parameter unit.
 *
 * Every unit (see core/model.h) is a flat buffer of `size` elements. Over a
 * shard group of `world` ranks it is cut into equal slices of
 * shard_len = ceil(size / world) elements (the last slices padded), and rank r
 * owns [r * shard_len, min(size, (r + 1) * shard_len)). DDP is the same
 * picture with a group of one (every rank owns everything); ZeRO-1 and FSDP
 * use the whole data-parallel group, or one node of it with hybrid sharding. */
#ifndef PRESIGHT_SHARD_H
#define PRESIGHT_SHARD_H

#include <stddef.h>

#include "real.h"

typedef struct shard_layout {
    int n_units;
    int rank, world;       /* position in the shard group */
    size_t *unit_size;     /* [n_units] elements of real data */
    size_t *shard_len;     /* [n_units] slice length incl. padding: ceil(size / world) */
} shard_layout;

/* First element of this rank's slice of unit u (may be >= size for a padding-only slice). */
static inline size_t shard_start(const shard_layout *s, int u) { return (size_t)s->rank * s->shard_len[u]; }

/* Elements of real data in this rank's slice of unit u (0 for a padding-only slice). */
static inline size_t shard_count(const shard_layout *s, int u) {
    size_t start = shard_start(s, u), end = start + s->shard_len[u];
    if (end > s->unit_size[u]) end = s->unit_size[u];
    return end > start ? end - start : 0;
}

/* This rank's slices, as the checkpoint writes and reads them: for each unit,
 * params/m/v point at element shard_start(u) of the unit (count shard_count(u)).
 * `writer` is 0 on ranks whose slices are replicas of another rank's (hybrid
 * sharding across nodes, or DDP): they take part in the collective calls but
 * write nothing. On reading every rank fills its own slices. */
typedef struct shard_view {
    const shard_layout *layout;
    real **params, **m, **v; /* [n_units] */
    int writer;
} shard_view;

#endif
