// Persistent batch-1 decode step for LFM2 (persist.h): one cooperative launch of one block per SM
// runs every phase of the step (products, attention, lm_head + argmax), phases separated by a
// grid barrier (a global arrival counter that only grows within a launch; the last block resets
// it). Products: each warp owns a static contiguous share of the rows of every product and
// streams their weights with bulk copies (cp.async.bulk, completion on an mbarrier) through its
// own ring of PK_DEPTH shared-memory slots; a slot is refilled with the warp's next chunk as soon
// as it is consumed, so the ring runs ahead across phases and DRAM keeps streaming while the grid
// waits at a barrier (weights never depend on activations). After each barrier every block
// stages the phase's input (RMS-normalized when the product has a norm: f32 for bf16 weights, two
// int8 levels per 8-element word for 4-bit weights as in k_mvq8) in shared memory.
// Epilogues as k_mv: store, residual accumulate, SwiGLU of row pairs, in_proj + short conv.
// Attention: (KV head, position chunk) items over the grid's warps; q and k head norm + RoPE
// and the KV store of the current position happen in the same phase; the last item of each KV
// head merges the chunks (ticket). argmax: per-block candidates, reduced by the last block.
// Invariant: accumulation in f32; data written inside the launch is read through L2 (ld.cg).
// SPDX-License-Identifier: MIT
#include "kern_common.cuh"
#include "persist.h"

#include <type_traits>

#define PK_THREADS (PK_WARPS * WARP)
#define PK_RING (PK_WARPS * PK_DEPTH * PK_SLOT)
#define PK_SMEM (PK_RING + PK_XS_BYTES)
#define PK_PH_WORDS ((int)(sizeof(pk_phase) / 4))
static_assert(sizeof(pk_phase) % 4 == 0 && PK_PH_WORDS <= PK_WARPS * WARP, "phase descriptor");

// A warp's position in its chunk sequence (phase, unit, end unit, K-slice) and the fields of
// that phase the copies need, held in registers (the table is read once per phase).
struct pk_cur {
    int p, u, ub, s;
    const char *w, *sb;
    int K, N3, conv, q4, rpu, nseg, ks, upc, sbrow;
};

static __device__ __forceinline__ float ldcg(const float *p) {
    return __ldcg(p);
}
static __device__ __forceinline__ float4 ldcg4(const float *p) {
    return __ldcg(reinterpret_cast<const float4 *>(p));
}

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ unsigned long long gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Grid barrier: arrive, then wait until the arrival counter reaches target (k G for the k-th
// barrier of the launch). relaxed (PK_DBG_BAR): a gpu-scope acq_rel fence around relaxed
// accesses instead of __threadfence + red.release and an acquire load per poll (which
// invalidates L1 on every iteration). tr: this block's arrival time (trace).
static __device__ __forceinline__ void grid_barrier(unsigned *cnt, unsigned target, bool relaxed,
                                                    unsigned long long *tr) {
    __syncthreads();
    if (threadIdx.x == 0) {
        if (tr) *tr = gtime();
        unsigned v;
        if (relaxed) {
            asm volatile("fence.acq_rel.gpu;\n\tred.relaxed.gpu.global.add.u32 [%0], 1;" ::"l"(cnt)
                         : "memory");
            do {
                asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(cnt) : "memory");
            } while ((int)(v - target) < 0);
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
        } else {
            __threadfence();
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(cnt) : "memory");
            do {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(cnt) : "memory");
            } while ((int)(v - target) < 0);
        }
    }
    __syncthreads();
}

// Units [ua, ub) of warp w of block b: contiguous by block (bytes per SM balanced), then by warp.
static __device__ __forceinline__ void warp_range(int units, int b, int G, int w, int &ua,
                                                  int &ub) {
    const long long u0 = (long long)units * b / G, u1 = (long long)units * (b + 1) / G;
    const int n = (int)(u1 - u0);
    ua = (int)u0 + n * w / PK_WARPS;
    ub = (int)u0 + n * (w + 1) / PK_WARPS;
}

// Moves c to the first product phase at or after c.p in which this warp has units.
static __device__ bool cur_seek(pk_cur &c, const pk_args &A, int b, int G, int w) {
    for (; c.p < A.n_ph; c.p++) {
        const pk_phase *P = A.ph + c.p;
        if (P->kind != PK_MV) continue;
        int ua, ub;
        warp_range(P->units, b, G, w, ua, ub);
        if (ua < ub) {
            c.u = ua;
            c.ub = ub;
            c.s = 0;
            c.w = static_cast<const char *>(P->w);
            c.sb = static_cast<const char *>(P->sb);
            c.K = P->K;
            c.N3 = P->N / 3;
            c.conv = P->mode == CUK_MV_CONV;
            c.q4 = P->q4;
            c.rpu = P->rpu;
            c.nseg = P->nseg;
            c.ks = P->ks;
            c.upc = P->upc;
            c.sbrow = P->sbrow;
            return true;
        }
    }
    return false;
}

static __device__ bool cur_next(pk_cur &c, const pk_args &A, int b, int G, int w) {
    if (++c.s < c.ks) return true;
    c.s = 0;
    c.u += c.upc;
    if (c.u < c.ub) return true;
    c.p++;
    return cur_seek(c, A, b, G, w);
}

// First weight row of segment j of the chunk at unit u (rows of a segment are consecutive).
static __device__ __forceinline__ long long seg_row(bool conv, int N3, int rpu, int u, int j) {
    return conv ? u + (long long)j * N3 : (long long)u * rpu + j;
}

