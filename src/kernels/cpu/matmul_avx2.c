// AVX2/FMA/F16C matrix products for F32, F16 and BF16 weights. All arithmetic is f32 FMA on
// exactly converted weights (no lossy shortcuts).
// Decode (n_tok < 4): each weight row is streamed once, 4 rows at a time, against 1-3 tokens.
// Prefill (n_tok >= 4): tokens are blocked (TB) and n_in is chunked (KC) so the X tile stays in
// L2; a 4-row weight panel is converted to f32 once per tile (L1) and reused by a 4x3
// register-blocked micro-kernel for every token triple of the tile.
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

enum wkind { WK_F32, WK_F16, WK_BF16 };

enum {
    KC = 1024, // n_in chunk (floats) of the X tile and weight panel
    TB = 48,   // tokens per tile (multiple of 3): TB * KC * 4 bytes = 192 KiB in L2
};

AI __m256 load_w8(int wk, const void *w, int64_t i) {
    if (wk == WK_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (wk == WK_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI float load_w1(int wk, const void *w, int64_t i) {
    if (wk == WK_F32) return ((const float *)w)[i];
    if (wk == WK_F16) return f16_to_f32(((const uint16_t *)w)[i]);
    return bf16_to_f32(((const uint16_t *)w)[i]);
}

// Sums of each of 4 vectors, as one 4-lane vector {sum a, sum b, sum c, sum d}.
AI __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

AI float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[t*ldy + j] (+)= sum_i w[j*ldw + i] * x[t*ldx + i] for j < R, t < T, i < k.
AI void micro(const int R, const int T, const int wk, const void *w, int64_t ldw,
              const float *x, int64_t ldx, int64_t k, float *y, int64_t ldy, int accumulate) {
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) acc[j][t] = _mm256_setzero_ps();
    int64_t k8 = k & ~(int64_t)7;
    for (int64_t i = 0; i < k8; i += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) xv[t] = _mm256_loadu_ps(x + t * ldx + i);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            __m256 wv = load_w8(wk, w, j * ldw + i);
#pragma GCC unroll 3
            for (int t = 0; t < T; t++) acc[j][t] = _mm256_fmadd_ps(wv, xv[t], acc[j][t]);
        }
    }
    if (k8 < k) {
        float xt[3][8], wt[4][8];
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
            for (int i = 0; i < 8; i++) xt[t][i] = k8 + i < k ? x[t * ldx + k8 + i] : 0.0f;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++)
            for (int i = 0; i < 8; i++) wt[j][i] = k8 + i < k ? load_w1(wk, w, j * ldw + k8 + i) : 0.0f;
#pragma GCC unroll 4
        for (int j = 0; j < R; j++)
#pragma GCC unroll 3
            for (int t = 0; t < T; t++)
                acc[j][t] = _mm256_fmadd_ps(_mm256_loadu_ps(wt[j]), _mm256_loadu_ps(xt[t]),
                                            acc[j][t]);
    }
#pragma GCC unroll 3
    for (int t = 0; t < T; t++) {
        float *yp = y + t * ldy;
        if (R == 4) {
            __m128 s = reduce4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
            if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(yp));
            _mm_storeu_ps(yp, s);
        } else {
#pragma GCC unroll 4
            for (int j = 0; j < R; j++) {
                float s = hsum(acc[j][t]);
                yp[j] = accumulate ? yp[j] + s : s;
            }
        }
    }
}

// One call covering R in {4, 1} and T in {1, 2, 3} with compile-time shapes.
AI void micro_any(int R, int T, const int wk, const void *w, int64_t ldw, const float *x,
                  int64_t ldx, int64_t k, float *y, int64_t ldy, int accumulate) {
    if (R == 4) {
        if (T == 3) micro(4, 3, wk, w, ldw, x, ldx, k, y, ldy, accumulate);
        else if (T == 2) micro(4, 2, wk, w, ldw, x, ldx, k, y, ldy, accumulate);
        else micro(4, 1, wk, w, ldw, x, ldx, k, y, ldy, accumulate);
    } else {
        if (T == 3) micro(1, 3, wk, w, ldw, x, ldx, k, y, ldy, accumulate);
        else if (T == 2) micro(1, 2, wk, w, ldw, x, ldx, k, y, ldy, accumulate);
        else micro(1, 1, wk, w, ldw, x, ldx, k, y, ldy, accumulate);
    }
}

AI const void *w_at(int wk, const void *w, int64_t i) {
    return wk == WK_F32 ? (const void *)((const float *)w + i)
                        : (const void *)((const uint16_t *)w + i);
}

// Decode: stream rows straight from the weights, n_tok <= 3.
AI void matmul_direct(const int wk, const void *w, int64_t n_in, const float *X, int n_tok,
                      float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        micro_any(4, n_tok, wk, w_at(wk, w, r * n_in), n_in, X, n_in, n_in, Y + r, ldy, 0);
    for (; r < r1; r++)
        micro_any(1, n_tok, wk, w_at(wk, w, r * n_in), n_in, X, n_in, n_in, Y + r, ldy, 0);
}

