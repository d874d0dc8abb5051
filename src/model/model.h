// The model layer's API: open a model (HF safetensors dir, MLX dir, GGUF file), per-sequence
// state, and a runner that executes forward passes on the CPU with a thread pool.
// Invariants: weights are mmapped read-only and used in place; nothing is read before first use;
// a forward pass allocates nothing (all scratch is sized when the runner is created).
// Shape vocabulary: n_vocab, n_embd, n_layer, n_head, n_kv_head, head_dim, n_ff, n_ctx, n_tok.
// SPDX-License-Identifier: MIT
#ifndef LFMD_MODEL_MODEL_H
#define LFMD_MODEL_MODEL_H

#include "base/err.h"
#include "base/limits.h"
#include "kernels/tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum model_arch { MODEL_ARCH_LFM2, MODEL_ARCH_LLAMA };

struct model_config {
    enum model_arch arch;
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_kv_head;        // KV heads of attention layers
    int head_dim;
    int n_ff;             // effective FFN size (after LFM2's auto-adjust rule)
    int conv_L;           // LFM2 short-conv kernel length (conv_L_cache)
    bool is_attn[LFMD_MAX_LAYERS]; // per layer: attention (true) or short conv (false)
    int n_attn_layers;
    float rope_theta;
    float norm_eps;
    bool tied_embeddings;
    int bos_id, eos_id, pad_id; // -1 when unknown
    int max_pos;          // max_position_embeddings
};

struct model;
struct seq;
struct runner;

struct model_open_opts {
    bool preload;         // fault all weight pages in now (default: lazily on first use)
};

// Opens MODEL: a directory with config.json + safetensors (HF or MLX layout) or a .gguf file.
// Validates every header size/offset against the files and every tensor's name/shape/dtype
// against the config. Returns owned *out (free with model_close); on error *out = NULL and err
// names the file, the tensor and the problem.
LFMD_MUST_CHECK int model_open(const char *path, const struct model_open_opts *opts,
                               struct model **out, struct lfmd_err_ctx *err);
void model_close(struct model *m);
const struct model_config *model_get_config(const struct model *m);
const char *model_path(const struct model *m);
// Bytes of weight data the forward pass reads (mapped file bytes of used tensors).
size_t model_weight_bytes(const struct model *m);
uint64_t model_param_count(const struct model *m);
// Describes dtypes ("bf16", "mlx-q4", "q4_0", "mixed") for display.
const char *model_dtype_desc(const struct model *m);
// Drops resident weight pages (madvise DONTNEED); they fault back in on next use. No-op for
// weights read into memory (lfmd_io_set_copy_maps, --no-mmap): those stay until model_close.
void model_release_pages(struct model *m);
// Tensor lookup for tools (inspect); NULL if absent.
size_t model_tensor_count(const struct model *m);
const struct tensor *model_tensor_at(const struct model *m, size_t i);

// ---- per-sequence state (KV cache of attention layers, conv state of conv layers) ----
size_t seq_state_bytes(const struct model_config *c, int n_ctx);
LFMD_MUST_CHECK int seq_new(const struct model *m, int n_ctx, struct seq **out, struct lfmd_err_ctx *err);
// KV cache element type: LFMD_DTYPE_F32 (default; exact), LFMD_DTYPE_F16 (half the bytes) or
// LFMD_DTYPE_Q8_0 (ggml 8-bit blocks, 34 bytes per 32 values; head_dim a multiple of 32).
// seq_new uses F32 unless the environment variable LFMD_KV_TYPE names another.
struct seq_opts {
    enum lfmd_dtype kv_type;
};
LFMD_MUST_CHECK int seq_new_ex(const struct model *m, int n_ctx, const struct seq_opts *opts,
                               struct seq **out, struct lfmd_err_ctx *err);
size_t seq_state_bytes_kv(const struct model_config *c, int n_ctx, enum lfmd_dtype kv_type);
enum lfmd_dtype seq_kv_type(const struct seq *s);
// "f32" | "f16" | "q8" (or "q8_0") -> dtype; LFMD_EINVAL for other names.
int seq_kv_type_parse(const char *name, enum lfmd_dtype *out);
void seq_free(struct seq *s);
void seq_reset(struct seq *s);                      // back to position 0
int seq_pos(const struct seq *s);                   // tokens consumed so far
int seq_n_ctx(const struct seq *s);
// Copies src's state (positions [0, pos)) into dst; dst must have n_ctx >= src's pos.
LFMD_MUST_CHECK int seq_copy(struct seq *dst, const struct seq *src);

// ---- runner: thread pool + scratch ----
// max_tokens: most tokens processed in one internal chunk (larger inputs are chunked).
LFMD_MUST_CHECK int runner_new(const struct model *m, int n_threads, int max_tokens,
                               struct runner **out, struct lfmd_err_ctx *err);
void runner_free(struct runner *r);
int runner_threads(const struct runner *r);

// Feeds n_tok tokens of one sequence (any split gives identical results). If logits is non-NULL
// it receives the last token's logits (n_vocab floats). Errors: LFMD_EINVAL (bad token id),
// LFMD_ETOOBIG (sequence would exceed its n_ctx); the sequence is unchanged on error.
LFMD_MUST_CHECK int model_forward(struct runner *r, struct seq *s, const int32_t *tokens, int n_tok,
                                  float *logits, struct lfmd_err_ctx *err);

// Feeds several sequences in one pass (continuous batching): seqs[i] gets n_tok[i] tokens from
// tokens[i]. logits is [n_seqs, n_vocab]: each sequence's last-token logits. Weights are read
// once per chunk for all sequences.
LFMD_MUST_CHECK int model_forward_batch(struct runner *r, struct seq *const *seqs,
                                        const int32_t *const *tokens, const int *n_tok, int n_seqs,
                                        float *logits, struct lfmd_err_ctx *err);

#endif