// This lane's copy of the chunk at cursor c: lane j < nseg the code rows of segment j, lane
// nseg + j (4-bit) the scale-bias rows of segment j widened to 16-byte boundaries; len 0: none.
// Slot layout: rows r = segment * rps + i, each K / ks weights; 4-bit: scale-bias of segment j
// at R * K / 2 + j * sbseg (+ the source's misalignment).
static __device__ __forceinline__ void chunk_copy(const pk_cur &c, int lane, const char *&src,
                                                  unsigned &len, unsigned &dst) {
    const int K = c.K, nseg = c.nseg;
    const int nu = min(c.upc, c.ub - c.u), R = nu * c.rpu, rps = R / nseg;
    const bool sbl = c.q4 && lane >= nseg;
    const int j = sbl ? lane - nseg : lane;
    len = 0;
    src = nullptr;
    dst = 0;
    if (j >= nseg) return;
    const long long r0 = seg_row(c.conv, c.N3, c.rpu, c.u, j);
    if (!c.q4) {
        const unsigned rb = (unsigned)(K / c.ks) * 2;
        src = c.w + (r0 * K + (long long)c.s * (K / c.ks)) * 2;
        len = rps * rb;
        dst = j * len;
    } else if (!sbl) {
        const unsigned rowc = (unsigned)K / 2;
        src = c.w + r0 * rowc;
        len = rps * rowc;
        dst = j * len;
    } else {
        const uintptr_t sa = reinterpret_cast<uintptr_t>(c.sb) + (uintptr_t)r0 * c.sbrow;
        const uintptr_t a = sa & ~(uintptr_t)15,
                        e = (sa + (uintptr_t)rps * c.sbrow + 15) & ~(uintptr_t)15;
        src = reinterpret_cast<const char *>(a);
        len = (unsigned)(e - a);
        dst = R * ((unsigned)K / 2) + j * (ru16(rps * c.sbrow) + 16);
    }
}

// Asks L2 for the chunk at cursor c (bulk prefetch; no shared memory).
static __device__ __forceinline__ void pk_prefetch(const pk_cur &c, int lane) {
    const char *src;
    unsigned len, dst;
    chunk_copy(c, lane, src, len, dst);
    if (len)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(len) : "memory");
}

// Issues the chunk at cursor c into `slot` (all lanes). Bulk mode: each copy is one
// cp.async.bulk and lane 0 arms the mbarrier with the chunk's byte count; cpa mode
// (PK_DBG_CPA): 16-byte cp.async pieces from every lane, each lane arriving (count 32) when its
// pieces have landed.
static __device__ void pk_issue(const pk_cur &c, unsigned char *slot, uint64_t *bar, int lane,
                                uint64_t pol, int dbg) {
    const char *src;
    unsigned len, dst;
    chunk_copy(c, lane, src, len, dst);
    if (dbg & PK_DBG_CPA) {
        for (int i = 0; i < 6; i++) {
            const char *si = reinterpret_cast<const char *>(
                __shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(src), i));
            const unsigned li = __shfl_sync(0xffffffffu, len, i);
            const unsigned di = __shfl_sync(0xffffffffu, dst, i);
            for (unsigned off = 16 * lane; off < li; off += 16 * WARP)
                asm volatile(
                    "cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(slot + di + off)),
                    "l"(si + off)
                    : "memory");
        }
        asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_u32(bar))
                     : "memory");
        return;
    }
    const unsigned total = __reduce_add_sync(0xffffffffu, len);
    if (lane == 0) mbar_expect(bar, total);
    __syncwarp();
    if (len) {
        if (dbg & PK_DBG_NOHINT)
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                         " [%0], [%1], %2, [%3];" ::"r"(smem_u32(slot + dst)),
                         "l"(src), "r"(len), "r"(smem_u32(bar))
                         : "memory");
        else
            bulk_g2s(slot + dst, src, len, bar, pol);
    }
}

// ---- products on a chunk in shared memory: acc[r] += row r . x (this lane's share) ----

template <int R>
static __device__ __forceinline__ void mv_bf16_r(const unsigned char *slot, const float *xs, int Ks,
                                                 int k0, float (&acc)[PK_MAXR], int lane) {
    const int n16 = Ks / 8;
    float a_[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        a_[r] = 0.f;
#pragma unroll 2
    for (int c = lane; c < n16; c += WARP) {
        const float4 a = *reinterpret_cast<const float4 *>(xs + k0 + 8 * c);
        const float4 b = *reinterpret_cast<const float4 *>(xs + k0 + 8 * c + 4);
        const float x[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int r = 0; r < R; r++)
            a_[r] +=
                dot_bf16x8(*reinterpret_cast<const uint4 *>(slot + (size_t)r * Ks * 2 + 16 * c), x);
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] += a_[r];
}

// Calls f(std::integral_constant<int, R>) for a chunk's row count R in 1 .. PK_MAXR (8), so that
// one small loop per row count is compiled and only that loop runs in a phase.
template <typename F>
static __device__ __forceinline__ void by_rows(int R, F &&f) {
    switch (R) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
    }
}

static __device__ __forceinline__ void mv_bf16(const unsigned char *slot, const float *xs, int Ks,
                                               int k0, int R, float (&acc)[PK_MAXR], int lane) {
    by_rows(R, [&](auto r) { mv_bf16_r<decltype(r)::value>(slot, xs, Ks, k0, acc, lane); });
}

