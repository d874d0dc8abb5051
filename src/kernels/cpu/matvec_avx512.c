// AVX-512 decode kernels (matrix x 1-3 token vectors, n_tok < KERN_QUANT_PANEL_MIN_TOK): each
// weight row is streamed once, 4 rows per pass, 128 weights (four 32-element blocks) per step.
// Quantized weights (GGUF Q4_0/Q8_0, MLX Q4/Q8 with group 32/64/128) use VNNI int8 dots
// (vpdpbusd) against the int8 activations of kern_prepare_input (struct block_qx), rearranged
// once per call into 128-element groups that match the weight registers; the four 2-byte block
// scales and the nibbles of four unaligned ggml blocks are gathered with one vpermw / vpermt2b
// from two overlapping 64-byte loads (no per-block scalar f16 conversion). The result equals
// kern_matmul_ref on the dequantized activations up to f32 summation order (integer dots exact).
// F16/BF16/F32 weights: exact f32 conversion and f32 FMA against the f32 activations.
// Compiled for AVX-512 by target pragma; dispatch calls it only when the CPU has
// AVX-512F/BW/VL/DQ + AVX512-VNNI + AVX512-VBMI (kern_matvec_avx512_usable).
// SPDX-License-Identifier: MIT
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi")
#define LFMD_HAVE_MV512_TU 1
#endif
#include "kernels/kern_internal.h"

#include <string.h>

#ifdef LFMD_HAVE_MV512_TU
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

// Software prefetch distance in bytes ahead on each of the 4 row streams.
#ifndef MV_PF
#define MV_PF 768
#endif
#ifndef MV_NEAR
#define MV_NEAR 1
#endif
#ifndef MV_AHEAD
#define MV_AHEAD 1
#endif
// The same L2 prefetch of the pass after next for F16/BF16/F32 rows: same-run A/B (f16 KV,
// --no-mmap, 2 threads) 350M F16 decode 31.3 -> 36.6 tok/s, 1.2B F16 10.4-10.9 -> 11.4-11.9;
// the hardware streamer plus the near prefetch alone left DRAM idle between short products.
#ifndef MV_FLOAT_AHEAD
#define MV_FLOAT_AHEAD 1
#endif
// Rows ahead whose region is prefetched into L2: the next pass (4 rows), or the one after it
// when a pass is under 4 KiB. Short rows (350M Q4_0: 576 bytes) left the next pass too close to
// hide DRAM latency: two passes ahead measured +6-10% GB/s for Q4_0 / MLX Q4 at n_in 1024 and
// 350M Q4_0 decode 96-101 -> 111-115 tok/s; 1.2B Q8_0 (8.7 KiB passes) did not gain from it.
AI size_t mv_ahead_rows(size_t rb) { return 4 * rb < 4096 ? 8 : 4; }

// The rows of a matrix are contiguous, so a pass over 4 rows reads one contiguous region; while
// it runs, the next pass's region is prefetched into L2 at the same pace (n bytes per step).
// Quantized kernels: their compute per byte is high enough that the hardware streamer alone
// leaves DRAM idle (measured: Q4_0 7.9 -> 10.4 GB/s, one thread, noisy); F16/BF16/F32 too
// (MV_FLOAT_AHEAD below).
AI void pf_ahead(const uint8_t *p, const int n) {
#pragma GCC unroll 8
    for (int o = 0; o < n; o += 64) {
        if (MV_AHEAD == 1) _mm_prefetch((const char *)p + o, _MM_HINT_T1);
        else if (MV_AHEAD == 2) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
    }
}

enum {
    GQ = 128,                          // weights per step (4 activation blocks)
    MV_MULTI_TOK = 8,                  // tokens of kern_matvec_avx512_multi
    MV_MULTI_MAX_IN = 8192,            // its n_in (prepared x of 8 tokens on the stack: 192 KiB)
    MV_MAX_IN = 16384,                 // quantized n_in handled here (prepared x on the stack)
    MV_MAX_GROUPS = MV_MAX_IN / GQ,
    MV_MAX_TOK = KERN_QUANT_PANEL_MIN_TOK - 1,
};

// Prepared activations of one 128-element group. Lane l (int32) of a 16-lane vector covers 4
// consecutive int8 products; the per-lane float vectors hold the block value of that lane.
struct mv_q4g { // GGUF Q4_0: lane k*4..k*4+3 <- block k; lo/hi = x elements 0-15 / 16-31
    int8_t lo[64], hi[64];
    int32_t ncorr[16]; // -8 * sum of the lane's x (the q - 8 offset), added before the dots
    float dx[16];
};
struct mv_q8g { // GGUF Q8_0 / MLX Q8: x in element order, 2 vectors of 2 blocks
    int8_t x[128];
    int32_t ncorr[32]; // Q8_0: -128 * lane sum (weights are fed as w + 128)
    float dx[32];
    float sx[32];      // MLX: block sum(x) / 8 per lane (8 lanes per block)
};
struct mv_m4g { // MLX Q4: even / odd elements (low / high nibbles of each byte)
    int8_t ev[64], od[64];
    float dx[16];
    float sx[16]; // block sum(x) / 4 per lane
};
_Static_assert(sizeof(struct mv_q8g) % 64 == 0, "group layout");
_Static_assert(sizeof(struct mv_m4g) % 64 == 0, "group layout");

