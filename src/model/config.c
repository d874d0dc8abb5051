// config.json -> struct model_config, following Hugging Face's configuration classes
// (Lfm2Config, LlamaConfig): same aliases, same defaults, same FFN size rule. Shape fields have no
// sensible default and are required; a missing one is an error naming it.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include <math.h>
#include <string.h>

static const struct json *get_any(const struct json *j, const char *a, const char *b, const char *c) {
    const struct json *v = json_get(j, a);
    if (!v && b) v = json_get(j, b);
    if (!v && c) v = json_get(j, c);
    return v && v->type != JSON_NULL ? v : NULL;
}

// Reads a required positive integer field (or one of its aliases).
static int need_int(const struct json *j, const char *path, const char *name, const char *alias,
                    int64_t max, int *out, struct lfmd_err_ctx *err) {
    const struct json *v = get_any(j, name, alias, NULL);
    if (!v) return lfmd_err_set(err, LFMD_EFORMAT, "%s: missing field '%s'", path, name);
    int64_t x;
    if (json_int(v, 1, max, &x))
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: field '%s' must be an integer in [1, %lld]", path,
                            name, (long long)max);
    *out = (int)x;
    return 0;
}

static int opt_int(const struct json *j, const char *path, const char *name, int64_t lo, int64_t max,
                   int def, int *out, struct lfmd_err_ctx *err) {
    const struct json *v = get_any(j, name, NULL, NULL);
    if (!v) {
        *out = def;
        return 0;
    }
    // eos_token_id may be a list: take the first entry.
    if (v->type == JSON_ARRAY) v = json_at(v, 0);
    int64_t x;
    if (json_int(v, lo, max, &x))
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: field '%s' must be an integer in [%lld, %lld]", path,
                            name, (long long)lo, (long long)max);
    *out = (int)x;
    return 0;
}

static float rope_theta_of(const struct json *j, float def) {
    const struct json *rp = json_get(j, "rope_parameters");
    const struct json *v = json_get(rp, "rope_theta");
    if (!json_is(v, JSON_NUMBER)) v = json_get(j, "rope_theta");
    if (!json_is(v, JSON_NUMBER)) v = json_get(j, "theta");
    return (float)json_num(v, def);
}

// LFM2 FFN size, exactly as transformers' Lfm2MLP computes it; -1 when the multiplier or the
// multiple is out of range or the result exceeds LFMD_MAX_DIM (the caller reports it). The
// arithmetic is in double and checked before any conversion to int (huge values are undefined
// behaviour to convert; found by fuzz_safetensors).
static int lfm2_ff_size(const struct json *j, int raw) {
    if (!json_bool(json_get(j, "block_auto_adjust_ff_dim"), true)) return raw;
    int ff = (int)(2 * raw / 3);
    const struct json *mult = json_get(j, "block_ffn_dim_multiplier");
    if (mult && mult->type == JSON_NULL) return ff;
    double m = json_num(mult, 1.0);
    double mo = json_num(json_get(j, "block_multiple_of"), 256);
    if (!(mo < LFMD_MAX_DIM)) return -1; // NaN too
    if (mo < 1) mo = 1;
    double scaled = m * ff;
    if (!(scaled >= 0 && scaled <= LFMD_MAX_DIM)) return -1;
    int f = (int)scaled, q = (int)mo;
    int64_t r = (int64_t)q * ((f + q - 1) / q);
    return r <= LFMD_MAX_DIM ? (int)r : -1;
}

static int parse_layer_types(const struct json *j, const char *path, struct model_config *c,
                             struct lfmd_err_ctx *err) {
    const struct json *lt = json_get(j, "layer_types");
    const struct json *fa = json_get(j, "full_attn_idxs");
    if (json_is(lt, JSON_ARRAY)) {
        if ((int)lt->len != c->n_layer)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: layer_types has %u entries, num_hidden_layers is %d",
                                path, lt->len, c->n_layer);
        for (int i = 0; i < c->n_layer; i++) {
            const char *s = json_str(json_at(lt, (size_t)i), "");
            if (!strcmp(s, "full_attention") || !strcmp(s, "attention")) c->is_attn[i] = true;
            else if (!strcmp(s, "conv")) c->is_attn[i] = false;
            else
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: layer_types[%d] = '%s' (expected 'conv' or "
                                    "'full_attention')", path, i, s);
        }
    } else if (json_is(fa, JSON_ARRAY)) {
        for (size_t k = 0; k < fa->len; k++) {
            int64_t idx;
            if (json_int(json_at(fa, k), 0, c->n_layer - 1, &idx))
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: full_attn_idxs[%zu] is not a layer index", path, k);
            c->is_attn[idx] = true;
        }
    } else {
        for (int i = 0; i < c->n_layer; i++) c->is_attn[i] = true; // HF default: all attention
    }
    return 0;
}

