// Matrix-vector products for decode (up to CUK_MV_MAX_TOK tokens) over bf16 or 4-bit affine
// weights, and the 4-bit -> bf16 tile dequantizer for cuBLAS products of larger batches.
// Each warp owns R whole rows at a time (grid-stride over row groups): all of a lane's weight
// loads for those rows (up to 8 x 16 bytes) are issued before any is used, the activations read
// for one 16-byte chunk are shared by the R rows, and the warp finishes its rows with shuffles
// alone: no block barrier outside the optional RMSNorm prologue. Accumulation is f32.
// Invariant: launchers never synchronize and never allocate.
// SPDX-License-Identifier: MIT
#include "kern_common.cuh"

void trace_set_matvec(unsigned long long *d) { cudaMemcpyToSymbol(g_trace_dev, &d, sizeof d); }

// Tail prefetch: once a warp has finished its rows, it asks L2 for its share of the first
// pf_lines 128-byte lines of the next product's weights (cuk_mv_prefetch_next), so that DRAM
// keeps streaming through this kernel's tail, the launch gap and the small kernels between the
// two products, and the next product starts on lines already in L2.
static __device__ __forceinline__ void prefetch_next(const char *pf, unsigned pf_lines, int gw,
                                                     int nwarp, int lane) {
    if (!pf) return;
    for (size_t i = (size_t)gw * WARP + lane; i < pf_lines; i += (size_t)nwarp * WARP)
        prefetch_l2(pf + i * 128);
}

// Row r of item `it`: R consecutive rows, or (R == 3: CUK_MV_CONV) rows it, it + N / 3,
// it + 2 N / 3 (the B, C and x rows of channel it of an LFM2 in_proj).
template <int R>
static __device__ __forceinline__ size_t mv_row(int it, int r, int N) {
    if (R == 3) return (size_t)it + (size_t)r * (N / 3);
    return (size_t)min(it * R + r, N - 1);
}

template <int R>
static __device__ __forceinline__ int mv_items(int N) {
    return R == 3 ? N / 3 : (N + R - 1) / R;
}

// Epilogue of item `it` (acc: this lane's partial sums). STORE / ACC / SWIGLU: lane r * NT + t
// writes (row, token t). CONV: lane 0 runs the LFM2 short conv of channel `it` over the tokens
// in order (k_shortconv_seq's loop: tokens sharing a state block are one sequence in order),
// updating each token's state and writing Y[t, it] = C * conv(B * x).
template <int NT, int R>
static __device__ __forceinline__ void mv_epilogue(float (&acc)[R][NT], int lane, int it, int N,
                                                   float *Y, int64_t ldy, int mode,
                                                   const struct cuk_conv &cv) {
    if (R == 3) {
        float v[3][NT];
#pragma unroll
        for (int r = 0; r < 3; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) v[r][t] = warp_sum(acc[r][t]);
        if (lane) return;
        const int D = N / 3, H = cv.L - 1;
        const float *wk = cv.wc + (size_t)it * cv.L;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float *sk = cv.conv[t] + (size_t)cv.slot * D * H + (size_t)it * H;
            const float bx = v[0][t] * v[2][t];
            float a = wk[H] * bx;
            for (int j = 0; j < H; j++) a += wk[j] * sk[j];
            for (int j = 0; j + 1 < H; j++) sk[j] = sk[j + 1];
            sk[H - 1] = bx;
            Y[(size_t)t * ldy + it] = v[1][t] * a;
        }
        return;
    }
    float mine = 0.f, other = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = warp_sum(acc[r][t]);
            if (lane == r * NT + t) mine = v;
            if (mode == CUK_MV_SWIGLU && (r & 1) && lane == (r - 1) * NT + t) other = v;
        }
    if (lane < R * NT) {
        const int r = lane / NT, t = lane % NT, row = it * R + r;
        if (mode == CUK_MV_SWIGLU) {
            if (!(r & 1) && row + 1 < N)
                Y[(size_t)t * ldy + row / 2] = mine / (1.0f + expf(-mine)) * other;
        } else if (row < N) {
            float *y = Y + (size_t)t * ldy + row;
            *y = mode == CUK_MV_ACC ? *y + mine : mine;
        }
    }
}

// Block-wide: xs [NT][K] = X [NT][K] in one round of 16-byte loads (up to 8 per thread in
// flight), ending with a block barrier (bf16 products without a norm: k_mv with `sx`, where
// every warp read all of X through L1, which for long rows (down: K = 8192, 32 KB) thrashed;
// and the bf16 ring kernel).
template <int NT>
static __device__ __forceinline__ void stage_x(const float *__restrict__ X, int K, float *xs) {
    const int n4 = NT * K / 4;
    const float4 *s4 = reinterpret_cast<const float4 *>(X);
    float4 *d4 = reinterpret_cast<float4 *>(xs);
    for (int i0 = threadIdx.x; i0 < n4; i0 += 8 * blockDim.x) {
        float4 v[8];
#pragma unroll
        for (int g = 0; g < 8; g++) {
            const int i = i0 + g * blockDim.x;
            if (i < n4) v[g] = __ldg(s4 + i);
        }
#pragma unroll
        for (int g = 0; g < 8; g++) {
            const int i = i0 + g * blockDim.x;
            if (i < n4) d4[i] = v[g];
        }
    }
    __syncthreads();
}

// Chunk c of a weight row (n16 chunks, 16 bytes each). bf16: 8 consecutive elements. 4-bit
// (f32 activations): in a full block of 128 words (row words in element order) the 4 words
// word(k) = 128 (c / 32) + c % 32 + 32 k, each a coalesced 4-byte load, so that for each k
// the lanes of a warp read consecutive words and their f32 activations are contiguous (words
// 4 c .. 4 c + 3, one 16-byte load, put each lane's activations 128 bytes apart in shared
// memory: batch 8 at half speed, eighth round); a partial last block: words 4 c .. 4 c + 3.
static __device__ __forceinline__ uint32_t ld_stream32(const uint32_t *p) {
    uint32_t v;
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}
template <int WT>
static __device__ __forceinline__ uint4 mv_chunk(const uint4 *W, size_t row, int n16, int c) {
    if (WT && (c >> 5) < (n16 >> 5)) {
        const uint32_t *w = reinterpret_cast<const uint32_t *>(W + row * n16) +
                            ((c >> 5) << 7) + (c & 31);
        return make_uint4(ld_stream32(w), ld_stream32(w + 32), ld_stream32(w + 64),
                          ld_stream32(w + 96));
    }
    return ld_stream(W + row * n16 + c);
}

