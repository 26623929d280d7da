/* strbuf.h - a growable NUL-terminated byte string, the one such helper (tasks' templates,
 * the answer normalisers). Start zeroed ({0}); every call keeps s NUL-terminated. */
#ifndef PRESIGHT_STRBUF_H
#define PRESIGHT_STRBUF_H

#include <stdlib.h>
#include <string.h>

typedef struct strbuf {
    char *s;
    size_t n, cap;
} strbuf;

/* Appends n bytes; 0, or -1 when out of memory (b unchanged). */
static inline int strbuf_put(strbuf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *grown = (char *)realloc(b->s, cap);
        if (!grown) return -1;
        b->s = grown, b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

static inline int strbuf_str(strbuf *b, const char *s) { return strbuf_put(b, s, strlen(s)); }

/* The string (an empty one if nothing was put; NULL when out of memory); b is reset. */
static inline char *strbuf_take(strbuf *b) {
    if (!b->s && strbuf_put(b, "", 0)) return NULL;
    char *s = b->s;
    memset(b, 0, sizeof *b);
    return s;
}

#endif
