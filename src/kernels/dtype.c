// Dtype names, the dtype traits table and exact f16 <-> f32 scalar conversions.
// SPDX-License-Identifier: MIT
#include "kern_internal.h"

#include <string.h>

// Traits: elements per block and bytes per block along a row (ggml style). MLX affine types
// count one packed uint32 as a block; their scales/biases live in separate arrays.
const struct kern_dtype_traits kern_traits[LFMD_DTYPE_COUNT] = {
    [LFMD_DTYPE_F32] = {"f32", 1, 4, false},
    [LFMD_DTYPE_F16] = {"f16", 1, 2, false},
    [LFMD_DTYPE_BF16] = {"bf16", 1, 2, false},
    [LFMD_DTYPE_MLX_Q4] = {"mlx_q4", 8, 4, true},
    [LFMD_DTYPE_MLX_Q8] = {"mlx_q8", 4, 4, true},
    [LFMD_DTYPE_Q8_0] = {"q8_0", QK8_0, sizeof(struct block_q8_0), true},
    [LFMD_DTYPE_Q4_0] = {"q4_0", QK4_0, sizeof(struct block_q4_0), true},
    [LFMD_DTYPE_Q4_1] = {"q4_1", QK4_1, sizeof(struct block_q4_1), true},
    [LFMD_DTYPE_Q4_K] = {"q4_k", QK_K, sizeof(struct block_q4_k), true},
    [LFMD_DTYPE_Q5_K] = {"q5_k", QK_K, sizeof(struct block_q5_k), true},
    [LFMD_DTYPE_Q6_K] = {"q6_k", QK_K, sizeof(struct block_q6_k), true},
};

const char *lfmd_dtype_name(enum lfmd_dtype t) {
    if ((unsigned)t >= LFMD_DTYPE_COUNT) return "invalid";
    return kern_traits[t].name;
}

size_t kern_row_bytes(enum lfmd_dtype t, int64_t n) {
    if ((unsigned)t >= LFMD_DTYPE_COUNT) return 0;
    const struct kern_dtype_traits *tr = &kern_traits[t];
    return (size_t)(n / tr->blck_size) * tr->type_size;
}

int kern_block_size(enum lfmd_dtype t) {
    if ((unsigned)t >= LFMD_DTYPE_COUNT) return 0;
    return kern_traits[t].blck_size;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000 | (man << 13); // inf / NaN (payload kept)
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {
        // subnormal: normalise
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400) == 0);
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff)); // NaN stays NaN
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00); // rounds to >= 65520: inf
    if (a < 0x38800000) {
        // result is subnormal or zero: value = a * 2^24 in units of the f16 subnormal step
        if (a < 0x33000000) return sign; // < 2^-25: rounds to zero (2^-25 exactly ties to 0)
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;         // 14 + (113 - e) ... m >> shift gives the f16 mantissa
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    // normal: rebias exponent, round mantissa from 23 to 10 bits (RNE); carry may bump exponent
    uint32_t r = a - 0x38000000; // exponent 127 -> 15 bias
    r = r + 0xfff + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}
