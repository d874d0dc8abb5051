// AVX2 kernels for quantized weights: integer dot products (maddubs/madd) of weight blocks
// against int8-quantized activation blocks (struct block_qx) for decode, SIMD dequantization
// into f32 panels for prefill, and the activation quantizer.
// Integer-dot path: Q8_0, Q4_0, Q4_1, MLX Q4/Q8 (any group size); the K-quants use f32 panels.
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

// Software prefetch distance (bytes ahead on each weight row stream): the hardware streamer
// stops at 4 KiB pages and 4 interleaved rows of a quantized matrix outrun it.
#ifndef PF_DIST
#define PF_DIST 1024
#endif

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

AI float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum over 32 lanes of u8 * s8 as 8 f32 partial sums (no int16 saturation for u8 <= 128)
AI __m256 dot_u8s8(__m256i u, __m256i s) {
    __m256i p = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

AI __m256 dot_s8s8(__m256i a, __m256i b) {
    return dot_u8s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles then high nibbles (ggml Q4_0/Q4_1 order)
// (broadcast load + per-lane variable shift: keeps the shuffle port free)
AI __m256i nibbles_split(const uint8_t *p) {
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    b = _mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

// 16 bytes of MLX 4-bit words -> 32 bytes in element order (byte k: elements 2k low, 2k+1 high)
AI __m256i nibbles_interleave(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0F);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
}

bool kern_quant_avx2_supports(const struct tensor *W) {
    switch (W->dtype) {
    case LFMD_DTYPE_Q8_0:
    case LFMD_DTYPE_Q4_0:
    case LFMD_DTYPE_Q4_1:
        return true;
    case LFMD_DTYPE_MLX_Q4:
    case LFMD_DTYPE_MLX_Q8:
        return W->group_size % QKX == 0 && W->group_size > 0;
    default:
        return false;
    }
}

// ---- integer-dot row kernels: out[j] = row (r + j) . x for j < R ----

AI void dot_q8_0(const int R, const uint8_t *w, size_t rb, const struct block_qx *x, int64_t nb,
                 float *out) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
        float dx = x[i].d;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const struct block_q8_0 *b = (const struct block_q8_0 *)(w + rb * (size_t)j) + i;
            _mm_prefetch((const char *)b + PF_DIST, _MM_HINT_T0);
            __m256 p = dot_s8s8(_mm256_loadu_si256((const __m256i *)b->qs), xv);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * dx), p, acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = hsum(acc[j]);
}

// Q4_0: sum = d * dx * (q . xq - 8 * sum(xq)); the -8 term is folded into the integer lanes
// (8 * xq summed per lane pair once per activation block, shared by the rows).
AI void dot_q4_0(const int R, const uint8_t *w, size_t rb, const struct block_qx *x, int64_t nb,
                 float *out) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i corr = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, xv), ones);
        float dx = x[i].d;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const struct block_q4_0 *b = (const struct block_q4_0 *)(w + rb * (size_t)j) + i;
            _mm_prefetch((const char *)b + PF_DIST, _MM_HINT_T0);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles_split(b->qs), xv), ones);
            __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(p, corr));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * dx), f, acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = hsum(acc[j]);
}

// AVX-VNNI twins of dot_q4_0 / dot_q8_0 (vpdpbusd fuses maddubs + madd + the correction add).
#define VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

VNNI static inline __attribute__((always_inline)) void
dot_q4_0_vnni(const int R, const uint8_t *w, size_t rb, const struct block_qx *x, int64_t nb,
              float *out) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i ncorr = _mm256_sub_epi32(_mm256_setzero_si256(),
                                         _mm256_madd_epi16(_mm256_maddubs_epi16(eight, xv), ones));
        float dx = x[i].d;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const struct block_q4_0 *b = (const struct block_q4_0 *)(w + rb * (size_t)j) + i;
            _mm_prefetch((const char *)b + PF_DIST, _MM_HINT_T0);
            __m256i p = _mm256_dpbusd_avx_epi32(ncorr, nibbles_split(b->qs), xv);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * dx), _mm256_cvtepi32_ps(p), acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = hsum(acc[j]);
}

VNNI static inline __attribute__((always_inline)) void
dot_q8_0_vnni(const int R, const uint8_t *w, size_t rb, const struct block_qx *x, int64_t nb,
              float *out) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i ax = _mm256_sign_epi8(xv, xv);
        float dx = x[i].d;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const struct block_q8_0 *b = (const struct block_q8_0 *)(w + rb * (size_t)j) + i;
            _mm_prefetch((const char *)b + PF_DIST, _MM_HINT_T0);
            __m256i sw = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)b->qs), xv);
            __m256i p = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sw);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * dx), _mm256_cvtepi32_ps(p), acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = hsum(acc[j]);
}

