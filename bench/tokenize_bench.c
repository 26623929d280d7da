/* tokenize_bench.c - encode throughput of the C tokenizer, one thread.
 *
 * usage: tokenize_bench <vocab dir> <text file> [runs]
 *
 * Encodes the whole file in one call per run, like bench_encoders.js does
 * for the JS encoders, and prints cold (first) and warm (best later) MB/s
 * (of CPU time) with the token count, for llama3.tiktoken and cl100k_base.tiktoken. Then
 * the same text cut into 4 KiB documents, the shard builder's call pattern. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

/* CPU time of this thread: on a shared machine, wall time measures the
 * neighbours; the JS side uses process.cpuUsage() alike. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int read_all(const char *path, char **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)size + 1);
    *n = fread(*buf, 1, (size_t)size, f);
    fclose(f);
    return *n == (size_t)size ? 0 : -1;
}

/* One run: the whole text, or documents of doc bytes; returns seconds. */
static double run(const tokenizer *t, const char *text, size_t n, size_t doc, size_t *count) {
    tokenizer_ids ids = {0};
    ps_error err;
    double start = now();
    for (size_t at = 0; at < n; at += doc) {
        size_t len = n - at < doc ? n - at : doc;
        if (tokenizer_encode(t, text + at, len, 0, &ids, &err) != 0) {
            fprintf(stderr, "tokenize_bench: %s\n", err.msg);
            exit(1);
        }
    }
    double secs = now() - start;
    *count = ids.n;
    tokenizer_ids_free(&ids);
    return secs;
}

static void bench(const tokenizer *t, const char *name, const char *text, size_t n, size_t doc, int runs) {
    double cold = 0, best = 1e30, mb = (double)n / 1e6;
    size_t count = 0;
    for (int i = 0; i <= runs; i++) {
        double s = run(t, text, n, doc, &count);
        if (i == 0) cold = s;
        else if (s < best) best = s;
    }
    char label[64];
    snprintf(label, sizeof label, "%s%s", name, doc < n ? " (4 KiB docs)" : "");
    printf("%-34s cold %7.2f MB/s   warm %7.2f MB/s   %zu tokens\n", label, mb / cold, mb / best, count);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s <vocab dir> <text file> [runs]\n", argv[0]);
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    char *text;
    size_t n;
    if (read_all(argv[2], &text, &n) != 0) {
        fprintf(stderr, "tokenize_bench: cannot read %s\n", argv[2]);
        return 1;
    }
    printf("C encoder on %s (%.2f MB), single thread\n", argv[2], (double)n / 1e6);
    static const struct {
        const char *file, *name;
        tokenizer_kind kind;
    } vocabs[] = {{"cl100k_base.tiktoken", "presight C cl100k", TOKENIZER_CL100K},
                  {"llama3.tiktoken", "presight C llama3", TOKENIZER_LLAMA3}};
    for (size_t v = 0; v < 2; v++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], vocabs[v].file);
        tokenizer *t;
        ps_error err;
        double start = now();
        if (tokenizer_load(&t, path, vocabs[v].kind, &err) != 0) {
            fprintf(stderr, "tokenize_bench: %s\n", err.msg);
            return 1;
        }
        printf("%-34s load %.0f ms\n", vocabs[v].name, 1e3 * (now() - start));
        bench(t, vocabs[v].name, text, n, n, runs);
        bench(t, vocabs[v].name, text, n, 4096, runs);
        tokenizer_free(t);
    }
    free(text);
    return 0;
}
