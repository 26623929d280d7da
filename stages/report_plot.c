/* report_plot.c - the report's files: NAME.csv (written whole, then renamed), NAME.gp (a
 * gnuplot script beside it that redraws NAME.png from the CSV: `gnuplot NAME.gp`), and
 * the PNG drawn by running that script (gnuplot's pngcairo terminal). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "report_plot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int report_file_open(report_file *f, const char *dir, const char *name, ps_error *err) {
    snprintf(f->path, sizeof f->path, "%s/%s", dir, name);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", f->path);
    if (!(f->f = fopen(f->tmp, "w"))) return ps_fail(err, "%s: %s", f->tmp, strerror(errno));
    return 0;
}

int report_file_close(report_file *f, int ok, ps_error *err) {
    int bad = ferror(f->f), saved = errno; /* a failed write leaves its errno (a full disk: ENOSPC) */
    int closed = fclose(f->f);
    int rc = closed || bad ? ps_fail(err, "%s: write failed: %s", f->tmp, strerror(closed ? errno : saved)) : 0;
    if (ok && !rc && rename(f->tmp, f->path)) rc = ps_fail(err, "%s: %s", f->path, strerror(errno));
    if (!ok || rc) unlink(f->tmp);
    return ok ? rc : -1;
}

void report_csv_text(FILE *f, const char *s) {
    /* commas would end the field for gnuplot too: labels never hold them */
    for (const char *p = s; *p; p++) fputc(*p == ',' || *p == '"' || *p == '\n' ? ';' : *p, f);
}

void report_gp_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

void report_gp_head(FILE *f, const char *name, int width, int height, const char *title) {
    fprintf(f,
            "# %s.gp - redraws %s.png from %s.csv (written by presight report): gnuplot %s.gp\n"
            "if (!exists(\"out\")) out = \"%s.png\"\n"
            "set terminal pngcairo noenhanced size %d,%d font \"sans,11\"\n"
            "set output out\n"
            "set datafile separator \",\"\n"
            "set title ",
            name, name, name, name, name, width, height);
    report_gp_string(f, title);
    fprintf(f, "\nset offsets 0, 0, graph 0.1, 0\nset grid ytics lc rgb \"#dddddd\"\nset key outside right top\n");
}

void report_gp_array(FILE *f, const char *var, const char *const *labels, int n) {
    fprintf(f, "array %s[%d] = [", var, n > 0 ? n : 1);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        report_gp_string(f, labels[i]);
    }
    if (!n) fputs("\"\"", f);
    fputs("]\n", f);
}

int report_gnuplot(const char *dir, const char *name, ps_error *err) {
    char script[PATH_MAX], log[PATH_MAX], out_arg[PATH_MAX + 16], png[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(script, sizeof script, "%s.gp", name);
    snprintf(log, sizeof log, "%s/%s.gp.log", dir, name);
    snprintf(out_arg, sizeof out_arg, "out='%s.png.tmp'", name);
    snprintf(png, sizeof png, "%s/%s.png", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", png);
    pid_t pid = fork();
    if (pid < 0) return ps_fail(err, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        if (chdir(dir)) _exit(126);
        execlp("gnuplot", "gnuplot", "-e", out_arg, script, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return ps_fail(err, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        unlink(tmp);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
            return ps_fail(err, "gnuplot not found (make deps installs gnuplot-nox; --no-plots skips the PNGs)");
        char first[512] = "";
        FILE *l = fopen(log, "r");
        if (l) {
            if (!fgets(first, sizeof first, l)) first[0] = 0;
            fclose(l);
            first[strcspn(first, "\n")] = 0;
        }
        return ps_fail(err, "%s/%s: gnuplot failed (see %s): %s", dir, script, log, first);
    }
    unlink(log);
    if (rename(tmp, png)) return ps_fail(err, "%s: %s", png, strerror(errno));
    return 0;
}
