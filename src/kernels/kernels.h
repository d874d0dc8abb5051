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
// [t0, t1) of an n_tok-token product (callers may split tokens across threads; the layout may
// depend on n_tok), and kern_matmul reads it as qx.
size_t kern_input_bytes(enum lfmd_dtype wt, int n_tok, int64_t n_in);
void kern_prepare_input(enum lfmd_dtype wt, const float *X, int64_t n_in, int n_tok, int t0,
                        int t1, void *qx);
void kern_matmul(const struct tensor *W, const float *X, const void *qx, int n_tok, float *Y,
                 int64_t ldy, int64_t r0, int64_t r1);
// Will kern_matmul read qx (quantized activations) for this product? When false, callers may
// skip kern_prepare_input and pass qx = NULL.
bool kern_matmul_uses_qx(const struct tensor *W, int n_tok);
// Row r of W as f32 (embedding lookup). out has tensor_cols(W) floats.
void kern_get_row(const struct tensor *W, int64_t r, float *out);

// ---- load-time repacking (weights read into writable memory, not mapped files) ----
// The x16 layouts (KERN_LAYOUT_Q4_0_X16, KERN_LAYOUT_Q8_0_X16): a GGUF Q4_0 / Q8_0 matrix
// regrouped in place, same bytes in total. Rows come in groups of 16 (16 * row_bytes contiguous
// bytes, in row order); inside a group, block pairs (blocks 2p, 2p+1 of all 16 rows) take
// 64 + 32 * qb bytes each (qb = qs bytes per block: 16 for Q4_0, 32 for Q8_0): 64 bytes of f16
// scales (block 2p of rows 0..15, then block 2p+1), then per block qb / 4 chunks of 64 bytes,
// chunk k holding bytes qs[4k..4k+3] of row l at 4l. The decode kernel then streams one
// sequence per 16 rows and dots 16 rows at once (no byte permutes, one scale conversion per
// 16 rows). kern_repack_supported(): Q4_0 or Q8_0, 2-D, rows % 16 == 0, cols % 64 == 0,
// cols <= 16384, the CPU runs the AVX-512 decode kernel, and LFMD_REPACK is not "0".
// kern_repack(): rewrites W->data (which must be writable and not shared with another tensor
// view of a different layout) and sets W->layout; returns 0 or LFMD_ENOMEM (16 rows of
// scratch). Every kern_* function keeps its contract on a repacked tensor (other paths unpack
// 16-row groups into stack scratch and run the plain kernels).
bool kern_repack_supported(const struct tensor *W);
int kern_repack(struct tensor *W);
// Reference twin of the layouts: the plain bytes of row r of a repacked W (row_bytes).
void kern_x16_unpack_row(const struct tensor *W, int64_t r, void *out);
// Plain bytes of the 16 rows of group g (16 * row_bytes) of a repacked W.
void kern_x16_unpack_group(const struct tensor *W, int64_t g, void *out);

// Reference (scalar) versions, always available; tests compare against these.
void kern_matmul_ref(const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy,
                     int64_t r0, int64_t r1);

// ---- quantization (used by `lfmd quantize`, kern_get_row and the tests) ----
// Bytes of n elements of one row of dtype t (n a multiple of the dtype's block size; for MLX
// types only the packed uint32 words, scales/biases are separate).
size_t kern_row_bytes(enum lfmd_dtype t, int64_t n);
// Elements per block along a row (1 for F32/F16/BF16, 32 for Q8_0/Q4_0/Q4_1, 256 for K-quants,
// 8 or 4 for MLX Q4/Q8 (one uint32 word)).
int kern_block_size(enum lfmd_dtype t);
// GGUF blocks: n floats (a multiple of the block size) <-> n / block_size ggml blocks.
void quantize_q8_0_ref(const float *src, void *dst, int64_t n);
void quantize_q4_0_ref(const float *src, void *dst, int64_t n);
void quantize_q4_1_ref(const float *src, void *dst, int64_t n);
void quantize_q4_k_ref(const float *src, void *dst, int64_t n);
void quantize_q5_k_ref(const float *src, void *dst, int64_t n);
void quantize_q6_k_ref(const float *src, void *dst, int64_t n);
// Any GGUF-block dtype (Q8_0 ... Q6_K), F32, F16 or BF16; returns 0 or LFMD_EINVAL-style -5.
int quantize_row_ref(enum lfmd_dtype t, const float *src, void *dst, int64_t n);
int dequantize_row_ref(enum lfmd_dtype t, const void *src, float *dst, int64_t n);
// MLX affine, one row of n elements (n a multiple of group_size in {32, 64, 128}, bits 4 or 8):
// wq gets n * bits / 32 packed words (first element in the low bits), scales/biases get
// n / group_size values of scale_dtype (F16, BF16 or F32). Returns 0 or -5 on bad arguments.
int quantize_mlx_ref(const float *src, int64_t n, int bits, int group_size,
                     enum lfmd_dtype scale_dtype, uint32_t *wq, void *scales, void *biases);
void dequantize_mlx_ref(const uint32_t *wq, const void *scales, const void *biases,
                        enum lfmd_dtype scale_dtype, int64_t n, int bits, int group_size,
                        float *dst);

// ---- attention and elementwise ops ----
// KV cache rows: one row per cached position, `stride` bytes apart, head_dim elements of kv dtype
// F32, F16 or Q8_0 (ggml blocks; head_dim a multiple of 32).
#define KERN_ATTN_MAX_HD 256
#define KERN_ATTN_QB 8
// Causal-free attention of n_q queries (rows of q, stride ldq) over cached positions [0, n_pos)
// of one KV head: out[i] = sum_p softmax_p(scale * q[i] . K[p]) V[p] (rows of out, stride ldo).
// hd <= KERN_ATTN_MAX_HD. Queries that share K/V (the heads of one GQA group) go in one call.
void kern_attention(enum lfmd_dtype kvt, const float *q, int64_t ldq, int n_q, const void *K,
                    const void *V, size_t stride, int n_pos, int hd, float scale, float *out,
                    int64_t ldo);
void kern_attention_ref(enum lfmd_dtype kvt, const float *q, int64_t ldq, int n_q, const void *K,
                        const void *V, size_t stride, int n_pos, int hd, float scale, float *out,
                        int64_t ldo);
// Stores n floats as one KV row of dtype kvt (round to nearest even / ggml Q8_0 rounding).
void kern_kv_store(enum lfmd_dtype kvt, const float *src, void *dst, int64_t n);
// out = w * x / sqrt(mean(x^2) + eps) over n values (sum of squares in f64); out may be x.
void kern_rmsnorm(const float *x, const float *w, int n, float eps, float *out);
void kern_rmsnorm_ref(const float *x, const float *w, int n, float eps, float *out);
// g = silu(g) * u over n values.
void kern_swiglu(float *g, const float *u, size_t n);
void kern_swiglu_ref(float *g, const float *u, size_t n);

// Which SIMD level dispatch selected ("avx2", "neon", "scalar").
const char *kern_isa(void);
// Force the scalar path (tests, LFMD_KERNELS=ref).
void kern_force_ref(bool on);

#endif
