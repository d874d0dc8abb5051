// The CUDA backend: runs a model opened by src/model on one or more GPUs. Weights are uploaded
// on first use (cuda_model_new) as bf16 or, for 4-bit layouts, kept 4-bit; layers may be split
// in contiguous ranges ("stages") across devices, activations moving between them. Sequences
// keep their KV cache and conv state on the device(s); forward passes take the same batches as
// model_forward_batch.
// Invariants: a forward pass allocates nothing; every device allocation is counted against the
// device memory limit (cuda_set_limit); cuda_shutdown frees everything and destroys the contexts.
// Not thread-safe: one thread (the engine thread) drives a model.
// SPDX-License-Identifier: MIT
#ifndef LFMD_CUDA_CUDA_H
#define LFMD_CUDA_CUDA_H

#include "base/err.h"
#include "model/model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define CUDA_MAX_STAGES 8

struct cuda_opts {
    int n_dev;                      // stages (0 = one stage on device 0)
    int dev[CUDA_MAX_STAGES];       // device index of each stage (may repeat: tests)
    int split[CUDA_MAX_STAGES];     // relative layer counts (all 0 = by free memory)
    bool no_graphs;                 // disable CUDA graph capture of decode steps
    bool fast_gemm;                 // one bf16 product per GEMM (activations rounded to bf16);
                                    // default: two (hi + lo parts), ~f32 activation precision
    int mv_max_tok;                 // largest token count using the matvec kernel (0 = 3, max 8)
    bool no_pdl;                    // plain launches (default: programmatic dependent launch)
    int mv_blocks;                  // matvec blocks per SM (0 = default; see cuk_set_mv_blocks)
    bool no_q4;                     // dequantize 4-bit weights to bf16 at upload (A/B timing)
    bool mv_old;                    // bf16 matvec through the previous kernel (A/B timing)
    int att_splits;                 // attention splits along the sequence (0 = by shape)
    int att_min_chunk;              // one-token steps: positions per attention split at least
                                    // (0 = 16; A/B)
    int att_round;                  // attention: positions per warp loaded together (0: 8, fewer
                                    // for heads over 64 elements; A/B)
    int q4_rows;                    // rows per warp of the 4-bit matvec (0 = by shape; 1, 2, 4)
    bool no_norm_fuse;              // RMSNorm as its own kernel, not in the matvec prologue
    bool no_prefetch;               // no L2 prefetch of the next product's weights (A/B)
    int prefetch_mb;                // L2 tail prefetch cap in MiB (0: off, the default)
    bool no_q8;                     // 4-bit matvec with f32 activations (no int8 quantization)
    bool no_conv_fuse;              // LFM2 short conv as its own kernel after in_proj (A/B)
    bool no_rope_fuse;              // one-token steps: head norm + RoPE + KV store as their own
                                    // kernel before attention (A/B)
    bool no_preload;                // matvec: first weights only prefetched to L2 (A/B)
    bool no_stage1;                 // matvec: general activation staging loops (A/B)
    bool no_stage_x;                // bf16 matvec without a norm: X through L1, not staged (A/B)
    int ring;                       // one-token matvecs: ring kernel types (CUK_RING_* mask;
                                    // 0: default, -1: none; A/B)
    int ring_chunk, ring_bytes;     // ring matvec geometry (0: defaults; A/B)
    int ring_warps;                 // ring matvec warps per block (0: default 16; A/B)
    int ring_pair;                  // ring block's shared-memory bytes beside the next (0: default)
    int ring_max_rows;              // products with more rows skip the ring kernel (0: default,
                                    // CUK_RING_MAX_ROWS; A/B)
    bool no_argmax_fuse;            // greedy: argmax as its own kernel after the LM head (A/B)
    int carveout;                   // shared-memory carveout % of every kernel (0: default 100,
                                    // -1: the driver's choice; A/B)
};

struct cuda_model;
struct cuda_seq;
struct cuda_runner;

// Parses "cuda:0", "cuda:0,cuda:1", "cuda" into o->dev/n_dev; split "10,6" into o->split.
// LFMD_EINVAL on junk.
LFMD_MUST_CHECK int cuda_parse_devices(const char *devices, const char *split, struct cuda_opts *o,
                                       struct lfmd_err_ctx *err);
