/* fuzz_shard - a token shard from anyone (datasets/shards.h), structure-aware
 * (fuzz_h5.h): /tokens and /doc_offsets present or not, of any integer or
 * float type and rank, any lengths and values; every attribute absent, of
 * another type or with any value. shard_file_open accepts or refuses with a
 * message; on a shard it accepted, every read either fails with a message or
 * returns ids below the shard's vocab_size (an id past it would index past
 * the model's embedding table). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_h5.h"
#include "fuzz_input.h"
#include "shards.h"

static void write_shard(hid_t file, fuzz_bytes *b) {
    uint64_t n_tokens = fuzz_count(b, 512), n_docs = fuzz_count(b, 16);
    fuzz_number_attr(file, "format_version", H5T_STD_I32LE, SHARD_FORMAT_VERSION, b);
    fuzz_string_attr(file, "source", "fuzz", b);
    fuzz_string_attr(file, "tokenizer_sha256", "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55", b);
    fuzz_string_attr(file, "tokenizer_kind", "llama3", b);
    fuzz_number_attr(file, "vocab_size", H5T_STD_U32LE, 128256, b);
    fuzz_number_attr(file, "eot_id", H5T_STD_U32LE, 128001, b);
    fuzz_number_attr(file, "documents", H5T_STD_U64LE, n_docs, b);
    fuzz_number_attr(file, "tokens", H5T_STD_U64LE, n_tokens, b);
    if (fuzz_u8(b) >= 8) fuzz_dataset(file, "tokens", fuzz_type(b, H5T_STD_U32LE), n_tokens, b);
    if (fuzz_u8(b) >= 8) fuzz_dataset(file, "doc_offsets", fuzz_type(b, H5T_STD_U64LE), n_docs + 1, b);
}

static void read_back(shard_file *f, fuzz_bytes *b) {
    uint64_t n = shard_file_tokens(f), docs = shard_file_documents(f);
    uint32_t vocab = shard_file_meta(f)->vocab_size;
    for (int k = 0; k < 4; k++) {
        uint64_t start = fuzz_count(b, n), len = fuzz_count(b, n > start ? n - start : 1);
        if (len > (1u << 16)) len = 1u << 16;
        uint32_t *ids = malloc((len ? len : 1) * sizeof *ids);
        ps_error err = {0};
        if (ids && shard_file_read(f, start, len, ids, &err) == 0) {
            for (uint64_t i = 0; i < len; i++) FUZZ_CHECK(ids[i] < vocab, "id %u >= vocab %u returned", ids[i], vocab);
        } else if (ids) {
            FUZZ_CHECK(err.msg[0], "read refused without a message");
        }
        free(ids);
        uint64_t first = fuzz_count(b, docs + 1), count = fuzz_count(b, 4);
        if (count > (1u << 16)) count = 1u << 16;
        uint64_t *off = malloc((count ? count : 1) * sizeof *off);
        ps_error oerr = {0};
        if (off && shard_file_read_offsets(f, first, count, off, &oerr) != 0)
            FUZZ_CHECK(oerr.msg[0], "offsets refused without a message");
        free(off);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    char path[64];
    hid_t file = fuzz_h5_create(path, sizeof path);
    if (file < 0) return 0;
    write_shard(file, &b);
    H5Fclose(file);
    shard_file *f = NULL;
    ps_error err = {0};
    if (shard_file_open(&f, path, &err) == 0) {
        read_back(f, &b);
        shard_file_close(f);
    } else {
        FUZZ_CHECK(err.msg[0], "refused without a message");
    }
    unlink(path);
    return 0;
}
