/* fuzz_checkpoint - a checkpoint (format 2, stages/checkpoint.h), structure-
 * aware by mutation (fuzz_h5.h): at start a small model's checkpoint is
 * written by checkpoint_write itself; each input copies it and mutates it
 * through the HDF5 API: every tensor of /model, /optim/m and /optim/v kept,
 * deleted, of another type or shape, or some elements overwritten; every
 * /state attribute kept, deleted, or of another type or value; a stray
 * tensor added. Then it is read as a resume reads it (checkpoint_read, MPI,
 * one rank) and as evaluation reads it (checkpoint_read_model). Must hold:
 * a refusal has a message; an unmutated file loads bit for bit; a file whose
 * only change is overwritten weights or moments never loads (the checksum),
 * and overwritten weights never pass the weights-only reader as verified. */
#include <sanitizer/lsan_interface.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "checkpoint.h"
#include "comm.h"
#include "config.h"
#include "fuzz_h5.h"
#include "fuzz_input.h"
#include "model.h"
#include "sharding.h"

/* dlclose does nothing in this binary (the executable's definition comes first for every
 * library), so that Open MPI's components stay mapped and LeakSanitizer can name the module
 * behind each of their allocations: an unloaded one shows as "<unknown module>", which no
 * suppression matches (tests/sanitizers/no_dlclose.c does the same by preloading). */
int dlclose(void *handle);
int dlclose(void *handle) {
    (void)handle;
    return 0;
}

static comm *world;
static run_config cfg;
static model_layout L;
static sharded_state ref, into; /* the written state, and the one each input is read into */
static uint8_t *image;          /* the valid checkpoint's bytes */
static size_t image_size;

static void die(const char *what, const ps_error *err) {
    fprintf(stderr, "fuzz_checkpoint: %s: %s\n", what, err->msg);
    exit(1);
}

static void read_image(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END)) exit(1);
    image_size = (size_t)ftell(f);
    rewind(f);
    image = malloc(image_size);
    if (!image || fread(image, 1, image_size, f) != image_size) exit(1);
    fclose(f);
}

static void finish(void) {
    sharded_free(&ref);
    sharded_free(&into);
    model_layout_free(&L);
    free(image);
    comm_free(world);
    comm_shutdown();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    /* Open MPI's own handlers for SIGABRT, SIGSEGV, SIGBUS and SIGFPE would replace libFuzzer's,
     * which then saves no input for a failed check or a crash (the campaign of this stop lost
     * one that way). */
    setenv("OMPI_MCA_opal_signal", "", 1);
    ps_error err = {0};
    /* A small model (a few KB of weights): one block, so that the recipe reaches every tensor. */
    char *over[] = {"model.vocab=32", "model.dim=8", "model.layers=1", "model.heads=2", "model.kv_heads=1",
                    "model.ffn_dim=16", "model.context=16", "train.seq_len=8"};
    /* What Open MPI allocates once at start up (some through libc's vasprintf, from frames
     * without frame pointers that no suppression can name) is not a leak of ours. */
    __lsan_disable();
    int mpi = comm_world(&world, argc, argv, &err);
    __lsan_enable();
    if (mpi || blas_init(&err)) die("MPI or BLAS", &err);
    atexit(finish); /* MPI_Finalize frees what Open MPI's components keep */
    if (config_load(&cfg, "config/tiny.cfg", (int)(sizeof over / sizeof *over), over, &err))
        die("config/tiny.cfg (run from the repository root)", &err);
    if (model_layout_init(&L, &cfg.model, &err) || sharded_init(&ref, &cfg, &L, backend_cpu(), world, &err) ||
        sharded_init(&into, &cfg, &L, backend_cpu(), world, &err))
        die("the model", &err);
    for (int u = 0; u < L.n_units; u++) /* moments that are not zero, so that a mix-up shows */
        for (size_t i = 0; i < ref.slices.shard_len[u]; i++) {
            ref.adam_m[u][i] = (real)(0.001 * (double)(i % 97) + u);
            ref.adam_v[u][i] = (real)(0.002 * (double)(i % 89) + u);
        }
    char dir[96], path[160];
    snprintf(dir, sizeof dir, "/dev/shm/presight-fuzz-ckpt-%d", (int)getpid());
    checkpoint_state st;
    memset(&st, 0, sizeof st);
    st.step = 3, st.total_steps = 20, st.seed = 42, st.world_size = 1;
    snprintf(st.strategy, sizeof st.strategy, "ddp");
    shard_view v = sharded_view(&ref);
    if (checkpoint_write(dir, world, &L, &v, &st, "model = { dim = 8; };", &err)) die("writing the checkpoint", &err);
    snprintf(path, sizeof path, "%s/step_00000003.h5", dir);
    read_image(path);
    unlink(path);
    rmdir(dir);
    return 0;
}

