// CUDA kernels of the GPU backend; each one mirrors a CPU op (see kernels.h) and accumulates in
// f32. Invariant: launchers never synchronize and never allocate.
// SPDX-License-Identifier: MIT
#include "kern_common.cuh"

bool g_pdl = true;
int g_mv_blocks;
int g_mv_old;
extern "C" void cuk_set_pdl(int on) { g_pdl = on != 0; }
extern "C" void cuk_set_mv_blocks(int per_sm) { g_mv_blocks = per_sm > 0 ? per_sm : 0; }
extern "C" void cuk_set_mv_old(int on) { g_mv_old = on != 0; }
int g_carveout = 100;
extern "C" void cuk_set_carveout(int pct) { g_carveout = pct >= 0 && pct <= 100 ? pct : -1; }

// ---- step trace (kernels.h cuk_trace) ----
bool g_trace_rec;
static struct cuk_trace_kernel g_trace_k[CUK_TRACE_MAX_KERNELS];
static int g_trace_nk;
void trace_note(const void *k, dim3 g, dim3 b) {
    if (g_trace_nk >= CUK_TRACE_MAX_KERNELS) return;
    struct cuk_trace_kernel *e = &g_trace_k[g_trace_nk++];
    const char *name = NULL;
    if (cudaFuncGetName(&name, k) != cudaSuccess || !name) {
        cudaGetLastError();
        name = "?";
    }
    e->name = name;
    e->grid[0] = (int)g.x;
    e->grid[1] = (int)g.y;
    e->grid[2] = (int)g.z;
    e->block = (int)(b.x * b.y * b.z);
}
extern "C" int cuk_trace(unsigned long long *d, int note_launches) {
#if !defined(LFMD_CUDA_TRACE)
    if (d) return -1;   // the kernels record nothing in this build
#endif
    g_trace_rec = note_launches != 0;
    if (g_trace_rec) g_trace_nk = 0;
    if (cudaMemcpyToSymbol(g_trace_dev, &d, sizeof d) != cudaSuccess) return -1;
    trace_set_matvec(d);
    // the runner's streams do not wait on the legacy stream these copies (and the caller's
    // counter reset) ran on: finish them before the next kernel starts (current device only)
    return cudaDeviceSynchronize() == cudaSuccess && cudaGetLastError() == cudaSuccess ? 0 : -1;
}
extern "C" int cuk_trace_kernels(const struct cuk_trace_kernel **k) {
    *k = g_trace_k;
    return g_trace_nk;
}

// Sets a kernel's preferred shared-memory carveout once per (kernel, device): function
// attributes belong to a device's context, and again after cuk_forget_attributes (a device
// reset drops them).
static struct { const void *k; int dev, pct; } g_carve[256];
static int g_n_carve;
void carveout_once(const void *k, int pct) {
    int d = 0;
    cudaGetDevice(&d);
    for (int i = 0; i < g_n_carve; i++)
        if (g_carve[i].k == k && g_carve[i].dev == d && g_carve[i].pct == pct) return;
    if (cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, pct) != cudaSuccess)
        cudaGetLastError();
    if (g_n_carve < 256) g_carve[g_n_carve++] = {k, d, pct};
}

extern "C" void cuk_forget_attributes(void) {
    g_n_carve = 0;
    ring_forget_attributes();
}

// ---- embedding gather ----
__global__ void k_embed(const uint16_t *E, const int32_t *tok, int D, float *X) {
    PDL_ENTER();
    int t = blockIdx.y;
    const uint16_t *row = E + (size_t)tok[t] * D;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < D; i += gridDim.x * blockDim.x)
        X[(size_t)t * D + i] = bf2f(row[i]);
}

extern "C" void cuk_embed(const uint16_t *E, const int32_t *tok, int T, int D, float *X,
                          cuk_stream s) {
    dim3 g((D + 255) / 256, T);
    launch(k_embed, dim3(g), dim3(256), 0, s, E, tok, D, X);
}

// ---- residual add + RMSNorm: one block per row (256 threads, block reduction) ----
__global__ void __launch_bounds__(256)
    k_add_rmsnorm(float *__restrict__ x, const float *__restrict__ a, const float *__restrict__ w,
                  const int32_t *rows, int n, float eps, float *__restrict__ out) {
    PDL_ENTER();
    __shared__ float red[8][1];
    int r = blockIdx.x;
    int src = rows ? rows[r] : r;
    float *xr = x + (size_t)src * n;
    const float *ar = a ? a + (size_t)src * n : nullptr;
    float *o = out + (size_t)r * n;
    float ss[1] = {0.f}, inv[1];
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (ar) {
            v += ar[i];
            if (!rows) xr[i] = v;
        }
        o[i] = v;            // the normalized value is written in place below
        ss[0] += v * v;
    }
    block_inv_rms<1>(ss, n, eps, red, inv);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (o[i] * inv[0]);
}

extern "C" void cuk_add_rmsnorm(float *x, const float *a, const float *w, const int32_t *rows,
                                int n_rows, int n, float eps, float *out, cuk_stream s) {
    if (n_rows <= 0) return;
    launch(k_add_rmsnorm, dim3(n_rows), dim3(256), 0, s, x, a, w, rows, n, eps, out);
}

