/* emu.h - a CPU emulator of the CUDA subset that the .cu files of cuda/ use, for testing the
 * GPU backend's logic where no GPU is (make gpu-emu, tests/t_gpu.sh).
 *
 * It is no simulator of timing or of the memory model: every kernel runs at
 * its launch, block after block; the threads of a block are fibers
 * (a register-only context switch on x86-64, ucontext elsewhere) switched at __syncthreads, __syncwarp and shuffles, so barrier
 * and shuffle semantics hold, a barrier some threads never reach is reported
 * as a deadlock, and device memory is host memory, so AddressSanitizer sees
 * every out-of-bounds kernel access and UBSan every misaligned vector access.
 * WMMA fragments hold the whole 16x16 tile in every lane (any layout is
 * legal: code may only touch fragments through the API and uniform
 * element-wise ops). cuBLASLt is a plain loop that first checks the
 * dimensions and leading dimensions of every operand, as the library does.
 * NCCL is absent (its loader reports it missing). Built with -DPRESIGHT_EMU
 * and -Icuda/emu/include, whose headers all lead here. */
#ifndef PRESIGHT_EMU_H
#define PRESIGHT_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include <functional>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

/* --------------------------------------------------------------- vectors */

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

/* ----------------------------------------------------------------- bf16 */

struct alignas(2) __nv_bfloat16 {
    uint16_t __x;
};
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
static inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t b = (uint32_t)h.__x << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    __nv_bfloat16 h;
    if ((b & 0x7fffffffu) > 0x7f800000u)
        h.__x = (uint16_t)((b >> 16) | 0x40u);
    else
        h.__x = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    return h;
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
static inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    return float2{__bfloat162float(h.x), __bfloat162float(h.y)};
}
static inline float emu_expf(float x) { return expf(x); }
#define __expf emu_expf

/* ------------------------------------------------------------ scheduler */

/* Fiber switch without the signal-mask system call of swapcontext: saves the
 * callee-saved registers on the old stack, loads the new stack pointer.
 * Weak, so that every object file may carry it. */
#if defined(__x86_64__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch(void **save_sp, void *load_sp);
asm(".text\n"
    ".weak emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");
#else
#define EMU_FAST_SWITCH 0
#endif

namespace emu {

struct Thread {
    ucontext_t ctx;
    void *sp = nullptr;
    char *stack = nullptr;
    void *fake_stack = nullptr; /* AddressSanitizer's fiber bookkeeping */
    uint3 tid;
    int lane = 0, warp = 0;
    bool done = false;
};

struct State {
    ucontext_t main;
    void *main_sp = nullptr;
    std::vector<Thread> th;
    Thread *cur = nullptr;
    int live = 0;
    int bar_arrived = 0, bar_gen = 0;
    std::vector<int> w_arrived, w_gen, w_live;
    std::vector<uint64_t> shfl;
    std::vector<float> mma; /* per warp: A, B, C tiles of a collective mma_sync */
    uint3 block_idx;
    dim3 block_dim, grid_dim;
    std::function<void()> *body = nullptr;
    unsigned char *dyn = nullptr; /* dynamic shared memory, 128-byte aligned as on the GPU (WMMA needs 32) */
    long long progress = 0;
    const char *kernel = "";
    const void *main_bottom = nullptr;
    size_t main_size = 0;
};
inline State g;
constexpr size_t STACK_BYTES = 512 * 1024;

inline void yield() {
    Thread *t = g.cur;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&t->fake_stack, g.main_bottom, g.main_size);
#endif
#if EMU_FAST_SWITCH
    emu_switch(&t->sp, g.main_sp);
#else
    swapcontext(&t->ctx, &g.main);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(t->fake_stack, nullptr, nullptr);
#endif
}

inline void trampoline() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g.main_bottom, &g.main_size);
#endif
    (*g.body)();
    Thread *t = g.cur;
    t->done = true;
    g.live--;
    g.w_live[t->warp]--;
    g.progress++;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, g.main_bottom, g.main_size);
#endif
#if EMU_FAST_SWITCH
    emu_switch(&t->sp, g.main_sp); /* never resumed */
    abort();
#endif
}

inline void block_barrier() {
    int gen = g.bar_gen;
    g.bar_arrived++;
    for (;;) {
        if (g.bar_gen != gen) break;
        if (g.bar_arrived >= g.live) {
            g.bar_arrived = 0;
            g.bar_gen++;
            g.progress++;
            break;
        }
        yield();
    }
}

