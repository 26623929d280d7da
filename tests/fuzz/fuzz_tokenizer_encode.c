/* fuzz_tokenizer_encode - any bytes encode with the real Llama 3 vocabulary and
 * decode back to themselves (the tokenizer's promise, tokenizer.h), with and
 * without special tokens allowed. The vocabulary comes from `make test-data`
 * (build/vocab/llama3.tiktoken) or PRESIGHT_FUZZ_VOCAB. */
#include <string.h>

#include "fuzz_input.h"
#include "tokenizer.h"

static tokenizer *vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("PRESIGHT_FUZZ_VOCAB");
    if (!path) path = "build/vocab/llama3.tiktoken";
    ps_error err = {0};
    if (tokenizer_load(&vocab, path, TOKENIZER_LLAMA3, &err)) {
        fprintf(stderr, "fuzz_tokenizer_encode: %s (run `make test-data`)\n", err.msg);
        exit(1);
    }
    return 0;
}

static void round_trip(const uint8_t *data, size_t size, int allow_special) {
    tokenizer_ids ids = {0};
    tokenizer_bytes back = {0};
    ps_error err = {0};
    FUZZ_CHECK(tokenizer_encode(vocab, data, size, allow_special, &ids, &err) == 0, "encode: %s", err.msg);
    FUZZ_CHECK(tokenizer_decode(vocab, ids.ids, ids.n, &back, &err) == 0, "decode: %s", err.msg);
    FUZZ_CHECK(back.n == size && (size == 0 || memcmp(back.bytes, data, size) == 0), "decode(encode(x)) != x (%zu bytes)", size);
    tokenizer_ids_free(&ids);
    tokenizer_bytes_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    round_trip(data, size, 0);
    round_trip(data, size, 1);
    return 0;
}
