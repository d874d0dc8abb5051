// AMX (Intel Advanced Matrix Extensions) matrix products for prefill and batches
// (n_tok >= KERN_AMX_MIN_TOK; BF16 weights from KERN_AMX_FEW_MIN_TOK, see the last item) on CPUs
// with AMX-TILE/BF16/INT8 (Sapphire Rapids and later).
// Orientation (all but the few-token path): one 16x16 f32/int32 C tile = 16 tokens (rows, = rows of Y) x 16 weight rows
// (columns, = 16 consecutive floats of a Y row); A = activations (16 tokens x K), B = weights
// repacked into the VNNI layout (K/2 or K/4 rows of 16 weight rows x pairs/quads).
// - BF16/F16 weights (TDPBF16PS): kern_prepare_amx_bf16 splits each f32 activation exactly
//   enough into three bf16 parts (hi + mid + lo, 24 significant bits); BF16 weights are exact
//   bf16, F16 weights are split exactly into bf16 hi + lo. The products (3 for BF16, 5 for F16:
//   w_lo * x_lo is below f32 rounding) are summed in f32 tiles, so results match the f32 FMA
//   kernels to f32 rounding (a two-part split left 2e-5 relative logits drift on deep golden
//   models, above the chunked-vs-whole prefill check).
// - Q8_0/Q4_0 weights (TDPBSSD): activations are the int8 blocks of kern_prepare_input
//   (struct block_qx, the decode layout); one TDPBSSD per 32-block gives exact int32 sums that
//   AVX-512 scales by (weight d * activation d) into f32 accumulators, like the integer decode
//   path. MLX Q8/Q4 (w = scale * q + bias per group, q unsigned): TDPBSUD on the unsigned
//   codes, scaled by (group scale * activation d), plus group bias * block sum (block_qx.s).
// - BF16 weights, few tokens (KERN_AMX_FEW_MIN_TOK..KERN_AMX_FEW_MAX_TOK, the continuous
//   batching decode steps): the orientation flips. A = 16 weight rows x 32 bf16 loaded straight
//   from W (row stride n_in * 2 bytes: no repacking, which is what made the panels above lose
//   to AVX-512 below 16 tokens), B = the hi / mid / lo activation parts of a group of 16 tokens
//   in the VNNI layout, one column per token, C = 16 weight rows x 16 tokens (one C tile per
//   group, up to 4); the three parts accumulate into the same C tile (x = hi + mid + lo along
//   K), which is transposed once into Y at the end. Each weight byte is read once per product.
// n_in is processed in chunks (outer loop) so the activation chunk stays in L2; partial sums
// live in Y between chunks. Weight panels are on the stack (<= 130 KiB);
// nothing allocates. Rows past the last multiple of 16 go to the AVX-512 tiled kernel.
// Linux requires arch_prctl(ARCH_REQ_XCOMP_PERM) once per process before any tile instruction:
// kern_amx_usable() does it; each thread loads its tile configuration on first use.
// SPDX-License-Identifier: MIT
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 &&      \
    defined(__linux__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,"      \
                   "amx-bf16,amx-int8")
#define LFMD_HAVE_AMX_TU 1
#endif
#include "kernels/kern_internal.h"

#include <string.h>

#ifdef LFMD_HAVE_AMX_TU
#include <immintrin.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AI static inline __attribute__((always_inline))

// The tile intrinsics are asm statements that do not tell the compiler which memory they read
// or write: order plain C accesses around them explicitly.
#define MEMBAR() __asm__ volatile("" ::: "memory")

#define LFMD_ARCH_REQ_XCOMP_PERM 0x1023
#define LFMD_XFEATURE_XTILEDATA 18

#ifndef LFMD_AMX_KCB
#define LFMD_AMX_KCB 512
#endif
#ifndef LFMD_AMX_RGT
#define LFMD_AMX_RGT 4
#endif
enum {
    KCB = LFMD_AMX_KCB, // n_in chunk (elements) of the bf16 path (multiple of 32)
    RGT = LFMD_AMX_RGT, // row tiles per panel group (even): one token pair's A tiles stay in L1
                        // across the group's row pairs
    KCQ = 32,    // n_in chunk (32-blocks) of the int8 path
    CFG_BF16 = 1,
    CFG_INT8 = 2,
};

struct tile_cfg {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// Tiles 0-3: C (16 x 16 f32/int32); 4-5: A; 6-7: B.
static _Thread_local int tl_cfg;

static void set_cfg(int which) {
    if (tl_cfg == which) return;
    _Alignas(64) struct tile_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) {
        c.rows[i] = 16;
        c.colsb[i] = 64;
    }
    if (which == CFG_INT8) {
        c.colsb[4] = c.colsb[5] = 32; // 16 tokens x one 32-block of int8
        c.rows[6] = c.rows[7] = 8;    // 8 quads x 16 weight rows
    }
    // GCC does not treat ldtilecfg as a read of c and drops the stores above without this
    __asm__ volatile("" : : "r"(&c) : "memory");
    _tile_loadconfig(&c);
    tl_cfg = which;
}

// ---- BF16 / F16 ----

AI __m512 bf16x16_f32(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// x (32 floats) = hi + mid + lo, each 32 bf16 (pairs in element order): 24 significant bits.
AI void split3(const float *x, __m512i *h, __m512i *m, __m512i *l) {
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    *h = (__m512i)_mm512_cvtne2ps_pbh(v1, v0);
    v0 = _mm512_sub_ps(v0, bf16x16_f32(_mm512_castsi512_si256(*h)));
    v1 = _mm512_sub_ps(v1, bf16x16_f32(_mm512_extracti64x4_epi64(*h, 1)));
    *m = (__m512i)_mm512_cvtne2ps_pbh(v1, v0);
    v0 = _mm512_sub_ps(v0, bf16x16_f32(_mm512_castsi512_si256(*m)));
    v1 = _mm512_sub_ps(v1, bf16x16_f32(_mm512_extracti64x4_epi64(*m, 1)));
    *l = (__m512i)_mm512_cvtne2ps_pbh(v1, v0);
}

// Tile-blocked layout, so every A tile is one contiguous KiB (row strides that are multiples of
// 4 KiB thrash L1 sets): for token tile tt = t / 16 and k-step s (32 elements), parts hi, mid,
// lo of 16 tokens x 32 bf16 at qx + ((tt * (n_in / 32) + s) * 3 + part) * 1024, token t % 16 in
// row t % 16. x = hi + mid + lo exactly unless x is tiny enough for lo to underflow. Rows of
// the last tile past n_tok are never written and only feed C rows that are never stored.
static void prepare_tiles(const float *X, int64_t n_in, int t0, int t1, void *qx) {
    const int64_t steps = n_in / 32;
    for (int t = t0; t < t1; t++) {
        const float *x = X + (int64_t)t * n_in;
        uint8_t *base = (uint8_t *)qx + (int64_t)(t / 16) * steps * 3072 + (t % 16) * 64;
        for (int64_t s = 0; s < steps; s++) {
            uint8_t *d = base + s * 3072;
            __m512i h, m, l;
            split3(x + s * 32, &h, &m, &l);
            _mm512_storeu_si512(d, h);
            _mm512_storeu_si512(d + 1024, m);
            _mm512_storeu_si512(d + 2048, l);
        }
    }
}

static bool few_tokens(enum lfmd_dtype wt, int n_tok) {
    return wt == LFMD_DTYPE_BF16 && n_tok >= KERN_AMX_FEW_MIN_TOK &&
           n_tok <= KERN_AMX_FEW_MAX_TOK;
}


// In-register transpose of a 16x16 matrix of dwords (r[n] = row n -> r[k] = column k).
AI void transpose16(__m512i r[16]) {
    __m512i t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { // r[4i + j], 128-bit block q: column 4q + j of rows 4i..4i+3
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i a = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x44);
        __m512i b = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xee);
        __m512i c = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x44);
        __m512i d = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xee);
        t[j] = _mm512_shuffle_i32x4(a, c, 0x88);
        t[4 + j] = _mm512_shuffle_i32x4(a, c, 0xdd);
        t[8 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
        t[12 + j] = _mm512_shuffle_i32x4(b, d, 0xdd);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

// Few-token layout: for token group g (16 tokens), k-step s and part p (hi, mid, lo), a
// 16 x 64-byte B tile at qx + ((g * steps + s) * 3 + p) * 1024 whose row kk holds, in column
// t % 16 (4 bytes), token t's elements 32 s + 2 kk and 32 s + 2 kk + 1. Token t's place does
// not depend on n_tok, so callers may split tokens. Columns of the last group past n_tok are
// zero (their C columns are computed, never stored).
// A call that covers a whole group transposes 16 token vectors per part and step and writes
// whole 64-byte rows; otherwise each token's vector is scattered into its column (measured:
// the scatters took ~9% of an 8-token decode step).

static void prepare_few(const float *X, int64_t n_in, int n_tok, int t0, int t1, void *qx) {
    const int64_t steps = n_in / 32;
    const __m512i rows = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(64));
    for (int g = t0 / 16; g * 16 < t1; g++) {
        const int ga = g * 16, gb = ga + 16 < n_tok ? ga + 16 : n_tok;
        uint8_t *gbase = (uint8_t *)qx + (int64_t)g * steps * 3072;
        if (t0 <= ga && t1 >= gb) {
            for (int64_t s = 0; s < steps; s++) {
                __m512i v[3][16];
                for (int i = 0; i < 16; i++) {
                    if (ga + i < gb)
                        split3(X + (int64_t)(ga + i) * n_in + s * 32, &v[0][i], &v[1][i], &v[2][i]);
                    else
                        v[0][i] = v[1][i] = v[2][i] = _mm512_setzero_si512();
                }
                for (int p = 0; p < 3; p++) {
                    transpose16(v[p]);
                    uint8_t *d = gbase + s * 3072 + p * 1024;
                    for (int kk = 0; kk < 16; kk++) _mm512_storeu_si512(d + kk * 64, v[p][kk]);
                }
            }
            continue;
        }
        if (t1 == n_tok && gb == n_tok && n_tok % 16) // zero the padding columns
            for (int64_t i = 0; i < steps * 48; i++) // rows of all parts and steps
                memset(gbase + i * 64 + (n_tok % 16) * 4, 0, (size_t)(16 - n_tok % 16) * 4);
        for (int t = t0 > ga ? t0 : ga; t < t1 && t < gb; t++) {
            uint8_t *base = gbase + (t % 16) * 4;
            for (int64_t s = 0; s < steps; s++) {
                __m512i h, m, l;
                split3(X + (int64_t)t * n_in + s * 32, &h, &m, &l);
                _mm512_i32scatter_epi32(base + s * 3072, rows, h, 1);
                _mm512_i32scatter_epi32(base + s * 3072 + 1024, rows, m, 1);
                _mm512_i32scatter_epi32(base + s * 3072 + 2048, rows, l, 1);
            }
        }
    }
}

