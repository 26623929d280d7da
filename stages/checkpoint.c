/* checkpoint.c - one HDF5 file per checkpoint, written and read collectively.
 *
 * The file is opened with the MPI-IO driver on the communicator of c, with
 * collective metadata reads and writes: every rank makes every HDF5 metadata
 * call (groups, datasets, attributes, opens) in the same order with the same
 * arguments, and rank 0's state and config are broadcast first so that the
 * attributes are identical everywhere. All datasets are created first
 * (contiguous, float32, allocated early, never filled), then the data moves.
 * A rank's slice of a unit meets a tensor in a contiguous range [a, b) of the
 * tensor's row-major index space, selected in the file as at most three
 * hyperslabs (partial first row, full rows, partial last row) against a 1-D
 * memory space of b - a elements; a rank with nothing there (writer = 0 on
 * writing, a padding-only slice) selects none.
 *
 * Write path, as measured best (tests/tools/ckpt_tool bench):
 *   - independent raw-data I/O: each rank's pieces are large and contiguous,
 *     so it pwrite()s them itself; no synchronisation per dataset;
 *   - the checksum is computed by a helper thread while the main thread
 *     writes (the main thread joins in when its writes are done);
 *   - write-behind: after each piece the rank asks the kernel to start writing
 *     it back (sync_file_range), so the final flush (fsync) finds little left;
 *   - ranks that finish first wait in a sleeping barrier instead of a
 *     busy-polling MPI collective, leaving the cores to the ranks still writing;
 *   - then /state, H5Fflush, close, and on rank 0 fsync + rename of NAME.tmp
 *     to NAME + fsync of the folder: a complete file or none under NAME.
 *
 * Failures are agreed on between ranks at each step (sync_error) so that no
 * rank is left waiting in a collective call another rank skipped, and every
 * rank returns the same message. Bulk I/O loops never exit early (with
 * collective I/O every rank must make every call); the first error is kept.
 *
 * Tuning (environment, read on each call):
 *   PRESIGHT_CKPT_IO     "independent" (default) or "collective" (MPI-IO
 *                        two-phase collective buffering, which some parallel
 *                        file systems prefer; measured no better on a local disk).
 *   PRESIGHT_CKPT_ALIGN  alignment in bytes of datasets >= 64 KiB (default 1 MiB,
 *                        a common parallel-FS stripe; 0 = HDF5's packing).
 *   PRESIGHT_CKPT_HINTS  MPI-IO hints, "key=value,key=value" (e.g. striping_factor=8).
 *   PRESIGHT_CKPT_TRACE  1: rank 0 prints the seconds of each phase of a write. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"

/* 2: moments of trainable units only, and /state model_checksum (the
 * weights' own sum, for weights-only loads); 1: moments of every tensor
 * (still read). */
#define CKPT_FORMAT_VERSION 2
#ifndef CKPT_ALIGN
#define CKPT_ALIGN (1 << 20) /* alignment of datasets >= 64 KiB (PRESIGHT_CKPT_ALIGN overrides) */
#endif
#ifndef CKPT_META_BLOCK
#define CKPT_META_BLOCK (1 << 20) /* metadata is aggregated in blocks of this size */
#endif

enum { N_GROUPS = 3 };
static const char *const group_path[N_GROUPS] = {"/model", "/optim/m", "/optim/v"};
/* Salts of the three groups in the checksum, so that swapping /optim/m and /optim/v is detected. */
static const uint64_t group_salt[N_GROUPS] = {0x6d6f64656c000001ULL, 0x6f7074696d2f6d02ULL, 0x6f7074696d2f7603ULL};

/* Outcome of a read: loading the previous checkpoint is right after CK_UNUSABLE
 * (truncated, corrupt, incomplete) but not after CK_FATAL (another model). */
enum { CK_OK = 0, CK_UNUSABLE = 1, CK_FATAL = 2 };

