// Opening a .gguf model: metadata -> struct model_config (arch lfm2 or llama, keys as llama.cpp
// writes them, see docs/lfm2-spec.md §4), tensor infos -> tensor views renamed to Hugging Face
// names with shapes in HF order (reversed ggml ne), so lfm2.c / llama.c bind them unchanged.
// Bytes are used in place from the mapping; nothing is copied or converted.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/alloc.h"
#include "format/gguf.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

// ggml type -> lfmd dtype; false when lfmd has no kernels for it.
static bool dtype_of(uint32_t t, enum lfmd_dtype *d) {
    switch (t) {
    case GGML_T_F32: *d = LFMD_DTYPE_F32; return true;
    case GGML_T_F16: *d = LFMD_DTYPE_F16; return true;
    case GGML_T_BF16: *d = LFMD_DTYPE_BF16; return true;
    case GGML_T_Q8_0: *d = LFMD_DTYPE_Q8_0; return true;
    case GGML_T_Q4_0: *d = LFMD_DTYPE_Q4_0; return true;
    case GGML_T_Q4_1: *d = LFMD_DTYPE_Q4_1; return true;
    case GGML_T_Q4_K: *d = LFMD_DTYPE_Q4_K; return true;
    case GGML_T_Q5_K: *d = LFMD_DTYPE_Q5_K; return true;
    case GGML_T_Q6_K: *d = LFMD_DTYPE_Q6_K; return true;
    default: return false;
    }
}

struct name_map {
    const char *gguf;   // suffix after "blk.N." (or the whole name for globals)
    const char *hf;     // suffix after "model.layers.N."
};

