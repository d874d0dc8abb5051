// Scalar dequantization of every quantized dtype (GGUF blocks as ggml lays them out, MLX affine
// groups), plus the reference activation quantizer used by the integer-dot kernels.
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#include <math.h>
#include <string.h>

static void dequant_q8_0(const struct block_q8_0 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) y[i * QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

static void dequant_q4_0(const struct block_q4_0 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[i * QK4_0 + j] = d * (float)((b[i].qs[j] & 0xF) - 8);
            y[i * QK4_0 + j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const struct block_q4_1 *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[i * QK4_1 + j] = d * (float)(b[i].qs[j] & 0xF) + m;
            y[i * QK4_1 + j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
        }
    }
}

static void dequant_q4_k(const struct block_q4_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int j = 0; j < QK_K; j += 64) {
            uint8_t sc, m;
            kern_get_scale_min_k4(is, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            kern_get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void dequant_q5_k(const struct block_q5_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            uint8_t sc, m;
            kern_get_scale_min_k4(is, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            kern_get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void dequant_q6_k(const struct block_q6_k *b, int64_t nb, float *y) {
    for (int64_t i = 0; i < nb; i++) {
        float d = f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is + 0] * (float)q1;
                y[l + 32] = d * sc[is + 2] * (float)q2;
                y[l + 64] = d * sc[is + 4] * (float)q3;
                y[l + 96] = d * sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

// MLX affine: row r holds n_in/(32/bits) uint32 words, element k of a word in bits
// [k*bits, (k+1)*bits) (first element in the low bits); w = scale[g] * q + bias[g].
static void dequant_mlx(const struct tensor *W, int64_t r, int64_t c0, int64_t n, float *y) {
    int bits = W->dtype == LFMD_DTYPE_MLX_Q4 ? 4 : 8;
    int per_word = 32 / bits;
    uint32_t mask = (1u << bits) - 1;
    int64_t n_in = tensor_cols(W);
    int gs = W->group_size;
    const uint32_t *w = (const uint32_t *)W->data + r * (n_in / per_word);
    int64_t ng = n_in / gs;
    for (int64_t c = c0; c < c0 + n; c++) {
        uint32_t q = (w[c / per_word] >> ((c % per_word) * bits)) & mask;
        int64_t g = r * ng + c / gs;
        float s = kern_load_scalar(W->scale_dtype, W->scales, g);
        float b = kern_load_scalar(W->scale_dtype, W->biases, g);
        y[c - c0] = s * (float)q + b;
    }
}

void kern_dequant_row_part_ref(const struct tensor *W, int64_t r, int64_t c0, int64_t n,
                               float *out) {
    const struct kern_dtype_traits *tr = &kern_traits[W->dtype];
    const uint8_t *row = (const uint8_t *)W->data + (size_t)r * kern_row_bytes(W->dtype, tensor_cols(W));
    const void *p = row + (size_t)(c0 / tr->blck_size) * tr->type_size;
    int64_t nb = n / tr->blck_size;
    switch (W->dtype) {
    case LFMD_DTYPE_F32:
        memcpy(out, p, (size_t)n * sizeof(float));
        break;
    case LFMD_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(((const uint16_t *)p)[i]);
        break;
    case LFMD_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(((const uint16_t *)p)[i]);
        break;
    case LFMD_DTYPE_MLX_Q4:
    case LFMD_DTYPE_MLX_Q8:
        dequant_mlx(W, r, c0, n, out);
        break;
    case LFMD_DTYPE_Q8_0: dequant_q8_0(p, nb, out); break;
    case LFMD_DTYPE_Q4_0: dequant_q4_0(p, nb, out); break;
    case LFMD_DTYPE_Q4_1: dequant_q4_1(p, nb, out); break;
    case LFMD_DTYPE_Q4_K: dequant_q4_k(p, nb, out); break;
    case LFMD_DTYPE_Q5_K: dequant_q5_k(p, nb, out); break;
    case LFMD_DTYPE_Q6_K: dequant_q6_k(p, nb, out); break;
    default:
        for (int64_t i = 0; i < n; i++) out[i] = NAN;
        break;
    }
}

void kern_quantize_x_ref(const float *x, int64_t n, struct block_qx *out) {
    for (int64_t i = 0; i < n / QKX; i++) {
        const float *v = x + i * QKX;
        float amax = 0.0f;
        for (int j = 0; j < QKX; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QKX; j++) {
            int q = (int)lrintf(v[j] * id);
            out[i].qs[j] = (int8_t)q;
            sum += q;
        }
        out[i].d = d;
        out[i].s = d * (float)sum;
    }
}
