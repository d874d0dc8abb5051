// The engine's view of the real model: src/model for weights/sequences/forward passes and
// src/tokenizer for text. Adapts both to struct engine_model_ops; holds no policy of its own.
// The tokenizer is loaded from the model directory or from a .gguf file's metadata.
// SPDX-License-Identifier: MIT
#include "engine.h"
#include "model_cuda.h"

#include "format/json.h"
#include "model/gguf_tokenizer.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

struct real_model {
    struct model *m;
    struct tokenizer *tok;
    const struct model_config *cfg;
    struct seq_opts seq_opts; // KV cache element type of new sequences
    uint32_t *tb_off;         // token_bytes table: [n_vocab + 1] offsets into tb_data
    char *tb_data;
};

static void real_close(void *h) {
    struct real_model *rm = h;
    if (!rm) return;
    lfmd_free(rm->tb_off);
    lfmd_free(rm->tb_data);
    tokenizer_free(rm->tok);
    model_close(rm->m);
    lfmd_free(rm);
}

static void base_name(const char *path, char *out, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    snprintf(out, cap, "%.*s", (int)(n - s), path + s);
}

static int real_open(const char *path, int n_threads, void **out, struct engine_model_info *info,
                     struct lfmd_err_ctx *err) {
    *out = NULL;
    struct real_model *rm = lfmd_calloc(1, sizeof *rm, LFMD_MEM_OTHER);
    if (!rm) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    struct model_open_opts mo = {.preload = false};
    int rc = model_open(path, &mo, &rm->m, err);
    if (rc) goto fail;
    rm->cfg = model_get_config(rm->m);
    rm->seq_opts.kv_type = LFMD_DTYPE_F32;
    // The tokenizer lives in the model directory, or in a .gguf file's metadata.
    rc = model_tokenizer_load(path, &rm->tok, err);
    if (rc) goto fail;
    if (tokenizer_n_vocab(rm->tok) > rm->cfg->n_vocab) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: tokenizer has %d tokens but the model's vocab is %d",
                          path, (int)tokenizer_n_vocab(rm->tok), rm->cfg->n_vocab);
        goto fail;
    }
    memset(info, 0, sizeof *info);
    info->n_vocab = rm->cfg->n_vocab;
    info->max_ctx = rm->cfg->max_pos;
    info->has_template = tokenizer_has_template(rm->tok);
    info->weight_bytes = model_weight_bytes(rm->m);
    base_name(path, info->name, sizeof info->name);
    snprintf(info->dtype, sizeof info->dtype, "%s", model_dtype_desc(rm->m));
    *out = rm;
    return 0;
fail:
    real_close(rm);
    return rc;
}

static size_t real_seq_bytes(void *h, int n_ctx) {
    struct real_model *rm = h;
    return seq_state_bytes_kv(rm->cfg, n_ctx, rm->seq_opts.kv_type);
}

static int real_set_kv_type(void *h, const char *name, struct lfmd_err_ctx *err) {
    struct real_model *rm = h;
    enum lfmd_dtype t;
    if (seq_kv_type_parse(name, &t))
        return lfmd_err_set(err, LFMD_EINVAL, "kv type '%s': use f16, f32 or q8", name);
    if (t == LFMD_DTYPE_Q8_0 && rm->cfg->head_dim % 32 != 0)
        return lfmd_err_set(err, LFMD_EINVAL, "kv type q8 needs a head_dim that is a multiple of 32 "
                            "(this model's is %d)", rm->cfg->head_dim);
    rm->seq_opts.kv_type = t;
    return 0;
}

static int real_seq_new(void *h, int n_ctx, void **out, struct lfmd_err_ctx *err) {
    struct real_model *rm = h;
    struct seq *s = NULL;
    int rc = seq_new_ex(rm->m, n_ctx, &rm->seq_opts, &s, err);
    *out = s;
    return rc;
}

static void real_seq_free(void *s) { seq_free(s); }
static void real_seq_reset(void *s) { seq_reset(s); }

static int real_runner_new(void *h, int n_threads, void **out, struct lfmd_err_ctx *err) {
    struct real_model *rm = h;
    struct runner *r = NULL;
    int rc = runner_new(rm->m, n_threads, LFMD_MAX_BATCH_TOKENS, &r, err);
    *out = r;
    return rc;
}