static hid_t mem_real_type(void) { return REAL_IS_DOUBLE ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* PRESIGHT_CKPT_TRACE=1: rank 0 prints the seconds of each phase of a write to stderr. */
static void trace(MPI_Comm mc, const char *what, double *t0) {
    const char *s = getenv("PRESIGHT_CKPT_TRACE");
    if (!s || !*s || strcmp(s, "0") == 0) return;
    int rank;
    MPI_Comm_rank(mc, &rank);
    double t = MPI_Wtime();
    if (rank == 0 && *t0 > 0) fprintf(stderr, "checkpoint: %-10s %.3f s\n", what, t - *t0);
    *t0 = t;
}

static MPI_Comm mpi_of(comm *c) { return *(MPI_Comm *)comm_mpi_handle(c); }

/* ------------------------------------------------------------------ agreement */

/* Every rank passes its own outcome (kind 0 = fine) and message; all ranks get
 * the worst kind, and the message of the lowest rank that had it. */
static int sync_error(MPI_Comm mc, int kind, ps_error *e) {
    int worst = kind;
    MPI_Allreduce(&kind, &worst, 1, MPI_INT, MPI_MAX, mc);
    if (worst == 0) return 0;
    int rank, size, who;
    MPI_Comm_rank(mc, &rank);
    MPI_Comm_size(mc, &size);
    int mine = kind == worst ? rank : size;
    MPI_Allreduce(&mine, &who, 1, MPI_INT, MPI_MIN, mc);
    MPI_Bcast(e->msg, (int)sizeof e->msg, MPI_CHAR, who, mc);
    e->msg[sizeof e->msg - 1] = 0;
    return worst;
}

/* Waits for every rank without spinning: a rank that finished its I/O early
 * sleeps instead of taking a core from a rank still writing (blocking MPI
 * collectives busy-poll). Used before the agreements that follow bulk I/O. */
static void polite_barrier(MPI_Comm mc) {
    MPI_Request req;
    if (MPI_Ibarrier(mc, &req) != MPI_SUCCESS) return;
    for (int done = 0;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

/* ------------------------------------------------------------------ checksum */

static inline uint32_t stored_bits(real x) {
    float f = (float)x;
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* The checksum term of element i of a tensor: a strong bijective mix of
 * (tensor key, index, float32 bits), so changing any one element always
 * changes the sum, and the sum over elements does not depend on who hashes what. */
static inline uint64_t element_hash(uint64_t key, uint64_t i, uint32_t bits) {
    return rng_mix(key ^ (i * 0x9e3779b97f4a7c15ULL) ^ bits);
}

/* Sum over elements first..first+n-1 of tensor `key` (x[0] is element first). */
static uint64_t hash_range(uint64_t key, uint64_t first, const real *x, size_t n) {
    uint64_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) sum += element_hash(key, first + i, stored_bits(x[i]));
    return sum;
}

static uint64_t tensor_key(int group, const char *name) { return rng_key(group_salt[group], name); }

/* ------------------------------------------------------------------ slices */

/* The part of tensor t that this rank's slice holds: [a, b) of the tensor's
 * flat index space, and where it is in memory. Returns 0 when empty. */
static int slice_of(const model_layout *L, const shard_view *v, real *const *base, int t, hsize_t *a, hsize_t *b,
                    real **data) {
    const model_tensor *T = &L->tensors[t];
    const shard_layout *s = v->layout;
    size_t start = shard_start(s, T->unit), count = shard_count(s, T->unit);
    size_t t0 = T->offset, t1 = T->offset + (size_t)T->rows * (size_t)T->cols;
    size_t lo = start > t0 ? start : t0, hi = start + count < t1 ? start + count : t1;
    if (count == 0 || lo >= hi) return 0;
    *a = lo - t0;
    *b = hi - t0;
    *data = base[T->unit] + (lo - start);
    return 1;
}

static real *const *group_base(const shard_view *v, int g) { return g == 0 ? v->params : g == 1 ? v->m : v->v; }

/* Whether group g stores tensor t: weights always, moments of trainable units only. */
static int stores(const model_layout *L, int g, int t) { return g == 0 || L->units[L->tensors[t].unit].trainable; }

/* The checksum of this rank's slices, as a pool of pieces of at most
 * HASH_PIECE elements that any number of threads take in turn: while writing,
 * one helper thread starts on them beside the main thread's I/O and the main
 * thread joins in when its writes are done; after reading, an OpenMP team
 * shares them. The threads only read the buffers (no HDF5 or MPI calls). */
#define HASH_PIECE ((size_t)1 << 20)

typedef struct hash_piece {
    uint64_t key, first;
    const real *x;
    size_t n;
    int group;
} hash_piece;

typedef struct hash_pool {
    hash_piece *pieces;
    int n_pieces;
    atomic_int next;
    atomic_uint_fast64_t sum, model_sum; /* every group; /model alone */
} hash_pool;

/* Collects the pieces of every (group, tensor) slice of this rank (none when it is not a writer). */
static int hash_pool_init(hash_pool *p, const model_layout *L, const shard_view *v) {
    p->pieces = NULL;
    p->n_pieces = 0;
    atomic_init(&p->next, 0);
    atomic_init(&p->sum, 0);
    atomic_init(&p->model_sum, 0);
    if (!v->writer) return 0;
    for (int pass = 0; pass < 2; pass++) {
        int n = 0;
        for (int g = 0; g < N_GROUPS; g++)
            for (int t = 0; t < L->n_tensors; t++) {
                hsize_t a, b;
                real *data;
                if (!stores(L, g, t) || !slice_of(L, v, group_base(v, g), t, &a, &b, &data)) continue;
                uint64_t key = tensor_key(g, L->tensors[t].name);
                for (hsize_t at = a; at < b; at += HASH_PIECE, n++)
                    if (pass) {
                        size_t len = b - at < HASH_PIECE ? (size_t)(b - at) : HASH_PIECE;
                        p->pieces[n] = (hash_piece){key, at, data + (at - a), len, g};
                    }
            }
        if (pass == 0 && n && !(p->pieces = malloc((size_t)n * sizeof *p->pieces))) return -1;
        p->n_pieces = n;
    }
    return 0;
}

static void *hash_pool_work(void *arg) {
    hash_pool *p = arg;
    uint64_t sum = 0, model = 0;
    for (int i; (i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n_pieces;) {
        uint64_t h = hash_range(p->pieces[i].key, p->pieces[i].first, p->pieces[i].x, p->pieces[i].n);
        sum += h;
        if (p->pieces[i].group == 0) model += h;
    }
    atomic_fetch_add_explicit(&p->sum, sum, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->model_sum, model, memory_order_relaxed);
    return NULL;
}

/* Selects [a, b) of a tensor (1-D [rows] or 2-D [rows, cols]) in file space fs,
 * and returns a 1-D memory space of b - a elements; empty (a == b) selects none in both. */
static hid_t select_range(hid_t fs, int ndims, hsize_t cols, hsize_t a, hsize_t b) {
    hsize_t n = b > a ? b - a : 1;
    hid_t ms = H5Screate_simple(1, &n, NULL);
    if (ms < 0) return -1;
    herr_t rc = 0;
    if (b <= a) {
        rc |= H5Sselect_none(fs);
        rc |= H5Sselect_none(ms);
    } else if (ndims == 1) {
        hsize_t start = a, count = b - a;
        rc |= H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    } else {
        hsize_t r0 = a / cols, c0 = a % cols, r1 = b / cols, c1 = b % cols;
        H5S_seloper_t op = H5S_SELECT_SET;
        if (r0 == r1) {
            hsize_t start[2] = {r0, c0}, count[2] = {1, c1 - c0};
            rc |= H5Sselect_hyperslab(fs, op, start, NULL, count, NULL);
        } else {
            if (c0) { /* partial first row */
                hsize_t start[2] = {r0, c0}, count[2] = {1, cols - c0};
                rc |= H5Sselect_hyperslab(fs, op, start, NULL, count, NULL);
                op = H5S_SELECT_OR;
                r0++;
            }
            if (r1 > r0) { /* full rows */
                hsize_t start[2] = {r0, 0}, count[2] = {r1 - r0, cols};
                rc |= H5Sselect_hyperslab(fs, op, start, NULL, count, NULL);
                op = H5S_SELECT_OR;
            }
            if (c1) { /* partial last row */
                hsize_t start[2] = {r1, 0}, count[2] = {1, c1};
                rc |= H5Sselect_hyperslab(fs, op, start, NULL, count, NULL);
            }
        }
    }
    if (rc < 0 || (b > a && (hsize_t)H5Sget_select_npoints(fs) != b - a)) {
        H5Sclose(ms);
        return -1;
    }
    return ms;
}

static int check_view(const model_layout *L, const shard_view *v, ps_error *e) {
    const shard_layout *s = v ? v->layout : NULL;
    if (!s || s->n_units != L->n_units || s->world < 1 || s->rank < 0 || s->rank >= s->world)
        return ps_fail(e, "checkpoint: the shard view does not match the model (%d units, shard %d of %d)",
                       s ? s->n_units : -1, s ? s->rank : -1, s ? s->world : -1);
    for (int u = 0; u < L->n_units; u++) {
        if (s->unit_size[u] != L->units[u].size ||
            s->shard_len[u] < (L->units[u].size + (size_t)s->world - 1) / (size_t)s->world)
            return ps_fail(e, "checkpoint: unit %d has %zu elements in the shard layout (slices of %zu), the model has %zu",
                           u, s->unit_size[u], s->shard_len[u], L->units[u].size);
        if (shard_count(s, u) && (!v->params[u] || (L->units[u].trainable && (!v->m[u] || !v->v[u]))))
            return ps_fail(e, "checkpoint: the shard view has no buffer for unit %d", u);
    }
    return 0;
}

/* The slices of the writer ranks must hold every element exactly once (the
 * checksum counts what they hold): a DDP world with writer = 1 everywhere
 * would write each element N times. Collective; 0 when they do. */
static int check_coverage(MPI_Comm mc, const model_layout *L, const shard_view *v, ps_error *e) {
    uint64_t held = 0;
    if (v->writer)
        for (int u = 0; u < L->n_units; u++) held += shard_count(v->layout, u);
    MPI_Allreduce(MPI_IN_PLACE, &held, 1, MPI_UINT64_T, MPI_SUM, mc);
    if (held == (uint64_t)L->n_params) return 0;
    return ps_fail(e,
                   "checkpoint: the slices of the ranks with writer = 1 hold %llu elements, the model has %zu (each "
                   "element must be on exactly one writer rank: replicas need writer = 0)",
                   (unsigned long long)held, L->n_params);
}

/* ------------------------------------------------------------------ file access */

static int env_is(const char *name, const char *value) {
    const char *s = getenv(name);
    return s && strcmp(s, value) == 0;
}

static MPI_Info make_info(void) {
    const char *hints = getenv("PRESIGHT_CKPT_HINTS");
    if (!hints || !*hints) return MPI_INFO_NULL;
    MPI_Info info;
    MPI_Info_create(&info);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", hints);
    for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) continue;
        *eq = 0;
        MPI_Info_set(info, kv, eq + 1);
    }
    return info;
}

static hid_t make_fapl(MPI_Comm mc) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    MPI_Info info = make_info();
    H5Pset_fapl_mpio(fapl, mc, info);
    if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    /* The 1.8 object format: readable by any HDF5 >= 1.8 (h5py), and it allows
     * dense attribute storage, so the config text has no 64 KiB limit. */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    const char *al = getenv("PRESIGHT_CKPT_ALIGN");
    long long align = al && *al ? atoll(al) : CKPT_ALIGN;
    if (align > 0) H5Pset_alignment(fapl, 65536, (hsize_t)align);
    if (CKPT_META_BLOCK > 0) H5Pset_meta_block_size(fapl, CKPT_META_BLOCK);
    return fapl;
}

static int collective_io(void) { return env_is("PRESIGHT_CKPT_IO", "collective"); }

static hid_t make_dxpl(void) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, collective_io() ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT);
    return dxpl;
}