// Y[t, r] (by mode) from sum_c W[r, c] X[t, c]. WT 0: bf16 rows of n16 = K / 8 chunks; WT 1:
// 4-bit rows of n16 = K / 32 chunks (mv_chunk), groups of 2^(cpg_sh + 2) words.
// A warp takes R rows per item; each lane loads chunks lane, lane + 32, ... (U = 8 / R per row
// per iteration). NORM: the block first stages RMSNorm(X) (weight nw; token t reads X row
// rows[t] when rows) in shared memory.
template <int NT, int R, int WT, bool NORM>
__global__ void __launch_bounds__(256)
    k_mv(const uint4 *__restrict__ W, int N, int K, int n16, const void *__restrict__ sb, int sbk,
         int cpg_sh, const float *__restrict__ X, float *Y, int64_t ldy, int mode,
         const float *__restrict__ nw, const int32_t *__restrict__ rows, float eps,
         const char *__restrict__ pf, unsigned pf_lines, struct cuk_conv cv, bool preload,
         bool st1, bool sx) {
    extern __shared__ float xs[];          // NORM: [NT][K] normalized activations
    __shared__ float red[8][NT];
    constexpr int U = 8 / R;
    const int lane = threadIdx.x % WARP, wi = threadIdx.x / WARP;
    const int items = mv_items<R>(N), nwarp = gridDim.x * (blockDim.x / WARP);
    const int it0 = blockIdx.x * (blockDim.x / WARP) + wi;
    const int ng = n16 >> cpg_sh;          // groups per row (4-bit)
    const int wsh = cpg_sh + 2;            // word -> group shift (4-bit)
    const int nfull = n16 >> 5;            // full 128-word blocks per row (4-bit)
    // Weights never depend on earlier kernels: the first chunks of the warp's first item are
    // loaded into registers (pre; else only asked into L2) before waiting on the previous kernel,
    // so their latency overlaps its tail and this kernel's prologue.
    uint4 w0[R][U];
    const bool pre = preload && it0 < items;
#pragma unroll
    for (int r = 0; r < R; r++) {
        const size_t row = mv_row<R>(min(it0, items - 1), r, N);
#pragma unroll
        for (int u = 0; u < U; u++) {
            w0[r][u] = make_uint4(0, 0, 0, 0);
            if (it0 < items && lane + WARP * u < n16) {
                if (pre) w0[r][u] = mv_chunk<WT>(W, row, n16, lane + WARP * u);
                else prefetch_l2(W + row * n16 + lane + WARP * u);
            }
        }
    }
    bool first = pre;
    pdl_wait();
    pdl_trigger();
    const float *Xa = X;
    if (NORM) {
        stage_norm<NT>(X, K, nw, rows, eps, xs, red, st1);
        Xa = xs;
    } else if (sx) {
        stage_x<NT>(X, K, xs);
        Xa = xs;
    }
    const bool xsm = NORM || sx;   // activations in shared memory
    for (int it = it0; it < items; it += nwarp) {
        float acc[R][NT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.f;
        for (int c0 = lane; c0 < n16; c0 += WARP * U) {
            uint4 wv[R][U];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const size_t row = mv_row<R>(it, r, N);
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int c = c0 + WARP * u;
                    if (first) wv[r][u] = w0[r][u];   // the same chunks (it0, c0 == lane)
                    else if (c < n16) wv[r][u] = mv_chunk<WT>(W, row, n16, c);
                }
            }
            first = false;
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = c0 + WARP * u;
                if (c >= n16) continue;
                if (WT == 0) {
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        float x[8];
                        if (xsm) ld_x8<true>(Xa, (size_t)t * K + 8 * (size_t)c, x);
                        else ld_x8<false>(Xa, (size_t)t * K + 8 * (size_t)c, x);
#pragma unroll
                        for (int r = 0; r < R; r++) acc[r][t] += dot_bf16x8(wv[r][u], x);
                    }
                } else {
                    const bool full = (c >> 5) < nfull;   // word order of mv_chunk
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const int word = full ? ((c >> 5) << 7) + (c & 31) + 32 * k : 4 * c + k;
#pragma unroll
                        for (int t = 0; t < NT; t++) {
                            float x[8];
                            ld_x8<NORM>(Xa, (size_t)t * K + 8 * (size_t)word, x);
                            const float xs =
                                ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
#pragma unroll
                            for (int r = 0; r < R; r++) {
                                const uint32_t w = k == 0 ? wv[r][u].x : k == 1 ? wv[r][u].y
                                                 : k == 2 ? wv[r][u].z : wv[r][u].w;
                                const float2 p =
                                    ld_sb(sb, sbk, mv_row<R>(it, r, N) * ng + (word >> wsh));
                                float q[8];
                                q4_word(w, q);
                                const float qd = q[0] * x[0] + q[1] * x[1] + q[2] * x[2] +
                                                 q[3] * x[3] + q[4] * x[4] + q[5] * x[5] +
                                                 q[6] * x[6] + q[7] * x[7];
                                acc[r][t] += p.x * qd + p.y * xs;
                            }
                        }
                    }
                }
            }
        }
        mv_epilogue<NT, R>(acc, lane, it, N, Y, ldy, mode, cv);
    }
    prefetch_next(pf, pf_lines, it0, nwarp, lane);
}

// Block-wide (blockDim.x a multiple of 32, at most 256): the integer activations of k_mvq8's
// scheme (q8_unit_store) for NT tokens of X [.., K] (K % 32 == 0; optionally RMS-normalized
// with weight nw; token t reading X row rows[t] when rows) into xq [NT][K / 8] and
// xf [NT][K / 32], ending with a block barrier. red: [warps][NT] scratch.
template <int NT, bool NORM>
static __device__ __forceinline__ void stage_q8(const float *__restrict__ X, int K,
                                                const float *__restrict__ nw,
                                                const int32_t *__restrict__ rows, float eps,
                                                uint4 *xq, float2 *xf, float (*red)[NT],
                                                bool st1) {
    const int lane = threadIdx.x % WARP;
    const int nw8 = K / 8, nu = K / 32;
    if constexpr (NT == 1 && NORM) {
        float x[8];   // zero past K / 8: every lane of the block takes part below
        if (st1 && norm_word(X, K, nw, rows, eps, red, x)) {
            const int i = threadIdx.x;
            q8_unit_store(x, i, i < nw8, nu, xq, xf);
            __syncthreads();
            return;
        }
    }
    float inv[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) inv[t] = 1.0f;
    if (NORM) {
        float ss[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float *xr = X + (size_t)(rows ? rows[t] : t) * K;
            ss[t] = 0;
            for (int i = threadIdx.x; i < K; i += blockDim.x) {
                float v = xr[i];
                ss[t] += v * v;
            }
        }
        block_inv_rms<NT>(ss, K, eps, red, inv);
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float *xr = X + (size_t)(NORM && rows ? rows[t] : t) * K;
        // whole warps per round (i - lane is the warp's first word): the unit's lanes shuffle
        for (int i = threadIdx.x; i - lane < nw8; i += blockDim.x) {
            const bool act = i < nw8;
            float x[8];
#pragma unroll
            for (int j = 0; j < 8; j++) x[j] = 0.f;
            if (act) {
                const float4 a = *reinterpret_cast<const float4 *>(xr + 8 * i);
                const float4 b = *reinterpret_cast<const float4 *>(xr + 8 * i + 4);
                x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
                x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
                if (NORM) {
#pragma unroll
                    for (int j = 0; j < 8; j++) x[j] = nw[8 * i + j] * (x[j] * inv[t]);
                }
            }
            q8_unit_store(x, i, act, nu, xq + (size_t)t * nw8, xf + (size_t)t * nu);
        }
    }
    __syncthreads();
}

