/* test_util.h - what several Criterion test files need alike. */
#ifndef PRESIGHT_TEST_UTIL_H
#define PRESIGHT_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tests read fixtures by paths relative to the repository root. When a test
 * binary is started from elsewhere, walk up from the binary (build/tests/)
 * until a folder holds `probe` (a fixture path), and change into it. */
static inline void test_chdir_to_repo_root(const char *probe) {
    if (access(probe, R_OK) == 0) return;
    char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) return;
    dir[n] = 0;
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) return;
        *slash = 0;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, probe);
        if (access(path, R_OK) == 0 && chdir(dir) == 0) return;
    }
}

/* make check's fast tier and the sanitizer runs (PRESIGHT_TEST_TIER=fast, set by
 * tests/run.sh --fast and tests/t_sanitizers.sh): a test may run a smaller case of the same
 * code there (fewer pictures, a shorter sequence); make test runs every test whole. */
static inline int test_fast_tier(void) {
    const char *t = getenv("PRESIGHT_TEST_TIER");
    return t && !strcmp(t, "fast");
}

#endif
