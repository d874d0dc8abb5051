// `lfmd quantize`: a Hugging Face bf16/f16/f32 model directory -> an MLX-layout quantized
// directory (mlx-lm compatible) or a GGUF file (llama.cpp compatible, arch lfm2).
// Streams tensor by tensor (a few MB of buffers, input pages released after each tensor), writes
// into OUT.tmp-XXXXXX next to OUT and renames it only when complete; on any error or
// cancellation the temporary is removed and OUT is untouched.
// SPDX-License-Identifier: MIT
#ifndef LFMD_MODEL_QUANTIZE_H
#define LFMD_MODEL_QUANTIZE_H

#include "base/err.h"
#include "kernels/tensor.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

enum quant_format { QUANT_FMT_MLX, QUANT_FMT_GGUF };

struct quant_opts {
    enum quant_format format;
    int bits;                  // MLX: 4 or 8
    int group_size;            // MLX: 32, 64 or 128
    enum lfmd_dtype gguf_type; // GGUF: Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, F16, BF16 or F32
    // Checked between chunks of rows; when it becomes non-zero the run stops with LFMD_ECANCELED.
    volatile sig_atomic_t *cancel;
    // Called after every chunk: elements done / total, and the tensor being written.
    void (*progress)(void *ctx, uint64_t done, uint64_t total, const char *tensor);
    void *progress_ctx;
};

struct quant_stats {
    uint64_t in_bytes;         // input weight files
    uint64_t out_bytes;        // output weight file (model.safetensors or the .gguf)
    size_t n_tensors;          // tensors written (MLX: weight/scales/biases count as 3)
    size_t n_quantized;        // tensors quantized
    char tokenizer_note[160];  // GGUF: where the vocabulary came from
};

// Defaults: MLX, bits 4, group 64, Q4_0.
void quant_opts_default(struct quant_opts *o);
// Parses a --type name ("q4_0", "q8_0", "q4_1", "q4_k", "q5_k", "q6_k", "f16", "bf16", "f32",
// case-insensitive, "q4_k_m"-style suffixes accepted); false when unknown.
bool quant_parse_type(const char *s, enum lfmd_dtype *out);

// Errors: LFMD_EINVAL (bad options, OUT exists), LFMD_ENOTSUP (input already quantized, arch
// without a GGUF mapping), LFMD_EIO (read/write failure, full disk: message has path + errno),
// LFMD_ECANCELED, or model_open's errors for IN.
LFMD_MUST_CHECK int quantize_model(const char *in, const char *out, const struct quant_opts *o,
                                   struct quant_stats *st, struct lfmd_err_ctx *err);

#endif