__global__ void k_add(float *x, const float *a, int64_t n) {
    PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] += a[i];
}

extern "C" void cuk_add(float *x, const float *a, int64_t n, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    launch(k_add, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, x, a, n);
}

__global__ void k_add_bias(float *y, const float *bias, int n) {
    PDL_ENTER();
    int t = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[(size_t)t * n + i] += bias[i];
}

extern "C" void cuk_add_bias(float *y, const float *bias, int T, int n, cuk_stream s) {
    dim3 g((n + 255) / 256, T);
    launch(k_add_bias, dim3(g), dim3(256), 0, s, y, bias, n);
}

// ---- per-head RMSNorm + RoPE: one warp per (token, head), head staged in shared memory ----
// Head norm (weight w, optional) and RoPE at position p of one head row src[hd] into s[hd]
// (shared memory), by one warp; ends with __syncwarp. Pairs (a, b): (2i, 2i + 1) when
// interleaved, else (i, i + hd / 2). k_norm_rope, k_qkv_rope_store and the fused attention.
static __device__ __forceinline__ void head_rope(const float *src, const float *w, float eps,
                                                 float p, const float *inv_freq, int interleaved,
                                                 int hd, float *s, int lane) {
    float ss = 0;
    for (int i = lane; i < hd; i += WARP) {
        float e = src[i];
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
    for (int i = lane; i < half; i += WARP) {
        float ang = p * inv_freq[i];
        float cs = cosf(ang), sn = sinf(ang);
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x1 = s[a], x2 = s[b];
        s[a] = x1 * cs - x2 * sn;
        s[b] = x2 * cs + x1 * sn;
    }
    __syncwarp();
}

__global__ void k_norm_rope(float *x, int T, int n_heads, int hd, const float *w, float eps,
                            const int32_t *pos, const float *inv_freq, int interleaved) {
    PDL_ENTER();
    __shared__ float sh[8][CUK_MAX_HEAD_DIM];
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int item = blockIdx.x * 8 + wi;
    if (item >= T * n_heads) return;
    int t = item / n_heads;
    float *v = x + (size_t)item * hd;   // rows of [T, n_heads*hd] are contiguous per head
    float *s = sh[wi];
    head_rope(v, w, eps, (float)pos[t], inv_freq, interleaved, hd, s, lane);
    for (int i = lane; i < hd; i += WARP) v[i] = s[i];
}

extern "C" void cuk_norm_rope(float *x, int T, int n_heads, int hd, const float *w, float eps,
                              const int32_t *pos, const float *inv_freq, int interleaved,
                              cuk_stream s) {
    int items = T * n_heads;
    launch(k_norm_rope, dim3((items + 7) / 8), dim3(256), 0, s, x, T, n_heads, hd, w, eps, pos,
           inv_freq, interleaved);
}

__global__ void k_swiglu(float *g, const float *u, int64_t n) {
    PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

extern "C" void cuk_swiglu(float *g, const float *u, int64_t n, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    launch(k_swiglu, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, g, u, n);
}

// ---- LFM2 short conv: one thread per (token, channel). A token's previous inputs are the
// tokens before it that share its state block (scanned back, at most H found), then the state;
// a second kernel writes the new state from the last token of each sequence. ----
#define CONV_MAX_H 8

__global__ void k_shortconv(const float *z, int T, int D, int K, const float *wc,
                            float *const *conv, int slot, float *y) {
    PDL_ENTER();
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
    PDL_ENTER();
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

// Few tokens (decode): one thread per channel walks the tokens in order, updating each token's
// sequence state in place (the CPU loop of conv_block exactly); one launch.
__global__ void k_shortconv_seq(const float *z, int T, int D, int K, const float *wc,
                                float *const *conv, int slot, float *y) {
    PDL_ENTER();
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= D) return;
    int H = K - 1;
    const float *wk = wc + (size_t)k * K;
    for (int t = 0; t < T; t++) {
        float *sk = conv[t] + (size_t)slot * D * H + (size_t)k * H;
        const float *B = z + (size_t)t * 3 * D;
        float bx = B[k] * B[2 * D + k];
        float acc = wk[H] * bx;
        for (int j = 0; j < H; j++) acc += wk[j] * sk[j];
        for (int j = 0; j + 1 < H; j++) sk[j] = sk[j + 1];
        sk[H - 1] = bx;
        y[(size_t)t * D + k] = B[D + k] * acc;
    }
}

extern "C" void cuk_shortconv(const float *z, int T, int D, int K, const float *wc,
                              float *const *conv, int slot, float *y, cuk_stream s) {
    if (T <= CUK_CONV_SEQ_MAX_T) {
        launch(k_shortconv_seq, dim3((D + 127) / 128), dim3(128), 0, s, z, T, D, K, wc, conv, slot,
               y);
        return;
    }
    dim3 g((D + 127) / 128, T);
    launch(k_shortconv, dim3(g), dim3(128), 0, s, z, T, D, K, wc, conv, slot, y);
    launch(k_shortconv_state, dim3(g), dim3(128), 0, s, z, T, D, K, conv, slot);
}

// ---- KV store ----
__global__ void k_kv_store(const float *k, const float *v, int kvd, float *const *kv,
                           const int32_t *nctx, const int32_t *pos, int slot) {
    PDL_ENTER();
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
    launch(k_kv_store, dim3(T), dim3(256), 0, s, k, v, kvd, kv, nctx, pos, slot);
}

// ---- attention: grid (head, token, split); 4 warps, each an online softmax over its positions;
// lanes own head elements lane + 32 j. Partials (m, l, acc[hd]) go to `part`, merged after. ----
#define ATT_WARPS 4
#define ATT_ROUND 8   // positions per warp whose rows are loaded together (k_attention, hd <= 64)
#define ATT_MIN_CHUNK 16   // eighth round: 16 beat 32 for MLX q4 batch 1 (+1.4%, H100)

// Merges the n_split partials (m, l, acc[hd]) of one (token, head) into out (one warp; loads
// bypass L1: partials of other blocks of the same kernel may have been written after it started).
static __device__ void attn_merge_item(const float *part, int item, int hd, int n_split, float *out,
                                       int lane) {
    const float *p = part + (size_t)item * n_split * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, __ldcg(p + (size_t)s * (hd + 2)));
    float L = 0;
    for (int s = 0; s < n_split; s++) {
        float ms = __ldcg(p + (size_t)s * (hd + 2));
        if (ms != -INFINITY) L += expf(ms - M) * __ldcg(p + (size_t)s * (hd + 2) + 1);
    }
    float *o = out + (size_t)item * hd;
    for (int e = lane; e < hd; e += WARP) {
        float a = 0;
        for (int s = 0; s < n_split; s++) {
            float ms = __ldcg(p + (size_t)s * (hd + 2));
            if (ms != -INFINITY) a += expf(ms - M) * __ldcg(p + (size_t)s * (hd + 2) + 2 + e);
        }
        o[e] = a / L;
    }
}

// ticket (non-NULL): per (token, head) arrival counters, all 0 at entry and left 0; the last
// split block to finish merges the partials into out (no second launch).
// rp.qkv non-NULL: cuk_attention_rope (q from the step's rows; the own position's key and value
// from shared memory, stored in the cache by the first q head of the kv head).
template <int EPL>   // elements of a head row per lane: hd <= 32 EPL (att_kernel)
__global__ void k_attention(const float *q, int H, int KVH, int hd, float *const *kv,
                            const int32_t *nctx, const int32_t *pos, int slot, int n_split,
                            int min_chunk, float *part, unsigned *ticket, float *out,
                            struct cuk_rope rp, int att_round) {
    PDL_ENTER();
    __shared__ float sm[ATT_WARPS][CUK_MAX_HEAD_DIM + 2];
    __shared__ float rq[CUK_MAX_HEAD_DIM], rk[CUK_MAX_HEAD_DIM], rv[CUK_MAX_HEAD_DIM];
    int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int rep = H / KVH, g = h / rep, kvd = KVH * hd;
    size_t n = (size_t)nctx[t];
    const float *Kb = kv[t] + (size_t)slot * 2 * n * kvd + (size_t)g * hd;
    const float *Vb = Kb + n * kvd;
    int len = pos[t] + 1;
    int chunk = max((len + n_split - 1) / n_split, min_chunk);
    int p0 = sp * chunk, p1 = min(len, p0 + chunk);
    float scale = 1.0f / sqrtf((float)hd);
    float qr[EPL], acc[EPL];
    const float *qh = q + ((size_t)t * H + h) * hd;
    const int pc = rp.qkv && p0 <= len - 1 && len - 1 < p1 ? len - 1 : -1;   // own position
    if (rp.qkv) {
        const float *row = rp.qkv + (size_t)t * (H + 2 * KVH) * hd;
        const float fp = (float)pos[t];
        if (wi == 0) {
            head_rope(row + (size_t)h * hd, rp.qn, rp.eps, fp, rp.inv_freq, rp.interleaved, hd,
                      rq, lane);
        } else if (wi == 1 && pc >= 0) {
            head_rope(row + (size_t)(H + g) * hd, rp.kn, rp.eps, fp, rp.inv_freq,
                      rp.interleaved, hd, rk, lane);
        } else if (wi == 2 && pc >= 0) {
            for (int i = lane; i < hd; i += WARP) rv[i] = row[(size_t)(H + KVH + g) * hd + i];
        }
        __syncthreads();
        if (pc >= 0 && h % rep == 0 && wi == 3) {
            float *kd = const_cast<float *>(Kb) + (size_t)pc * kvd;
            float *vd = const_cast<float *>(Vb) + (size_t)pc * kvd;
            for (int i = lane; i < hd; i += WARP) {
                kd[i] = rk[i];
                vd[i] = rv[i];
            }
        }
        qh = rq;
    }
#pragma unroll
    for (int j = 0; j < EPL; j++) {
        int e = lane + WARP * j;
        qr[j] = e < hd ? qh[e] : 0.f;
        acc[j] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    // one position's online-softmax update (k, v: this lane's elements of its key and value)
    auto step = [&](const float (&k)[EPL], const float (&v)[EPL]) {
        float d = 0;
#pragma unroll
        for (int j = 0; j < EPL; j++)
            if (lane + WARP * j < hd) d += qr[j] * k[j];
        float sc = warp_sum(d) * scale;
        if (sc > m) {
            float corr = expf(m - sc);
            l *= corr;
#pragma unroll
            for (int j = 0; j < EPL; j++) acc[j] *= corr;
            m = sc;
        }
        float ex = expf(sc - m);
        l += ex;
#pragma unroll
        for (int j = 0; j < EPL; j++)
            if (lane + WARP * j < hd) acc[j] += ex * v[j];
    };
    // A lane's elements of a key or value row (0 past hd: qr is 0 there, acc stays 0).
    auto row = [&](const float *r, float (&x)[EPL]) {
#pragma unroll
        for (int j = 0; j < EPL; j++) {
            int e = lane + WARP * j;
            x[j] = e < hd ? r[e] : 0.f;
        }
    };
    // The warp's positions in rounds of ATT_ROUND: a round's key and value rows are all loaded
    // before the first update (one memory round trip per round instead of one per position;
    // the updates run in the same order as one at a time). The own position (pc: the split's
    // last) comes from shared memory after the loop, where the loop would have taken it, so the
    // cache rows stay plain global loads.
    const int pe = pc >= 0 ? pc : p1;
    constexpr int RND = EPL >= 8 ? 2 : EPL >= 4 ? 4 : ATT_ROUND;   // kr, vr: 2 RND EPL = 32 regs
    const int rn = min(RND, att_round);   // cuk_set_attn_round (1: one position at a time)
    for (int p = p0 + wi; p < pe; p += ATT_WARPS * rn) {
        float kr[RND][EPL], vr[RND][EPL];
#pragma unroll
        for (int u = 0; u < RND; u++) {
            const int pp = p + u * ATT_WARPS;
            if (u < rn && pp < pe) {
                row(Kb + (size_t)pp * kvd, kr[u]);
                row(Vb + (size_t)pp * kvd, vr[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < RND; u++)
            if (u < rn && p + u * ATT_WARPS < pe) step(kr[u], vr[u]);
    }
    if (pc >= 0 && (pc - p0) % ATT_WARPS == wi) {
        float kr[EPL], vr[EPL];
        row(rk, kr);
        row(rv, vr);
        step(kr, vr);
    }
#pragma unroll
    for (int j = 0; j < EPL; j++) {
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
    if (!ticket) return;
    __threadfence();            // this block's partial is visible before its ticket
    __syncwarp();
    unsigned prev = 0;
    int item = t * H + h;
    if (lane == 0) prev = atomicAdd(&ticket[item], 1u);
    prev = __shfl_sync(0xffffffffu, prev, 0);
    if (prev != (unsigned)n_split - 1) return;
    __threadfence();
    attn_merge_item(part, item, hd, n_split, out, lane);
    if (lane == 0) ticket[item] = 0;
}

__global__ void k_attn_merge(const float *part, int T, int H, int hd, int n_split, float *out) {
    PDL_ENTER();
    int item = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (item >= T * H) return;
    attn_merge_item(part, item, hd, n_split, out, lane);
}

// One-token steps (cuk_attention_rope): positions per split at least this many (splits past the
// context stay empty): with the head norm + RoPE inside and a merge per (token, head), fewer
// fuller splits won at batch 1 (H100, 1.2B shape, contexts 32-232: 4 splits 960.7 / 968.5
// tok/s against 9 splits 953.4 / 957.6, one call; the floor itself within spread in the next).
// cuk_attention (prefill, batches) spreads the context over every split.
static int g_att_min_chunk = ATT_MIN_CHUNK;
extern "C" void cuk_set_attn_min_chunk(int n) { g_att_min_chunk = n > 0 ? n : ATT_MIN_CHUNK; }
static int g_att_round = ATT_ROUND;   // cuk_set_attn_round
extern "C" void cuk_set_attn_round(int n) { g_att_round = n > 0 ? n : ATT_ROUND; }

// k_attention for head size hd: the smallest instance holding a row in its lanes' registers
// (a round of ATT_ROUND key and value rows sized for 256 elements took 206 registers).
static void (*att_kernel(int hd))(const float *, int, int, int, float *const *, const int32_t *,
                                  const int32_t *, int, int, int, float *, unsigned *, float *,
                                  struct cuk_rope, int) {
    if (hd <= WARP) return k_attention<1>;
    if (hd <= 2 * WARP) return k_attention<2>;
    if (hd <= 4 * WARP) return k_attention<4>;
    return k_attention<CUK_MAX_HEAD_DIM / WARP>;
}

extern "C" void cuk_attention(const float *q, int T, int H, int KVH, int hd, float *const *kv,
                              const int32_t *nctx, const int32_t *pos, int slot, int n_split,
                              float *part, unsigned *ticket, float *out, cuk_stream s) {
    dim3 g(H, T, n_split);
    struct cuk_rope none = {};
    launch(att_kernel(hd), dim3(g), dim3(ATT_WARPS * WARP), 0, s, q, H, KVH, hd, kv, nctx, pos,
           slot, n_split, 1, part, ticket, out, none, g_att_round);
    if (!ticket)
        launch(k_attn_merge, dim3((T * H + 7) / 8), dim3(256), 0, s, part, T, H, hd, n_split, out);
}

extern "C" void cuk_attention_rope(const struct cuk_rope *r, int T, int H, int KVH, int hd,
                                   float *const *kv, const int32_t *nctx, const int32_t *pos,
                                   int slot, int n_split, float *part, unsigned *ticket,
                                   float *out, cuk_stream s) {
    dim3 g(H, T, n_split);
    launch(att_kernel(hd), dim3(g), dim3(ATT_WARPS * WARP), 0, s, (const float *)nullptr, H, KVH,
           hd, kv, nctx, pos, slot, n_split, g_att_min_chunk, part, ticket, out, *r, g_att_round);
}

static int g_att_splits;     // fixed attention split count (0: by shape)
extern "C" void cuk_set_attn_splits(int n) { g_att_splits = n > 0 && n <= CUK_MAX_SPLIT ? n : 0; }

extern "C" int cuk_attn_splits(int T, int H, int n_sm) {
    if (g_att_splits) return g_att_splits;
    int items = T * H;
    int want = (2 * n_sm + items - 1) / items;
    if (want < 4) want = 4;   // short per-warp chains even when the grid is already full
    return want > CUK_MAX_SPLIT ? CUK_MAX_SPLIT : want;
}

// ---- previous bf16 matrix-vector kernel (A/B against matvec.cu; cuk_set_mv_old): rows in
// groups of 8 / WPR per block (WPR warps share a row), blocks loop over groups (grid sized to
// whole waves of the chip). Each lane keeps U 16-byte weight loads in flight (streamed past
// L1). The weights of the block's first group are prefetched into L2 before waiting on the
// previous kernel (PDL). NORM: the block first builds the RMS-normalized activations
// (op_rmsnorm with weight nw) in shared memory; otherwise they are read from X through L1.
// Epilogue by mode: store, accumulate (residual add), or SwiGLU of row pairs (2f: gate, 2f+1:
// up) into Y[t, f]. ----
template <int NT, bool SM>
static __device__ __forceinline__ void mv_dot(uint4 wv, const float *__restrict__ X, int K, int c,
                                              float *acc) {
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float x[8];
        ld_x8<SM>(X, (size_t)t * K + 8 * (size_t)c, x);
        acc[t] += dot_bf16x8(wv, x);
    }
}

template <int NT, int U, int WPR, bool NORM>
__global__ void __launch_bounds__(256)
    k_matvec(const uint16_t *__restrict__ W, int N, int K, const float *__restrict__ X, float *Y,
             int64_t ldy, int mode, const float *__restrict__ nw, const int32_t *__restrict__ rows,
             float eps) {
    extern __shared__ float xs[];          // NORM: [NT][K] normalized activations
    __shared__ float red[8][NT];
    constexpr int RPB = 8 / WPR;
    const int step = WPR * WARP;
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP, sub = wi % WPR;
    int groups = (N + RPB - 1) / RPB;
    {   // weights never depend on earlier kernels
        int row = blockIdx.x * RPB + wi / WPR;
        if (row < N) {
            const uint4 *w = reinterpret_cast<const uint4 *>(W + (size_t)row * K);
            int n8 = K / 8, c = sub * WARP + lane;
#pragma unroll
            for (int u = 0; u < U; u++)
                if (c + u * step < n8) prefetch_l2(w + c + u * step);
        }
    }
    pdl_wait();
    pdl_trigger();
    const float *Xa = X;
    if (NORM) {   // the previous prologue: the general staging loops (st1 off)
        stage_norm<NT>(X, K, nw, rows, eps, xs, red, false);
        Xa = xs;
    }
    for (int g = blockIdx.x; g < groups; g += gridDim.x) {
        int row = g * RPB + wi / WPR;
        bool live = row < N;
        const uint4 *w = reinterpret_cast<const uint4 *>(W + (size_t)(live ? row : 0) * K);
        int n8 = live ? K / 8 : 0;
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.f;
        int c = sub * WARP + lane;
        for (; c + (U - 1) * step < n8; c += U * step) {
            uint4 wv[U];
#pragma unroll
            for (int u = 0; u < U; u++) wv[u] = ld_stream(w + c + u * step);
#pragma unroll
            for (int u = 0; u < U; u++) mv_dot<NT, NORM>(wv[u], Xa, K, c + u * step, acc);
        }
        for (; c < n8; c += step) mv_dot<NT, NORM>(ld_stream(w + c), Xa, K, c, acc);
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = warp_sum(acc[t]);
        if (lane == 0)
#pragma unroll
            for (int t = 0; t < NT; t++) red[wi][t] = acc[t];
        __syncthreads();
        if (threadIdx.x < RPB * NT) {
            int j = threadIdx.x / NT, t = threadIdx.x % NT, r = g * RPB + j;
            float v = 0;
#pragma unroll
            for (int k = 0; k < WPR; k++) v += red[j * WPR + k][t];
            if (mode == CUK_MV_SWIGLU) {
                if (!(j & 1) && r + 1 < N) {
                    float u = 0;
#pragma unroll
                    for (int k = 0; k < WPR; k++) u += red[(j + 1) * WPR + k][t];
                    Y[(size_t)t * ldy + r / 2] = v / (1.0f + expf(-v)) * u;
                }
            } else if (r < N) {
                float *y = Y + (size_t)t * ldy + r;
                *y = mode == CUK_MV_ACC ? *y + v : v;
            }
        }
        __syncthreads();
    }
}

// Grid: the row groups in whole waves of resident blocks (per_sm: blocks of 256 threads that fit
// an SM at the instantiation's register count, from ptxas -v: 40 registers at 1 token, 50 at 2,
// at most 58 up to 8; fixed so that nothing is queried during graph capture).
template <typename... P, typename... A>
static void mv_go(void (*k)(P...), int rpb, int per_sm, int N, size_t sm, cudaStream_t s,
                  A... args) {
    int groups = (N + rpb - 1) / rpb;
    int maxb = per_sm * n_sms(), waves = (groups + maxb - 1) / maxb;
    launch(k, dim3((unsigned)((groups + waves - 1) / waves)), dim3(256), sm, s, args...);
}

template <int NT, int U, bool NORM>
static void mv_launch(const uint16_t *W, int N, int K, const float *X, float *Y, int64_t ldy,
                      int mode, const float *nw, const int32_t *rows, float eps, cuk_stream s) {
    // Enough warps for the chip: rows of small matrices are shared by several warps.
    int wpr = N >= 8192 ? 1 : N >= 4096 ? 2 : N >= 1024 ? 4 : 8;
    if (K < 1024) wpr = 1;
    if (mode == CUK_MV_SWIGLU && wpr > 4) wpr = 4;   // row pairs stay in one block
    size_t sm = NORM ? (size_t)NT * K * sizeof(float) : 0;
    int ps = NT == 1 ? 6 : NT == 2 ? 5 : 4;
    if (g_mv_blocks && g_mv_blocks < ps) ps = g_mv_blocks;   // room for the next kernel (PDL)
    switch (wpr) {
    case 1:
        mv_go(k_matvec<NT, U, 1, NORM>, 8, ps, N, sm, s, W, N, K, X, Y, ldy, mode, nw, rows, eps);
        break;
    case 2:
        mv_go(k_matvec<NT, U, 2, NORM>, 4, ps, N, sm, s, W, N, K, X, Y, ldy, mode, nw, rows, eps);
        break;
    case 4:
        mv_go(k_matvec<NT, U, 4, NORM>, 2, ps, N, sm, s, W, N, K, X, Y, ldy, mode, nw, rows, eps);
        break;
    default:
        mv_go(k_matvec<NT, U, 8, NORM>, 1, ps, N, sm, s, W, N, K, X, Y, ldy, mode, nw, rows, eps);
        break;
    }
}

template <bool NORM>
static void mv_any(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                   int mode, const float *nw, const int32_t *rows, float eps, cuk_stream s) {
    switch (T) {
    case 1: mv_launch<1, 8, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 2: mv_launch<2, 8, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 3: mv_launch<3, 4, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 4: mv_launch<4, 4, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 5: mv_launch<5, 4, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 6: mv_launch<6, 4, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    case 7: mv_launch<7, 4, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    default: mv_launch<8, 4, NORM>(W, N, K, X, Y, ldy, mode, nw, rows, eps, s); break;
    }
}

// The previous bf16 matvec (cuk_set_mv_old): kept for A/B timing against matvec.cu.
void cuk_matvec_old(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                    int mode, const float *nw, const int32_t *rows, float eps, cudaStream_t s) {
    if (nw) mv_any<true>(W, N, K, X, T, Y, ldy, mode, nw, rows, eps, s);
    else mv_any<false>(W, N, K, X, T, Y, ldy, mode, nullptr, nullptr, 0.f, s);
}

// ---- fused attention-input step: per (token, head) warp of a q|k|v product row: q heads get
// the optional head RMSNorm + RoPE into q; k heads the same, stored into the KV cache at pos;
// v heads are stored as they are (op_rmsnorm, op_rope_*, op_kv_store). ----
__global__ void k_qkv_rope_store(const float *qkv, int T, int H, int KVH, int hd, const float *qn,
                                 const float *kn, float eps, const int32_t *pos,
                                 const float *inv_freq, int interleaved, float *const *kv,
                                 const int32_t *nctx, int slot, float *q) {
    __shared__ float sh[8][CUK_MAX_HEAD_DIM];
    PDL_ENTER();
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int per = H + 2 * KVH, item = blockIdx.x * 8 + wi;
    if (item >= T * per) return;
    int t = item / per, j = item % per, kvd = KVH * hd;
    const float *src = qkv + (size_t)t * per * hd + (size_t)j * hd;
    size_t n = (size_t)nctx[t];
    float *Kc = kv[t] + (size_t)slot * 2 * n * kvd + (size_t)pos[t] * kvd;
    if (j >= H + KVH) {
        float *V = Kc + n * kvd + (size_t)(j - H - KVH) * hd;
        for (int i = lane; i < hd; i += WARP) V[i] = src[i];
        return;
    }
    float *dst = j < H ? q + ((size_t)t * H + j) * hd : Kc + (size_t)(j - H) * hd;
    float *s = sh[wi];
    head_rope(src, j < H ? qn : kn, eps, (float)pos[t], inv_freq, interleaved, hd, s, lane);
    for (int i = lane; i < hd; i += WARP) dst[i] = s[i];
}

extern "C" void cuk_qkv_rope_store(const float *qkv, int T, int H, int KVH, int hd, const float *qn,
                                   const float *kn, float eps, const int32_t *pos,
                                   const float *inv_freq, int interleaved, float *const *kv,
                                   const int32_t *nctx, int slot, float *q, cuk_stream s) {
    int items = T * (H + 2 * KVH);
    launch(k_qkv_rope_store, dim3((items + 7) / 8), dim3(256), 0, s, qkv, T, H, KVH, hd, qn, kn,
           eps, pos, inv_freq, interleaved, kv, nctx, slot, q);
}

// out[t, f] = silu(gu[t, 2f]) * gu[t, 2f + 1] (op_swiglu on a row-interleaved gate|up product).
__global__ void k_swiglu_pair(const float *gu, int T, int F, float *out) {
    PDL_ENTER();
    int64_t n = (int64_t)T * F;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float2 p = reinterpret_cast<const float2 *>(gu)[i];
        out[i] = p.x / (1.0f + expf(-p.x)) * p.y;
    }
}

extern "C" void cuk_swiglu_pair(const float *gu, int T, int F, float *out, cuk_stream s) {
    int64_t b = ((int64_t)T * F + 255) / 256;
    launch(k_swiglu_pair, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, gu, T, F, out);
}

// ---- greedy pick: out[r] = first index of the largest of row r (the CPU greedy scan: a value
// wins only when strictly greater; rows with no finite maximum give 0). ----
__global__ void __launch_bounds__(1024) k_argmax(const float *x, int V, int32_t *out) {
    __shared__ float bv_s[32];
    __shared__ int bi_s[32];
    PDL_ENTER();
    const float *p = x + (size_t)blockIdx.x * V;
    float bv = -INFINITY;
    int bi = -1;
    if ((V & 3) == 0 && ((uintptr_t)p & 15) == 0) {
        // A thread's loads of a round are all issued before its first compare: one L2 round
        // trip per round of 8 float4 instead of one per logit (a 65536-logit row in ncu on
        // H100: 31 us with the scalar loop below, 9 us). A thread's indices increase through
        // the round, so the strict > keeps the first maximum.
        constexpr int U = 8;
        const float4 *p4 = reinterpret_cast<const float4 *>(p);
        const int n4 = V / 4, step = (int)blockDim.x;
        for (int b = threadIdx.x; b < n4; b += step * U) {
            float4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = b + u * step;
                v[u] = i < n4 ? p4[i] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = 4 * (b + u * step);
                const float e[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (e[j] > bv) {
                        bv = e[j];
                        bi = i + j;
                    }
            }
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            float v = p[i];
            if (v > bv) {
                bv = v;
                bi = i;
            }
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
            bv = ov;
            bi = oi;
        }
    }
    int wi = threadIdx.x / WARP, lane = threadIdx.x % WARP, nw = blockDim.x / WARP;
    if (lane == 0) {
        bv_s[wi] = bv;
        bi_s[wi] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; w++) {
            float ov = bv_s[w];
            int oi = bi_s[w];
            if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
                bv = ov;
                bi = oi;
            }
        }
        out[blockIdx.x] = bi < 0 ? 0 : bi;
    }
}

extern "C" void cuk_argmax(const float *x, int n_rows, int V, int32_t *out, cuk_stream s) {
    if (n_rows <= 0) return;
    launch(k_argmax, dim3(n_rows), dim3(1024), 0, s, x, V, out);
}

// out[t, i] = silu(gu[t, i]) * gu[t, F + i] over gu [T, 2F] (op_swiglu on a gate|up product).
__global__ void k_swiglu_cat(const float *gu, int T, int F, float *out) {
    PDL_ENTER();
    int64_t n = (int64_t)T * F;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / F, f = i - t * F;
        float a = gu[t * 2 * F + f];
        out[i] = a / (1.0f + expf(-a)) * gu[t * 2 * F + F + f];
    }
}

extern "C" void cuk_swiglu_cat(const float *gu, int T, int F, float *out, cuk_stream s) {
    int64_t b = ((int64_t)T * F + 255) / 256;
    launch(k_swiglu_cat, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, gu, T, F, out);
}

// Y[t, n] = C[t, n] + C[T + t, n] (C: [2T, N]), the hi + lo halves of one stacked product.
__global__ void k_add_halves(const float *C, int T, int N, float *Y, int64_t ldy, int accum) {
    PDL_ENTER();
    int64_t n = (int64_t)T * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / N, r = i - t * N;
        float v = C[i] + C[n + i];
        Y[t * ldy + r] = accum ? Y[t * ldy + r] + v : v;
    }
}

