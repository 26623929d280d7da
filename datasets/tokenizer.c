/* tokenizer.c - byte-level BPE in the tiktoken layout (see tokenizer.h).
 *
 * Encoding is tiktoken's algorithm: the regex cuts text into pieces; a piece
 * that is itself a token is emitted whole; otherwise its bytes are merged,
 * always the adjacent pair whose concatenation has the lowest rank first (the
 * leftmost on ties), until no adjacent pair is a token. Short pieces use
 * tiktoken's scan over an array; long ones (whitespace runs, digit strings,
 * binary junk) use a heap so that they stay O(n log n). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

/* The Llama 3 / cl100k_base split pattern, verbatim. */
static const char PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                              " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define NO_RANK UINT32_MAX
/* Pieces up to this many bytes merge by tiktoken's array scan (quadratic but
 * tiny constants); longer ones by the heap. */
#define SHORT_PIECE 64

/* ---- hashing and string tables ------------------------------------------- */

/* The n bytes (1..8) at p as a number, equal for equal bytes of the same n;
 * fixed-size loads only, since a variable memcpy would be a call. */
static inline uint64_t load_upto8(const unsigned char *p, size_t n) {
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << ((n - 4) * 8);
    }
    return p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
}

static inline int bytes_eq(const unsigned char *a, const unsigned char *b, size_t n) {
    if (n <= 8) return load_upto8(a, n) == load_upto8(b, n);
    if (n <= 16) return load_upto8(a, 8) == load_upto8(b, 8) && load_upto8(a + n - 8, 8) == load_upto8(b + n - 8, 8);
    return memcmp(a, b, n) == 0;
}

/* A fast multiplicative hash: token strings are short, and this runs for
 * every candidate pair of every piece. */
static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    if (n) h = (h ^ load_upto8(p, n)) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

/* Open addressing from byte strings to indices; the strings live in an arena
 * at off[i] .. off[i+1]. tag 0 marks an empty slot. */
typedef struct slot {
    uint32_t tag, index;
} slot;

typedef struct strtab {
    slot *slots;
    size_t mask;
    unsigned char *arena;
    uint32_t *off; /* count + 1 offsets */
    size_t count;
} strtab;

static inline uint32_t tag_of(uint64_t h) { return (uint32_t)(h >> 40) | 1u; }

static inline uint32_t strtab_find(const strtab *t, const unsigned char *p, size_t n) {
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = tag_of(h);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        slot s = t->slots[i];
        if (!s.tag) return NO_RANK;
        if (s.tag == tag && t->off[s.index + 1] - t->off[s.index] == n && bytes_eq(t->arena + t->off[s.index], p, n))
            return s.index;
    }
}

/* Indexes every string of t. *dup is NO_RANK when all are distinct, else
 * the index of a string that repeats the one at *dup_of. */
static int strtab_index(strtab *t, uint32_t *dup_of, uint32_t *dup, ps_error *err) {
    size_t cap = 16;
    while (cap < 2 * t->count) cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) return ps_fail(err, "out of memory for a %zu-slot table", cap);
    t->mask = cap - 1;
    *dup = NO_RANK;
    for (uint32_t k = 0; k < t->count; k++) {
        const unsigned char *p = t->arena + t->off[k];
        size_t n = t->off[k + 1] - t->off[k];
        uint32_t seen = strtab_find(t, p, n);
        if (seen != NO_RANK) {
            *dup_of = seen, *dup = k;
            return 0;
        }
        uint64_t h = hash_bytes(p, n);
        size_t i = h & t->mask;
        while (t->slots[i].tag) i = (i + 1) & t->mask;
        t->slots[i] = (slot){tag_of(h), k};
    }
    return 0;
}

/* The rank of the concatenation of tokens a and b, keyed by the pair: the
 * merge loop's only question, answered in one probe without touching token
 * bytes. Each slot packs a (21 bits), b (21) and the rank (21); all ones is
 * empty. Built from the vocabulary: every split of every token into two
 * tokens is a pair. */
#define PAIR_BITS 21
#define PAIR_MASK ((1u << PAIR_BITS) - 1)
#define PAIR_EMPTY UINT64_MAX

typedef struct pairtab {
    uint64_t *slots;
    size_t mask;
    int shift;
} pairtab;

static inline size_t pair_hash(const pairtab *t, uint64_t key) {
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> t->shift);
}

