/* cmd_adapt.c - presight adapt CONFIG [key=value ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt.h"
#include "commands.h"
#include "comm.h"
#include "config.h"
#include "runner.h"

static void adapt_help(FILE *out) {
    fprintf(out,
            "usage: presight adapt CONFIG [key=value ...]\n\n"
            "One stage of the visual adaptation of a pretrained model (README, \"Adapting a model to images\"):\n"
            "  adapt.stage = \"align\"  only the projector trains, on image-caption pairs (the LLM frozen, checked)\n"
            "  adapt.stage = \"blind\"  the LLM trains on instructions with the pictures withheld\n"
            "  adapt.stage = \"sft\"    projector + LLM train on visual and language-only instructions\n"
            "from adapt.init (the pretrained run, or the previous stage's), with the features of one\n"
            "encoder (adapt.features = data/features/ENCODER, one <image_set>.h5 per set) and the LLaVA\n"
            "JSONL adapt.data. model.* and data.* (the tokenizer) come from adapt.init. run.dir gets what\n"
            "pretraining's gets (config.cfg, metrics.jsonl, checkpoints/, final.json) and model.h5: the\n"
            "whole model, LLM + projector, that the next stage and eval load. It resumes, and exits 75\n"
            "after a checkpoint on SIGTERM or SIGUSR1, as presight train does.\n\nkeys:\n");
    config_print_keys(out);
}

static void end_job(comm *world) {
    fprintf(stderr, "presight adapt (rank %d): stopping every rank of the job\n", comm_rank(world));
    fflush(stderr);
    fflush(stdout);
    comm_abort(world, 1);
}

int cmd_adapt(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        adapt_help(stdout);
        return 0;
    }
    if (argc < 2) {
        adapt_help(stderr);
        return 2;
    }
    run_config cfg;
    ps_error err = {{0}};
    comm *world = NULL;
    /* model.* and data.* come from adapt.init: the rest is checked once resolved. */
    if (config_load_model(&cfg, argv[1], argc - 2, argv + 2, &err)) {
        fprintf(stderr, "presight adapt: %s\n", err.msg);
        return 2;
    }
    if (cfg.threads > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", cfg.threads);
        setenv("PRESIGHT_THREADS", n, 1);
    }
    if (comm_world(&world, &argc, &argv, &err)) {
        fprintf(stderr, "presight adapt: %s\n", err.msg);
        return 1;
    }
    int rc = adapt_run(&cfg, world, &err);
    if (rc < 0 && (rc == -1 || comm_rank(world) == 0)) fprintf(stderr, "presight adapt (rank %d): %s\n", comm_rank(world), err.msg);
    if (rc == -1 && comm_size(world) > 1) end_job(world);
    comm_free(world);
    comm_shutdown();
    return rc == PRESIGHT_EXIT_PREEMPTED ? PRESIGHT_EXIT_PREEMPTED : rc ? 1 : 0;
}