static void real_runner_free(void *r) { runner_free(r); }

static int real_forward(void *r, void *s, const int32_t *toks, int n, float *logits,
                        struct lfmd_err_ctx *err) {
    return model_forward(r, s, toks, n, logits, err);
}

static void real_release_pages(void *h) {
    struct real_model *rm = h;
    model_release_pages(rm->m);
}

static int real_render_chat(void *h, const struct engine_chat_msg *msgs, int n, struct buf *out,
                            struct lfmd_err_ctx *err) {
    struct real_model *rm = h;
    struct buf js;
    buf_init(&js, LFMD_MAX_BODY_BYTES * 2, LFMD_MEM_REQUEST);
    struct json_doc *doc = NULL;
    char *prompt = NULL;
    int rc = buf_putc(&js, '[');
    for (int i = 0; i < n && !rc; i++) {
        rc = buf_puts(&js, i ? ",{\"role\":" : "{\"role\":");
        if (!rc) rc = buf_json_str(&js, msgs[i].role, strlen(msgs[i].role));
        if (!rc) rc = buf_puts(&js, ",\"content\":");
        if (!rc) rc = buf_json_str(&js, msgs[i].content, strlen(msgs[i].content));
        if (!rc) rc = buf_putc(&js, '}');
    }
    if (!rc) rc = buf_putc(&js, ']');
    if (rc) {
        lfmd_err_set(err, rc, "chat messages too large to render");
        goto out;
    }
    rc = json_parse(js.data, js.len, LFMD_MEM_REQUEST, &doc, err);
    if (rc) goto out;
    rc = tokenizer_apply_template(rm->tok, json_root(doc), true, NULL, NULL, &prompt, err);
    if (rc) goto out;
    rc = buf_puts(out, prompt);
    if (rc) lfmd_err_set(err, rc, "rendered prompt too large");
out:
    lfmd_free(prompt);
    json_doc_free(doc);
    buf_fini(&js);
    return rc;
}

static int real_encode(void *h, const char *text, size_t len, bool special, bool add_bos,
                       int32_t *ids, int max, int *n_out, struct lfmd_err_ctx *err) {
    struct real_model *rm = h;
    int32_t *all = NULL;
    size_t n = 0;
    // A rendered template carries its own special tokens (parse them, add none); a raw prompt
    // gets the tokenizer's post-processor (BOS) like HF encode().
    int rc = tokenizer_encode(rm->tok, text, len, add_bos, true, &all, &n, err);
    (void)special;
    if (rc) return rc;
    size_t keep = n < (size_t)max ? n : (size_t)max;
    if (keep) memcpy(ids, all, keep * sizeof *ids);
    for (size_t i = 0; i < keep; i++) {
        if (ids[i] < 0 || ids[i] >= rm->cfg->n_vocab) {
            lfmd_free(all);
            return lfmd_err_set(err, LFMD_EFORMAT, "token id %d outside the model's vocab %d",
                                (int)ids[i], rm->cfg->n_vocab);
        }
    }
    *n_out = n > (size_t)LFMD_MAX_CTX ? LFMD_MAX_CTX : (int)n;
    lfmd_free(all);
    return 0;
}

static int real_dec_new(void *h, void **out, struct lfmd_err_ctx *err) {
    struct real_model *rm = h;
    struct tok_stream *s = lfmd_malloc(sizeof *s, LFMD_MEM_REQUEST);
    if (!s) return lfmd_err_set(err, LFMD_EBUDGET, "no memory for a decoder");
    tok_stream_init(s, rm->tok, true);
    *out = s;
    return 0;
}

static int real_dec_push(void *d, int32_t id, struct buf *out) {
    return tok_stream_push(d, id, out);
}

static void real_dec_free(void *d) {
    if (!d) return;
    tok_stream_fini(d);
    lfmd_free(d);
}

static bool real_is_eog(void *h, int32_t id) {
    struct real_model *rm = h;
    if (tokenizer_is_eos(rm->tok, id)) return true;
    return rm->cfg->eos_id >= 0 && id == rm->cfg->eos_id;
}

