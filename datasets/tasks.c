/* tasks.c - task files (libconfig), field maps, templates and the JSONL reader (see
 * tasks.h for the format). */
#include "tasks.h"

#include <ctype.h>
#include <errno.h>
#include <json.h>
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "sha256.h"
#include "strbuf.h"

/* ------------------------------------------------------------------ filters */

static int py_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* Python's str.replace(old, new): left to right, non-overlapping, one pass. */
static char *replace_all(const char *s, const char *old, const char *new_text) {
    strbuf b = {0};
    size_t n_old = strlen(old);
    for (const char *p = s; *p;) {
        if (!strncmp(p, old, n_old)) {
            strbuf_str(&b, new_text);
            p += n_old;
        } else {
            strbuf_put(&b, p++, 1);
        }
    }
    return strbuf_take(&b);
}

/* HellaSwag's preprocess: strip, " [title]" -> ". ", drop "[...]" (no newline inside,
 * shortest), "  " -> " ". */
static char *hellaswag_preprocess(const char *text) {
    size_t len = strlen(text);
    const char *s = text;
    while (len && py_space((unsigned char)*s)) s++, len--;
    while (len && py_space((unsigned char)s[len - 1])) len--;
    char *stripped = strndup(s, len);
    char *titled = stripped ? replace_all(stripped, " [title]", ". ") : NULL;
    free(stripped);
    if (!titled) return NULL;
    strbuf b = {0};
    for (const char *p = titled; *p;) {
        if (*p == '[') {
            const char *close = p + 1;
            while (*close && *close != ']' && *close != '\n') close++;
            if (*close == ']') {
                p = close + 1;
                continue;
            }
        }
        strbuf_put(&b, p++, 1);
    }
    free(titled);
    char *bracketless = strbuf_take(&b);
    char *out = bracketless ? replace_all(bracketless, "  ", " ") : NULL;
    free(bracketless);
    return out;
}

static char *regex_sub(char *s, const char *pattern, const char *replacement, int *failed) {
    if (!s) return NULL;
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!re) {
        *failed = 1;
        return s;
    }
    size_t len = strlen(s);
    PCRE2_SIZE out_len = len * 2 + 64;
    char *out = malloc(out_len);
    int rc = out ? 0 : -1;
    for (int tries = 0; out && tries < 2; tries++) {
        PCRE2_SIZE room = out_len;
        rc = pcre2_substitute(re, (PCRE2_SPTR)s, len, 0, PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                              NULL, NULL, (PCRE2_SPTR)replacement, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out, &room);
        if (rc != PCRE2_ERROR_NOMEMORY) break;
        out_len = room + 1;
        char *grown = realloc(out, out_len);
        if (!grown) break;
        out = grown;
    }
    pcre2_code_free(re);
    if (rc < 0) {
        free(out);
        *failed = 1;
        return s;
    }
    free(s);
    return out;
}

/* lm-eval's wikitext_detokenizer, step by step. */
static char *wikitext_detokenize(const char *text) {
    static const char *const before[][2] = {{"s '", "s'"}};
    static const char *const plain[][2] = {
        {" @-@ ", "-"}, {" @,@ ", ","}, {" @.@ ", "."}, {" : ", ": "}, {" ; ", "; "},
        {" . ", ". "},  {" ! ", "! "},  {" ? ", "? "},  {" , ", ", "},
    };
    static const char *const regex[][2] = {
        {"\\(\\s*([^\\)]*?)\\s*\\)", "($1)"}, {"\\[\\s*([^\\]]*?)\\s*\\]", "[$1]"}, {"{\\s*([^}]*?)\\s*}", "{$1}"},
        {"\\\"\\s*([^\\\"]*?)\\s*\\\"", "\"$1\""}, {"'\\s*([^']*?)\\s*'", "'$1'"},
    };
    static const char *const after[][2] = {
        {"= = = =", "===="}, {"= = =", "==="}, {"= =", "=="}, {" \xc2\xb0 ", "\xc2\xb0"},
        {" \n", "\n"},       {"\n ", "\n"},    {" N ", " 1 "}, {" 's", "'s"},
    };
    int failed = 0;
    char *s = replace_all(text, before[0][0], before[0][1]);
    s = regex_sub(s, "/' [0-9]/", "/'[0-9]/", &failed);
    for (size_t i = 0; s && i < sizeof plain / sizeof *plain; i++) {
        char *next = replace_all(s, plain[i][0], plain[i][1]);
        free(s);
        s = next;
    }
    for (size_t i = 0; s && i < sizeof regex / sizeof *regex; i++) s = regex_sub(s, regex[i][0], regex[i][1], &failed);
    for (size_t i = 0; s && i < sizeof after / sizeof *after; i++) {
        char *next = replace_all(s, after[i][0], after[i][1]);
        free(s);
        s = next;
    }
    if (failed) {
        free(s);
        return NULL;
    }
    return s;
}

typedef struct value_map {
    char *name;
    int n;
    char **keys, **values;
} value_map;

typedef struct tmpl {
    char *text;
    int line;
} tmpl;

typedef enum label_kind { LABEL_NONE, LABEL_INDEX, LABEL_INDEX1, LABEL_LETTER, LABEL_KEY, LABEL_BOOL, LABEL_TEXT, LABEL_CONST } label_kind;

struct task_def {
    char *path, sha256[65];
    char *name, *category, *data, *scorer, *delimiter;
    task_kind kind;
    tmpl context, target, text, count;
    tmpl *choices;
    int n_choices;
    tmpl choices_from, label, label_keys, answers, image, group, area_share, item_category, id;
    char **context_filters, **choice_filters;
    int n_context_filters, n_choice_filters;
    label_kind label_kind;
    int label_const;
    int skip_empty_choices;
    value_map *maps;
    int n_maps;
    value_map select, exclude; /* field path -> allowed (select) or refused (exclude) values */
};

