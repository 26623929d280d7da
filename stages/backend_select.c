/* backend_select.c - the CPU or the GPU engine (see backend_select.h). */
#include "backend_select.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether a CUDA device is usable, asked of the CUDA runtime through dlopen
 * so that a CPU run under run.backend = "auto" does not map the engine and
 * its CUDA libraries (cuBLASLt alone adds about 150 MB of resident memory to
 * every rank): 1 yes, 0 no (why says so), -1 no CUDA runtime library to ask. */
static int cuda_device_present(char *why, size_t size) {
    void *rt = dlopen("libcudart.so.13", RTLD_NOW | RTLD_LOCAL);
    if (!rt) rt = dlopen("libcudart.so", RTLD_NOW | RTLD_LOCAL);
    if (!rt) return -1;
    int (*device_count)(int *) = (int (*)(int *))dlsym(rt, "cudaGetDeviceCount");
    const char *(*error_string)(int) = (const char *(*)(int))dlsym(rt, "cudaGetErrorString");
    int count = 0, rc = device_count ? device_count(&count) : -1;
    if (rc != 0 || count == 0)
        snprintf(why, size, "no usable GPU (cudaGetDeviceCount: error %d '%s')", rc,
                 rc > 0 && error_string ? error_string(rc) : "no device");
    dlclose(rt);
    return rc == 0 && count > 0;
}

/* The GPU engine: build/libpresight-cuda.so next to the presight binary, or
 * the library PRESIGHT_CUDA_ENGINE names (the CPU emulator's build, in the
 * tests). Loaded once and never unloaded (CUDA libraries do not unload). */
static const gpu_engine_api *load_gpu_engine(char *why, size_t size) {
    static const gpu_engine_api *api;
    if (api) return api;
    char path[4096];
    const char *forced = getenv("PRESIGHT_CUDA_ENGINE");
    if (forced && *forced) snprintf(path, sizeof path, "%s", forced);
    else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
        if (n <= 0) n = 0;
        path[n] = 0;
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, 64, "%s", GPU_ENGINE_LIBRARY);
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, size, "the GPU engine %.1000s does not load (%.300s); build presight where nvcc is installed", path,
                 dlerror());
        return NULL;
    }
    gpu_engine_entry entry = (gpu_engine_entry)dlsym(lib, GPU_ENGINE_SYMBOL);
    const gpu_engine_api *found = entry ? entry() : NULL;
    if (!found || found->abi != GPU_ENGINE_ABI) {
        if (found)
            snprintf(why, size, "%.1000s is a GPU engine of ABI %d, but this presight needs ABI %d: rebuild both "
                                "(make) so that they match", path, found->abi, GPU_ENGINE_ABI);
        else
            snprintf(why, size, "%.1000s is not a GPU engine (no %s symbol); rebuild it (make)", path,
                     GPU_ENGINE_SYMBOL);
        return NULL;
    }
    return api = found;
}

/* run.backend: "cpu"; "cuda" (stop with the reason when a rank has no usable
 * GPU); "auto" (the GPU when every rank has one, else the CPU, saying why).
 * Every rank must choose the same: one missing GPU decides for all. */
int backend_select(const run_config *cfg, comm *c, const gpu_engine_api **gpu, ps_error *err) {
    *gpu = NULL;
    if (strcmp(cfg->backend, "cpu") == 0) return 0;
    char why[1536] = "";
    const gpu_engine_api *api = NULL;
    const char *forced = getenv("PRESIGHT_CUDA_ENGINE");
    /* "auto" maps the engine (and cuBLASLt) only when the CUDA runtime saw a GPU. */
    int probe = (forced && *forced) || strcmp(cfg->backend, "cuda") == 0 ? 1 : cuda_device_present(why, sizeof why);
    if (probe < 0) snprintf(why, sizeof why, "no CUDA runtime library (libcudart) to ask for a GPU");
    int ask_engine = probe > 0;
    if (ask_engine) {
        api = load_gpu_engine(why, sizeof why);
        if (api && !api->available(why, sizeof why)) api = NULL;
    }
    double missing = api ? 0 : 1;
    if (comm_all_reduce_sum_double(c, &missing, 1, err)) return -1;
    if (missing == 0) {
        *gpu = api;
        return 0;
    }
    if (api) snprintf(why, sizeof why, "%.0f of %d ranks have no usable GPU", missing, comm_size(c));
    if (strcmp(cfg->backend, "cuda") == 0)
        return ps_fail(err, "run.backend = \"cuda\": %s; use run.backend = \"cpu\" or \"auto\"", why);
    if (comm_rank(c) == 0) fprintf(stderr, "run.backend = \"auto\": %s; using the CPU backend\n", why);
    return 0;
}
