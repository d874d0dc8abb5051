// Reference quantizers (f32 -> GGUF blocks, f32 -> MLX affine groups) and row dequantizers.
// Layouts follow ggml / MLX exactly; the choice of scales is ours where the format allows any
// (K-quants: plain min/max fits, not ggml's iterative search). Used by `lfmd quantize`.
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#include <math.h>
#include <string.h>

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void quantize_q8_0_ref(const float *src, void *dst, int64_t n) {
    struct block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)clampi((int)roundf(x[j] * id), -127, 127);
    }
}

void quantize_q4_0_ref(const float *src, void *dst, int64_t n) {
    struct block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        float amax = 0.0f, vmax = 0.0f; // vmax: the value of largest magnitude, sign kept
        for (int j = 0; j < QK4_0; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                vmax = x[j];
            }
        float d = vmax / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = clampi((int)(x[j] * id + 8.5f), 0, 15);
            int q1 = clampi((int)(x[j + 16] * id + 8.5f), 0, 15);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void quantize_q4_1_ref(const float *src, void *dst, int64_t n) {
    struct block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        const float *x = src + i * QK4_1;
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK4_1; j++) {
            mn = fminf(mn, x[j]);
            mx = fmaxf(mx, x[j]);
        }
        float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = f32_to_f16(d);
        b[i].m = f32_to_f16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = clampi((int)((x[j] - mn) * id + 0.5f), 0, 15);
            int q1 = clampi((int)((x[j + 16] - mn) * id + 0.5f), 0, 15);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// Q4_K / Q5_K: 8 sub-blocks of 32 with w = d*ls*q - dmin*lm, ls/lm 6-bit. Fits each sub-block
// to [min(0, lo), hi], quantizes the sub-block scales/mins against the super-block maxima, then
// re-quantizes the values with the rounded scales. nmax = 15 (Q4_K) or 31 (Q5_K).
static void fit_k_scales(const float *x, int nmax, uint8_t ls[8], uint8_t lm[8], uint16_t *dh,
                         uint16_t *dminh, uint8_t q[QK_K]) {
    float scale[8], minv[8], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo = x[j * 32], hi = x[j * 32];
        for (int l = 1; l < 32; l++) {
            lo = fminf(lo, x[j * 32 + l]);
            hi = fmaxf(hi, x[j * 32 + l]);
        }
        if (lo > 0.0f) lo = 0.0f;
        scale[j] = (hi - lo) / (float)nmax;
        minv[j] = -lo;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, minv[j]);
    }
    float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    *dh = f32_to_f16(d);
    *dminh = f32_to_f16(dmin);
    d = f16_to_f32(*dh);
    dmin = f16_to_f32(*dminh);
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(d != 0.0f ? (int)roundf(scale[j] / d) : 0, 0, 63);
        lm[j] = (uint8_t)clampi(dmin != 0.0f ? (int)roundf(minv[j] / dmin) : 0, 0, 63);
        float sd = d * ls[j], sm = dmin * lm[j];
        for (int l = 0; l < 32; l++) {
            int v = sd != 0.0f ? (int)roundf((x[j * 32 + l] + sm) / sd) : 0;
            q[j * 32 + l] = (uint8_t)clampi(v, 0, nmax);
        }
    }
}

