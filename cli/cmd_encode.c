/* cmd_encode.c - presight encode CONFIG [encode.key=value ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "comm.h"
#include "encode.h"
#include "feature_file.h"
#include "image_set.h"

static void encode_help(FILE *out) {
    fprintf(out,
            "usage: presight encode CONFIG [encode.key=value ...]\n\n"
            "Runs an image set through a frozen vision encoder once and writes\n"
            "  <out_dir>/<encoder>/<set>.h5   /features [N, tokens, width], /pooled/<block> [N, width],\n"
            "                                 /ids, /valid, attributes (README, \"Vision encoders\")\n"
            "Work is split into parts of part_size images across the MPI ranks; finished parts are\n"
            "kept, so a killed job resumes. On SIGTERM or SIGUSR1 the current part is finished and\n"
            "the command exits with status 75. A picture that cannot be decoded is reported by path,\n"
            "counted, and stored as NaN with /valid = 0. Run under mpirun/srun for several ranks.\n"
            "encode.images may list several sets, comma-separated (one file each, in turn); a set\n"
            "whose features file is complete (same ids, weights, layer, grid, dtype) is skipped, so\n"
            "every run of a study can share one features folder.\n\n"
            "presight encode --check FEATURES.h5 [IMAGES] validates a features file written by any\n"
            "tool (layout, dtype, unique ids, attributes; with IMAGES, the ids of that image set).\n\n"
            "keys (in an `encode { ... }` group):\n");
    encode_config_print_keys(out);
}

/* presight encode --check FEATURES.h5 [IMAGES] */
static int check_file(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: presight encode --check FEATURES.h5 [IMAGES]\n");
        return 2;
    }
    ps_error err = {{0}};
    image_set *set = NULL;
    if (argc == 4 && image_set_open(&set, argv[3], &err)) {
        fprintf(stderr, "presight encode --check: %s\n", err.msg);
        return 1;
    }
    int n = set ? image_set_count(set) : 0;
    char **ids = malloc(sizeof(char *) * (n ? n : 1));
    for (int i = 0; i < n; i++) ids[i] = (char *)image_set_id(set, i);
    features_file *f;
    int rc = features_open(&f, argv[2], set ? ids : NULL, n, &err);
    free(ids);
    image_set_close(set);
    if (rc) {
        fprintf(stderr, "presight encode --check: %s\n", err.msg);
        return 1;
    }
    const features_meta *m = features_meta_of(f);
    int bad = 0;
    for (int i = 0; i < features_count(f); i++) bad += !features_valid(f, i);
    printf("%s: ok: %d images (%d failed), encoder %s, layer %s, grid %dx%d, width %d, %s, %d pooled blocks\n", argv[2],
           features_count(f), bad, m->encoder, m->layer, m->grid_h, m->grid_w, m->width, m->float16 ? "float16" : "float32",
           m->n_blocks);
    features_free(f);
    return 0;
}

int cmd_encode(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--check")) return check_file(argc, argv);
    if (wants_help(argc, argv)) {
        encode_help(stdout);
        return 0;
    }
    if (argc < 2) {
        encode_help(stderr);
        return 2;
    }
    encode_config cfg;
    ps_error err = {{0}};
    if (encode_config_load(&cfg, argv[1], argc - 2, argv + 2, &err)) {
        fprintf(stderr, "presight encode: %s\n", err.msg);
        return 2;
    }
    if (cfg.threads > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", cfg.threads);
        setenv("PRESIGHT_THREADS", n, 1);
    }
    comm *world = NULL;
    if (comm_world(&world, &argc, &argv, &err)) {
        fprintf(stderr, "presight encode: %s\n", err.msg);
        return 1;
    }
    /* encode.images may name several sets, comma-separated: one features file each, in turn
     * (a study's encode stage covers every set its adapt data names). */
    char sets[sizeof cfg.images];
    snprintf(sets, sizeof sets, "%s", cfg.images);
    int rc = 0;
    for (char *save = NULL, *set = strtok_r(sets, ",", &save); set && rc == 0; set = strtok_r(NULL, ",", &save)) {
        snprintf(cfg.images, sizeof cfg.images, "%s", set);
        rc = encode_run(&cfg, world, &err);
    }
    if (rc < 0) fprintf(stderr, "presight encode (rank %d): %s: %s\n", comm_rank(world), cfg.images, err.msg);
    comm_free(world);
    comm_shutdown();
    return rc == ENCODE_PREEMPTED ? ENCODE_PREEMPTED : rc ? 1 : 0;
}