static inline uint32_t pair_rank(const pairtab *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << PAIR_BITS | b;
    for (size_t i = pair_hash(t, key);; i = (i + 1) & t->mask) {
        uint64_t s = t->slots[i];
        if (s == PAIR_EMPTY) return NO_RANK;
        if (s >> PAIR_BITS == key) return (uint32_t)s & PAIR_MASK;
    }
}

static void pair_insert(pairtab *t, uint32_t a, uint32_t b, uint32_t rank) {
    uint64_t key = (uint64_t)a << PAIR_BITS | b;
    size_t i = pair_hash(t, key);
    while (t->slots[i] != PAIR_EMPTY) {
        if (t->slots[i] >> PAIR_BITS == key) return; /* one byte string, one rank */
        i = (i + 1) & t->mask;
    }
    t->slots[i] = key << PAIR_BITS | rank;
}

static void strtab_free(strtab *t) {
    free(t->slots);
    free(t->arena);
    free(t->off);
}

/* ---- the tokenizer ------------------------------------------------------- */

struct tokenizer_splitter {
    pcre2_code *code;
    pcre2_match_context *limits; /* read-only while matching: threads share it */
    int jit;                     /* 0 when the platform refused JIT: pcre2_match then */
};

struct tokenizer {
    tokenizer_kind kind;
    strtab ord;      /* index = rank = id */
    pairtab pairs;   /* (id, id) -> rank of the concatenation */
    strtab special;  /* index k -> special_id[k] */
    uint32_t *special_id;
    int32_t *special_at; /* id - ord.count -> k, or -1 for a hole */
    size_t vocab_size;
    size_t max_special_len;
    uint32_t byte_rank[256];
    tokenizer_splitter split;
    char sha256[65];
};

void tokenizer_ids_free(tokenizer_ids *v) {
    free(v->ids);
    *v = (tokenizer_ids){0};
}

void tokenizer_bytes_free(tokenizer_bytes *v) {
    free(v->bytes);
    *v = (tokenizer_bytes){0};
}

static int ids_reserve(tokenizer_ids *v, size_t more, ps_error *err) {
    if (v->cap - v->n >= more) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap - v->n < more) cap *= 2;
    uint32_t *p = realloc(v->ids, cap * sizeof *p);
    if (!p) return ps_fail(err, "out of memory for %zu token ids", cap);
    v->ids = p, v->cap = cap;
    return 0;
}

static int bytes_reserve(tokenizer_bytes *v, size_t more, ps_error *err) {
    if (v->cap - v->n >= more) return 0;
    size_t cap = v->cap ? v->cap : 1024;
    while (cap - v->n < more) cap *= 2;
    unsigned char *p = realloc(v->bytes, cap);
    if (!p) return ps_fail(err, "out of memory for %zu decoded bytes", cap);
    v->bytes = p, v->cap = cap;
    return 0;
}

int tokenizer_kind_parse(const char *name, tokenizer_kind *out, ps_error *err) {
    static const tokenizer_kind all[] = {TOKENIZER_PLAIN, TOKENIZER_LLAMA3, TOKENIZER_CL100K};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, tokenizer_kind_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return ps_fail(err, "unknown tokenizer kind '%s' (expected plain, llama3 or cl100k)", name);
}

const char *tokenizer_kind_name(tokenizer_kind kind) {
    switch (kind) {
    case TOKENIZER_PLAIN: return "plain";
    case TOKENIZER_LLAMA3: return "llama3";
    case TOKENIZER_CL100K: return "cl100k";
    }
    return "?";
}

/* ---- pre-tokenisation ---------------------------------------------------- */

static int splitter_init(tokenizer_splitter *s, ps_error *err) {
    int code;
    PCRE2_SIZE at;
    /* MATCH_INVALID_UTF: invalid UTF-8 never matches, so it falls into the
     * gaps between matches, which become pieces of their own. */
    s->code = pcre2_compile((PCRE2_SPTR)PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                            &code, &at, NULL);
    if (!s->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return ps_fail(err, "the split pattern does not compile at offset %zu: %s", (size_t)at, (char *)msg);
    }
    s->jit = pcre2_jit_compile(s->code, PCRE2_JIT_COMPLETE) == 0;
    /* The default match limit (10 million steps) stops \s*[\r\n]+ from
     * backtracking through a whitespace run of more than about 10 MB; the
     * work is linear in the run, so lift the limits instead. */
    s->limits = pcre2_match_context_create(NULL);
    if (!s->limits) return ps_fail(err, "out of memory for the regex match context");
    pcre2_set_match_limit(s->limits, UINT32_MAX);
    pcre2_set_depth_limit(s->limits, UINT32_MAX);
    pcre2_set_heap_limit(s->limits, UINT32_MAX);
    return 0;
}

