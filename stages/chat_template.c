/* chat_template.c - conversations to ids (chat_template.h). */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "text_dataset.h"

static int special(const tokenizer *tok, const char *name, int vocab, int *out, ps_error *err) {
    int64_t id = tokenizer_special_id(tok, name);
    if (id < 0) return ps_fail(err, "chat template: the tokenizer has no special token %s", name);
    if (id >= vocab) return ps_fail(err, "chat template: %s is id %lld, past model.vocab = %d", name, (long long)id, vocab);
    *out = (int)id;
    return 0;
}

int chat_template_init(chat_template *t, const tokenizer *tok, int vocab, ps_error *err) {
    memset(t, 0, sizeof *t);
    t->tok = tok;
    t->vocab = vocab;
    t->header_start = t->header_end = -1;
    if (!tok) {
        t->kind = CHAT_TEXT_BYTES;
        t->bos = 256;     /* text_dataset.h: <|begin_of_text|>, <|end_of_text|> after the bytes */
        t->eot = 257;
        if (vocab < 256 + TEXT_SPECIALS) return ps_fail(err, "chat template: model.vocab = %d is below the byte ids' %d", vocab, 256 + TEXT_SPECIALS);
        return 0;
    }
    switch (tokenizer_get_kind(tok)) {
    case TOKENIZER_LLAMA3:
        t->kind = CHAT_TEXT_LLAMA3;
        if (special(tok, "<|begin_of_text|>", vocab, &t->bos, err) || special(tok, "<|eot_id|>", vocab, &t->eot, err) ||
            special(tok, "<|start_header_id|>", vocab, &t->header_start, err) ||
            special(tok, "<|end_header_id|>", vocab, &t->header_end, err))
            return -1;
        return 0;
    case TOKENIZER_CL100K:
        t->kind = CHAT_TEXT_CL100K;
        if (special(tok, "<|endoftext|>", vocab, &t->bos, err)) return -1;
        t->eot = t->bos;
        return 0;
    default:
        t->kind = CHAT_TEXT_PLAIN;
        return special(tok, "<|begin_of_text|>", vocab, &t->bos, err) ||
               special(tok, "<|end_of_text|>", vocab, &t->eot, err);
    }
}

int chat_template_for_run(chat_template *t, const run_config *pre, ps_error *err) {
    if (!strcmp(pre->data.kind, "text")) return chat_template_init(t, NULL, pre->model.vocab, err);
    if (!pre->data.tokenizer[0])
        return ps_fail(err, "chat template: the pretrained run names no data.tokenizer (needed to tokenize prompts)");
    tokenizer_kind kind;
    tokenizer *tok;
    if (tokenizer_kind_parse(pre->data.tokenizer_kind, &kind, err) ||
        tokenizer_load(&tok, pre->data.tokenizer, kind, err))
        return -1;
    if (chat_template_init(t, tok, pre->model.vocab, err)) {
        tokenizer_free(tok);
        return -1;
    }
    t->owned = tok;
    return 0;
}

void chat_template_free(chat_template *t) {
    if (t->owned) tokenizer_free(t->owned);
    t->owned = NULL;
    t->tok = NULL;
}

void chat_tokens_free(chat_tokens *c) {
    free(c->ids);
    free(c->train);
    memset(c, 0, sizeof *c);
}

static int push(chat_tokens *c, int id, int train, ps_error *err) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        int *ids = realloc(c->ids, (size_t)cap * sizeof *ids);
        if (!ids) return ps_fail(err, "out of memory for a templated sample");
        c->ids = ids;
        unsigned char *tr = realloc(c->train, (size_t)cap);
        if (!tr) return ps_fail(err, "out of memory for a templated sample");
        c->train = tr;
        c->cap = cap;
    }
    c->ids[c->n] = id;
    c->train[c->n] = (unsigned char)(train != 0);
    c->n++;
    c->n_train += train != 0;
    return 0;
}

int chat_tokens_append_text(const chat_template *t, chat_tokens *out, const char *text, size_t len, int train,
                            ps_error *err) {
    if (!t->tok) {
        for (size_t i = 0; i < len; i++)
            if (push(out, (unsigned char)text[i], train, err)) return -1;
        return 0;
    }
    tokenizer_ids ids = {0};
    if (tokenizer_encode(t->tok, text, len, 0, &ids, err)) return -1;
    int rc = 0;
    for (size_t i = 0; i < ids.n && !rc; i++) {
        if (ids.ids[i] >= (uint32_t)t->vocab)
            rc = ps_fail(err, "chat template: token id %u is past model.vocab = %d", ids.ids[i], t->vocab);
        else
            rc = push(out, (int)ids.ids[i], train, err);
    }
    tokenizer_ids_free(&ids);
    return rc;
}

static int append_str(const chat_template *t, chat_tokens *out, const char *s, int train, ps_error *err) {
    return chat_tokens_append_text(t, out, s, strlen(s), train, err);
}

