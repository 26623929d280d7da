/* plan_adapt.c - what an adapt stage trains on, counted from adapt.data
 * (plan.h, plan_adapt_count). */
#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_template.h"
#include "feature_file.h"
#include "mm_model.h"
#include "plan.h"

#define PLAN_MAX_TURNS 64

/* The turns of a LLaVA record, 0 when it has none usable. */
static int record_turns(json_object *rec, chat_turn *turns) {
    json_object *conv;
    if (!json_object_object_get_ex(rec, "conversations", &conv) || !json_object_is_type(conv, json_type_array)) return 0;
    int n = (int)json_object_array_length(conv);
    if (n > PLAN_MAX_TURNS) return 0;
    for (int i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(conv, i), *from, *value;
        if (!json_object_object_get_ex(t, "from", &from) || !json_object_object_get_ex(t, "value", &value) ||
            !json_object_is_type(value, json_type_string))
            return 0;
        turns[i].human = !strcmp(json_object_get_string(from), "human");
        turns[i].text = json_object_get_string(value);
    }
    return n;
}

/* Text without its first <image> mark and the newline after it (blind
 * withholds the picture; adapt_data.c does the same). */
static char *without_mark(const char *text) {
    char *out = strdup(text);
    char *m = out ? strstr(out, CHAT_IMAGE_MARK) : NULL;
    if (m) {
        const char *after = m + strlen(CHAT_IMAGE_MARK);
        if (*after == '\n') after++;
        memmove(m, after, strlen(after) + 1);
    }
    return out;
}

/* One line into d; a line that cannot be used is counted bad. */
static void count_line(plan_adapt_data *d, const run_config *cfg, const chat_template *tpl, plan_stage st,
                       const char *line) {
    json_object *rec = json_tokener_parse(line), *image;
    chat_turn turns[PLAN_MAX_TURNS];
    int n_turns = rec && json_object_is_type(rec, json_type_object) ? record_turns(rec, turns) : 0;
    if (!n_turns) {
        d->bad++;
        json_object_put(rec);
        return;
    }
    int picture = json_object_object_get_ex(rec, "image", &image) && json_object_is_type(image, json_type_string);
    char *stripped = NULL;
    if (picture && st == PLAN_BLIND && turns[0].human) turns[0].text = stripped = without_mark(turns[0].text);
    int has_image = picture && st != PLAN_BLIND;
    chat_tokens t = {0};
    ps_error ignored;
    if (!turns[0].text ||
        chat_template_apply(tpl, st == PLAN_ALIGN ? CHAT_PLAIN : CHAT_CHAT, turns, n_turns, has_image, 0, &t, &ignored)) {
        d->bad++;
    } else {
        int T = cfg->train.seq_len, V = has_image ? cfg->adapt.visual_tokens : 0;
        int rows = t.n + V < T ? t.n + V : T, at = t.image_at >= 0 ? t.image_at : 0;
        int visual = V && at < T ? (at + V <= T ? V : T - at) : 0;
        d->samples++;
        d->visual += has_image;
        d->text_tokens += t.n;
        d->rows += rows;
        d->visual_rows += visual;
    }
    chat_tokens_free(&t);
    free(stripped);
    json_object_put(rec);
}

int plan_adapt_count(const run_config *cfg, plan_adapt_data *d, ps_error *err) {
    memset(d, 0, sizeof *d);
    plan_stage st = plan_stage_of(cfg);
    if (st == PLAN_PRETRAIN) return ps_fail(err, "adapt.data is empty: not an adapt config");
    struct stat st_data;
    if (stat(cfg->adapt.data, &st_data) || !S_ISREG(st_data.st_mode)) /* not /dev/zero, a fifo, a folder */
        return ps_fail(err, "adapt.data %s: not a regular file", cfg->adapt.data);
    chat_template tpl;
    if (chat_template_for_run(&tpl, cfg, err)) return ps_wrap(err, "the pretrained run's text encoding");
    FILE *f = fopen(cfg->adapt.data, "r");
    if (!f) {
        chat_template_free(&tpl);
        return ps_fail(err, "adapt.data %s: cannot open", cfg->adapt.data);
    }
    char *line = NULL;
    size_t cap = 0;
    long lines = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (cfg->adapt.max_samples > 0 && lines >= cfg->adapt.max_samples) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue; /* blank lines are not samples */
        lines++;
        count_line(d, cfg, &tpl, st, line);
    }
    free(line);
    fclose(f);
    chat_template_free(&tpl);
    if (!d->samples) return ps_fail(err, "adapt.data %s: no usable sample in %ld lines", cfg->adapt.data, lines);
    d->epochs = cfg->adapt.epochs;
    /* adapt_data's megabatches: full ones of each modality, then the two remainders together. */
    long b = cfg->adapt.batch, vis = d->visual, lang = d->samples - d->visual;
    d->steps = (vis / b + lang / b + (vis % b + lang % b > 0)) * d->epochs;
    return 0;
}

/* The token width of the first <set>.h5 in folder dir, 0 when none opens. */
static int features_width(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int width = 0;
    while (d && !width && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".h5")) continue;
        char path[CONFIG_STR_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        features_file *f;
        ps_error ignored;
        if (features_open(&f, path, NULL, 0, &ignored)) continue;
        width = features_meta_of(f)->width;
        features_free(f);
    }
    if (d) closedir(d);
    return width;
}

int plan_adapt_resolve(run_config *cfg, char *from, size_t size, ps_error *err) {
    run_config init;
    char weights[CONFIG_STR_MAX + 16];
    ps_error why = {{0}};
    if (cfg->adapt.init[0] && !mm_run_resolve(cfg->adapt.init, weights, sizeof weights, &init, &why)) {
        cfg->model = init.model;
        cfg->data = init.data;
        if (!cfg->adapt.encoder_width) cfg->adapt.encoder_width = init.adapt.encoder_width;
        snprintf(from, size, "model.* and data.* of adapt.init %s", cfg->adapt.init);
    } else {
        snprintf(from, size, "model.* and data.* of this config: %s", cfg->adapt.init[0] ? why.msg : "adapt.init is empty");
    }
    if (!cfg->adapt.encoder_width && cfg->adapt.features[0]) cfg->adapt.encoder_width = features_width(cfg->adapt.features);
    if (!cfg->adapt.encoder_width)
        return ps_fail(err, "the projector's input width is unknown: adapt.features (%s) holds no features file and "
                            "adapt.init is not an adapted run; give adapt.encoder_width=N",
                       cfg->adapt.features[0] ? cfg->adapt.features : "\"\"");
    return 0;
}