/* Writes (or reads) [a, b) of tensor T from (into) data. With collective I/O
 * every rank makes the call, selecting nothing when it has nothing; with
 * independent I/O a rank with nothing skips it. Returns 0 or -1. */
static int transfer(hid_t set, const model_tensor *T, hsize_t a, hsize_t b, real *data, hid_t dxpl, int writing) {
    int collective = collective_io();
    if (!collective && b <= a) return 0;
    hsize_t dims[2] = {(hsize_t)T->rows, (hsize_t)T->cols};
    int ndims = T->cols == 1 ? 1 : 2;
    hid_t fs = H5Screate_simple(ndims, dims, NULL);
    hid_t ms = fs < 0 ? -1 : select_range(fs, ndims, dims[1], a, b);
    static real dummy;
    void *buf = data && b > a ? data : &dummy;
    int rc = ms < 0 ? -1
             : writing ? (H5Dwrite(set, mem_real_type(), ms, fs, dxpl, buf) < 0 ? -1 : 0)
                       : (H5Dread(set, mem_real_type(), ms, fs, dxpl, buf) < 0 ? -1 : 0);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

static void write_behind(int fd, off_t offset, off_t bytes) {
#ifdef SYNC_FILE_RANGE_WRITE
    sync_file_range(fd, offset, bytes, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd, (void)offset, (void)bytes;
#endif
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

static void fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* ------------------------------------------------------------------ attributes */

static int attr_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *buf, hsize_t n) {
    hid_t space = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = attr >= 0 && H5Awrite(attr, mem_type, buf) >= 0 ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

static int attr_write_string(hid_t loc, const char *name, const char *text) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(text) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    H5Tset_cset(type, H5T_CSET_UTF8);
    int rc = attr_write(loc, name, type, type, text, 0);
    H5Tclose(type);
    return rc;
}

/* Reads a numeric attribute of n values (scalar when n = 1 is stored as scalar or [1]). */
static int attr_read(hid_t loc, const char *name, hid_t mem_type, void *buf, hsize_t n) {
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    hid_t space = H5Aget_space(attr);
    hssize_t points = H5Sget_simple_extent_npoints(space);
    int rc = points == (hssize_t)n && H5Aread(attr, mem_type, buf) >= 0 ? 0 : -1;
    H5Sclose(space);
    H5Aclose(attr);
    return rc;
}

/* Reads a string attribute (fixed or variable length) into a malloc'd string. */
static char *attr_read_string(hid_t loc, const char *name) {
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) return NULL;
    hid_t ftype = H5Aget_type(attr), mtype = H5Tcopy(H5T_C_S1);
    char *out = NULL;
    if (H5Tget_class(ftype) == H5T_STRING) {
        H5Tset_cset(mtype, H5Tget_cset(ftype)); /* HDF5 does not convert between ASCII and UTF-8 */
        if (H5Tis_variable_str(ftype) > 0) {
            char *vl = NULL;
            H5Tset_size(mtype, H5T_VARIABLE);
            if (H5Aread(attr, mtype, &vl) >= 0 && vl) {
                out = strdup(vl);
                H5free_memory(vl);
            }
        } else {
            size_t size = H5Tget_size(ftype);
            H5Tset_size(mtype, size + 1);
            H5Tset_strpad(mtype, H5T_STR_NULLTERM);
            out = calloc(size + 2, 1);
            if (out && H5Aread(attr, mtype, out) < 0) {
                free(out);
                out = NULL;
            }
        }
    }
    H5Tclose(mtype);
    H5Tclose(ftype);
    H5Aclose(attr);
    return out;
}

static int write_state(hid_t file, const checkpoint_state *st, uint64_t checksum, uint64_t model_checksum,
                       const char *config_text) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_attr_phase_change(gcpl, 0, 0); /* dense attribute storage: any config size */
    hid_t g = H5Gcreate2(file, "state", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    if (g < 0) return -1;
    int version = CKPT_FORMAT_VERSION, rc = 0;
    rc |= attr_write(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->step, 0);
    rc |= attr_write(g, "total_steps", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->total_steps, 0);
    rc |= attr_write(g, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &st->seed, 0);
    rc |= attr_write(g, "tokens", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &st->tokens, 0);
    rc |= attr_write(g, "elapsed_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &st->elapsed_s, 0);
    rc |= attr_write(g, "data_state", H5T_STD_U64LE, H5T_NATIVE_UINT64, st->data_state, 4);
    rc |= attr_write(g, "world_size", H5T_STD_I32LE, H5T_NATIVE_INT, &st->world_size, 0);
    rc |= attr_write_string(g, "strategy", st->strategy);
    rc |= attr_write(g, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version, 0);
    rc |= attr_write(g, "checksum", H5T_STD_U64LE, H5T_NATIVE_UINT64, &checksum, 0);
    rc |= attr_write(g, "model_checksum", H5T_STD_U64LE, H5T_NATIVE_UINT64, &model_checksum, 0);
    if (config_text) rc |= attr_write_string(g, "config", config_text);
    H5Gclose(g);
    return rc;
}

/* ------------------------------------------------------------------ write */

static void step_path(char *out, size_t size, const char *dir, long long step) {
    snprintf(out, size, "%s/step_%08lld.h5", dir, step);
}

/* Reserves the blocks of every dataset about to be written (rank 0, the file
 * is shared), so that a full disk or a quota is found before the first byte
 * of data instead of at H5Fclose: HDF5 1.10 keeps a file whose close failed
 * open in a broken state and crashes at MPI_Finalize when it closes it again,
 * and Open MPI's MPI-IO reports some failed writes only on stderr. Datasets
 * are allocated early (their offsets are known) and aligned, so the ranges are
 * reserved one by one. File systems without fallocate are written as before. */
static int reserve_space(const char *tmp, const hid_t *sets, int n_sets, ps_error *e) {
    int fd = open(tmp, O_WRONLY);
    if (fd < 0) return ps_fail(e, "%s: %s", tmp, strerror(errno));
    int why = 0;
    double bytes = 0;
    for (int i = 0; i < n_sets && !why; i++) {
        haddr_t at = H5Dget_offset(sets[i]);
        hsize_t n = H5Dget_storage_size(sets[i]);
        if (at == HADDR_UNDEF || n == 0) continue;
        if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)n) != 0) why = errno;
        bytes += (double)n;
    }
    close(fd);
    if (!why || why == EOPNOTSUPP || why == ENOSYS) return 0;
    (void)truncate(tmp, 0); /* give the reservation back before HDF5 writes its metadata */
    return ps_fail(e, "%s: cannot reserve the checkpoint's %.1f MB: %s (the previous checkpoints are kept)", tmp,
                   bytes / 1e6, strerror(why));
}

