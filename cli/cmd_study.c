/* cmd_study.c - presight study plan|submit|status|collect|run STUDY [options] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "study.h"
#include "commands.h"

static void study_help(FILE *out) {
    fprintf(out, "usage: presight study ACTION STUDY [options]\n\n"
                 "A study file (config/studies/*.cfg) names a base run config, axes of overrides and the\n"
                 "stages every run goes through; see config/studies/README.md and slurm/README.md.\n\n"
                 "actions:\n"
                 "  plan STUDY [--no-validate]   number the runs (stable ids), estimate their compute, check\n"
                 "                               every run's config; write STUDYDIR/runs.tsv and each run's\n"
                 "                               config.cfg. --no-validate: estimates only, nothing written,\n"
                 "                               keys this build does not know yet are left out\n"
                 "  submit STUDY [--dry-run] [--force]\n"
                 "                               plan, write STUDYDIR/sbatch/*.sbatch and submit one array job\n"
                 "                               per stage (task i of a stage waits for task i of the stage it\n"
                 "                               depends on: --dependency=aftercorr); --dry-run prints the sbatch\n"
                 "                               commands instead; --force submits although jobs of an earlier\n"
                 "                               submission are still queued\n"
                 "  status STUDY                 per run: pending, running, done, failed, restarts (run dirs,\n"
                 "                               and squeue when SLURM answers)\n"
                 "  collect STUDY                every run's final metrics and its axis values into\n"
                 "                               STUDYDIR/results.csv and results.jsonl, and print the table\n"
                 "  run STUDY --local [-v]       run it here without SLURM, one task after another (done ones\n"
                 "                               are skipped; mpirun -np N for N ranks), then collect; -v shows\n"
                 "                               the tasks' output (always kept in STUDYDIR/logs/)\n\n"
                 "common option:\n"
                 "  --dir DIR                    the study dir (default: the study's `dir`, else runs/studies/NAME)\n\n"
                 "Exit status: 0 ok, 1 failed, 2 bad usage or a bad study file.\n");
}

int cmd_study(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        study_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    static const char *const actions[] = {"plan", "submit", "status", "collect", "run", NULL};
    int known = 0;
    for (const char *const *a = actions; *a; a++) known |= !strcmp(*a, action);
    if (!known) {
        fprintf(stderr, "presight study: unknown action '%s'\n\n", action);
        study_help(stderr);
        return 2;
    }
    const char *path = NULL, *dir = NULL;
    int dry_run = 0, force = 0, local = 0, no_validate = 0, verbose = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            study_help(stdout);
            return 0;
        } else if (!strcmp(a, "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strncmp(a, "--dir=", 6)) {
            dir = a + 6;
        } else if (!strcmp(a, "--dry-run") && !strcmp(action, "submit")) {
            dry_run = 1;
        } else if (!strcmp(a, "--force") && !strcmp(action, "submit")) {
            force = 1;
        } else if (!strcmp(a, "--local") && !strcmp(action, "run")) {
            local = 1;
        } else if ((!strcmp(a, "-v") || !strcmp(a, "--verbose")) && !strcmp(action, "run")) {
            verbose = 1;
        } else if (!strcmp(a, "--no-validate") && !strcmp(action, "plan")) {
            no_validate = 1;
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "presight study %s: unexpected argument '%s' (see presight study --help)\n", action, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        fprintf(stderr, "presight study %s: which study? (e.g. presight study %s config/studies/tiny-local.cfg)\n",
                action, action);
        return 2;
    }
    if (!strcmp(action, "run") && !local) {
        fprintf(stderr, "presight study run: only --local exists (use `presight study submit` for SLURM)\n");
        return 2;
    }
    study s;
    ps_error err = {{0}};
    if (study_load(&s, path, dir, &err)) {
        fprintf(stderr, "presight study %s: %s\n", action, err.msg);
        return 2;
    }
    int rc = 0;
    if (!strcmp(action, "plan"))
        rc = study_plan(&s, !no_validate, stdout, &err);
    else if (!strcmp(action, "submit"))
        rc = study_submit(&s, dry_run, force, stdout, &err);
    else if (!strcmp(action, "status"))
        rc = study_print_status(&s, stdout, &err);
    else if (!strcmp(action, "collect"))
        rc = study_collect(&s, stdout, &err);
    else
        rc = study_run_local(&s, verbose, stdout, &err);
    fflush(stdout);
    if (rc) fprintf(stderr, "presight study %s: %s\n", action, err.msg);
    study_free(&s);
    return rc ? 1 : 0;
}
