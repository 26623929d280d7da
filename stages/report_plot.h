/* report_plot.h - the report's output files and its gnuplot scripts (report_plot.c). */
#ifndef PRESIGHT_REPORT_PLOT_H
#define PRESIGHT_REPORT_PLOT_H

#include <limits.h>
#include <stdio.h>

#include "error.h"

/* A file written to PATH.tmp and renamed to PATH when closed with ok != 0. */
typedef struct report_file {
    FILE *f;
    char path[PATH_MAX], tmp[PATH_MAX + 8];
} report_file;

int report_file_open(report_file *f, const char *dir, const char *name, ps_error *err);
/* Closes; renames when ok (returns its error), removes the .tmp when not (returns -1). */
int report_file_close(report_file *f, int ok, ps_error *err);

/* A CSV cell of text (commas, quotes and newlines become ';'). */
void report_csv_text(FILE *f, const char *s);
/* A gnuplot string literal (the terminal is noenhanced: '_' and '&' print as they are). */
void report_gp_string(FILE *f, const char *s);
/* The opening of NAME.gp: terminal, output (overridable: -e "out='x.png'"), CSV, title. */
void report_gp_head(FILE *f, const char *name, int width, int height, const char *title);
/* array VAR[n] = ["a", "b", ...] */
void report_gp_array(FILE *f, const char *var, const char *const *labels, int n);

/* Runs `gnuplot NAME.gp` in dir, drawing NAME.png (through NAME.png.tmp). */
int report_gnuplot(const char *dir, const char *name, ps_error *err);

#endif
