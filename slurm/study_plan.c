/* study_plan.c - each run's config, its compute, and `presight study plan`:
 * the numbered list, STUDY/runs.tsv and STUDY/runs/<id>/config.cfg. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "study.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "plan.h"
#include "study_internal.h"

int study_mkdirs(const char *path, ps_error *err) {
    char buf[CONFIG_STR_MAX * 2];
    if (strlen(path) >= sizeof buf) return ps_fail(err, "%.64s...: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return ps_fail(err, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return ps_fail(err, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

/* The overrides of a run plus run.dir=<run dir>/<first stage>, in a malloc'd vector. */
static char **run_overrides(const study *s, const study_run *r, int *n) {
    char **v = malloc((size_t)(r->n_overrides + 1) * sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < r->n_overrides; i++) v[i] = (char *)r->overrides[i];
    if (asprintf(&v[r->n_overrides], "run.dir=%s/%s", r->dir, s->stages[0].name) < 0) {
        free(v);
        return NULL;
    }
    *n = r->n_overrides + 1;
    return v;
}

static void free_overrides(char **v, int n) {
    if (!v) return;
    free(v[n - 1]);
    free(v);
}

int study_run_config(const study *s, const study_run *r, run_config *cfg, ps_error *err) {
    int n = 0;
    char **v = run_overrides(s, r, &n);
    if (!v) return ps_fail(err, "out of memory");
    int rc = config_load(cfg, s->base, n, v, err);
    free_overrides(v, n);
    if (rc) {
        char label[512];
        study_run_label(s, r, label, sizeof label);
        return ps_wrap(err, "run %d (id %s: %s)", r->index, r->id, label);
    }
    return 0;
}

int study_run_config_lenient(const study *s, const study_run *r, run_config *cfg, char *skipped, size_t cap,
                             ps_error *err) {
    /* The base alone, checked for the model only (its data or budget may come from the runs). */
    if (config_load_model(cfg, s->base, 0, NULL, err)) return -1;
    int n = 0;
    char **v = run_overrides(s, r, &n);
    if (!v) return ps_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        ps_error ignored;
        if (config_override(cfg, v[i], &ignored) == 0 || !skipped) continue;
        /* Record the key, once. */
        char key[160], probe[170], padded[4200];
        const char *eq = strchr(v[i], '=');
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - v[i]) : (int)strlen(v[i]), v[i]);
        snprintf(probe, sizeof probe, ", %s, ", key);
        snprintf(padded, sizeof padded, ", %s, ", skipped);
        if (strstr(padded, probe)) continue;
        size_t len = strlen(skipped);
        if (len + strlen(key) + 3 < cap) snprintf(skipped + len, cap - len, "%s%s", len ? ", " : "", key);
    }
    free_overrides(v, n);
    return 0;
}

int study_run_compute(const study *s, const study_run *r, const run_config *cfg, double *flops, double *tokens,
                      ps_error *err) {
    *flops = *tokens = 0;
    for (int k = 0; k < s->n_stages; k++) {
        if (strcmp(s->stages[k].command, "train") != 0) continue;
        double f, t;
        char note[8];
        if (study_stage_compute(s, r, cfg, k, &f, &t, note, sizeof note, err)) return -1;
        *flops += f;
        *tokens += t;
    }
    return 0;
}

