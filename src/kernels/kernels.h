// The kernel interface the model layer calls. Each op has a scalar reference (kernels/ref/, the
// spec) and SIMD twins (kernels/cpu/) chosen once at run time by dispatch.c.
// Threading is the caller's: kernels compute a given row range and never spawn threads.
// SPDX-License-Identifier: MIT
#ifndef LFMD_KERNELS_KERNELS_H
#define LFMD_KERNELS_KERNELS_H

#include "tensor.h"

#include <stdbool.h>

// ---- matrix products: Y[t, r] = sum_c W[r, c] * X[t, c] ----
// W: [n_out, n_in] any dtype. X: [n_tok, n_in] f32, row stride n_in. Y: row stride ldy.
// Computes only output rows r in [r0, r1) for all n_tok tokens (the caller splits rows across
// threads). Some dtypes first convert X (e.g. to int8 blocks) once per product:
// kern_input_bytes() tells the scratch size, kern_prepare_input() fills it for token rows
// [t0, t1) (callers may split tokens across threads), and kern_matmul reads it as qx.
size_t kern_input_bytes(enum lfmd_dtype wt, int n_tok, int64_t n_in);
void kern_prepare_input(enum lfmd_dtype wt, const float *X, int64_t n_in, int t0, int t1, void *qx);
void kern_matmul(const struct tensor *W, const float *X, const void *qx, int n_tok, float *Y,
                 int64_t ldy, int64_t r0, int64_t r1);
// Row r of W as f32 (embedding lookup). out has tensor_cols(W) floats.
void kern_get_row(const struct tensor *W, int64_t r, float *out);

// Reference (scalar) versions, always available; tests compare against these.
void kern_matmul_ref(const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy,
                     int64_t r0, int64_t r1);

// Which SIMD level dispatch selected ("avx2", "neon", "scalar").
const char *kern_isa(void);
// Force the scalar path (tests, LFMD_KERNELS=ref).
void kern_force_ref(bool on);

#endif