// Number of visible CUDA devices (0 when none or no driver).
int cuda_device_count(void);
// Device memory limit across all devices (0 = none). Allocations beyond it fail with LFMD_EBUDGET.
void cuda_set_limit(size_t bytes);
size_t cuda_mem_used(void);
size_t cuda_mem_peak(void);
// Returns pooled (freed) device memory to the driver on every device used.
void cuda_trim(void);
// Frees nothing itself: call after every cuda object is freed; destroys every device context
// (cudaDeviceReset) so the process holds no GPU memory. The next cuda_model_new starts afresh.
void cuda_shutdown(void);

// 4-bit layouts kept quantized on the GPU: MLX q4 (group 32/64/128, any scale dtype), GGUF Q4_0,
// Q4_1, Q4_K. Returns 1 and the device group size and scale-bias kind (CUK_SB_*, kernels.h)
// when t can be packed, else 0.
int cuda_q4_format(const struct tensor *t, int *gs, int *sbk);
// Packs row r of t into the device layout (kernels.h, struct cuk_q4; words permuted in blocks
// of 128 for coalesced activation reads): codes [K / 8] words,
// sb [K / gs] pairs of kind sbk (from cuda_q4_format).
void cuda_q4_pack_row(const struct tensor *t, int64_t r, int sbk, uint32_t *codes, void *sb);

// Uploads m's weights to the stages: bf16 as is, 4-bit layouts (cuda_q4_format) kept 4-bit,
// everything else converted to bf16.
// m must stay open while the cuda model lives. Layer range of stage i via cuda_stage_layers.
LFMD_MUST_CHECK int cuda_model_new(const struct model *m, const struct cuda_opts *o,
                                   struct cuda_model **out, struct lfmd_err_ctx *err);
void cuda_model_free(struct cuda_model *cm);
int cuda_model_stages(const struct cuda_model *cm);
void cuda_stage_layers(const struct cuda_model *cm, int i, int *dev, int *l0, int *l1);
size_t cuda_model_weight_bytes(const struct cuda_model *cm);   // device bytes of weights

LFMD_MUST_CHECK int cuda_seq_new(struct cuda_model *cm, int n_ctx, struct cuda_seq **out,
                                 struct lfmd_err_ctx *err);
void cuda_seq_free(struct cuda_seq *s);
void cuda_seq_reset(struct cuda_seq *s);
int cuda_seq_pos(const struct cuda_seq *s);
// Copies src's state (KV rows [0, pos), conv state, position) into dst (same model, dst's n_ctx
// >= src's pos); ordered on the stages' streams before dst's next pass. 0 or LFMD_E*.
LFMD_MUST_CHECK int cuda_seq_copy(struct cuda_seq *dst, const struct cuda_seq *src);
size_t cuda_seq_bytes(const struct model_config *c, int n_ctx);

// max_tokens: tokens per internal chunk (capped at LFMD_MAX_BATCH_TOKENS).
LFMD_MUST_CHECK int cuda_runner_new(struct cuda_model *cm, int max_tokens, struct cuda_runner **out,
                                    struct lfmd_err_ctx *err);
void cuda_runner_free(struct cuda_runner *r);

// Same contract as model_forward_batch / model_forward (logits on the host, f32).
LFMD_MUST_CHECK int cuda_forward_batch(struct cuda_runner *r, struct cuda_seq *const *seqs,
                                       const int32_t *const *tokens, const int *n_tok, int n_seqs,
                                       float *logits, struct lfmd_err_ctx *err);
// As cuda_forward_batch, but the logits stay on the device: next[i] = greedy (first argmax)
// token of sequence i's last position, picked on the GPU inside the same graph replay.
LFMD_MUST_CHECK int cuda_forward_batch_greedy(struct cuda_runner *r, struct cuda_seq *const *seqs,
                                              const int32_t *const *tokens, const int *n_tok,
                                              int n_seqs, int32_t *next, struct lfmd_err_ctx *err);
LFMD_MUST_CHECK int cuda_forward(struct cuda_runner *r, struct cuda_seq *s, const int32_t *tokens,
                                 int n_tok, float *logits, struct lfmd_err_ctx *err);
// Profiling: while on, passes launch kernels one by one (no graphs) with an event after each
// kernel group; cuda_runner_profile_print prints device time per group and pass. Turning it on
// resets the sums.
void cuda_runner_profile(struct cuda_runner *r, bool on);
void cuda_runner_profile_print(struct cuda_runner *r, FILE *f);
// Waits for all device work of the runner (timing).
void cuda_runner_sync(struct cuda_runner *r);

#endif