// 4-bit rows (cuda_q4_pack_row order) against integer activations xq / xf (k_mvq8's scheme);
// sbo[r]: offset of row r's scale-bias pairs in the slot.
template <int R, int SBK>
static __device__ __forceinline__ void
mv_q4_r(const unsigned char *slot, const uint4 *xq, const float2 *xf, int K, int wsh,
        const unsigned (&sbo)[PK_MAXR], float (&acc)[PK_MAXR], int lane) {
    const int n16 = K / 32, nfull = n16 >> 5, rowc = K / 2;
    float a_[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        a_[r] = 0.f;
    for (int c = lane; c < n16; c += WARP) {
        uint4 wv[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            wv[r] = *reinterpret_cast<const uint4 *>(slot + (size_t)r * rowc + 16 * c);
        const bool full = (c >> 5) < nfull;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int word = full ? ((c >> 5) << 7) + (c & 31) + 32 * k : 4 * c + k;
            const uint4 a = xq[word];
            const float2 f = xf[word];
            const int g = word >> wsh;
#pragma unroll
            for (int r = 0; r < R; r++) {
                const uint32_t w = k == 0 ? wv[r].x : k == 1 ? wv[r].y : k == 2 ? wv[r].z : wv[r].w;
                a_[r] += q4q8_dot(w, a, f, sb_at(slot + sbo[r], SBK, g));
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] += a_[r];
}

template <int SBK>
static __device__ __forceinline__ void
mv_q4_s(const unsigned char *slot, const uint4 *xq, const float2 *xf, int K, int R, int wsh,
        const unsigned (&sbo)[PK_MAXR], float (&acc)[PK_MAXR], int lane) {
    by_rows(R, [&](auto r) {
        mv_q4_r<decltype(r)::value, SBK>(slot, xq, xf, K, wsh, sbo, acc, lane);
    });
}

static __device__ __forceinline__ void mv_q4(const unsigned char *slot, const uint4 *xq,
                                             const float2 *xf, int K, int R, int sbk, int wsh,
                                             const unsigned (&sbo)[PK_MAXR], float (&acc)[PK_MAXR],
                                             int lane) {
    if (sbk == CUK_SB_BF16)
        mv_q4_s<CUK_SB_BF16>(slot, xq, xf, K, R, wsh, sbo, acc, lane);
    else if (sbk == CUK_SB_F16)
        mv_q4_s<CUK_SB_F16>(slot, xq, xf, K, R, wsh, sbo, acc, lane);
    else
        mv_q4_s<CUK_SB_F32>(slot, xq, xf, K, R, wsh, sbo, acc, lane);
}

// The phase's input in shared memory (all threads of the block): the f32 vector (or the token's
// embedding row; block 0 then also stores it as the residual stream x), RMS-normalized with nw
// when given; bf16 weights: f32 [K]; 4-bit: per 8-element word the two int8 levels and
// (dd, dd * sum) as k_mvq8 computes them.
static __device__ void pk_stage(const pk_phase &P, const pk_args &A, unsigned char *xsm, float *red,
                                int tok) {
    const int K = P.K, nw8 = K / 8, tid = threadIdx.x, lane = tid % WARP, wi = tid / WARP;
    float v[4][8];
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int i = tid + PK_THREADS * m;
        if (i >= nw8) continue;
        if (P.in == PK_IN_X) {
            const float4 a = ldcg4(P.x + 8 * i), b = ldcg4(P.x + 8 * i + 4);
            v[m][0] = a.x;
            v[m][1] = a.y;
            v[m][2] = a.z;
            v[m][3] = a.w;
            v[m][4] = b.x;
            v[m][5] = b.y;
            v[m][6] = b.z;
            v[m][7] = b.w;
        } else if (!A.emb_q4) {
            const uint4 w = __ldg(reinterpret_cast<const uint4 *>(A.emb_w) + (size_t)tok * nw8 + i);
            const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v[m][2 * j] = __uint_as_float(u[j] << 16);
                v[m][2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
            }
        } else {
            const uint32_t *q = static_cast<const uint32_t *>(A.emb_w) + (size_t)tok * nw8;
            const float2 p = ld_sb(A.emb_sb, A.emb_sbk,
                                   (size_t)tok * (K / A.emb_gs) + (size_t)(8 * i) / A.emb_gs);
            float f[8];
            q4_word(__ldg(q + q4_pos(i, nw8)), f);
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[m][j] = p.x * f[j] + p.y;
        }
        if (P.in == PK_IN_EMB && blockIdx.x == 0) {
            float4 *o = reinterpret_cast<float4 *>(A.x + 8 * i);
            o[0] = make_float4(v[m][0], v[m][1], v[m][2], v[m][3]);
            o[1] = make_float4(v[m][4], v[m][5], v[m][6], v[m][7]);
        }
    }
    float inv = 1.0f;
    if (P.nw) {
        float ss = 0;
#pragma unroll
        for (int m = 0; m < 4; m++)
            if (tid + PK_THREADS * m < nw8)
#pragma unroll
                for (int j = 0; j < 8; j++)
                    ss += v[m][j] * v[m][j];
        ss = warp_sum(ss);
        if (lane == 0) red[wi] = ss;
        __syncthreads();
        float s = 0;
#pragma unroll
        for (int k = 0; k < PK_WARPS; k++)
            s += red[k];
        inv = 1.0f / sqrtf(s / K + A.eps);
    }
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int i = tid + PK_THREADS * m;
        if (i >= nw8) continue;
        float x[8];
#pragma unroll
        for (int j = 0; j < 8; j++)
            x[j] = P.nw ? __ldg(P.nw + 8 * i + j) * (v[m][j] * inv) : v[m][j];
        if (!P.q4) {
            float4 *o = reinterpret_cast<float4 *>(xsm) + 2 * i;
            o[0] = make_float4(x[0], x[1], x[2], x[3]);
            o[1] = make_float4(x[4], x[5], x[6], x[7]);
            continue;
        }
        q8_levels(x, reinterpret_cast<uint4 *>(xsm)[i],
                  reinterpret_cast<float2 *>(xsm + (size_t)nw8 * 16)[i]);
    }
    __syncthreads();
}

// Head RMSNorm (w; NULL: none) + NeoX RoPE of one head held as v[E] = element lane + 32 E
// (hd in {16, 32, 64}, hd <= 32 NE; lanes past hd hold zeros). cs, sn: the rotation of
// this lane's pair index for each E. The partner of element e is e +- hd / 2: the same lane
// (E ^ NE / 2) when hd >= 64, else lane ^ hd / 2.
template <int NE>
static __device__ __forceinline__ void head_norm_rope(float (&v)[NE], const float *w, int hd,
                                                      float eps, const float (&cs)[NE],
                                                      const float (&sn)[NE], int lane) {
    if (w) {
        float ss = 0;
#pragma unroll
        for (int E = 0; E < NE; E++)
            ss += v[E] * v[E];
        ss = warp_sum(ss);
        const float inv = 1.0f / sqrtf(ss / hd + eps);
#pragma unroll
        for (int E = 0; E < NE; E++) {
            const int e = lane + WARP * E;
            v[E] = e < hd ? w[e] * (v[E] * inv) : 0.f;
        }
    }
    const int half = hd / 2;
    float o[NE];
#pragma unroll
    for (int E = 0; E < NE; E++) {
        const int e = lane + WARP * E;
        float pv;
        if (half >= WARP)
            pv = v[E ^ (NE / 2)];
        else
            pv = __shfl_xor_sync(0xffffffffu, v[E], half);
        const bool first = (e % hd) < half;
        o[E] = first ? v[E] * cs[E] - pv * sn[E] : v[E] * cs[E] + pv * sn[E];
    }
#pragma unroll
    for (int E = 0; E < NE; E++)
        v[E] = o[E];
}

// Attention of the current token, one warp per (query head, position chunk) item. NE: head
// elements per lane (hd <= 32 NE). wsm: this warp's shared scratch, 3 hd floats: the normalized,
// rotated q head, then k and v of the current position (the item whose chunk holds the position
// reads them from here; the first head of each KV head also stores them in the cache). The last
// item of each head to finish merges its chunks (ticket sync[2 + h]).
template <int NE>
static __device__ void pk_attention(const pk_phase &P, const pk_args &A, float *wsm, int lane,
                                    int gw, int nwarp) {
    const int H = A.H, KVH = A.KVH, hd = A.hd, rep = H / KVH, kvd = KVH * hd;
    const int pos = A.pos[0], len = pos + 1;
    const size_t n = (size_t)A.nctx[0];
    float *Kb = A.kv[0] + (size_t)P.slot * 2 * n * kvd;
    float *Vb = Kb + n * kvd;
    int ppi = 32, nch = (len + 31) / 32;
    if (nch > PK_MAXCH) {
        ppi = ((len + PK_MAXCH - 1) / PK_MAXCH + 31) & ~31;
        nch = (len + ppi - 1) / ppi;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    float cs[NE], sn[NE];
#pragma unroll
    for (int E = 0; E < NE; E++) {
        const int i = (lane + WARP * E) % hd % (hd / 2);
        const float ang = (float)pos * A.inv_freq[i];
        cs[E] = cosf(ang);
        sn[E] = sinf(ang);
    }
    float *qs = wsm, *kt = wsm + hd, *vt = kt + hd;
    for (int it = gw; it < H * nch; it += nwarp) {
        const int h = it % H, ci = it / H, g = h / rep, p0 = ci * ppi, p1 = min(len, p0 + ppi);
        const bool here = p0 <= pos && pos < p1;   // this item holds the current position
        float q[NE], kk[NE], vv0[NE];
#pragma unroll
        for (int E = 0; E < NE; E++) {
            const int e = lane + WARP * E;
            q[E] = e < hd ? ldcg(P.x + (size_t)h * hd + e) : 0.f;
            kk[E] = here && e < hd ? ldcg(P.x + (size_t)(H + g) * hd + e) : 0.f;
            vv0[E] = here && e < hd ? ldcg(P.x + (size_t)(H + KVH + g) * hd + e) : 0.f;
        }
        head_norm_rope<NE>(q, P.qn, hd, A.eps, cs, sn, lane);
#pragma unroll
        for (int E = 0; E < NE; E++)
            if (lane + WARP * E < hd) qs[lane + WARP * E] = q[E];
        if (here) {
            head_norm_rope<NE>(kk, P.kn, hd, A.eps, cs, sn, lane);
#pragma unroll
            for (int E = 0; E < NE; E++) {
                const int e = lane + WARP * E;
                if (e >= hd) continue;
                kt[e] = kk[E];
                vt[e] = vv0[E];
                if (h % rep == 0) {   // for the next steps
                    Kb[(size_t)pos * kvd + (size_t)g * hd + e] = kk[E];
                    Vb[(size_t)pos * kvd + (size_t)g * hd + e] = vv0[E];
                }
            }
        }
        __syncwarp();
        float m = -INFINITY, l = 0.f, acc[NE];
#pragma unroll
        for (int E = 0; E < NE; E++)
            acc[E] = 0.f;
        for (int pb = p0; pb < p1; pb += WARP) {
            const int p = pb + lane, nvalid = min(WARP, p1 - pb);
            const bool valid = p < p1;
            float s = 0.f;
            const float *kr = p == pos ? kt : Kb + (size_t)(valid ? p : p0) * kvd + (size_t)g * hd;
            for (int e0 = 0; e0 < hd; e0 += 32) {
                float4 k4[8];
#pragma unroll
                for (int j = 0; j < 8; j++)
                    k4[j] = e0 + 4 * j >= hd ? make_float4(0, 0, 0, 0)
                            : p == pos       ? *reinterpret_cast<const float4 *>(kr + e0 + 4 * j)
                                             : ldcg4(kr + e0 + 4 * j);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (e0 + 4 * j >= hd) continue;
                    const float4 qq = *reinterpret_cast<const float4 *>(qs + e0 + 4 * j);
                    s += qq.x * k4[j].x + qq.y * k4[j].y + qq.z * k4[j].z + qq.w * k4[j].w;
                }
            }
            const float sc = valid ? s * scale : -INFINITY;
            const float mn = fmaxf(m, warp_max(sc));
            const float corr = expf(m - mn);
            const float pr = valid ? expf(sc - mn) : 0.f;
            l = l * corr + warp_sum(pr);
#pragma unroll
            for (int E = 0; E < NE; E++)
                acc[E] *= corr;
            m = mn;
            float vv[WARP][NE];   // every position's values of this lane's elements at once
#pragma unroll
            for (int j = 0; j < WARP; j++)
#pragma unroll
                for (int E = 0; E < NE; E++) {
                    const int e = lane + WARP * E, pp = pb + j;
                    vv[j][E] = j >= nvalid || e >= hd ? 0.f
                               : pp == pos            ? vt[e]
                                           : ldcg(Vb + (size_t)pp * kvd + (size_t)g * hd + e);
                }
#pragma unroll
            for (int j = 0; j < WARP; j++) {
                const float w = __shfl_sync(0xffffffffu, pr, j);
#pragma unroll
                for (int E = 0; E < NE; E++)
                    acc[E] += w * vv[j][E];
            }
        }
        float *o = A.part + ((size_t)h * PK_MAXCH + ci) * (hd + 2);
        if (lane == 0) {
            o[0] = m;
            o[1] = l;
        }
#pragma unroll
        for (int E = 0; E < NE; E++)
            if (lane + WARP * E < hd) o[2 + lane + WARP * E] = acc[E];
        __syncwarp();
        unsigned prev = 0;
        if (lane == 0) {
            asm volatile("fence.acq_rel.gpu;" ::: "memory");   // the partials before the ticket
            prev = atomicAdd(&A.sync[2 + h], 1u);
        }
        prev = __shfl_sync(0xffffffffu, prev, 0);
        if (prev != (unsigned)nch - 1) continue;
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
        // last item of head h: merge its chunks (lane c holds chunks c and c + 32)
        const float *bp = A.part + (size_t)h * PK_MAXCH * (hd + 2);
        const float m0 = lane < nch ? ldcg(bp + (size_t)lane * (hd + 2)) : -INFINITY;
        const float m1 =
            lane + WARP < nch ? ldcg(bp + (size_t)(lane + WARP) * (hd + 2)) : -INFINITY;
        const float l0 = lane < nch ? ldcg(bp + (size_t)lane * (hd + 2) + 1) : 0.f;
        const float l1 = lane + WARP < nch ? ldcg(bp + (size_t)(lane + WARP) * (hd + 2) + 1) : 0.f;
        const float M = warp_max(fmaxf(m0, m1));
        const float f0 = m0 == -INFINITY ? 0.f : expf(m0 - M);
        const float f1 = m1 == -INFINITY ? 0.f : expf(m1 - M);
        const float L = warp_sum(f0 * l0 + f1 * l1);
        float a[NE];
#pragma unroll
        for (int E = 0; E < NE; E++)
            a[E] = 0.f;
        for (int c0 = 0; c0 < nch; c0 += 16) {
            float pv[16][NE];
#pragma unroll
            for (int j = 0; j < 16; j++)
#pragma unroll
                for (int E = 0; E < NE; E++) {
                    const int e = lane + WARP * E;
                    pv[j][E] = c0 + j < nch && e < hd
                                   ? ldcg(bp + (size_t)(c0 + j) * (hd + 2) + 2 + e)
                                   : 0.f;
                }
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int c = c0 + j;
                const float w = __shfl_sync(0xffffffffu, c < WARP ? f0 : f1, c & 31);
#pragma unroll
                for (int E = 0; E < NE; E++)
                    a[E] += (c < nch ? w : 0.f) * pv[j][E];
            }
        }
#pragma unroll
        for (int E = 0; E < NE; E++) {
            const int e = lane + WARP * E;
            if (e < hd) P.y[(size_t)h * hd + e] = a[E] / L;
        }
        if (lane == 0) A.sync[2 + h] = 0;
    }
}