void kern_prepare_amx_bf16(enum lfmd_dtype wt, const float *X, int64_t n_in, int n_tok, int t0,
                           int t1, void *qx) {
    if (few_tokens(wt, n_tok)) prepare_few(X, n_in, n_tok, t0, t1, qx);
    else prepare_tiles(X, n_in, t0, t1, qx);
}

// Panel of one 16-row tile for k-steps [0, steps): per step 256 dwords (16 pairs x 16 rows) of
// hi, then (F16) 256 of lo. Step s of row tile j sits at pan + (s * NR + j) * per_step.
// Each row's 32 elements are loaded (and F16 converted) as one vector, then transposed.
static void panel_bf16(const struct tensor *W, int64_t n_in, int64_t r, int NR, int64_t k0,
                       int steps, int f16, uint32_t *pan) {
    const int per = f16 ? 512 : 256;
    for (int j = 0; j < NR; j++) {
        const uint16_t *base = (const uint16_t *)W->data + (r + 16 * j) * n_in + k0;
        for (int s = 0; s < steps; s++) {
            uint32_t *p = pan + (int64_t)(s * NR + j) * per;
            __m512i hi[16], lo[16];
            for (int n = 0; n < 16; n++) {
                __m512i v = _mm512_loadu_si512(base + n * n_in + s * 32);
                if (!f16) {
                    hi[n] = v;
                    continue;
                }
                __m512 f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
                __m512 f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
                __m512i h = (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
                __m512 h0 = bf16x16_f32(_mm512_castsi512_si256(h));
                __m512 h1 = bf16x16_f32(_mm512_extracti64x4_epi64(h, 1));
                hi[n] = h;
                lo[n] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(f1, h1), _mm512_sub_ps(f0, h0));
            }
            transpose16(hi);
            for (int kk = 0; kk < 16; kk++) _mm512_store_si512(p + kk * 16, hi[kk]);
            if (f16) {
                transpose16(lo);
                for (int kk = 0; kk < 16; kk++) _mm512_store_si512(p + 256 + kk * 16, lo[kk]);
            }
        }
    }
}

