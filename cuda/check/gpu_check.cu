/* gpu_check.cu - `make gpu-check`: the GPU backend against the CPU backend,
 * and its speed, on one GPU.
 *
 *   build/gpu_check [--json PATH] [--sections a,b,...] [--quick]
 *
 * Sections (each runs in its own child process, so that a fault or a hang in
 * one is reported and the others still run; the parent never touches CUDA):
 *   device     detection (no GPU: the plain message, exit 77), device facts
 *   ops        (a) every op vs core/backend_cpu.c on random data, small and
 *              medium sizes, outputs poisoned with NaN first; NaN never passes
 *              (the projector's bias and GELU, the KV cache's write and
 *              decode attention included)
 *   attention  (a) flash and GEMM attention vs the CPU, then flash vs GEMM at
 *              the 1B and 7B shapes (seq 2048), and their speed
 *   step       (a) a small model (2 layers, head_dim 64) trained 3 steps on
 *              the GPU (ops composed as core/model.c does) and by core/model.c
 *              on the CPU: loss, every gradient tensor, the losses after AdamW
 *   gemm       (b) bf16 GEMM peak: best of large cuBLASLt GEMMs; model shapes
 *   blocks     (d) one transformer block at 7B and at 13B width, seq 2048,
 *              forward+backward: TFLOP/s and MFU (PaLM FLOPs), a per-op
 *              breakdown; (e) peak memory; no cudaMalloc after the first step
 *   model1b    (c) a 1B-config training step (embedding, 16 blocks, head,
 *              cross-entropy, AdamW on fp32 master): tokens/s and MFU; (e)
 *   nccl       (f) all-reduce, all-gather, reduce-scatter at world size 1
 *
 * Tolerances (stated per check in its line): bf16 outputs of fp32 math pass
 * when max|gpu - cpu| <= 1e-2 max|cpu| + 1e-3 and the relative L2 error is
 * <= 5e-3; fp32 outputs from the same bf16 inputs 1e-4 / 1e-5; attention
 * 2e-2 / 1e-2 forward and 5e-2 / 2e-2 backward (P and dS are rounded to bf16
 * for the tensor cores). Exit: 0 all passed, 1 a check failed, 77 no GPU.
 * The table printed last and the JSON hold every number. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "backend.h"
#include "blas.h"
#include "config.h"
#include "error.h"
#include "model.h"
#include "optim.h"
}
#include "block.cuh"
#include "gpu.h"
#include "launch.cuh"
#include "one_rank.cuh"

/* ================================================================ records */

struct Rec {
    std::string section, status, name, unit, detail;
    double value = 0;
    bool has_value = false, key = false;
};

/* child side */
static FILE *g_rec_file;
static int g_n_fail;

static void clean_field(char *s) {
    for (; *s; s++)
        if (*s == '\t' || *s == '\n' || *s == '\r') *s = ' ';
}

/* status: pass, FAIL, skip, info. key: also shown in the summary table. */
static void record(const char *status, bool key, const char *name, double value, bool has_value, const char *unit,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void record(const char *status, bool key, const char *name, double value, bool has_value, const char *unit,
                   const char *fmt, ...) {
    char detail[1200], nm[200], un[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(nm, sizeof nm, "%s", name);
    snprintf(un, sizeof un, "%s", unit ? unit : "");
    clean_field(detail);
    clean_field(nm);
    clean_field(un);
    if (strcmp(status, "FAIL") == 0) g_n_fail++;
    char val[64] = "";
    if (has_value) snprintf(val, sizeof val, "%.6g %s", value, un);
    printf("  %-4s %-46s %-18s %s\n", status, nm, val, detail);
    fflush(stdout);
    if (g_rec_file) {
        fprintf(g_rec_file, "%s\t%d\t%s\t%s\t%s\t%s\n", status, key ? 1 : 0, nm,
                has_value ? (snprintf(val, sizeof val, "%.9g", value), val) : "", un, detail);
        fflush(g_rec_file);
    }
}

#define INFO(name, ...) record("info", false, name, 0, false, "", __VA_ARGS__)
#define FAILREC(name, ...) record("FAIL", false, name, 0, false, "", __VA_ARGS__)

#ifdef PRESIGHT_EMU
static const int g_emu = 1; /* the CPU emulator (cuda/emu/): small sizes, timings meaningless */
#else
static const int g_emu = 0;
#endif

/* parent-side state passed to later children through fork */
static double g_peak_tflops = 0;     /* measured in section gemm */
static double g_datasheet_tflops = 0; /* dense bf16 of the device model, 0 unknown */
static int g_att_fallback = 0;       /* flash attention failed its checks: use the GEMM path */
static int g_quick = 0;
static char g_device_name[256] = "";

/* ============================================================ GPU helpers */

/* Waits for the GPU; on an error records it, clears it and returns 0; if the
 * context is lost (a sticky fault) the section ends here. */
static int settle(const char *what) {
    ps_error e;
    if (gpu_sync(&e) == 0) return 1;
    FAILREC(what, "GPU error: %s", e.msg);
    gpu_clear_error();
    ps_error e2;
    if (gpu_sync(&e2) != 0) {
        FAILREC("section aborted", "the CUDA context is unusable after '%s': %s", what, e2.msg);
        fflush(NULL);
        _exit(2);
    }
    return 0;
}

static int g_alloc_trial; /* allocation failures are expected (trying sizes): info, not FAIL */

static void *dalloc_bytes(size_t bytes, const char *what) {
    void *p = gpu_malloc(bytes);
    if (!p) {
        ps_error e;
        gpu_error(&e);
        record(g_alloc_trial ? "info" : "FAIL", false, "allocation", 0, false, "", "%s (%zu bytes): %s", what, bytes,
               e.msg);
        gpu_clear_error();
    }
    return p;
}
template <class T> static T *dalloc(size_t n, const char *what) { return (T *)dalloc_bytes(n * sizeof(T), what); }

static int up(void *dst, const void *src, size_t bytes) {
    ps_error e;
    if (gpu_copy_to_device(dst, src, bytes, &e)) {
        FAILREC("copy to device", "%s", e.msg);
        return -1;
    }
    return 0;
}

static int down(void *dst, const void *src, size_t bytes) {
    ps_error e;
    if (gpu_copy_to_host(dst, src, bytes, &e)) {
        settle("copy to host");
        return -1;
    }
    return 0;
}

/* ===================================================== host data helpers */

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
    double normal() {
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
    int below(int n) { return (int)(uniform() * n); }
};

typedef std::vector<float> Vec;

static Vec randn(size_t n, Rng &r, double std = 1.0, double mean = 0.0) {
    Vec v(n);
    for (size_t i = 0; i < n; i++) v[i] = (float)(mean + std * r.normal());
    return v;
}

static void round_bf16(Vec &v) {
    for (float &x : v) x = gpu_bf16_to_float(gpu_float_to_bf16(x));
}

static Vec randn_bf16(size_t n, Rng &r, double std = 1.0, double mean = 0.0) {
    Vec v = randn(n, r, std, mean);
    round_bf16(v);
    return v;
}

static gpu_bf16 *up_bf16(const Vec &v, const char *what) {
    gpu_bf16 *d = dalloc<gpu_bf16>(v.size(), what);
    if (!d) return NULL;
    std::vector<gpu_bf16> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = gpu_float_to_bf16(v[i]);
    if (up(d, h.data(), h.size() * sizeof(gpu_bf16))) return NULL;
    return d;
}

static float *up_f32(const Vec &v, const char *what) {
    float *d = dalloc<float>(v.size(), what);
    if (!d) return NULL;
    if (up(d, v.data(), v.size() * sizeof(float))) return NULL;
    return d;
}

static int *up_i32(const std::vector<int> &v, const char *what) {
    int *d = dalloc<int>(v.size(), what);
    if (!d) return NULL;
    if (up(d, v.data(), v.size() * sizeof(int))) return NULL;
    return d;
}

static Vec down_bf16(const gpu_bf16 *d, size_t n) {
    std::vector<gpu_bf16> h(n);
    Vec v(n, NAN);
    if (down(h.data(), d, n * sizeof(gpu_bf16))) return v;
    for (size_t i = 0; i < n; i++) v[i] = gpu_bf16_to_float(h[i]);
    return v;
}

static Vec down_f32(const float *d, size_t n) {
    Vec v(n, NAN);
    down(v.data(), d, n * sizeof(float));
    return v;
}

/* ============================================================ comparisons */

struct Tol {
    double rtol, atol, l2;
};
static const Tol TOL_BF16 = {1e-2, 1e-3, 5e-3};
static const Tol TOL_F32 = {1e-4, 1e-6, 1e-5};
static const Tol TOL_EXACT = {0, 0, 0};
static const Tol TOL_ATT_F = {2e-2, 1e-3, 1e-2};
static const Tol TOL_ATT_B = {5e-2, 1e-3, 2e-2};

struct Cmp {
    double max_err = 0, max_ref = 0, rel_l2 = 0;
    size_t nan_gpu = 0, nan_ref = 0, worst = 0, n = 0;
};

static Cmp compare(const float *g, const float *r, size_t n) {
    Cmp c;
    c.n = n;
    double se = 0, sr = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) {
            c.nan_gpu++;
            continue;
        }
        if (!isfinite(r[i])) {
            c.nan_ref++;
            continue;
        }
        double d = fabs((double)g[i] - (double)r[i]);
        if (d > c.max_err) {
            c.max_err = d;
            c.worst = i;
        }
        c.max_ref = std::max(c.max_ref, fabs((double)r[i]));
        se += d * d;
        sr += (double)r[i] * r[i];
    }
    c.rel_l2 = sr > 0 ? sqrt(se / sr) : sqrt(se);
    return c;
}

static bool judge(const char *name, const Cmp &c, Tol t) {
    double lim = t.rtol * c.max_ref + t.atol;
    bool ok = c.nan_gpu == 0 && c.nan_ref == 0 && c.max_err <= lim && c.rel_l2 <= t.l2 && c.n > 0;
    char extra[160] = "";
    if (c.nan_gpu || c.nan_ref)
        snprintf(extra, sizeof extra, "; %zu non-finite on the GPU (poison left = unwritten), %zu in the reference",
                 c.nan_gpu, c.nan_ref);
    record(ok ? "pass" : "FAIL", false, name, c.rel_l2, true, "relL2",
           "max|d|=%.3g at %zu (tol %.0e*max|ref| %.3g + %.0e = %.3g), relL2 tol %.0e, n=%zu%s", c.max_err, c.worst,
           t.rtol, c.max_ref, t.atol, lim, t.l2, c.n, extra);
    return ok;
}

static bool judge_vec(const char *name, const Vec &g, const Vec &r, Tol t) {
    if (g.size() != r.size()) {
        FAILREC(name, "size mismatch %zu vs %zu", g.size(), r.size());
        return false;
    }
    return judge(name, compare(g.data(), r.data(), g.size()), t);
}

static bool judge_scalar(const char *name, double g, double r, double rtol, double atol) {
    double d = fabs(g - r), lim = rtol * fabs(r) + atol;
    bool ok = isfinite(g) && isfinite(r) && d <= lim;
    record(ok ? "pass" : "FAIL", false, name, g, true, "", "gpu %.9g cpu %.9g |d|=%.3g (tol %.0e*|cpu| + %.0e)", g, r,
           d, rtol, atol);
    return ok;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* =========================================================== device init */

__host__ __device__ static inline uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Uniform on [-sqrt 3, sqrt 3) (unit variance), a pure function of (seed, i).
 * With std 1 and mean 0 host and device give identical bits. */
__host__ __device__ static inline float hash_val(uint64_t seed, uint64_t i) {
    uint64_t h = mix64(mix64(seed) ^ (i * 0xd1b54a32d192ed03ULL));
    float u = (float)(h >> 40) * (1.0f / 16777216.0f);
    return (2.0f * u - 1.0f) * 1.7320508f;
}

__global__ void init_f32_kernel(float *p, size_t n, uint64_t seed, float std, float mean) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = std == 0.f ? mean : hash_val(seed, i) * std + mean;
}

__global__ void init_bf16_kernel(__nv_bfloat16 *p, size_t n, uint64_t seed, float std, float mean) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16(std == 0.f ? mean : (std == 1.f && mean == 0.f ? hash_val(seed, i)
                                                                              : hash_val(seed, i) * std + mean));
}