// Per-block floats d (or s) of 4 blocks spread over 16 lanes (4 per block) / 32 lanes (8 per block).
AI __m512 spread4(float a, float b, float c, float d) {
    __m512 v = _mm512_castps128_ps512(_mm_setr_ps(a, b, c, d));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), v);
}
AI void spread8(float a, float b, float c, float d, float *out) {
    __m512 v = _mm512_castps128_ps512(_mm_setr_ps(a, b, c, d));
    _mm512_store_ps(out, _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), v));
    _mm512_store_ps(out + 16, _mm512_permutexvar_ps(
        _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), v));
}

AI __m512i load_halves(const int8_t *a, const int8_t *b, const int8_t *c, const int8_t *d) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)a));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)b), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)c), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)d), 3);
}

static void prep_q4(const struct block_qx *q, int64_t ng, struct mv_q4g *g) {
    const __m512i eight = _mm512_set1_epi8(8);
    for (int64_t i = 0; i < ng; i++, q += 4) {
        __m512i lo = load_halves(q[0].qs, q[1].qs, q[2].qs, q[3].qs);
        __m512i hi = load_halves(q[0].qs + 16, q[1].qs + 16, q[2].qs + 16, q[3].qs + 16);
        __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, lo),
                                        eight, hi);
        _mm512_store_si512(g[i].lo, lo);
        _mm512_store_si512(g[i].hi, hi);
        _mm512_store_si512(g[i].ncorr, _mm512_sub_epi32(_mm512_setzero_si512(), s));
        _mm512_store_ps(g[i].dx, spread4(q[0].d, q[1].d, q[2].d, q[3].d));
    }
}

static void prep_q8(const struct block_qx *q, int64_t ng, struct mv_q8g *g) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    for (int64_t i = 0; i < ng; i++, q += 4) {
        for (int h = 0; h < 2; h++) {
            __m512i x = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q[2 * h].qs)),
                _mm256_loadu_si256((const __m256i *)q[2 * h + 1].qs), 1);
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, x);
            _mm512_store_si512(g[i].x + 64 * h, x);
            _mm512_store_si512(g[i].ncorr + 16 * h, _mm512_sub_epi32(_mm512_setzero_si512(), s));
        }
        spread8(q[0].d, q[1].d, q[2].d, q[3].d, g[i].dx);
        spread8(q[0].s / 8, q[1].s / 8, q[2].s / 8, q[3].s / 8, g[i].sx);
    }
}

static void prep_m4(const struct block_qx *q, int64_t ng, struct mv_m4g *g) {
    // even/odd split of 128 int8: vpermt2b over the two 64-byte halves of the group
    _Alignas(64) uint8_t ie[64];
    for (int j = 0; j < 64; j++) ie[j] = (uint8_t)(2 * j);
    const __m512i vie = _mm512_load_si512(ie), vio = _mm512_add_epi8(vie, _mm512_set1_epi8(1));
    for (int64_t i = 0; i < ng; i++, q += 4) {
        __m512i a = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q[0].qs)),
            _mm256_loadu_si256((const __m256i *)q[1].qs), 1);
        __m512i b = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q[2].qs)),
            _mm256_loadu_si256((const __m256i *)q[3].qs), 1);
        _mm512_store_si512(g[i].ev, _mm512_permutex2var_epi8(a, vie, b));
        _mm512_store_si512(g[i].od, _mm512_permutex2var_epi8(a, vio, b));
        _mm512_store_ps(g[i].dx, spread4(q[0].d, q[1].d, q[2].d, q[3].d));
        _mm512_store_ps(g[i].sx, spread4(q[0].s / 4, q[1].s / 4, q[2].s / 4, q[3].s / 4));
    }
}

// ---- GGUF Q4_0: 4 blocks = 72 bytes: d at 18k, nibbles at 18k + 2 ----

// Blocks [i0, nb) of one row against x, scalar (tails when nb % 4 != 0).
static float tail_q4_0(const struct block_q4_0 *b, const struct block_qx *x, int64_t i0,
                       int64_t nb) {
    float s = 0.0f;
    for (int64_t i = i0; i < nb; i++) {
        int d = 0;
        for (int e = 0; e < 16; e++)
            d += ((b[i].qs[e] & 15) - 8) * x[i].qs[e] + ((b[i].qs[e] >> 4) - 8) * x[i].qs[e + 16];
        s += f16_to_f32(b[i].d) * x[i].d * (float)d;
    }
    return s;
}

