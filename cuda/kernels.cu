/* kernels.cu - the fused bf16 kernels (fp32 math) of the GPU backend:
 * embedding, RMSNorm, RoPE, SwiGLU, residual adds, cross-entropy, AdamW,
 * sum of squares. Semantics as core/backend.h (see gpu.h for the types).
 *
 * Memory-bound kernels move 16 bytes per thread access (8 bf16) when the
 * row width is a multiple of 8 and the pointers are 16-byte aligned, and fall
 * back to scalar accesses otherwise (odd test sizes). */
#include <math.h>

#include "gpu_internal.cuh"

static inline int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <int V> __device__ __forceinline__ void ldv(const bf16 *p, float *f);
template <> __device__ __forceinline__ void ldv<8>(const bf16 *p, float *f) { load8(p, f); }
template <> __device__ __forceinline__ void ldv<1>(const bf16 *p, float *f) { f[0] = __bfloat162float(*p); }
template <int V> __device__ __forceinline__ void stv(bf16 *p, const float *f);
template <> __device__ __forceinline__ void stv<8>(bf16 *p, const float *f) { store8(p, f); }
template <> __device__ __forceinline__ void stv<1>(bf16 *p, const float *f) { *p = __float2bfloat16(f[0]); }

/* ------------------------------------------------------------ embedding */

template <int V>
__global__ void embedding_fwd_kernel(bf16 *out, const int *tokens, const bf16 *table, int dim) {
    size_t i = blockIdx.x;
    int t = tokens[i];
    bf16 *o = out + i * (size_t)dim;
    const bf16 *src = table + (size_t)(t < 0 ? 0 : t) * dim;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float f[V];
        if (t >= 0) {
            ldv<V>(src + j, f);
        } else {
#pragma unroll
            for (int v = 0; v < V; v++) f[v] = 0.f;
        }
        stv<V>(o + j, f);
    }
}

void gpu_embedding_forward(gpu_bf16 *out, const int *tokens, const gpu_bf16 *table, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    if (dim % 8 == 0 && aligned16(out) && aligned16(table))
        LAUNCH(embedding_fwd_kernel<8>, n, 128, 0, gpu_stream_(), (bf16 *)out, tokens, (const bf16 *)table, dim);
    else
        LAUNCH(embedding_fwd_kernel<1>, n, 128, 0, gpu_stream_(), (bf16 *)out, tokens, (const bf16 *)table, dim);
    gpu_after_launch("gpu_embedding_forward");
}

__global__ void embedding_bwd_kernel(float *dtable, const bf16 *dout, const int *tokens, int dim) {
    size_t i = blockIdx.x;
    int t = tokens[i];
    if (t < 0) return;
    const bf16 *g = dout + i * (size_t)dim;
    float *d = dtable + (size_t)t * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) atomicAdd(d + j, __bfloat162float(g[j]));
}

void gpu_embedding_backward(float *dtable, const gpu_bf16 *dout, const int *tokens, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    LAUNCH(embedding_bwd_kernel, n, 256, 0, gpu_stream_(), dtable, (const bf16 *)dout, tokens, dim);
    gpu_after_launch("gpu_embedding_backward");
}

/* -------------------------------------------------------------- rmsnorm */

template <int V>
__global__ void rmsnorm_fwd_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, int dim, float eps) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    const bf16 *xr = x + row * dim;
    bf16 *orow = out + row * dim;
    float ss = 0.f;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float f[V];
        ldv<V>(xr + j, f);
#pragma unroll
        for (int v = 0; v < V; v++) ss += f[v] * f[v];
    }
    ss = block_sum(ss, sh);
    float r = 1.0f / sqrtf(ss / (float)dim + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float f[V], g[V];
        ldv<V>(xr + j, f);
        ldv<V>(w + j, g);
#pragma unroll
        for (int v = 0; v < V; v++) f[v] = f[v] * r * g[v];
        stv<V>(orow + j, f);
    }
}

static int row_threads(int dim, int v) {
    int t = (dim / v + 31) / 32 * 32;
    return t < 32 ? 32 : t > 256 ? 256 : t;
}