static unsigned init_grid(size_t n) { return (unsigned)std::min<size_t>(4096, (n + 255) / 256 + 1); }

static void init_f32(float *p, size_t n, uint64_t seed, float std, float mean = 0.f) {
    LAUNCH(init_f32_kernel, init_grid(n), 256, 0, (cudaStream_t)gpu_stream(), p, n, seed, std, mean);
}

static void init_bf16(gpu_bf16 *p, size_t n, uint64_t seed, float std, float mean = 0.f) {
    LAUNCH(init_bf16_kernel, init_grid(n), 256, 0, (cudaStream_t)gpu_stream(), (__nv_bfloat16 *)p, n, seed, std, mean);
}

static void poison(void *p, size_t bytes) { gpu_memset(p, 0xff, bytes); }

/* ================================================================ device */

static int sec_device(void) {
    ps_error err;
    if (!gpu_available(&err)) {
        record("skip", true, "gpu", 0, false, "", "%s", err.msg);
        return 77;
    }
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    gpu_info info;
    if (gpu_get_info(&info, &err)) {
        FAILREC("gpu_get_info", "%s", err.msg);
        return 1;
    }
    record("info", true, "device", 0, false, "",
           "%s | cc %d.%d | %d SMs | %.1f GiB | L2 %.0f MB | SM clock %.0f MHz | driver %d.%d runtime %d.%d | "
           "device %d of %d",
           info.name, info.cc_major, info.cc_minor, info.sm_count, info.total_mem / 1073741824.0, info.l2_bytes / 1e6,
           info.clock_khz / 1e3, info.driver_version / 1000, info.driver_version % 1000 / 10,
           info.runtime_version / 1000, info.runtime_version % 1000 / 10, info.device, info.device_count);
    record("info", false, "device name", 0, false, "", "%s", info.name);
    record("info", false, "sm count", info.sm_count, true, "", " ");
    record("info", false, "memory", info.total_mem / 1073741824.0, true, "GiB", " ");
    /* A trivial round trip: memset, copy back. */
    uint32_t *d = (uint32_t *)gpu_malloc(1024);
    uint32_t h[256];
    gpu_memset(d, 0x5a, 1024);
    int ok = d && down(h, d, 1024) == 0;
    for (int i = 0; ok && i < 256; i++) ok = h[i] == 0x5a5a5a5au;
    gpu_free(d);
    record(ok ? "pass" : "FAIL", false, "memset/copy round trip", 0, false, "", "1 KiB");
    ps_error e2;
    if (gpu_comm_available(&e2))
        INFO("nccl library", "NCCL %d loaded", gpu_comm_version());
    else
        INFO("nccl library", "%s", e2.msg);
    return g_n_fail ? 1 : 0;
}

/* ==================================================================== ops */

static const backend_ops *cpu_reference(void) {
    ps_error err;
    if (blas_init(&err)) {
        FAILREC("cpu reference", "the CPU backend needs a BLAS: %s (the bundle's run.sh sets PRESIGHT_BLAS)", err.msg);
        return NULL;
    }
    INFO("cpu reference", "core/backend_cpu.c with %s", blas_describe());
    return backend_cpu();
}

static void test_matmul(const backend_ops *cpu, Rng &rng, int n, int in, int out, const char *tag) {
    char nm[128];
    Vec x = randn_bf16((size_t)n * in, rng), w = randn_bf16((size_t)out * in, rng, 1.0 / sqrt(in));
    Vec dout = randn_bf16((size_t)n * out, rng), res = randn_bf16((size_t)n * out, rng);
    Vec dw0 = randn((size_t)out * in, rng, 0.1);
    Vec ref((size_t)n * out), din_ref((size_t)n * in), dw_ref = dw0;
    cpu->matmul_forward(ref.data(), x.data(), w.data(), n, in, out);
    cpu->matmul_backward(din_ref.data(), dw_ref.data(), dout.data(), x.data(), w.data(), n, in, out);
    Vec ref_res = ref;
    for (size_t i = 0; i < ref.size(); i++) ref_res[i] += res[i];

    gpu_bf16 *dx = up_bf16(x, "x"), *dwt = up_bf16(w, "w"), *dd = up_bf16(dout, "dout"), *dres = up_bf16(res, "res");
    gpu_bf16 *dy = dalloc<gpu_bf16>(ref.size(), "out"), *ddin = dalloc<gpu_bf16>(din_ref.size(), "din");
    float *ddw = up_f32(dw0, "dw");
    if (!dx || !dwt || !dd || !dres || !dy || !ddin || !ddw) return;

    poison(dy, ref.size() * 2);
    gpu_matmul_forward(dy, dx, dwt, NULL, n, in, out);
    snprintf(nm, sizeof nm, "matmul_forward %s %dx%dx%d", tag, n, in, out);
    if (settle(nm)) judge_vec(nm, down_bf16(dy, ref.size()), ref, TOL_BF16);

    poison(dy, ref.size() * 2);
    gpu_matmul_forward(dy, dx, dwt, dres, n, in, out);
    snprintf(nm, sizeof nm, "matmul_forward+residual %s", tag);
    if (settle(nm)) judge_vec(nm, down_bf16(dy, ref.size()), ref_res, TOL_BF16);

    gpu_copy(dy, dres, ref.size() * 2); /* residual aliasing out */
    gpu_matmul_forward(dy, dx, dwt, dy, n, in, out);
    snprintf(nm, sizeof nm, "matmul_forward+residual in place %s", tag);
    if (settle(nm)) judge_vec(nm, down_bf16(dy, ref.size()), ref_res, TOL_BF16);

    poison(ddin, din_ref.size() * 2);
    gpu_matmul_backward(ddin, ddw, dd, dx, dwt, n, in, out);
    snprintf(nm, sizeof nm, "matmul_backward din %s", tag);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(ddin, din_ref.size()), din_ref, TOL_BF16);
        snprintf(nm, sizeof nm, "matmul_backward dw (fp32 +=) %s", tag);
        judge_vec(nm, down_f32(ddw, dw_ref.size()), dw_ref, TOL_F32);
    }
    for (void *p : {(void *)dx, (void *)dwt, (void *)dd, (void *)dres, (void *)dy, (void *)ddin, (void *)ddw})
        gpu_free(p);
}

static void test_embedding(const backend_ops *cpu, Rng &rng, int n, int dim, int vocab, const char *tag) {
    char nm[128];
    Vec table = randn_bf16((size_t)vocab * dim, rng), dout = randn_bf16((size_t)n * dim, rng);
    std::vector<int> tok(n);
    for (int i = 0; i < n; i++) tok[i] = rng.below(vocab);
    tok[n / 3] = -1;
    if (n > 8) tok[5] = tok[7]; /* repeated ids */
    Vec ref((size_t)n * dim), dt0 = randn((size_t)vocab * dim, rng, 0.1), dt_ref = dt0;
    cpu->embedding_forward(ref.data(), tok.data(), table.data(), n, dim);
    cpu->embedding_backward(dt_ref.data(), dout.data(), tok.data(), n, dim);
    gpu_bf16 *dtab = up_bf16(table, "table"), *dout_d = up_bf16(dout, "dout"), *dy = dalloc<gpu_bf16>(ref.size(), "y");
    int *dtok = up_i32(tok, "tokens");
    float *ddt = up_f32(dt0, "dtable");
    if (!dtab || !dout_d || !dy || !dtok || !ddt) return;
    poison(dy, ref.size() * 2);
    gpu_embedding_forward(dy, dtok, dtab, n, dim);
    snprintf(nm, sizeof nm, "embedding_forward %s n=%d dim=%d", tag, n, dim);
    if (settle(nm)) judge_vec(nm, down_bf16(dy, ref.size()), ref, TOL_EXACT);
    gpu_embedding_backward(ddt, dout_d, dtok, n, dim);
    snprintf(nm, sizeof nm, "embedding_backward (fp32 +=) %s", tag);
    if (settle(nm)) judge_vec(nm, down_f32(ddt, dt_ref.size()), dt_ref, TOL_F32);
    for (void *p : {(void *)dtab, (void *)dout_d, (void *)dy, (void *)dtok, (void *)ddt}) gpu_free(p);
}

static void test_rmsnorm(const backend_ops *cpu, Rng &rng, int n, int dim, const char *tag) {
    char nm[128];
    const float eps = 1e-5f;
    Vec x = randn_bf16((size_t)n * dim, rng, 2.0), w = randn_bf16(dim, rng, 0.1, 1.0);
    Vec dout = randn_bf16((size_t)n * dim, rng), dx0 = randn_bf16((size_t)n * dim, rng), dw0 = randn(dim, rng, 0.1);
    Vec ref((size_t)n * dim), rstd(n), dx_ref = dx0, dw_ref = dw0;
    cpu->rmsnorm_forward(ref.data(), rstd.data(), x.data(), w.data(), n, dim, eps);
    cpu->rmsnorm_backward(dx_ref.data(), dw_ref.data(), dout.data(), x.data(), w.data(), rstd.data(), n, dim);
    gpu_bf16 *dx = up_bf16(x, "x"), *dw = up_bf16(w, "w"), *dg = up_bf16(dout, "dout"), *ddx = up_bf16(dx0, "dx");
    gpu_bf16 *dy = dalloc<gpu_bf16>(ref.size(), "y");
    float *drs = dalloc<float>(n, "rstd"), *drs_cpu = up_f32(rstd, "rstd cpu"), *ddw = up_f32(dw0, "dweight");
    if (!dx || !dw || !dg || !ddx || !dy || !drs || !drs_cpu || !ddw) return;
    poison(dy, ref.size() * 2);
    poison(drs, n * 4);
    gpu_rmsnorm_forward(dy, drs, dx, dw, n, dim, eps);
    snprintf(nm, sizeof nm, "rmsnorm_forward %s n=%d dim=%d", tag, n, dim);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(dy, ref.size()), ref, TOL_BF16);
        snprintf(nm, sizeof nm, "rmsnorm_forward rstd %s", tag);
        judge_vec(nm, down_f32(drs, n), rstd, TOL_F32);
    }
    gpu_rmsnorm_backward(ddx, ddw, dg, dx, dw, drs_cpu, n, dim);
    snprintf(nm, sizeof nm, "rmsnorm_backward dx (+=) %s", tag);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(ddx, dx_ref.size()), dx_ref, TOL_BF16);
        snprintf(nm, sizeof nm, "rmsnorm_backward dweight (fp32 +=) %s", tag);
        judge_vec(nm, down_f32(ddw, dim), dw_ref, TOL_F32);
    }
    for (void *p : {(void *)dx, (void *)dw, (void *)dg, (void *)ddx, (void *)dy, (void *)drs, (void *)drs_cpu,
                    (void *)ddw})
        gpu_free(p);
}

static void test_rope(const backend_ops *cpu, Rng &rng, int n, int H, int KV, int hd, int max_pos, const char *tag) {
    char nm[128];
    int stride = (H + 2 * KV) * hd;
    Vec table = rope_table(max_pos, hd, 500000.0), x = randn_bf16((size_t)n * stride, rng);
    std::vector<int> pos(n);
    for (int i = 0; i < n; i++) pos[i] = rng.below(max_pos);
    Vec f = x, b = x;
    cpu->rope_forward(f.data(), table.data(), pos.data(), n, stride, H + KV, hd);
    cpu->rope_backward(b.data(), table.data(), pos.data(), n, stride, H + KV, hd);
    gpu_bf16 *d1 = up_bf16(x, "x"), *d2 = up_bf16(x, "x");
    float *dt = up_f32(table, "cos_sin");
    int *dp = up_i32(pos, "pos");
    if (!d1 || !d2 || !dt || !dp) return;
    gpu_rope_forward(d1, dt, dp, n, stride, H + KV, hd);
    gpu_rope_backward(d2, dt, dp, n, stride, H + KV, hd);
    snprintf(nm, sizeof nm, "rope_forward %s n=%d heads=%d+%d hd=%d", tag, n, H, KV, hd);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(d1, x.size()), f, TOL_BF16);
        snprintf(nm, sizeof nm, "rope_backward %s", tag);
        judge_vec(nm, down_bf16(d2, x.size()), b, TOL_BF16);
    }
    for (void *p : {(void *)d1, (void *)d2, (void *)dt, (void *)dp}) gpu_free(p);
}