static void pack_k_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t s[K_SCALE_SIZE]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((ls[j] & 63) | ((ls[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((lm[j] & 63) | ((lm[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
    }
}

void quantize_q4_k_ref(const float *src, void *dst, int64_t n) {
    struct block_q4_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t ls[8], lm[8], q[QK_K];
        fit_k_scales(src + i * QK_K, 15, ls, lm, &b[i].d, &b[i].dmin, q);
        pack_k_scales(ls, lm, b[i].scales);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[c * 32 + l] = (uint8_t)(q[c * 64 + l] | (q[c * 64 + 32 + l] << 4));
    }
}

void quantize_q5_k_ref(const float *src, void *dst, int64_t n) {
    struct block_q5_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t ls[8], lm[8], q[QK_K];
        fit_k_scales(src + i * QK_K, 31, ls, lm, &b[i].d, &b[i].dmin, q);
        pack_k_scales(ls, lm, b[i].scales);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = q[c * 64 + l], hi = q[c * 64 + 32 + l];
                b[i].qs[c * 32 + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                b[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
            }
    }
}

// Q6_K: 16 sub-blocks of 16, w = d * sc * (q - 32), sc int8, q 6-bit.
void quantize_q6_k_ref(const float *src, void *dst, int64_t n) {
    struct block_q6_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float scale[16], max_abs_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f, vmax = 0.0f;
            for (int l = 0; l < 16; l++)
                if (fabsf(x[j * 16 + l]) > amax) {
                    amax = fabsf(x[j * 16 + l]);
                    vmax = x[j * 16 + l];
                }
            scale[j] = vmax / -32.0f; // the extreme value maps to -32
            max_abs_scale = fmaxf(max_abs_scale, fabsf(scale[j]));
        }
        float d = max_abs_scale / 127.0f;
        b[i].d = f32_to_f16(d);
        d = f16_to_f32(b[i].d);
        uint8_t q[QK_K];
        for (int j = 0; j < 16; j++) {
            int sc = clampi(d != 0.0f ? (int)roundf(scale[j] / d) : 0, -128, 127);
            b[i].scales[j] = (int8_t)sc;
            float s = d * (float)sc;
            for (int l = 0; l < 16; l++) {
                int v = s != 0.0f ? (int)roundf(x[j * 16 + l] / s) : 0;
                q[j * 16 + l] = (uint8_t)(clampi(v, -32, 31) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b[i].ql + h * 64, *qh = b[i].qh + h * 32;
            const uint8_t *qq = q + h * 128;
            for (int l = 0; l < 32; l++) {
                int q1 = qq[l], q2 = qq[l + 32], q3 = qq[l + 64], q4 = qq[l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

int quantize_row_ref(enum lfmd_dtype t, const float *src, void *dst, int64_t n) {
    if ((unsigned)t >= LFMD_DTYPE_COUNT || n % kern_traits[t].blck_size) return -5;
    switch (t) {
    case LFMD_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case LFMD_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_f16(src[i]);
        return 0;
    case LFMD_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_bf16(src[i]);
        return 0;
    case LFMD_DTYPE_Q8_0: quantize_q8_0_ref(src, dst, n); return 0;
    case LFMD_DTYPE_Q4_0: quantize_q4_0_ref(src, dst, n); return 0;
    case LFMD_DTYPE_Q4_1: quantize_q4_1_ref(src, dst, n); return 0;
    case LFMD_DTYPE_Q4_K: quantize_q4_k_ref(src, dst, n); return 0;
    case LFMD_DTYPE_Q5_K: quantize_q5_k_ref(src, dst, n); return 0;
    case LFMD_DTYPE_Q6_K: quantize_q6_k_ref(src, dst, n); return 0;
    default: return -5; // MLX types need scales/biases: quantize_mlx_ref
    }
}

int dequantize_row_ref(enum lfmd_dtype t, const void *src, float *dst, int64_t n) {
    if ((unsigned)t >= LFMD_DTYPE_COUNT || n % kern_traits[t].blck_size) return -5;
    if (t == LFMD_DTYPE_MLX_Q4 || t == LFMD_DTYPE_MLX_Q8) return -5;
    struct tensor W = {.dtype = t, .n_dims = 2, .shape = {1, n}, .data = src};
    kern_dequant_row_part_ref(&W, 0, 0, n, dst);
    return 0;
}

static void store_scalar(enum lfmd_dtype dt, void *p, int64_t i, float v) {
    if (dt == LFMD_DTYPE_F32) ((float *)p)[i] = v;
    else if (dt == LFMD_DTYPE_BF16) ((uint16_t *)p)[i] = f32_to_bf16(v);
    else ((uint16_t *)p)[i] = f32_to_f16(v);
}

// MLX affine quantization. mlx documents scale = (max - min) / (2^bits - 1), bias = min,
// q = round((w - bias) / scale). mlx's implementation (as we read it) additionally snaps the
// group edge of larger magnitude onto the grid so that 0.0 is exactly representable: with
// edge = min if |min| > |max| else max, s = +-(max-min)/n_bins (sign towards the other edge),
// q0 = round(edge / s); if q0 != 0 then s = edge / q0, bias = edge, else bias = 0.
// We do the same (0.0 is exact up to the rounding of the stored scale), compute q from the f32
// scale/bias as mlx does, and round scale/bias to scale_dtype only when storing.
int quantize_mlx_ref(const float *src, int64_t n, int bits, int group_size,
                     enum lfmd_dtype scale_dtype, uint32_t *wq, void *scales, void *biases) {
    if ((bits != 4 && bits != 8) || (group_size != 32 && group_size != 64 && group_size != 128) ||
        n % group_size != 0 ||
        (scale_dtype != LFMD_DTYPE_F16 && scale_dtype != LFMD_DTYPE_BF16 &&
         scale_dtype != LFMD_DTYPE_F32))
        return -5;
    int n_bins = (1 << bits) - 1, per_word = 32 / bits;
    memset(wq, 0, (size_t)(n / per_word) * 4);
    for (int64_t g = 0; g < n / group_size; g++) {
        const float *x = src + g * group_size;
        float mn = x[0], mx = x[0];
        for (int j = 1; j < group_size; j++) {
            mn = fminf(mn, x[j]);
            mx = fmaxf(mx, x[j]);
        }
        float s = fmaxf((mx - mn) / (float)n_bins, 1e-7f);
        int neg_edge = fabsf(mn) > fabsf(mx);
        if (!neg_edge) s = -s;
        float edge = neg_edge ? mn : mx;
        float q0 = roundf(edge / s);
        float bias = 0.0f;
        if (q0 != 0.0f) {
            s = edge / q0;
            bias = edge;
        }
        for (int j = 0; j < group_size; j++) {
            int q = clampi((int)roundf((x[j] - bias) / s), 0, n_bins);
            int64_t e = g * group_size + j;
            wq[e / per_word] |= (uint32_t)q << ((e % per_word) * bits);
        }
        store_scalar(scale_dtype, scales, g, s);
        store_scalar(scale_dtype, biases, g, bias);
    }
    return 0;
}

void dequantize_mlx_ref(const uint32_t *wq, const void *scales, const void *biases,
                        enum lfmd_dtype scale_dtype, int64_t n, int bits, int group_size,
                        float *dst) {
    struct tensor W = {.dtype = bits == 4 ? LFMD_DTYPE_MLX_Q4 : LFMD_DTYPE_MLX_Q8,
                       .n_dims = 2, .shape = {1, n}, .data = wq, .scales = scales,
                       .biases = biases, .scale_dtype = scale_dtype, .group_size = group_size,
                       .bits = bits};
    kern_dequant_row_part_ref(&W, 0, 0, n, dst);
}
