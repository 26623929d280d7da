/* attention.cu - causal grouped-query attention, forward and backward.
 *
 * Two implementations of one contract (gpu.h): the forward writes out and the
 * row log-sum-exp lse = log sum_j exp(scale q.k_j) over j <= i; the backward
 * recomputes the probabilities from lse, so nothing of size seq^2 is kept
 * between the passes and the two implementations are interchangeable (a
 * forward by one and a backward by the other is fine; gpu_check does it).
 *
 * FLASH (head_dim 64 or 128): FlashAttention-2 style. Forward: one CTA of 4
 * warps per (64-query block, head, sequence), each warp 16 query rows; key
 * tiles of 64 stream through shared memory; S = Q K^T and O += P V on the
 * tensor cores (WMMA bf16 16x16x16, fp32 accumulators); the online softmax
 * runs in registers, a lane owning half a row. Backward: one CTA per
 * (64-key block, kv head, sequence) loops over the query heads of the group
 * and the query blocks at or after the key block, keeps dK and dV in fp32
 * accumulator fragments (so the group's sum is taken in a fixed order), and
 * adds dQ into an fp32 buffer with atomics, converted to bf16 at the end.
 * This is the correct-first version: S and P pass through shared memory
 * between the WMMA steps, loads are synchronous. Next: mma.sync/wgmma with
 * register-resident P, cp.async/TMA double buffering.
 *
 * GEMM: S = scale Q K^T and O = P V as strided-batched cuBLASLt GEMMs (one
 * call per sequence and position within the kv group) and a masked-softmax
 * kernel; materialises [batch, heads, seq, seq] scratch (fp32 S and bf16 P,
 * and dP/dS in the backward). The reference path, and the one for other head
 * dims. */
#include <math.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.cuh"

using namespace nvcuda;

#define FA_THREADS 128
#define FA_WARPS 4
#define FA_TILE 64
#define LOG2E_F 1.4426950408889634f
#define LN2_F 0.6931471805599453f

static int g_att_impl = GPU_ATT_FLASH;

void gpu_attention_init_(void) {
    const char *e = getenv("PRESIGHT_GPU_ATTENTION");
    if (e && strcmp(e, "gemm") == 0) g_att_impl = GPU_ATT_GEMM;
    if (e && strcmp(e, "flash") == 0) g_att_impl = GPU_ATT_FLASH;
}

void gpu_attention_set_impl(int impl) { g_att_impl = impl == GPU_ATT_GEMM ? GPU_ATT_GEMM : GPU_ATT_FLASH; }
int gpu_attention_get_impl(void) { return g_att_impl; }
int gpu_attention_flash_supports(int head_dim) { return head_dim == 64 || head_dim == 128; }

static inline int al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* ---------------------------------------------------------- shared layout */

template <int HD> struct FaLayout {
    static constexpr int LDT = HD + 8;      /* bf16 tiles [64][HD] (+16 bytes per row against bank conflicts) */
    static constexpr int LDS = FA_TILE + 4; /* fp32 scratch for a 16 x 64 score block */
    static constexpr int LDO = HD + 4;      /* fp32 scratch for a 16 x HD output block */
    static constexpr int LDP = FA_TILE + 8; /* bf16 P / dS blocks */
    static constexpr int SCR = (16 * LDS > 16 * LDO ? 16 * LDS : 16 * LDO); /* floats per warp */
    static constexpr size_t TILE_BYTES = (size_t)FA_TILE * LDT * 2;
    /* forward: Q, K, V tiles, per-warp scratch, per-warp P */
    static constexpr size_t F_Q = 0, F_K = F_Q + TILE_BYTES, F_V = F_K + TILE_BYTES, F_SCR = F_V + TILE_BYTES;
    static constexpr size_t F_P = F_SCR + (size_t)FA_WARPS * SCR * 4;
    static constexpr size_t F_BYTES = F_P + (size_t)FA_WARPS * 16 * LDP * 2;
    /* backward: K, V, Q, dO tiles, per-warp scratch, P^T and dS^T [64][64], lse and D of the query tile */
    static constexpr size_t B_K = 0, B_V = B_K + TILE_BYTES, B_Q = B_V + TILE_BYTES, B_DO = B_Q + TILE_BYTES;
    static constexpr size_t B_SCR = B_DO + TILE_BYTES;
    static constexpr size_t B_PT = B_SCR + (size_t)FA_WARPS * SCR * 4;
    static constexpr size_t B_DST = B_PT + (size_t)FA_TILE * LDP * 2;
    static constexpr size_t B_LSE = B_DST + (size_t)FA_TILE * LDP * 2;
    static constexpr size_t B_D = B_LSE + FA_TILE * 4;
    static constexpr size_t B_BYTES = B_D + FA_TILE * 4;
    /* WMMA pointers must be 32-byte aligned: every region and fragment origin is. */
    static_assert(TILE_BYTES % 128 == 0, "tile size");
    static_assert((SCR * 4) % 128 == 0, "scratch size");
    static_assert((16 * LDP * 2) % 32 == 0, "P size");
};

