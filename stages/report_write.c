/* report_write.c - report.md and, beside each of its tables, the CSV it shows and a PNG
 * drawn from that CSV (report_plot.h). Accuracies are shown in percent. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "report.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "report_plot.h"

typedef struct writer {
    const report *R;
    const char *out;
    int plot;
    FILE *md;
    ps_error *err;
} writer;

static int is_ratio(int m) { return m == RM_PPL || m == RM_BYTE_PPL || m == RM_ALIGN; }

static double pct(int m, double x) { return is_ratio(m) ? x : 100 * x; }

/* A value as report.md shows it: percentages with 1 decimal, ratios with 4 significant
 * digits (a word perplexity of 5.585e+07 after a few steps stays readable). */
static void md_num(FILE *md, int m, double x) {
    if (!is_ratio(m)) fprintf(md, "%.1f", pct(m, x));
    else if (fabs(x) >= 1e5) fprintf(md, "%.4g", x);
    else fprintf(md, "%.*f", fabs(x) >= 100 ? 1 : 3, x);
}

/* A group's cell: value [interval over items] (seeds lo..hi: the interval over seeds). */
static void md_group_value(FILE *md, const report_group *G, int m) {
    double v = G->value[m];
    if (isnan(v)) {
        fputs(" - |", md);
        return;
    }
    fputc(' ', md);
    md_num(md, m, v);
    if (!isnan(G->item_lo[m])) {
        fputs(" [", md), md_num(md, m, G->item_lo[m]), fputs(", ", md), md_num(md, m, G->item_hi[m]), fputc(']', md);
    }
    if (!isnan(G->seed_lo[m])) {
        fputs(" (seeds ", md), md_num(md, m, G->seed_lo[m]), fputs("..", md), md_num(md, m, G->seed_hi[m]);
        fputc(')', md);
    }
    fputs(" |", md);
}

static void csv_num(FILE *f, double x) {
    if (isnan(x)) fputs(",", f);
    else fprintf(f, ",%.10g", x);
}

/* The interval a plot shows: over items (of the seed-pooled item vector) where the measure
 * has items, else over seeds. */
static void shown_interval(const report_group *g, int m, double *lo, double *hi) {
    int items = !isnan(g->item_lo[m]);
    *lo = items ? g->item_lo[m] : g->seed_lo[m];
    *hi = items ? g->item_hi[m] : g->seed_hi[m];
}

static int any_value(const report *R, int m) {
    for (int g = 0; g < R->n_groups; g++)
        if (!isnan(R->groups[g].value[m])) return 1;
    return 0;
}

/* ------------------------------------------------------------------ CSV tables */

static int write_runs_csv(writer *W) {
    const report *R = W->R;
    report_file f;
    if (report_file_open(&f, W->out, "runs.csv", W->err)) return -1;
    fputs("run,group,id", f.f);
    for (int m = 0; m < RM_COUNT; m++) fprintf(f.f, ",%s", report_measure_name(m));
    fputs(",loss_last\n", f.f);
    for (int g = 0; g < R->n_groups; g++)
        for (int k = 0; k < R->groups[g].n_runs; k++) {
            const report_run *r = &R->runs[R->groups[g].runs[k]];
            report_csv_text(f.f, r->name);
            fputc(',', f.f);
            report_csv_text(f.f, R->groups[g].label);
            fputc(',', f.f);
            report_csv_text(f.f, r->id);
            for (int m = 0; m < RM_COUNT; m++) csv_num(f.f, r->measure[m]);
            csv_num(f.f, r->n_loss ? r->loss[r->n_loss - 1] : NAN);
            fputc('\n', f.f);
        }
    return report_file_close(&f, 1, W->err);
}

static int write_groups_csv(writer *W) {
    const report *R = W->R;
    report_file f;
    if (report_file_open(&f, W->out, "groups.csv", W->err)) return -1;
    fputs("group,seeds,reasoning_share,visual_share", f.f);
    for (int m = 0; m < RM_COUNT; m++) {
        const char *n = report_measure_name(m);
        fprintf(f.f, ",%s,%s_item_lo,%s_item_hi,%s_seed_lo,%s_seed_hi", n, n, n, n, n);
    }
    fputc('\n', f.f);
    for (int g = 0; g < R->n_groups; g++) {
        const report_group *G = &R->groups[g];
        report_csv_text(f.f, G->label);
        fprintf(f.f, ",%d", G->n_runs);
        csv_num(f.f, G->reasoning), csv_num(f.f, G->visual);
        for (int m = 0; m < RM_COUNT; m++) {
            csv_num(f.f, G->value[m]), csv_num(f.f, G->item_lo[m]), csv_num(f.f, G->item_hi[m]);
            csv_num(f.f, G->seed_lo[m]), csv_num(f.f, G->seed_hi[m]);
        }
        fputc('\n', f.f);
    }
    return report_file_close(&f, 1, W->err);
}

