/* attention.cu - causal grouped-query attention, forward and backward.
 *
 * Two implementations of one contract (gpu.h): the forward writes out and the
 * row log-sum-exp lse = log sum_j exp(scale q.k_j) over j <= i; the backward
 * recomputes the probabilities from lse, so nothing of size seq^2 is kept
 * between the passes and the two implementations are interchangeable (a
 * forward by one and a backward by the other is fine; gpu_check does it).
 *
 * FLASH (head_dim 64 or 128): FlashAttention-2 style, the "v2" kernels
 * below. The first ("v1") kernels, one CTA of 4 warps per 64-query (forward)
 * or 64-key (backward) block with S and P passing through shared memory as
 * fp32, were removed once v2 had replaced them (git history holds them); the
 * comparisons with v1 below are the H200 measurements made when both existed.
 * Packed samples (a per-row sample id) take the GEMM path with the mask.
 *
 * Backward (measured on an H200 at seq 2048: 77 TFLOP/s at the 1B shape, 87 at the 7B shape,
 * against v1's 33 and 25): one CTA of 8 warps per (128-key block, query head, sequence),
 * grid (heads * batch, seq / 128) with key block 0 (the longest) first. Warp
 * w owns keys [16 w, +16) with dK, dV as fp32 fragments (128 registers at
 * hd 128) and walks the query blocks of 64 from the diagonal on: S^T = K_w Q^T
 * and dP^T = V_w dO^T stay in accumulator fragments, where the mask, P^T =
 * exp2(S^T - lse) and dS^T = P^T (dP^T - D) are applied element by element
 * (the position of each element is read back once from a fragment loaded
 * from a 0..255 tile, so no layout is assumed); P^T and dS^T go to shared
 * memory once, as bf16, for dV += P^T dO and dK += dS^T Q; after one barrier
 * the 8 warps compute the block's dQ = dS K (64 x hd, a 16 x hd/2 piece
 * each) and add it to dq_acc straight from the fragments. Q, dO, lse and D of
 * the next query block arrive by cp.async into a second buffer during the
 * current one. With a group (heads > kv heads) each CTA writes its head's
 * fp32 dK, dV to a [rows, heads, 2, hd] buffer and the finishing kernel sums
 * the group in head order (deterministic, as v1) while it converts dQ.
 * Why faster, at seq 2048, hd 128, batch 1, 32 heads over 8 kv heads:
 * - parallelism and balance: 512 CTAs of 8 warps, the longest 32 steps of
 *   128 x 64, against v1's 256 CTAs of 4 warps whose longest loops over 4
 *   heads x 32 query blocks of 64 x 64 (128 steps, as much as an SM's average
 *   share: that CTA is the tail). Per SM, 66 v2 steps on average;
 * - shared memory: 174 KiB (hd 128; 110 KiB at hd 64) and 255 registers, one
 *   CTA and 8 warps per SM (v1: 120 KiB, 4 warps), no synchronous global load
 *   in the loop (v1 waits for every Q/dO tile), 2 barriers per 128 x 64 step
 *   (v1: 3 per 64 x 64);
 * - shared-memory bytes per 64 x 64 x hd of work: about 460 KB against v1's
 *   820 KB (no fp32 round trip of S, dP and dQ: fragment loads 192 per warp
 *   and 128 x 64 step, K_w / V_w / P^T / dS^T fragments loaded once per step
 *   and reused across the query or head-dim tiles);
 * - dQ atomics: half as many per FLOP (128 keys per partial sum instead of
 *   64), each warp instruction touching 8 rows instead of v1's 32.
 * Costs: the group's fp32 partials (2 x 4 bytes x rows x heads x hd written
 * and read once) and the wasted half of the first step of each CTA (warps
 * whose keys all follow the block's queries skip it).
 *
 * Forward (measured on an H200 at seq 2048: 106.8 TFLOP/s at the 1B shape and 111.8 at the 7B shape,
 * against v1's 72.0 and 63.3):
 * one CTA of 8 warps per (128-query block, query head, sequence), grid
 * (heads * batch, seq / 128) with the last query block (the longest) of
 * every head first. Warp w owns queries [16 w, +16) with Q as A fragments in
 * registers (loaded once) and O as fp32 accumulator fragments; key tiles of
 * 64 (K and V) arrive by cp.async into a second buffer during the current
 * one, one barrier per tile. Per tile, S = Q K^T stays in 4 accumulator
 * fragments, where the scale, the causal mask (only on tiles that cross the
 * warp's diagonal) and P = exp2(S - m) are applied element by element (the
 * positions read back once from the 0..255 tile, as in backward v2); the
 * row max is exchanged through a per-warp 16 x 16 tile (no layout assumed),
 * O and the per-element partial row sums are rescaled by exp2(m_old - m_new)
 * in registers, the sums are reduced once at the end; P goes to shared memory
 * once as bf16 for O += P V. A warp's Q rows, free once Q is in registers,
 * hold its P and then its bf16 output staging (written 16 bytes a lane).
 * Warps whose queries all precede a tile (warps 0-3 on a block's last tile)
 * skip it. Why faster than v1, per warp and 16 x 64 tile of S at hd d:
 * - shared-memory bytes: about 256 d (K, V fragments) + 5 KB (P once, the
 *   max exchange) = 37 KB at hd 128, 21 KB at hd 64, against v1's 74 KB and
 *   42 KB (v1 also stores S and each tile's P V as fp32 and reloads them, and
 *   reloads the P fragments for every head-dim tile);
 * - K and V tiles serve 128 queries instead of 64 (half the L2 traffic), by
 *   cp.async overlapped with the compute, instead of v1's synchronous loads
 *   between 2 barriers per tile, so warps stall on neither;
 * - occupancy: hd 64: 128 registers (ptxas: 72 bytes spilled), 64 KB of
 *   shared memory, 2 CTAs = 16 warps per SM; hd 128: 255 registers, no
 *   spill, 112 KB, 1 CTA = 8 warps per SM (v1: 16 and 8 warps);
 * - balance: at seq 2048 the longest CTA is 32 tiles and an SM's average
 *   share 66 (hd 128, batch 1, 32 heads) and v1's grid order (query block
 *   fastest) interleaves long and short blocks; here the long ones start first.
 *
 * GEMM: S = scale Q K^T and O = P V as strided-batched cuBLASLt GEMMs (one
 * call per sequence and position within the kv group) and a masked-softmax
 * kernel; materialises [batch, heads, seq, seq] scratch (fp32 S and bf16 P,
 * and dP/dS in the backward). The reference path, the one for other head
 * dims, and the one for packed samples (the softmax kernels take the mask:
 * causal within the row's own sample id, nothing for padding). */