/* rows [row0, row0 + 64) of a [seq, HD] view with row stride ld (elements)
 * into a [64][HD + 8] tile; rows at or past seq are zero. */
template <int HD>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int ld, int row0, int seq) {
    constexpr int CPR = HD / 8, LDT = HD + 8;
    for (int c = threadIdx.x; c < FA_TILE * CPR; c += FA_THREADS) {
        int row = c / CPR, col = (c % CPR) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (row0 + row < seq) v = *reinterpret_cast<const uint4 *>(src + (size_t)(row0 + row) * ld + col);
        *reinterpret_cast<uint4 *>(dst + row * LDT + col) = v;
    }
}

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> FragAT;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBT;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

/* -------------------------------------------------------- flash forward */

template <int HD>
__global__ void __launch_bounds__(FA_THREADS) flash_fwd_kernel(bf16 *__restrict__ out, float *__restrict__ lse,
                                                               const bf16 *__restrict__ qkv, int seq, int H, int KV,
                                                               float scale_log2) {
    typedef FaLayout<HD> L;
    DYN_SMEM(smem);
    bf16 *Qs = (bf16 *)(smem + L::F_Q), *Ks = (bf16 *)(smem + L::F_K), *Vs = (bf16 *)(smem + L::F_V);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Sw = (float *)(smem + L::F_SCR) + warp * L::SCR;
    bf16 *Pw = (bf16 *)(smem + L::F_P) + warp * 16 * L::LDP;

    const int n_qb = (seq + FA_TILE - 1) / FA_TILE;
    const int qb = n_qb - 1 - (int)blockIdx.x; /* the longest rows first */
    const int h = blockIdx.y, b = blockIdx.z;
    const int g = h / (H / KV);
    const int R = (H + 2 * KV) * HD;
    const bf16 *base = qkv + (size_t)b * seq * R;
    const int q0 = qb * FA_TILE;

    load_tile<HD>(Qs, base + (size_t)h * HD, R, q0, seq);
    __syncthreads();
    FragA qf[HD / 16];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * L::LDT + kk * 16, L::LDT);

    const int r = lane >> 1, half = lane & 1; /* this lane: row r of the warp's 16, columns half */
    const int qi = q0 + warp * 16 + r;
    float o[HD / 2];
