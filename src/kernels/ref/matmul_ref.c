// Scalar reference matrix product and row lookup for every dtype: the spec the SIMD kernels are
// tested against. Weights are converted to f32 exactly and products summed in double, so the
// reference is at least as accurate as any f32 kernel.
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#define REF_CHUNK 256

static double dot_row_ref(const struct tensor *W, int64_t r, const float *x, int64_t n_in) {
    double acc = 0.0;
    switch (W->dtype) {
    case LFMD_DTYPE_F32: {
        const float *w = (const float *)W->data + r * n_in;
        for (int64_t c = 0; c < n_in; c++) acc += (double)w[c] * x[c];
        return acc;
    }
    case LFMD_DTYPE_F16: {
        const uint16_t *w = (const uint16_t *)W->data + r * n_in;
        for (int64_t c = 0; c < n_in; c++) acc += (double)f16_to_f32(w[c]) * x[c];
        return acc;
    }
    case LFMD_DTYPE_BF16: {
        const uint16_t *w = (const uint16_t *)W->data + r * n_in;
        for (int64_t c = 0; c < n_in; c++) acc += (double)bf16_to_f32(w[c]) * x[c];
        return acc;
    }
    default: {
        float buf[REF_CHUNK];
        for (int64_t c0 = 0; c0 < n_in; c0 += REF_CHUNK) {
            int64_t n = n_in - c0 < REF_CHUNK ? n_in - c0 : REF_CHUNK;
            kern_dequant_row_part_ref(W, r, c0, n, buf);
            for (int64_t c = 0; c < n; c++) acc += (double)buf[c] * x[c0 + c];
        }
        return acc;
    }
    }
}

void kern_matmul_ref(const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy,
                     int64_t r0, int64_t r1) {
    int64_t n_in = tensor_cols(W);
    for (int64_t r = r0; r < r1; r++)
        for (int t = 0; t < n_tok; t++)
            Y[(int64_t)t * ldy + r] = (float)dot_row_ref(W, r, X + (int64_t)t * n_in, n_in);
}

void kern_get_row_ref(const struct tensor *W, int64_t r, float *out) {
    int64_t n_in = tensor_cols(W);
    switch (W->dtype) {
    case LFMD_DTYPE_F32: {
        const float *w = (const float *)W->data + r * n_in;
        for (int64_t c = 0; c < n_in; c++) out[c] = w[c];
        return;
    }
    case LFMD_DTYPE_F16: {
        const uint16_t *w = (const uint16_t *)W->data + r * n_in;
        for (int64_t c = 0; c < n_in; c++) out[c] = f16_to_f32(w[c]);
        return;
    }
    case LFMD_DTYPE_BF16: {
        const uint16_t *w = (const uint16_t *)W->data + r * n_in;
        for (int64_t c = 0; c < n_in; c++) out[c] = bf16_to_f32(w[c]);
        return;
    }
    default:
        kern_dequant_row_part_ref(W, r, 0, n_in, out);
        return;
    }
}
