/* test_eval_records.c - predictions.jsonl and results.jsonl round trips: every
 * log-likelihood comes back bit for bit, absent fields stay absent, NaN is written as
 * null, and the results file appears only when whole. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "eval_records.h"

static char *strdup_or_die(const char *s) {
    char *d = strdup(s);
    cr_assert(d);
    return d;
}

Test(records, prediction_round_trip_is_exact) {
    eval_prediction p;
    eval_prediction_init(&p);
    p.task = strdup_or_die("piqa");
    p.id = strdup_or_die("17");
    p.kind = strdup_or_die("multiple_choice");
    p.scorer = strdup_or_die("acc");
    p.line = 17;
    uint32_t ctx[] = {128000, 5, 4294967295u};
    p.context = (eval_ids){ctx, 3};
    double ll[] = {-1.2345678901234567, -1e-300, -3.0000000000000004};
    int greedy[] = {1, 0, 0};
    p.loglikelihoods = ll, p.greedy = greedy, p.n_loglikelihoods = 3;
    char path[] = "/tmp/presight-test-records-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    ps_error err;
    cr_assert_eq(eval_prediction_write(f, &p, &err), 0);
    fclose(f);
    eval_prediction *back;
    size_t n, torn;
    cr_assert_eq(eval_predictions_read(path, &back, &n, &torn, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(back[0].task, "piqa");
    cr_expect_eq(back[0].line, 17);
    cr_assert_eq(back[0].context.n, 3);
    cr_expect_eq(back[0].context.ids[2], 4294967295u);
    cr_assert_eq(back[0].n_loglikelihoods, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect(back[0].loglikelihoods[i] == ll[i], "ll %d: %.17g came back as %.17g", i, ll[i], back[0].loglikelihoods[i]);
        cr_expect_eq(back[0].greedy[i], greedy[i]);
    }
    cr_expect(back[0].output == NULL && back[0].gold == -1 && isnan(back[0].correct) && back[0].words == -1,
              "absent fields stay absent");
    eval_predictions_free(back, n);
    free(p.task), free(p.id), free(p.kind), free(p.scorer); /* the rest of p lives on the stack */
    unlink(path);
}

/* A prediction of an adapted model: the picture's splice and image_input survive; a
 * language-only one's image_input false stays false (not absent). */