// Q4_0 / Q8_0 integer-dot decode with AVX-VNNI (dispatch checks the CPU flag).
VNNI void kern_matmul_quant_vnni(const struct tensor *W, const float *X, const void *qx, int n_tok,
                                 float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    (void)X;
    const struct block_qx *q = qx;
    int64_t n_in = tensor_cols(W), nb = n_in / QKX;
    size_t rb = kern_row_bytes(W->dtype, n_in);
    const uint8_t *base = W->data;
    int q4 = W->dtype == LFMD_DTYPE_Q4_0;
    int64_t r = r0;
    float out[4];
    for (; r + 4 <= r1; r += 4)
        for (int t = 0; t < n_tok; t++) {
            if (q4) dot_q4_0_vnni(4, base + rb * (size_t)r, rb, q + t * nb, nb, out);
            else dot_q8_0_vnni(4, base + rb * (size_t)r, rb, q + t * nb, nb, out);
            memcpy(Y + t * ldy + r, out, sizeof out);
        }
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) {
            if (q4) dot_q4_0_vnni(1, base + rb * (size_t)r, rb, q + t * nb, nb, out);
            else dot_q8_0_vnni(1, base + rb * (size_t)r, rb, q + t * nb, nb, out);
            Y[t * ldy + r] = out[0];
        }
}

// Q4_1 q * d + m: sum = d * dx * (q . xq) + m * s_x
AI void dot_q4_1(const int R, const uint8_t *w, size_t rb, const struct block_qx *x, int64_t nb,
                 float *out) {
    __m256 acc[4];
    float accb[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) {
        acc[j] = _mm256_setzero_ps();
        accb[j] = 0.0f;
    }
    for (int64_t i = 0; i < nb; i++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
        float dx = x[i].d, sx = x[i].s;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            const struct block_q4_1 *b = (const struct block_q4_1 *)(w + rb * (size_t)j) + i;
            _mm_prefetch((const char *)b + PF_DIST, _MM_HINT_T0);
            __m256 p = dot_u8s8(nibbles_split(b->qs), xv);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * dx), p, acc[j]);
            accb[j] += h2f(b->m) * sx;
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = hsum(acc[j]) + accb[j];
}

// MLX affine: per group sum = s * (q . x) + b * sum(x). Q8 uses q - 128 (signed) so maddubs
// cannot saturate: s * (q' . x) + (b + 128 s) * sum(x).
AI void dot_mlx(const int R, const int bits, const struct tensor *W, int64_t r,
                const struct block_qx *x, int64_t nb, float *out) {
    int64_t n_in = tensor_cols(W);
    size_t rb = (size_t)n_in * (size_t)bits / 8;
    const uint8_t *w = (const uint8_t *)W->data + rb * (size_t)r;
    int gs = W->group_size, cpg = gs / QKX;
    int64_t ng = n_in / gs;
    enum lfmd_dtype sdt = W->scale_dtype;
    __m256 acc[4];
    float accb[4];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) {
        acc[j] = _mm256_setzero_ps();
        accb[j] = 0.0f;
    }
    for (int64_t g = 0; g < ng; g++) {
        float s[4], b[4];
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            s[j] = kern_load_scalar(sdt, W->scales, (r + j) * ng + g);
            b[j] = kern_load_scalar(sdt, W->biases, (r + j) * ng + g);
            if (bits == 8) b[j] += 128.0f * s[j];
        }
        for (int c = 0; c < cpg; c++) {
            int64_t i = g * cpg + c;
            __m256i xv = _mm256_loadu_si256((const __m256i *)x[i].qs);
            float dx = x[i].d, sx = x[i].s;
#pragma GCC unroll 4
            for (int j = 0; j < R; j++) {
                const uint8_t *p = w + rb * (size_t)j + (size_t)i * QKX * (size_t)bits / 8;
                _mm_prefetch((const char *)p + PF_DIST, _MM_HINT_T0);
                __m256 d;
                if (bits == 4) {
                    d = dot_u8s8(nibbles_interleave(p), xv);
                } else {
                    __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p),
                                                 _mm256_set1_epi8((char)0x80));
                    d = dot_s8s8(q, xv);
                }
                acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(s[j] * dx), d, acc[j]);
                accb[j] += b[j] * sx;
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < R; j++) out[j] = hsum(acc[j]) + accb[j];
}

AI void dot_rows(const int R, const struct tensor *W, int64_t r, const struct block_qx *x,
                 int64_t nb, float *out) {
    int64_t n_in = tensor_cols(W);
    size_t rb = kern_row_bytes(W->dtype, n_in);
    const uint8_t *w = (const uint8_t *)W->data + rb * (size_t)r;
    switch (W->dtype) {
    case LFMD_DTYPE_Q8_0: dot_q8_0(R, w, rb, x, nb, out); break;
    case LFMD_DTYPE_Q4_0: dot_q4_0(R, w, rb, x, nb, out); break;
    case LFMD_DTYPE_Q4_1: dot_q4_1(R, w, rb, x, nb, out); break;
    case LFMD_DTYPE_MLX_Q4: dot_mlx(R, 4, W, r, x, nb, out); break;
    case LFMD_DTYPE_MLX_Q8: dot_mlx(R, 8, W, r, x, nb, out); break;
    default: break;
    }
}

