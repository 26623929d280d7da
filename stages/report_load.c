/* report_load.c - a report's runs: found on disk, their files read and checked, their
 * measures (report.h) computed from results.jsonl, predictions.jsonl and metrics.jsonl. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "report.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

static const char *const names[RM_COUNT] = {
    "ppl", "byte_ppl", "lang_acc", "vqa_general", "vqa_knowledge", "vqa_ocr_chart", "vqa_vision_centric", "vqa_overall",
    "exist_small", "exist_medium", "exist_large", "exist_overall", "alignment"};
static const char *const titles[RM_COUNT] = {
    "word perplexity", "byte perplexity", "language acc", "General", "Knowledge", "OCR & Chart", "Vision-Centric", "overall VQA",
    "small", "medium", "large", "overall", "alignment (mutual kNN)"};

const char *report_measure_name(int m) { return names[m]; }
const char *report_measure_title(int m) { return titles[m]; }
int report_measure_itemwise(int m) { return m >= RM_VQA_GENERAL && m <= RM_EXIST_OVERALL; }

void report_opts_default(report_opts *o) {
    o->iters = 1000;
    o->level = 0.95;
    o->seed = 1234;
    o->mixtures_dir = "config/mixtures";
    o->paper_dir = "config/paper";
}

/* ------------------------------------------------------------------ finding files */

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* dir/name, dir/<prefer>/name, or dir/<sub>/name for the first sub (in name order) that has
 * it; 0 if found. prefer: the stage that owns the file (eval's results, pretrain's loss:
 * the adapt stages write a metrics.jsonl too). */
static int find_file_in(const char *dir, const char *prefer, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", dir, name);
    if (is_file(out)) return 0;
    snprintf(out, cap, "%s/%s/%s", dir, prefer, name);
    if (is_file(out)) return 0;
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), found = -1;
    for (int i = 0; i < n; i++) {
        if (found && list[i]->d_name[0] != '.') {
            snprintf(out, cap, "%s/%s/%s", dir, list[i]->d_name, name);
            if (is_file(out)) found = 0;
        }
        free(list[i]);
    }
    if (n >= 0) free(list);
    return found;
}

/* ------------------------------------------------------------------ items */

typedef struct keyed {
    char *key;
    double x;
} keyed;

static int keyed_cmp(const void *a, const void *b) {
    return strcmp(((const keyed *)a)->key, ((const keyed *)b)->key);
}

static void items_free(report_items *it) {
    for (size_t i = 0; i < it->n; i++) free(it->key[i]);
    free(it->key), free(it->x);
    memset(it, 0, sizeof *it);
}

/* Sorts the n pairs into it (taking the keys). */
static int items_set(report_items *it, keyed *k, size_t n, ps_error *err) {
    qsort(k, n, sizeof *k, keyed_cmp);
    it->key = malloc(sizeof *it->key * (n ? n : 1));
    it->x = malloc(sizeof *it->x * (n ? n : 1));
    if (!it->key || !it->x) return ps_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) it->key[i] = k[i].key, it->x[i] = k[i].x;
    it->n = n;
    return 0;
}

/* The paper category an item or task category names (0..3), or -1. */
static int paper_category(const char *c) {
    if (!c) return -1;
    char norm[64];
    size_t j = 0;
    for (const char *p = c; *p && j + 1 < sizeof norm; p++)
        if (isalnum((unsigned char)*p)) norm[j++] = (char)tolower((unsigned char)*p);
    norm[j] = 0;
    if (!strcmp(norm, "general")) return 0;
    if (!strcmp(norm, "knowledge")) return 1;
    if (!strcmp(norm, "ocrchart") || !strcmp(norm, "ocr")) return 2;
    if (!strcmp(norm, "visioncentric")) return 3;
    return -1;
}

static int size_bucket(double share) {
    return share < 0.3 ? 0 : share < 0.6 ? 1 : 2;
}