#pragma unroll
    for (int c = 0; c < HD / 2; c++) o[c] = 0.f;
    float m_i = -INFINITY, l_i = 0.f;

    for (int kb = 0; kb <= qb; kb++) {
        const int k0 = kb * FA_TILE;
        __syncthreads(); /* everyone is done with the previous K, V */
        load_tile<HD>(Ks, base + (size_t)(H + g) * HD, R, k0, seq);
        load_tile<HD>(Vs, base + (size_t)(H + KV + g) * HD, R, k0, seq);
        __syncthreads();

        /* S (16 x 64) = Q_w K^T */
#pragma unroll
        for (int j = 0; j < FA_TILE / 16; j++) {
            FragC sf;
            wmma::fill_fragment(sf, 0.f);
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                FragBT kf;
                wmma::load_matrix_sync(kf, Ks + j * 16 * L::LDT + kk * 16, L::LDT);
                wmma::mma_sync(sf, qf[kk], kf, sf);
            }
            wmma::store_matrix_sync(Sw + j * 16, sf, L::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        /* online softmax over this lane's 32 columns of row r (log2 domain) */
        float sv[32];
        float mx = -INFINITY;
        const float *srow = Sw + r * L::LDS + half * 32;
#pragma unroll
        for (int c4 = 0; c4 < 8; c4++) {
            float4 t = *reinterpret_cast<const float4 *>(srow + 4 * c4);
            float tv[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int kj = k0 + half * 32 + 4 * c4 + e;
                float x = (kj > qi || kj >= seq) ? -INFINITY : tv[e] * scale_log2;
                sv[4 * c4 + e] = x;
                mx = fmaxf(mx, x);
            }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_new = fmaxf(m_i, mx);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;
        const float alpha = exp2f(m_i - m_use);
        float rs = 0.f;
        __nv_bfloat162 *prow = reinterpret_cast<__nv_bfloat162 *>(Pw + r * L::LDP + half * 32);
#pragma unroll
        for (int c = 0; c < 16; c++) {
            float p0 = exp2f(sv[2 * c] - m_use), p1 = exp2f(sv[2 * c + 1] - m_use);
            rs += p0 + p1;
            prow[c] = __floats2bfloat162_rn(p0, p1);
        }
        rs += __shfl_xor_sync(0xffffffffu, rs, 1);
        l_i = l_i * alpha + rs;
        m_i = m_new;
#pragma unroll
        for (int c = 0; c < HD / 2; c++) o[c] *= alpha;
        __syncwarp();

        /* O_tile (16 x HD) = P (16 x 64) V (64 x HD), through the scratch */
#pragma unroll
        for (int j = 0; j < HD / 16; j++) {
            FragC of;
            wmma::fill_fragment(of, 0.f);
#pragma unroll
            for (int kk = 0; kk < FA_TILE / 16; kk++) {
                FragA pf;
                FragB vf;
                wmma::load_matrix_sync(pf, Pw + kk * 16, L::LDP);
                wmma::load_matrix_sync(vf, Vs + kk * 16 * L::LDT + j * 16, L::LDT);
                wmma::mma_sync(of, pf, vf, of);
            }
            wmma::store_matrix_sync(Sw + j * 16, of, L::LDO, wmma::mem_row_major);
        }
        __syncwarp();
        const float *orow_s = Sw + r * L::LDO + half * (HD / 2);
#pragma unroll
        for (int c4 = 0; c4 < HD / 8; c4++) {
            float4 t = *reinterpret_cast<const float4 *>(orow_s + 4 * c4);
            o[4 * c4 + 0] += t.x;
            o[4 * c4 + 1] += t.y;
            o[4 * c4 + 2] += t.z;
            o[4 * c4 + 3] += t.w;
        }
        __syncwarp();
    }

    if (qi < seq) {
        const float inv = 1.f / l_i;
        bf16 *orow = out + ((size_t)b * seq + qi) * ((size_t)H * HD) + (size_t)h * HD + half * (HD / 2);
#pragma unroll
        for (int c8 = 0; c8 < HD / 16; c8++) {
            float t[8];
#pragma unroll
            for (int e = 0; e < 8; e++) t[e] = o[8 * c8 + e] * inv;
            store8(orow + 8 * c8, t);
        }
        if (half == 0) lse[((size_t)b * H + h) * seq + qi] = (m_i + log2f(l_i)) * LN2_F;
    }
}

/* ------------------------------------------------------- flash backward */

/* D[b, h, t] = sum_c dout[b*seq + t, h*hd + c] * out[...] (one warp per row and head). */
__global__ void attn_dsum_kernel(float *D, const bf16 *dout, const bf16 *out, int rows, int H, int hd, int seq) {
    int warp_global = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp_global >= rows * H) return;
    int row = warp_global / H, h = warp_global % H;
    const bf16 *a = dout + (size_t)row * H * hd + (size_t)h * hd, *o = out + (size_t)row * H * hd + (size_t)h * hd;
    float s = 0.f;
    for (int c = lane; c < hd; c += 32) s += __bfloat162float(a[c]) * __bfloat162float(o[c]);
    s = warp_sum(s);
    int b = row / seq, t = row % seq;
    if (lane == 0) D[((size_t)b * H + h) * seq + t] = s;
}

