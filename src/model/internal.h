// Private to the model layer: the model struct, the runner and sequence state, and the ops that
// architecture files (lfm2.c, llama.c) compose into forward passes.
// SPDX-License-Identifier: MIT
#ifndef LFMD_MODEL_INTERNAL_H
#define LFMD_MODEL_INTERNAL_H

#include "base/pool.h"
#include "format/json.h"
#include "kernels/kernels.h"
#include "model.h"

#include <pthread.h>

struct st_file;
struct gguf;

// Llama-specific hyper-parameters (ignored by LFM2).
struct llama_params {
    bool attn_bias;
    bool rope_llama3;          // rope_scaling.rope_type == "llama3"
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    bool rope_interleaved;     // GGUF llama: q/k rows permuted for adjacent-pair (GPT-J) rotation
};

struct batch;

// One architecture = how to bind tensors and how to run a batch.
struct arch_ops {
    const char *name;
    // Looks up and checks every tensor the forward pass needs (names, shapes, dtypes).
    int (*bind)(struct model *m, struct lfmd_err_ctx *err);
    // Runs the batch's tokens through the network; writes logits rows for b->logit_rows.
    void (*forward)(struct runner *r, const struct batch *b, float *logits);
};

struct model {
    char *path;
    struct model_config cfg;
    struct llama_params llama;
    const struct arch_ops *ops;
    struct st_file *files[LFMD_MAX_SHARDS];
    int n_files;
    struct gguf *gguf;
    struct tensor *tensors;    // every tensor of the model (views into the mappings)
    size_t n_tensors;
    void *w;                   // arch-specific bound weights (owned)
    size_t weight_bytes;
    size_t charged_bytes;      // weight bytes charged to the memory budget (LFMD_MEM_WEIGHTS)
    bool maps_copied;          // files read into anonymous memory (lfmd_io_copy_maps at open):
                               // their pages must never be dropped
    _Atomic bool repacked;     // model_repack_cpu done (Q4_0/Q8_0 in the kernels' x16 layout)
    pthread_mutex_t repack_mu; // serializes model_repack_cpu per model (runners made in parallel)
    uint64_t n_params;
    char dtype_desc[32];
    float *rope_inv_freq;      // [head_dim/2]
};

// GGUF read into memory (maps_copied): rewrites its Q4_0 / Q8_0 matrices in place into the kernels'
// load-time decode layout (kern_repack; same bytes, no second copy), once per model, before a
// CPU runner first uses them. Mapped files and CUDA (which never makes a CPU runner) keep the
// file's layout. Returns 0 or a negative LFMD_E*.
int model_repack_cpu(struct model *m, struct lfmd_err_ctx *err);

struct seq {
    const struct model *m;
    int n_ctx;
    int pos;
    enum lfmd_dtype kv_type;   // F32, F16 or Q8_0
    size_t kv_row;             // elements per token per layer for K (= n_kv_head * head_dim)
    size_t kv_head_bytes;      // bytes of one head's row (head_dim elements of kv_type)
    size_t kv_row_bytes;       // bytes per token per layer for K (= n_kv_head * kv_head_bytes)
    uint8_t *kv;               // [n_attn_layers][2][n_kv_head][n_ctx][kv_head_bytes]
    float *conv;               // [n_conv_layers][n_embd][conv_L-1]
    size_t bytes;
};

// A batch: n_tok tokens from one or more sequences; tokens of a sequence are contiguous and in
// order. logit_rows lists the token indices whose logits are wanted (in output row order).
struct batch {
    int n_tok;
    const int32_t *tokens;     // [n_tok]
    struct seq *const *seq;    // [n_tok] owning sequence of each token
    const int *pos;            // [n_tok] absolute position of each token
    int n_logits;
    const int *logit_rows;     // [n_logits]
};

#define RUNNER_TRACE_MAX 1024 // products per forward pass remembered (LFM2-1.2B decode: 71)

