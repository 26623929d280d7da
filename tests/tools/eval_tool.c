/* eval_tool - drives stages/eval_answer.c and eval_requests.c for
 * tests/t_eval_reference.sh, which compares them with transcriptions of the published
 * Python (lm-evaluation-harness, EvalAI/pythia, ChartQA, lmms-eval's MME).
 *
 *   eval_tool MODE < cases.jsonl > answers.jsonl
 * One JSON value per input line, one per output line:
 *   evalai  "text"                  -> "normalised"
 *   relaxed ["prediction", "target"] -> 0 | 1
 *   yesno   "text"                  -> 1 | 0 | -1
 *   words   "text"                  -> len(re.split(r"\s+", text))
 *   rstrip  "text"                  -> bytes of text.rstrip()
 *   chars   "text"                  -> len(text)
 *   rolling [n, max_len, context_len] -> [[prefix, ctx_begin, cont_begin, cont_end], ...]
 *   mc      [[ll...], ["text"...], gold] -> [pred, pred_norm, acc, acc_norm]
 *   parse   ["output", ["choice"...], tiers] -> [choice, tier]
 *   filter  ["name", "text"]        -> the task-template filter's output (datasets/tasks.h) */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_answer.h"
#include "eval_requests.h"
#include "tasks.h"

static json_object *answer(const char *mode, json_object *in) {
    const char *s = json_object_get_type(in) == json_type_string ? json_object_get_string(in) : NULL;
    if (!strcmp(mode, "evalai")) {
        size_t size = strlen(s) * 2 + 16;
        char *out = malloc(size);
        eval_evalai_normalize(s, out, size);
        json_object *r = json_object_new_string(out);
        free(out);
        return r;
    }
    if (!strcmp(mode, "relaxed"))
        return json_object_new_int(eval_relaxed_match(json_object_get_string(json_object_array_get_idx(in, 0)),
                                                      json_object_get_string(json_object_array_get_idx(in, 1)), 0.05));
    if (!strcmp(mode, "yesno")) return json_object_new_int(eval_parse_yes_no(s));
    if (!strcmp(mode, "words")) return json_object_new_int64((int64_t)eval_word_count(s));
    if (!strcmp(mode, "rstrip")) return json_object_new_int64((int64_t)eval_rstrip_len(s, strlen(s)));
    if (!strcmp(mode, "chars")) return json_object_new_int64((int64_t)eval_char_count(s));
    if (!strcmp(mode, "rolling")) {
        eval_window *w;
        size_t n;
        ps_error err;
        if (eval_rolling_windows((size_t)json_object_get_int64(json_object_array_get_idx(in, 0)),
                                 (size_t)json_object_get_int64(json_object_array_get_idx(in, 1)),
                                 (size_t)json_object_get_int64(json_object_array_get_idx(in, 2)), &w, &n, &err))
            return json_object_new_string(err.msg);
        json_object *r = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
            json_object *x = json_object_new_array();
            json_object_array_add(x, json_object_new_int(w[i].prefix));
            json_object_array_add(x, json_object_new_int64((int64_t)w[i].ctx_begin));
            json_object_array_add(x, json_object_new_int64((int64_t)w[i].cont_begin));
            json_object_array_add(x, json_object_new_int64((int64_t)w[i].cont_end));
            json_object_array_add(r, x);
        }
        free(w);
        return r;
    }
    if (!strcmp(mode, "mc")) {
        json_object *lls = json_object_array_get_idx(in, 0), *texts = json_object_array_get_idx(in, 1);
        int n = (int)json_object_array_length(lls);
        double *ll = malloc(sizeof *ll * n);
        const char **t = malloc(sizeof *t * n);
        for (int i = 0; i < n; i++) {
            ll[i] = json_object_get_double(json_object_array_get_idx(lls, i));
            t[i] = json_object_get_string(json_object_array_get_idx(texts, i));
        }
        eval_mc_result m = eval_mc_score(ll, t, n, json_object_get_int(json_object_array_get_idx(in, 2)));
        free(ll), free(t);
        json_object *r = json_object_new_array();
        json_object_array_add(r, json_object_new_int(m.pred));
        json_object_array_add(r, json_object_new_int(m.pred_norm));
        json_object_array_add(r, json_object_new_int(m.acc));
        json_object_array_add(r, json_object_new_int(m.acc_norm));
        return r;
    }
    if (!strcmp(mode, "parse")) {
        json_object *choices = json_object_array_get_idx(in, 1);
        int n = (int)json_object_array_length(choices);
        const char **c = malloc(sizeof *c * (n ? n : 1));
        for (int i = 0; i < n; i++) c[i] = json_object_get_string(json_object_array_get_idx(choices, i));
        eval_parsed p = eval_parse_choice(json_object_get_string(json_object_array_get_idx(in, 0)), c, n,
                                          (unsigned)json_object_get_int(json_object_array_get_idx(in, 2)));
        free(c);
        json_object *r = json_object_new_array();
        json_object_array_add(r, json_object_new_int(p.choice));
        json_object_array_add(r, json_object_new_int(p.tier));
        return r;
    }
    if (!strcmp(mode, "filter")) {
        char *out;
        ps_error err;
        if (task_filter_apply(json_object_get_string(json_object_array_get_idx(in, 0)),
                              json_object_get_string(json_object_array_get_idx(in, 1)), &out, &err))
            return json_object_new_string(err.msg);
        json_object *r = json_object_new_string(out);
        free(out);
        return r;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: eval_tool MODE < cases.jsonl\n");
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        json_object *in = json_tokener_parse(line);
        json_object *out = in ? answer(argv[1], in) : NULL;
        if (!out) {
            fprintf(stderr, "eval_tool: bad mode or input line: %s", line);
            return 1;
        }
        printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(out);
        json_object_put(in);
    }
    free(line);
    return 0;
}
