/* shards.h - tokenized text in HDF5 shards, written by ingest and read by
 * the sampler and the labeller.
 *
 * One source (a corpus) is a folder DIR/NAME holding shard-00000.h5,
 * shard-00001.h5, ... and card.json (written last: the source is complete).
 * A shard holds (see datasets/README.md, "Shard layout"):
 *   /tokens       uint32 [n_tokens], chunked, extendible: every document's
 *                 token ids followed by the tokenizer's end-of-text id, so the
 *                 array is already the packed stream the sampler draws from
 *   /doc_offsets  uint64 [n_docs + 1]: document d is tokens[off[d] .. off[d+1]),
 *                 its last token the end-of-text id; off[0] = 0, off[n_docs] = n_tokens
 *   attributes    format_version, source, tokenizer_sha256, tokenizer_kind,
 *                 vocab_size, eot_id, documents, tokens, text_tokens, bytes
 * A shard is written as NAME.h5.tmp and renamed when complete, so a file
 * with the final name is always whole. */
#ifndef PRESIGHT_SHARDS_H
#define PRESIGHT_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SHARD_FORMAT_VERSION 1
#define SHARD_NAME_MAX 256
#define SHARD_PATH_MAX 4096

/* What every shard of a source shares. */
typedef struct shard_meta {
    char source[SHARD_NAME_MAX];
    char tokenizer_sha256[65];
    char tokenizer_kind[16];
    uint32_t vocab_size; /* token ids are < vocab_size */
    uint32_t eot_id;     /* the separator after every document */
} shard_meta;

/* ---- writing ----------------------------------------------------------- */

typedef struct shard_writer shard_writer;

/* Creates path.tmp; chunk_tokens is the HDF5 chunk of /tokens (0: default). */
int shard_writer_create(shard_writer **out, const char *path, const shard_meta *meta, size_t chunk_tokens,
                        ps_error *err);
/* Appends one document: its n ids, then the end-of-text id. text_bytes is
 * the size of the text it came from (for the bytes attribute). */
int shard_writer_append(shard_writer *w, const uint32_t *ids, size_t n, uint64_t text_bytes, ps_error *err);
uint64_t shard_writer_tokens(const shard_writer *w);
uint64_t shard_writer_documents(const shard_writer *w);
uint64_t shard_writer_bytes(const shard_writer *w);
/* Writes the attributes, closes, syncs and renames path.tmp to path; frees w. */
int shard_writer_commit(shard_writer *w, ps_error *err);
/* Closes and removes path.tmp; frees w. */
void shard_writer_abort(shard_writer *w);

/* ---- reading one shard ------------------------------------------------- */

typedef struct shard_file shard_file;

int shard_file_open(shard_file **out, const char *path, ps_error *err);
void shard_file_close(shard_file *f);
uint64_t shard_file_tokens(const shard_file *f);
uint64_t shard_file_documents(const shard_file *f);
const shard_meta *shard_file_meta(const shard_file *f);
/* tokens[start .. start + n) in one hyperslab read. */
int shard_file_read(shard_file *f, uint64_t start, uint64_t n, uint32_t *out, ps_error *err);
/* doc_offsets[first .. first + n). */
int shard_file_read_offsets(shard_file *f, uint64_t first, uint64_t n, uint64_t *out, ps_error *err);

/* ---- a source: its card and shards, as one token stream ----------------- */

typedef struct shard_entry {
    char file[SHARD_NAME_MAX]; /* name inside the source folder */
    uint64_t tokens, documents, bytes;
    uint64_t first_token; /* offset of its first token in the source's stream */
} shard_entry;

typedef struct shard_source {
    char name[SHARD_NAME_MAX];
    char dir[SHARD_PATH_MAX];
    shard_meta meta;
    char tokenizer_path[SHARD_PATH_MAX]; /* as the card records it ("" if not) */
    int n_shards;
    shard_entry *shards;
    uint64_t tokens, documents, bytes;
    /* lazily opened handles, at most SHARD_SOURCE_MAX_OPEN at once */
    shard_file **open;
    int n_open;
    uint64_t reads; /* window reads served (for the benchmark) */
} shard_source;

#define SHARD_SOURCE_MAX_OPEN 64

/* Reads DIR/card.json (a complete ingest) and lists its shards. */
int shard_source_open(shard_source **out, const char *dir, ps_error *err);
void shard_source_close(shard_source *s);
/* stream[pos .. pos + n) of the source (shards back to back), across shard
 * boundaries as needed. */
int shard_source_read(shard_source *s, uint64_t pos, uint64_t n, uint32_t *out, ps_error *err);

/* Writes path (via path.tmp): one uint8 dataset per shard of s, named as
 * the shard file, masks[i][0 .. n_segments[i]); root attributes segment,
 * labels (comma-separated bit names), tagger, source, tokenizer_sha256. */
int shard_labels_write(const char *path, const shard_source *s, uint8_t *const *masks, const uint64_t *n_segments,
                       int segment, const char *label_names, const char *tagger, ps_error *err);

/* The folder names under root that hold a card.json of an ingest, sorted.
 * *names is one allocation (free it); returns the count or -1. */
int shard_root_sources(const char *root, char (**names)[SHARD_NAME_MAX], ps_error *err);

#endif