extern "C" void cuk_add_halves(const float *C, int T, int N, float *Y, int64_t ldy, int accum,
                               cuk_stream s) {
    int64_t b = ((int64_t)T * N + 255) / 256;
    launch(k_add_halves, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, C, T, N, Y, ldy,
           accum);
}

__global__ void k_to_bf16(const float *X, int64_t n, uint16_t *Xb) {
    PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t u = __float_as_uint(X[i]);
        Xb[i] = (u & 0x7fffffffu) > 0x7f800000u
                    ? (uint16_t)((u >> 16) | 64)
                    : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

extern "C" void cuk_to_bf16(const float *X, int64_t n, uint16_t *Xb, cuk_stream s) {
    int64_t b = (n + 255) / 256;
    launch(k_to_bf16, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, X, n, Xb);
}

// X = hi + lo with hi = bf16(X), lo = bf16(X - hi): two bf16 products then carry ~16 mantissa
// bits of the activations (the precise cuBLAS path).
__global__ void k_to_bf16_split(const float *X, int64_t n, uint16_t *hi, uint16_t *lo) {
    PDL_ENTER();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = X[i];
        uint32_t u = __float_as_uint(x);
        uint16_t h = (u & 0x7fffffffu) > 0x7f800000u
                         ? (uint16_t)((u >> 16) | 64)
                         : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        float r = x - __uint_as_float((uint32_t)h << 16);
        uint32_t v = __float_as_uint(r);
        hi[i] = h;
        lo[i] = (v & 0x7fffffffu) > 0x7f800000u
                    ? (uint16_t)0
                    : (uint16_t)((v + 0x7fffu + ((v >> 16) & 1u)) >> 16);
    }
}