void gpu_rmsnorm_forward(gpu_bf16 *out, float *rstd, const gpu_bf16 *x, const gpu_bf16 *weight, int n, int dim,
                         float eps) {
    if (n <= 0 || dim <= 0) return;
    if (dim % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(weight))
        LAUNCH(rmsnorm_fwd_kernel<8>, n, row_threads(dim, 8), 0, gpu_stream_(), (bf16 *)out, rstd, (const bf16 *)x,
                                                                            (const bf16 *)weight, dim, eps);
    else
        LAUNCH(rmsnorm_fwd_kernel<1>, n, row_threads(dim, 1), 0, gpu_stream_(), (bf16 *)out, rstd, (const bf16 *)x,
                                                                            (const bf16 *)weight, dim, eps);
    gpu_after_launch("gpu_rmsnorm_forward");
}

/* dx += r w g - x r^3 / dim * sum_k g_k w_k x_k */
template <int V>
__global__ void rmsnorm_bwd_dx_kernel(bf16 *dx, const bf16 *dout, const bf16 *x, const bf16 *w, const float *rstd,
                                      int dim) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    const bf16 *xr = x + row * dim, *gr = dout + row * dim;
    bf16 *dr = dx + row * dim;
    float dot = 0.f;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float fx[V], fg[V], fw[V];
        ldv<V>(xr + j, fx);
        ldv<V>(gr + j, fg);
        ldv<V>(w + j, fw);
#pragma unroll
        for (int v = 0; v < V; v++) dot += fg[v] * fw[v] * fx[v];
    }
    dot = block_sum(dot, sh);
    float r = rstd[row], c = dot * r * r * r / (float)dim;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float fx[V], fg[V], fw[V], fd[V];
        ldv<V>(xr + j, fx);
        ldv<V>(gr + j, fg);
        ldv<V>(w + j, fw);
        ldv<V>(dr + j, fd);
#pragma unroll
        for (int v = 0; v < V; v++) fd[v] += r * fw[v] * fg[v] - c * fx[v];
        stv<V>(dr + j, fd);
    }
}

/* part[p, j] = sum over rows of chunk p of g x r (one thread per column). */
__global__ void rmsnorm_bwd_dw_partial(float *part, const bf16 *dout, const bf16 *x, const float *rstd, int n, int dim,
                                       int rows_per_chunk) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(n, r0 + rows_per_chunk);
    float acc = 0.f;
    for (int r = r0; r < r1; r++) {
        size_t o = (size_t)r * dim + j;
        acc += __bfloat162float(dout[o]) * __bfloat162float(x[o]) * rstd[r];
    }
    part[(size_t)blockIdx.y * dim + j] = acc;
}

__global__ void rmsnorm_bwd_dw_final(float *dweight, const float *part, int chunks, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    float s = 0.f;
    for (int p = 0; p < chunks; p++) s += part[(size_t)p * dim + j];
    dweight[j] += s;
}

void gpu_rmsnorm_backward(gpu_bf16 *dx, float *dweight, const gpu_bf16 *dout, const gpu_bf16 *x,
                          const gpu_bf16 *weight, const float *rstd, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    cudaStream_t st = gpu_stream_();
    if (dx) {
        if (dim % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(weight))
            LAUNCH(rmsnorm_bwd_dx_kernel<8>, n, row_threads(dim, 8), 0, st, 
                (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)weight, rstd, dim);
        else
            LAUNCH(rmsnorm_bwd_dx_kernel<1>, n, row_threads(dim, 1), 0, st, 
                (bf16 *)dx, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)weight, rstd, dim);
        gpu_after_launch("gpu_rmsnorm_backward(dx)");
    }
    if (dweight) {
        /* Fixed chunking (depends on n and dim only): the sum order never changes. */
        int bx = (dim + 255) / 256;
        int chunks = (2 * 132 + bx - 1) / bx;
        if (chunks > (n + 15) / 16) chunks = (n + 15) / 16;
        if (chunks < 1) chunks = 1;
        if (chunks > 1024) chunks = 1024;
        int rows_per_chunk = (n + chunks - 1) / chunks;
        chunks = (n + rows_per_chunk - 1) / rows_per_chunk;
        float *part = (float *)gpu_malloc((size_t)chunks * dim * sizeof(float));
        if (!part) return;
        LAUNCH(rmsnorm_bwd_dw_partial, dim3(bx, chunks), 256, 0, st, part, (const bf16 *)dout, (const bf16 *)x, rstd, n,
                                                                 dim, rows_per_chunk);
        gpu_after_launch("gpu_rmsnorm_backward(dweight partial)");
        LAUNCH(rmsnorm_bwd_dw_final, bx, 256, 0, st, dweight, part, chunks, dim);
        gpu_after_launch("gpu_rmsnorm_backward(dweight)");
        gpu_free(part); /* stream-ordered reuse: later work on this stream runs after the kernels above */
    }
}