static void test_swiglu(const backend_ops *cpu, Rng &rng, int n, int ffn, const char *tag) {
    char nm[128];
    Vec h = randn_bf16((size_t)n * 2 * ffn, rng, 2.0), g = randn_bf16((size_t)n * ffn, rng);
    Vec ref((size_t)n * ffn), dref((size_t)n * 2 * ffn);
    cpu->swiglu_forward(ref.data(), h.data(), n, ffn);
    cpu->swiglu_backward(dref.data(), g.data(), h.data(), n, ffn);
    gpu_bf16 *dh = up_bf16(h, "h13"), *dg = up_bf16(g, "dout"), *dy = dalloc<gpu_bf16>(ref.size(), "y");
    gpu_bf16 *ddh = dalloc<gpu_bf16>(dref.size(), "dh13");
    if (!dh || !dg || !dy || !ddh) return;
    poison(dy, ref.size() * 2);
    poison(ddh, dref.size() * 2);
    gpu_swiglu_forward(dy, dh, n, ffn);
    gpu_swiglu_backward(ddh, dg, dh, n, ffn);
    snprintf(nm, sizeof nm, "swiglu_forward %s n=%d ffn=%d", tag, n, ffn);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(dy, ref.size()), ref, TOL_BF16);
        snprintf(nm, sizeof nm, "swiglu_backward %s", tag);
        judge_vec(nm, down_bf16(ddh, dref.size()), dref, TOL_BF16);
    }
    for (void *p : {(void *)dh, (void *)dg, (void *)dy, (void *)ddh}) gpu_free(p);
}

static void test_add(const backend_ops *cpu, Rng &rng, size_t count, int offset, const char *tag) {
    char nm[128];
    Vec a = randn_bf16(count, rng), b = randn_bf16(count, rng), ref(count), acc = a;
    cpu->residual_add(ref.data(), a.data(), b.data(), count);
    cpu->accumulate(acc.data(), b.data(), count);
    Vec pa(count + offset, 0.f), pb(count + offset, 0.f);
    std::copy(a.begin(), a.end(), pa.begin() + offset);
    std::copy(b.begin(), b.end(), pb.begin() + offset);
    gpu_bf16 *da = up_bf16(pa, "a"), *db = up_bf16(pb, "b"), *dy = dalloc<gpu_bf16>(count + offset, "y");
    if (!da || !db || !dy) return;
    poison(dy, (count + offset) * 2);
    gpu_residual_add(dy + offset, da + offset, db + offset, count);
    snprintf(nm, sizeof nm, "residual_add %s count=%zu", tag, count);
    if (settle(nm)) judge_vec(nm, Vec(down_bf16(dy + offset, count)), ref, TOL_BF16);
    gpu_residual_add(da + offset, da + offset, db + offset, count); /* out aliasing a */
    snprintf(nm, sizeof nm, "residual_add in place %s", tag);
    if (settle(nm)) judge_vec(nm, down_bf16(da + offset, count), ref, TOL_BF16);
    gpu_accumulate(db + offset, da + offset, count); /* b += (a + b) */
    Vec ref2(count);
    for (size_t i = 0; i < count; i++)
        ref2[i] = gpu_bf16_to_float(gpu_float_to_bf16(ref[i])) + b[i];
    snprintf(nm, sizeof nm, "accumulate %s", tag);
    if (settle(nm)) judge_vec(nm, down_bf16(db + offset, count), ref2, TOL_BF16);
    (void)acc;
    for (void *p : {(void *)da, (void *)db, (void *)dy}) gpu_free(p);
}

static void test_cross_entropy(const backend_ops *cpu, Rng &rng, int n, int vocab, float gs, const char *tag) {
    char nm[160];
    Vec logits = randn_bf16((size_t)n * vocab, rng, 3.0);
    std::vector<int> tgt(n);
    for (int i = 0; i < n; i++) tgt[i] = rng.below(vocab);
    tgt[0] = -1;
    if (n > 3) tgt[3] = vocab; /* out of range: ignored */
    for (int mode = 0; mode < 2; mode++) {
        float scale = mode ? gs : 0.f;
        Vec ref = logits;
        int nv_ref = 0;
        double loss_ref = cpu->cross_entropy(ref.data(), tgt.data(), n, vocab, -1, scale, &nv_ref);
        gpu_bf16 *dl = up_bf16(logits, "logits");
        int *dt = up_i32(tgt, "targets");
        double *dloss = dalloc<double>(1, "loss");
        int *dnv = dalloc<int>(1, "n_valid");
        if (!dl || !dt || !dloss || !dnv) return;
        poison(dloss, 8);
        poison(dnv, 4);
        gpu_cross_entropy(dl, dt, n, vocab, -1, scale, dloss, dnv);
        snprintf(nm, sizeof nm, "cross_entropy %s n=%d vocab=%d grad_scale=%g", tag, n, vocab, scale);
        if (settle(nm)) {
            double loss = NAN;
            int nv = -1;
            down(&loss, dloss, 8);
            down(&nv, dnv, 4);
            snprintf(nm, sizeof nm, "cross_entropy loss sum %s gs=%g", tag, scale);
            judge_scalar(nm, loss, loss_ref, 1e-5, 1e-4);
            snprintf(nm, sizeof nm, "cross_entropy n_valid %s gs=%g", tag, scale);
            record(nv == nv_ref ? "pass" : "FAIL", false, nm, nv, true, "", "gpu %d cpu %d", nv, nv_ref);
            snprintf(nm, sizeof nm, "cross_entropy %s %s", mode ? "dlogits (in place)" : "logits untouched", tag);
            judge_vec(nm, down_bf16(dl, logits.size()), ref, mode ? TOL_BF16 : TOL_EXACT);
        }
        for (void *p : {(void *)dl, (void *)dt, (void *)dloss, (void *)dnv}) gpu_free(p);
    }
}

static void test_adamw(const backend_ops *cpu, Rng &rng, size_t count, const char *tag) {
    char nm[128];
    Vec p = randn(count, rng), g = randn(count, rng), m = randn(count, rng, 0.1), v = randn(count, rng, 0.1);
    for (float &x : v) x = x * x;
    Vec pr = p, mr = m, vr = v;
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.7f;
    const int64_t step = 3;
    cpu->adamw_update(pr.data(), g.data(), mr.data(), vr.data(), count, lr, b1, b2, eps, wd, step, gs);
    float *dp = up_f32(p, "p"), *dg = up_f32(g, "g"), *dm = up_f32(m, "m"), *dv = up_f32(v, "v");
    gpu_bf16 *db = dalloc<gpu_bf16>(count, "p bf16");
    if (!dp || !dg || !dm || !dv || !db) return;
    poison(db, count * 2);
    gpu_adamw_update(dp, db, dg, dm, dv, count, lr, b1, b2, eps, wd, step, gs);
    snprintf(nm, sizeof nm, "adamw param %s count=%zu", tag, count);
    const Tol t = {1e-5, 1e-7, 1e-6};
    if (settle(nm)) {
        judge_vec(nm, down_f32(dp, count), pr, t);
        snprintf(nm, sizeof nm, "adamw m %s", tag);
        judge_vec(nm, down_f32(dm, count), mr, t);
        snprintf(nm, sizeof nm, "adamw v %s", tag);
        judge_vec(nm, down_f32(dv, count), vr, t);
        Vec prb = pr;
        round_bf16(prb);
        snprintf(nm, sizeof nm, "adamw bf16 copy %s", tag);
        judge_vec(nm, down_bf16(db, count), prb, TOL_BF16);
    }
    for (void *q : {(void *)dp, (void *)dg, (void *)dm, (void *)dv, (void *)db}) gpu_free(q);
}

static void test_sum_squares(const backend_ops *cpu, Rng &rng, size_t count, const char *tag) {
    char nm[128];
    Vec x = randn(count, rng);
    double ref = cpu->sum_squares(x.data(), count);
    float *dx = up_f32(x, "x");
    double *dout = dalloc<double>(1, "out");
    if (!dx || !dout) return;
    poison(dout, 8);
    gpu_sum_squares(dout, dx, count);
    snprintf(nm, sizeof nm, "sum_squares %s count=%zu", tag, count);
    if (settle(nm)) {
        double g = NAN;
        down(&g, dout, 8);
        judge_scalar(nm, g, ref, 1e-10, 0);
    }
    gpu_free(dx);
    gpu_free(dout);
}

static void test_allocator(void) {
    gpu_mem_stats s0, s1;
    void *p[8];
    size_t sizes[8] = {100, 4096, 1 << 20, 3 << 20, 65 << 20, 513, 777777, 100};
    for (int i = 0; i < 8; i++) p[i] = gpu_malloc(sizes[i]);
    for (int i = 0; i < 8; i++) gpu_free(p[i]);
    gpu_mem_stats_get(&s0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 8; i++) p[i] = gpu_malloc(sizes[i]);
        for (int i = 0; i < 8; i++) gpu_free(p[i]);
    }
    gpu_mem_stats_get(&s1);
    bool ok = s1.n_cuda_malloc == s0.n_cuda_malloc;
    record(ok ? "pass" : "FAIL", false, "allocator reuse", (double)(s1.n_cuda_malloc - s0.n_cuda_malloc), true,
           "cudaMalloc", "3 rounds of the same 8 sizes after the first: %lld new cudaMalloc calls (want 0)",
           s1.n_cuda_malloc - s0.n_cuda_malloc);
}

/* The projector's ops: bias add, its gradient (fp32, accumulated), the erf GELU and its backward. */
static void test_projector_ops(const backend_ops *cpu, Rng &rng, int n, int dim, const char *tag) {
    char nm[128];
    size_t count = (size_t)n * dim;
    Vec x = randn_bf16(count, rng, 2.0), bias = randn_bf16(dim, rng), dout = randn_bf16(count, rng);
    Vec out = x, g(count), dx(count), db = randn(dim, rng);
    Vec db0 = db;
    cpu->bias_forward(out.data(), bias.data(), n, dim);
    cpu->gelu_forward(g.data(), x.data(), count);
    cpu->gelu_backward(dx.data(), dout.data(), x.data(), count);
    cpu->bias_backward(db.data(), dout.data(), n, dim);
    gpu_bf16 *dxx = up_bf16(x, "x"), *dbias = up_bf16(bias, "bias"), *ddo = up_bf16(dout, "dout");
    gpu_bf16 *dg = dalloc<gpu_bf16>(count, "gelu"), *ddx = dalloc<gpu_bf16>(count, "dx");
    float *ddb = up_f32(db0, "dbias");
    if (!dxx || !dbias || !ddo || !dg || !ddx || !ddb) return;
    poison(dg, count * 2);
    poison(ddx, count * 2);
    gpu_gelu_forward(dg, dxx, count);
    gpu_gelu_backward(ddx, ddo, dxx, count);
    gpu_bias_backward(ddb, ddo, n, dim);
    gpu_bias_forward(dxx, dbias, n, dim); /* in place, last: x is read above */
    snprintf(nm, sizeof nm, "gelu_forward %s n=%d dim=%d", tag, n, dim);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(dg, count), g, TOL_BF16);
        snprintf(nm, sizeof nm, "gelu_backward %s", tag);
        judge_vec(nm, down_bf16(ddx, count), dx, TOL_BF16);
        snprintf(nm, sizeof nm, "bias_forward %s", tag);
        judge_vec(nm, down_bf16(dxx, count), out, TOL_BF16);
        snprintf(nm, sizeof nm, "bias_backward (accumulating) %s", tag);
        judge_vec(nm, down_f32(ddb, dim), db, TOL_F32);
    }
    for (void *p : {(void *)dxx, (void *)dbias, (void *)ddo, (void *)dg, (void *)ddx, (void *)ddb}) gpu_free(p);
}

/* The KV cache: kv_cache_write (some rows without a slot) and one query per
 * sequence against caches of different lengths, as backend.h's. */
