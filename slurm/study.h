/* study.h - a study: one base run config, axes of overrides, and stages,
 * expanded into numbered runs with stable ids, run on SLURM as array jobs or
 * locally one after another.
 *
 * A study file (libconfig, see config/studies/README.md) names a base run
 * config, fixed overrides for every run (`set`), one or more grids of axes
 * (each grid is the Cartesian product of its axes; an axis is a config key
 * with a list of values, or a list of named bundles of overrides such as a
 * model preset or a data mixture), the stages every run goes through
 * (pretrain now; adapt and eval later), the SLURM resources of each stage,
 * and how compute is estimated.
 *
 * A run's id is a hash of its own axis assignments only (the sorted
 * "axis=value" pairs of the axes of its grid), so adding a value to an axis,
 * or a new grid, leaves every existing id and run directory as it was.
 *
 * On disk (STUDY = the study dir, `dir` in the file or --dir):
 *   STUDY/runs.tsv                 index, id, run dir, overrides (written by plan)
 *   STUDY/runs/<id>/config.cfg     the run's resolved config
 *   STUDY/runs/<id>/<stage>/       the stage's run.dir (final.json marks a train stage done)
 *   STUDY/runs/<id>/<stage>.attempts  one line per start and end of a task (restarts)
 *   STUDY/sbatch/<stage>.sbatch    batch scripts; sbatch/runs.tsv: the runs they were written for
 *   STUDY/jobs.tsv                 the array jobs `submit` made (stage, group, job id, offset, indices)
 *   STUDY/logs/                    task logs
 *   STUDY/results.csv, results.jsonl  written by collect
 *   STUDY/collected/<id>/<stage>/{results,predictions,metrics}.jsonl  copied by collect (for report)
 *
 * Functions return 0 or -1 with a message in err naming the file:line, run
 * or key at fault; nothing here exits. */
#ifndef PRESIGHT_STUDY_H
#define PRESIGHT_STUDY_H

#include <stdio.h>

#include "config.h"
#include "error.h"

#define STUDY_ID_LEN 12 /* hex digits of a run id */

typedef struct study_arena study_arena;

/* Resources of one stage's task. Ints < 0 and NULL strings mean "not set
 * here" while layers (study defaults, stage, run bundles) are merged. */
typedef struct study_resources {
    int nodes;          /* default 1 */
    int ranks_per_node; /* MPI ranks per node; default gpus_per_node, else 1 */
    int gpus_per_node;  /* 0 = no GPUs requested */
    int cpus_per_task;  /* CPU threads per rank; 0 = leave to SLURM */
    const char *time, *partition, *account, *qos, *mem;
    int n_extra; /* extra sbatch options, e.g. "--exclusive" (appended layer after layer) */
    const char **extra;
} study_resources;

typedef struct study_stage {
    const char *name;        /* folder name inside each run dir */
    const char *command;     /* the presight subcommand: train (adapt, eval later) */
    const char *depends_on;  /* a previous stage's name, or NULL */
    int dep;                 /* its index, -1 when none */
    int n_args;              /* arguments after the command; placeholders: */
    const char **args;       /* {config} {dir} {run} {dep} {id} {index}; default {config} run.dir={dir} */
    const char *done_file;   /* file in the stage dir that marks it complete; default final.json */
    const char *stdout_file; /* when set, the command's stdout is kept in this file of the stage dir */
    study_resources res;     /* study defaults merged with the stage's own */
} study_stage;

/* One value of an axis: its name (the value text, or the bundle name) and
 * the overrides it stands for. */
typedef struct study_value {
    const char *name;
    int n_overrides;
    const char **overrides; /* "key=value" */
    study_resources *res;   /* [n_stages] resource overrides (bundles only), or NULL */
    const char *where;      /* file:line */
} study_value;

typedef struct study_axis {
    const char *name; /* the name in ids and tables: the key, or the bundle axis name */
    const char *key;  /* NULL for a bundle axis */
    int n_values;
    study_value *values;
    const char *where;
} study_axis;

typedef struct study_grid {
    const char *name;
    int n_axes;
    study_axis *axes;
} study_grid;