Test(records, picture_fields_round_trip) {
    eval_prediction p[2];
    for (int k = 0; k < 2; k++) {
        eval_prediction_init(&p[k]);
        p[k].task = "images-vqa-mc", p[k].id = k ? "b" : "a", p[k].kind = "vqa", p[k].scorer = "choice";
    }
    p[0].image_at = 7, p[0].visual_tokens = 576, p[0].prov.image_input = 1;
    snprintf(p[0].prov.encoder, sizeof p[0].prov.encoder, "siglip");
    p[1].prov.image_input = 0;
    char path[] = "/tmp/presight-test-records-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    ps_error err;
    for (int k = 0; k < 2; k++) cr_assert_eq(eval_prediction_write(f, &p[k], &err), 0);
    fclose(f);
    eval_prediction *back;
    size_t n;
    cr_assert_eq(eval_predictions_read(path, &back, &n, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect(back[0].image_at == 7 && back[0].visual_tokens == 576 && back[0].prov.image_input == 1);
    cr_expect_str_eq(back[0].prov.encoder, "siglip");
    cr_expect(back[1].image_at == -1 && back[1].visual_tokens == 0 && back[1].prov.image_input == 0);
    eval_predictions_free(back, n);
    unlink(path);
}

Test(records, results_written_whole_with_nulls) {
    eval_result r[2];
    memset(r, 0, sizeof r);
    snprintf(r[0].task, sizeof r[0].task, "mme");
    snprintf(r[0].metric, sizeof r[0].metric, "score");
    r[0].value = 125, r[0].stderr_ = NAN, r[0].n = 4;
    r[0].prov.seed = 42;
    snprintf(r[1].task, sizeof r[1].task, "piqa");
    snprintf(r[1].metric, sizeof r[1].metric, "acc");
    r[1].value = 0.625, r[1].stderr_ = 0.01, r[1].n = 1838, r[1].prov.seed = -1;
    const char *path = "/tmp/presight-test-results.jsonl";
    ps_error err;
    cr_assert_eq(eval_results_write_file(path, r, 2, &err), 0, "%s", err.msg);
    cr_expect(access("/tmp/presight-test-results.jsonl.tmp", F_OK) != 0, "no .tmp left");
    FILE *f = fopen(path, "r");
    char line[1024];
    cr_assert(fgets(line, sizeof line, f));
    cr_expect(strstr(line, "\"stderr\":null"), "%s", line);
    cr_expect(strstr(line, "\"seed\":42"), "%s", line);
    fclose(f);
    eval_result *back;
    size_t n;
    cr_assert_eq(eval_results_read(path, &back, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect(isnan(back[0].stderr_) && back[0].value == 125 && back[0].prov.seed == 42);
    cr_expect(back[1].value == 0.625 && back[1].n == 1838 && back[1].prov.seed == -1);
    free(back);
    /* a results file in a folder that does not exist fails and leaves nothing */
    cr_expect_eq(eval_results_write_file("/nonexistent/results.jsonl", r, 2, &err), -1);
    unlink(path);
}

Test(records, bad_lines_name_path_line_and_key) {
    const char *path = "/tmp/presight-test-bad-predictions.jsonl";
    FILE *f = fopen(path, "w");
    fputs("{\"task\": \"t\", \"id\": \"1\"}\n\n{\"task\": \"t\", \"id\": \"2\", \"loglikelihoods\": [\"x\"]}\n", f);
    fclose(f);
    eval_prediction *p;
    size_t n, torn;
    ps_error err;
    cr_assert_eq(eval_predictions_read(path, &p, &n, &torn, &err), -1);
    cr_expect(strstr(err.msg, ":3: key 'loglikelihoods'"), "%s", err.msg);
    f = fopen(path, "w");
    fputs("{\"task\": \"t\"}\n", f);
    fclose(f);
    cr_assert_eq(eval_predictions_read(path, &p, &n, &torn, &err), -1);
    cr_expect(strstr(err.msg, ":1: key 'id': missing"), "%s", err.msg);
    unlink(path);
}

/* A gold index past int used to wrap into a valid-looking one (4294967297 -> 1), and one
 * below -1 to change on the way back (written as absent); both are refused by name. */
Test(records, a_gold_index_out_of_range_is_refused) {
    const char *path = "/tmp/presight-test-gold-predictions.jsonl";
    const char *lines[] = {"{\"task\": \"t\", \"id\": \"1\", \"choices\": [\"a\", \"b\"], \"gold\": 4294967297}\n",
                           "{\"task\": \"t\", \"id\": \"1\", \"gold\": -7}\n"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(path, "w");
        fputs(lines[i], f);
        fclose(f);
        eval_prediction *p;
        size_t n, torn;
        ps_error err;
        cr_assert_eq(eval_predictions_read(path, &p, &n, &torn, &err), -1, "%s was read", lines[i]);
        cr_expect(strstr(err.msg, ":1: key 'gold'"), "%s", err.msg);
    }
    unlink(path);
}

Test(records, a_torn_tail_is_trimmed_before_appending) {
    const char *path = "/tmp/presight-test-torn-predictions.jsonl";
    FILE *f = fopen(path, "w");
    fputs("{\"task\": \"t\", \"id\": \"1\"}\n{\"task\": \"t\", \"id\": \"2\"}\n{\"task\": \"t\", \"i", f);
    fclose(f);
    eval_prediction *p;
    size_t n, torn, cut;
    ps_error err;
    cr_assert_eq(eval_predictions_read(path, &p, &n, &torn, &err), 0, "%s", err.msg);
    cr_expect(n == 2 && torn == 1, "%zu items, %zu torn", n, torn);
    eval_predictions_free(p, n);
    cr_assert_eq(eval_predictions_trim_torn(path, &cut, &err), 0, "%s", err.msg);
    cr_expect_eq(cut, strlen("{\"task\": \"t\", \"i"));
    /* a resumed run appends item 3 on a line of its own */
    eval_prediction q;
    eval_prediction_init(&q);
    char task[] = "t", id[] = "3";
    q.task = task, q.id = id;
    f = fopen(path, "a");
    cr_assert_eq(eval_prediction_write(f, &q, &err), 0);
    fclose(f);
    cr_assert_eq(eval_predictions_read(path, &p, &n, &torn, &err), 0, "%s", err.msg);
    cr_expect(n == 3 && torn == 0 && !strcmp(p[2].id, "3"));
    eval_predictions_free(p, n);
    cr_assert_eq(eval_predictions_trim_torn(path, &cut, &err), 0);
    cr_expect_eq(cut, 0, "a whole file loses nothing");
    cr_assert_eq(eval_predictions_trim_torn("/tmp/presight-no-such-file.jsonl", &cut, &err), 0);
    unlink(path);
}