static void splitter_clear(tokenizer_splitter *s) {
    pcre2_match_context_free(s->limits);
    pcre2_code_free(s->code);
}

int tokenizer_splitter_new(tokenizer_splitter **out, ps_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return ps_fail(err, "out of memory for the pre-tokeniser");
    if (splitter_init(*out, err) != 0) {
        splitter_clear(*out);
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

void tokenizer_splitter_free(tokenizer_splitter *s) {
    if (!s) return;
    splitter_clear(s);
    free(s);
}

/* Walks the pieces of one text: matches of the pattern, and the runs of
 * bytes between matches (invalid UTF-8) as pieces too. */
typedef struct piece_walk {
    const tokenizer_splitter *s;
    pcre2_match_data *md;
    const unsigned char *text;
    size_t len, pos;
    size_t match_start, match_end; /* the next match, found ahead of a gap */
} piece_walk;

static int walk_begin(piece_walk *w, const tokenizer_splitter *s, const void *text, size_t len, ps_error *err) {
    *w = (piece_walk){.s = s, .text = text, .len = len};
    w->md = pcre2_match_data_create(1, NULL);
    if (!w->md) return ps_fail(err, "out of memory for regex match data");
    return 0;
}

/* Yields the next piece in [*a, *b); returns 1, 0 at the end, -1 on error. */
static inline int walk_next(piece_walk *w, size_t *a, size_t *b, ps_error *err) {
    if (w->pos >= w->len) return 0;
    if (w->match_end <= w->pos) {
        const tokenizer_splitter *s = w->s;
        int rc = s->jit ? pcre2_jit_match(s->code, w->text, w->len, w->pos, 0, w->md, s->limits)
                        : pcre2_match(s->code, w->text, w->len, w->pos, 0, w->md, s->limits);
        if (rc == PCRE2_ERROR_NOMATCH) {
            w->match_start = w->match_end = w->len;
        } else if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ps_fail(err, "regex match failed at byte %zu: %s", w->pos, (char *)msg);
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
            w->match_start = ov[0], w->match_end = ov[1];
            /* No alternative of the pattern can match empty; guard anyway. */
            if (w->match_end <= w->match_start)
                return ps_fail(err, "regex matched empty at byte %zu", w->match_start);
        }
    }
    *a = w->pos;
    *b = w->match_start > w->pos ? w->match_start : w->match_end;
    w->pos = *b;
    return 1;
}

static void walk_end(piece_walk *w) { pcre2_match_data_free(w->md); }

int tokenizer_split(const tokenizer_splitter *s, const void *text, size_t len, tokenizer_piece_fn fn, void *ctx,
                    ps_error *err) {
    piece_walk w;
    if (walk_begin(&w, s, text, len, err) != 0) return -1;
    size_t a = 0, b = 0;
    int rc;
    while ((rc = walk_next(&w, &a, &b, err)) == 1)
        if (fn(ctx, w.text + a, b - a) != 0) {
            rc = -1;
            break;
        }
    walk_end(&w);
    return rc;
}

/* ---- merging ------------------------------------------------------------- */

static inline uint32_t rank_of(const tokenizer *t, const unsigned char *p, size_t n) {
    return strtab_find(&t->ord, p, n);
}

/* tiktoken's loop over an array of parts: id[i] is part i's token, rank[i]
 * the rank of parts i and i+1 joined. Writes the ids, returns their count. */
static size_t merge_short(const tokenizer *t, const unsigned char *p, size_t n, uint32_t *out) {
    uint32_t rank[SHORT_PIECE], id[SHORT_PIECE];
    size_t m = n;
    for (size_t i = 0; i < n; i++) id[i] = t->byte_rank[p[i]];
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(&t->pairs, id[i], id[i + 1]);
    rank[n - 1] = NO_RANK;
    for (;;) {
        uint32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) best = rank[i], bi = i;
        if (best == NO_RANK) break;
        /* Part bi swallows part bi+1. */
        memmove(rank + bi + 1, rank + bi + 2, (m - bi - 2) * sizeof *rank);
        memmove(id + bi + 1, id + bi + 2, (m - bi - 2) * sizeof *id);
        m--;
        id[bi] = best;
        rank[bi] = bi + 1 < m ? pair_rank(&t->pairs, best, id[bi + 1]) : NO_RANK;
        if (bi > 0) rank[bi - 1] = pair_rank(&t->pairs, id[bi - 1], best);
    }
    memcpy(out, id, m * sizeof *id);
    return m;
}

