// CUDA kernel launchers (C ABI). Each kernel is the twin of a CPU op in src/model/runner.c or
// src/kernels/ref (named in its comment) and is tested against it in tests/cuda/.
// Invariants: every launcher is asynchronous on the given stream and allocates nothing; matrices
// are row-major; weights are bf16 (uint16 bit patterns); activations f32.
// SPDX-License-Identifier: MIT
#ifndef LFMD_CUDA_KERNELS_H
#define LFMD_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *cuk_stream;

#define CUK_MAX_SPLIT 16     // attention splits along the sequence
#define CUK_MAX_HEAD_DIM 256
#define CUK_MV_MAX_TOK 8     // matrix-vector kernel handles up to this many tokens
#define CUK_MV_NORM_SMEM 32768  // bytes of normalized activations a fused-norm matvec may stage
#define CUK_CONV_SEQ_MAX_T 16   // short conv up to this many tokens: one launch, tokens in order
#define CUK_MV_Q8_MAX_TOK 4     // 4-bit matvec with int8 activations up to this many tokens
#define CUK_MV_Q8_SMEM 48128    // bytes of quantized activations (3 K per token) it may stage

// Matrix-vector epilogues.
enum { CUK_MV_STORE = 0, CUK_MV_ACC = 1, CUK_MV_SWIGLU = 2, CUK_MV_CONV = 3 };

// LFM2 short conv fused into the in_proj product (CUK_MV_CONV): weights wc f32 [D, L], token t's
// state of layer slot `slot` at conv[t] + slot * D * (L - 1) (cuk_shortconv's layout).
struct cuk_conv {
    const float *wc;
    float *const *conv;
    int slot, L;
};

// Per-token metadata of a batch on the device (one contiguous block, uploaded once per pass).
struct cuk_meta {
    int32_t *tok;            // [T] token ids
    int32_t *pos;            // [T] absolute positions
    int32_t *nctx;           // [T] context size of the token's sequence
    int32_t *rows;           // [n_logits] token rows whose logits are wanted
    float **kv;              // [T] the token's sequence KV block of this stage
    float **conv;            // [T] the token's sequence conv-state block of this stage
};

// X[t, :] = bf16 row tok[t] of E [V, D]  (kern_get_row).
void cuk_embed(const uint16_t *E, const int32_t *tok, int T, int D, float *X, cuk_stream s);
// Optionally x[r] += a[r] (a may be NULL), then out[r] = w * x[r] / rms(x[r]) (op_rmsnorm, op_add).
// rows: if non-NULL, output row r reads input row rows[r] (and then the add is applied to that
// row's copy only: x is left unchanged). w: f32 [n].
void cuk_add_rmsnorm(float *x, const float *a, const float *w, const int32_t *rows, int n_rows,
                     int n, float eps, float *out, cuk_stream s);
// x += a over n floats (op_add).
void cuk_add(float *x, const float *a, int64_t n, cuk_stream s);
// y[t, :] += bias (Llama biases).
void cuk_add_bias(float *y, const float *bias, int T, int n, cuk_stream s);
// Per head of each token: optional RMSNorm with w [hd] (NULL: none), then RoPE at pos[t]
// (interleaved: GPT-J pairs; else NeoX halves). x: [T, n_heads*hd] in place.
void cuk_norm_rope(float *x, int T, int n_heads, int hd, const float *w, float eps,
                   const int32_t *pos, const float *inv_freq, int interleaved, cuk_stream s);
// g = silu(g) * u over n floats (op_swiglu).
void cuk_swiglu(float *g, const float *u, int64_t n, cuk_stream s);
// LFM2 short conv (lfm2.c conv_block; more than CUK_CONV_SEQ_MAX_T tokens: parallel over
// tokens): z [T, 3D] = (B, C, xx); y [T, D]; wc f32 [D, K];
// the state of layer slot `slot` of token t's sequence is meta conv[t] + slot*D*(K-1); tokens
// sharing a state block are one sequence in token order (they need not be adjacent). K <= 9.
void cuk_shortconv(const float *z, int T, int D, int K, const float *wc, float *const *conv,
                   int slot, float *y, cuk_stream s);