static void test_decode_ops(const backend_ops *cpu, Rng &rng, int B, int max_len, int H, int KV, int hd,
                            const char *tag) {
    char nm[160];
    int R = (H + 2 * KV) * hd, kvd = KV * hd, n = B * 3;
    size_t cache = (size_t)B * max_len * kvd;
    Vec kc = randn_bf16(cache, rng), vc = randn_bf16(cache, rng), qkv = randn_bf16((size_t)n * R, rng);
    std::vector<int> slot(n), len(B);
    for (int i = 0; i < n; i++) slot[i] = i % 3 == 2 ? -1 : (i / 3) * max_len + rng.below(max_len);
    for (int b = 0; b < B; b++) len[b] = b == 0 ? 1 : b == 1 ? max_len : 1 + rng.below(max_len);
    gpu_bf16 *dk = up_bf16(kc, "k cache"), *dv = up_bf16(vc, "v cache"), *dq = up_bf16(qkv, "qkv");
    gpu_bf16 *dout = dalloc<gpu_bf16>((size_t)B * H * hd, "out");
    int *dslot = up_i32(slot, "slots"), *dlen = up_i32(len, "lengths");
    if (!dk || !dv || !dq || !dout || !dslot || !dlen) return;
    cpu->kv_cache_write(kc.data(), vc.data(), qkv.data(), slot.data(), n, H, KV, hd);
    gpu_kv_cache_write(dk, dv, dq, dslot, n, H, KV, hd);
    Vec ref((size_t)B * H * hd);
    /* queries: rows 0, 3, 6, ... of qkv (stride 3 R), one per sequence */
    cpu->attention_decode(ref.data(), qkv.data(), 3 * R, kc.data(), vc.data(), len.data(), B, max_len, H, KV, hd);
    poison(dout, ref.size() * 2);
    gpu_attention_decode(dout, dq, 3 * R, dk, dv, dlen, B, max_len, H, KV, hd);
    snprintf(nm, sizeof nm, "kv_cache_write %s B=%d rows=%d kv=%d", tag, B, max_len, kvd);
    if (settle(nm)) {
        judge_vec(nm, down_bf16(dk, cache), kc, TOL_EXACT);
        snprintf(nm, sizeof nm, "kv_cache_write (values) %s", tag);
        judge_vec(nm, down_bf16(dv, cache), vc, TOL_EXACT);
        snprintf(nm, sizeof nm, "attention_decode %s B=%d max_len=%d heads=%d/%d hd=%d", tag, B, max_len, H, KV, hd);
        judge_vec(nm, down_bf16(dout, ref.size()), ref, TOL_BF16);
    }
    for (void *p : {(void *)dk, (void *)dv, (void *)dq, (void *)dout, (void *)dslot, (void *)dlen}) gpu_free(p);
}

static int sec_ops(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    const backend_ops *cpu = cpu_reference();
    if (!cpu) return 1;
    Rng rng(20261127);
    test_allocator();
    test_matmul(cpu, rng, 37, 72, 40, "small");
    test_matmul(cpu, rng, 33, 77, 45, "odd");
    if (g_emu)
        test_matmul(cpu, rng, 64, 128, 96, "medium");
    else
        test_matmul(cpu, rng, 512, 1024, 1536, "medium");
    test_embedding(cpu, rng, 37, 72, 50, "small");
    test_embedding(cpu, rng, 37, 77, 50, "odd");
    test_embedding(cpu, rng, g_emu ? 128 : 1024, g_emu ? 256 : 2048, 1000, "medium");
    test_rmsnorm(cpu, rng, 37, 72, "small");
    test_rmsnorm(cpu, rng, 37, 77, "odd");
    test_rmsnorm(cpu, rng, g_emu ? 64 : 1024, g_emu ? 512 : 4096, "medium");
    test_rope(cpu, rng, 37, 3, 1, 16, 64, "small");
    test_rope(cpu, rng, 37, 2, 1, 6, 40, "hd6");
    if (g_emu)
        test_rope(cpu, rng, 128, 4, 2, 128, 4096, "medium");
    else
        test_rope(cpu, rng, 2048, 32, 8, 128, 4096, "medium");
    test_swiglu(cpu, rng, 37, 72, "small");
    test_swiglu(cpu, rng, 37, 77, "odd");
    test_swiglu(cpu, rng, g_emu ? 64 : 1024, g_emu ? 512 : 4096, "medium");
    test_add(cpu, rng, 1001, 0, "small");
    test_add(cpu, rng, 1001, 1, "unaligned");
    test_add(cpu, rng, (size_t)1 << (g_emu ? 14 : 20), 0, "medium");
    test_cross_entropy(cpu, rng, 37, 77, 0.5f, "small");
    test_cross_entropy(cpu, rng, g_emu ? 8 : 256, 32000, 1.0f / 256, "medium");
    if (!g_quick && !g_emu) test_cross_entropy(cpu, rng, 64, 128256, 1.0f, "llama3 vocab");
    test_adamw(cpu, rng, 1001, "small");
    test_adamw(cpu, rng, (size_t)1 << (g_emu ? 14 : 20), "medium");
    test_sum_squares(cpu, rng, 1001, "small");
    test_sum_squares(cpu, rng, (size_t)1 << (g_emu ? 16 : 22), "medium");
    test_projector_ops(cpu, rng, 37, 77, "small");
    test_projector_ops(cpu, rng, g_emu ? 300 : 4608, g_emu ? 64 : 4096, "medium");
    test_decode_ops(cpu, rng, 3, 37, 4, 2, 16, "small");
    test_decode_ops(cpu, rng, 3, 29, 3, 1, 80, "hd80");
    if (g_emu)
        test_decode_ops(cpu, rng, 2, 64, 4, 1, 128, "medium");
    else
        test_decode_ops(cpu, rng, 8, 2048, 32, 8, 128, "8B shape");
    settle("ops end");
    return g_n_fail ? 1 : 0;
}

/* ============================================================== attention */

static double att_flops_fwd(int B, int S, int H, int hd) { return 2.0 * B * H * (double)S * S * hd; } /* causal */

static void test_attention(const backend_ops *cpu, Rng &rng, int B, int S, int H, int KV, int hd, const char *tag) {
    char nm[160];
    int R = (H + 2 * KV) * hd;
    size_t n = (size_t)B * S;
    Vec qkv = randn_bf16(n * R, rng), dout = randn_bf16(n * H * hd, rng);
    Vec out_ref(n * H * hd), probs((size_t)B * H * S * S), scratch((size_t)B * H * S * S), dqkv_ref(n * R);
    cpu->attention_forward(out_ref.data(), probs.data(), qkv.data(), B, S, H, KV, hd);
    cpu->attention_backward(dqkv_ref.data(), scratch.data(), dout.data(), probs.data(), qkv.data(), B, S, H, KV, hd);
    gpu_bf16 *dq = up_bf16(qkv, "qkv"), *dg = up_bf16(dout, "dout"), *dy = dalloc<gpu_bf16>(n * H * hd, "out");
    gpu_bf16 *ddq = dalloc<gpu_bf16>(n * R, "dqkv"), *dy2 = dalloc<gpu_bf16>(n * H * hd, "out2");
    float *dl = dalloc<float>((size_t)B * H * S, "lse"), *dl2 = dalloc<float>((size_t)B * H * S, "lse2");
    if (!dq || !dg || !dy || !ddq || !dy2 || !dl || !dl2) return;
    const char *names[2] = {"flash", "gemm"};
    for (int impl = 0; impl < 2; impl++) {
        if (impl == GPU_ATT_FLASH && !gpu_attention_flash_supports(hd)) continue;
        gpu_attention_set_impl(impl);
        poison(dy, n * H * hd * 2);
        poison(dl, (size_t)B * H * S * 4);
        gpu_attention_forward(dy, dl, dq, B, S, H, KV, hd);
        snprintf(nm, sizeof nm, "%s attention forward %s", names[impl], tag);
        if (!settle(nm)) continue;
        judge_vec(nm, down_bf16(dy, n * H * hd), out_ref, TOL_ATT_F);
        Vec lse = down_f32(dl, (size_t)B * H * S);
        size_t bad = 0;
        for (float x : lse) bad += !isfinite(x);
        snprintf(nm, sizeof nm, "%s attention lse finite %s", names[impl], tag);
        record(bad ? "FAIL" : "pass", false, nm, (double)bad, true, "non-finite", "of %zu", lse.size());
        poison(ddq, n * R * 2);
        gpu_attention_backward(ddq, dg, dy, dl, dq, B, S, H, KV, hd);
        snprintf(nm, sizeof nm, "%s attention backward %s", names[impl], tag);
        if (settle(nm)) judge_vec(nm, down_bf16(ddq, n * R), dqkv_ref, TOL_ATT_B);
    }
    /* Mixed: one implementation's forward (out, lse) into the other's backward. */
    if (gpu_attention_flash_supports(hd)) {
        for (int fwd = 0; fwd < 2; fwd++) {
            gpu_attention_set_impl(fwd);
            gpu_attention_forward(dy2, dl2, dq, B, S, H, KV, hd);
            gpu_attention_set_impl(1 - fwd);
            poison(ddq, n * R * 2);
            gpu_attention_backward(ddq, dg, dy2, dl2, dq, B, S, H, KV, hd);
            snprintf(nm, sizeof nm, "%s forward -> %s backward %s", names[fwd], names[1 - fwd], tag);
            if (settle(nm)) judge_vec(nm, down_bf16(ddq, n * R), dqkv_ref, TOL_ATT_B);
        }
    }
    gpu_attention_set_impl(GPU_ATT_FLASH);
    for (void *p : {(void *)dq, (void *)dg, (void *)dy, (void *)ddq, (void *)dy2, (void *)dl, (void *)dl2})
        gpu_free(p);
}

static float time_ms(int reps, void (*fn)(void *), void *ctx) {
    gpu_event *a = gpu_event_new(), *b = gpu_event_new();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        gpu_event_record(a);
        fn(ctx);
        gpu_event_record(b);
        t.push_back(gpu_event_ms(a, b));
    }
    gpu_event_free(a);
    gpu_event_free(b);
    std::sort(t.begin(), t.end());
    return t.empty() ? -1.f : t[t.size() / 2];
}

struct AttBench {
    gpu_bf16 *qkv, *dout, *out, *dqkv;
    float *lse;
    int B, S, H, KV, hd;
};
static void att_fwd_fn(void *c) {
    AttBench *a = (AttBench *)c;
    gpu_attention_forward(a->out, a->lse, a->qkv, a->B, a->S, a->H, a->KV, a->hd);
}
static void att_bwd_fn(void *c) {
    AttBench *a = (AttBench *)c;
    gpu_attention_backward(a->dqkv, a->dout, a->out, a->lse, a->qkv, a->B, a->S, a->H, a->KV, a->hd);
}

/* Flash vs GEMM at a real shape, and the speed of both. */
static void attention_large(int B, int S, int H, int KV, int hd, const char *tag) {
    char nm[160];
    int R = (H + 2 * KV) * hd;
    size_t n = (size_t)B * S, no = n * H * hd, nl = (size_t)B * H * S;
    AttBench a = {};
    a.B = B, a.S = S, a.H = H, a.KV = KV, a.hd = hd;
    a.qkv = dalloc<gpu_bf16>(n * R, "qkv");
    a.dout = dalloc<gpu_bf16>(no, "dout");
    a.out = dalloc<gpu_bf16>(no, "out");
    a.dqkv = dalloc<gpu_bf16>(n * R, "dqkv");
    a.lse = dalloc<float>(nl, "lse");
    if (!a.qkv || !a.dout || !a.out || !a.dqkv || !a.lse) return;
    init_bf16(a.qkv, n * R, 11, 1.f);
    init_bf16(a.dout, no, 12, 1.f);
    Vec out[2], dqkv[2], lse[2];
    for (int impl = 0; impl < 2; impl++) {
        gpu_attention_set_impl(impl);
        poison(a.out, no * 2);
        poison(a.lse, nl * 4);
        poison(a.dqkv, n * R * 2);
        att_fwd_fn(&a);
        att_bwd_fn(&a);
        snprintf(nm, sizeof nm, "%s attention %s", impl ? "gemm" : "flash", tag);
        if (!settle(nm)) return;
        out[impl] = down_bf16(a.out, no);
        dqkv[impl] = down_bf16(a.dqkv, n * R);
        lse[impl] = down_f32(a.lse, nl);
    }
    snprintf(nm, sizeof nm, "flash vs gemm forward %s", tag);
    judge_vec(nm, out[0], out[1], Tol{3e-2, 1e-3, 1.5e-2});
    snprintf(nm, sizeof nm, "flash vs gemm lse %s", tag);
    judge_vec(nm, lse[0], lse[1], Tol{1e-3, 1e-3, 1e-4});
    snprintf(nm, sizeof nm, "flash vs gemm backward %s", tag);
    judge_vec(nm, dqkv[0], dqkv[1], Tol{6e-2, 1e-3, 3e-2});
    double ff = att_flops_fwd(B, S, H, hd);
    for (int impl = 0; impl < 2; impl++) {
        gpu_attention_set_impl(impl);
        att_fwd_fn(&a);
        att_bwd_fn(&a);
        float tf = time_ms(g_emu ? 1 : g_quick ? 3 : 7, att_fwd_fn, &a);
        float tb = time_ms(g_emu ? 1 : g_quick ? 3 : 7, att_bwd_fn, &a);
        snprintf(nm, sizeof nm, "%s attention fwd %s", impl ? "gemm" : "flash", tag);
        if (!settle(nm)) continue;
        record("info", impl == 0, nm, ff / (tf * 1e-3) / 1e12, true, "TFLOP/s",
               "%.3f ms, causal FLOPs 4*B*H*S^2*hd/2 = %.3g", tf, ff);
        snprintf(nm, sizeof nm, "%s attention bwd %s", impl ? "gemm" : "flash", tag);
        record("info", impl == 0, nm, 2.5 * ff / (tb * 1e-3) / 1e12, true, "TFLOP/s", "%.3f ms, 2.5x forward FLOPs",
               tb);
    }
    gpu_attention_set_impl(GPU_ATT_FLASH);
    for (void *p : {(void *)a.qkv, (void *)a.dout, (void *)a.out, (void *)a.dqkv, (void *)a.lse}) gpu_free(p);
}

