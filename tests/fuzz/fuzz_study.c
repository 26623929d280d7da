/* fuzz_study - a study file from anyone: study_load expands it or refuses it
 * with a message; an expanded study plans (every run's config resolves or is
 * named) without crashing. */
#include "fuzz_input.h"
#include "study.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file f;
    if (fuzz_file_open(&f, data, size)) return 0;
    study s = {0};
    ps_error err = {0};
    if (study_load(&s, f.path, "/nonexistent/fuzz-study", &err) == 0) {
        FILE *devnull = fopen("/dev/null", "w");
        ps_error plan_err = {0};
        (void)study_plan(&s, 0, devnull, &plan_err);
        fclose(devnull);
        study_free(&s);
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "refused without a message");
    }
    fuzz_file_close(&f);
    return 0;
}
