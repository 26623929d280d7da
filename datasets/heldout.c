/* heldout.c - the held-out partition (see heldout.h). */
#include "heldout.h"

#include <stdint.h>
#include <string.h>

#include "sha256.h"

static const char SALT[] = "presight-heldout-v1:";
/* The namespaces whose documents the evaluation and instruction data are
 * made from; documents of other sources are never held out. */
static const char *const NAMESPACES[] = {"wn", "gcide", "country", "fact"};

int ps_heldout_bucket(const char *key, size_t len) {
    sha256_ctx c;
    unsigned char d[32];
    sha256_init(&c);
    sha256_update(&c, SALT, sizeof SALT - 1);
    sha256_update(&c, key, len);
    sha256_final(&c, d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | d[i];
    return (int)(v % 1000);
}

int ps_heldout_key(const char *key, size_t len) { return ps_heldout_bucket(key, len) < PS_HELDOUT_PERMILLE; }

int ps_heldout_document(const char *id, size_t len) {
    const char *colon = memchr(id, ':', len);
    if (!colon) return 0;
    size_t ns = (size_t)(colon - id);
    for (size_t i = 0; i < sizeof NAMESPACES / sizeof NAMESPACES[0]; i++)
        if (strlen(NAMESPACES[i]) == ns && !memcmp(id, NAMESPACES[i], ns)) return ps_heldout_key(id, len);
    return 0;
}
