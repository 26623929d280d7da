/* fuzz_config - a run config from anyone. The input is a libconfig file; its
 * lines after a first line "--overrides" become key=value overrides. Either
 * config_load refuses it with a message, or the resolved config it returns
 * writes out and loads again to the same values (config_diff finds nothing). */
#include <string.h>

#include "config.h"
#include "fuzz_input.h"

#define MAX_OVERRIDES 8

/* Splits the input at "\n--overrides\n"; fills overrides (pointers into a copy). */
static int split_overrides(char *text, char **overrides) {
    char *mark = strstr(text, "\n--overrides\n");
    if (!mark) return 0;
    *mark = '\0';
    int n = 0;
    for (char *line = strtok(mark + 13, "\n"); line && n < MAX_OVERRIDES; line = strtok(NULL, "\n")) overrides[n++] = line;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *overrides[MAX_OVERRIDES];
    int n = split_overrides(text, overrides);

    fuzz_file f;
    if (fuzz_file_open(&f, (const uint8_t *)text, strlen(text)) == 0) {
        static run_config cfg, again; /* large: keep them off the stack */
        ps_error err = {0};
        if (config_load(&cfg, f.path, n, overrides, &err) == 0) {
            char *out = NULL;
            size_t out_size = 0;
            FILE *mem = open_memstream(&out, &out_size);
            FUZZ_CHECK(mem && run_config_write(&cfg, mem, &err) == 0, "write: %s", err.msg);
            fclose(mem);
            fuzz_file back;
            FUZZ_CHECK(fuzz_file_open(&back, (const uint8_t *)out, out_size) == 0, "memfd");
            FUZZ_CHECK(config_load(&again, back.path, 0, NULL, &err) == 0, "resolved config does not load: %s", err.msg);
            char diff[512];
            static const char *const ignore[] = {NULL};
            FUZZ_CHECK(config_diff(&cfg, &again, ignore, diff, sizeof diff) == 0, "round trip differs: %s", diff);
            fuzz_file_close(&back);
            free(out);
        } else {
            FUZZ_CHECK(err.msg[0] != '\0', "refused without a message");
        }
        fuzz_file_close(&f);
    }
    free(text);
    return 0;
}