// Loads C tile `tile` from Y rows [t, t + nv) (16 floats at column r), zero rows past nv.
#define C_LOAD(tile, first, y, ldy, nv, tmp)                                                     \
    do {                                                                                       \
        if (first) {                                                                           \
            _tile_zero(tile);                                                                  \
        } else if ((nv) == 16) {                                                               \
            _tile_loadd(tile, (y), (ldy) * 4);                                                 \
        } else {                                                                               \
            memset((tmp), 0, 1024);                                                            \
            for (int i_ = 0; i_ < (nv); i_++) memcpy((tmp) + i_ * 16, (y) + i_ * (ldy), 64);   \
            MEMBAR();                                                                          \
            _tile_loadd(tile, (tmp), 64);                                                      \
        }                                                                                      \
    } while (0)

#define C_STORE(tile, y, ldy, nv, tmp)                                                           \
    do {                                                                                       \
        if ((nv) == 16) {                                                                      \
            _tile_stored(tile, (y), (ldy) * 4);                                                \
        } else {                                                                               \
            _tile_stored(tile, (tmp), 64);                                                     \
            MEMBAR();                                                                          \
            for (int i_ = 0; i_ < (nv); i_++) memcpy((y) + i_ * (ldy), (tmp) + i_ * 16, 64);   \
        }                                                                                      \
    } while (0)