static const char *const filter_names[] = {"strip",       "lstrip",    "rstrip",   "lower",   "capitalize",
                                           "lcfirst",     "droplast",  "lastword", "optline", "butlastword",
                                           "hellaswag",   "wikitext",  NULL};

static int filter_known(const char *name) {
    if (!strncmp(name, "before:", 7) || !strncmp(name, "after:", 6) || !strncmp(name, "map:", 4)) return 1;
    if (!strncmp(name, "mod:", 4)) {
        char *end;
        long m = strtol(name + 4, &end, 10);
        return m > 0 && !*end;
    }
    for (int i = 0; filter_names[i]; i++)
        if (!strcmp(name, filter_names[i])) return 1;
    return 0;
}

static const value_map *find_map(const task_def *t, const char *name) {
    for (int i = 0; t && i < t->n_maps; i++)
        if (!strcmp(t->maps[i].name, name)) return &t->maps[i];
    return NULL;
}

static char *strip_chars(const char *s, int left, int right) {
    size_t len = strlen(s);
    if (left)
        while (len && py_space((unsigned char)*s)) s++, len--;
    if (right)
        while (len && py_space((unsigned char)s[len - 1])) len--;
    return strndup(s, len);
}

/* Applies one filter; the message says what went wrong (the caller adds where). */
static int apply_filter(const task_def *t, const char *filter, const char *in, char **out, ps_error *err) {
    *out = NULL;
    size_t len = strlen(in);
    if (!strcmp(filter, "strip")) *out = strip_chars(in, 1, 1);
    else if (!strcmp(filter, "lstrip")) *out = strip_chars(in, 1, 0);
    else if (!strcmp(filter, "rstrip")) *out = strip_chars(in, 0, 1);
    else if (!strcmp(filter, "lower") || !strcmp(filter, "capitalize") || !strcmp(filter, "lcfirst")) {
        *out = strdup(in);
        if (*out) {
            int lower_rest = strcmp(filter, "lcfirst") != 0;
            for (size_t i = 0; i < len; i++)
                if (i > 0 ? lower_rest : 1) (*out)[i] = (char)tolower((unsigned char)(*out)[i]);
            if (!strcmp(filter, "capitalize") && len) (*out)[0] = (char)toupper((unsigned char)(*out)[0]);
        }
    } else if (!strcmp(filter, "droplast")) {
        size_t n = len;
        while (n && ((unsigned char)in[n - 1] & 0xc0) == 0x80) n--; /* back over a UTF-8 tail */
        *out = strndup(in, n ? n - 1 : 0);
    } else if (!strcmp(filter, "lastword") || !strcmp(filter, "butlastword")) {
        const char *space = strrchr(in, ' ');
        if (!strcmp(filter, "lastword")) *out = strdup(space ? space + 1 : in);
        else *out = strndup(in, space ? (size_t)(space - in) : 0);
    } else if (!strncmp(filter, "before:", 7) || !strncmp(filter, "after:", 6)) {
        int after = filter[0] == 'a';
        const char *mark = filter + (after ? 6 : 7), *at = strstr(in, mark);
        if (!*mark) return ps_fail(err, "filter %s: empty mark", filter);
        if (!at) return ps_fail(err, "filter %s: '%s' does not occur in the text", filter, mark);
        *out = after ? strdup(at + strlen(mark)) : strndup(in, (size_t)(at - in));
    } else if (!strncmp(filter, "map:", 4)) {
        const value_map *m = find_map(t, filter + 4);
        if (!m) return ps_fail(err, "filter %s: no map named %s", filter, filter + 4);
        for (int i = 0; i < m->n && !*out; i++)
            if (!strcmp(m->keys[i], in)) *out = strdup(m->values[i]);
        if (!*out) return ps_fail(err, "filter %s: no entry for value '%s'", filter, in);
    } else if (!strncmp(filter, "mod:", 4)) {
        char *end;
        errno = 0;
        long long v = strtoll(in, &end, 10), m = strtoll(filter + 4, NULL, 10);
        if (errno || end == in || *end || m <= 0) return ps_fail(err, "filter %s: '%s' is not an integer", filter, in);
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", ((v % m) + m) % m);
        *out = strdup(buf);
    } else if (!strcmp(filter, "optline")) {
        /* an empty or "nan" field gives nothing, anything else itself and a newline */
        if (!*in || !strcmp(in, "nan")) *out = strdup("");
        else if ((*out = malloc(len + 2))) memcpy(*out, in, len), (*out)[len] = '\n', (*out)[len + 1] = 0;
    } else if (!strcmp(filter, "hellaswag")) *out = hellaswag_preprocess(in);
    else if (!strcmp(filter, "wikitext")) *out = wikitext_detokenize(in);
    else return ps_fail(err, "unknown filter '%s'", filter);
    return *out ? 0 : ps_fail(err, "filter %s: out of memory", filter);
}

int task_filter_apply(const char *filter, const char *text, char **out, ps_error *err) {
    if (!strncmp(filter, "map:", 4)) return ps_fail(err, "filter %s needs a task's maps", filter);
    return apply_filter(NULL, filter, text, out, err);
}

/* ---------------------------------------------------------------- JSON paths */

/* A new reference to the value at path ("a.b.c"), mapping over lists of objects; NULL
 * when a step is missing (*missing names it). */
static json_object *json_at(json_object *root, const char *path, char *missing, size_t missing_size) {
    char step[256];
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    if (n >= sizeof step) n = sizeof step - 1;
    memcpy(step, path, n);
    step[n] = 0;
    if (json_object_is_type(root, json_type_array)) {
        json_object *mapped = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(root); i++) {
            json_object *v = json_at(json_object_array_get_idx(root, i), path, missing, missing_size);
            if (!v) {
                json_object_put(mapped);
                return NULL;
            }
            json_object_array_add(mapped, v);
        }
        return mapped;
    }
    json_object *child;
    if (!json_object_is_type(root, json_type_object) || !json_object_object_get_ex(root, step, &child) || !child) {
        snprintf(missing, missing_size, "%s", step);
        return NULL;
    }
    if (!dot) return json_object_get(child);
    return json_at(child, dot + 1, missing, missing_size);
}

