/* main.c - the presight binary: one subcommand per stage of a study.
 * Errors from the library arrive here as messages; only main prints them and
 * chooses the exit code (0 ok, 1 failed, 2 bad usage). */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"train", cmd_train, "pretrain a model from a config (presight train CONFIG [key=value ...])"},
    {"plan", cmd_plan, "parameter count, FLOPs and memory of a config (presight plan CONFIG [key=value ...])"},
    {"data", cmd_data, "tokenizers, corpora, shards, labels and mixtures"},
    {"study", cmd_study, "expand, submit and follow a study on SLURM or locally"},
    {"encode", cmd_encode, "image set -> cached vision-encoder features (presight encode CONFIG [encode.key=value ...])"},
    {"adapt", cmd_adapt, "give a pretrained model eyes: projector alignment, then visual instruction tuning"},
    {"eval", cmd_eval, "a model over task files (eval CONFIG), or re-score stored predictions (eval rescore)"},
    {"generate", cmd_generate, "what a model says: greedy continuation of a prompt (presight generate CONFIG prompt=TEXT)"},
    {"export", cmd_export, "a trained model as a Hugging Face Llama checkpoint (presight export CONFIG out=DIR)"},
    {"report", cmd_report, "tables, CSV and PNG plots from collected results (presight report STUDY|RUN... [--out DIR])"},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void usage(FILE *out) {
    fprintf(out, "usage: presight COMMAND [--help] ...\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nEvery command reads one libconfig file plus key=value overrides; `presight COMMAND --help` "
                 "says more.\n");
}

int main(int argc, char **argv) {
    /* Large buffers (gathered units, activations) come from mmap and go back
     * to the system when freed: otherwise glibc keeps the holes resident and
     * a rank's memory grows past what it uses (see tests/t_memory.sh). */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "presight: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
