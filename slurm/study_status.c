/* study_status.c - where every run of a study stands (`presight study
 * status`) and its results gathered into one table (`presight study collect`).
 *
 * The run dirs are the truth: a stage is done when its done file exists.
 * The attempts log the batch script appends to (<run>/<stage>.attempts) says
 * whether a task started, how it ended and how often it restarted; squeue,
 * when it answers, says which tasks are queued or running now. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "study.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "study_internal.h"

#include <json-c/json.h>

/* ------------------------------------------------------------------ attempts */

typedef struct attempts {
    int starts;
    int open;      /* the last line is a start: running, or lost */
    int local;     /* ... and it was started outside SLURM */
    int ended;     /* an end line was seen */
    char end[160]; /* the last end line after "end " */
    int blocked;
    char nodes[64]; /* nodes= (or host=) of the last start line */
} attempts;

/* The value of " key=" in a start line, up to the next space. */
static void start_field(const char *line, const char *key, char *out, size_t cap) {
    char pat[32];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *v = strstr(line, pat);
    if (!v) return;
    v += strlen(pat);
    size_t n = strcspn(v, " ");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
}

static void read_attempts(const study *s, const study_run *r, int stage, attempts *a) {
    memset(a, 0, sizeof *a);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.attempts", r->dir, s->stages[stage].name);
    char *text = study_read_text(path);
    if (!text) return;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        char *what = sp + 1;
        if (strncmp(what, "start", 5) == 0) {
            a->starts++;
            a->open = 1;
            a->local = strstr(what, "job=local") != NULL;
            a->blocked = 0;
            a->nodes[0] = 0;
            start_field(what, "host", a->nodes, sizeof a->nodes);
            start_field(what, "nodes", a->nodes, sizeof a->nodes);
        } else if (strncmp(what, "end ", 4) == 0) {
            a->open = 0;
            a->ended = 1;
            snprintf(a->end, sizeof a->end, "%s", what + 4);
        } else if (strncmp(what, "blocked", 7) == 0) {
            a->open = 0;
            a->blocked = 1;
        }
    }
    free(text);
}

/* ------------------------------------------------------------------ squeue */

typedef struct queued {
    char state[32];
    char reason[96];
} queued;

/* Fills q[run * n_stages + stage] from squeue and STUDY/jobs.tsv. Returns 1
 * when SLURM answered, 0 when not (no squeue, or it failed). */
