// AVX2/FMA/F16C matrix products for F32, F16 and BF16 weights (placeholder: forwards to ref).
// SPDX-License-Identifier: MIT
#include "kernels/kern_internal.h"

void kern_matmul_float_avx2(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1);
}
