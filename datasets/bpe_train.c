/* bpe_train.c - byte-level BPE training (see bpe_train.h).
 *
 * The standard fast algorithm: pieces of the text are counted once, so each
 * distinct piece (a "word") is merged once however often it occurs; a table
 * of pair counts is kept up to date incrementally; each pair knows the words
 * that hold it, so a merge touches only those; and a max-heap with lazy
 * deletion yields the most frequent pair (an entry whose count has changed
 * since it was pushed is re-pushed with the current count when it surfaces). */
#include "bpe_train.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer.h"

#define MAX_VOCAB ((1u << 21) - 1)
#define EMPTY_KEY UINT64_MAX

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    for (; n; p++, n--) h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static inline uint64_t mix64(uint64_t x) {
    x *= 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

/* p (an array of *cap elements) grown to hold need, or NULL with p left as
 * it was. Callers assign the result back. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(p, c * elem);
    if (q) *cap = c;
    return q;
}

/* ---- counting pieces ------------------------------------------------------ */

typedef struct piece_slot {
    uint64_t hash; /* 0: empty */
    uint64_t count;
    size_t at;
    size_t len;
} piece_slot;

typedef struct counter {
    piece_slot *slots;
    size_t cap, used;
    unsigned char *arena;
    size_t arena_n, arena_cap;
    size_t pieces;
} counter;

static int counter_rehash(counter *c) {
    size_t cap = c->cap ? 2 * c->cap : 1 << 16;
    piece_slot *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->slots[i].hash) continue;
        size_t j = c->slots[i].hash & (cap - 1);
        while (s[j].hash) j = (j + 1) & (cap - 1);
        s[j] = c->slots[i];
    }
    free(c->slots);
    c->slots = s, c->cap = cap;
    return 0;
}

static int count_piece(void *ctx, const unsigned char *p, size_t n) {
    counter *c = ctx;
    c->pieces++;
    if (2 * (c->used + 1) > c->cap && counter_rehash(c) != 0) return -1;
    uint64_t h = hash_bytes(p, n) | 1;
    size_t mask = c->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        piece_slot *s = &c->slots[i];
        if (s->hash == h && s->len == n && memcmp(c->arena + s->at, p, n) == 0) {
            s->count++;
            return 0;
        }
        if (s->hash) continue;
        unsigned char *arena = grow(c->arena, &c->arena_cap, c->arena_n + n, 1);
        if (!arena) return -1;
        c->arena = arena;
        memcpy(c->arena + c->arena_n, p, n);
        *s = (piece_slot){h, 1, c->arena_n, n};
        c->arena_n += n;
        c->used++;
        return 0;
    }
}

/* Counts the pieces of one file, or of its first *budget bytes (cut after
 * the last newline there), and takes what it read off *budget. */
static int count_file(const tokenizer_splitter *sp, counter *c, const char *path, size_t *budget, size_t *read,
                      ps_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ps_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return ps_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) return close(fd), 0;
    unsigned char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return ps_fail(err, "%s: cannot map: %s", path, strerror(errno));
    size_t take = size < *budget ? size : *budget;
    if (take < size) {
        const unsigned char *nl = memrchr(map, '\n', take);
        if (nl) take = (size_t)(nl - map) + 1;
    }
    int rc = tokenizer_split(sp, map, take, count_piece, c, err);
    munmap(map, size);
    if (rc != 0) return ps_fail(err, "%s: out of memory counting pieces", path);
    *budget -= take;
    *read += take;
    return 0;
}

/* ---- the merge state ------------------------------------------------------ */

typedef struct word {
    uint64_t count;
    size_t start; /* into syms */
    size_t len;   /* shrinks as merges apply */
} word;

typedef struct pair_info {
    int64_t count;
    uint32_t a, b;
    uint32_t *words; /* words that held (a, b) when it formed: some may not any more */
    uint32_t n, cap;
    uint32_t touched; /* last merge step whose count went up */
} pair_info;

