/* study.c - reading a study file and expanding it into runs with stable ids.
 *
 * Everything a loaded study points to lives in one arena owned by the study
 * and freed by study_free. The libconfig tree is read once and dropped. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "study.h"

#include <libconfig.h>

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ arena */

struct study_arena {
    struct study_arena *next;
    size_t used, cap;
    max_align_t data[];
};

static void *arena_alloc(study *s, size_t n) {
    n = (n + 15) & ~(size_t)15;
    study_arena *a = s->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        study_arena *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a;
        b->used = 0;
        b->cap = cap;
        s->arena = a = b;
    }
    void *p = (char *)a->data + a->used;
    a->used += n;
    memset(p, 0, n);
    return p;
}

static const char *arena_strdup(study *s, const char *text) {
    size_t n = strlen(text) + 1;
    char *p = arena_alloc(s, n);
    if (p) memcpy(p, text, n);
    return p;
}

static const char *arena_printf(study *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *arena_printf(study *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *tmp = NULL;
    int n = vasprintf(&tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    const char *p = arena_strdup(s, tmp);
    free(tmp);
    return p;
}

void study_free(study *s) {
    if (!s) return;
    study_arena *a = s->arena;
    while (a) {
        study_arena *next = a->next;
        free(a);
        a = next;
    }
    memset(s, 0, sizeof *s);
}

#define OOM(err) ps_fail(err, "out of memory while reading the study")

/* ------------------------------------------------------------------ reading helpers */

typedef struct reader {
    study *s;
    config_t lc;
    const char *path;
    ps_error *err;
    const char **bundle_lists; /* top-level settings named by an axis's `bundles` */
    int n_bundle_lists;
} reader;

/* "file:line" of a setting, for messages. */
static void where(const reader *rd, const config_setting_t *st, char *buf, size_t cap) {
    const char *file = config_setting_source_file(st);
    snprintf(buf, cap, "%s:%d", file ? file : rd->path, config_setting_source_line(st));
}

static int fail_at(const reader *rd, const config_setting_t *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(const reader *rd, const config_setting_t *st, const char *fmt, ...) {
    char at[CONFIG_STR_MAX + 32], msg[1536];
    where(rd, st, at, sizeof at);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ps_fail(rd->err, "%s: %s", at, msg);
}

static const char *type_word(int type) {
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group { ... }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array [ ... ]";
    case CONFIG_TYPE_LIST: return "a list ( ... )";
    default: return "nothing";
    }
}

/* Shortest text that reads back as the same double. */
static void format_double(char *buf, size_t cap, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* Keep it a float for libconfig-minded readers: 1 -> 1.0 is not needed for overrides. */
}

/* The text of a scalar setting as an override value ("30B", "0.001", "true"). */
static int scalar_text(const reader *rd, const config_setting_t *st, char *buf, size_t cap) {
    switch (config_setting_type(st)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: snprintf(buf, cap, "%lld", config_setting_get_int64(st)); return 0;
    case CONFIG_TYPE_FLOAT: format_double(buf, cap, config_setting_get_float(st)); return 0;
    case CONFIG_TYPE_BOOL: snprintf(buf, cap, "%s", config_setting_get_bool(st) ? "true" : "false"); return 0;
    case CONFIG_TYPE_STRING: {
        const char *t = config_setting_get_string(st);
        if (strlen(t) >= cap) return fail_at(rd, st, "string is longer than %zu bytes", cap - 1);
        if (strpbrk(t, "\t\n\r"))
            return fail_at(rd, st, "\"%s\": tabs and line breaks are not allowed in study values", t);
        snprintf(buf, cap, "%s", t);
        return 0;
    }
    default:
        return fail_at(rd, st, "expected a number, string or boolean, found %s", type_word(config_setting_type(st)));
    }
}

/* A string member of a group (NULL when absent and not required). */
static int get_string(reader *rd, const config_setting_t *grp, const char *name, int required, const char **out) {
    *out = NULL;
    config_setting_t *st = config_setting_get_member(grp, name);
    if (!st) {
        if (!required) return 0;
        return fail_at(rd, grp, "'%s' is missing", name);
    }
    if (config_setting_type(st) != CONFIG_TYPE_STRING)
        return fail_at(rd, st, "'%s' must be a string, found %s", name, type_word(config_setting_type(st)));
    const char *t = config_setting_get_string(st);
    if (strpbrk(t, "\t\n\r")) return fail_at(rd, st, "'%s': tabs and line breaks are not allowed", name);
    if (!(*out = arena_strdup(rd->s, t))) return OOM(rd->err);
    return 0;
}

/* An integer member in [lo, hi]; *out untouched when absent. */
static int get_int(reader *rd, const config_setting_t *grp, const char *name, long long lo, long long hi, int *out) {
    config_setting_t *st = config_setting_get_member(grp, name);
    if (!st) return 0;
    int t = config_setting_type(st);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return fail_at(rd, st, "'%s' must be an integer, found %s", name, type_word(t));
    long long v = config_setting_get_int64(st);
    if (v < lo || v > hi) return fail_at(rd, st, "'%s' = %lld is out of range [%lld, %lld]", name, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_double(reader *rd, const config_setting_t *grp, const char *name, double lo, double hi, double *out) {
    config_setting_t *st = config_setting_get_member(grp, name);
    if (!st) return 0;
    int t = config_setting_type(st);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64 && t != CONFIG_TYPE_FLOAT)
        return fail_at(rd, st, "'%s' must be a number, found %s", name, type_word(t));
    double v = config_setting_get_float(st);
    if (t != CONFIG_TYPE_FLOAT) v = (double)config_setting_get_int64(st);
    if (!(v > lo && v <= hi)) return fail_at(rd, st, "'%s' = %g is out of range (%g, %g]", name, v, lo, hi);
    *out = v;
    return 0;
}

/* A list or array of strings; each must satisfy check (may be NULL). */
static int get_strings(reader *rd, const config_setting_t *grp, const char *name,
                       int (*check)(reader *, const config_setting_t *, const char *), int *n, const char ***out) {
    *n = 0;
    *out = NULL;
    config_setting_t *st = config_setting_get_member(grp, name);
    if (!st) return 0;
    int t = config_setting_type(st);
    if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
        return fail_at(rd, st, "'%s' must be a list of strings [\"...\", ...], found %s", name, type_word(t));
    int len = config_setting_length(st);
    const char **v = arena_alloc(rd->s, (size_t)(len + 1) * sizeof *v);
    if (!v) return OOM(rd->err);
    for (int i = 0; i < len; i++) {
        config_setting_t *e = config_setting_get_elem(st, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return fail_at(rd, e, "'%s' item %d must be a string, found %s", name, i + 1,
                           type_word(config_setting_type(e)));
        const char *text = config_setting_get_string(e);
        if (strpbrk(text, "\t\n\r"))
            return fail_at(rd, e, "'%s' item %d: tabs and line breaks are not allowed", name, i + 1);
        if (check && check(rd, e, text)) return -1;
        if (!(v[i] = arena_strdup(rd->s, text))) return OOM(rd->err);
    }
    *n = len;
    *out = v;
    return 0;
}

static int check_assignment(reader *rd, const config_setting_t *e, const char *text) {
    const char *eq = strchr(text, '=');
    if (!eq || eq == text) return fail_at(rd, e, "\"%s\" is not a key=value override (e.g. \"train.steps=200\")", text);
    return 0;
}

/* Members of grp must be among allowed (NULL-terminated). */
static int only_members(reader *rd, const config_setting_t *grp, const char *what, const char *const *allowed) {
    int len = config_setting_length(grp);
    for (int i = 0; i < len; i++) {
        config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(m);
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) ok |= name && strcmp(name, *a) == 0;
        if (ok) continue;
        char list[512] = "";
        for (const char *const *a = allowed; *a; a++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", a == allowed ? "" : ", ", *a);
        return fail_at(rd, m, "unknown setting '%s' in %s (allowed: %s)", name ? name : "?", what, list);
    }
    return 0;
}

static int name_ok(const char *t) {
    if (!*t) return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') return 0;
    return 1;
}

/* ------------------------------------------------------------------ resources */

static void resources_unset(study_resources *r) {
    memset(r, 0, sizeof *r);
    r->nodes = r->ranks_per_node = r->gpus_per_node = r->cpus_per_task = -1;
}

static int check_time(reader *rd, const config_setting_t *st, const char *t) {
    /* SLURM accepts minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. */
    int colons = 0, dashes = 0, digits = 0;
    for (const char *p = t; *p; p++) {
        if (isdigit((unsigned char)*p))
            digits++;
        else if (*p == ':')
            colons++;
        else if (*p == '-')
            dashes++;
        else
            break;
        if (p[1] == 0 && digits && colons <= 2 && dashes <= 1) return 0;
    }
    return fail_at(rd, st, "time = \"%s\" is not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS)", t);
}

/* A word that goes into an #SBATCH line as it is (partition, account, qos,
 * mem): sbatch does not run a shell on it, but a batch script is read by
 * people and tools that might, so only the characters such names use pass. */
static int check_word(reader *rd, const config_setting_t *st, const char *what, const char *t) {
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._,:=@/+%-", *p)) {
            char shown[8];
            snprintf(shown, sizeof shown, isprint((unsigned char)*p) ? "'%c'" : "0x%02x", (unsigned char)*p);
            return fail_at(rd, st, "%s = \"%s\": %s is not allowed (letters, digits and ._,:=@/+%%- only)", what, t,
                           shown);
        }
    return 0;
}

static int check_extra(reader *rd, const config_setting_t *e, const char *text) {
    if (text[0] != '-')
        return fail_at(rd, e, "extra \"%s\": an sbatch option starts with '-' (e.g. \"--exclusive\")", text);
    return 0;
}

static int read_resources(reader *rd, const config_setting_t *grp, study_resources *r) {
    static const char *const keys[] = {"nodes",     "ranks_per_node", "gpus_per_node", "cpus_per_task", "time",
                                       "partition", "account",        "qos",           "mem",           "extra",
                                       NULL};
    resources_unset(r);
    if (config_setting_type(grp) != CONFIG_TYPE_GROUP)
        return fail_at(rd, grp, "resources must be a group { nodes = 1; ... }, found %s",
                       type_word(config_setting_type(grp)));
    if (only_members(rd, grp, "resources", keys)) return -1;
    if (get_int(rd, grp, "nodes", 1, 100000, &r->nodes) ||
        get_int(rd, grp, "ranks_per_node", 1, 4096, &r->ranks_per_node) ||
        get_int(rd, grp, "gpus_per_node", 0, 1024, &r->gpus_per_node) ||
        get_int(rd, grp, "cpus_per_task", 0, 4096, &r->cpus_per_task))
        return -1;
    struct {
        const char *name;
        const char **slot;
    } strs[] = {
        {"time", &r->time}, {"partition", &r->partition}, {"account", &r->account}, {"qos", &r->qos}, {"mem", &r->mem}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (get_string(rd, grp, strs[i].name, 0, strs[i].slot)) return -1;
        const config_setting_t *st = config_setting_get_member(grp, strs[i].name);
        if (!*strs[i].slot) continue;
        if (!**strs[i].slot) { /* "" = leave it to the cluster's default, same as absent */
            *strs[i].slot = NULL;
            continue;
        }
        if (check_word(rd, st, strs[i].name, *strs[i].slot)) return -1;
        if (i == 0 && check_time(rd, st, *strs[i].slot)) return -1;
    }
    return get_strings(rd, grp, "extra", check_extra, &r->n_extra, &r->extra);
}

/* dst += src (set fields of src win; extra options are appended). */
static int resources_merge(study *s, study_resources *dst, const study_resources *src) {
    if (src->nodes >= 0) dst->nodes = src->nodes;
    if (src->ranks_per_node >= 0) dst->ranks_per_node = src->ranks_per_node;
    if (src->gpus_per_node >= 0) dst->gpus_per_node = src->gpus_per_node;
    if (src->cpus_per_task >= 0) dst->cpus_per_task = src->cpus_per_task;
    if (src->time) dst->time = src->time;
    if (src->partition) dst->partition = src->partition;
    if (src->account) dst->account = src->account;
    if (src->qos) dst->qos = src->qos;
    if (src->mem) dst->mem = src->mem;
    if (src->n_extra) {
        const char **v = arena_alloc(s, (size_t)(dst->n_extra + src->n_extra) * sizeof *v);
        if (!v) return -1;
        for (int i = 0; i < dst->n_extra; i++) v[i] = dst->extra[i];
        for (int i = 0; i < src->n_extra; i++) v[dst->n_extra + i] = src->extra[i];
        dst->extra = v;
        dst->n_extra += src->n_extra;
    }
    return 0;
}

static void resources_finish(study_resources *r) {
    if (r->nodes < 0) r->nodes = 1;
    if (r->gpus_per_node < 0) r->gpus_per_node = 0;
    if (r->ranks_per_node < 0) r->ranks_per_node = r->gpus_per_node > 0 ? r->gpus_per_node : 1;
    if (r->cpus_per_task < 0) r->cpus_per_task = 0;
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static int resources_equal(const study_resources *a, const study_resources *b) {
    if (a->nodes != b->nodes || a->ranks_per_node != b->ranks_per_node || a->gpus_per_node != b->gpus_per_node ||
        a->cpus_per_task != b->cpus_per_task || !str_eq(a->time, b->time) || !str_eq(a->partition, b->partition) ||
        !str_eq(a->account, b->account) || !str_eq(a->qos, b->qos) || !str_eq(a->mem, b->mem) ||
        a->n_extra != b->n_extra)
        return 0;
    for (int i = 0; i < a->n_extra; i++)
        if (strcmp(a->extra[i], b->extra[i])) return 0;
    return 1;
}

/* ------------------------------------------------------------------ stages */

static int read_stages(reader *rd, const config_setting_t *list, const study_resources *defaults) {
    static const char *const keys[] = {"name",      "command", "depends_on", "args",
                                       "done_file", "stdout",  "resources",  NULL};
    study *s = rd->s;
    if (!list)
        return ps_fail(rd->err,
                       "%s: 'stages' is missing (e.g. stages = ( { name = \"pretrain\"; command = \"train\"; } );)",
                       rd->path);
    if (config_setting_type(list) != CONFIG_TYPE_LIST || config_setting_length(list) == 0)
        return fail_at(rd, list, "'stages' must be a non-empty list of groups ( { name = ...; command = ...; }, ... )");
    s->n_stages = config_setting_length(list);
    if (!(s->stages = arena_alloc(s, (size_t)s->n_stages * sizeof *s->stages))) return OOM(rd->err);
    for (int i = 0; i < s->n_stages; i++) {
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        study_stage *st = &s->stages[i];
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return fail_at(rd, g, "stage %d must be a group { name = ...; command = ...; }", i + 1);
        if (only_members(rd, g, "a stage", keys) || get_string(rd, g, "name", 1, &st->name) ||
            get_string(rd, g, "command", 1, &st->command) || get_string(rd, g, "depends_on", 0, &st->depends_on) ||
            get_string(rd, g, "done_file", 0, &st->done_file) || get_string(rd, g, "stdout", 0, &st->stdout_file) ||
            get_strings(rd, g, "args", NULL, &st->n_args, &st->args))
            return -1;
        if (!name_ok(st->name) || strchr(st->name, '.'))
            return fail_at(rd, g, "stage name \"%s\": use letters, digits, '-' and '_' (it names a folder and a job)",
                           st->name);
        if (!name_ok(st->command)) return fail_at(rd, g, "command \"%s\" is not a presight subcommand", st->command);
        for (int j = 0; j < i; j++)
            if (strcmp(s->stages[j].name, st->name) == 0)
                return fail_at(rd, g, "two stages are named \"%s\"", st->name);
        st->dep = -1;
        if (st->depends_on && *st->depends_on) {
            for (int j = 0; j < i; j++)
                if (strcmp(s->stages[j].name, st->depends_on) == 0) st->dep = j;
            if (st->dep < 0)
                return fail_at(rd, g, "stage \"%s\" depends_on \"%s\", which is not an earlier stage", st->name,
                               st->depends_on);
        } else {
            st->depends_on = NULL;
        }
        if (!st->done_file || !*st->done_file) st->done_file = "final.json";
        if (strchr(st->done_file, '/') || !name_ok(st->done_file))
            return fail_at(rd, g, "done_file \"%s\" must be a plain file name", st->done_file);
        if (st->stdout_file && !*st->stdout_file) st->stdout_file = NULL;
        if (st->stdout_file && (strchr(st->stdout_file, '/') || !name_ok(st->stdout_file)))
            return fail_at(rd, g, "stdout \"%s\" must be a plain file name", st->stdout_file);
        if (!st->args) {
            static const char *const default_args[] = {"{config}", "run.dir={dir}"};
            st->n_args = 2;
            st->args = (const char **)default_args;
        }
        st->res = *defaults;
        config_setting_t *r = config_setting_get_member(g, "resources");
        if (r) {
            study_resources own;
            if (read_resources(rd, r, &own) || resources_merge(s, &st->res, &own)) return -1;
        }
    }
    return 0;
}

static int stage_index(const study *s, const char *name) {
    for (int i = 0; i < s->n_stages; i++)
        if (strcmp(s->stages[i].name, name) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------------ bundles */

typedef struct strvec {
    const char **v;
    int n, cap;
} strvec;

static int strvec_push(study *s, strvec *sv, const char *text) {
    if (sv->n == sv->cap) {
        int cap = sv->cap ? sv->cap * 2 : 16;
        const char **v = arena_alloc(s, (size_t)cap * sizeof *v);
        if (!v) return -1;
        if (sv->n) memcpy(v, sv->v, (size_t)sv->n * sizeof *v);
        sv->v = v;
        sv->cap = cap;
    }
    if (!(sv->v[sv->n] = arena_strdup(s, text))) return -1;
    sv->n++;
    return 0;
}

/* Flattens group settings into "a.b.c=value" overrides. */
static int flatten(reader *rd, const config_setting_t *grp, const char *prefix, strvec *out) {
    int len = config_setting_length(grp);
    for (int i = 0; i < len; i++) {
        config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", config_setting_name(m));
        int t = config_setting_type(m);
        if (t == CONFIG_TYPE_GROUP) {
            if (flatten(rd, m, path, out)) return -1;
            continue;
        }
        if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)
            return fail_at(rd, m, "%s is %s: a bundle holds key = value settings (and groups of them)", path,
                           type_word(t));
        char value[CONFIG_STR_MAX], line[CONFIG_STR_MAX + 300];
        if (scalar_text(rd, m, value, sizeof value)) return -1;
        snprintf(line, sizeof line, "%s=%s", path, value);
        if (strvec_push(rd->s, out, line)) return OOM(rd->err);
    }
    return 0;
}

/* A bundle: { name = "..."; set = ("k=v", ...); resources = { <stage> = { ... }; }; <groups of keys> }. */
static int read_bundle(reader *rd, const config_setting_t *g, study_value *v) {
    study *s = rd->s;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return fail_at(rd, g, "a bundle must be a group { name = \"...\"; ... }, found %s",
                       type_word(config_setting_type(g)));
    if (get_string(rd, g, "name", 1, &v->name)) return -1;
    if (!*v->name) return fail_at(rd, g, "a bundle's name is empty");
    char at[CONFIG_STR_MAX + 32];
    where(rd, g, at, sizeof at);
    v->where = arena_strdup(s, at);
    strvec out = {0};
    int n_set = 0;
    const char **set = NULL;
    if (get_strings(rd, g, "set", check_assignment, &n_set, &set)) return -1;
    int len = config_setting_length(g);
    for (int i = 0; i < len; i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        if (!strcmp(name, "name") || !strcmp(name, "set") || !strcmp(name, "resources")) continue;
        if (config_setting_type(m) != CONFIG_TYPE_GROUP)
            return fail_at(rd, m,
                           "bundle \"%s\": '%s' must be a group of keys (e.g. model = { dim = 512; };), "
                           "or use set = (\"%s=...\")",
                           v->name, name, name);
        if (flatten(rd, m, name, &out)) return -1;
    }
    for (int i = 0; i < n_set; i++)
        if (strvec_push(s, &out, set[i])) return OOM(rd->err);
    v->n_overrides = out.n;
    v->overrides = out.v;
    config_setting_t *r = config_setting_get_member(g, "resources");
    if (r) {
        if (config_setting_type(r) != CONFIG_TYPE_GROUP)
            return fail_at(rd, r, "bundle \"%s\": resources must be a group of stages { pretrain = { nodes = 8; }; }",
                           v->name);
        if (!(v->res = arena_alloc(s, (size_t)s->n_stages * sizeof *v->res))) return OOM(rd->err);
        for (int k = 0; k < s->n_stages; k++) resources_unset(&v->res[k]);
        for (int i = 0; i < config_setting_length(r); i++) {
            config_setting_t *m = config_setting_get_elem(r, (unsigned)i);
            int k = stage_index(s, config_setting_name(m));
            if (k < 0)
                return fail_at(rd, m, "bundle \"%s\": resources.%s: no stage of that name", v->name,
                               config_setting_name(m));
            if (read_resources(rd, m, &v->res[k])) return -1;
        }
    }
    return 0;
}

/* The bundle named `name` in the top-level list `list_name`. */
static int find_bundle(reader *rd, const config_setting_t *at, const char *list_name, const char *name,
                       study_value *v) {
    config_setting_t *list = config_lookup(&rd->lc, list_name);
    if (!list) return fail_at(rd, at, "bundles = \"%s\": there is no top-level list of that name", list_name);
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail_at(rd, list, "'%s' must be a list of bundles ( { name = ...; ... }, ... ), found %s", list_name,
                       type_word(config_setting_type(list)));
    for (int i = 0; i < config_setting_length(list); i++) {
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        const char *n = NULL;
        if (config_setting_type(g) == CONFIG_TYPE_GROUP && config_setting_lookup_string(g, "name", &n) &&
            strcmp(n, name) == 0)
            return read_bundle(rd, g, v);
    }
    char names[600] = "";
    for (int i = 0; i < config_setting_length(list) && strlen(names) < 500; i++) {
        const char *n = NULL;
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if (config_setting_type(g) == CONFIG_TYPE_GROUP && config_setting_lookup_string(g, "name", &n))
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", n);
    }
    return fail_at(rd, at, "no bundle named \"%s\" in '%s' (it has: %s)", name, list_name, names);
}

/* ------------------------------------------------------------------ axes and grids */

static int read_axis(reader *rd, const config_setting_t *g, study_axis *ax) {
    static const char *const keys[] = {"key", "name", "values", "bundles", NULL};
    study *s = rd->s;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return fail_at(rd, g, "an axis must be a group { key = \"train.lr\"; values = [ ... ]; }, found %s",
                       type_word(config_setting_type(g)));
    const char *bundles = NULL;
    if (only_members(rd, g, "an axis", keys) || get_string(rd, g, "key", 0, &ax->key) ||
        get_string(rd, g, "name", 0, &ax->name) || get_string(rd, g, "bundles", 0, &bundles))
        return -1;
    char at[CONFIG_STR_MAX + 32];
    where(rd, g, at, sizeof at);
    ax->where = arena_strdup(s, at);
    if (ax->key && (!*ax->key || strchr(ax->key, '=') || strchr(ax->key, ' ')))
        return fail_at(rd, g, "key \"%s\" is not a config key (e.g. \"train.lr\")", ax->key);
    if (ax->key && bundles)
        return fail_at(rd, g,
                       "an axis has either a key (values are that key's values) or bundles (values name "
                       "bundles), not both");
    if (!ax->name) ax->name = ax->key;
    if (!ax->name) return fail_at(rd, g, "an axis of bundles needs a name (e.g. name = \"mixture\";)");
    if (!name_ok(ax->name)) return fail_at(rd, g, "axis name \"%s\": use letters, digits, '.', '-' and '_'", ax->name);
    if (bundles) {
        int known = 0;
        for (int i = 0; i < rd->n_bundle_lists; i++) known |= strcmp(rd->bundle_lists[i], bundles) == 0;
        if (!known) {
            const char **v = arena_alloc(s, (size_t)(rd->n_bundle_lists + 1) * sizeof *v);
            if (!v) return OOM(rd->err);
            if (rd->n_bundle_lists) memcpy(v, rd->bundle_lists, (size_t)rd->n_bundle_lists * sizeof *v);
            v[rd->n_bundle_lists++] = bundles;
            rd->bundle_lists = v;
        }
    }
    config_setting_t *vals = config_setting_get_member(g, "values");
    if (!vals) return fail_at(rd, g, "axis \"%s\" has no values", ax->name);
    int t = config_setting_type(vals);
    if ((t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) || config_setting_length(vals) == 0)
        return fail_at(rd, vals, "axis \"%s\": values must be a non-empty list [ ... ] or ( ... )", ax->name);
    ax->n_values = config_setting_length(vals);
    if (!(ax->values = arena_alloc(s, (size_t)ax->n_values * sizeof *ax->values))) return OOM(rd->err);
    for (int i = 0; i < ax->n_values; i++) {
        config_setting_t *e = config_setting_get_elem(vals, (unsigned)i);
        study_value *v = &ax->values[i];
        char text[CONFIG_STR_MAX];
        if (config_setting_type(e) == CONFIG_TYPE_GROUP) {
            if (ax->key)
                return fail_at(rd, e, "axis \"%s\" has a key, so its values are plain values, not bundles", ax->name);
            if (read_bundle(rd, e, v)) return -1;
        } else {
            if (scalar_text(rd, e, text, sizeof text)) return -1;
            if (ax->key) {
                where(rd, e, at, sizeof at);
                v->where = arena_strdup(s, at);
                v->name = arena_strdup(s, text);
                v->n_overrides = 1;
                if (!(v->overrides = arena_alloc(s, sizeof *v->overrides))) return OOM(rd->err);
                v->overrides[0] = arena_printf(s, "%s=%s", ax->key, text);
                if (!v->name || !v->overrides[0]) return OOM(rd->err);
            } else if (bundles) {
                if (config_setting_type(e) != CONFIG_TYPE_STRING)
                    return fail_at(rd, e, "axis \"%s\": a value names a bundle in '%s', so it must be a string",
                                   ax->name, bundles);
                if (find_bundle(rd, e, bundles, text, v)) return -1;
            } else {
                return fail_at(rd, e,
                               "axis \"%s\" has neither key nor bundles: its values must be bundle groups "
                               "{ name = ...; ... }",
                               ax->name);
            }
        }
        for (int j = 0; j < i; j++)
            if (strcmp(ax->values[j].name, v->name) == 0)
                return fail_at(rd, e, "axis \"%s\" lists \"%s\" twice", ax->name, v->name);
    }
    return 0;
}

static int read_grid(reader *rd, const config_setting_t *axes, study_grid *gr) {
    study *s = rd->s;
    if (config_setting_type(axes) != CONFIG_TYPE_LIST)
        return fail_at(rd, axes, "axes must be a list ( { key = ...; values = [...]; }, ... ), found %s",
                       type_word(config_setting_type(axes)));
    gr->n_axes = config_setting_length(axes);
    if (gr->n_axes && !(gr->axes = arena_alloc(s, (size_t)gr->n_axes * sizeof *gr->axes))) return OOM(rd->err);
    for (int i = 0; i < gr->n_axes; i++) {
        config_setting_t *g = config_setting_get_elem(axes, (unsigned)i);
        if (read_axis(rd, g, &gr->axes[i])) return -1;
        for (int j = 0; j < i; j++) {
            if (strcmp(gr->axes[j].name, gr->axes[i].name) == 0)
                return fail_at(rd, g, "two axes of one grid are named \"%s\"", gr->axes[i].name);
            if (gr->axes[i].key && gr->axes[j].key && strcmp(gr->axes[j].key, gr->axes[i].key) == 0)
                return fail_at(rd, g, "two axes of one grid set the key %s", gr->axes[i].key);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ ids */

typedef struct pair {
    const char *name, *value;
} pair;

static int pair_cmp(const void *a, const void *b) {
    const pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static uint64_t fnv1a(uint64_t h, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

void study_id(int n, const char *const *names, const char *const *values, char id[STUDY_ID_LEN + 1]) {
    pair stack[64], *p = n <= 64 ? stack : malloc((size_t)n * sizeof *p);
    uint64_t h = 14695981039346656037ULL;
    if (!p) { /* cannot sort: hash in the given order (only under memory exhaustion) */
        for (int i = 0; i < n; i++) h = fnv1a(fnv1a(fnv1a(fnv1a(h, names[i]), "="), values[i]), "\n");
    } else {
        for (int i = 0; i < n; i++) p[i] = (pair){names[i], values[i]};
        qsort(p, (size_t)n, sizeof *p, pair_cmp);
        for (int i = 0; i < n; i++) h = fnv1a(fnv1a(fnv1a(fnv1a(h, p[i].name), "="), p[i].value), "\n");
        if (p != stack) free(p);
    }
    /* FNV-1a leaves inputs that differ only at the end with similar high
     * bits; MurmurHash3's finalizer spreads every input bit over the id. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    memcpy(id, hex, STUDY_ID_LEN);
    id[STUDY_ID_LEN] = 0;
}

void study_run_label(const study *s, const study_run *r, char *buf, size_t cap) {
    const study_grid *g = &s->grids[r->grid];
    buf[0] = 0;
    size_t len = 0;
    for (int a = 0; a < g->n_axes && len + 1 < cap; a++) {
        int n = snprintf(buf + len, cap - len, "%s%s=%s", a ? " " : "", g->axes[a].name,
                         g->axes[a].values[r->value[a]].name);
        if (n < 0) break;
        len += (size_t)n;
    }
    if (len >= cap && cap > 4) strcpy(buf + cap - 4, "...");
    if (g->n_axes == 0) snprintf(buf, cap, "(base)");
}

/* ------------------------------------------------------------------ expansion */

static int expand(reader *rd) {
    study *s = rd->s;
    long long total = 0;
    for (int g = 0; g < s->n_grids; g++) {
        long long n = 1;
        for (int a = 0; a < s->grids[g].n_axes; a++) {
            n *= s->grids[g].axes[a].n_values;
            if (n > 1000000)
                return ps_fail(rd->err, "%s: grid %d expands to more than a million runs", rd->path, g + 1);
        }
        total += n;
    }
    if (total > 1000000) return ps_fail(rd->err, "%s: the study expands to more than a million runs", rd->path);
    if (!(s->runs = arena_alloc(s, (size_t)total * sizeof *s->runs))) return OOM(rd->err);

    /* Open addressing over the 64-bit id value, to catch duplicates and collisions. */
    size_t slots = 16;
    while (slots < (size_t)total * 2) slots *= 2;
    int *table = malloc(slots * sizeof *table);
    if (!table) return OOM(rd->err);
    for (size_t i = 0; i < slots; i++) table[i] = -1;

    int rc = 0;
    for (int g = 0; g < s->n_grids && !rc; g++) {
        study_grid *gr = &s->grids[g];
        int idx[64] = {0};
        if (gr->n_axes > 64) {
            rc = ps_fail(rd->err, "%s: a grid has more than 64 axes", rd->path);
            break;
        }
        for (;;) {
            study_run *r = &s->runs[s->n_runs];
            r->grid = g;
            const char *names[64], *values[64];
            int n_ov = s->n_set;
            for (int a = 0; a < gr->n_axes; a++) {
                names[a] = gr->axes[a].name;
                values[a] = gr->axes[a].values[idx[a]].name;
                n_ov += gr->axes[a].values[idx[a]].n_overrides;
            }
            study_id(gr->n_axes, names, values, r->id);
            uint64_t key = strtoull(r->id, NULL, 16);
            size_t slot = (size_t)(key * 0x9E3779B97F4A7C15ULL >> 20) & (slots - 1);
            int dup = 0;
            while (table[slot] >= 0) {
                study_run *o = &s->runs[table[slot]];
                if (strcmp(o->id, r->id) == 0) {
                    /* Same id: the same assignments (a duplicate) or a hash collision. */
                    const study_grid *og = &s->grids[o->grid];
                    int same = og->n_axes == gr->n_axes;
                    for (int a = 0; same && a < gr->n_axes; a++) {
                        int found = 0;
                        for (int b = 0; b < og->n_axes; b++)
                            found |= strcmp(og->axes[b].name, names[a]) == 0 &&
                                     strcmp(og->axes[b].values[o->value[b]].name, values[a]) == 0;
                        same &= found;
                    }
                    if (!same) {
                        char l1[512], l2[512];
                        r->value = idx; /* for the label only */
                        study_run_label(s, r, l1, sizeof l1);
                        study_run_label(s, o, l2, sizeof l2);
                        rc = ps_fail(rd->err,
                                     "%s: runs \"%s\" and \"%s\" have the same id %s (a hash collision): "
                                     "rename a value",
                                     rd->path, l1, l2, r->id);
                    }
                    dup = 1;
                    break;
                }
                slot = (slot + 1) & (slots - 1);
            }
            if (rc) break;
            if (dup) {
                s->n_duplicates++;
            } else {
                r->index = s->n_runs;
                table[slot] = s->n_runs;
                r->value = arena_alloc(s, (size_t)(gr->n_axes ? gr->n_axes : 1) * sizeof *r->value);
                r->overrides = arena_alloc(s, (size_t)(n_ov ? n_ov : 1) * sizeof *r->overrides);
                r->res = arena_alloc(s, (size_t)s->n_stages * sizeof *r->res);
                r->dir = arena_printf(s, "%s/runs/%s", s->dir, r->id);
                if (!r->value || !r->overrides || !r->res || !r->dir) {
                    rc = OOM(rd->err);
                    break;
                }
                for (int i = 0; i < s->n_set; i++) r->overrides[r->n_overrides++] = s->set[i];
                for (int a = 0; a < gr->n_axes; a++) {
                    r->value[a] = idx[a];
                    const study_value *v = &gr->axes[a].values[idx[a]];
                    for (int i = 0; i < v->n_overrides; i++) r->overrides[r->n_overrides++] = v->overrides[i];
                }
                for (int k = 0; k < s->n_stages && !rc; k++) {
                    r->res[k] = s->stages[k].res;
                    for (int a = 0; a < gr->n_axes && !rc; a++) {
                        const study_value *v = &gr->axes[a].values[idx[a]];
                        if (v->res && resources_merge(s, &r->res[k], &v->res[k])) rc = OOM(rd->err);
                    }
                    resources_finish(&r->res[k]);
                }
                /* The resource group: the first earlier run with equal resources in every stage. */
                r->group = -1;
                for (int o = 0; o < s->n_runs && r->group < 0; o++) {
                    int eq = 1;
                    for (int k = 0; k < s->n_stages && eq; k++) eq = resources_equal(&s->runs[o].res[k], &r->res[k]);
                    if (eq) r->group = s->runs[o].group;
                }
                if (r->group < 0) r->group = s->n_groups++;
                s->n_runs++;
            }
            int a = gr->n_axes - 1; /* the last axis varies fastest */
            while (a >= 0 && ++idx[a] == gr->axes[a].n_values) idx[a--] = 0;
            if (a < 0) break;
        }
    }
    free(table);
    return rc;
}

/* ------------------------------------------------------------------ the study file */

static int is_bundle_list(const reader *rd, const char *name) {
    for (int i = 0; i < rd->n_bundle_lists; i++)
        if (strcmp(rd->bundle_lists[i], name) == 0) return 1;
    return 0;
}

/* "a/b/../c" -> "a/c", "a/./b" -> "a/b" (lexically; for messages and config sources). */
static void tidy_path(char *path) {
    char *parts[256];
    int n = 0, absolute = path[0] == '/';
    char copy[CONFIG_STR_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    for (char *save = NULL, *t = strtok_r(copy, "/", &save); t && n < 256; t = strtok_r(NULL, "/", &save)) {
        if (!strcmp(t, ".")) continue;
        if (!strcmp(t, "..") && n > 0 && strcmp(parts[n - 1], "..")) {
            n--;
            continue;
        }
        parts[n++] = t;
    }
    char out[CONFIG_STR_MAX] = "";
    size_t len = 0;
    if (absolute) out[len++] = '/', out[len] = 0;
    for (int i = 0; i < n; i++) len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", i ? "/" : "", parts[i]);
    if (!len) snprintf(out, sizeof out, ".");
    snprintf(path, CONFIG_STR_MAX, "%s", out);
}

static void canonical_dir(char *dir) {
    while (dir[0] == '.' && dir[1] == '/') memmove(dir, dir + 2, strlen(dir + 2) + 1);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = 0;
}

static int read_study(reader *rd, const char *dir_override) {
    study *s = rd->s;
    config_setting_t *root = config_root_setting(&rd->lc);
    const char *base = NULL, *dir = NULL;
    if (get_string(rd, root, "name", 1, &s->name) || get_string(rd, root, "base", 1, &base) ||
        get_string(rd, root, "dir", 0, &dir))
        return -1;
    if (!name_ok(s->name))
        return ps_fail(rd->err, "%s: name \"%s\": use letters, digits, '.', '-' and '_'", rd->path, s->name);

    /* base is relative to the study file's folder, like @include. */
    const char *slash = strrchr(rd->path, '/');
    if (base[0] == '/' || !slash) {
        s->base = base;
    } else {
        char joined[CONFIG_STR_MAX];
        snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - rd->path), rd->path, base);
        tidy_path(joined);
        s->base = arena_strdup(s, joined);
    }
    struct stat st;
    if (stat(s->base, &st) != 0)
        return fail_at(rd, config_setting_get_member(root, "base"), "base \"%s\": cannot read %s: %s", base, s->base,
                       strerror(errno));

    char d[CONFIG_STR_MAX];
    if (dir_override && *dir_override)
        snprintf(d, sizeof d, "%s", dir_override);
    else if (dir && *dir)
        snprintf(d, sizeof d, "%s", dir);
    else
        snprintf(d, sizeof d, "runs/studies/%s", s->name);
    canonical_dir(d);
    if (strpbrk(d, " \t\n'\"\\$`"))
        return ps_fail(
            rd->err, "study dir \"%s\": no spaces, quotes, '$' or backslashes, please (it goes into batch scripts)", d);
    s->dir = arena_strdup(s, d);

    if (get_strings(rd, root, "set", check_assignment, &s->n_set, &s->set)) return -1;

    study_resources defaults;
    resources_unset(&defaults);
    config_setting_t *res = config_setting_get_member(root, "resources");
    if (res && read_resources(rd, res, &defaults)) return -1;
    if (read_stages(rd, config_setting_get_member(root, "stages"), &defaults)) return -1;

    s->throttle = 0;
    s->max_array_size = 0;
    s->signal_seconds = 300;
    s->max_requeues = 20;
    s->mpi = "pmix";
    config_setting_t *sl = config_setting_get_member(root, "slurm");
    if (sl) {
        static const char *const keys[] = {"throttle", "max_array_size", "signal_seconds", "max_requeues", "mpi", NULL};
        if (config_setting_type(sl) != CONFIG_TYPE_GROUP) return fail_at(rd, sl, "slurm must be a group { ... }");
        const char *mpi = NULL;
        if (only_members(rd, sl, "slurm", keys) || get_int(rd, sl, "throttle", 0, 1000000, &s->throttle) ||
            get_int(rd, sl, "max_array_size", 0, 100000000, &s->max_array_size) ||
            get_int(rd, sl, "signal_seconds", 0, 65535, &s->signal_seconds) ||
            get_int(rd, sl, "max_requeues", 0, 100000, &s->max_requeues) || get_string(rd, sl, "mpi", 0, &mpi))
            return -1;
        if (mpi) {
            if (!name_ok(mpi)) return fail_at(rd, sl, "mpi = \"%s\" is not an srun --mpi plugin name", mpi);
            s->mpi = mpi;
        }
    }
    s->mfu = 0.4;
    s->peak_tflops = 989.0;
    s->peak_name = "H100 SXM bf16 dense";
    config_setting_t *es = config_setting_get_member(root, "estimate");
    if (es) {
        static const char *const keys[] = {"mfu", "peak_tflops", "peak", NULL};
        const char *peak = NULL;
        if (config_setting_type(es) != CONFIG_TYPE_GROUP) return fail_at(rd, es, "estimate must be a group { ... }");
        if (only_members(rd, es, "estimate", keys) || get_double(rd, es, "mfu", 0.0, 1.0, &s->mfu) ||
            get_double(rd, es, "peak_tflops", 0.0, 1e9, &s->peak_tflops) || get_string(rd, es, "peak", 0, &peak))
            return -1;
        if (peak) s->peak_name = peak;
    }

    config_setting_t *axes = config_setting_get_member(root, "axes"), *grids = config_setting_get_member(root, "grids");
    if (axes && grids) return fail_at(rd, grids, "a study has either axes (one grid) or grids, not both");
    if (grids) {
        if (config_setting_type(grids) != CONFIG_TYPE_LIST || config_setting_length(grids) == 0)
            return fail_at(rd, grids, "grids must be a non-empty list ( { name = ...; axes = ( ... ); }, ... )");
        s->n_grids = config_setting_length(grids);
        if (!(s->grids = arena_alloc(s, (size_t)s->n_grids * sizeof *s->grids))) return OOM(rd->err);
        for (int i = 0; i < s->n_grids; i++) {
            static const char *const keys[] = {"name", "axes", NULL};
            config_setting_t *g = config_setting_get_elem(grids, (unsigned)i);
            if (config_setting_type(g) != CONFIG_TYPE_GROUP) return fail_at(rd, g, "grid %d must be a group", i + 1);
            if (only_members(rd, g, "a grid", keys) || get_string(rd, g, "name", 0, &s->grids[i].name)) return -1;
            config_setting_t *ga = config_setting_get_member(g, "axes");
            if (!ga) return fail_at(rd, g, "grid %d has no axes", i + 1);
            if (read_grid(rd, ga, &s->grids[i])) return -1;
        }
    } else {
        s->n_grids = 1;
        if (!(s->grids = arena_alloc(s, sizeof *s->grids))) return OOM(rd->err);
        if (axes && read_grid(rd, axes, &s->grids[0])) return -1;
    }

    /* Unknown top-level settings (bundle lists are known once the axes are read). */
    static const char *const top[] = {"name",   "base",      "dir",   "set",      "axes", "grids",
                                      "stages", "resources", "slurm", "estimate", NULL};
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(m);
        int ok = is_bundle_list(rd, name);
        for (const char *const *t = top; *t && !ok; t++) ok = strcmp(*t, name) == 0;
        if (!ok)
            return fail_at(rd, m,
                           "unknown setting '%s' (a study has name, base, dir, set, axes or grids, stages, "
                           "resources, slurm, estimate, and the bundle lists its axes name)",
                           name);
    }
    return expand(rd);
}

int study_load(study *s, const char *path, const char *dir_override, ps_error *err) {
    memset(s, 0, sizeof *s);
    if (!path) return ps_fail(err, "study_load: no path");
    reader rd = {.s = s, .path = path, .err = err};
    if (!(s->path = arena_strdup(s, path))) return OOM(err);
    char incdir[CONFIG_STR_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(incdir, sizeof incdir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path) snprintf(incdir, sizeof incdir, "/");
    config_init(&rd.lc);
    config_set_include_dir(&rd.lc, incdir);
    errno = 0;
    int rc;
    if (!config_read_file(&rd.lc, path)) {
        if (config_error_type(&rd.lc) == CONFIG_ERR_FILE_IO)
            rc = ps_fail(err, "%s: cannot read study file: %s", path, errno ? strerror(errno) : "I/O error");
        else
            rc = ps_fail(err, "%s:%d: %s", config_error_file(&rd.lc) ? config_error_file(&rd.lc) : path,
                         config_error_line(&rd.lc), config_error_text(&rd.lc));
    } else {
        rc = read_study(&rd, dir_override);
    }
    config_destroy(&rd.lc);
    if (rc) study_free(s);
    return rc;
}

/* ------------------------------------------------------------------ small helpers */

void study_path(const study *s, char *buf, size_t cap, const char *fmt, ...) {
    int n = snprintf(buf, cap, "%s/", s->dir);
    if (n < 0 || (size_t)n >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
}

int study_stage_done(const study *s, const study_run *r, int stage) {
    char path[CONFIG_STR_MAX * 2];
    snprintf(path, sizeof path, "%s/%s/%s", r->dir, s->stages[stage].name, s->stages[stage].done_file);
    return access(path, F_OK) == 0;
}

const char *study_state_name(study_state st) {
    switch (st) {
    case STUDY_PENDING: return "pending";
    case STUDY_RUNNING: return "running";
    case STUDY_DONE: return "done";
    case STUDY_FAILED: return "failed";
    case STUDY_PREEMPTED: return "preempted";
    case STUDY_BLOCKED: return "blocked";
    }
    return "?";
}