// Unpacking one row's 128-weight group (4 blocks, 72 bytes at p): the low and high nibbles as
// bytes, and the 4 block scales spread over 16 lanes (4 per block). The one-token and the
// multi-token kernels share it, so their per-token sums are formed identically.
struct q4_consts {
    __m512i nib, d, m4;
};
AI struct q4_consts q4_consts_init(void) {
    _Alignas(64) static const uint8_t inib[64] = {
        2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
        20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
        38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
        // block 3 (bytes 56..71) from the second load (offset 8): 64 + 48 + j
        112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127};
    return (struct q4_consts){
        .nib = _mm512_load_si512(inib),
        .d = _mm512_setr_epi32(0, 0, 9 | 9 << 16, 9 | 9 << 16, 18 | 18 << 16, 18 | 18 << 16,
                               27 | 27 << 16, 27 | 27 << 16, 0, 0, 0, 0, 0, 0, 0, 0),
        .m4 = _mm512_set1_epi8(0x0F)};
}
AI void unpack_q4_0(const struct q4_consts *k, const uint8_t *p, __m512i *lo, __m512i *hi,
                    __m512 *dw) {
    __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + 8);
    __m512i nib = _mm512_permutex2var_epi8(a, k->nib, b);
    *dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(k->d, a)));
    *lo = _mm512_and_si512(nib, k->m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(nib, 4), k->m4);
}

AI void rows_q4_0(const int R, const uint8_t *w, size_t rb, const struct mv_q4g *xg, int64_t ng,
                  const struct block_qx *x, int64_t nb, float *out) {
    const struct q4_consts k = q4_consts_init();
    __m512 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const __m512i xlo = _mm512_load_si512(xg[g].lo), xhi = _mm512_load_si512(xg[g].hi);
        const __m512i nc = _mm512_load_si512(xg[g].ncorr);
        const __m512 dx = _mm512_load_ps(xg[g].dx);
        if (MV_AHEAD && R == 4)
            pf_ahead(w + mv_ahead_rows(rb) * rb + (size_t)g * (4 * 72), 4 * 72);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 72;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            __m512i lo, hi;
            __m512 dw;
            unpack_q4_0(&k, p, &lo, &hi, &dw);
            __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc, lo, xlo), hi, xhi);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) {
        out[j] = _mm512_reduce_add_ps(acc[j]);
        if (4 * ng < nb)
            out[j] += tail_q4_0((const struct block_q4_0 *)(w + rb * (size_t)j), x, 4 * ng, nb);
    }
}

// ---- GGUF Q8_0: 4 blocks = 136 bytes: d at 34k, int8 at 34k + 2 ----

static float tail_q8_0(const struct block_q8_0 *b, const struct block_qx *x, int64_t i0,
                       int64_t nb) {
    float s = 0.0f;
    for (int64_t i = i0; i < nb; i++) {
        int d = 0;
        for (int e = 0; e < 32; e++) d += b[i].qs[e] * x[i].qs[e];
        s += f16_to_f32(b[i].d) * x[i].d * (float)d;
    }
    return s;
}

// Unpacking one row's 128-weight group (4 blocks, 136 bytes at p): blocks 0-1 and 2-3 as bytes
// offset by 128 (fed to vpdpbusd as unsigned; the prepared ncorr undoes it), and the block scales spread
// 8 lanes per block. Shared by the one-token and the multi-token kernels.
// Loads: L0 = bytes [0,64), L1 = [64,128), L2 = [72,136); blocks 0,1 = bytes 2..33, 36..67 of
// (L0|L1): index = byte offset; blocks 2,3 = bytes 70..101 (L1: byte - 64), 104..135 (L2: 64 +
// byte - 72); d_k at byte 34k = word 17k.
struct q8_consts {
    __m512i i01, i23, idw, k80;
};
AI struct q8_consts q8_consts_init(void) {
    _Alignas(64) static const uint8_t i01[64] = {
        2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
        24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
        48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67};
    _Alignas(64) static const uint8_t i23[64] = {
        6,   7,   8,   9,   10,  11,  12,  13,  14,  15,  16,  17,  18,  19,  20,  21,
        22,  23,  24,  25,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,
        96,  97,  98,  99,  100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
        112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127};
    _Alignas(64) static const uint16_t idw[32] = {0,  0,  0,  0,  0,  0,  0,  0,  17, 17, 17,
                                                  17, 17, 17, 17, 17, 34, 34, 34, 34, 34, 34,
                                                  34, 34, 51, 51, 51, 51, 51, 51, 51, 51};
    return (struct q8_consts){.i01 = _mm512_load_si512(i01), .i23 = _mm512_load_si512(i23),
                              .idw = _mm512_load_si512(idw), .k80 = _mm512_set1_epi8((char)0x80)};
}
AI void unpack_q8_0(const struct q8_consts *k, const uint8_t *p, __m512i *q01, __m512i *q23,
                    __m512 *d01, __m512 *d23) {
    __m512i l0 = _mm512_loadu_si512(p), l1 = _mm512_loadu_si512(p + 64);
    __m512i l2 = _mm512_loadu_si512(p + 72);
    *q01 = _mm512_xor_si512(_mm512_permutex2var_epi8(l0, k->i01, l1), k->k80);
    *q23 = _mm512_xor_si512(_mm512_permutex2var_epi8(l1, k->i23, l2), k->k80);
    __m512i dd = _mm512_permutex2var_epi16(l0, k->idw, l1);
    *d01 = _mm512_cvtph_ps(_mm512_castsi512_si256(dd));
    *d23 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dd, 1));
}

