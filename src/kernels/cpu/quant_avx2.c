// AVX2 integer-dot matrix products for quantized weights (placeholder: none supported yet).
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

bool kern_quant_avx2_supports(const struct tensor *W) {
    return false;
}

void kern_matmul_quant_avx2(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1);
}

void kern_quantize_x_avx2(const float *X, int64_t n_in, int t0, int t1, void *qx) {
    struct block_qx *q = qx;
    int64_t nb = n_in / QKX;
    for (int t = t0; t < t1; t++)
        kern_quantize_x_ref(X + (int64_t)t * n_in, n_in, q + (int64_t)t * nb);
}
