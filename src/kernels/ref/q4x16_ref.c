// The KERN_LAYOUT_Q4_0_X16 weight layout (kernels.h): packing a GGUF Q4_0 matrix into it in
// place, and unpacking rows / 16-row groups back to plain ggml blocks. Scalar byte moves only;
// the reference for the AVX-512 kernel (cpu/q4x16_avx512.c) and the fallback of every other
// kernel path. Invariant: pack then unpack gives back the original bytes exactly.
// SPDX-License-Identifier: MIT
#include "base/alloc.h"
#include "base/err.h"
#include "kernels/kern_internal.h"

#include <string.h>

enum { X16_ROWS = 16, X16_PAIR = 576 };

// Offsets inside a group of 16 rows: scale of (row l, block b), byte j of its qs.
static size_t off_scale(int64_t b, int l) {
    return (size_t)(b / 2) * X16_PAIR + (size_t)(b % 2) * 32 + 2 * (size_t)l;
}
static size_t off_qs(int64_t b, int l, int j) {
    return (size_t)(b / 2) * X16_PAIR + 64 + (size_t)(b % 2) * 256 + 64 * (size_t)(j / 4) +
           4 * (size_t)l + (size_t)(j % 4);
}

// plain: 16 rows of nb blocks (row stride rb); dst: the group in the x16 layout.
void kern_q4x16_pack_group(const uint8_t *plain, size_t rb, int64_t nb, uint8_t *dst) {
    for (int l = 0; l < X16_ROWS; l++) {
        const struct block_q4_0 *row = (const struct block_q4_0 *)(plain + rb * (size_t)l);
        for (int64_t b = 0; b < nb; b++) {
            memcpy(dst + off_scale(b, l), &row[b].d, 2);
            for (int j = 0; j < 16; j++) dst[off_qs(b, l, j)] = row[b].qs[j];
        }
    }
}

static void unpack_row(const uint8_t *grp, int64_t nb, int l, uint8_t *out) {
    struct block_q4_0 *row = (struct block_q4_0 *)out;
    for (int64_t b = 0; b < nb; b++) {
        memcpy(&row[b].d, grp + off_scale(b, l), 2);
        for (int j = 0; j < 16; j++) row[b].qs[j] = grp[off_qs(b, l, j)];
    }
}

void kern_q4x16_unpack_row(const struct tensor *W, int64_t r, void *out) {
    int64_t nb = tensor_cols(W) / QK4_0;
    size_t rb = (size_t)nb * sizeof(struct block_q4_0);
    const uint8_t *grp = (const uint8_t *)W->data + rb * X16_ROWS * (size_t)(r / X16_ROWS);
    unpack_row(grp, nb, (int)(r % X16_ROWS), out);
}

void kern_q4x16_unpack_group(const struct tensor *W, int64_t g, void *out) {
    int64_t nb = tensor_cols(W) / QK4_0;
    size_t rb = (size_t)nb * sizeof(struct block_q4_0);
    const uint8_t *grp = (const uint8_t *)W->data + rb * X16_ROWS * (size_t)g;
    for (int l = 0; l < X16_ROWS; l++) unpack_row(grp, nb, l, (uint8_t *)out + rb * (size_t)l);
}

int kern_repack(struct tensor *W) {
    if (W->layout != KERN_LAYOUT_PLAIN || !kern_repack_supported(W)) return 0;
    int64_t nb = tensor_cols(W) / QK4_0, rows = tensor_rows(W);
    size_t rb = (size_t)nb * sizeof(struct block_q4_0), gb = rb * X16_ROWS;
    uint8_t *tmp = lfmd_malloc(gb, LFMD_MEM_SCRATCH);
    if (!tmp) return LFMD_ENOMEM;
    uint8_t *data = (uint8_t *)(uintptr_t)W->data; // writable by contract
    for (int64_t g = 0; g < rows / X16_ROWS; g++) {
        memcpy(tmp, data + gb * (size_t)g, gb);
        kern_q4x16_pack_group_fast(tmp, rb, nb, data + gb * (size_t)g);
    }
    lfmd_free(tmp);
    W->layout = KERN_LAYOUT_Q4_0_X16;
    return 0;
}