AI void rows_q8_0(const int R, const uint8_t *w, size_t rb, const struct mv_q8g *xg, int64_t ng,
                  const struct block_qx *x, int64_t nb, float *out) {
    const struct q8_consts k = q8_consts_init();
    __m512 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const __m512i x01 = _mm512_load_si512(xg[g].x), x23 = _mm512_load_si512(xg[g].x + 64);
        const __m512i n01 = _mm512_load_si512(xg[g].ncorr);
        const __m512i n23 = _mm512_load_si512(xg[g].ncorr + 16);
        const __m512 dx01 = _mm512_load_ps(xg[g].dx), dx23 = _mm512_load_ps(xg[g].dx + 16);
        if (MV_AHEAD && R == 4)
            pf_ahead(w + mv_ahead_rows(rb) * rb + (size_t)g * (4 * 136), 4 * 136);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 136;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF + 64, _MM_HINT_T0);
            __m512i q01, q23;
            __m512 d01, d23;
            unpack_q8_0(&k, p, &q01, &q23, &d01, &d23);
            __m512i s01 = _mm512_dpbusd_epi32(n01, q01, x01);
            __m512i s23 = _mm512_dpbusd_epi32(n23, q23, x23);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s01), _mm512_mul_ps(d01, dx01), acc[j]);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s23), _mm512_mul_ps(d23, dx23), acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) {
        out[j] = _mm512_reduce_add_ps(acc[j]);
        if (4 * ng < nb)
            out[j] += tail_q8_0((const struct block_q8_0 *)(w + rb * (size_t)j), x, 4 * ng, nb);
    }
}

// ---- MLX affine Q4 / Q8: per group s * q + b, scales/biases in a separate array ----

// Up to 4 consecutive scale values starting at element i (n valid, the rest zero; masked so
// the array end is never overread), as f32 in the low lanes.
AI __m128 load_scales(enum lfmd_dtype sdt, const void *p, int64_t i, int n) {
    __mmask8 m = (__mmask8)((1u << n) - 1);
    if (sdt == LFMD_DTYPE_F32) return _mm_maskz_loadu_ps(m, (const float *)p + i);
    __m128i h = _mm_maskz_loadu_epi16(m, (const uint16_t *)p + i);
    if (sdt == LFMD_DTYPE_F16) return _mm_cvtph_ps(h);
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16));
}

static float tail_mlx(int bits, const struct tensor *W, int64_t r, const struct block_qx *x,
                      int64_t i0, int64_t nb) {
    int64_t n_in = tensor_cols(W), ng = n_in / W->group_size;
    const uint8_t *row = (const uint8_t *)W->data + (size_t)n_in * (size_t)bits / 8 * (size_t)r;
    float s = 0.0f;
    for (int64_t i = i0; i < nb; i++) {
        int64_t gi = r * ng + i * QKX / W->group_size;
        float sc = kern_load_scalar(W->scale_dtype, W->scales, gi);
        float bi = kern_load_scalar(W->scale_dtype, W->biases, gi);
        int d = 0;
        for (int e = 0; e < QKX; e++) {
            int64_t c = i * QKX + e;
            int q = bits == 4 ? (row[c / 2] >> (4 * (c & 1))) & 15 : row[c];
            d += q * x[i].qs[e];
        }
        s += sc * x[i].d * (float)d + bi * x[i].s;
    }
    return s;
}

// Lane l of an MLX Q4 group covers elements 8l..8l+7: the index of its scale within the group's
// 128 elements for group size gs (32, 64 or 128).
AI __m512i mlx4_scale_lanes(int gs) {
    return gs == 32   ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
           : gs == 64 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                      : _mm512_setzero_si512();
}

// Unpacking one row's 128-weight MLX Q4 group (64 bytes at p, scale/bias index si): even / odd
// elements (low / high nibbles) as bytes and the group scales and biases spread over the lanes
// (is: lane -> scale index). Shared by the one-token and the multi-token kernels.
AI void unpack_mlx4(const struct tensor *W, const uint8_t *p, int64_t si, int per, __m512i is,
                    __m512i *lo, __m512i *hi, __m512 *sv, __m512 *bv) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i v = _mm512_loadu_si512(p);
    *lo = _mm512_and_si512(v, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    *sv = _mm512_permutexvar_ps(
        is, _mm512_castps128_ps512(load_scales(W->scale_dtype, W->scales, si, per)));
    *bv = _mm512_permutexvar_ps(
        is, _mm512_castps128_ps512(load_scales(W->scale_dtype, W->biases, si, per)));
}

