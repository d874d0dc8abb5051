// LFM2 (Liquid AI) forward pass, as specified in docs/lfm2-spec.md §2:
//   h = E[tok]; per layer: h += (attn | shortconv)(RMSNorm(h)); h += SwiGLU(RMSNorm(h));
//   logits = E · RMSNorm_final(h)   (lm_head tied to E unless the checkpoint ships one)
// One function per block; every buffer is runner scratch (no allocation here).
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/alloc.h"

#include <stdio.h>
#include <string.h>

struct lfm2_layer {
    const struct tensor *op_norm, *ffn_norm;     // [n_embd]
    const struct tensor *w1, *w3;                // [n_ff, n_embd]   gate, up
    const struct tensor *w2;                     // [n_embd, n_ff]   down
    const struct tensor *in_proj;                // [3*n_embd, n_embd]        conv layers
    const struct tensor *conv;                   // [n_embd, 1, conv_L]
    const struct tensor *conv_out;               // [n_embd, n_embd]
    const struct tensor *q, *k, *v;              // [n_head*hd | n_kv_head*hd, n_embd]  attn layers
    const struct tensor *o;                      // [n_embd, n_head*hd]
    const struct tensor *q_norm, *k_norm;        // [head_dim]
    int slot;                                    // index among attn layers (KV) or conv layers
};

struct lfm2_weights {
    const struct tensor *embed;                  // [n_vocab, n_embd]
    const struct tensor *final_norm;             // [n_embd]  ("embedding_norm", applied last)
    const struct tensor *lm_head;                // [n_vocab, n_embd] (== embed when tied)
    struct lfm2_layer layers[];
};

static int need2(const struct model *m, const char *name, int64_t a, int64_t b, const struct tensor **out,
                 struct lfmd_err_ctx *err) {
    int64_t s[2] = {a, b};
    return model_need(m, name, 2, s, out, err);
}
static int need1(const struct model *m, const char *name, int64_t a, const struct tensor **out,
                 struct lfmd_err_ctx *err) {
    return model_need(m, name, 1, &a, out, err);
}

static int lfm2_bind(struct model *m, struct lfmd_err_ctx *err) {
    const struct model_config *c = &m->cfg;
    int64_t D = c->n_embd, F = c->n_ff, V = c->n_vocab, hd = c->head_dim;
    int64_t qd = (int64_t)c->n_head * hd, kvd = (int64_t)c->n_kv_head * hd;
    struct lfm2_weights *w = lfmd_calloc(1, sizeof *w + (size_t)c->n_layer * sizeof w->layers[0],
                                         LFMD_MEM_OTHER);
    if (!w) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    m->w = w;
    int rc;
    if ((rc = need2(m, "model.embed_tokens.weight", V, D, &w->embed, err)) ||
        (rc = need1(m, "model.embedding_norm.weight", D, &w->final_norm, err)))
        return rc;
    w->lm_head = w->embed;
    if (!c->tied_embeddings && (rc = need2(m, "lm_head.weight", V, D, &w->lm_head, err))) return rc;
    char n[160];
    int n_attn = 0, n_conv = 0;
#define P(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
    for (int l = 0; l < c->n_layer; l++) {
        struct lfm2_layer *L = &w->layers[l];
        if ((rc = need1(m, P("operator_norm.weight"), D, &L->op_norm, err)) ||
            (rc = need1(m, P("ffn_norm.weight"), D, &L->ffn_norm, err)) ||
            (rc = need2(m, P("feed_forward.w1.weight"), F, D, &L->w1, err)) ||
            (rc = need2(m, P("feed_forward.w3.weight"), F, D, &L->w3, err)) ||
            (rc = need2(m, P("feed_forward.w2.weight"), D, F, &L->w2, err)))
            return rc;
        if (c->is_attn[l]) {
            L->slot = n_attn++;
            if ((rc = need2(m, P("self_attn.q_proj.weight"), qd, D, &L->q, err)) ||
                (rc = need2(m, P("self_attn.k_proj.weight"), kvd, D, &L->k, err)) ||
                (rc = need2(m, P("self_attn.v_proj.weight"), kvd, D, &L->v, err)) ||
                (rc = need2(m, P("self_attn.out_proj.weight"), D, qd, &L->o, err)) ||
                (rc = need1(m, P("self_attn.q_layernorm.weight"), hd, &L->q_norm, err)) ||
                (rc = need1(m, P("self_attn.k_layernorm.weight"), hd, &L->k_norm, err)))
                return rc;
        } else {
            int64_t cs[3] = {D, 1, c->conv_L};
            L->slot = n_conv++;
            if ((rc = need2(m, P("conv.in_proj.weight"), 3 * D, D, &L->in_proj, err)) ||
                (rc = model_need(m, P("conv.conv.weight"), 3, cs, &L->conv, err)) ||
                (rc = need2(m, P("conv.out_proj.weight"), D, D, &L->conv_out, err)))
                return rc;
            if (L->conv->dtype > LFMD_DTYPE_BF16)
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: conv kernel '%s' must be f32/f16/bf16", m->path, n);
        }
    }
#undef P
    return 0;
}