#include <cuda_pipeline_primitives.h>
#include <math.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.cuh"

using namespace nvcuda;

#define LOG2E_F 1.4426950408889634f
#define LN2_F 0.6931471805599453f

static int g_att_impl = GPU_ATT_FLASH;

void gpu_attention_init_(void) {
    const char *e = getenv("PRESIGHT_GPU_ATTENTION");
    if (e && strcmp(e, "gemm") == 0) g_att_impl = GPU_ATT_GEMM;
    if (e && strcmp(e, "flash") == 0) g_att_impl = GPU_ATT_FLASH;
}

size_t gpu_attention_backward_scratch(int batch, int seq, int heads, int kv_heads, int head_dim) {
    size_t rows = (size_t)batch * seq, n_dq = rows * heads * head_dim, lse = rows * heads;
    if (g_att_impl == GPU_ATT_FLASH && gpu_attention_flash_supports(head_dim))
        return 4 * (n_dq + lse + (heads > kv_heads ? 2 * n_dq : 0));
    /* GEMM path: S, dP (fp32), P, dS (bf16) per score, D per score row, fp32 dK|dV. */
    return lse * ((size_t)seq * 12 + 4) + rows * 2 * kv_heads * head_dim * 4;
}

void gpu_attention_set_impl(int impl) { g_att_impl = impl == GPU_ATT_GEMM ? GPU_ATT_GEMM : GPU_ATT_FLASH; }
int gpu_attention_get_impl(void) { return g_att_impl; }
int gpu_attention_flash_supports(int head_dim) { return head_dim == 64 || head_dim == 128; }

static inline int al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* ---------------------------------------------------------- shared layout */