/* ------------------------------------------------------------------ bar plots */

/* NAME.csv: group_index, measure_index, group, measure, value, lo, hi (percent) for the
 * measures ms[0..n_ms) of the groups order[0..n_g); NAME.gp: grouped bars with the
 * intervals as error bars; then NAME.png. */
/* The top of a plot's y axis: a little above the highest value or interval of measures ms
 * over the groups; at least 10, so that values of 0 (every item wrong) sit on a readable
 * axis rather than gnuplot's 0..1.2 for an all-zero plot; percentages stop at 100. */
static double axis_top(const report *R, const int *groups, int n_g, const int *ms, int n_ms) {
    double top = 0;
    for (int i = 0; i < n_g; i++)
        for (int k = 0; k < n_ms; k++) {
            const report_group *G = &R->groups[groups[i]];
            double lo, hi, v = pct(ms[k], G->value[ms[k]]);
            shown_interval(G, ms[k], &lo, &hi);
            if (v > top) top = v;
            if (!isnan(hi) && pct(ms[k], hi) > top) top = pct(ms[k], hi);
        }
    top = top * 1.1 > 10 ? top * 1.1 : 10;
    return !is_ratio(ms[0]) && top > 100 ? 100 : top;
}

static int bars(writer *W, const char *name, const char *title, const char *ylabel, const int *ms, int n_ms,
                const int *order, int n_g, const char *const *xlabels) {
    const report *R = W->R;
    report_file f;
    char csv[256], gp[256];
    snprintf(csv, sizeof csv, "%s.csv", name);
    snprintf(gp, sizeof gp, "%s.gp", name);
    if (report_file_open(&f, W->out, csv, W->err)) return -1;
    fputs("group_index,measure_index,group,measure,value,lo,hi\n", f.f);
    for (int i = 0; i < n_g; i++) {
        const report_group *G = &R->groups[order[i]];
        for (int k = 0; k < n_ms; k++) {
            double lo, hi;
            shown_interval(G, ms[k], &lo, &hi);
            fprintf(f.f, "%d,%d,", i, k);
            report_csv_text(f.f, G->label);
            fputc(',', f.f);
            report_csv_text(f.f, xlabels ? xlabels[k] : report_measure_title(ms[k]));
            csv_num(f.f, pct(ms[k], G->value[ms[k]]));
            csv_num(f.f, pct(ms[k], lo)), csv_num(f.f, pct(ms[k], hi));
            fputc('\n', f.f);
        }
    }
    if (report_file_close(&f, 1, W->err)) return -1;
    double top = axis_top(R, order, n_g, ms, n_ms);
    if (report_file_open(&f, W->out, gp, W->err)) return -1;
    report_gp_head(f.f, name, 900, 500, title);
    const char **labels = malloc(sizeof *labels * (size_t)(n_g ? n_g : 1));
    if (!labels) return report_file_close(&f, 0, W->err), ps_fail(W->err, "out of memory");
    for (int i = 0; i < n_g; i++) labels[i] = R->groups[order[i]].label;
    report_gp_array(f.f, "L", labels, n_g);
    free(labels);
    fprintf(f.f,
            "set ylabel \"%s\"\n"
            "set yrange [%g:%g]\nset xrange [-0.6:%d-0.4]\nset offsets 0, 0, 0, 0\n"
            "set arrow from graph 0, first 0 to graph 1, first 0 nohead lc rgb \"gray40\"\n"
            "set style fill solid 0.85 border -1\nset boxwidth 1 absolute\n"
            "G = %d; w = 0.8 / G\n"
            "x(g) = $2 - 0.4 + w * (g + 0.5)\n"
            "# each bar's value also as a marker (in the bar's colour, after the error bars, whose point\n"
            "# would cover it), and a 0 written above a bar of 0: a group whose every item was wrong shows\n"
            "plot for [g=0:G-1] \"%s\" every ::1 using (x(g)):($1 == g ? $5 : 1/0):(w) with boxes lc g+1 title L[g+1], \\\n"
            "     for [g=0:G-1] \"%s\" every ::1 using (x(g)):($1 == g ? $5 : 1/0):6:7 with yerrorbars lc rgb \"black\" pt 0 notitle, \\\n"
            "     for [g=0:G-1] \"%s\" every ::1 using (x(g)):($1 == g ? $5 : 1/0) with points pt 7 ps 1.3 lc g+1 notitle, \\\n"
            "     for [g=0:G-1] \"%s\" every ::1 using (x(g)):($1 == g && $5 == 0 ? 0 : 1/0):(\"0\") with labels offset 0,1 notitle, \\\n"
            "     \"%s\" every ::1 using 2:(1/0):xtic(4) notitle\n",
            ylabel, -0.03 * top, top, n_ms, n_g, csv, csv, csv, csv, csv);
    if (report_file_close(&f, 1, W->err)) return -1;
    return W->plot ? report_gnuplot(W->out, name, W->err) : 0;
}

