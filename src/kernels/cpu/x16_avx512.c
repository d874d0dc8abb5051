// AVX-512 VNNI decode kernels for Q4_0 / Q8_0 weights in the x16 layouts (kernels.h): 16
// output rows per pass, one 32-bit lane per row. For each block, the aligned 64-byte chunks of
// the 16 rows' quants are dotted (vpdpbusd) with the token's 4 activation bytes broadcast to
// every lane: Q4_0 low nibbles as v & 0x0F, high nibbles kept in place (v & 0xF0 = 16 x the
// value; (sum >> 4) is exact), Q8_0 bytes as v ^ 0x80 (unsigned q + 128); the q - 8 / + 128
// offsets come back through -8 / -128 x the activation block sum. The 16 rows' block scales
// are one f16->f32 conversion. Per 128 weights of one row this is about half the port-0/5 uops
// of the plain-layout kernels (no vpermt2b / vpermw / per-row scale conversion); the plain Q4_0
// kernel streamed only ~10-11 GB/s per core. Results equal kern_matmul_ref up to f32 summation
// order (integer dots exact); each token's result is formed identically whatever n_tok
// (bit-identical to decoding it alone). Also the AVX-512 pack / unpack moves of the layouts.
// SPDX-License-Identifier: MIT
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#define LFMD_HAVE_X16_TU 1
#endif
#include "kernels/kern_internal.h"

#include <string.h>

#ifdef LFMD_HAVE_X16_TU
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

#ifndef X16_PF
#define X16_PF 2304 // Q4_0: bytes ahead in the group's stream into L1 (4 block pairs)
#endif
#ifndef X16_PF2
// Q4_0: bytes ahead into L2. 4608 streams 26.9-27.8 GB/s on 2 threads (bench_kernels, x16,
// 2048x8192 + 8192x2048 from 1 GiB) against 24.2-24.3 at 9216 (the earlier value) and a
// 26.8 GB/s read ceiling; 3456 about the same as 4608, 6912 and 16384 like 9216, none 12.6 on
// one thread (14.0-14.3 at 3456-4608, 13.0 at 9216).
#define X16_PF2 4608
#endif
#ifndef X16_PF8
#define X16_PF8 4608 // Q8_0 (block pairs twice as long): into L1
#endif
#ifndef X16_PF8_2
#define X16_PF8_2 18432 // Q8_0: into L2 (4608 x 2 measured within noise of it on 2 threads)
#endif

enum { X16_ROWS = 16, X16_PAIR = 576, X16_PAIR8 = 1088, X16_MAX_NB = 16384 / QK4_0 };

AI int32_t ld32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// One Q4_0 group of 16 rows (nb blocks at grp) against T tokens: Y[t * ldy + 0..15].
AI void group_q4(const int T, const uint8_t *grp, int64_t nb, const struct block_qx *x,
                  const int32_t *nc, float *Y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), mf0 = _mm512_set1_epi8((char)0xF0);
    __m512 acc[KERN_X16_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t p = 0; p < nb / 2; p++) {
        const uint8_t *q = grp + (size_t)p * X16_PAIR;
#pragma GCC unroll 9
        for (int o = 0; o < X16_PAIR; o += 64) {
            if (X16_PF) _mm_prefetch((const char *)q + X16_PF + o, _MM_HINT_T0);
            if (X16_PF2) _mm_prefetch((const char *)q + X16_PF2 + o, _MM_HINT_T1);
        }
        const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)q));
        const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + 32)));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * p + h;
            const uint8_t *nib = q + 64 + 256 * h;
            __m512i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m512i v = _mm512_loadu_si512(nib + 64 * k);
                lo[k] = _mm512_and_si512(v, m4);
                hi[k] = _mm512_and_si512(v, mf0);
            }
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const struct block_qx *xb = x + t * nb + b;
                __m512i sl = _mm512_set1_epi32(nc[t * nb + b]), sh = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    sl = _mm512_dpbusd_epi32(sl, lo[k], _mm512_set1_epi32(ld32(xb->qs + 4 * k)));
                    sh = _mm512_dpbusd_epi32(sh, hi[k],
                                             _mm512_set1_epi32(ld32(xb->qs + 16 + 4 * k)));
                }
                __m512i s = _mm512_add_epi32(sl, _mm512_srai_epi32(sh, 4));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                                         _mm512_mul_ps(h ? dw1 : dw0, _mm512_set1_ps(xb->d)),
                                         acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(Y + t * ldy, acc[t]);
}