/* 8 floats (32-byte aligned) into registers. */
__device__ __forceinline__ void load8f(const float *p, float f[8]) {
    float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> FragAT;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBT;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

/* Stages a warp's dK (scaled, which == 0) or dV (which == 1) for its 16 keys
 * as fp32 rows in St (row stride ldo), for the lanes to convert and store. */
template <int HD>
__device__ __forceinline__ void stage_dkdv(FragC (&dk)[HD / 16], FragC (&dv)[HD / 16], int which, float *St, int ldo,
                                           float scale) {
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
        if (which == 0) {
#pragma unroll
            for (int e = 0; e < dk[j].num_elements; e++) dk[j].x[e] *= scale;
            wmma::store_matrix_sync(St + j * 16, dk[j], ldo, wmma::mem_row_major);
        } else {
            wmma::store_matrix_sync(St + j * 16, dv[j], ldo, wmma::mem_row_major);
        }
    }
    __syncwarp();
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

/* ---------------------------------------------------- flash backward, v2 */

/* One CTA of 8 warps per (128-key block, query head, sequence); warp w owns
 * keys [16 w, 16 w + 16) of the block and walks the query blocks of 64 at or
 * after the key block (see the top comment for why this layout). */
#define FB_THREADS 256
#define FB_WARPS 8
#define FB_KEYS 128
#define FB_QUERIES 64

template <int HD> struct Fb2Layout {
    static constexpr int LDT = HD + 8;         /* bf16 K, V, Q, dO tiles */
    static constexpr int LDP = FB_QUERIES + 8; /* bf16 P^T and dS^T [keys][queries] */
    static constexpr int LDO = HD + 4;         /* fp32 staging of a warp's dK, dV rows at the end */
    static constexpr size_t KT = (size_t)FB_KEYS * LDT * 2, QT = (size_t)FB_QUERIES * LDT * 2;
    static constexpr size_t PB = (size_t)FB_KEYS * LDP * 2, VB = FB_QUERIES * 4;
    /* K, V; Q and dO double-buffered (cp.async fills one while the other is used); P^T, dS^T;
     * lse and D of the query block (double-buffered); the 16 x 16 position tile */
    static constexpr size_t K = 0, V = K + KT, Q = V + KT, DO = Q + 2 * QT, PT = DO + 2 * QT, DST = PT + PB;
    static constexpr size_t LSE = DST + PB, D = LSE + 2 * VB, POS = D + 2 * VB, BYTES = POS + 256 * 4;
    static_assert(KT % 128 == 0 && QT % 128 == 0 && PB % 128 == 0 && VB % 128 == 0, "region alignment");
    static_assert((size_t)FB_WARPS * 16 * LDO * 4 <= 4 * QT, "the dK/dV staging fits the Q and dO buffers");
};

/* Where an accumulator fragment's elements sit in the 16 x 16 tile: WMMA
 * leaves the mapping opaque, so each lane reads it back once from a fragment
 * loaded from the tile holding 0..255 (row * 16 + column), packed a byte per
 * element. Masking, lse/D lookups and the scattered stores work from it with
 * S and dP still in registers. */
struct FragPos {
    unsigned pk[2];
    __device__ __forceinline__ int at(int e) const { return (int)((pk[e >> 2] >> (8 * (e & 3))) & 255u); }
};

__device__ __forceinline__ FragPos frag_pos(const float *tile) {
    FragC f;
    wmma::load_matrix_sync(f, tile, 16, wmma::mem_row_major);
    FragPos p = {{0u, 0u}};
#pragma unroll
    for (int e = 0; e < 8; e++) p.pk[e >> 2] |= (unsigned)f.x[e] << (8 * (e & 3));
    return p;
}

/* rows [row0, row0 + ROWS) of a [seq, HD] view (row stride ld) into a
 * [ROWS][HD + 8] tile by cp.async, 16 bytes a copy; rows at or past seq are zero. */
template <int HD, int ROWS>
__device__ __forceinline__ void load_rows_async(bf16 *dst, const bf16 *src, int ld, int row0, int seq) {
    constexpr int CPR = HD / 8, LDT = HD + 8;
    for (int c = threadIdx.x; c < ROWS * CPR; c += FB_THREADS) {
        int row = c / CPR, col = (c % CPR) * 8;
        bf16 *d = dst + row * LDT + col;
        if (row0 + row < seq)
            __pipeline_memcpy_async(d, src + (size_t)(row0 + row) * ld + col, 16);
        else
            *reinterpret_cast<uint4 *>(d) = make_uint4(0u, 0u, 0u, 0u);
    }
}

/* Starts the copies of query block q0 (Q, dO, lse, D) into buffer buf. Thread
 * t < 64 copies lse of query q0 + t (fixed up by bwd2_lse_fixup); queries at
 * or past seq get lse +inf (P = 0) and D 0. */
template <int HD>
__device__ __forceinline__ void bwd2_load_queries(unsigned char *smem, int buf, const bf16 *Qg, const bf16 *dOg,
                                                  int ldq, int ldo, const float *lse_g, const float *D_g, int q0,
                                                  int seq) {
    typedef Fb2Layout<HD> L;
    load_rows_async<HD, FB_QUERIES>((bf16 *)(smem + L::Q + buf * L::QT), Qg, ldq, q0, seq);
    load_rows_async<HD, FB_QUERIES>((bf16 *)(smem + L::DO + buf * L::QT), dOg, ldo, q0, seq);
    const int t = threadIdx.x % FB_QUERIES, q = q0 + t;
    if (threadIdx.x < 2 * FB_QUERIES) {
        const bool lse_part = threadIdx.x < FB_QUERIES;
        float *dst = (float *)(smem + (lse_part ? L::LSE : L::D) + buf * L::VB) + t;
        if (q < seq)
            __pipeline_memcpy_async(dst, (lse_part ? lse_g : D_g) + q, 4);
        else
            *dst = lse_part ? INFINITY : 0.f;
    }
}

/* After the wait: the copying thread turns its lse into the log2 domain. */
__device__ __forceinline__ void bwd2_lse_fixup(float *lse_s, int q0, int seq) {
    if (threadIdx.x < FB_QUERIES && q0 + (int)threadIdx.x < seq) lse_s[threadIdx.x] *= LOG2E_F;
}

/* acc[j] (16 x 16 j..) = A (16 x HD, rows at a) times B^T, B's rows at b (16 j..): S^T = K_w Q^T, dP^T = V_w dO^T */
template <int HD>
__device__ __forceinline__ void bwd2_rows_by_tile(FragC (&acc)[FB_QUERIES / 16], const bf16 *a, const bf16 *b) {
    constexpr int LDT = HD + 8;
#pragma unroll
    for (int j = 0; j < FB_QUERIES / 16; j++) wmma::fill_fragment(acc[j], 0.f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        FragA af;
        wmma::load_matrix_sync(af, a + kk * 16, LDT);
#pragma unroll
        for (int j = 0; j < FB_QUERIES / 16; j++) {
            FragBT bf;
            wmma::load_matrix_sync(bf, b + j * 16 * LDT + kk * 16, LDT);
            wmma::mma_sync(acc[j], af, bf, acc[j]);
        }
    }
}

/* acc[j] (16 x HD) += A (16 x 64, bf16 at a, row stride LDP) times the tile B (64 x HD): dV += P^T dO, dK += dS^T Q */
template <int HD>
__device__ __forceinline__ void bwd2_accumulate(FragC (&acc)[HD / 16], const bf16 *a, const bf16 *b) {
    typedef Fb2Layout<HD> L;
    FragA af[FB_QUERIES / 16];
#pragma unroll
    for (int kk = 0; kk < FB_QUERIES / 16; kk++) wmma::load_matrix_sync(af[kk], a + kk * 16, L::LDP);
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
#pragma unroll
        for (int kk = 0; kk < FB_QUERIES / 16; kk++) {
            FragB bf;
            wmma::load_matrix_sync(bf, b + kk * 16 * L::LDT + j * 16, L::LDT);
            wmma::mma_sync(acc[j], af[kk], bf, acc[j]);
        }
    }
}

/* One query block for warp's 16 keys (kw = 16 warp): S^T, P^T, dP^T, dS^T in
 * registers, P^T and dS^T stored as bf16, then dV += P^T dO and dK += dS^T Q.
 * kq = k0 - q0 (key index minus query index of the tiles' first rows). A warp
 * whose keys are all masked (after every query of the block, or past seq)
 * only clears its rows of dS^T, which the dQ step reads. */
template <int HD>
__device__ __forceinline__ void bwd2_dkdv(FragC (&dk)[HD / 16], FragC (&dv)[HD / 16], unsigned char *smem, int buf,
                                          int kw, int kq, bool dead, FragPos pos, float scale_log2) {
    typedef Fb2Layout<HD> L;
    const bf16 *Ks = (const bf16 *)(smem + L::K), *Vs = (const bf16 *)(smem + L::V);
    const bf16 *Qs = (const bf16 *)(smem + L::Q + buf * L::QT), *dOs = (const bf16 *)(smem + L::DO + buf * L::QT);
    bf16 *PT = (bf16 *)(smem + L::PT), *DST = (bf16 *)(smem + L::DST);
    const float *lse_s = (const float *)(smem + L::LSE + buf * L::VB);
    const float *D_s = (const float *)(smem + L::D + buf * L::VB);
    const int lane = threadIdx.x & 31;
    if (dead) {
        constexpr int CPR = FB_QUERIES / 8;
        for (int c = lane; c < 16 * CPR; c += 32)
            *reinterpret_cast<uint4 *>(DST + (kw + c / CPR) * L::LDP + (c % CPR) * 8) = make_uint4(0u, 0u, 0u, 0u);
        return;
    }
    const bool masked = kw + 15 + kq > 0; /* some key of the warp comes after some query */

    FragC s[FB_QUERIES / 16];
    bwd2_rows_by_tile<HD>(s, Ks + kw * L::LDT, Qs);
#pragma unroll
    for (int j = 0; j < FB_QUERIES / 16; j++) {
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int r = pos.at(e) >> 4, q = j * 16 + (pos.at(e) & 15);
            float p = exp2f(fmaf(s[j].x[e], scale_log2, -lse_s[q]));
            if (masked && kw + r + kq > q) p = 0.f;
            s[j].x[e] = p;
            PT[(kw + r) * L::LDP + q] = __float2bfloat16(p);
        }
    }
    FragC dp[FB_QUERIES / 16];
    bwd2_rows_by_tile<HD>(dp, Vs + kw * L::LDT, dOs);
