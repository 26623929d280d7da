/* report_targets.c - the paper's published headline figures (paper_dir/headline.tsv)
 * beside the groups whose mixture they name: paper, this run, gap. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "report.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_plot.h"

/* headline.tsv's measure columns, from the third on. */
static const int columns[] = {RM_PPL, RM_LANG_ACC, RM_VQA_GENERAL, RM_VQA_KNOWLEDGE, RM_VQA_OCR, RM_VQA_VISION,
                              RM_VQA_OVERALL};
#define N_COLUMNS ((int)(sizeof columns / sizeof columns[0]))

/* Our value in the paper's unit: VQA in percent, the rest as they are. */
static double in_paper_units(int m, double x) {
    return m >= RM_VQA_GENERAL && m <= RM_VQA_OVERALL ? 100 * x : x;
}

int report_write_targets(const report *R, const char *out, FILE *md, ps_error *err) {
    char path[PATH_MAX], line[1024];
    snprintf(path, sizeof path, "%s/headline.tsv", R->o.paper_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* no targets shipped there: nothing to place */
    report_file csv;
    if (report_file_open(&csv, out, "targets.csv", err)) {
        fclose(f);
        return -1;
    }
    fputs("model,mixture,group,measure,paper,this,gap\n", csv.f);
    int lineno = 0, header = 0, rows = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (!header++) continue; /* the column names */
        char *save = NULL, *model = strtok_r(line, "\t\n", &save), *mix = strtok_r(NULL, "\t\n", &save);
        double paper[N_COLUMNS];
        for (int c = 0; c < N_COLUMNS && !rc; c++) {
            char *v = strtok_r(NULL, "\t\n", &save), *end;
            paper[c] = v ? strtod(v, &end) : NAN;
            if (!v || *end) rc = ps_fail(err, "%s:%d: column %d: expected a number", path, lineno, c + 3);
        }
        if (rc || !mix) break;
        for (int g = 0; g < R->n_groups; g++) {
            const report_group *G = &R->groups[g];
            if (strcmp(G->mixture, mix) && strcmp(G->label, mix)) continue;
            if (!rows++)
                fprintf(md, "\n## Against the paper's headline table\n\nThe paper's 7B models on 1T tokens (%s); "
                            "VQA in percent. A quickstart-sized model is far below them: the gap is the point.\n\n"
                            "| paper model | group | measure | paper | this | gap |\n|---|---|---|---|---|---|\n",
                        path);
            for (int c = 0; c < N_COLUMNS; c++) {
                int m = columns[c];
                double ours = in_paper_units(m, G->value[m]);
                fprintf(md, "| %s (%s) | %s | %s | %.3f |", model, mix, G->label, report_measure_title(m), paper[c]);
                if (isnan(ours)) fputs(" - | - |\n", md);
                else fprintf(md, " %.3f | %+.3f |\n", ours, ours - paper[c]);
                fprintf(csv.f, "%s,%s,", model, mix);
                report_csv_text(csv.f, G->label);
                fprintf(csv.f, ",%s,%.10g,", report_measure_name(m), paper[c]);
                if (!isnan(ours)) fprintf(csv.f, "%.10g,%.10g", ours, ours - paper[c]);
                else fputc(',', csv.f);
                fputc('\n', csv.f);
            }
        }
    }
    fclose(f);
    return report_file_close(&csv, !rc, err) ? -1 : rc;
}
