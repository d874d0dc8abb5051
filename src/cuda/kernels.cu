// CUDA kernels of the GPU backend; each one mirrors a CPU op (see kernels.h) and accumulates in
// f32. Invariant: launchers never synchronize and never allocate.
// SPDX-License-Identifier: MIT
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

// ---- embedding gather ----
__global__ void k_embed(const uint16_t *E, const int32_t *tok, int D, float *X) {
    int t = blockIdx.y;
    const uint16_t *row = E + (size_t)tok[t] * D;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < D; i += gridDim.x * blockDim.x)
        X[(size_t)t * D + i] = bf2f(row[i]);
}

extern "C" void cuk_embed(const uint16_t *E, const int32_t *tok, int T, int D, float *X, cuk_stream s) {
    dim3 g((D + 255) / 256, T);
    k_embed<<<g, 256, 0, s>>>(E, tok, D, X);
}

// ---- residual add + RMSNorm: one block per row (256 threads, block reduction) ----
__global__ void __launch_bounds__(256) k_add_rmsnorm(float *__restrict__ x, const float *__restrict__ a,
                                                     const float *__restrict__ w, const int32_t *rows,
                                                     int n, float eps, float *__restrict__ out) {
    __shared__ float red[8];
    int r = blockIdx.x, lane = threadIdx.x % WARP, wi = threadIdx.x / WARP;
    int src = rows ? rows[r] : r;
    float *xr = x + (size_t)src * n;
    const float *ar = a ? a + (size_t)src * n : nullptr;
    float *o = out + (size_t)r * n;
    float ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (ar) {
            v += ar[i];
            if (!rows) xr[i] = v;
        }
        o[i] = v;            // the normalized value is written in place below
        ss += v * v;
    }
    ss = warp_sum(ss);
    if (lane == 0) red[wi] = ss;
    __syncthreads();
    ss = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) ss += red[k];
    float inv = 1.0f / sqrtf(ss / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (o[i] * inv);
}

extern "C" void cuk_add_rmsnorm(float *x, const float *a, const float *w, const int32_t *rows,
                                int n_rows, int n, float eps, float *out, cuk_stream s) {
    if (n_rows <= 0) return;
    k_add_rmsnorm<<<n_rows, 256, 0, s>>>(x, a, w, rows, n, eps, out);
}

__global__ void k_add(float *x, const float *a, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += a[i];
}

extern "C" void cuk_add(float *x, const float *a, int64_t n, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    k_add<<<(unsigned)(b > 65535 ? 65535 : b), 256, 0, s>>>(x, a, n);
}

__global__ void k_add_bias(float *y, const float *bias, int n) {
    int t = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[(size_t)t * n + i] += bias[i];
}

extern "C" void cuk_add_bias(float *y, const float *bias, int T, int n, cuk_stream s) {
    dim3 g((n + 255) / 256, T);
    k_add_bias<<<g, 256, 0, s>>>(y, bias, n);
}

// ---- per-head RMSNorm + RoPE: one warp per (token, head), head staged in shared memory ----
__global__ void k_norm_rope(float *x, int T, int n_heads, int hd, const float *w, float eps,
                            const int32_t *pos, const float *inv_freq, int interleaved) {
    __shared__ float sh[8][CUK_MAX_HEAD_DIM];
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int item = blockIdx.x * 8 + wi;
    if (item >= T * n_heads) return;
    int t = item / n_heads;
    float *v = x + (size_t)item * hd;   // rows of [T, n_heads*hd] are contiguous per head
    float *s = sh[wi];
    float ss = 0;
    for (int i = lane; i < hd; i += WARP) {
        float e = v[i];
        s[i] = e;
        ss += e * e;
    }
    if (w) {
        ss = warp_sum(ss);
        float inv = 1.0f / sqrtf(ss / hd + eps);
        for (int i = lane; i < hd; i += WARP) s[i] = w[i] * (s[i] * inv);
    }
    __syncwarp();
    int half = hd / 2;
    float p = (float)pos[t];
    for (int i = lane; i < half; i += WARP) {
        float ang = p * inv_freq[i];
        float cs = cosf(ang), sn = sinf(ang);
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x1 = s[a], x2 = s[b];
        v[a] = x1 * cs - x2 * sn;
        v[b] = x2 * cs + x1 * sn;
    }
}

