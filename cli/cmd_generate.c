/* cmd_generate.c - presight generate CONFIG prompt=TEXT [key=value ...]: what a model says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_select.h"
#include "comm.h"
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
            "  image=ID              with an adapted model (presight adapt): the picture of this id in\n"
            "                        its features (eval.features, default its adapt.features); the\n"
            "                        prompt is then a question in sft's chat template, as presight eval\n"
            "                        asks VQA items, and generation stops at the end of the answer\n"
            "  run.backend=\"cuda\"    decode on the GPU engine (bf16; \"auto\": when there is a GPU)\n"
            "Any config key may be overridden as in presight train.\n");
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
    char *prompt = NULL, *image = NULL, **over = malloc(sizeof *over * (size_t)argc);
    int n_over = 0;
    if (!over) return fprintf(stderr, "presight generate: out of memory\n"), 1;
    for (int i = 2; i < argc; i++) {
        if (!strncmp(argv[i], "prompt=", 7)) prompt = argv[i] + 7;
        else if (!strncmp(argv[i], "image=", 6)) image = argv[i] + 6;
        else over[n_over++] = argv[i];
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
    int rc = eval_model_open_visual(&em, &cfg, scratch, &err);
    char vocab[sizeof scratch + 32];
    snprintf(vocab, sizeof vocab, "%s/bytes.tiktoken", scratch);
    remove(vocab), remove(scratch);
    if (rc) return fprintf(stderr, "presight generate: %s\n", err.msg), 1;
    if (!rc && image && !em.image_input) {
        fprintf(stderr, "presight generate: image=%s: %s is not an adapted model (presight adapt): it cannot see a picture\n",
                image, em.weights);
        eval_model_close(&em);
        return 2;
    }
    comm *world = NULL; /* the GPU engine's selection is collective: a world of this one process */
    if (strcmp(cfg.backend, "cpu")) {
        const gpu_engine_api *gpu = NULL;
        rc = comm_world(&world, &argc, &argv, &err) || backend_select(&cfg, world, &gpu, &err) ||
             (gpu && eval_model_use_gpu(&em, gpu, &err));
        if (rc) {
            fprintf(stderr, "presight generate: %s\n", err.msg);
            eval_model_close(&em);
            comm_free(world);
            comm_shutdown();
            return 1;
        }
    }
    tokenizer_ids ids = {0};
    uint32_t *out = NULL;
    size_t n_out = 0;
    tokenizer_bytes text = {0};
    real *embeds = NULL;
    eval_prompt p = {0};
    if (!rc && em.image_input) { /* a question, as presight eval asks it */
        chat_tokens q = {0};
        eval_picture pic;
        rc = image ? eval_model_find_picture(&em, image, &pic, &err) : 0;
        if (!rc) rc = chat_template_question(&em.tpl, prompt, image != NULL, &q, &err);
        if (!rc && image && !(embeds = malloc(sizeof *embeds * (size_t)em.visual_tokens * (size_t)cfg.model.dim)))
            rc = ps_fail(&err, "out of memory");
        if (!rc && image) rc = eval_model_project(&em, pic, embeds, &err);
        if (!rc && !(ids.ids = malloc(sizeof *ids.ids * (size_t)(q.n ? q.n : 1))))
            rc = ps_fail(&err, "out of memory");
        for (int i = 0; !rc && i < q.n; i++) ids.ids[ids.n++] = (uint32_t)q.ids[i];
        p = (eval_prompt){.ids = ids.ids, .n = ids.n, .visual = image ? em.visual_tokens : 0, .image_at = q.image_at,
                          .embeds = embeds};
        chat_tokens_free(&q);
    } else if (!rc) {
        rc = tokenizer_encode(em.tok, prompt, strlen(prompt), 0, &ids, &err);
        p = (eval_prompt){.ids = ids.ids, .n = ids.n};
    }
    if (!rc) rc = eval_model_generate_visual(&em, &p, 1, 1, cfg.eval.max_new_tokens, &out, &n_out, &err);
    if (!rc) rc = tokenizer_decode(em.tok, out, n_out, &text, &err);
    if (rc) fprintf(stderr, "presight generate: %s\n", err.msg);
    else {
        fwrite(text.bytes, 1, text.n, stdout);
        printf("\n");
        fprintf(stderr, "(%zu prompt tokens%s, %zu generated; weights %s%s)\n", ids.n,
                image ? " and a picture" : "", n_out, em.weights, em.engine ? "; on the GPU engine" : "");
    }
    free(embeds);
    tokenizer_bytes_free(&text);
    tokenizer_ids_free(&ids);
    free(out);
    eval_model_close(&em);
    if (world) {
        comm_free(world);
        comm_shutdown();
    }
    return rc ? 1 : 0;
}
