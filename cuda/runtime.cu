/* runtime.cu - device detection and selection, the compute stream, error
 * recording, the caching allocator, events, copies and conversions. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "gpu_internal.cuh"

/* gemm.cu and attention.cu */
int gpu_gemm_init_(ps_error *err);
void gpu_gemm_shutdown_(void);
void gpu_attention_init_(void);

/* ------------------------------------------------------------- errors */

static std::mutex g_err_mu;
static int g_has_err;
static char g_err[1536];

void gpu_record_error(const char *fmt, ...) {
    std::lock_guard<std::mutex> lock(g_err_mu);
    if (g_has_err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    g_has_err = 1;
}

void gpu_clear_error(void) {
    std::lock_guard<std::mutex> lock(g_err_mu);
    g_has_err = 0;
    g_err[0] = 0;
    (void)cudaGetLastError();
}

/* ------------------------------------------------------------- device */

static int g_ready;
static int g_device = -1;
static int g_sync_each;
static cudaStream_t g_stream;
static cudaDeviceProp g_prop;

cudaStream_t gpu_stream_(void) { return g_stream; }
void *gpu_stream(void) { return (void *)g_stream; }
int gpu_sm_count_(void) { return g_ready ? g_prop.multiProcessorCount : 132; }

void gpu_after_launch(const char *op) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) gpu_record_error("%s: launch failed: %s (%s)", op, cudaGetErrorString(e), cudaGetErrorName(e));
    if (g_sync_each) {
        e = cudaStreamSynchronize(g_stream);
        if (e != cudaSuccess)
            gpu_record_error("%s: %s (%s), caught by PRESIGHT_GPU_SYNC", op, cudaGetErrorString(e), cudaGetErrorName(e));
    }
}

int gpu_available(ps_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        ps_fail(err, "no usable GPU (cudaGetDeviceCount: error %d '%s'); using the CPU backend", (int)e,
                cudaGetErrorString(e));
        return 0;
    }
    if (n <= 0) {
        ps_fail(err, "no usable GPU (cudaGetDeviceCount found no CUDA device); using the CPU backend");
        return 0;
    }
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, 0);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        ps_fail(err, "no usable GPU (cudaGetDeviceProperties: error %d '%s'); using the CPU backend", (int)e,
                cudaGetErrorString(e));
        return 0;
    }
    if (p.major < 9) {
        ps_fail(err,
                "no usable GPU (device 0 '%s' has compute capability %d.%d; this build targets sm_90, Hopper, "
                "and later); using the CPU backend",
                p.name, p.major, p.minor);
        return 0;
    }
    return 1;
}

static int env_int(const char *name, int *out) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > 1 << 20) return 0;
    *out = (int)v;
    return 1;
}

int gpu_local_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                                       "MV2_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK", "LOCAL_RANK"};
    int v;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (env_int(vars[i], &v)) return v;
    return 0;
}

#define INIT_CHECK(call)                                                                                         \
    do {                                                                                                         \
        cudaError_t e_ = (call);                                                                                 \
        if (e_ != cudaSuccess) {                                                                                 \
            (void)cudaGetLastError();                                                                            \
            return ps_fail(err, "gpu_init: %s: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
        }                                                                                                        \
    } while (0)

int gpu_init(int local_rank, ps_error *err) {
    if (g_ready) return 0;
    if (!gpu_available(err)) return -1;
    int count = 0;
    INIT_CHECK(cudaGetDeviceCount(&count));
    int dev = (local_rank < 0 ? 0 : local_rank) % count;
    INIT_CHECK(cudaSetDevice(dev));
    INIT_CHECK(cudaGetDeviceProperties(&g_prop, dev));
    if (g_prop.major < 9)
        return ps_fail(err, "gpu_init: device %d '%s' has compute capability %d.%d; this build targets sm_90", dev,
                       g_prop.name, g_prop.major, g_prop.minor);
    INIT_CHECK(cudaFree(0)); /* creates the context now, not inside the first op */
    INIT_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    g_device = dev;
    const char *s = getenv("PRESIGHT_GPU_SYNC");
    g_sync_each = s && *s && strcmp(s, "0") != 0;
    g_ready = 1;
    if (gpu_gemm_init_(err)) {
        g_ready = 0;
        cudaStreamDestroy(g_stream);
        g_stream = 0;
        return -1;
    }
    gpu_attention_init_();
    return 0;
}

int gpu_get_info(gpu_info *info, ps_error *err) {
    memset(info, 0, sizeof *info);
    if (!g_ready) return ps_fail(err, "gpu_get_info: gpu_init has not run");
    snprintf(info->name, sizeof info->name, "%s", g_prop.name);
    info->device = g_device;
    cudaGetDeviceCount(&info->device_count);
    info->cc_major = g_prop.major;
    info->cc_minor = g_prop.minor;
    info->sm_count = g_prop.multiProcessorCount;
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, g_device) == cudaSuccess) info->clock_khz = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, g_device) == cudaSuccess) info->mem_clock_khz = v;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, g_device) == cudaSuccess) info->mem_bus_bits = v;
    (void)cudaGetLastError();
    info->total_mem = g_prop.totalGlobalMem;
    info->l2_bytes = (size_t)g_prop.l2CacheSize;
    info->smem_per_block_optin = g_prop.sharedMemPerBlockOptin;
    cudaDriverGetVersion(&info->driver_version);
    cudaRuntimeGetVersion(&info->runtime_version);
    return 0;
}