// Stores k, v [T, kvd] into each token's cache of layer slot (op_kv_store). Cache layout per
// sequence block: [slot][2][nctx][kvd].
void cuk_kv_store(const float *k, const float *v, int T, int kvd, float *const *kv,
                  const int32_t *nctx, const int32_t *pos, int slot, cuk_stream s);
// Causal GQA attention of each token over positions 0..pos[t] of its cache (op_attention).
// q, out: [T, H*hd]; part: scratch of T*H*n_split*(hd+2) floats; n_split in [1, CUK_MAX_SPLIT].
// ticket: NULL (a second kernel merges the splits) or T*H counters, zero (left zero), with which
// the last split block of each (token, head) merges in the same launch.
void cuk_attention(const float *q, int T, int H, int KVH, int hd, float *const *kv,
                   const int32_t *nctx, const int32_t *pos, int slot, int n_split, float *part,
                   unsigned *ticket, float *out, cuk_stream s);
// The same with the head norm + RoPE + KV store of cuk_qkv_rope_store done inside (one launch
// fewer per attention layer), for passes of one token per sequence (T tokens of T different
// sequences): q heads come from the step's q|k|v rows (r->qkv, [T, (H + 2 KVH) hd]); the
// block whose split holds the token's own position takes that key and value from the rows too
// and, for the first q head of each kv head, stores them in the cache. Same arithmetic as
// cuk_qkv_rope_store + cuk_attention. ticket must be non-NULL.
struct cuk_rope {
    const float *qkv, *qn, *kn;   // q|k|v rows; optional head-norm weights
    float eps;
    const float *inv_freq;        // [hd / 2]
    int interleaved;              // RoPE pairs (2i, 2i + 1) instead of (i, i + hd / 2)
};
void cuk_attention_rope(const struct cuk_rope *r, int T, int H, int KVH, int hd,
                        float *const *kv, const int32_t *nctx, const int32_t *pos, int slot,
                        int n_split, float *part, unsigned *ticket, float *out, cuk_stream s);
// Y[t, r] = sum_c W[r, c] X[t, c] for T <= CUK_MV_MAX_TOK; W bf16 [N, K] (K % 8 == 0, 16-byte
// aligned rows), X f32 [T, K] (16-byte aligned), Y row stride ldy (kern_matmul_ref).
void cuk_matvec_bf16(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                     cuk_stream s);
// General form. mode CUK_MV_STORE: Y = W X; CUK_MV_ACC: Y += W X (residual add); CUK_MV_SWIGLU:
// rows come in pairs (2f gate, 2f + 1 up; N even) and Y[t, f] = silu(gate) * up. nw non-NULL:
// X is first RMS-normalized per token with weight nw [K] (op_rmsnorm; needs
// cuk_matvec_norm_fits(T, K)), token t reading X row rows[t] when rows is non-NULL.
void cuk_matvec(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                int mode, const float *nw, const int32_t *rows, float eps, cuk_stream s);
int cuk_matvec_norm_fits(int T, int K);
// in_proj product + LFM2 short conv in one launch: W [3D, D] (rows B, C, x), N = 3D; a warp
// computes rows i, D + i, 2D + i of channel i and then runs cuk_shortconv's decode loop for it
// (tokens in order, state updated in place): Y [T, D] (ldy) = cuk_shortconv(W X). Same
// prologue contract as cuk_matvec; T <= CUK_MV_MAX_TOK.
void cuk_matvec_conv(const uint16_t *W, int N, int K, const float *X, int T, float *Y, int64_t ldy,
                     const float *nw, const int32_t *rows, float eps, const struct cuk_conv *cv,
                     cuk_stream s);