/* A 4-ary min-heap of (rank << 32 | start): lowest rank, then leftmost.
 * Four children share a cache line, which halves the misses of a binary
 * heap when a piece runs to megabytes. */
static void heap_push(uint64_t *h, size_t *n, uint64_t key) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 4] > key) h[i] = h[(i - 1) / 4], i = (i - 1) / 4;
    h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 4 * i + 1, end = c + 4 < *n ? c + 4 : *n;
        if (c >= *n) break;
        size_t best = c;
        for (size_t k = c + 1; k < end; k++)
            if (h[k] < h[best]) best = k;
        if (h[best] >= last) break;
        h[i] = h[best], i = best;
    }
    h[i] = last;
    return top;
}

/* The same merges as merge_short, for any length: parts form a linked list
 * keyed by their start byte; the heap holds candidate pairs, and an entry is
 * stale once its part died or its pair rank changed. */
static int merge_long(const tokenizer *t, const unsigned char *p, size_t n, tokenizer_ids *out, ps_error *err) {
    if (n >= UINT32_MAX) return ps_fail(err, "a single piece of %zu bytes is too long to merge", n);
    uint32_t *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    uint32_t *pair = malloc(n * sizeof *pair), *id = malloc(n * sizeof *id);
    uint64_t *heap = malloc(2 * n * sizeof *heap); /* n-1 pairs, then at most one more a merge */
    size_t nh = 0;
    if (!next || !prev || !pair || !id || !heap) {
        free(next), free(prev), free(pair), free(id), free(heap);
        return ps_fail(err, "out of memory merging a %zu-byte piece", n);
    }
    for (size_t i = 0; i < n; i++) {
        next[i] = (uint32_t)i + 1, prev[i] = (uint32_t)i - 1, id[i] = t->byte_rank[p[i]];
        pair[i] = NO_RANK;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        pair[i] = pair_rank(&t->pairs, id[i], id[i + 1]);
        if (pair[i] != NO_RANK) heap_push(heap, &nh, (uint64_t)pair[i] << 32 | i);
    }
    while (nh) {
        uint64_t key = heap_pop(heap, &nh);
        uint32_t r = (uint32_t)(key >> 32), i = (uint32_t)key;
        if (next[i] == UINT32_MAX || pair[i] != r) continue; /* stale */
        uint32_t j = next[i], k = next[j];
        next[j] = UINT32_MAX; /* j is swallowed */
        next[i] = k;
        if (k < n) prev[k] = i;
        id[i] = r;
        pair[i] = k < n ? pair_rank(&t->pairs, r, id[k]) : NO_RANK;
        if (pair[i] != NO_RANK) heap_push(heap, &nh, (uint64_t)pair[i] << 32 | i);
        if (i > 0) {
            uint32_t h = prev[i];
            pair[h] = pair_rank(&t->pairs, id[h], r);
            if (pair[h] != NO_RANK) heap_push(heap, &nh, (uint64_t)pair[h] << 32 | h);
        }
    }
    int rc = ids_reserve(out, n, err);
    if (rc == 0)
        for (uint32_t i = 0; i < n; i = next[i]) out->ids[out->n++] = id[i];
    free(next), free(prev), free(pair), free(id), free(heap);
    return rc;
}

static inline int encode_piece(const tokenizer *t, const unsigned char *p, size_t n, tokenizer_ids *out,
                               ps_error *err) {
    if (ids_reserve(out, n < SHORT_PIECE ? n : SHORT_PIECE, err) != 0) return -1;
    if (n == 1) {
        out->ids[out->n++] = t->byte_rank[p[0]];
        return 0;
    }
    uint32_t whole = rank_of(t, p, n);
    if (whole != NO_RANK) {
        out->ids[out->n++] = whole;
        return 0;
    }
    if (n <= SHORT_PIECE) {
        out->n += merge_short(t, p, n, out->ids + out->n);
        return 0;
    }
    return merge_long(t, p, n, out, err);
}