#pragma unroll
    for (int j = 0; j < FB_QUERIES / 16; j++) {
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int r = pos.at(e) >> 4, q = j * 16 + (pos.at(e) & 15);
            DST[(kw + r) * L::LDP + q] = __float2bfloat16(s[j].x[e] * (dp[j].x[e] - D_s[q]));
        }
    }
    __syncwarp();
    bwd2_accumulate<HD>(dv, PT + kw * L::LDP, dOs);
    bwd2_accumulate<HD>(dk, DST + kw * L::LDP, Qs);
}

/* dQ of the query block += scale dS K over the CTA's 128 keys: warp w takes
 * query rows [16 (w % 4), +16) and head-dim half w / 4, and adds its 16 x HD/2
 * straight from the fragments into dq_acc (rows: its [seq, H*HD] view at this head). */
template <int HD>
__device__ __forceinline__ void bwd2_dq(float *dq_rows, int HO, const unsigned char *smem, int q0, int seq,
                                        FragPos pos, float scale) {
    typedef Fb2Layout<HD> L;
    constexpr int NJ = HD / 32;
    const bf16 *Ks = (const bf16 *)(smem + L::K), *DST = (const bf16 *)(smem + L::DST);
    const int warp = threadIdx.x >> 5, qr = (warp & 3) * 16, c0 = (warp >> 2) * (HD / 2);
    FragC acc[NJ];
#pragma unroll
    for (int j = 0; j < NJ; j++) wmma::fill_fragment(acc[j], 0.f);
#pragma unroll
    for (int kk = 0; kk < FB_KEYS / 16; kk++) {
        FragAT af; /* dS rows qr.., keys 16 kk..: the transpose of dS^T */
        wmma::load_matrix_sync(af, DST + kk * 16 * L::LDP + qr, L::LDP);
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            FragB bf;
            wmma::load_matrix_sync(bf, Ks + kk * 16 * L::LDT + c0 + j * 16, L::LDT);
            wmma::mma_sync(acc[j], af, bf, acc[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < NJ; j++) {
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int qi = q0 + qr + (pos.at(e) >> 4);
            if (qi < seq) atomicAdd(dq_rows + (size_t)qi * HO + c0 + j * 16 + (pos.at(e) & 15), acc[j].x[e] * scale);
        }
    }
}

/* The warp's dK (scaled) and dV rows, staged through shared memory: bf16 into
 * dqkv when the head has the kv head to itself, else fp32 into the per-head
 * partial buffer [rows][H][2][HD] that bwd2_finish_kernel sums over the group. */
template <int HD>
__device__ __forceinline__ void bwd2_store_dkdv(FragC (&dk)[HD / 16], FragC (&dv)[HD / 16], unsigned char *smem,
                                                bf16 *dqkv, float *part, size_t row0, int kj, int seq, int H, int KV,
                                                int h, float scale) {
    typedef Fb2Layout<HD> L;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
    const int group = H / KV, g = h / group, R = (H + 2 * KV) * HD;
    float *St = (float *)(smem + L::Q) + warp * 16 * L::LDO;
#pragma unroll
    for (int which = 0; which < 2; which++) {
        stage_dkdv<HD>(dk, dv, which, St, L::LDO, scale);
        if (kj < seq) {
            const float *src = St + r * L::LDO + half * (HD / 2);
            if (group == 1) {
                bf16 *dst = dqkv + (row0 + kj) * R + (size_t)(H + which * KV + g) * HD + half * (HD / 2);
#pragma unroll
                for (int c8 = 0; c8 < HD / 16; c8++) store8(dst + 8 * c8, src + 8 * c8);
            } else {
                float *dst = part + (((row0 + kj) * H + h) * 2 + which) * HD + half * (HD / 2);
#pragma unroll
                for (int c4 = 0; c4 < HD / 8; c4++)
                    reinterpret_cast<float4 *>(dst)[c4] = reinterpret_cast<const float4 *>(src)[c4];
            }
        }
        __syncwarp();
    }
}

template <int HD>
__global__ void __launch_bounds__(FB_THREADS, 1)
    flash_bwd2_kernel(float *__restrict__ dq_acc, float *__restrict__ part, bf16 *__restrict__ dqkv,
                      const bf16 *__restrict__ dout, const float *__restrict__ lse, const float *__restrict__ Dsum,
                      const bf16 *__restrict__ qkv, int seq, int H, int KV, float scale, float scale_log2) {
    typedef Fb2Layout<HD> L;
    DYN_SMEM(smem);
    const int warp = threadIdx.x >> 5;
    const int h = blockIdx.x % H, b = blockIdx.x / H;
    const int kb = blockIdx.y; /* grid order: every head's key block 0 (the most query blocks) first */
    const int g = h / (H / KV), R = (H + 2 * KV) * HD, HO = H * HD;
    const size_t row0 = (size_t)b * seq;
    const bf16 *base = qkv + row0 * R, *Qg = base + (size_t)h * HD, *dOg = dout + row0 * HO + (size_t)h * HD;
    const float *lse_g = lse + ((size_t)b * H + h) * seq, *D_g = Dsum + ((size_t)b * H + h) * seq;
    const int k0 = kb * FB_KEYS, kw = warp * 16;
    const int qb0 = k0 / FB_QUERIES, n_qb = (seq + FB_QUERIES - 1) / FB_QUERIES;

    float *pos_s = (float *)(smem + L::POS);
    for (int i = threadIdx.x; i < 256; i += FB_THREADS) pos_s[i] = (float)i;
    load_rows_async<HD, FB_KEYS>((bf16 *)(smem + L::K), base + (size_t)(H + g) * HD, R, k0, seq);
    load_rows_async<HD, FB_KEYS>((bf16 *)(smem + L::V), base + (size_t)(H + KV + g) * HD, R, k0, seq);
    bwd2_load_queries<HD>(smem, 0, Qg, dOg, R, HO, lse_g, D_g, qb0 * FB_QUERIES, seq);
    __pipeline_commit();
    __syncthreads();
    const FragPos pos = frag_pos(pos_s);

    FragC dk[HD / 16], dv[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
        wmma::fill_fragment(dk[j], 0.f);
        wmma::fill_fragment(dv[j], 0.f);
    }
    for (int qb = qb0, buf = 0; qb < n_qb; qb++, buf ^= 1) {
        const int q0 = qb * FB_QUERIES;
        __pipeline_wait_prior(0);
        bwd2_lse_fixup((float *)(smem + L::LSE + buf * L::VB), q0, seq);
        __syncthreads(); /* this block's tiles are in; everyone is done with the other buffer and with dS^T */
        if (qb + 1 < n_qb) {
            bwd2_load_queries<HD>(smem, buf ^ 1, Qg, dOg, R, HO, lse_g, D_g, q0 + FB_QUERIES, seq);
            __pipeline_commit();
        }
        const bool dead = k0 + kw > q0 + FB_QUERIES - 1 || k0 + kw >= seq;
        bwd2_dkdv<HD>(dk, dv, smem, buf, kw, k0 - q0, dead, pos, scale_log2);
        __syncthreads(); /* all of dS^T is in shared memory */
        bwd2_dq<HD>(dq_acc + row0 * HO + (size_t)h * HD, HO, smem, q0, seq, pos, scale);
    }
    /* the Q and dO buffers were last read before the loop's final barrier: free for staging */
    bwd2_store_dkdv<HD>(dk, dv, smem, dqkv, part, row0, k0 + kw + ((threadIdx.x & 31) >> 1), seq, H, KV, h, scale);
}

/* dqkv from v2's fp32 accumulators, 8 columns a thread: the query part from
 * dq_acc; with a group (part != NULL) also dK and dV, the sums of the group's
 * per-head partials in head order. */
__global__ void bwd2_finish_kernel(bf16 *dqkv, const float *dq_acc, const float *part, size_t rows, int H, int KV,
                                   int hd) {
    const int HO = H * hd, R = (H + 2 * KV) * hd, W8 = (part ? R : HO) / 8, group = H / KV;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < rows * W8; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / W8;
        const int col = (int)(i % W8) * 8;
        float v[8];
        if (col < HO) {
            load8f(dq_acc + row * HO + col, v);
        } else {
            const int c2 = col - HO, which = c2 / (KV * hd), g = c2 % (KV * hd) / hd, c = c2 % hd;
            for (int e = 0; e < 8; e++) v[e] = 0.f;
            for (int hh = 0; hh < group; hh++) {
                float t[8];
                load8f(part + ((row * H + g * group + hh) * 2 + which) * hd + c, t);
                for (int e = 0; e < 8; e++) v[e] += t[e];
            }
        }
        store8(dqkv + row * R + col, v);
    }
}

