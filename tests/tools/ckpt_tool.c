/* ckpt_tool - drives stages/checkpoint.c under mpirun for tests/t_checkpoint_mpi.sh.
 *
 *   ckpt_tool write MODEL DIR STEP [--hybrid | --all-writers]
 *       Every rank fills its slices of params, m and v with value(group, tensor,
 *       index) (a deterministic function, so no rank needs the others' data) and
 *       the checkpoint DIR/step_STEP.h5 is written collectively. --all-writers
 *       is the hybrid layout with writer = 1 on the replicas too (a misuse the
 *       write must refuse).
 *   ckpt_tool read MODEL [--hybrid] FILE...
 *       Reads each FILE into this rank's slices and checks every element
 *       (bitwise), that the padding past each slice was not touched, and the
 *       /state fields and config text. Prints one "ok" line per file (rank 0).
 *   ckpt_tool latest MODEL DIR
 *       checkpoint_load_latest + the same checks; prints "loaded PATH".
 *   ckpt_tool bench SIZE_MB DIR [REPS]
 *       Write bandwidth of a SIZE_MB checkpoint (params + m + v; a model of
 *       dim 512 with as many layers as fit) against a plain sequential
 *       write + fsync of the same bytes to DIR by rank 0 (dd bs=8M
 *       conv=fsync), interleaved, REPS times (default 3). Prints JSON:
 *       ckpt_mb_s, disk_mb_s and ratio from the best time of each, the same
 *       from medians, and disk_writebehind_mb_s: the sequential write with
 *       sync_file_range write-behind, as checkpoint_write does it (so a ratio
 *       above 1 against the plain write is explained by that, not by magic).
 *
 * MODEL is "uneven" (vocab 37, dim 10, 5 heads, 1 kv head, ffn 7, 2 layers,
 * untied: unit sizes 370, 470, 470, 380, which 3 never divides and 4 divides
 * once, so slices end mid-row and mid-tensor) or "tiny" (vocab 11, dim 6,
 * tied: the last unit has 6 elements, so 4 ranks leave rank 3 a
 * padding-only slice). With --hybrid the world is two replica groups of
 * world/2 ranks (world even): ranks of the second group hold the same slices
 * with writer = 0, as hybrid sharding across nodes does.
 * Exit status 0 on success, 1 on any failure (the message on stderr). */
#include <fcntl.h>
#include <stdarg.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "comm.h"
#include "config.h"
#include "model.h"
#include "rng.h"
#include "shard.h"

static const char *CONFIG_TEXT = "# ckpt_tool\nmodel = { vocab = 37; dim = 10; };\n";
static const uint32_t PAD_BITS = 0x7fc0dead; /* a NaN pattern the padding must keep */

typedef struct tool {
    comm *c;
    int rank, world;
    model_layout L;
    shard_layout s;
    shard_view v;
    real *memory;
} tool;

