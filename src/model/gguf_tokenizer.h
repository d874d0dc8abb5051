// Tokenizer from GGUF metadata (tokenizer.ggml.* keys and tokenizer.chat_template), for model
// paths that are .gguf files.
// SPDX-License-Identifier: MIT
#ifndef LFMD_MODEL_GGUF_TOKENIZER_H
#define LFMD_MODEL_GGUF_TOKENIZER_H

#include "base/err.h"

struct tokenizer;

// Opens the GGUF at path (validating it like gguf_open) and builds its tokenizer with
// tokenizer_from_arrays. Returns 0 and *out (free with tokenizer_free), LFMD_ENOENT when the file
// has no tokenizer.ggml.tokens, or the reader's / tokenizer's error.
int gguf_load_tokenizer(const char *path, struct tokenizer **out, struct lfmd_err_ctx *err);

// The tokenizer of any model path: a .gguf file's metadata, or tokenizer.json in a directory.
int model_tokenizer_load(const char *model_path, struct tokenizer **out, struct lfmd_err_ctx *err);

#endif