static int encode_ordinary(const tokenizer *t, const unsigned char *text, size_t len, tokenizer_ids *out,
                           ps_error *err) {
    if (len == 0) return 0;
    piece_walk w;
    if (walk_begin(&w, &t->split, text, len, err) != 0) return -1;
    size_t a = 0, b = 0;
    int rc;
    while ((rc = walk_next(&w, &a, &b, err)) == 1)
        if (encode_piece(t, text + a, b - a, out, err) != 0) {
            rc = -1;
            break;
        }
    walk_end(&w);
    return rc;
}

/* The next special name in text[from..len): every name is "<|...|>" with no
 * "|>" inside, so a candidate at "<|" ends at the first "|>" after it. */
static const unsigned char *find_special(const tokenizer *t, const unsigned char *text, size_t from, size_t len,
                                         uint32_t *id, size_t *name_len) {
    const unsigned char *end = text + len;
    for (const unsigned char *q = text + from; q < end;) {
        q = memmem(q, (size_t)(end - q), "<|", 2);
        if (!q) return NULL;
        size_t room = (size_t)(end - q) < t->max_special_len ? (size_t)(end - q) : t->max_special_len;
        const unsigned char *close = room > 2 ? memmem(q + 2, room - 2, "|>", 2) : NULL;
        if (close) {
            size_t n = (size_t)(close + 2 - q);
            uint32_t k = strtab_find(&t->special, q, n);
            if (k != NO_RANK) {
                *id = t->special_id[k], *name_len = n;
                return q;
            }
        }
        q++;
    }
    return NULL;
}

int tokenizer_encode(const tokenizer *t, const void *text, size_t len, int allow_special, tokenizer_ids *out,
                     ps_error *err) {
    const unsigned char *s = text;
    /* A fair first guess (about 4 bytes a token) spares most regrowth. */
    if (ids_reserve(out, len / 4 + 16, err) != 0) return -1;
    if (!allow_special || t->special.count == 0) return encode_ordinary(t, s, len, out, err);
    size_t pos = 0;
    for (;;) {
        uint32_t id;
        size_t n;
        const unsigned char *q = find_special(t, s, pos, len, &id, &n);
        size_t stop = q ? (size_t)(q - s) : len;
        if (encode_ordinary(t, s + pos, stop - pos, out, err) != 0) return -1;
        if (!q) return 0;
        if (ids_reserve(out, 1, err) != 0) return -1;
        out->ids[out->n++] = id;
        pos = stop + n;
    }
}

const unsigned char *tokenizer_token(const tokenizer *t, uint32_t id, size_t *len) {
    const strtab *tab = &t->ord;
    uint32_t k = id;
    if (id >= t->ord.count) {
        if (id >= t->vocab_size || t->special_at[id - t->ord.count] < 0) return NULL;
        tab = &t->special;
        k = (uint32_t)t->special_at[id - t->ord.count];
    }
    *len = tab->off[k + 1] - tab->off[k];
    return tab->arena + tab->off[k];
}

int tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, tokenizer_bytes *out, ps_error *err) {
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const unsigned char *p = tokenizer_token(t, ids[i], &len);
        if (!p)
            return ps_fail(err, "decode: id %u at position %zu is no token of this %s vocabulary (size %zu)",
                           ids[i], i, tokenizer_kind_name(t->kind), t->vocab_size);
        if (bytes_reserve(out, len, err) != 0) return -1;
        memcpy(out->bytes + out->n, p, len);
        out->n += len;
    }
    return 0;
}

size_t tokenizer_vocab_size(const tokenizer *t) { return t->vocab_size; }
size_t tokenizer_n_ordinary(const tokenizer *t) { return t->ord.count; }
tokenizer_kind tokenizer_get_kind(const tokenizer *t) { return t->kind; }
const char *tokenizer_sha256(const tokenizer *t) { return t->sha256; }

int64_t tokenizer_special_id(const tokenizer *t, const char *name) {
    uint32_t k = strtab_find(&t->special, (const unsigned char *)name, strlen(name));
    return k == NO_RANK ? -1 : (int64_t)t->special_id[k];
}

/* ---- loading ------------------------------------------------------------- */

