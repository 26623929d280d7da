/* bpe_train.h - learn a byte-level BPE vocabulary from text files.
 *
 * The text is cut by the same regex as tokenizer.c; pieces are counted, and
 * the most frequent adjacent pair of tokens is merged, again and again, until
 * the vocabulary has vocab_size tokens. The result is a .tiktoken file:
 * ranks 0..255 are the single bytes (rank = byte value), then one token per
 * merge, in merge order. Load it with tokenizer_load(..., TOKENIZER_PLAIN).
 * Pieces over 1024 bytes are counted in 1024-byte parts, so that pathological
 * runs cannot slow every merge down. */
#ifndef PRESIGHT_BPE_TRAIN_H
#define PRESIGHT_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct bpe_train_stats {
    size_t bytes_read;    /* text bytes counted (max_bytes caps it) */
    size_t pieces;        /* pre-tokenised pieces in that text */
    size_t unique_pieces; /* distinct pieces: the "words" being merged */
    size_t tokens;        /* tokens written: vocab_size, or fewer when the text ran out of pairs */
    double count_seconds; /* reading and counting */
    double merge_seconds; /* merging */
} bpe_train_stats;

/* Trains on files[0..n_files), in order, reading at most max_bytes in all (0:
 * no limit; the last file is cut at a line end), and writes out_path (through
 * out_path.tmp, so a failure leaves no partial file). vocab_size counts the
 * ordinary tokens, 256 single bytes included; must be 256 .. 2^21-1. Ties
 * between equally frequent pairs go to the smaller (left id, right id).
 * stats may be NULL. */
int bpe_train(const char *const *files, size_t n_files, size_t vocab_size, size_t max_bytes, const char *out_path,
              bpe_train_stats *stats, ps_error *err);

#endif
