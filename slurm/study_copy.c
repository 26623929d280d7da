/* study_copy.c - `presight study collect` copies what each run's stages wrote for the
 * report (results.jsonl, predictions.jsonl, metrics.jsonl) into STUDY/collected/<id>/<stage>/,
 * so that `presight report STUDY` can be rebuilt anywhere from the study dir alone. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "study.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "study_internal.h"

static const char *const copied_files[] = {"results.jsonl", "predictions.jsonl", "metrics.jsonl"};

/* from -> to through to.tmp; the copy appears whole or not at all. */
static int copy_file(const char *from, const char *to, ps_error *err) {
    char tmp[PATH_MAX + 80], buf[1 << 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *in = fopen(from, "rb");
    if (!in) return ps_fail(err, "%s: %s", from, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return ps_fail(err, "%s: %s", tmp, strerror(errno));
    }
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = ps_fail(err, "%s: %s", tmp, strerror(errno));
    if (!rc && ferror(in)) rc = ps_fail(err, "%s: read error", from);
    fclose(in);
    if (fclose(out) && !rc) rc = ps_fail(err, "%s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, to)) rc = ps_fail(err, "%s: %s", to, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

int study_collect_files(const study *s, int *n_copied, ps_error *err) {
    *n_copied = 0;
    for (int i = 0; i < s->n_runs; i++)
        for (int k = 0; k < s->n_stages; k++)
            for (size_t f = 0; f < sizeof copied_files / sizeof copied_files[0]; f++) {
                char from[PATH_MAX], dir[PATH_MAX], to[PATH_MAX + 32];
                snprintf(from, sizeof from, "%s/%s/%s", s->runs[i].dir, s->stages[k].name, copied_files[f]);
                if (access(from, R_OK) != 0) continue;
                study_path(s, dir, sizeof dir, "collected/%s/%s", s->runs[i].id, s->stages[k].name);
                snprintf(to, sizeof to, "%s/%s", dir, copied_files[f]);
                if (study_mkdirs(dir, err) || copy_file(from, to, err)) return -1;
                ++*n_copied;
            }
    return 0;
}