static const struct name_map lfm2_globals[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"token_embd_norm.weight", "model.embedding_norm.weight"},
    {"output_norm.weight", "model.embedding_norm.weight"},
    {"output.weight", "lm_head.weight"},
};
static const struct name_map lfm2_layer[] = {
    {"attn_norm.weight", "operator_norm.weight"},
    {"ffn_norm.weight", "ffn_norm.weight"},
    {"ffn_gate.weight", "feed_forward.w1.weight"},
    {"ffn_up.weight", "feed_forward.w3.weight"},
    {"ffn_down.weight", "feed_forward.w2.weight"},
    {"shortconv.in_proj.weight", "conv.in_proj.weight"},
    {"shortconv.conv.weight", "conv.conv.weight"},
    {"shortconv.out_proj.weight", "conv.out_proj.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.out_proj.weight"},
    {"attn_q_norm.weight", "self_attn.q_layernorm.weight"},
    {"attn_k_norm.weight", "self_attn.k_layernorm.weight"},
};
static const struct name_map llama_globals[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
static const struct name_map llama_layer[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_output.bias", "self_attn.o_proj.bias"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

// Writes the HF name of GGUF tensor `name` into out (the GGUF name itself when unmapped).
static void hf_name(enum model_arch arch, const char *name, char *out, size_t cap) {
    const struct name_map *g = arch == MODEL_ARCH_LFM2 ? lfm2_globals : llama_globals;
    size_t ng = arch == MODEL_ARCH_LFM2 ? COUNT(lfm2_globals) : COUNT(llama_globals);
    const struct name_map *l = arch == MODEL_ARCH_LFM2 ? lfm2_layer : llama_layer;
    size_t nl = arch == MODEL_ARCH_LFM2 ? COUNT(lfm2_layer) : COUNT(llama_layer);
    for (size_t i = 0; i < ng; i++)
        if (!strcmp(name, g[i].gguf)) {
            snprintf(out, cap, "%s", g[i].hf);
            return;
        }
    unsigned layer;
    int used = 0;
    if (sscanf(name, "blk.%u.%n", &layer, &used) == 1 && used > 0) {
        for (size_t i = 0; i < nl; i++)
            if (!strcmp(name + used, l[i].gguf)) {
                snprintf(out, cap, "model.layers.%u.%s", layer, l[i].hf);
                return;
            }
    }
    snprintf(out, cap, "%s", name);
}

// Reads an integer key into *v with range [lo, hi]; absent -> def (or error if required).
static int get_int(const struct gguf *g, const char *key, bool required, int64_t lo, int64_t hi, int def,
                   int *v, struct lfmd_err_ctx *err) {
    int64_t x;
    struct lfmd_err_ctx e = {0};
    int rc = gguf_get_i64(g, key, &x, &e);
    if (rc == LFMD_ENOENT && !required) {
        *v = def;
        return 0;
    }
    if (rc) return lfmd_err_set(err, rc == LFMD_ENOENT ? LFMD_EFORMAT : rc, "%s", e.msg);
    if (x < lo || x > hi)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata '%s' = %lld is outside [%lld, %lld]", g->path,
                            key, (long long)x, (long long)lo, (long long)hi);
    *v = (int)x;
    return 0;
}

static int get_float(const struct gguf *g, const char *key, bool required, double def, float *v,
                     struct lfmd_err_ctx *err) {
    double x;
    struct lfmd_err_ctx e = {0};
    int rc = gguf_get_f64(g, key, &x, &e);
    if (rc == LFMD_ENOENT && !required) {
        *v = (float)def;
        return 0;
    }
    if (rc) return lfmd_err_set(err, rc == LFMD_ENOENT ? LFMD_EFORMAT : rc, "%s", e.msg);
    if (!(x > 0) || x > 1e30)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata '%s' = %g must be positive", g->path, key, x);
    *v = (float)x;
    return 0;
}

static int fill_config(struct model *m, const struct gguf *g, const char *arch, struct lfmd_err_ctx *err) {
    struct model_config *c = &m->cfg;
    char k[128];
    int rc;
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    if ((rc = get_int(g, KEY("block_count"), true, 1, LFMD_MAX_LAYERS, 0, &c->n_layer, err)) ||
        (rc = get_int(g, KEY("embedding_length"), true, 1, LFMD_MAX_DIM, 0, &c->n_embd, err)) ||
        (rc = get_int(g, KEY("attention.head_count"), true, 1, 4096, 0, &c->n_head, err)) ||
        (rc = get_int(g, KEY("context_length"), false, 1, INT32_MAX, 2048, &c->max_pos, err)) ||
        (rc = get_float(g, KEY("attention.layer_norm_rms_epsilon"), true, 0, &c->norm_eps, err)) ||
        (rc = get_float(g, KEY("rope.freq_base"), false, c->arch == MODEL_ARCH_LFM2 ? 1e6 : 1e4,
                        &c->rope_theta, err)))
        return rc;
    if (c->n_embd % c->n_head)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: embedding_length %d is not a multiple of head_count %d",
                            g->path, c->n_embd, c->n_head);
    if ((rc = get_int(g, KEY("attention.key_length"), false, 2, 4096, c->n_embd / c->n_head, &c->head_dim,
                      err)))
        return rc;
    if (c->arch == MODEL_ARCH_LLAMA) {
        int rd;
        if ((rc = get_int(g, KEY("rope.dimension_count"), false, 2, 4096, c->head_dim, &rd, err))) return rc;
        if (rd != c->head_dim)
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: partial rotary embedding (rope.dimension_count %d, "
                                "head dim %d) is not supported", g->path, rd, c->head_dim);
    }
    if (c->head_dim % 2)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: head dim %d must be even", g->path, c->head_dim);
    // head_count_kv: a scalar, or (LFM2) one entry per layer with 0 = short-conv layer.
    const struct gguf_kv *kv = gguf_find_kv(g, KEY("attention.head_count_kv"));
    c->n_kv_head = 0;
    c->n_attn_layers = 0;
    for (int l = 0; l < c->n_layer; l++) {
        int64_t h = c->n_head;
        if (kv && kv->type == GGUF_VT_ARRAY) {
            if (kv->n != (uint64_t)c->n_layer || gguf_arr_i64(g, kv, (uint64_t)l, &h))
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: '%s' must be an integer array of %d entries",
                                    g->path, k, c->n_layer);
        } else if (kv) {
            if ((rc = gguf_get_i64(g, k, &h, err))) return rc;
        }
        if (h < 0 || h > c->n_head || (h && c->n_head % h))
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: '%s' layer %d = %lld (head_count %d)", g->path, k, l,
                                (long long)h, c->n_head);
        if (h == 0 && c->arch != MODEL_ARCH_LFM2)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: '%s' is 0 for layer %d", g->path, k, l);
        if (h && c->n_kv_head && h != c->n_kv_head)
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: '%s' differs between attention layers (%d, %lld)",
                                g->path, k, c->n_kv_head, (long long)h);
        if (h) c->n_kv_head = (int)h;
        c->is_attn[l] = h != 0;
        c->n_attn_layers += h != 0;
    }
    if (!c->n_kv_head) c->n_kv_head = c->n_head; // all short-conv: value unused
    if (c->arch == MODEL_ARCH_LFM2 &&
        (rc = get_int(g, KEY("shortconv.l_cache"), true, 2, 64, 3, &c->conv_L, err)))
        return rc;