/* Python's str() of a scalar JSON value; NULL for a list, object or null. */
static char *scalar_text(json_object *v) {
    char buf[64];
    switch (json_object_get_type(v)) {
    case json_type_string: return strdup(json_object_get_string(v));
    case json_type_int: snprintf(buf, sizeof buf, "%lld", (long long)json_object_get_int64(v)); return strdup(buf);
    case json_type_boolean: return strdup(json_object_get_boolean(v) ? "True" : "False");
    case json_type_double: {
        double d = json_object_get_double(v);
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, d);
            if (strtod(buf, NULL) == d) break;
        }
        if (!strpbrk(buf, ".eni")) strcat(buf, ".0");
        return strdup(buf);
    }
    default: return NULL;
    }
}

static const char *type_name(json_object *v) {
    return v ? json_type_to_name(json_object_get_type(v)) : "missing";
}

/* ----------------------------------------------------------------- templates */

/* Calls fn for each piece: literal text (field == NULL) or a {field|filters} reference. */
typedef int (*piece_fn)(void *ctx, const char *literal, size_t n, const char *ref, ps_error *err);

static int walk_template(const char *text, piece_fn fn, void *ctx, ps_error *err) {
    for (const char *p = text; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            if (fn(ctx, p, 1, NULL, err)) return -1;
            p += 2;
            continue;
        }
        if (*p == '}') return ps_fail(err, "a '}' with no '{' (write '}}' for a brace)");
        if (*p != '{') {
            const char *q = p;
            while (*q && *q != '{' && *q != '}') q++;
            if (fn(ctx, p, (size_t)(q - p), NULL, err)) return -1;
            p = q;
            continue;
        }
        const char *close = strchr(p + 1, '}');
        if (!close) return ps_fail(err, "a '{' with no '}' (write '{{' for a brace)");
        char ref[512];
        size_t n = (size_t)(close - p - 1);
        if (n == 0 || n >= sizeof ref) return ps_fail(err, "an empty or overlong {field}");
        memcpy(ref, p + 1, n);
        ref[n] = 0;
        if (fn(ctx, NULL, 0, ref, err)) return -1;
        p = close + 1;
    }
    return 0;
}

static int check_piece(void *ctx, const char *literal, size_t n, const char *ref, ps_error *err) {
    const task_def *t = ctx;
    (void)literal, (void)n;
    if (!ref || !strcmp(ref, "@options")) return 0;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", ref);
    char *save, *field = strtok_r(copy, "|", &save);
    if (!field || !*field) return ps_fail(err, "{%s}: no field name", ref);
    for (char *f = strtok_r(NULL, "|", &save); f; f = strtok_r(NULL, "|", &save)) {
        if (!filter_known(f)) return ps_fail(err, "{%s}: unknown filter '%s'", ref, f);
        if (!strncmp(f, "map:", 4) && !find_map(t, f + 4)) return ps_fail(err, "{%s}: no map named '%s'", ref, f + 4);
    }
    return 0;
}

typedef struct render_ctx {
    const task_def *t;
    json_object *doc;
    const task_item *item; /* for {@options}; NULL outside an item */
    strbuf out;
} render_ctx;

/* {@options}: "A. first\nB. second ..." over the item's mapped choices. */
static int render_options(render_ctx *r, ps_error *err) {
    if (!r->item || r->item->n_choices < 1) return ps_fail(err, "{@options}: the task maps no choices");
    for (int i = 0; i < r->item->n_choices; i++) {
        char head[8];
        snprintf(head, sizeof head, "%s%c. ", i ? "\n" : "", 'A' + i % 26);
        if (strbuf_str(&r->out, head) || strbuf_str(&r->out, r->item->choices[i])) return ps_fail(err, "out of memory");
    }
    return 0;
}

static int render_piece(void *ctx, const char *literal, size_t n, const char *ref, ps_error *err) {
    render_ctx *r = ctx;
    if (!ref) return strbuf_put(&r->out, literal, n) ? ps_fail(err, "out of memory") : 0;
    if (!strcmp(ref, "@options")) return render_options(r, err);
    char copy[512], missing[256] = "";
    snprintf(copy, sizeof copy, "%s", ref);
    char *save, *field = strtok_r(copy, "|", &save);
    size_t flen = strlen(field);
    int optional = flen > 1 && field[flen - 1] == '?';
    if (optional) field[flen - 1] = 0;
    json_object *v = json_at(r->doc, field, missing, sizeof missing);
    if (!v && !optional) return ps_fail(err, "field '%s': missing", field);
    char *text = v ? scalar_text(v) : strdup("");
    if (!text && optional && json_object_is_type(v, json_type_null)) text = strdup("");
    if (!text) {
        ps_fail(err, "field '%s': wrong type: expected a string or number, got %s", field, type_name(v));
        json_object_put(v);
        return -1;
    }
    json_object_put(v);
    for (char *f = strtok_r(NULL, "|", &save); f; f = strtok_r(NULL, "|", &save)) {
        char *next;
        if (apply_filter(r->t, f, text, &next, err)) {
            free(text);
            return ps_wrap(err, "field '%s'", field);
        }
        free(text);
        text = next;
    }
    int rc = strbuf_str(&r->out, text);
    free(text);
    return rc ? ps_fail(err, "out of memory") : 0;
}

