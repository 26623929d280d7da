/* ingest.h - text sources to tokenized HDF5 shards (datasets/shards.h).
 *
 * Inputs are files and folders (walked recursively, in name order): JSONL
 * files (.jsonl, .ndjson, .json: one document per line, the text in one
 * string field), or text files (one document each, cut into several at
 * paragraph ends when longer than max_doc_bytes), either one gzip-compressed
 * or not. Documents are read one at a time, tokenized in parallel batches of
 * bounded size and appended to the shard being written, which is committed
 * (renamed from .tmp) once it holds shard_tokens tokens: memory never depends
 * on the size of the corpus.
 *
 * Under mpirun each rank takes its own files (balanced by size) and writes
 * its own shards; rank 0 writes the card once every rank is done. Each rank
 * keeps a manifest (DIR/NAME/.ingest/manifest-R-of-W.json, replaced
 * atomically at every shard commit) of its committed shards, the input files
 * they complete and the read position after their last document: a killed
 * ingest run again with the same arguments continues from there and ends
 * with the same shards as an uninterrupted one.
 *
 * Bad input never stops an ingest: an unreadable or binary file, a JSONL line
 * that is not an object with the text field, an empty document are counted,
 * reported as path:line and skipped; text that is not valid UTF-8 is counted
 * and reported, and its bytes are tokenized anyway (the tokenizer is
 * byte-level). The counts go into the card. */
#ifndef PRESIGHT_INGEST_H
#define PRESIGHT_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm.h"
#include "error.h"

typedef struct ingest_counts {
    uint64_t documents, tokens, bytes; /* written; tokens include one end-of-text per document */
    uint64_t files_read;               /* input files read to their end (skipped ones included) */
    uint64_t empty_documents;          /* nothing but whitespace: skipped */
    uint64_t malformed_lines;          /* JSONL line: not JSON, not an object, no string text field: skipped */
    uint64_t unreadable_files;         /* cannot be opened or read (a corrupt gzip stream): skipped from there */
    uint64_t binary_files;             /* a NUL byte in the first 8 KiB of a text file: skipped */
    uint64_t invalid_utf8_documents;   /* still tokenized, as bytes */
    uint64_t invalid_utf8_sequences;
    uint64_t split_documents; /* extra documents from text files longer than max_doc_bytes */
    uint64_t heldout_documents; /* JSONL documents whose "id" is in the held-out partition (heldout.h): skipped */
} ingest_counts;

typedef struct ingest_options {
    const char *source;  /* NAME: the folder under out_dir and the card's "source" */
    const char *out_dir; /* DIR */
    const char *const *inputs;
    int n_inputs;
    const char *tokenizer_path; /* .tiktoken file */
    const char *tokenizer_kind; /* "plain" | "llama3" | "cl100k" */
    const char *text_field;     /* JSONL field holding the text ("text") */
    uint64_t shard_tokens;      /* a shard is committed once it holds this many tokens */
    size_t chunk_tokens;        /* HDF5 chunk of /tokens; 0 = 65536 */
    size_t max_doc_bytes;       /* longer text files are cut into documents of at most this */
    size_t batch_bytes;         /* text tokenized in parallel at a time */
    const char *licence;        /* card licence when the inputs carry no corpus card */
    const char *origin;         /* card origin note, likewise */
    int threads;                /* OpenMP threads per rank; 0 = this node's cores / its ranks */
    int max_reports;            /* issue lines printed per rank (the counts are complete) */
    FILE *log;                  /* progress and issues (stderr); NULL = silent */
} ingest_options;

void ingest_options_default(ingest_options *o);

typedef struct ingest_result {
    ingest_counts counts; /* over all ranks */
    uint64_t files, shards;
    double seconds;       /* wall time of this call */
    uint64_t bytes_now;   /* text bytes tokenized by this call (a resumed run does only the rest) */
    int already_complete; /* the card was there: nothing was done */
} ingest_result;

/* Ingests (or resumes, or confirms) one source. Collective over c. */
int ingest_run(const ingest_options *o, comm *c, ingest_result *res, ps_error *err);

/* ---- the document reader, on its own (the tokenizer trainer uses it) ---- */

typedef struct doc_reader doc_reader;

typedef struct ingest_doc {
    const char *text; /* valid until the next call */
    size_t len;
    uint64_t line;       /* line of the input where it starts (1-based) */
    uint64_t end_offset; /* uncompressed bytes of the file consumed after it */
    uint64_t end_line;   /* lines consumed after it */
} ingest_doc;

/* Whether a file name is read as JSONL (.jsonl/.ndjson/.json, optionally .gz). */
int ingest_is_jsonl(const char *path);

/* Opens path at an uncompressed byte offset (0 = start). Issues are counted
 * in counts and, up to *reports_left lines, printed to log. */
int doc_reader_open(doc_reader **out, const char *path, const char *text_field, size_t max_doc_bytes,
                    uint64_t offset, uint64_t line, ingest_counts *counts, FILE *log, int *reports_left);
/* 1: *doc holds the next document; 0: end of file (or the file was skipped). */
int doc_reader_next(doc_reader *r, ingest_doc *doc);
void doc_reader_close(doc_reader *r);

/* Expands inputs into the files an ingest reads, in order: folders are
 * walked recursively in name order, skipping hidden entries, *.tmp and the
 * card.json of a corpus folder. *files is an array of n malloc'd paths (free
 * with ingest_free_files); sizes may be NULL. Returns n or -1. */
int ingest_list_files(const char *const *inputs, int n_inputs, char ***files, uint64_t **sizes, ps_error *err);
void ingest_free_files(char **files, uint64_t *sizes, int n);

#endif