/* ----------------------------------------------------------------- rope */

template <bool VEC>
__global__ void rope_kernel(bf16 *x, const float *cs, const int *pos, int n, int stride, int n_heads, int hd,
                            float sign) {
    int half = hd / 2;
    size_t total = (size_t)n * n_heads * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        int k = (int)(idx % half);
        size_t rest = idx / half;
        int h = (int)(rest % n_heads);
        size_t i = rest / n_heads;
        const float *c = cs + ((size_t)pos[i] * half + k) * 2;
        float co = c[0], si = sign * c[1];
        bf16 *p = x + i * stride + (size_t)h * hd + 2 * k;
        if (VEC) {
            float2 ab = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(p));
            *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(ab.x * co - ab.y * si, ab.x * si + ab.y * co);
        } else {
            float a = __bfloat162float(p[0]), b = __bfloat162float(p[1]);
            p[0] = __float2bfloat16(a * co - b * si);
            p[1] = __float2bfloat16(a * si + b * co);
        }
    }
}

static void rope(gpu_bf16 *x, const float *cos_sin, const int *pos, int n, int row_stride, int n_heads, int head_dim,
                 float sign, const char *what) {
    if (n <= 0 || n_heads <= 0 || head_dim < 2) return;
    size_t total = (size_t)n * n_heads * (head_dim / 2);
    unsigned grid = grid_1d(total, 256, 65535u * 8u);
    if (((uintptr_t)x & 3u) == 0 && row_stride % 2 == 0)
        LAUNCH(rope_kernel<true>, grid, 256, 0, gpu_stream_(), (bf16 *)x, cos_sin, pos, n, row_stride, n_heads, head_dim,
                                                           sign);
    else
        LAUNCH(rope_kernel<false>, grid, 256, 0, gpu_stream_(), (bf16 *)x, cos_sin, pos, n, row_stride, n_heads, head_dim,
                                                            sign);
    gpu_after_launch(what);
}

void gpu_rope_forward(gpu_bf16 *x, const float *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                      int head_dim) {
    rope(x, cos_sin, pos, n, row_stride, n_heads, head_dim, 1.0f, "gpu_rope_forward");
}

void gpu_rope_backward(gpu_bf16 *dx, const float *cos_sin, const int *pos, int n, int row_stride, int n_heads,
                       int head_dim) {
    rope(dx, cos_sin, pos, n, row_stride, n_heads, head_dim, -1.0f, "gpu_rope_backward");
}

/* --------------------------------------------------------------- swiglu */

template <int V> __global__ void swiglu_fwd_kernel(bf16 *out, const bf16 *h13, int n, int ffn) {
    int per_row = ffn / V;
    size_t total = (size_t)n * per_row;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / per_row;
        int j = (int)(e % per_row) * V;
        const bf16 *pa = h13 + i * 2 * ffn + j;
        float a[V], b[V], o[V];
        ldv<V>(pa, a);
        ldv<V>(pa + ffn, b);
#pragma unroll
        for (int v = 0; v < V; v++) o[v] = a[v] / (1.0f + __expf(-a[v])) * b[v];
        stv<V>(out + i * ffn + j, o);
    }
}

