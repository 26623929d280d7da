/* eval_records.c - predictions.jsonl and results.jsonl (formats in eval_records.h). */
#include "eval_records.h"

#include <errno.h>
#include <json.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void eval_prediction_init(eval_prediction *p) {
    memset(p, 0, sizeof *p);
    p->gold = -1;
    p->area_share = NAN;
    p->loglikelihood = NAN;
    p->tokens = p->words = p->bytes = p->windows = -1;
    p->parsed = -1;
    p->correct = NAN;
    p->prov.seed = -1;
    p->prov.image_input = -1;
    p->image_at = -1;
}

static void free_strings(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

void eval_prediction_clear(eval_prediction *p) {
    free(p->task), free(p->category), free(p->kind), free(p->scorer), free(p->id);
    free(p->item_category), free(p->image), free(p->group);
    free(p->context.ids), free(p->output_ids.ids), free(p->output);
    for (int i = 0; i < p->n_continuations; i++) free(p->continuations[i].ids);
    for (int i = 0; i < p->n_request_contexts; i++) free(p->request_contexts[i].ids);
    free(p->request_contexts);
    free(p->continuations), free(p->loglikelihoods), free(p->greedy), free(p->letter_loglikelihoods);
    free_strings(p->choices, p->n_choices);
    free_strings(p->answers, p->n_answers);
    eval_prediction_init(p);
}

/* ------------------------------------------------------------------ writing */

static json_object *number(double v) { return isfinite(v) ? json_object_new_double(v) : NULL; }

static json_object *id_array(const eval_ids *v) {
    json_object *a = json_object_new_array_ext((int)v->n);
    for (size_t i = 0; i < v->n; i++) json_object_array_add(a, json_object_new_int64(v->ids[i]));
    return a;
}

static json_object *id_lists(const eval_ids *v, int n) {
    json_object *a = json_object_new_array_ext(n);
    for (int i = 0; i < n; i++) json_object_array_add(a, id_array(&v[i]));
    return a;
}

static json_object *string_array(char *const *s, int n) {
    json_object *a = json_object_new_array_ext(n);
    for (int i = 0; i < n; i++) json_object_array_add(a, json_object_new_string(s[i] ? s[i] : ""));
    return a;
}

static json_object *double_array(const double *v, int n) {
    json_object *a = json_object_new_array_ext(n);
    for (int i = 0; i < n; i++) json_object_array_add(a, number(v[i]));
    return a;
}

static void add_string(json_object *o, const char *key, const char *v) {
    if (v) json_object_object_add(o, key, json_object_new_string(v));
}

static void add_provenance(json_object *o, const eval_provenance *p) {
    if (p->checkpoint_sha256[0]) add_string(o, "checkpoint_sha256", p->checkpoint_sha256);
    if (p->task_sha256[0]) add_string(o, "task_sha256", p->task_sha256);
    if (p->encoder[0]) add_string(o, "encoder", p->encoder);
    if (p->seed >= 0) json_object_object_add(o, "seed", json_object_new_int64(p->seed));
    if (p->image_input >= 0) json_object_object_add(o, "image_input", json_object_new_boolean(p->image_input));
}

static void get_provenance_flag(json_object *o, eval_provenance *p) {
    json_object *v;
    p->image_input = json_object_object_get_ex(o, "image_input", &v) && json_object_is_type(v, json_type_boolean)
                         ? json_object_get_boolean(v)
                         : -1;
}

static int write_line(FILE *out, json_object *o, ps_error *err) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    int rc = fprintf(out, "%s\n", text) < 0 || fflush(out) ? ps_fail(err, "writing a record: %s", strerror(errno)) : 0;
    json_object_put(o);
    return rc;
}