int checkpoint_write(const char *dir, comm *c, const model_layout *L, const shard_view *mine,
                     const checkpoint_state *st_in, const char *config_text, ps_error *err) {
    quiet_hdf5();
    MPI_Comm mc = mpi_of(c);
    int rank = comm_rank(c);
    ps_error e = {{0}};
    double clock = 0;
    trace(mc, "start", &clock);
    int bad = check_view(L, mine, &e) ? 1 : 0;
    if (!bad && rank == 0 && !st_in) bad = (ps_fail(&e, "checkpoint_write: no state given on rank 0"), 1);
    if (sync_error(mc, bad, &e)) return ps_fail(err, "%s", e.msg);
    if (check_coverage(mc, L, mine, &e)) return ps_fail(err, "%s", e.msg);

    /* Rank 0's state and config are the ones written, identically, by every rank. */
    checkpoint_state st;
    memset(&st, 0, sizeof st);
    if (rank == 0) {
        st = *st_in;
        if (st.world_size <= 0) st.world_size = comm_size(c);
        st.strategy[sizeof st.strategy - 1] = 0;
    }
    MPI_Bcast(&st, (int)sizeof st, MPI_BYTE, 0, mc);
    long long config_len = rank == 0 && config_text ? (long long)strlen(config_text) : -1;
    MPI_Bcast(&config_len, 1, MPI_LONG_LONG, 0, mc);
    char *config = NULL;
    if (config_len >= 0) {
        config = malloc((size_t)config_len + 1);
        bad = config ? 0 : (ps_fail(&e, "out of memory for the config text"), 1);
        if (sync_error(mc, bad, &e)) {
            free(config);
            return ps_fail(err, "%s", e.msg);
        }
        if (rank == 0) memcpy(config, config_text, (size_t)config_len + 1);
        MPI_Bcast(config, (int)config_len + 1, MPI_CHAR, 0, mc);
    }

    char path[4096], tmp[4200];
    step_path(path, sizeof path, dir, (long long)st.step);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    bad = rank == 0 && mkdir_p(dir) ? (ps_fail(&e, "%s: cannot create the checkpoint folder: %s", dir, strerror(errno)), 1)
                                     : 0;
    if (sync_error(mc, bad, &e)) {
        free(config);
        return ps_fail(err, "%s", e.msg);
    }

    hid_t fapl = make_fapl(mc);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    bad = file < 0 ? (ps_fail(&e, "%s: cannot create the HDF5 file (parallel HDF5 over MPI-IO)", tmp), 1) : 0;
    if (sync_error(mc, bad, &e)) {
        free(config);
        return ps_fail(err, "%s", e.msg);
    }

    /* The checksum is computed beside the writes and summed over ranks after them. */
    hash_pool pool;
    pthread_t hasher;
    int pool_failed = hash_pool_init(&pool, L, mine);
    int threaded = !pool_failed && pool.n_pieces > 1 && pthread_create(&hasher, NULL, hash_pool_work, &pool) == 0;

    int failed = 0;
    hid_t groups[N_GROUPS] = {-1, -1, -1}, optim = H5Gcreate2(file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    groups[0] = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (optim >= 0) {
        groups[1] = H5Gcreate2(optim, "m", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        groups[2] = H5Gcreate2(optim, "v", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    }
    bad = optim < 0 || groups[0] < 0 || groups[1] < 0 || groups[2] < 0
              ? (ps_fail(&e, "%s: cannot create the groups /model, /optim/m, /optim/v", tmp), 1)
              : 0;
    failed = sync_error(mc, bad, &e);

    /* Every dataset is created first (collective metadata), then the data moves
     * with no further agreement until all of it is written. */
    int n_sets = N_GROUPS * L->n_tensors, pending = 0;
    hid_t *sets = malloc((size_t)n_sets * sizeof *sets);
    bad = sets ? 0 : (ps_fail(&e, "out of memory"), 1);
    if (!failed) failed = sync_error(mc, bad, &e);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), dxpl = make_dxpl();
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER); /* every element is written: no fill pass */
    int created = 0;
    for (; created < n_sets && !failed; created++) {
        int g = created / L->n_tensors;
        const model_tensor *T = &L->tensors[created % L->n_tensors];
        if (!stores(L, g, created % L->n_tensors)) {
            sets[created] = -1;
            continue;
        }
        hsize_t dims[2] = {(hsize_t)T->rows, (hsize_t)T->cols};
        hid_t fs = H5Screate_simple(T->cols == 1 ? 1 : 2, dims, NULL);
        sets[created] = fs < 0 ? -1 : H5Dcreate2(groups[g], T->name, H5T_IEEE_F32LE, fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (fs >= 0) H5Sclose(fs);
        if (sets[created] < 0) {
            pending = (ps_fail(&e, "%s: cannot create dataset %s/%s", tmp, group_path[g], T->name), 1);
            created++;
            break;
        }
    }
    if (!failed && rank == 0 && !pending && reserve_space(tmp, sets, created, &e)) pending = 1;
    if (!failed) failed = sync_error(mc, pending, &e);
    /* Write-behind: each rank asks the kernel to start writing back what it
     * has just written while it goes on with the next dataset, so that the
     * final flush has little left to do (Linux; a no-op elsewhere). */
    int wb_fd = mine->writer && !failed ? open(tmp, O_WRONLY) : -1;
    /* No early exit on a failed write: with collective I/O the other ranks are
     * in the same sequence of calls. The first failure is reported after. */
    for (int i = 0; i < n_sets && !failed; i++) {
        int g = i / L->n_tensors, t = i % L->n_tensors;
        hsize_t a = 0, b = 0;
        real *data = NULL;
        if (!stores(L, g, t)) continue;
        if (mine->writer) slice_of(L, mine, group_base(mine, g), t, &a, &b, &data);
        if (transfer(sets[i], &L->tensors[t], a, b, data, dxpl, 1) < 0) {
            if (!pending) pending = (ps_fail(&e, "%s: writing %s/%s failed", tmp, group_path[g], L->tensors[t].name), 1);
        } else if (wb_fd >= 0 && b > a) {
            haddr_t at = H5Dget_offset(sets[i]);
            if (at != HADDR_UNDEF)
                write_behind(wb_fd, (off_t)(at + a * sizeof(float)), (off_t)((b - a) * sizeof(float)));
        }
    }
    if (wb_fd >= 0) close(wb_fd);
    for (int i = 0; i < created; i++)
        if (sets[i] >= 0) H5Dclose(sets[i]);
    free(sets);
    H5Pclose(dcpl);
    H5Pclose(dxpl);
    trace(mc, "datasets", &clock);
    hash_pool_work(&pool); /* the main thread helps with what is left */
    if (threaded) pthread_join(hasher, NULL);
    polite_barrier(mc);
    free(pool.pieces);
    if (pool_failed && !pending) pending = (ps_fail(&e, "out of memory for the checksum"), 1);
    uint64_t sums[2] = {atomic_load(&pool.sum), atomic_load(&pool.model_sum)};
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_UINT64_T, MPI_SUM, mc);
    uint64_t checksum = sums[0];
    trace(mc, "checksum", &clock);
    if (!failed) failed = sync_error(mc, pending, &e);
    if (!failed) {
        bad = write_state(file, &st, checksum, sums[1], config) ? (ps_fail(&e, "%s: writing the /state attributes failed", tmp), 1)
                                                       : 0;
        failed = sync_error(mc, bad, &e);
    }
    free(config);
    for (int g = 0; g < N_GROUPS; g++)
        if (groups[g] >= 0) H5Gclose(groups[g]);
    if (optim >= 0) H5Gclose(optim);
    bad = 0;
    if (!failed && H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) bad = (ps_fail(&e, "%s: flush failed", tmp), 1);
    trace(mc, "flush", &clock);
    if (H5Fclose(file) < 0 && !bad) bad = (ps_fail(&e, "%s: close failed", tmp), 1);
    if (!failed) failed = sync_error(mc, bad, &e);
    trace(mc, "close", &clock);

    /* Only a complete file gets the real name: fsync, then an atomic rename. */
    bad = 0;
    if (rank == 0) {
        if (failed) {
            unlink(tmp);
        } else {
            fsync_path(tmp, O_RDONLY);
            if (rename(tmp, path) != 0) {
                bad = (ps_fail(&e, "%s: rename to %s failed: %s", tmp, path, strerror(errno)), 1);
                unlink(tmp);
            } else {
                fsync_path(dir, O_RDONLY | O_DIRECTORY);
            }
        }
    }
    if (!failed) failed = sync_error(mc, bad, &e);
    trace(mc, "rename", &clock);
    return failed ? ps_fail(err, "%s", e.msg) : 0;
}

/* ------------------------------------------------------------------ read */

static void shape_text(char *out, size_t size, int ndims, const hsize_t *dims) {
    if (ndims == 1)
        snprintf(out, size, "[%llu]", (unsigned long long)dims[0]);
    else if (ndims == 2)
        snprintf(out, size, "[%llu, %llu]", (unsigned long long)dims[0], (unsigned long long)dims[1]);
    else
        snprintf(out, size, "(rank %d)", ndims);
}

typedef struct name_check {
    const model_layout *L;
    char extra[MODEL_TENSOR_NAME_MAX + 64];
} name_check;

static herr_t find_extra(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    name_check *nc = data;
    if (model_layout_find(nc->L, name) < 0) {
        snprintf(nc->extra, sizeof nc->extra, "%s", name);
        return 1;
    }
    return 0;
}

/* Reads one file; returns CK_OK, CK_UNUSABLE or CK_FATAL (same on every rank) with e filled. */
static int read_file(const char *path, MPI_Comm mc, const model_layout *L, shard_view *mine, checkpoint_state *st_out,
                     char **config_out, ps_error *e) {
    int rank;
    MPI_Comm_rank(mc, &rank);
    int bad = check_view(L, mine, e) ? CK_FATAL : 0;
    if ((bad = sync_error(mc, bad, e))) return bad;
    if (check_coverage(mc, L, mine, e)) return CK_FATAL;
    bad = rank == 0 && access(path, R_OK) != 0 ? (ps_fail(e, "%s: cannot open: %s", path, strerror(errno)), CK_UNUSABLE)
                                                : 0;
    if ((bad = sync_error(mc, bad, e))) return bad;

    hid_t fapl = make_fapl(mc);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    bad = file < 0 ? (ps_fail(e, "%s: cannot open as HDF5 (truncated, or not an HDF5 file)", path), CK_UNUSABLE) : 0;
    if ((bad = sync_error(mc, bad, e))) return bad;

    checkpoint_state st;
    memset(&st, 0, sizeof st);
    uint64_t stored = 0;
    int version = 0;
    char *config = NULL, *strategy = NULL;
    hid_t sg = H5Gopen2(file, "state", H5P_DEFAULT);
    if (sg < 0 || attr_read(sg, "format_version", H5T_NATIVE_INT, &version, 1)) {
        bad = (ps_fail(e, "%s: has no /state format_version attribute (incomplete or not a presight checkpoint)", path),
               CK_UNUSABLE);
    } else if (version < 1 || version > CKPT_FORMAT_VERSION) {
        bad = (ps_fail(e, "%s: checkpoint format_version %d; this build reads versions 1 to %d", path, version,
                       CKPT_FORMAT_VERSION),
               CK_FATAL);
    } else if (attr_read(sg, "step", H5T_NATIVE_INT64, &st.step, 1) ||
               attr_read(sg, "total_steps", H5T_NATIVE_INT64, &st.total_steps, 1) ||
               attr_read(sg, "seed", H5T_NATIVE_UINT64, &st.seed, 1) ||
               attr_read(sg, "tokens", H5T_NATIVE_DOUBLE, &st.tokens, 1) ||
               attr_read(sg, "elapsed_s", H5T_NATIVE_DOUBLE, &st.elapsed_s, 1) ||
               attr_read(sg, "data_state", H5T_NATIVE_UINT64, st.data_state, 4) ||
               attr_read(sg, "world_size", H5T_NATIVE_INT, &st.world_size, 1) ||
               attr_read(sg, "checksum", H5T_NATIVE_UINT64, &stored, 1) ||
               !(strategy = attr_read_string(sg, "strategy"))) {
        bad = (ps_fail(e, "%s: a /state attribute is missing or malformed", path), CK_UNUSABLE);
    } else {
        snprintf(st.strategy, sizeof st.strategy, "%s", strategy);
        if (H5Aexists(sg, "config") > 0 && !(config = attr_read_string(sg, "config")))
            bad = (ps_fail(e, "%s: the /state config attribute is unreadable", path), CK_UNUSABLE);
    }
    free(strategy);
    if (sg >= 0) H5Gclose(sg);
    bad = sync_error(mc, bad, e);

    /* Open and check every dataset first (shapes are the same on every rank),
     * agree once, then read with no further agreement until the end. */
    uint64_t sum = 0;
    int n_sets = N_GROUPS * L->n_tensors, opened = 0, kind = 0;
    hid_t *sets = bad ? NULL : malloc((size_t)n_sets * sizeof *sets);
    if (!bad && !sets) kind = (ps_fail(e, "out of memory"), CK_UNUSABLE);
    for (int g = 0; g < N_GROUPS && sets && !kind; g++) {
        hid_t grp = H5Gopen2(file, group_path[g], H5P_DEFAULT);
        if (grp < 0) {
            kind = (ps_fail(e, "%s: has no group %s", path, group_path[g]), CK_UNUSABLE);
            break;
        }
        /* A tensor the model does not have means another model: not a corrupt file. */
        name_check nc = {L, {0}};
        hsize_t idx = 0;
        H5G_info_t gi;
        if (H5Gget_info(grp, &gi) >= 0 && gi.nlinks > (hsize_t)L->n_tensors)
            H5Literate(grp, H5_INDEX_NAME, H5_ITER_INC, &idx, find_extra, &nc);
        if (nc.extra[0])
            kind = (ps_fail(e, "%s: holds tensor %s/%s, which this model does not have (a checkpoint of another model)",
                            path, group_path[g], nc.extra),
                    CK_FATAL);
        for (int t = 0; t < L->n_tensors && !kind; t++) {
            const model_tensor *T = &L->tensors[t];
            hsize_t want[2] = {(hsize_t)T->rows, (hsize_t)T->cols}, dims[3] = {0, 0, 0};
            int ndims_want = T->cols == 1 ? 1 : 2;
            /* The moments this run keeps are those the file holds: a frozen
             * unit's moments in the file (a v1 file, or a run that trained it)
             * mean another run; load its weights only instead. */
            if (!stores(L, g, t)) {
                sets[opened++] = -1;
                if (H5Lexists(grp, T->name, H5P_DEFAULT) > 0)
                    kind = (ps_fail(e, "%s: holds %s/%s, but this run freezes that tensor (resume with the same "
                                       "trainable units, or load the weights only)", path, group_path[g], T->name),
                            CK_FATAL);
                continue;
            }
            hid_t set = sets[opened] = H5Dopen2(grp, T->name, H5P_DEFAULT);
            if (set < 0) {
                kind = (ps_fail(e, "%s: tensor %s/%s is missing", path, group_path[g], T->name), CK_UNUSABLE);
                break;
            }
            opened++;
            hid_t fs = H5Dget_space(set), type = H5Dget_type(set);
            int ndims = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs);
            if (ndims >= 1 && ndims <= 3) H5Sget_simple_extent_dims(fs, dims, NULL);
            int is_float = type >= 0 && H5Tget_class(type) == H5T_FLOAT;
            if (type >= 0) H5Tclose(type);
            if (fs >= 0) H5Sclose(fs);
            if (ndims != ndims_want || dims[0] != want[0] || (ndims == 2 && dims[1] != want[1])) {
                char have_s[64], want_s[64];
                shape_text(have_s, sizeof have_s, ndims, dims);
                shape_text(want_s, sizeof want_s, ndims_want, want);
                kind = (ps_fail(e,
                                "%s: tensor %s/%s has shape %s in the file, the model expects %s (a checkpoint of "
                                "another model; not falling back to an older one)",
                                path, group_path[g], T->name, have_s, want_s),
                        CK_FATAL);
            } else if (!is_float) {
                kind = (ps_fail(e, "%s: tensor %s/%s is not floating point", path, group_path[g], T->name), CK_UNUSABLE);
            }
        }
        H5Gclose(grp);
    }
    if (!bad) bad = sync_error(mc, kind, e);
    hid_t dxpl = make_dxpl();
    for (int i = 0; i < n_sets && !bad; i++) { /* no early exit: see checkpoint_write */
        int g = i / L->n_tensors, t = i % L->n_tensors;
        hsize_t a = 0, b = 0;
        real *data = NULL;
        if (!stores(L, g, t)) continue;
        slice_of(L, mine, group_base(mine, g), t, &a, &b, &data);
        if (transfer(sets[i], &L->tensors[t], a, b, data, dxpl, 0) < 0 && !kind)
            kind = (ps_fail(e, "%s: reading %s/%s failed", path, group_path[g], L->tensors[t].name), CK_UNUSABLE);
    }
    H5Pclose(dxpl);
    for (int i = 0; i < opened; i++)
        if (sets[i] >= 0) H5Dclose(sets[i]);
    free(sets);
    if (!bad) polite_barrier(mc);
    if (!bad) bad = sync_error(mc, kind, e);

    if (H5Fclose(file) < 0 && !bad) bad = sync_error(mc, (ps_fail(e, "%s: close failed", path), CK_UNUSABLE), e);
    if (!bad) {
        /* What this rank read, hashed by all its threads (writer ranks of the reading layout only). */
        hash_pool pool;
        int oom = hash_pool_init(&pool, L, mine) ? (ps_fail(e, "out of memory for the checksum"), CK_UNUSABLE) : 0;
#pragma omp parallel if (pool.n_pieces > 1)
        hash_pool_work(&pool);
        free(pool.pieces);
        sum = atomic_load(&pool.sum);
        bad = sync_error(mc, oom, e);
    }
    if (!bad) {
        MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_UINT64_T, MPI_SUM, mc);
        if (sum != stored)
            bad = (ps_fail(e, "%s: checksum mismatch (stored %016llx, computed %016llx): the file is corrupt", path,
                           (unsigned long long)stored, (unsigned long long)sum),
                   CK_UNUSABLE);
    }
    if (bad) {
        free(config);
        return bad;
    }
    if (st_out) *st_out = st;
    if (config_out)
        *config_out = config;
    else
        free(config);
    return CK_OK;
}

