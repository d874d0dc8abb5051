// Device helpers shared by the CUDA kernel files (kernels.cu, matvec.cu): warp sums,
// bf16 widening, programmatic dependent launch (PDL) and the launch wrapper that applies it, the
// 4-bit weight word helpers.
// Invariant: included by .cu files only; the launch settings live in kernels.cu.
// SPDX-License-Identifier: MIT
#ifndef LFMD_CUDA_KERN_COMMON_CUH
#define LFMD_CUDA_KERN_COMMON_CUH

#include "kernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#define WARP 32

static __device__ __forceinline__ float bf2f(uint32_t h) { return __uint_as_float(h << 16); }

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sums over the warp of two values: lanes 0..15 return a's, lanes 16..31 b's (6 shuffles
// instead of two warp_sum's 10).
static __device__ __forceinline__ float warp_sum2(float a, float b, int lane) {
    const bool hi = lane & 16;
    float v = hi ? b : a;
    v += __shfl_xor_sync(0xffffffffu, hi ? a : b, 16);
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sums over the warp of four values: lane l returns the sum of v[l / 8] (lanes 0, 8, 16, 24
// hold v0 .. v3; 6 shuffles instead of four warp_sum's 20).
static __device__ __forceinline__ float warp_sum4(float v0, float v1, float v2, float v3,
                                                  int lane) {
    const bool h16 = lane & 16, h8 = lane & 8;
    float a = h16 ? v2 : v0, b = h16 ? v3 : v1;   // kept: (v0, v1) below lane 16, (v2, v3) above
    a += __shfl_xor_sync(0xffffffffu, h16 ? v0 : v2, 16);
    b += __shfl_xor_sync(0xffffffffu, h16 ? v1 : v3, 16);
    float v = h8 ? b : a;
    v += __shfl_xor_sync(0xffffffffu, h8 ? a : b, 8);
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ---- programmatic dependent launch (PDL): a kernel may be scheduled while the one before it
// in the stream drains; every kernel calls pdl_wait() before touching data an earlier kernel
// produced or reads (it returns once that kernel has completed and its writes are visible), then
// pdl_trigger() to let the next one start. Both are no-ops for plain launches. ----
// Step trace (cuk_trace; built with -DLFMD_CUDA_TRACE=ON only, so that the measured kernels
// stay as they are): when g_trace_dev is set, thread 0 of block 0 of every kernel records the
// global timer once its wait returns (g_trace_dev[0]: records so far, then the times): the
// differences of consecutive records are the kernels' times on the critical path of a graph
// replay. One copy per translation unit (cuk_trace sets both).
static __device__ unsigned long long *g_trace_dev;
void trace_set_matvec(unsigned long long *d);   // matvec.cu
extern bool g_trace_rec;                          // kernels.cu: launch() notes kernels
void trace_note(const void *k, dim3 g, dim3 b);   // kernels.cu

static __device__ __forceinline__ void pdl_wait() {
    asm volatile("griddepcontrol.wait;" ::: "memory");
#if defined(LFMD_CUDA_TRACE)
    if ((threadIdx.x | threadIdx.y | blockIdx.x | blockIdx.y | blockIdx.z) == 0) {
        unsigned long long *b = g_trace_dev;
        if (b) {
            unsigned long long t;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
            const unsigned long long i = atomicAdd(b, 1ull);
            if (i < CUK_TRACE_MAX) b[1 + i] = t;
        }
    }
#endif
}
static __device__ __forceinline__ void pdl_trigger() {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

extern bool g_pdl;         // kernels.cu: programmatic dependent launch on
extern int g_carveout;     // kernels.cu: preferred shared-memory carveout of every launch (-1: default)
void carveout_once(const void *k, int pct);   // kernels.cu
void ring_forget_attributes(void);            // matvec.cu (cuk_forget_attributes)
extern int g_mv_blocks;    // kernels.cu: matvec blocks per SM (0: as many as fit)
extern int g_mv_old;       // kernels.cu: bf16 matvec through the previous kernel (k_matvec)

template <typename... P, typename... A>
static inline void launch(void (*k)(P...), dim3 g, dim3 b, size_t smem, cudaStream_t s, A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = g;
    cfg.blockDim = b;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = g_pdl ? 1 : 0;
    if (g_carveout >= 0) carveout_once(reinterpret_cast<const void *>(k), g_carveout);
    if (g_trace_rec) trace_note(reinterpret_cast<const void *>(k), g, b);
    cudaLaunchKernelEx(&cfg, k, args...);
}

// Multiprocessor count of the current device (cached per device).
static inline int n_sms(void) {
    static int cache[64];
    int d = 0;
    cudaGetDevice(&d);
    if (d < 0 || d >= 64) return 132;
    if (!cache[d]) {
        int n = 0;
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, d);
        cache[d] = n > 0 ? n : 132;
    }
    return cache[d];
}

#define PDL_ENTER() \
    do {            \
        pdl_wait(); \
        pdl_trigger(); \
    } while (0)

// Streamed 16-byte load past L1 (weights are read once per pass).
static __device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

static __device__ __forceinline__ void prefetch_l2(const void *p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// Dot product of 8 bf16 weights (one 16-byte chunk, element 0 in the low half) with x.
static __device__ __forceinline__ float dot_bf16x8(uint4 w, const float (&x)[8]) {
    return __uint_as_float(w.x << 16) * x[0] + __uint_as_float(w.x & 0xffff0000u) * x[1] +
           __uint_as_float(w.y << 16) * x[2] + __uint_as_float(w.y & 0xffff0000u) * x[3] +
           __uint_as_float(w.z << 16) * x[4] + __uint_as_float(w.z & 0xffff0000u) * x[5] +
           __uint_as_float(w.w << 16) * x[6] + __uint_as_float(w.w & 0xffff0000u) * x[7];
}

// ---- 4-bit weights (struct cuk_q4, kernels.h): matvec.cu and kernels.cu ----
// The 8 4-bit codes of word w (element k in bits 4k..4k+3) as floats: each code is placed in
// the low byte of 2^23 (0x4B000000) and 2^23 subtracted (exact).
static __device__ __forceinline__ void q4_word(uint32_t w, float (&q)[8]) {
    const uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu, m = 0x4B000000u;
    const float M = 8388608.0f;
    q[0] = __uint_as_float(__byte_perm(lo, m, 0x7440)) - M;
    q[1] = __uint_as_float(__byte_perm(hi, m, 0x7440)) - M;
    q[2] = __uint_as_float(__byte_perm(lo, m, 0x7441)) - M;
    q[3] = __uint_as_float(__byte_perm(hi, m, 0x7441)) - M;
    q[4] = __uint_as_float(__byte_perm(lo, m, 0x7442)) - M;
    q[5] = __uint_as_float(__byte_perm(hi, m, 0x7442)) - M;
    q[6] = __uint_as_float(__byte_perm(lo, m, 0x7443)) - M;
    q[7] = __uint_as_float(__byte_perm(hi, m, 0x7443)) - M;
}

// Scale and bias packed in one uint32 (CUK_SB_BF16 / CUK_SB_F16: scale in the low half).
static __device__ __forceinline__ float2 sb_unpack(uint32_t v, int sbk) {
    if (sbk == CUK_SB_BF16)
        return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    return make_float2(__half2float(__ushort_as_half((unsigned short)(v & 0xffffu))),
                       __half2float(__ushort_as_half((unsigned short)(v >> 16))));
}

// Scale and bias of group g (global memory).
static __device__ __forceinline__ float2 ld_sb(const void *sb, int sbk, size_t g) {
    if (sbk == CUK_SB_F32) return __ldg(reinterpret_cast<const float2 *>(sb) + g);
    return sb_unpack(__ldg(reinterpret_cast<const uint32_t *>(sb) + g), sbk);
}

// Scale and bias of a group staged in shared memory at 32-bit shared address a, the kind known
// at compile time (the ring kernel's inner loop: a runtime kind made every word a chain of
// branches).
static __device__ __forceinline__ uint32_t lds32(uint32_t a) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
    return v;
}
static __device__ __forceinline__ float2 lds_f2(uint32_t a) {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(a));
    return v;
}
static __device__ __forceinline__ uint4 lds128(uint32_t a) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(a));
    return v;
}
template <int SBK>
static __device__ __forceinline__ float2 sb_pair_s(uint32_t a) {
    if constexpr (SBK == CUK_SB_F32) return lds_f2(a);
    const uint32_t v = lds32(a);
    if constexpr (SBK == CUK_SB_BF16)
        return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    return make_float2(__half2float(__ushort_as_half((unsigned short)(v & 0xffffu))),
                       __half2float(__ushort_as_half((unsigned short)(v >> 16))));
}

static __device__ __forceinline__ uint32_t pack4(int a, int b, int c, int d) {
    return (uint32_t)(a & 0xff) | ((uint32_t)(b & 0xff) << 8) | ((uint32_t)(c & 0xff) << 16) |
           ((uint32_t)(d & 0xff) << 24);
}

// ---- integer activations of 4-bit products (kernels.h, cuk_matvec_q8_used; the host twin is
// q16_units_ref in tests/cuda/test_cuda_kernels.c): k_mvq8 and k_mvr ----
// Activations are quantized per 32-element unit (4 words: one 16-byte unit of 4-bit codes, which
// always lies inside one scale group): dd = amax / 32258 over the unit, q1 = rint(127 x / amax),
// q2 = rint((x - 254 dd q1) / dd), so x' = dd (254 q1 + q2) is within dd / 2 of x. A weight
// unit's integer dot against it then needs one scale, one dd and one int-to-float conversion for
// its 32 elements (per 8-element word before the eighth round).
// Shared-memory layout for N units (one token): the codes of word w at xq[(w & 3) N + (w >> 2)]
// (lanes reading consecutive units read consecutive 16-byte slots); per unit
// xf[u] = (dd, dd * sum(254 q1 + q2)).
// Levels of one word x of a unit whose largest magnitude is amax: codes = q1 of elements 0, 2,
// 4, 6 and 1, 3, 5, 7 (the byte order of a weight word's low and high nibbles), then q2 likewise;
// sq: the word's sum of 254 q1 + q2.
static __device__ __forceinline__ void q8_codes(const float (&x)[8], float amax, uint4 &codes,
                                                int &sq) {
    const float dd = amax / 32258.0f, u = 254.0f * dd;
    const float i1 = amax > 0 ? 127.0f / amax : 0.0f;
    const float i2 = amax > 0 ? 32258.0f / amax : 0.0f;
    int q1[8], q2[8];
    sq = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        q1[j] = __float2int_rn(x[j] * i1);
        const float r = __fmaf_rn(-u, (float)q1[j], x[j]);
        q2[j] = min(127, max(-127, __float2int_rn(r * i2)));
        sq += 254 * q1[j] + q2[j];
    }
    codes = make_uint4(pack4(q1[0], q1[2], q1[4], q1[6]), pack4(q1[1], q1[3], q1[5], q1[7]),
                       pack4(q2[0], q2[2], q2[4], q2[6]), pack4(q2[1], q2[3], q2[5], q2[7]));
}

