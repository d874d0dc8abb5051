// The persistent batch-1 decode kernel (persist.cu): one launch runs a whole LFM2 decode step of
// one token (embedding -> layers -> final norm -> lm_head -> argmax) as a list of phases
// separated by grid-wide barriers. The host (backend.c) fills the phase table once per runner;
// the kernel reads per-step data (token, position, KV and conv state) from the runner's
// metadata block.
// Invariants: the grid is exactly the co-resident blocks (cooperative launch); every warp streams
// its static share of each product's weights through its own ring of shared-memory slots (bulk
// copies, PK_DEPTH deep) that runs ahead across phase boundaries; the barrier and ticket counters
// in `sync` are zero between launches (the last block resets them).
// SPDX-License-Identifier: MIT
#ifndef LFMD_CUDA_PERSIST_H
#define LFMD_CUDA_PERSIST_H

#include "kernels.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PK_WARPS 8          // warps per block (one block per SM)
#define PK_DEPTH 3          // ring slots per warp
#define PK_SLOT 8192        // bytes per slot (one chunk of a warp's weight rows)
#define PK_XS_BYTES 32768   // staged activations: f32 [K] or int8 levels [K / 8] x 24 bytes
#define PK_MAXR 8           // weight rows per chunk
#define PK_MAXCH 64         // attention: position chunks per head (more positions: longer chunks)
#define PK_SYNC_WORDS 256   // sync[0] barrier, [1] done ticket, [2 + h] attention tickets

enum { PK_MV = 0, PK_ATTN = 1 };
// pk_args.dbg bits (A/B timing only): relaxed grid barrier; no async-proxy fence before a slot
// is refilled; weights streamed only (no barrier, staging, products or attention: the result is
// garbage, the time is the ring's streaming time); bulk copies without the L2 evict-first hint;
// chunks copied by every lane with 16-byte cp.async instead of bulk copies; no products (the
// chunks are waited for and dropped; everything else runs).
enum {
    PK_DBG_BAR = 1,
    PK_DBG_NOFENCE = 2,
    PK_DBG_STREAM = 4,
    PK_DBG_NOHINT = 8,
    PK_DBG_CPA = 16,
    PK_DBG_NOMV = 32
};
enum { PK_IN_X = 0, PK_IN_EMB = 1 };   // product input: f32 vector x, or the token's embedding row

// One phase of the step. PK_MV: y (by mode, CUK_MV_*) = W RMSNorm?(input); PK_ATTN: attention of
// the current token over its sequence (x: the q|k|v product [H + 2 KVH][hd]; q and k heads are
// RMS-normalized (qn, kn) and rotated here, k and v stored at the position; y: [H hd]).
struct pk_phase {
    int kind, mode, q4, lm;   // lm: the lm_head (argmax of y when the launch is greedy)
    int in;                   // PK_IN_*
    int N, K;                 // W [N, K] (bf16, or 4-bit: struct cuk_q4 layout)
    int sbk, gs;              // 4-bit scale-bias kind and group size
    const void *w, *sb;       // bf16 rows or 4-bit code words; 4-bit scale-bias pairs
    const float *x, *nw;      // input [K] (in == PK_IN_X); RMSNorm weight [K] or NULL
    float *y;                 // output
    const float *convw;       // CUK_MV_CONV: f32 [N / 3][conv_L]
    int slot;                 // conv-state or KV slot of the layer
    const float *qn, *kn;     // PK_ATTN: head norm weights [hd]
    // filled by cuk_persist_geom: a unit is 1 row (2 for SwiGLU pairs, 3 for B, C, x of a conv
    // channel); a chunk is upc units (whole rows) or, with ks > 1, one of ks K-slices of a unit
    int units, rpu, nseg, ks, upc, sbrow;
};

struct pk_args {
    const struct pk_phase *ph;   // device table
    int n_ph;                    // phases run (the table's last one, the lm_head, may be left out)
    const int32_t *tok, *pos, *nctx;   // runner metadata (token 0 only)
    float *const *kv;
    float *const *conv;
    const void *emb_w, *emb_sb;   // embedding [n_vocab, D]: bf16 or 4-bit
    int emb_q4, emb_sbk, emb_gs;
    float *x;   // residual stream [D] (block 0 stores the embedding row in it)
    int D, H, KVH, hd, conv_L;
    float eps;
    const float *inv_freq;   // [hd / 2]
    float *part;             // attention partials [H][PK_MAXCH][hd + 2]
    unsigned *sync;          // [PK_SYNC_WORDS], zero between launches
    float *cand_v;           // [grid] per-block argmax candidates
    int *cand_i;
    int32_t *amax;   // greedy token
    int greedy;
    int dbg;                     // PK_DBG_* bits
    int pf;                      // chunks each warp asks L2 for ahead of its ring (0: none)
    unsigned long long *trace;   // NULL, or [n_ph][grid][8] per phase and block: globaltimer ns
                                 // at start (barrier passed), input staged, done (arrived), the
                                 // longest time one of its warps waited for chunks (ns); warp 0's
                                 // cycles waiting, in products, refilling, in epilogues
};

// Fills the chunk geometry of an PK_MV phase (units .. sbrow) from mode, q4, N, K, sbk, gs.
// Returns 0, or -1 when the phase cannot run in the persistent kernel.
int cuk_persist_geom(struct pk_phase *p);
// Blocks of the persistent grid on the current device (co-resident: blocks per SM x SMs), after
// raising the kernel's shared-memory limit; 0 when the device cannot run it (before sm_90, or the
// shared memory does not fit).
int cuk_persist_grid(void);
// Launches one step (cooperative launch of `grid` blocks). Returns the launch's cudaError_t.
int cuk_persist_launch(const struct pk_args *a, int grid, cuk_stream s);

#ifdef __cplusplus
}
#endif

#endif