template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_kernel(float *__restrict__ dq_acc, bf16 *__restrict__ dqkv, const bf16 *__restrict__ dout,
                     const float *__restrict__ lse, const float *__restrict__ Dsum, const bf16 *__restrict__ qkv,
                     int seq, int H, int KV, float scale, float scale_log2) {
    typedef FaLayout<HD> L;
    DYN_SMEM(smem);
    bf16 *Ks = (bf16 *)(smem + L::B_K), *Vs = (bf16 *)(smem + L::B_V), *Qs = (bf16 *)(smem + L::B_Q);
    bf16 *dOs = (bf16 *)(smem + L::B_DO);
    bf16 *PT = (bf16 *)(smem + L::B_PT), *DST = (bf16 *)(smem + L::B_DST);
    float *lse_s = (float *)(smem + L::B_LSE), *D_s = (float *)(smem + L::B_D);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Sw = (float *)(smem + L::B_SCR) + warp * L::SCR;

    const int n_qb = (seq + FA_TILE - 1) / FA_TILE;
    const int kb = blockIdx.x; /* key block 0 has the most query blocks: first */
    const int g = blockIdx.y, b = blockIdx.z;
    const int group = H / KV;
    const int R = (H + 2 * KV) * HD, HO = H * HD;
    const bf16 *base = qkv + (size_t)b * seq * R;
    const int k0 = kb * FA_TILE;

    load_tile<HD>(Ks, base + (size_t)(H + g) * HD, R, k0, seq);
    load_tile<HD>(Vs, base + (size_t)(H + KV + g) * HD, R, k0, seq);

    FragC dk[HD / 16], dv[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
        wmma::fill_fragment(dk[j], 0.f);
        wmma::fill_fragment(dv[j], 0.f);
    }
    const int r = lane >> 1, half = lane & 1; /* this lane: key row r of the warp's 16, query columns half */
    const int kj = k0 + warp * 16 + r;

    for (int hh = 0; hh < group; hh++) {
        const int h = g * group + hh;
        const bf16 *Qg = base + (size_t)h * HD;
        const bf16 *dOg = dout + (size_t)b * seq * HO + (size_t)h * HD;
        const float *lse_g = lse + ((size_t)b * H + h) * seq, *D_g = Dsum + ((size_t)b * H + h) * seq;
        for (int qb = kb; qb < n_qb; qb++) {
            const int q0 = qb * FA_TILE;
            __syncthreads(); /* everyone is done with the previous Q, dO, DST */
            load_tile<HD>(Qs, Qg, R, q0, seq);
            load_tile<HD>(dOs, dOg, HO, q0, seq);
            if (threadIdx.x < FA_TILE) {
                int q = q0 + threadIdx.x;
                lse_s[threadIdx.x] = q < seq ? lse_g[q] * LOG2E_F : 0.f;
                D_s[threadIdx.x] = q < seq ? D_g[q] : 0.f;
            }
            __syncthreads();

            /* S^T (16 keys x 64 queries) = K_w Q^T */
#pragma unroll
            for (int j = 0; j < FA_TILE / 16; j++) {
                FragC sf;
                wmma::fill_fragment(sf, 0.f);
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    FragA kf;
                    FragBT qf;
                    wmma::load_matrix_sync(kf, Ks + warp * 16 * L::LDT + kk * 16, L::LDT);
                    wmma::load_matrix_sync(qf, Qs + j * 16 * L::LDT + kk * 16, L::LDT);
                    wmma::mma_sync(sf, kf, qf, sf);
                }
                wmma::store_matrix_sync(Sw + j * 16, sf, L::LDS, wmma::mem_row_major);
            }
            __syncwarp();

            /* P^T = exp(scale S^T - lse), causal (query >= key) */
            float pv[32];
            {
                const float *srow = Sw + r * L::LDS + half * 32;
                __nv_bfloat162 *prow = reinterpret_cast<__nv_bfloat162 *>(PT + (warp * 16 + r) * L::LDP + half * 32);
#pragma unroll
                for (int c = 0; c < 32; c += 2) {
                    float p2[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int q = half * 32 + c + e, qi = q0 + q;
                        p2[e] = (kj <= qi && qi < seq && kj < seq) ? exp2f(srow[c + e] * scale_log2 - lse_s[q]) : 0.f;
                        pv[c + e] = p2[e];
                    }
                    prow[c / 2] = __floats2bfloat162_rn(p2[0], p2[1]);
                }
            }
            __syncwarp();

            /* dP^T (16 x 64) = V_w dO^T */
#pragma unroll
            for (int j = 0; j < FA_TILE / 16; j++) {
                FragC sf;
                wmma::fill_fragment(sf, 0.f);
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    FragA vf;
                    FragBT of;
                    wmma::load_matrix_sync(vf, Vs + warp * 16 * L::LDT + kk * 16, L::LDT);
                    wmma::load_matrix_sync(of, dOs + j * 16 * L::LDT + kk * 16, L::LDT);
                    wmma::mma_sync(sf, vf, of, sf);
                }
                wmma::store_matrix_sync(Sw + j * 16, sf, L::LDS, wmma::mem_row_major);
            }
            __syncwarp();

            /* dS^T = P^T (dP^T - D) */
            {
                const float *srow = Sw + r * L::LDS + half * 32;
                __nv_bfloat162 *drow =
                    reinterpret_cast<__nv_bfloat162 *>(DST + (warp * 16 + r) * L::LDP + half * 32);
#pragma unroll
                for (int c = 0; c < 32; c += 2) {
                    int q = half * 32 + c;
                    float d0 = pv[c] * (srow[c] - D_s[q]), d1 = pv[c + 1] * (srow[c + 1] - D_s[q + 1]);
                    drow[c / 2] = __floats2bfloat162_rn(d0, d1);
                }
            }
            __syncwarp();

            /* dV_w += P^T_w dO;  dK_w += dS^T_w Q  (scale applied at the end) */
#pragma unroll
            for (int j = 0; j < HD / 16; j++) {
#pragma unroll
                for (int kk = 0; kk < FA_TILE / 16; kk++) {
                    FragA pf, sf;
                    FragB of, qf;
                    wmma::load_matrix_sync(pf, PT + warp * 16 * L::LDP + kk * 16, L::LDP);
                    wmma::load_matrix_sync(of, dOs + kk * 16 * L::LDT + j * 16, L::LDT);
                    wmma::mma_sync(dv[j], pf, of, dv[j]);
                    wmma::load_matrix_sync(sf, DST + warp * 16 * L::LDP + kk * 16, L::LDP);
                    wmma::load_matrix_sync(qf, Qs + kk * 16 * L::LDT + j * 16, L::LDT);
                    wmma::mma_sync(dk[j], sf, qf, dk[j]);
                }
            }
            __syncthreads(); /* all of dS^T is in shared memory */

            /* dQ rows [16 warp, +16) of the query tile += scale dS K, into dq_acc */
#pragma unroll
            for (int j = 0; j < HD / 16; j++) {
                FragC qf;
                wmma::fill_fragment(qf, 0.f);
#pragma unroll
                for (int kk = 0; kk < FA_TILE / 16; kk++) {
                    FragAT sf;
                    FragB kf;
                    wmma::load_matrix_sync(sf, DST + kk * 16 * L::LDP + warp * 16, L::LDP);
                    wmma::load_matrix_sync(kf, Ks + kk * 16 * L::LDT + j * 16, L::LDT);
                    wmma::mma_sync(qf, sf, kf, qf);
                }
                wmma::store_matrix_sync(Sw + j * 16, qf, L::LDO, wmma::mem_row_major);
            }
            __syncwarp();
            {
                const int qi = q0 + warp * 16 + r;
                if (qi < seq) {
                    float *dst = dq_acc + ((size_t)b * seq + qi) * HO + (size_t)h * HD + half * (HD / 2);
                    const float *src = Sw + r * L::LDO + half * (HD / 2);
#pragma unroll 8
                    for (int c = 0; c < HD / 2; c++) atomicAdd(dst + c, src[c] * scale);
                }
            }
            __syncwarp();
        }
    }

    /* dK (scaled) and dV of this block's keys: complete over the whole group. */
    bf16 *drow_base = dqkv + ((size_t)b * seq + kj) * R;