extern "C" void cuk_norm_rope(float *x, int T, int n_heads, int hd, const float *w, float eps,
                              const int32_t *pos, const float *inv_freq, int interleaved, cuk_stream s) {
    int items = T * n_heads;
    k_norm_rope<<<(items + 7) / 8, 256, 0, s>>>(x, T, n_heads, hd, w, eps, pos, inv_freq, interleaved);
}

__global__ void k_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

extern "C" void cuk_swiglu(float *g, const float *u, int64_t n, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    k_swiglu<<<(unsigned)(b > 65535 ? 65535 : b), 256, 0, s>>>(g, u, n);
}

// ---- LFM2 short conv: one thread per (token, channel). A token's previous inputs are the
// tokens before it that share its state block (scanned back, at most H found), then the state;
// a second kernel writes the new state from the last token of each sequence. ----
#define CONV_MAX_H 8

__global__ void k_shortconv(const float *z, int T, int D, int K, const float *wc,
                            float *const *conv, int slot, float *y) {
    int k = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (k >= D) return;
    int H = K - 1;
    const float *wk = wc + (size_t)k * K;
    const float *sk = conv[t] + (size_t)slot * D * H + (size_t)k * H;
    const float *B = z + (size_t)t * 3 * D;
    float acc = wk[H] * (B[k] * B[2 * D + k]);
    int c = 0;               // previous same-sequence tokens used so far (m = 1..H back)
    for (int u = t - 1; u >= 0 && c < H; u--) {
        if (conv[u] != conv[t]) continue;
        c++;                 // token u is the c-th previous input: weight index H - c
        const float *Bu = z + (size_t)u * 3 * D;
        acc += wk[H - c] * (Bu[k] * Bu[2 * D + k]);
    }
    for (int j = 0; j < H - c; j++) acc += wk[j] * sk[j + c];
    y[(size_t)t * D + k] = B[D + k] * acc;
}

__global__ void k_shortconv_state(const float *z, int T, int D, int K, float *const *conv,
                                  int slot) {
    int k = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (k >= D) return;
    for (int u = t + 1; u < T; u++)
        if (conv[u] == conv[t]) return;   // not the sequence's last token
    int H = K - 1;
    float *sk = conv[t] + (size_t)slot * D * H + (size_t)k * H;
    float nv[CONV_MAX_H];
    int c = 0;               // chain: t itself, then previous same-sequence tokens
    int u = t;
    for (int j = H - 1; j >= 0; j--) {
        while (u >= 0 && conv[u] != conv[t]) u--;
        if (u >= 0) {
            const float *Bu = z + (size_t)u * 3 * D;
            nv[j] = Bu[k] * Bu[2 * D + k];
            c++;
            u--;
        } else {
            nv[j] = sk[j + c];
        }
    }
    for (int j = 0; j < H; j++) sk[j] = nv[j];
}

extern "C" void cuk_shortconv(const float *z, int T, int D, int K, const float *wc, float *const *conv,
                              int slot, float *y, cuk_stream s) {
    dim3 g((D + 127) / 128, T);
    k_shortconv<<<g, 128, 0, s>>>(z, T, D, K, wc, conv, slot, y);
    k_shortconv_state<<<g, 128, 0, s>>>(z, T, D, K, conv, slot);
}

// ---- KV store ----
__global__ void k_kv_store(const float *k, const float *v, int kvd, float *const *kv,
                           const int32_t *nctx, const int32_t *pos, int slot) {
    int t = blockIdx.x;
    size_t n = (size_t)nctx[t];
    float *K = kv[t] + (size_t)slot * 2 * n * kvd + (size_t)pos[t] * kvd;
    float *V = K + n * kvd;
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        K[i] = k[(size_t)t * kvd + i];
        V[i] = v[(size_t)t * kvd + i];
    }
}

extern "C" void cuk_kv_store(const float *k, const float *v, int T, int kvd, float *const *kv,
                             const int32_t *nctx, const int32_t *pos, int slot, cuk_stream s) {
    k_kv_store<<<T, 256, 0, s>>>(k, v, kvd, kv, nctx, pos, slot);
}

// ---- attention: grid (head, token, split); 4 warps, each an online softmax over its positions;
// lanes own head elements lane + 32 j. Partials (m, l, acc[hd]) go to `part`, merged after. ----
#define ATT_WARPS 4
#define ATT_EPL (CUK_MAX_HEAD_DIM / WARP)

