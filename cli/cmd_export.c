/* cmd_export.c - presight export CONFIG out=DIR [key=value ...]: a Hugging Face Llama checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "export_hf.h"

static void export_help(FILE *out) {
    fprintf(out,
            "usage: presight export CONFIG out=DIR [key=value ...]\n\n"
            "Writes the model CONFIG's run trained (run.dir/model.h5, else its newest checkpoint, or\n"
            "eval.checkpoint=FILE) as a Hugging Face Llama checkpoint in DIR: config.json,\n"
            "model.safetensors (float32; wq/wk rows permuted to HF's rotate_half RoPE layout),\n"
            "tokenizer.tiktoken and tokenizer_config.json, so that lm-evaluation-harness can score\n"
            "it on your machine. Adapted models (LLaVA's layout) are not part of this build yet.\n");
}

int cmd_export(int argc, char **argv) {
    if (wants_help(argc, argv)) return export_help(stdout), 0;
    if (argc < 2) return export_help(stderr), 2;
    const char *out = NULL;
    char **over = malloc(sizeof *over * (size_t)argc);
    int n_over = 0;
    if (!over) return fprintf(stderr, "presight export: out of memory\n"), 1;
    for (int i = 2; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4)) out = argv[i] + 4;
        else over[n_over++] = argv[i];
    }
    run_config cfg;
    ps_error err = {{0}};
    int rc = 0;
    if (!out || !*out) {
        fprintf(stderr, "presight export: where to? (out=DIR)\n");
        rc = 2;
    } else if (config_load(&cfg, argv[1], n_over, over, &err)) {
        fprintf(stderr, "presight export: %s\n", err.msg);
        rc = 2;
    }
    free(over);
    if (rc) return 2;
    if (export_hf_llama(&cfg, out, &err)) {
        fprintf(stderr, "presight export: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s/{config.json,model.safetensors,tokenizer.tiktoken,tokenizer_config.json}\n", out);
    return 0;
}