static char *render_item(const task_def *t, const char *text, json_object *doc, const task_item *item, char **filters,
                         int n_filters, ps_error *err) {
    render_ctx r = {.t = t, .doc = doc, .item = item};
    if (walk_template(text, render_piece, &r, err)) {
        free(r.out.s);
        return NULL;
    }
    char *s = strbuf_take(&r.out);
    for (int i = 0; s && i < n_filters; i++) {
        char *next;
        if (apply_filter(t, filters[i], s, &next, err)) {
            free(s);
            return NULL;
        }
        free(s);
        s = next;
    }
    return s;
}

static char *render(const task_def *t, const char *text, json_object *doc, char **filters, int n_filters,
                    ps_error *err) {
    return render_item(t, text, doc, NULL, filters, n_filters, err);
}

/* ------------------------------------------------------------- task files */

const char *task_kind_name(task_kind k) {
    static const char *const names[] = {"multiple_choice", "partial", "loglikelihood", "rolling", "vqa"};
    return k <= TASK_VQA ? names[k] : "?";
}

static const char *const label_kind_names[] = {"", "index", "index1", "letter", "key", "bool", "text", "const", NULL};

static const char *const scorers_by_kind[][9] = {
    [TASK_MULTIPLE_CHOICE] = {"acc", NULL},
    [TASK_PARTIAL] = {"acc", NULL},
    [TASK_LOGLIKELIHOOD] = {"lambada", NULL},
    [TASK_ROLLING] = {"perplexity", NULL},
    [TASK_VQA] = {"choice", "exact", "relaxed", "vqa", "mme", "mmbench", "existence", NULL},
};

void task_free(task_def *t) {
    if (!t) return;
    tmpl *all[] = {&t->context, &t->target, &t->text, &t->count, &t->choices_from, &t->label, &t->label_keys,
                   &t->answers, &t->image, &t->group, &t->area_share, &t->item_category, &t->id};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->text);
    for (int i = 0; i < t->n_choices; i++) free(t->choices[i].text);
    for (int i = 0; i < t->n_context_filters; i++) free(t->context_filters[i]);
    for (int i = 0; i < t->n_choice_filters; i++) free(t->choice_filters[i]);
    for (int i = 0; i < t->n_maps; i++) {
        for (int j = 0; j < t->maps[i].n; j++) free(t->maps[i].keys[j]), free(t->maps[i].values[j]);
        free(t->maps[i].keys), free(t->maps[i].values), free(t->maps[i].name);
    }
    free(t->maps), free(t->choices), free(t->context_filters), free(t->choice_filters);
    value_map *sel[] = {&t->select, &t->exclude};
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < sel[k]->n; j++) free(sel[k]->keys[j]), free(sel[k]->values[j]);
        free(sel[k]->keys), free(sel[k]->values);
    }
    free(t->path), free(t->name), free(t->category), free(t->data), free(t->scorer), free(t->delimiter);
    free(t);
}

task_info task_get_info(const task_def *t) {
    return (task_info){t->name, t->category, t->data, t->scorer, t->delimiter, t->kind, t->path, t->sha256};
}

typedef struct loader {
    task_def *t;
    const char *file;
    ps_error *err;
} loader;

static int fail_at(loader *L, const config_setting_t *s, const char *fmt, const char *a, const char *b) {
    const char *file = s && config_setting_source_file(s) ? config_setting_source_file(s) : L->file;
    char msg[4608];
    snprintf(msg, sizeof msg, fmt, a, b);
    return ps_fail(L->err, "%s:%u: %s: %s", file, s ? config_setting_source_line(s) : 0u,
                   s && config_setting_name(s) ? config_setting_name(s) : "task", msg);
}

static int get_string(loader *L, const config_setting_t *s, char **out) {
    if (config_setting_type(s) != CONFIG_TYPE_STRING) return fail_at(L, s, "expected a string%s%s", "", "");
    *out = strdup(config_setting_get_string(s));
    return *out ? 0 : ps_fail(L->err, "out of memory");
}

static int get_tmpl(loader *L, const config_setting_t *s, tmpl *out, int check) {
    if (get_string(L, s, &out->text)) return -1;
    out->line = (int)config_setting_source_line(s);
    if (check == 2) check = strchr(out->text, '{') != NULL; /* a field path or a template */
    if (check && walk_template(out->text, check_piece, L->t, L->err)) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", L->err->msg);
        return fail_at(L, s, "%s%s", msg, "");
    }
    return 0;
}

static int get_string_list(loader *L, const config_setting_t *s, char ***out, int *n, int filters) {
    if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
        return fail_at(L, s, "expected a list of strings [\"...\", ...]%s%s", "", "");
    *n = config_setting_length(s);
    *out = calloc((size_t)(*n ? *n : 1), sizeof **out);
    if (!*out) return ps_fail(L->err, "out of memory");
    for (int i = 0; i < *n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) return fail_at(L, s, "element %s is not a string%s", "", "");
        (*out)[i] = strdup(config_setting_get_string(e));
        if (filters && !filter_known((*out)[i])) return fail_at(L, s, "unknown filter '%s'%s", (*out)[i], "");
    }
    return 0;
}

static int load_maps(loader *L, const config_setting_t *s) {
    if (!config_setting_is_group(s)) return fail_at(L, s, "expected a group of maps { NAME = { key = \"value\"; }; }%s%s", "", "");
    task_def *t = L->t;
    t->n_maps = config_setting_length(s);
    t->maps = calloc((size_t)(t->n_maps ? t->n_maps : 1), sizeof *t->maps);
    if (!t->maps) return ps_fail(L->err, "out of memory");
    for (int i = 0; i < t->n_maps; i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        value_map *vm = &t->maps[i];
        vm->name = strdup(config_setting_name(m));
        if (!config_setting_is_group(m)) return fail_at(L, m, "expected a group { key = \"value\"; }%s%s", "", "");
        vm->n = config_setting_length(m);
        vm->keys = calloc((size_t)(vm->n ? vm->n : 1), sizeof *vm->keys);
        vm->values = calloc((size_t)(vm->n ? vm->n : 1), sizeof *vm->values);
        for (int j = 0; j < vm->n; j++) {
            const config_setting_t *e = config_setting_get_elem(m, (unsigned)j);
            vm->keys[j] = strdup(config_setting_name(e));
            if (get_string(L, e, &vm->values[j])) return -1;
        }
    }
    return 0;
}