// ---- 4-bit weights x integer activations (llama.cpp-style, two int8 levels): every block first
// quantizes the (optionally RMS-normalized) activations of its NT tokens into shared memory, per
// 32-element unit: dd = amax / 32258 (127 x 254), q1 = rint(x 127 / amax) and the remainder
// q2 = rint((x - 254 dd q1) / dd) in [-127, 127], so x' = dd (254 q1 + q2) is within dd / 2 of x
// (about 1.5e-5 of the unit's largest element, near f32-activation accuracy; one int8 level alone
// measured 0.02 relative L2 on the golden models' logits, over the 1e-2 target). Shared memory
// per word: q1 and q2 codes of elements 0, 2, 4, 6 and 1, 3, 5, 7 (the byte order of the weight
// word's low and high nibbles; layout in q8_unit_store); per unit (dd, dd * sum(254 q1 + q2)).
// A weight unit (16 bytes, 32 elements of one scale group) then costs sixteen __dp4a and one
// conversion: sum_j w_j x'_j = scale * dd * (254 dot(q_w, q1) + dot(q_w, q2)) + bias * dd * sum,
// i.e. exactly W x' (q16_units_ref in tests/cuda/test_cuda_kernels.c is the host twin).
// Warp layout, rows per warp, prefetches and epilogues as k_mv (WT 1). ----
template <int NT, int R, bool NORM, int SBK>
__global__ void __launch_bounds__(256)
    k_mvq8(const uint4 *__restrict__ W, int N, int K, int n16, const void *__restrict__ sb,
           int cpg_sh, const float *__restrict__ X, float *Y, int64_t ldy, int mode,
           const float *__restrict__ nw, const int32_t *__restrict__ rows, float eps,
           const char *__restrict__ pf, unsigned pf_lines, struct cuk_conv cv, bool st1) {
    extern __shared__ uint4 xq[];          // [NT][K / 8] codes, then float2 [NT][K / 32] (dd, sum)
    float2 *xf = reinterpret_cast<float2 *>(xq + NT * (K / 8));
    __shared__ float red[8][NT];
    constexpr int U = 8 / R;
    const int lane = threadIdx.x % WARP, wi = threadIdx.x / WARP;
    const int items = mv_items<R>(N), nwarp = gridDim.x * (blockDim.x / WARP);
    const int it0 = blockIdx.x * (blockDim.x / WARP) + wi;
    const int ng = n16 >> cpg_sh, nw8 = K / 8;
    // Weights never depend on earlier kernels: only asked into L2 before the wait (the register
    // preload of k_mv made this kernel slower: 981 vs 1102 tok/s, 4-bit 1.2B, two H100 calls).
    if (it0 < items) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const size_t row = mv_row<R>(it0, r, N);
#pragma unroll
            for (int u = 0; u < U; u++)
                if (lane + WARP * u < n16) prefetch_l2(W + row * n16 + lane + WARP * u);
        }
    }
    pdl_wait();
    pdl_trigger();
    stage_q8<NT, NORM>(X, K, nw, rows, eps, xq, xf, red, st1);
    for (int it = it0; it < items; it += nwarp) {
        float acc[R][NT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.f;
        for (int c0 = lane; c0 < n16; c0 += WARP * U) {
            uint4 wv[R][U];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const size_t row = mv_row<R>(it, r, N);
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int c = c0 + WARP * u;
                    if (c < n16) wv[r][u] = ld_stream(W + row * n16 + c);
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = c0 + WARP * u;   // unit c: words 4 c .. 4 c + 3, one scale group
                if (c >= n16) continue;
                float2 p[R];
#pragma unroll
                for (int r = 0; r < R; r++)
                    p[r] = ld_sb(sb, SBK, mv_row<R>(it, r, N) * ng + (c >> cpg_sh));
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    uint4 xa[4];
#pragma unroll
                    for (int k = 0; k < 4; k++) xa[k] = xq[t * nw8 + k * n16 + c];
                    const float2 f = xf[t * n16 + c];
#pragma unroll
                    for (int r = 0; r < R; r++)
                        acc[r][t] += p[r].x * (f.x * (float)q4q8_unit(wv[r][u], xa)) + p[r].y * f.y;
                }
            }
        }
        mv_epilogue<NT, R>(acc, lane, it, N, Y, ldy, mode, cv);
    }
    prefetch_next(pf, pf_lines, it0, nwarp, lane);
}

// ---- batch-1 ring matvec (k_mvr): one block of RING_WARPS warps per SM (16 by default since
// the eighth round; cuk_set_mv_ring_warps), each warp owning a contiguous range of items (R rows
// each) and streaming its weight bytes (and, for 4-bit, their scale-bias pairs) through a ring
// of S shared-memory slots filled by bulk copies. The first S chunks are issued before the PDL
// wait (weights never depend on earlier kernels); since the ninth round a block (at most 64
// registers per thread, shared memory by the pair share: ring_plan_for) fits beside the
// previous product's, so it starts, and its loads with it, while that one runs; a slot is
// refilled as soon as it has been read. Chunks are m whole items (bytes contiguous per segment:
// R <= 2 rows of an item are adjacent, CUK_MV_CONV's three rows are three segments) or, for
// long rows, slices of one item's rows (acc kept across them). Same results as k_mv (bf16) /
// k_mvq8 (4-bit, integer activations) up to f32 summation order. Default for 4-bit weights only:
// for bf16 the general kernel measured faster (docs/PERFORMANCE.md, CUDA fifth round). ----
enum { RING_WARPS = 16, RING_MAX_WARPS = 16, RING_CHUNK = 6144, RING_BYTES = 12288,
       RING_MAX_S = 8, RING_SMEM_MAX = 225 * 1024, RING_PAIR_SMEM = 130 * 1024 };
// Items per chunk at most, by rows per item: the accumulators and row offsets of a chunk's items
// live in registers, and a block must stay within 64 registers per thread (two 16-warp blocks
// share an SM's 64 K registers; ninth round).
static constexpr __host__ __device__ int ring_max_m(int R) { return R == 1 ? 4 : R == 2 ? 2 : 1; }

struct ring_plan {
    int m;       // items per chunk (whole rows) or 1 (slices)
    int us;      // 16-byte units per row slice (all of a row when ns == 1)
    int ns;      // slices per item
    int S;       // slots per warp
    int slot;    // bytes per slot
    int codes;   // bytes of the codes region of a slot (4-bit: scale-bias pairs follow)
    int sbs;     // bytes of one row slice's scale-bias pairs (4-bit)
    bool st1;    // single-round activation staging where it applies (norm_word)
};

// Copy segments per chunk (the same for every chunk of a launch): R when the item's rows are
// not adjacent (CUK_MV_CONV) or an item is sliced, else 1 (the chunk's rows are consecutive).
template <int R>
static __device__ __forceinline__ int ring_nseg(const ring_plan &P) {
    return (R == 3 || P.ns > 1) ? R : 1;
}
// Row ri of a chunk holding item a's row r: a R + r with one segment, else r m + a.
template <int R>
static __device__ __forceinline__ int ring_ri(const ring_plan &P, int nseg, int a, int r) {
    return nseg == 1 ? a * R + r : r * P.m + a;
}

// A chunk of a warp's sequence (items ia .. ib - 1), walked in order by a cursor (no divisions
// in the loop): first item, slice, items in it, the slice's first unit and unit count.
struct ring_chunk {
    int i0, s, mi, u0, len;
};
template <int R>
static __device__ __forceinline__ ring_chunk ring_at(const ring_plan &P, int i0, int s, int ib,
                                                     int nu) {
    ring_chunk c;
    c.i0 = i0;
    c.s = s;
    c.mi = min(P.m, ib - i0);
    c.u0 = s * P.us;
    c.len = min(P.us, nu - c.u0);
    return c;
}
// The chunk after (i0, s).
static __device__ __forceinline__ void ring_next(const ring_plan &P, int &i0, int &s) {
    if (++s == P.ns) {
        s = 0;
        i0 += P.m;
    }
}

// Issues chunk c into slot / bar: lane 0 arms the barrier with the byte count, lanes
// 0 .. nseg - 1 copy one segment each (codes, then pairs).
// Row ri of a chunk (item a, row r: ri = a R + r with one segment, else r m + a) sits at
// ri * us * 16 in the codes region and its pairs at codes + ri * sbs; the rows of one segment
// are consecutive rows of W.
template <int R, int WT>
static __device__ __forceinline__ void ring_issue(const char *W, const char *sb, int N, int nu,
                                                  int cpg_sh, int sbsz, const ring_plan &P,
                                                  const ring_chunk &c, unsigned char *slot,
                                                  uint64_t *bar, uint64_t pol, int lane) {
    const int i0 = c.i0, s = c.s, mi = c.mi, len = c.len, nseg = ring_nseg<R>(P);
    const int rows_seg = nseg == 1 ? mi * R : mi;      // consecutive rows per segment
    const unsigned cb = (unsigned)(rows_seg * len * 16);
    const unsigned pb = WT ? (unsigned)((len >> cpg_sh) * sbsz) : 0u;   // pairs per row slice
    if (lane == 0) mbar_expect(bar, (unsigned)nseg * (cb + (unsigned)rows_seg * pb));
    __syncwarp();
    if (lane < nseg) {
        const size_t r0 = nseg == 1 ? (size_t)i0 * R : mv_row<R>(i0, lane, N);
        const size_t ri0 = nseg == 1 ? 0 : (size_t)lane * P.m;
        bulk_g2s(slot + ri0 * P.us * 16, W + (r0 * nu + (size_t)s * P.us) * 16, cb, bar, pol);
        if (WT)
            bulk_g2s(slot + P.codes + ri0 * P.sbs,
                     sb + (r0 * (size_t)(nu >> cpg_sh) + (size_t)((s * P.us) >> cpg_sh)) * sbsz,
                     (unsigned)rows_seg * pb, bar, pol);
    }
}

