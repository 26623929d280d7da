/* ingest.c - text sources to tokenized HDF5 shards (see ingest.h).
 *
 * Sections: listing the input files; the document reader (gzip or plain,
 * JSONL or text, issues counted); the per-rank manifest that makes a killed
 * ingest resumable; the card; the ingest loop (read a batch of documents,
 * tokenize it with OpenMP, append it in order, commit shards as they fill).
 *
 * Test hook: PRESIGHT_INGEST_KILL_AFTER=N makes the process SIGKILL itself
 * after appending its N-th document (tests/t_data_cli.sh uses it to kill an
 * ingest in the middle of a shard, deterministically). */
#include "ingest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sha256.h"
#include "heldout.h"
#include "shards.h"
#include "tokenizer.h"

#define PATH_CAP 4096
#define BINARY_PROBE 8192
#define READ_BLOCK (1u << 20)
/* A JSONL line longer than this is reported and skipped, so one broken file
 * (a missing newline in gigabytes) cannot take all the memory. */
#define MAX_LINE_BYTES ((size_t)1 << 30)

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ingest_options_default(ingest_options *o) {
    memset(o, 0, sizeof *o);
    o->tokenizer_kind = "plain";
    o->text_field = "text";
    o->shard_tokens = 256ull << 20; /* 1 GiB of uint32 */
    o->max_doc_bytes = 16u << 20;
    o->batch_bytes = 8u << 20;
    o->max_reports = 100;
    o->log = stderr;
}

/* ------------------------------------------------------------ input files */

typedef struct file_list {
    char **paths;
    uint64_t *sizes;
    int n, cap;
} file_list;

static int list_push(file_list *l, const char *path, uint64_t size) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->paths, (size_t)cap * sizeof *p);
        if (p) l->paths = p;
        uint64_t *s = realloc(l->sizes, (size_t)cap * sizeof *s);
        if (s) l->sizes = s;
        if (!p || !s) return -1;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(path))) return -1;
    l->sizes[l->n++] = size;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* Hidden entries, unfinished files and a folder's data card are not text. */
static int skipped_entry(const char *name) {
    return name[0] == '.' || ends_with(name, ".tmp") || strcmp(name, "card.json") == 0;
}

static int walk(const char *path, file_list *l, int depth, ps_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return list_push(l, path, 0) ? ps_fail(err, "out of memory") : 0; /* reported on read */
    if (!S_ISDIR(st.st_mode)) return list_push(l, path, (uint64_t)st.st_size) ? ps_fail(err, "out of memory") : 0;
    if (depth > 64) return ps_fail(err, "%s: folders nested more than 64 deep (a symlink loop?)", path);
    DIR *d = opendir(path);
    if (!d) return list_push(l, path, 0) ? ps_fail(err, "out of memory") : 0;
    int n = 0, cap = 0, rc = 0;
    char **names = NULL;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (skipped_entry(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, (size_t)cap * sizeof *names);
            if (!grown) rc = ps_fail(err, "out of memory");
            else names = grown;
        }
        if (rc == 0 && !(names[n++] = strdup(e->d_name))) rc = ps_fail(err, "out of memory");
    }
    closedir(d);
    if (rc == 0) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            char child[PATH_CAP];
            if ((size_t)snprintf(child, sizeof child, "%s/%s", path, names[i]) >= sizeof child)
                rc = ps_fail(err, "%s/%s: path too long", path, names[i]);
            else
                rc = walk(child, l, depth + 1, err);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int ingest_list_files(const char *const *inputs, int n_inputs, char ***files, uint64_t **sizes, ps_error *err) {
    file_list l = {0};
    for (int i = 0; i < n_inputs; i++) {
        /* A path given twice would be ingested twice: that is what was asked. */
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s", inputs[i]);
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/') path[--len] = 0;
        if (walk(path, &l, 0, err)) {
            ingest_free_files(l.paths, l.sizes, l.n);
            return -1;
        }
    }
    *files = l.paths;
    if (sizes) *sizes = l.sizes;
    else free(l.sizes);
    return l.n;
}

void ingest_free_files(char **files, uint64_t *sizes, int n) {
    for (int i = 0; files && i < n; i++) free(files[i]);
    free(files);
    free(sizes);
}

int ingest_is_jsonl(const char *path) {
    char name[PATH_CAP];
    snprintf(name, sizeof name, "%s", path);
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".gz") == 0) name[n - 3] = 0;
    return ends_with(name, ".jsonl") || ends_with(name, ".ndjson") || ends_with(name, ".json");
}

/* ------------------------------------------------------------ the reader */

struct doc_reader {
    gzFile gz;
    char path[PATH_CAP];
    int jsonl, failed;
    const char *field;
    size_t max_doc;
    unsigned char *buf; /* bytes [start, end) not yet consumed */
    size_t cap, start, end;
    int eof;
    uint64_t offset, line; /* consumed so far (bytes of the uncompressed file, newlines) */
    json_tokener *tok;
    json_object *obj; /* the parsed line whose text the last doc points into */
    ingest_counts *counts;
    FILE *log;
    int *reports_left;
};