/* select = { answer_type = "multiple_choice"; image_set = ["charts", "text"]; }: each value
 * a string or a list of strings; stored as one (field, value) pair per allowed value. */
static int load_selection(loader *L, const config_setting_t *s, value_map *out) {
    if (!config_setting_is_group(s)) return fail_at(L, s, "expected a group { field = \"value\"; ... }%s%s", "", "");
    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        int list = config_setting_is_array(e) || config_setting_is_list(e);
        int n = list ? config_setting_length(e) : 1;
        if (!list && config_setting_type(e) != CONFIG_TYPE_STRING)
            return fail_at(L, e, "expected a string or a list of strings%s%s", "", "");
        for (int j = 0; j < n; j++) {
            const config_setting_t *v = list ? config_setting_get_elem(e, (unsigned)j) : e;
            if (config_setting_type(v) != CONFIG_TYPE_STRING) return fail_at(L, e, "expected strings%s%s", "", "");
            char **keys = realloc(out->keys, sizeof *keys * (size_t)(out->n + 1));
            char **values = keys ? realloc(out->values, sizeof *values * (size_t)(out->n + 1)) : NULL;
            if (keys) out->keys = keys;
            if (!keys || !values) return ps_fail(L->err, "out of memory");
            out->values = values;
            out->keys[out->n] = strdup(config_setting_name(e));
            out->values[out->n++] = strdup(config_setting_get_string(v));
        }
    }
    return 0;
}

static int parse_enum(loader *L, const config_setting_t *s, const char *const *names, int *out) {
    char *v;
    if (get_string(L, s, &v)) return -1;
    for (int i = 0; names[i]; i++)
        if (names[i][0] && !strcmp(v, names[i])) {
            *out = i;
            free(v);
            return 0;
        }
    char allowed[512] = "";
    for (int i = 0; names[i]; i++)
        if (names[i][0]) strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 3), strcat(allowed, " ");
    fail_at(L, s, "'%s' is not one of: %s", v, allowed);
    free(v);
    return -1;
}

/* One top-level setting. */
static int load_setting(loader *L, const config_setting_t *s) {
    task_def *t = L->t;
    const char *key = config_setting_name(s);
    struct {
        const char *name;
        tmpl *slot;
        int is_template;
    } tmpls[] = {
        {"context", &t->context, 1}, {"target", &t->target, 1}, {"text", &t->text, 1}, {"count", &t->count, 1},
        {"choices_from", &t->choices_from, 0}, {"label", &t->label, 0}, {"label_keys", &t->label_keys, 0},
        {"answers", &t->answers, 0}, {"image", &t->image, 2}, {"group", &t->group, 2},
        {"area_share", &t->area_share, 0}, {"item_category", &t->item_category, 2}, {"id", &t->id, 2},
    };
    for (size_t i = 0; i < sizeof tmpls / sizeof *tmpls; i++)
        if (!strcmp(key, tmpls[i].name)) return get_tmpl(L, s, tmpls[i].slot, tmpls[i].is_template);
    char **strings[] = {&t->name, &t->category, &t->data, &t->scorer, &t->delimiter};
    const char *string_keys[] = {"name", "category", "data", "scorer", "delimiter"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(key, string_keys[i])) {
            free(*strings[i]);
            return get_string(L, s, strings[i]);
        }
    if (!strcmp(key, "kind")) {
        static const char *const kinds[] = {"multiple_choice", "partial", "loglikelihood", "rolling", "vqa", NULL};
        int k;
        if (parse_enum(L, s, kinds, &k)) return -1;
        t->kind = (task_kind)k;
        return 0;
    }
    if (!strcmp(key, "label_kind")) {
        int k;
        if (parse_enum(L, s, label_kind_names, &k)) return -1;
        t->label_kind = (label_kind)k;
        return 0;
    }
    if (!strcmp(key, "skip_empty_choices")) {
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) return fail_at(L, s, "expected true or false%s%s", "", "");
        t->skip_empty_choices = config_setting_get_bool(s);
        return 0;
    }
    if (!strcmp(key, "label_const")) {
        if (config_setting_type(s) != CONFIG_TYPE_INT) return fail_at(L, s, "expected an integer%s%s", "", "");
        t->label_const = config_setting_get_int(s);
        return 0;
    }
    if (!strcmp(key, "choices")) {
        char **texts;
        if (get_string_list(L, s, &texts, &t->n_choices, 0)) return -1;
        t->choices = calloc((size_t)(t->n_choices ? t->n_choices : 1), sizeof *t->choices);
        for (int i = 0; i < t->n_choices; i++) t->choices[i] = (tmpl){texts[i], (int)config_setting_source_line(s)};
        free(texts);
        for (int i = 0; i < t->n_choices; i++)
            if (walk_template(t->choices[i].text, check_piece, t, L->err)) {
                char msg[2048];
                snprintf(msg, sizeof msg, "%s", L->err->msg);
                return fail_at(L, s, "%s%s", msg, "");
            }
        return 0;
    }
    if (!strcmp(key, "context_filters")) return get_string_list(L, s, &t->context_filters, &t->n_context_filters, 1);
    if (!strcmp(key, "choice_filters")) return get_string_list(L, s, &t->choice_filters, &t->n_choice_filters, 1);
    if (!strcmp(key, "maps")) return 0; /* loaded first, see task_load */
    if (!strcmp(key, "select") || !strcmp(key, "exclude")) return load_selection(L, s, key[0] == 's' ? &t->select : &t->exclude);
    return fail_at(L, s, "unknown key '%s'%s", key, "");
}