/* U or A of the header comment. */
static int role_header(const chat_template *t, chat_tokens *out, int human, ps_error *err) {
    if (t->kind == CHAT_TEXT_LLAMA3)
        return push(out, t->header_start, 0, err) || append_str(t, out, human ? "user" : "assistant", 0, err) ||
               push(out, t->header_end, 0, err) || append_str(t, out, "\n\n", 0, err);
    return append_str(t, out, human ? "USER: " : "ASSISTANT: ", 0, err);
}

/* E: the end of a human turn. */
static int human_end(const chat_template *t, chat_tokens *out, ps_error *err) {
    if (t->kind == CHAT_TEXT_LLAMA3) return push(out, t->eot, 0, err);
    return append_str(t, out, "\n", 0, err);
}

/* A human text, with the picture's place if it holds the mark. */
static int human_text(const chat_template *t, chat_tokens *out, const char *text, int first, int has_image,
                      ps_error *err) {
    const char *mark = strstr(text, CHAT_IMAGE_MARK);
    if (!mark) return append_str(t, out, text, 0, err);
    if (!first) return ps_fail(err, "chat template: <image> in a later human turn (only the first may hold it)");
    if (!has_image) return ps_fail(err, "chat template: <image> in a sample without a picture");
    const char *after = mark + strlen(CHAT_IMAGE_MARK);
    if (strstr(after, CHAT_IMAGE_MARK)) return ps_fail(err, "chat template: <image> more than once");
    if (chat_tokens_append_text(t, out, text, (size_t)(mark - text), 0, err)) return -1;
    out->image_at = out->n;
    return append_str(t, out, after, 0, err);
}

static int only_mark(const char *s) {
    s += strspn(s, " \t\r\n");
    if (strncmp(s, CHAT_IMAGE_MARK, strlen(CHAT_IMAGE_MARK))) return 0;
    s += strlen(CHAT_IMAGE_MARK);
    return s[strspn(s, " \t\r\n")] == 0;
}

static int apply_plain(const chat_template *t, const chat_turn *turns, int n_turns, int has_image, chat_tokens *out,
                       ps_error *err) {
    if (n_turns != 2 || !turns[0].human || turns[1].human)
        return ps_fail(err, "chat template (plain): needs one human turn and one gpt turn, got %d turns", n_turns);
    if (!has_image) return ps_fail(err, "chat template (plain): the sample has no picture");
    if (!only_mark(turns[0].text)) return ps_fail(err, "chat template (plain): the human turn must be just <image>");
    if (!turns[1].text[0]) return ps_fail(err, "chat template (plain): empty caption");
    if (push(out, t->bos, 0, err)) return -1;
    out->image_at = out->n;
    return append_str(t, out, turns[1].text, 1, err) || push(out, t->eot, 1, err);
}

static int apply_chat(const chat_template *t, const chat_turn *turns, int n_turns, int has_image, int gen,
                      chat_tokens *out, ps_error *err) {
    if (n_turns < 1) return ps_fail(err, "chat template: no turns");
    if (push(out, t->bos, 0, err)) return -1;
    for (int i = 0; i < n_turns; i++) {
        if (turns[i].human != !(i & 1))
            return ps_fail(err, "chat template: turn %d is from %s (turns alternate human, gpt, starting with human)",
                           i, turns[i].human ? "human" : "gpt");
        if (role_header(t, out, turns[i].human, err)) return -1;
        if (turns[i].human) {
            if (human_text(t, out, turns[i].text, i == 0, has_image, err) || human_end(t, out, err)) return -1;
        } else {
            if (!turns[i].text[0]) return ps_fail(err, "chat template: turn %d is an empty answer", i);
            if (append_str(t, out, turns[i].text, 1, err) || push(out, t->eot, 1, err)) return -1;
        }
    }
    int last_human = turns[n_turns - 1].human;
    if (gen && !last_human) return ps_fail(err, "chat template: a generation prompt needs a human turn last");
    if (!gen && last_human) return ps_fail(err, "chat template: the last turn is human (no answer to train on)");
    if (gen && role_header(t, out, 0, err)) return -1;
    if (has_image && out->image_at < 0) return ps_fail(err, "chat template: a picture but no <image> in the first human turn");
    return 0;
}

int chat_template_apply(const chat_template *t, chat_style style, const chat_turn *turns, int n_turns,
                        int has_image, int add_generation_prompt, chat_tokens *out, ps_error *err) {
    out->n = 0;
    out->n_train = 0;
    out->image_at = -1;
    if (style == CHAT_PLAIN) return apply_plain(t, turns, n_turns, has_image, out, err);
    return apply_chat(t, turns, n_turns, has_image, add_generation_prompt, out, err);
}

int chat_template_question(const chat_template *t, const char *question, int has_image, chat_tokens *out,
                           ps_error *err) {
    size_t n = strlen(question), mark = has_image ? strlen(CHAT_IMAGE_MARK "\n") : 0;
    char *text = malloc(n + mark + 1);
    if (!text) return ps_fail(err, "out of memory");
    memcpy(text, CHAT_IMAGE_MARK "\n", mark);
    memcpy(text + mark, question, n + 1);
    chat_turn turn = {.human = 1, .text = text};
    int rc = chat_template_apply(t, CHAT_CHAT, &turn, 1, has_image, 1, out, err);
    free(text);
    return rc;
}