/* arg with the placeholders of stage k of run r filled in (as the batch scripts do). */
static void fill_placeholders(const study *s, const study_run *r, int k, const char *arg, char *out, size_t cap) {
    const study_stage *st = &s->stages[k];
    size_t at = 0;
    out[0] = 0;
    while (*arg && at + 1 < cap) {
        char val[CONFIG_STR_MAX * 2] = "";
        const char *end = *arg == '{' ? strchr(arg, '}') : NULL;
        size_t n = end ? (size_t)(end - arg + 1) : 0;
        if (n == 8 && !strncmp(arg, "{config}", n)) snprintf(val, sizeof val, "%s/config.cfg", r->dir);
        else if (n == 5 && !strncmp(arg, "{dir}", n)) snprintf(val, sizeof val, "%s/%s", r->dir, st->name);
        else if (n == 5 && !strncmp(arg, "{run}", n)) snprintf(val, sizeof val, "%s", r->dir);
        else if (n == 5 && !strncmp(arg, "{dep}", n) && st->dep >= 0)
            snprintf(val, sizeof val, "%s/%s", r->dir, s->stages[st->dep].name);
        else if (n == 4 && !strncmp(arg, "{id}", n)) snprintf(val, sizeof val, "%s", r->id);
        else if (n == 7 && !strncmp(arg, "{index}", n)) snprintf(val, sizeof val, "%d", r->index);
        else n = 0;
        if (n) {
            at += (size_t)snprintf(out + at, cap - at, "%s", val);
            arg += n;
        } else {
            out[at++] = *arg++;
            out[at] = 0;
        }
        if (at >= cap) at = cap - 1;
    }
}

/* Stage k's arguments filled in; key=value ones into overrides (n), the first other one (a
 * config path) into path. Returns a malloc'd block holding both (free it). */
static char *stage_args(const study *s, const study_run *r, int k, char ***overrides, int *n, const char **path) {
    const study_stage *st = &s->stages[k];
    size_t each = CONFIG_STR_MAX * 2;
    char *block = malloc((size_t)(st->n_args ? st->n_args : 1) * (each + sizeof(char *)));
    if (!block) return NULL;
    char **v = (char **)block, *text = block + (size_t)(st->n_args ? st->n_args : 1) * sizeof(char *);
    *n = 0;
    *path = NULL;
    for (int i = 0; i < st->n_args; i++) {
        char *a = text + (size_t)i * each;
        fill_placeholders(s, r, k, st->args[i], a, each);
        if (strchr(a, '=')) v[(*n)++] = a;
        else if (!*path) *path = a;
    }
    *overrides = v;
    return block;
}

/* The adapt config of stage k on run r's model and data (cfg); *width 0 when the features
 * (not encoded yet) do not give the projector's width. */
static int adapt_stage_config(const study *s, const study_run *r, int k, const run_config *cfg, run_config *a,
                              ps_error *err) {
    char **over;
    int n;
    const char *path;
    char *block = stage_args(s, r, k, &over, &n, &path);
    if (!block) return ps_fail(err, "out of memory");
    /* {config} is the run's own config (written after planning): cfg itself */
    char own[CONFIG_STR_MAX * 2];
    snprintf(own, sizeof own, "%s/config.cfg", r->dir);
    int rc = 0;
    struct stat st_cfg;
    if (path && strcmp(path, own) && (stat(path, &st_cfg) || !S_ISREG(st_cfg.st_mode)))
        rc = ps_fail(err, "stage %s: %s is not a regular file", s->stages[k].name, path);
    else if (path && !strcmp(path, own)) {
        *a = *cfg;
        for (int i = 0; i < n && !rc; i++) rc = config_override(a, over[i], err);
    } else {
        rc = path ? config_load_model(a, path, n, over, err)
                  : ps_fail(err, "stage %s: no adapt config among its args", s->stages[k].name);
    }
    free(block);
    if (rc) return -1;
    a->model = cfg->model;
    a->data = cfg->data;
    return 0;
}

static int adapt_compute(const study *s, const study_run *r, const run_config *cfg, int k, double *flops,
                         double *tokens, char *note, size_t cap, ps_error *err) {
    run_config a;
    ps_error why = {{0}};
    if (adapt_stage_config(s, r, k, cfg, &a, &why)) { /* e.g. a config an earlier stage writes */
        snprintf(note, cap, "%s: not counted: %s", s->stages[k].name, why.msg);
        return 0;
    }
    char from[CONFIG_STR_MAX + 2200];
    int width = plan_adapt_resolve(&a, from, sizeof from, &why) ? 0 : a.adapt.encoder_width;
    /* model.* and data.*: adapt.init's when it names a run already there, else the run's own */
    plan_adapt_data d;
    if (plan_adapt_count(&a, &d, &why)) {
        snprintf(note, cap, "%s: not counted: %s", s->stages[k].name, why.msg);
        return 0;
    }
    model_layout L;
    if (model_layout_init(&L, &a.model, err)) return -1;
    plan_stage st = plan_stage_of(&a);
    if (width && plan_adapt_layout(&L, st, width, err)) {
        model_layout_free(&L);
        return -1;
    }
    if (!width) snprintf(note, cap, "%s: the projector not counted (no features yet to give its width)", s->stages[k].name);
    *tokens = d.rows * d.epochs;
    *flops = plan_train_flops(&L, st, a.train.seq_len, *tokens, d.visual_rows * d.epochs);
    model_layout_free(&L);
    return 0;
}