static int read_queue(const study *s, queued *q, int *n_jobs) {
    *n_jobs = 0;
    if (!study_have_program("squeue")) return 0;
    struct passwd *pw = getpwuid(geteuid());
    char *argv[] = {"squeue", "-h", "-r", "-u", pw ? pw->pw_name : "root", "-o", "%F|%K|%T|%r", NULL};
    size_t cap = 1 << 24;
    char *out = malloc(cap);
    if (!out) return 0;
    if (study_command(argv, out, cap, 0) != 0) {
        free(out);
        return 0;
    }
    char path[PATH_MAX];
    study_path(s, path, sizeof path, "jobs.tsv");
    char *jobs = study_read_text(path);
    study_path(s, path, sizeof path, "sbatch/runs.tsv");
    char *tsv = study_read_text(path);
    if (!jobs || !tsv) {
        free(out);
        free(jobs);
        free(tsv);
        return 1;
    }
    /* jobs.tsv: stage, group, job id, offset, array, script */
    typedef struct job {
        long id;
        int stage, offset;
    } job;
    int n = 0, cap_jobs = 64;
    job *js = malloc((size_t)cap_jobs * sizeof *js);
    char *save = NULL;
    for (char *line = strtok_r(jobs, "\n", &save); line && js; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char *f[4] = {line, NULL, NULL, NULL};
        for (int i = 1; i < 4 && f[i - 1]; i++) {
            char *t = strchr(f[i - 1], '\t');
            if (t) *t = 0, f[i] = t + 1;
        }
        if (!f[3]) continue;
        int stage = -1;
        for (int k = 0; k < s->n_stages; k++)
            if (strcmp(s->stages[k].name, f[0]) == 0) stage = k;
        if (stage < 0) continue;
        if (n == cap_jobs) {
            job *more = realloc(js, (size_t)(cap_jobs *= 2) * sizeof *js);
            if (!more) break;
            js = more;
        }
        js[n++] = (job){strtol(f[2], NULL, 10), stage, atoi(f[3])};
    }
    *n_jobs = n;
    /* sbatch/runs.tsv: index -> id -> the current run with that id. */
    int n_index = 0;
    for (char *p = tsv; *p; p++) n_index += *p == '\n';
    int *run_of_index = malloc(((size_t)n_index + 1) * sizeof *run_of_index);
    for (int i = 0; run_of_index && i <= n_index; i++) run_of_index[i] = -1;
    save = NULL;
    for (char *line = strtok_r(tsv, "\n", &save); line && run_of_index; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        int index = atoi(line);
        char *id = strchr(line, '\t');
        if (!id || index < 0 || index > n_index) continue;
        id++;
        for (int r = 0; r < s->n_runs; r++)
            if (strncmp(s->runs[r].id, id, STUDY_ID_LEN) == 0 && id[STUDY_ID_LEN] == '\t') run_of_index[index] = r;
    }
    save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line && js && run_of_index; line = strtok_r(NULL, "\n", &save)) {
        char *f[4] = {line, NULL, NULL, NULL};
        for (int i = 1; i < 4 && f[i - 1]; i++) {
            char *t = strchr(f[i - 1], '|');
            if (t) *t = 0, f[i] = t + 1;
        }
        if (!f[3] || !isdigit((unsigned char)f[1][0])) continue;
        long id = strtol(f[0], NULL, 10);
        int task = atoi(f[1]);
        for (int j = 0; j < n; j++) {
            if (js[j].id != id) continue;
            int index = task + js[j].offset;
            if (index < 0 || index > n_index || run_of_index[index] < 0) continue;
            queued *e = &q[run_of_index[index] * s->n_stages + js[j].stage];
            snprintf(e->state, sizeof e->state, "%s", f[2]);
            snprintf(e->reason, sizeof e->reason, "%s", f[3]);
        }
    }
    free(run_of_index);
    free(js);
    free(out);
    free(jobs);
    free(tsv);
    return 1;
}

/* ------------------------------------------------------------------ status */

void study_status_free(const study *s, study_run_status *st) {
    if (!st) return;
    for (int i = 0; i < s->n_runs; i++) free(st[i].stage);
    free(st);
}

