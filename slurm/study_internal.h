/* study_internal.h - helpers shared by the slurm/study_*.c files. */
#ifndef PRESIGHT_STUDY_INTERNAL_H
#define PRESIGHT_STUDY_INTERNAL_H

#include <stddef.h>

#include "study.h"

/* mkdir -p */
int study_mkdirs(const char *path, ps_error *err);

/* The axis names over all grids, in order of first appearance (at most max). */
int study_axis_columns(const study *s, const char **names, int max);

/* The value of the named axis for run r, or "-" when its grid lacks it. */
const char *study_run_value(const study *s, const study_run *r, const char *axis);

/* STUDY/runs.tsv-style table of every run at path (atomically). */
int study_write_runs_tsv(const study *s, const char *path, ps_error *err);

/* A whole file (malloc'd, NUL-terminated), or NULL. */
char *study_read_text(const char *path);

/* Runs argv (no shell); its stdout (up to cap-1 bytes) into out when out is
 * not NULL, stderr into the same buffer when merge_stderr. Returns the exit
 * status (0-255), 128+signal, or -1 when it could not be started. */
int study_command(char *const argv[], char *out, size_t cap, int merge_stderr);

/* Whether a program is on PATH. */
int study_have_program(const char *name);

/* The array job ids of STUDY/jobs.tsv that squeue still lists (comma
 * separated into list); returns how many (0 when SLURM does not answer). */
int study_queued_jobs(const study *s, char *list, size_t cap);

/* Fails when jobs of an earlier submission are queued and sbatch/runs.tsv
 * would change under them (unless force); *n_queued (may be NULL) gets the count. */
int study_guard_queued(const study *s, int force, ps_error *err, int *n_queued);

/* The presight binary the batch scripts run: $PRESIGHT_BIN, else this executable. */
int study_presight_bin(char *buf, size_t cap);

#endif