#pragma unroll
    for (int which = 0; which < 2; which++) {
#pragma unroll
        for (int j = 0; j < HD / 16; j++) {
            if (which == 0) {
#pragma unroll
                for (int e = 0; e < dk[j].num_elements; e++) dk[j].x[e] *= scale;
                wmma::store_matrix_sync(Sw + j * 16, dk[j], L::LDO, wmma::mem_row_major);
            } else {
                wmma::store_matrix_sync(Sw + j * 16, dv[j], L::LDO, wmma::mem_row_major);
            }
        }
        __syncwarp();
        if (kj < seq) {
            bf16 *dst = drow_base + (size_t)(which == 0 ? H + g : H + KV + g) * HD + half * (HD / 2);
            const float *src = Sw + r * L::LDO + half * (HD / 2);
#pragma unroll
            for (int c8 = 0; c8 < HD / 16; c8++) store8(dst + 8 * c8, src + 8 * c8);
        }
        __syncwarp();
    }
}

/* dqkv[:, h*hd + c] (the query part) = dq_acc */
__global__ void dq_convert_kernel(bf16 *dqkv, const float *dq_acc, size_t rows, int HO, int R) {
    size_t total = rows * HO;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / HO;
        int c = (int)(i % HO);
        dqkv[row * R + c] = __float2bfloat16(dq_acc[i]);
    }
}

