/* text.c - the byte-level reader of one UTF-8 text file.
 *
 * Token ids are the file's bytes (0..255) plus TEXT_SPECIALS special ids after
 * them. Sequence i is a window of seq_len + 1 bytes at an offset drawn by the
 * counter-based RNG from (seed, i): random access, no state, and the same
 * sequence for the same index however the run is cut into ranks or resumed.
 * It stands in until the tokenized shards and the mixture sampler arrive. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "rng.h"
#include "text_dataset.h"

typedef struct text_impl {
    const unsigned char *bytes;
    size_t size;
    uint64_t key;
} text_impl;

static int text_read(dataset *ds, uint64_t first_index, int count, int seq_len, int *tokens, ps_error *err) {
    text_impl *t = ds->impl;
    size_t window = (size_t)seq_len + 1;
    if (t->size < window)
        return ps_fail(err, "%s: the text has %zu bytes, fewer than one sequence of %zu", ds->description, t->size,
                       window);
    for (int i = 0; i < count; i++) {
        size_t offset = rng_below(t->key, first_index + (uint64_t)i, t->size - window + 1);
        int *out = tokens + (size_t)i * window;
        for (size_t j = 0; j < window; j++) out[j] = t->bytes[offset + j];
    }
    return 0;
}

static void text_close(dataset *ds) {
    text_impl *t = ds->impl;
    if (t && t->bytes) munmap((void *)t->bytes, t->size);
    free(t);
    free(ds);
}

static const dataset_ops text_ops = {text_read, text_close};

int text_dataset_open(dataset **out, const char *path, uint64_t seed, ps_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ps_fail(err, "data.path '%s': cannot open the text file", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        close(fd);
        return ps_fail(err, "data.path '%s': the file is empty or unreadable", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    dataset *ds = calloc(1, sizeof *ds);
    text_impl *t = calloc(1, sizeof *t);
    if (map == MAP_FAILED || !ds || !t) {
        if (map != MAP_FAILED) munmap(map, (size_t)st.st_size);
        free(ds);
        free(t);
        return ps_fail(err, "data.path '%s': cannot map the file", path);
    }
    t->bytes = map;
    t->size = (size_t)st.st_size;
    t->key = rng_key(seed, "data.text");
    ds->ops = &text_ops;
    ds->impl = t;
    ds->vocab_size = 256 + TEXT_SPECIALS;
    snprintf(ds->description, sizeof ds->description, "%s (%zu bytes, byte-level)", path, t->size);
    *out = ds;
    return 0;
}