// 4-bit affine weights kept quantized on the device (MLX q4, GGUF Q4_0 / Q4_1 / Q4_K repacked at
// upload by cuda_q4_pack_row): row r holds K / 8 uint32 code words in element order (element e
// in bits 4 (e % 8) of word e / 8, the MLX layout) and K / gs scale-bias pairs
// (sbk: CUK_SB_BF16 / CUK_SB_F16: one uint32, scale in the low half, bias in the high half;
// CUK_SB_F32: float2);
// w = scale * q + bias. K % 32 == 0, gs in {32, 64, 128}.
enum { CUK_SB_BF16 = 0, CUK_SB_F16 = 1, CUK_SB_F32 = 2 };
struct cuk_q4 {
    const uint32_t *q;
    const void *sb;
    int sbk, gs;
};
// cuk_matvec over 4-bit weights (same modes, prologue and contract; T <= CUK_MV_MAX_TOK).
void cuk_matvec_q4(const struct cuk_q4 *W, int N, int K, const float *X, int T, float *Y,
                   int64_t ldy, int mode, const float *nw, const int32_t *rows, float eps,
                   cuk_stream s);
// cuk_matvec_conv over 4-bit weights.
void cuk_matvec_q4_conv(const struct cuk_q4 *W, int N, int K, const float *X, int T, float *Y,
                        int64_t ldy, const float *nw, const int32_t *rows, float eps,
                        const struct cuk_conv *cv, cuk_stream s);