template <int HD> static int flash_prepare(void) {
    static int done_f = 0, done_b = 0;
    if (!done_f) {
        cudaError_t e = cudaFuncSetAttribute(flash_fwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)FaLayout<HD>::F_BYTES);
        if (e != cudaSuccess) {
            gpu_record_error("flash attention: cudaFuncSetAttribute(forward, %zu bytes of shared memory): %s",
                             FaLayout<HD>::F_BYTES, cudaGetErrorString(e));
            return -1;
        }
        done_f = 1;
    }
    if (!done_b) {
        cudaError_t e = cudaFuncSetAttribute(flash_bwd_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)FaLayout<HD>::B_BYTES);
        if (e != cudaSuccess) {
            gpu_record_error("flash attention: cudaFuncSetAttribute(backward, %zu bytes of shared memory): %s",
                             FaLayout<HD>::B_BYTES, cudaGetErrorString(e));
            return -1;
        }
        done_b = 1;
    }
    return 0;
}

template <int HD>
static void flash_forward(bf16 *out, float *lse, const bf16 *qkv, int batch, int seq, int H, int KV) {
    if (flash_prepare<HD>()) return;
    dim3 grid((seq + FA_TILE - 1) / FA_TILE, H, batch);
    float scale_log2 = (float)(1.0 / sqrt((double)HD)) * LOG2E_F;
    LAUNCH(flash_fwd_kernel<HD>, grid, FA_THREADS, FaLayout<HD>::F_BYTES, gpu_stream_(), out, lse, qkv, seq, H, KV,
                                                                                     scale_log2);
    gpu_after_launch("gpu_attention_forward(flash)");
}

static void dsum(float *D, const bf16 *dout, const bf16 *out, int batch, int seq, int H, int hd) {
    int rows = batch * seq;
    size_t threads = (size_t)rows * H * 32;
    LAUNCH(attn_dsum_kernel, grid_1d(threads, 256, 0x7fffffffu), 256, 0, gpu_stream_(), D, dout, out, rows, H, hd, seq);
    gpu_after_launch("gpu_attention_backward(D)");
}

template <int HD>
static void flash_backward(bf16 *dqkv, const bf16 *dout, const bf16 *out, const float *lse, const bf16 *qkv, int batch,
                           int seq, int H, int KV) {
    if (flash_prepare<HD>()) return;
    cudaStream_t st = gpu_stream_();
    size_t rows = (size_t)batch * seq;
    float *dq_acc = (float *)gpu_malloc(rows * H * HD * sizeof(float));
    float *D = (float *)gpu_malloc((size_t)batch * H * seq * sizeof(float));
    if (!dq_acc || !D) {
        gpu_free(dq_acc);
        gpu_free(D);
        return;
    }
    gpu_memset(dq_acc, 0, rows * H * HD * sizeof(float));
    dsum(D, dout, out, batch, seq, H, HD);
    dim3 grid((seq + FA_TILE - 1) / FA_TILE, KV, batch);
    float scale = (float)(1.0 / sqrt((double)HD));
    LAUNCH(flash_bwd_kernel<HD>, grid, FA_THREADS, FaLayout<HD>::B_BYTES, st, dq_acc, dqkv, dout, lse, D, qkv, seq, H, KV,
                                                                          scale, scale * LOG2E_F);
    gpu_after_launch("gpu_attention_backward(flash)");
    int R = (H + 2 * KV) * HD;
    LAUNCH(dq_convert_kernel, grid_1d(rows * H * HD, 256, 65535u * 4u), 256, 0, st, dqkv, dq_acc, rows, H * HD, R);
    gpu_after_launch("gpu_attention_backward(dq)");
    gpu_free(dq_acc);
    gpu_free(D);
}

/* ------------------------------------------------------------ GEMM path */

/* One block per score row (b, h, i): P = softmax of the causal part of S
 * (already scaled), zeros above the diagonal; lse of the row. */
__global__ void gemm_softmax_kernel(bf16 *P, float *lse, const float *S, int seq) {
    __shared__ float sh[32];
    size_t row = blockIdx.x; /* (b*H + h)*seq + i */
    int i = (int)(row % seq), len = i + 1;
    const float *s = S + row * seq;
    bf16 *p = P + row * seq;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < len; j += blockDim.x) mx = fmaxf(mx, s[j]);
    mx = warp_max(mx);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : -INFINITY;
    mx = warp_max(mx);
    float sum = 0.f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) sum += __expf(s[j] - mx);
    sum = block_sum(sum, sh);
    float inv = 1.f / sum;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) p[j] = __float2bfloat16(j < len ? __expf(s[j] - mx) * inv : 0.f);
    if (threadIdx.x == 0) lse[row] = mx + logf(sum);
}

