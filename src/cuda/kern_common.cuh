// Device helpers shared by the CUDA kernel files (kernels.cu, matvec.cu): warp sums, bf16
// widening, programmatic dependent launch (PDL) and the launch wrapper that applies it.
// Invariant: included by .cu files only; the launch settings live in kernels.cu.
// SPDX-License-Identifier: MIT
#ifndef LFMD_CUDA_KERN_COMMON_CUH
#define LFMD_CUDA_KERN_COMMON_CUH

#include "kernels.h"

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

// ---- programmatic dependent launch (PDL): a kernel may be scheduled while the one before it
// in the stream drains; every kernel calls pdl_wait() before touching data an earlier kernel
// produced or reads (it returns once that kernel has completed and its writes are visible), then
// pdl_trigger() to let the next one start. Both are no-ops for plain launches. ----
static __device__ __forceinline__ void pdl_wait() {
    asm volatile("griddepcontrol.wait;" ::: "memory");
}
static __device__ __forceinline__ void pdl_trigger() {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

extern bool g_pdl;         // kernels.cu: programmatic dependent launch on
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

// kernels.cu: the previous bf16 matvec (g_mv_old), same contract as cuk_matvec.
void cuk_matvec_old(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                    int mode, const float *nw, const int32_t *rows, float eps, cudaStream_t s);

#endif