// The argmax of a product's N outputs, fused into its last launch (cuk_mv_argmax_next): lane
// (bv, bi) -> warp -> block, one atomicMax per block on a 64-bit key (order-preserving bits of
// the value, then ~row: equal values keep the first row, as k_argmax does), and the last block
// to finish (a ticket) writes the row to *amo and zeroes the key and ticket for the next launch.
// Rows never beat -inf or NaN (bv starts at -inf and only a strict > replaces it): no candidate
// gives row 0, as in k_argmax.
static __device__ __forceinline__ unsigned long long amax_key(float v, int i) {
    const uint32_t u = v == 0.f ? 0u : __float_as_uint(v);   // -0 and +0 compare equal
    const uint32_t o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)o << 32) | (uint32_t)~(uint32_t)i;
}
static __device__ void ring_argmax(float bv, int bi, unsigned long long *amst, int32_t *amo,
                                   int lane, int wi, int nwb) {
    __shared__ unsigned long long keys[RING_MAX_WARPS];
    unsigned long long key = bi >= 0 ? amax_key(bv, bi) : 0ull;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long ok = __shfl_xor_sync(0xffffffffu, key, o);
        key = ok > key ? ok : key;
    }
    if (lane == 0) keys[wi] = key;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nwb; w++) key = keys[w] > key ? keys[w] : key;
        if (key) atomicMax(&amst[0], key);
        __threadfence();
        if (atomicAdd(&amst[1], 1ull) == gridDim.x - 1) {   // the last block: all keys are in
            __threadfence();
            const unsigned long long k = atomicExch(&amst[0], 0ull);
            atomicExch(&amst[1], 0ull);
            *amo = k ? (int32_t)~(uint32_t)k : 0;
        }
    }
}

template <int R, int WT, bool NORM, int SBK>
__global__ void __launch_bounds__(RING_MAX_WARPS * WARP, 2)
    k_mvr(const char *__restrict__ W, int N, int K, const char *__restrict__ sb, int cpg_sh,
          const float *__restrict__ X, float *Y, int64_t ldy, int mode,
          const float *__restrict__ nw, const int32_t *__restrict__ rows, float eps,
          struct cuk_conv cv, ring_plan P, const char *__restrict__ pf, unsigned pf_lines,
          unsigned long long *amst, int32_t *amo) {
    extern __shared__ __align__(128) unsigned char rsm[];   // ring, then staged activations
    __shared__ uint64_t bars[RING_MAX_WARPS][RING_MAX_S];
    __shared__ float red[RING_MAX_WARPS][1];
    const int lane = threadIdx.x % WARP, wi = threadIdx.x / WARP;
    const int nwb = blockDim.x / WARP;   // warps per block (cuk_set_mv_ring_warps)
    const int items = mv_items<R>(N), gw = blockIdx.x * nwb + wi;
    const int nwarp = gridDim.x * nwb;
    const int ia = (int)((long long)items * gw / nwarp);
    const int ib = (int)((long long)items * (gw + 1) / nwarp);
    const int nu = WT ? K / 32 : K / 8;                 // 16-byte units per row
    const int sbsz = SBK == CUK_SB_F32 ? 8 : 4;   // bytes of a scale-bias pair (4-bit)
    unsigned char *ring = rsm + (size_t)wi * P.S * P.slot;
    uint64_t *bar = bars[wi];
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    if (lane == 0) {
        for (int d = 0; d < P.S; d++) mbar_init(&bar[d], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncwarp();
    int qi = ia, qs = 0;   // the next chunk to issue: first item, slice
    for (int q = 0; q < P.S && qi < ib; q++, ring_next(P, qi, qs))
        ring_issue<R, WT>(W, sb, N, nu, cpg_sh, sbsz, P, ring_at<R>(P, qi, qs, ib, nu),
                          ring + (size_t)q * P.slot, &bar[q], pol, lane);
    pdl_wait();
    pdl_trigger();
    // activations in shared memory: bf16 as f32 (RMS-normalized when NORM; every warp reads all
    // of them, which through L1 thrashed for long rows), 4-bit as integer levels
    float *xs = reinterpret_cast<float *>(rsm + (size_t)nwb * P.S * P.slot);
    uint4 *xq = reinterpret_cast<uint4 *>(xs);
    float2 *xf = reinterpret_cast<float2 *>(xq + K / 8);
    if (WT) {
        stage_q8<1, NORM>(X, K, nw, rows, eps, xq, xf, red, P.st1);
    } else if (!NORM) {
        stage_x<1>(X, K, xs);
    } else {
        stage_norm<1>(X, K, nw, rows, eps, xs, red, P.st1);
    }
    constexpr int MM = ring_max_m(R);
    float acc[MM][R][1];   // partial sums of the chunk's items (kept across slices)
    // 4-bit: offsets in a slot of row (item a, row r)'s codes at this lane and of its pairs
    // (the same for every chunk: row ri = a R + r with one segment, else r m + a)
    const int nseg = ring_nseg<R>(P);
    uint32_t rwo[MM][R], rso[MM][R];
#pragma unroll
    for (int a = 0; a < MM; a++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int ri = ring_ri<R>(P, nseg, a, r);
            rwo[a][r] = (uint32_t)(ri * P.us + lane) * 16u;
            rso[a][r] = (uint32_t)(P.codes + ri * P.sbs);
        }
    float bv = -INFINITY;   // amo: this lane's largest stored row value and its row (R == 1)
    int bi = -1;
    int ci = ia, cs = 0, k = 0;   // the chunk to read (first item, slice), its slot
    unsigned ph = 0;               // the slot's barrier phase
    for (; ci < ib; ring_next(P, ci, cs)) {
        const ring_chunk c = ring_at<R>(P, ci, cs, ib, nu);
        const int i0 = c.i0, s = c.s, mi = c.mi, u0 = c.u0, len = c.len;
        const bool last = s == P.ns - 1;
        const unsigned char *slot = ring + (size_t)k * P.slot;
        // the residual the epilogue adds to, asked for before the chunk's wait (lane a: item a)
        float yo = 0.f;   // lane 8 a: item a's (the lanes that store it, warp_sum4)
        if (R == 1 && mode == CUK_MV_ACC && last && (lane & 7) == 0 && (lane >> 3) < mi)
            yo = Y[i0 + (lane >> 3)];
        if (s == 0) {
#pragma unroll
            for (int a = 0; a < MM; a++)
#pragma unroll
                for (int r = 0; r < R; r++) acc[a][r][0] = 0.f;
        }
        mbar_wait(&bar[k], ph);
        if (WT == 0) {
#pragma unroll
            for (int a = 0; a < MM; a++) {
                if (a >= mi) break;
#pragma unroll 2
                for (int c = lane; c < len; c += WARP) {
                    const int u = u0 + c;   // unit within the row
                    float x[8];
                    ld_x8<true>(xs, 8 * (size_t)u, x);
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        const int ri = ring_ri<R>(P, nseg, a, r);
                        const uint4 w = *reinterpret_cast<const uint4 *>(
                            slot + ((size_t)ri * P.us + c) * 16);
                        acc[a][r][0] += dot_bf16x8(w, x);
                    }
                }
            }
        } else {
            // 4-bit: a unit's activations are read once for every row of the chunk; per row
            // unit, scale x dd x (the integer dot) + bias x (the unit's sum of x'). Shared
            // addresses are 32-bit (64-bit generic pointer arithmetic was a third of the loop).
            const uint32_t sbase = smem_u32(slot);
            const uint32_t xq0 = smem_u32(xq) + (uint32_t)(u0 + lane) * 16u;
            const uint32_t xf0 = smem_u32(xf) + (uint32_t)(u0 + lane) * 8u;
            const uint32_t xst = (uint32_t)nu * 16u;
#pragma unroll 2
            for (int c = lane; c < len; c += WARP) {
                const uint32_t co = (uint32_t)(c - lane);   // warp's first unit in the slice
                uint4 xa[4];
#pragma unroll
                for (int kk = 0; kk < 4; kk++) xa[kk] = lds128(xq0 + kk * xst + co * 16u);
                const float2 f = lds_f2(xf0 + co * 8u);   // (dd, sum of x' over the unit)
                const uint32_t go = (uint32_t)((c >> cpg_sh) * sbsz);   // the unit's pair
#pragma unroll
                for (int a = 0; a < MM; a++) {
                    if (a >= mi) break;
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        const uint4 wv = lds128(sbase + rwo[a][r] + co * 16u);
                        const float2 p = sb_pair_s<SBK>(sbase + rso[a][r] + go);
                        float v = __fmaf_rn(p.x * f.x, (float)q4q8_unit(wv, xa), acc[a][r][0]);
                        acc[a][r][0] = __fmaf_rn(p.y, f.y, v);
                    }
                }
            }
        }
        __syncwarp();
        if (qi < ib) {   // refill the slot just read with the chunk S ahead, then finish
            if (lane == 0) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            __syncwarp();
            ring_issue<R, WT>(W, sb, N, nu, cpg_sh, sbsz, P, ring_at<R>(P, qi, qs, ib, nu),
                              ring + (size_t)k * P.slot, &bar[k], pol, lane);
            ring_next(P, qi, qs);
        }
        if (++k == P.S) {
            k = 0;
            ph ^= 1u;
        }
        if (!last) continue;
        if constexpr (R == 1) {   // the chunk's (up to 4) rows together: lane 8 a holds row a
            const float v = warp_sum4(acc[0][0][0], acc[1][0][0], acc[2][0][0], acc[3][0][0],
                                      lane);
            if ((lane & 7) == 0 && (lane >> 3) < mi) {
                const float y = mode == CUK_MV_ACC ? yo + v : v;
                Y[i0 + (lane >> 3)] = y;
                if (y > bv) {   // a lane's rows ascend: the strict > keeps the first maximum
                    bv = y;
                    bi = i0 + (lane >> 3);
                }
            }
        } else {
#pragma unroll
            for (int a = 0; a < MM; a++) {
                if (a >= mi) break;
                const int it = i0 + a;
                if (R == 3) {
                    mv_epilogue<1, R>(acc[a], lane, it, N, Y, ldy, mode, cv);
                    continue;
                }
                // SwiGLU pair 2 it, 2 it + 1: lanes 0..15 end with the gate's sum, 16..31 the up's
                const float v = warp_sum2(acc[a][0][0], acc[a][R - 1][0], lane);
                const float up = __shfl_sync(0xffffffffu, v, 16);
                if (lane == 0) Y[it] = v / (1.0f + expf(-v)) * up;
            }
        }
    }
    if constexpr (R == 1)
        if (amo) ring_argmax(bv, bi, amst, amo, lane, wi, nwb);
    // its items done, the warp asks L2 for its share of the next product's first weights (off
    // unless cuk_set_mv_prefetch; measured slower in the eighth round, before ring blocks paired
    // on an SM)
    prefetch_next(pf, pf_lines, gw, nwarp, lane);
}


