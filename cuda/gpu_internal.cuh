/* gpu_internal.cuh - shared by the .cu files of cuda/, not part of the API. */
#ifndef PRESIGHT_GPU_INTERNAL_CUH
#define PRESIGHT_GPU_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "gpu.h"
#include "launch.cuh"

typedef __nv_bfloat16 bf16;

/* The compute stream (valid after gpu_init). */
cudaStream_t gpu_stream_(void);
/* Records the first error (printf-style), keeps later ones out. */
void gpu_record_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* After a launch: records cudaGetLastError() under the op's name; with
 * PRESIGHT_GPU_SYNC=1 also synchronises and records any fault. */
void gpu_after_launch(const char *op);
/* Device properties of the selected device. */
int gpu_sm_count_(void);

/* The largest power of two (<= 256) dividing the address. */
static inline int gpu_align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && (a % (uintptr_t)al)) al >>= 1;
    return al;
}

static inline unsigned grid_1d(size_t work, int block, unsigned cap = 65535u * 16u) {
    size_t g = (work + (size_t)block - 1) / (size_t)block;
    if (g < 1) g = 1;
    if (g > cap) g = cap;
    return (unsigned)g;
}

/* ----------------------------------------------------- device helpers */

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets it.
 * shared: 32 floats. Contains __syncthreads(). */
__device__ __forceinline__ float block_sum(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float t = lane < n_warps ? shared[lane] : 0.f;
    return warp_sum(t);
}

/* Max over the block (as block_sum; -INFINITY for a block of -INFINITY). */
__device__ __forceinline__ float block_max(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float t = lane < n_warps ? shared[lane] : -INFINITY;
    return warp_max(t);
}

/* 8 bf16 (16 bytes) <-> 8 floats. */
__device__ __forceinline__ void load8(const bf16 *p, float f[8]) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ void store8(bf16 *p, const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

#endif