// Called by all 32 lanes of a warp, the lane holding word i (i % 32 == lane; x all zero and
// active false past the end): quantizes the word against its unit's amax (the unit's 4 lanes)
// and stores its codes and, once per unit, the unit's factors (N units per token).
static __device__ __forceinline__ void q8_unit_store(const float (&x)[8], int i, bool active,
                                                     int N, uint4 *xq, float2 *xf) {
    float amax = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) amax = fmaxf(amax, fabsf(x[j]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    uint4 codes;
    int sq;
    q8_codes(x, amax, codes, sq);
    sq += __shfl_xor_sync(0xffffffffu, sq, 1);
    sq += __shfl_xor_sync(0xffffffffu, sq, 2);
    const float dd = amax / 32258.0f, fy = dd * (float)sq;
    if (active) {
        xq[(i & 3) * N + (i >> 2)] = codes;
        if ((i & 3) == 0) xf[i >> 2] = make_float2(dd, fy);
    }
}

// The sum over the 32 elements of 4-bit weight unit w (4 words of codes q) of q (254 q1 + q2),
// a[k]: the levels of word k of the unit's activations: exact in an int and in a float
// (|.| <= 32 x 15 x 32385 < 2^24).
static __device__ __forceinline__ int q4q8_unit(uint4 w, const uint4 (&a)[4]) {
    const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
    int d1 = 0, d2 = 0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const int lo = (int)(ws[k] & 0x0F0F0F0Fu), hi = (int)((ws[k] >> 4) & 0x0F0F0F0Fu);
        d1 = __dp4a(hi, (int)a[k].y, __dp4a(lo, (int)a[k].x, d1));
        d2 = __dp4a(hi, (int)a[k].w, __dp4a(lo, (int)a[k].z, d2));
    }
    return 254 * d1 + d2;
}