/* ------------------------------------------------------------------ report.md tables */

static void md_table(writer *W, const char *heading, const int *ms, int n_ms) {
    const report *R = W->R;
    fprintf(W->md, "\n## %s\n\n| group | seeds |", heading);
    for (int k = 0; k < n_ms; k++) fprintf(W->md, " %s |", report_measure_title(ms[k]));
    fputs("\n|---|---|", W->md);
    for (int k = 0; k < n_ms; k++) fputs("---|", W->md);
    fputc('\n', W->md);
    for (int g = 0; g < R->n_groups; g++) {
        const report_group *G = &R->groups[g];
        fprintf(W->md, "| %s | %d |", G->label, G->n_runs);
        for (int k = 0; k < n_ms; k++) md_group_value(W->md, G, ms[k]);
        fputc('\n', W->md);
    }
}

static void md_plot(writer *W, const char *name) {
    fprintf(W->md, "\n![%s](%s.png)\n\nData: [%s.csv](%s.csv), redraw: `gnuplot %s.gp`.\n", name, name, name, name, name);
}

static int interval_note(const report *R) {
    for (int g = 0; g < R->n_groups; g++)
        if (R->groups[g].n_runs > 1) return 1;
    return 0;
}

static int section_runs(writer *W) {
    const report *R = W->R;
    fprintf(W->md, "\n## Runs\n\n| group | runs | reasoning share | visual share |\n|---|---|---|---|\n");
    for (int g = 0; g < R->n_groups; g++) {
        const report_group *G = &R->groups[g];
        fprintf(W->md, "| %s |", G->label);
        for (int k = 0; k < G->n_runs; k++) fprintf(W->md, "%s %s", k ? "," : "", R->runs[G->runs[k]].name);
        fputs(" |", W->md);
        for (int s = 0; s < 2; s++) {
            double v = s ? G->visual : G->reasoning;
            if (isnan(v)) fputs(" - |", W->md);
            else fprintf(W->md, " %.1f%% |", 100 * v);
        }
        fputc('\n', W->md);
    }
    fputs("\nShares: the mixture's kind weights times the paper's label rates (config/paper/label_rates.tsv, "
          "STUDY.md), or the run's data.reasoning_share / data.visual_share. Per-run values: runs.csv; "
          "per group with every interval: groups.csv.\n",
          W->md);
    return 0;
}

static const char *paired_title(int m) {
    static const char *const exist[] = {"existence small", "existence medium", "existence large", "existence overall"};
    return m >= RM_EXIST_SMALL && m <= RM_EXIST_OVERALL ? exist[m - RM_EXIST_SMALL] : report_measure_title(m);
}