int study_status(const study *s, study_run_status **statuses, char *note, size_t cap, ps_error *err) {
    *statuses = NULL;
    queued *q = calloc((size_t)s->n_runs * s->n_stages + 1, sizeof *q);
    study_run_status *st = calloc((size_t)s->n_runs + 1, sizeof *st);
    if (!q || !st) {
        free(q);
        free(st);
        return ps_fail(err, "out of memory");
    }
    int n_jobs = 0;
    int slurm = read_queue(s, q, &n_jobs);
    if (note) {
        if (!slurm)
            snprintf(note, cap, "no SLURM here (squeue %s): states from the run directories only",
                     study_have_program("squeue") ? "did not answer" : "not found");
        else if (!n_jobs)
            snprintf(note, cap, "SLURM answers, but this study has no submitted jobs (jobs.tsv)");
        else
            snprintf(note, cap, "SLURM: squeue and %d array job%s in jobs.tsv", n_jobs, n_jobs == 1 ? "" : "s");
    }
    for (int i = 0; i < s->n_runs; i++) {
        const study_run *r = &s->runs[i];
        study_run_status *rs = &st[i];
        if (!(rs->stage = calloc((size_t)s->n_stages, sizeof *rs->stage))) {
            study_status_free(s, st);
            free(q);
            return ps_fail(err, "out of memory");
        }
        int all_done = 1, any_failed = 0, any_running = 0, any_preempted = 0, any_blocked = 0;
        for (int k = 0; k < s->n_stages; k++) {
            study_stage_status *ss = &rs->stage[k];
            attempts a;
            read_attempts(s, r, k, &a);
            ss->starts = a.starts;
            snprintf(ss->nodes, sizeof ss->nodes, "%s", a.nodes);
            if (a.starts > 1) rs->restarts += a.starts - 1;
            const queued *e = &q[i * s->n_stages + k];
            if (study_stage_done(s, r, k)) {
                ss->state = STUDY_DONE;
            } else if (e->state[0]) {
                if (!strcmp(e->state, "RUNNING") || !strcmp(e->state, "COMPLETING") ||
                    !strcmp(e->state, "CONFIGURING") || !strcmp(e->state, "SUSPENDED") ||
                    !strcmp(e->state, "STOPPED")) {
                    ss->state = STUDY_RUNNING;
                    if (strcmp(e->state, "RUNNING")) snprintf(ss->detail, sizeof ss->detail, "%s", e->state);
                } else {
                    ss->state = STUDY_PENDING;
                    snprintf(ss->detail, sizeof ss->detail, "%s%s%s", e->state, e->reason[0] ? ": " : "", e->reason);
                }
            } else if (a.open) {
                if (a.local || !slurm) {
                    ss->state = STUDY_RUNNING;
                } else {
                    ss->state = STUDY_FAILED;
                    snprintf(ss->detail, sizeof ss->detail, "started, never ended, and no longer queued");
                }
            } else if (a.blocked) {
                ss->state = STUDY_BLOCKED;
                snprintf(ss->detail, sizeof ss->detail, "its dependency did not finish");
            } else if (a.ended) {
                /* Stopped with a checkpoint outside SLURM: the next `run --local` resumes it. Under
                 * SLURM a task that ended without finishing and is no longer queued has failed. */
                ss->state = strstr(a.end, "preempted") && (a.local || !slurm) ? STUDY_PREEMPTED : STUDY_FAILED;
                snprintf(ss->detail, sizeof ss->detail, "%s", a.end);
            } else if (s->stages[k].dep >= 0 && (rs->stage[s->stages[k].dep].state == STUDY_FAILED ||
                                                 rs->stage[s->stages[k].dep].state == STUDY_BLOCKED)) {
                ss->state = STUDY_BLOCKED;
                snprintf(ss->detail, sizeof ss->detail, "%s did not finish", s->stages[s->stages[k].dep].name);
            } else {
                ss->state = STUDY_PENDING;
                if (slurm && n_jobs) snprintf(ss->detail, sizeof ss->detail, "not queued");
            }
            all_done &= ss->state == STUDY_DONE;
            any_failed |= ss->state == STUDY_FAILED;
            any_running |= ss->state == STUDY_RUNNING;
            any_preempted |= ss->state == STUDY_PREEMPTED;
            any_blocked |= ss->state == STUDY_BLOCKED;
        }
        rs->state = all_done        ? STUDY_DONE
                    : any_failed    ? STUDY_FAILED
                    : any_running   ? STUDY_RUNNING
                    : any_preempted ? STUDY_PREEMPTED
                    : any_blocked   ? STUDY_BLOCKED
                                    : STUDY_PENDING;
    }
    free(q);
    *statuses = st;
    return 0;
}

/* The nodes each stage of run i last ran on, "-" for a stage not started,
 * one word per stage, padded to width; with out NULL (and i < 0) returns the
 * width of the widest run, at least that of the header. */
static int print_nodes(const study *s, const study_run_status *st, FILE *out, int i, int width) {
    int widest = (int)strlen("nodes");
    for (int r = out ? i : 0; r < (out ? i + 1 : s->n_runs); r++) {
        int n = 0;
        for (int k = 0; k < s->n_stages; k++) {
            const char *v = st[r].stage[k].nodes[0] ? st[r].stage[k].nodes : "-";
            if (out) fprintf(out, "%s%s", k ? " " : "", v);
            n += (k ? 1 : 0) + (int)strlen(v);
        }
        if (out) fprintf(out, "%*s", width > n ? width - n : 0, "");
        if (n > widest) widest = n;
    }
    return widest;
}