static const char *const state_attrs[] = {"step",     "total_steps", "seed",           "tokens",   "elapsed_s",
                                          "data_state", "world_size", "strategy",       "format_version",
                                          "checksum", "model_checksum", "config"};
static const char *const groups[] = {"/model", "/optim/m", "/optim/v"};

typedef struct what_changed {
    int structure;   /* anything but overwritten elements */
    int overwritten; /* stored tensor bytes changed, per group */
    int weights;     /* of those, in /model */
} what_changed;

static void mutate(hid_t file, fuzz_bytes *b, what_changed *w) {
    hid_t sg = H5Gopen2(file, "state", H5P_DEFAULT);
    for (size_t i = 0; sg >= 0 && i < sizeof state_attrs / sizeof *state_attrs; i++)
        if (fuzz_mutate_attr(sg, state_attrs[i], b) != FUZZ_KEPT) w->structure = 1;
    if (sg >= 0) H5Gclose(sg);
    for (int g = 0; g < 3; g++) {
        hid_t grp = H5Gopen2(file, groups[g], H5P_DEFAULT);
        if (grp < 0) continue;
        for (int t = 0; t < L.n_tensors; t++) {
            fuzz_mutation m = fuzz_mutate_dataset(grp, L.tensors[t].name, b);
            if (m == FUZZ_OVERWRITTEN) w->overwritten = 1, w->weights |= g == 0;
            else if (m != FUZZ_KEPT) w->structure = 1;
        }
        if (fuzz_u8(b) >= 250) { /* a tensor this model does not have */
            uint64_t shape[1] = {4};
            fuzz_dataset_shaped(grp, fuzz_u8(b) & 1 ? "layers.9.attention.wq.weight" : "stray", H5T_IEEE_F32LE, 1,
                                shape, b);
            w->structure = 1;
        }
        H5Gclose(grp);
    }
    if (fuzz_u8(b) >= 252) { /* a whole group gone */
        H5Ldelete(file, groups[fuzz_u8(b) % 3], H5P_DEFAULT);
        w->structure = 1;
    }
}

static int same_weights(void) {
    for (int u = 0; u < L.n_units; u++) {
        size_t n = ref.slices.shard_len[u] * sizeof(real);
        if (memcmp(ref.owned[u], into.owned[u], n) || memcmp(ref.adam_m[u], into.adam_m[u], n) ||
            memcmp(ref.adam_v[u], into.adam_v[u], n))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    char path[64];
    hid_t file = fuzz_h5_from_image(path, sizeof path, image, image_size);
    if (file < 0) return 0;
    what_changed w = {0, 0, 0};
    mutate(file, &b, &w);
    H5Fclose(file);

    shard_view v = sharded_view(&into);
    checkpoint_state st;
    char *config = NULL;
    ps_error err = {0};
    int rc = checkpoint_read(path, world, &L, &v, &st, &config, &err);
    if (rc) FUZZ_CHECK(err.msg[0], "refused without a message");
    if (!w.structure && !w.overwritten) {
        FUZZ_CHECK(rc == 0, "an unmutated checkpoint does not load: %s", err.msg);
        FUZZ_CHECK(same_weights() && st.step == 3 && config && !strcmp(config, "model = { dim = 8; };"),
                   "an unmutated checkpoint loads to other values");
    }
    if (!w.structure && w.overwritten) FUZZ_CHECK(rc != 0, "overwritten tensors loaded without a checksum error");
    free(config);

    model_params p;
    ps_error merr = {0};
    if (model_params_alloc(&p, &L, &merr) == 0) {
        checkpoint_weights_report rep;
        int mrc = checkpoint_read_model(path, &L, &p, NULL, &rep, &merr);
        if (mrc) FUZZ_CHECK(merr.msg[0], "weights refused without a message");
        else FUZZ_CHECK(rep.loaded + rep.fresh + rep.skipped == L.n_tensors, "%d + %d + %d of %d tensors", rep.loaded,
                        rep.fresh, rep.skipped, L.n_tensors);
        if (!w.structure && w.weights) FUZZ_CHECK(mrc != 0 || !rep.verified, "overwritten weights passed as verified");
        if (!w.structure && !w.overwritten) FUZZ_CHECK(mrc == 0 && rep.verified, "unmutated weights: %s", merr.msg);
        checkpoint_weights_report_free(&rep);
        model_params_free(&p);
    }
    unlink(path);
    return 0;
}
