/* labels.h - the study's segment labels: every fixed-length segment (1024
 * tokens) of a source is tagged, multi-label or none, with
 *   reasoning: code, math, science        visual: concept, attribute, relationship
 * plus the "any" columns (reasoning = any of the first three, visual = any of
 * the last three). The study tagged with a 32B LLM; presight's built-in
 * tagger is a fast lexicon-and-rule classifier on the decoded text (its
 * precision and recall against a hand-labelled sample are in
 * datasets/README.md), and labels from an external tagger can be imported.
 *
 * Files (see datasets/README.md, "Segment labels"):
 *   DIR/NAME/labels.h5     one uint8 dataset per shard, /<shard file name>,
 *                          one bitmask per segment (bit i = label i below);
 *                          attributes segment, labels, tagger, tokenizer_sha256
 *   DIR/label_rates.tsv    percent of segments per label, per source */
#ifndef PRESIGHT_LABELS_H
#define PRESIGHT_LABELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "shards.h"

enum {
    LABEL_CODE,
    LABEL_MATH,
    LABEL_SCIENCE,
    LABEL_CONCEPT,
    LABEL_ATTRIBUTE,
    LABEL_RELATIONSHIP,
    LABEL_COUNT
};
#define LABEL_REASONING_MASK 0x07u
#define LABEL_VISUAL_MASK 0x38u

/* "code", "math", "science", "concept", "attribute", "relationship". */
const char *label_name(int label);
/* Accepts those names and the study's ("code reasoning", "visual concept",
 * ...), case-insensitive; -1 for none. */
int label_parse(const char *name);

/* ---- the built-in tagger --------------------------------------------------- */

typedef struct label_classifier label_classifier;

/* The per-label evidence behind a decision (densities per word or line). */
typedef struct label_scores {
    double value[LABEL_COUNT];
    double threshold[LABEL_COUNT];
    int words, lines;
} label_scores;

/* lexicon_dir NULL: the lexicons compiled into the binary (datasets/lexicon/). */
int label_classifier_new(label_classifier **out, const char *lexicon_dir, ps_error *err);
void label_classifier_free(label_classifier *c);
/* The label bitmask of one segment of text; scores may be NULL. Thread-safe. */
unsigned label_classify(const label_classifier *c, const char *text, size_t len, label_scores *scores);

/* ---- rates ------------------------------------------------------------------ */

typedef struct label_rates {
    char source[SHARD_NAME_MAX];
    uint64_t segments;
    uint64_t count[LABEL_COUNT];
    uint64_t reasoning, visual; /* segments with any reasoning / any visual label */
} label_rates;

void label_rates_add(label_rates *r, unsigned mask);
/* Percent of segments (0 for none). */
double label_rate(const label_rates *r, int label);
double label_rate_reasoning(const label_rates *r);
double label_rate_visual(const label_rates *r);

/* The study's table: source, segments, then percent per label and "any". */
void label_rates_print(FILE *out, const label_rates *r, int n);
int label_rates_write(const char *path, const label_rates *r, int n, ps_error *err);
/* Reads a table written by label_rates_write; *rates is malloc'd. */
int label_rates_read(const char *path, label_rates **rates, int *n, ps_error *err);

/* ---- tagging and importing shards ------------------------------------------- */

typedef struct label_options {
    const char *shards_dir;     /* DIR: every source under it, or only sources[] */
    const char *const *sources; /* NULL: all */
    int n_sources;
    int segment;                /* tokens per segment (1024) */
    const char *tokenizer_path; /* NULL: the path in each card */
    const char *lexicon_dir;    /* NULL: built in */
    const char *import_path;    /* JSONL of an external tagger instead of the built-in one */
    const char *export_path;    /* write every segment's text as JSONL for an external tagger */
    int threads;                /* 0: all cores */
    FILE *log;
} label_options;

/* Tags (or imports, or exports) and writes DIR/NAME/labels.h5 for each source
 * and DIR/label_rates.tsv (merged with the rows of sources not relabelled).
 * *rates (malloc'd, may be NULL) receives the rows of this call. */
int labels_run(const label_options *o, label_rates **rates, int *n_rates, ps_error *err);

#endif