static int fail(tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(tool *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ckpt_tool [rank %d]: ", t->rank);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

/* The value of element i of tensor `name` in group g: 23 random bits, exact in float. */
static real value(int g, const char *name, uint64_t i) {
    uint64_t r = rng_u64(rng_key(1000 + (uint64_t)g, name), i) >> 41;
    return (real)((double)(int64_t)r * (1.0 / 4194304.0) - 1.0);
}

static int model_by_name(const char *name, model_config *m) {
    run_config cfg;
    config_defaults(&cfg);
    *m = cfg.model;
    if (strcmp(name, "uneven") == 0) {
        m->vocab = 37, m->dim = 10, m->heads = 5, m->kv_heads = 1, m->ffn_dim = 7, m->layers = 2, m->tied_head = 0;
    } else if (strcmp(name, "tiny") == 0) {
        m->vocab = 11, m->dim = 6, m->heads = 3, m->kv_heads = 3, m->ffn_dim = 5, m->layers = 1, m->tied_head = 1;
    } else if (strncmp(name, "bench:", 6) == 0) {
        m->vocab = 8192, m->dim = 512, m->heads = 8, m->kv_heads = 4, m->ffn_dim = 1536, m->layers = atoi(name + 6);
        m->tied_head = 0;
    } else {
        return -1;
    }
    m->context = 16;
    return 0;
}

/* Builds the layout, the shard layout (group of world or world/2 ranks) and this rank's buffers. */
static int setup(tool *t, const char *model_name, int hybrid) {
    ps_error err = {{0}};
    model_config mc;
    if (model_by_name(model_name, &mc)) return fail(t, "unknown model %s (uneven, tiny)", model_name);
    if (model_layout_init(&t->L, &mc, &err)) return fail(t, "%s", err.msg);
    int group = t->world;
    if (hybrid) {
        if (t->world % 2) return fail(t, "--hybrid needs an even world size, not %d", t->world);
        group = t->world / 2;
    }
    int n = t->L.n_units;
    t->s.n_units = n;
    t->s.world = group;
    t->s.rank = t->rank % group;
    t->s.unit_size = calloc((size_t)n, sizeof(size_t));
    t->s.shard_len = calloc((size_t)n, sizeof(size_t));
    t->v.params = calloc((size_t)n, sizeof(real *));
    t->v.m = calloc((size_t)n, sizeof(real *));
    t->v.v = calloc((size_t)n, sizeof(real *));
    size_t total = 0;
    for (int u = 0; u < n; u++) {
        t->s.unit_size[u] = t->L.units[u].size;
        t->s.shard_len[u] = (t->L.units[u].size + (size_t)group - 1) / (size_t)group;
        total += t->s.shard_len[u];
    }
    t->memory = malloc(3 * total * sizeof(real) + 1);
    if (!t->memory || !t->s.unit_size || !t->v.params || !t->v.m || !t->v.v) return fail(t, "out of memory");
    size_t at = 0;
    for (int g = 0; g < 3; g++)
        for (int u = 0; u < n; u++) {
            real **base = g == 0 ? t->v.params : g == 1 ? t->v.m : t->v.v;
            base[u] = t->memory + at;
            at += t->s.shard_len[u];
        }
    for (size_t i = 0; i < at; i++) memcpy(&t->memory[i], &PAD_BITS, sizeof PAD_BITS);
    t->v.layout = &t->s;
    t->v.writer = t->rank < group;
    return 0;
}

static real **group_base(tool *t, int g) { return g == 0 ? t->v.params : g == 1 ? t->v.m : t->v.v; }

/* Calls fn(t, g, tensor, index in tensor, element pointer) over this rank's slices. */
typedef int (*visit_fn)(tool *t, int g, int tensor, size_t i, real *x);
static int visit(tool *t, visit_fn fn) {
    for (int g = 0; g < 3; g++)
        for (int k = 0; k < t->L.n_tensors; k++) {
            const model_tensor *T = &t->L.tensors[k];
            size_t start = shard_start(&t->s, T->unit), count = shard_count(&t->s, T->unit);
            size_t n = (size_t)T->rows * T->cols;
            for (size_t i = 0; i < n; i++) {
                size_t at = T->offset + i;
                if (at < start || at >= start + count) continue;
                if (fn(t, g, k, i, &group_base(t, g)[T->unit][at - start])) return 1;
            }
        }
    return 0;
}

static int fill_one(tool *t, int g, int k, size_t i, real *x) {
    *x = value(g, t->L.tensors[k].name, i);
    return 0;
}

static long long checked;
static int check_one(tool *t, int g, int k, size_t i, real *x) {
    real want = value(g, t->L.tensors[k].name, i);
    if (memcmp(&want, x, sizeof want) != 0)
        return fail(t, "group %d tensor %s element %zu: read %.9g, wrote %.9g", g, t->L.tensors[k].name, i, (double)*x,
                    (double)want);
    checked++;
    return 0;
}

static int check_padding(tool *t) {
    for (int g = 0; g < 3; g++)
        for (int u = 0; u < t->L.n_units; u++)
            for (size_t i = shard_count(&t->s, u); i < t->s.shard_len[u]; i++)
                if (memcmp(&group_base(t, g)[u][i], &PAD_BITS, sizeof PAD_BITS) != 0)
                    return fail(t, "group %d unit %d: padding element %zu was overwritten", g, u, i);
    return 0;
}

static void expected_state(checkpoint_state *st, long long step) {
    memset(st, 0, sizeof *st);
    st->step = step;
    st->total_steps = 1000;
    st->seed = 0xfeedbeefcafe1234ULL;
    st->tokens = 12345.5 * (double)step;
    st->elapsed_s = 3.25;
    for (int i = 0; i < 4; i++) st->data_state[i] = (uint64_t)step * 1000 + (uint64_t)i;
    st->world_size = 0; /* filled by the writer */
    snprintf(st->strategy, sizeof st->strategy, "zero1");
}

static int check_state(tool *t, const checkpoint_state *st, const char *config) {
    checkpoint_state want;
    expected_state(&want, st->step);
    if (st->total_steps != want.total_steps || st->seed != want.seed || st->tokens != want.tokens ||
        st->elapsed_s != want.elapsed_s || memcmp(st->data_state, want.data_state, sizeof want.data_state) ||
        strcmp(st->strategy, want.strategy) || st->world_size < 1)
        return fail(t, "state of step %lld differs from what was written", (long long)st->step);
    if (!config || strcmp(config, CONFIG_TEXT) != 0)
        return fail(t, "config text differs: %s", config ? config : "(none)");
    return 0;
}

static int cmd_write(tool *t, const char *dir, long long step) {
    ps_error err = {{0}};
    if (visit(t, fill_one)) return 1;
    checkpoint_state st;
    expected_state(&st, step);
    if (checkpoint_write(dir, t->c, &t->L, &t->v, &st, CONFIG_TEXT, &err)) return fail(t, "%s", err.msg);
    if (t->rank == 0) printf("wrote %s/step_%08lld.h5 with %d ranks (group %d)\n", dir, step, t->world, t->s.world);
    return 0;
}

static int reset_and_check(tool *t, const checkpoint_state *st, const char *config, const char *path) {
    checked = 0;
    if (visit(t, check_one) || check_padding(t) || check_state(t, st, config)) return 1;
    long long total = checked;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_LONG_LONG, MPI_SUM, *(MPI_Comm *)comm_mpi_handle(t->c));
    if (t->rank == 0)
        printf("ok %s: read on %d ranks (group %d), %lld elements checked, step %lld\n", path, t->world, t->s.world,
               total, (long long)st->step);
    return 0;
}

static void poison(tool *t) {
    for (int g = 0; g < 3; g++)
        for (int u = 0; u < t->L.n_units; u++)
            for (size_t i = 0; i < t->s.shard_len[u]; i++) memcpy(&group_base(t, g)[u][i], &PAD_BITS, sizeof PAD_BITS);
}

static int cmd_read(tool *t, int n, char **paths) {
    int rc = 0;
    for (int i = 0; i < n; i++) {
        ps_error err = {{0}};
        checkpoint_state st;
        char *config = NULL;
        poison(t);
        if (checkpoint_read(paths[i], t->c, &t->L, &t->v, &st, &config, &err))
            rc = fail(t, "%s", err.msg);
        else if (reset_and_check(t, &st, config, paths[i]))
            rc = 1;
        free(config);
    }
    return rc;
}

static int cmd_latest(tool *t, const char *dir) {
    ps_error err = {{0}};
    checkpoint_state st;
    char *config = NULL, path[4096];
    poison(t);
    int got = checkpoint_load_latest(dir, t->c, &t->L, &t->v, &st, &config, path, sizeof path, &err);
    int rc = got < 0 ? fail(t, "%s", err.msg) : got == 0 ? fail(t, "%s holds no checkpoint", dir)
                                                          : reset_and_check(t, &st, config, path);
    if (got == 1 && t->rank == 0) printf("loaded %s\n", path);
    free(config);
    return rc;
}

/* ------------------------------------------------------------------ bench */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A plain sequential write of `bytes` in 8 MiB pieces, then fsync (what dd
 * bs=8M conv=fsync does): seconds. With write_behind, each piece is also handed
 * to the kernel's writeback as soon as it is written (sync_file_range), the
 * trick checkpoint_write uses: the best one sequential writer can do. */
static double disk_write(const char *path, size_t bytes, int write_behind) {
    size_t piece = (size_t)8 << 20;
    char *buf = malloc(piece);
    if (!buf) return -1;
    for (size_t i = 0; i < piece; i++) buf[i] = (char)(i * 131 + 7);
    double t0 = now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(buf);
        return -1;
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < piece ? bytes - done : piece;
        ssize_t w = write(fd, buf, n);
        if (w <= 0) {
            close(fd);
            free(buf);
            return -1;
        }
        if (write_behind) sync_file_range(fd, (off_t)done, (off_t)w, SYNC_FILE_RANGE_WRITE);
        done += (size_t)w;
    }
    fsync(fd);
    close(fd);
    double dt = now() - t0;
    unlink(path);
    free(buf);
    return dt;
}