/* ----------------------------------------------------- flash forward, v2 */

/* One CTA of 8 warps per (128-query block, query head, sequence); warp w owns
 * queries [16 w, 16 w + 16) of the block, keeps its Q in registers and walks
 * the key tiles of 64 (see the top comment for why this layout). */
#define FF_THREADS 256
#define FF_WARPS 8
#define FF_QUERIES 128
#define FF_KEYS 64

template <int HD> struct Ff2Layout {
    static constexpr int LDT = HD + 8;      /* bf16 Q, K, V tiles */
    static constexpr int LDP = FF_KEYS + 8; /* a warp's bf16 P [16][64], in its own Q rows once Q is in registers */
    static constexpr size_t QT = (size_t)FF_QUERIES * LDT * 2, KT = (size_t)FF_KEYS * LDT * 2;
    static constexpr size_t WQ = 16 * LDT * 2; /* a warp's Q rows: then P, then the bf16 output staging */
    static constexpr size_t RED = 16 * 16 * 4 + 16 * 8; /* a warp's row exchange: 16 x 16 floats, 16 float2 */
    /* Q; K and V double-buffered (cp.async fills one while the other is used); the row exchanges; the position tile */
    static constexpr size_t Q = 0, K = Q + QT, V = K + 2 * KT, RD = V + 2 * KT, POS = RD + FF_WARPS * RED;
    static constexpr size_t BYTES = POS + 256 * 4;
    static_assert(QT % 128 == 0 && KT % 128 == 0 && RED % 128 == 0 && WQ % 32 == 0, "region alignment");
    static_assert(16 * LDP * 2 <= WQ, "P fits the warp's Q rows");
    static_assert(FF_THREADS == FB_THREADS, "load_rows_async strides by FB_THREADS");
};

/* Row reduction (max or sum) over a 16 x 16 tile whose values are spread
 * over the lanes as an accumulator fragment's (v[e] at pos.at(e)): through
 * the warp's exchange tile, as no layout is assumed; lanes 2 r and 2 r + 1
 * get row r's result. */
template <bool MAX> __device__ __forceinline__ float fwd2_row_reduce(float *red, const float v[8], FragPos pos) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int e = 0; e < 8; e++) red[pos.at(e)] = v[e];
    __syncwarp();
    const float4 a = reinterpret_cast<const float4 *>(red + 8 * lane)[0];
    const float4 c = reinterpret_cast<const float4 *>(red + 8 * lane)[1];
    float x;
    if (MAX) {
        x = fmaxf(fmaxf(fmaxf(a.x, a.y), fmaxf(a.z, a.w)), fmaxf(fmaxf(c.x, c.y), fmaxf(c.z, c.w)));
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    } else {
        x = ((a.x + a.y) + (a.z + a.w)) + ((c.x + c.y) + (c.z + c.w));
        x += __shfl_xor_sync(0xffffffffu, x, 1);
    }
    __syncwarp(); /* red is rewritten by the next exchange */
    return x;
}

/* The reverse: row lane / 2's pair of values (from its lane pair) to each element, out[e] for pos.at(e)'s row. */
__device__ __forceinline__ void fwd2_row_bcast(float2 *st, float2 v, FragPos pos, float2 out[8]) {
    const int lane = threadIdx.x & 31;
    if (!(lane & 1)) st[lane >> 1] = v;
    __syncwarp();
#pragma unroll
    for (int e = 0; e < 8; e++) out[e] = st[pos.at(e) >> 4];
    __syncwarp();
}