// The same for a Q8_0 group (block pairs of 1088 bytes).
AI void group_q8(const int T, const uint8_t *grp, int64_t nb, const struct block_qx *x,
                 const int32_t *nc, float *Y, int64_t ldy) {
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[KERN_X16_MAX_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t p = 0; p < nb / 2; p++) {
        const uint8_t *q = grp + (size_t)p * X16_PAIR8;
#pragma GCC unroll 17
        for (int o = 0; o < X16_PAIR8; o += 64) {
            _mm_prefetch((const char *)q + X16_PF8 + o, _MM_HINT_T0);
            if (X16_PF8_2) _mm_prefetch((const char *)q + X16_PF8_2 + o, _MM_HINT_T1);
        }
        const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)q));
        const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + 32)));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * p + h;
            const uint8_t *qs = q + 64 + 512 * h;
            __m512i w[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                w[k] = _mm512_xor_si512(_mm512_loadu_si512(qs + 64 * k), k80);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const struct block_qx *xb = x + t * nb + b;
                __m512i sa = _mm512_set1_epi32(nc[t * nb + b]), sb = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int k = 0; k < 8; k += 2) {
                    sa = _mm512_dpbusd_epi32(sa, w[k], _mm512_set1_epi32(ld32(xb->qs + 4 * k)));
                    sb = _mm512_dpbusd_epi32(sb, w[k + 1],
                                             _mm512_set1_epi32(ld32(xb->qs + 4 * k + 4)));
                }
                __m512i s = _mm512_add_epi32(sa, sb);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                                         _mm512_mul_ps(h ? dw1 : dw0, _mm512_set1_ps(xb->d)),
                                         acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(Y + t * ldy, acc[t]);
}

void kern_matvec_x16(const struct tensor *W, const void *qx, int n_tok, float *Y, int64_t ldy,
                     int64_t r0, int64_t r1) {
    const struct block_qx *x = qx;
    const int64_t nb = tensor_cols(W) / QKX;
    const size_t gb = kern_row_bytes(W->dtype, tensor_cols(W)) * X16_ROWS;
    const bool q8 = W->layout == KERN_LAYOUT_Q8_0_X16;
    // (q - 8 resp. q + 128 offset) x the sum of each activation block, per token
    int32_t nc[KERN_X16_MAX_TOK * X16_MAX_NB];
    for (int t = 0; t < n_tok; t++)
        for (int64_t b = 0; b < nb; b++) {
            int s = 0;
            for (int e = 0; e < QKX; e++) s += x[t * nb + b].qs[e];
            nc[t * nb + b] = (q8 ? -128 : -8) * s;
        }
    const uint8_t *base = W->data;
    for (int64_t r = r0; r < r1; r += X16_ROWS) {
        const uint8_t *grp = base + gb * (size_t)(r / X16_ROWS);
        switch (n_tok) {
#define X16_T(T)                                                                               \
    case T:                                                                                    \
        if (q8) group_q8(T, grp, nb, x, nc, Y + r, ldy);                                       \
        else group_q4(T, grp, nb, x, nc, Y + r, ldy);                                          \
        break
            X16_T(1); X16_T(2); X16_T(3); X16_T(4); X16_T(5); X16_T(6); X16_T(7); X16_T(8);
#undef X16_T
        default: return;
        }
    }
}

