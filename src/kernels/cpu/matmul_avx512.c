// AVX-512 matrix products for prefill and batches (n_tok >= KERN_QUANT_PANEL_MIN_TOK): the same
// tiling as matmul_avx2.c (token tiles of TB, n_in chunks of KC, 4-row f32 weight panels
// converted once per tile) with a 4-row x 6-token register block of 16-lane FMAs.
// Weights of every dtype reach the micro-kernel as exact f32 (F32 in place, F16/BF16 converted,
// quantized types dequantized by the AVX2 panel code), so results match the AVX2 path up to
// f32 summation order. Compiled for AVX-512 by target pragma; dispatch calls it only when the
// CPU has AVX-512F/BW/VL.
// SPDX-License-Identifier: MIT
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")
#define LFMD_HAVE_AVX512_TU 1
#endif
#include "kernels/kern_internal.h"

#ifdef LFMD_HAVE_AVX512_TU
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

#ifndef LFMD_TB512
#define LFMD_TB512 48
#endif
enum {
    KC = 1024,       // n_in chunk of the X tile and weight panel
    TB = LFMD_TB512, // tokens per tile (multiple of 6): 192 KiB of X in L2 (48 measured faster than 132)
};

AI __m128 reduce4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    __m256 ab = _mm256_hadd_ps(a8, b8), cd = _mm256_hadd_ps(c8, d8);
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// y[t*ldy + j] (+)= sum_i w[j*ldw + i] * x[t*ldx + i] for j < R, t < T, i < k (k % 16 == 0
// handled by full vectors, the rest by a masked step).
AI void micro(const int R, const int T, const float *w, int64_t ldw, const float *x, int64_t ldx,
              int64_t k, float *y, int64_t ldy, int accumulate) {
    __m512 acc[4][6];
#pragma GCC unroll 4
    for (int j = 0; j < R; j++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) acc[j][t] = _mm512_setzero_ps();
    int64_t k16 = k & ~(int64_t)15;
    for (int64_t i = 0; i < k16; i += 16) {
        __m512 xv[6];
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_ps(x + t * ldx + i);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            __m512 wv = _mm512_loadu_ps(w + j * ldw + i);
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) acc[j][t] = _mm512_fmadd_ps(wv, xv[t], acc[j][t]);
        }
    }
    if (k16 < k) {
        __mmask16 m = (__mmask16)((1u << (k - k16)) - 1);
        __m512 xv[6];
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) xv[t] = _mm512_maskz_loadu_ps(m, x + t * ldx + k16);
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, w + j * ldw + k16);
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) acc[j][t] = _mm512_fmadd_ps(wv, xv[t], acc[j][t]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < T; t++) {
        float *yp = y + t * ldy;
        if (R == 4) {
            __m128 s = reduce4_512(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
            if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(yp));
            _mm_storeu_ps(yp, s);
        } else {
            float s = _mm512_reduce_add_ps(acc[0][t]);
            yp[0] = accumulate ? yp[0] + s : s;
        }
    }
}

#define MICRO_T(R)                                                                             \
    switch (T) {                                                                               \
    case 6: micro(R, 6, w, ldw, x, ldx, k, y, ldy, acc); break;                                \
    case 5: micro(R, 5, w, ldw, x, ldx, k, y, ldy, acc); break;                                \
    case 4: micro(R, 4, w, ldw, x, ldx, k, y, ldy, acc); break;                                \
    case 3: micro(R, 3, w, ldw, x, ldx, k, y, ldy, acc); break;                                \
    case 2: micro(R, 2, w, ldw, x, ldx, k, y, ldy, acc); break;                                \
    default: micro(R, 1, w, ldw, x, ldx, k, y, ldy, acc); break;                               \
    }

static void micro_any(int R, int T, const float *w, int64_t ldw, const float *x, int64_t ldx,
                      int64_t k, float *y, int64_t ldy, int acc) {
    if (R == 4) {
        MICRO_T(4)
    } else {
        MICRO_T(1)
    }
}

// Rows [r, r+R) x columns [k0, k0+kc) of W as f32 panel[R][KC].
static void make_panel(const struct tensor *W, int64_t n_in, int64_t r, int R, int64_t k0,
                       int64_t kc, float *panel) {
    for (int j = 0; j < R; j++) {
        float *p = panel + (int64_t)j * KC;
        int64_t base = (r + j) * n_in + k0, i = 0;
        switch (W->dtype) {
        case LFMD_DTYPE_F16: {
            const uint16_t *s = (const uint16_t *)W->data + base;
            for (; i + 16 <= kc; i += 16)
                _mm512_store_ps(p + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
            for (; i < kc; i++) p[i] = f16_to_f32(s[i]);
            break;
        }
        case LFMD_DTYPE_BF16: {
            const uint16_t *s = (const uint16_t *)W->data + base;
            for (; i + 16 <= kc; i += 16)
                _mm512_store_ps(p + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                           _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + i))), 16)));
            for (; i < kc; i++) p[i] = bf16_to_f32(s[i]);
            break;
        }
        default:
            kern_dequant_row_part_avx2(W, r + j, k0, kc, p);
            break;
        }
    }
}

void kern_matmul_tiled_avx512(const struct tensor *W, const float *X, int n_tok, float *Y,
                              int64_t ldy, int64_t r0, int64_t r1) {
    _Alignas(64) float panel[4 * KC];
    int64_t n_in = tensor_cols(W);
    int direct = W->dtype == LFMD_DTYPE_F32;
    for (int tb0 = 0; tb0 < n_tok; tb0 += TB) {
        int tb1 = n_tok - tb0 < TB ? n_tok : tb0 + TB;
        for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
            int64_t kc = n_in - k0 < KC ? n_in - k0 : KC;
            int acc = k0 > 0;
            for (int64_t r = r0; r < r1;) {
                int R = r1 - r >= 4 ? 4 : 1;
                const float *wp;
                int64_t ldw;
                if (direct) {
                    wp = (const float *)W->data + r * n_in + k0;
                    ldw = n_in;
                } else {
                    make_panel(W, n_in, r, R, k0, kc, panel);
                    wp = panel;
                    ldw = KC;
                }
                for (int t = tb0; t < tb1; t += 6) {
                    int T = tb1 - t >= 6 ? 6 : tb1 - t;
                    micro_any(R, T, wp, ldw, X + (int64_t)t * n_in + k0, n_in, kc,
                              Y + (int64_t)t * ldy + r, ldy, acc);
                }
                r += R;
            }
        }
    }
}

bool kern_avx512_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#else
void kern_matmul_tiled_avx512(const struct tensor *W, const float *X, int n_tok, float *Y,
                              int64_t ldy, int64_t r0, int64_t r1) {
    kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1);
}
bool kern_avx512_usable(void) { return false; }
#endif