extern "C" void cuk_to_bf16_split(const float *X, int64_t n, uint16_t *hi, uint16_t *lo,
                                  cuk_stream s) {
    int64_t b = (n + 255) / 256;
    launch(k_to_bf16_split, dim3((unsigned)(b > 65535 ? 65535 : b)), dim3(256), 0, s, X, n, hi, lo);
}

// ---- dependency probe (lfmd-cuda-bench --probe; not used by the forward pass) ----
// What one kernel-to-kernel dependency costs when nothing else does: each launch waits on the
// previous one (PDL) and lets the next start; stage >= 1 then stages the RMSNorm of x [K] in
// shared memory in every block (the fused-norm matvec prologue); stage 2 also streams the
// block's share of w (nw 16-byte words, grid-strided) as a product would. One value per block
// goes to y, so nothing is optimized away.
__global__ void __launch_bounds__(256) k_probe(const float *__restrict__ x, int K,
                                               const uint4 *__restrict__ w, int64_t nw, float *y,
                                               int stage) {
    __shared__ float xs[8192];
    __shared__ float red[8];
    const int lane = threadIdx.x % WARP, wi = threadIdx.x / WARP;
    uint4 w0 = make_uint4(0, 0, 0, 0);
    const int64_t i0 = blockIdx.x * (int64_t)blockDim.x + threadIdx.x,
                  step = (int64_t)gridDim.x * blockDim.x;
    if (stage == 2 && i0 < nw) w0 = ld_stream(w + i0);   // weights do not wait (as k_mv)
    pdl_wait();
    pdl_trigger();
    if (stage == 0) {
        if (threadIdx.x == 0) y[blockIdx.x] = 1.0f;
        return;
    }
    float ss = 0;
    for (int i = threadIdx.x; i < K && i < 8192; i += blockDim.x) {
        const float v = x[i];
        xs[i] = v;
        ss += v * v;
    }
    ss = warp_sum(ss);
    if (lane == 0) red[wi] = ss;
    __syncthreads();
    float acc = 0;
    for (int k = 0; k < 8; k++) acc += red[k];
    const float inv = rsqrtf(acc / K + 1e-6f);
    if (stage == 2) {
        acc = (float)(w0.x ^ w0.y ^ w0.z ^ w0.w);
        for (int64_t i = i0 + step; i < nw; i += step) {
            const uint4 v = ld_stream(w + i);
            acc += (float)(v.x ^ v.y ^ v.z ^ v.w) * xs[i & 1023];
        }
        acc = warp_sum(acc);
    }
    if (threadIdx.x == 0) y[blockIdx.x] = acc * inv;
}

extern "C" void cuk_probe(const float *x, int K, const void *w, int64_t wbytes, float *y,
                          int stage, cuk_stream s) {
    launch(k_probe, dim3((unsigned)(2 * n_sms())), dim3(256), 0, s, x, K,
           static_cast<const uint4 *>(w), wbytes / 16, y, stage);
}