int eval_prediction_write(FILE *out, const eval_prediction *p, ps_error *err) {
    json_object *o = json_object_new_object();
    add_string(o, "task", p->task);
    add_string(o, "category", p->category);
    add_string(o, "kind", p->kind);
    add_string(o, "scorer", p->scorer);
    add_string(o, "id", p->id);
    if (p->line) json_object_object_add(o, "line", json_object_new_int64((int64_t)p->line));
    add_string(o, "item_category", p->item_category);
    add_string(o, "image", p->image);
    add_string(o, "group", p->group);
    if (isfinite(p->area_share)) json_object_object_add(o, "area_share", number(p->area_share));
    if (p->context.n) json_object_object_add(o, "context_ids", id_array(&p->context));
    if (p->n_continuations) json_object_object_add(o, "continuation_ids", id_lists(p->continuations, p->n_continuations));
    if (p->n_request_contexts)
        json_object_object_add(o, "request_context_ids", id_lists(p->request_contexts, p->n_request_contexts));
    if (p->n_loglikelihoods) {
        json_object_object_add(o, "loglikelihoods", double_array(p->loglikelihoods, p->n_loglikelihoods));
        if (p->greedy) {
            json_object *g = json_object_new_array_ext(p->n_loglikelihoods);
            for (int i = 0; i < p->n_loglikelihoods; i++) json_object_array_add(g, json_object_new_boolean(p->greedy[i]));
            json_object_object_add(o, "greedy", g);
        }
    }
    if (p->n_choices) json_object_object_add(o, "choices", string_array(p->choices, p->n_choices));
    if (p->gold >= 0) json_object_object_add(o, "gold", json_object_new_int(p->gold));
    if (p->n_answers) json_object_object_add(o, "answers", string_array(p->answers, p->n_answers));
    add_string(o, "output", p->output);
    if (p->output_ids.n) json_object_object_add(o, "output_ids", id_array(&p->output_ids));
    if (p->n_letter_loglikelihoods)
        json_object_object_add(o, "letter_loglikelihoods", double_array(p->letter_loglikelihoods, p->n_letter_loglikelihoods));
    if (p->visual_tokens > 0) {
        json_object_object_add(o, "image_at", json_object_new_int(p->image_at));
        json_object_object_add(o, "visual_tokens", json_object_new_int(p->visual_tokens));
    }
    if (p->truncated) json_object_object_add(o, "truncated", json_object_new_boolean(1));
    if (isfinite(p->loglikelihood)) json_object_object_add(o, "loglikelihood", number(p->loglikelihood));
    const char *counts[] = {"tokens", "words", "bytes", "windows"};
    const long long values[] = {p->tokens, p->words, p->bytes, p->windows};
    for (int i = 0; i < 4; i++)
        if (values[i] >= 0) json_object_object_add(o, counts[i], json_object_new_int64(values[i]));
    if (p->tier > 0 || p->parsed >= 0 || p->output) {
        json_object_object_add(o, "parsed", json_object_new_int(p->parsed));
        json_object_object_add(o, "tier", json_object_new_int(p->tier));
    }
    if (isfinite(p->correct)) json_object_object_add(o, "correct", number(p->correct));
    add_provenance(o, &p->prov);
    return write_line(out, o, err);
}

/* ------------------------------------------------------------------ reading */

typedef struct reader {
    const char *path;
    size_t line;
    ps_error *err;
} reader;

static int bad(reader *R, const char *key, const char *what) {
    return ps_fail(R->err, "%s:%zu: key '%s': %s", R->path, R->line, key, what);
}

static int get_string(reader *R, json_object *o, const char *key, char **out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
    if (!json_object_is_type(v, json_type_string)) return bad(R, key, "expected a string");
    *out = strdup(json_object_get_string(v));
    return *out ? 0 : bad(R, key, "out of memory");
}

static int get_number(reader *R, json_object *o, const char *key, double *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v)) return 0;
    if (!v) return *out = NAN, 0;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(R, key, "expected a number");
    *out = json_object_get_double(v);
    return 0;
}