__global__ void k_attention(const float *q, int H, int KVH, int hd, float *const *kv,
                            const int32_t *nctx, const int32_t *pos, int slot, int n_split,
                            float *part) {
    __shared__ float sm[ATT_WARPS][CUK_MAX_HEAD_DIM + 2];
    int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int rep = H / KVH, g = h / rep, kvd = KVH * hd;
    size_t n = (size_t)nctx[t];
    const float *Kb = kv[t] + (size_t)slot * 2 * n * kvd + (size_t)g * hd;
    const float *Vb = Kb + n * kvd;
    int len = pos[t] + 1;
    int chunk = (len + n_split - 1) / n_split;
    int p0 = sp * chunk, p1 = min(len, p0 + chunk);
    float scale = 1.0f / sqrtf((float)hd);
    float qr[ATT_EPL], acc[ATT_EPL];
    const float *qh = q + ((size_t)t * H + h) * hd;
#pragma unroll
    for (int j = 0; j < ATT_EPL; j++) {
        int e = lane + WARP * j;
        qr[j] = e < hd ? qh[e] : 0.f;
        acc[j] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int p = p0 + wi; p < p1; p += ATT_WARPS) {
        const float *k = Kb + (size_t)p * kvd, *v = Vb + (size_t)p * kvd;
        float d = 0;
#pragma unroll
        for (int j = 0; j < ATT_EPL; j++) {
            int e = lane + WARP * j;
            if (e < hd) d += qr[j] * k[e];
        }
        float sc = warp_sum(d) * scale;
        if (sc > m) {
            float corr = expf(m - sc);
            l *= corr;
#pragma unroll
            for (int j = 0; j < ATT_EPL; j++) acc[j] *= corr;
            m = sc;
        }
        float ex = expf(sc - m);
        l += ex;
#pragma unroll
        for (int j = 0; j < ATT_EPL; j++) {
            int e = lane + WARP * j;
            if (e < hd) acc[j] += ex * v[e];
        }
    }
#pragma unroll
    for (int j = 0; j < ATT_EPL; j++) {
        int e = lane + WARP * j;
        if (e < hd) sm[wi][e] = acc[j];
    }
    if (lane == 0) {
        sm[wi][CUK_MAX_HEAD_DIM] = m;
        sm[wi][CUK_MAX_HEAD_DIM + 1] = l;
    }
    __syncthreads();
    if (wi != 0) return;
    float M = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm[w][CUK_MAX_HEAD_DIM]);
    float L = 0, f[ATT_WARPS];
    for (int w = 0; w < ATT_WARPS; w++) {
        float mw = sm[w][CUK_MAX_HEAD_DIM];
        f[w] = mw == -INFINITY ? 0.f : expf(mw - M);
        L += f[w] * sm[w][CUK_MAX_HEAD_DIM + 1];
    }
    float *o = part + (((size_t)t * H + h) * n_split + sp) * (hd + 2);
    for (int e = lane; e < hd; e += WARP) {
        float a = 0;
        for (int w = 0; w < ATT_WARPS; w++) a += f[w] * sm[w][e];
        o[2 + e] = a;
    }
    if (lane == 0) {
        o[0] = M;
        o[1] = L;
    }
}

__global__ void k_attn_merge(const float *part, int T, int H, int hd, int n_split, float *out) {
    int item = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (item >= T * H) return;
    const float *p = part + (size_t)item * n_split * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, p[(size_t)s * (hd + 2)]);
    float L = 0;
    for (int s = 0; s < n_split; s++) {
        float ms = p[(size_t)s * (hd + 2)];
        if (ms != -INFINITY) L += expf(ms - M) * p[(size_t)s * (hd + 2) + 1];
    }
    float *o = out + (size_t)item * hd;
    for (int e = lane; e < hd; e += WARP) {
        float a = 0;
        for (int s = 0; s < n_split; s++) {
            float ms = p[(size_t)s * (hd + 2)];
            if (ms != -INFINITY) a += expf(ms - M) * p[(size_t)s * (hd + 2) + 2 + e];
        }
        o[e] = a / L;
    }
}