static int sec_attention(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    const backend_ops *cpu = cpu_reference();
    if (!cpu) return 1;
    Rng rng(777);
    test_attention(cpu, rng, 2, 100, 4, 2, 64, "hd64 b2 s100 h4/2");
    test_attention(cpu, rng, 1, 64, 2, 2, 64, "hd64 b1 s64 mha");
    test_attention(cpu, rng, 1, 200, 4, 1, 128, "hd128 b1 s200 h4/1");
    test_attention(cpu, rng, 2, 33, 4, 2, 16, "hd16 b2 s33 (gemm path)");
    if (g_emu && g_quick) {
        /* CI: the CPU comparisons above are the point */
    } else if (g_emu) {
        attention_large(1, 160, 4, 2, 64, "emu b1 s160 h4/2 hd64");
        attention_large(2, 130, 4, 1, 128, "emu b2 s130 h4/1 hd128");
    } else {
        test_attention(cpu, rng, 1, 1024, 8, 2, 128, "hd128 b1 s1024 h8/2");
        attention_large(2, 2048, 32, 8, 64, "1B shape b2 s2048 h32/8 hd64");
        attention_large(1, 2048, 32, 8, 128, "7B shape b1 s2048 h32/8 hd128");
    }
    settle("attention end");
    return g_n_fail ? 1 : 0;
}

/* ======================================================= GPU model pieces */

/* Per-op timing of one pass: an event after each op. */
struct Timeline : OpMarks {
    std::vector<std::pair<std::string, gpu_event *>> marks;
    gpu_event *start = NULL;
    void begin() {
        start = gpu_event_new();
        gpu_event_record(start);
    }
    void mark(const char *label) override {
        gpu_event *e = gpu_event_new();
        gpu_event_record(e);
        marks.push_back(std::make_pair(std::string(label), e));
    }
    /* label -> ms, merged by label */
    std::vector<std::pair<std::string, double>> collect() {
        std::vector<std::pair<std::string, double>> out;
        gpu_event *prev = start;
        for (auto &m : marks) {
            double ms = gpu_event_ms(prev, m.second);
            bool found = false;
            for (auto &o : out)
                if (o.first == m.first) {
                    o.second += ms;
                    found = true;
                }
            if (!found) out.push_back(std::make_pair(m.first, ms));
            prev = m.second;
        }
        return out;
    }
    ~Timeline() {
        for (auto &m : marks) gpu_event_free(m.second);
        gpu_event_free(start);
    }
};

/* The model on the GPU is the trainer's engine (cuda/engine.cu, through
 * stages/gpu_engine.h's table): the check drives the same pass presight
 * train runs, on one rank under ddp (whole units, no NCCL). */
/* Hands the engine's per-op marks to a Timeline only while one is set. */
struct MarkSwitch : OpMarks {
    OpMarks *to = NULL;
    void mark(const char *label) override {
        if (to) to->mark(label);
    }
};

struct EngineModel : OneRank {
    MarkSwitch marks;
};

/* The engine for layout L at [B, S] (ddp, one rank) holding params. */
static int em_open(EngineModel &g, const model_layout *L, int B, int S, float wd, real *const *params,
                   ps_error *err) {
    return one_rank_open(g, L, STRATEGY_DDP, B, S, wd, &g.marks, params, err);
}

static void em_close(EngineModel &g) { one_rank_close(g); }

/* One training step on the engine: forward, backward, gradient norm, AdamW. */
static int em_step(EngineModel &g, const int *tokens, const int *targets, int B, int S, double lr, int64_t step,
                   double *loss, double *sumsq, ps_error *err) {
    model_batch b = {};
    b.batch = B;
    b.seq = S;
    b.tokens = tokens;
    b.targets = targets;
    return g.api->train_batch(g.e, 0, &b, 1.0f, err) || g.api->finish_backward(g.e, loss, sumsq, err) ||
           g.api->optimizer_step(g.e, lr, step, 1.0, err);
}

/* ==================================================================== step */

static int sec_step(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    if (g_att_fallback) gpu_attention_set_impl(GPU_ATT_GEMM);
    const backend_ops *cpu = cpu_reference();
    if (!cpu) return 1;
    model_config c = {};
    c.vocab = 512;
    c.dim = 256;
    c.layers = 2;
    c.heads = 4;
    c.kv_heads = 2;
    c.ffn_dim = 512;
    c.context = 128;
    c.rope_theta = 500000.0;
    c.norm_eps = 1e-5;
    c.tied_head = 0;
    c.init_std = 0.02;
    const int B = 2, S = 96, n = B * S, steps = 3;
    const float lr = 1e-3f, wd = 0.1f;
    INFO("model", "vocab %d dim %d layers %d heads %d/%d (hd %d) ffn %d, batch %d x seq %d, attention %s", c.vocab,
         c.dim, c.layers, c.heads, c.kv_heads, c.dim / c.heads, c.ffn_dim, B, S,
         gpu_attention_get_impl() == GPU_ATT_FLASH ? "flash" : "gemm");

    /* CPU model, weights rounded to bf16 so that both start from the same values. */
    model m;
    if (model_init(&m, &c, cpu, &err)) {
        FAILREC("cpu model", "%s", err.msg);
        return 1;
    }
    model_params P, G, M, Vm;
    if (model_params_alloc(&P, &m.layout, &err) || model_params_alloc(&G, &m.layout, &err) ||
        model_params_alloc(&M, &m.layout, &err) || model_params_alloc(&Vm, &m.layout, &err)) {
        FAILREC("cpu params", "%s", err.msg);
        return 1;
    }
    model_init_weights(&P, &m.layout, 1234);
    for (int u = 0; u < m.layout.n_units; u++)
        for (size_t i = 0; i < m.layout.units[u].size; i++)
            P.unit[u][i] = gpu_bf16_to_float(gpu_float_to_bf16(P.unit[u][i]));
    model_activations *acts = model_activations_alloc(&m.layout, B, S, 0, &err);
    if (!acts) {
        FAILREC("cpu activations", "%s", err.msg);
        return 1;
    }
    Rng rng(99);
    std::vector<int> tokens(n), targets(n);
    for (int i = 0; i < n; i++) tokens[i] = rng.below(c.vocab);
    for (int i = 0; i < n; i++) targets[i] = (i + 1) % S == 0 ? -1 : tokens[i + 1];
    targets[5] = -1;
    int n_valid = 0;
    for (int t : targets) n_valid += t >= 0 && t < c.vocab;
    train_config tc = {};
    tc.beta1 = 0.9;
    tc.beta2 = 0.95;
    tc.adam_eps = 1e-8;
    tc.weight_decay = wd;

    /* The engine from the same weights. */
    EngineModel g;
    if (em_open(g, &m.layout, B, S, wd, P.unit, &err)) {
        FAILREC("engine", "%s", err.msg);
        return 1;
    }
    INFO("engine", "%s", g.api->describe(g.e));
    std::vector<std::vector<float>> gg(m.layout.n_units);
    std::vector<real *> gp(m.layout.n_units);
    for (int u = 0; u < m.layout.n_units; u++) {
        gg[u].assign(m.layout.units[u].size, 0.f);
        gp[u] = gg[u].data();
    }
    model_batch mb = {};
    mb.batch = B;
    mb.seq = S;
    mb.tokens = tokens.data();
    mb.targets = targets.data();
    gpu_mem_stats st1 = {}, st3 = {};
    for (int step = 1; step <= steps; step++) {
        for (int u = 0; u < m.layout.n_units; u++) memset(G.unit[u], 0, m.layout.units[u].size * sizeof(float));
        double loss_cpu = model_forward(&m, &P, acts, tokens.data(), targets.data(), B, S);
        model_backward(&m, &P, &G, acts, tokens.data(), targets.data(), B, S, 1.0f);

        char nm[96];
        snprintf(nm, sizeof nm, "step %d forward+backward", step);
        double loss = NAN, sumsq = 0;
        if (g.api->train_batch(g.e, 0, &mb, 1.0f, &err) || g.api->finish_backward(g.e, &loss, &sumsq, &err) ||
            g.api->gradients(g.e, gp.data(), &err)) {
            FAILREC(nm, "%s", err.msg);
            return 1;
        }
        if (!settle(nm)) return 1;
        snprintf(nm, sizeof nm, "step %d loss", step);
        judge_scalar(nm, loss, loss_cpu, step == 1 ? 5e-3 : 1e-2, 0);
        if (step == 1) {
            double worst = 0, se = 0, sr = 0, cpu_sumsq = 0;
            const char *worst_name = "";
            int bad = 0;
            for (int t = 0; t < m.layout.n_tensors; t++) {
                const model_tensor *T = &m.layout.tensors[t];
                size_t count = (size_t)T->rows * T->cols;
                const float *gr = gg[T->unit].data() + T->offset, *cr = G.unit[T->unit] + T->offset;
                Cmp cm = compare(gr, cr, count);
                double d2 = 0, r2 = 0;
                for (size_t i = 0; i < count; i++) {
                    double dd = (double)gr[i] - cr[i];
                    d2 += dd * dd;
                    r2 += (double)cr[i] * cr[i];
                }
                se += d2;
                sr += r2;
                cpu_sumsq += r2;
                if (cm.nan_gpu) bad++;
                if (cm.rel_l2 > worst || cm.nan_gpu) {
                    worst = cm.nan_gpu ? INFINITY : cm.rel_l2;
                    worst_name = T->name;
                }
                char tn[160];
                snprintf(tn, sizeof tn, "grad %s", T->name);
                judge(tn, cm, Tol{1e-1, 1e-6, 5e-2});
            }
            record(bad == 0 && worst <= 5e-2 ? "pass" : "FAIL", true, "step 1 gradients (worst tensor)", worst, true,
                   "relL2", "%s; all tensors together relL2 %.3g; tol 5e-2 per tensor (bf16 activations)", worst_name,
                   sr > 0 ? sqrt(se / sr) : 0.0);
            judge_scalar("step 1 gradient norm", sqrt(sumsq), sqrt(cpu_sumsq), 5e-2, 0);
            gpu_mem_stats_get(&st1);
        }
        /* AdamW on both (CPU grads are the mean-loss gradients, as the engine's). */
        adamw_step(cpu, &m.layout, &P, &G, &M, &Vm, &tc, lr, step, 1.0);
        if (g.api->optimizer_step(g.e, lr, step, 1.0, &err)) {
            FAILREC("engine AdamW", "%s", err.msg);
            return 1;
        }
        if (step == steps) gpu_mem_stats_get(&st3);
    }
    /* The loss after the last update, forward only on both. */
    {
        double loss_cpu = model_forward(&m, &P, acts, tokens.data(), targets.data(), B, S);
        model_result r = {0, 0, 0};
        if (g.api->forward_batch(g.e, &mb, &r, &err)) FAILREC("final forward", "%s", err.msg);
        else if (settle("final forward")) {
            judge_scalar("loss after 3 AdamW steps", r.loss, loss_cpu, 1e-2, 0);
            record(r.n_counted == n_valid ? "pass" : "FAIL", false, "counted targets", r.n_counted, true, "",
                   "want %d", n_valid);
        }
    }
    record(st3.n_cuda_malloc == st1.n_cuda_malloc ? "pass" : "FAIL", false, "no cudaMalloc after step 1",
           (double)(st3.n_cuda_malloc - st1.n_cuda_malloc), true, "calls", "steps 2-3 (want 0)");
    em_close(g);
    model_activations_free(acts);
    model_params_free(&P);
    model_params_free(&G);
    model_params_free(&M);
    model_params_free(&Vm);
    model_free(&m);
    settle("step end");
    return g_n_fail ? 1 : 0;
}