void kern_matmul_quant_avx2(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    const struct block_qx *q = qx;
    int64_t nb = tensor_cols(W) / QKX;
    int64_t r = r0;
    float out[4];
    for (; r + 4 <= r1; r += 4)
        for (int t = 0; t < n_tok; t++) { // 4 rows stay in L1 across the few tokens
            dot_rows(4, W, r, q + t * nb, nb, out);
            memcpy(Y + t * ldy + r, out, sizeof out);
        }
    for (; r < r1; r++)
        for (int t = 0; t < n_tok; t++) {
            dot_rows(1, W, r, q + t * nb, nb, out);
            Y[t * ldy + r] = out[0];
        }
}

// ---- SIMD dequantization (f32 panels for prefill) ----

AI void store_i8_scaled(float *out, __m256i q, __m256 d, __m256 c) {
    // 32 int8 -> 4 x 8 floats: out = d * q + c
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(out, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), c));
    _mm256_storeu_ps(out + 8, _mm256_fmadd_ps(
        d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), c));
    _mm256_storeu_ps(out + 16, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), c));
    _mm256_storeu_ps(out + 24, _mm256_fmadd_ps(
        d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), c));
}

// as store_i8_scaled with d0 for elements 0-15 and d1 for 16-31 (Q6_K sub-blocks of 16)
AI void store_i8_scaled2(float *out, __m256i q, __m256 d0, __m256 d1) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(out, _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(out + 8, _mm256_mul_ps(
        d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(out + 16, _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(out + 24, _mm256_mul_ps(
        d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

// Q4_K (hbits = 0) / Q5_K (hbits = 1) super-blocks: 4 chunks of 64 = two 32-element
// sub-blocks sharing 32 bytes of nibbles (low: first, high: second), w = d*ls*q - dmin*lm.
AI void dequant_k4(const uint16_t dh, const uint16_t dminh, const uint8_t *scales,
                   const uint8_t *qs, const uint8_t *qh, float *y) {
    float d = h2f(dh), dmin = h2f(dminh);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        kern_get_scale_min_k4(2 * c, scales, &sc0, &m0);
        kern_get_scale_min_k4(2 * c + 1, scales, &sc1, &m1);
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (qh) {
            __m128i s0 = _mm_cvtsi32_si128(2 * c), s1 = _mm_cvtsi32_si128(2 * c + 1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hv, s0), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hv, s1), one), 4));
        }
        store_i8_scaled(y + 64 * c, lo, _mm256_set1_ps(d * sc0), _mm256_set1_ps(-dmin * m0));
        store_i8_scaled(y + 64 * c + 32, hi, _mm256_set1_ps(d * sc1), _mm256_set1_ps(-dmin * m1));
    }
}

AI void dequant_q6_k_block(const struct block_q6_k *b, float *y) {
    float d = h2f(b->d);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
        __m256i hv = _mm256_loadu_si256((const __m256i *)qh);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hv, m3), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2), m3), 4));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 4), m3), 4));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 6), m3), 4));
        for (int k = 0; k < 4; k++)
            store_i8_scaled2(y + 128 * h + 32 * k, _mm256_sub_epi8(q[k], off),
                             _mm256_set1_ps(d * sc[2 * k]), _mm256_set1_ps(d * sc[2 * k + 1]));
    }
}

