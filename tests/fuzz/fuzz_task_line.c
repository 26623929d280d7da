/* fuzz_task_line - benchmark JSONL lines from anyone, mapped by the shipped
 * task files' field maps (datasets/tasks.h): each line is mapped by PIQA's,
 * HellaSwag's, WinoGrande's, MME's and the image sets' VQA task in turn, and
 * is either mapped (a gold inside the choices), left out, or refused with a
 * message naming the line. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "tasks.h"

static const char *const task_files[] = {"config/tasks/piqa.cfg", "config/tasks/hellaswag.cfg",
                                         "config/tasks/winogrande.cfg", "config/tasks/mme.cfg",
                                         "config/tasks/images-vqa-mc.cfg", "config/tasks/images-existence.cfg"};
#define N_TASKS (sizeof task_files / sizeof *task_files)
static task_def *tasks[N_TASKS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    for (size_t i = 0; i < N_TASKS; i++) {
        ps_error err = {0};
        if (task_load(&tasks[i], task_files[i], 0, NULL, &err)) {
            fprintf(stderr, "fuzz_task_line: %s (run from the repository root)\n", err.msg);
            exit(1);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *line = malloc(size + 1);
    if (!line) return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    for (size_t i = 0; i < N_TASKS; i++) {
        task_item item;
        memset(&item, 0, sizeof item);
        ps_error err = {0};
        int rc = task_map_line(tasks[i], line, 7, &item, &err);
        if (rc == 0) {
            FUZZ_CHECK(item.gold < item.n_choices, "%s: gold %d of %d choices", task_files[i], item.gold, item.n_choices);
            for (int c = 0; c < item.n_choices; c++) FUZZ_CHECK(item.choices[c], "%s: choice %d is NULL", task_files[i], c);
        } else if (rc < 0) {
            FUZZ_CHECK(strstr(err.msg, "7"), "%s: the message does not name the line: %s", task_files[i], err.msg);
        }
        task_item_clear(&item);
    }
    free(line);
    return 0;
}