static int get_int(reader *R, json_object *o, const char *key, long long *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
    if (!json_object_is_type(v, json_type_int)) return bad(R, key, "expected an integer");
    *out = json_object_get_int64(v);
    return 0;
}

static int ids_from(reader *R, json_object *a, const char *key, eval_ids *out) {
    if (!json_object_is_type(a, json_type_array)) return bad(R, key, "expected a list of token ids");
    out->n = json_object_array_length(a);
    out->ids = malloc(sizeof *out->ids * (out->n ? out->n : 1));
    if (!out->ids) return bad(R, key, "out of memory");
    for (size_t i = 0; i < out->n; i++) {
        json_object *e = json_object_array_get_idx(a, i);
        int64_t id = json_object_get_int64(e);
        if (!json_object_is_type(e, json_type_int) || id < 0 || id > UINT32_MAX) return bad(R, key, "a token id is not a 32-bit unsigned integer");
        out->ids[i] = (uint32_t)id;
    }
    return 0;
}

static int get_ids(reader *R, json_object *o, const char *key, eval_ids *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
    return ids_from(R, v, key, out);
}

static int get_id_lists(reader *R, json_object *o, const char *key, eval_ids **out, int *n_out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
    if (!json_object_is_type(v, json_type_array)) return bad(R, key, "expected a list of lists of token ids");
    int n = (int)json_object_array_length(v);
    *out = calloc((size_t)(n ? n : 1), sizeof **out);
    if (!*out) return bad(R, key, "out of memory");
    for (int i = 0; i < n; i++) {
        *n_out = i + 1;
        if (ids_from(R, json_object_array_get_idx(v, (size_t)i), key, &(*out)[i])) return -1;
    }
    return 0;
}

static int get_array(reader *R, json_object *o, const char *key, json_object **out, int *n) {
    *out = NULL;
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return 0;
    if (!json_object_is_type(v, json_type_array)) return bad(R, key, "expected a list");
    *out = v;
    *n = (int)json_object_array_length(v);
    return 0;
}

static int get_strings(reader *R, json_object *o, const char *key, char ***out, int *n) {
    json_object *a;
    int count = 0;
    if (get_array(R, o, key, &a, &count) || !a) return a ? -1 : 0;
    *out = calloc((size_t)(count ? count : 1), sizeof **out);
    for (int i = 0; i < count; i++) {
        json_object *e = json_object_array_get_idx(a, (size_t)i);
        if (!json_object_is_type(e, json_type_string)) return *n = i, bad(R, key, "expected a list of strings");
        (*out)[i] = strdup(json_object_get_string(e));
    }
    *n = count;
    return 0;
}

static int get_doubles(reader *R, json_object *o, const char *key, double **out, int *n) {
    json_object *a;
    int count = 0;
    if (get_array(R, o, key, &a, &count) || !a) return a ? -1 : 0;
    *out = malloc(sizeof **out * (size_t)(count ? count : 1));
    for (int i = 0; i < count; i++) {
        json_object *e = json_object_array_get_idx(a, (size_t)i);
        if (!e) (*out)[i] = NAN;
        else if (json_object_is_type(e, json_type_double) || json_object_is_type(e, json_type_int))
            (*out)[i] = json_object_get_double(e);
        else return bad(R, key, "expected a list of numbers");
    }
    *n = count;
    return 0;
}

static void get_fixed(json_object *o, const char *key, char *out, size_t size) {
    json_object *v;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        snprintf(out, size, "%s", json_object_get_string(v));
}