/* ==================================================================== gemm */

struct GemmBench {
    gpu_bf16 *a, *w, *out;
    float *dw;
    int n, in, out_dim, mode; /* 0 forward, 1 din, 2 dw */
};
static void gemm_fn(void *c) {
    GemmBench *g = (GemmBench *)c;
    if (g->mode == 0) gpu_matmul_forward(g->out, g->a, g->w, NULL, g->n, g->in, g->out_dim);
    if (g->mode == 1) gpu_matmul_backward(g->a, NULL, g->out, NULL, g->w, g->n, g->in, g->out_dim);
    if (g->mode == 2) gpu_matmul_backward(NULL, g->dw, g->out, g->a, NULL, g->n, g->in, g->out_dim);
}

/* TFLOP/s of one shape (median of reps), or -1. */
static double gemm_rate(int n, int in, int out, int mode, int reps, const char *label, bool key, bool check) {
    GemmBench g = {};
    g.n = n, g.in = in, g.out_dim = out, g.mode = mode;
    g.a = dalloc<gpu_bf16>((size_t)n * in, "A");
    g.w = dalloc<gpu_bf16>((size_t)out * in, "W");
    g.out = dalloc<gpu_bf16>((size_t)n * out, "out");
    g.dw = mode == 2 ? dalloc<float>((size_t)out * in, "dw") : NULL;
    double rate = -1;
    if (g.a && g.w && g.out && (mode != 2 || g.dw)) {
        init_bf16(g.a, (size_t)n * in, 1, 1.f);
        init_bf16(g.w, (size_t)out * in, 2, 1.f);
        init_bf16(g.out, (size_t)n * out, 3, 1.f);
        if (g.dw) init_f32(g.dw, (size_t)out * in, 4, 1.f);
        for (int i = 0; i < 3; i++) gemm_fn(&g);
        float ms = time_ms(reps, gemm_fn, &g);
        if (settle(label) && ms > 0) {
            rate = 2.0 * n * (double)in * out / (ms * 1e-3) / 1e12;
            record("info", key, label, rate, true, "TFLOP/s", "%.3f ms median of %d, random data", ms, reps);
        }
        if (check && mode == 0 && rate > 0) {
            /* 16 sampled outputs against a double dot product of the same values */
            std::vector<gpu_bf16> row(in), col(in);
            int bad = 0;
            double worst = 0;
            Rng r(5);
            poison(g.out, (size_t)n * out * 2);
            gemm_fn(&g);
            for (int s = 0; s < 16; s++) {
                int i = r.below(n), j = r.below(out);
                gpu_bf16 got;
                if (down(&got, g.out + (size_t)i * out + j, 2)) break;
                double ref = 0, ref_abs = 0;
                for (int k = 0; k < in; k++) {
                    double a = gpu_bf16_to_float(gpu_float_to_bf16(hash_val(1, (size_t)i * in + k)));
                    double b = gpu_bf16_to_float(gpu_float_to_bf16(hash_val(2, (size_t)j * in + k)));
                    ref += a * b;
                    ref_abs += fabs(a * b);
                }
                double gv = gpu_bf16_to_float(got), d = fabs(gv - ref), tol = fabs(ref) / 256 + 1e-5 * ref_abs + 1e-3;
                if (!(d <= tol)) bad++;
                worst = std::max(worst, d / tol);
            }
            record(bad ? "FAIL" : "pass", false, "large GEMM sampled outputs", worst, true, "err/tol",
                   "16 outputs of the %dx%dx%d product vs double dot products: %d beyond 2^-8 |ref| + 1e-5 sum|ab|",
                   n, in, out, bad);
        }
    }
    for (void *p : {(void *)g.a, (void *)g.w, (void *)g.out, (void *)g.dw}) gpu_free(p);
    gpu_empty_cache();
    return rate;
}

static int sec_gemm(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    int reps = g_quick ? 5 : 20;
    struct {
        int n, in, out;
    } big[] = {{8192, 8192, 8192}, {16384, 8192, 8192}, {8192, 16384, 8192}, {16384, 16384, 8192}};
    double best = 0;
    char label[128], best_label[128] = "";
    if (g_emu) {
        big[0] = {96, 128, 64};
        big[1] = {64, 256, 128};
        reps = 2;
    }
    for (int i = 0; i < (g_quick || g_emu ? 2 : 4); i++) {
        snprintf(label, sizeof label, "bf16 GEMM %dx%dx%d (TN)", big[i].n, big[i].in, big[i].out);
        double r = gemm_rate(big[i].n, big[i].in, big[i].out, 0, reps, label, false, i == 0);
        if (r > best) {
            best = r;
            snprintf(best_label, sizeof best_label, "%s", label);
        }
    }
    record(best > 0 ? "pass" : "FAIL", true, "bf16 GEMM peak (cuBLASLt)", best, true, "TFLOP/s", "best: %s",
           best_label);
    /* The 7B block's GEMMs at 8192 tokens: forward, din and dw (fp32 accumulate). */
    struct {
        const char *name;
        int in, out;
    } shapes[] = {{"qkv", 4096, 6144}, {"wo", 4096, 4096}, {"w13", 4096, 28672}, {"w2", 14336, 4096}};
    const char *modes[] = {"fwd", "din", "dw"};
    for (auto &s : shapes)
        for (int mode = 0; mode < 3; mode++) {
            int nt = g_emu ? 64 : 8192, in = g_emu ? s.in / 64 : s.in, out = g_emu ? s.out / 64 : s.out;
            snprintf(label, sizeof label, "7B %s %s n=%d in=%d out=%d", s.name, modes[mode], nt, in, out);
            gemm_rate(nt, in, out, mode, g_quick || g_emu ? 2 : 10, label, false, false);
        }
    INFO("gemm plans cached", "%d shapes", gpu_gemm_cache_size());
    return g_n_fail ? 1 : 0;
}

/* ================================================================== blocks */

static void print_breakdown(Timeline &tl, double total_ms, const char *what) {
    auto parts = tl.collect();
    double sum = 0;
    for (auto &p : parts) sum += p.second;
    std::string s;
    char buf[128];
    for (auto &p : parts) {
        snprintf(buf, sizeof buf, "%s %.2f ms (%.0f%%); ", p.first.c_str(), p.second, 100.0 * p.second / sum);
        s += buf;
    }
    record("info", false, what, sum, true, "ms", "%s(timed total %.2f ms)", s.c_str(), total_ms);
}

static double mfu_of(double tflops) { return g_peak_tflops > 0 ? tflops / g_peak_tflops : 0; }

static void bench_block(const char *name, int D, int H, int KV, int F, int B, int S) {
    model_config c = {};
    c.vocab = 32000;
    c.dim = D;
    c.layers = 1;
    c.heads = H;
    c.kv_heads = KV;
    c.ffn_dim = F;
    c.context = S;
    c.rope_theta = 500000.0;
    c.norm_eps = 1e-5;
    Dims d = make_dims(c, B, S);
    char label[160];
    snprintf(label, sizeof label, "%s block fwd+bwd mb%d seq%d", name, B, S);
    gpu_empty_cache();
    gpu_mem_reset_peak();
    gpu_mem_stats s0;
    gpu_mem_stats_get(&s0);
    size_t np = block_params(d), n = d.n;
    gpu_bf16 *w = dalloc<gpu_bf16>(np, "block weights"), *x = dalloc<gpu_bf16>(n * D, "x");
    gpu_bf16 *dy = dalloc<gpu_bf16>(n * D, "dy");
    float *g = dalloc<float>(np, "block grads");
    Vec table = rope_table(S, d.hd, 500000.0);
    float *cs = up_f32(table, "rope");
    std::vector<int> pos(n);
    for (size_t i = 0; i < n; i++) pos[i] = (int)(i % S);
    int *dpos = up_i32(pos, "pos");
    BlockActs a;
    Scratch s = {};
    gpu_bf16 *x_out = dalloc<gpu_bf16>((size_t)d.n * d.D, "x_out");
    if (!w || !x || !dy || !g || !cs || !dpos || !x_out || alloc_block_acts(d, a, x, x_out) || alloc_scratch(d, s)) {
        FAILREC(label, "could not allocate (see above)");
        return;
    }
    d.cos_sin = cs;
    d.pos = dpos;
    BlockW<gpu_bf16> bw = block_view(w, d);
    BlockW<float> bg = block_view(g, d);
    init_bf16(w, np, 21, 0.02f);
    init_bf16(bw.attn_norm, D, 0, 0.f, 1.f);
    init_bf16(bw.ffn_norm, D, 0, 0.f, 1.f);
    init_bf16(x, n * D, 22, 1.f);
    init_bf16(dy, n * D, 23, 1.f);
    gpu_memset(g, 0, np * 4);
    auto iter = [&](Timeline *tl) {
        gpu_copy(s.dx, dy, n * D * 2);
        block_fwd(d, bw, a, tl);
        block_bwd(d, bw, bg, a, s, tl);
    };
    for (int i = 0; i < 2; i++) iter(NULL);
    if (!settle(label)) return;
    gpu_mem_stats s1;
    gpu_mem_stats_get(&s1);
    int reps = g_emu ? 2 : g_quick ? 4 : 10;
    gpu_event *e0 = gpu_event_new(), *e1 = gpu_event_new();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        gpu_event_record(e0);
        iter(NULL);
        gpu_event_record(e1);
        t.push_back(gpu_event_ms(e0, e1));
    }
    if (!settle(label)) return;
    gpu_mem_stats s2;
    gpu_mem_stats_get(&s2);
    std::sort(t.begin(), t.end());
    double ms = t[t.size() / 2];
    double W = (double)D * d.QKV + (double)d.HD * D + 3.0 * D * F;
    double flops = 6.0 * W * n + 12.0 * D * (double)S * n;
    double tf = flops / (ms * 1e-3) / 1e12;
    record("info", true, label, tf, true, "TFLOP/s",
           "%.2f ms median of %d (min %.2f, max %.2f); PaLM FLOPs 6*%.4g weights*%zu tok + 12*D*S*tok = %.4g; MFU %.1f%% "
           "of measured GEMM peak %.0f, %.1f%% of datasheet %.0f",
           ms, reps, t.front(), t.back(), W, n, flops, 100 * mfu_of(tf), g_peak_tflops,
           g_datasheet_tflops > 0 ? 100 * tf / g_datasheet_tflops : 0.0, g_datasheet_tflops);
    char nm[200];
    snprintf(nm, sizeof nm, "%s MFU (vs measured GEMM peak)", label);
    record("info", true, nm, 100 * mfu_of(tf), true, "%", "target 520 TFLOP/s: %s",
           tf >= 520 ? "met" : "not met");
    {
        Timeline tl;
        tl.begin();
        iter(&tl);
        snprintf(nm, sizeof nm, "%s breakdown", label);
        print_breakdown(tl, ms, nm);
    }
    /* Values finite: the sum of squares of every weight gradient. */
    double *dss = dalloc<double>(1, "ss");
    if (dss) {
        gpu_sum_squares(dss, g, np);
        double ss = NAN;
        down(&ss, dss, 8);
        snprintf(nm, sizeof nm, "%s gradients finite", label);
        record(isfinite(ss) && ss > 0 ? "pass" : "FAIL", false, nm, ss, true, "sum sq", " ");
        gpu_free(dss);
    }
    snprintf(nm, sizeof nm, "%s no cudaMalloc after warm-up", label);
    record(s2.n_cuda_malloc == s1.n_cuda_malloc ? "pass" : "FAIL", false, nm,
           (double)(s2.n_cuda_malloc - s1.n_cuda_malloc), true, "calls", "%d timed iterations", reps);
    /* (e) memory: the plan is the sum of the buffers this code allocates + the op scratch it knows of. */
    size_t plan = np * 2 + np * 4 + 3 * n * D * 2 /* w, g, x, dy, x_out */ +
                  n * (3 * D + d.QKV + d.HD + 3 * d.F) * 2 + 2 * n * 4 + (size_t)B * H * S * 4 /* acts */ +
                  n * (2 * D + d.QKV + d.HD + 3 * d.F) * 2 /* scratch */ +
                  gpu_attention_backward_scratch(B, S, H, KV, d.hd) +
                  ((size_t)32 << 20) /* GEMM workspace */;
    snprintf(nm, sizeof nm, "%s peak memory", label);
    record("info", true, nm, s2.peak_reserved / 1e9, true, "GB",
           "allocator: peak reserved %.2f GB, peak in use %.2f GB, peak requested %.2f GB; plan %.2f GB "
           "(reserved/plan %.2f); %lld cudaMalloc in all",
           s2.peak_reserved / 1e9, s2.peak_in_use / 1e9, s2.peak_requested / 1e9, plan / 1e9,
           (double)s2.peak_reserved / plan, s2.n_cuda_malloc);
    gpu_event_free(e0);
    gpu_event_free(e1);
    gpu_free(a.x_out);
    free_block_acts(a);
    free_scratch(s);
    for (void *p : {(void *)w, (void *)x, (void *)dy, (void *)g, (void *)cs, (void *)dpos}) gpu_free(p);
    gpu_empty_cache();
}