AI void rows_mlx4(const int R, const struct tensor *W, int64_t r, const struct mv_m4g *xg,
                  int64_t ng, const struct block_qx *x, int64_t nb, float *out) {
    int64_t n_in = tensor_cols(W);
    size_t rb = (size_t)n_in / 2;
    const uint8_t *w = (const uint8_t *)W->data + rb * (size_t)r;
    int gs = W->group_size, per = GQ / gs; // scale values per 128 elements (1, 2 or 4)
    int64_t nsg = n_in / gs;
    const __m512i is = mlx4_scale_lanes(gs);
    __m512 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const __m512i xe = _mm512_load_si512(xg[g].ev), xo = _mm512_load_si512(xg[g].od);
        const __m512 dx = _mm512_load_ps(xg[g].dx), sx = _mm512_load_ps(xg[g].sx);
        if (MV_AHEAD && R == 4)
            pf_ahead(w + mv_ahead_rows(rb) * rb + (size_t)g * (4 * 64), 4 * 64);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 64;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            __m512i lo, hi;
            __m512 sv, bv;
            unpack_mlx4(W, p, (r + j) * nsg + g * per, per, is, &lo, &hi, &sv, &bv);
            __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xe),
                                            hi, xo);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sv, dx), acc[j]);
            acc[j] = _mm512_fmadd_ps(bv, sx, acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) {
        out[j] = _mm512_reduce_add_ps(acc[j]);
        if (4 * ng < nb) out[j] += tail_mlx(4, W, r + j, x, 4 * ng, nb);
    }
}

AI void rows_mlx8(const int R, const struct tensor *W, int64_t r, const struct mv_q8g *xg,
                  int64_t ng, const struct block_qx *x, int64_t nb, float *out) {
    int64_t n_in = tensor_cols(W);
    size_t rb = (size_t)n_in;
    const uint8_t *w = (const uint8_t *)W->data + rb * (size_t)r;
    int gs = W->group_size, per = GQ / gs;
    int64_t nsg = n_in / gs;
    enum lfmd_dtype sdt = W->scale_dtype;
    // vector h lane l covers elements 64h + 4l..+3: scale index (64h + 4l) / gs
    __m512i i0, i1;
    if (gs == 32) {
        i0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        i1 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    } else if (gs == 64) {
        i0 = _mm512_setzero_si512();
        i1 = _mm512_set1_epi32(1);
    } else {
        i0 = i1 = _mm512_setzero_si512();
    }
    __m512 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const __m512i x0 = _mm512_load_si512(xg[g].x), x1 = _mm512_load_si512(xg[g].x + 64);
        const __m512 dx0 = _mm512_load_ps(xg[g].dx), dx1 = _mm512_load_ps(xg[g].dx + 16);
        const __m512 sx0 = _mm512_load_ps(xg[g].sx), sx1 = _mm512_load_ps(xg[g].sx + 16);
        if (MV_AHEAD && R == 4)
            pf_ahead(w + mv_ahead_rows(rb) * rb + (size_t)g * (4 * 128), 4 * 128);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 128;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF + 64, _MM_HINT_T0);
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(p), x0);
            __m512i s1 =
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(p + 64), x1);
            int64_t si = (r + j) * nsg + g * per;
            __m512 s4 = _mm512_castps128_ps512(load_scales(sdt, W->scales, si, per));
            __m512 b4 = _mm512_castps128_ps512(load_scales(sdt, W->biases, si, per));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0),
                                     _mm512_mul_ps(_mm512_permutexvar_ps(i0, s4), dx0), acc[j]);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1),
                                     _mm512_mul_ps(_mm512_permutexvar_ps(i1, s4), dx1), acc[j]);
            acc[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i0, b4), sx0, acc[j]);
            acc[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i1, b4), sx1, acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) {
        out[j] = _mm512_reduce_add_ps(acc[j]);
        if (4 * ng < nb) out[j] += tail_mlx(8, W, r + j, x, 4 * ng, nb);
    }
}

// ---- F32 / F16 / BF16 weights against f32 activations ----

enum wkind { WK_F32, WK_F16, WK_BF16 };