// Up to 2 token tiles (a0, a1: the blocked qx layout at the chunk's first k-step) x NR row
// tiles of the panel, `steps` k-steps; Y block at y (token 0 of the pair, column r).
AI void block_bf16(const int NR, const int NT, const int f16, const uint8_t *a0, const uint8_t *a1,
                   const uint32_t *pan, int steps, float *y, int64_t ldy, int first, int nv0,
                   int nv1, float *tmp) {
    const int64_t lda = 64, lo_off = 1024;
    const int per = f16 ? 512 : 256;
    MEMBAR();
    C_LOAD(0, first, y, ldy, nv0, tmp);
    if (NR == 2) C_LOAD(1, first, y + 16, ldy, nv0, tmp);
    if (NT == 2) C_LOAD(2, first, y + 16 * ldy, ldy, nv1, tmp);
    if (NT == 2 && NR == 2) C_LOAD(3, first, y + 16 * ldy + 16, ldy, nv1, tmp);
    for (int s = 0; s < steps; s++) {
        const uint32_t *b = pan + (int64_t)s * NR * per;
        _tile_loadd(6, b, 64);
        if (NR == 2) _tile_loadd(7, b + per, 64);
        _tile_loadd(4, a0 + s * 3072, lda);
        if (NT == 2) _tile_loadd(5, a1 + s * 3072, lda);
        _tile_dpbf16ps(0, 4, 6);
        if (NR == 2) _tile_dpbf16ps(1, 4, 7);
        if (NT == 2) _tile_dpbf16ps(2, 5, 6);
        if (NT == 2 && NR == 2) _tile_dpbf16ps(3, 5, 7);
        _tile_loadd(4, a0 + lo_off + s * 3072, lda);
        if (NT == 2) _tile_loadd(5, a1 + lo_off + s * 3072, lda);
        _tile_dpbf16ps(0, 4, 6);
        if (NR == 2) _tile_dpbf16ps(1, 4, 7);
        if (NT == 2) _tile_dpbf16ps(2, 5, 6);
        if (NT == 2 && NR == 2) _tile_dpbf16ps(3, 5, 7);
        _tile_loadd(4, a0 + 2 * lo_off + s * 3072, lda);
        if (NT == 2) _tile_loadd(5, a1 + 2 * lo_off + s * 3072, lda);
        _tile_dpbf16ps(0, 4, 6);
        if (NR == 2) _tile_dpbf16ps(1, 4, 7);
        if (NT == 2) _tile_dpbf16ps(2, 5, 6);
        if (NT == 2 && NR == 2) _tile_dpbf16ps(3, 5, 7);
        if (f16) { // w_lo * (x_hi + x_mid)
            _tile_loadd(6, b + 256, 64);
            if (NR == 2) _tile_loadd(7, b + per + 256, 64);
            _tile_loadd(4, a0 + s * 3072, lda);
            if (NT == 2) _tile_loadd(5, a1 + s * 3072, lda);
            _tile_dpbf16ps(0, 4, 6);
            if (NR == 2) _tile_dpbf16ps(1, 4, 7);
            if (NT == 2) _tile_dpbf16ps(2, 5, 6);
            if (NT == 2 && NR == 2) _tile_dpbf16ps(3, 5, 7);
            _tile_loadd(4, a0 + lo_off + s * 3072, lda);
            if (NT == 2) _tile_loadd(5, a1 + lo_off + s * 3072, lda);
            _tile_dpbf16ps(0, 4, 6);
            if (NR == 2) _tile_dpbf16ps(1, 4, 7);
            if (NT == 2) _tile_dpbf16ps(2, 5, 6);
            if (NT == 2 && NR == 2) _tile_dpbf16ps(3, 5, 7);
        }
    }
    MEMBAR();
    C_STORE(0, y, ldy, nv0, tmp);
    if (NR == 2) C_STORE(1, y + 16, ldy, nv0, tmp);
    if (NT == 2) C_STORE(2, y + 16 * ldy, ldy, nv1, tmp);
    if (NT == 2 && NR == 2) C_STORE(3, y + 16 * ldy + 16, ldy, nv1, tmp);
}

static void block_bf16_any(int NR, int NT, int f16, const uint8_t *a0, const uint8_t *a1,
                           const uint32_t *pan, int steps, float *y, int64_t ldy, int first,
                           int nv0, int nv1, float *tmp) {
#define BB(nr, nt, f) block_bf16(nr, nt, f, a0, a1, pan, steps, y, ldy, first, nv0, nv1, tmp)
    if (f16) {
        if (NR == 2) {
            if (NT == 2) BB(2, 2, 1);
            else BB(2, 1, 1);
        } else {
            if (NT == 2) BB(1, 2, 1);
            else BB(1, 1, 1);
        }
    } else {
        if (NR == 2) {
            if (NT == 2) BB(2, 2, 0);
            else BB(2, 1, 0);
        } else {
            if (NT == 2) BB(1, 2, 0);
            else BB(1, 1, 0);
        }
    }
#undef BB
}

static void matmul_bf16(const struct tensor *W, const void *qx, int n_tok, float *Y, int64_t ldy,
                        int64_t r0, int64_t r1) {
    const int f16 = W->dtype == LFMD_DTYPE_F16;
    const int per = f16 ? 512 : 256;
    const int64_t n_in = tensor_cols(W), tile_bytes = n_in / 32 * 3072; // one token tile
    _Alignas(64) uint32_t pan[RGT * (KCB / 32) * 512];
    _Alignas(64) float tmp[256];
    const int64_t rend = r0 + (r1 - r0) / 16 * 16;
    set_cfg(CFG_BF16);
    for (int64_t k0 = 0; k0 < n_in; k0 += KCB) {
        const int64_t kc = n_in - k0 < KCB ? n_in - k0 : KCB;
        const int steps = (int)(kc / 32), first = k0 == 0;
        const uint8_t *xk = (const uint8_t *)qx + k0 / 32 * 3072;
        for (int64_t g = r0; g < rend; g += 16 * RGT) {
            const int nrt = rend - g >= 16 * RGT ? RGT : (int)((rend - g) / 16);
            for (int j = 0; j < nrt; j += 2)
                panel_bf16(W, n_in, g + 16 * j, nrt - j >= 2 ? 2 : 1, k0, steps, f16,
                           pan + (int64_t)j * steps * per);
            for (int t = 0; t < n_tok; t += 32) {
                const int nv0 = n_tok - t < 16 ? n_tok - t : 16;
                const int nv1 = n_tok - t - 16 < 16 ? n_tok - t - 16 : 16;
                const uint8_t *a0 = xk + (int64_t)(t / 16) * tile_bytes;
                for (int j = 0; j < nrt; j += 2)
                    block_bf16_any(nrt - j >= 2 ? 2 : 1, nv1 > 0 ? 2 : 1, f16, a0,
                                   a0 + tile_bytes, pan + (int64_t)j * steps * per, steps,
                                   Y + (int64_t)t * ldy + g + 16 * j, ldy, first, nv0, nv1, tmp);
            }
        }
    }
}