static int eval_compute(const study *s, const study_run *r, const run_config *cfg, int k, double *flops,
                        double *tokens, char *note, size_t cap, ps_error *err) {
    run_config e = *cfg;
    char **over;
    int n;
    const char *path;
    char *block = stage_args(s, r, k, &over, &n, &path);
    if (!block) return ps_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        ps_error ignored;
        if (!strncmp(over[i], "eval.", 5)) config_override(&e, over[i], &ignored);
    }
    free(block);
    /* pictures: the visual tokens of the last adapt stage before it */
    int visual = 0;
    for (int j = 0; j < k; j++) {
        run_config a;
        ps_error ignored;
        if (!strcmp(s->stages[j].command, "adapt") && !adapt_stage_config(s, r, j, cfg, &a, &ignored))
            visual = a.adapt.visual_tokens;
    }
    plan_eval_data d;
    ps_error why = {{0}};
    if (plan_eval_count(&e, visual, &d, &why)) {
        snprintf(note, cap, "%s: not counted: %s", s->stages[k].name, why.msg);
        return 0;
    }
    if (d.skipped_tasks) snprintf(note, cap, "%s: %ld task%s not counted (data not fetched?): %.300s", s->stages[k].name,
                                  d.skipped_tasks, d.skipped_tasks > 1 ? "s" : "", d.skipped);
    model_layout L;
    if (model_layout_init(&L, &cfg->model, err)) return -1;
    *tokens = d.tokens;
    *flops = plan_forward_flops(&L, cfg->model.context, d.tokens);
    model_layout_free(&L);
    return 0;
}

int study_stage_compute(const study *s, const study_run *r, const run_config *cfg, int k, double *flops,
                        double *tokens, char *note, size_t cap, ps_error *err) {
    *flops = *tokens = 0;
    note[0] = 0;
    const char *cmd = s->stages[k].command;
    if (!strcmp(cmd, "adapt")) return adapt_compute(s, r, cfg, k, flops, tokens, note, cap, err);
    if (!strcmp(cmd, "eval")) return eval_compute(s, r, cfg, k, flops, tokens, note, cap, err);
    if (strcmp(cmd, "train")) return 0;
    model_layout L;
    if (model_layout_init(&L, &cfg->model, err)) return -1;
    const train_config *t = &cfg->train;
    int seq = t->seq_len <= cfg->model.context ? t->seq_len : cfg->model.context;
    double world = (double)r->res[k].nodes * r->res[k].ranks_per_node;
    double per_step = (double)t->micro_batch * seq * t->grad_accum * world;
    *tokens = t->steps > 0 ? (double)t->steps * per_step : ceil((double)t->tokens / per_step) * per_step;
    *flops = model_train_flops(&L, seq, *tokens);
    model_layout_free(&L);
    return 0;
}

/* ------------------------------------------------------------------ formatting */

static void human_tokens(char *buf, size_t cap, double n) {
    if (n >= 1e12)
        snprintf(buf, cap, "%.3gT", n / 1e12);
    else if (n >= 1e9)
        snprintf(buf, cap, "%.3gB", n / 1e9);
    else if (n >= 1e6)
        snprintf(buf, cap, "%.3gM", n / 1e6);
    else if (n >= 1e3)
        snprintf(buf, cap, "%.3gk", n / 1e3);
    else
        snprintf(buf, cap, "%.0f", n);
}