static int parse_prediction(reader *R, json_object *o, eval_prediction *p) {
    int rc = 0;
    rc |= get_string(R, o, "task", &p->task) || get_string(R, o, "id", &p->id) || get_string(R, o, "kind", &p->kind) ||
          get_string(R, o, "category", &p->category) || get_string(R, o, "scorer", &p->scorer);
    rc = rc || get_string(R, o, "item_category", &p->item_category) || get_string(R, o, "image", &p->image) ||
         get_string(R, o, "group", &p->group) || get_string(R, o, "output", &p->output);
    long long line = 0, gold = -1, parsed = -1, tier = 0, image_at = -1, visual = 0;
    rc = rc || get_int(R, o, "image_at", &image_at) || get_int(R, o, "visual_tokens", &visual);
    p->image_at = (int)image_at, p->visual_tokens = (int)visual;
    json_object *cut;
    p->truncated = json_object_object_get_ex(o, "truncated", &cut) && json_object_is_type(cut, json_type_boolean) &&
                   json_object_get_boolean(cut);
    rc = rc || get_int(R, o, "line", &line) || get_int(R, o, "gold", &gold) || get_int(R, o, "parsed", &parsed) ||
         get_int(R, o, "tier", &tier) || get_int(R, o, "tokens", &p->tokens) || get_int(R, o, "words", &p->words) ||
         get_int(R, o, "bytes", &p->bytes) || get_int(R, o, "windows", &p->windows) ||
         get_int(R, o, "seed", &p->prov.seed);
    /* gold indexes the choices: a value past int would wrap into a valid-looking index */
    if (!rc && (gold < -1 || gold > INT_MAX)) rc = bad(R, "gold", "not a choice index (0 or more; -1 or absent: none)");
    if (!rc && line < 0) rc = bad(R, "line", "negative");
    p->line = (size_t)line, p->gold = (int)gold, p->parsed = (int)parsed, p->tier = (int)tier;
    rc = rc || get_number(R, o, "area_share", &p->area_share) || get_number(R, o, "loglikelihood", &p->loglikelihood) ||
         get_number(R, o, "correct", &p->correct);
    rc = rc || get_ids(R, o, "context_ids", &p->context) || get_ids(R, o, "output_ids", &p->output_ids);
    rc = rc || get_strings(R, o, "choices", &p->choices, &p->n_choices) ||
         get_strings(R, o, "answers", &p->answers, &p->n_answers);
    rc = rc || get_doubles(R, o, "loglikelihoods", &p->loglikelihoods, &p->n_loglikelihoods) ||
         get_doubles(R, o, "letter_loglikelihoods", &p->letter_loglikelihoods, &p->n_letter_loglikelihoods);
    json_object *a;
    int n = 0;
    if (!rc) rc = get_id_lists(R, o, "continuation_ids", &p->continuations, &p->n_continuations);
    if (!rc) rc = get_id_lists(R, o, "request_context_ids", &p->request_contexts, &p->n_request_contexts);
    if (!rc && !get_array(R, o, "greedy", &a, &n) && a) {
        if (n != p->n_loglikelihoods) return bad(R, "greedy", "not one entry per log-likelihood");
        p->greedy = malloc(sizeof *p->greedy * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) p->greedy[i] = json_object_get_boolean(json_object_array_get_idx(a, (size_t)i));
    }
    if (!rc && !p->task) rc = bad(R, "task", "missing");
    if (!rc && !p->id) rc = bad(R, "id", "missing");
    get_fixed(o, "checkpoint_sha256", p->prov.checkpoint_sha256, sizeof p->prov.checkpoint_sha256);
    get_fixed(o, "task_sha256", p->prov.task_sha256, sizeof p->prov.task_sha256);
    get_fixed(o, "encoder", p->prov.encoder, sizeof p->prov.encoder);
    get_provenance_flag(o, &p->prov);
    return rc ? -1 : 0;
}

void eval_predictions_free(eval_prediction *p, size_t n) {
    for (size_t i = 0; i < n; i++) eval_prediction_clear(&p[i]);
    free(p);
}

/* Calls fn on each JSON line of path; a torn last line is counted, not parsed. */
typedef int (*line_fn)(void *ctx, reader *R, json_object *o);