// Few tokens: every 16-row tile of W streams once through tile 4 (A) while the activation
// parts (B, tiles 5-7, from L2) of each token group accumulate into that group's C tile (0-3);
// each C tile (16 rows x 16 tokens) is transposed into Y rows of 16 floats.
#define FEW_GROUP(g)                                                                           \
    do {                                                                                       \
        const uint8_t *b_ = xb + ((g) * steps + s) * 3072;                                      \
        _tile_loadd(5, b_, 64);                                                                \
        _tile_loadd(6, b_ + 1024, 64);                                                         \
        _tile_loadd(7, b_ + 2048, 64);                                                         \
        _tile_dpbf16ps(g, 4, 5);                                                               \
        _tile_dpbf16ps(g, 4, 6);                                                               \
        _tile_dpbf16ps(g, 4, 7);                                                               \
    } while (0)

#define FEW_STORE(g)                                                                           \
    do {                                                                                       \
        _tile_stored(g, c, 64);                                                                \
        store_few(c, (g) * 16, n_tok, Y, ldy, r);                                              \
    } while (0)

static void store_few(const int32_t *c, int t0, int n_tok, float *Y, int64_t ldy, int64_t r) {
    MEMBAR();
    __m512i v[16];
#pragma GCC unroll 16
    for (int n = 0; n < 16; n++) v[n] = _mm512_load_si512(c + 16 * n);
    transpose16(v); // v[i] = column i = token t0 + i's 16 outputs
    for (int i = 0; i < 16 && t0 + i < n_tok; i++)
        _mm512_storeu_si512(Y + (t0 + i) * ldy + r, v[i]);
}

static void matmul_bf16_few(const struct tensor *W, const void *qx, int n_tok, float *Y,
                            int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n_in = tensor_cols(W), steps = n_in / 32, lda = n_in * 2;
    const int ng = (n_tok + 15) / 16;
    const uint8_t *xb = qx;
    _Alignas(64) int32_t c[256];
    set_cfg(CFG_BF16);
    if (ng == 1) {
        // Four row tiles at a time share each activation part: B (from L2, 3 KiB per k-step)
        // is loaded once per 4 KiB of weights instead of once per KiB, which was the limit
        // (perf: the step stalled on the B loads). A alternates between tiles 4 and 5; the
        // repeated A loads of a step hit L1; each C tile's dots are four instructions apart.
        // Measured (350M shape, 8 streams, noisy machine): 165 tok/s vs 150 with one row tile;
        // software prefetch of the 64 row streams did not help (132-142).
        int64_t r = r0;
        for (; r + 64 <= r1; r += 64) {
            const uint16_t *w0 = (const uint16_t *)W->data + r * n_in, *w1 = w0 + 16 * n_in;
            const uint16_t *w2 = w1 + 16 * n_in, *w3 = w2 + 16 * n_in;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t s = 0; s < steps; s++) {
                const uint8_t *b = xb + s * 3072;
#define FEW4_PART(bt, off)                                                                     \
    do {                                                                                       \
        _tile_loadd(bt, b + (off), 64);                                                        \
        _tile_loadd(4, w0 + s * 32, lda);                                                      \
        _tile_dpbf16ps(0, 4, bt);                                                              \
        _tile_loadd(5, w1 + s * 32, lda);                                                      \
        _tile_dpbf16ps(1, 5, bt);                                                              \
        _tile_loadd(4, w2 + s * 32, lda);                                                      \
        _tile_dpbf16ps(2, 4, bt);                                                              \
        _tile_loadd(5, w3 + s * 32, lda);                                                      \
        _tile_dpbf16ps(3, 5, bt);                                                              \
    } while (0)
                FEW4_PART(6, 0);
                FEW4_PART(7, 1024);
                FEW4_PART(6, 2048);
#undef FEW4_PART
            }
            _tile_stored(0, c, 64);
            store_few(c, 0, n_tok, Y, ldy, r);
            _tile_stored(1, c, 64);
            store_few(c, 0, n_tok, Y, ldy, r + 16);
            _tile_stored(2, c, 64);
            store_few(c, 0, n_tok, Y, ldy, r + 32);
            _tile_stored(3, c, 64);
            store_few(c, 0, n_tok, Y, ldy, r + 48);
        }
        // the last row tiles one at a time, the parts in separate C tiles
        _Alignas(64) int32_t c1[256], c2[256];
        for (; r + 16 <= r1; r += 16) {
            const uint16_t *w = (const uint16_t *)W->data + r * n_in;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            for (int64_t s = 0; s < steps; s++) {
                const uint8_t *b = xb + s * 3072;
                _tile_loadd(4, w + s * 32, lda);
                _tile_loadd(5, b, 64);
                _tile_loadd(6, b + 1024, 64);
                _tile_loadd(7, b + 2048, 64);
                _tile_dpbf16ps(0, 4, 5);
                _tile_dpbf16ps(1, 4, 6);
                _tile_dpbf16ps(2, 4, 7);
            }
            _tile_stored(0, c, 64);
            _tile_stored(1, c1, 64);
            _tile_stored(2, c2, 64);
            MEMBAR();
            for (int i = 0; i < 256; i += 16) // hi + (mid + lo)
                _mm512_store_ps((float *)c + i,
                                _mm512_add_ps(_mm512_load_ps((float *)c + i),
                                              _mm512_add_ps(_mm512_load_ps((float *)c1 + i),
                                                            _mm512_load_ps((float *)c2 + i))));
            store_few(c, 0, n_tok, Y, ldy, r);
        }
        return;
    }
    for (int64_t r = r0; r + 16 <= r1; r += 16) {
        const uint16_t *w = (const uint16_t *)W->data + r * n_in;
        _tile_zero(0);
        if (ng > 1) _tile_zero(1);
        if (ng > 2) _tile_zero(2);
        if (ng > 3) _tile_zero(3);
        for (int64_t s = 0; s < steps; s++) {
            _tile_loadd(4, w + s * 32, lda);
            FEW_GROUP(0);
            if (ng > 1) FEW_GROUP(1);
            if (ng > 2) FEW_GROUP(2);
            if (ng > 3) FEW_GROUP(3);
        }
        FEW_STORE(0);
        if (ng > 1) FEW_STORE(1);
        if (ng > 2) FEW_STORE(2);
        if (ng > 3) FEW_STORE(3);
    }
}