AI __m512 load_w16(const int wk, const uint8_t *p, int64_t i) {
    if (wk == WK_F32) return _mm512_loadu_ps((const float *)p + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    if (wk == WK_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI __m512 load_w16_mask(const int wk, const uint8_t *p, int64_t i, __mmask16 m) {
    if (wk == WK_F32) return _mm512_maskz_loadu_ps(m, (const float *)p + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i);
    if (wk == WK_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AI void rows_float(const int R, const int wk, const uint8_t *w, size_t rb, const float *x,
                   int64_t n, float *out) {
    const int esz = wk == WK_F32 ? 4 : 2;
    __m512 a0[4], a1[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) a0[j] = a1[j] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        if (MV_FLOAT_AHEAD && R == 4)
            pf_ahead(w + mv_ahead_rows(rb) * rb + (size_t)i * (size_t)(4 * esz), 4 * 32 * esz);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const uint8_t *p = w + rb * (size_t)j;
            if (MV_NEAR) _mm_prefetch((const char *)(p + (size_t)i * esz) + MV_PF, _MM_HINT_T0);
            if (MV_NEAR && wk == WK_F32)
                _mm_prefetch((const char *)(p + (size_t)i * esz) + MV_PF + 64, _MM_HINT_T0);
            a0[j] = _mm512_fmadd_ps(load_w16(wk, p, i), x0, a0[j]);
            a1[j] = _mm512_fmadd_ps(load_w16(wk, p, i + 16), x1, a1[j]);
        }
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 x0 = _mm512_maskz_loadu_ps(m, x + i);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++)
            a0[j] = _mm512_fmadd_ps(load_w16_mask(wk, w + rb * (size_t)j, i, m), x0, a0[j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0[j], a1[j]));
}

AI void float_product(const int wk, const struct tensor *W, const float *X, int n_tok, float *Y,
                      int64_t ldy, int64_t r0, int64_t r1) {
    int64_t n = tensor_cols(W);
    size_t rb = kern_row_bytes(W->dtype, n);
    const uint8_t *base = W->data;
    float out[4];
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        for (int t = 0; t < n_tok; t++) {
            rows_float(4, wk, base + rb * (size_t)r, rb, X + (int64_t)t * n, n, out);
            memcpy(Y + t * ldy + r, out, sizeof out);
        }
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) {
            rows_float(1, wk, base + rb * (size_t)r, rb, X + (int64_t)t * n, n, out);
            Y[t * ldy + r] = out[0];
        }
}

// ---- several tokens (4..MV_MULTI_TOK) on GGUF Q4_0 / Q8_0, MLX Q4: unpack each group once ----
// Two rows per pass: their nibbles / bytes and block scales are unpacked into registers once per
// 128-weight group and dotted with every token's prepared activations (the per-token decode
// above redoes the unpack for each token, which made 8 tokens cost ~4x one). Each (row, token)
// sum is formed exactly as rows_q4_0 / rows_q8_0 form it for that token alone (same group
// order, same lane sums, same reduction), so results are bit-identical to decoding alone.

AI void rows2_q4_0_multi(const int T, const uint8_t *w, size_t rb, const struct mv_q4g *xg,
                         int64_t ng, int64_t gstride, const struct block_qx *x, int64_t nb,
                         float out[2][MV_MULTI_TOK]) {
    const struct q4_consts k = q4_consts_init();
    __m512 acc[2][MV_MULTI_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512i lo[2], hi[2];
        __m512 dw[2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 72;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            unpack_q4_0(&k, p, &lo[j], &hi[j], &dw[j]);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const struct mv_q4g *xt = xg + t * gstride + g;
            const __m512i xlo = _mm512_load_si512(xt->lo), xhi = _mm512_load_si512(xt->hi);
            const __m512i nc = _mm512_load_si512(xt->ncorr);
            const __m512 dx = _mm512_load_ps(xt->dx);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                __m512i sv = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc, lo[j], xlo), hi[j], xhi);
                acc[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sv), _mm512_mul_ps(dw[j], dx),
                                            acc[j][t]);
            }
        }
    }
    for (int j = 0; j < 2; j++)
        for (int t = 0; t < T; t++) {
            out[j][t] = _mm512_reduce_add_ps(acc[j][t]);
            if (4 * ng < nb)
                out[j][t] += tail_q4_0((const struct block_q4_0 *)(w + rb * (size_t)j), x + t * nb,
                                       4 * ng, nb);
        }
}

AI void rows2_q8_0_multi(const int T, const uint8_t *w, size_t rb, const struct mv_q8g *xg,
                         int64_t ng, int64_t gstride, const struct block_qx *x, int64_t nb,
                         float out[2][MV_MULTI_TOK]) {
    const struct q8_consts k = q8_consts_init();
    __m512 acc[2][MV_MULTI_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512i q01[2], q23[2];
        __m512 d01[2], d23[2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 136;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF + 64, _MM_HINT_T0);
            unpack_q8_0(&k, p, &q01[j], &q23[j], &d01[j], &d23[j]);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const struct mv_q8g *xt = xg + t * gstride + g;
            const __m512i x01 = _mm512_load_si512(xt->x), x23 = _mm512_load_si512(xt->x + 64);
            const __m512i n01 = _mm512_load_si512(xt->ncorr);
            const __m512i n23 = _mm512_load_si512(xt->ncorr + 16);
            const __m512 dx01 = _mm512_load_ps(xt->dx), dx23 = _mm512_load_ps(xt->dx + 16);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                __m512i s01 = _mm512_dpbusd_epi32(n01, q01[j], x01);
                __m512i s23 = _mm512_dpbusd_epi32(n23, q23[j], x23);
                acc[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s01), _mm512_mul_ps(d01[j], dx01),
                                            acc[j][t]);
                acc[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s23), _mm512_mul_ps(d23[j], dx23),
                                            acc[j][t]);
            }
        }
    }
    for (int j = 0; j < 2; j++)
        for (int t = 0; t < T; t++) {
            out[j][t] = _mm512_reduce_add_ps(acc[j][t]);
            if (4 * ng < nb)
                out[j][t] += tail_q8_0((const struct block_q8_0 *)(w + rb * (size_t)j), x + t * nb,
                                       4 * ng, nb);
        }
}

