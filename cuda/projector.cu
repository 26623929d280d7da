/* projector.cu - the two operations LLaVA's mlp2x_gelu projector adds to the
 * GEMMs (core/projector.h): a Linear layer's bias and the exact (erf) GELU,
 * forward and backward, as core/backend.h's bias_* and gelu_*: bf16
 * activations, fp32 arithmetic, the bias gradient fp32 and accumulated. */
#include <math.h>

#include "gpu_internal.cuh"

__global__ void bias_forward_kernel(bf16 *out, const bf16 *bias, size_t n, int dim) {
    size_t total = n * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % dim]));
}

void gpu_bias_forward(gpu_bf16 *out, const gpu_bf16 *bias, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    LAUNCH(bias_forward_kernel, grid_1d((size_t)n * dim, 256), 256, 0, gpu_stream_(), (bf16 *)out, (const bf16 *)bias,
           (size_t)n, dim);
    gpu_after_launch("gpu_bias_forward");
}

enum { BIAS_CHUNK = 256 }; /* rows per partial sum */

/* part[c, j] = sum of dout[i, j] over chunk c's rows, in row order. */
__global__ void bias_partial_kernel(float *part, const bf16 *dout, int n, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (j >= dim) return;
    int lo = c * BIAS_CHUNK, hi = min(n, lo + BIAS_CHUNK);
    float s = 0.f;
    for (int i = lo; i < hi; i++) s += __bfloat162float(dout[(size_t)i * dim + j]);
    part[(size_t)c * dim + j] = s;
}

/* dbias[j] += the chunks' sums, in chunk order: deterministic. */
__global__ void bias_finish_kernel(float *dbias, const float *part, int chunks, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    float s = 0.f;
    for (int c = 0; c < chunks; c++) s += part[(size_t)c * dim + j];
    dbias[j] += s;
}

void gpu_bias_backward(float *dbias, const gpu_bf16 *dout, int n, int dim) {
    if (n <= 0 || dim <= 0 || !dbias) return;
    int chunks = (n + BIAS_CHUNK - 1) / BIAS_CHUNK;
    float *part = (float *)gpu_malloc((size_t)chunks * dim * sizeof(float));
    if (!part) return; /* the allocator recorded why */
    dim3 grid(grid_1d((size_t)dim, 128), (unsigned)chunks);
    LAUNCH(bias_partial_kernel, grid, 128, 0, gpu_stream_(), part, (const bf16 *)dout, n, dim);
    LAUNCH(bias_finish_kernel, grid_1d((size_t)dim, 128), 128, 0, gpu_stream_(), dbias, part, chunks, dim);
    gpu_after_launch("gpu_bias_backward");
    gpu_free(part);
}

/* gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); d/dx = Phi(x) + x phi(x). */
__global__ void gelu_forward_kernel(bf16 *out, const bf16 *x, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float v = __bfloat162float(x[i]);
        out[i] = __float2bfloat16(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
    }
}

__global__ void gelu_backward_kernel(bf16 *dx, const bf16 *dout, const bf16 *x, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float v = __bfloat162float(x[i]);
        float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * __expf(-0.5f * v * v);
        dx[i] = __float2bfloat16(__bfloat162float(dout[i]) * (cdf + v * pdf));
    }
}

void gpu_gelu_forward(gpu_bf16 *out, const gpu_bf16 *x, size_t count) {
    if (!count) return;
    LAUNCH(gelu_forward_kernel, grid_1d(count, 256), 256, 0, gpu_stream_(), (bf16 *)out, (const bf16 *)x, count);
    gpu_after_launch("gpu_gelu_forward");
}

void gpu_gelu_backward(gpu_bf16 *dx, const gpu_bf16 *dout, const gpu_bf16 *x, size_t count) {
    if (!count) return;
    LAUNCH(gelu_backward_kernel, grid_1d(count, 256), 256, 0, gpu_stream_(), (bf16 *)dx, (const bf16 *)dout,
           (const bf16 *)x, count);
    gpu_after_launch("gpu_gelu_backward");
}