/* Checks that predictions of a task carry the provenance of its results rows. */
static int check_provenance(const char *pred_path, const eval_prediction *p, size_t line, const eval_result *res,
                            size_t n_res, const char *res_path, ps_error *err) {
    for (size_t r = 0; r < n_res; r++) {
        if (strcmp(res[r].task, p->task)) continue;
        const char *keys[] = {"checkpoint_sha256", "task_sha256"};
        const char *a[] = {res[r].prov.checkpoint_sha256, res[r].prov.task_sha256};
        const char *b[] = {p->prov.checkpoint_sha256, p->prov.task_sha256};
        for (int k = 0; k < 2; k++)
            if (a[k][0] && b[k][0] && strcmp(a[k], b[k]))
                return ps_fail(err, "%s:%zu: task %s: %s %s differs from %s's %s: results and predictions of different runs",
                               pred_path, line, p->task, keys[k], b[k], res_path, a[k]);
        return 0;
    }
    return 0;
}

static int add_key(keyed **k, size_t *n, size_t *cap, const eval_prediction *p, double x, ps_error *err) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        keyed *g = realloc(*k, sizeof *g * c);
        if (!g) return ps_fail(err, "out of memory");
        *k = g, *cap = c;
    }
    if (asprintf(&(*k)[*n].key, "%s\x1f%s", p->task, p->id ? p->id : "") < 0) return ps_fail(err, "out of memory");
    (*k)[(*n)++].x = x;
    return 0;
}

/* 1 when the gold option's letter has the highest log-likelihood (the first of equals), 0
 * when another has, NaN when the item lacks them. */
static double letter_right(const eval_prediction *p) {
    if (p->gold < 0 || p->n_letter_loglikelihoods <= p->gold) return NAN;
    int best = 0;
    for (int c = 1; c < p->n_letter_loglikelihoods; c++)
        if (p->letter_loglikelihoods[c] > p->letter_loglikelihoods[best]) best = c;
    return best == p->gold;
}

/* Item vectors of the VQA categories and existence sizes from a predictions file. */
static int run_items(report_run *run, const char *path, const char *results_path, ps_error *err) {
    eval_prediction *p;
    size_t n, torn;
    if (eval_predictions_read(path, &p, &n, &torn, err)) return -1;
    keyed *k[RM_COUNT] = {0};
    size_t nk[RM_COUNT] = {0}, cap[RM_COUNT] = {0}, per_cat[4] = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!p[i].kind || strcmp(p[i].kind, "vqa")) continue;
        double right = p[i].correct;
        if (run->vqa_letter) {
            right = letter_right(&p[i]);
            if (isnan(right)) {
                rc = ps_fail(err, "%s:%zu: task %s, item %s: no letter_loglikelihoods or gold for --vqa letter", path,
                             i + 1, p[i].task, p[i].id ? p[i].id : "?");
                break;
            }
        }
        if (!isfinite(right)) {
            rc = ps_fail(err, "%s:%zu: task %s, item %s: no 'correct' (score it with `presight eval rescore`)", path,
                         i + 1, p[i].task, p[i].id ? p[i].id : "?");
            break;
        }
        rc = check_provenance(path, &p[i], i + 1, run->res, run->n_res, results_path, err);
        if (rc) break;
        if (p[i].scorer && !strcmp(p[i].scorer, "existence")) {
            if (!isfinite(p[i].area_share)) {
                rc = ps_fail(err, "%s:%zu: existence item %s has no area_share", path, i + 1, p[i].id);
                break;
            }
            int b = RM_EXIST_SMALL + size_bucket(p[i].area_share);
            rc = add_key(&k[b], &nk[b], &cap[b], &p[i], right, err) ||
                 add_key(&k[RM_EXIST_OVERALL], &nk[RM_EXIST_OVERALL], &cap[RM_EXIST_OVERALL], &p[i], right, err);
            continue;
        }
        int c = paper_category(p[i].item_category);
        if (c < 0) c = paper_category(p[i].category);
        if (c < 0) continue;
        per_cat[c]++;
        rc = add_key(&k[RM_VQA_GENERAL + c], &nk[RM_VQA_GENERAL + c], &cap[RM_VQA_GENERAL + c], &p[i], right, err);
    }
    /* overall: every category item weighted N / (C n_c), so that its plain mean is the
     * unweighted mean of the category means */
    int n_cat = 0;
    size_t n_all = 0;
    for (int c = 0; c < 4; c++) n_cat += per_cat[c] > 0, n_all += per_cat[c];
    for (int c = 0; c < 4 && !rc; c++)
        for (size_t i = 0; i < nk[RM_VQA_GENERAL + c] && !rc; i++) {
            keyed *src = &k[RM_VQA_GENERAL + c][i];
            size_t *m = &nk[RM_VQA_OVERALL];
            if (*m == cap[RM_VQA_OVERALL]) {
                size_t cc = cap[RM_VQA_OVERALL] ? cap[RM_VQA_OVERALL] * 2 : 256;
                keyed *g = realloc(k[RM_VQA_OVERALL], sizeof *g * cc);
                if (!g) {
                    rc = ps_fail(err, "out of memory");
                    break;
                }
                k[RM_VQA_OVERALL] = g, cap[RM_VQA_OVERALL] = cc;
            }
            k[RM_VQA_OVERALL][*m].key = strdup(src->key);
            k[RM_VQA_OVERALL][(*m)++].x = src->x * (double)n_all / ((double)n_cat * (double)per_cat[c]);
        }
    for (int m = 0; m < RM_COUNT; m++) {
        if (!rc && nk[m]) {
            rc = items_set(&run->items[m], k[m], nk[m], err);
            if (!rc) {
                double s = 0;
                for (size_t i = 0; i < nk[m]; i++) s += k[m][i].x;
                run->measure[m] = s / (double)nk[m];
            }
        } else {
            for (size_t i = 0; i < nk[m]; i++) free(k[m][i].key);
        }
        free(k[m]);
    }
    eval_predictions_free(p, n);
    return rc;
}