/* out = a sig(a) b:  d/da = sig(a) (1 + a (1 - sig(a))) b,  d/db = a sig(a). */
template <int V> __global__ void swiglu_bwd_kernel(bf16 *dh13, const bf16 *dout, const bf16 *h13, int n, int ffn) {
    int per_row = ffn / V;
    size_t total = (size_t)n * per_row;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / per_row;
        int j = (int)(e % per_row) * V;
        const bf16 *pa = h13 + i * 2 * ffn + j;
        float a[V], b[V], g[V], da[V], db[V];
        ldv<V>(pa, a);
        ldv<V>(pa + ffn, b);
        ldv<V>(dout + i * ffn + j, g);
#pragma unroll
        for (int v = 0; v < V; v++) {
            float sig = 1.0f / (1.0f + __expf(-a[v]));
            da[v] = g[v] * b[v] * sig * (1.0f + a[v] * (1.0f - sig));
            db[v] = g[v] * a[v] * sig;
        }
        bf16 *d = dh13 + i * 2 * ffn + j;
        stv<V>(d, da);
        stv<V>(d + ffn, db);
    }
}

void gpu_swiglu_forward(gpu_bf16 *out, const gpu_bf16 *h13, int n, int ffn) {
    if (n <= 0 || ffn <= 0) return;
    size_t total = (size_t)n * ffn;
    if (ffn % 8 == 0 && aligned16(out) && aligned16(h13))
        LAUNCH(swiglu_fwd_kernel<8>, grid_1d(total / 8, 256), 256, 0, gpu_stream_(), (bf16 *)out, (const bf16 *)h13, n,
                                                                                 ffn);
    else
        LAUNCH(swiglu_fwd_kernel<1>, grid_1d(total, 256), 256, 0, gpu_stream_(), (bf16 *)out, (const bf16 *)h13, n, ffn);
    gpu_after_launch("gpu_swiglu_forward");
}

void gpu_swiglu_backward(gpu_bf16 *dh13, const gpu_bf16 *dout, const gpu_bf16 *h13, int n, int ffn) {
    if (n <= 0 || ffn <= 0) return;
    size_t total = (size_t)n * ffn;
    if (ffn % 8 == 0 && aligned16(dh13) && aligned16(dout) && aligned16(h13))
        LAUNCH(swiglu_bwd_kernel<8>, grid_1d(total / 8, 256), 256, 0, gpu_stream_(), 
            (bf16 *)dh13, (const bf16 *)dout, (const bf16 *)h13, n, ffn);
    else
        LAUNCH(swiglu_bwd_kernel<1>, grid_1d(total, 256), 256, 0, gpu_stream_(), (bf16 *)dh13, (const bf16 *)dout,
                                                                             (const bf16 *)h13, n, ffn);
    gpu_after_launch("gpu_swiglu_backward");
}

/* ----------------------------------------------------------- elementwise */

