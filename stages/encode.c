/* encode.c - the encode stage: parts, resume, assembly, progress, signals.
 * See encode.h. */
#include "encode.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blas.h"
#include "encoder.h"
#include "encoder_weights.h"
#include "feature_file.h"
#include "image_set.h"

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig) { stop_requested = sig; }

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int mkdirs(const char *path, ps_error *err) {
    char buf[1400];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return ps_fail(err, "%s: cannot create folder", buf);
            if (!c) return 0;
            *p = c;
        }
    }
}

void encode_output_path(const encode_config *c, const char *set, char *out, size_t n) {
    snprintf(out, n, "%s/%s/%s.h5", c->out_dir, c->encoder, set);
}

/* What one job holds: the set, the network and its description. */
typedef struct job {
    const encode_config *cfg;
    image_set *set;
    encoder_weights w;
    encoder *enc;
    features_meta meta;
    int grid_block;
    char out[1200], parts[1300];
} job;

static void describe(job *j) {
    const enc_preprocess *p = encoder_prep(j->enc);
    const enc_block_info *b = encoder_block(j->enc, j->grid_block);
    features_meta *m = &j->meta;
    snprintf(m->encoder, sizeof m->encoder, "%s", j->cfg->encoder);
    snprintf(m->layer, sizeof m->layer, "%s", b->name);
    snprintf(m->set, sizeof m->set, "%s", image_set_name(j->set));
    snprintf(m->weights_sha256, sizeof m->weights_sha256, "%s", j->w.sha256[0] ? j->w.sha256 : "none (not learned)");
    snprintf(m->preprocessing, sizeof m->preprocessing,
             "RGB, alpha on white (255); %sx/255; bilinear resize (align corners) to %dx%d; x*%g-%g",
             p->pad_square ? "pad to square with colour 127 (LLaVA pad); " : "", p->size, p->size, p->norm_mul, p->norm_sub);
    m->grid_h = b->h, m->grid_w = b->w, m->width = b->c, m->float16 = j->cfg->float16;
    m->n_blocks = encoder_blocks(j->enc) < 64 ? encoder_blocks(j->enc) : 64;
    for (int i = 0; i < m->n_blocks; i++) {
        snprintf(m->block_names[i], 64, "%s", encoder_block(j->enc, i)->name);
        m->block_widths[i] = encoder_block(j->enc, i)->c;
    }
}

static int job_open(job *j, const encode_config *c, ps_error *err) {
    memset(j, 0, sizeof *j);
    j->cfg = c;
    if (image_set_open(&j->set, c->images, err)) return -1;
    if (!strcmp(c->encoder, "patches")) {
        enc_preprocess p = {.size = c->patch_size, .norm_mul = 2.0f, .norm_sub = 1.0f, .pad_square = c->pad_square, .pad_color = 127};
        if (encoder_build_patches(&j->enc, c->patch_grid, c->patch_sub, &p, err)) return -1;
    } else {
        if (encoder_weights_load(&j->w, c->weights, err)) return -1;
        j->w.prep.pad_square = c->pad_square;
        if (encoder_build(&j->enc, j->w.graph, j->w.tensors, j->w.n_tensors, &j->w.prep, err))
            return ps_wrap(err, "%s", c->weights);
    }
    j->grid_block = c->layer[0] ? encoder_find_block(j->enc, c->layer) : encoder_blocks(j->enc) - 1;
    if (j->grid_block < 0) return ps_fail(err, "encode.layer '%s': no such block in %s", c->layer, c->encoder);
    describe(j);
    encode_output_path(c, image_set_name(j->set), j->out, sizeof j->out);
    snprintf(j->parts, sizeof j->parts, "%.*s.parts", (int)(strlen(j->out) - 3), j->out);
    return 0;
}

static void job_close(job *j) {
    encoder_free(j->enc);
    encoder_weights_free(&j->w);
    image_set_close(j->set);
}

static void part_path(const job *j, int start, int end, char *out, size_t n) {
    snprintf(out, n, "%s/part_%09d_%09d.h5", j->parts, start, end);
}

/* A features file that opens with exactly the ids [start, end) of the set, our weights,
 * layer, grid and dtype: a finished part, or (0, n) a finished output. */
static int file_matches(const job *j, const char *path, int start, int end) {
    if (access(path, R_OK)) return 0;
    char **ids = malloc(sizeof(char *) * (end - start > 0 ? end - start : 1));
    for (int i = start; i < end; i++) ids[i - start] = (char *)image_set_id(j->set, i);
    features_file *f;
    ps_error e;
    int ok = features_open(&f, path, ids, end - start, &e) == 0;
    if (ok) {
        const features_meta *m = features_meta_of(f);
        ok = !strcmp(m->weights_sha256, j->meta.weights_sha256) && !strcmp(m->layer, j->meta.layer) &&
             m->float16 == j->meta.float16 && m->grid_h == j->meta.grid_h && m->grid_w == j->meta.grid_w &&
             m->width == j->meta.width;
        features_free(f);
    }
    free(ids);
    return ok;
}

