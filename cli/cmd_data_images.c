/* cmd_data_images.c - presight data images: the default image sets and the
 * import of users' image data, built by datasets/images/images.py.
 *
 * The builder is Python (numpy, h5py, PIL, matplotlib from Debian): this
 * command finds it beside the binary (BIN/../datasets/images/images.py, the
 * build tree's layout) or at $PRESIGHT_IMAGES_SCRIPT, runs it with
 * $PRESIGHT_PYTHON (default /usr/bin/python3) and passes its exit status on. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"

static void images_help(FILE *out) {
    fprintf(out,
            "usage: presight data images build  [--profile small|full] [--seed 42] [--out DIR]\n"
            "       presight data images check  DIR\n"
            "       presight data images sheets DIR\n"
            "       presight data images ocr    DIR [--sample 200] [--min 0.95]\n"
            "       presight data images import --format llava|bench --input FILE --images DIR --out DIR\n"
            "                                  --set NAME [--max-bad 0.01]\n\n"
            "build: the default image sets from real pictures in Debian and npm packages (SHA-256 pinned):\n"
            "captions, scenes, text, charts (DIR/<set>.h5 + .jsonl) and their tasks: align.jsonl (stage 1),\n"
            "instruct.jsonl (stage 2, LLaVA schema), vqa.jsonl (General, Knowledge, OCR & Chart,\n"
            "Vision-Centric), existence.jsonl (small/medium/large). DIR: data/images (full) or\n"
            "data/images/small. A current build is a no-op.\n"
            "check: re-reads every set and task file. sheets: contact sheets DIR/sheets/*.png.\n"
            "ocr: tesseract reads a sample of the text set back. import: LLaVA/Cambrian conversations or\n"
            "benchmark questions (JSON or JSONL) with an image folder into DIR/NAME.h5 + NAME.jsonl; bad lines\n"
            "and missing images are reported as file:line and counted, past --max-bad the import fails.\n"
            "Formats: datasets/README.md (\"Image sets\").\n");
}

/* The builder script: $PRESIGHT_IMAGES_SCRIPT, else beside the binary. */
static int find_script(char *out, size_t size) {
    const char *env = getenv("PRESIGHT_IMAGES_SCRIPT");
    if (env && *env) return snprintf(out, size, "%s", env) < (int)size ? 0 : -1;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        struct stat st;
        int w = snprintf(out, size, "%s/../datasets/images/images.py", exe);
        if (w > 0 && (size_t)w < size && stat(out, &st) == 0) return 0;
    }
    snprintf(out, size, "datasets/images/images.py");
    return access(out, R_OK);
}

int data_images(int argc, char **argv) {
    if (argc < 2 || wants_help(argc, argv)) {
        images_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    char script[PATH_MAX];
    if (find_script(script, sizeof script)) {
        fprintf(stderr, "presight data images: cannot find datasets/images/images.py (set PRESIGHT_IMAGES_SCRIPT)\n");
        return 1;
    }
    const char *python = getenv("PRESIGHT_PYTHON");
    if (!python || !*python) python = "/usr/bin/python3";
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) return 1;
    args[0] = (char *)python;
    args[1] = script;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(python, args);
        fprintf(stderr, "presight data images: cannot run %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    free(args);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        fprintf(stderr, "presight data images: cannot start the builder: %s\n", strerror(errno));
        return 1;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "presight data images: the builder died of signal %d\n", WTERMSIG(status));
        return 1;
    }
    return WEXITSTATUS(status);
}