// ---- bulk copies into shared memory completing on an mbarrier (matvec.cu's ring kernel) ----
static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void mbar_init(uint64_t *b, unsigned n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(n) : "memory");
}

static __device__ __forceinline__ void mbar_expect(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)),
                 "r"(bytes)
                 : "memory");
}

static __device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity) {
    uint32_t done;
    do {
        asm volatile("{\n\t.reg .pred p;\n\t"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(smem_u32(b)), "r"(parity)
                     : "memory");
    } while (!done);
}

// Bulk copy of `bytes` (multiple of 16, both addresses 16-byte aligned) into shared memory,
// completing on mbarrier `bar`; weights are read once per step: evict-first in L2.
static __device__ __forceinline__ void bulk_g2s(void *dst, const void *src, unsigned bytes,
                                                uint64_t *bar, uint64_t pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1], %2, [%3], %4;" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar)), "l"(pol)
                 : "memory");
}

// ---- activation staging shared by the matvec kernels (matvec.cu, kernels.cu) ----

// 8 consecutive f32 activations at X + off (16-byte aligned); SM: shared memory, else via L1.
template <bool SM>
static __device__ __forceinline__ void ld_x8(const float *X, size_t off, float (&x)[8]) {
    const float4 *p = reinterpret_cast<const float4 *>(X + off);
    float4 a, b;
    if (SM) {
        a = p[0];
        b = p[1];
    } else {
        a = __ldg(p);
        b = __ldg(p + 1);
    }
    x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
    x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
}