static int part_done(const job *j, int start, int end) {
    char path[1400];
    part_path(j, start, end, path, sizeof path);
    return file_matches(j, path, start, end);
}

/* Encodes images [start, end) into their part file; counts failures. */
static int encode_part(job *j, int start, int end, int *failed, ps_error *err) {
    char path[1400];
    part_path(j, start, end, path, sizeof path);
    char **ids = malloc(sizeof(char *) * (end - start));
    for (int i = start; i < end; i++) ids[i - start] = (char *)image_set_id(j->set, i);
    features_writer *w;
    int rc = features_create(&w, path, &j->meta, ids, end - start, err);
    free(ids);
    if (rc) return -1;
    int s = encoder_prep(j->enc)->size, nf = 0;
    float *input = malloc(sizeof(float) * s * s * 3);
    float *grid = malloc(sizeof(float) * (size_t)j->meta.grid_h * j->meta.grid_w * j->meta.width);
    float *pooled = malloc(sizeof(float) * encoder_pooled_width(j->enc));
    for (int i = start; i < end && !rc; i++) {
        uint8_t *rgb = NULL;
        int h, wd;
        ps_error e = {{0}};
        int ok = image_set_load(j->set, i, &rgb, &h, &wd, &e) == 0 &&
                 encoder_preprocess(encoder_prep(j->enc), rgb, h, wd, input, &e) == 0 &&
                 encoder_forward(j->enc, input, j->grid_block, grid, pooled) == 0;
        free(rgb);
        if (!ok) { /* reported, counted, stored as NaN with valid = 0: never silent, never fatal */
            fprintf(stderr, "encode: skipping image '%s': %s\n", image_set_id(j->set, i), e.msg);
            nf++;
        }
        rc = features_write_row(w, i - start, ok ? grid : NULL, pooled, err);
    }
    free(input), free(grid), free(pooled);
    *failed += nf;
    return features_close(w, rc == 0, nf, rc ? NULL : err) || rc ? -1 : 0;
}

static void progress(double t0, int done_here, int todo_here, int ranks, int total, int skipped) {
    double dt = now_s() - t0, rate = dt > 0 ? done_here / dt : 0;
    double eta = rate > 0 ? (todo_here - done_here) / rate : 0;
    printf("encode: %d/%d images on rank 0 (%d already done), %.1f images/s (x%d ranks), ETA %dm%02ds\n", done_here,
           todo_here, skipped, rate, ranks, (int)eta / 60, (int)eta % 60);
    fflush(stdout);
    (void)total;
}

/* Rank 0, once every part exists: rows in image order into the final file. */
static int assemble(job *j, int n_parts, ps_error *err) {
    int n = image_set_count(j->set), failed = 0;
    char **ids = malloc(sizeof(char *) * n);
    for (int i = 0; i < n; i++) ids[i] = (char *)image_set_id(j->set, i);
    features_writer *w;
    int rc = features_create(&w, j->out, &j->meta, ids, n, err);
    free(ids);
    if (rc) return -1;
    float *grid = malloc(sizeof(float) * (size_t)j->meta.grid_h * j->meta.grid_w * j->meta.width);
    float *pooled = malloc(sizeof(float) * encoder_pooled_width(j->enc));
    for (int p = 0; p < n_parts && !rc; p++) {
        int start = p * j->cfg->part_size, end = start + j->cfg->part_size < n ? start + j->cfg->part_size : n;
        char path[1400];
        part_path(j, start, end, path, sizeof path);
        features_file *f;
        if ((rc = features_open(&f, path, NULL, 0, err))) break;
        for (int r = 0; r < end - start && !rc; r++) {
            int ok = features_valid(f, r);
            if (ok) {
                rc = features_read_grid(f, r, grid, err);
                for (int b = 0, off = 0; b < j->meta.n_blocks && !rc; off += j->meta.block_widths[b++])
                    rc = features_read_pooled(f, r, j->meta.block_names[b], pooled + off, err);
            }
            failed += !ok;
            if (!rc) rc = features_write_row(w, start + r, ok ? grid : NULL, pooled, err);
        }
        features_free(f);
    }
    free(grid), free(pooled);
    if (features_close(w, rc == 0, failed, rc ? NULL : err) || rc) return -1;
    for (int p = 0; p < n_parts; p++) { /* the parts are no longer needed */
        int start = p * j->cfg->part_size, end = start + j->cfg->part_size < n ? start + j->cfg->part_size : n;
        char path[1400];
        part_path(j, start, end, path, sizeof path);
        unlink(path);
    }
    rmdir(j->parts);
    printf("encode: %s: %d images, %d failed, /features [%d, %d, %d] (%s, layer %s)\n", j->out, n, failed, n,
           j->meta.grid_h * j->meta.grid_w, j->meta.width, j->meta.float16 ? "float16" : "float32", j->meta.layer);
    return 0;
}

