// Scalar reference versions of the non-matmul ops the forward pass uses: attention over a KV
// cache (f32, f16 or Q8_0 rows), KV row storage, RMSNorm and SwiGLU. They define the results
// the SIMD twins (kernels/cpu/ops_avx2.c) are tested against.
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

#include <math.h>

// Element i of cached row p as f32.
static void kv_row_f32(enum lfmd_dtype kvt, const void *base, size_t stride, int64_t p, int hd,
                       float *out) {
    const uint8_t *row = (const uint8_t *)base + (size_t)p * stride;
    dequantize_row_ref(kvt, row, out, hd);
}

void kern_attention_ref(enum lfmd_dtype kvt, const float *q, int64_t ldq, int n_q, const void *K,
                        const void *V, size_t stride, int n_pos, int hd, float scale, float *out,
                        int64_t ldo) {
    float k[KERN_ATTN_MAX_HD], v[KERN_ATTN_MAX_HD];
    for (int qi = 0; qi < n_q; qi++) {
        const float *qq = q + qi * ldq;
        float *o = out + qi * ldo;
        float mx = -INFINITY, l = 0;
        for (int d = 0; d < hd; d++) o[d] = 0;
        for (int p = 0; p < n_pos; p++) {
            kv_row_f32(kvt, K, stride, p, hd, k);
            float sc = 0;
            for (int d = 0; d < hd; d++) sc += qq[d] * k[d];
            sc *= scale;
            if (sc > mx) {
                float corr = expf(mx - sc);
                l *= corr;
                for (int d = 0; d < hd; d++) o[d] *= corr;
                mx = sc;
            }
            float e = expf(sc - mx);
            l += e;
            kv_row_f32(kvt, V, stride, p, hd, v);
            for (int d = 0; d < hd; d++) o[d] += e * v[d];
        }
        float il = l > 0 ? 1.0f / l : 0.0f;
        for (int d = 0; d < hd; d++) o[d] *= il;
    }
}

void kern_kv_store(enum lfmd_dtype kvt, const float *src, void *dst, int64_t n) {
    quantize_row_ref(kvt, src, dst, n);
}

void kern_rmsnorm_ref(const float *x, const float *w, int n, float eps, float *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * inv);
}

void kern_swiglu_ref(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
