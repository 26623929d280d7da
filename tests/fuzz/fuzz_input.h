/* fuzz_input.h - what every fuzz target shares: the fuzzer's bytes as a file.
 *
 * presight's readers take paths (HDF5, libconfig and the tokenizer open files
 * themselves), so each input is written to an anonymous memory file and
 * handed over as /proc/self/fd/N: no disk traffic, no temp names to clean up. */
#ifndef PRESIGHT_FUZZ_INPUT_H
#define PRESIGHT_FUZZ_INPUT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct fuzz_file {
    int fd;
    char path[64];
} fuzz_file;

/* Returns 0, or -1 when the memory file cannot be made (the target then skips the input). */
static inline int fuzz_file_open(fuzz_file *f, const uint8_t *data, size_t size) {
    f->fd = memfd_create("fuzz-input", 0);
    if (f->fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(f->fd, data + done, size - done);
        if (n <= 0) {
            close(f->fd);
            return -1;
        }
        done += (size_t)n;
    }
    lseek(f->fd, 0, SEEK_SET);
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    return 0;
}

static inline void fuzz_file_close(fuzz_file *f) { close(f->fd); }

/* A finding the sanitizers cannot see (a broken round trip): report and stop. */
#define FUZZ_CHECK(cond, ...)                                                                                        \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            fprintf(stderr, "fuzz check failed: %s: ", #cond);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fputc('\n', stderr);                                                                                     \
            abort();                                                                                                 \
        }                                                                                                            \
    } while (0)

#endif