int checkpoint_read(const char *path, comm *c, const model_layout *L, shard_view *mine, checkpoint_state *st,
                    char **config_text, ps_error *err) {
    quiet_hdf5();
    ps_error e = {{0}};
    if (config_text) *config_text = NULL;
    return read_file(path, mpi_of(c), L, mine, st, config_text, &e) ? ps_fail(err, "%s", e.msg) : 0;
}

/* ------------------------------------------------------------------ listing */

typedef struct ckpt_entry {
    long long step;
    char name[256];
} ckpt_entry;

/* "step_<digits>.h5" (tmp = 0) or "step_<digits>.h5.tmp" (tmp = 1): the step, or -1. */
static long long parse_name(const char *name, int tmp) {
    if (strncmp(name, "step_", 5) != 0) return -1;
    const char *p = name + 5, *d = p;
    long long step = 0;
    while (*p >= '0' && *p <= '9' && p - d < 18) step = step * 10 + (*p++ - '0');
    if (p == d) return -1;
    return strcmp(p, tmp ? ".h5.tmp" : ".h5") == 0 ? step : -1;
}

static int by_step_desc(const void *x, const void *y) {
    const ckpt_entry *a = x, *b = y;
    return a->step < b->step ? 1 : a->step > b->step ? -1 : strcmp(a->name, b->name);
}

