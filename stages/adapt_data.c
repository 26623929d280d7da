/* adapt_data.c - the samples of an adaptation stage (adapt_data.h). */
#include "adapt_data.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_model.h"
#include "rng.h"

#define MAX_TURNS 64

static int add_bad(adapt_data *d, const char *id, const char *why, ps_error *err) {
    char **b = realloc(d->bad, (size_t)(d->n_bad + 1) * sizeof *b);
    if (!b) return ps_fail(err, "out of memory");
    d->bad = b;
    size_t n = strlen(id) + strlen(why) + 3;
    if (!(b[d->n_bad] = malloc(n))) return ps_fail(err, "out of memory");
    snprintf(b[d->n_bad], n, "%s: %s", id, why);
    d->n_bad++;
    return 0;
}

/* The features file of an image set, opened on first use. */
static int set_index(adapt_data *d, const run_config *cfg, const char *set, ps_error *err) {
    for (int i = 0; i < d->n_sets; i++)
        if (!strcmp(d->set_names[i], set)) return i;
    if (strchr(set, '/') || !set[0]) return ps_fail(err, "image_set '%s' is not a set name", set);
    char path[2 * CONFIG_STR_MAX];
    snprintf(path, sizeof path, "%s/%s.h5", cfg->adapt.features, set);
    features_file *f;
    if (features_open(&f, path, NULL, 0, err)) return ps_wrap(err, "adapt.features (image_set %s)", set);
    const features_meta *m = features_meta_of(f);
    if (d->n_sets && (strcmp(m->encoder, d->meta.encoder) || m->width != d->width ||
                      strcmp(m->weights_sha256, d->meta.weights_sha256))) {
        ps_fail(err, "%s: encoder %s (width %d) but %s/%s.h5 has %s (width %d): one encoder per stage", path,
                m->encoder, m->width, cfg->adapt.features, d->set_names[0], d->meta.encoder, d->width);
        features_free(f);
        return -1;
    }
    features_file **files = realloc(d->files, (size_t)(d->n_sets + 1) * sizeof *files);
    char **names = realloc(d->set_names, (size_t)(d->n_sets + 1) * sizeof *names);
    if (files) d->files = files;
    if (names) d->set_names = names;
    if (!files || !names || !(names[d->n_sets] = strdup(set))) {
        features_free(f);
        return ps_fail(err, "out of memory");
    }
    files[d->n_sets] = f;
    if (!d->n_sets) {
        d->meta = *m;
        d->width = m->width;
    }
    return d->n_sets++;
}

static const char *str_field(json_object *o, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
    return json_object_get_string(v);
}

/* The turns of a record; *why says what is wrong (0 turns). */
static int read_turns(json_object *rec, chat_turn *turns, const char **why) {
    json_object *conv;
    if (!json_object_object_get_ex(rec, "conversations", &conv) || !json_object_is_type(conv, json_type_array)) {
        *why = "no conversations list";
        return 0;
    }
    int n = (int)json_object_array_length(conv);
    if (n < 1 || n > MAX_TURNS) {
        *why = n < 1 ? "empty conversations" : "more than 64 turns";
        return 0;
    }
    for (int i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(conv, i);
        const char *from = json_object_is_type(t, json_type_object) ? str_field(t, "from") : NULL;
        const char *value = from ? str_field(t, "value") : NULL;
        if (!value || (strcmp(from, "human") && strcmp(from, "gpt"))) {
            *why = "a turn without from = human|gpt and a string value";
            return 0;
        }
        turns[i].human = !strcmp(from, "human");
        turns[i].text = value;
    }
    return n;
}

/* The first human turn without its <image> mark (and one newline after it). */
static char *withhold(const char *text) {
    const char *m = strstr(text, CHAT_IMAGE_MARK);
    if (!m) return strdup(text);
    const char *after = m + strlen(CHAT_IMAGE_MARK);
    if (*after == '\n') after++;
    size_t a = (size_t)(m - text), b = strlen(after);
    char *out = malloc(a + b + 1);
    if (!out) return NULL;
    memcpy(out, text, a);
    memcpy(out + a, after, b + 1);
    return out;
}

