// Llama-family forward pass (Llama 1-3, TinyLlama, SmolLM, Mistral, Qwen2-style biases):
//   h = E[tok]; per layer: h += Attn(RMSNorm(h)); h += SwiGLU(RMSNorm(h)); logits = W_out RMSNorm(h)
// GQA attention with NeoX (split-half) RoPE on Hugging Face-layout weights, optional q/k/v biases,
// Llama 3 rope scaling (in model.c's inverse frequencies). Shares every op with lfm2.c.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/alloc.h"

#include <stdio.h>

struct llama_layer {
    const struct tensor *attn_norm, *ffn_norm;   // [n_embd]
    const struct tensor *q, *k, *v;              // [n_head*hd | n_kv_head*hd, n_embd]
    const struct tensor *q_b, *k_b, *v_b, *o_b;  // biases or NULL (Llama: q,k,v,o; Qwen2: q,k,v)
    const struct tensor *o;                      // [n_embd, n_head*hd]
    const struct tensor *gate, *up;              // [n_ff, n_embd]
    const struct tensor *down;                   // [n_embd, n_ff]
};

struct llama_weights {
    const struct tensor *embed, *norm, *lm_head;
    struct llama_layer layers[];
};

static int llama_bind(struct model *m, struct lfmd_err_ctx *err) {
    const struct model_config *c = &m->cfg;
    int64_t D = c->n_embd, F = c->n_ff, V = c->n_vocab, hd = c->head_dim;
    int64_t qd = (int64_t)c->n_head * hd, kvd = (int64_t)c->n_kv_head * hd;
    struct llama_weights *w = lfmd_calloc(1, sizeof *w + (size_t)c->n_layer * sizeof w->layers[0],
                                          LFMD_MEM_OTHER);
    if (!w) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    m->w = w;
    int64_t s_vd[2] = {V, D}, s_d[1] = {D};
    int rc;
    if ((rc = model_need(m, "model.embed_tokens.weight", 2, s_vd, &w->embed, err)) ||
        (rc = model_need(m, "model.norm.weight", 1, s_d, &w->norm, err)))
        return rc;
    w->lm_head = w->embed;
    if (!c->tied_embeddings && (rc = model_need(m, "lm_head.weight", 2, s_vd, &w->lm_head, err)))
        return rc;
    char n[160];
#define P(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
    for (int l = 0; l < c->n_layer; l++) {
        struct llama_layer *L = &w->layers[l];
        int64_t s_q[2] = {qd, D}, s_kv[2] = {kvd, D}, s_o[2] = {D, qd}, s_f[2] = {F, D}, s_dn[2] = {D, F};
        if ((rc = model_need(m, P("input_layernorm.weight"), 1, s_d, &L->attn_norm, err)) ||
            (rc = model_need(m, P("post_attention_layernorm.weight"), 1, s_d, &L->ffn_norm, err)) ||
            (rc = model_need(m, P("self_attn.q_proj.weight"), 2, s_q, &L->q, err)) ||
            (rc = model_need(m, P("self_attn.k_proj.weight"), 2, s_kv, &L->k, err)) ||
            (rc = model_need(m, P("self_attn.v_proj.weight"), 2, s_kv, &L->v, err)) ||
            (rc = model_need(m, P("self_attn.o_proj.weight"), 2, s_o, &L->o, err)) ||
            (rc = model_need(m, P("mlp.gate_proj.weight"), 2, s_f, &L->gate, err)) ||
            (rc = model_need(m, P("mlp.up_proj.weight"), 2, s_f, &L->up, err)) ||
            (rc = model_need(m, P("mlp.down_proj.weight"), 2, s_dn, &L->down, err)))
            return rc;
        if (m->llama.attn_bias &&
            ((rc = model_need(m, P("self_attn.q_proj.bias"), 1, &qd, &L->q_b, err)) ||
             (rc = model_need(m, P("self_attn.k_proj.bias"), 1, &kvd, &L->k_b, err)) ||
             (rc = model_need(m, P("self_attn.v_proj.bias"), 1, &kvd, &L->v_b, err))))
            return rc;
        if (m->llama.attn_bias && model_find(m, P("self_attn.o_proj.bias")) &&
            (rc = model_need(m, n, 1, &D, &L->o_b, err)))
            return rc;
    }
#undef P
    return 0;
}