/* One key tile for the warp's 16 queries: S = Q K^T (4 fragments of 16 x 16)
 * in registers, masked where key > query when the tile crosses the diagonal
 * (kq = first key - first query), the row max exchanged, P = exp2(S - m)
 * stored as bf16 for O += P V; O and the per-element partial row sums l are
 * rescaled by exp2(m_old - m_new). m_row: the running max of row lane / 2. */
template <int HD>
__device__ __forceinline__ void fwd2_tile(FragC (&o)[HD / 16], float (&l)[8], float &m_row, const FragA (&qf)[HD / 16],
                                          const bf16 *Ks, const bf16 *Vs, bf16 *Pw, float *red, int kq, bool masked,
                                          FragPos pos, float scale_log2) {
    typedef Ff2Layout<HD> L;
    FragC s[FF_KEYS / 16];
#pragma unroll
    for (int j = 0; j < FF_KEYS / 16; j++) wmma::fill_fragment(s[j], 0.f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
        for (int j = 0; j < FF_KEYS / 16; j++) {
            FragBT kf;
            wmma::load_matrix_sync(kf, Ks + j * 16 * L::LDT + kk * 16, L::LDT);
            wmma::mma_sync(s[j], qf[kk], kf, s[j]);
        }
    }
    float pm[8];
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const int r = pos.at(e) >> 4, c = pos.at(e) & 15;
        pm[e] = -INFINITY;
#pragma unroll
        for (int j = 0; j < FF_KEYS / 16; j++) {
            float x = s[j].x[e] * scale_log2;
            if (masked && kq + j * 16 + c > r) x = -INFINITY;
            s[j].x[e] = x;
            pm[e] = fmaxf(pm[e], x);
        }
    }
    /* every processed tile has a key at or before each of the warp's queries: m_new is finite */
    const float m_new = fmaxf(m_row, fwd2_row_reduce<true>(red, pm, pos));
    float2 st[8];
    fwd2_row_bcast((float2 *)(red + 256), float2{m_new, exp2f(m_row - m_new)}, pos, st);
    m_row = m_new;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const int r = pos.at(e) >> 4, c = pos.at(e) & 15;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < FF_KEYS / 16; j++) {
            const float p = exp2f(s[j].x[e] - st[e].x);
            sum += p;
            Pw[r * L::LDP + j * 16 + c] = __float2bfloat16(p);
        }
        l[e] = l[e] * st[e].y + sum;
#pragma unroll
        for (int j = 0; j < HD / 16; j++) o[j].x[e] *= st[e].y;
    }
    __syncwarp();
    FragA pf[FF_KEYS / 16];
#pragma unroll
    for (int kk = 0; kk < FF_KEYS / 16; kk++) wmma::load_matrix_sync(pf[kk], Pw + kk * 16, L::LDP);
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
#pragma unroll
        for (int kk = 0; kk < FF_KEYS / 16; kk++) {
            FragB vf;
            wmma::load_matrix_sync(vf, Vs + kk * 16 * L::LDT + j * 16, L::LDT);
            wmma::mma_sync(o[j], pf[kk], vf, o[j]);
        }
    }
    __syncwarp(); /* P is rewritten by the next tile */
}

/* The warp's rows: lse (natural log) and O / l, staged as bf16 in its Q rows
 * (St) and written 16 bytes a lane. qw: the warp's first query. */
template <int HD>
__device__ __forceinline__ void fwd2_store(FragC (&o)[HD / 16], const float (&l)[8], float m_row, bf16 *St, float *red,
                                           FragPos pos, bf16 *out_rows, int ldo, float *lse_rows, int qw, int seq) {
    typedef Ff2Layout<HD> L;
    const int lane = threadIdx.x & 31;
    const float l_row = fwd2_row_reduce<false>(red, l, pos);
    if (!(lane & 1) && qw + (lane >> 1) < seq) lse_rows[qw + (lane >> 1)] = (m_row + log2f(l_row)) * LN2_F;
    float2 st[8];
    fwd2_row_bcast((float2 *)(red + 256), float2{1.f / l_row, 0.f}, pos, st);
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
#pragma unroll
        for (int e = 0; e < 8; e++)
            St[(pos.at(e) >> 4) * L::LDT + j * 16 + (pos.at(e) & 15)] = __float2bfloat16(o[j].x[e] * st[e].x);
    }
    __syncwarp();
    constexpr int CPR = HD / 8;
    for (int c = lane; c < 16 * CPR; c += 32) {
        const int r = c / CPR, col = (c % CPR) * 8;
        if (qw + r < seq)
            *reinterpret_cast<uint4 *>(out_rows + (size_t)(qw + r) * ldo + col) =
                *reinterpret_cast<const uint4 *>(St + r * L::LDT + col);
    }
}