static void report(doc_reader *r, uint64_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void report(doc_reader *r, uint64_t line, const char *fmt, ...) {
    if (!r->log || !r->reports_left || *r->reports_left <= 0) return;
    if (--*r->reports_left == 0) {
        fprintf(r->log, "ingest: further issues are counted (in the card) but not printed\n");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    if (line) fprintf(r->log, "ingest: %s:%llu: ", r->path, (unsigned long long)line);
    else fprintf(r->log, "ingest: %s: ", r->path);
    vfprintf(r->log, fmt, ap);
    fputc('\n', r->log);
    va_end(ap);
}

/* Reads more of the file into buf; 0 when nothing more came. */
static int fill(doc_reader *r, size_t want) {
    if (r->eof || r->failed) return 0;
    if (r->start > 0 && r->start == r->end) r->start = r->end = 0;
    if (r->start > r->cap / 2) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    size_t need = r->end + (want > READ_BLOCK ? want : READ_BLOCK);
    if (need > r->cap) {
        size_t cap = r->cap ? r->cap : READ_BLOCK;
        while (cap < need) cap *= 2;
        unsigned char *grown = realloc(r->buf, cap + 1);
        if (!grown) {
            report(r, r->line + 1, "out of memory reading; rest of the file skipped");
            r->failed = 1;
            return 0;
        }
        r->buf = grown;
        r->cap = cap;
    }
    int got = gzread(r->gz, r->buf + r->end, (unsigned)(r->cap - r->end > (1u << 30) ? (1u << 30) : r->cap - r->end));
    if (got < 0) {
        int code;
        const char *msg = gzerror(r->gz, &code);
        r->counts->unreadable_files++;
        report(r, r->line + 1, "read error (%s); rest of the file skipped", msg);
        r->failed = 1;
        return 0;
    }
    if (got == 0) {
        /* zlib says end of file for a truncated stream too; gzerror tells. */
        int code;
        const char *msg = gzerror(r->gz, &code);
        if (code != Z_OK) {
            r->counts->unreadable_files++;
            report(r, r->line + 1, "read error (%s); rest of the file skipped", msg);
            r->failed = 1;
            return 0;
        }
        r->eof = 1;
    }
    r->end += (size_t)got;
    return got > 0;
}

int doc_reader_open(doc_reader **out, const char *path, const char *text_field, size_t max_doc_bytes,
                    uint64_t offset, uint64_t line, ingest_counts *counts, FILE *log, int *reports_left) {
    doc_reader *r = calloc(1, sizeof *r);
    *out = r;
    if (!r) return -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->jsonl = ingest_is_jsonl(path);
    r->field = text_field;
    r->max_doc = max_doc_bytes;
    r->counts = counts;
    r->log = log;
    r->reports_left = reports_left;
    r->offset = offset;
    r->line = line;
    struct stat st;
    if (stat(path, &st) != 0 || S_ISDIR(st.st_mode) || !(r->gz = gzopen(path, "rb"))) {
        counts->unreadable_files++;
        report(r, 0, "cannot open: %s; skipped", stat(path, &st) != 0 ? strerror(errno) : "not a readable file");
        r->failed = 1;
        return 0;
    }
    gzbuffer(r->gz, 256u << 10);
    if (offset > 0 && gzseek(r->gz, (z_off_t)offset, SEEK_SET) != (z_off_t)offset) {
        counts->unreadable_files++;
        report(r, 0, "cannot seek to byte %llu to resume (the file changed?); skipped", (unsigned long long)offset);
        r->failed = 1;
    }
    if (r->jsonl) r->tok = json_tokener_new();
    return 0;
}

void doc_reader_close(doc_reader *r) {
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    if (r->tok) json_tokener_free(r->tok);
    if (r->obj) json_object_put(r->obj);
    free(r->buf);
    free(r);
}

static int all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

/* Invalid UTF-8 sequences in s (overlongs, surrogates and > U+10FFFF count),
 * and the offset of the first. */
static uint64_t utf8_invalid(const unsigned char *s, size_t n, size_t *first) {
    uint64_t bad = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        int ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (s[i + k] & 0xc0) == 0x80;
        if (ok && len == 3) ok = !(c == 0xe0 && s[i + 1] < 0xa0) && !(c == 0xed && s[i + 1] > 0x9f);
        if (ok && len == 4) ok = !(c == 0xf0 && s[i + 1] < 0x90) && !(c == 0xf4 && s[i + 1] > 0x8f);
        if (ok) {
            i += len;
            continue;
        }
        if (bad++ == 0) *first = i;
        i++;
    }
    return bad;
}

static uint64_t count_lines(const char *s, size_t n) {
    uint64_t k = 0;
    for (const char *p = s; (p = memchr(p, '\n', (size_t)(s + n - p))); p++) k++;
    return k;
}

/* Counts and reports invalid UTF-8 in a document (tokenized anyway). */
static void check_utf8(doc_reader *r, const char *text, size_t len, uint64_t line) {
    size_t first = 0;
    uint64_t bad = utf8_invalid((const unsigned char *)text, len, &first);
    if (!bad) return;
    r->counts->invalid_utf8_documents++;
    r->counts->invalid_utf8_sequences += bad;
    uint64_t at = r->jsonl ? line : line + count_lines(text, first);
    report(r, at, "invalid UTF-8 (%llu sequence%s); tokenized as bytes", (unsigned long long)bad, bad == 1 ? "" : "s");
}

/* A JSONL line [p, p + n) (newline excluded) -> its text field, or NULL. */
static const char *parse_line(doc_reader *r, const char *p, size_t n, size_t *len, uint64_t line) {
    if (r->obj) json_object_put(r->obj);
    json_tokener_reset(r->tok);
    r->obj = n <= INT32_MAX ? json_tokener_parse_ex(r->tok, p, (int)n) : NULL;
    enum json_tokener_error e = json_tokener_get_error(r->tok);
    size_t end = r->obj ? json_tokener_get_parse_end(r->tok) : 0;
    json_object *v = NULL;
    const char *why = !r->obj || e != json_tokener_success ? "not valid JSON"
                      : !all_space(p + end, n - end)        ? "text after the JSON value"
                      : !json_object_is_type(r->obj, json_type_object) ? "not a JSON object"
                      : !json_object_object_get_ex(r->obj, r->field, &v) ? "no text field"
                      : !json_object_is_type(v, json_type_string)        ? "text field not a string"
                                                                         : NULL;
    if (why) {
        r->counts->malformed_lines++;
        report(r, line, "malformed JSONL line (%s, field \"%s\"); skipped", why, r->field);
        return NULL;
    }
    *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* The next line, newline excluded; 0 at end of file. Lines longer than
 * MAX_LINE_BYTES are consumed and reported. */
static int next_line(doc_reader *r, const char **p, size_t *n) {
    for (size_t scanned = 0;;) {
        size_t unscanned = r->end - r->start - scanned; /* 0 before the first read, when buf is still NULL */
        unsigned char *nl = unscanned ? memchr(r->buf + r->start + scanned, '\n', unscanned) : NULL;
        if (nl || (r->eof && r->end > r->start)) {
            size_t len = nl ? (size_t)(nl - (r->buf + r->start)) : r->end - r->start;
            *p = (const char *)r->buf + r->start;
            *n = len;
            r->start += len + (nl ? 1 : 0);
            r->offset += len + (nl ? 1 : 0);
            r->line++;
            return 1;
        }
        scanned = r->end - r->start;
        if (scanned > MAX_LINE_BYTES) {
            r->counts->malformed_lines++;
            report(r, r->line + 1, "line longer than %zu bytes; rest of the file skipped", MAX_LINE_BYTES);
            r->failed = 1;
            return 0;
        }
        if (!fill(r, scanned + 1) && (r->failed || r->end == r->start)) return 0;
    }
}

static int next_jsonl(doc_reader *r, ingest_doc *d) {
    const char *p;
    size_t n;
    while (next_line(r, &p, &n)) {
        uint64_t line = r->line;
        if (all_space(p, n)) continue; /* blank lines (a trailing one, say) are not documents */
        size_t len = 0;
        const char *text = parse_line(r, p, n, &len, line);
        if (!text) continue;
        if (all_space(text, len)) {
            r->counts->empty_documents++;
            report(r, line, "empty document; skipped");
            continue;
        }
        json_object *id = NULL;
        if (json_object_object_get_ex(r->obj, "id", &id) && json_object_is_type(id, json_type_string) &&
            ps_heldout_document(json_object_get_string(id), (size_t)json_object_get_string_len(id))) {
            r->counts->heldout_documents++; /* evaluation material: never pretrained on */
            continue;
        }
        check_utf8(r, text, len, line);
        *d = (ingest_doc){text, len, line, r->offset, r->line};
        return 1;
    }
    return 0;
}

/* Where to cut a text longer than the document limit: after a newline that
 * is followed by an ASCII letter, a place where the tokenizer's regex always
 * starts a new piece, so the pieces on both sides are what they would be
 * uncut. A paragraph end is preferred; with neither, a cut that does not
 * split a UTF-8 sequence. */
static size_t find_cut(const unsigned char *s, size_t max) {
    size_t floor = max / 2;
    size_t line_cut = 0;
    for (size_t i = max; i > floor; i--) {
        int letter = (s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z';
        if (!letter || s[i - 1] != '\n') continue;
        if (i >= 2 && s[i - 2] == '\n') return i;
        if (!line_cut) line_cut = i;
    }
    if (line_cut) return line_cut;
    size_t i = max;
    while (i > max - 3 && (s[i] & 0xc0) == 0x80) i--;
    return i;
}

static int next_text(doc_reader *r, ingest_doc *d) {
    for (;;) {
        while (r->end - r->start <= r->max_doc && fill(r, r->max_doc + 1 - (r->end - r->start))) {
        }
        size_t have = r->end - r->start;
        if (have == 0 && r->offset == 0 && !r->failed) { /* a file of zero bytes: an empty document */
            r->counts->empty_documents++;
            report(r, 0, "empty file; skipped");
            r->failed = 1;
        }
        if (have == 0) return 0;
        if (r->offset == 0 && memchr(r->buf + r->start, 0, have < BINARY_PROBE ? have : BINARY_PROBE)) {
            r->counts->binary_files++;
            report(r, 0, "binary file (a NUL byte in its first %d bytes); skipped", BINARY_PROBE);
            r->failed = 1;
            return 0;
        }
        int whole = have <= r->max_doc;
        size_t len = whole ? have : find_cut(r->buf + r->start, r->max_doc);
        const char *text = (const char *)r->buf + r->start;
        uint64_t line = r->line + 1;
        if (r->offset > 0) r->counts->split_documents++; /* a later piece of a long file */
        r->start += len;
        r->offset += len;
        r->line += count_lines(text, len);
        if (all_space(text, len)) {
            r->counts->empty_documents++;
            report(r, line, "empty document; skipped");
            continue;
        }
        check_utf8(r, text, len, line);
        *d = (ingest_doc){text, len, line, r->offset, r->line};
        return 1;
    }
}

int doc_reader_next(doc_reader *r, ingest_doc *d) {
    if (r->failed) return 0;
    return r->jsonl ? next_jsonl(r, d) : next_text(r, d);
}

/* ------------------------------------------------------------ run state */

typedef struct read_pos {
    int file; /* index into this rank's files */
    uint64_t offset, line;
} read_pos;

typedef struct committed_shard {
    char file[64];
    uint64_t tokens, documents, bytes;
} committed_shard;

typedef struct rank_state {
    read_pos next; /* where reading continues after the last committed document */
    ingest_counts counts;
    committed_shard *shards;
    int n_shards, cap;
    int complete;
} rank_state;

/* A document read and waiting to be tokenized and appended. */
typedef struct pending_doc {
    size_t at, len;      /* in the batch arena */
    read_pos end;        /* the read position after it */
    ingest_counts seen;  /* issue counts once it was read */
} pending_doc;

typedef struct ingest_ctx {
    const ingest_options *o;
    comm *c;
    int rank, world, threads;
    char dir[PATH_CAP], manifest[PATH_CAP + 64];
    char key[65]; /* hash of the files and every option that changes the shards */
    char **files;
    uint64_t *sizes;
    int n_files;
    int *mine, n_mine;
    tokenizer *tok;
    shard_meta meta;
    rank_state st;
    shard_writer *writer;
    int reports_left;
    uint64_t kill_after, appended, bytes_this_run;
    double start, last_progress;
} ingest_ctx;

static const struct {
    const char *name;
    size_t off;
} COUNT_FIELDS[] = {
    {"documents", offsetof(ingest_counts, documents)},
    {"tokens", offsetof(ingest_counts, tokens)},
    {"bytes", offsetof(ingest_counts, bytes)},
    {"files_read", offsetof(ingest_counts, files_read)},
    {"empty_documents", offsetof(ingest_counts, empty_documents)},
    {"malformed_lines", offsetof(ingest_counts, malformed_lines)},
    {"unreadable_files", offsetof(ingest_counts, unreadable_files)},
    {"binary_files", offsetof(ingest_counts, binary_files)},
    {"invalid_utf8_documents", offsetof(ingest_counts, invalid_utf8_documents)},
    {"invalid_utf8_sequences", offsetof(ingest_counts, invalid_utf8_sequences)},
    {"split_documents", offsetof(ingest_counts, split_documents)},
    {"heldout_documents", offsetof(ingest_counts, heldout_documents)},
};
#define N_COUNT_FIELDS ((int)(sizeof COUNT_FIELDS / sizeof COUNT_FIELDS[0]))

static uint64_t *count_at(ingest_counts *c, int i) { return (uint64_t *)((char *)c + COUNT_FIELDS[i].off); }

static json_object *counts_json(const ingest_counts *c, int from) {
    json_object *o = json_object_new_object();
    for (int i = from; i < N_COUNT_FIELDS; i++)
        json_object_object_add(o, COUNT_FIELDS[i].name, json_object_new_int64((int64_t)*count_at((ingest_counts *)c, i)));
    return o;
}

static void counts_from_json(json_object *o, ingest_counts *c) {
    json_object *v;
    for (int i = 0; i < N_COUNT_FIELDS; i++)
        if (json_object_object_get_ex(o, COUNT_FIELDS[i].name, &v)) *count_at(c, i) = (uint64_t)json_object_get_int64(v);
}

static void counts_add(ingest_counts *to, const ingest_counts *from) {
    for (int i = 0; i < N_COUNT_FIELDS; i++) *count_at(to, i) += *count_at((ingest_counts *)from, i);
}

static int64_t json_i64(json_object *o, const char *key) {
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static const char *json_string_of(json_object *o, const char *key) {
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                          : NULL;
}

static void sync_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* path.tmp, fsync, rename: a reader sees the old file or the new one. */
static int write_json_atomic(const char *path, json_object *o, ps_error *err) {
    char tmp[PATH_CAP + 80];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_object_to_file_ext(tmp, o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) != 0) {
        unlink(tmp);
        return ps_fail(err, "%s: cannot write (%s)", tmp, json_util_get_last_err());
    }
    sync_file(tmp);
    if (rename(tmp, path) != 0) return ps_fail(err, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
    char dir[PATH_CAP + 128];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    sync_file(slash ? dir : ".");
    return 0;
}

static int mkdirs(const char *path, ps_error *err) {
    char p[PATH_CAP + 64];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char keep = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) return ps_fail(err, "%s: cannot create: %s", p, strerror(errno));
            *s = keep;
            if (!keep) return 0;
        }
    }
}

/* ------------------------------------------------------------ the manifest */

static json_object *shards_json(const committed_shard *s, int n) {
    json_object *list = json_object_new_array();
    for (int i = 0; i < n; i++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "file", json_object_new_string(s[i].file));
        json_object_object_add(e, "documents", json_object_new_int64((int64_t)s[i].documents));
        json_object_object_add(e, "tokens", json_object_new_int64((int64_t)s[i].tokens));
        json_object_object_add(e, "bytes", json_object_new_int64((int64_t)s[i].bytes));
        json_object_array_add(list, e);
    }
    return list;
}