// The next product's weights for the tail prefetch (cuk_mv_prefetch_next; consumed by the next
// matvec launch) and the cap in bytes (cuk_set_mv_prefetch).
static const char *g_pf;
static unsigned g_pf_lines;
static struct cuk_conv g_conv;   // CUK_MV_CONV arguments (cuk_matvec_conv, cuk_matvec_q4_conv)
static struct {                  // cuk_mv_argmax_next: the next product's fused argmax
    unsigned long long *st;
    int32_t *out;
    bool done;                   // the last product wrote it (cuk_mv_argmax_done)
} g_am;
extern "C" void cuk_mv_argmax_next(unsigned long long *st, int32_t *out) {
    g_am.st = st;
    g_am.out = out;
    g_am.done = false;
}
extern "C" int cuk_mv_argmax_done(void) { return g_am.done; }
static bool g_preload = true;    // cuk_set_mv_preload: first weights into registers before the wait
extern "C" void cuk_set_mv_preload(int on) { g_preload = on != 0; }
static bool g_stage1 = true;     // cuk_set_mv_stage1: single-round activation staging
extern "C" void cuk_set_mv_stage1(int on) { g_stage1 = on != 0; }
static bool g_stage_x = true;    // cuk_set_mv_stage_x: bf16 products without a norm stage X
extern "C" void cuk_set_mv_stage_x(int on) { g_stage_x = on != 0; }
static size_t g_pf_max;   // 0: off (measured on H100: no gain at batch 1, see docs/CUDA.md)
extern "C" void cuk_set_mv_prefetch(size_t bytes) { g_pf_max = bytes; }
extern "C" void cuk_mv_prefetch_next(const void *w, size_t bytes) {
    if (bytes > g_pf_max) bytes = g_pf_max;
    g_pf = w && bytes >= 128 ? static_cast<const char *>(w) : nullptr;
    g_pf_lines = g_pf ? (unsigned)(bytes / 128) : 0;
}
// After every product: the one-launch hints (tail prefetch, fused argmax) are spent.
static void hints_clear(void) {
    g_pf = nullptr;
    g_pf_lines = 0;
    g_am.st = nullptr;
    g_am.out = nullptr;
}
extern "C" void cuk_mv_hints_clear(void) { hints_clear(); }

// Blocks of 256 threads: the row groups in whole waves of resident blocks (occupancy from the
// runtime, cached per instantiation and shared-memory size; capped by cuk_set_mv_blocks).
#define OCC_CACHE 256
static struct { const void *k; size_t sm; int n; } g_occ[OCC_CACHE];
static int g_n_occ;

static int occupancy(const void *k, size_t sm) {
    for (int i = 0; i < g_n_occ; i++)
        if (g_occ[i].k == k && g_occ[i].sm == sm) return g_occ[i].n;
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k, 256, sm) != cudaSuccess || n < 1) {
        cudaGetLastError();
        n = 1;
    }
    if (g_n_occ < OCC_CACHE) g_occ[g_n_occ++] = {k, sm, n};
    return n;
}

template <typename... P, typename... A>
static void mv_go(void (*k)(P...), int items, size_t sm, cudaStream_t s, A... args) {
    int per_sm = occupancy(reinterpret_cast<const void *>(k), sm);
    if (g_mv_blocks && g_mv_blocks < per_sm) per_sm = g_mv_blocks;
    int blocks = (items + 7) / 8, maxb = per_sm * n_sms(), waves = (blocks + maxb - 1) / maxb;
    launch(k, dim3((unsigned)((blocks + waves - 1) / waves)), dim3(256), sm, s, args...);
}