/* out = a + b over count elements: 8 at a time, then the tail one by one. */
__global__ void add_kernel(bf16 *out, const bf16 *a, const bf16 *b, size_t count, int vec) {
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, step = (size_t)gridDim.x * blockDim.x;
    size_t nv = vec ? count / 8 : 0;
    for (size_t i = tid; i < nv; i += step) {
        float fa[8], fb[8];
        load8(a + 8 * i, fa);
        load8(b + 8 * i, fb);
#pragma unroll
        for (int v = 0; v < 8; v++) fa[v] += fb[v];
        store8(out + 8 * i, fa);
    }
    for (size_t i = nv * 8 + tid; i < count; i += step)
        out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

static void add(gpu_bf16 *out, const gpu_bf16 *a, const gpu_bf16 *b, size_t count, const char *what) {
    if (!count) return;
    int vec = aligned16(out) && aligned16(a) && aligned16(b);
    LAUNCH(add_kernel, grid_1d(vec ? count / 8 + 1 : count, 256), 256, 0, gpu_stream_(), (bf16 *)out, (const bf16 *)a,
                                                                                      (const bf16 *)b, count, vec);
    gpu_after_launch(what);
}

void gpu_residual_add(gpu_bf16 *out, const gpu_bf16 *a, const gpu_bf16 *b, size_t count) {
    add(out, a, b, count, "gpu_residual_add");
}

void gpu_accumulate(gpu_bf16 *y, const gpu_bf16 *x, size_t count) { add(y, y, x, count, "gpu_accumulate"); }

/* -------------------------------------------------------- cross-entropy */

#define CE_THREADS 512

/* Combines two (max, sum of exp(x - max)) pairs; -inf maxima carry no mass. */
__device__ __forceinline__ void ms_combine(float &m, float &s, float m2, float s2) {
    float M = fmaxf(m, m2);
    float a = m == -INFINITY ? 0.f : s * __expf(m - M);
    float b = m2 == -INFINITY ? 0.f : s2 * __expf(m2 - M);
    m = M;
    s = a + b;
}

template <int V>
__global__ void __launch_bounds__(CE_THREADS) cross_entropy_kernel(bf16 *logits, const int *targets, int vocab,
                                                                   int ignore_index, float grad_scale, float *row_loss,
                                                                   int *row_valid) {
    __shared__ float sh_m[32], sh_s[32];
    size_t row = blockIdx.x;
    bf16 *x = logits + row * vocab;
    int t = targets[row];
    bool valid = !(t == ignore_index || t < 0 || t >= vocab);
    if (!valid) {
        if (grad_scale != 0.f) {
            float z[V];
#pragma unroll
            for (int v = 0; v < V; v++) z[v] = 0.f;
            for (int j = threadIdx.x * V; j < vocab; j += blockDim.x * V) stv<V>(x + j, z);
        }
        if (threadIdx.x == 0) {
            row_loss[row] = 0.f;
            row_valid[row] = 0;
        }
        return;
    }
    float x_t = __bfloat162float(x[t]);
    /* Online softmax: running max and the sum of exp(x - max), one pass. */
    float m = -INFINITY, s = 0.f;
    for (int j = threadIdx.x * V; j < vocab; j += blockDim.x * V) {
        float f[V];
        ldv<V>(x + j, f);
        float mc = f[0];
#pragma unroll
        for (int v = 1; v < V; v++) mc = fmaxf(mc, f[v]);
        if (mc > m) {
            s = m == -INFINITY ? 0.f : s * __expf(m - mc);
            m = mc;
        }
#pragma unroll
        for (int v = 0; v < V; v++) s += f[v] == -INFINITY ? 0.f : __expf(f[v] - m);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) {
        sh_m[warp] = m;
        sh_s[warp] = s;
    }
    __syncthreads();
    m = lane < n_warps ? sh_m[lane] : -INFINITY;
    s = lane < n_warps ? sh_s[lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_combine(m, s, m2, s2);
    }
    /* every thread now holds the row's (m, s) */
    if (threadIdx.x == 0) {
        row_loss[row] = logf(s) + m - x_t;
        row_valid[row] = 1;
    }
    if (grad_scale != 0.f) {
        float k = grad_scale / s;
        for (int j = threadIdx.x * V; j < vocab; j += blockDim.x * V) {
            float f[V];
            ldv<V>(x + j, f);
#pragma unroll
            for (int v = 0; v < V; v++) f[v] = k * __expf(f[v] - m) - (j + v == t ? grad_scale : 0.f);
            stv<V>(x + j, f);
        }
    }
}

/* One block: the sums over rows in a fixed order (double). */
__global__ void ce_reduce_kernel(double *loss_sum, int *n_valid, const float *row_loss, const int *row_valid, int n) {
    __shared__ double sh_l[32];
    __shared__ int sh_v[32];
    double l = 0;
    int c = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        l += (double)row_loss[i];
        c += row_valid[i];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        l += __shfl_xor_sync(0xffffffffu, l, o);
        c += __shfl_xor_sync(0xffffffffu, c, o);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) {
        sh_l[warp] = l;
        sh_v[warp] = c;
    }
    __syncthreads();
    if (warp == 0) {
        l = lane < n_warps ? sh_l[lane] : 0.0;
        c = lane < n_warps ? sh_v[lane] : 0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            l += __shfl_xor_sync(0xffffffffu, l, o);
            c += __shfl_xor_sync(0xffffffffu, c, o);
        }
        if (lane == 0) {
            if (loss_sum) *loss_sum = l;
            if (n_valid) *n_valid = c;
        }
    }
}