static int sec_blocks(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    if (g_att_fallback) gpu_attention_set_impl(GPU_ATT_GEMM);
    INFO("attention", "%s", gpu_attention_get_impl() == GPU_ATT_FLASH ? "flash" : "gemm (flash failed its checks)");
    if (g_peak_tflops <= 0) INFO("peak", "no GEMM peak measured (section gemm did not run): MFU shows 0");
    if (g_emu) {
        bench_block("emu-7B-like", 256, 4, 2, 512, 2, 128);
        bench_block("emu-13B-like", 256, 2, 2, 384, 1, 96);
        return g_n_fail ? 1 : 0;
    }
    bench_block("7B", 4096, 32, 8, 14336, 4, 2048);
    bench_block("13B", 5120, 40, 40, 13824, 4, 2048);
    if (!g_quick) {
        bench_block("7B", 4096, 32, 8, 14336, 1, 2048);
        bench_block("13B", 5120, 40, 40, 13824, 1, 2048);
    }
    return g_n_fail ? 1 : 0;
}

/* ================================================================= model1b */

static int sec_model1b(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    if (g_att_fallback) gpu_attention_set_impl(GPU_ATT_GEMM);
    model_config c = {};
    c.vocab = 32000; /* config/model/1b.cfg */
    c.dim = 2048;
    c.layers = 16;
    c.heads = 32;
    c.kv_heads = 8;
    c.ffn_dim = 8192;
    c.context = 2048;
    c.rope_theta = 500000.0;
    c.norm_eps = 1e-5;
    c.tied_head = 0;
    c.init_std = 0.02;
    int S = 2048;
    if (g_emu) {
        c.vocab = 1000;
        c.dim = 256;
        c.layers = 2;
        c.heads = 4;
        c.kv_heads = 2;
        c.ffn_dim = 512;
        c.context = S = 128;
    }
    /* Host weights as model_init_weights draws them (1B: 4.4 GB of fp32). */
    model_layout L;
    model_params P;
    if (model_layout_init(&L, &c, &err) || model_params_alloc(&P, &L, &err)) {
        FAILREC("1B model", "%s", err.msg);
        return 1;
    }
    model_init_weights(&P, &L, 100);
    EngineModel g;
    int B = 0;
    g_alloc_trial = 1;
    for (int b : {4, 2, 1}) {
        gpu_mem_reset_peak();
        if (em_open(g, &L, b, S, 0.1f, P.unit, &err) == 0) {
            B = b;
            break;
        }
        em_close(g);
        gpu_empty_cache();
        gpu_clear_error();
    }
    g_alloc_trial = 0;
    model_params_free(&P);
    if (!B) {
        FAILREC("1B model", "does not fit at micro-batch 1: %s", err.msg);
        return 1;
    }
    const int n = B * S;
    INFO("1B model", "%.3f B parameters, micro-batch %d x seq %d = %d tokens per step, on the engine: %s",
         L.n_params / 1e9, B, S, n, g.api->describe(g.e));
    Rng rng(3);
    std::vector<int> tokens(n), targets(n);
    for (int i = 0; i < n; i++) tokens[i] = rng.below(c.vocab);
    for (int i = 0; i < n; i++) targets[i] = (i + 1) % S == 0 ? -1 : tokens[i + 1];
    int step_no = 0, reps = g_emu ? 1 : g_quick ? 2 : 4;
    std::vector<double> losses, norms;
    auto step = [&]() {
        double loss = NAN, sumsq = NAN;
        if (em_step(g, tokens.data(), targets.data(), B, S, 1e-4, ++step_no, &loss, &sumsq, &err)) {
            FAILREC("1B step", "%s", err.msg);
            return false;
        }
        losses.push_back(loss);
        norms.push_back(sqrt(sumsq));
        return true;
    };
    if (!step() || !settle("1B warm-up step")) return 1; /* heuristics, first allocations */
    gpu_mem_stats s1;
    gpu_mem_stats_get(&s1);
    gpu_event *e0 = gpu_event_new(), *e1 = gpu_event_new();
    gpu_event_record(e0);
    for (int i = 1; i <= reps; i++)
        if (!step()) return 1;
    gpu_event_record(e1);
    float ms = gpu_event_ms(e0, e1) / reps;
    if (!settle("1B timed steps")) return 1;
    gpu_mem_stats s2;
    gpu_mem_stats_get(&s2);
    bool finite = true;
    std::string ls;
    char buf[64];
    for (size_t i = 0; i < losses.size(); i++) {
        finite = finite && isfinite(losses[i]) && isfinite(norms[i]);
        snprintf(buf, sizeof buf, "%s%.4f (|g| %.3g)", i ? ", " : "", losses[i], norms[i]);
        ls += buf;
    }
    double l0 = losses[0], ln_v = log((double)c.vocab);
    record(finite && l0 > ln_v - 1.5 && l0 < ln_v + 1.5 ? "pass" : "FAIL", false, "1B losses finite, ~ln(vocab) at init",
           losses.back(), true, "", "per step: %s", ls.c_str());
    double flops = model_train_flops(&L, S, (double)n);
    double tf = flops / (ms * 1e-3) / 1e12;
    record("info", true, "1B training step (tokens/s)", n / (ms * 1e-3), true, "tok/s",
           "%.1f ms per step (mean of %d), micro-batch %d x %d, the engine's step: incl. grad norm, AdamW, zeroing, "
           "and the host's wait for loss and norm", ms, reps, B, S);
    record("info", true, "1B training step TFLOP/s", tf, true, "TFLOP/s",
           "model_train_flops %.4g per step; MFU %.1f%% of measured GEMM peak %.0f, %.1f%% of datasheet %.0f", flops,
           100 * mfu_of(tf), g_peak_tflops, g_datasheet_tflops > 0 ? 100 * tf / g_datasheet_tflops : 0.0,
           g_datasheet_tflops);
    record(s2.n_cuda_malloc == s1.n_cuda_malloc ? "pass" : "FAIL", false, "1B no cudaMalloc after the first step",
           (double)(s2.n_cuda_malloc - s1.n_cuda_malloc), true, "calls", "%d timed steps", reps);
    size_t Pn = L.n_params, acts_b = 0;
    {
        const Dims d = make_dims(c, B, S);
        acts_b = (size_t)(d.layers + 1) * n * d.D * 2 +
                 (size_t)d.layers * ((size_t)n * (3 * d.D + d.QKV + d.HD + 3 * d.F) * 2 + 2 * (size_t)n * 4 +
                                     (size_t)B * d.H * S * 4) +
                 (size_t)n * (2 * d.D + d.QKV + d.HD + 3 * d.F) * 2 + (size_t)n * d.D * 2 + (size_t)n * d.V * 2;
        acts_b += gpu_attention_backward_scratch(B, S, d.H, d.KV, d.hd);
    }
    size_t plan = Pn * 18 + acts_b + ((size_t)32 << 20);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    record("info", true, "1B step peak memory", s2.peak_reserved / 1e9, true, "GB",
           "allocator peak reserved %.2f GB, in use %.2f GB; plan %.2f GB = 18 B/param (fp32 master, grad, m, v + bf16 "
           "copy) %.2f + activations %.2f + scratch (reserved/plan %.2f); device used %.2f of %.2f GB",
           s2.peak_reserved / 1e9, s2.peak_in_use / 1e9, plan / 1e9, Pn * 18 / 1e9, acts_b / 1e9,
           (double)s2.peak_reserved / plan, (total_b - free_b) / 1e9, total_b / 1e9);
    {
        Timeline tl;
        tl.begin();
        g.marks.to = &tl;
        bool ok = step();
        g.marks.to = NULL;
        if (ok) print_breakdown(tl, ms, "1B step breakdown");
    }
    gpu_event_free(e0);
    gpu_event_free(e1);
    em_close(g);
    model_layout_free(&L);
    settle("model1b end");
    return g_n_fail ? 1 : 0;
}

/* ==================================================================== nccl */

static int sec_nccl(void) {
    ps_error err;
    if (gpu_init(gpu_local_rank(), &err)) {
        FAILREC("gpu_init", "%s", err.msg);
        return 1;
    }
    /* One rank on one host: NCCL's bootstrap needs no network beyond loopback. */
    setenv("NCCL_SOCKET_IFNAME", "lo", 0);
    setenv("NCCL_DEBUG", "WARN", 0);
    if (!gpu_comm_available(&err)) {
        record("skip", true, "nccl", 0, false, "", "%s (set PRESIGHT_NCCL or LD_LIBRARY_PATH)", err.msg);
        return 0;
    }
    char id[GPU_COMM_ID_BYTES];
    if (gpu_comm_unique_id(id, &err)) {
        FAILREC("ncclGetUniqueId", "%s", err.msg);
        return 1;
    }
    gpu_comm *c = gpu_comm_init(1, 0, id, &err);
    if (!c) {
        FAILREC("ncclCommInitRank(1 rank)", "%s", err.msg);
        return 1;
    }
    INFO("nccl", "NCCL %d, world size 1", gpu_comm_version());
    const size_t N = (size_t)64 << 20; /* 64 Mi floats = 256 MiB */
    float *a = dalloc<float>(N, "send"), *b = dalloc<float>(N, "recv");
    if (!a || !b) return 1;
    init_f32(a, N, 77, 1.f);
    Vec ha(4096);
    down(ha.data(), a, 4096 * 4);
    struct Op {
        const char *name;
        int kind;
    } ops[] = {{"all_reduce", 0}, {"all_reduce in place", 1}, {"all_gather", 2}, {"reduce_scatter", 3}};
    for (auto &op : ops) {
        float *dst = op.kind == 1 ? a : b;
        if (op.kind != 1) poison(b, N * 4);
        auto run = [&](void) -> int {
            switch (op.kind) {
            case 0: return gpu_all_reduce(c, a, b, N, GPU_F32, &err);
            case 1: return gpu_all_reduce(c, a, a, N, GPU_F32, &err);
            case 2: return gpu_all_gather(c, a, b, N, GPU_F32, &err);
            default: return gpu_reduce_scatter(c, a, b, N, GPU_F32, &err);
            }
        };
        char nm[96];
        snprintf(nm, sizeof nm, "nccl %s fp32 (world 1)", op.name);
        if (run()) {
            FAILREC(nm, "%s", err.msg);
            continue;
        }
        if (!settle(nm)) continue;
        Vec hb(4096);
        down(hb.data(), dst, 4096 * 4);
        bool same = memcmp(ha.data(), hb.data(), 4096 * 4) == 0;
        Vec tail(16), tail_ref(16);
        down(tail.data(), dst + N - 16, 64);
        down(tail_ref.data(), a + N - 16, 64);
        same = same && memcmp(tail.data(), tail_ref.data(), 64) == 0;
        gpu_event *e0 = gpu_event_new(), *e1 = gpu_event_new();
        gpu_event_record(e0);
        const int reps = 10;
        for (int i = 0; i < reps; i++) run();
        gpu_event_record(e1);
        float ms = gpu_event_ms(e0, e1) / reps;
        settle(nm);
        record(same ? "pass" : "FAIL", true, nm, N * 4 / (ms * 1e-3) / 1e9, true, "GB/s",
               "%zu MiB, %.3f ms; result %s the input (a sum over one rank)", N * 4 >> 20, ms,
               same ? "equals" : "DIFFERS from");
        gpu_event_free(e0);
        gpu_event_free(e1);
    }
    gpu_comm_free(c);
    gpu_free(a);
    gpu_free(b);
    return g_n_fail ? 1 : 0;
}