static int write_manifest(ingest_ctx *x, ps_error *err) {
    json_object *m = json_object_new_object(), *next = json_object_new_object(), *done = json_object_new_array();
    json_object_object_add(m, "format_version", json_object_new_int(SHARD_FORMAT_VERSION));
    json_object_object_add(m, "source", json_object_new_string(x->o->source));
    json_object_object_add(m, "key", json_object_new_string(x->key));
    json_object_object_add(m, "rank", json_object_new_int(x->rank));
    json_object_object_add(m, "world", json_object_new_int(x->world));
    json_object_object_add(m, "complete", json_object_new_boolean(x->st.complete));
    json_object_object_add(next, "file", json_object_new_int(x->st.next.file));
    json_object_object_add(next, "offset", json_object_new_int64((int64_t)x->st.next.offset));
    json_object_object_add(next, "line", json_object_new_int64((int64_t)x->st.next.line));
    json_object_object_add(m, "next", next);
    json_object_object_add(m, "counts", counts_json(&x->st.counts, 0));
    json_object_object_add(m, "shards", shards_json(x->st.shards, x->st.n_shards));
    for (int i = 0; i < x->st.next.file && i < x->n_mine; i++)
        json_object_array_add(done, json_object_new_string(x->files[x->mine[i]]));
    json_object_object_add(m, "files_done", done);
    int rc = write_json_atomic(x->manifest, m, err);
    json_object_put(m);
    return rc;
}

