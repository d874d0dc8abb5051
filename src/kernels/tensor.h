// Weight dtypes and tensor views. A tensor never owns its bytes: data points into a mapped file
// or into a backend buffer owned by the model. Shapes are in PyTorch order (outermost first):
// a linear weight is [n_out, n_in], row-major, contiguous along n_in.
// SPDX-License-Identifier: MIT
#ifndef LFMD_KERNELS_TENSOR_H
#define LFMD_KERNELS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum lfmd_dtype {
    LFMD_DTYPE_F32,
    LFMD_DTYPE_F16,
    LFMD_DTYPE_BF16,
    LFMD_DTYPE_MLX_Q4, // MLX affine: uint32-packed 4-bit, per-group scale/bias (bits=4)
    LFMD_DTYPE_MLX_Q8, // MLX affine, bits=8
    LFMD_DTYPE_Q8_0,   // ggml blocks
    LFMD_DTYPE_Q4_0,
    LFMD_DTYPE_Q4_1,
    LFMD_DTYPE_Q4_K,
    LFMD_DTYPE_Q5_K,
    LFMD_DTYPE_Q6_K,
    LFMD_DTYPE_COUNT
};

const char *lfmd_dtype_name(enum lfmd_dtype t);

struct tensor {
    const char *name;       // borrowed (the model's name table)
    enum lfmd_dtype dtype;
    int n_dims;
    int64_t shape[4];       // logical element shape, outermost first
    const void *data;       // borrowed
    size_t size_bytes;      // bytes of data
    // MLX affine quantization only (dtype MLX_Q4/MLX_Q8): w = scale * q + bias per group of
    // group_size elements along the last dim. scales/biases are [n_out, n_in / group_size].
    const void *scales;
    const void *biases;
    enum lfmd_dtype scale_dtype; // F16, BF16 or F32
    int group_size;
    int bits;
    // Byte layout of data: KERN_LAYOUT_PLAIN (0, what the file holds) unless kern_repack()
    // rewrote the bytes in place (kernels.h); only the kernels read anything else.
    int layout;
};

enum kern_layout {
    KERN_LAYOUT_PLAIN = 0,
    KERN_LAYOUT_Q4_0_X16, // GGUF Q4_0, 16 rows interleaved per block (kernels.h)
    KERN_LAYOUT_Q8_0_X16, // GGUF Q8_0, likewise
};

static inline int64_t tensor_rows(const struct tensor *t) {
    int64_t r = 1;
    for (int i = 0; i < t->n_dims - 1; i++) r *= t->shape[i];
    return r;
}
static inline int64_t tensor_cols(const struct tensor *t) { return t->shape[t->n_dims - 1]; }
static inline int64_t tensor_nelem(const struct tensor *t) { return tensor_rows(t) * tensor_cols(t); }

// ---- scalar conversions (exact, round-to-nearest-even where narrowing) ----
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}
static inline uint16_t f32_to_bf16(float f) {
    union { uint32_t u; float f; } v = {.f = f};
    if ((v.u & 0x7fffffff) > 0x7f800000) return (uint16_t)((v.u >> 16) | 64); // quiet NaN
    return (uint16_t)((v.u + 0x7fff + ((v.u >> 16) & 1)) >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