void kern_dequant_row_part_avx2(const struct tensor *W, int64_t r, int64_t c0, int64_t n,
                                float *out) {
    int64_t n_in = tensor_cols(W);
    size_t rb = kern_row_bytes(W->dtype, n_in);
    const uint8_t *row = (const uint8_t *)W->data + rb * (size_t)r;
    __m256 zero = _mm256_setzero_ps();
    switch (W->dtype) {
    case LFMD_DTYPE_Q8_0: {
        const struct block_q8_0 *b = (const struct block_q8_0 *)row + c0 / QK8_0;
        for (int64_t i = 0; i < n / QK8_0; i++)
            store_i8_scaled(out + i * 32, _mm256_loadu_si256((const __m256i *)b[i].qs),
                            _mm256_set1_ps(h2f(b[i].d)), zero);
        return;
    }
    case LFMD_DTYPE_Q4_0: {
        const struct block_q4_0 *b = (const struct block_q4_0 *)row + c0 / QK4_0;
        for (int64_t i = 0; i < n / QK4_0; i++) {
            float d = h2f(b[i].d);
            store_i8_scaled(out + i * 32, nibbles_split(b[i].qs), _mm256_set1_ps(d),
                            _mm256_set1_ps(-8.0f * d));
        }
        return;
    }
    case LFMD_DTYPE_Q4_1: {
        const struct block_q4_1 *b = (const struct block_q4_1 *)row + c0 / QK4_1;
        for (int64_t i = 0; i < n / QK4_1; i++)
            store_i8_scaled(out + i * 32, nibbles_split(b[i].qs), _mm256_set1_ps(h2f(b[i].d)),
                            _mm256_set1_ps(h2f(b[i].m)));
        return;
    }
    case LFMD_DTYPE_Q4_K: {
        const struct block_q4_k *b = (const struct block_q4_k *)row + c0 / QK_K;
        for (int64_t i = 0; i < n / QK_K; i++)
            dequant_k4(b[i].d, b[i].dmin, b[i].scales, b[i].qs, NULL, out + i * QK_K);
        return;
    }
    case LFMD_DTYPE_Q5_K: {
        const struct block_q5_k *b = (const struct block_q5_k *)row + c0 / QK_K;
        for (int64_t i = 0; i < n / QK_K; i++)
            dequant_k4(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, out + i * QK_K);
        return;
    }
    case LFMD_DTYPE_Q6_K: {
        const struct block_q6_k *b = (const struct block_q6_k *)row + c0 / QK_K;
        for (int64_t i = 0; i < n / QK_K; i++) dequant_q6_k_block(&b[i], out + i * QK_K);
        return;
    }
    case LFMD_DTYPE_MLX_Q4:
    case LFMD_DTYPE_MLX_Q8: {
        int bits = W->dtype == LFMD_DTYPE_MLX_Q4 ? 4 : 8, gs = W->group_size;
        if (gs % QKX) break;
        int64_t ng = n_in / gs;
        for (int64_t c = c0; c < c0 + n; c += QKX) {
            int64_t g = r * ng + c / gs;
            __m256 s = _mm256_set1_ps(kern_load_scalar(W->scale_dtype, W->scales, g));
            __m256 b = _mm256_set1_ps(kern_load_scalar(W->scale_dtype, W->biases, g));
            const uint8_t *p = row + (size_t)c * (size_t)bits / 8;
            if (bits == 4) {
                store_i8_scaled(out + (c - c0), nibbles_interleave(p), s, b);
            } else {
                // u8 -> f32 via zero-extension
                for (int k = 0; k < 4; k++) {
                    __m128i v = _mm_loadl_epi64((const __m128i *)(p + 8 * k));
                    __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                    _mm256_storeu_ps(out + (c - c0) + 8 * k, _mm256_fmadd_ps(s, f, b));
                }
            }
        }
        return;
    }
    default:
        break;
    }
    kern_dequant_row_part_ref(W, r, c0, n, out);
}

// ---- activation quantizer: bit-identical to kern_quantize_x_ref ----
void kern_quantize_x_avx2(const float *X, int64_t n_in, int t0, int t1, void *qx) {
    struct block_qx *q = qx;
    int64_t nb = n_in / QKX;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int t = t0; t < t1; t++) {
        const float *x = X + (int64_t)t * n_in;
        struct block_qx *o = q + (int64_t)t * nb;
        for (int64_t i = 0; i < nb; i++) {
            const float *v = x + i * QKX;
            __m256 a = _mm256_loadu_ps(v), b = _mm256_loadu_ps(v + 8);
            __m256 c = _mm256_loadu_ps(v + 16), d = _mm256_loadu_ps(v + 24);
            __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a), _mm256_andnot_ps(sign, b)),
                                     _mm256_max_ps(_mm256_andnot_ps(sign, c), _mm256_andnot_ps(sign, d)));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float amax = _mm_cvtss_f32(m4);
            float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
            __m256 vid = _mm256_set1_ps(id);
            __m256i ia = _mm256_cvtps_epi32(_mm256_mul_ps(a, vid));
            __m256i ib = _mm256_cvtps_epi32(_mm256_mul_ps(b, vid));
            __m256i ic = _mm256_cvtps_epi32(_mm256_mul_ps(c, vid));
            __m256i idd = _mm256_cvtps_epi32(_mm256_mul_ps(d, vid));
            __m256i sum = _mm256_add_epi32(_mm256_add_epi32(ia, ib), _mm256_add_epi32(ic, idd));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            __m256i p16 = _mm256_packs_epi32(ia, ib), p16b = _mm256_packs_epi32(ic, idd);
            __m256i p8 = _mm256_packs_epi16(p16, p16b);
            // undo the in-lane interleaving of the packs
            p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)o[i].qs, p8);
            o[i].d = dd;
            o[i].s = dd * (float)_mm_cvtsi128_si32(s4);
        }
    }
}