int study_print_status(const study *s, FILE *out, ps_error *err) {
    study_run_status *st;
    char note[256];
    if (study_status(s, &st, note, sizeof note, err)) return -1;
    const char *axes[64];
    int n_axes = study_axis_columns(s, axes, 64);
    int w_axis[64], w_stage[64];
    for (int a = 0; a < n_axes; a++) {
        w_axis[a] = (int)strlen(axes[a]);
        for (int i = 0; i < s->n_runs; i++) {
            int n = (int)strlen(study_run_value(s, &s->runs[i], axes[a]));
            if (n > w_axis[a]) w_axis[a] = n < 30 ? n : 30;
        }
    }
    for (int k = 0; k < s->n_stages && k < 64; k++) {
        w_stage[k] = (int)strlen(s->stages[k].name);
        if (w_stage[k] < 9) w_stage[k] = 9;
    }
    fprintf(out, "study %s (%s): %d runs\n", s->name, s->dir, s->n_runs);
    fprintf(out, "%s\n", note);
    fprintf(out, "%4s  %-*s  %-9s", "#", STUDY_ID_LEN, "id", "state");
    for (int k = 0; k < s->n_stages && k < 64; k++) fprintf(out, "  %-*s", w_stage[k], s->stages[k].name);
    fprintf(out, "  %8s", "restarts");
    for (int a = 0; a < n_axes; a++) fprintf(out, "  %-*s", w_axis[a], axes[a]);
    int w_nodes = print_nodes(s, st, NULL, -1, 0);
    fprintf(out, "  %-*s  detail\n", w_nodes, "nodes");
    int count[6] = {0}, restarts = 0;
    for (int i = 0; i < s->n_runs; i++) {
        const study_run *r = &s->runs[i];
        fprintf(out, "%4d  %-*s  %-9s", r->index, STUDY_ID_LEN, r->id, study_state_name(st[i].state));
        const char *detail = "";
        for (int k = 0; k < s->n_stages && k < 64; k++) {
            fprintf(out, "  %-*s", w_stage[k], study_state_name(st[i].stage[k].state));
            if (!detail[0] && st[i].stage[k].detail[0]) detail = st[i].stage[k].detail;
        }
        fprintf(out, "  %8d", st[i].restarts);
        for (int a = 0; a < n_axes; a++) fprintf(out, "  %-*.*s", w_axis[a], w_axis[a], study_run_value(s, r, axes[a]));
        fprintf(out, "  ");
        print_nodes(s, st, out, i, w_nodes);
        fprintf(out, "  %s\n", detail);
        count[st[i].state]++;
        restarts += st[i].restarts;
    }
    fprintf(out, "summary: %d runs: %d done, %d running, %d pending, %d failed", s->n_runs, count[STUDY_DONE],
            count[STUDY_RUNNING], count[STUDY_PENDING], count[STUDY_FAILED]);
    if (count[STUDY_PREEMPTED]) fprintf(out, ", %d preempted (run again to resume)", count[STUDY_PREEMPTED]);
    if (count[STUDY_BLOCKED]) fprintf(out, ", %d blocked", count[STUDY_BLOCKED]);
    fprintf(out, "; %d restart%s\n", restarts, restarts == 1 ? "" : "s");
    study_status_free(s, st);
    return 0;
}

/* ------------------------------------------------------------------ collect */