typedef struct study_run {
    int index; /* 0-based position in the expansion (= SLURM array index) */
    char id[STUDY_ID_LEN + 1];
    int grid;
    int *value; /* [grid's n_axes]: the value chosen on each axis */
    int n_overrides;
    const char **overrides; /* study `set`, then each axis value's overrides */
    const char *dir;        /* STUDY/runs/<id> */
    study_resources *res;   /* [n_stages] effective resources */
    int group;              /* runs with the same resources in every stage share a group */
} study_run;

typedef struct study {
    const char *path; /* the study file */
    const char *name;
    const char *base; /* the base run config (resolved against the study file's folder) */
    const char *dir;  /* the study dir */
    int n_set;
    const char **set;
    int n_grids;
    study_grid *grids;
    int n_stages;
    study_stage *stages;
    /* slurm = { ... } */
    int throttle;       /* % of an array (0 = none) */
    int max_array_size; /* 0 = ask `scontrol show config` (MaxArraySize), else 1001 */
    int signal_seconds; /* USR1 this long before the time limit */
    int max_requeues;
    const char *mpi; /* srun --mpi=... */
    /* estimate = { ... } */
    double mfu, peak_tflops;
    const char *peak_name;
    int n_runs;
    study_run *runs;
    int n_groups;
    int n_duplicates; /* runs of later grids dropped because an earlier grid has the same assignments */
    study_arena *arena;
} study;

/* Loads and expands a study file. dir_override (may be NULL) replaces `dir`. */
int study_load(study *s, const char *path, const char *dir_override, ps_error *err);
void study_free(study *s);

/* Id of a set of assignments: FNV-1a 64 of the sorted "name=value\n" lines,
 * the first STUDY_ID_LEN hex digits. */
void study_id(int n, const char *const *names, const char *const *values, char id[STUDY_ID_LEN + 1]);

/* "axis=value axis=value" of a run (into buf). */
void study_run_label(const study *s, const study_run *r, char *buf, size_t cap);

/* The run's config: config_load(base, set + axis overrides + run.dir of its
 * first stage). An error names the run (index, id, assignments) and the key. */
int study_run_config(const study *s, const study_run *r, run_config *cfg, ps_error *err);

/* Like study_run_config but never fails on a key or value this build does
 * not know: such overrides are skipped and listed in skipped (may be NULL).
 * Used by `plan --no-validate` for compute estimates of studies that need
 * keys still to come. */
int study_run_config_lenient(const study *s, const study_run *r, run_config *cfg, char *skipped, size_t cap,
                             ps_error *err);

/* Training compute of a run: model FLOPs of its train stages (0 when it has
 * none) and the tokens they see. */
int study_run_compute(const study *s, const study_run *r, const run_config *cfg, double *flops, double *tokens,
                      ps_error *err);

/* One stage's compute for run r (cfg: its resolved config), whatever the command:
 *   train  as study_run_compute;
 *   adapt  the stage's adapt config (its first argument, the rest its overrides, with
 *          the placeholders filled in) on the run's model.* and data.*: tokens counted
 *          from adapt.data over adapt.epochs (plan_adapt_count), FLOPs by stage
 *          (plan_train_flops: a frozen LLM 4N in align; the projector on visual rows,
 *          when the features files give its width);
 *   eval   the items of its eval.tasks (plan_eval_count), forward FLOPs (2N);
 *   other  (encode) 0.
 * Data that cannot be read (not fetched yet) leaves the stage at 0 with the reason in
 * note (cap bytes); only an unusable study is an error. */
int study_stage_compute(const study *s, const study_run *r, const run_config *cfg, int k, double *flops,
                        double *tokens, char *note, size_t cap, ps_error *err);

/* `plan`: validates every run, writes STUDY/runs.tsv and STUDY/runs/<id>/config.cfg
 * (refusing to change the config of a run that has started), and prints the
 * numbered list with compute estimates and a total line to out (may be NULL).
 * validate = 0: no files, unknown keys skipped (estimates only). */
int study_plan(study *s, int validate, FILE *out, ps_error *err);

