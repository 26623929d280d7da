/* batch.cu - the kernels model_batch adds to the pass (core/model.h):
 * embedding rows in and their gradient out, per-row log-probabilities of the
 * targets, mean-pooled hidden states. Semantics as core/backend.h. */
#include <math.h>

#include "gpu_internal.cuh"

__global__ void rows_scatter_kernel(bf16 *x, const float *embeds, const int *rows, int dim) {
    size_t k = blockIdx.x;
    bf16 *o = x + (size_t)rows[k] * dim;
    const float *e = embeds + k * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = __float2bfloat16(e[j]);
}

void gpu_rows_scatter(gpu_bf16 *x, const float *embeds, const int *rows, int count, int dim) {
    if (count <= 0 || dim <= 0) return;
    LAUNCH(rows_scatter_kernel, count, 128, 0, gpu_stream_(), (bf16 *)x, embeds, rows, dim);
    gpu_after_launch("gpu_rows_scatter");
}

__global__ void rows_gather_kernel(float *dembeds, const bf16 *dx, const int *rows, int dim) {
    size_t k = blockIdx.x;
    const bf16 *g = dx + (size_t)rows[k] * dim;
    float *o = dembeds + k * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = __bfloat162float(g[j]);
}

void gpu_rows_gather(float *dembeds, const gpu_bf16 *dx, const int *rows, int count, int dim) {
    if (count <= 0 || dim <= 0) return;
    LAUNCH(rows_gather_kernel, count, 128, 0, gpu_stream_(), dembeds, (const bf16 *)dx, rows, dim);
    gpu_after_launch("gpu_rows_gather");
}

/* One block per row: the row's max, then the sum of exp, in fp32; the result
 * in double. The block size is fixed, so a row's value depends on that row alone. */
__global__ void log_prob_kernel(double *out, const bf16 *logits, const int *targets, int vocab) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    int t = targets[row];
    if (t < 0 || t >= vocab) {
        if (threadIdx.x == 0) out[row] = 0.0;
        return;
    }
    const bf16 *x = logits + row * vocab;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, __bfloat162float(x[j]));
    mx = block_max(mx, sh);
    float sum = 0.f;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) sum += __expf(__bfloat162float(x[j]) - mx);
    sum = block_sum(sum, sh);
    if (threadIdx.x == 0) out[row] = (double)__bfloat162float(x[t]) - (double)mx - log((double)sum);
}

void gpu_log_prob(double *out, const gpu_bf16 *logits, const int *targets, int n, int vocab) {
    if (n <= 0 || vocab <= 0) return;
    LAUNCH(log_prob_kernel, n, 256, 0, gpu_stream_(), out, (const bf16 *)logits, targets, vocab);
    gpu_after_launch("gpu_log_prob");
}

/* One thread per column: it walks the rows in order, so each output element
 * is summed in a fixed order and no two threads write the same one. */
__global__ void pool_sum_kernel(double *out, size_t out_stride, const bf16 *x, const int *group, int n, int dim) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    for (int i = 0; i < n; i++) {
        int g = group[i];
        if (g >= 0) out[(size_t)g * out_stride + j] += (double)__bfloat162float(x[(size_t)i * dim + j]);
    }
}

void gpu_pool_sum(double *out, size_t out_stride, const gpu_bf16 *x, const int *group, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    LAUNCH(pool_sum_kernel, grid_1d((size_t)dim, 128), 128, 0, gpu_stream_(), out, out_stride, (const bf16 *)x, group,
           n, dim);
    gpu_after_launch("gpu_pool_sum");
}
