/* mknn_tool - drives core/mknn.c for tests/t_mknn.sh (the numpy reference).
 *
 *   mknn_tool N K Q HOW A.f32 LA DA B.f32 LB DB PREP_A.f32
 *       Reads A[N][LA][DA] and B[N][LB][DB] (little-endian float32), prepares
 *       both (HOW = mean | exact), writes the prepared A to PREP_A.f32 and
 *       prints "score LAYER_A LAYER_B" then the LA*LB pair scores, one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mknn.h"

static float *read_floats(const char *path, size_t count) {
    FILE *f = fopen(path, "rb");
    float *x = malloc(sizeof *x * count);
    if (!f || !x || fread(x, sizeof *x, count, f) != count) {
        fprintf(stderr, "mknn_tool: cannot read %zu floats from %s\n", count, path);
        exit(1);
    }
    fclose(f);
    return x;
}

int main(int argc, char **argv) {
    if (argc != 12) {
        fprintf(stderr, "usage: mknn_tool N K Q HOW A.f32 LA DA B.f32 LB DB PREP_A.f32\n");
        return 2;
    }
    size_t n = strtoull(argv[1], NULL, 10);
    int k = atoi(argv[2]), la = atoi(argv[6]), da = atoi(argv[7]), lb = atoi(argv[9]), db = atoi(argv[10]);
    double q = atof(argv[3]);
    mknn_quantile how = strcmp(argv[4], "exact") ? MKNN_QUANTILE_MEAN : MKNN_QUANTILE_EXACT;
    float *a = read_floats(argv[5], n * la * da), *b = read_floats(argv[8], n * lb * db);
    ps_error err;
    mknn_result r;
    if (mknn_prepare(a, n, la, da, q, how, &err) || mknn_prepare(b, n, lb, db, q, how, &err) ||
        mknn_align(a, la, da, b, lb, db, n, k, &r, &err)) {
        fprintf(stderr, "mknn_tool: %s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(argv[11], "wb");
    if (!f || fwrite(a, sizeof *a, n * la * da, f) != n * la * da || fclose(f)) return 1;
    printf("%.17g %d %d\n", r.score, r.layer_a, r.layer_b);
    for (int i = 0; i < la * lb; i++) printf("%.17g%c", r.pairs[i], i + 1 < la * lb ? ' ' : '\n');
    mknn_result_free(&r);
    free(a), free(b);
    return 0;
}