static void gpu_hours(char *buf, size_t cap, double h) {
    if (h == 0)
        snprintf(buf, cap, "0");
    else if (h < 0.01)
        snprintf(buf, cap, "%.2g", h);
    else if (h < 100)
        snprintf(buf, cap, "%.2f", h);
    else
        snprintf(buf, cap, "%.0f", h);
}

int study_axis_columns(const study *s, const char **names, int max) {
    int n = 0;
    for (int g = 0; g < s->n_grids; g++)
        for (int a = 0; a < s->grids[g].n_axes; a++) {
            int seen = 0;
            for (int i = 0; i < n; i++) seen |= strcmp(names[i], s->grids[g].axes[a].name) == 0;
            if (!seen && n < max) names[n++] = s->grids[g].axes[a].name;
        }
    return n;
}

const char *study_run_value(const study *s, const study_run *r, const char *axis) {
    const study_grid *g = &s->grids[r->grid];
    for (int a = 0; a < g->n_axes; a++)
        if (strcmp(g->axes[a].name, axis) == 0) return g->axes[a].values[r->value[a]].name;
    return "-";
}

/* ------------------------------------------------------------------ files */

char *study_read_text(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *text = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return NULL;
            }
            text = t;
        }
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    text[len] = 0;
    return text;
}

/* Text without comment lines, for comparing configs written from different working directories. */
static void strip_comments(char *text) {
    char *out = text;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line + 1) : strlen(line);
        if (line[0] != '#') {
            memmove(out, line, n);
            out += n;
        }
        line += n;
    }
    *out = 0;
}

/* Whether run r has started (a stage dir or an attempts log exists). */
static int run_started(const study *s, const study_run *r) {
    char path[CONFIG_STR_MAX * 2];
    for (int k = 0; k < s->n_stages; k++) {
        snprintf(path, sizeof path, "%s/%s", r->dir, s->stages[k].name);
        if (access(path, F_OK) == 0) return 1;
        snprintf(path, sizeof path, "%s/%s.attempts", r->dir, s->stages[k].name);
        if (access(path, F_OK) == 0) return 1;
    }
    return 0;
}

static int write_run_config(const study *s, const study_run *r, const run_config *cfg, ps_error *err) {
    char path[CONFIG_STR_MAX * 2];
    if (study_mkdirs(r->dir, err)) return -1;
    snprintf(path, sizeof path, "%s/config.cfg", r->dir);
    char *fresh = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&fresh, &size);
    if (!mem) return ps_fail(err, "out of memory");
    int rc = run_config_write(cfg, mem, err);
    fclose(mem);
    if (rc) {
        free(fresh);
        return -1;
    }
    char *old = study_read_text(path);
    if (old) {
        strip_comments(old);
        strip_comments(fresh);
        int same = strcmp(old, fresh) == 0;
        free(old);
        free(fresh);
        if (same) return 0;
        if (run_started(s, r)) {
            char label[512];
            study_run_label(s, r, label, sizeof label);
            return ps_fail(err,
                           "run %d (id %s: %s) has started, and its resolved config would change (%s differs from "
                           "what the study gives now): a started run keeps its config. Undo the change to the "
                           "study or its base config, or give the study another dir (--dir)",
                           r->index, r->id, label, path);
        }
    } else {
        free(fresh);
    }
    return run_config_write_file(cfg, path, err);
}

static int write_runs_tsv(const study *s, const char *path, ps_error *err) {
    char tmp[CONFIG_STR_MAX * 2 + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    fprintf(f, "# index\tid\trun dir (relative to the study dir)\toverrides\n");
    for (int i = 0; i < s->n_runs; i++) {
        const study_run *r = &s->runs[i];
        fprintf(f, "%d\t%s\truns/%s\t", r->index, r->id, r->id);
        for (int k = 0; k < r->n_overrides; k++) fprintf(f, "%s%s", k ? " " : "", r->overrides[k]);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) || bad) {
        unlink(tmp);
        return ps_fail(err, "%s: write failed", tmp);
    }
    if (rename(tmp, path)) return ps_fail(err, "%s: cannot rename into place: %s", path, strerror(errno));
    return 0;
}