struct runner {
    const struct model *m;
    struct pool *pool;
    int max_tok;
    // scratch, all sized for max_tok tokens
    float *x;      // [max_tok, n_embd]        residual stream
    float *xn;     // [max_tok, n_embd]        normed input of a block
    float *a;      // [max_tok, wide]          projections (in_proj / q,k,v / ffn gate)
    float *b;      // [max_tok, wide]          ffn up
    float *c;      // [max_tok, max(n_embd, n_head*head_dim)]  block outputs before out proj
    size_t wide;
    void *qx;      // quantized activations for int8 kernels, one region per thread
    size_t qx_bytes; // bytes of one thread's region
    float *vecs;   // small f32 copies of norm/conv weights [n_embd * conv_L + 4 * n_embd]
    float *att;    // per-thread attention accumulators [n_threads][head_dim]
    // batch bookkeeping (at most max_tok entries)
    struct seq **tok_seq;
    int *tok_pos;
    int *rows;
    size_t bytes;
    // The decode products (1-3 tokens) of the last forward pass in order, so that each one knows
    // the next and its threads can warm their first rows of it (op_matmul, pool_warm_after).
    const struct tensor *trace[RUNNER_TRACE_MAX];
    int trace_n, trace_pos;
};

// ---- GGUF (gguf_model.c): fills m->cfg, m->llama, m->gguf and m->tensors with Hugging Face
// tensor names so the architecture binders are shared. ----
int model_open_gguf(struct model *m, const char *path, struct lfmd_err_ctx *err);
void model_close_gguf(struct model *m);
void model_release_gguf_pages(struct model *m);

// ---- config ----
int config_parse(const struct json *j, const char *path, struct model_config *c,
                 struct llama_params *lp, struct lfmd_err_ctx *err);

// ---- tensor table ----
const struct tensor *model_find(const struct model *m, const char *name);
// Finds name and checks its shape (dims given, -1 = any) ; err names the tensor.
int model_need(const struct model *m, const char *name, int n_dims, const int64_t *shape,
               const struct tensor **out, struct lfmd_err_ctx *err);

// ---- ops (run on the runner's pool; no allocation) ----
// Y[t, :] = W X[t, :] for t < n_tok. Y row stride ldy.
void op_matmul(struct runner *r, const struct tensor *W, const float *X, int n_tok, float *Y,
               int64_t ldy);
// Up to 3 products of the same input in ONE pool dispatch (q/k/v, FFN gate/up): Y[k] = W[k] X,
// each thread computing its share of every product. Results are identical to n op_matmul calls.
void op_matmul_multi(struct runner *r, int n, const struct tensor *const *W, const float *X, int n_tok,
                     float *const *Y, const int64_t *ldy);
// Copies a 1-D weight (any dtype) to f32.
void op_vec_f32(const struct tensor *w, float *out);
// In place RMSNorm of n_rows rows of length n (row stride ld) with weight w (f32).
void op_rmsnorm(float *x, const float *w, int n_rows, int n, int64_t ld, float eps, float *out,
                int64_t ld_out);
// NeoX (split-half) rotary embedding in place on [n_heads, head_dim] at position pos.
void op_rope_neox(float *x, int n_heads, int head_dim, int pos, const float *inv_freq);
// GPT-J (adjacent pairs) rotation: pair (2i, 2i+1) rotated by pos * inv_freq[i].
void op_rope_interleaved(float *x, int n_heads, int head_dim, int pos, const float *inv_freq);
// Causal attention for every token of the batch over its sequence's cache of layer slot li.
// q: [n_tok, n_head*hd]; out: [n_tok, n_head*hd].
void op_attention(struct runner *r, const struct batch *b, int li, const float *q, float *out);
// Stores k, v rows of every token into its sequence's cache (layer slot li).
void op_kv_store(const struct batch *b, int li, const float *k, const float *v);
// out = silu(g) * u elementwise over n values (split across the pool).
void op_swiglu(struct runner *r, float *g, const float *u, size_t n);
void op_add(float *x, const float *y, size_t n);

static inline uint8_t *seq_k(const struct seq *s, int li) {
    return s->kv + (size_t)li * 2 * s->n_ctx * s->kv_row_bytes;
}
static inline uint8_t *seq_v(const struct seq *s, int li) {
    return seq_k(s, li) + (size_t)s->n_ctx * s->kv_row_bytes;
}

extern const struct arch_ops lfm2_ops;
extern const struct arch_ops llama_ops;

#endif