static int by_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmd_bench(tool *t, double size_mb, const char *dir, int reps) {
    /* Per layer: 3 groups x 4 bytes x (wqkv + wo + 3 ffn + 2 norms); embedding + head: 2 x vocab x dim. */
    model_config probe;
    model_by_name("bench:1", &probe);
    double d = probe.dim, hd = d / probe.heads, per_layer = (((probe.heads + 2.0 * probe.kv_heads) * hd) * d + d * d +
                                                               3.0 * probe.ffn_dim * d + 2 * d) * 12 / 1e6;
    double fixed = (2.0 * probe.vocab * d + d) * 12 / 1e6;
    int layers = (int)lround((size_mb - fixed) / per_layer);
    if (layers < 1) layers = 1;
    char name[32];
    snprintf(name, sizeof name, "bench:%d", layers);
    if (setup(t, name, 0)) return 1;
    MPI_Comm mc = *(MPI_Comm *)comm_mpi_handle(t->c);
    for (int g = 0; g < 3; g++)
        for (int u = 0; u < t->L.n_units; u++)
            for (size_t i = 0; i < shard_count(&t->s, u); i++)
                group_base(t, g)[u][i] = (real)(rng_u64((uint64_t)g * 977 + (uint64_t)u, i) >> 40) * 1e-7f;
    double bytes = 3.0 * (double)t->L.n_params * 4;
    int ok = t->rank != 0 || mkdir(dir, 0777) == 0 || access(dir, W_OK) == 0;
    MPI_Bcast(&ok, 1, MPI_INT, 0, mc);
    if (!ok || reps < 1) return fail(t, "cannot create %s, or REPS < 1", dir);
    char disk_path[4200], ckpt_path[4200];
    snprintf(disk_path, sizeof disk_path, "%s/disk_baseline.bin", dir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/step_00000001.h5", dir);
    double *tc = calloc((size_t)reps, sizeof *tc), *td = calloc((size_t)reps, sizeof *td);
    double *tw = calloc((size_t)reps, sizeof *tw);
    for (int r = 0; r < reps; r++) {
        /* Alternate, so that both see the same state of the disk. */
        if (t->rank == 0) td[r] = disk_write(disk_path, (size_t)bytes, 0);
        if (t->rank == 0) tw[r] = disk_write(disk_path, (size_t)bytes, 1);
        MPI_Barrier(mc);
        ps_error err = {{0}};
        checkpoint_state st;
        expected_state(&st, 1);
        double t0 = now();
        if (checkpoint_write(dir, t->c, &t->L, &t->v, &st, CONFIG_TEXT, &err)) return fail(t, "%s", err.msg);
        MPI_Barrier(mc);
        tc[r] = now() - t0;
        if (t->rank == 0) unlink(ckpt_path);
        MPI_Barrier(mc);
    }
    if (t->rank == 0) {
        qsort(tc, (size_t)reps, sizeof *tc, by_double);
        qsort(td, (size_t)reps, sizeof *td, by_double);
        qsort(tw, (size_t)reps, sizeof *tw, by_double);
        double mb = bytes / 1e6, c_best = mb / tc[0], d_best = mb / td[0], w_best = mb / tw[0];
        double c_med = mb / tc[reps / 2], d_med = mb / td[reps / 2], w_med = mb / tw[reps / 2];
        printf("{\"ranks\": %d, \"size_mb\": %.1f, \"layers\": %d, \"reps\": %d, \"ckpt_mb_s\": %.1f, \"disk_mb_s\": %.1f, "
               "\"ratio\": %.3f, \"ckpt_median_mb_s\": %.1f, \"disk_median_mb_s\": %.1f, \"median_ratio\": %.3f, "
               "\"disk_writebehind_mb_s\": %.1f, \"ratio_vs_writebehind\": %.3f, \"median_ratio_vs_writebehind\": %.3f}\n",
               t->world, mb, layers, reps, c_best, d_best, c_best / d_best, c_med, d_med, c_med / d_med, w_best,
               c_best / w_best, c_med / w_med);
    }
    free(tc);
    free(td);
    free(tw);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: ckpt_tool write MODEL DIR STEP [--hybrid | --all-writers] | read MODEL [--hybrid] FILE... | "
                    "latest MODEL DIR | bench SIZE_MB DIR [REPS]\n");
    return 2;
}