static int read_file(const char *path, unsigned char **buf, size_t *size, ps_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ps_fail(err, "%s: cannot open the vocabulary: %s", path, strerror(errno));
    size_t cap = 1 << 22, n = 0;
    unsigned char *p = malloc(cap);
    for (;;) {
        if (!p) {
            fclose(f);
            return ps_fail(err, "%s: out of memory reading the vocabulary", path);
        }
        n += fread(p + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *q = realloc(p, cap *= 2);
        if (!q) free(p);
        p = q;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(p);
        return ps_fail(err, "%s: read error", path);
    }
    *buf = p, *size = n;
    return 0;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 (padded, standard alphabet); returns the decoded length or -1. */
static long b64_decode(const unsigned char *s, size_t n, unsigned char *out) {
    if (n == 0 || n % 4) return -1;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = (i + j >= n - pad) ? 0 : b64_value(s[i + j]);
            if (d < 0) return -1;
            v = v << 6 | (uint32_t)d;
        }
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    return (long)(o - pad);
}

/* One parsed line: its token bytes (in the scratch arena) and rank. */
typedef struct vocab_line {
    uint32_t at, len, rank, lineno;
} vocab_line;

static int parse_line(const char *path, size_t lineno, const unsigned char *s, size_t n, unsigned char *arena,
                      size_t *used, vocab_line *out, ps_error *err) {
    const unsigned char *sp = memchr(s, ' ', n);
    if (!sp) return ps_fail(err, "%s:%zu: expected 'base64 rank', found no space", path, lineno);
    long len = b64_decode(s, (size_t)(sp - s), arena + *used);
    if (len <= 0) return ps_fail(err, "%s:%zu: '%.*s' is not a base64 token", path, lineno, (int)(sp - s), s);
    const unsigned char *d = sp + 1, *end = s + n;
    if (d == end) return ps_fail(err, "%s:%zu: the rank is missing", path, lineno);
    uint64_t rank = 0;
    for (; d < end; d++) {
        if (*d >= '0' && *d <= '9') rank = rank * 10 + (uint64_t)(*d - '0');
        if (*d < '0' || *d > '9' || rank >= 1u << 30)
            return ps_fail(err, "%s:%zu: rank '%.*s' is not a number below 2^30", path, lineno,
                           (int)(end - sp - 1), sp + 1);
    }
    *out = (vocab_line){(uint32_t)*used, (uint32_t)len, (uint32_t)rank, (uint32_t)lineno};
    *used += (size_t)len;
    return 0;
}

/* Parses every non-empty line into lines[] (and their bytes into arena). */
static int parse_vocab(const char *path, const unsigned char *buf, size_t size, vocab_line *lines, size_t *nlines,
                       unsigned char *arena, ps_error *err) {
    size_t used = 0, lineno = 0, count = 0;
    for (size_t pos = 0; pos < size;) {
        const unsigned char *nl = memchr(buf + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - buf) : size, n = end - pos;
        lineno++;
        if (n && buf[pos + n - 1] == '\r') n--;
        if (n && parse_line(path, lineno, buf + pos, n, arena, &used, &lines[count++], err) != 0) return -1;
        pos = end + 1;
    }
    *nlines = count;
    return 0;
}

/* Orders the lines by rank into t->ord; ranks must be exactly 0 .. n-1. */
static int build_ordinary(tokenizer *t, const char *path, const vocab_line *lines, size_t n,
                          const unsigned char *arena, ps_error *err) {
    if (n == 0) return ps_fail(err, "%s: the vocabulary is empty", path);
    uint32_t *line_of = malloc(n * sizeof *line_of);
    t->ord.off = malloc((n + 1) * sizeof *t->ord.off);
    if (!line_of || !t->ord.off) {
        free(line_of);
        return ps_fail(err, "%s: out of memory", path);
    }
    memset(line_of, 0xff, n * sizeof *line_of);
    int rc = 0;
    size_t total = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (lines[i].rank >= n)
            rc = ps_fail(err, "%s:%u: rank %u, but there are only %zu tokens (ranks must be 0 .. %zu)", path,
                         lines[i].lineno, lines[i].rank, n, n - 1);
        else if (line_of[lines[i].rank] != UINT32_MAX)
            rc = ps_fail(err, "%s:%u: rank %u already given on line %u", path, lines[i].lineno, lines[i].rank,
                         lines[line_of[lines[i].rank]].lineno);
        else
            line_of[lines[i].rank] = (uint32_t)i, total += lines[i].len;
    }
    if (rc == 0 && !(t->ord.arena = malloc(total))) rc = ps_fail(err, "%s: out of memory", path);
    for (size_t r = 0, at = 0; r < n && rc == 0; r++) {
        const vocab_line *l = &lines[line_of[r]];
        memcpy(t->ord.arena + at, arena + l->at, l->len);
        t->ord.off[r] = (uint32_t)at;
        at += l->len;
        t->ord.off[r + 1] = (uint32_t)at;
    }
    t->ord.count = n;
    uint32_t dup_of, dup;
    if (rc == 0) rc = strtab_index(&t->ord, &dup_of, &dup, err);
    if (rc == 0 && dup != NO_RANK)
        rc = ps_fail(err, "%s:%u: the token of rank %u repeats rank %u (line %u)", path, lines[line_of[dup]].lineno,
                     dup, dup_of, lines[line_of[dup_of]].lineno);
    free(line_of);
    return rc;
}