static int push_shard(rank_state *st, const committed_shard *s) {
    if (st->n_shards == st->cap) {
        int cap = st->cap ? 2 * st->cap : 16;
        committed_shard *grown = realloc(st->shards, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        st->shards = grown;
        st->cap = cap;
    }
    st->shards[st->n_shards++] = *s;
    return 0;
}

static int shards_from_json(json_object *list, rank_state *st) {
    size_t n = json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        committed_shard s = {{0}, 0, 0, 0};
        const char *file = json_string_of(e, "file");
        if (!file) return -1;
        snprintf(s.file, sizeof s.file, "%s", file);
        s.tokens = (uint64_t)json_i64(e, "tokens");
        s.documents = (uint64_t)json_i64(e, "documents");
        s.bytes = (uint64_t)json_i64(e, "bytes");
        if (push_shard(st, &s)) return -1;
    }
    return 0;
}

/* Loads a manifest into st; 0 when there is none (a fresh start). */
static int load_manifest(const char *path, const char *key, rank_state *st, ps_error *err) {
    if (access(path, F_OK) != 0) return 0;
    json_object *m = json_object_from_file(path), *next, *counts, *shards;
    const char *k = m ? json_string_of(m, "key") : NULL;
    int rc = 0;
    if (!m || !k || !json_object_object_get_ex(m, "next", &next) || !json_object_object_get_ex(m, "counts", &counts) ||
        !json_object_object_get_ex(m, "shards", &shards))
        rc = ps_fail(err, "%s: unreadable manifest (delete the source folder to start again)", path);
    else if (strcmp(k, key) != 0)
        rc = ps_fail(err,
                     "%s: an earlier ingest of other inputs or options (files, --text-field, --shard-tokens, "
                     "--max-doc-bytes, tokenizer) is in this folder: use another --out, or delete it",
                     path);
    if (rc == 0) {
        st->next.file = (int)json_i64(next, "file");
        st->next.offset = (uint64_t)json_i64(next, "offset");
        st->next.line = (uint64_t)json_i64(next, "line");
        counts_from_json(counts, &st->counts);
        json_object *done;
        st->complete = json_object_object_get_ex(m, "complete", &done) && json_object_get_boolean(done);
        if (shards_from_json(shards, st)) rc = ps_fail(err, "%s: bad shard list", path);
    }
    if (m) json_object_put(m);
    return rc;
}

/* ------------------------------------------------------------ set-up */