// kern_x16_unpack_group with vector moves: per 16 qs bytes of a block, the 4 chunks (row l's
// dword k in lane l of chunk k) are transposed 4x4 within each 128-bit lane, which leaves row
// 4i+j's 16 bytes in lane i of vector j.
void kern_x16_unpack_group_fast(const struct tensor *W, int64_t g, void *out) {
    const int64_t nb = tensor_cols(W) / QKX;
    const int qb = kern_x16_qs_bytes(W->dtype);
    const size_t rb = kern_row_bytes(W->dtype, tensor_cols(W)), bs = 2 + (size_t)qb;
    const size_t pair = 64 + 32 * (size_t)qb;
    const uint8_t *grp = (const uint8_t *)W->data + rb * X16_ROWS * (size_t)g;
    uint8_t *o = out;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = grp + (size_t)(b / 2) * pair;
        const uint8_t *sc = q + 32 * (b % 2);
        uint8_t *ob = o + (size_t)b * bs;
        for (int hh = 0; hh < qb / 16; hh++) {
            const uint8_t *nib = q + 64 + 16 * (size_t)qb * (b % 2) + 256 * hh;
            __m512i c0 = _mm512_loadu_si512(nib), c1 = _mm512_loadu_si512(nib + 64);
            __m512i c2 = _mm512_loadu_si512(nib + 128), c3 = _mm512_loadu_si512(nib + 192);
            __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
            __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
            __m512i r[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                            _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
            uint8_t *od = ob + 2 + 16 * hh;
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                _mm_storeu_si128((__m128i *)(od + rb * (size_t)j), _mm512_castsi512_si128(r[j]));
                _mm_storeu_si128((__m128i *)(od + rb * (size_t)(4 + j)),
                                 _mm512_extracti32x4_epi32(r[j], 1));
                _mm_storeu_si128((__m128i *)(od + rb * (size_t)(8 + j)),
                                 _mm512_extracti32x4_epi32(r[j], 2));
                _mm_storeu_si128((__m128i *)(od + rb * (size_t)(12 + j)),
                                 _mm512_extracti32x4_epi32(r[j], 3));
            }
        }
        for (int l = 0; l < X16_ROWS; l++) memcpy(ob + rb * (size_t)l, sc + 2 * l, 2);
    }
}

// kern_x16_pack_group with vector moves (the same 4x4 transposes, which are their own inverse).
void kern_x16_pack_group_fast(enum lfmd_dtype t, const uint8_t *plain, size_t rb, int64_t nb,
                              uint8_t *dst) {
    const int qb = kern_x16_qs_bytes(t);
    const size_t bs = 2 + (size_t)qb, pair = 64 + 32 * (size_t)qb;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *q = dst + (size_t)(b / 2) * pair;
        uint8_t *sc = q + 32 * (b % 2);
        const uint8_t *pb = plain + (size_t)b * bs;
        for (int hh = 0; hh < qb / 16; hh++) {
            uint8_t *nib = q + 64 + 16 * (size_t)qb * (b % 2) + 256 * hh;
            const uint8_t *ps = pb + 2 + 16 * hh;
            __m512i r[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
#define ROW16(l) _mm_loadu_si128((const __m128i *)(ps + rb * (size_t)(l)))
                __m512i v = _mm512_castsi128_si512(ROW16(j));
                v = _mm512_inserti32x4(v, ROW16(4 + j), 1);
                v = _mm512_inserti32x4(v, ROW16(8 + j), 2);
                r[j] = _mm512_inserti32x4(v, ROW16(12 + j), 3);
#undef ROW16
            }
            __m512i t0 = _mm512_unpacklo_epi32(r[0], r[1]), t1 = _mm512_unpackhi_epi32(r[0], r[1]);
            __m512i t2 = _mm512_unpacklo_epi32(r[2], r[3]), t3 = _mm512_unpackhi_epi32(r[2], r[3]);
            _mm512_storeu_si512(nib, _mm512_unpacklo_epi64(t0, t2));
            _mm512_storeu_si512(nib + 64, _mm512_unpackhi_epi64(t0, t2));
            _mm512_storeu_si512(nib + 128, _mm512_unpacklo_epi64(t1, t3));
            _mm512_storeu_si512(nib + 192, _mm512_unpackhi_epi64(t1, t3));
        }
        for (int l = 0; l < X16_ROWS; l++) memcpy(sc + 2 * l, pb + rb * (size_t)l, 2);
    }
}
#else
void kern_x16_pack_group_fast(enum lfmd_dtype t, const uint8_t *plain, size_t rb, int64_t nb,
                              uint8_t *dst) {
    kern_x16_pack_group(t, plain, rb, nb, dst);
}
void kern_x16_unpack_group_fast(const struct tensor *W, int64_t g, void *out) {
    kern_x16_unpack_group(W, g, out);
}
void kern_matvec_x16(const struct tensor *W, const void *qx, int n_tok, float *Y, int64_t ldy,
                     int64_t r0, int64_t r1) {
    (void)W, (void)qx, (void)n_tok, (void)Y, (void)ldy, (void)r0, (void)r1;
}
#endif