template <int NT, int R, int WT>
static void mv_r(const void *W, int N, int K, const void *sb, int sbk, int gs, const float *X,
                 float *Y, int64_t ldy, int mode, const float *nw, const int32_t *rows, float eps,
                 cudaStream_t s) {
    int n16 = WT ? K / 32 : K / 8, cpg_sh = 0;
    while (WT && (32 << cpg_sh) < gs) cpg_sh++;
    int items = R == 3 ? N / 3 : (N + R - 1) / R;
    const uint4 *w = static_cast<const uint4 *>(W);
    const char *pf = g_pf;
    unsigned pfl = g_pf_lines;
    const struct cuk_conv cv = g_conv;
    const size_t xb = (size_t)NT * K * sizeof(float);
    const bool sx = WT == 0 && g_stage_x && xb <= CUK_MV_NORM_SMEM;   // bf16: stage X too
    if (nw)
        mv_go(k_mv<NT, R, WT, true>, items, xb, s, w, N, K, n16, sb, sbk, cpg_sh, X, Y, ldy, mode,
              nw, rows, eps, pf, pfl, cv, g_preload, g_stage1, false);
    else
        mv_go(k_mv<NT, R, WT, false>, items, sx ? xb : 0, s, w, N, K, n16, sb, sbk, cpg_sh, X, Y,
              ldy, mode, nw, rows, eps, pf, pfl, cv, g_preload, g_stage1, sx);
}

// Rows per warp: one (two for SwiGLU pairs). 4-bit rows with 2 or 4 rows per warp (sharing
// each activation chunk) measured slower on H100 at batch 1 (1.2B shape: 815 and 656 tok/s
// against 948 with one row): the kernel is latency-bound at 3 blocks per SM, and more rows
// per warp make longer dependent chains per warp. cuk_set_q4_rows forces 2 or 4.
static int g_q4_rows;       // cuk_set_q4_rows: rows per warp for 4-bit matrices (0: default)
extern "C" void cuk_set_q4_rows(int r) { g_q4_rows = r == 1 || r == 2 || r == 4 ? r : 0; }

template <int NT, int WT>
static void mv_t(const void *W, int N, int K, const void *sb, int sbk, int gs, const float *X,
                 float *Y, int64_t ldy, int mode, const float *nw, const int32_t *rows, float eps,
                 cudaStream_t s) {
    int R = 1;
    if (WT && g_q4_rows) R = NT <= 4 || g_q4_rows < 4 ? g_q4_rows : 2;
    if (mode == CUK_MV_SWIGLU && R < 2) R = 2;
    if (mode == CUK_MV_CONV) {
        mv_r<NT, 3, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
        return;
    }
    if constexpr (WT == 1 && NT <= 4) {
        if (R == 4) {
            mv_r<NT, 4, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
            return;
        }
    }
    if (R == 2) mv_r<NT, 2, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
    else mv_r<NT, 1, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
}

template <int WT>
static void mv_any(const void *W, int N, int K, const void *sb, int sbk, int gs, const float *X,
                   int T, float *Y, int64_t ldy, int mode, const float *nw, const int32_t *rows,
                   float eps, cudaStream_t s) {
    switch (T) {
    case 1: mv_t<1, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 2: mv_t<2, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 3: mv_t<3, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 4: mv_t<4, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 5: mv_t<5, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 6: mv_t<6, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 7: mv_t<7, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    default: mv_t<8, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s); break;
    }
}

// Integer-activation 4-bit path (k_mvq8): on by default for up to CUK_MV_Q8_MAX_TOK tokens when
// the quantized activations (3 K bytes per token) fit CUK_MV_Q8_SMEM; cuk_set_q4_q8(0) keeps f32
// activations.
static int g_q8 = 1;
extern "C" void cuk_set_q4_q8(int on) { g_q8 = on != 0; }
extern "C" int cuk_matvec_q8_used(int T, int K) {
    return g_q8 && T <= CUK_MV_Q8_MAX_TOK && (size_t)T * K * 3 <= CUK_MV_Q8_SMEM;
}

template <int NT, int R, int SBK>
static void mvq8_k(const struct cuk_q4 *Wq, int N, int K, const float *X, float *Y, int64_t ldy,
                   int mode, const float *nw, const int32_t *rows, float eps, cudaStream_t s) {
    int n16 = K / 32, cpg_sh = 0;
    while ((32 << cpg_sh) < Wq->gs) cpg_sh++;
    int items = R == 3 ? N / 3 : (N + R - 1) / R;
    const uint4 *w = static_cast<const uint4 *>(static_cast<const void *>(Wq->q));
    size_t sm = (size_t)NT * K * 3;
    if (nw)
        mv_go(k_mvq8<NT, R, true, SBK>, items, sm, s, w, N, K, n16, Wq->sb, cpg_sh, X,
              Y, ldy, mode, nw, rows, eps, g_pf, g_pf_lines, g_conv, g_stage1);
    else
        mv_go(k_mvq8<NT, R, false, SBK>, items, sm, s, w, N, K, n16, Wq->sb, cpg_sh, X,
              Y, ldy, mode, nw, rows, eps, g_pf, g_pf_lines, g_conv, g_stage1);
}

// The scale-bias kind as a template argument: a runtime kind put a branch into every word.
template <int NT, int R>
static void mvq8_r(const struct cuk_q4 *Wq, int N, int K, const float *X, float *Y, int64_t ldy,
                   int mode, const float *nw, const int32_t *rows, float eps, cudaStream_t s) {
    if (Wq->sbk == CUK_SB_BF16)
        mvq8_k<NT, R, CUK_SB_BF16>(Wq, N, K, X, Y, ldy, mode, nw, rows, eps, s);
    else if (Wq->sbk == CUK_SB_F16)
        mvq8_k<NT, R, CUK_SB_F16>(Wq, N, K, X, Y, ldy, mode, nw, rows, eps, s);
    else mvq8_k<NT, R, CUK_SB_F32>(Wq, N, K, X, Y, ldy, mode, nw, rows, eps, s);
}

template <int NT>
static void mvq8_t(const struct cuk_q4 *Wq, int N, int K, const float *X, float *Y, int64_t ldy,
                   int mode, const float *nw, const int32_t *rows, float eps, cudaStream_t s) {
    if (mode == CUK_MV_CONV) mvq8_r<NT, 3>(Wq, N, K, X, Y, ldy, mode, nw, rows, eps, s);
    else if (mode == CUK_MV_SWIGLU) mvq8_r<NT, 2>(Wq, N, K, X, Y, ldy, mode, nw, rows, eps, s);
    else mvq8_r<NT, 1>(Wq, N, K, X, Y, ldy, mode, nw, rows, eps, s);
}

// ---- ring matvec launch (T == 1): plan, shared-memory attribute, dispatch by mode ----
static int g_ring = CUK_RING_BF16 | CUK_RING_Q4;   // cuk_set_mv_ring
static unsigned long g_ring_n;   // launches so far (cuk_mv_ring_count)
static int g_ring_chunk = RING_CHUNK, g_ring_bytes = RING_BYTES;   // cuk_set_mv_ring_sizes
extern "C" void cuk_set_mv_ring(int types) { g_ring = types & (CUK_RING_BF16 | CUK_RING_Q4); }
extern "C" void cuk_set_mv_ring_sizes(int chunk, int bytes) {
    g_ring_chunk = chunk >= 1024 && chunk <= 16384 ? chunk : RING_CHUNK;
    g_ring_bytes = bytes >= 2048 && bytes <= 24576 ? bytes : RING_BYTES;
}
extern "C" unsigned long cuk_mv_ring_count(void) { return g_ring_n; }
static int g_ring_warps = RING_WARPS;   // cuk_set_mv_ring_warps: warps per block (one block per SM)
static size_t g_ring_pair = RING_PAIR_SMEM;   // cuk_set_mv_ring_pair
extern "C" void cuk_set_mv_ring_warps(int n) {
    g_ring_warps = n >= 4 && n <= RING_MAX_WARPS ? n : RING_WARPS;
}
extern "C" void cuk_set_mv_ring_pair(int bytes) {
    g_ring_pair = bytes > 0 ? (size_t)bytes : RING_PAIR_SMEM;
}
// Products with more rows than this take the general kernels. Until the seventh round the 4-bit
// LM head (65536 rows) was faster through k_mvq8 (16 warps per SM) than through the ring's 8;
// with the eighth round's unit loop and 16 ring warps it is faster on the ring (H100, 1.2B
// shape, MLX q4 batch 1: 1820.1 / 1830.6 vs 1810.0 / 1810.0 tok/s, one call), so by default no
// product is excluded.
static int g_ring_max_rows = CUK_RING_MAX_ROWS;   // cuk_set_mv_ring_max_rows
extern "C" void cuk_set_mv_ring_max_rows(int n) { g_ring_max_rows = n > 0 ? n : CUK_RING_MAX_ROWS; }