/* Language and alignment measures from results rows; checks values and provenance. */
static int run_results(report_run *run, const char *path, ps_error *err) {
    if (eval_results_read(path, &run->res, &run->n_res, err)) return -1;
    const eval_result *first_ckpt = NULL;
    double ppl_word = NAN, ppl_any = NAN, ppl_byte = NAN;
    const char *ppl_task = NULL;
    for (size_t i = 0; i < run->n_res; i++) {
        const eval_result *r = &run->res[i];
        /* A subset with no items (n = 0: an existence size that eval.limit left out) has no
         * value by right; a value missing anywhere else is an error. */
        if (isnan(r->value) && strcmp(r->metric, "acc_macro") && r->n != 0)
            return ps_fail(err, "%s:%zu: task %s, metric %s: no value", path, i + 1, r->task, r->metric);
        if (r->prov.checkpoint_sha256[0]) {
            if (!first_ckpt) first_ckpt = r;
            else if (strcmp(first_ckpt->prov.checkpoint_sha256, r->prov.checkpoint_sha256))
                return ps_fail(err, "%s:%zu: task %s: checkpoint_sha256 %s, but task %s has %s: results of two models in one file",
                               path, i + 1, r->task, r->prov.checkpoint_sha256, first_ckpt->task,
                               first_ckpt->prov.checkpoint_sha256);
        }
        if (r->subset[0]) continue;
        if (!strcmp(r->metric, "word_perplexity") && isnan(ppl_word)) ppl_word = r->value, ppl_task = r->task;
        if (!strcmp(r->metric, "perplexity") && isnan(ppl_any)) ppl_any = r->value;
        if (!strcmp(r->task, "mean") && !strcmp(r->category, "language") && !strcmp(r->metric, "acc"))
            run->measure[RM_LANG_ACC] = r->value;
        if (!strncmp(r->metric, "mknn", 4) && isnan(run->measure[RM_ALIGN])) run->measure[RM_ALIGN] = r->value;
    }
    run->measure[RM_PPL] = isnan(ppl_word) ? ppl_any : ppl_word;
    /* the byte perplexity of the task whose word perplexity is shown */
    for (size_t i = 0; ppl_task && i < run->n_res && isnan(ppl_byte); i++) {
        const eval_result *r = &run->res[i];
        if (!r->subset[0] && !strcmp(r->task, ppl_task) && !strcmp(r->metric, "byte_perplexity")) ppl_byte = r->value;
    }
    run->measure[RM_BYTE_PPL] = ppl_byte;
    return 0;
}