// ---- Q8_0 / Q4_0 ----

// Panel of the 16-row tile at r for blocks [kb0, kb0 + nbc): per block 8 quads x 16 rows of int8
// (512 bytes, VNNI layout) and the 16 weight scales as f32 (MLX: also the 16 biases in bw).
static void panel_int8(const struct tensor *W, int64_t nb, int64_t r, int64_t kb0, int nbc,
                       int8_t *pan, float *dw, float *bw) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i m4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    const int64_t n_in = nb * QKX;
    if (W->dtype == LFMD_DTYPE_MLX_Q8 || W->dtype == LFMD_DTYPE_MLX_Q4) {
        const int q4 = W->dtype == LFMD_DTYPE_MLX_Q4;
        const int64_t rb = n_in * (q4 ? 4 : 8) / 8, ng = n_in / W->group_size;
        const __m512i vidx = _mm512_mullo_epi32(iota, _mm512_set1_epi32((int)rb));
        const __m512i lo4 = _mm512_set1_epi32(0xf);
        for (int b = 0; b < nbc; b++) {
            const int64_t g = (kb0 + b) * QKX / W->group_size;
            if (b > 0 && g == (kb0 + b - 1) * QKX / W->group_size) { // same group as before
                memcpy(dw + b * 16, dw + (b - 1) * 16, 64);
                memcpy(bw + b * 16, bw + (b - 1) * 16, 64);
            } else { // scalar loads: 16-bit gathers would read past the arrays' ends
                for (int n = 0; n < 16; n++) {
                    dw[b * 16 + n] = kern_load_scalar(W->scale_dtype, W->scales, (r + n) * ng + g);
                    bw[b * 16 + n] = kern_load_scalar(W->scale_dtype, W->biases, (r + n) * ng + g);
                }
            }
            const uint8_t *base = (const uint8_t *)W->data + r * rb + (kb0 + b) * (q4 ? 16 : 32);
            int8_t *p = pan + b * 512;
            if (q4) { // quad kq = bytes 2kq, 2kq+1: nibbles lo, hi, lo, hi
                for (int kq = 0; kq < 8; kq++) {
                    __m512i v = _mm512_i32gather_epi32(vidx, base + 4 * (kq >> 1), 1);
                    if (kq & 1) v = _mm512_srli_epi32(v, 16);
                    __m512i e = _mm512_or_si512(
                        _mm512_or_si512(_mm512_and_si512(v, lo4),
                                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 4), lo4), 8)),
                        _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 8), lo4), 16),
                                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 12), lo4), 24)));
                    _mm512_store_si512(p + kq * 64, e);
                }
            } else {
                for (int kq = 0; kq < 8; kq++)
                    _mm512_store_si512(p + kq * 64, _mm512_i32gather_epi32(vidx, base + 4 * kq, 1));
            }
        }
        return;
    }
    const int q4 = W->dtype == LFMD_DTYPE_Q4_0;
    const int bs = q4 ? (int)sizeof(struct block_q4_0) : (int)sizeof(struct block_q8_0);
    const int64_t rb = nb * bs;
    const __m512i vidx = _mm512_mullo_epi32(iota, _mm512_set1_epi32((int)rb));
    for (int b = 0; b < nbc; b++) {
        const uint8_t *base = (const uint8_t *)W->data + r * rb + (kb0 + b) * bs;
        __m512i d = _mm512_i32gather_epi32(vidx, base, 1);
        _mm512_store_ps(dw + b * 16, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
        int8_t *p = pan + b * 512;
        if (q4) {
            for (int kq = 0; kq < 4; kq++) {
                __m512i v = _mm512_i32gather_epi32(vidx, base + 2 + 4 * kq, 1);
                __m512i lo = _mm512_sub_epi8(_mm512_and_si512(v, m4), eight);
                __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi32(v, 4), m4), eight);
                _mm512_store_si512(p + kq * 64, lo);
                _mm512_store_si512(p + (kq + 4) * 64, hi);
            }
        } else {
            for (int kq = 0; kq < 8; kq++)
                _mm512_store_si512(p + kq * 64, _mm512_i32gather_epi32(vidx, base + 2 + 4 * kq, 1));
        }
    }
}