inline void warp_barrier() {
    int w = g.cur->warp, gen = g.w_gen[w];
    g.w_arrived[w]++;
    for (;;) {
        if (g.w_gen[w] != gen) break;
        if (g.w_arrived[w] >= g.w_live[w]) {
            g.w_arrived[w] = 0;
            g.w_gen[w]++;
            g.progress++;
            break;
        }
        yield();
    }
}

inline void run_block(size_t n_threads) {
    if (g.th.size() < n_threads) g.th.resize(n_threads);
    int warps = (int)((n_threads + 31) / 32);
    g.w_arrived.assign(warps, 0);
    g.w_gen.assign(warps, 0);
    g.w_live.assign(warps, 0);
    g.shfl.assign((size_t)warps * 32, 0);
    g.mma.assign((size_t)warps * 768, 0.f);
    g.bar_arrived = 0;
    g.live = (int)n_threads;
    for (size_t i = 0; i < n_threads; i++) {
        Thread &t = g.th[i];
        if (!t.stack) t.stack = (char *)malloc(STACK_BYTES);
        t.done = false;
        t.tid.x = (unsigned)(i % g.block_dim.x);
        t.tid.y = (unsigned)(i / g.block_dim.x % g.block_dim.y);
        t.tid.z = (unsigned)(i / ((size_t)g.block_dim.x * g.block_dim.y));
        t.lane = (int)(i % 32);
        t.warp = (int)(i / 32);
        g.w_live[t.warp]++;
#if EMU_FAST_SWITCH
        /* a fresh stack that "returns" into trampoline with the ABI's alignment */
        uintptr_t top = ((uintptr_t)(t.stack + STACK_BYTES)) & ~(uintptr_t)15;
        void **sp = (void **)(top - 8);
        *sp = nullptr;              /* trampoline's return slot: never used */
        *--sp = (void *)trampoline; /* where emu_switch's ret goes */
        for (int r = 0; r < 6; r++) *--sp = nullptr; /* rbp rbx r12-r15 */
        t.sp = (void *)sp;
#else
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = t.stack;
        t.ctx.uc_stack.ss_size = STACK_BYTES;
        t.ctx.uc_link = &g.main;
        makecontext(&t.ctx, (void (*)())trampoline, 0);
#endif
    }
    long long stuck_rounds = 0;
    while (g.live > 0) {
        long long before = g.progress;
        for (size_t i = 0; i < n_threads; i++) {
            if (g.th[i].done) continue;
            g.cur = &g.th[i];
#if EMU_ASAN
            void *main_fake = nullptr;
            __sanitizer_start_switch_fiber(&main_fake, g.th[i].stack, STACK_BYTES);
#endif
#if EMU_FAST_SWITCH
            emu_switch(&g.main_sp, g.th[i].sp);
#else
            swapcontext(&g.main, &g.th[i].ctx);
#endif
#if EMU_ASAN
            __sanitizer_finish_switch_fiber(main_fake, nullptr, nullptr);
#endif
        }
        g.cur = nullptr;
        if (g.progress == before) {
            if (++stuck_rounds > 3) {
                fprintf(stderr,
                        "emu: DEADLOCK in kernel %s, block (%u,%u,%u): %d live threads wait at barriers that "
                        "cannot complete (a __syncthreads/__syncwarp/shuffle not reached by all)\n",
                        g.kernel, g.block_idx.x, g.block_idx.y, g.block_idx.z, g.live);
                abort();
            }
        } else {
            stuck_rounds = 0;
        }
    }
}

inline void launch(const char *name, dim3 grid, dim3 block, size_t smem, std::function<void()> body) {
    size_t nt = (size_t)block.x * block.y * block.z;
    if (nt == 0 || nt > 1024 || nt % 32 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
        grid.z > 65535) {
        fprintf(stderr, "emu: bad launch of %s: grid (%u,%u,%u) block (%u,%u,%u)\n", name, grid.x, grid.y, grid.z,
                block.x, block.y, block.z);
        abort();
    }
    if (smem > 227 * 1024) {
        fprintf(stderr, "emu: %s asks for %zu bytes of dynamic shared memory (the H100 allows 227 KB)\n", name, smem);
        abort();
    }
    g.kernel = name;
    g.grid_dim = grid;
    g.block_dim = block;
    g.body = &body;
    free(g.dyn); /* NaN-filled: a read before a write shows */
    g.dyn = (unsigned char *)aligned_alloc(128, (smem + 127) / 128 * 128 + (smem ? 0 : 128));
    memset(g.dyn, 0xff, (smem + 127) / 128 * 128);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                g.block_idx = uint3{x, y, z};
                if (smem) memset(g.dyn, 0xff, smem);
                run_block(nt);
            }
    g.body = nullptr;
}

} // namespace emu