extern "C" void cuk_attention(const float *q, int T, int H, int KVH, int hd, float *const *kv,
                              const int32_t *nctx, const int32_t *pos, int slot, int n_split,
                              float *part, float *out, cuk_stream s) {
    dim3 g(H, T, n_split);
    k_attention<<<g, ATT_WARPS * WARP, 0, s>>>(q, H, KVH, hd, kv, nctx, pos, slot, n_split, part);
    k_attn_merge<<<(T * H + 7) / 8, 256, 0, s>>>(part, T, H, hd, n_split, out);
}

extern "C" int cuk_attn_splits(int T, int H, int n_sm) {
    int items = T * H;
    int want = (2 * n_sm + items - 1) / items;
    if (want < 4) want = 4;   // short per-warp chains even when the grid is already full
    return want > CUK_MAX_SPLIT ? CUK_MAX_SPLIT : want;
}

// ---- bf16 matrix-vector (decode): one warp per output row, 8 rows per block; each lane keeps
// U 16-byte weight loads in flight (streamed past L1), activations from L1. ----
static __device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

template <int NT>
static __device__ __forceinline__ void mv_dot(uint4 wv, const float *__restrict__ X, int K, int c,
                                              float *acc) {
    float wf[8];
    wf[0] = __uint_as_float(wv.x << 16); wf[1] = __uint_as_float(wv.x & 0xffff0000u);
    wf[2] = __uint_as_float(wv.y << 16); wf[3] = __uint_as_float(wv.y & 0xffff0000u);
    wf[4] = __uint_as_float(wv.z << 16); wf[5] = __uint_as_float(wv.z & 0xffff0000u);
    wf[6] = __uint_as_float(wv.w << 16); wf[7] = __uint_as_float(wv.w & 0xffff0000u);
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float4 *x = reinterpret_cast<const float4 *>(X + (size_t)t * K) + 2 * c;
        float4 a = __ldg(x), b = __ldg(x + 1);
        acc[t] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w +
                  wf[4] * b.x + wf[5] * b.y + wf[6] * b.z + wf[7] * b.w;
    }
}

template <int NT, int U, int WPR>
__global__ void __launch_bounds__(256) k_matvec(const uint16_t *__restrict__ W, int N, int K,
                                                const float *__restrict__ X, float *__restrict__ Y,
                                                int64_t ldy) {
    __shared__ float red[8][NT];
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int row = blockIdx.x * (8 / WPR) + wi / WPR, sub = wi % WPR;
    bool live = row < N;
    const uint4 *w = reinterpret_cast<const uint4 *>(W + (size_t)(live ? row : 0) * K);
    int n8 = live ? K / 8 : 0;
    const int step = WPR * WARP;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.f;
    int c = sub * WARP + lane;
    for (; c + (U - 1) * step < n8; c += U * step) {
        uint4 wv[U];
#pragma unroll
        for (int u = 0; u < U; u++) wv[u] = ld_stream(w + c + u * step);
#pragma unroll
        for (int u = 0; u < U; u++) mv_dot<NT>(wv[u], X, K, c + u * step, acc);
    }
    for (; c < n8; c += step) mv_dot<NT>(ld_stream(w + c), X, K, c, acc);
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = warp_sum(acc[t]);
    if (WPR == 1) {
        if (live && lane == 0)
#pragma unroll
            for (int t = 0; t < NT; t++) Y[(size_t)t * ldy + row] = acc[t];
        return;
    }
    if (lane == 0)
#pragma unroll
        for (int t = 0; t < NT; t++) red[wi][t] = acc[t];
    __syncthreads();
    if (live && sub == 0 && lane < NT) {
        float v = 0;
#pragma unroll
        for (int k = 0; k < WPR; k++) v += red[wi + k][lane];
        Y[(size_t)lane * ldy + row] = v;
    }
}

template <int NT, int U>
static void mv_launch(const uint16_t *W, int N, int K, const float *X, float *Y, int64_t ldy,
                      cuk_stream s) {
    // Enough warps for the chip: rows of small matrices are shared by several warps.
    int wpr = N >= 8192 ? 1 : N >= 4096 ? 2 : N >= 1024 ? 4 : 8;
    if (K < 1024) wpr = 1;
    unsigned g = (unsigned)((N + 8 / wpr - 1) / (8 / wpr));
    switch (wpr) {
    case 1: k_matvec<NT, U, 1><<<g, 256, 0, s>>>(W, N, K, X, Y, ldy); break;
    case 2: k_matvec<NT, U, 2><<<g, 256, 0, s>>>(W, N, K, X, Y, ldy); break;
    case 4: k_matvec<NT, U, 4><<<g, 256, 0, s>>>(W, N, K, X, Y, ldy); break;
    default: k_matvec<NT, U, 8><<<g, 256, 0, s>>>(W, N, K, X, Y, ldy); break;
    }
}