// Row layout of a chunk of m items (or one item's slice of us units): codes, pairs, slot bytes.
static void ring_slot(ring_plan &P, int R, int WT, int cpg_sh, int sbsz) {
    P.sbs = WT ? (P.us >> cpg_sh) * sbsz : 0;
    P.codes = P.m * R * P.us * 16;
    P.slot = (P.codes + P.m * R * P.sbs + 127) / 128 * 128;
}

// The chunk plan of a ring product and its dynamic shared memory; false: not for this kernel
// (4-bit rows must be whole 1024-element blocks: slices then hold whole scale groups).
// Shared memory (ninth round): a block of the next product can start (PDL) and issue its first
// copies while this one runs only if both blocks fit an SM (228 KB): whether a pair does
// depends on both shapes (for the 1.2B shape every neighbouring pair does: 115 + 92 KB at
// most). So a warp's ring first tries the pair share, (g_ring_pair - activations) / warps,
// holding min(its chunks, 2) slots or more, with fewer items per chunk if needed; products
// whose warps cannot (a long row's slices, big items) take the deeper ring of g_ring_bytes per
// warp. Never more slots than the warp has chunks: a warp with one chunk needs one slot, and a
// small product a small block.
static bool ring_plan_for(int WT, int R, int N, int K, int cpg_sh, int sbk,
                          ring_plan &P, size_t &smem) {
    if (WT ? K % 1024 != 0 : K % 8 != 0) return false;
    const int nu = WT ? K / 32 : K / 8, sbsz = sbk == CUK_SB_F32 ? 8 : 4;
    const size_t rowb = (size_t)nu * 16 + (WT ? (size_t)(nu >> cpg_sh) * sbsz : 0);
    const size_t itemb = (size_t)R * rowb;
    const int items = R == 3 ? N / 3 : (N + R - 1) / R;
    const int nwb = g_ring_warps;
    int per = (items + n_sms() * nwb - 1) / (n_sms() * nwb);   // items of the busiest warp
    if (per < 1) per = 1;
    const size_t act = WT ? (size_t)K * 2 + (size_t)K / 4 : (size_t)K * 4;   // stage_q8 / f32
    if (act >= RING_SMEM_MAX) return false;
    int m0 = 1;
    if (itemb <= (size_t)g_ring_chunk) {   // whole items filling a chunk (not past a warp's share)
        P.ns = 1;
        P.us = nu;
        m0 = (int)(g_ring_chunk / itemb);
        if (m0 > per) m0 = per;
        if (m0 > ring_max_m(R)) m0 = ring_max_m(R);
    } else {                     // slices of one item's rows
        int ns = (int)((itemb + g_ring_chunk - 1) / g_ring_chunk), us = (nu + ns - 1) / ns;
        if (WT) us = (us + 31) / 32 * 32;
        P.us = us;
        P.ns = (nu + us - 1) / us;
    }
    const size_t pair = g_ring_pair > act ? (g_ring_pair - act) / nwb : 0;   // bytes per warp
    const size_t full = (RING_SMEM_MAX - act) / nwb;
    int chunks = 0;
    bool fits = false;
    for (int m = m0; m >= 1 && !fits; m--) {   // the pair share, fewer items per chunk if needed
        P.m = m;
        ring_slot(P, R, WT, cpg_sh, sbsz);
        chunks = (per + m - 1) / m * P.ns;
        fits = (size_t)(chunks < 2 ? chunks : 2) * P.slot <= (pair < full ? pair : full);
    }
    if (fits) {
        P.S = (int)((pair < full ? pair : full) / (size_t)P.slot);
    } else {                                   // the deeper ring
        P.m = m0;
        ring_slot(P, R, WT, cpg_sh, sbsz);
        chunks = (per + m0 - 1) / m0 * P.ns;
        P.S = (int)((size_t)g_ring_bytes / (size_t)P.slot);
        if ((size_t)P.S * P.slot > full) P.S = (int)(full / (size_t)P.slot);   // what the SM holds
        if (P.S < 2) P.S = 2;
    }
    if (P.S > chunks) P.S = chunks;
    if (P.S > RING_MAX_S) P.S = RING_MAX_S;
    if (P.S < 1) P.S = 1;
    smem = (size_t)nwb * P.S * P.slot + act;
    return smem <= RING_SMEM_MAX;
}

// cudaFuncSetAttribute (dynamic shared memory above 48 KB) once per kernel instantiation and
// device (attributes live in a device's context; a second GPU or a reset context needs its own:
// without them a ring launch fails with "invalid argument").
static struct { const void *k; int dev; } g_rattr[64];
static int g_n_rattr;
void ring_forget_attributes(void) { g_n_rattr = 0; }
static bool ring_attr(const void *k) {
    int d = 0;
    cudaGetDevice(&d);
    for (int i = 0; i < g_n_rattr; i++)
        if (g_rattr[i].k == k && g_rattr[i].dev == d) return true;
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, RING_SMEM_MAX) !=
        cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    // the largest carveout, so that the next kernel's block fits beside this one (PDL)
    carveout_once(k, 100);
    if (g_n_rattr < 64) g_rattr[g_n_rattr++] = {k, d};
    return true;
}

template <int R, int WT>
static bool ring_r(const void *W, int N, int K, const void *sb, int sbk, int gs, const float *X,
                   float *Y, int64_t ldy, int mode, const float *nw, const int32_t *rows,
                   float eps, cudaStream_t s) {
    int cpg_sh = 0;
    while (WT && (32 << cpg_sh) < gs) cpg_sh++;
    ring_plan P;
    size_t sm = 0;
    if (!ring_plan_for(WT, R, N, K, cpg_sh, sbk, P, sm)) return false;
    P.st1 = g_stage1;
    if (((uintptr_t)W | (uintptr_t)sb) & 15) return false;
    void (*k)(const char *, int, int, const char *, int, const float *, float *, int64_t, int,
              const float *, const int32_t *, float, struct cuk_conv, ring_plan, const char *,
              unsigned, unsigned long long *, int32_t *);
    if (!WT) k = nw ? k_mvr<R, WT, true, 0> : k_mvr<R, WT, false, 0>;
    else if (sbk == CUK_SB_BF16) k = nw ? k_mvr<R, WT, true, CUK_SB_BF16> : k_mvr<R, WT, false, CUK_SB_BF16>;
    else if (sbk == CUK_SB_F16) k = nw ? k_mvr<R, WT, true, CUK_SB_F16> : k_mvr<R, WT, false, CUK_SB_F16>;
    else k = nw ? k_mvr<R, WT, true, CUK_SB_F32> : k_mvr<R, WT, false, CUK_SB_F32>;
    if (!ring_attr(reinterpret_cast<const void *>(k))) return false;
    launch(k, dim3((unsigned)n_sms()), dim3(g_ring_warps * WARP), sm, s,
           static_cast<const char *>(W), N, K, static_cast<const char *>(sb), cpg_sh, X, Y,
           ldy, mode, nw, rows, eps, g_conv, P, g_pf, g_pf_lines, R == 1 ? g_am.st : nullptr,
           R == 1 ? g_am.out : nullptr);
    if (R == 1 && g_am.out) g_am.done = true;
    g_ring_n++;
    return true;
}