#define threadIdx (::emu::g.cur->tid)
#define blockIdx (::emu::g.block_idx)
#define blockDim (::emu::g.block_dim)
#define gridDim (::emu::g.grid_dim)
#define LAUNCH(kernel, grid, block, smem, stream, ...)                                                               \
    ((void)(stream), ::emu::launch(#kernel, dim3(grid), dim3(block), (size_t)(smem), [&]() { kernel(__VA_ARGS__); }))
#define DYN_SMEM(name) unsigned char *name = ::emu::g.dyn

static inline void __syncthreads() { emu::block_barrier(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    emu::warp_barrier();
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    emu::Thread *t = emu::g.cur;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    emu::g.shfl[(size_t)t->warp * 32 + t->lane] = bits;
    emu::warp_barrier();
    uint64_t other = emu::g.shfl[(size_t)t->warp * 32 + (t->lane ^ lane_mask)];
    emu::warp_barrier();
    T r;
    memcpy(&r, &other, sizeof r);
    return r;
}
static inline float atomicAdd(float *p, float v) { /* fibers never preempt: plain RMW is atomic */
    float old = *p;
    *p = old + v;
    return old;
}

/* ------------------------------------------------------------------ WMMA */

/* Fragments are distributed over the warp like the hardware's: 8 elements
 * per lane, element e of lane l being entry e*32 + l of the tile (logical
 * row-major). So a tile stored by one lane is incomplete until every lane has
 * stored its part (a missing __syncwarp before reading it shows), and
 * mma_sync is a collective: the lanes pool their parts in warp scratch, each
 * computes its own 8 outputs. */
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int tile =
        std::is_same<Use, matrix_a>::value ? M * K : std::is_same<Use, matrix_b>::value ? K * N : M * N;
    static constexpr int num_elements = tile / 32;
    T x[num_elements];
};

inline int lane_() { return emu::g.cur->lane; }

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, T v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}
template <class Use, int M, int N, int K, class L>
inline void fill_fragment(fragment<Use, M, N, K, __nv_bfloat16, L> &f, float v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = __float2bfloat16(v);
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
    if (((uintptr_t)p & 31u) != 0) {
        fprintf(stderr, "emu: wmma::load_matrix_sync pointer %p not 32-byte aligned (kernel %s)\n", (const void *)p,
                emu::g.kernel);
        abort();
    }
    if (ldm % (16 / sizeof(T)) != 0) {
        fprintf(stderr, "emu: wmma::load_matrix_sync ldm %u not a multiple of 16 bytes (kernel %s)\n", ldm,
                emu::g.kernel);
        abort();
    }
    const int C = std::is_same<Use, matrix_a>::value ? K : N;
    for (int e = 0; e < f.num_elements; e++) {
        int idx = e * 32 + lane_(), r = idx / C, c = idx % C;
        f.x[e] = std::is_same<L, row_major>::value ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    }
}

template <int M, int N, int K, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, M, N, K, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, M, N, K, float> &c) {
    static_assert(M == 16 && N == 16 && K == 16, "16x16x16 only");
    float *S = emu::g.mma.data() + (size_t)emu::g.cur->warp * 768, *A = S, *B = S + 256, *C = S + 512;
    int l = lane_();
    for (int e = 0; e < 8; e++) {
        A[e * 32 + l] = __bfloat162float(a.x[e]);
        B[e * 32 + l] = __bfloat162float(b.x[e]);
        C[e * 32 + l] = c.x[e];
    }
    emu::warp_barrier();
    float out[8];
    for (int e = 0; e < 8; e++) {
        int idx = e * 32 + l, m = idx / 16, n = idx % 16;
        float s = C[idx];
        for (int k = 0; k < 16; k++) s += A[m * 16 + k] * B[k * 16 + n];
        out[e] = s;
    }
    emu::warp_barrier();
    for (int e = 0; e < 8; e++) d.x[e] = out[e];
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t layout) {
    if (((uintptr_t)p & 31u) != 0 || ldm % 4) {
        fprintf(stderr, "emu: wmma::load_matrix_sync pointer %p / ldm %u misaligned (kernel %s)\n", (const void *)p, ldm,
                emu::g.kernel);
        abort();
    }
    for (int e = 0; e < f.num_elements; e++) {
        int idx = e * 32 + lane_(), m = idx / N, n = idx % N;
        f.x[e] = p[layout == mem_row_major ? (size_t)m * ldm + n : (size_t)n * ldm + m];
    }
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t layout) {
    if (((uintptr_t)p & 31u) != 0 || ldm % 4) {
        fprintf(stderr, "emu: wmma::store_matrix_sync pointer %p / ldm %u misaligned (kernel %s)\n", (void *)p, ldm,
                emu::g.kernel);
        abort();
    }
    for (int e = 0; e < f.num_elements; e++) {
        int idx = e * 32 + lane_(), m = idx / N, n = idx % N;
        p[layout == mem_row_major ? (size_t)m * ldm + n : (size_t)n * ldm + m] = f.x[e];
    }
}
} // namespace wmma
} // namespace nvcuda