extern "C" void cuk_matvec_bf16(const uint16_t *W, int N, int K, const float *X, int T, float *Y,
                                int64_t ldy, cuk_stream s) {
    switch (T) {
    case 1: mv_launch<1, 8>(W, N, K, X, Y, ldy, s); break;
    case 2: mv_launch<2, 8>(W, N, K, X, Y, ldy, s); break;
    case 3: mv_launch<3, 4>(W, N, K, X, Y, ldy, s); break;
    case 4: mv_launch<4, 4>(W, N, K, X, Y, ldy, s); break;
    case 5: mv_launch<5, 4>(W, N, K, X, Y, ldy, s); break;
    case 6: mv_launch<6, 4>(W, N, K, X, Y, ldy, s); break;
    case 7: mv_launch<7, 4>(W, N, K, X, Y, ldy, s); break;
    default: mv_launch<8, 4>(W, N, K, X, Y, ldy, s); break;
    }
}

// out[t, i] = silu(gu[t, i]) * gu[t, F + i] over gu [T, 2F] (op_swiglu on a gate|up product).
__global__ void k_swiglu_cat(const float *gu, int T, int F, float *out) {
    int64_t n = (int64_t)T * F;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / F, f = i - t * F;
        float a = gu[t * 2 * F + f];
        out[i] = a / (1.0f + expf(-a)) * gu[t * 2 * F + F + f];
    }
}

extern "C" void cuk_swiglu_cat(const float *gu, int T, int F, float *out, cuk_stream s) {
    int64_t b = ((int64_t)T * F + 255) / 256;
    k_swiglu_cat<<<(unsigned)(b > 65535 ? 65535 : b), 256, 0, s>>>(gu, T, F, out);
}

// Y[t, n] = C[t, n] + C[T + t, n] (C: [2T, N]), the hi + lo halves of one stacked product.
__global__ void k_add_halves(const float *C, int T, int N, float *Y, int64_t ldy) {
    int64_t n = (int64_t)T * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / N, r = i - t * N;
        Y[t * ldy + r] = C[i] + C[n + i];
    }
}

extern "C" void cuk_add_halves(const float *C, int T, int N, float *Y, int64_t ldy, cuk_stream s) {
    int64_t b = ((int64_t)T * N + 255) / 256;
    k_add_halves<<<(unsigned)(b > 65535 ? 65535 : b), 256, 0, s>>>(C, T, N, Y, ldy);
}

__global__ void k_to_bf16(const float *X, int64_t n, uint16_t *Xb) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t u = __float_as_uint(X[i]);
        Xb[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 64)
                                                 : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

extern "C" void cuk_to_bf16(const float *X, int64_t n, uint16_t *Xb, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    k_to_bf16<<<(unsigned)(b > 65535 ? 65535 : b), 256, 0, s>>>(X, n, Xb);
}

// X = hi + lo with hi = bf16(X), lo = bf16(X - hi): two bf16 products then carry ~16 mantissa
// bits of the activations (the precise cuBLAS path).
__global__ void k_to_bf16_split(const float *X, int64_t n, uint16_t *hi, uint16_t *lo) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float x = X[i];
        uint32_t u = __float_as_uint(x);
        uint16_t h = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 64)
                                                      : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        float r = x - __uint_as_float((uint32_t)h << 16);
        uint32_t v = __float_as_uint(r);
        hi[i] = h;
        lo[i] = (v & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0
                                                 : (uint16_t)((v + 0x7fffu + ((v >> 16) & 1u)) >> 16);
    }
}

extern "C" void cuk_to_bf16_split(const float *X, int64_t n, uint16_t *hi, uint16_t *lo, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    k_to_bf16_split<<<(unsigned)(b > 65535 ? 65535 : b), 256, 0, s>>>(X, n, hi, lo);
}