// Block-wide: 1 / rms of each of NT tokens from every thread's partial sums of squares ss
// (warp sums into red [warps][NT], one barrier, then the warps' sums in order), eps added to
// the mean square: the reduction shared by the RMSNorm staging prologues.
template <int NT>
static __device__ __forceinline__ void block_inv_rms(float (&ss)[NT], int K, float eps,
                                                     float (*red)[NT], float (&inv)[NT]) {
    const int lane = threadIdx.x % WARP, wi = threadIdx.x / WARP, nwarps = blockDim.x / WARP;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float v = warp_sum(ss[t]);
        if (lane == 0) red[wi][t] = v;
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float sum = 0;
#pragma unroll
        for (int k = 0; k < nwarps; k++) sum += red[k][t];
        inv[t] = 1.0f / sqrtf(sum / K + eps);
    }
}

// Single-round staging (one token, K <= 8 x threads, X, nw and K 16-byte aligned: the decode
// shape): thread i loads its 8-element word of x and of the norm weight in one round of four
// 16-byte loads, the block reduces the sum of squares, and the word is scaled in registers;
// the general loops below read X twice (two L2 round trips) or round-trip it through shared
// memory. Returns false (nothing done) when the shape does not qualify. x: the thread's word,
// already multiplied by nw and 1 / rms; valid when i < K / 8.
static __device__ __forceinline__ bool norm_word(const float *__restrict__ X, int K,
                                                 const float *__restrict__ nw,
                                                 const int32_t *__restrict__ rows, float eps,
                                                 float (*red)[1], float (&x)[8]) {
    if (K > 8 * (int)blockDim.x || (K & 7) || (((uintptr_t)X | (uintptr_t)nw) & 15)) return false;
    const int i = threadIdx.x;
    const float *xr = X + (size_t)(rows ? rows[0] : 0) * K;
    float g[8], ss[1] = {0.f}, inv[1];
#pragma unroll
    for (int j = 0; j < 8; j++) x[j] = g[j] = 0.f;
    if (i < K / 8) {
        ld_x8<false>(xr, 8 * (size_t)i, x);
        ld_x8<false>(nw, 8 * (size_t)i, g);
#pragma unroll
        for (int j = 0; j < 8; j++) ss[0] += x[j] * x[j];
    }
    block_inv_rms<1>(ss, K, eps, red, inv);
#pragma unroll
    for (int j = 0; j < 8; j++) x[j] = g[j] * (x[j] * inv[0]);
    return true;
}

// Block-wide: xs [NT][K] = RMSNorm of each token's X row (weight nw; token t reads
// X row rows[t] when rows), ending with a block barrier. red: [warps][NT] scratch. st1: norm_word
// where the shape allows. The fused-norm prologue of k_mv, the ring kernel and k_matvec.
template <int NT>
static __device__ __forceinline__ void stage_norm(const float *__restrict__ X, int K,
                                                  const float *__restrict__ nw,
                                                  const int32_t *__restrict__ rows, float eps,
                                                  float *xs, float (*red)[NT], bool st1) {
    if constexpr (NT == 1) {
        float x[8];
        if (st1 && norm_word(X, K, nw, rows, eps, red, x)) {
            if ((int)threadIdx.x < K / 8) {
                float4 *d = reinterpret_cast<float4 *>(xs + 8 * threadIdx.x);
                d[0] = make_float4(x[0], x[1], x[2], x[3]);
                d[1] = make_float4(x[4], x[5], x[6], x[7]);
            }
            __syncthreads();
            return;
        }
    }
    float ss[NT], inv[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float *xr = X + (size_t)(rows ? rows[t] : t) * K;
        ss[t] = 0;
        for (int i = threadIdx.x; i < K; i += blockDim.x) {
            float v = xr[i];
            xs[t * K + i] = v;
            ss[t] += v * v;
        }
    }
    block_inv_rms<NT>(ss, K, eps, red, inv);
#pragma unroll
    for (int t = 0; t < NT; t++)
        for (int i = threadIdx.x; i < K; i += blockDim.x)
            xs[t * K + i] = nw[i] * (xs[t * K + i] * inv[t]);
    __syncthreads();
}

// kernels.cu: the previous bf16 matvec (g_mv_old), same contract as cuk_matvec.
void cuk_matvec_old(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                    int mode, const float *nw, const int32_t *rows, float eps, cudaStream_t s);

#endif