/* One line: a good sample appended to d, or a bad one counted. */
static int load_line(adapt_data *d, const run_config *cfg, const chat_template *tpl, chat_style style, int blind,
                     const char *line, int64_t lineno, ps_error *err) {
    char where[64];
    snprintf(where, sizeof where, "line %lld", (long long)lineno);
    json_object *rec = json_tokener_parse(line);
    if (!rec || !json_object_is_type(rec, json_type_object)) {
        json_object_put(rec);
        return add_bad(d, where, "not a JSON object", err);
    }
    const char *id = str_field(rec, "id"), *image = str_field(rec, "image"), *set = str_field(rec, "image_set");
    const char *why = NULL;
    chat_turn turns[MAX_TURNS];
    int n_turns = 0, rc = 0, has_image = image != NULL && !blind, fi = -1, row = -1;
    char *stripped = NULL;
    if (!id) why = "no id";
    else if (image && !set) why = "an image without image_set";
    else n_turns = read_turns(rec, turns, &why);
    if (!why && image && blind && turns[0].human) {
        if (!(stripped = withhold(turns[0].text))) rc = ps_fail(err, "out of memory");
        turns[0].text = stripped;
    }
    if (!rc && !why && has_image) {
        if ((fi = set_index(d, cfg, set, err)) < 0) rc = -1;
        else if ((row = features_find(d->files[fi], image)) < 0)
            rc = ps_fail(err, "%s (%s): picture '%s' is not in %s/%s.h5 (features of another image set?)",
                         cfg->adapt.data, id, image, cfg->adapt.features, set);
        else if (!features_valid(d->files[fi], row))
            why = "its picture failed to encode (/valid = 0)";
    }
    adapt_sample s = {0};
    ps_error terr; /* a template failure is the sample's, not the stage's */
    if (!rc && !why) {
        int v = has_image ? cfg->adapt.visual_tokens : 0;
        if (chat_template_apply(tpl, style, turns, n_turns, has_image, 0, &s.tok, &terr))
            why = terr.msg;
        else if (mm_sample_targets(&s.tok, v, cfg->train.seq_len) == 0)
            why = "its answer is cut away by truncation at train.seq_len";
    }
    if (!rc && why) rc = add_bad(d, id ? id : where, why, err);
    else if (!rc) {
        adapt_sample *grown = realloc(d->s, (size_t)(d->n + 1) * sizeof *grown);
        if (!grown || !(s.id = strdup(id))) rc = ps_fail(err, "out of memory");
        if (grown) d->s = grown;
        if (!rc) {
            s.set = has_image ? fi : -1;
            s.line = (int)(lineno - 1);
            s.row = row;
            d->s[d->n++] = s;
            d->visual += has_image;
            s.tok = (chat_tokens){0};
        }
    }
    chat_tokens_free(&s.tok);
    free(stripped);
    json_object_put(rec);
    return rc;
}

static int check_bad(const adapt_data *d, const run_config *cfg, ps_error *err) {
    double share = d->lines ? (double)d->n_bad / (double)d->lines : 0;
    if (d->n == 0) return ps_fail(err, "%s: no usable sample in %lld lines", cfg->adapt.data, (long long)d->lines);
    if (share <= cfg->adapt.max_bad) return 0;
    char list[1400] = "";
    size_t at = 0;
    for (int i = 0; i < d->n_bad && i < 20 && at < sizeof list - 200; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%.150s", i ? "; " : "", d->bad[i]);
    return ps_fail(err, "%s: %d of %lld samples (%.2f%%) are broken or cut away, more than adapt.max_bad = %g: %s%s",
                   cfg->adapt.data, d->n_bad, (long long)d->lines, 100 * share, cfg->adapt.max_bad, list,
                   d->n_bad > 20 ? " ..." : "");
}

int adapt_data_load(adapt_data *d, const run_config *cfg, const chat_template *tpl, chat_style style,
                    int withhold_images, ps_error *err) {
    memset(d, 0, sizeof *d);
    d->order_epoch = -1;
    FILE *f = fopen(cfg->adapt.data, "r");
    if (!f) return ps_fail(err, "adapt.data: cannot open %s", cfg->adapt.data);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (cfg->adapt.max_samples == 0 || d->lines < cfg->adapt.max_samples) &&
           (len = getline(&line, &cap, f)) >= 0) {
        if (len <= 1 && (len == 0 || line[0] == '\n')) continue;
        d->lines++;
        rc = load_line(d, cfg, tpl, style, withhold_images, line, d->lines, err);
    }
    free(line);
    fclose(f);
    if (!rc) rc = check_bad(d, cfg, err);
    d->batch = cfg->adapt.batch;
    d->seed = (uint64_t)cfg->train.seed;
    if (rc) adapt_data_free(d);
    return rc;
}