AI void rows2_mlx4_multi(const int T, const struct tensor *W, int64_t r, const struct mv_m4g *xg,
                        int64_t ng, int64_t gstride, const struct block_qx *x, int64_t nb,
                        float out[2][MV_MULTI_TOK]) {
    int64_t n_in = tensor_cols(W);
    size_t rb = (size_t)n_in / 2;
    const uint8_t *w = (const uint8_t *)W->data + rb * (size_t)r;
    int gs = W->group_size, per = GQ / gs;
    int64_t nsg = n_in / gs;
    const __m512i is = mlx4_scale_lanes(gs);
    __m512 acc[2][MV_MULTI_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512i lo[2], hi[2];
        __m512 sv[2], bv[2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            const uint8_t *p = w + rb * (size_t)j + (size_t)g * 64;
            if (MV_NEAR) _mm_prefetch((const char *)p + MV_PF, _MM_HINT_T0);
            unpack_mlx4(W, p, (r + j) * nsg + g * per, per, is, &lo[j], &hi[j], &sv[j], &bv[j]);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const struct mv_m4g *xt = xg + t * gstride + g;
            const __m512i xe = _mm512_load_si512(xt->ev), xo = _mm512_load_si512(xt->od);
            const __m512 dx = _mm512_load_ps(xt->dx), sx = _mm512_load_ps(xt->sx);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                __m512i sd = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[j], xe), hi[j], xo);
                acc[j][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sd), _mm512_mul_ps(sv[j], dx),
                                            acc[j][t]);
                acc[j][t] = _mm512_fmadd_ps(bv[j], sx, acc[j][t]);
            }
        }
    }
    for (int j = 0; j < 2; j++)
        for (int t = 0; t < T; t++) {
            out[j][t] = _mm512_reduce_add_ps(acc[j][t]);
            if (4 * ng < nb) out[j][t] += tail_mlx(4, W, r + j, x + t * nb, 4 * ng, nb);
        }
}

bool kern_matvec_avx512_multi_supports(const struct tensor *W, int n_tok) {
    int64_t n_in = tensor_cols(W);
    if (W->dtype == LFMD_DTYPE_MLX_Q4 && !kern_matvec_avx512_supports(W, 1)) return false;
    return n_tok >= 1 && n_tok <= MV_MULTI_TOK && n_in % QKX == 0 && n_in <= MV_MULTI_MAX_IN &&
           (W->dtype == LFMD_DTYPE_Q4_0 || W->dtype == LFMD_DTYPE_Q8_0 ||
            W->dtype == LFMD_DTYPE_MLX_Q4);
}

void kern_matvec_avx512_multi(const struct tensor *W, const void *qx, int n_tok, float *Y,
                              int64_t ldy, int64_t r0, int64_t r1) {
    const struct block_qx *q = qx;
    const int64_t n_in = tensor_cols(W), nb = n_in / QKX, ng = nb / 4;
    const size_t rb = kern_row_bytes(W->dtype, n_in);
    const uint8_t *base = W->data;
    const bool q4 = W->dtype == LFMD_DTYPE_Q4_0, m4 = W->dtype == LFMD_DTYPE_MLX_Q4;
    // prepared activations of every token (Q8_0: 384 bytes per group, Q4_0 / MLX Q4: 192)
    _Alignas(64) struct mv_q8g prep[MV_MULTI_TOK * (MV_MULTI_MAX_IN / GQ)];
    for (int t = 0; t < n_tok; t++) {
        if (q4) prep_q4(q + t * nb, ng, (struct mv_q4g *)prep + t * ng);
        else if (m4) prep_m4(q + t * nb, ng, (struct mv_m4g *)prep + t * ng);
        else prep_q8(q + t * nb, ng, prep + t * ng);
    }
    float out[2][MV_MULTI_TOK];
    int64_t r = r0;
    for (; r + 2 <= r1; r += 2) {
        const uint8_t *w = base + rb * (size_t)r;
#define MULTI(T)                                                                               \
    case T:                                                                                    \
        if (q4) rows2_q4_0_multi(T, w, rb, (const struct mv_q4g *)prep, ng, ng, q, nb, out);   \
        else if (m4) rows2_mlx4_multi(T, W, r, (const struct mv_m4g *)prep, ng, ng, q, nb, out); \
        else rows2_q8_0_multi(T, w, rb, prep, ng, ng, q, nb, out);                             \
        break
        switch (n_tok) {
            MULTI(1); MULTI(2); MULTI(3); MULTI(4); MULTI(5); MULTI(6); MULTI(7); MULTI(8);
        default: return;
        }
#undef MULTI
        for (int t = 0; t < n_tok; t++) {
            Y[t * ldy + r] = out[0][t];
            Y[t * ldy + r + 1] = out[1][t];
        }
    }
    if (r < r1) // the last odd row, three tokens at a time
        for (int t = 0; t < n_tok; t += MV_MAX_TOK)
            kern_matvec_avx512(W, NULL, q + t * nb, n_tok - t < MV_MAX_TOK ? n_tok - t : MV_MAX_TOK,
                               Y + t * ldy, ldy, r, r1);
}

