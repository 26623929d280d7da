/* tokenizer.h - byte-level BPE in the tiktoken layout.
 *
 * A vocabulary file holds one "base64(bytes) rank" line per token; the rank
 * is the token id and the merge priority. Text is cut into pieces by the
 * Llama 3 / cl100k regex (PCRE2, Unicode properties), and each piece is
 * merged pair by pair, lowest rank first, exactly as tiktoken does. Special
 * tokens (<|begin_of_text|>, ...) sit after the ordinary ids and are only
 * recognised in text when the caller asks for it.
 *
 * A loaded tokenizer is read-only: any number of threads may encode and
 * decode with it at once. */
#ifndef PRESIGHT_TOKENIZER_H
#define PRESIGHT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Which special tokens follow the ordinary ones. */
typedef enum tokenizer_kind {
    TOKENIZER_PLAIN,  /* a trained vocabulary: the TOKENIZER_PLAIN_SPECIALS below at ids n .. n+3 */
    TOKENIZER_LLAMA3, /* 128,000 tokens, 256 specials at 128000..128255 (Llama 3.1 names) */
    TOKENIZER_CL100K, /* 100,256 tokens, 5 specials at 100257..100276 (tiktoken's cl100k_base) */
} tokenizer_kind;

/* <|begin_of_text|>, <|end_of_text|>, <|reserved_special_token_0|>, <|reserved_special_token_1|>,
 * the same four as the byte-level text reader (text_dataset.h). */
#define TOKENIZER_PLAIN_SPECIALS 4

/* The SHA-256 of build/vocab/llama3.tiktoken and cl100k_base.tiktoken. */
#define TOKENIZER_LLAMA3_SHA256 "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
#define TOKENIZER_CL100K_SHA256 "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

typedef struct tokenizer tokenizer;

/* Growable outputs: start zeroed ({0}); calls append; free with *_free. */
typedef struct tokenizer_ids {
    uint32_t *ids;
    size_t n, cap;
} tokenizer_ids;

typedef struct tokenizer_bytes {
    unsigned char *bytes;
    size_t n, cap;
} tokenizer_bytes;

void tokenizer_ids_free(tokenizer_ids *v);
void tokenizer_bytes_free(tokenizer_bytes *v);

/* "plain" | "llama3" | "cl100k" <-> kind. */
int tokenizer_kind_parse(const char *name, tokenizer_kind *out, ps_error *err);
const char *tokenizer_kind_name(tokenizer_kind kind);

/* Loads a .tiktoken file. Malformed lines, duplicate tokens or ranks, missing
 * ranks or single bytes, and a token count that does not fit the kind are
 * errors naming the file (and line). */
int tokenizer_load(tokenizer **out, const char *path, tokenizer_kind kind, ps_error *err);
void tokenizer_free(tokenizer *tok);

/* Appends the ids of text[0..len) to out. Any byte string encodes (invalid
 * UTF-8 included) and decodes back to itself. With allow_special, the names
 * of special tokens in the text become their ids (tiktoken's
 * allowed_special="all"); without, they are ordinary text.
 *
 * Invalid UTF-8 matches no regex alternative: each maximal run of it between
 * matches is a piece of its own (the JS references cannot take such input).
 * A piece of n bytes (a whitespace or letter run) costs O(n log n) time and,
 * past 64 bytes, 32n bytes of scratch: about 0.2 s for a 1 MiB run. */
int tokenizer_encode(const tokenizer *tok, const void *text, size_t len, int allow_special, tokenizer_ids *out,
                     ps_error *err);

/* Appends the bytes of ids[0..n) to out; a special id yields its name. An id
 * that is no token is an error naming its position. */
int tokenizer_decode(const tokenizer *tok, const uint32_t *ids, size_t n, tokenizer_bytes *out, ps_error *err);

/* The bytes of one token (or the name of a special), NULL for no such id. */
const unsigned char *tokenizer_token(const tokenizer *tok, uint32_t id, size_t *len);

/* Largest id + 1 (specials included): the model's embedding rows. */
size_t tokenizer_vocab_size(const tokenizer *tok);
/* Ordinary (mergeable) tokens: ids 0 .. n-1. */
size_t tokenizer_n_ordinary(const tokenizer *tok);
/* The id of a special token by name, or -1. */
int64_t tokenizer_special_id(const tokenizer *tok, const char *name);
tokenizer_kind tokenizer_get_kind(const tokenizer *tok);
/* SHA-256 of the vocabulary file, 64 hex characters: shards record it. */
const char *tokenizer_sha256(const tokenizer *tok);

/* The pre-tokeniser alone (bpe_train uses it): calls fn for each piece of
 * text, in order; the pieces tile the text exactly. fn returns 0 to go on,
 * -1 to stop (tokenizer_split then returns -1, fn fills err). */
typedef struct tokenizer_splitter tokenizer_splitter;
typedef int (*tokenizer_piece_fn)(void *ctx, const unsigned char *piece, size_t len);

int tokenizer_splitter_new(tokenizer_splitter **out, ps_error *err);
void tokenizer_splitter_free(tokenizer_splitter *s);
int tokenizer_split(const tokenizer_splitter *s, const void *text, size_t len, tokenizer_piece_fn fn, void *ctx,
                    ps_error *err);

#endif