static int each_line(const char *path, line_fn fn, void *ctx, size_t *torn, ps_error *err) {
    if (torn) *torn = 0;
    FILE *f = fopen(path, "r");
    if (!f) return ps_fail(err, "%s: %s", path, strerror(errno));
    reader R = {path, 0, err};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        R.line++;
        const char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        if (!*s) continue;
        enum json_tokener_error jerr;
        json_object *o = json_tokener_parse_verbose(line, &jerr);
        if (!o && line[len - 1] != '\n') {
            if (torn) (*torn)++;
            break;
        }
        if (!o) rc = ps_fail(err, "%s:%zu: not JSON: %s", path, R.line, json_tokener_error_desc(jerr));
        else if (!json_object_is_type(o, json_type_object)) rc = ps_fail(err, "%s:%zu: expected a JSON object", path, R.line);
        else rc = fn(ctx, &R, o);
        json_object_put(o);
    }
    free(line);
    fclose(f);
    return rc;
}

typedef struct pred_list {
    eval_prediction *p;
    size_t n, cap;
} pred_list;

static int add_prediction(void *ctx, reader *R, json_object *o) {
    pred_list *L = ctx;
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        eval_prediction *grown = realloc(L->p, sizeof *grown * cap);
        if (!grown) return ps_fail(R->err, "out of memory");
        L->p = grown, L->cap = cap;
    }
    eval_prediction *p = &L->p[L->n++];
    eval_prediction_init(p);
    return parse_prediction(R, o, p);
}

int eval_predictions_read(const char *path, eval_prediction **out, size_t *n, size_t *torn, ps_error *err) {
    pred_list L = {0};
    int rc = each_line(path, add_prediction, &L, torn, err);
    if (rc) {
        eval_predictions_free(L.p, L.n);
        *out = NULL, *n = 0;
        return -1;
    }
    *out = L.p, *n = L.n;
    return 0;
}

int eval_predictions_trim_torn(const char *path, size_t *cut, ps_error *err) {
    if (cut) *cut = 0;
    FILE *f = fopen(path, "r+b");
    if (!f) return errno == ENOENT ? 0 : ps_fail(err, "%s: %s", path, strerror(errno));
    int rc = 0;
    if (fseeko(f, 0, SEEK_END)) rc = ps_fail(err, "%s: %s", path, strerror(errno));
    off_t end = rc ? 0 : ftello(f), keep = end;
    /* walk back from the end to just past the last newline */
    char buf[4096];
    while (!rc && keep > 0) {
        off_t from = keep > (off_t)sizeof buf ? keep - (off_t)sizeof buf : 0;
        size_t len = (size_t)(keep - from);
        if (fseeko(f, from, SEEK_SET) || fread(buf, 1, len, f) != len) {
            rc = ps_fail(err, "%s: %s", path, strerror(errno));
            break;
        }
        size_t i = len;
        while (i > 0 && buf[i - 1] != '\n') i--;
        if (i > 0) {
            keep = from + (off_t)i;
            break;
        }
        keep = from;
    }
    if (!rc && keep < end && ftruncate(fileno(f), keep)) rc = ps_fail(err, "%s: truncating: %s", path, strerror(errno));
    if (!rc && cut) *cut = (size_t)(end - keep);
    fclose(f);
    return rc;
}

/* -------------------------------------------------------------- results */

int eval_result_write(FILE *out, const eval_result *r, ps_error *err) {
    json_object *o = json_object_new_object();
    add_string(o, "task", r->task);
    add_string(o, "category", r->category);
    if (r->scorer[0]) add_string(o, "scorer", r->scorer);
    add_string(o, "subset", r->subset);
    add_string(o, "metric", r->metric);
    json_object_object_add(o, "value", number(r->value));
    json_object_object_add(o, "stderr", number(r->stderr_));
    json_object_object_add(o, "n", json_object_new_int64((int64_t)r->n));
    json_object_object_add(o, "parse_failures", json_object_new_int64((int64_t)r->parse_failures));
    if (r->truncated) json_object_object_add(o, "truncated", json_object_new_int64((int64_t)r->truncated));
    if (r->parser[0]) add_string(o, "parser", r->parser);
    if (r->tiers[0]) add_string(o, "tiers", r->tiers);
    add_provenance(o, &r->prov);
    return write_line(out, o, err);
}