static int real_forward_batch(void *r, void *const *seqs, const int32_t *const *toks,
                              const int *n, int n_seqs, float *logits, struct lfmd_err_ctx *err) {
    return model_forward_batch(r, (struct seq *const *)seqs, toks, n, n_seqs, logits, err);
}

static int real_seq_copy(void *dst, const void *src) { return seq_copy(dst, src); }

static int32_t real_eot_id(void *h) {
    struct real_model *rm = h;
    static const char *const names[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = tokenizer_token_id(rm->tok, names[i], strlen(names[i]));
        if (id >= 0) return id;
    }
    int32_t eos = tokenizer_eos_id(rm->tok);
    return eos >= 0 ? eos : rm->cfg->eos_id;
}

// Builds the table of every token's decoded bytes (special tokens: empty; a token that is part
// of a UTF-8 sequence keeps its raw bytes). Returns 0 or LFMD_EBUDGET.
static int build_token_bytes(struct real_model *rm) {
    int nv = rm->cfg->n_vocab;
    struct buf all, one;
    buf_init(&all, (size_t)1 << 30, LFMD_MEM_TOKENIZER);
    buf_init(&one, 4096, LFMD_MEM_TOKENIZER);
    rm->tb_off = lfmd_malloc(((size_t)nv + 1) * sizeof *rm->tb_off, LFMD_MEM_TOKENIZER);
    if (!rm->tb_off) return LFMD_EBUDGET;
    int rc = 0;
    int nt = (int)tokenizer_n_vocab(rm->tok);
    for (int id = 0; id < nv && !rc; id++) {
        rm->tb_off[id] = (uint32_t)all.len;
        if (id >= nt || tokenizer_is_special(rm->tok, id)) continue;
        struct tok_stream ts;
        tok_stream_init(&ts, rm->tok, true);
        ts.started = true; // no leading-space stripping: this is a continuation
        buf_reset(&one);
        if (tok_stream_push(&ts, id, &one) == 0) {
            rc = buf_append(&all, one.data ? one.data : "", one.len);
            if (!rc && ts.n_pending) rc = buf_append(&all, (const char *)ts.pending, ts.n_pending);
        }
        tok_stream_fini(&ts);
    }
    rm->tb_off[nv] = (uint32_t)all.len;
    buf_fini(&one);
    if (rc) {
        buf_fini(&all);
        lfmd_free(rm->tb_off);
        rm->tb_off = NULL;
        return LFMD_EBUDGET;
    }
    rm->tb_data = buf_take(&all, NULL);
    if (!rm->tb_data) rm->tb_data = lfmd_strdup("", LFMD_MEM_TOKENIZER);
    return 0;
}

static const char *real_token_bytes(void *h, int32_t id, size_t *len) {
    struct real_model *rm = h;
    *len = 0;
    if (!rm->tb_data && build_token_bytes(rm)) return "";
    if (id < 0 || id >= rm->cfg->n_vocab || !rm->tb_data) return "";
    *len = rm->tb_off[id + 1] - rm->tb_off[id];
    return rm->tb_data + rm->tb_off[id];
}

const struct engine_model_ops engine_model_real = {
    .name = "model",
    .open = real_open,
    .close = real_close,
    .seq_bytes = real_seq_bytes,
    .seq_new = real_seq_new,
    .set_kv_type = real_set_kv_type,
    .seq_free = real_seq_free,
    .seq_reset = real_seq_reset,
    .runner_new = real_runner_new,
    .runner_free = real_runner_free,
    .forward = real_forward,
    .release_pages = real_release_pages,
    .render_chat = real_render_chat,
    .encode = real_encode,
    .dec_new = real_dec_new,
    .dec_push = real_dec_push,
    .dec_free = real_dec_free,
    .is_eog = real_is_eog,
    .forward_batch = real_forward_batch,
    .seq_copy = real_seq_copy,
    .eot_id = real_eot_id,
    .token_bytes = real_token_bytes,
};

struct model *engine_real_model(void *h) { return ((struct real_model *)h)->m; }

const struct engine_model_ops *engine_ops_for_path(const char *path) {
    if (path && !strcmp(path, "@test")) return &engine_model_fake;
    const struct engine_model_ops *cu = engine_cuda_ops(); // set by --device cuda:N
    return cu ? cu : &engine_model_real;
}