/* The text of a JSON value as a table cell: strings bare, the rest as JSON. */
static const char *cell_text(json_object *v) {
    if (!v) return "";
    if (json_object_get_type(v) == json_type_string) return json_object_get_string(v);
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

static int is_json_stage(const study_stage *st) {
    size_t n = strlen(st->done_file);
    return n > 5 && strcmp(st->done_file + n - 5, ".json") == 0;
}

static void csv_field(FILE *f, const char *v) {
    if (!strpbrk(v, ",\"\n\r")) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (const char *p = v; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

/* An axis value for results.jsonl: a number when it reads as one. */
static json_object *axis_value(const char *v) {
    if (*v && !isalpha((unsigned char)v[0])) {
        json_object *n = json_tokener_parse(v);
        if (n && (json_object_get_type(n) == json_type_int || json_object_get_type(n) == json_type_double)) return n;
        json_object_put(n);
    }
    return json_object_new_string(v);
}

#define MAX_COLUMNS 256

int study_collect(const study *s, FILE *out, ps_error *err) {
    study_run_status *st;
    if (study_status(s, &st, NULL, 0, err)) return -1;
    int n_cells = s->n_runs * s->n_stages;
    json_object **js = calloc((size_t)n_cells + 1, sizeof *js);
    if (!js) {
        study_status_free(s, st);
        return ps_fail(err, "out of memory");
    }
    /* Each JSON stage's done file, and its keys in order of first appearance. */
    typedef struct column {
        int stage;
        const char *key;
    } column;
    column cols[MAX_COLUMNS];
    int n_cols = 0, n_json_stages = 0;
    for (int k = 0; k < s->n_stages; k++) n_json_stages += is_json_stage(&s->stages[k]);
    for (int i = 0; i < s->n_runs; i++)
        for (int k = 0; k < s->n_stages; k++) {
            if (!is_json_stage(&s->stages[k])) continue;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s/%s", s->runs[i].dir, s->stages[k].name, s->stages[k].done_file);
            if (access(path, R_OK) != 0) continue;
            json_object *o = json_object_from_file(path);
            if (!o || json_object_get_type(o) != json_type_object) {
                fprintf(stderr, "presight study collect: %s is not a JSON object; left out\n", path);
                json_object_put(o);
                continue;
            }
            js[i * s->n_stages + k] = o;
            json_object_object_foreach(o, key, value) {
                (void)value;
                int seen = 0;
                for (int c = 0; c < n_cols; c++) seen |= cols[c].stage == k && strcmp(cols[c].key, key) == 0;
                if (!seen && n_cols < MAX_COLUMNS) cols[n_cols++] = (column){k, key};
            }
        }
    const char *axes[64];
    int n_axes = study_axis_columns(s, axes, 64);

    /* The table: header and cells, shared by the CSV and the printout. */
    int n_head = 3 + n_axes + n_cols, rc = 0;
    char **head = calloc((size_t)n_head, sizeof *head);
    char **cells = calloc((size_t)s->n_runs * n_head + 1, sizeof *cells);
    if (!head || !cells) rc = ps_fail(err, "out of memory");
    for (int h = 0; !rc && h < n_head; h++) {
        int ok;
        if (h == 0)
            ok = (head[h] = strdup("index")) != NULL;
        else if (h == 1)
            ok = (head[h] = strdup("id")) != NULL;
        else if (h == 2)
            ok = (head[h] = strdup("state")) != NULL;
        else if (h < 3 + n_axes)
            ok = (head[h] = strdup(axes[h - 3])) != NULL;
        else if (n_json_stages > 1)
            ok = asprintf(&head[h], "%s.%s", s->stages[cols[h - 3 - n_axes].stage].name, cols[h - 3 - n_axes].key) >= 0;
        else
            ok = (head[h] = strdup(cols[h - 3 - n_axes].key)) != NULL;
        if (!ok) head[h] = NULL, rc = ps_fail(err, "out of memory");
    }
    for (int i = 0; !rc && i < s->n_runs; i++) {
        const study_run *r = &s->runs[i];
        char **row = &cells[i * n_head];
        if (asprintf(&row[0], "%d", r->index) < 0) row[0] = NULL;
        row[1] = strdup(r->id);
        row[2] = strdup(study_state_name(st[i].state));
        for (int a = 0; a < n_axes; a++) row[3 + a] = strdup(study_run_value(s, r, axes[a]));
        for (int c = 0; c < n_cols; c++) {
            json_object *o = js[i * s->n_stages + cols[c].stage], *v = NULL;
            row[3 + n_axes + c] = strdup(o && json_object_object_get_ex(o, cols[c].key, &v) ? cell_text(v) : "");
        }
        for (int h = 0; h < n_head; h++)
            if (!row[h]) rc = ps_fail(err, "out of memory");
    }

    char csv_path[PATH_MAX], jsonl_path[PATH_MAX], tmp1[PATH_MAX + 8], tmp2[PATH_MAX + 8];
    study_path(s, csv_path, sizeof csv_path, "results.csv");
    study_path(s, jsonl_path, sizeof jsonl_path, "results.jsonl");
    snprintf(tmp1, sizeof tmp1, "%s.tmp", csv_path);
    snprintf(tmp2, sizeof tmp2, "%s.tmp", jsonl_path);
    FILE *csv = NULL, *jsonl = NULL;
    if (!rc && !study_mkdirs(s->dir, err)) {
        csv = fopen(tmp1, "w");
        jsonl = fopen(tmp2, "w");
        if (!csv || !jsonl) rc = ps_fail(err, "%s: cannot write: %s", !csv ? tmp1 : tmp2, strerror(errno));
    } else if (!rc) {
        rc = -1;
    }
    if (!rc) {
        for (int h = 0; h < n_head; h++) {
            if (h) fputc(',', csv);
            csv_field(csv, head[h]);
        }
        fputc('\n', csv);
        for (int i = 0; i < s->n_runs; i++) {
            for (int h = 0; h < n_head; h++) {
                if (h) fputc(',', csv);
                csv_field(csv, cells[i * n_head + h]);
            }
            fputc('\n', csv);
            /* results.jsonl: {"index","id","state","axes":{...},"dir", "<stage>": <its done file>} */
            const study_run *r = &s->runs[i];
            const study_grid *g = &s->grids[r->grid];
            json_object *o = json_object_new_object(), *ax = json_object_new_object();
            json_object_object_add(o, "index", json_object_new_int(r->index));
            json_object_object_add(o, "id", json_object_new_string(r->id));
            json_object_object_add(o, "state", json_object_new_string(study_state_name(st[i].state)));
            for (int a = 0; a < g->n_axes; a++)
                json_object_object_add(ax, g->axes[a].name, axis_value(g->axes[a].values[r->value[a]].name));
            json_object_object_add(o, "axes", ax);
            json_object_object_add(o, "dir", json_object_new_string(r->dir));
            for (int k = 0; k < s->n_stages; k++) {
                if (!is_json_stage(&s->stages[k])) continue;
                json_object *v = js[i * s->n_stages + k];
                json_object_object_add(o, s->stages[k].name, v ? json_object_get(v) : NULL);
            }
            fprintf(jsonl, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            json_object_put(o);
        }
    }
    FILE *files[2] = {csv, jsonl};
    const char *tmps[2] = {tmp1, tmp2}, *finals[2] = {csv_path, jsonl_path};
    for (int f = 0; f < 2; f++) {
        if (!files[f]) continue;
        int bad = ferror(files[f]);
        if (fclose(files[f]) || bad) {
            if (!rc) rc = ps_fail(err, "%s: write failed", tmps[f]);
        } else if (!rc && rename(tmps[f], finals[f])) {
            rc = ps_fail(err, "%s: %s", finals[f], strerror(errno));
        }
        if (rc) unlink(tmps[f]);
    }

    int copied = 0;
    if (!rc) rc = study_collect_files(s, &copied, err);
    if (!rc && out) {
        int w[3 + 64 + MAX_COLUMNS];
        for (int h = 0; h < n_head; h++) {
            w[h] = (int)strlen(head[h]);
            for (int i = 0; i < s->n_runs; i++)
                if ((int)strlen(cells[i * n_head + h]) > w[h]) w[h] = (int)strlen(cells[i * n_head + h]);
            if (w[h] > 40) w[h] = 40;
        }
        for (int h = 0; h < n_head; h++) fprintf(out, "%s%-*s", h ? "  " : "", w[h], head[h]);
        fputc('\n', out);
        int done = 0;
        for (int i = 0; i < s->n_runs; i++) {
            for (int h = 0; h < n_head; h++) {
                const char *v = cells[i * n_head + h][0] ? cells[i * n_head + h] : "-";
                fprintf(out, "%s%-*.*s", h ? "  " : "", h == n_head - 1 ? 0 : w[h], w[h], v);
            }
            fputc('\n', out);
            done += st[i].state == STUDY_DONE;
        }
        fprintf(out, "%d of %d runs done; wrote %s and %s\n", done, s->n_runs, csv_path, jsonl_path);
        if (copied) fprintf(out, "copied %d results/predictions/metrics files into %s/collected/ (presight report %s)\n", copied, s->dir, s->dir);
    }
    for (int c = 0; cells && c < s->n_runs * n_head; c++) free(cells[c]);
    free(cells);
    for (int h = 0; head && h < n_head; h++) free(head[h]);
    free(head);
    for (int c = 0; c < n_cells; c++) json_object_put(js[c]);
    free(js);
    study_status_free(s, st);
    return rc;
}