static __device__ __forceinline__ void pk_attention_any(const pk_phase &P, const pk_args &A,
                                                        float *wsm, int lane, int gw, int nwarp) {
    if (A.hd <= 32)
        pk_attention<1>(P, A, wsm, lane, gw, nwarp);
    else
        pk_attention<2>(P, A, wsm, lane, gw, nwarp);   // hd in {16, 32, 64} (backend.c checks)
}

// (value, index) candidate merge of the greedy pick: larger value, then smaller index; index < 0
// is no candidate (k_argmax's rule).
static __device__ __forceinline__ void best_merge(float &bv, int &bi, float ov, int oi) {
    if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
        bv = ov;
        bi = oi;
    }
}

static __device__ __forceinline__ void best_warp(float &bv, int &bi) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        best_merge(bv, bi, ov, oi);
    }
}

// Epilogue of the unit of lane i: row (channel, pair) `row`; v0, v1, v2: the sums of the unit's
// rows (conv: B, C, x; SwiGLU: gate, up); yold: y[row] before (CUK_MV_ACC, loaded early).
static __device__ __forceinline__ void pk_epilogue(const pk_phase &P, const pk_args &A, float v0,
                                                   float v1, float v2, float yold, int row,
                                                   float &bv, int &bi) {
    if (P.mode == CUK_MV_CONV) {   // v0 = B, v1 = C, v2 = x of channel `row` (mv_epilogue's loop)
        const int D = P.N / 3, Hc = A.conv_L - 1;
        const float *wk = P.convw + (size_t)row * A.conv_L;
        float *sk = A.conv[0] + (size_t)P.slot * D * Hc + (size_t)row * Hc;
        const float bx = v0 * v2;
        float a = wk[Hc] * bx;
        for (int j = 0; j < Hc; j++)
            a += wk[j] * sk[j];
        for (int j = 0; j + 1 < Hc; j++)
            sk[j] = sk[j + 1];
        sk[Hc - 1] = bx;
        P.y[row] = v1 * a;
    } else if (P.mode == CUK_MV_SWIGLU) {
        P.y[row] = v0 / (1.0f + expf(-v0)) * v1;
    } else {
        P.y[row] = P.mode == CUK_MV_ACC ? yold + v0 : v0;
        if (P.lm && v0 > bv) {   // a lane's rows only increase: its first maximum is kept
            bv = v0;
            bi = row;
        }
    }
}

