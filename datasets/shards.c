/* shards.c - HDF5 shards of token ids (see shards.h for the layout).
 *
 * Serial HDF5 with default property lists: each rank of an ingest writes its
 * own files, and readers only read. Object modification times are switched
 * off so that the same input gives byte-identical shards (the resume test
 * compares them). */
#include "shards.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "out_file.h"

#define DEFAULT_CHUNK_TOKENS 65536
#define OFFSETS_CHUNK 16384
/* Tokens buffered before one extend-and-write of /tokens. */
#define WRITE_BUFFER_TOKENS (1u << 20)

/* presight reports HDF5 failures itself, with the file named. */
static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ------------------------------------------------------------- writing */

struct shard_writer {
    hid_t file, tokens, offsets;
    out_file out;        /* NAME.tmp, its room reserved ahead of each write */
    const char *tmp;     /* out.tmp, for messages */
    hsize_t chunk;       /* tokens a chunk of /tokens */
    shard_meta meta;
    uint32_t *tbuf; /* tokens not yet in the file */
    size_t tn;
    uint64_t *obuf; /* offsets not yet in the file */
    size_t on, ocap;
    uint64_t t_written, o_written; /* elements already in the file */
    uint64_t n_tokens, n_docs, bytes;
};

static hid_t create_extendible(hid_t file, const char *name, hid_t type, hsize_t chunk) {
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunks[1] = {chunk};
    hid_t space = H5Screate_simple(1, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunks);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t set = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return set;
}

/* HDF5's own bytes in a shard beyond the chunks (superblock, headers, attributes, heaps: a
 * few KB in 2 KB blocks; the chunk index, a v1 B-tree of about 40 bytes a chunk, is counted
 * as 128 below), with room to spare for what a close writes: the data/shards files take
 * 95-99% of this figure, the rest being the spare. */
#define SHARD_METADATA_BYTES (32.0 * 1024)

/* The bytes the shard takes at most once `tokens` tokens and `offsets` offsets are in it:
 * whole chunks of each set, and the metadata. */
static double shard_bytes(const shard_writer *w, uint64_t tokens, uint64_t offsets) {
    double tc = ceil((double)tokens / (double)w->chunk), oc = ceil((double)offsets / OFFSETS_CHUNK);
    return tc * (double)w->chunk * 4 + oc * OFFSETS_CHUNK * 8 + 128 * (tc + oc) + SHARD_METADATA_BYTES;
}