// Convert rows [r, r+R) x columns [k0, k0+kc) of w to f32 panel[R][KC].
AI void convert_panel(const int wk, const void *w, int64_t n_in, int64_t r, int R, int64_t k0,
                      int64_t kc, float *panel) {
    for (int j = 0; j < R; j++) {
        int64_t base = (r + j) * n_in + k0;
        float *p = panel + (int64_t)j * KC;
        int64_t i = 0;
        for (; i + 8 <= kc; i += 8) _mm256_store_ps(p + i, load_w8(wk, w, base + i));
        for (; i < kc; i++) p[i] = load_w1(wk, w, base + i);
    }
}

// Converts rows [r, r+R) x columns [k0, k0+kc) of a quantized W to f32 panel[R][KC].
typedef void (*panel_fn)(const struct tensor *W, int64_t r, int R, int64_t k0, int64_t kc,
                         float *panel);

AI void matmul_tiled(const int wk, const void *w, int64_t n_in, const float *X, int n_tok,
                     float *Y, int64_t ldy, int64_t r0, int64_t r1, const struct tensor *Wq,
                     panel_fn conv) {
    _Alignas(32) float panel[4 * KC];
    for (int tb0 = 0; tb0 < n_tok; tb0 += TB) {
        int tb1 = n_tok - tb0 < TB ? n_tok : tb0 + TB;
        for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
            int64_t kc = n_in - k0 < KC ? n_in - k0 : KC;
            int acc = k0 > 0;
            for (int64_t r = r0; r < r1;) {
                int R = r1 - r >= 4 ? 4 : 1;
                const float *wp;
                int64_t ldw;
                if (conv) {
                    conv(Wq, r, R, k0, kc, panel);
                    wp = panel;
                    ldw = KC;
                } else if (wk == WK_F32) {
                    wp = (const float *)w + r * n_in + k0;
                    ldw = n_in;
                } else {
                    convert_panel(wk, w, n_in, r, R, k0, kc, panel);
                    wp = panel;
                    ldw = KC;
                }
                for (int t = tb0; t < tb1; t += 3) {
                    int T = tb1 - t >= 3 ? 3 : tb1 - t;
                    micro_any(R, T, WK_F32, wp, ldw, X + (int64_t)t * n_in + k0, n_in, kc,
                              Y + (int64_t)t * ldy + r, ldy, acc);
                }
                r += R;
            }
        }
    }
}

static void panel_dequant(const struct tensor *W, int64_t r, int R, int64_t k0, int64_t kc,
                          float *panel) {
    for (int j = 0; j < R; j++) kern_dequant_row_part_avx2(W, r + j, k0, kc, panel + (int64_t)j * KC);
}

// Quantized weights against f32 activations: each 4-row panel is dequantized once per token
// tile (exact f32 weights, f32 activations) and reused by the FMA micro-kernel.
void kern_matmul_panel_avx2(const struct tensor *W, const float *X, int n_tok, float *Y,
                            int64_t ldy, int64_t r0, int64_t r1) {
    matmul_tiled(WK_F32, NULL, tensor_cols(W), X, n_tok, Y, ldy, r0, r1, W, panel_dequant);
}

static void matmul_f32(const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy,
                       int64_t r0, int64_t r1) {
    if (n_tok < 4) matmul_direct(WK_F32, W->data, tensor_cols(W), X, n_tok, Y, ldy, r0, r1);
    else matmul_tiled(WK_F32, W->data, tensor_cols(W), X, n_tok, Y, ldy, r0, r1, NULL, NULL);
}

static void matmul_f16(const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy,
                       int64_t r0, int64_t r1) {
    if (n_tok < 4) matmul_direct(WK_F16, W->data, tensor_cols(W), X, n_tok, Y, ldy, r0, r1);
    else matmul_tiled(WK_F16, W->data, tensor_cols(W), X, n_tok, Y, ldy, r0, r1, NULL, NULL);
}

static void matmul_bf16(const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy,
                        int64_t r0, int64_t r1) {
    if (n_tok < 4) matmul_direct(WK_BF16, W->data, tensor_cols(W), X, n_tok, Y, ldy, r0, r1);
    else matmul_tiled(WK_BF16, W->data, tensor_cols(W), X, n_tok, Y, ldy, r0, r1, NULL,
                      NULL);
}

void kern_matmul_float_avx2(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    switch (W->dtype) {
    case LFMD_DTYPE_F32: matmul_f32(W, X, n_tok, Y, ldy, r0, r1); break;
    case LFMD_DTYPE_F16: matmul_f16(W, X, n_tok, Y, ldy, r0, r1); break;
    case LFMD_DTYPE_BF16: matmul_bf16(W, X, n_tok, Y, ldy, r0, r1); break;
    default: kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1); break;
    }
}
