/* planted_leak - a leak in presight's own allocations, on purpose: a model
 * layout that is never freed. tests/t_sanitizers.sh runs it to show that the
 * suppressions (third-party libraries only) still let LeakSanitizer report
 * presight's leaks; it must exit non-zero with a leak report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model.h"

static model_layout *leaked;

int main(void) {
    run_config cfg;
    config_defaults(&cfg);
    cfg.model.layers = 1;
    model_layout *L = malloc(sizeof *L);
    ps_error err = {0};
    if (!L || model_layout_init(L, &cfg.model, &err)) {
        fprintf(stderr, "planted_leak: %s\n", err.msg);
        return 2;
    }
    leaked = L;
    leaked = NULL; /* the layout, its units and tensors are now unreachable */
    return 0;
}
