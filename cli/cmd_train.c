/* cmd_train.c - presight train CONFIG [key=value ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "comm.h"
#include "config.h"
#include "pretrain.h"

int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static void train_help(FILE *out) {
    fprintf(out,
            "usage: presight train CONFIG [key=value ...]\n\n"
            "Pretrains the model CONFIG describes on its data, writing into run.dir:\n"
            "  config.cfg     the resolved config (every key)\n"
            "  metrics.jsonl  one line per step: step, loss, lr, grad_norm, tokens, tokens_per_s, elapsed_s\n"
            "  checkpoints/   step_NNNNNNNN.h5: weights, AdamW moments, step (HDF5, full shapes)\n"
            "  model.h5       final weights (the last checkpoint; /model holds Meta tensor names)\n"
            "  final.json     summary, written last: the run is complete\n"
            "Pointed at a run.dir holding a run of the same config, it resumes from the newest\n"
            "valid checkpoint. On SIGTERM or SIGUSR1 it checkpoints and exits with status 75.\n"
            "Any key can be overridden, e.g. presight train config/quickstart.cfg train.steps=200 model.layers=4\n"
            "Run under mpirun/srun for several ranks (data parallel).\n\nkeys:\n");
    config_print_keys(out);
}

/* A failure on this rank alone: the others may wait for it inside a
 * collective (MPI, or NCCL on the GPU) that never completes, so returning
 * would hang the job. Its message is out; end every rank now. */
static void end_job(comm *world) {
    fprintf(stderr, "presight train (rank %d): stopping every rank of the job\n", comm_rank(world));
    fflush(stderr);
    fflush(stdout);
    comm_abort(world, 1);
}

int cmd_train(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        train_help(stdout);
        return 0;
    }
    if (argc < 2) {
        train_help(stderr);
        return 2;
    }
    run_config cfg;
    ps_error err = {{0}};
    comm *world = NULL;
    if (config_load(&cfg, argv[1], argc - 2, argv + 2, &err)) {
        fprintf(stderr, "presight train: %s\n", err.msg);
        return 2;
    }
    if (cfg.threads > 0) { /* run.threads wins over the environment (the BLAS loader reads it) */
        char n[16];
        snprintf(n, sizeof n, "%d", cfg.threads);
        setenv("PRESIGHT_THREADS", n, 1);
    }
    if (comm_world(&world, &argc, &argv, &err)) {
        fprintf(stderr, "presight train: %s\n", err.msg);
        return 1;
    }
    int rc = pretrain_run(&cfg, world, &err);
    if (rc < 0) fprintf(stderr, "presight train (rank %d): %s\n", comm_rank(world), err.msg);
    if (rc == -1 && comm_size(world) > 1) end_job(world);
    comm_free(world);
    comm_shutdown();
    return rc == PRESIGHT_EXIT_PREEMPTED ? PRESIGHT_EXIT_PREEMPTED : rc ? 1 : 0;
}
