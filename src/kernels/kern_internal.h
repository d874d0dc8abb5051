// Kernel-layer internals: ggml-compatible quant block structs, the dtype traits table, the
// quantized-activation block used by the integer-dot kernels, and the variant prototypes that
// dispatch.c chooses among. Not part of the model-facing interface (that is kernels.h).
// SPDX-License-Identifier: MIT
#ifndef LFMD_KERNELS_KERN_INTERNAL_H
#define LFMD_KERNELS_KERN_INTERNAL_H

#include "kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---- GGUF (ggml) block layouts; f16 fields are raw IEEE half bits ----
#define QK8_0 32
#define QK4_0 32
#define QK4_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
};
_Static_assert(sizeof(struct block_q8_0) == 34, "q8_0 block size");

struct block_q4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2]; // low nibbles: elements 0-15, high nibbles: 16-31; value (q-8)*d
};
_Static_assert(sizeof(struct block_q4_0) == 18, "q4_0 block size");

struct block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[QK4_1 / 2]; // value q*d + m
};
_Static_assert(sizeof(struct block_q4_1) == 20, "q4_1 block size");

struct block_q4_k {
    uint16_t d;    // super-block scale for the 6-bit scales
    uint16_t dmin; // super-block scale for the 6-bit mins
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q4_k) == 144, "q4_K block size");

struct block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q5_k) == 176, "q5_K block size");

struct block_q6_k {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};
_Static_assert(sizeof(struct block_q6_k) == 210, "q6_K block size");

// ---- quantized activations (kern_prepare_input output for integer-dot dtypes) ----
// Blocks of 32 along n_in: x ~= d * qs; s = d * sum(qs) (for bias/min terms).
#define QKX 32
struct block_qx {
    float d;
    float s;
    int8_t qs[QKX];
};
_Static_assert(sizeof(struct block_qx) == 40, "activation block size");

struct kern_dtype_traits {
    const char *name;
    int blck_size;    // elements per block along a row
    size_t type_size; // bytes per block
    bool quantized;
};
extern const struct kern_dtype_traits kern_traits[LFMD_DTYPE_COUNT];


// 6-bit scale/min unpacking shared by Q4_K and Q5_K (j in 0..7).
static inline void kern_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Scale/bias of MLX group g in row r, as f32.
static inline float kern_load_scalar(enum lfmd_dtype dt, const void *p, int64_t i) {
    if (dt == LFMD_DTYPE_F32) return ((const float *)p)[i];
    if (dt == LFMD_DTYPE_BF16) return bf16_to_f32(((const uint16_t *)p)[i]);
    return f16_to_f32(((const uint16_t *)p)[i]);
}

// Dequantize elements [c0, c0 + n) of row r of W to f32 (c0, n multiples of the block size).
void kern_dequant_row_part_ref(const struct tensor *W, int64_t r, int64_t c0, int64_t n,
                               float *out);

void kern_get_row_ref(const struct tensor *W, int64_t r, float *out);

// Reference activation quantizer (round-to-nearest, d = amax/127).
void kern_quantize_x_ref(const float *x, int64_t n, struct block_qx *out);

// ---- variants ----
typedef void (*kern_matmul_fn)(const struct tensor *W, const float *X, const void *qx, int n_tok,
                               float *Y, int64_t ldy, int64_t r0, int64_t r1);
typedef void (*kern_prepare_fn)(const float *X, int64_t n_in, int t0, int t1, void *qx);

void kern_matmul_float_avx2(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1);
void kern_matmul_quant_avx2(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1);
void kern_matmul_panel_avx2(const struct tensor *W, const float *X, int n_tok, float *Y,
                            int64_t ldy, int64_t r0, int64_t r1);
// SIMD dequantization of part of a row (falls back to the reference for other dtypes).
void kern_dequant_row_part_avx2(const struct tensor *W, int64_t r, int64_t c0, int64_t n,
                                float *out);
void kern_quantize_x_avx2(const float *X, int64_t n_in, int t0, int t1, void *qx);
// Does the AVX2 integer-dot path handle this tensor (dtype, group size)?
bool kern_quant_avx2_supports(const struct tensor *W);
// Below this many tokens, quantized products use integer dots on the prepared activations
// (qx); from it on, f32 panels of dequantized weights against the f32 activations.
#define KERN_QUANT_PANEL_MIN_TOK 4

// AVX-512 tiled product (any dtype; F32 in place, others via f32 panels), for n_tok >= 4.
void kern_matmul_tiled_avx512(const struct tensor *W, const float *X, int n_tok, float *Y,
                              int64_t ldy, int64_t r0, int64_t r1);
