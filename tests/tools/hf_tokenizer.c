/* hf_tokenizer - drives stages/export_tokenizer.c and chat_template.c for
 * tests/t_export_hf.sh, which reads the files back with an independent implementation
 * of the Hugging Face format (transformers.js' tokenizers, @lenml/tokenizers).
 *
 *   hf_tokenizer write VOCAB KIND DIR    tokenizer.json, tokenizer_config.json (with the
 *                                        chat template), special_tokens_map.json in DIR
 *   hf_tokenizer chat VOCAB KIND < conversations.jsonl > ids.jsonl
 *       one conversation a line, [["user"|"assistant", "text"], ...]: the ids of
 *       chat_template_apply (CHAT_CHAT; a generation prompt when the last turn is the
 *       user's), one JSON array a line. */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_template.h"
#include "export_tokenizer.h"

static int chat(const tokenizer *tok) {
    chat_template t;
    ps_error err = {{0}};
    if (chat_template_init(&t, tok, (int)tokenizer_vocab_size(tok), &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    char line[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        json_object *c = json_tokener_parse(line);
        int n = c ? (int)json_object_array_length(c) : 0;
        chat_turn turns[64];
        for (int i = 0; i < n && i < 64; i++) {
            json_object *p = json_object_array_get_idx(c, (size_t)i);
            turns[i].human = !strcmp(json_object_get_string(json_object_array_get_idx(p, 0)), "user");
            turns[i].text = json_object_get_string(json_object_array_get_idx(p, 1));
        }
        chat_tokens out = {0};
        if (!c || n < 1 || chat_template_apply(&t, CHAT_CHAT, turns, n, 0, turns[n - 1].human, &out, &err))
            return fprintf(stderr, "chat: %s\n", c ? err.msg : "not JSON"), 1;
        for (int i = 0; i < out.n; i++) printf("%s%d", i ? "," : "[", out.ids[i]);
        printf("]\n");
        chat_tokens_free(&out);
        json_object_put(c);
    }
    chat_template_free(&t);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4 || (strcmp(argv[1], "write") && strcmp(argv[1], "chat")) || (!strcmp(argv[1], "write") && argc != 5)) {
        fprintf(stderr, "usage: hf_tokenizer write VOCAB KIND DIR | chat VOCAB KIND < conversations.jsonl\n");
        return 2;
    }
    ps_error err = {{0}};
    tokenizer_kind kind;
    tokenizer *tok;
    if (tokenizer_kind_parse(argv[3], &kind, &err) || tokenizer_load(&tok, argv[2], kind, &err))
        return fprintf(stderr, "hf_tokenizer: %s\n", err.msg), 1;
    int rc;
    if (!strcmp(argv[1], "chat")) rc = chat(tok);
    else {
        mkdir(argv[4], 0777);
        int64_t eos = tokenizer_special_id(tok, kind == TOKENIZER_CL100K ? "<|endoftext|>" : "<|end_of_text|>");
        rc = export_hf_tokenizer(tok, (uint32_t)eos, 8192, 1, argv[4], &err) ? fprintf(stderr, "hf_tokenizer: %s\n", err.msg), 1 : 0;
    }
    tokenizer_free(tok);
    return rc;
}