/* Lists DIR's complete (tmp = 0) or temporary (tmp = 1) checkpoints, newest
 * first. Returns the count (0 when DIR does not exist) or -1. */
static int list_dir(const char *dir, int tmp, ckpt_entry **out, ps_error *e) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return ps_fail(e, "%s: cannot list the checkpoint folder: %s", dir, strerror(errno));
    }
    int n = 0, cap = 0;
    ckpt_entry *list = NULL;
    for (struct dirent *de; (de = readdir(d));) {
        long long step = parse_name(de->d_name, tmp);
        if (step < 0 || strlen(de->d_name) >= sizeof list->name) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ckpt_entry *grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown) {
                free(list);
                closedir(d);
                return ps_fail(e, "out of memory listing %s", dir);
            }
            list = grown;
        }
        list[n].step = step;
        snprintf(list[n].name, sizeof list[n].name, "%s", de->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(list, (size_t)n, sizeof *list, by_step_desc);
    *out = list;
    return n;
}

int checkpoint_load_latest(const char *dir, comm *c, const model_layout *L, shard_view *mine, checkpoint_state *st,
                           char **config_text, char *loaded_path, size_t path_size, ps_error *err) {
    quiet_hdf5();
    MPI_Comm mc = mpi_of(c);
    int rank = comm_rank(c);
    ps_error e = {{0}};
    if (config_text) *config_text = NULL;
    if (loaded_path && path_size) loaded_path[0] = 0;
    ckpt_entry *list = NULL;
    int n = rank == 0 ? list_dir(dir, 0, &list, &e) : 0;
    if (sync_error(mc, n < 0 ? 1 : 0, &e)) return ps_fail(err, "%s", e.msg);
    MPI_Bcast(&n, 1, MPI_INT, 0, mc);
    if (n == 0) return 0;
    if (rank != 0) list = calloc((size_t)n, sizeof *list);
    if (sync_error(mc, list ? 0 : (ps_fail(&e, "out of memory for the checkpoint list"), 1), &e)) {
        free(list);
        return ps_fail(err, "%s", e.msg);
    }
    MPI_Bcast(list, n * (int)sizeof *list, MPI_BYTE, 0, mc);

    char path[4096 + 300], first_error[sizeof e.msg] = "";
    int rc = -1;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
        int kind = read_file(path, mc, L, mine, st, config_text, &e);
        if (kind == CK_OK) {
            if (loaded_path && path_size) snprintf(loaded_path, path_size, "%s", path);
            rc = 1;
            break;
        }
        if (kind == CK_FATAL) {
            ps_fail(err, "%s", e.msg);
            break;
        }
        if (!first_error[0]) memcpy(first_error, e.msg, sizeof first_error);
        /* The reason without the leading "PATH: " the message starts with. */
        size_t plen = strlen(path);
        const char *reason = e.msg;
        if (strncmp(e.msg, path, plen) == 0 && strncmp(e.msg + plen, ": ", 2) == 0) reason += plen + 2;
        if (rank == 0)
            fprintf(stderr, "checkpoint %s is unusable (%s); %s\n", path, reason,
                    i + 1 < n ? "trying the previous one" : "no older checkpoint is left");
        if (i + 1 == n)
            ps_fail(err, "%s: none of the %d checkpoints is usable; the newest failed with: %s", dir, n, first_error);
    }
    free(list);
    return rc;
}