int study_write_runs_tsv(const study *s, const char *path, ps_error *err) { return write_runs_tsv(s, path, err); }

/* ------------------------------------------------------------------ plan */

int study_plan(study *s, int validate, FILE *out, ps_error *err) {
    double *hours = calloc((size_t)s->n_runs + 1, sizeof *hours), *toks = calloc((size_t)s->n_runs + 1, sizeof *toks);
    char skipped[4096] = "";
    int rc = 0;
    if (!hours || !toks) {
        free(hours);
        free(toks);
        return ps_fail(err, "out of memory");
    }
    double peak = s->mfu * s->peak_tflops * 1e12;
    double total_h = 0, total_tokens = 0;
    /* every stage's compute, summed over the runs; the first note of each */
    double *st_tokens = calloc((size_t)s->n_stages, sizeof *st_tokens), *st_hours = calloc((size_t)s->n_stages, sizeof *st_hours);
    char (*st_note)[600] = calloc((size_t)s->n_stages, sizeof *st_note);
    if (!st_tokens || !st_hours || !st_note) rc = ps_fail(err, "out of memory");
    int global_batch_seqs = -1, mixed_batch = 0;
    for (int i = 0; i < s->n_runs && !rc; i++) {
        const study_run *r = &s->runs[i];
        run_config cfg;
        if (validate ? study_run_config(s, r, &cfg, err)
                     : study_run_config_lenient(s, r, &cfg, skipped, sizeof skipped, err)) {
            rc = -1;
            break;
        }
        double flops, tokens;
        if (study_run_compute(s, r, &cfg, &flops, &tokens, err)) {
            char label[512];
            study_run_label(s, r, label, sizeof label);
            rc = ps_wrap(err, "run %d (id %s: %s)", r->index, r->id, label);
            break;
        }
        for (int k = 0; k < s->n_stages && !rc; k++) {
            double f, t;
            char note[600];
            if (study_stage_compute(s, r, &cfg, k, &f, &t, note, sizeof note, err)) {
                rc = ps_wrap(err, "run %d (id %s), stage %s", r->index, r->id, s->stages[k].name);
                break;
            }
            st_tokens[k] += t;
            st_hours[k] += f / peak / 3600.0;
            if (note[0] && !st_note[k][0]) snprintf(st_note[k], sizeof st_note[k], "%s", note);
        }
        if (rc) break;
        hours[i] = flops / peak / 3600.0;
        toks[i] = tokens;
        total_h += hours[i];
        total_tokens += tokens;
        for (int k = 0; k < s->n_stages; k++) {
            if (strcmp(s->stages[k].command, "train") != 0) continue;
            int seqs = cfg.train.micro_batch * cfg.train.grad_accum * r->res[k].nodes * r->res[k].ranks_per_node;
            if (global_batch_seqs < 0)
                global_batch_seqs = seqs;
            else if (seqs != global_batch_seqs)
                mixed_batch = 1;
        }
        if (validate && write_run_config(s, r, &cfg, err)) rc = -1;
    }
    if (!rc && validate) {
        char path[CONFIG_STR_MAX * 2];
        if (study_mkdirs(s->dir, err)) rc = -1;
        study_path(s, path, sizeof path, "runs.tsv");
        if (!rc && write_runs_tsv(s, path, err)) rc = -1;
    }
    if (!rc && out) {
        const char *axes[64];
        int n_axes = study_axis_columns(s, axes, 64);
        int w_axis[64], w_dir = 7;
        for (int a = 0; a < n_axes; a++) {
            w_axis[a] = (int)strlen(axes[a]);
            for (int i = 0; i < s->n_runs; i++) {
                int n = (int)strlen(study_run_value(s, &s->runs[i], axes[a]));
                if (n > w_axis[a]) w_axis[a] = n;
            }
            if (w_axis[a] > 40) w_axis[a] = 40;
        }
        for (int i = 0; i < s->n_runs; i++)
            if ((int)strlen(s->runs[i].dir) > w_dir) w_dir = (int)strlen(s->runs[i].dir);
        fprintf(out, "study %s: %d run%s x %d stage%s (", s->name, s->n_runs, s->n_runs == 1 ? "" : "s", s->n_stages,
                s->n_stages == 1 ? "" : "s");
        for (int k = 0; k < s->n_stages; k++)
            fprintf(out, "%s%s%s%s", k ? ", " : "", s->stages[k].name, s->stages[k].dep >= 0 ? " after " : "",
                    s->stages[k].dep >= 0 ? s->stages[s->stages[k].dep].name : "");
        fprintf(out, "), base %s, dir %s\n", s->base, s->dir);
        if (s->n_duplicates)
            fprintf(out, "(%d run%s of later grids had the same assignments as an earlier one and %s listed once)\n",
                    s->n_duplicates, s->n_duplicates == 1 ? "" : "s", s->n_duplicates == 1 ? "is" : "are");
        int w_index = s->n_runs > 1000 ? 5 : 3;
        fprintf(out, "%*s  %-*s", w_index, "#", STUDY_ID_LEN, "id");
        for (int a = 0; a < n_axes; a++) fprintf(out, "  %-*s", w_axis[a], axes[a]);
        fprintf(out, "  %-*s  %8s  %10s\n", w_dir, "run dir", "tokens", "GPU-hours");
        for (int i = 0; i < s->n_runs; i++) {
            const study_run *r = &s->runs[i];
            char t[32], h[32];
            human_tokens(t, sizeof t, toks[i]);
            gpu_hours(h, sizeof h, hours[i]);
            fprintf(out, "%*d  %-*s", w_index, r->index, STUDY_ID_LEN, r->id);
            for (int a = 0; a < n_axes; a++)
                fprintf(out, "  %-*.*s", w_axis[a], w_axis[a], study_run_value(s, r, axes[a]));
            fprintf(out, "  %-*s  %8s  %10s\n", w_dir, r->dir, t, h);
        }
        char t[32], h[32];
        human_tokens(t, sizeof t, total_tokens);
        gpu_hours(h, sizeof h, total_h);
        fprintf(out,
                "total: %d runs, %s training tokens, %s GPU-hours (model FLOPs, 6N + attention, at %.0f%% MFU of "
                "%.0f TFLOP/s, %s; train stages only)\n",
                s->n_runs, t, h, s->mfu * 100, s->peak_tflops, s->peak_name);
        fprintf(out, "per stage, summed over the runs (model FLOPs at the same MFU; pretrain and adapt 6N per "
                     "trained weight, align's frozen LLM 4N, eval forward 2N; see stages/plan.h):\n");
        double all_h = 0;
        for (int k = 0; k < s->n_stages; k++) {
            char t[32], h[32];
            human_tokens(t, sizeof t, st_tokens[k]);
            gpu_hours(h, sizeof h, st_hours[k]);
            all_h += st_hours[k];
            fprintf(out, "  %-16s %-7s %8s tokens  %10s GPU-hours%s%s\n", s->stages[k].name, s->stages[k].command, t, h,
                    st_note[k][0] ? "  note: " : "", st_note[k]);
        }
        gpu_hours(h, sizeof h, all_h);
        fprintf(out, "  all stages: %s GPU-hours\n", h);
        if (mixed_batch)
            fprintf(out, "note: the global batch (micro_batch x grad_accum x ranks) differs between runs\n");
        else if (global_batch_seqs > 0 && s->n_runs)
            fprintf(out, "global batch: %d sequences per step in every run (micro_batch x grad_accum x ranks)\n",
                    global_batch_seqs);
        if (validate) {
            char path[CONFIG_STR_MAX * 2];
            study_path(s, path, sizeof path, "runs.tsv");
            fprintf(out, "wrote %s and each run's config.cfg\n", path);
        } else {
            fprintf(out, "not validated (--no-validate): nothing written");
            if (skipped[0]) fprintf(out, "; overrides this build does not accept were left out: %s", skipped);
            fputc('\n', out);
        }
    }
    free(hours);
    free(toks);
    free(st_tokens);
    free(st_hours);
    free(st_note);
    return rc;
}
