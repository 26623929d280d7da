/* error.h - errors carried to the edge.
 *
 * Library functions return 0 on success and -1 on failure, filling a
 * ps_error with a message that names the file, line, key or tensor at fault.
 * Only main() prints and decides the exit code. */
#ifndef PRESIGHT_ERROR_H
#define PRESIGHT_ERROR_H

#include <stdarg.h>

typedef struct ps_error {
    char msg[2048];
} ps_error;

/* Formats msg into err (err may be NULL) and returns -1, so that callers can
 * write `return ps_fail(err, "...", ...);`. */
int ps_fail(ps_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes err->msg with more context ("loading x.h5: " + old message). */
int ps_wrap(ps_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