typedef struct heap_entry {
    int64_t count;
    uint64_t key; /* a << 32 | b: ties go to the smaller */
    uint32_t pair;
} heap_entry;

typedef struct trainer {
    word *words;
    size_t n_words;
    uint32_t *syms;
    pair_info *pairs;
    size_t n_pairs, pairs_cap;
    uint64_t *map_keys; /* pair key -> index, open addressing */
    uint32_t *map_vals;
    size_t map_cap;
    heap_entry *heap;
    size_t n_heap, heap_cap;
    uint32_t *touched; /* pairs whose count rose in this step */
    size_t n_touched, touched_cap;
    /* tokens: bytes by id, and a set to catch a merge that rebuilds a token */
    unsigned char *tok_bytes;
    size_t tok_n, tok_cap;
    size_t *tok_off;
    size_t n_tokens, tok_off_cap;
    uint32_t *tok_set;
    size_t tok_set_cap;
} trainer;

static int map_rehash(trainer *t) {
    size_t cap = t->map_cap ? 2 * t->map_cap : 1 << 16;
    uint64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) return free(keys), free(vals), -1;
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; i < t->map_cap; i++) {
        if (t->map_keys[i] == EMPTY_KEY) continue;
        size_t j = mix64(t->map_keys[i]) & (cap - 1);
        while (keys[j] != EMPTY_KEY) j = (j + 1) & (cap - 1);
        keys[j] = t->map_keys[i], vals[j] = t->map_vals[i];
    }
    free(t->map_keys), free(t->map_vals);
    t->map_keys = keys, t->map_vals = vals, t->map_cap = cap;
    return 0;
}

/* The index of pair (a, b), created with count 0 if new; -1 out of memory. */
static int64_t pair_index(trainer *t, uint32_t a, uint32_t b) {
    if (2 * (t->n_pairs + 1) > t->map_cap && map_rehash(t) != 0) return -1;
    uint64_t key = (uint64_t)a << 32 | b;
    size_t mask = t->map_cap - 1, i = mix64(key) & mask;
    for (; t->map_keys[i] != EMPTY_KEY; i = (i + 1) & mask)
        if (t->map_keys[i] == key) return t->map_vals[i];
    pair_info *pairs = grow(t->pairs, &t->pairs_cap, t->n_pairs + 1, sizeof *t->pairs);
    if (!pairs) return -1;
    t->pairs = pairs;
    t->map_keys[i] = key;
    t->map_vals[i] = (uint32_t)t->n_pairs;
    t->pairs[t->n_pairs] = (pair_info){.a = a, .b = b, .touched = UINT32_MAX};
    return (int64_t)t->n_pairs++;
}

static int add_word(pair_info *p, uint32_t w) {
    if (p->n && p->words[p->n - 1] == w) return 0; /* a word adds itself in one go */
    size_t cap = p->cap;
    uint32_t *words = grow(p->words, &cap, (size_t)p->n + 1, sizeof *p->words);
    if (!words || cap > UINT32_MAX) return -1;
    p->words = words, p->cap = (uint32_t)cap;
    p->words[p->n++] = w;
    return 0;
}

static int better(const heap_entry *x, const heap_entry *y) {
    return x->count > y->count || (x->count == y->count && x->key < y->key);
}

static int heap_push(trainer *t, uint32_t pair) {
    heap_entry *heap = grow(t->heap, &t->heap_cap, t->n_heap + 1, sizeof *t->heap);
    if (!heap) return -1;
    t->heap = heap;
    const pair_info *p = &t->pairs[pair];
    heap_entry e = {p->count, (uint64_t)p->a << 32 | p->b, pair};
    size_t i = t->n_heap++;
    while (i > 0 && better(&e, &t->heap[(i - 1) / 2])) t->heap[i] = t->heap[(i - 1) / 2], i = (i - 1) / 2;
    t->heap[i] = e;
    return 0;
}

