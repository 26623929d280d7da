/* fuzz_predictions - an evaluation's predictions.jsonl (stages/eval_records.h),
 * as `presight eval rescore` and a resumed run read it: any bytes, one JSON
 * object a line. It is refused with a message naming the line, or read;
 * what was read writes back (eval_predictions_write_file), reads again to
 * the same records (ids, texts, lists and counts), and a torn tail is cut
 * by eval_predictions_trim_torn so that the file reads with nothing torn. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval_records.h"
#include "fuzz_input.h"

static char out_path[96];

static int same_text(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }
static int same_ids(const eval_ids *a, const eval_ids *b) {
    return a->n == b->n && (a->n == 0 || !memcmp(a->ids, b->ids, a->n * sizeof *a->ids));
}
static int same_texts(char *const *a, int na, char *const *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (!same_text(a[i], b[i])) return 0;
    return 1;
}

/* What the writer keeps of a record must read back unchanged. */
static void check_same(const eval_prediction *a, const eval_prediction *b, size_t i) {
    FUZZ_CHECK(same_text(a->task, b->task) && same_text(a->id, b->id) && same_text(a->kind, b->kind) &&
                   same_text(a->output, b->output) && same_text(a->image, b->image),
               "record %zu: a text changed in the round trip", i);
    FUZZ_CHECK(same_ids(&a->context, &b->context) && same_ids(&a->output_ids, &b->output_ids),
               "record %zu: token ids changed", i);
    FUZZ_CHECK(a->n_continuations == b->n_continuations, "record %zu: %d continuations, then %d", i,
               a->n_continuations, b->n_continuations);
    for (int k = 0; k < a->n_continuations; k++)
        FUZZ_CHECK(same_ids(&a->continuations[k], &b->continuations[k]), "record %zu: continuation %d changed", i, k);
    FUZZ_CHECK(same_texts(a->choices, a->n_choices, b->choices, b->n_choices) &&
                   same_texts(a->answers, a->n_answers, b->answers, b->n_answers),
               "record %zu: choices or answers changed", i);
    FUZZ_CHECK(a->n_loglikelihoods == b->n_loglikelihoods, "record %zu: log-likelihoods %d, then %d", i,
               a->n_loglikelihoods, b->n_loglikelihoods);
    FUZZ_CHECK(a->gold >= -1 && a->gold == b->gold, "record %zu: gold %d, then %d", i, a->gold, b->gold);
}

static void round_trip(const eval_prediction *p, size_t n) {
    ps_error err = {0};
    FUZZ_CHECK(eval_predictions_write_file(out_path, p, n, &err) == 0, "write back: %s", err.msg);
    eval_prediction *q = NULL;
    size_t m = 0, torn = 0;
    FUZZ_CHECK(eval_predictions_read(out_path, &q, &m, &torn, &err) == 0, "what was written does not read: %s",
               err.msg);
    FUZZ_CHECK(m == n && torn == 0, "%zu records written, %zu read (%zu torn)", n, m, torn);
    for (size_t i = 0; i < n; i++) check_same(&p[i], &q[i], i);
    eval_predictions_free(q, m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(out_path, sizeof out_path, "/dev/shm/presight-fuzz-predictions-%d.jsonl", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file in;
    if (fuzz_file_open(&in, data, size)) return 0;
    eval_prediction *p = NULL;
    size_t n = 0, torn = 0;
    ps_error err = {0};
    if (eval_predictions_read(in.path, &p, &n, &torn, &err) == 0) {
        FUZZ_CHECK(torn <= 1, "%zu torn lines", torn);
        round_trip(p, n);
        eval_predictions_free(p, n);
        /* A resumed run cuts the torn tail, then the file reads whole. */
        size_t cut = 0;
        FUZZ_CHECK(eval_predictions_trim_torn(in.path, &cut, &err) == 0, "trim: %s", err.msg);
        FUZZ_CHECK(cut <= size, "cut %zu of %zu bytes", cut, size);
        FUZZ_CHECK(eval_predictions_read(in.path, &p, &n, &torn, &err) == 0 && torn == 0,
                   "after the trim: %s (%zu torn)", err.msg, torn);
        eval_predictions_free(p, n);
    } else {
        FUZZ_CHECK(strstr(err.msg, "/proc/self/fd/") && strchr(err.msg, ':'), "the message names no line: %s",
                   err.msg);
    }
    unlink(out_path);
    fuzz_file_close(&in);
    return 0;
}