/* Writes n records through write_one to path.tmp, then renames it to path. */
static int write_file(const char *path, size_t n, int (*write_one)(FILE *, const void *, size_t, ps_error *),
                      const void *records, ps_error *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: %s", tmp, strerror(errno));
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = write_one(f, records, i, err);
    if (rc) ps_wrap(err, "%s", tmp); /* a full disk: the message names the file */
    if (fclose(f) && !rc) rc = ps_fail(err, "%s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path)) rc = ps_fail(err, "renaming %s to %s: %s", tmp, path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

static int write_result_at(FILE *f, const void *records, size_t i, ps_error *err) {
    return eval_result_write(f, (const eval_result *)records + i, err);
}

static int write_prediction_at(FILE *f, const void *records, size_t i, ps_error *err) {
    return eval_prediction_write(f, (const eval_prediction *)records + i, err);
}

int eval_results_write_file(const char *path, const eval_result *results, size_t n, ps_error *err) {
    return write_file(path, n, write_result_at, results, err);
}

int eval_predictions_write_file(const char *path, const eval_prediction *p, size_t n, ps_error *err) {
    return write_file(path, n, write_prediction_at, p, err);
}

typedef struct result_list {
    eval_result *r;
    size_t n, cap;
} result_list;

static int add_result(void *ctx, reader *R, json_object *o) {
    result_list *L = ctx;
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 64;
        eval_result *grown = realloc(L->r, sizeof *grown * cap);
        if (!grown) return ps_fail(R->err, "out of memory");
        L->r = grown, L->cap = cap;
    }
    eval_result *r = &L->r[L->n++];
    memset(r, 0, sizeof *r);
    r->prov.seed = -1;
    r->value = r->stderr_ = NAN;
    get_fixed(o, "task", r->task, sizeof r->task);
    get_fixed(o, "category", r->category, sizeof r->category);
    get_fixed(o, "subset", r->subset, sizeof r->subset);
    get_fixed(o, "scorer", r->scorer, sizeof r->scorer);
    get_fixed(o, "metric", r->metric, sizeof r->metric);
    get_fixed(o, "parser", r->parser, sizeof r->parser);
    get_fixed(o, "tiers", r->tiers, sizeof r->tiers);
    get_fixed(o, "checkpoint_sha256", r->prov.checkpoint_sha256, sizeof r->prov.checkpoint_sha256);
    get_fixed(o, "task_sha256", r->prov.task_sha256, sizeof r->prov.task_sha256);
    get_fixed(o, "encoder", r->prov.encoder, sizeof r->prov.encoder);
    get_provenance_flag(o, &r->prov);
    long long n = 0, failures = 0, cut = 0;
    if (get_number(R, o, "value", &r->value) || get_number(R, o, "stderr", &r->stderr_) || get_int(R, o, "n", &n) ||
        get_int(R, o, "parse_failures", &failures) || get_int(R, o, "seed", &r->prov.seed) ||
        get_int(R, o, "truncated", &cut))
        return -1;
    r->n = (size_t)n, r->parse_failures = (size_t)failures, r->truncated = cut > 0 ? (size_t)cut : 0;
    if (!r->task[0] || !r->metric[0]) return bad(R, !r->task[0] ? "task" : "metric", "missing");
    return 0;
}

int eval_results_read(const char *path, eval_result **out, size_t *n, ps_error *err) {
    result_list L = {0};
    if (each_line(path, add_result, &L, NULL, err)) {
        free(L.r);
        *out = NULL, *n = 0;
        return -1;
    }
    *out = L.r, *n = L.n;
    return 0;
}