template <int HD>
__global__ void __launch_bounds__(FF_THREADS, HD == 64 ? 2 : 1)
    flash_fwd2_kernel(bf16 *__restrict__ out, float *__restrict__ lse, const bf16 *__restrict__ qkv, int seq, int H,
                      int KV, float scale_log2) {
    typedef Ff2Layout<HD> L;
    DYN_SMEM(smem);
    const int warp = threadIdx.x >> 5;
    const int h = blockIdx.x % H, b = blockIdx.x / H;
    const int qb = (int)(gridDim.y - 1 - blockIdx.y); /* grid order: every head's last query block (the longest) first */
    const int g = h / (H / KV), R = (H + 2 * KV) * HD;
    const bf16 *base = qkv + (size_t)b * seq * R;
    const int q0 = qb * FF_QUERIES, qw = q0 + warp * 16;
    const int last = q0 + FF_QUERIES - 1 < seq - 1 ? q0 + FF_QUERIES - 1 : seq - 1;
    const int n_kt = last / FF_KEYS + 1;     /* key tiles of the CTA */
    const int n_kw = (qw + 15) / FF_KEYS + 1; /* of this warp (the rest are masked for all its queries) */
    bf16 *Kbuf = (bf16 *)(smem + L::K), *Vbuf = (bf16 *)(smem + L::V);
    bf16 *Wq = (bf16 *)(smem + L::Q + warp * L::WQ);
    float *red = (float *)(smem + L::RD + warp * L::RED);

    float *pos_s = (float *)(smem + L::POS);
    for (int i = threadIdx.x; i < 256; i += FF_THREADS) pos_s[i] = (float)i;
    load_rows_async<HD, FF_QUERIES>((bf16 *)(smem + L::Q), base + (size_t)h * HD, R, q0, seq);
    load_rows_async<HD, FF_KEYS>(Kbuf, base + (size_t)(H + g) * HD, R, 0, seq);
    load_rows_async<HD, FF_KEYS>(Vbuf, base + (size_t)(H + KV + g) * HD, R, 0, seq);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
    const FragPos pos = frag_pos(pos_s);
    FragA qf[HD / 16];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) wmma::load_matrix_sync(qf[kk], Wq + kk * 16, L::LDT);
    __syncwarp(); /* the warp's Q rows now hold P */

    FragC o[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) wmma::fill_fragment(o[j], 0.f);
    float l[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, m_row = -INFINITY;
    for (int kt = 0, buf = 0; kt < n_kt; kt++, buf ^= 1) {
        const int k0 = kt * FF_KEYS;
        __pipeline_wait_prior(0);
        __syncthreads(); /* this tile is in; everyone is done with the other buffer */
        if (kt + 1 < n_kt) {
            load_rows_async<HD, FF_KEYS>(Kbuf + (buf ^ 1) * FF_KEYS * L::LDT, base + (size_t)(H + g) * HD, R,
                                         k0 + FF_KEYS, seq);
            load_rows_async<HD, FF_KEYS>(Vbuf + (buf ^ 1) * FF_KEYS * L::LDT, base + (size_t)(H + KV + g) * HD, R,
                                         k0 + FF_KEYS, seq);
            __pipeline_commit();
        }
        if (kt < n_kw && qw < seq)
            fwd2_tile<HD>(o, l, m_row, qf, Kbuf + buf * FF_KEYS * L::LDT, Vbuf + buf * FF_KEYS * L::LDT, Wq, red,
                          k0 - qw, k0 + FF_KEYS - 1 > qw, pos, scale_log2);
    }
    if (qw < seq)
        fwd2_store<HD>(o, l, m_row, Wq, red, pos, out + (size_t)b * seq * H * HD + (size_t)h * HD, H * HD,
                       lse + ((size_t)b * H + h) * seq, qw, seq);
}

/* Raises a kernel's dynamic shared memory limit (above 48 KB needs it). */
template <class F> static int smem_limit(F *kernel, size_t bytes, const char *what) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess) return 0;
    gpu_record_error("flash attention: cudaFuncSetAttribute(%s, %zu bytes of shared memory): %s", what, bytes,
                     cudaGetErrorString(e));
    return -1;
}

template <int HD> static int flash_prepare(void) {
    static int done = 0;
    if (!done) {
        if (smem_limit(flash_fwd2_kernel<HD>, Ff2Layout<HD>::BYTES, "forward") ||
            smem_limit(flash_bwd2_kernel<HD>, Fb2Layout<HD>::BYTES, "backward"))
            return -1;
        done = 1;
    }
    return 0;
}

template <int HD>
static void flash_forward2(bf16 *out, float *lse, const bf16 *qkv, int batch, int seq, int H, int KV) {
    if (flash_prepare<HD>()) return;
    dim3 grid((unsigned)(H * batch), (unsigned)((seq + FF_QUERIES - 1) / FF_QUERIES));
    float scale_log2 = (float)(1.0 / sqrt((double)HD)) * LOG2E_F;
    LAUNCH(flash_fwd2_kernel<HD>, grid, FF_THREADS, Ff2Layout<HD>::BYTES, gpu_stream_(), out, lse, qkv, seq, H, KV,
           scale_log2);
    gpu_after_launch("gpu_attention_forward(flash v2)");
}

static void dsum(float *D, const bf16 *dout, const bf16 *out, int batch, int seq, int H, int hd) {
    int rows = batch * seq;
    size_t threads = (size_t)rows * H * 32;
    LAUNCH(attn_dsum_kernel, grid_1d(threads, 256, 0x7fffffffu), 256, 0, gpu_stream_(), D, dout, out, rows, H, hd, seq);
    gpu_after_launch("gpu_attention_backward(D)");
}

template <int HD>
static void flash_backward2(bf16 *dqkv, const bf16 *dout, const bf16 *out, const float *lse, const bf16 *qkv,
                            int batch, int seq, int H, int KV) {
    if (flash_prepare<HD>()) return;
    cudaStream_t st = gpu_stream_();
    size_t rows = (size_t)batch * seq, n_dq = rows * H * HD;
    float *dq_acc = (float *)gpu_malloc(n_dq * sizeof(float));
    float *D = (float *)gpu_malloc((size_t)batch * H * seq * sizeof(float));
    float *part = H > KV ? (float *)gpu_malloc(2 * n_dq * sizeof(float)) : NULL; /* [rows][H][dK, dV][HD] */
    if (dq_acc && D && (part || H == KV)) {
        gpu_memset(dq_acc, 0, n_dq * sizeof(float));
        dsum(D, dout, out, batch, seq, H, HD);
        dim3 grid((unsigned)(H * batch), (unsigned)((seq + FB_KEYS - 1) / FB_KEYS));
        float scale = (float)(1.0 / sqrt((double)HD));
        LAUNCH(flash_bwd2_kernel<HD>, grid, FB_THREADS, Fb2Layout<HD>::BYTES, st, dq_acc, part, dqkv, dout, lse, D,
               qkv, seq, H, KV, scale, scale * LOG2E_F);
        gpu_after_launch("gpu_attention_backward(flash v2)");
        size_t items = rows * (part ? (size_t)(H + 2 * KV) : (size_t)H) * HD / 8;
        LAUNCH(bwd2_finish_kernel, grid_1d(items, 256, 65535u * 4u), 256, 0, st, dqkv, dq_acc, part, rows, H, KV, HD);
        gpu_after_launch("gpu_attention_backward(v2 finish)");
    }
    gpu_free(dq_acc);
    gpu_free(D);
    gpu_free(part);
}