void gpu_cross_entropy(gpu_bf16 *logits, const int *targets, int n, int vocab, int ignore_index, float grad_scale,
                       double *loss_sum, int *n_valid) {
    if (n <= 0 || vocab <= 0) return;
    cudaStream_t st = gpu_stream_();
    char *scratch = (char *)gpu_malloc((size_t)n * (sizeof(float) + sizeof(int)));
    if (!scratch) return;
    float *row_loss = (float *)scratch;
    int *row_valid = (int *)(scratch + (size_t)n * sizeof(float));
    if (vocab % 8 == 0 && aligned16(logits))
        LAUNCH(cross_entropy_kernel<8>, n, CE_THREADS, 0, st, (bf16 *)logits, targets, vocab, ignore_index, grad_scale,
                                                          row_loss, row_valid);
    else
        LAUNCH(cross_entropy_kernel<1>, n, CE_THREADS, 0, st, (bf16 *)logits, targets, vocab, ignore_index, grad_scale,
                                                          row_loss, row_valid);
    gpu_after_launch("gpu_cross_entropy");
    if (loss_sum || n_valid) {
        LAUNCH(ce_reduce_kernel, 1, 1024, 0, st, loss_sum, n_valid, row_loss, row_valid, n);
        gpu_after_launch("gpu_cross_entropy(reduce)");
    }
    gpu_free(scratch);
}

/* ---------------------------------------------------------------- AdamW */

__global__ void adamw_kernel(float *p, bf16 *pb, const float *g, float *m, float *v, size_t count, float lr, float b1,
                             float b2, float c1, float c2, float eps, float wd, float inv_bc1, float inv_bc2,
                             float gs) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] * gs;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi * inv_bc1, vhat = vi * inv_bc2;
        float pi = p[i];
        pi -= lr * (mhat / (sqrtf(vhat) + eps) + wd * pi);
        p[i] = pi;
        if (pb) pb[i] = __float2bfloat16(pi);
    }
}

void gpu_adamw_update(float *param, gpu_bf16 *param_bf16, const float *grad, float *m, float *v, size_t count,
                      float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                      float grad_scale) {
    if (!count) return;
    float inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)step)));
    float inv_bc2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)step)));
    LAUNCH(adamw_kernel, grid_1d(count, 256, 132 * 16), 256, 0, gpu_stream_(), 
        param, (bf16 *)param_bf16, grad, m, v, count, lr, beta1, beta2, 1.0f - beta1, 1.0f - beta2, eps, weight_decay,
        inv_bc1, inv_bc2, grad_scale);
    gpu_after_launch("gpu_adamw_update");
}

/* ---------------------------------------------------------- sum squares */

#define SS_BLOCKS 1024

__global__ void sum_squares_partial(double *part, const float *x, size_t count) {
    __shared__ double sh[32];
    double acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        double f = x[i];
        acc += f * f;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) sh[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < n_warps ? sh[lane] : 0.0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) part[blockIdx.x] = acc;
    }
}

__global__ void sum_partials(double *out, const double *part, int n) {
    __shared__ double sh[32];
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += part[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) sh[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < n_warps ? sh[lane] : 0.0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) *out = acc;
    }
}

void gpu_sum_squares(double *out, const float *x, size_t count) {
    cudaStream_t st = gpu_stream_();
    if (!count) {
        gpu_memset(out, 0, sizeof(double));
        return;
    }
    int blocks = (int)grid_1d(count, 256 * 4, SS_BLOCKS); /* depends on count only: fixed order */
    double *part = (double *)gpu_malloc((size_t)blocks * sizeof(double));
    if (!part) return;
    LAUNCH(sum_squares_partial, blocks, 256, 0, st, part, x, count);
    gpu_after_launch("gpu_sum_squares(partial)");
    LAUNCH(sum_partials, 1, 256, 0, st, out, part, blocks);
    gpu_after_launch("gpu_sum_squares");
    gpu_free(part);
}