static int require(loader *L, int have, const char *key, const char *why) {
    return have ? 0 : ps_fail(L->err, "%s: '%s' is required (%s)", L->file, key, why);
}

/* What each kind and scorer needs. */
static int check_complete(loader *L) {
    task_def *t = L->t;
    int rc = 0;
    rc |= require(L, t->name != NULL, "name", "every task");
    rc = rc ? rc : require(L, t->data != NULL, "data", "the JSONL file the items are read from");
    rc = rc ? rc : require(L, t->scorer != NULL, "scorer", "how items are scored");
    if (rc) return -1;
    int ok = 0;
    for (int i = 0; scorers_by_kind[t->kind][i]; i++) ok |= !strcmp(t->scorer, scorers_by_kind[t->kind][i]);
    if (!ok) return ps_fail(L->err, "%s: scorer '%s' does not fit kind %s", L->file, t->scorer, task_kind_name(t->kind));
    int has_choices = t->n_choices > 0 || t->choices_from.text;
    int needs_label = t->kind == TASK_MULTIPLE_CHOICE || t->kind == TASK_PARTIAL ||
                      (t->kind == TASK_VQA && (!strcmp(t->scorer, "choice") || !strcmp(t->scorer, "mmbench") ||
                                               !strcmp(t->scorer, "existence")));
    switch (t->kind) {
    case TASK_MULTIPLE_CHOICE:
        rc = require(L, t->context.text != NULL, "context", "multiple_choice");
        break;
    case TASK_PARTIAL:
        rc = require(L, t->target.text != NULL, "target", "partial: the fixed continuation");
        break;
    case TASK_LOGLIKELIHOOD:
        rc = require(L, t->context.text && t->target.text, "context and target", "loglikelihood");
        break;
    case TASK_ROLLING: rc = require(L, t->text.text != NULL, "text", "rolling"); break;
    case TASK_VQA:
        rc = require(L, t->context.text != NULL, "context", "vqa: the question");
        if (!rc && !needs_label)
            rc = require(L, t->answers.text != NULL, "answers", "the field holding the answer(s)");
        if (!rc && (!strcmp(t->scorer, "mme") || !strcmp(t->scorer, "mmbench")))
            rc = require(L, t->group.text != NULL, "group", "the field grouping items (image, circular copies)");
        if (!rc && !strcmp(t->scorer, "existence"))
            rc = require(L, t->area_share.text != NULL, "area_share", "existence by size");
        break;
    }
    if (!rc && needs_label) {
        rc = require(L, has_choices, "choices or choices_from", "the options");
        if (!rc && t->n_choices && t->choices_from.text)
            rc = ps_fail(L->err, "%s: give choices or choices_from, not both", L->file);
        if (!rc) rc = require(L, t->label_kind != LABEL_NONE, "label_kind", "how the gold answer is written");
        if (!rc && t->label_kind != LABEL_CONST) rc = require(L, t->label.text != NULL, "label", "the gold field");
        if (!rc && t->label_kind == LABEL_KEY)
            rc = require(L, t->label_keys.text != NULL, "label_keys", "label_kind key: the list of keys");
    }
    return rc;
}

static int apply_override(task_def *t, const char *assignment, ps_error *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return ps_fail(err, "override '%s': expected key=value", assignment);
    size_t n = (size_t)(eq - assignment);
    char **slots[] = {&t->name, &t->category, &t->data, &t->scorer, &t->delimiter};
    const char *keys[] = {"name", "category", "data", "scorer", "delimiter"};
    for (int i = 0; i < 5; i++)
        if (strlen(keys[i]) == n && !strncmp(assignment, keys[i], n)) {
            free(*slots[i]);
            *slots[i] = strdup(eq + 1);
            return 0;
        }
    return ps_fail(err, "override '%s': only name, category, data, scorer and delimiter can be overridden", assignment);
}

