/* project_tool - presight's projector on given features, for the LLaVA export check
 * (tests/t_adapt.sh, tests/reference/llava_projector_check.py).
 *
 *   project_tool RUN FEATURES.f32 N OUT.f32
 * RUN: an adapted run (its dir or weights file, mm_model.h's mm_run_resolve). FEATURES:
 * N rows of adapt.encoder_width float32; OUT: the N projected rows of model.dim float32,
 * projector_forward of the loaded model. */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "mm_model.h"

static int fail(const char *msg) {
    fprintf(stderr, "project_tool: %s\n", msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5) return fprintf(stderr, "usage: project_tool RUN FEATURES.f32 N OUT.f32\n"), 2;
    ps_error err = {{0}};
    char weights[4096];
    run_config cfg;
    mm_model mm;
    model_params p = {0};
    mm_load_report rep;
    if (mm_run_resolve(argv[1], weights, sizeof weights, &cfg, &err) ||
        mm_model_init(&mm, &cfg.model, cfg.adapt.encoder_width, backend_cpu(), &err) ||
        model_params_alloc(&p, &mm.m.layout, &err))
        return fail(err.msg);
    model_init_weights(&p, &mm.m.layout, 1);
    if (mm_model_load(&mm, weights, &p, &rep, &err)) return fail(err.msg);
    if (!rep.adapted) return fail("the run has no trained projector");
    int n = atoi(argv[3]), in = mm.pj.in_dim, dim = mm.pj.dim;
    float *f32 = malloc(sizeof *f32 * (size_t)n * (in > dim ? in : dim));
    real *x = malloc(sizeof *x * (size_t)n * in), *y = malloc(sizeof *y * (size_t)n * dim);
    FILE *f = fopen(argv[2], "rb");
    if (!f32 || !x || !y || !f || fread(f32, sizeof *f32, (size_t)n * in, f) != (size_t)n * in)
        return fail("cannot read the features");
    fclose(f);
    for (size_t i = 0; i < (size_t)n * in; i++) x[i] = (real)f32[i];
    projector_acts acts;
    if (projector_acts_alloc(&acts, &mm.pj, n, &err)) return fail(err.msg);
    projector_forward(mm.m.ops, &mm.pj, &mm.m.layout, &p, &acts, x, n, y);
    for (size_t i = 0; i < (size_t)n * dim; i++) f32[i] = (float)y[i];
    if (!(f = fopen(argv[4], "wb")) || fwrite(f32, sizeof *f32, (size_t)n * dim, f) != (size_t)n * dim || fclose(f))
        return fail("cannot write the output");
    projector_acts_free(&acts);
    model_params_free(&p);
    mm_model_free(&mm);
    free(f32), free(x), free(y);
    printf("%d rows: %d -> %d\n", n, in, dim);
    return 0;
}