void adapt_data_free(adapt_data *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->s[i].id);
        chat_tokens_free(&d->s[i].tok);
    }
    for (int i = 0; i < d->n_bad; i++) free(d->bad[i]);
    for (int i = 0; i < d->n_sets; i++) {
        features_free(d->files[i]);
        free(d->set_names[i]);
    }
    free(d->s);
    free(d->bad);
    free(d->files);
    free(d->set_names);
    free(d->order);
    free(d->mb_start);
    memset(d, 0, sizeof *d);
}

static int n_megabatches(const adapt_data *d) {
    int vis = d->visual, lang = d->n - d->visual, b = d->batch;
    return vis / b + lang / b + (vis % b + lang % b > 0);
}

int64_t adapt_total_steps(const adapt_data *d, int epochs) { return (int64_t)n_megabatches(d) * epochs; }

static void shuffle(int *a, int n, uint64_t key) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(key, (uint64_t)i, (uint64_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* The megabatches of one epoch (see the header). */
static int build_epoch(adapt_data *d, int64_t epoch, ps_error *err) {
    int n = d->n, b = d->batch, nm = n_megabatches(d);
    int *vis = malloc((size_t)n * sizeof *vis), *lang = malloc((size_t)n * sizeof *lang);
    int *mbs = malloc((size_t)(nm + 1) * sizeof *mbs);
    if (!d->order) d->order = malloc((size_t)n * sizeof *d->order);
    if (!d->mb_start) d->mb_start = malloc((size_t)(nm + 1) * sizeof *d->mb_start);
    if (!vis || !lang || !mbs || !d->order || !d->mb_start) {
        free(vis);
        free(lang);
        free(mbs);
        return ps_fail(err, "out of memory for the sample order");
    }
    int nv = 0, nl = 0;
    for (int i = 0; i < n; i++) {
        if (d->s[i].set >= 0) vis[nv++] = i;
        else lang[nl++] = i;
    }
    char purpose[64];
    snprintf(purpose, sizeof purpose, "adapt.order.visual.%lld", (long long)epoch);
    shuffle(vis, nv, rng_key(d->seed, purpose));
    snprintf(purpose, sizeof purpose, "adapt.order.language.%lld", (long long)epoch);
    shuffle(lang, nl, rng_key(d->seed, purpose));
    /* Full megabatches: ids 0..nv/b-1 visual, then language; shuffled. */
    int full = nv / b + nl / b;
    for (int i = 0; i < full; i++) mbs[i] = i;
    snprintf(purpose, sizeof purpose, "adapt.order.megabatches.%lld", (long long)epoch);
    shuffle(mbs, full, rng_key(d->seed, purpose));
    int at = 0;
    for (int k = 0; k < full; k++) {
        d->mb_start[k] = at;
        int m = mbs[k];
        const int *src = m < nv / b ? vis + (size_t)m * b : lang + (size_t)(m - nv / b) * b;
        memcpy(d->order + at, src, (size_t)b * sizeof *src);
        at += b;
    }
    if (full < nm) { /* the remainders, pictures first */
        d->mb_start[full] = at;
        for (int i = nv / b * b; i < nv; i++) d->order[at++] = vis[i];
        for (int i = nl / b * b; i < nl; i++) d->order[at++] = lang[i];
    }
    d->mb_start[nm] = at;
    d->n_megabatches = nm;
    d->order_epoch = epoch;
    free(vis);
    free(lang);
    free(mbs);
    return 0;
}

int adapt_order_step(adapt_data *d, int64_t step, const int **first, int *n, ps_error *err) {
    int nm = n_megabatches(d);
    int64_t epoch = step / nm;
    int k = (int)(step % nm);
    if (epoch != d->order_epoch && build_epoch(d, epoch, err)) return -1;
    *first = d->order + d->mb_start[k];
    *n = d->mb_start[k + 1] - d->mb_start[k];
    return 0;
}

int adapt_data_features(adapt_data *d, int i, int tokens, float *out, ps_error *err) {
    const adapt_sample *s = &d->s[i];
    if (s->set < 0) return ps_fail(err, "sample %s has no picture", s->id);
    if (features_read_tokens(d->files[s->set], s->row, tokens, out, err))
        return ps_wrap(err, "the features of sample %s", s->id);
    return 0;
}