__global__ void __launch_bounds__(PK_THREADS, 1) k_persist(const __grid_constant__ pk_args A) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    extern __shared__ __align__(128) unsigned char pk_sm[];
    __shared__ __align__(8) uint64_t bars[PK_WARPS][PK_DEPTH];
    __shared__ float red[PK_WARPS];
    __shared__ float bvs[PK_WARPS];
    __shared__ int bis[PK_WARPS];
    __shared__ int last;
    __shared__ __align__(16) pk_phase sph[2];   // the current and the next phase's descriptor
    __shared__ unsigned long long wsum[PK_WARPS];
    unsigned char *xsm = pk_sm + PK_RING;
    const int lane = threadIdx.x % WARP, wi = threadIdx.x / WARP, G = gridDim.x, b = blockIdx.x;
    unsigned char *ring = pk_sm + (size_t)wi * PK_DEPTH * PK_SLOT;
    uint64_t *bar = bars[wi];
    if (lane == 0) {
        for (int d = 0; d < PK_DEPTH; d++)
            mbar_init(&bar[d], A.dbg & PK_DBG_CPA ? WARP : 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncwarp();
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    // Start streaming: the first PK_DEPTH chunks of this warp's sequence.
    pk_cur pc;   // the warp's ring cursor (every lane holds the same)
    pc.p = 0;
    bool pv = cur_seek(pc, A, b, G, wi);
    unsigned issued = 0, used = 0;
    for (int d = 0; d < PK_DEPTH && pv; d++) {
        pk_issue(pc, ring + (size_t)(issued % PK_DEPTH) * PK_SLOT, &bar[issued % PK_DEPTH], lane,
                 pol, A.dbg);
        issued++;
        pv = cur_next(pc, A, b, G, wi);
    }
    // L2 prefetch cursor: A.pf chunks ahead of the ring (DRAM keeps streaming while the rings
    // are full at a barrier)
    pk_cur qc = pc;
    bool qv = pv && A.pf > 0;
    for (int d = 0; d < A.pf && qv; d++) {
        pk_prefetch(qc, lane);
        qv = cur_next(qc, A, b, G, wi);
    }
    if (threadIdx.x < PK_PH_WORDS)
        reinterpret_cast<uint32_t *>(&sph[0])[threadIdx.x] =
            reinterpret_cast<const uint32_t *>(A.ph)[threadIdx.x];
    uint32_t nxt = 0;
    __syncthreads();
    const int tok = A.tok[0];
    const bool relaxed = A.dbg & PK_DBG_BAR, stream = A.dbg & PK_DBG_STREAM;
    unsigned long long *tr = A.trace && threadIdx.x == 0 ? A.trace + (size_t)b * 8 : nullptr;
    const size_t tr_ph = (size_t)G * 8;   // trace stride per phase
    unsigned long long wacc = 0;          // trace: this warp's time waiting for chunks (ns)
    long long cy[4] = {0, 0, 0, 0};   // trace, warp 0: cycles waiting, products, refills, epilogues
    if (tr) tr[0] = gtime();
    float bv = -INFINITY;
    int bi = -1;
    bool lm_ran = false;
    for (int p = 0; p < A.n_ph; p++) {
        if (A.trace && lane == 0) {
            wsum[wi] = wacc;
            wacc = 0;
        }
        if (tr && p > 0) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                tr[(p - 1) * tr_ph + 4 + i] = (unsigned long long)cy[i];
                cy[i] = 0;
            }
        }
        // the phase's descriptor, loaded into registers during the previous phase, goes to
        // shared memory before the barrier (read there after every asm memory clobber)
        if (p > 0 && threadIdx.x < PK_PH_WORDS)
            reinterpret_cast<uint32_t *>(&sph[p & 1])[threadIdx.x] = nxt;
        if (p > 0 && !stream) {
            grid_barrier(&A.sync[0], (unsigned)p * (unsigned)G, relaxed,
                         tr ? tr + (p - 1) * tr_ph + 2 : nullptr);
            if (tr) {
                tr[p * tr_ph] = gtime();
                unsigned long long w = 0;
                for (int i = 0; i < PK_WARPS; i++)
                    w = w > wsum[i] ? w : wsum[i];
                tr[(p - 1) * tr_ph + 3] = w;
            }
        }
        if (stream) __syncthreads();   // (no barrier: every warp is done with the last phase)
        const pk_phase &P = sph[p & 1];
        if (threadIdx.x < PK_PH_WORDS && p + 1 < A.n_ph)
            nxt = reinterpret_cast<const uint32_t *>(A.ph + p + 1)[threadIdx.x];
        if (P.kind == PK_ATTN) {
            if (!stream) {
                float *wsm = reinterpret_cast<float *>(xsm) + wi * (PK_XS_BYTES / 4 / PK_WARPS);
                const int gw = wi * G + b, nwarp = G * PK_WARPS;
                pk_attention_any(P, A, wsm, lane, gw, nwarp);
            }
            if (tr) tr[p * tr_ph + 1] = tr[p * tr_ph];
            continue;
        }
        if (!stream) pk_stage(P, A, xsm, red, tok);
        if (tr) tr[p * tr_ph + 1] = gtime();
        int ua, ub;
        warp_range(P.units, b, G, wi, ua, ub);
        const int Ks = P.K / P.ks, rowc = P.K / 2;
        const bool conv = P.mode == CUK_MV_CONV;
        int wsh = 2;
        while ((32 << (wsh - 2)) < P.gs)
            wsh++;
        for (int u = ua; u < ub; u += P.upc) {
            const int nu = min(P.upc, ub - u), R = nu * P.rpu, rps = R / P.nseg;
            unsigned sbo[PK_MAXR];
            if (P.q4) {
                const unsigned sbseg = ru16(rps * P.sbrow) + 16;
#pragma unroll
                for (int r = 0; r < PK_MAXR; r++) {
                    const int j = r / rps, i = r % rps;
                    const uintptr_t sa = reinterpret_cast<uintptr_t>(P.sb) +
                                         (uintptr_t)seg_row(conv, P.N / 3, P.rpu, u, j) * P.sbrow;
                    sbo[r] = R * rowc + j * sbseg + (unsigned)(sa & 15) + i * P.sbrow;
                }
            }
            float acc[PK_MAXR];
#pragma unroll
            for (int r = 0; r < PK_MAXR; r++)
                acc[r] = 0.f;
            // the residual value the epilogue adds to, loaded now: its latency hides behind the
            // product instead of following it
            const float yold = P.mode == CUK_MV_ACC && lane < nu ? ldcg(P.y + u + lane) : 0.f;
            for (int s = 0; s < P.ks; s++) {
                const unsigned k = used % PK_DEPTH;
                unsigned char *slot = ring + (size_t)k * PK_SLOT;
                long long c0 = 0;
                if (A.trace) {
                    const unsigned long long t0 = gtime();
                    c0 = clock64();
                    mbar_wait(&bar[k], (used / PK_DEPTH) & 1);
                    wacc += gtime() - t0;
                    const long long c1 = clock64();
                    cy[0] += c1 - c0;
                    c0 = c1;
                } else {
                    mbar_wait(&bar[k], (used / PK_DEPTH) & 1);
                }
                if (stream || (A.dbg & PK_DBG_NOMV)) {
                } else if (P.q4) {
                    mv_q4(slot, reinterpret_cast<const uint4 *>(xsm),
                          reinterpret_cast<const float2 *>(xsm + (size_t)(P.K / 8) * 16), P.K, R,
                          P.sbk, wsh, sbo, acc, lane);
                } else {
                    mv_bf16(slot, reinterpret_cast<const float *>(xsm), Ks, s * Ks, R, acc, lane);
                }
                __syncwarp();
                if (A.trace) {
                    const long long c1 = clock64();
                    cy[1] += c1 - c0;
                    c0 = c1;
                }
                used++;
                if (pv) {   // refill the slot just read with the chunk PK_DEPTH ahead
                    if (lane == 0 && !(A.dbg & PK_DBG_NOFENCE))
                        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
                    __syncwarp();
                    pk_issue(pc, slot, &bar[k], lane, pol, A.dbg);
                    issued++;
                    pv = cur_next(pc, A, b, G, wi);
                }
                if (qv) {
                    pk_prefetch(qc, lane);
                    qv = cur_next(qc, A, b, G, wi);
                }
                if (A.trace) cy[2] += clock64() - c0;
            }
            const long long ce = A.trace ? clock64() : 0;
            if (stream) continue;
            // slot row r holds row q of unit i: conv r = q * nu + i, else r = i * rpu + q
            float v0 = 0.f, v1 = 0.f, v2 = 0.f;
#pragma unroll
            for (int r = 0; r < PK_MAXR; r++) {
                if (r >= R) break;
                const float t = warp_sum(acc[r]);
                const int i = conv ? r % nu : r / P.rpu, q = conv ? r / nu : r % P.rpu;
                if (lane == i) {
                    if (q == 0)
                        v0 = t;
                    else if (q == 1)
                        v1 = t;
                    else
                        v2 = t;
                }
            }
            if (lane < nu) pk_epilogue(P, A, v0, v1, v2, yold, u + lane, bv, bi);
            if (A.trace) {
                __syncwarp();
                cy[3] += clock64() - ce;
            }
        }
        if (P.lm && A.greedy && !stream) {
            lm_ran = true;
            best_warp(bv, bi);
            if (lane == 0) {
                bvs[wi] = bv;
                bis[wi] = bi;
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                for (int w = 1; w < PK_WARPS; w++)
                    best_merge(bv, bi, bvs[w], bis[w]);
                A.cand_v[b] = bv;
                A.cand_i[b] = bi;
            }
        }
    }
    if (A.trace && lane == 0) wsum[wi] = wacc;
    __syncthreads();
    if (tr) {
        tr[(A.n_ph - 1) * tr_ph + 2] = gtime();
        unsigned long long w = 0;
        for (int i = 0; i < PK_WARPS; i++)
            w = w > wsum[i] ? w : wsum[i];
        tr[(A.n_ph - 1) * tr_ph + 3] = w;
#pragma unroll
        for (int i = 0; i < 4; i++)
            tr[(A.n_ph - 1) * tr_ph + 4 + i] = (unsigned long long)cy[i];
    }
    // Done ticket: the last block to finish picks the token and resets the counters.
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(&A.sync[1], 1u) == (unsigned)G - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (lm_ran) {
        bv = -INFINITY;
        bi = -1;
        for (int k = threadIdx.x; k < G; k += PK_THREADS)
            best_merge(bv, bi, __ldcg(A.cand_v + k), __ldcg(A.cand_i + k));
        best_warp(bv, bi);
        if (lane == 0) {
            bvs[wi] = bv;
            bis[wi] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < PK_WARPS; w++)
                best_merge(bv, bi, bvs[w], bis[w]);
            A.amax[0] = bi < 0 ? 0 : bi;
        }
    }
    if (threadIdx.x == 0) {
        A.sync[0] = 0;
        A.sync[1] = 0;
    }