int task_load(task_def **out, const char *path, int n_overrides, char **overrides, ps_error *err) {
    *out = NULL;
    task_def *t = calloc(1, sizeof *t);
    if (!t) return ps_fail(err, "out of memory");
    t->path = strdup(path);
    t->delimiter = strdup(" ");
    t->category = strdup("");
    loader L = {t, path, err};
    config_t cfg;
    config_init(&cfg);
    int rc = sha256_file(path, t->sha256, err);
    if (!rc && !config_read_file(&cfg, path))
        rc = ps_fail(err, "%s:%d: %s", config_error_file(&cfg) ? config_error_file(&cfg) : path,
                     config_error_line(&cfg), config_error_text(&cfg));
    config_setting_t *root = config_root_setting(&cfg);
    /* maps first: templates check the map names they use */
    config_setting_t *maps = rc ? NULL : config_setting_get_member(root, "maps");
    if (maps) rc = load_maps(&L, maps);
    for (int i = 0; !rc && i < config_setting_length(root); i++) rc = load_setting(&L, config_setting_get_elem(root, (unsigned)i));
    for (int i = 0; !rc && i < n_overrides; i++) rc = apply_override(t, overrides[i], err);
    if (!rc) rc = check_complete(&L);
    config_destroy(&cfg);
    if (rc) {
        task_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

/* -------------------------------------------------------------- items */

void task_item_clear(task_item *it) {
    free(it->id), free(it->context), free(it->target), free(it->count_text);
    for (int i = 0; i < it->n_choices; i++) free(it->choices[i]);
    for (int i = 0; i < it->n_answers; i++) free(it->answers[i]);
    free(it->choices), free(it->answers), free(it->image), free(it->group), free(it->item_category);
    memset(it, 0, sizeof *it);
    it->gold = -1;
    it->area_share = NAN;
}

/* A list of strings at a field path (a single string gives a list of one). */
static int field_strings(json_object *doc, const char *path, char ***out, int *n, ps_error *err) {
    char missing[256] = "";
    json_object *v = json_at(doc, path, missing, sizeof missing);
    if (!v) return ps_fail(err, "field '%s': missing", path);
    int rc = 0;
    if (json_object_is_type(v, json_type_array)) {
        *n = (int)json_object_array_length(v);
        *out = calloc((size_t)(*n ? *n : 1), sizeof **out);
        for (int i = 0; i < *n && !rc; i++) {
            json_object *e = json_object_array_get_idx(v, (size_t)i);
            (*out)[i] = scalar_text(e);
            if (!(*out)[i]) rc = ps_fail(err, "field '%s': element %d: wrong type: expected a string, got %s", path, i, type_name(e));
        }
    } else if (((*out) = calloc(1, sizeof **out)) && ((*out)[0] = scalar_text(v))) {
        *n = 1;
    } else {
        rc = ps_fail(err, "field '%s': wrong type: expected a string or a list of strings, got %s", path, type_name(v));
    }
    json_object_put(v);
    return rc;
}

static int field_scalar(json_object *doc, const char *path, char **out, ps_error *err) {
    char missing[256] = "";
    json_object *v = json_at(doc, path, missing, sizeof missing);
    if (!v) return ps_fail(err, "field '%s': missing", path);
    *out = scalar_text(v);
    int rc = *out ? 0 : ps_fail(err, "field '%s': wrong type: expected a string or number, got %s", path, type_name(v));
    json_object_put(v);
    return rc;
}

static int parse_int_text(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end && py_space((unsigned char)*end)) end++;
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int map_label(const task_def *t, json_object *doc, task_item *it, ps_error *err) {
    long gold = -1;
    if (t->label_kind == LABEL_CONST) {
        gold = t->label_const;
    } else {
        char missing[256] = "";
        json_object *v = json_at(doc, t->label.text, missing, sizeof missing);
        if (!v) return ps_fail(err, "field '%s': missing", t->label.text);
        char *text = scalar_text(v);
        int rc = 0;
        if (t->label_kind == LABEL_BOOL) {
            if (!json_object_is_type(v, json_type_boolean))
                rc = ps_fail(err, "field '%s': wrong type: expected a boolean, got %s", t->label.text, type_name(v));
            else gold = json_object_get_boolean(v);
        } else if (!text) {
            rc = ps_fail(err, "field '%s': wrong type: expected a string or number, got %s", t->label.text, type_name(v));
        } else if (t->label_kind == LABEL_INDEX || t->label_kind == LABEL_INDEX1) {
            if (parse_int_text(text, &gold)) rc = ps_fail(err, "field '%s': '%s' is not an integer", t->label.text, text);
            else if (t->label_kind == LABEL_INDEX1) gold -= 1;
        } else if (t->label_kind == LABEL_LETTER) {
            char *s = strip_chars(text, 1, 1);
            if (s && strlen(s) == 1 && isupper((unsigned char)s[0])) gold = s[0] - 'A';
            else rc = ps_fail(err, "field '%s': '%s' is not an option letter A-Z", t->label.text, text);
            free(s);
        } else if (t->label_kind == LABEL_KEY) {
            char **keys = NULL;
            int n_keys = 0;
            char *want = strip_chars(text, 1, 1);
            rc = field_strings(doc, t->label_keys.text, &keys, &n_keys, err);
            for (int i = 0; !rc && i < n_keys && gold < 0; i++)
                if (!strcmp(keys[i], want)) gold = i;
            if (!rc && gold < 0) rc = ps_fail(err, "field '%s': '%s' is not among the keys in '%s'", t->label.text, want, t->label_keys.text);
            for (int i = 0; i < n_keys; i++) free(keys[i]);
            free(keys), free(want);
        } else if (t->label_kind == LABEL_TEXT) {
            for (int i = 0; i < it->n_choices && gold < 0; i++)
                if (!strcmp(it->choices[i], text)) gold = i;
            if (gold < 0) rc = ps_fail(err, "field '%s': '%s' is none of the choices", t->label.text, text);
        }
        free(text);
        json_object_put(v);
        if (rc) return -1;
    }
    if (gold < 0 || gold >= it->n_choices)
        return ps_fail(err, "label %ld is outside the %d choices (0-based)", gold, it->n_choices);
    it->gold = (int)gold;
    return 0;
}

static int map_choices(const task_def *t, json_object *doc, task_item *it, ps_error *err) {
    if (t->choices_from.text) {
        if (field_strings(doc, t->choices_from.text, &it->choices, &it->n_choices, err)) return -1;
        for (int i = 0; i < it->n_choices; i++) {
            for (int f = 0; f < t->n_choice_filters; f++) {
                char *next;
                if (apply_filter(t, t->choice_filters[f], it->choices[i], &next, err)) return -1;
                free(it->choices[i]);
                it->choices[i] = next;
            }
        }
    } else {
        it->choices = calloc((size_t)t->n_choices, sizeof *it->choices);
        for (int i = 0; i < t->n_choices; i++) {
            char *c = render(t, t->choices[i].text, doc, t->choice_filters, t->n_choice_filters, err);
            if (!c) return -1;
            if (t->skip_empty_choices && (!*c || !strcmp(c, "nan"))) {
                free(c);
                continue;
            }
            it->choices[it->n_choices++] = c;
        }
    }
    if (it->n_choices < 1) return ps_fail(err, "no choices");
    return 0;
}

/* image, group, item_category, id: a field path, or a template when it holds a '{'. */
static int field_or_template(const task_def *t, json_object *doc, const char *spec, char **out, ps_error *err) {
    if (!strchr(spec, '{')) return field_scalar(doc, spec, out, err);
    *out = render(t, spec, doc, NULL, 0, err);
    return *out ? 0 : -1;
}

static int map_item(const task_def *t, json_object *doc, task_item *it, ps_error *err) {
    if (t->kind == TASK_ROLLING) {
        if (!(it->context = render(t, t->text.text, doc, NULL, 0, err))) return -1;
        it->count_text = t->count.text ? render(t, t->count.text, doc, NULL, 0, err) : strdup(it->context);
        return it->count_text ? 0 : -1;
    }
    if (t->n_choices || t->choices_from.text) {
        if (map_choices(t, doc, it, err)) return -1;
        if (t->label_kind != LABEL_NONE && map_label(t, doc, it, err)) return -1;
    }
    if (t->context.text &&
        !(it->context = render_item(t, t->context.text, doc, it, t->context_filters, t->n_context_filters, err)))
        return -1;
    if (t->target.text && !(it->target = render(t, t->target.text, doc, NULL, 0, err))) return -1;
    if (t->answers.text && field_strings(doc, t->answers.text, &it->answers, &it->n_answers, err)) return -1;
    if (t->image.text && field_or_template(t, doc, t->image.text, &it->image, err)) return -1;
    if (t->group.text && field_or_template(t, doc, t->group.text, &it->group, err)) return -1;
    if (t->item_category.text && field_or_template(t, doc, t->item_category.text, &it->item_category, err)) return -1;
    if (t->area_share.text) {
        char missing[256] = "";
        json_object *v = json_at(doc, t->area_share.text, missing, sizeof missing);
        if (!v) return ps_fail(err, "field '%s': missing", t->area_share.text);
        int numeric = json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int);
        if (numeric) it->area_share = json_object_get_double(v);
        json_object_put(v);
        if (!numeric) return ps_fail(err, "field '%s': wrong type: expected a number", t->area_share.text);
        if (!(it->area_share >= 0 && it->area_share <= 1))
            return ps_fail(err, "field '%s': %g is outside [0, 1]", t->area_share.text, it->area_share);
    }
    return 0;
}

/* Whether a field's scalar text is one of the pairs' values for that field (a missing
 * field matches nothing). */
static int field_in(json_object *doc, const value_map *m, int k) {
    char missing[256];
    json_object *v = json_at(doc, m->keys[k], missing, sizeof missing);
    char *text = v ? scalar_text(v) : NULL;
    int hit = 0;
    for (int j = 0; text && j < m->n; j++) hit |= !strcmp(m->keys[j], m->keys[k]) && !strcmp(m->values[j], text);
    free(text);
    json_object_put(v);
    return hit;
}

static int selected(const task_def *t, json_object *doc) {
    for (int k = 0; k < t->select.n; k++)
        if (!field_in(doc, &t->select, k)) return 0;
    for (int k = 0; k < t->exclude.n; k++)
        if (field_in(doc, &t->exclude, k)) return 0;
    return 1;
}

int task_map_line(const task_def *t, const char *json_line, size_t line_no, task_item *out, ps_error *err) {
    memset(out, 0, sizeof *out);
    task_item_clear(out);
    out->line = line_no;
    enum json_tokener_error jerr;
    json_object *doc = json_tokener_parse_verbose(json_line, &jerr);
    if (!doc) return ps_fail(err, "%s:%zu: not JSON: %s", t->data, line_no, json_tokener_error_desc(jerr));
    int rc = 0;
    if (!json_object_is_type(doc, json_type_object)) rc = ps_fail(err, "expected a JSON object, got %s", type_name(doc));
    if (!rc && !selected(t, doc)) {
        json_object_put(doc);
        return 1;
    }
    if (!rc) rc = map_item(t, doc, out, err);
    if (!rc) {
        const char *id_field = t->id.text ? t->id.text : "id";
        char *id = NULL;
        json_object *v;
        if (!strchr(id_field, '.') && !strchr(id_field, '{') && json_object_object_get_ex(doc, id_field, &v) && v)
            id = scalar_text(v);
        else if (t->id.text && field_or_template(t, doc, id_field, &id, err)) rc = -1;
        if (!rc && !id) {
            char buf[32];
            snprintf(buf, sizeof buf, "%zu", line_no);
            id = strdup(buf);
        }
        out->id = id;
    }
    json_object_put(doc);
    if (rc) {
        task_item_clear(out);
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return ps_fail(err, "%s:%zu: %s", t->data, line_no, msg);
    }
    return 0;
}

void task_items_free(task_item *items, size_t n) {
    for (size_t i = 0; i < n; i++) task_item_clear(&items[i]);
    free(items);
}

static int blank(const char *s) {
    while (*s && py_space((unsigned char)*s)) s++;
    return !*s;
}

int task_read_items(const task_def *t, task_item **items, size_t *n, ps_error *err) {
    *items = NULL, *n = 0;
    FILE *f = fopen(t->data, "r");
    if (!f) return ps_fail(err, "%s (task %s, %s): %s", t->data, t->name, t->path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, have = 0, line_no = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        if ((size_t)len != strlen(line)) {
            rc = ps_fail(err, "%s:%zu: a NUL byte in the line", t->data, line_no);
            break;
        }
        if (blank(line)) continue;
        if (*n == have) {
            have = have ? have * 2 : 256;
            task_item *grown = realloc(*items, sizeof *grown * have);
            if (!grown) {
                rc = ps_fail(err, "out of memory");
                break;
            }
            *items = grown;
        }
        rc = task_map_line(t, line, line_no, &(*items)[*n], err);
        if (rc == 1) rc = 0; /* not selected */
        else if (!rc) (*n)++;
    }
    free(line);
    fclose(f);
    if (!rc && *n == 0) rc = ps_fail(err, "%s: no items", t->data);
    if (rc) {
        task_items_free(*items, *n);
        *items = NULL, *n = 0;
    }
    return rc;
}