/* --------------------------------------------------------------- runtime */

typedef int cudaError_t;
enum {
    cudaSuccess = 0,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorNotReady = 600
};
typedef struct CUstream_st *cudaStream_t;
struct emu_event {
    double t;
};
typedef emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr { cudaDevAttrClockRate, cudaDevAttrMemoryClockRate, cudaDevAttrGlobalMemoryBusWidth };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
#define cudaStreamNonBlocking 1u

struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount, l2CacheSize;
    size_t totalGlobalMem, sharedMemPerBlockOptin;
};

static inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotReady: return "device not ready";
    default: return "unknown error";
    }
}
static inline const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    default: return "cudaErrorUnknown";
    }
}
static inline double emu_now() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    const char *e = getenv("EMU_NO_GPU");
    if (e && *e) {
        *n = 0;
        return cudaErrorInsufficientDriver;
    }
    *n = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation of an H100 (device %d)", dev);
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->l2CacheSize = 50 << 20;
    p->totalGlobalMem = (size_t)8 << 30;
    p->sharedMemPerBlockOptin = 227 * 1024;
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
static inline cudaError_t cudaGetLastError() { return cudaSuccess; }
static inline cudaError_t cudaMalloc(void **p, size_t bytes) {
    size_t limit = getenv("EMU_MEM_LIMIT") ? (size_t)atof(getenv("EMU_MEM_LIMIT")) : 0;
    if (limit && bytes > limit) return cudaErrorMemoryAllocation;
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
    *free_b = (size_t)4 << 30;
    *total = (size_t)8 << 30;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = (cudaStream_t)(uintptr_t)0x5157;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrClockRate ? 1980000 : a == cudaDevAttrMemoryClockRate ? 2619000 : 5120;
    return cudaSuccess;
}
static inline cudaError_t cudaDriverGetVersion(int *v) {
    *v = 13000;
    return cudaSuccess;
}
static inline cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = 13000;
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
    memmove(dst, src, bytes);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *dst, int v, size_t bytes, cudaStream_t) {
    memset(dst, v, bytes);
    return cudaSuccess;
}
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new emu_event{0};
    return cudaSuccess;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    e->t = emu_now();
    return cudaSuccess;
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
#define cudaEventDisableTiming 2u
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
/* Work runs as it is enqueued, so every stream is always in order. */
static inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
static inline cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)((b->t - a->t) * 1e3);
    return cudaSuccess;
}
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *, cudaFuncAttribute, int v) {
    return v <= 227 * 1024 ? cudaSuccess : 1;
}

/* -------------------------------------------------------------- cuBLASLt */

typedef int cublasStatus_t;
enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16
};
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasLtMatmulDescAttributes_t { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4 };
enum cublasLtMatrixLayoutAttribute_t {
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6
};
enum cublasLtMatmulPreferenceAttributes_t {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
};
struct emu_lt {
    int dummy;
};
struct emu_lt_desc {
    int compute, scale, transa, transb;
};
struct emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld, stride;
    int batch;
};
struct emu_lt_pref {
    size_t ws;
};
typedef emu_lt *cublasLtHandle_t;
typedef emu_lt_desc *cublasLtMatmulDesc_t;
typedef emu_lt_layout *cublasLtMatrixLayout_t;
typedef emu_lt_pref *cublasLtMatmulPreference_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

static inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new emu_lt{0};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c,
                                                      cudaDataType_t s) {
    *d = new emu_lt_desc{(int)c, (int)s, 0, 0};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                            const void *v, size_t size) {
    if (size != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    int op = *(const cublasOperation_t *)v;
    if (a == CUBLASLT_MATMUL_DESC_TRANSA) d->transa = op;
    if (a == CUBLASLT_MATMUL_DESC_TRANSB) d->transb = op;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows,
                                                        uint64_t cols, int64_t ld) {
    if (ld < (int64_t)rows && cols > 1) {
        fprintf(stderr, "emu cuBLASLt: layout rows %llu > ld %lld\n", (unsigned long long)rows, (long long)ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *l = new emu_lt_layout{t, rows, cols, ld, 0, 1};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l,
                                                              cublasLtMatrixLayoutAttribute_t a, const void *v,
                                                              size_t size) {
    if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) {
        if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        l->batch = *(const int32_t *)v;
    }
    if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) {
        if (size != sizeof(int64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        l->stride = *(const int64_t *)v;
    }
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new emu_lt_pref{0};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                                  cublasLtMatmulPreferenceAttributes_t a,
                                                                  const void *v, size_t size) {
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (size != sizeof(size_t)) return CUBLAS_STATUS_INVALID_VALUE;
        p->ws = *(const size_t *)v;
    } else if (size != sizeof(uint32_t)) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* The shape check cuBLASLt does: op(A) m x k, op(B) k x n, C and D m x n. */
static inline cublasStatus_t emu_lt_check(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                          cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D) {
    uint64_t m = D->rows, n = D->cols;
    uint64_t am = d->transa ? A->cols : A->rows, ak = d->transa ? A->rows : A->cols;
    uint64_t bk = d->transb ? B->cols : B->rows, bn = d->transb ? B->rows : B->cols;
    bool ok = am == m && bn == n && ak == bk && C->rows == m && C->cols == n && A->batch == B->batch &&
              A->batch == D->batch && C->batch == D->batch && A->type == CUDA_R_16BF && B->type == CUDA_R_16BF &&
              C->type == D->type && d->compute == CUBLAS_COMPUTE_32F;
    for (cublasLtMatrixLayout_t l : {A, B, C, D}) ok = ok && l->ld >= (int64_t)l->rows;
    if (!ok) {
        fprintf(stderr,
                "emu cuBLASLt: inconsistent GEMM: op(A) %llux%llu (trans %d, stored %llux%llu ld %lld), op(B) %llux%llu "
                "(trans %d, stored %llux%llu ld %lld), C %llux%llu ld %lld, D %llux%llu ld %lld, batch %d/%d/%d/%d\n",
                (unsigned long long)am, (unsigned long long)ak, d->transa, (unsigned long long)A->rows,
                (unsigned long long)A->cols, (long long)A->ld, (unsigned long long)bk, (unsigned long long)bn,
                d->transb, (unsigned long long)B->rows, (unsigned long long)B->cols, (long long)B->ld,
                (unsigned long long)C->rows, (unsigned long long)C->cols, (long long)C->ld,
                (unsigned long long)D->rows, (unsigned long long)D->cols, (long long)D->ld, A->batch, B->batch,
                C->batch, D->batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d,
                                                            cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                                            cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                                            cublasLtMatmulPreference_t, int requested,
                                                            cublasLtMatmulHeuristicResult_t *res, int *returned) {
    cublasStatus_t s = emu_lt_check(d, A, B, C, D);
    if (s != CUBLAS_STATUS_SUCCESS) {
        *returned = 0;
        return s;
    }
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    memset(res, 0, sizeof *res);
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static inline float emu_ld(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

static inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha,
                                            const void *A, cublasLtMatrixLayout_t Al, const void *B,
                                            cublasLtMatrixLayout_t Bl, const void *beta, const void *C,
                                            cublasLtMatrixLayout_t Cl, void *D, cublasLtMatrixLayout_t Dl,
                                            const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t) {
    cublasStatus_t s = emu_lt_check(d, Al, Bl, Cl, Dl);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    float al = *(const float *)alpha, be = *(const float *)beta;
    uint64_t m = Dl->rows, n = Dl->cols, k = d->transa ? Al->rows : Al->cols;
    size_t es = Dl->type == CUDA_R_32F ? 4 : 2;
    std::vector<float> out(m * n);
    for (int bt = 0; bt < Dl->batch; bt++) {
        size_t oa = (size_t)bt * Al->stride, ob = (size_t)bt * Bl->stride, oc = (size_t)bt * Cl->stride,
               od = (size_t)bt * Dl->stride;
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) {
                float acc = 0;
                for (uint64_t kk = 0; kk < k; kk++) {
                    size_t ia = d->transa ? oa + kk + i * Al->ld : oa + i + kk * Al->ld;
                    size_t ib = d->transb ? ob + j + kk * Bl->ld : ob + kk + j * Bl->ld;
                    acc += emu_ld(A, Al->type, ia) * emu_ld(B, Bl->type, ib);
                }
                float v = al * acc;
                if (be != 0) v += be * emu_ld(C, Cl->type, oc + i + j * Cl->ld);
                out[i + j * m] = v;
            }
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) {
                size_t o = od + i + j * Dl->ld;
                if (es == 4)
                    ((float *)D)[o] = out[i + j * m];
                else
                    ((__nv_bfloat16 *)D)[o] = __float2bfloat16(out[i + j * m]);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