/* ------------------------------------------------------------------ prune */

int checkpoint_prune(const char *dir, int keep, ps_error *err) {
    if (keep < 1) return ps_fail(err, "checkpoint_prune: keep must be at least 1 (got %d)", keep);
    ckpt_entry *list = NULL;
    char path[4096 + 300];
    int rc = 0;
    for (int tmp = 0; tmp <= 1; tmp++) {
        int n = list_dir(dir, tmp, &list, err);
        if (n < 0) return -1;
        for (int i = tmp ? 0 : keep; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
            if (unlink(path) != 0 && errno != ENOENT && rc == 0)
                rc = ps_fail(err, "%s: cannot delete: %s", path, strerror(errno));
        }
        free(list);
        list = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------ weights only */

static int selected(const char *name, const char *const *select) {
    if (!select) return 1;
    for (; *select; select++)
        if (strncmp(name, *select, strlen(*select)) == 0) return 1;
    return 0;
}

typedef struct unused_count {
    const model_layout *L;
    const unsigned char *status;
    int n;
} unused_count;

static herr_t count_unused(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    unused_count *uc = data;
    int t = model_layout_find(uc->L, name);
    if (t < 0 || uc->status[t] != CKPT_TENSOR_LOADED) uc->n++;
    return 0;
}

/* One tensor's part of this rank's slices from /model: CKPT_TENSOR_LOADED,
 * CKPT_TENSOR_NEW (the file lacks it) or -1 (another shape, a read error). */
static int load_tensor(hid_t grp, const char *path, const model_layout *L, const shard_view *mine, int t,
                       uint64_t *sum, ps_error *e) {
    const model_tensor *T = &L->tensors[t];
    if (H5Lexists(grp, T->name, H5P_DEFAULT) <= 0) return CKPT_TENSOR_NEW;
    hid_t set = H5Dopen2(grp, T->name, H5P_DEFAULT);
    if (set < 0) return ps_fail(e, "%s: cannot open /model/%s", path, T->name);
    hsize_t want[2] = {(hsize_t)T->rows, (hsize_t)T->cols}, dims[3] = {0, 0, 0};
    int ndims_want = T->cols == 1 ? 1 : 2;
    hid_t fs = H5Dget_space(set);
    int ndims = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs);
    if (ndims >= 1 && ndims <= 3) H5Sget_simple_extent_dims(fs, dims, NULL);
    if (fs >= 0) H5Sclose(fs);
    int rc = CKPT_TENSOR_LOADED;
    if (ndims != ndims_want || dims[0] != want[0] || (ndims == 2 && dims[1] != want[1])) {
        char have_s[64], want_s[64];
        shape_text(have_s, sizeof have_s, ndims, dims);
        shape_text(want_s, sizeof want_s, ndims_want, want);
        rc = ps_fail(e, "%s: tensor /model/%s has shape %s in the file, the model expects %s", path, T->name, have_s,
                     want_s);
    } else {
        hsize_t a = 0, b = 0;
        real *data = NULL;
        if (slice_of(L, mine, mine->params, t, &a, &b, &data)) {
            if (transfer(set, T, a, b, data, H5P_DEFAULT, 0) < 0)
                rc = ps_fail(e, "%s: reading /model/%s failed", path, T->name);
            else if (mine->writer)
                *sum += hash_range(tensor_key(0, T->name), a, data, (size_t)(b - a));
        }
    }
    H5Dclose(set);
    return rc;
}

/* The file's format and weights checksum: a checkpoint's /state (0 for a
 * plain weights file, h5_write_params's layout, which has none). */
static void weights_file_state(hid_t file, int *version, uint64_t *model_sum) {
    *version = 0;
    *model_sum = 0;
    if (H5Lexists(file, "state", H5P_DEFAULT) <= 0) return;
    hid_t sg = H5Gopen2(file, "state", H5P_DEFAULT);
    if (sg < 0) return;
    if (attr_read(sg, "format_version", H5T_NATIVE_INT, version, 1)) *version = 0;
    if (*version >= 2 && attr_read(sg, "model_checksum", H5T_NATIVE_UINT64, model_sum, 1)) *version = 1;
    H5Gclose(sg);
}

/* Sum over ranks of a 64-bit sum (mod 2^64), exactly, through doubles: the
 * two 32-bit halves summed apart (each < 2^53 for any job size). */
static int sum_over_ranks(comm *c, uint64_t *x, ps_error *err) {
    double halves[2] = {(double)(*x >> 32), (double)(*x & 0xffffffffu)};
    if (comm_all_reduce_sum_double(c, halves, 2, err)) return -1;
    *x = ((uint64_t)halves[0] << 32) + (uint64_t)halves[1];
    return 0;
}

int checkpoint_load_weights(const char *path, comm *c, const model_layout *L, const shard_view *mine,
                            const char *const *select, checkpoint_weights_report *rep, ps_error *err) {
    quiet_hdf5();
    memset(rep, 0, sizeof *rep);
    if (!(rep->status = calloc((size_t)L->n_tensors, 1))) return ps_fail(err, "out of memory");
    ps_error e = {{0}};
    int failed = 0;
    uint64_t sum = 0, stored_sum = 0;
    /* Each rank reads its own slices with the serial driver: no MPI-IO, no collective. */
    hid_t file = access(path, R_OK) == 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    hid_t grp = file < 0 ? -1 : H5Gopen2(file, "model", H5P_DEFAULT);
    if (file < 0) failed = ps_fail(&e, "%s: cannot open as HDF5 (%s)", path, strerror(errno ? errno : EIO));
    else if (grp < 0) failed = ps_fail(&e, "%s: has no /model group (not presight weights)", path);
    else weights_file_state(file, &rep->format_version, &stored_sum);
    for (int t = 0; t < L->n_tensors && !failed; t++) {
        if (!selected(L->tensors[t].name, select)) {
            rep->status[t] = CKPT_TENSOR_SKIPPED;
            rep->skipped++;
            continue;
        }
        int s = load_tensor(grp, path, L, mine, t, &sum, &e);
        if (s < 0) failed = -1;
        else {
            rep->status[t] = (unsigned char)s;
            if (s == CKPT_TENSOR_LOADED) rep->loaded++;
            else rep->fresh++;
        }
    }
    if (!failed) {
        unused_count uc = {L, rep->status, 0};
        hsize_t idx = 0;
        H5Literate(grp, H5_INDEX_NAME, H5_ITER_INC, &idx, count_unused, &uc);
        rep->unused = uc.n;
    }
    if (grp >= 0) H5Gclose(grp);
    if (file >= 0) H5Fclose(file);
    /* Every rank must agree before the sum over ranks (the one collective). */
    double failures = failed ? 1 : 0;
    if (c && comm_size(c) > 1 && comm_all_reduce_sum_double(c, &failures, 1, err)) return -1;
    if (failed) return ps_fail(err, "%s", e.msg);
    if (failures > 0) return ps_fail(err, "%s: another rank failed to load its slices", path);
    if (rep->format_version < 2 || rep->unused) return 0; /* nothing to verify against */
    if (c && sum_over_ranks(c, &sum, err)) return -1;
    if (sum != stored_sum)
        return ps_fail(err, "%s: the weights' checksum does not match (stored %016llx, computed %016llx): the file is "
                            "corrupt", path, (unsigned long long)stored_sum, (unsigned long long)sum);
    rep->verified = 1;
    return 0;
}

int checkpoint_read_model(const char *path, const model_layout *L, model_params *p, const char *const *select,
                          checkpoint_weights_report *rep, ps_error *err) {
    /* The whole model as one slice of a group of one. */
    size_t *size = calloc((size_t)L->n_units, sizeof *size);
    if (!size) return ps_fail(err, "out of memory");
    for (int u = 0; u < L->n_units; u++) size[u] = L->units[u].size;
    shard_layout whole = {L->n_units, 0, 1, size, size};
    shard_view view = {&whole, p->unit, NULL, NULL, 1};
    int rc = checkpoint_load_weights(path, NULL, L, &view, select, rep, err);
    free(size);
    return rc;
}

void checkpoint_weights_report_free(checkpoint_weights_report *rep) {
    free(rep->status);
    memset(rep, 0, sizeof *rep);
}

void checkpoint_weights_describe(const checkpoint_weights_report *rep, const model_layout *L, char *out, size_t size) {
    int at = snprintf(out, size, "%d tensors loaded, %d new", rep->loaded, rep->fresh);
    const char *sep = " (";
    for (int t = 0; t < L->n_tensors && at > 0 && (size_t)at < size; t++)
        if (rep->status[t] == CKPT_TENSOR_NEW) {
            at += snprintf(out + at, size - (size_t)at, "%s%s", sep, L->tensors[t].name);
            sep = ", ";
        }
    if (rep->fresh && at > 0 && (size_t)at < size) at += snprintf(out + at, size - (size_t)at, ")");
    if (at > 0 && (size_t)at < size)
        snprintf(out + at, size - (size_t)at, ", %d skipped, %d in the file unused; %s", rep->skipped, rep->unused,
                 rep->verified ? "checksum verified"
                 : rep->format_version < 2 ? "format without a weights checksum: not verified"
                                           : "not every stored tensor read: not verified");
}