/* ------------------------------------------------------------ GEMM path */

/* Whether query row i may attend to key row j of its sequence: causal, and
 * with sample ids (sid: this sequence's, NULL = one sample) the same sample;
 * a padding row (id -1) attends to nothing. */
__device__ __forceinline__ bool att_allowed(const int *sid, int i, int j) {
    return j <= i && (!sid || (sid[i] >= 0 && sid[j] == sid[i]));
}

/* One block per score row (b, h, i): P = softmax of the allowed part of S
 * (already scaled), zeros elsewhere; lse of the row (0 for a row that
 * attends to nothing, whose P row is 0). sample: [batch * seq] or NULL. */
__global__ void gemm_softmax_kernel(bf16 *P, float *lse, const float *S, int seq, int H, const int *sample) {
    __shared__ float sh[32];
    size_t row = blockIdx.x; /* (b*H + h)*seq + i */
    int i = (int)(row % seq), len = i + 1;
    const int *sid = sample ? sample + (row / ((size_t)H * seq)) * seq : NULL;
    const float *s = S + row * seq;
    bf16 *p = P + row * seq;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < len; j += blockDim.x)
        if (att_allowed(sid, i, j)) mx = fmaxf(mx, s[j]);
    mx = block_max(mx, sh);
    bool none = mx == -INFINITY;
    float sum = 0.f;
    for (int j = threadIdx.x; j < len; j += blockDim.x)
        if (!none && att_allowed(sid, i, j)) sum += __expf(s[j] - mx);
    sum = block_sum(sum, sh);
    float inv = none ? 0.f : 1.f / sum;
    for (int j = threadIdx.x; j < seq; j += blockDim.x)
        p[j] = __float2bfloat16(!none && att_allowed(sid, i, j) ? __expf(s[j] - mx) * inv : 0.f);
    if (threadIdx.x == 0) lse[row] = none ? 0.f : mx + logf(sum);
}

/* P = exp(S - lse) and dS = P (dP - D) on the allowed part, zeros elsewhere. */
__global__ void gemm_softmax_bwd_kernel(bf16 *P, bf16 *dS, const float *S, const float *dP, const float *lse,
                                        const float *D, int seq, int H, const int *sample) {
    size_t row = blockIdx.x;
    int i = (int)(row % seq);
    const int *sid = sample ? sample + (row / ((size_t)H * seq)) * seq : NULL;
    float l = lse[row], d = D[row];
    const float *s = S + row * seq, *dp = dP + row * seq;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        float pj = att_allowed(sid, i, j) ? __expf(s[j] - l) : 0.f;
        P[row * seq + j] = __float2bfloat16(pj);
        dS[row * seq + j] = __float2bfloat16(pj != 0.f ? pj * (dp[j] - d) : 0.f);
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

static void gemm_forward(bf16 *out, float *lse, const bf16 *qkv, const int *sample, int batch, int seq, int H, int KV,
                         int hd) {
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
    LAUNCH(gemm_softmax_kernel, (unsigned)rows, 256, 0, gpu_stream_(), P, lse, S, seq, H, sample);
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

static void gemm_backward(bf16 *dqkv, const bf16 *dout, const bf16 *out, const float *lse, const bf16 *qkv,
                          const int *sample, int batch, int seq, int H, int KV, int hd) {
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
        LAUNCH(gemm_softmax_bwd_kernel, (unsigned)rows, 256, 0, st, P, dS, S, dP, lse, D, seq, H, sample);
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
        if (head_dim == 64) return flash_forward2<64>(o, lse, x, batch, seq, heads, kv_heads);
        if (head_dim == 128) return flash_forward2<128>(o, lse, x, batch, seq, heads, kv_heads);
    }
    gemm_forward(o, lse, x, NULL, batch, seq, heads, kv_heads, head_dim);
}

/* Packed samples: the flash kernels know only the causal mask, so these go
 * through the GEMM path with the sample mask (its [batch, H, seq, seq]
 * scratch; fine at the sequence lengths of adaptation batches). */
void gpu_attention_forward_masked(gpu_bf16 *out, float *lse, const gpu_bf16 *qkv, const int *sample, int batch,
                                  int seq, int heads, int kv_heads, int head_dim) {
    if (!shape_ok(batch, seq, heads, kv_heads, head_dim, "gpu_attention_forward_masked")) return;
    gemm_forward((bf16 *)out, lse, (const bf16 *)qkv, sample, batch, seq, heads, kv_heads, head_dim);
}

void gpu_attention_backward_masked(gpu_bf16 *dqkv, const gpu_bf16 *dout, const gpu_bf16 *out, const float *lse,
                                   const gpu_bf16 *qkv, const int *sample, int batch, int seq, int heads, int kv_heads,
                                   int head_dim) {
    if (!shape_ok(batch, seq, heads, kv_heads, head_dim, "gpu_attention_backward_masked")) return;
    gemm_backward((bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)out, lse, (const bf16 *)qkv, sample, batch, seq,
                  heads, kv_heads, head_dim);
}

void gpu_attention_backward(gpu_bf16 *dqkv, const gpu_bf16 *dout, const gpu_bf16 *out, const float *lse,
                            const gpu_bf16 *qkv, int batch, int seq, int heads, int kv_heads, int head_dim) {
    if (!shape_ok(batch, seq, heads, kv_heads, head_dim, "gpu_attention_backward")) return;
    bf16 *d = (bf16 *)dqkv;
    const bf16 *g = (const bf16 *)dout, *o = (const bf16 *)out, *x = (const bf16 *)qkv;
    if (g_att_impl == GPU_ATT_FLASH && al16(dqkv) && al16(dout) && al16(qkv)) {
        if (head_dim == 64) return flash_backward2<64>(d, g, o, lse, x, batch, seq, heads, kv_heads);
        if (head_dim == 128) return flash_backward2<128>(d, g, o, lse, x, batch, seq, heads, kv_heads);
    }
    gemm_backward(d, g, o, lse, x, NULL, batch, seq, heads, kv_heads, head_dim);
}