/* A hash of everything that decides the shards' content. */
static void make_key(ingest_ctx *x) {
    sha256_ctx h;
    sha256_init(&h);
    char opts[512];
    int n = snprintf(opts, sizeof opts, "presight-ingest-%d|%s|%s|%llu|%zu|%zu|%s", SHARD_FORMAT_VERSION, x->o->source,
                     x->o->text_field, (unsigned long long)x->o->shard_tokens, x->o->chunk_tokens, x->o->max_doc_bytes,
                     x->meta.tokenizer_sha256);
    sha256_update(&h, opts, (size_t)n + 1);
    for (int i = 0; i < x->n_files; i++) {
        sha256_update(&h, x->files[i], strlen(x->files[i]) + 1);
        sha256_update(&h, &x->sizes[i], sizeof x->sizes[i]);
    }
    unsigned char d[32];
    sha256_final(&h, d);
    for (int i = 0; i < 32; i++) snprintf(x->key + 2 * i, 3, "%02x", d[i]);
}

/* Files to ranks: largest first, each to the least loaded rank (ties to the
 * lower rank), then in input order on each rank. Same on every rank. */
static int assign_files(ingest_ctx *x, ps_error *err) {
    int n = x->n_files, *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    int *owner = malloc((size_t)(n ? n : 1) * sizeof *owner);
    uint64_t *load = calloc((size_t)x->world, sizeof *load);
    x->mine = malloc((size_t)(n ? n : 1) * sizeof *x->mine);
    if (!order || !owner || !load || !x->mine) {
        free(order), free(owner), free(load);
        return ps_fail(err, "out of memory");
    }
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort by size desc, index asc: stable and simple */
        for (int j = i; j > 0 && x->sizes[order[j]] > x->sizes[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int r = 1; r < x->world; r++)
            if (load[r] < load[best]) best = r;
        owner[order[i]] = best;
        load[best] += x->sizes[order[i]] + 1;
    }
    x->n_mine = 0;
    for (int i = 0; i < n; i++)
        if (owner[i] == x->rank) x->mine[x->n_mine++] = i;
    free(order), free(owner), free(load);
    return 0;
}

static int load_tokenizer(ingest_ctx *x, ps_error *err) {
    tokenizer_kind kind;
    if (!x->o->tokenizer_path || !x->o->tokenizer_path[0])
        return ps_fail(err, "no tokenizer: give --tokenizer FILE (a .tiktoken vocabulary) and --tokenizer-kind");
    if (tokenizer_kind_parse(x->o->tokenizer_kind, &kind, err) || tokenizer_load(&x->tok, x->o->tokenizer_path, kind, err))
        return -1;
    int64_t eot = tokenizer_special_id(x->tok, "<|end_of_text|>");
    if (eot < 0) eot = tokenizer_special_id(x->tok, "<|endoftext|>");
    if (eot < 0) return ps_fail(err, "%s: the vocabulary has no end-of-text token", x->o->tokenizer_path);
    snprintf(x->meta.source, sizeof x->meta.source, "%s", x->o->source);
    snprintf(x->meta.tokenizer_sha256, sizeof x->meta.tokenizer_sha256, "%s", tokenizer_sha256(x->tok));
    snprintf(x->meta.tokenizer_kind, sizeof x->meta.tokenizer_kind, "%s", tokenizer_kind_name(kind));
    x->meta.vocab_size = (uint32_t)tokenizer_vocab_size(x->tok);
    x->meta.eot_id = (uint32_t)eot;
    return 0;
}

static int pick_threads(ingest_ctx *x, ps_error *err) {
    if (x->o->threads > 0) {
        x->threads = x->o->threads;
        return 0;
    }
    comm *node = NULL;
    if (comm_split_node(x->c, &node, err)) return -1;
    int local = comm_size(node);
    comm_free(node);
    x->threads = omp_get_num_procs() / (local > 0 ? local : 1);
    if (x->threads < 1) x->threads = 1;
    return 0;
}

