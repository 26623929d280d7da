/* cmd_export.c - presight export CONFIG out=DIR [key=value ...]: a Hugging Face Llama
 * checkpoint, or an adapted model in LLaVA's layout. */
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
            "tokenizer.json, tokenizer_config.json, special_tokens_map.json (and the vocabulary as\n"
            "tokenizer.tiktoken), so that lm-evaluation-harness can score it on your machine.\n"
            "An adapted model (presight adapt's run config) is written in LLaVA's layout:\n"
            "LlavaLlamaForCausalLM, mm_projector_type mlp2x_gelu, model.mm_projector.{0,2} beside the\n"
            "Llama weights, and the chat template in tokenizer_config.json.\n");
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
    int llava = export_hf_is_adapted(&cfg);
    if (llava ? export_hf_llava(&cfg, out, &err) : export_hf_llama(&cfg, out, &err)) {
        fprintf(stderr, "presight export: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (%s): config.json, model.safetensors, tokenizer.json, tokenizer_config.json, "
           "special_tokens_map.json, tokenizer.tiktoken\n",
           out, llava ? "LLaVA: Llama + mm_projector" : "Llama");
    return 0;
}