/* P = exp(S - lse) and dS = P (dP - D) on the causal part, zeros elsewhere. */
__global__ void gemm_softmax_bwd_kernel(bf16 *P, bf16 *dS, const float *S, const float *dP, const float *lse,
                                        const float *D, int seq) {
    size_t row = blockIdx.x;
    int i = (int)(row % seq);
    float l = lse[row], d = D[row];
    const float *s = S + row * seq, *dp = dP + row * seq;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        float pj = j <= i ? __expf(s[j] - l) : 0.f;
        P[row * seq + j] = __float2bfloat16(pj);
        dS[row * seq + j] = __float2bfloat16(j <= i ? pj * (dp[j] - d) : 0.f);
    }
}

__global__ void dkv_convert_kernel(bf16 *dqkv, const float *dkv, size_t rows, int width, int R, int offset) {
    size_t total = rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / width;
        int c = (int)(i % width);
        dqkv[row * R + offset + c] = __float2bfloat16(dkv[i]);
    }
}

/* S[b, h] = scale Q_h K_g^T for every head, fp32. */
static void gemm_scores(float *S, const bf16 *qkv, int batch, int seq, int H, int KV, int hd) {
    int group = H / KV, R = (H + 2 * KV) * hd;
    float scale = (float)(1.0 / sqrt((double)hd));
    size_t ss = (size_t)seq * seq;
    for (int b = 0; b < batch; b++)
        for (int r = 0; r < group; r++) {
            const bf16 *Q = qkv + (size_t)b * seq * R + (size_t)r * hd;
            const bf16 *K = qkv + (size_t)b * seq * R + (size_t)H * hd;
            gpu_gemm(0, 1, seq, seq, hd, scale, Q, R, (long long)group * hd, K, R, hd, 0.f,
                     S + ((size_t)b * H + r) * ss, GPU_F32, seq, (long long)(group * ss), KV);
        }
}

static void gemm_forward(bf16 *out, float *lse, const bf16 *qkv, int batch, int seq, int H, int KV, int hd) {
    int group = H / KV, R = (H + 2 * KV) * hd;
    size_t ss = (size_t)seq * seq, rows = (size_t)batch * H * seq;
    float *S = (float *)gpu_malloc(rows * seq * sizeof(float));
    bf16 *P = (bf16 *)gpu_malloc(rows * seq * sizeof(bf16));
    if (!S || !P) {
        gpu_free(S);
        gpu_free(P);
        return;
    }
    gemm_scores(S, qkv, batch, seq, H, KV, hd);
    LAUNCH(gemm_softmax_kernel, (unsigned)rows, 256, 0, gpu_stream_(), P, lse, S, seq);
    gpu_after_launch("gpu_attention_forward(gemm softmax)");
    for (int b = 0; b < batch; b++)
        for (int r = 0; r < group; r++) {
            const bf16 *V = qkv + (size_t)b * seq * R + (size_t)(H + KV) * hd;
            gpu_gemm(0, 0, seq, hd, seq, 1.f, P + ((size_t)b * H + r) * ss, seq, (long long)(group * ss), V, R, hd,
                     0.f, out + (size_t)b * seq * H * hd + (size_t)r * hd, GPU_BF16, H * hd, (long long)group * hd, KV);
        }
    gpu_free(S);
    gpu_free(P);
}