static void add_bias(const struct tensor *bias, float *tmp, float *y, int T, size_t n) {
    if (!bias) return;
    op_vec_f32(bias, tmp);
    for (int t = 0; t < T; t++) op_add(y + (size_t)t * n, tmp, n);
}

static void attn_block(struct runner *r, const struct batch *b, const struct llama_layer *L, int li) {
    const struct model_config *c = &r->m->cfg;
    int T = b->n_tok, hd = c->head_dim;
    size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd;
    float *q = r->a, *k = r->b, *v = r->b + (size_t)T * kvd, *tmp = r->vecs;
    const struct tensor *Wqkv[3] = {L->q, L->k, L->v};
    float *Yqkv[3] = {q, k, v};
    const int64_t ld[3] = {(int64_t)qd, (int64_t)kvd, (int64_t)kvd};
    op_matmul_multi(r, 3, Wqkv, r->xn, T, Yqkv, ld);
    add_bias(L->q_b, tmp, q, T, qd);
    add_bias(L->k_b, tmp, k, T, kvd);
    add_bias(L->v_b, tmp, v, T, kvd);
    void (*rope)(float *, int, int, int, const float *) =
        r->m->llama.rope_interleaved ? op_rope_interleaved : op_rope_neox;
    for (int t = 0; t < T; t++) {
        rope(q + (size_t)t * qd, c->n_head, hd, b->pos[t], r->m->rope_inv_freq);
        rope(k + (size_t)t * kvd, c->n_kv_head, hd, b->pos[t], r->m->rope_inv_freq);
    }
    op_kv_store(b, li, k, v);
    op_attention(r, b, li, q, r->c);
    op_matmul(r, L->o, r->c, T, r->a, c->n_embd);
    add_bias(L->o_b, tmp, r->a, T, (size_t)c->n_embd);
}

static void llama_forward(struct runner *r, const struct batch *b, float *logits) {
    const struct model_config *c = &r->m->cfg;
    const struct llama_weights *w = r->m->w;
    int T = b->n_tok, D = c->n_embd;
    float *wn = r->vecs + (size_t)D * (c->conv_L + 3);
    for (int t = 0; t < T; t++) kern_get_row(w->embed, b->tokens[t], r->x + (size_t)t * D);
    for (int l = 0; l < c->n_layer; l++) {
        const struct llama_layer *L = &w->layers[l];
        op_vec_f32(L->attn_norm, wn);
        op_rmsnorm(r->x, wn, T, D, D, c->norm_eps, r->xn, D);
        attn_block(r, b, L, l);
        op_add(r->x, r->a, (size_t)T * D);
        op_vec_f32(L->ffn_norm, wn);
        op_rmsnorm(r->x, wn, T, D, D, c->norm_eps, r->xn, D);
        const struct tensor *W[2] = {L->gate, L->up};
        float *Y[2] = {r->a, r->b};
        const int64_t ld[2] = {c->n_ff, c->n_ff};
        op_matmul_multi(r, 2, W, r->xn, T, Y, ld);
        op_swiglu(r, r->a, r->b, (size_t)T * c->n_ff);
        op_matmul(r, L->down, r->a, T, r->c, D);
        op_add(r->x, r->c, (size_t)T * D);
    }
    if (!logits || !b->n_logits) return;
    op_vec_f32(w->norm, wn);
    for (int i = 0; i < b->n_logits; i++)
        op_rmsnorm(r->x + (size_t)b->logit_rows[i] * D, wn, 1, D, D, c->norm_eps, r->xn + (size_t)i * D, D);
    op_matmul(r, w->lm_head, r->xn, b->n_logits, logits, c->n_vocab);
}

const struct arch_ops llama_ops = {.name = "llama", .bind = llama_bind, .forward = llama_forward};