// Attention block: q/k/v projections, per-head QK RMSNorm, NeoX RoPE, cache, causal GQA, out proj.
// In: r->xn [T, D]. Out: r->a [T, D].
static void attn_block(struct runner *r, const struct batch *b, const struct lfm2_layer *L) {
    const struct model_config *c = &r->m->cfg;
    int T = b->n_tok, hd = c->head_dim;
    size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd;
    float *q = r->a, *k = r->b, *v = r->b + (size_t)T * kvd;   // [T, qd], [T, kvd], [T, kvd]
    float *qn = r->vecs, *kn = r->vecs + hd;
    const struct tensor *Wqkv[3] = {L->q, L->k, L->v};
    float *Yqkv[3] = {q, k, v};
    const int64_t ld[3] = {(int64_t)qd, (int64_t)kvd, (int64_t)kvd};
    op_matmul_multi(r, 3, Wqkv, r->xn, T, Yqkv, ld);
    op_vec_f32(L->q_norm, qn);
    op_vec_f32(L->k_norm, kn);
    for (int t = 0; t < T; t++) {
        float *qt = q + (size_t)t * qd, *kt = k + (size_t)t * kvd;
        op_rmsnorm(qt, qn, c->n_head, hd, hd, c->norm_eps, qt, hd);
        op_rmsnorm(kt, kn, c->n_kv_head, hd, hd, c->norm_eps, kt, hd);
        op_rope_neox(qt, c->n_head, hd, b->pos[t], r->m->rope_inv_freq);
        op_rope_neox(kt, c->n_kv_head, hd, b->pos[t], r->m->rope_inv_freq);
    }
    op_kv_store(b, L->slot, k, v);
    op_attention(r, b, L->slot, q, r->c);                     // r->c: [T, qd]
    op_matmul(r, L->o, r->c, T, r->a, c->n_embd);
}

// Short-conv block (double-gated LIV conv): z = in_proj x; B, C, xx = chunks; Bx = B*xx;
// c_t = sum_j W[:, j] * [state | Bx][t + j]; y = C * c; out = out_proj y. In r->xn, out r->a.
static void conv_block(struct runner *r, const struct batch *b, const struct lfm2_layer *L) {
    const struct model_config *c = &r->m->cfg;
    int T = b->n_tok, D = c->n_embd, K = c->conv_L, H = K - 1;
    float *z = r->a;                                           // [T, 3D]
    float *wc = r->vecs + 2 * (size_t)D;                       // [D, K]
    op_matmul(r, L->in_proj, r->xn, T, z, 3 * (int64_t)D);
    op_vec_f32(L->conv, wc);
    for (int t = 0; t < T; t++) {
        const float *B = z + (size_t)t * 3 * D, *C = B + D, *xx = B + 2 * D;
        float *st = b->seq[t]->conv + (size_t)L->slot * D * H; // [D, K-1], oldest first
        float *y = r->c + (size_t)t * D;
        for (int k = 0; k < D; k++) {
            float bx = B[k] * xx[k];
            const float *wk = wc + (size_t)k * K;
            float *sk = st + (size_t)k * H;
            float acc = wk[H] * bx;
            for (int j = 0; j < H; j++) acc += wk[j] * sk[j];
            for (int j = 0; j + 1 < H; j++) sk[j] = sk[j + 1];
            if (H > 0) sk[H - 1] = bx;
            y[k] = C[k] * acc;
        }
    }
    op_matmul(r, L->conv_out, r->c, T, r->a, D);
}

// SwiGLU FFN: out = w2 (silu(w1 x) * (w3 x)). In r->xn, out r->c [T, D].
static void ffn_block(struct runner *r, int T, const struct lfm2_layer *L) {
    const struct model_config *c = &r->m->cfg;
    const struct tensor *W[2] = {L->w1, L->w3};
    float *Y[2] = {r->a, r->b};
    const int64_t ld[2] = {c->n_ff, c->n_ff};
    op_matmul_multi(r, 2, W, r->xn, T, Y, ld);
    op_swiglu(r, r->a, r->b, (size_t)T * c->n_ff);
    op_matmul(r, L->w2, r->a, T, r->c, c->n_embd);
}

static void lfm2_forward(struct runner *r, const struct batch *b, float *logits) {
    const struct model *m = r->m;
    const struct model_config *c = &m->cfg;
    const struct lfm2_weights *w = m->w;
    int T = b->n_tok, D = c->n_embd;
    float *wn = r->vecs + 2 * (size_t)c->head_dim + (size_t)D * (c->conv_L + 2); // [D] norm weight
    for (int t = 0; t < T; t++) kern_get_row(w->embed, b->tokens[t], r->x + (size_t)t * D);
    for (int l = 0; l < c->n_layer; l++) {
        const struct lfm2_layer *L = &w->layers[l];
        op_vec_f32(L->op_norm, wn);
        op_rmsnorm(r->x, wn, T, D, D, c->norm_eps, r->xn, D);
        if (c->is_attn[l]) attn_block(r, b, L);
        else conv_block(r, b, L);
        op_add(r->x, r->a, (size_t)T * D);
        op_vec_f32(L->ffn_norm, wn);
        op_rmsnorm(r->x, wn, T, D, D, c->norm_eps, r->xn, D);
        ffn_block(r, T, L);
        op_add(r->x, r->c, (size_t)T * D);
    }
    if (!logits || !b->n_logits) return;
    op_vec_f32(w->final_norm, wn);
    for (int i = 0; i < b->n_logits; i++)
        op_rmsnorm(r->x + (size_t)b->logit_rows[i] * D, wn, 1, D, D, c->norm_eps, r->xn + (size_t)i * D, D);
    op_matmul(r, w->lm_head, r->xn, b->n_logits, logits, c->n_vocab);
}

const struct arch_ops lfm2_ops = {.name = "lfm2", .bind = lfm2_bind, .forward = lfm2_forward};