/* Every way to cut a token into two tokens is a pair that merges into it.
 * The pairs are gathered first so that the table is sized to them (load
 * factor at most 3/4: a small table stays in cache). */
static int build_pairs(tokenizer *t, const char *path, ps_error *err) {
    if (t->ord.count > PAIR_MASK)
        return ps_fail(err, "%s: %zu tokens; at most %u are supported", path, t->ord.count, PAIR_MASK);
    size_t n_pairs = 0, room = 1 << 16;
    uint32_t(*found)[3] = malloc(room * sizeof *found);
    for (uint32_t r = 0; r < t->ord.count && found; r++) {
        const unsigned char *p = t->ord.arena + t->ord.off[r];
        size_t n = t->ord.off[r + 1] - t->ord.off[r];
        for (size_t k = 1; k < n && found; k++) {
            uint32_t a = rank_of(t, p, k), b = a == NO_RANK ? NO_RANK : rank_of(t, p + k, n - k);
            if (b == NO_RANK) continue;
            if (n_pairs == room) {
                void *q = realloc(found, (room *= 2) * sizeof *found);
                if (!q) free(found);
                found = q;
                if (!found) break;
            }
            found[n_pairs][0] = a, found[n_pairs][1] = b, found[n_pairs++][2] = r;
        }
    }
    size_t cap = 1024;
    int bits = 10;
    while (cap * 3 < n_pairs * 4) cap *= 2, bits++;
    pairtab *pt = &t->pairs;
    pt->slots = found ? malloc(cap * sizeof *pt->slots) : NULL;
    if (!pt->slots) {
        free(found);
        return ps_fail(err, "%s: out of memory for the pair table", path);
    }
    memset(pt->slots, 0xff, cap * sizeof *pt->slots);
    pt->mask = cap - 1, pt->shift = 64 - bits;
    for (size_t i = 0; i < n_pairs; i++) pair_insert(pt, found[i][0], found[i][1], found[i][2]);
    free(found);
    return 0;
}

static int find_single_bytes(tokenizer *t, const char *path, ps_error *err) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_rank[b] = rank_of(t, &c, 1);
        if (t->byte_rank[b] == NO_RANK)
            return ps_fail(err, "%s: no token for the single byte 0x%02x, so some text could not be encoded", path,
                           b);
    }
    return 0;
}

/* ---- special tokens ------------------------------------------------------ */

typedef struct special_def {
    const char *name;
    uint32_t id;
} special_def;

/* Llama 3.1's names (Meta's tokenizer.py): ids 128000..128010 by name, then
 * <|reserved_special_token_3|> .. <|reserved_special_token_247|>. */
static const char *const LLAMA3_NAMED[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
};
#define LLAMA3_ORDINARY 128000u
#define LLAMA3_SPECIALS 256u