int gpu_error(ps_error *err) {
    if (g_ready) {
        cudaError_t e = cudaStreamQuery(g_stream);
        if (e != cudaSuccess && e != cudaErrorNotReady)
            gpu_record_error("asynchronous error: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
        (void)cudaGetLastError();
    }
    std::lock_guard<std::mutex> lock(g_err_mu);
    if (!g_has_err) return 0;
    return ps_fail(err, "%s", g_err);
}

int gpu_sync(ps_error *err) {
    if (!g_ready) return ps_fail(err, "gpu_sync: gpu_init has not run");
    cudaError_t e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) gpu_record_error("stream: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return gpu_error(err);
}

/* ---------------------------------------------------------- allocator */

namespace {

struct Allocator {
    std::mutex mu;
    std::unordered_map<void *, std::pair<size_t, size_t>> live; /* ptr -> (class bytes, requested bytes) */
    std::map<size_t, std::vector<void *>> free_lists;          /* class bytes -> cached blocks */
    size_t in_use = 0, peak_in_use = 0, reserved = 0, peak_reserved = 0, requested = 0, peak_requested = 0;
    long long n_alloc = 0, n_cuda_malloc = 0, n_cuda_free = 0;
};

Allocator &alloc_state() {
    static Allocator *a = new Allocator; /* never destroyed: usable from atexit handlers */
    return *a;
}

/* Size classes: 512 B minimum; quarter-octave steps up to 64 MiB (at most
 * 25% rounding); 2 MiB multiples beyond (big blocks recur with exact sizes). */
size_t size_class(size_t bytes) {
#ifdef PRESIGHT_EMU
    return bytes ? bytes : 1; /* exact sizes: AddressSanitizer sees every overrun */
#endif
    if (bytes <= 512) return 512;
    if (bytes >= ((size_t)64 << 20)) {
        size_t m = (size_t)2 << 20;
        return (bytes + m - 1) / m * m;
    }
    int lg = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); /* 2^lg < bytes <= 2^(lg+1) */
    size_t step = ((size_t)1 << lg) / 4;
    return (bytes + step - 1) / step * step;
}

/* Caller holds the lock. */
void release_cached(Allocator &A) {
    for (auto &kv : A.free_lists) {
        for (void *p : kv.second) {
            cudaFree(p);
            A.reserved -= kv.first;
            A.n_cuda_free++;
        }
        kv.second.clear();
    }
    A.free_lists.clear();
}

} // namespace

void *gpu_malloc(size_t bytes) {
    Allocator &A = alloc_state();
    size_t cls = size_class(bytes);
    void *p = NULL;
    {
        std::lock_guard<std::mutex> lock(A.mu);
        auto it = A.free_lists.find(cls);
        if (it != A.free_lists.end() && !it->second.empty()) {
            p = it->second.back();
            it->second.pop_back();
        } else {
            cudaError_t e = cudaMalloc(&p, cls);
            if (e != cudaSuccess) {
                (void)cudaGetLastError();
                /* Give the cache back (cudaFree waits for the device) and try once more. */
                release_cached(A);
                e = cudaMalloc(&p, cls);
            }
            if (e != cudaSuccess) {
                (void)cudaGetLastError();
                size_t free_b = 0, total_b = 0;
                cudaMemGetInfo(&free_b, &total_b);
                (void)cudaGetLastError();
                gpu_record_error("gpu_malloc(%zu bytes): cudaMalloc failed: %s; %.2f GB in use, %.2f GB reserved, "
                                 "%.2f of %.2f GB free on the device",
                                 bytes, cudaGetErrorString(e), A.in_use / 1e9, A.reserved / 1e9, free_b / 1e9,
                                 total_b / 1e9);
                return NULL;
            }
            A.n_cuda_malloc++;
            A.reserved += cls;
            if (A.reserved > A.peak_reserved) A.peak_reserved = A.reserved;
        }
        A.live[p] = std::make_pair(cls, bytes);
        A.n_alloc++;
        A.in_use += cls;
        A.requested += bytes;
        if (A.in_use > A.peak_in_use) A.peak_in_use = A.in_use;
        if (A.requested > A.peak_requested) A.peak_requested = A.requested;
    }
    return p;
}

void gpu_free(void *ptr) {
    if (!ptr) return;
    Allocator &A = alloc_state();
    std::lock_guard<std::mutex> lock(A.mu);
    auto it = A.live.find(ptr);
    if (it == A.live.end()) {
        gpu_record_error("gpu_free(%p): not a live gpu_malloc block", ptr);
        return;
    }
    size_t cls = it->second.first, req = it->second.second;
    A.live.erase(it);
    A.in_use -= cls;
    A.requested -= req;
    A.free_lists[cls].push_back(ptr);
}