/* ================================================================== parent */

struct Section {
    const char *name;
    int (*fn)(void);
    int timeout_s;
    const char *what;
};

static const Section SECTIONS[] = {
    {"device", sec_device, 45, "device detection"},
    {"ops", sec_ops, 100, "(a) ops vs CPU"},
    {"attention", sec_attention, 100, "(a) attention vs CPU, flash vs GEMM"},
    {"step", sec_step, 60, "(a) small-model training steps vs CPU"},
    {"gemm", sec_gemm, 60, "(b) bf16 GEMM peak"},
    {"blocks", sec_blocks, 120, "(d,e) 7B/13B blocks"},
    {"model1b", sec_model1b, 120, "(c,e) 1B training step"},
    {"nccl", sec_nccl, 45, "(f) NCCL world 1"},
};

static std::vector<Rec> g_recs;

static void add_parent_rec(const char *sec, const char *status, const char *name, const char *detail) {
    Rec r;
    r.section = sec;
    r.status = status;
    r.name = name;
    r.detail = detail;
    g_recs.push_back(r);
    printf("  %-4s %-46s %s\n", status, name, detail);
}

static void read_records(const char *path, const char *sec) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *fields[6] = {0};
        int k = 0;
        char *p = line;
        fields[k++] = p;
        while (k < 6 && (p = strchr(p, '\t'))) {
            *p++ = 0;
            fields[k++] = p;
        }
        if (k < 6) continue;
        Rec r;
        r.section = sec;
        r.status = fields[0];
        r.key = fields[1][0] == '1';
        r.name = fields[2];
        r.has_value = fields[3][0] != 0;
        r.value = r.has_value ? strtod(fields[3], NULL) : 0;
        r.unit = fields[4];
        r.detail = fields[5];
        g_recs.push_back(r);
    }
    fclose(f);
}

static volatile sig_atomic_t g_stop; /* SIGTERM/SIGINT: end the running section, print what we have */
static int g_no_fork;

static void on_stop(int sig) { g_stop = sig; }

/* Runs one section in a child; returns its exit code (77: no GPU), or -1. */
static int run_section(const Section &s, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.tsv", dir, s.name);
    printf("\n== %s: %s\n", s.name, s.what);
    fflush(stdout);
    double t0 = now_s();
    if (g_no_fork) { /* debugging: in this process (a fault ends everything) */
        g_rec_file = fopen(path, "w");
        int rc = s.fn();
        fflush(NULL);
        if (g_rec_file) fclose(g_rec_file);
        g_rec_file = NULL;
        read_records(path, s.name);
        return rc;
    }
    pid_t pid = fork();
    if (pid < 0) {
        add_parent_rec(s.name, "FAIL", "fork", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        g_rec_file = fopen(path, "w");
        int rc = s.fn();
        fflush(NULL);
        if (g_rec_file) fclose(g_rec_file);
        _exit(rc);
    }
    int status = 0, done = 0;
    int timeout = (int)(s.timeout_s * (getenv("GPU_CHECK_TIMEOUT_SCALE") ? atof(getenv("GPU_CHECK_TIMEOUT_SCALE")) : 1));
    while (!done) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            done = 1;
            break;
        }
        if (now_s() - t0 > timeout || g_stop) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            read_records(path, s.name);
            char msg[160];
            if (g_stop)
                snprintf(msg, sizeof msg, "stopped by signal %d after %.0f s", (int)g_stop, now_s() - t0);
            else
                snprintf(msg, sizeof msg, "killed after %d s (a hang: see the last lines above)", timeout);
            add_parent_rec(s.name, "FAIL", g_stop ? "section interrupted" : "section timed out", msg);
            return -1;
        }
        usleep(20000);
    }
    read_records(path, s.name);
    double dt = now_s() - t0;
    char msg[160];
    if (WIFSIGNALED(status)) {
        snprintf(msg, sizeof msg, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        add_parent_rec(s.name, "FAIL", "section crashed", msg);
        return -1;
    }
    int rc = WEXITSTATUS(status);
    snprintf(msg, sizeof msg, "%.1f s, exit %d", dt, rc);
    Rec r;
    r.section = s.name;
    r.status = "info";
    r.name = "section time";
    r.value = dt;
    r.has_value = true;
    r.unit = "s";
    r.detail = msg;
    g_recs.push_back(r);
    if (rc != 0 && rc != 1 && rc != 77) {
        snprintf(msg, sizeof msg, "exit code %d", rc);
        add_parent_rec(s.name, "FAIL", "section ended early", msg);
    }
    return rc;
}

static void json_str(FILE *f, const std::string &s) {
    fputc('"', f);
    for (unsigned char ch : s) {
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void write_json(const char *path, int passed, int failed, int skipped, double wall) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "gpu_check: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    time_t now = time(NULL);
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"schema\": \"presight-gpu-check/1\",\n  \"time\": \"%s\",\n  \"device\": ", ts);
    json_str(f, g_device_name);
    fprintf(f, ",\n  \"gemm_peak_tflops\": %.6g,\n  \"datasheet_bf16_tflops\": %.6g,\n", g_peak_tflops,
            g_datasheet_tflops);
    fprintf(f, "  \"attention\": \"%s\",\n", g_att_fallback ? "gemm" : "flash");
    fprintf(f, "  \"summary\": {\"passed\": %d, \"failed\": %d, \"skipped\": %d, \"wall_s\": %.1f},\n", passed,
            failed, skipped, wall);
    fprintf(f, "  \"results\": [\n");
    for (size_t i = 0; i < g_recs.size(); i++) {
        const Rec &r = g_recs[i];
        fprintf(f, "    {\"section\": ");
        json_str(f, r.section);
        fprintf(f, ", \"name\": ");
        json_str(f, r.name);
        fprintf(f, ", \"status\": ");
        json_str(f, r.status);
        if (r.has_value && isfinite(r.value))
            fprintf(f, ", \"value\": %.9g", r.value);
        else
            fprintf(f, ", \"value\": null");
        fprintf(f, ", \"unit\": ");
        json_str(f, r.unit);
        fprintf(f, ", \"key\": %s, \"detail\": ", r.key ? "true" : "false");
        json_str(f, r.detail);
        fprintf(f, "}%s\n", i + 1 < g_recs.size() ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    if (rename(tmp, path) != 0) fprintf(stderr, "gpu_check: cannot rename %s: %s\n", tmp, strerror(errno));
}

static const Rec *find_rec(const char *sec, const char *name_prefix) {
    for (const Rec &r : g_recs)
        if (r.section == sec && r.name.compare(0, strlen(name_prefix), name_prefix) == 0) return &r;
    return NULL;
}

static void usage(void) {
    printf("usage: gpu_check [--json PATH] [--sections LIST] [--quick] [--no-fork]\n"
           "  sections (default all, in this order):");
    for (const Section &s : SECTIONS) printf(" %s", s.name);
    printf("\n  GPU_CHECK_TIMEOUT_SCALE=x scales the per-section time limits.\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *json = NULL;
    std::string only;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--sections") && i + 1 < argc)
            only = std::string(",") + argv[++i] + ",";
        else if (!strcmp(argv[i], "--quick"))
            g_quick = 1;
        else if (!strcmp(argv[i], "--no-fork"))
            g_no_fork = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    double t0 = now_s();
    char dir[] = "/tmp/gpu_check.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "gpu_check: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    printf("presight gpu-check%s\n", g_quick ? " (quick)" : "");
    int rc = run_section(SECTIONS[0], dir);
    if (rc == 77) {
        if (const Rec *r = find_rec("device", "gpu")) printf("%s\n", r->detail.c_str());
        for (const Section &s : SECTIONS) {
            char p[600];
            snprintf(p, sizeof p, "%s/%s.tsv", dir, s.name);
            unlink(p);
        }
        rmdir(dir);
        return 77;
    }
    if (const Rec *r = find_rec("device", "device name")) snprintf(g_device_name, sizeof g_device_name, "%s", r->detail.c_str());
    if (strstr(g_device_name, "H100") || strstr(g_device_name, "H200") || strstr(g_device_name, "H800") ||
        strstr(g_device_name, "H20"))
        g_datasheet_tflops = strstr(g_device_name, "PCIe") ? 756.0 : 989.4;
    if (rc == 0 || rc == 1) {
        for (size_t i = 1; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++) {
            const Section &s = SECTIONS[i];
            if (!only.empty() && only.find(std::string(",") + s.name + ",") == std::string::npos) continue;
            if (g_stop) break;
            run_section(s, dir);
            if (!strcmp(s.name, "attention")) {
                for (const Rec &r : g_recs)
                    if (r.section == "attention" && r.status == "FAIL" && r.name.find("flash attention") == 0)
                        g_att_fallback = 1;
                bool ran = false;
                for (const Rec &r : g_recs) ran = ran || (r.section == "attention" && r.name.find("flash") == 0);
                if (!ran) g_att_fallback = 1; /* crashed before any flash check */
                if (g_att_fallback)
                    printf("  note: flash attention failed a check: the later sections use the GEMM attention\n");
            }
            if (!strcmp(s.name, "gemm")) {
                if (const Rec *r = find_rec("gemm", "bf16 GEMM peak")) g_peak_tflops = r->value;
            }
        }
    }
    for (const Section &s : SECTIONS) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s.tsv", dir, s.name);
        unlink(p);
    }
    rmdir(dir);

    /* The summary table, last. */
    int passed = 0, failed = 0, skipped = 0;
    for (const Rec &r : g_recs) {
        passed += r.status == "pass";
        failed += r.status == "FAIL";
        skipped += r.status == "skip";
    }
    double wall = now_s() - t0;
    printf("\n== gpu-check summary: %s\n", g_device_name[0] ? g_device_name : "(device unknown)");
    printf("%-10s %-52s %-6s %s\n", "section", "check", "result", "value");
    for (const Section &s : SECTIONS) {
        int p = 0, f = 0, k = 0;
        std::string fails;
        for (const Rec &r : g_recs) {
            if (r.section != s.name) continue;
            p += r.status == "pass";
            k += r.status == "skip";
            if (r.status == "FAIL") {
                f++;
                if (fails.size() < 160) fails += (fails.empty() ? "" : "; ") + r.name;
            }
        }
        if (p + f + k == 0) continue;
        char val[64];
        snprintf(val, sizeof val, "%d/%d passed%s", p, p + f, k ? " (+skips)" : "");
        printf("%-10s %-52s %-6s %s%s%s\n", s.name, "checks", f ? "FAIL" : "pass", val, f ? ": " : "", fails.c_str());
        for (const Rec &r : g_recs) {
            if (r.section != s.name || !r.key) continue;
            char v[64] = "";
            if (r.has_value) snprintf(v, sizeof v, "%.4g %s", r.value, r.unit.c_str());
            std::string nm = r.name.size() > 52 ? r.name.substr(0, 52) : r.name;
            printf("%-10s %-52s %-6s %s%s%s\n", "", nm.c_str(), r.status.c_str(), v,
                   r.has_value ? "" : r.detail.substr(0, 100).c_str(), "");
        }
    }
    if (json) {
        write_json(json, passed, failed, skipped, wall);
        printf("wrote %s\n", json);
    }
    printf("gpu-check: %d passed, %d failed, %d skipped in %.0f s%s\n", passed, failed, skipped, wall,
           g_att_fallback ? " (flash attention failed: GEMM attention used)" : "");
    return failed ? 1 : 0;
}