static int run_parts(job *j, comm *world, int *stopped, ps_error *err) {
    int n = image_set_count(j->set), size = j->cfg->part_size, n_parts = (n + size - 1) / size;
    int rank = comm_rank(world), ranks = comm_size(world), failed = 0, todo = 0, done = 0, skipped = 0;
    for (int p = rank; p < n_parts; p += ranks) todo += (p + 1) * size < n ? size : n - p * size;
    double t0 = now_s(), last = t0;
    for (int p = rank; p < n_parts; p += ranks) {
        int start = p * size, end = start + size < n ? start + size : n;
        if (stop_requested) { *stopped = 1; break; }
        if (part_done(j, start, end)) { skipped += end - start, todo -= end - start; continue; }
        if (encode_part(j, start, end, &failed, err)) return -1;
        done += end - start;
        if (rank == 0 && (now_s() - last > 2.0 || done == todo)) progress(t0, done, todo, ranks, n, skipped), last = now_s();
    }
    if (stop_requested) *stopped = 1;
    return n_parts;
}

/* Rank 0 holds <out>.lock (flock) from deciding whether the set needs encoding until its
 * file is written: the runs of a study share one features folder, and a second job on
 * the same set (another array task) waits, then finds the file complete. */
static int lock_output(const job *j, int *fd, ps_error *err) {
    char path[1300];
    snprintf(path, sizeof path, "%.*s.lock", (int)(strlen(j->out) - 3), j->out);
    if ((*fd = open(path, O_RDWR | O_CREAT, 0644)) < 0) return ps_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return 0;
    printf("encode: waiting for another job writing %s\n", j->out);
    fflush(stdout);
    while (flock(*fd, LOCK_EX) != 0)
        if (errno != EINTR) return ps_fail(err, "%s: cannot lock: %s", path, strerror(errno));
    return 0;
}

int encode_run(const encode_config *c, comm *world, ps_error *err) {
    catch_stop_signals();
    if (blas_init(err)) return -1;
    job j;
    int rc = job_open(&j, c, err), rank = comm_rank(world), lock = -1;
    double flag[2] = {0, 0}; /* every rank learns whether rank 0 could set up, and whether it is done */
    if (!rc && rank == 0) rc = mkdirs(j.parts, err);
    if (!rc && rank == 0) rc = lock_output(&j, &lock, err);
    if (!rc && rank == 0) flag[1] = file_matches(&j, j.out, 0, image_set_count(j.set));
    flag[0] = rc ? 1 : 0;
    ps_error e2;
    comm_all_reduce_sum_double(world, flag, 2, &e2);
    if (flag[0] > 0 && !rc) rc = ps_fail(err, "encode: another rank failed to start");
    if (!rc && flag[1] > 0) {
        if (rank == 0) {
            printf("encode: %s is up to date (%d images, encoder %s, layer %s); nothing to do\n", j.out,
                   image_set_count(j.set), j.meta.encoder, j.meta.layer);
            rmdir(j.parts); /* made above; empty unless an old job left parts */
        }
        job_close(&j);
        if (lock >= 0) close(lock);
        return 0;
    }
    int stopped = 0, n_parts = rc ? -1 : run_parts(&j, world, &stopped, err);
    double state[2] = {n_parts < 0 ? 1 : 0, stopped};
    if (comm_all_reduce_sum_double(world, state, 2, &e2)) rc = -1;
    if (!rc && n_parts >= 0 && state[0] > 0) rc = ps_fail(err, "encode: a rank failed (see its message)");
    if (n_parts < 0) rc = -1;
    if (!rc && state[1] > 0) {
        if (comm_rank(world) == 0) printf("encode: stopping on signal: finished parts kept in %s; exit %d to requeue\n", j.parts, ENCODE_PREEMPTED);
        rc = ENCODE_PREEMPTED;
    }
    if (!rc && comm_rank(world) == 0) rc = assemble(&j, n_parts, err);
    job_close(&j);
    if (lock >= 0) close(lock);
    return rc;
}
