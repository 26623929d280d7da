/* heldout.h - the study's one held-out partition.
 *
 * A key (a document id "wn:n:01313093", "gcide:abacus"; a fact
 * "fact:elements:H"; a country "country:Algeria") is held out when the first
 * 8 bytes of SHA-256("presight-heldout-v1:" KEY), read big-endian, modulo
 * 1000, are below PS_HELDOUT_PERMILLE. datasets/images/heldout.py is the
 * same rule for the image and task builders (tests/t_images.sh checks that
 * both agree). Held-out keys are evaluation material: ingest drops the
 * documents whose id is held out in a partitioned namespace, and the
 * instruction data never uses them. */
#ifndef PRESIGHT_HELDOUT_H
#define PRESIGHT_HELDOUT_H

#include <stddef.h>

#define PS_HELDOUT_PERMILLE 150

/* 0..999: the key's place in the partition. */
int ps_heldout_bucket(const char *key, size_t len);

/* 1 when the key is held out (whatever its namespace). */
int ps_heldout_key(const char *key, size_t len);

/* 1 when a document with this id must stay out of the pretraining shards:
 * its namespace (the text before the first ':') is one the evaluation draws
 * from (wn, gcide, country, fact) and its key is held out. */
int ps_heldout_document(const char *id, size_t len);

#endif
