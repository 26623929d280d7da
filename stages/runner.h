/* runner.h - the job runner every stage shares.
 *
 * A stage (pretraining now; adapt and eval next) is a step function and
 * three callbacks; the runner owns everything around them, the same for
 * every stage:
 *   run.dir        created on first use; a run.dir that holds a run of
 *                  another config is refused, naming the keys that differ
 *                  (keys in job_resumable_keys may change between attempts)
 *   config.cfg     the resolved config (every key)
 *   metrics.jsonl  one line per step: {"step":N,<the stage's fields>,
 *                  "tokens":..,"tokens_per_s":..,"elapsed_s":..}; on resume
 *                  the lines after the checkpoint's step are dropped (those
 *                  steps run again and are logged again)
 *   progress line  every train.log_every steps (and the first and last):
 *                  step N/total | <the stage's part> | rate | ETA
 *   checkpoints/   the stage's save() every checkpoint.every_steps or
 *                  .every_minutes, at the last step and on a stop signal;
 *                  the newest checkpoint.keep are kept
 *   resume         the stage's resume() from checkpoints/ before the first step
 *   SIGTERM/SIGUSR1  checkpoint at the end of the current step on every rank,
 *                  then job_run returns PRESIGHT_EXIT_PREEMPTED (75)
 *   final.json     written last (NAME.tmp, renamed): it marks the run
 *                  complete, and a complete run.dir is left alone
 * Errors: every function returns 0 or -1 with err. -1 may be this rank's
 * alone (a data read error, out of memory in a step) while the others wait
 * for it in a collective: main must then end the whole job (comm_abort).
 * JOB_FAILED_EVERYWHERE says every rank failed together (an agreed verdict,
 * e.g. the run.dir is refused): main may simply return. */
#ifndef PRESIGHT_RUNNER_H
#define PRESIGHT_RUNNER_H

#include <stdint.h>
#include <stdio.h>

#include "comm.h"
#include "config.h"
#include "error.h"

/* Exit status of a stage that stopped early on SIGTERM/SIGUSR1 after writing
 * a checkpoint: batch scripts requeue on it (EX_TEMPFAIL). */
#define PRESIGHT_EXIT_PREEMPTED 75
/* job_* returned this on every rank, with the same verdict: no rank waits. */
#define JOB_FAILED_EVERYWHERE (-2)

/* Where a run stands; the stage's save() stores it, resume() restores it. */
typedef struct job_progress {
    int64_t step;        /* steps done */
    int64_t total_steps;
    double tokens;       /* tokens (or items) processed so far */
    double elapsed_s;    /* seconds of work so far, over every attempt */
} job_progress;

/* What one step reports. */
typedef struct job_step_report {
    double tokens;        /* tokens this step processed (every rank together) */
    char fields[1024];    /* metrics.jsonl fields of the stage, "\"loss\":1.5,\"lr\":..." (no braces) */
    char progress[512];   /* its part of the progress line, "loss 1.5000 | lr 1.00e-03" */
} job_step_report;

typedef struct job job;

/* A stage on the runner. Every callback is collective (every rank calls it). */
typedef struct job_stage {
    void *ctx;
    /* Step p->step + 1 of p->total_steps (p->step steps are done). */
    int (*step)(void *ctx, const job_progress *p, job_step_report *out, ps_error *err);
    /* A checkpoint of the state after p->step steps into job_checkpoint_dir. */
    int (*save)(void *ctx, job *j, const job_progress *p, ps_error *err);
    /* Loads the newest valid checkpoint of job_checkpoint_dir, if any, into
     * the state and *p (step, tokens, elapsed_s): 1 loaded, 0 none, -1 error. */
    int (*resume)(void *ctx, job *j, job_progress *p, ps_error *err);
    /* After the last step: the stage's outputs (weights, ...) and its fields of
     * final.json, written to final as ",\"key\":value" (final is NULL on
     * ranks other than 0). last_step_ran is 0 when the run resumed after its
     * last step (job_logged_number has what that step logged). */
    int (*finish)(void *ctx, job *j, const job_progress *p, int last_step_ran, FILE *final, ps_error *err);
} job_stage;

/* Keys that may differ between attempts of one run: how it is laid out on
 * the machine, not what it computes. */
extern const char *const job_resumable_keys[];

/* Prepares cfg->run_dir for a run of cfg on c (rank 0 decides, every rank
 * follows) and catches SIGTERM/SIGUSR1. *complete is 1 when run.dir holds a
 * complete run of this config: nothing is to be done (*out is still set, to
 * be closed). Returns 0, or JOB_FAILED_EVERYWHERE. */
int job_open(job **out, const run_config *cfg, comm *c, int *complete, ps_error *err);
/* Runs stage for total_steps steps (resuming first), writes final.json.
 * Returns 0, -1 (this rank failed; see above), JOB_FAILED_EVERYWHERE or
 * PRESIGHT_EXIT_PREEMPTED. */
int job_run(job *j, const job_stage *stage, int64_t total_steps, ps_error *err);
void job_close(job *j);

const run_config *job_config(const job *j);
comm *job_comm(const job *j);
/* run.dir/checkpoints */
const char *job_checkpoint_dir(const job *j);
/* The resolved config as text, as checkpoints store it. */
const char *job_config_text(const job *j);
/* A number metrics.jsonl holds for step under key ("loss"), or 0 (rank 0 only). */
double job_logged_number(const job *j, int64_t step, const char *key);
/* Appends the held-out loss (eval.every) to a step's report: "heldout_loss"
 * in metrics.jsonl, "held-out L" on the progress line. */
void job_report_heldout(job_step_report *out, double loss);
/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double job_now(void);

#endif