// Up to CUK_MV_Q8_MAX_TOK tokens (when cuk_matvec_q8_used(T, K)) the 4-bit matvec quantizes the
// (normalized) activations of each 32-element unit to two int8 levels: dd = amax / 32258,
// q1 = rint(x 127 / amax), q2 = rint((x - 254 dd q1) / dd) (the host twin in
// tests/cuda/test_cuda_kernels.c), and computes W x' for x' = dd (254 q1 + q2) with __dp4a: the
// exact product on those activations up to f32 summation order; |x - x'| <= dd / 2, about
// 1.5e-5 of the unit's largest element. cuk_set_q4_q8(0): f32 activations, for A/B and tests.
void cuk_set_q4_q8(int on);
int cuk_matvec_q8_used(int T, int K);
// Tail prefetch: the next matvec launch (bf16 or 4-bit) asks L2 for the first
// min(bytes, cuk_set_mv_prefetch cap) bytes of w once each warp has finished its rows (a hint:
// no effect on results). Consumed by that launch; w must live on the launch's device.
void cuk_mv_prefetch_next(const void *w, size_t bytes);
// Fused argmax: the next one-token product through the ring kernel (a single row of outputs,
// mode CUK_MV_STORE or CUK_MV_ACC) also writes the index of its largest output to *out, as
// cuk_argmax would (first maximum; NaN and -inf never chosen). st: 2 uint64 of device memory,
// zero before the first use (the kernel leaves them zero). Consumed by the next matvec call;
// cuk_mv_argmax_done() tells whether that call wrote *out (else call cuk_argmax).
void cuk_mv_argmax_next(unsigned long long *st, int32_t *out);
int cuk_mv_argmax_done(void);
// Drops the one-launch hints (tail prefetch, fused argmax) without a matvec call: for a
// product that takes another path (cuBLAS), so that no later product takes them.
void cuk_mv_hints_clear(void);
// bf16 / f32-activation matvec prologue: each warp loads its first weight chunks into registers
// before waiting on the previous kernel (default on); off: it only asks L2 for them (A/B). The
// integer-activation 4-bit kernel only asks L2 (its registers are its occupancy).
void cuk_set_mv_preload(int on);
// One-token matvecs with a fused RMSNorm stage their activations in one round where the shape
// allows (K <= 8 x threads, 16-byte aligned: each thread loads its 8-element word of x and of
// the norm weight, the block reduces, the word is scaled in registers); 0: the general loops
// (X read twice for integer activations, or staged and rescaled in shared memory; A/B).
void cuk_set_mv_stage1(int on);
// bf16 matvecs without a norm stage X in shared memory once per block (one round of 16-byte
// loads) when it fits CUK_MV_NORM_SMEM, instead of every warp reading it through L1 (1,
// default); 0: through L1 (A/B).
void cuk_set_mv_stage_x(int on);
// One token (T == 1) through the ring kernel for the weight types in the mask (default: 4-bit
// only): one block of 16 warps per SM (cuk_set_mv_ring_warps), each warp streaming its
// contiguous rows through shared-memory slots filled by bulk copies, the first ones before the
// PDL wait (bf16 any K % 8 == 0; 4-bit with integer activations and K % 1024 == 0); 0: the
// general kernels, for A/B and tests.
enum { CUK_RING_BF16 = 1, CUK_RING_Q4 = 2, CUK_RING_DEFAULT = CUK_RING_Q4 };
void cuk_set_mv_ring(int types);
// Ring kernel launches so far (tests: proof that the path ran).
unsigned long cuk_mv_ring_count(void);
// Products with more than n rows take the general kernels (n <= 0: CUK_RING_MAX_ROWS; since
// the eighth round every product, the 4-bit LM head included, takes the ring).
#define CUK_RING_MAX_ROWS (1 << 30)
void cuk_set_mv_ring_max_rows(int n);
// Ring geometry for A/B timing: bytes per chunk (1024-16384) and per warp's ring when it
// cannot keep to the pair share (2048-24576); out of range: the defaults.
void cuk_set_mv_ring_sizes(int chunk, int bytes);
// Warps per block of the ring kernel (one block per SM at a time, 4..16, default 16); the pair
// share: bytes of shared memory a ring block keeps to where its warps' rings allow, so that the
// next product's block fits beside it (0: default 130 KB; larger than an SM's: deeper rings).
void cuk_set_mv_ring_warps(int n);
void cuk_set_mv_ring_pair(int bytes);
// Preferred shared-memory carveout (percent) of every kernel launched from now on; default 100
// (the ring kernel needs it, and one setting for all kernels spares the SMs reconfiguring
// between kernels: H100, batch 1, 1.2B bf16 808-814 -> 827-836 tok/s, MLX q4 + ring 1025-1028
// -> 1131-1133); -1: the driver's choice per kernel, for A/B timing.
void cuk_set_carveout(int pct);
// Cap of the tail prefetch in bytes (default 0: off; measured no gain on H100 at 4-16 MiB).
void cuk_set_mv_prefetch(size_t bytes);
// X[t, :] = row tok[t] of 4-bit E [V, D] (kern_get_row); D % 32 == 0.
void cuk_embed_q4(const struct cuk_q4 *E, const int32_t *tok, int T, int D, float *X, cuk_stream s);
// hi [n, K] = bf16(rows r0 .. r0 + n of W) (round to nearest even) and, when lo is non-NULL,
// lo = bf16(W - hi) (hi + lo: ~16 mantissa bits), for cuBLAS products.
void cuk_q4_to_bf16(const struct cuk_q4 *W, int K, int64_t r0, int64_t n, uint16_t *hi,
                    uint16_t *lo, cuk_stream s);
// bf16 matvec through the previous kernel (one row slice per warp, block barrier per row
// group), for A/B timing; default off.
void cuk_set_mv_old(int on);
// qkv: [T, (H + 2 KVH) hd] (q heads, k heads, v heads). q heads: optional RMSNorm (qn) + RoPE into
// q [T, H hd]; k heads: optional RMSNorm (kn) + RoPE, stored in the cache; v heads stored
// (op_rmsnorm + op_rope_* + op_kv_store in one launch).
void cuk_qkv_rope_store(const float *qkv, int T, int H, int KVH, int hd, const float *qn,
                        const float *kn, float eps, const int32_t *pos, const float *inv_freq,
                        int interleaved, float *const *kv, const int32_t *nctx, int slot, float *q,
                        cuk_stream s);
