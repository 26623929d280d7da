/* backend_select.h - which backend a stage trains on: the CPU, or the GPU
 * engine (stages/gpu_engine.h) loaded as a plug-in. */
#ifndef PRESIGHT_BACKEND_SELECT_H
#define PRESIGHT_BACKEND_SELECT_H

#include "comm.h"
#include "config.h"
#include "gpu_engine.h"

/* run.backend: "cpu"; "cuda" (fails with the reason when a rank has no usable
 * GPU); "auto" (the GPU when every rank has one, else the CPU, saying why).
 * Collective: every rank chooses the same, one missing GPU decides for all.
 * *gpu is the engine's API, or NULL for the CPU. A failure is every rank's. */
int backend_select(const run_config *cfg, comm *c, const gpu_engine_api **gpu, ps_error *err);

#endif