int config_parse(const struct json *j, const char *path, struct model_config *c,
                 struct llama_params *lp, struct lfmd_err_ctx *err) {
    memset(c, 0, sizeof *c);
    memset(lp, 0, sizeof *lp);
    int rc;
    if (!json_is(j, JSON_OBJECT)) return lfmd_err_set(err, LFMD_EFORMAT, "%s: not a JSON object", path);
    const char *mt = json_str(json_get(j, "model_type"), NULL);
    if (!mt) return lfmd_err_set(err, LFMD_EFORMAT, "%s: missing field 'model_type'", path);
    if (!strcmp(mt, "lfm2")) c->arch = MODEL_ARCH_LFM2;
    else if (!strcmp(mt, "llama") || !strcmp(mt, "mistral") || !strcmp(mt, "qwen2")) c->arch = MODEL_ARCH_LLAMA;
    else
        return lfmd_err_set(err, LFMD_ENOTSUP, "%s: model_type '%s' is not supported (lfm2, llama, "
                            "mistral, qwen2)", path, mt);
    bool lfm2 = c->arch == MODEL_ARCH_LFM2;
    if ((rc = need_int(j, path, "vocab_size", NULL, LFMD_MAX_VOCAB, &c->n_vocab, err)) ||
        (rc = need_int(j, path, "hidden_size", lfm2 ? "block_dim" : NULL, LFMD_MAX_DIM, &c->n_embd, err)) ||
        (rc = need_int(j, path, "num_hidden_layers", NULL, LFMD_MAX_LAYERS, &c->n_layer, err)) ||
        (rc = need_int(j, path, "num_attention_heads", lfm2 ? "num_heads" : NULL, 4096, &c->n_head, err)))
        return rc;
    if (lfm2) {
        if ((rc = need_int(j, path, "num_key_value_heads", NULL, 4096, &c->n_kv_head, err))) return rc;
    } else if ((rc = opt_int(j, path, "num_key_value_heads", 1, 4096, c->n_head, &c->n_kv_head, err))) {
        return rc;
    }
    int raw_ff;
    if ((rc = need_int(j, path, lfm2 && json_get(j, "block_ff_dim") ? "block_ff_dim" : "intermediate_size",
                       NULL, LFMD_MAX_DIM, &raw_ff, err)))
        return rc;
    c->n_ff = lfm2 ? lfm2_ff_size(j, raw_ff) : raw_ff;
    if (c->n_ff < 1)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: the FFN size rule (intermediate_size, "
                            "block_ffn_dim_multiplier, block_multiple_of) gives no valid size", path);
    if ((rc = opt_int(j, path, "head_dim", 1, 4096, c->n_embd / c->n_head, &c->head_dim, err))) return rc;
    if (c->head_dim < 2 || c->head_dim % 2)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: head_dim %d must be even", path, c->head_dim);
    if (c->n_head % c->n_kv_head)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: num_attention_heads %d is not a multiple of "
                            "num_key_value_heads %d", path, c->n_head, c->n_kv_head);
    if ((rc = opt_int(j, path, "max_position_embeddings", 1, INT32_MAX, 2048, &c->max_pos, err)) ||
        (rc = opt_int(j, path, "bos_token_id", -1, c->n_vocab - 1, -1, &c->bos_id, err)) ||
        (rc = opt_int(j, path, "eos_token_id", -1, c->n_vocab - 1, -1, &c->eos_id, err)) ||
        (rc = opt_int(j, path, "pad_token_id", -1, c->n_vocab - 1, -1, &c->pad_id, err)))
        return rc;
    if (lfm2) {
        if ((rc = opt_int(j, path, "conv_L_cache", 1, 64, 3, &c->conv_L, err))) return rc;
        if (json_bool(json_get(j, "conv_bias"), false))
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: conv_bias=true is not supported", path);
        if ((rc = parse_layer_types(j, path, c, err))) return rc;
        c->norm_eps = (float)json_num(get_any(j, "norm_eps", "block_norm_eps", NULL), 1e-5);
        c->rope_theta = rope_theta_of(j, 1e6f);
        const struct json *tie = get_any(j, "tie_word_embeddings", "tie_embedding", NULL);
        c->tied_embeddings = json_bool(tie, true);
    } else {
        for (int i = 0; i < c->n_layer; i++) c->is_attn[i] = true;
        c->norm_eps = (float)json_num(json_get(j, "rms_norm_eps"), 1e-6);
        c->rope_theta = rope_theta_of(j, 10000.0f);
        c->tied_embeddings = json_bool(json_get(j, "tie_word_embeddings"), false);
        lp->attn_bias = json_bool(json_get(j, "attention_bias"), false) ||
                        !strcmp(mt, "qwen2");
        if (json_bool(json_get(j, "mlp_bias"), false))
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: mlp_bias=true is not supported", path);
        const struct json *rs = json_get(j, "rope_scaling");
        if (!json_is(rs, JSON_OBJECT)) rs = json_get(j, "rope_parameters");
        const char *rt = json_str(get_any(rs, "rope_type", "type", NULL), "default");
        if (!strcmp(rt, "llama3")) {
            lp->rope_llama3 = true;
            lp->rope_factor = (float)json_num(json_get(rs, "factor"), 8.0);
            lp->rope_low_freq = (float)json_num(json_get(rs, "low_freq_factor"), 1.0);
            lp->rope_high_freq = (float)json_num(json_get(rs, "high_freq_factor"), 4.0);
            lp->rope_orig_max_pos = (int)json_num(json_get(rs, "original_max_position_embeddings"), 8192);
        } else if (strcmp(rt, "default") != 0) {
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: rope scaling type '%s' is not supported", path, rt);
        }
    }
    if (!(c->norm_eps > 0) || !(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: norm_eps and rope_theta must be positive", path);
    for (int i = 0; i < c->n_layer; i++) c->n_attn_layers += c->is_attn[i];
    return 0;
}