bool kern_avx512_usable(void);
// Q4_0 / Q8_0 integer-dot products on AVX-VNNI CPUs (same contract as kern_matmul_quant_avx2).
void kern_matmul_quant_vnni(const struct tensor *W, const float *X, const void *qx, int n_tok,
                            float *Y, int64_t ldy, int64_t r0, int64_t r1);
// AVX-512 VNNI/VBMI decode products (cpu/matvec_avx512.c), n_tok < KERN_QUANT_PANEL_MIN_TOK:
// Q4_0/Q8_0/MLX Q4/Q8 against qx (block_qx from kern_prepare_input), F32/F16/BF16 against X.
// kern_matvec_avx512_supports(): dtype/shape handled (n_in <= 16384 for quantized types).
bool kern_matvec_avx512_usable(void);
bool kern_matvec_avx512_supports(const struct tensor *W, int n_tok);
// Q4_0 / Q8_0 / MLX Q4 against up to 8 tokens' qx at once (each weight group unpacked once),
// n_in <= 8192;
// every token's result bit-identical to kern_matvec_avx512 on that token alone.
bool kern_matvec_avx512_multi_supports(const struct tensor *W, int n_tok);
void kern_matvec_avx512_multi(const struct tensor *W, const void *qx, int n_tok, float *Y,
                              int64_t ldy, int64_t r0, int64_t r1);
void kern_matvec_avx512(const struct tensor *W, const float *X, const void *qx, int n_tok,
                        float *Y, int64_t ldy, int64_t r0, int64_t r1);
// x16-layout weights (kernels.h; cpu/q4x16_avx512.c): 1..KERN_X16_MAX_TOK tokens' block_qx,
// r0 and r1 multiples of 16, n_in <= 16384; needs kern_matvec_avx512_usable().
#define KERN_X16_MAX_TOK 8
void kern_matvec_x16(const struct tensor *W, const void *qx, int n_tok, float *Y, int64_t ldy,
                     int64_t r0, int64_t r1);
// qs bytes per block of an x16 dtype (Q4_0: 16, Q8_0: 32).
int kern_x16_qs_bytes(enum lfmd_dtype t);
// kern_x16_unpack_group (kernels.h) with AVX-512 moves; same bytes.
void kern_x16_unpack_group_fast(const struct tensor *W, int64_t g, void *out);
// 16 plain rows of nb blocks of dtype t (row stride rb) -> one group of the x16 layout at dst
// (reference, and the AVX-512 twin kern_repack uses; same bytes).
void kern_x16_pack_group(enum lfmd_dtype t, const uint8_t *plain, size_t rb, int64_t nb,
                         uint8_t *dst);
void kern_x16_pack_group_fast(enum lfmd_dtype t, const uint8_t *plain, size_t rb, int64_t nb,
                              uint8_t *dst);

// AMX tiles (cpu/matmul_amx.c) for products of n_tok >= KERN_AMX_MIN_TOK tokens: BF16/F16
// weights against 3-part bf16 activations (qx from kern_prepare_amx_bf16, tile-blocked),
// Q8_0/Q4_0 weights against the int8 activation blocks (struct block_qx). kern_amx_usable()
// checks the CPU and requests the Linux tile-data permission once per process.
// BF16 weights from KERN_AMX_FEW_MIN_TOK to KERN_AMX_FEW_MAX_TOK tokens use the few-token
// orientation (weights as the A operand, one column per token).
#define KERN_AMX_MIN_TOK 16
#define KERN_AMX_MIN_TOK_F16 32 // F16 panels (hi + lo split) need more tokens to pay off
#define KERN_AMX_FEW_MIN_TOK 4
#ifndef KERN_AMX_FEW_MAX_TOK
#define KERN_AMX_FEW_MAX_TOK 64
#endif
bool kern_amx_usable(void);
bool kern_amx_supports(const struct tensor *W, int n_tok);
size_t kern_amx_input_bytes(enum lfmd_dtype wt, int n_tok, int64_t n_in);
// Fills the activation scratch for tokens [t0, t1) of an n_tok-token product with weights wt.
void kern_prepare_amx_bf16(enum lfmd_dtype wt, const float *X, int64_t n_in, int n_tok, int t0,
                           int t1, void *qx);
void kern_matmul_amx(const struct tensor *W, const float *X, const void *qx, int n_tok, float *Y,
                     int64_t ldy, int64_t r0, int64_t r1);

void kern_attention_avx2(enum lfmd_dtype kvt, const float *q, int64_t ldq, int n_q, const void *K,
                         const void *V, size_t stride, int n_pos, int hd, float scale, float *out,
                         int64_t ldo);
void kern_rmsnorm_avx2(const float *x, const float *w, int n, float eps, float *out);
void kern_swiglu_avx2(float *g, const float *u, size_t n);

#endif