/* Removes this rank's unfinished shards (*.h5.tmp) left by a killed run. */
static void remove_stale_tmp(ingest_ctx *x) {
    DIR *d = opendir(x->dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        int index;
        char tail[8];
        if (sscanf(e->d_name, "shard-%d.h5%7s", &index, tail) == 2 && strcmp(tail, ".tmp") == 0 &&
            index % x->world == x->rank) {
            char path[PATH_CAP + 300];
            snprintf(path, sizeof path, "%s/%s", x->dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

/* An interrupted ingest with another number of ranks cannot be continued by
 * this one (files were dealt out differently). */
static int check_other_worlds(ingest_ctx *x, ps_error *err) {
    char dir[PATH_CAP + 16];
    snprintf(dir, sizeof dir, "%s/.ingest", x->dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int other = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int r, w;
        if (sscanf(e->d_name, "manifest-%d-of-%d.json", &r, &w) == 2 && w != x->world && strstr(e->d_name, ".tmp") == NULL)
            other = w;
    }
    closedir(d);
    if (other)
        return ps_fail(err,
                       "%s: holds an interrupted ingest run with %d rank%s; continue it with that many "
                       "(mpirun -np %d), or delete the folder to start again with %d",
                       x->dir, other, other == 1 ? "" : "s", other, x->world);
    return 0;
}

/* ------------------------------------------------------------ the card */

/* The data card of the corpus the inputs come from (data/corpora/NAME), if
 * any: its origin and licence carry over into the shards' card. */
static json_object *corpus_card(const ingest_options *o) {
    for (int i = 0; i < o->n_inputs; i++) {
        char path[PATH_CAP + 16];
        struct stat st;
        if (stat(o->inputs[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(path, sizeof path, "%s/card.json", o->inputs[i]);
        } else {
            snprintf(path, sizeof path, "%s", o->inputs[i]);
            char *slash = strrchr(path, '/');
            snprintf(slash ? slash + 1 : path, 16, "card.json");
        }
        json_object *card = access(path, R_OK) == 0 ? json_object_from_file(path) : NULL;
        json_object *origin;
        if (card && json_object_object_get_ex(card, "origin", &origin)) return card;
        if (card) json_object_put(card);
    }
    return NULL;
}

static void copy_field(json_object *to, json_object *from, const char *key) {
    json_object *v;
    if (from && json_object_object_get_ex(from, key, &v)) json_object_object_add(to, key, json_object_get(v));
}

static json_object *tokenizer_json(const ingest_ctx *x) {
    json_object *t = json_object_new_object();
    char *abs = realpath(x->o->tokenizer_path, NULL);
    json_object_object_add(t, "path", json_object_new_string(abs ? abs : x->o->tokenizer_path));
    free(abs);
    json_object_object_add(t, "kind", json_object_new_string(x->meta.tokenizer_kind));
    json_object_object_add(t, "sha256", json_object_new_string(x->meta.tokenizer_sha256));
    json_object_object_add(t, "vocab_size", json_object_new_int64(x->meta.vocab_size));
    json_object_object_add(t, "eot_id", json_object_new_int64(x->meta.eot_id));
    return t;
}

static int cmp_shard(const void *a, const void *b) {
    return strcmp(((const committed_shard *)a)->file, ((const committed_shard *)b)->file);
}

/* Every rank's manifest, complete, merged: counts summed, shards in order. */
static int gather_manifests(ingest_ctx *x, rank_state *all, ps_error *err) {
    for (int r = 0; r < x->world; r++) {
        char path[PATH_CAP + 64];
        snprintf(path, sizeof path, "%s/.ingest/manifest-%d-of-%d.json", x->dir, r, x->world);
        rank_state st = {{0, 0, 0}, {0}, NULL, 0, 0, 0};
        int rc = load_manifest(path, x->key, &st, err);
        if (rc == 0 && !st.complete) rc = ps_fail(err, "%s: rank %d did not finish", path, r);
        for (int i = 0; rc == 0 && i < st.n_shards; i++)
            if (push_shard(all, &st.shards[i])) rc = ps_fail(err, "out of memory");
        counts_add(&all->counts, &st.counts);
        free(st.shards);
        if (rc) return -1;
    }
    if (all->n_shards) qsort(all->shards, (size_t)all->n_shards, sizeof *all->shards, cmp_shard);
    return 0;
}

static void add_i64(json_object *o, const char *key, uint64_t v) {
    json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static json_object *card_json(const ingest_ctx *x, const rank_state *all) {
    const ingest_options *o = x->o;
    json_object *card = json_object_new_object(), *from = corpus_card(o), *inputs = json_object_new_array();
    json_object_object_add(card, "source", json_object_new_string(o->source));
    copy_field(card, from, "kind");
    copy_field(card, from, "fit");
    add_i64(card, "documents", all->counts.documents);
    add_i64(card, "tokens", all->counts.tokens);
    add_i64(card, "text_tokens", all->counts.tokens - all->counts.documents);
    add_i64(card, "bytes", all->counts.bytes);
    if (from) {
        copy_field(card, from, "origin");
        copy_field(card, from, "licence");
        copy_field(card, from, "notes");
        json_object_put(from);
    } else {
        json_object_object_add(card, "origin", json_object_new_string(o->origin ? o->origin : "not stated (--origin)"));
        json_object_object_add(card, "licence",
                               json_object_new_string(o->licence ? o->licence : "not stated (--licence)"));
    }
    for (int i = 0; i < o->n_inputs; i++) json_object_array_add(inputs, json_object_new_string(o->inputs[i]));
    json_object_object_add(card, "inputs", inputs);
    json_object_object_add(card, "files", json_object_new_int(x->n_files));
    json_object_object_add(card, "text_field", json_object_new_string(o->text_field));
    json_object_object_add(card, "tokenizer", tokenizer_json(x));
    json_object_object_add(card, "issues", counts_json(&all->counts, 4));
    json_object_object_add(card, "ranks", json_object_new_int(x->world));
    add_i64(card, "shard_tokens", o->shard_tokens);
    json_object_object_add(card, "format_version", json_object_new_int(SHARD_FORMAT_VERSION));
    json_object_object_add(card, "layout", json_object_new_string("datasets/README.md, \"Shard layout\""));
    json_object_object_add(card, "key", json_object_new_string(x->key));
    json_object_object_add(card, "shards", shards_json(all->shards, all->n_shards));
    return card;
}

/* Rank 0, once every rank's manifest says complete: totals, shards, card. */
static int write_card(ingest_ctx *x, ingest_counts *total, uint64_t *n_shards, ps_error *err) {
    rank_state all = {{0, 0, 0}, {0}, NULL, 0, 0, 0};
    int rc = gather_manifests(x, &all, err);
    if (rc == 0) {
        json_object *card = card_json(x, &all);
        char path[PATH_CAP + 16];
        snprintf(path, sizeof path, "%s/card.json", x->dir);
        rc = write_json_atomic(path, card, err);
        json_object_put(card);
        *total = all.counts;
        *n_shards = (uint64_t)all.n_shards;
    }
    free(all.shards);
    return rc;
}

/* 1 when DIR/NAME/card.json is an ingest of exactly these inputs, 0 when
 * there is no card, -1 (error) when it describes other inputs. */
static int card_is_current(ingest_ctx *x, ingest_result *res, ps_error *err) {
    char path[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/card.json", x->dir);
    if (access(path, F_OK) != 0) return 0;
    json_object *card = json_object_from_file(path), *issues;
    const char *key = card ? json_string_of(card, "key") : NULL;
    int rc = key && strcmp(key, x->key) == 0 ? 1 : -1;
    if (rc < 0)
        ps_fail(err, "%s: this folder holds an ingest of other inputs or options: use another --out, or delete %s",
                path, x->dir);
    if (rc > 0) {
        res->counts.documents = (uint64_t)json_i64(card, "documents");
        res->counts.tokens = (uint64_t)json_i64(card, "tokens");
        res->counts.bytes = (uint64_t)json_i64(card, "bytes");
        if (json_object_object_get_ex(card, "issues", &issues)) counts_from_json(issues, &res->counts);
        json_object *shards;
        if (json_object_object_get_ex(card, "shards", &shards)) res->shards = json_object_array_length(shards);
    }
    if (card) json_object_put(card);
    return rc;
}

/* ------------------------------------------------------------ the loop */

typedef struct batch {
    char *arena;
    size_t used, cap;
    pending_doc *docs;
    tokenizer_ids *ids;
    int n, cap_docs;
} batch;

static int batch_add(batch *b, const ingest_doc *d, read_pos end, const ingest_counts *seen) {
    if (b->n == b->cap_docs) {
        int cap = b->cap_docs ? 2 * b->cap_docs : 1024;
        pending_doc *docs = realloc(b->docs, (size_t)cap * sizeof *docs);
        if (docs) b->docs = docs;
        tokenizer_ids *ids = realloc(b->ids, (size_t)cap * sizeof *ids);
        if (ids) {
            memset(ids + b->cap_docs, 0, (size_t)(cap - b->cap_docs) * sizeof *ids);
            b->ids = ids;
        }
        if (!docs || !ids) return -1;
        b->cap_docs = cap;
    }
    if (b->used + d->len > b->cap) {
        size_t cap = b->cap ? b->cap : 1u << 20;
        while (cap < b->used + d->len) cap *= 2;
        char *grown = realloc(b->arena, cap);
        if (!grown) return -1;
        b->arena = grown;
        b->cap = cap;
    }
    memcpy(b->arena + b->used, d->text, d->len);
    b->docs[b->n++] = (pending_doc){b->used, d->len, end, *seen};
    b->used += d->len;
    return 0;
}

static void batch_free(batch *b) {
    for (int i = 0; i < b->cap_docs; i++) tokenizer_ids_free(&b->ids[i]);
    free(b->ids);
    free(b->docs);
    free(b->arena);
}

/* Reads documents until the batch holds batch_bytes of text or the files
 * run out; *reader and *pos carry over to the next batch. */
static int fill_batch(ingest_ctx *x, batch *b, doc_reader **reader, read_pos *pos, ingest_counts *seen, ps_error *err) {
    while (b->used < x->o->batch_bytes && pos->file < x->n_mine) {
        if (!*reader && doc_reader_open(reader, x->files[x->mine[pos->file]], x->o->text_field, x->o->max_doc_bytes,
                                        pos->offset, pos->line, seen, x->o->log, &x->reports_left))
            return ps_fail(err, "out of memory opening %s", x->files[x->mine[pos->file]]);
        ingest_doc d;
        if (!doc_reader_next(*reader, &d)) {
            doc_reader_close(*reader);
            *reader = NULL;
            seen->files_read++;
            *pos = (read_pos){pos->file + 1, 0, 0};
            continue;
        }
        read_pos end = {pos->file, d.end_offset, d.end_line};
        if (batch_add(b, &d, end, seen)) return ps_fail(err, "out of memory holding a batch of documents");
    }
    return 0;
}

/* Tokenizes documents [from, to) of b; the first failure is kept in *err. */
static void tokenize_docs(ingest_ctx *x, batch *b, int from, int to, int *failed, ps_error *err) {
    for (int i = from; i < to; i++) {
        ps_error e;
        b->ids[i].n = 0;
        if (tokenizer_encode(x->tok, b->arena + b->docs[i].at, b->docs[i].len, 0, &b->ids[i], &e) != 0) {
#pragma omp critical(ingest_error)
            if (!(*failed)++) ps_fail(err, "tokenizing: %s", e.msg);
        }
    }
}

/* One task per ~256 KiB of text: small documents (dictionary entries) in
 * groups, large ones alone. */
static void spawn_tokenize(ingest_ctx *x, batch *b, int *failed, ps_error *err) {
    for (int from = 0; from < b->n;) {
        int to = from;
        for (size_t bytes = 0; to < b->n && bytes < (256u << 10); to++) bytes += b->docs[to].len;
#pragma omp task firstprivate(from, to) shared(failed, err)
        tokenize_docs(x, b, from, to, failed, err);
        from = to;
    }
}

static void shard_path(const ingest_ctx *x, int index, char *out, size_t size, char *name, size_t name_size) {
    snprintf(name, name_size, "shard-%05d.h5", index);
    snprintf(out, size, "%s/%s", x->dir, name);
}

static int commit_shard(ingest_ctx *x, const pending_doc *last, ps_error *err) {
    committed_shard s = {{0}, shard_writer_tokens(x->writer), shard_writer_documents(x->writer),
                         shard_writer_bytes(x->writer)};
    char path[PATH_CAP + 64];
    shard_path(x, x->st.n_shards * x->world + x->rank, path, sizeof path, s.file, sizeof s.file);
    int rc = shard_writer_commit(x->writer, err);
    x->writer = NULL;
    if (rc) return -1;
    if (push_shard(&x->st, &s)) return ps_fail(err, "out of memory");
    /* Issue counts as they were when the last document was read; the
     * written totals as they are now. A resumed run re-reads from here. */
    ingest_counts written = x->st.counts;
    if (last) {
        x->st.counts = last->seen;
        x->st.next = last->end;
    }
    x->st.counts.documents = written.documents;
    x->st.counts.tokens = written.tokens;
    x->st.counts.bytes = written.bytes;
    return write_manifest(x, err);
}

static void progress(ingest_ctx *x) {
    double t = now_seconds();
    if (!x->o->log || x->rank != 0 || t - x->last_progress < 10) return;
    x->last_progress = t;
    fprintf(x->o->log, "ingest %s: rank 0: %d/%d files, %llu documents, %.1f MB, %llu tokens, %.1f MB/s\n",
            x->o->source, x->st.next.file, x->n_mine, (unsigned long long)x->st.counts.documents,
            x->st.counts.bytes / 1e6, (unsigned long long)x->st.counts.tokens,
            x->bytes_this_run / 1e6 / (t - x->start > 1e-9 ? t - x->start : 1e-9));
}

static int append_batch(ingest_ctx *x, batch *b, ps_error *err) {
    for (int i = 0; i < b->n; i++) {
        const pending_doc *d = &b->docs[i];
        if (!x->writer) {
            char path[PATH_CAP + 64], name[64];
            shard_path(x, x->st.n_shards * x->world + x->rank, path, sizeof path, name, sizeof name);
            if (shard_writer_create(&x->writer, path, &x->meta, x->o->chunk_tokens, err)) return -1;
        }
        if (shard_writer_append(x->writer, b->ids[i].ids, b->ids[i].n, d->len, err)) return -1;
        x->st.counts.documents++;
        x->st.counts.tokens += b->ids[i].n + 1;
        x->st.counts.bytes += d->len;
        x->bytes_this_run += d->len;
        if (x->kill_after && ++x->appended == x->kill_after) raise(SIGKILL); /* test hook, see the top */
        if (shard_writer_tokens(x->writer) >= x->o->shard_tokens && commit_shard(x, d, err)) return -1;
    }
    progress(x);
    return 0;
}

/* The three stages of one round, side by side: append batch `prev` (serial
 * HDF5, in document order), tokenize batch `cur` (tasks), read batch `next`.
 * Each batch is appended one round after it was tokenized, so the shards are
 * exactly what a serial loop would write. */
static int round_of(ingest_ctx *x, batch *prev, batch *cur, batch *next, doc_reader **reader, read_pos *pos,
                    ingest_counts *seen, ps_error *err) {
    int rc_append = 0, rc_fill = 0, failed = 0;
    ps_error e_append = {{0}}, e_fill = {{0}}, e_tok = {{0}};
#pragma omp parallel num_threads(x->threads)
#pragma omp single
    {
        if (prev) {
#pragma omp task shared(rc_append, e_append)
            rc_append = append_batch(x, prev, &e_append);
        }
        spawn_tokenize(x, cur, &failed, &e_tok);
        next->n = 0;
        next->used = 0;
        if (pos->file < x->n_mine) rc_fill = fill_batch(x, next, reader, pos, seen, &e_fill);
#pragma omp taskwait
    }
    if (rc_append) return ps_fail(err, "%s", e_append.msg);
    if (failed) return ps_fail(err, "%s", e_tok.msg);
    if (rc_fill) return ps_fail(err, "%s", e_fill.msg);
    return 0;
}

/* This rank's part: from the manifest's position to the end of its files. */
static int ingest_rank(ingest_ctx *x, ps_error *err) {
    batch b[3] = {{0}};
    doc_reader *reader = NULL;
    read_pos pos = x->st.next;
    ingest_counts seen = x->st.counts;
    int rc = fill_batch(x, &b[0], &reader, &pos, &seen, err), cur = 0, have_prev = 0;
    while (rc == 0 && (b[cur].n > 0 || have_prev)) {
        int next = (cur + 1) % 3, prev = (cur + 2) % 3;
        rc = round_of(x, have_prev ? &b[prev] : NULL, &b[cur], &b[next], &reader, &pos, &seen, err);
        have_prev = b[cur].n > 0;
        cur = next;
    }
    doc_reader_close(reader);
    for (int i = 0; i < 3; i++) batch_free(&b[i]);
    if (rc == 0) {
        ingest_counts written = x->st.counts;
        x->st.counts = seen;
        x->st.counts.documents = written.documents;
        x->st.counts.tokens = written.tokens;
        x->st.counts.bytes = written.bytes;
        x->st.next = pos;
        if (x->writer) rc = commit_shard(x, NULL, err);
    }
    if (rc) {
        shard_writer_abort(x->writer);
        x->writer = NULL;
        return -1;
    }
    x->st.complete = 1;
    return write_manifest(x, err);
}

/* Every rank learns whether any failed; the first failing rank's message
 * reaches all of them. */
static int agree(ingest_ctx *x, int rc, ps_error *err) {
    double failed = rc ? 1 : 0;
    ps_error keep = *err;
    if (comm_all_reduce_sum_double(x->c, &failed, 1, err)) return -1;
    *err = keep;
    if (failed > 0 && rc == 0) return ps_fail(err, "another rank failed (see its message)");
    return rc;
}

static void ctx_free(ingest_ctx *x) {
    ingest_free_files(x->files, x->sizes, x->n_files);
    free(x->mine);
    free(x->st.shards);
    tokenizer_free(x->tok);
}

static int setup(ingest_ctx *x, ingest_result *res, ps_error *err) {
    const ingest_options *o = x->o;
    if (!o->source || !o->source[0] || strchr(o->source, '/') || o->source[0] == '.')
        return ps_fail(err, "--source '%s': a source name is one folder name (no '/', not hidden)",
                       o->source ? o->source : "");
    if (o->n_inputs < 1) return ps_fail(err, "no inputs: give --input PATH (files or folders)");
    if (o->shard_tokens < 1 || o->max_doc_bytes < 64 || o->batch_bytes < 1)
        return ps_fail(err, "--shard-tokens, --max-doc-bytes (>= 64) and the batch size must be positive");
    snprintf(x->dir, sizeof x->dir, "%s/%s", o->out_dir, o->source);
    snprintf(x->manifest, sizeof x->manifest, "%s/.ingest/manifest-%d-of-%d.json", x->dir, x->rank, x->world);
    int n = ingest_list_files(o->inputs, o->n_inputs, &x->files, &x->sizes, err);
    if (n < 0) return -1;
    x->n_files = n;
    if (load_tokenizer(x, err)) return -1;
    make_key(x);
    int current = card_is_current(x, res, err);
    if (current != 0) {
        res->already_complete = current > 0;
        return current < 0 ? -1 : 0;
    }
    char meta_dir[PATH_CAP + 16];
    snprintf(meta_dir, sizeof meta_dir, "%s/.ingest", x->dir);
    if (mkdirs(meta_dir, err) || check_other_worlds(x, err) || assign_files(x, err)) return -1;
    if (load_manifest(x->manifest, x->key, &x->st, err)) return -1;
    remove_stale_tmp(x);
    return 0;
}

int ingest_run(const ingest_options *o, comm *c, ingest_result *res, ps_error *err) {
    ingest_ctx x = {0};
    x.o = o;
    x.c = c;
    x.rank = comm_rank(c);
    x.world = comm_size(c);
    x.start = x.last_progress = now_seconds();
    x.reports_left = o->max_reports;
    const char *kill = getenv("PRESIGHT_INGEST_KILL_AFTER");
    x.kill_after = kill ? strtoull(kill, NULL, 10) : 0;
    memset(res, 0, sizeof *res);
    /* Collective, so first: a rank that fails in setup must not leave the
     * others waiting in it. */
    int rc = agree(&x, pick_threads(&x, err), err);
    if (rc == 0) rc = agree(&x, setup(&x, res, err), err);
    if (rc == 0 && !res->already_complete) {
        if (!x.st.complete) rc = ingest_rank(&x, err);
        rc = agree(&x, rc, err);
        double now = (double)x.bytes_this_run;
        if (rc == 0 && comm_all_reduce_sum_double(c, &now, 1, err) == 0) res->bytes_now = (uint64_t)now;
        if (rc == 0 && x.rank == 0) rc = write_card(&x, &res->counts, &res->shards, err);
        rc = agree(&x, rc, err);
    }
    res->files = (uint64_t)x.n_files;
    res->seconds = now_seconds() - x.start;
    ctx_free(&x);
    return rc;
}