#endif
}

extern "C" int cuk_persist_geom(struct pk_phase *p) {
    const int K = p->K, N = p->N;
    if (p->kind != PK_MV) return 0;
    if (K < 8 || K % 8 || K > 8192 || N < 1) return -1;
    p->rpu = p->mode == CUK_MV_CONV ? 3 : p->mode == CUK_MV_SWIGLU ? 2 : 1;
    if (N % p->rpu) return -1;
    p->units = N / p->rpu;
    p->sbrow = 0;
    if (!p->q4) {
        const int rowb = 2 * K;
        if (p->rpu * rowb <= PK_SLOT) {
            p->ks = 1;
            p->nseg = p->mode == CUK_MV_CONV ? 3 : 1;
            p->upc = PK_SLOT / (p->rpu * rowb);
            if (p->upc > PK_MAXR / p->rpu) p->upc = PK_MAXR / p->rpu;
            return 0;
        }
        int ks = 2;
        while (p->rpu * rowb / ks > PK_SLOT || K % (8 * ks)) {
            ks *= 2;
            if (ks > K / 8) return -1;
        }
        p->ks = ks;
        p->nseg = p->rpu;
        p->upc = 1;
        return 0;
    }
    if (K % 32 || (p->gs != 32 && p->gs != 64 && p->gs != 128) || K % p->gs) return -1;
    p->sbrow = (K / p->gs) * (p->sbk == CUK_SB_F32 ? 8 : 4);
    p->ks = 1;
    p->nseg = p->mode == CUK_MV_CONV ? 3 : 1;
    for (int upc = PK_MAXR / p->rpu; upc >= 1; upc--) {
        const int R = upc * p->rpu, rps = R / p->nseg;
        const int bytes = R * (K / 2) + p->nseg * (((rps * p->sbrow + 15) & ~15) + 16);
        if (bytes <= PK_SLOT) {
            p->upc = upc;
            return 0;
        }
    }
    return -1;
}

extern "C" int cuk_persist_grid(void) {
    int d = 0, major = 0, optin = 0, n = 0;
    if (cudaGetDevice(&d) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, d) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (major < 9 || optin < PK_SMEM) return 0;
    if (cudaFuncSetAttribute(k_persist, cudaFuncAttributeMaxDynamicSharedMemorySize, PK_SMEM) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_persist, PK_THREADS, PK_SMEM) !=
            cudaSuccess ||
        n < 1) {
        cudaGetLastError();
        return 0;
    }
    return n * n_sms();
}

extern "C" int cuk_persist_launch(const struct pk_args *a, int grid, cuk_stream s) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)grid);
    cfg.blockDim = dim3(PK_THREADS);
    cfg.dynamicSmemBytes = PK_SMEM;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    return (int)cudaLaunchKernelEx(&cfg, k_persist, *a);
}