#undef KEY
    // Sizes that come from tensors: vocab (token_embd ne1) and FFN (blk.0.ffn_gate ne1).
    const struct gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    const struct gguf_tensor *gate = gguf_find_tensor(g, "blk.0.ffn_gate.weight");
    if (!emb || emb->n_dims != 2)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: missing 2-D tensor 'token_embd.weight'", g->path);
    if (!gate || gate->n_dims != 2)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: missing 2-D tensor 'blk.0.ffn_gate.weight'", g->path);
    if (emb->ne[1] > LFMD_MAX_VOCAB || gate->ne[1] > LFMD_MAX_DIM)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: vocab %lld or FFN size %lld too large", g->path,
                            (long long)emb->ne[1], (long long)gate->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    c->n_ff = (int)gate->ne[1];
    c->tied_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    if ((rc = get_int(g, "tokenizer.ggml.bos_token_id", false, -1, c->n_vocab - 1, -1, &c->bos_id, err)) ||
        (rc = get_int(g, "tokenizer.ggml.eos_token_id", false, -1, c->n_vocab - 1, -1, &c->eos_id, err)) ||
        (rc = get_int(g, "tokenizer.ggml.padding_token_id", false, -1, c->n_vocab - 1, -1, &c->pad_id, err)))
        return rc;
    return 0;
}

int model_open_gguf(struct model *m, const char *path, struct lfmd_err_ctx *err) {
    struct gguf *g;
    int rc = gguf_open(path, &g, err);
    if (rc) return rc;
    m->gguf = g;
    char arch[64];
    if ((rc = gguf_get_str_buf(g, "general.architecture", arch, sizeof arch, err))) return rc;
    if (!strcmp(arch, "lfm2")) {
        m->cfg.arch = MODEL_ARCH_LFM2;
    } else if (!strcmp(arch, "llama")) {
        m->cfg.arch = MODEL_ARCH_LLAMA;
    } else {
        return lfmd_err_set(err, LFMD_ENOTSUP, "%s: GGUF architecture '%s' is not supported (lfm2, llama)",
                            path, arch);
    }
    if ((rc = fill_config(m, g, arch, err))) return rc;
    if (m->cfg.arch == MODEL_ARCH_LLAMA) {
        // llama.cpp's converter permutes q/k rows for its interleaved (GPT-J style) RoPE, so the
        // forward pass must rotate adjacent pairs instead of split halves.
        m->llama.rope_interleaved = true;
        m->llama.attn_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    }
    // One block: tensor views followed by their HF names.
    size_t names = 0;
    char nm[256];
    for (size_t i = 0; i < g->n_tensors; i++) {
        hf_name(m->cfg.arch, g->tensors[i].name, nm, sizeof nm);
        names += strlen(nm) + 1;
    }
    size_t head = (g->n_tensors ? g->n_tensors : 1) * sizeof *m->tensors;
    m->tensors = lfmd_calloc(1, head + names, LFMD_MEM_OTHER);
    if (!m->tensors) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
    char *np = (char *)m->tensors + head;
    for (size_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor *gt = &g->tensors[i];
        struct tensor *t = &m->tensors[m->n_tensors];
        hf_name(m->cfg.arch, gt->name, nm, sizeof nm);
        size_t l = strlen(nm) + 1;
        memcpy(np, nm, l);
        t->name = np;
        np += l;
        if (!dtype_of(gt->type, &t->dtype))
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: tensor '%s' has ggml type %s, which lfmd does not "
                                "support (f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k)", path,
                                gt->name, ggml_type_name(gt->type));
        for (size_t j = 0; j < m->n_tensors; j++)
            if (!strcmp(m->tensors[j].name, t->name))
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensors '%s' and another both map to '%s'", path,
                                    gt->name, t->name);
        t->n_dims = gt->n_dims;
        for (int d = 0; d < gt->n_dims; d++) t->shape[d] = gt->ne[gt->n_dims - 1 - d];
        // LFM2's conv kernel: ggml [L, D] (squeezed) -> HF [D, 1, L], same bytes.
        if (m->cfg.arch == MODEL_ARCH_LFM2 && gt->n_dims == 2 && strstr(gt->name, ".shortconv.conv.")) {
            t->n_dims = 3;
            t->shape[0] = gt->ne[1];
            t->shape[1] = 1;
            t->shape[2] = gt->ne[0];
        }
        t->data = gguf_tensor_data(g, gt);
        t->size_bytes = gt->size;
        m->n_tensors++;
    }
    return 0;
}

void model_close_gguf(struct model *m) {
    gguf_close(m->gguf);
    m->gguf = NULL;
}

void model_release_gguf_pages(struct model *m) {
    if (m->gguf) madvise((void *)m->gguf->map, m->gguf->file_size, MADV_DONTNEED);
}