/* The loss curve of metrics.jsonl (step, loss); lines without a loss are skipped. */
static int run_loss(report_run *run, const char *path, ps_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return ps_fail(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, n = 0, room = 0, lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0 && !rc) {
        lineno++;
        json_object *o = json_tokener_parse(line), *s, *l;
        if (!o) {
            if (!feof(f)) rc = ps_fail(err, "%s:%zu: not JSON", path, lineno);
            break; /* a torn last line */
        }
        if (json_object_object_get_ex(o, "step", &s) && json_object_object_get_ex(o, "loss", &l)) {
            if (n == room) {
                room = room ? room * 2 : 256;
                double *a = realloc(run->step, sizeof *a * room), *b = a ? realloc(run->loss, sizeof *b * room) : NULL;
                if (a) run->step = a;
                if (b) run->loss = b;
                if (!a || !b) rc = ps_fail(err, "out of memory");
            }
            if (!rc) run->step[n] = json_object_get_double(s), run->loss[n++] = json_object_get_double(l);
        }
        json_object_put(o);
    }
    free(line);
    fclose(f);
    run->n_loss = n;
    return rc;
}

int report_run_measures(report_run *run, const char *results_path, const char *predictions_path, ps_error *err) {
    for (int m = 0; m < RM_COUNT; m++) run->measure[m] = NAN;
    if (results_path && run_results(run, results_path, err)) return -1;
    if (predictions_path && run_items(run, predictions_path, results_path ? results_path : "(no results.jsonl)", err)) return -1;
    return 0;
}

/* ------------------------------------------------------------------ runs */

static int find_file(const char *dir, const char *name, char *out, size_t cap) {
    return find_file_in(dir, strcmp(name, "metrics.jsonl") ? "eval" : "pretrain", name, out, cap);
}

/* Whether a run dir holds anything a report reads. */
static int has_files(const char *dir) {
    char p[PATH_MAX];
    return find_file(dir, "results.jsonl", p, sizeof p) == 0 || find_file(dir, "metrics.jsonl", p, sizeof p) == 0;
}

static int load_run(report_run *run, const char *dir, ps_error *err) {
    char res[PATH_MAX], pred[PATH_MAX], met[PATH_MAX];
    snprintf(run->dir, sizeof run->dir, "%s", dir);
    int have_res = find_file(dir, "results.jsonl", res, sizeof res) == 0;
    int have_pred = find_file(dir, "predictions.jsonl", pred, sizeof pred) == 0;
    int have_met = find_file(dir, "metrics.jsonl", met, sizeof met) == 0;
    if (!have_res && !have_met)
        return ps_fail(err, "%s: run %s has neither results.jsonl nor metrics.jsonl", dir, run->name);
    if (report_run_measures(run, have_res ? res : NULL, have_pred ? pred : NULL, err)) return -1;
    return have_met ? run_loss(run, met, err) : 0;
}

static int grow_runs(report *R, ps_error *err) {
    report_run *g = realloc(R->runs, sizeof *g * (size_t)(R->n_runs + 1));
    if (!g) return ps_fail(err, "out of memory");
    R->runs = g;
    memset(&R->runs[R->n_runs], 0, sizeof *R->runs);
    return 0;
}