/* Paths inside the study dir. */
void study_path(const study *s, char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Whether stage `stage` of run r is complete (its done file exists). */
int study_stage_done(const study *s, const study_run *r, int stage);

/* ------------------------------------------------------------------ SLURM */

/* One array job of a stage: the runs of one resource group within one index
 * window [offset, offset + max_array_size). */
typedef struct study_array {
    int stage, group;
    int offset; /* array task id + offset = runs.tsv index */
    int n_tasks;
    int *tasks;        /* array task ids (index - offset), ascending */
    char spec[4096];   /* "0-3,7,9%4" */
    char script[4400]; /* the sbatch script */
    long job_id;       /* after submission */
} study_array;

/* The arrays of every stage, stage by stage, splitting at max_array_size.
 * only_pending: leave out runs whose every stage is done. *arrays is
 * malloc'd (free with study_arrays_free). */
int study_arrays(const study *s, int max_array_size, int only_pending, study_array **arrays, int *n_arrays,
                 ps_error *err);
void study_arrays_free(study_array *arrays, int n_arrays);

/* The batch script of stage/group (text, malloc'd): the #SBATCH lines of its
 * resources, the variables, then slurm/pretrain.sbatch's body. */
char *study_sbatch_script(const study *s, int stage, int group, const char *presight_bin, const char *workdir,
                          ps_error *err);

/* Writes STUDY/sbatch/ (every stage/group script and sbatch/runs.tsv) and
 * fills arrays[i].script. */
int study_write_scripts(const study *s, study_array *arrays, int n_arrays, const char *presight_bin, ps_error *err);

/* The sbatch argument vector of an array (NULL-terminated, malloc'd; free
 * each string and the vector), with the dependency on the array it waits
 * for (dep_job_id > 0, or a "<stage.k>" placeholder for --dry-run). */
char **study_sbatch_argv(const study *s, const study_array *a, const char *dependency);

/* MaxArraySize of the cluster (scontrol show config), or 0 when unknown. */
int study_cluster_max_array_size(void);

/* submit: plan, write scripts, submit one array job per stage (and group and
 * window) with aftercorr dependencies, record STUDY/jobs.tsv. dry_run: print
 * the sbatch commands only. force: submit even while jobs of an earlier
 * submission are still queued. */
int study_submit(study *s, int dry_run, int force, FILE *out, ps_error *err);

/* ------------------------------------------------------------------ state */

typedef enum study_state {
    STUDY_PENDING,
    STUDY_RUNNING,
    STUDY_DONE,
    STUDY_FAILED,
    STUDY_PREEMPTED, /* stopped with a checkpoint (exit 75), waiting to be run again */
    STUDY_BLOCKED,   /* its dependency failed */
} study_state;

const char *study_state_name(study_state st);

typedef struct study_stage_status {
    study_state state;
    int starts;       /* task starts recorded in the attempts log */
    char detail[160]; /* e.g. the squeue reason, or "exit 1" */
    char nodes[64];   /* the nodes of the last start ("node[1-2]", a host outside SLURM), "" if none */
} study_stage_status;

typedef struct study_run_status {
    study_state state;
    int restarts;              /* starts beyond the first, over all stages */
    study_stage_status *stage; /* [n_stages] */
} study_run_status;

/* Per-run state from the run dirs and, when SLURM answers, squeue.
 * *statuses is malloc'd (free with study_status_free). slurm_note gets
 * a line saying where the states came from. */
int study_status(const study *s, study_run_status **statuses, char *slurm_note, size_t cap, ps_error *err);
void study_status_free(const study *s, study_run_status *statuses);
int study_print_status(const study *s, FILE *out, ps_error *err);

/* collect: STUDY/results.csv and results.jsonl (every run: index, id,
 * state, assignments, then each stage's JSON done file), and the table on out. */
int study_collect(const study *s, FILE *out, ps_error *err);

/* collect's copies: every run's <stage>/{results,predictions,metrics}.jsonl that exists, to
 * STUDY/collected/<id>/<stage>/ (each through .tmp); *n_copied counts them (study_copy.c). */
int study_collect_files(const study *s, int *n_copied, ps_error *err);

/* run --local: every stage of every run, one after another, skipping done
 * ones, with `mpirun -np N` when a stage has N > 1 ranks; then collect.
 * verbose: the tasks' output goes to out as well as to STUDY/logs. */
int study_run_local(study *s, int verbose, FILE *out, ps_error *err);

/* The sbatch template compiled into the binary (slurm/pretrain.sbatch). */
extern const char slurm_sbatch_template[];

#endif
