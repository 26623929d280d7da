/* features_tokens.c - writes row ROW of a features file, resized to TOKENS
 * visual tokens as presight reads it (features_read_tokens), as raw float32.
 * usage: features_tokens FEATURES.h5 ROW TOKENS OUT.f32 */
#include <stdio.h>
#include <stdlib.h>

#include "feature_file.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: features_tokens FEATURES.h5 ROW TOKENS OUT.f32\n");
        return 2;
    }
    ps_error err = {{0}};
    features_file *f;
    if (features_open(&f, argv[1], NULL, 0, &err)) {
        fprintf(stderr, "features_tokens: %s\n", err.msg);
        return 1;
    }
    int tokens = atoi(argv[3]), width = features_meta_of(f)->width;
    float *out = malloc(sizeof(float) * tokens * width);
    if (features_read_tokens(f, atoi(argv[2]), tokens, out, &err)) {
        fprintf(stderr, "features_tokens: %s\n", err.msg);
        return 1;
    }
    FILE *o = fopen(argv[4], "wb");
    fwrite(out, sizeof(float), (size_t)tokens * width, o);
    fclose(o);
    features_free(f);
    free(out);
    return 0;
}
