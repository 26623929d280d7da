/* sha256.h - SHA-256 (FIPS 180-4), so that a tokenizer or a shard can name
 * the exact bytes it came from without a crypto library. */
#ifndef PRESIGHT_SHA256_H
#define PRESIGHT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t total; /* bytes fed so far */
    unsigned char block[64];
    size_t used; /* bytes waiting in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, unsigned char digest[32]);

/* One call: digest of data as 64 lowercase hex characters plus a NUL. */
void sha256_hex(const void *data, size_t len, char hex[65]);
/* The SHA-256 of a file's bytes, 64 hex digits: 0, or -1 naming the file. */
int sha256_file(const char *path, char hex[65], ps_error *err);

#endif
