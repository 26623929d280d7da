/* export_tokenizer.c - Hugging Face tokenizer files for a presight vocabulary (see
 * export_tokenizer.h). */
#include "export_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The split regex of tokenizer.c (Llama 3 and cl100k share it), JSON-escaped. */
static const char PATTERN_JSON[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * become U+0100 onwards in byte order. */
static void byte_chars(unsigned cp[256]) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        cp[b] = printable ? (unsigned)b : (unsigned)next++;
    }
}

static void put_utf8(FILE *f, unsigned cp) {
    if (cp < 0x80) fputc((int)cp, f);
    else if (cp < 0x800) fputc((int)(0xC0 | cp >> 6), f), fputc((int)(0x80 | (cp & 0x3F)), f);
    else fputc((int)(0xE0 | cp >> 12), f), fputc((int)(0x80 | (cp >> 6 & 0x3F)), f), fputc((int)(0x80 | (cp & 0x3F)), f);
}

/* A token's bytes in the byte-level spelling, inside a JSON string. */
static void put_token(FILE *f, const unsigned cp[256], const unsigned char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned c = cp[b[i]];
        if (c == '"' || c == '\\') fputc('\\', f);
        put_utf8(f, c);
    }
}

/* A special token's name (plain text) inside a JSON string. */
static void put_json_text(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

/* bytes -> id of the ordinary tokens, open addressing. */
typedef struct vocab_index {
    const tokenizer *tok;
    uint32_t *slot; /* id + 1, 0 empty */
    size_t mask;
} vocab_index;

static uint64_t fnv(const unsigned char *b, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int index_build(vocab_index *x, const tokenizer *tok, ps_error *err) {
    size_t n = tokenizer_n_ordinary(tok), cap = 1;
    while (cap < 2 * n) cap <<= 1;
    x->tok = tok, x->mask = cap - 1;
    if (!(x->slot = calloc(cap, sizeof *x->slot))) return ps_fail(err, "out of memory");
    for (uint32_t id = 0; id < n; id++) {
        size_t len;
        const unsigned char *b = tokenizer_token(tok, id, &len);
        size_t s = fnv(b, len) & x->mask;
        while (x->slot[s]) s = (s + 1) & x->mask;
        x->slot[s] = id + 1;
    }
    return 0;
}

static int64_t index_find(const vocab_index *x, const unsigned char *b, size_t n) {
    for (size_t s = fnv(b, n) & x->mask; x->slot[s]; s = (s + 1) & x->mask) {
        size_t len;
        const unsigned char *t = tokenizer_token(x->tok, x->slot[s] - 1, &len);
        if (len == n && !memcmp(t, b, n)) return x->slot[s] - 1;
    }
    return -1;
}

typedef struct split {
    uint32_t l, r;
    size_t at;
} split;

static int split_order(const void *a, const void *b) {
    const split *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

/* "merges": for each token by rank, its splits into two tokens (see the header). */
static int put_merges(FILE *f, const tokenizer *tok, const unsigned cp[256], ps_error *err) {
    vocab_index x;
    if (index_build(&x, tok, err)) return -1;
    size_t n = tokenizer_n_ordinary(tok), cap = 0, first = 1;
    split *sp = NULL;
    fputs("\"merges\":[", f);
    for (uint32_t id = 0; id < n; id++) {
        size_t len, k = 0;
        const unsigned char *b = tokenizer_token(tok, id, &len);
        if (len + 1 > cap) {
            split *g = realloc(sp, sizeof *sp * (cap = 2 * len + 2));
            if (!g) return free(sp), free(x.slot), ps_fail(err, "out of memory");
            sp = g;
        }
        for (size_t at = 1; at < len; at++) {
            int64_t l = index_find(&x, b, at), r = l < 0 ? -1 : index_find(&x, b + at, len - at);
            if (r >= 0) sp[k++] = (split){(uint32_t)l, (uint32_t)r, at};
        }
        qsort(sp, k, sizeof *sp, split_order);
        for (size_t i = 0; i < k; i++, first = 0) {
            fputs(first ? "\n\"" : ",\n\"", f);
            put_token(f, cp, b, sp[i].at);
            fputc(' ', f);
            put_token(f, cp, b + sp[i].at, len - sp[i].at);
            fputc('"', f);
        }
    }
    fputs("]", f);
    free(sp), free(x.slot);
    return 0;
}

static void put_added(FILE *f, const tokenizer *tok) {
    size_t n = tokenizer_n_ordinary(tok), all = tokenizer_vocab_size(tok);
    fputs("\"added_tokens\":[", f);
    for (size_t id = n, first = 1; id < all; id++) {
        size_t len;
        const unsigned char *name = tokenizer_token(tok, (uint32_t)id, &len);
        if (!name) continue;
        fprintf(f, "%s\n{\"id\":%zu,\"content\":\"", first ? "" : ",", id);
        put_json_text(f, (const char *)name, len);
        fputs("\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}", f);
        first = 0;
    }
    fputs("],\n", f);
}

static int finish(FILE *f, const char *tmp, const char *path, ps_error *err) {
    int bad = ferror(f);
    if (fclose(f) || bad) return remove(tmp), ps_fail(err, "%s: write failed", tmp);
    if (rename(tmp, path)) return ps_fail(err, "%s: cannot rename to %s", tmp, path);
    return 0;
}

static FILE *create(const char *dir, const char *name, char *path, char *tmp, ps_error *err) {
    snprintf(path, 4200, "%s/%s", dir, name);
    snprintf(tmp, 4300, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) ps_fail(err, "%s: cannot create", tmp);
    return f;
}

static int write_tokenizer_json(const tokenizer *tok, const char *dir, ps_error *err) {
    char path[4200], tmp[4300];
    FILE *f = create(dir, "tokenizer.json", path, tmp, err);
    if (!f) return -1;
    unsigned cp[256];
    byte_chars(cp);
    fputs("{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\n", f);
    put_added(f, tok);
    fprintf(f,
            "\"normalizer\":null,\n\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
            "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},\"behavior\":\"Isolated\",\"invert\":false},"
            "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},\n"
            "\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,"
            "\"use_regex\":true},\n"
            "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},\n"
            "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
            "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":true,\n"
            "\"vocab\":{",
            PATTERN_JSON);
    size_t n = tokenizer_n_ordinary(tok);
    for (uint32_t id = 0; id < n; id++) {
        size_t len;
        const unsigned char *b = tokenizer_token(tok, id, &len);
        fputs(id ? ",\n\"" : "\n\"", f);
        put_token(f, cp, b, len);
        fprintf(f, "\":%u", id);
    }
    fputs("},\n", f);
    int rc = put_merges(f, tok, cp, err);
    fputs("}}\n", f);
    if (rc) return fclose(f), remove(tmp), -1;
    return finish(f, tmp, path, err);
}

/* chat_template.h's CHAT_CHAT in Jinja, per vocabulary kind. */
static const char *chat_jinja(tokenizer_kind kind) {
    if (kind == TOKENIZER_LLAMA3)
        return "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "<|start_header_id|>user<|end_header_id|>\\n\\n{{ message['content'] }}<|eot_id|>{% else %}"
               "<|start_header_id|>assistant<|end_header_id|>\\n\\n{{ message['content'] }}<|eot_id|>{% endif %}"
               "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\\n\\n{% endif %}";
    if (kind == TOKENIZER_CL100K)
        return "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "USER: {{ message['content'] }}\\n{% else %}ASSISTANT: {{ message['content'] }}<|endoftext|>{% endif %}"
               "{% endfor %}{% if add_generation_prompt %}ASSISTANT: {% endif %}";
    return "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
           "USER: {{ message['content'] }}\\n{% else %}ASSISTANT: {{ message['content'] }}<|end_of_text|>{% endif %}"
           "{% endfor %}{% if add_generation_prompt %}ASSISTANT: {% endif %}";
}

static int write_configs(const tokenizer *tok, uint32_t eos, int max_len, int chat, const char *dir, ps_error *err) {
    size_t blen, elen;
    int64_t bos = tokenizer_special_id(tok, tokenizer_get_kind(tok) == TOKENIZER_CL100K ? "<|endoftext|>"
                                                                                       : "<|begin_of_text|>");
    const unsigned char *bname = bos < 0 ? NULL : tokenizer_token(tok, (uint32_t)bos, &blen);
    const unsigned char *ename = tokenizer_token(tok, eos, &elen);
    if (!bname || !ename) return ps_fail(err, "the vocabulary has no begin or end of text token");
    char path[4200], tmp[4300];
    FILE *f = create(dir, "tokenizer_config.json", path, tmp, err);
    if (!f) return -1;
    fputs("{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"added_tokens_decoder\": {", f);
    for (size_t id = tokenizer_n_ordinary(tok), first = 1; id < tokenizer_vocab_size(tok); id++) {
        size_t len;
        const unsigned char *name = tokenizer_token(tok, (uint32_t)id, &len);
        if (!name) continue;
        fprintf(f, "%s\n    \"%zu\": {\"content\": \"", first ? "" : ",", id);
        put_json_text(f, (const char *)name, len);
        fputs("\", \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": false, "
              "\"special\": true}",
              f);
        first = 0;
    }
    /* Pretraining puts no BOS anywhere (documents end with <|end_of_text|>): without one,
     * lm-evaluation-harness's prefix token is eos_token, presight's scoring prefix. */
    if (chat) {
        fputs("\n  },\n  \"bos_token\": \"", f);
        put_json_text(f, (const char *)bname, blen);
        fputs("\",", f);
    } else
        fputs("\n  },\n  \"bos_token\": null,", f);
    fputs("\n  \"eos_token\": \"", f);
    put_json_text(f, (const char *)ename, elen);
    fprintf(f,
            "\",\n  \"clean_up_tokenization_spaces\": false,\n  \"model_input_names\": [\"input_ids\", "
            "\"attention_mask\"],\n  \"model_max_length\": %d,\n  \"presight_tokenizer_kind\": \"%s\"",
            max_len, tokenizer_kind_name(tokenizer_get_kind(tok)));
    if (chat) fprintf(f, ",\n  \"chat_template\": \"%s\"", chat_jinja(tokenizer_get_kind(tok)));
    fputs("\n}\n", f);
    if (finish(f, tmp, path, err)) return -1;
    if (!(f = create(dir, "special_tokens_map.json", path, tmp, err))) return -1;
    if (chat) {
        fputs("{\"bos_token\": \"", f);
        put_json_text(f, (const char *)bname, blen);
        fputs("\", \"eos_token\": \"", f);
    } else
        fputs("{\"eos_token\": \"", f);
    put_json_text(f, (const char *)ename, elen);
    fputs("\"}\n", f);
    return finish(f, tmp, path, err);
}

int export_hf_tokenizer(const tokenizer *tok, uint32_t eos, int model_max_length, int chat, const char *dir,
                        ps_error *err) {
    if (write_tokenizer_json(tok, dir, err)) return -1;
    return write_configs(tok, eos, model_max_length, chat, dir, err);
}
