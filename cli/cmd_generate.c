/* cmd_generate.c - presight generate CONFIG prompt=TEXT [key=value ...]: what a model says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "eval_model.h"

static void generate_help(FILE *out) {
    fprintf(out,
            "usage: presight generate CONFIG prompt=TEXT [key=value ...]\n\n"
            "Continues TEXT greedily with the model CONFIG's run trained (run.dir/model.h5, else its\n"
            "newest checkpoint, or eval.checkpoint=FILE), with the tokenizer it was trained with, the\n"
            "same decoding (KV cache) as presight eval's VQA answers, and prints the continuation.\n"
            "  prompt=TEXT           the prompt (\"\\n\" in it is a newline)\n"
            "  eval.max_new_tokens=N tokens to generate (default 16); it stops at <|end_of_text|>\n"
            "Any config key may be overridden as in presight train. Questions about an image need an\n"
            "adapted model (presight adapt) and are not part of this build yet.\n");
}

/* "\n" in a command-line prompt is a newline (shells make real ones awkward). */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] == 'n') *w++ = '\n', r++;
        else *w++ = *r;
    }
    *w = 0;
}

int cmd_generate(int argc, char **argv) {
    if (wants_help(argc, argv)) return generate_help(stdout), 0;
    if (argc < 2) return generate_help(stderr), 2;
    char *prompt = NULL, **over = malloc(sizeof *over * (size_t)argc);
    int n_over = 0;
    if (!over) return fprintf(stderr, "presight generate: out of memory\n"), 1;
    for (int i = 2; i < argc; i++) {
        if (!strncmp(argv[i], "prompt=", 7)) prompt = argv[i] + 7;
        else if (!strncmp(argv[i], "image=", 6)) {
            fprintf(stderr, "presight generate: image=: questions about an image need an adapted model (not in this build)\n");
            free(over);
            return 2;
        } else over[n_over++] = argv[i];
    }
    run_config cfg;
    ps_error err = {{0}};
    if (!prompt || !*prompt) {
        fprintf(stderr, "presight generate: which prompt? (prompt=TEXT)\n");
        free(over);
        return 2;
    }
    if (config_load(&cfg, argv[1], n_over, over, &err)) {
        fprintf(stderr, "presight generate: %s\n", err.msg);
        free(over);
        return 2;
    }
    free(over);
    unescape(prompt);
    eval_model em;
    char scratch[] = "/tmp/presight-generate-XXXXXX";
    if (!mkdtemp(scratch)) return fprintf(stderr, "presight generate: cannot make a scratch folder\n"), 1;
    int rc = eval_model_open(&em, &cfg, scratch, &err);
    char vocab[sizeof scratch + 32];
    snprintf(vocab, sizeof vocab, "%s/bytes.tiktoken", scratch);
    remove(vocab), remove(scratch);
    if (rc) return fprintf(stderr, "presight generate: %s\n", err.msg), 1;
    tokenizer_ids ids = {0};
    uint32_t *out = NULL;
    size_t n_out = 0;
    tokenizer_bytes text = {0};
    rc = tokenizer_encode(em.tok, prompt, strlen(prompt), 0, &ids, &err);
    if (!rc) rc = eval_model_generate(&em, &ids, 1, 1, cfg.eval.max_new_tokens, &out, &n_out, &err);
    if (!rc) rc = tokenizer_decode(em.tok, out, n_out, &text, &err);
    if (rc) fprintf(stderr, "presight generate: %s\n", err.msg);
    else {
        fwrite(text.bytes, 1, text.n, stdout);
        printf("\n");
        fprintf(stderr, "(%zu prompt tokens, %zu generated; weights %s)\n", ids.n, n_out, em.weights);
    }
    tokenizer_bytes_free(&text);
    tokenizer_ids_free(&ids);
    free(out);
    eval_model_close(&em);
    return rc ? 1 : 0;
}