static int section_paired(writer *W) {
    const report *R = W->R;
    if (R->n_groups < 2) return 0;
    const report_group *B = &R->groups[0];
    int ms[] = {RM_VQA_GENERAL, RM_VQA_KNOWLEDGE, RM_VQA_OCR, RM_VQA_VISION, RM_VQA_OVERALL,
                RM_EXIST_SMALL, RM_EXIST_MEDIUM, RM_EXIST_LARGE, RM_EXIST_OVERALL};
    int n_ms = (int)(sizeof ms / sizeof ms[0]), any = 0;
    for (int g = 1; g < R->n_groups; g++)
        for (int k = 0; k < n_ms; k++) any |= R->groups[g].diff_n[ms[k]] > 0;
    if (!any) return 0; /* no items in common: nothing to pair */
    fprintf(W->md, "\n## Paired comparisons against %s\n\nThe same items scored by both (per item the mean over "
                   "seeds); difference in points, %.0f%% paired bootstrap interval (%d resamples, seed %llu).\n\n"
                   "| group | measure | difference | interval | items | verdict |\n|---|---|---|---|---|---|\n",
            B->label, 100 * R->o.level, R->o.iters, (unsigned long long)R->o.seed);
    report_file f;
    if (report_file_open(&f, W->out, "paired.csv", W->err)) return -1;
    fputs("group_index,measure_index,group,baseline,measure,difference,lo,hi,n\n", f.f);
    for (int g = 1; g < R->n_groups; g++) {
        const report_group *G = &R->groups[g];
        for (int k = 0; k < n_ms; k++) {
            int m = ms[k];
            if (!G->diff_n[m]) continue;
            const char *verdict = G->diff_lo[m] > 0 ? "leads" : G->diff_hi[m] < 0 ? "trails" : NULL;
            fprintf(W->md, "| %s | %s | %+.1f | [%+.1f, %+.1f] | %zu | ", G->label, paired_title(m), 100 * G->diff[m],
                    100 * G->diff_lo[m], 100 * G->diff_hi[m], G->diff_n[m]);
            if (verdict) fprintf(W->md, "%s %s %s |\n", G->label, verdict, B->label);
            else fputs("no clear difference |\n", W->md);
            fprintf(f.f, "%d,%d,", g, k);
            report_csv_text(f.f, G->label);
            fputc(',', f.f);
            report_csv_text(f.f, B->label);
            fprintf(f.f, ",%s", report_measure_name(m));
            csv_num(f.f, 100 * G->diff[m]), csv_num(f.f, 100 * G->diff_lo[m]), csv_num(f.f, 100 * G->diff_hi[m]);
            fprintf(f.f, ",%zu\n", G->diff_n[m]);
        }
    }
    if (report_file_close(&f, 1, W->err)) return -1;
    if (report_file_open(&f, W->out, "paired.gp", W->err)) return -1;
    char title[600];
    snprintf(title, sizeof title, "paired differences against %s (points, %.0f%% interval)", B->label, 100 * R->o.level);
    report_gp_head(f.f, "paired", 900, 500, title);
    const char *gl[64];
    int n = R->n_groups < 64 ? R->n_groups : 64;
    for (int i = 0; i < n; i++) gl[i] = R->groups[i].label;
    report_gp_array(f.f, "L", gl, n);
    fprintf(f.f, "set ylabel \"difference (points)\"\nset xrange [-0.6:%d-0.4]\nset xtics rotate by -30 left (", n_ms);
    for (int k = 0; k < n_ms; k++) {
        fputs(k ? ", " : "", f.f);
        report_gp_string(f.f, paired_title(ms[k]));
        fprintf(f.f, " %d", k);
    }
    fprintf(f.f,
            ")\nset arrow from graph 0, first 0 to graph 1, first 0 nohead lc rgb \"gray40\"\n"
            "G = %d\n"
            "plot for [g=1:G-1] \"paired.csv\" every ::1 using ($2 - 0.3 + 0.6 * g / G):($1 == g ? $6 : 1/0):7:8 "
            "with yerrorbars pt 7 ps 1.2 lw 2 title L[g+1]\n",
            n);
    if (report_file_close(&f, 1, W->err)) return -1;
    md_plot(W, "paired");
    return W->plot ? report_gnuplot(W->out, "paired", W->err) : 0;
}

static int section_loss(writer *W) {
    const report *R = W->R;
    int any = 0;
    for (int i = 0; i < R->n_runs; i++) any |= R->runs[i].n_loss > 0;
    if (!any) return 0;
    fprintf(W->md, "\n## Training loss\n\n| run | steps | first loss | last loss |\n|---|---|---|---|\n");
    report_file f;
    if (report_file_open(&f, W->out, "loss.csv", W->err)) return -1;
    fputs("run_index,run,step,loss\n", f.f);
    const char **labels = malloc(sizeof *labels * (size_t)R->n_runs);
    if (!labels) return report_file_close(&f, 0, W->err), ps_fail(W->err, "out of memory");
    for (int i = 0; i < R->n_runs; i++) {
        const report_run *r = &R->runs[i];
        labels[i] = r->name;
        if (r->n_loss)
            fprintf(W->md, "| %s | %.0f | %.4f | %.4f |\n", r->name, r->step[r->n_loss - 1], r->loss[0],
                    r->loss[r->n_loss - 1]);
        for (size_t s = 0; s < r->n_loss; s++) {
            fprintf(f.f, "%d,", i);
            report_csv_text(f.f, r->name);
            fprintf(f.f, ",%.10g,%.10g\n", r->step[s], r->loss[s]);
        }
    }
    int rc = report_file_close(&f, 1, W->err);
    if (!rc) rc = report_file_open(&f, W->out, "loss.gp", W->err);
    if (!rc) {
        report_gp_head(f.f, "loss", 900, 500, "training loss");
        report_gp_array(f.f, "L", labels, R->n_runs);
        fprintf(f.f, "set xlabel \"step\"\nset ylabel \"loss (nats/token)\"\nset grid xtics\nset key inside top right\n"
                     "plot for [r=0:%d] \"loss.csv\" every ::1 using 3:($1 == r ? $4 : 1/0) with lines lw 2 title L[r+1]\n",
                R->n_runs - 1);
        rc = report_file_close(&f, 1, W->err);
    }
    free(labels);
    md_plot(W, "loss");
    return rc || !W->plot ? rc : report_gnuplot(W->out, "loss", W->err);
}

/* Group index sorted by a measure, best first. */
static const report *sort_R;
static int sort_m;
static int by_measure(const void *a, const void *b) {
    double x = sort_R->groups[*(const int *)a].value[sort_m], y = sort_R->groups[*(const int *)b].value[sort_m];
    return (x < y) - (x > y);
}