// One token through the ring kernel when it applies (rows per item by mode); false: the caller
// uses the general kernels.
template <int WT>
static bool ring_any(const void *W, int N, int K, const void *sb, int sbk, int gs,
                     const float *X, float *Y, int64_t ldy, int mode, const float *nw,
                     const int32_t *rows, float eps, cudaStream_t s) {
    if (!(g_ring & (WT ? CUK_RING_Q4 : CUK_RING_BF16))) return false;
    if (N > g_ring_max_rows) return false;
    if (mode == CUK_MV_CONV)
        return ring_r<3, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
    if (mode == CUK_MV_SWIGLU)
        return ring_r<2, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
    return ring_r<1, WT>(W, N, K, sb, sbk, gs, X, Y, ldy, mode, nw, rows, eps, s);
}

extern "C" int cuk_matvec_norm_fits(int T, int K) {
    return (size_t)T * K * sizeof(float) <= CUK_MV_NORM_SMEM;
}

extern "C" void cuk_matvec(const uint16_t *W, int N, int K, const float *X, int T, float *Y,
                           int64_t ldy, int mode, const float *nw, const int32_t *rows, float eps,
                           cuk_stream s) {
    if (g_mv_old && mode != CUK_MV_CONV)
        cuk_matvec_old(W, N, K, X, T, Y, ldy, mode, nw, rows, eps, s);
    else if (T == 1 && !g_mv_old &&
             ring_any<0>(W, N, K, nullptr, 0, 0, X, Y, ldy, mode, nw, nw ? rows : nullptr, eps, s))
        ;
    else mv_any<0>(W, N, K, nullptr, 0, 0, X, T, Y, ldy, mode, nw, nw ? rows : nullptr, eps, s);
    hints_clear();
}

extern "C" void cuk_matvec_bf16(const uint16_t *W, int N, int K, const float *X, int T, float *Y,
                                int64_t ldy, cuk_stream s) {
    cuk_matvec(W, N, K, X, T, Y, ldy, CUK_MV_STORE, nullptr, nullptr, 0.f, s);
}

extern "C" void cuk_matvec_q4(const struct cuk_q4 *W, int N, int K, const float *X, int T, float *Y,
                              int64_t ldy, int mode, const float *nw, const int32_t *rows,
                              float eps, cuk_stream s) {
    const int32_t *rw = nw ? rows : nullptr;
    if (T == 1 && cuk_matvec_q8_used(T, K) &&
        ring_any<1>(W->q, N, K, W->sb, W->sbk, W->gs, X, Y, ldy, mode, nw, rw, eps, s)) {
        // done: the ring kernel
    } else if (cuk_matvec_q8_used(T, K)) {
        switch (T) {
        case 1: mvq8_t<1>(W, N, K, X, Y, ldy, mode, nw, rw, eps, s); break;
        case 2: mvq8_t<2>(W, N, K, X, Y, ldy, mode, nw, rw, eps, s); break;
        case 3: mvq8_t<3>(W, N, K, X, Y, ldy, mode, nw, rw, eps, s); break;
        default: mvq8_t<4>(W, N, K, X, Y, ldy, mode, nw, rw, eps, s); break;
        }
    } else {
        mv_any<1>(W->q, N, K, W->sb, W->sbk, W->gs, X, T, Y, ldy, mode, nw, rw, eps, s);
    }
    hints_clear();
}

extern "C" void cuk_matvec_conv(const uint16_t *W, int N, int K, const float *X, int T, float *Y,
                                int64_t ldy, const float *nw, const int32_t *rows, float eps,
                                const struct cuk_conv *cv, cuk_stream s) {
    g_conv = *cv;
    cuk_matvec(W, N, K, X, T, Y, ldy, CUK_MV_CONV, nw, rows, eps, s);
    g_conv = cuk_conv{};
}

extern "C" void cuk_matvec_q4_conv(const struct cuk_q4 *W, int N, int K, const float *X, int T,
                                   float *Y, int64_t ldy, const float *nw, const int32_t *rows,
                                   float eps, const struct cuk_conv *cv, cuk_stream s) {
    g_conv = *cv;
    cuk_matvec_q4(W, N, K, X, T, Y, ldy, CUK_MV_CONV, nw, rows, eps, s);
    g_conv = cuk_conv{};
}

// ---- 4-bit -> bf16 (rows r0 .. r0 + n of W into hi [n, K]; lo: the rounding remainder, so that
// hi + lo carries ~16 mantissa bits), one thread per code word ----
static __device__ __forceinline__ uint32_t f2bf(float f) {
    uint32_t u = __float_as_uint(f);
    return (u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 64)
                                           : ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__global__ void k_q4_bf16(const uint32_t *__restrict__ q, const void *__restrict__ sb, int sbk,
                          int gs, int K, int64_t r0, int64_t n, uint16_t *__restrict__ hi,
                          uint16_t *__restrict__ lo) {
    PDL_ENTER();
    const int64_t wpr = K / 8, total = n * wpr;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / wpr, w = i - r * wpr, row = r0 + r;
        uint32_t code = q[row * wpr + w];
        float2 p = ld_sb(sb, sbk, row * (K / gs) + (w * 8) / gs);
        float f[8];
        q4_word(code, f);
        uint32_t b[8], l[8];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float v = p.x * f[k] + p.y;
            b[k] = f2bf(v);
            float rem = v - __uint_as_float(b[k] << 16);
            l[k] = isfinite(rem) ? f2bf(rem) : 0u;
        }
        reinterpret_cast<uint4 *>(hi)[i] = make_uint4(b[0] | (b[1] << 16), b[2] | (b[3] << 16),
                                                      b[4] | (b[5] << 16), b[6] | (b[7] << 16));
        if (lo)
            reinterpret_cast<uint4 *>(lo)[i] = make_uint4(l[0] | (l[1] << 16), l[2] | (l[3] << 16),
                                                          l[4] | (l[5] << 16), l[6] | (l[7] << 16));
    }
}

extern "C" void cuk_q4_to_bf16(const struct cuk_q4 *W, int K, int64_t r0, int64_t n, uint16_t *hi,
                               uint16_t *lo, cuk_stream s) {
    int64_t b = (n * (K / 8) + 255) / 256;
    launch(k_q4_bf16, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, W->q, W->sb, W->sbk,
           W->gs, K, r0, n, hi, lo);
}

// ---- 4-bit embedding gather: X[t, :] = row tok[t] of E (kern_get_row), one thread per word ----
__global__ void k_embed_q4(const uint32_t *__restrict__ q, const void *__restrict__ sb, int sbk,
                           int gs, const int32_t *tok, int D, float *X) {
    PDL_ENTER();
    const int t = blockIdx.y, wpr = D / 8;
    const int64_t row = tok[t];
    for (int w = blockIdx.x * blockDim.x + threadIdx.x; w < wpr; w += gridDim.x * blockDim.x) {
        float2 p = ld_sb(sb, sbk, row * (D / gs) + (w * 8) / gs);
        float f[8];
        q4_word(q[row * wpr + w], f);
        float4 *o = reinterpret_cast<float4 *>(X + (size_t)t * D + 8 * (size_t)w);
        o[0] = make_float4(p.x * f[0] + p.y, p.x * f[1] + p.y, p.x * f[2] + p.y, p.x * f[3] + p.y);
        o[1] = make_float4(p.x * f[4] + p.y, p.x * f[5] + p.y, p.x * f[6] + p.y, p.x * f[7] + p.y);
    }
}

extern "C" void cuk_embed_q4(const struct cuk_q4 *E, const int32_t *tok, int T, int D, float *X,
                             cuk_stream s) {
    dim3 g((D / 8 + 255) / 256, T);
    launch(k_embed_q4, g, dim3(256), 0, s, E->q, E->sb, E->sbk, E->gs, tok, D, X);
}