int main(int argc, char **argv) {
    tool t;
    memset(&t, 0, sizeof t);
    ps_error err = {{0}};
    if (comm_world(&t.c, &argc, &argv, &err)) {
        fprintf(stderr, "ckpt_tool: %s\n", err.msg);
        return 1;
    }
    t.rank = comm_rank(t.c);
    t.world = comm_size(t.c);
    int rc;
    if (argc >= 5 && strcmp(argv[1], "write") == 0) {
        int all = argc >= 6 && strcmp(argv[5], "--all-writers") == 0;
        int hybrid = all || (argc >= 6 && strcmp(argv[5], "--hybrid") == 0);
        rc = setup(&t, argv[2], hybrid);
        if (!rc && all) t.v.writer = 1;
        rc = rc || cmd_write(&t, argv[3], atoll(argv[4]));
    } else if (argc >= 4 && strcmp(argv[1], "read") == 0) {
        int hybrid = strcmp(argv[3], "--hybrid") == 0;
        int n = argc - 3 - hybrid;
        rc = n < 1 ? usage() : setup(&t, argv[2], hybrid) || cmd_read(&t, n, argv + 3 + hybrid);
    } else if (argc == 4 && strcmp(argv[1], "latest") == 0) {
        rc = setup(&t, argv[2], 0) || cmd_latest(&t, argv[3]);
    } else if (argc >= 4 && strcmp(argv[1], "bench") == 0) {
        rc = cmd_bench(&t, atof(argv[2]), argv[3], argc >= 5 ? atoi(argv[4]) : 3);
    } else {
        rc = usage();
    }
    /* A failure on one rank must not leave the others waiting in MPI_Finalize. */
    int any = rc != 0;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, *(MPI_Comm *)comm_mpi_handle(t.c));
    model_layout_free(&t.L);
    comm_free(t.c);
    comm_shutdown();
    return any ? (rc ? rc : 1) : 0;
}
