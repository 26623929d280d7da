/* fuzz_tokenizer_file - a .tiktoken vocabulary file from anyone: tokenizer_load
 * either refuses it with a message or returns a tokenizer that encodes and
 * decodes a fixed text back to itself. */
#include <string.h>

#include "fuzz_input.h"
#include "tokenizer.h"

/* tests/t_fuzz.sh plants a leak in our own code to show that the suppressions
 * (tests/fuzz/lsan.supp, third-party libraries only) still let it be caught. */
void *fuzz_planted; /* global, so the compiler cannot drop the malloc */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (getenv("PRESIGHT_FUZZ_PLANTED_LEAK")) {
        fuzz_planted = malloc(48); /* the previous input's block is now unreachable */
    }
    fuzz_file f;
    if (fuzz_file_open(&f, data, size)) return 0;
    tokenizer *tok = NULL;
    ps_error err = {0};
    if (tokenizer_load(&tok, f.path, TOKENIZER_PLAIN, &err) == 0) {
        static const char text[] = "The flag of Peru, 1984 \xff\xfe caf\xc3\xa9  \n\n\tx";
        tokenizer_ids ids = {0};
        tokenizer_bytes back = {0};
        FUZZ_CHECK(tokenizer_encode(tok, text, sizeof text - 1, 0, &ids, &err) == 0, "encode: %s", err.msg);
        FUZZ_CHECK(tokenizer_decode(tok, ids.ids, ids.n, &back, &err) == 0, "decode: %s", err.msg);
        FUZZ_CHECK(back.n == sizeof text - 1 && memcmp(back.bytes, text, back.n) == 0, "round trip");
        tokenizer_ids_free(&ids);
        tokenizer_bytes_free(&back);
        tokenizer_free(tok);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "refused without a message");
    }
    fuzz_file_close(&f);
    return 0;
}
