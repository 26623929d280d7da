#include "error.h"

#include <stdio.h>
#include <string.h>

int ps_fail(ps_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int ps_wrap(ps_error *err, const char *fmt, ...) {
    if (err) {
        char prefix[1024], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* Truncation is fine here: the front of the message matters most. */
        size_t at = strlen(prefix);
        memcpy(err->msg, prefix, at);
        size_t room = sizeof err->msg - at - 1;
        size_t rest = strlen(old) + 2 < room ? strlen(old) + 2 : room;
        memcpy(err->msg + at, ": ", rest < 2 ? rest : 2);
        if (rest > 2) memcpy(err->msg + at + 2, old, rest - 2);
        err->msg[at + rest] = 0;
    }
    return -1;
}