static int section_study(writer *W) {
    const report *R = W->R;
    if (R->n_groups < 2 || !any_value(R, RM_VQA_OVERALL)) return 0;
    int *order = malloc(sizeof *order * (size_t)R->n_groups), rc = 0;
    if (!order) return ps_fail(W->err, "out of memory");
    /* the ranking (the single-source study's figure) */
    for (int g = 0; g < R->n_groups; g++) order[g] = g;
    sort_R = R, sort_m = RM_VQA_OVERALL;
    qsort(order, (size_t)R->n_groups, sizeof *order, by_measure);
    fprintf(W->md, "\n## Ranking by overall VQA\n\n| rank | group | overall VQA |\n|---|---|---|\n");
    for (int i = 0; i < R->n_groups; i++) {
        const report_group *G = &R->groups[order[i]];
        fprintf(W->md, "| %d | %s |", i + 1, G->label);
        md_group_value(W->md, G, RM_VQA_OVERALL);
        fputc('\n', W->md);
    }
    int one[] = {RM_VQA_OVERALL};
    rc = bars(W, "ranking", "groups ranked by overall VQA", "overall VQA (%)", one, 1, order, R->n_groups, NULL);
    md_plot(W, "ranking");
    /* the interpolation: groups whose mixture is mixN, against N */
    int n_mix = 0;
    for (int g = 0; g < R->n_groups; g++)
        if (!strncmp(R->groups[g].mixture, "mix", 3) && R->groups[g].mixture[3] >= '0' && R->groups[g].mixture[3] <= '9')
            order[n_mix++] = g;
    for (int i = 1; i < n_mix; i++) /* by mix index: the lines run left to right */
        for (int j = i; j > 0 && atoi(R->groups[order[j - 1]].mixture + 3) > atoi(R->groups[order[j]].mixture + 3); j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    if (!rc && n_mix >= 2) {
        report_file f;
        rc = report_file_open(&f, W->out, "mix.csv", W->err);
        if (!rc) {
            fputs("mix,category_index,category,value,lo,hi\n", f.f);
            /* category by category, so that each line's rows are contiguous (gnuplot breaks a
             * line at the rows its filter leaves out) */
            for (int m = RM_VQA_GENERAL; m <= RM_VQA_OVERALL; m++)
                for (int i = 0; i < n_mix; i++) {
                    const report_group *G = &R->groups[order[i]];
                    double lo, hi;
                    shown_interval(G, m, &lo, &hi);
                    fprintf(f.f, "%d,%d,%s", atoi(G->mixture + 3), m - RM_VQA_GENERAL, report_measure_title(m));
                    csv_num(f.f, 100 * G->value[m]), csv_num(f.f, 100 * lo), csv_num(f.f, 100 * hi);
                    fputc('\n', f.f);
                }
            rc = report_file_close(&f, 1, W->err);
        }
        if (!rc) rc = report_file_open(&f, W->out, "mix.gp", W->err);
        if (!rc) {
            report_gp_head(f.f, "mix", 900, 500, "language/vision interpolation: VQA by category against the mix");
            const char *cats[5];
            for (int m = RM_VQA_GENERAL; m <= RM_VQA_OVERALL; m++) cats[m - RM_VQA_GENERAL] = report_measure_title(m);
            report_gp_array(f.f, "C", cats, 5);
            int cats_m[] = {RM_VQA_GENERAL, RM_VQA_KNOWLEDGE, RM_VQA_OCR, RM_VQA_VISION, RM_VQA_OVERALL};
            fprintf(f.f, "set yrange [0:%g]\nset offsets 0, 0, 0, 0\n", axis_top(R, order, n_mix, cats_m, 5));
            fputs("set xlabel \"mix index (0 language-favourable .. 10)\"\nset ylabel \"accuracy (%)\"\nset xtics 1\n"
                  "set xrange [-0.5:10.5]\n"
                  "# each category a little to the side of the mix index, so the intervals do not cover each other\n"
                  "dx(c) = (c - 2) * 0.12\n"
                  "plot for [c=0:4] \"mix.csv\" every ::1 using ($1 + dx(c)):($2 == c ? $4 : 1/0):5:6 with yerrorlines lw 2 pt 7 title C[c+1]\n",
                  f.f);
            rc = report_file_close(&f, 1, W->err);
        }
        if (!rc && W->plot) rc = report_gnuplot(W->out, "mix", W->err);
        fprintf(W->md, "\n## Mix interpolation\n\nEach VQA category against the mix index (mix.csv).\n");
        md_plot(W, "mix");
    }
    /* shares: overall VQA against the reasoning and the visual share; a heatmap over both */
    int n_sh = 0;
    for (int g = 0; g < R->n_groups; g++) n_sh += !isnan(R->groups[g].reasoning) && !isnan(R->groups[g].visual);
    if (!rc && n_sh >= 2) {
        report_file f;
        rc = report_file_open(&f, W->out, "shares.csv", W->err);
        if (!rc) {
            fputs("group,reasoning_share,visual_share,vqa_overall,lo,hi\n", f.f);
            for (int g = 0; g < R->n_groups; g++) {
                const report_group *G = &R->groups[g];
                if (isnan(G->reasoning) || isnan(G->visual)) continue;
                double lo, hi;
                shown_interval(G, RM_VQA_OVERALL, &lo, &hi);
                report_csv_text(f.f, G->label);
                csv_num(f.f, 100 * G->reasoning), csv_num(f.f, 100 * G->visual);
                csv_num(f.f, 100 * G->value[RM_VQA_OVERALL]), csv_num(f.f, 100 * lo), csv_num(f.f, 100 * hi);
                fputc('\n', f.f);
            }
            rc = report_file_close(&f, 1, W->err);
        }
        if (!rc) rc = report_file_open(&f, W->out, "shares.gp", W->err);
        if (!rc) {
            report_gp_head(f.f, "shares", 1000, 450, "");
            fputs("set offsets graph 0.08, graph 0.08, graph 0.1, graph 0.1\n", f.f);
            fputs("unset title\nset multiplot layout 1,2 title \"overall VQA against the mixture's shares\"\n"
                  "set ylabel \"overall VQA (%)\"\nset key off\n"
                  "set xlabel \"reasoning share (%)\"\n"
                  "plot \"shares.csv\" every ::1 using 2:4:5:6 with yerrorbars pt 7 ps 1.3 lw 2\n"
                  "set xlabel \"visual share (%)\"\n"
                  "plot \"shares.csv\" every ::1 using 3:4:5:6 with yerrorbars pt 7 ps 1.3 lw 2 lc 2\n"
                  "unset multiplot\n",
                  f.f);
            rc = report_file_close(&f, 1, W->err);
        }
        if (!rc && W->plot) rc = report_gnuplot(W->out, "shares", W->err);
        fprintf(W->md, "\n## Reasoning and visual shares\n\nOverall VQA against each group's reasoning and visual share "
                       "(the proportion sweeps' figures).\n");
        md_plot(W, "shares");
        /* the grid: >= 2 distinct values on both shares */
        double r0 = NAN, v0 = NAN;
        int r2 = 0, v2 = 0;
        for (int g = 0; g < R->n_groups; g++) {
            const report_group *G = &R->groups[g];
            if (isnan(G->reasoning) || isnan(G->visual)) continue;
            if (isnan(r0)) r0 = G->reasoning, v0 = G->visual;
            r2 |= fabs(G->reasoning - r0) > 1e-9, v2 |= fabs(G->visual - v0) > 1e-9;
        }
        if (!rc && r2 && v2 && n_sh >= 4) {
            rc = report_file_open(&f, W->out, "grid.gp", W->err);
            if (!rc) {
                report_gp_head(f.f, "grid", 800, 600, "average VQA over reasoning x visual share (shares.csv)");
                fputs("set xlabel \"reasoning share (%)\"\nset ylabel \"visual share (%)\"\nset cblabel \"overall VQA (%)\"\n"
                      "set palette defined (0 \"#f7fbff\", 1 \"#6baed6\", 2 \"#08306b\")\nset key off\nunset grid\n"
                      "stats \"shares.csv\" every ::1 using 2:3 nooutput\n"
                      "dx = (STATS_max_x - STATS_min_x) / 10.0; dy = (STATS_max_y - STATS_min_y) / 10.0\n"
                      "dx = dx > 0 ? dx : 1; dy = dy > 0 ? dy : 1\n"
                      "set xrange [STATS_min_x - dx : STATS_max_x + dx]; set yrange [STATS_min_y - dy : STATS_max_y + dy]\n"
                      "plot \"shares.csv\" every ::1 using 2:3:(dx/2):(dy/2):4 with boxxyerror fs solid 1.0 lc palette, \\\n"
                      "     \"\" every ::1 using 2:3:(sprintf(\"%.1f\", $4)) with labels tc rgb \"#ff8c00\"\n",
                      f.f);
                rc = report_file_close(&f, 1, W->err);
            }
            if (!rc && W->plot) rc = report_gnuplot(W->out, "grid", W->err);
            fprintf(W->md, "\n## Reasoning x visual grid\n\n![grid](grid.png)\n\nData: [shares.csv](shares.csv), "
                           "redraw: `gnuplot grid.gp`.\n");
        }
    }
    free(order);
    return rc;
}

/* ------------------------------------------------------------------ two axes */

/* A number from an axis value: "0.25", "340m", "50B" (k/M/B/T suffixes, any case); NaN if not. */
static double axis_number(const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (end == v) return NAN;
    const char *suffixes = "kmbt";
    const double scale[] = {1e3, 1e6, 1e9, 1e12};
    if (*end) {
        const char *at = strchr(suffixes, tolower((unsigned char)*end));
        if (!at || end[1]) return NAN;
        x *= scale[at - suffixes];
    }
    return x;
}

/* The non-seed axes of a group's first run (names and values). */
static int group_axes(const report *R, const report_group *G, const char **name, const char **value) {
    const report_run *r = &R->runs[G->runs[0]];
    int n = 0;
    for (int a = 0; a < r->n_axes; a++)
        if (!strstr(r->axis[a], "seed")) name[n] = r->axis[a], value[n++] = r->value[a];
    return n;
}

/* Studies of two axes (scale x tokens, encoder x mixture, ...): the headline measure against
 * one axis, a line per value of the other. x is the first axis whose values are all numbers
 * (token budgets, sizes, shares); with none, the first axis by position. */
static int section_axes(writer *W) {
    const report *R = W->R;
    if (R->n_groups < 3) return 0;
    const char *name0[REPORT_MAX_AXES], *value0[REPORT_MAX_AXES];
    if (group_axes(R, &R->groups[0], name0, value0) != 2) return 0;
    int numeric[2] = {1, 1};
    for (int g = 0; g < R->n_groups; g++) {
        const char *name[REPORT_MAX_AXES], *value[REPORT_MAX_AXES];
        if (group_axes(R, &R->groups[g], name, value) != 2 || strcmp(name[0], name0[0]) || strcmp(name[1], name0[1]))
            return 0;
        for (int a = 0; a < 2; a++) numeric[a] &= !isnan(axis_number(value[a]));
    }
    int xa = numeric[0] ? 0 : numeric[1] ? 1 : 0, m = any_value(R, RM_VQA_OVERALL) ? RM_VQA_OVERALL : -1;
    if (m < 0) return 0;
    double lo_x = INFINITY, hi_x = -INFINITY; /* a log axis for budgets and sizes (>= 10x apart) */
    for (int g = 0; numeric[xa] && g < R->n_groups; g++) {
        const char *name[REPORT_MAX_AXES], *value[REPORT_MAX_AXES];
        group_axes(R, &R->groups[g], name, value);
        double x = axis_number(value[xa]);
        lo_x = x < lo_x ? x : lo_x, hi_x = x > hi_x ? x : hi_x;
    }
    int logx = numeric[xa] && lo_x > 0 && hi_x >= 10 * lo_x;
    /* series: the other axis's values in order of first appearance */
    const char *series[256];
    int n_series = 0, *sidx = malloc(sizeof *sidx * (size_t)R->n_groups);
    if (!sidx) return ps_fail(W->err, "out of memory");
    for (int g = 0; g < R->n_groups; g++) {
        const char *name[REPORT_MAX_AXES], *value[REPORT_MAX_AXES];
        group_axes(R, &R->groups[g], name, value);
        int k = 0;
        while (k < n_series && strcmp(series[k], value[1 - xa])) k++;
        if (k == n_series && n_series < 256) series[n_series++] = value[1 - xa];
        sidx[g] = k;
    }
    report_file f;
    int rc = report_file_open(&f, W->out, "axes.csv", W->err);
    if (!rc) {
        fputs("series_index,x,x_label,series,value,lo,hi\n", f.f);
        for (int k = 0; k < n_series; k++) { /* a series' rows together: one line each */
            int pos = 0;
            for (int g = 0; g < R->n_groups; g++) {
                const char *name[REPORT_MAX_AXES], *value[REPORT_MAX_AXES];
                group_axes(R, &R->groups[g], name, value);
                if (sidx[g] != k) continue;
                const report_group *G = &R->groups[g];
                double lo, hi;
                shown_interval(G, m, &lo, &hi);
                fprintf(f.f, "%d,%.10g,", k, numeric[xa] ? axis_number(value[xa]) : (double)pos++);
                report_csv_text(f.f, value[xa]);
                fputc(',', f.f);
                report_csv_text(f.f, series[k]);
                csv_num(f.f, 100 * G->value[m]), csv_num(f.f, 100 * lo), csv_num(f.f, 100 * hi);
                fputc('\n', f.f);
            }
        }
        rc = report_file_close(&f, 1, W->err);
    }
    if (!rc) rc = report_file_open(&f, W->out, "axes.gp", W->err);
    if (!rc) {
        char title[400];
        snprintf(title, sizeof title, "overall VQA against %s, a line per %s", name0[xa], name0[1 - xa]);
        report_gp_head(f.f, "axes", 900, 500, title);
        static char named[256][300];
        const char *legend[256];
        for (int k = 0; k < n_series; k++)
            snprintf(named[k], sizeof named[k], "%s=%s", name0[1 - xa], series[k]), legend[k] = named[k];
        report_gp_array(f.f, "S", legend, n_series);
        fprintf(f.f, "set xlabel ");
        report_gp_string(f.f, name0[xa]);
        fprintf(f.f, "\nset ylabel \"overall VQA (%%)\"\nset yrange [0:*]\nset offsets graph 0.05, graph 0.05, graph 0.1, 0\n%s"
                     "plot for [k=0:%d] \"axes.csv\" every ::1 using 2:($1 == k ? $5 : 1/0):6:7%s with yerrorlines lw 2 pt 7 "
                     "title S[k+1]\n",
                logx ? "set logscale x\n" : "", n_series - 1, numeric[xa] ? "" : ":xtic(3)");
        rc = report_file_close(&f, 1, W->err);
    }
    free(sidx);
    if (!rc && W->plot) rc = report_gnuplot(W->out, "axes", W->err);
    if (!rc) {
        fprintf(W->md, "\n## Overall VQA by %s and %s\n\nThe study's two axes (scale x tokens, encoder x mixture, "
                       "...): overall VQA against %s, one line per %s.\n",
                name0[0], name0[1], name0[xa], name0[1 - xa]);
        md_plot(W, "axes");
    }
    return rc;
}

int report_write(const report *R, const char *out, int plot, ps_error *err) {
    if (mkdir(out, 0755) && errno != EEXIST) return ps_fail(err, "%s: %s", out, strerror(errno));
    report_file md;
    if (report_file_open(&md, out, "report.md", err)) return -1;
    writer W = {R, out, plot, md.f, err};
    fprintf(md.f, "# presight report\n\n%d run%s in %d group%s. Intervals: %.0f%% percentile bootstrap "
                  "(%d resamples, seed %llu), %s.\n",
            R->n_runs, R->n_runs == 1 ? "" : "s", R->n_groups, R->n_groups == 1 ? "" : "s", 100 * R->o.level,
            R->o.iters, (unsigned long long)R->o.seed,
            interval_note(R) ? "[over items] of the per-item means over a group's seeds, and (seeds lo..hi) over the seeds' values" : "[over items]");
    int lang[] = {RM_PPL, RM_BYTE_PPL, RM_LANG_ACC, RM_ALIGN};
    int vqa[] = {RM_VQA_GENERAL, RM_VQA_KNOWLEDGE, RM_VQA_OCR, RM_VQA_VISION, RM_VQA_OVERALL};
    int ex[] = {RM_EXIST_SMALL, RM_EXIST_MEDIUM, RM_EXIST_LARGE, RM_EXIST_OVERALL};
    int *order = malloc(sizeof *order * (size_t)(R->n_groups ? R->n_groups : 1));
    int rc = order ? 0 : ps_fail(err, "out of memory");
    for (int g = 0; order && g < R->n_groups; g++) order[g] = g;
    if (!rc) rc = section_runs(&W);
    if (!rc && R->n_missing)
        fprintf(md.f, "\n**Not in this report** (no results or metrics yet): %d run%s: %s.\n", R->n_missing,
                R->n_missing == 1 ? "" : "s", R->missing);
    if (!rc) {
        md_table(&W, "Language and alignment", lang, 4);
        fputs("\nWord perplexity: the first rolling task's (WikiText in the paper's task list; lm-eval's "
              "word_perplexity, exp of the loss per word: the paper's measure, huge for a model that has seen little text); byte perplexity: "
              "exp of the loss per UTF-8 byte of the first rolling task, comparable across tokenizers; language "
              "acc: the mean of the language tasks' accuracies (percent); alignment: the mutual-kNN score.\n",
              md.f);
    }
    if (!rc && any_value(R, RM_VQA_OVERALL)) {
        md_table(&W, "VQA by category", vqa, 5);
        fputs("\nPercent correct over the items of each category; overall: the unweighted mean of the categories.\n",
              md.f);
        if (R->o.vqa_letter)
            fputs("Scored by the option letter with the highest log-likelihood after the prompt (`--vqa letter`), "
                  "not by the parsed generated answer.\n",
                  md.f);
        rc = bars(&W, "vqa", "VQA by category", "accuracy (%)", vqa, 5, order, R->n_groups, NULL);
        md_plot(&W, "vqa");
    }
    if (!rc && any_value(R, RM_EXIST_OVERALL)) {
        md_table(&W, "Existence by object size", ex, 4);
        fputs("\nSmall: the object covers under 30% of the image; medium 30-60%; large 60% and more.\n", md.f);
        rc = bars(&W, "existence", "existence by object size", "accuracy (%)", ex, 4, order, R->n_groups, NULL);
        md_plot(&W, "existence");
    }
    if (!rc) rc = section_paired(&W);
    if (!rc) rc = section_study(&W);
    if (!rc) rc = section_axes(&W);
    if (!rc) rc = section_loss(&W);
    if (!rc) rc = report_write_targets(R, out, md.f, err);
    if (!rc) rc = write_runs_csv(&W);
    if (!rc) rc = write_groups_csv(&W);
    free(order);
    return report_file_close(&md, !rc, err) ? -1 : rc;
}