/* A study dir: STUDY/results.jsonl (collect's) names the runs and their axes. */
static int load_study(report *R, const char *dir, ps_error *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return ps_fail(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (!rc && getline(&line, &cap, f) > 0) {
        lineno++;
        json_object *o = json_tokener_parse(line), *id, *axes;
        if (!o || !json_object_object_get_ex(o, "id", &id)) {
            rc = ps_fail(err, "%s:%zu: not a run of `presight study collect` (no id)", path, lineno);
            json_object_put(o);
            break;
        }
        if ((rc = grow_runs(R, err))) break;
        report_run *run = &R->runs[R->n_runs++];
        snprintf(run->id, sizeof run->id, "%s", json_object_get_string(id));
        size_t len = 0;
        if (json_object_object_get_ex(o, "axes", &axes) && json_object_get_type(axes) == json_type_object) {
            json_object_object_foreach(axes, key, v) {
                if (run->n_axes == REPORT_MAX_AXES) break;
                snprintf(run->axis[run->n_axes], sizeof run->axis[0], "%s", key);
                const char *txt = json_object_get_type(v) == json_type_string
                                      ? json_object_get_string(v)
                                      : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
                snprintf(run->value[run->n_axes], sizeof run->value[0], "%s", txt);
                len += (size_t)snprintf(run->name + len, len < sizeof run->name ? sizeof run->name - len : 0, "%s%s=%s",
                                        run->n_axes ? " " : "", key, txt);
                run->n_axes++;
                if (len >= sizeof run->name) len = sizeof run->name - 1;
            }
        }
        if (!run->name[0]) snprintf(run->name, sizeof run->name, "%s", run->id);
        json_object_put(o);
        char rdir[PATH_MAX];
        snprintf(rdir, sizeof rdir, "%s/collected/%s", dir, run->id);
        if (!is_dir(rdir)) snprintf(rdir, sizeof rdir, "%s/runs/%s", dir, run->id);
        if (!has_files(rdir)) { /* not run yet, or failed: listed in the report, not an error */
            size_t used = strlen(R->missing);
            snprintf(R->missing + used, sizeof R->missing - used, "%s%s (%s)", used ? ", " : "", run->name, run->id);
            R->n_missing++;
            R->n_runs--;
            continue;
        }
        run->vqa_letter = R->o.vqa_letter;
        if ((rc = load_run(run, rdir, err))) ps_wrap(err, "%s:%zu: run %s", path, lineno, run->name);
    }
    free(line);
    fclose(f);
    if (!rc && !R->n_runs)
        rc = ps_fail(err, "%s: no run has results or metrics yet%s%s", path, R->n_missing ? ": " : "", R->missing);
    return rc;
}

int report_load(report *R, const char *const *paths, int n_paths, const report_opts *o, ps_error *err) {
    memset(R, 0, sizeof *R);
    R->o = *o;
    int rc = 0;
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/results.jsonl", n_paths ? paths[0] : ".");
    if (n_paths == 1 && is_file(probe) && (snprintf(probe, sizeof probe, "%s/runs.tsv", paths[0]), is_file(probe))) {
        rc = load_study(R, paths[0], err);
    } else {
        for (int i = 0; i < n_paths && !rc; i++) {
            if (!is_dir(paths[i])) {
                rc = ps_fail(err, "%s: not a directory", paths[i]);
                break;
            }
            if ((rc = grow_runs(R, err))) break;
            report_run *run = &R->runs[R->n_runs++];
            const char *base = strrchr(paths[i], '/');
            size_t len = strlen(paths[i]);
            while (len > 1 && paths[i][len - 1] == '/') len--;
            base = memrchr(paths[i], '/', len);
            base = base ? base + 1 : paths[i];
            snprintf(run->name, sizeof run->name, "%.*s", (int)(paths[i] + len - base), base);
            run->vqa_letter = R->o.vqa_letter;
            rc = load_run(run, paths[i], err);
        }
    }
    if (!rc) rc = report_groups(R, err);
    if (!rc) rc = report_shares(R, err);
    if (rc) report_free(R);
    return rc;
}

void report_free(report *R) {
    for (int i = 0; i < R->n_runs; i++) {
        report_run *r = &R->runs[i];
        free(r->res), free(r->step), free(r->loss);
        for (int m = 0; m < RM_COUNT; m++) items_free(&r->items[m]);
    }
    for (int g = 0; g < R->n_groups; g++) {
        free(R->groups[g].runs);
        for (int m = 0; m < RM_COUNT; m++) items_free(&R->groups[g].items[m]);
    }
    free(R->runs), free(R->groups);
    memset(R, 0, sizeof *R);
}