// out[t, f] = silu(gu[t, 2f]) * gu[t, 2f + 1]; gu: [T, 2F] row-interleaved gate/up (op_swiglu).
void cuk_swiglu_pair(const float *gu, int T, int F, float *out, cuk_stream s);
// out[r] = index of the first maximum of x[r, 0..V) (greedy), 0 when no element is > -inf.
void cuk_argmax(const float *x, int n_rows, int V, int32_t *out, cuk_stream s);
// Forget which kernels had their function attributes set (shared memory, carveout): call after
// a device reset, which drops them.
void cuk_forget_attributes(void);
// Programmatic dependent launch for every launcher (default on); off: plain launches.
void cuk_set_pdl(int on);
// Matrix-vector grid: at most this many blocks per SM (0: as many as fit; fewer leave room for
// the next kernel's blocks to start and prefetch their weights under PDL).
void cuk_set_mv_blocks(int per_sm);
// out[t, i] = silu(gu[t, i]) * gu[t, F + i]; gu: [T, 2F] (gate | up), out: [T, F] (op_swiglu).
void cuk_swiglu_cat(const float *gu, int T, int F, float *out, cuk_stream s);
// Y[t, n] (row stride ldy) = C[t, n] + C[T + t, n] for C [2T, N] (hi + lo halves of a product);
// accum: added to Y instead.
void cuk_add_halves(const float *C, int T, int N, float *Y, int64_t ldy, int accum, cuk_stream s);
// Xb = bf16(X) over n floats (round to nearest even), for cuBLAS products.
void cuk_to_bf16(const float *X, int64_t n, uint16_t *Xb, cuk_stream s);
// hi = bf16(X), lo = bf16(X - hi) (lo = 0 where X is not finite).
void cuk_to_bf16_split(const float *X, int64_t n, uint16_t *hi, uint16_t *lo, cuk_stream s);
// Picks the attention split count for T tokens of H heads on a GPU of n_sm multiprocessors.
int cuk_attn_splits(int T, int H, int n_sm);
// Rows per warp of the 4-bit matvec (1, 2 or 4; 0: by shape), for A/B timing.
void cuk_set_q4_rows(int r);
// Fixes the split count (1 .. CUK_MAX_SPLIT; 0: by shape again), for A/B timing.
void cuk_set_attn_splits(int n);
// In one-token steps (cuk_attention_rope) each attention split covers at least n positions (0:
// the default, 16; 1: the context spread over every split, as cuk_attention does).
void cuk_set_attn_min_chunk(int n);
// Positions per warp whose key and value rows k_attention loads before updating (0: default
// ATT_ROUND, fewer for wide heads; 1: one position at a time, as before the ninth round; A/B).
void cuk_set_attn_round(int n);
// Dependency probe (lfmd-cuda-bench --probe): one launch of 2 blocks per SM that waits on the
// previous kernel; stage 0: nothing else, 1: every block stages RMSNorm(x [K <= 8192]), 2: also
// streams wbytes of w (16-byte aligned) across the grid. y: 2 x SMs floats.
void cuk_probe(const float *x, int K, const void *w, int64_t wbytes, float *y, int stage,
               cuk_stream s);
// Step trace (built with -DLFMD_CUDA_TRACE=ON; lfmd-cuda-bench with LFMD_CUDA_TRACE=1, else
// cuk_trace returns -1 for a non-NULL d): d non-NULL: device buffer of
// 1 + CUK_TRACE_MAX uint64 (d[0] zeroed by the caller): every kernel's thread 0 of block 0
// appends the global timer (ns) when its wait on the previous kernel returns; NULL: off.
// note_launches: from now on every launch (or graph capture) is noted on the host, in order
// (cuk_trace_kernels; the list restarts). Returns 0, or -1 on a CUDA error.
#define CUK_TRACE_MAX 65536
#define CUK_TRACE_MAX_KERNELS 1024
struct cuk_trace_kernel {
    const char *name;   // cudaFuncGetName (mangled)
    int grid[3], block;
};
int cuk_trace(unsigned long long *d, int note_launches);
int cuk_trace_kernels(const struct cuk_trace_kernel **k);

#ifdef __cplusplus
}
#endif

#endif