static heap_entry heap_pop(trainer *t) {
    heap_entry top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&t->heap[c + 1], &t->heap[c])) c++;
        if (!better(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c], i = c;
    }
    t->heap[i] = last;
    return top;
}

/* Adds delta occurrences of (a, b) found in word w during merge step. */
static int change(trainer *t, uint32_t a, uint32_t b, int64_t delta, uint32_t w, uint32_t step) {
    int64_t k = pair_index(t, a, b);
    if (k < 0) return -1;
    pair_info *p = &t->pairs[k];
    p->count += delta;
    if (delta <= 0) return 0;
    if (p->touched != step) {
        p->touched = step;
        uint32_t *touched = grow(t->touched, &t->touched_cap, t->n_touched + 1, sizeof *t->touched);
        if (!touched) return -1;
        t->touched = touched;
        t->touched[t->n_touched++] = (uint32_t)k;
    }
    return add_word(p, w);
}

/* Replaces each (a, b) in word w by id, left to right, reporting how the
 * neighbouring pairs change (the same bookkeeping as Hugging Face's). */
static int merge_word(trainer *t, uint32_t w, uint32_t a, uint32_t b, uint32_t id, uint32_t step) {
    word *wd = &t->words[w];
    uint32_t *s = t->syms + wd->start;
    size_t len = wd->len, r = 0, o = 0;
    int64_t c = (int64_t)wd->count;
    int rc = 0;
    while (r < len && rc == 0) {
        if (r + 1 < len && s[r] == a && s[r + 1] == b) {
            if (o > 0) {
                rc |= change(t, s[o - 1], a, -c, w, step);
                rc |= change(t, s[o - 1], id, c, w, step);
            }
            if (r + 2 < len) {
                rc |= change(t, b, s[r + 2], -c, w, step);
                rc |= change(t, id, s[r + 2], c, w, step);
            }
            s[o++] = id;
            r += 2;
        } else {
            s[o++] = s[r++];
        }
    }
    wd->len = o;
    return rc;
}

/* ---- tokens --------------------------------------------------------------- */

static const unsigned char *token(const trainer *t, uint32_t id, size_t *len) {
    *len = t->tok_off[id + 1] - t->tok_off[id];
    return t->tok_bytes + t->tok_off[id];
}

/* The id of the token with bytes p[0..n), or UINT32_MAX. */
static uint32_t token_find(const trainer *t, const unsigned char *p, size_t n, size_t *slot) {
    size_t mask = t->tok_set_cap - 1, i = hash_bytes(p, n) & mask;
    for (; t->tok_set[i] != UINT32_MAX; i = (i + 1) & mask) {
        size_t len;
        const unsigned char *q = token(t, t->tok_set[i], &len);
        if (len == n && memcmp(p, q, n) == 0) return t->tok_set[i];
    }
    *slot = i;
    return UINT32_MAX;
}

/* The id for the bytes of a followed by b: an existing token's (BPE can
 * build one string two ways) or a new one. */
static int token_join(trainer *t, uint32_t a, uint32_t b, uint32_t *id) {
    size_t la, lb, slot = 0;
    token(t, a, &la);
    token(t, b, &lb);
    unsigned char *bytes = grow(t->tok_bytes, &t->tok_cap, t->tok_n + la + lb, 1);
    if (!bytes) return -1;
    t->tok_bytes = bytes;
    size_t *off = grow(t->tok_off, &t->tok_off_cap, t->n_tokens + 2, sizeof *t->tok_off);
    if (!off) return -1;
    t->tok_off = off;
    unsigned char *dst = t->tok_bytes + t->tok_n; /* after the grow: token() pointers may have moved */
    memcpy(dst, t->tok_bytes + t->tok_off[a], la);
    memcpy(dst + la, t->tok_bytes + t->tok_off[b], lb);
    *id = token_find(t, dst, la + lb, &slot);
    if (*id != UINT32_MAX) return 0;
    *id = (uint32_t)t->n_tokens++;
    t->tok_n += la + lb;
    t->tok_off[t->n_tokens] = t->tok_n;
    t->tok_set[slot] = *id;
    return 0;
}