static const special_def CL100K_SPECIALS[] = {
    {"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
    {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276},
};
#define CL100K_ORDINARY 100256u

static const char *const PLAIN_NAMES[TOKENIZER_PLAIN_SPECIALS] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>"};

/* Fills defs (room for LLAMA3_SPECIALS) for this kind; names of the reserved
 * Llama ids are printed into names. Returns the count. */
static size_t special_defs(tokenizer_kind kind, size_t n_ord, special_def *defs, char (*names)[40]) {
    size_t n = 0;
    switch (kind) {
    case TOKENIZER_LLAMA3:
        for (uint32_t i = 0; i < LLAMA3_SPECIALS; i++) {
            if (i < sizeof LLAMA3_NAMED / sizeof *LLAMA3_NAMED) {
                defs[n++] = (special_def){LLAMA3_NAMED[i], LLAMA3_ORDINARY + i};
            } else {
                snprintf(names[i], sizeof names[i], "<|reserved_special_token_%u|>",
                         i - (unsigned)(sizeof LLAMA3_NAMED / sizeof *LLAMA3_NAMED) + 3);
                defs[n++] = (special_def){names[i], LLAMA3_ORDINARY + i};
            }
        }
        break;
    case TOKENIZER_CL100K:
        for (size_t i = 0; i < sizeof CL100K_SPECIALS / sizeof *CL100K_SPECIALS; i++) defs[n++] = CL100K_SPECIALS[i];
        break;
    case TOKENIZER_PLAIN:
        for (size_t i = 0; i < TOKENIZER_PLAIN_SPECIALS; i++)
            defs[n++] = (special_def){PLAIN_NAMES[i], (uint32_t)(n_ord + i)};
        break;
    }
    return n;
}

static int check_kind_size(const tokenizer *t, const char *path, ps_error *err) {
    size_t want = t->kind == TOKENIZER_LLAMA3 ? LLAMA3_ORDINARY : t->kind == TOKENIZER_CL100K ? CL100K_ORDINARY : 0;
    if (want && t->ord.count != want)
        return ps_fail(err, "%s: a %s vocabulary has %zu ordinary tokens, this file has %zu (wrong file or kind?)",
                       path, tokenizer_kind_name(t->kind), want, t->ord.count);
    return 0;
}

static int build_specials(tokenizer *t, const char *path, ps_error *err) {
    special_def defs[LLAMA3_SPECIALS];
    char names[LLAMA3_SPECIALS][40];
    size_t n = special_defs(t->kind, t->ord.count, defs, names), total = 0;
    t->vocab_size = t->ord.count;
    for (size_t k = 0; k < n; k++) {
        total += strlen(defs[k].name);
        if (defs[k].id + 1 > t->vocab_size) t->vocab_size = defs[k].id + 1;
    }
    strtab *s = &t->special;
    s->count = n;
    s->arena = malloc(total + 1);
    s->off = malloc((n + 1) * sizeof *s->off);
    t->special_id = malloc((n + 1) * sizeof *t->special_id);
    t->special_at = malloc((t->vocab_size - t->ord.count + 1) * sizeof *t->special_at);
    if (!s->arena || !s->off || !t->special_id || !t->special_at) return ps_fail(err, "%s: out of memory", path);
    memset(t->special_at, 0xff, (t->vocab_size - t->ord.count + 1) * sizeof *t->special_at);
    s->off[0] = 0;
    for (size_t k = 0; k < n; k++) {
        size_t len = strlen(defs[k].name);
        memcpy(s->arena + s->off[k], defs[k].name, len);
        s->off[k + 1] = s->off[k] + (uint32_t)len;
        t->special_id[k] = defs[k].id;
        t->special_at[defs[k].id - t->ord.count] = (int32_t)k;
        if (len > t->max_special_len) t->max_special_len = len;
    }
    uint32_t dup_of, dup;
    return strtab_index(s, &dup_of, &dup, err);
}

static int load_parts(tokenizer *t, const char *path, const unsigned char *buf, size_t size, ps_error *err) {
    sha256_hex(buf, size, t->sha256);
    /* A valid line takes at least 6 bytes ("QQ== 0"), so size/4 bounds the
     * line count; decoded tokens are shorter than their base64. */
    size_t room = size / 4 + 1, n = 0;
    vocab_line *lines = malloc(room * sizeof *lines);
    unsigned char *arena = malloc(size + 4);
    int rc = (!lines || !arena) ? ps_fail(err, "%s: out of memory", path) : 0;
    if (rc == 0) rc = parse_vocab(path, buf, size, lines, &n, arena, err);
    if (rc == 0) rc = build_ordinary(t, path, lines, n, arena, err);
    free(lines);
    free(arena);
    if (rc == 0) rc = find_single_bytes(t, path, err);
    if (rc == 0) rc = check_kind_size(t, path, err);
    if (rc == 0) rc = build_pairs(t, path, err);
    if (rc == 0) rc = build_specials(t, path, err);
    if (rc == 0) rc = splitter_init(&t->split, err);
    return rc;
}

int tokenizer_load(tokenizer **out, const char *path, tokenizer_kind kind, ps_error *err) {
    *out = NULL;
    unsigned char *buf = NULL;
    size_t size = 0;
    if (read_file(path, &buf, &size, err) != 0) return -1;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(buf);
        return ps_fail(err, "%s: out of memory", path);
    }
    t->kind = kind;
    int rc = load_parts(t, path, buf, size, err);
    free(buf);
    if (rc != 0) {
        tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    strtab_free(&t->ord);
    strtab_free(&t->special);
    free(t->pairs.slots);
    free(t->special_id);
    free(t->special_at);
    splitter_clear(&t->split);
    free(t);
}