// One token tile (16 rows of qx blocks at xq, row stride ldx bytes) against one 16-row panel
// over nbc blocks (a multiple of 4); Y rows [0, nv) at y. mlx: unsigned weight codes plus the
// bias term bw * block sum.
AI void block_int8(const int mlx, const uint8_t *xq, int64_t ldx, const int8_t *pan,
                   const float *dw, const float *bw, int nbc, float *y, int64_t ldy, int first,
                   int nv) {
    __m512 acc[16];
    _Alignas(64) int32_t cb[4][256];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        acc[i] = first || i >= nv ? _mm512_setzero_ps() : _mm512_loadu_ps(y + i * ldy);
    MEMBAR();
    for (int b = 0; b < nbc; b += 4) {
        const uint8_t *x = xq + b * (int64_t)sizeof(struct block_qx);
        const int8_t *p = pan + b * 512;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        _tile_loadd(4, x + 8, ldx);
        _tile_loadd(6, p, 64);
        if (mlx) _tile_dpbsud(0, 4, 6);
        else _tile_dpbssd(0, 4, 6);
        _tile_loadd(5, x + 40 + 8, ldx);
        _tile_loadd(7, p + 512, 64);
        if (mlx) _tile_dpbsud(1, 5, 7);
        else _tile_dpbssd(1, 5, 7);
        _tile_loadd(4, x + 80 + 8, ldx);
        _tile_loadd(6, p + 1024, 64);
        if (mlx) _tile_dpbsud(2, 4, 6);
        else _tile_dpbssd(2, 4, 6);
        _tile_loadd(5, x + 120 + 8, ldx);
        _tile_loadd(7, p + 1536, 64);
        if (mlx) _tile_dpbsud(3, 5, 7);
        else _tile_dpbssd(3, 5, 7);
        _tile_stored(0, cb[0], 64);
        _tile_stored(1, cb[1], 64);
        _tile_stored(2, cb[2], 64);
        _tile_stored(3, cb[3], 64);
        MEMBAR();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512 dv = _mm512_load_ps(dw + (b + j) * 16);
            const uint8_t *xd = x + j * (int64_t)sizeof(struct block_qx);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                __m512 s = _mm512_mul_ps(dv, _mm512_set1_ps(*(const float *)(xd + i * ldx)));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb[j] + i * 16)), s,
                                         acc[i]);
            }
            if (mlx) {
                __m512 bv = _mm512_load_ps(bw + (b + j) * 16);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    acc[i] = _mm512_fmadd_ps(bv, _mm512_set1_ps(*(const float *)(xd + i * ldx + 4)),
                                             acc[i]);
            }
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        if (i < nv) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

static void matmul_int8(const struct tensor *W, const void *qx, int n_tok, float *Y, int64_t ldy,
                        int64_t r0, int64_t r1) {
    const int64_t n_in = tensor_cols(W), nb = n_in / QKX;
    const int64_t ldx = nb * (int64_t)sizeof(struct block_qx);
    _Alignas(64) int8_t pan[KCQ * 512];                     // 16 KiB
    _Alignas(64) float dw[KCQ * 16], bw[KCQ * 16];          // 2 + 2 KiB
    const int mlx = W->dtype == LFMD_DTYPE_MLX_Q8 || W->dtype == LFMD_DTYPE_MLX_Q4;
    _Alignas(64) struct block_qx tail[16 * KCQ];            // 20 KiB
    const int64_t rend = r0 + (r1 - r0) / 16 * 16;
    const int full_tok = n_tok / 16 * 16, n_tail = n_tok - full_tok;
    const struct block_qx *xb = qx;
    set_cfg(CFG_INT8);
    for (int64_t kb0 = 0; kb0 < nb; kb0 += KCQ) {
        const int nbc = (int)(nb - kb0 < KCQ ? nb - kb0 : KCQ), first = kb0 == 0;
        if (n_tail) {
            memset(tail, 0, sizeof tail);
            for (int i = 0; i < n_tail; i++)
                memcpy(tail + i * KCQ, xb + (int64_t)(full_tok + i) * nb + kb0,
                       (size_t)nbc * sizeof(struct block_qx));
        }
        for (int64_t r = r0; r < rend; r += 16) {
            panel_int8(W, nb, r, kb0, nbc, pan, dw, bw);
            for (int t = 0; t < full_tok; t += 16) {
                const uint8_t *xt = (const uint8_t *)(xb + (int64_t)t * nb + kb0);
                float *yt = Y + (int64_t)t * ldy + r;
                if (mlx) block_int8(1, xt, ldx, pan, dw, bw, nbc, yt, ldy, first, 16);
                else block_int8(0, xt, ldx, pan, dw, bw, nbc, yt, ldy, first, 16);
            }
            if (n_tail) {
                const uint8_t *xt = (const uint8_t *)tail;
                const int64_t ldt = KCQ * (int64_t)sizeof(struct block_qx);
                float *yt = Y + (int64_t)full_tok * ldy + r;
                if (mlx) block_int8(1, xt, ldt, pan, dw, bw, nbc, yt, ldy, first, n_tail);
                else block_int8(0, xt, ldt, pan, dw, bw, nbc, yt, ldy, first, n_tail);
            }
        }
    }
}