static int tokens_init(trainer *t, size_t vocab_size) {
    t->tok_set_cap = 1024;
    while (t->tok_set_cap < 2 * vocab_size) t->tok_set_cap *= 2;
    t->tok_set = malloc(t->tok_set_cap * sizeof *t->tok_set);
    t->tok_bytes = malloc(t->tok_cap = 1 << 16);
    t->tok_off = malloc((t->tok_off_cap = 1024) * sizeof *t->tok_off);
    if (!t->tok_set || !t->tok_bytes || !t->tok_off) return -1;
    memset(t->tok_set, 0xff, t->tok_set_cap * sizeof *t->tok_set);
    for (size_t b = 0; b < 256; b++) {
        size_t slot = 0;
        t->tok_bytes[b] = (unsigned char)b;
        t->tok_off[b] = b, t->tok_off[b + 1] = b + 1;
        t->n_tokens = b + 1, t->tok_n = b + 1;
        token_find(t, t->tok_bytes + b, 1, &slot);
        t->tok_set[slot] = (uint32_t)b;
    }
    return 0;
}

/* ---- training ------------------------------------------------------------- */

/* Words longer than this are cut: a merge rescans each word holding its
 * pair, so one 10 MB run of letters would make every merge slow, while its
 * cut points cost the statistics next to nothing. */
#define MAX_WORD 1024

/* Words from the counted pieces (one-byte pieces hold no pair), and the
 * initial pair counts, word lists and heap. */
static int words_init(trainer *t, const counter *c) {
    size_t n_syms = 0, n = 0;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].hash && c->slots[i].len > 1)
            n += (c->slots[i].len + MAX_WORD - 1) / MAX_WORD, n_syms += c->slots[i].len;
    if (n > UINT32_MAX) return -1;
    t->words = malloc((n ? n : 1) * sizeof *t->words);
    t->syms = malloc((n_syms ? n_syms : 1) * sizeof *t->syms);
    if (!t->words || !t->syms) return -1;
    size_t at = 0;
    for (size_t i = 0; i < c->cap; i++) {
        const piece_slot *s = &c->slots[i];
        if (!s->hash || s->len < 2) continue;
        for (size_t k = 0; k < s->len; k++) t->syms[at + k] = c->arena[s->at + k];
        for (size_t k = 0; k < s->len; k += MAX_WORD)
            t->words[t->n_words++] = (word){s->count, at + k, s->len - k < MAX_WORD ? s->len - k : MAX_WORD};
        at += s->len;
    }
    for (uint32_t w = 0; w < t->n_words; w++) {
        const word *wd = &t->words[w];
        for (size_t i = 0; i + 1 < wd->len; i++) {
            int64_t k = pair_index(t, t->syms[wd->start + i], t->syms[wd->start + i + 1]);
            if (k < 0 || add_word(&t->pairs[k], w) != 0) return -1;
            t->pairs[k].count += (int64_t)wd->count;
        }
    }
    for (uint32_t k = 0; k < t->n_pairs; k++)
        if (heap_push(t, k) != 0) return -1;
    return 0;
}

/* The most frequent pair still present, or -1 when none is left. */
static int64_t best_pair(trainer *t) {
    while (t->n_heap) {
        heap_entry e = heap_pop(t);
        int64_t now = t->pairs[e.pair].count;
        if (now == e.count && now > 0) return e.pair;
        if (now > 0 && heap_push(t, e.pair) != 0) return -2;
    }
    return -1;
}

/* One merge: the pair's words are rewritten, then every pair whose count
 * rose goes (back) into the heap. */