bool kern_matvec_avx512_supports(const struct tensor *W, int n_tok) {
    if (n_tok < 1 || n_tok > MV_MAX_TOK) return false;
    int64_t n_in = tensor_cols(W);
    switch (W->dtype) {
    case LFMD_DTYPE_F32:
    case LFMD_DTYPE_F16:
    case LFMD_DTYPE_BF16:
        return true;
    case LFMD_DTYPE_Q4_0:
    case LFMD_DTYPE_Q8_0:
        return n_in % QKX == 0 && n_in <= MV_MAX_IN;
    case LFMD_DTYPE_MLX_Q4:
    case LFMD_DTYPE_MLX_Q8:
        return n_in % QKX == 0 && n_in <= MV_MAX_IN &&
               (W->group_size == 32 || W->group_size == 64 || W->group_size == 128) &&
               n_in % W->group_size == 0;
    default:
        return false;
    }
}

void kern_matvec_avx512(const struct tensor *W, const float *X, const void *qx, int n_tok,
                        float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    switch (W->dtype) {
    case LFMD_DTYPE_F32: float_product(WK_F32, W, X, n_tok, Y, ldy, r0, r1); return;
    case LFMD_DTYPE_F16: float_product(WK_F16, W, X, n_tok, Y, ldy, r0, r1); return;
    case LFMD_DTYPE_BF16: float_product(WK_BF16, W, X, n_tok, Y, ldy, r0, r1); return;
    default: break;
    }
    const struct block_qx *q = qx;
    int64_t n_in = tensor_cols(W), nb = n_in / QKX, ng = nb / 4;
    size_t rb = kern_row_bytes(W->dtype, n_in);
    const uint8_t *base = W->data;
    enum lfmd_dtype dt = W->dtype;
    // prepared activations of up to 3 tokens (the largest layout: 384 bytes per group)
    _Alignas(64) struct mv_q8g prep[MV_MAX_TOK * MV_MAX_GROUPS];
    size_t gb = dt == LFMD_DTYPE_Q4_0 ? sizeof(struct mv_q4g)
                : dt == LFMD_DTYPE_MLX_Q4 ? sizeof(struct mv_m4g) : sizeof(struct mv_q8g);
    uint8_t *pb = (uint8_t *)prep;
    for (int t = 0; t < n_tok; t++) {
        void *g = pb + (size_t)t * (size_t)ng * gb;
        if (dt == LFMD_DTYPE_Q4_0) prep_q4(q + t * nb, ng, g);
        else if (dt == LFMD_DTYPE_MLX_Q4) prep_m4(q + t * nb, ng, g);
        else prep_q8(q + t * nb, ng, g);
    }
    float out[4];
    for (int64_t r = r0; r < r1;) {
        int R = r1 - r >= 4 ? 4 : 1;
        for (int t = 0; t < n_tok; t++) {
            const void *g = pb + (size_t)t * (size_t)ng * gb;
            const struct block_qx *xt = q + t * nb;
            const uint8_t *w = base + rb * (size_t)r;
            switch (dt) {
            case LFMD_DTYPE_Q4_0:
                if (R == 4) rows_q4_0(4, w, rb, g, ng, xt, nb, out);
                else rows_q4_0(1, w, rb, g, ng, xt, nb, out);
                break;
            case LFMD_DTYPE_Q8_0:
                if (R == 4) rows_q8_0(4, w, rb, g, ng, xt, nb, out);
                else rows_q8_0(1, w, rb, g, ng, xt, nb, out);
                break;
            case LFMD_DTYPE_MLX_Q4:
                if (R == 4) rows_mlx4(4, W, r, g, ng, xt, nb, out);
                else rows_mlx4(1, W, r, g, ng, xt, nb, out);
                break;
            default: // MLX_Q8
                if (R == 4) rows_mlx8(4, W, r, g, ng, xt, nb, out);
                else rows_mlx8(1, W, r, g, ng, xt, nb, out);
                break;
            }
            memcpy(Y + t * ldy + r, out, sizeof(float) * (size_t)R);
        }
        r += R;
    }
}

bool kern_matvec_avx512_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
}
#else
bool kern_matvec_avx512_supports(const struct tensor *W, int n_tok) {
    (void)W;
    (void)n_tok;
    return false;
}
void kern_matvec_avx512(const struct tensor *W, const float *X, const void *qx, int n_tok,
                        float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    (void)qx;
    kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1);
}
bool kern_matvec_avx512_usable(void) { return false; }
bool kern_matvec_avx512_multi_supports(const struct tensor *W, int n_tok) {
    (void)W, (void)n_tok;
    return false;
}
void kern_matvec_avx512_multi(const struct tensor *W, const void *qx, int n_tok, float *Y,
                              int64_t ldy, int64_t r0, int64_t r1) {
    (void)W, (void)qx, (void)n_tok, (void)Y, (void)ldy, (void)r0, (void)r1;
}
#endif