// ---- entry points ----

bool kern_amx_supports(const struct tensor *W, int n_tok) {
    if (few_tokens(W->dtype, n_tok)) return tensor_rows(W) >= 16 && tensor_cols(W) % 32 == 0;
    if (n_tok < KERN_AMX_MIN_TOK || tensor_rows(W) < 16) return false;
    int64_t n_in = tensor_cols(W);
    switch (W->dtype) {
    case LFMD_DTYPE_BF16: return n_in % 32 == 0;
    case LFMD_DTYPE_F16: return n_in % 32 == 0 && n_tok >= KERN_AMX_MIN_TOK_F16;
    case LFMD_DTYPE_Q8_0:
    case LFMD_DTYPE_Q4_0: return n_in % (4 * QKX) == 0;
    case LFMD_DTYPE_MLX_Q8:
    case LFMD_DTYPE_MLX_Q4:
        return n_in % (4 * QKX) == 0 && W->group_size > 0 && W->group_size % QKX == 0 &&
               n_in % W->group_size == 0 && kern_quant_avx2_supports(W) &&
               (W->scale_dtype == LFMD_DTYPE_F16 || W->scale_dtype == LFMD_DTYPE_BF16 ||
                W->scale_dtype == LFMD_DTYPE_F32);
    default: return false;
    }
}

size_t kern_amx_input_bytes(enum lfmd_dtype wt, int n_tok, int64_t n_in) {
    if (n_in % 32 != 0) return 0;
    if (few_tokens(wt, n_tok)) return (size_t)(n_tok + 15) / 16 * (size_t)n_in / 32 * 3072;
    if (n_tok < KERN_AMX_MIN_TOK) return 0;
    if (wt == LFMD_DTYPE_F16 && n_tok < KERN_AMX_MIN_TOK_F16) return 0;
    if (wt == LFMD_DTYPE_BF16 || wt == LFMD_DTYPE_F16)
        return (size_t)(n_tok + 15) / 16 * 16 * (size_t)n_in * 6;
    return 0; // Q8_0/Q4_0 read the decode layout (struct block_qx)
}

void kern_matmul_amx(const struct tensor *W, const float *X, const void *qx, int n_tok, float *Y,
                     int64_t ldy, int64_t r0, int64_t r1) {
    int64_t rend = r0 + (r1 - r0) / 16 * 16;
    if (few_tokens(W->dtype, n_tok)) {
        matmul_bf16_few(W, qx, n_tok, Y, ldy, r0, r1);
        if (rend < r1) kern_matmul_tiled_avx512(W, X, n_tok, Y, ldy, rend, r1);
    } else if (W->dtype == LFMD_DTYPE_BF16 || W->dtype == LFMD_DTYPE_F16) {
        matmul_bf16(W, qx, n_tok, Y, ldy, r0, r1);
        if (rend < r1) kern_matmul_tiled_avx512(W, X, n_tok, Y, ldy, rend, r1);
    } else {
        matmul_int8(W, qx, n_tok, Y, ldy, r0, r1);
        // the same int8 activations for the last rows, so every row sees one rounding
        if (rend < r1) kern_matmul_quant_avx2(W, X, qx, n_tok, Y, ldy, rend, r1);
    }
}

bool kern_amx_usable(void) {
    static _Atomic int ok = -1;
    int v = atomic_load_explicit(&ok, memory_order_acquire);
    if (v >= 0) return v;
    v = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
        __builtin_cpu_supports("amx-int8") && __builtin_cpu_supports("avx512bf16") &&
        kern_avx512_usable())
        v = syscall(SYS_arch_prctl, LFMD_ARCH_REQ_XCOMP_PERM, LFMD_XFEATURE_XTILEDATA) == 0;
    atomic_store_explicit(&ok, v, memory_order_release);
    return v;
}
#else
void kern_prepare_amx_bf16(enum lfmd_dtype wt, const float *X, int64_t n_in, int n_tok, int t0,
                           int t1, void *qx) {
    (void)wt, (void)X, (void)n_in, (void)n_tok, (void)t0, (void)t1, (void)qx;
}
bool kern_amx_supports(const struct tensor *W, int n_tok) {
    (void)W, (void)n_tok;
    return false;
}
size_t kern_amx_input_bytes(enum lfmd_dtype wt, int n_tok, int64_t n_in) {
    (void)wt, (void)n_tok, (void)n_in;
    return 0;
}
void kern_matmul_amx(const struct tensor *W, const float *X, const void *qx, int n_tok, float *Y,
                     int64_t ldy, int64_t r0, int64_t r1) {
    (void)qx;
    kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1);
}
bool kern_amx_usable(void) { return false; }
#endif