int shard_writer_create(shard_writer **out, const char *path, const shard_meta *meta, size_t chunk_tokens,
                        ps_error *err) {
    quiet_hdf5();
    *out = NULL;
    shard_writer *w = calloc(1, sizeof *w);
    if (!w) return ps_fail(err, "%s: out of memory", path);
    w->chunk = chunk_tokens ? chunk_tokens : DEFAULT_CHUNK_TOKENS;
    w->tmp = w->out.tmp;
    if (out_file_begin(&w->out, path, shard_bytes(w, 0, 0), err)) {
        free(w);
        return -1;
    }
    w->meta = *meta;
    w->tbuf = malloc(WRITE_BUFFER_TOKENS * sizeof *w->tbuf);
    w->ocap = 4096;
    w->obuf = malloc(w->ocap * sizeof *w->obuf);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    errno = 0;
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (w->file < 0) {
        ps_fail(err, "%s: cannot create the shard%s%s", w->tmp, errno ? ": " : "", errno ? strerror(errno) : "");
        shard_writer_abort(w);
        return -1;
    }
    if (out_file_reserve(&w->out, shard_bytes(w, 0, 0), err)) {
        shard_writer_abort(w);
        return -1;
    }
    w->tokens = create_extendible(w->file, "tokens", H5T_STD_U32LE, w->chunk);
    w->offsets = create_extendible(w->file, "doc_offsets", H5T_STD_U64LE, OFFSETS_CHUNK);
    if (!w->tbuf || !w->obuf || w->tokens < 0 || w->offsets < 0) {
        ps_fail(err, "%s: cannot create the shard's data sets%s%s", w->tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
        shard_writer_abort(w);
        return -1;
    }
    w->obuf[w->on++] = 0; /* doc_offsets[0] */
    *out = w;
    return 0;
}

/* Appends n elements of mem_type at data to the 1-D extendible set. */
static int extend_write(hid_t set, hid_t mem_type, uint64_t *written, const void *data, size_t n) {
    if (n == 0) return 0;
    hsize_t size[1] = {*written + n}, start[1] = {*written}, count[1] = {n};
    if (H5Dset_extent(set, size) < 0) return -1;
    hid_t fspace = H5Dget_space(set);
    hid_t mspace = H5Screate_simple(1, count, NULL);
    int rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                     H5Dwrite(set, mem_type, mspace, fspace, H5P_DEFAULT, data) < 0
                 ? -1
                 : 0;
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (rc == 0) *written += n;
    return rc;
}

/* The room for the buffers is reserved before HDF5 writes them (out_file.h says why). */
static int flush_buffers(shard_writer *w, ps_error *err) {
    if (out_file_reserve(&w->out, shard_bytes(w, w->t_written + w->tn, w->o_written + w->on), err)) return -1;
    errno = 0;
    if (extend_write(w->tokens, H5T_NATIVE_UINT32, &w->t_written, w->tbuf, w->tn) < 0 ||
        extend_write(w->offsets, H5T_NATIVE_UINT64, &w->o_written, w->obuf, w->on) < 0)
        return ps_fail(err, "%s: writing tokens failed%s%s", w->tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
    w->tn = w->on = 0;
    return 0;
}

static int push_token(shard_writer *w, uint32_t id, ps_error *err) {
    if (w->tn == WRITE_BUFFER_TOKENS && flush_buffers(w, err)) return -1;
    w->tbuf[w->tn++] = id;
    return 0;
}

int shard_writer_append(shard_writer *w, const uint32_t *ids, size_t n, uint64_t text_bytes, ps_error *err) {
    for (size_t i = 0; i < n;) {
        if (w->tn == WRITE_BUFFER_TOKENS && flush_buffers(w, err)) return -1;
        size_t take = WRITE_BUFFER_TOKENS - w->tn < n - i ? WRITE_BUFFER_TOKENS - w->tn : n - i;
        memcpy(w->tbuf + w->tn, ids + i, take * sizeof *ids);
        w->tn += take;
        i += take;
    }
    if (push_token(w, w->meta.eot_id, err)) return -1;
    w->n_tokens += n + 1;
    w->n_docs++;
    w->bytes += text_bytes;
    if (w->on == w->ocap) {
        uint64_t *grown = realloc(w->obuf, 2 * w->ocap * sizeof *grown);
        if (!grown) return ps_fail(err, "%s: out of memory", w->tmp);
        w->obuf = grown;
        w->ocap *= 2;
    }
    w->obuf[w->on++] = w->n_tokens;
    return 0;
}

uint64_t shard_writer_tokens(const shard_writer *w) { return w->n_tokens; }
uint64_t shard_writer_documents(const shard_writer *w) { return w->n_docs; }
uint64_t shard_writer_bytes(const shard_writer *w) { return w->bytes; }

static int attr_write(hid_t where, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr >= 0 && H5Awrite(attr, type, value) >= 0 ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

/* Variable-length UTF-8, so that h5py reads the attribute as a str. */
static int attr_write_string(hid_t where, const char *name, const char *text) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    int rc = attr_write(where, name, type, &text);
    H5Tclose(type);
    return rc;
}

static int attr_write_u64(hid_t where, const char *name, uint64_t v) {
    return attr_write(where, name, H5T_NATIVE_UINT64, &v);
}

static int write_attributes(shard_writer *w) {
    int version = SHARD_FORMAT_VERSION;
    uint32_t vocab = w->meta.vocab_size, eot = w->meta.eot_id;
    hid_t f = w->file;
    return attr_write(f, "format_version", H5T_NATIVE_INT, &version) | attr_write_string(f, "source", w->meta.source) |
           attr_write_string(f, "tokenizer_sha256", w->meta.tokenizer_sha256) |
           attr_write_string(f, "tokenizer_kind", w->meta.tokenizer_kind) |
           attr_write(f, "vocab_size", H5T_NATIVE_UINT32, &vocab) | attr_write(f, "eot_id", H5T_NATIVE_UINT32, &eot) |
           attr_write_u64(f, "documents", w->n_docs) | attr_write_u64(f, "tokens", w->n_tokens) |
           attr_write_u64(f, "text_tokens", w->n_tokens - w->n_docs) | attr_write_u64(f, "bytes", w->bytes);
}

static int close_handles(shard_writer *w) {
    int rc = 0;
    if (w->tokens > 0) H5Dclose(w->tokens);
    if (w->offsets > 0) H5Dclose(w->offsets);
    if (w->file > 0 && H5Fclose(w->file) < 0) rc = -1;
    w->tokens = w->offsets = w->file = 0;
    return rc;
}

static void writer_free(shard_writer *w) {
    free(w->tbuf);
    free(w->obuf);
    free(w);
}

/* The file and then its folder are synced around the rename (out_file_commit): a crash
 * right after commit cannot lose a shard the manifest already counts. */
int shard_writer_commit(shard_writer *w, ps_error *err) {
    int rc = flush_buffers(w, err);
    errno = 0;
    if (rc == 0 && write_attributes(w))
        rc = ps_fail(err, "%s: writing attributes failed%s%s", w->tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
    if (rc == 0 && H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        rc = ps_fail(err, "%s: flush failed%s%s", w->tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
    errno = 0;
    if (close_handles(w) && rc == 0)
        rc = ps_fail(err, "%s: close failed%s%s", w->tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
    if (rc == 0) rc = out_file_commit(&w->out, err);
    else out_file_discard(&w->out);
    writer_free(w);
    return rc;
}

void shard_writer_abort(shard_writer *w) {
    if (!w) return;
    close_handles(w);
    out_file_discard(&w->out);
    writer_free(w);
}

/* ------------------------------------------------------------- reading */

struct shard_file {
    hid_t file, tokens, offsets;
    hid_t tspace; /* file space of /tokens, reused for every hyperslab */
    char path[SHARD_PATH_MAX];
    shard_meta meta;
    uint64_t n_tokens, n_docs;
};

static int attr_read(hid_t where, const char *name, hid_t type, void *value) {
    hid_t attr = H5Aopen(where, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    int rc = H5Aread(attr, type, value) < 0 ? -1 : 0;
    H5Aclose(attr);
    return rc;
}

/* Reads a string attribute written as variable-length (ours) or fixed-length. */
static int attr_read_string(hid_t where, const char *name, char *out, size_t size) {
    hid_t attr = H5Aopen(where, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    hid_t ftype = H5Aget_type(attr);
    int rc = -1;
    if (H5Tget_class(ftype) == H5T_STRING && H5Tis_variable_str(ftype) > 0) {
        char *text = NULL;
        hid_t type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, H5T_VARIABLE);
        H5Tset_cset(type, H5Tget_cset(ftype));
        if (H5Aread(attr, type, &text) >= 0 && text) {
            snprintf(out, size, "%s", text);
            H5free_memory(text);
            rc = 0;
        }
        H5Tclose(type);
    } else if (H5Tget_class(ftype) == H5T_STRING) {
        size_t n = H5Tget_size(ftype);
        char *buf = calloc(n + 1, 1);
        hid_t type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, n);
        if (buf && H5Aread(attr, type, buf) >= 0) {
            snprintf(out, size, "%s", buf);
            rc = 0;
        }
        free(buf);
        H5Tclose(type);
    }
    H5Tclose(ftype);
    H5Aclose(attr);
    return rc;
}

static int read_meta(shard_file *f) {
    int version = 0;
    uint64_t docs = 0;
    if (attr_read(f->file, "format_version", H5T_NATIVE_INT, &version) || version != SHARD_FORMAT_VERSION) return -1;
    return attr_read_string(f->file, "source", f->meta.source, sizeof f->meta.source) |
           attr_read_string(f->file, "tokenizer_sha256", f->meta.tokenizer_sha256, sizeof f->meta.tokenizer_sha256) |
           attr_read_string(f->file, "tokenizer_kind", f->meta.tokenizer_kind, sizeof f->meta.tokenizer_kind) |
           attr_read(f->file, "vocab_size", H5T_NATIVE_UINT32, &f->meta.vocab_size) |
           attr_read(f->file, "eot_id", H5T_NATIVE_UINT32, &f->meta.eot_id) |
           attr_read(f->file, "documents", H5T_NATIVE_UINT64, &docs);
}

static uint64_t extent_of(hid_t set) {
    hid_t space = H5Dget_space(set);
    hsize_t dims[1] = {0};
    if (space < 0 || H5Sget_simple_extent_ndims(space) != 1) dims[0] = 0;
    else H5Sget_simple_extent_dims(space, dims, NULL);
    if (space >= 0) H5Sclose(space);
    return dims[0];
}

int shard_file_open(shard_file **out, const char *path, ps_error *err) {
    quiet_hdf5();
    *out = NULL;
    shard_file *f = calloc(1, sizeof *f);
    if (!f) return ps_fail(err, "%s: out of memory", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->file = access(path, R_OK) == 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f->file < 0) {
        free(f);
        return ps_fail(err, "%s: cannot open the shard (missing, unreadable or not HDF5)", path);
    }
    /* No chunk cache: the sampler reads a few KiB at random places, and a
     * cache would read and keep the whole 256 KiB chunk around each (8x
     * slower, measured); without one HDF5 reads just the bytes asked for. */
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 0, 0, 1.0);
    f->tokens = H5Dopen2(f->file, "tokens", dapl);
    H5Pclose(dapl);
    f->offsets = H5Dopen2(f->file, "doc_offsets", H5P_DEFAULT);
    if (f->tokens < 0 || f->offsets < 0 || read_meta(f)) {
        shard_file_close(f);
        return ps_fail(err, "%s: not a presight shard of format %d (datasets tokens, doc_offsets and attributes)",
                       path, SHARD_FORMAT_VERSION);
    }
    f->n_tokens = extent_of(f->tokens);
    uint64_t n_off = extent_of(f->offsets);
    f->n_docs = n_off ? n_off - 1 : 0;
    f->tspace = H5Dget_space(f->tokens);
    *out = f;
    return 0;
}

void shard_file_close(shard_file *f) {
    if (!f) return;
    if (f->tspace > 0) H5Sclose(f->tspace);
    if (f->tokens > 0) H5Dclose(f->tokens);
    if (f->offsets > 0) H5Dclose(f->offsets);
    if (f->file > 0) H5Fclose(f->file);
    free(f);
}

uint64_t shard_file_tokens(const shard_file *f) { return f->n_tokens; }
uint64_t shard_file_documents(const shard_file *f) { return f->n_docs; }
const shard_meta *shard_file_meta(const shard_file *f) { return &f->meta; }

int shard_file_read(shard_file *f, uint64_t start, uint64_t n, uint32_t *out, ps_error *err) {
    if (start + n > f->n_tokens || start + n < start)
        return ps_fail(err, "%s: tokens [%llu, %llu) are past its %llu tokens", f->path, (unsigned long long)start,
                       (unsigned long long)(start + n), (unsigned long long)f->n_tokens);
    if (n == 0) return 0;
    hsize_t s[1] = {start}, c[1] = {n};
    hid_t mspace = H5Screate_simple(1, c, NULL);
    int rc = H5Sselect_hyperslab(f->tspace, H5S_SELECT_SET, s, NULL, c, NULL) < 0 ||
                     H5Dread(f->tokens, H5T_NATIVE_UINT32, mspace, f->tspace, H5P_DEFAULT, out) < 0
                 ? -1
                 : 0;
    H5Sclose(mspace);
    if (rc)
        return ps_fail(err, "%s: reading tokens [%llu, +%llu) failed", f->path, (unsigned long long)start,
                       (unsigned long long)n);
    /* An id past the vocabulary would index past the model's embedding table:
     * a damaged or foreign shard is named here, not found by a crash later. */
    for (uint64_t i = 0; i < n; i++)
        if (out[i] >= f->meta.vocab_size)
            return ps_fail(err, "%s: token %llu is id %u, past the shard's vocab_size %u (a damaged shard?)", f->path,
                           (unsigned long long)(start + i), out[i], f->meta.vocab_size);
    return 0;
}

int shard_file_read_offsets(shard_file *f, uint64_t first, uint64_t n, uint64_t *out, ps_error *err) {
    if (first + n > f->n_docs + 1)
        return ps_fail(err, "%s: doc_offsets [%llu, %llu) are past its %llu entries", f->path,
                       (unsigned long long)first, (unsigned long long)(first + n), (unsigned long long)f->n_docs + 1);
    if (n == 0) return 0;
    hsize_t s[1] = {first}, c[1] = {n};
    hid_t fspace = H5Dget_space(f->offsets), mspace = H5Screate_simple(1, c, NULL);
    int rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, s, NULL, c, NULL) < 0 ||
                     H5Dread(f->offsets, H5T_NATIVE_UINT64, mspace, fspace, H5P_DEFAULT, out) < 0
                 ? -1
                 : 0;
    H5Sclose(mspace);
    H5Sclose(fspace);
    return rc ? ps_fail(err, "%s: reading doc_offsets failed", f->path) : 0;
}

/* ------------------------------------------------------------- a source */

static int json_u64(json_object *o, const char *key, uint64_t *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) return -1;
    *out = (uint64_t)json_object_get_int64(v);
    return 0;
}

static int json_str(json_object *o, const char *key, char *out, size_t size) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return -1;
    snprintf(out, size, "%s", json_object_get_string(v));
    return 0;
}

static int card_tokenizer(json_object *card, shard_meta *m, char *path, size_t path_size) {
    json_object *t;
    uint64_t vocab, eot;
    if (json_object_object_get_ex(card, "tokenizer", &t) && json_str(t, "path", path, path_size)) path[0] = 0;
    if (!json_object_object_get_ex(card, "tokenizer", &t) || json_str(t, "sha256", m->tokenizer_sha256, 65) ||
        json_str(t, "kind", m->tokenizer_kind, sizeof m->tokenizer_kind) || json_u64(t, "vocab_size", &vocab) ||
        json_u64(t, "eot_id", &eot))
        return -1;
    m->vocab_size = (uint32_t)vocab;
    m->eot_id = (uint32_t)eot;
    return 0;
}

static int card_shards(json_object *card, shard_source *s) {
    json_object *list;
    if (!json_object_object_get_ex(card, "shards", &list) || !json_object_is_type(list, json_type_array)) return -1;
    size_t n = json_object_array_length(list);
    s->shards = calloc(n ? n : 1, sizeof *s->shards);
    s->open = calloc(n ? n : 1, sizeof *s->open);
    if (!s->shards || !s->open) return -1;
    s->n_shards = (int)n;
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        shard_entry *se = &s->shards[i];
        if (json_str(e, "file", se->file, sizeof se->file) || json_u64(e, "tokens", &se->tokens) ||
            json_u64(e, "documents", &se->documents) || json_u64(e, "bytes", &se->bytes) || strchr(se->file, '/'))
            return -1;
        se->first_token = at;
        at += se->tokens;
    }
    s->tokens = at;
    return 0;
}

int shard_source_open(shard_source **out, const char *dir, ps_error *err) {
    *out = NULL;
    char path[SHARD_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/card.json", dir);
    json_object *card = json_object_from_file(path);
    if (!card)
        return ps_fail(err, "%s: missing or not JSON: %s is not a complete ingest (run presight data ingest)", path,
                       dir);
    shard_source *s = calloc(1, sizeof *s);
    int rc = s ? 0 : -1;
    if (rc == 0) {
        snprintf(s->dir, sizeof s->dir, "%s", dir);
        rc = json_str(card, "source", s->name, sizeof s->name) || card_tokenizer(card, &s->meta, s->tokenizer_path, sizeof s->tokenizer_path) ||
                     card_shards(card, s) || json_u64(card, "documents", &s->documents) ||
                     json_u64(card, "bytes", &s->bytes)
                 ? -1
                 : 0;
    }
    json_object_put(card);
    if (rc) {
        shard_source_close(s);
        return ps_fail(err, "%s: not a presight source card (source, tokenizer, shards, documents, bytes)", path);
    }
    snprintf(s->meta.source, sizeof s->meta.source, "%s", s->name);
    *out = s;
    return 0;
}

void shard_source_close(shard_source *s) {
    if (!s) return;
    for (int i = 0; s->open && i < s->n_shards; i++) shard_file_close(s->open[i]);
    free(s->open);
    free(s->shards);
    free(s);
}

/* The shard holding stream position pos (binary search on first_token). */
static int shard_at(const shard_source *s, uint64_t pos) {
    int lo = 0, hi = s->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->shards[mid].first_token <= pos) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Opens shard i if needed, closing another when too many are open (the
 * sampler touches every shard; a cluster's file-handle limit does not care). */
static int ensure_open(shard_source *s, int i, ps_error *err) {
    if (s->open[i]) return 0;
    if (s->n_open >= SHARD_SOURCE_MAX_OPEN) {
        for (int j = 0; j < s->n_shards; j++) {
            int k = (i + 1 + j) % s->n_shards;
            if (s->open[k]) {
                shard_file_close(s->open[k]);
                s->open[k] = NULL;
                s->n_open--;
                break;
            }
        }
    }
    char path[SHARD_PATH_MAX + SHARD_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", s->dir, s->shards[i].file);
    if (shard_file_open(&s->open[i], path, err)) return -1;
    s->n_open++;
    if (shard_file_tokens(s->open[i]) != s->shards[i].tokens)
        return ps_fail(err, "%s: has %llu tokens, its card says %llu (a shard was replaced after ingest?)", path,
                       (unsigned long long)shard_file_tokens(s->open[i]), (unsigned long long)s->shards[i].tokens);
    return 0;
}

int shard_source_read(shard_source *s, uint64_t pos, uint64_t n, uint32_t *out, ps_error *err) {
    if (pos + n > s->tokens)
        return ps_fail(err, "%s: stream [%llu, %llu) is past its %llu tokens", s->dir, (unsigned long long)pos,
                       (unsigned long long)(pos + n), (unsigned long long)s->tokens);
    s->reads++;
    while (n > 0) {
        int i = shard_at(s, pos);
        const shard_entry *e = &s->shards[i];
        uint64_t local = pos - e->first_token, take = e->tokens - local < n ? e->tokens - local : n;
        if (take == 0) return ps_fail(err, "%s: empty shard %s in the stream", s->dir, e->file);
        if (ensure_open(s, i, err) || shard_file_read(s->open[i], local, take, out, err)) return -1;
        out += take;
        pos += take;
        n -= take;
    }
    return 0;
}

/* A labels file at most: its masks (one byte a segment), and per shard a data set's header
 * and its link (a few hundred bytes), plus the file's own structures. */
static double labels_bytes(const shard_source *s, const uint64_t *n_segments) {
    double bytes = 64 * 1024;
    for (int i = 0; i < s->n_shards; i++) bytes += (double)n_segments[i] + 1024;
    return bytes;
}

int shard_labels_write(const char *path, const shard_source *s, uint8_t *const *masks, const uint64_t *n_segments,
                       int segment, const char *label_names, const char *tagger, ps_error *err) {
    quiet_hdf5();
    out_file out;
    double bytes = labels_bytes(s, n_segments);
    if (out_file_begin(&out, path, bytes, err)) return -1;
    const char *tmp = out.tmp;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    errno = 0;
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (file < 0) {
        ps_fail(err, "%s: cannot create%s%s", tmp, errno ? ": " : "", errno ? strerror(errno) : "");
        out_file_discard(&out);
        return -1;
    }
    if (out_file_reserve(&out, bytes, err)) {
        H5Fclose(file);
        out_file_discard(&out);
        return -1;
    }
    errno = 0;
    int rc = attr_write(file, "segment", H5T_NATIVE_INT, &segment) | attr_write_string(file, "labels", label_names) |
             attr_write_string(file, "tagger", tagger) | attr_write_string(file, "source", s->name) |
             attr_write_string(file, "tokenizer_sha256", s->meta.tokenizer_sha256);
    for (int i = 0; rc == 0 && i < s->n_shards; i++) {
        hsize_t dims[1] = {n_segments[i]};
        hid_t space = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_obj_track_times(dcpl, 0);
        hid_t set = H5Dcreate2(file, s->shards[i].file, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (set < 0 || (n_segments[i] && H5Dwrite(set, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, masks[i]) < 0))
            rc = -1;
        if (set >= 0) H5Dclose(set);
        H5Pclose(dcpl);
        H5Sclose(space);
    }
    if (H5Fclose(file) < 0) rc = -1;
    if (rc) {
        ps_fail(err, "%s: writing the labels failed%s%s", tmp, OUT_FILE_CAUSE_SEP, out_file_cause());
        out_file_discard(&out);
        return -1;
    }
    return out_file_commit(&out, err);
}

static int cmp_names(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

int shard_root_sources(const char *root, char (**names)[SHARD_NAME_MAX], ps_error *err) {
    *names = NULL;
    DIR *d = opendir(root);
    if (!d) return ps_fail(err, "%s: cannot open the shards folder: %s", root, strerror(errno));
    int n = 0, cap = 0;
    char (*list)[SHARD_NAME_MAX] = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= SHARD_NAME_MAX) continue;
        char card[SHARD_PATH_MAX + 2 * SHARD_NAME_MAX];
        snprintf(card, sizeof card, "%s/%s/card.json", root, e->d_name);
        if (access(card, R_OK) != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            void *grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown) {
                free(list);
                closedir(d);
                return ps_fail(err, "out of memory");
            }
            list = grown;
        }
        snprintf(list[n++], SHARD_NAME_MAX, "%s", e->d_name);
    }
    closedir(d);
    if (n) qsort(list, (size_t)n, sizeof *list, cmp_names);
    *names = list;
    return n;
}