static int merge_step(trainer *t, uint32_t k, uint32_t step) {
    uint32_t a = t->pairs[k].a, b = t->pairs[k].b, id;
    if (token_join(t, a, b, &id) != 0) return -1;
    uint32_t *list = t->pairs[k].words, n = t->pairs[k].n;
    t->pairs[k].words = NULL, t->pairs[k].n = t->pairs[k].cap = 0;
    t->n_touched = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) rc = merge_word(t, list[i], a, b, id, step);
    free(list);
    t->pairs[k].count = 0; /* every occurrence is merged */
    for (size_t i = 0; i < t->n_touched && rc == 0; i++)
        if (t->pairs[t->touched[i]].count > 0) rc = heap_push(t, t->touched[i]);
    return rc;
}

static int write_vocab(const trainer *t, const char *path, ps_error *err) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    errno = 0; /* a write below that fails says why (a full disk) */
    for (uint32_t id = 0; id < t->n_tokens; id++) {
        size_t n;
        const unsigned char *p = token(t, id, &n);
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
            char q[4] = {a[v >> 18], a[(v >> 12) & 63], i + 1 < n ? a[(v >> 6) & 63] : '=',
                         i + 2 < n ? a[v & 63] : '='};
            fwrite(q, 1, 4, f);
        }
        fprintf(f, " %u\n", id);
    }
    int bad = ferror(f), why = errno;
    if (fclose(f) != 0) bad = 1, why = errno;
    if (bad) {
        unlink(tmp);
        return ps_fail(err, "%s: write error: %s", tmp, strerror(why ? why : EIO));
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return ps_fail(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    }
    return 0;
}

static void trainer_free(trainer *t) {
    for (size_t k = 0; k < t->n_pairs; k++) free(t->pairs[k].words);
    free(t->words), free(t->syms), free(t->pairs), free(t->map_keys), free(t->map_vals), free(t->heap);
    free(t->touched), free(t->tok_bytes), free(t->tok_off), free(t->tok_set);
}

static int count_all(const char *const *files, size_t n_files, size_t max_bytes, counter *c, size_t *read,
                     ps_error *err) {
    tokenizer_splitter *sp;
    if (tokenizer_splitter_new(&sp, err) != 0) return -1;
    size_t budget = max_bytes ? max_bytes : SIZE_MAX;
    int rc = 0;
    for (size_t i = 0; i < n_files && budget > 0 && rc == 0; i++)
        rc = count_file(sp, c, files[i], &budget, read, err);
    tokenizer_splitter_free(sp);
    return rc;
}

static int merge_all(trainer *t, size_t vocab_size, ps_error *err) {
    for (uint32_t step = 0; t->n_tokens < vocab_size; step++) {
        int64_t k = best_pair(t);
        if (k == -1) break; /* the text has no pair left to merge */
        if (k < 0 || merge_step(t, (uint32_t)k, step) != 0) return ps_fail(err, "out of memory while merging");
    }
    return 0;
}

int bpe_train(const char *const *files, size_t n_files, size_t vocab_size, size_t max_bytes, const char *out_path,
              bpe_train_stats *stats, ps_error *err) {
    if (vocab_size < 256 || vocab_size > MAX_VOCAB)
        return ps_fail(err, "bpe_train: vocab_size %zu is outside 256 .. %u", vocab_size, MAX_VOCAB);
    bpe_train_stats st = {0};
    counter c = {0};
    trainer t = {0};
    double start = seconds();
    int rc = count_all(files, n_files, max_bytes, &c, &st.bytes_read, err);
    st.pieces = c.pieces, st.unique_pieces = c.used;
    if (rc == 0 && (tokens_init(&t, vocab_size) != 0 || words_init(&t, &c) != 0))
        rc = ps_fail(err, "bpe_train: out of memory for %zu distinct pieces", c.used);
    free(c.slots), free(c.arena);
    st.count_seconds = seconds() - start;
    start = seconds();
    if (rc == 0) rc = merge_all(&t, vocab_size, err);
    if (rc == 0) rc = write_vocab(&t, out_path, err);
    st.merge_seconds = seconds() - start;
    st.tokens = t.n_tokens;
    trainer_free(&t);
    if (stats) *stats = st;
    return rc;
}