void gpu_empty_cache(void) {
    Allocator &A = alloc_state();
    std::lock_guard<std::mutex> lock(A.mu);
    if (g_ready) cudaStreamSynchronize(g_stream);
    release_cached(A);
}

void gpu_mem_stats_get(gpu_mem_stats *s) {
    Allocator &A = alloc_state();
    std::lock_guard<std::mutex> lock(A.mu);
    s->in_use = A.in_use;
    s->peak_in_use = A.peak_in_use;
    s->reserved = A.reserved;
    s->peak_reserved = A.peak_reserved;
    s->requested_in_use = A.requested;
    s->peak_requested = A.peak_requested;
    s->n_alloc = A.n_alloc;
    s->n_cuda_malloc = A.n_cuda_malloc;
    s->n_cuda_free = A.n_cuda_free;
}

void gpu_mem_reset_peak(void) {
    Allocator &A = alloc_state();
    std::lock_guard<std::mutex> lock(A.mu);
    A.peak_in_use = A.in_use;
    A.peak_reserved = A.reserved;
    A.peak_requested = A.requested;
}

void gpu_shutdown(void) {
    if (!g_ready) return;
    cudaStreamSynchronize(g_stream);
    gpu_gemm_shutdown_();
    Allocator &A = alloc_state();
    {
        std::lock_guard<std::mutex> lock(A.mu);
        release_cached(A);
        for (auto &kv : A.live) {
            cudaFree(kv.first);
            A.n_cuda_free++;
        }
        A.live.clear();
        A.in_use = A.requested = A.reserved = 0;
    }
    cudaStreamDestroy(g_stream);
    g_stream = 0;
    g_ready = 0;
    (void)cudaGetLastError();
}

/* -------------------------------------------------------------- copies */

int gpu_copy_to_device(void *dst, const void *src, size_t bytes, ps_error *err) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g_stream); /* src may be freed right after */
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ps_fail(err, "copy of %zu bytes to the device: %s", bytes, cudaGetErrorString(e));
    }
    return 0;
}

int gpu_copy_to_host(void *dst, const void *src, size_t bytes, ps_error *err) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        gpu_record_error("copy of %zu bytes to the host: %s (%s)", bytes, cudaGetErrorString(e), cudaGetErrorName(e));
        return ps_fail(err, "copy of %zu bytes to the host: %s", bytes, cudaGetErrorString(e));
    }
    return 0;
}

void gpu_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream);
    if (e != cudaSuccess) gpu_record_error("gpu_copy(%zu bytes): %s", bytes, cudaGetErrorString(e));
    gpu_after_launch("gpu_copy");
}

void gpu_memset(void *dst, int byte, size_t bytes) {
    if (!bytes) return;
    cudaError_t e = cudaMemsetAsync(dst, byte, bytes, g_stream);
    if (e != cudaSuccess) gpu_record_error("gpu_memset(%zu bytes): %s", bytes, cudaGetErrorString(e));
    gpu_after_launch("gpu_memset");
}

void gpu_zero(void *x, size_t bytes) { gpu_memset(x, 0, bytes); }

/* -------------------------------------------------------------- events */

struct gpu_event {
    cudaEvent_t e;
};

gpu_event *gpu_event_new(void) {
    gpu_event *ev = (gpu_event *)calloc(1, sizeof *ev);
    if (!ev) return NULL;
    if (cudaEventCreate(&ev->e) != cudaSuccess) {
        (void)cudaGetLastError();
        gpu_record_error("cudaEventCreate failed");
        free(ev);
        return NULL;
    }
    return ev;
}

void gpu_event_free(gpu_event *e) {
    if (!e) return;
    cudaEventDestroy(e->e);
    free(e);
}

void gpu_event_record(gpu_event *e) {
    if (e && cudaEventRecord(e->e, g_stream) != cudaSuccess) gpu_record_error("cudaEventRecord failed");
}

float gpu_event_ms(gpu_event *start, gpu_event *end) {
    float ms = -1;
    if (!start || !end) return ms;
    cudaError_t e = cudaEventSynchronize(end->e);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start->e, end->e);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        gpu_record_error("event timing: %s", cudaGetErrorString(e));
        return -1;
    }
    return ms;
}

/* --------------------------------------------------------- conversions */

__global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16(src[i]);
}

__global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

void gpu_f32_to_bf16(gpu_bf16 *dst, const float *src, size_t count) {
    if (!count) return;
    LAUNCH(f32_to_bf16_kernel, grid_1d(count, 256, 8192), 256, 0, g_stream, (bf16 *)dst, src, count);
    gpu_after_launch("gpu_f32_to_bf16");
}

void gpu_bf16_to_f32(float *dst, const gpu_bf16 *src, size_t count) {
    if (!count) return;
    LAUNCH(bf16_to_f32_kernel, grid_1d(count, 256, 8192), 256, 0, g_stream, dst, (const bf16 *)src, count);
    gpu_after_launch("gpu_bf16_to_f32");
}
