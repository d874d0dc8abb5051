// The x16 weight layouts (kernels.h: KERN_LAYOUT_Q4_0_X16, KERN_LAYOUT_Q8_0_X16): packing a GGUF
// Q4_0 / Q8_0 matrix into them in place, and unpacking rows / 16-row groups back to plain ggml
// blocks. Scalar byte moves only; the reference for the AVX-512 kernels and moves
// (cpu/q4x16_avx512.c) and the fallback of every other kernel path. Invariant: pack then unpack
// gives back the original bytes exactly.
// SPDX-License-Identifier: MIT
#include "base/alloc.h"
#include "base/err.h"
#include "kernels/kern_internal.h"

#include <string.h>

enum { X16_ROWS = 16 };

// qs bytes per block (16: Q4_0, 32: Q8_0); a block pair takes 64 + 32 * qb bytes.
static size_t pair_bytes(int qb) { return 64 + 32 * (size_t)qb; }

// Offsets inside a group of 16 rows: scale of (row l, block b), byte j of its qs.
static size_t off_scale(int qb, int64_t b, int l) {
    return (size_t)(b / 2) * pair_bytes(qb) + (size_t)(b % 2) * 32 + 2 * (size_t)l;
}
static size_t off_qs(int qb, int64_t b, int l, int j) {
    return (size_t)(b / 2) * pair_bytes(qb) + 64 + (size_t)(b % 2) * 16 * (size_t)qb +
           64 * (size_t)(j / 4) + 4 * (size_t)l + (size_t)(j % 4);
}

int kern_x16_qs_bytes(enum lfmd_dtype t) { return t == LFMD_DTYPE_Q8_0 ? 32 : 16; }

// plain: 16 rows of nb blocks (row stride rb); dst: the group in the x16 layout.
void kern_x16_pack_group(enum lfmd_dtype t, const uint8_t *plain, size_t rb, int64_t nb,
                         uint8_t *dst) {
    const int qb = kern_x16_qs_bytes(t);
    const size_t bs = 2 + (size_t)qb; // bytes per plain block: f16 d, then qs
    for (int l = 0; l < X16_ROWS; l++) {
        const uint8_t *row = plain + rb * (size_t)l;
        for (int64_t b = 0; b < nb; b++) {
            memcpy(dst + off_scale(qb, b, l), row + bs * (size_t)b, 2);
            for (int j = 0; j < qb; j++) dst[off_qs(qb, b, l, j)] = row[bs * (size_t)b + 2 + j];
        }
    }
}

static void unpack_row(int qb, const uint8_t *grp, int64_t nb, int l, uint8_t *out) {
    const size_t bs = 2 + (size_t)qb;
    for (int64_t b = 0; b < nb; b++) {
        memcpy(out + bs * (size_t)b, grp + off_scale(qb, b, l), 2);
        for (int j = 0; j < qb; j++) out[bs * (size_t)b + 2 + j] = grp[off_qs(qb, b, l, j)];
    }
}

void kern_x16_unpack_row(const struct tensor *W, int64_t r, void *out) {
    int64_t nb = tensor_cols(W) / 32;
    size_t rb = kern_row_bytes(W->dtype, tensor_cols(W));
    const uint8_t *grp = (const uint8_t *)W->data + rb * X16_ROWS * (size_t)(r / X16_ROWS);
    unpack_row(kern_x16_qs_bytes(W->dtype), grp, nb, (int)(r % X16_ROWS), out);
}

void kern_x16_unpack_group(const struct tensor *W, int64_t g, void *out) {
    int64_t nb = tensor_cols(W) / 32;
    size_t rb = kern_row_bytes(W->dtype, tensor_cols(W));
    const uint8_t *grp = (const uint8_t *)W->data + rb * X16_ROWS * (size_t)g;
    for (int l = 0; l < X16_ROWS; l++)
        unpack_row(kern_x16_qs_bytes(W->dtype), grp, nb, l, (uint8_t *)out + rb * (size_t)l);
}

int kern_repack(struct tensor *W) {
    if (W->layout != KERN_LAYOUT_PLAIN || !kern_repack_supported(W)) return 0;
    int64_t nb = tensor_cols(W) / 32, rows = tensor_rows(W);
    size_t rb = kern_row_bytes(W->dtype, tensor_cols(W)), gb = rb * X16_ROWS;
    uint8_t *tmp = lfmd_malloc(gb, LFMD_MEM_SCRATCH);
    if (!tmp) return LFMD_ENOMEM;
    uint8_t *data = (uint8_t *)(uintptr_t)W->data; // writable by contract
    for (int64_t g = 0; g < rows / X16_ROWS; g++) {
        memcpy(tmp, data + gb * (size_t)g, gb);
        kern_x16_pack_group_fast(W->dtype, tmp, rb, nb, data + gb * (size_t)g);
    }
    lfmd_free(tmp);
    W->layout = W->dtype == LFMD_DTYPE_Q8_0 ? KERN_LAYOUT_Q8_0_X16 : KERN_LAYOUT_Q4_0_X16;
    return 0;
}