static void gemm_backward(bf16 *dqkv, const bf16 *dout, const bf16 *out, const float *lse, const bf16 *qkv, int batch,
                          int seq, int H, int KV, int hd) {
    cudaStream_t st = gpu_stream_();
    int group = H / KV, R = (H + 2 * KV) * hd, HO = H * hd, W = 2 * KV * hd;
    float scale = (float)(1.0 / sqrt((double)hd));
    size_t ss = (size_t)seq * seq, rows = (size_t)batch * H * seq, tok = (size_t)batch * seq;
    float *S = (float *)gpu_malloc(rows * seq * sizeof(float));
    float *dP = (float *)gpu_malloc(rows * seq * sizeof(float));
    bf16 *P = (bf16 *)gpu_malloc(rows * seq * sizeof(bf16));
    bf16 *dS = (bf16 *)gpu_malloc(rows * seq * sizeof(bf16));
    float *D = (float *)gpu_malloc(rows * sizeof(float));
    float *dkv = (float *)gpu_malloc(tok * W * sizeof(float));
    if (S && dP && P && dS && D && dkv) {
        dsum(D, dout, out, batch, seq, H, hd);
        gemm_scores(S, qkv, batch, seq, H, KV, hd);
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < group; r++) {
                const bf16 *dO = dout + (size_t)b * seq * HO + (size_t)r * hd;
                const bf16 *V = qkv + (size_t)b * seq * R + (size_t)(H + KV) * hd;
                gpu_gemm(0, 1, seq, seq, hd, 1.f, dO, HO, (long long)group * hd, V, R, hd, 0.f,
                         dP + ((size_t)b * H + r) * ss, GPU_F32, seq, (long long)(group * ss), KV);
            }
        LAUNCH(gemm_softmax_bwd_kernel, (unsigned)rows, 256, 0, st, P, dS, S, dP, lse, D, seq);
        gpu_after_launch("gpu_attention_backward(gemm softmax)");
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < group; r++) {
                const bf16 *Q = qkv + (size_t)b * seq * R + (size_t)r * hd;
                const bf16 *K = qkv + (size_t)b * seq * R + (size_t)H * hd;
                const bf16 *dO = dout + (size_t)b * seq * HO + (size_t)r * hd;
                const bf16 *dSr = dS + ((size_t)b * H + r) * ss, *Pr = P + ((size_t)b * H + r) * ss;
                float *dK = dkv + (size_t)b * seq * W, *dV = dK + (size_t)KV * hd;
                float beta = r > 0 ? 1.f : 0.f;
                /* dQ = scale dS K (each query head its own) */
                gpu_gemm(0, 0, seq, hd, seq, scale, dSr, seq, (long long)(group * ss), K, R, hd, 0.f,
                         dqkv + (size_t)b * seq * R + (size_t)r * hd, GPU_BF16, R, (long long)group * hd, KV);
                /* dK += scale dS^T Q, dV += P^T dO, summed over the group in fp32 */
                gpu_gemm(1, 0, seq, hd, seq, scale, dSr, seq, (long long)(group * ss), Q, R, (long long)group * hd,
                         beta, dK, GPU_F32, W, hd, KV);
                gpu_gemm(1, 0, seq, hd, seq, 1.f, Pr, seq, (long long)(group * ss), dO, HO, (long long)group * hd,
                         beta, dV, GPU_F32, W, hd, KV);
            }
        LAUNCH(dkv_convert_kernel, grid_1d(tok * W, 256, 65535u * 4u), 256, 0, st, dqkv, dkv, tok, W, R, H * hd);
        gpu_after_launch("gpu_attention_backward(gemm dkv)");
    }
    gpu_free(S);
    gpu_free(dP);
    gpu_free(P);
    gpu_free(dS);
    gpu_free(D);
    gpu_free(dkv);
}

/* ------------------------------------------------------------------ API */

static int shape_ok(int batch, int seq, int heads, int kv_heads, int head_dim, const char *what) {
    if (batch <= 0 || seq <= 0) return 0;
    if (heads <= 0 || kv_heads <= 0 || heads % kv_heads || head_dim <= 0) {
        gpu_record_error("%s: bad shape (heads %d, kv_heads %d, head_dim %d)", what, heads, kv_heads, head_dim);
        return 0;
    }
    return 1;
}

void gpu_attention_forward(gpu_bf16 *out, float *lse, const gpu_bf16 *qkv, int batch, int seq, int heads,
                           int kv_heads, int head_dim) {
    if (!shape_ok(batch, seq, heads, kv_heads, head_dim, "gpu_attention_forward")) return;
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)qkv;
    if (g_att_impl == GPU_ATT_FLASH && al16(out) && al16(qkv)) {
        if (head_dim == 64) return flash_forward<64>(o, lse, x, batch, seq, heads, kv_heads);
        if (head_dim == 128) return flash_forward<128>(o, lse, x, batch, seq, heads, kv_heads);
    }
    gemm_forward(o, lse, x, batch, seq, heads, kv_heads, head_dim);
}

void gpu_attention_backward(gpu_bf16 *dqkv, const gpu_bf16 *dout, const gpu_bf16 *out, const float *lse,
                            const gpu_bf16 *qkv, int batch, int seq, int heads, int kv_heads, int head_dim) {
    if (!shape_ok(batch, seq, heads, kv_heads, head_dim, "gpu_attention_backward")) return;
    bf16 *d = (bf16 *)dqkv;
    const bf16 *g = (const bf16 *)dout, *o = (const bf16 *)out, *x = (const bf16 *)qkv;
    if (g_att_impl == GPU_ATT_FLASH && al16(dqkv) && al16(dout) && al16(qkv)) {
        if (head_dim == 64) return flash_backward<64>(d, g, o, lse, x, batch, seq, heads, kv_heads);
        if (head_dim == 128) return flash_backward<128>(d, g, o, lse, x, batch, seq, heads, kv_heads);
    }
    gemm_backward(d, g, o, lse, x, batch, seq, heads, kv_heads, head_dim);
}
