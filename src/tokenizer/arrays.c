// tokenizer_from_arrays: builds the same pipeline tokenizer.json would describe from GGUF-style
// arrays (tokens, merges, token types, scores, special ids). "gpt2" -> byte-level BPE with the
// pre-tokenizer regex named by `pre`; "llama" -> SentencePiece BPE with byte fallback.
// Invariant: the result is indistinguishable from a loaded tokenizer (same tables, same code).
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/limits.h"

#include <string.h>

#define LLAMA3_RE                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                    \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                         \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static int add_dec(struct tokenizer *t, enum tk_dec_kind k, const char *a, const char *b, int start,
                   struct lfmd_err_ctx *err) {
    struct tk_dec *v = t->decs ? lfmd_realloc(t->decs, (t->n_decs + 1) * sizeof *v)
                               : lfmd_malloc(sizeof *v, LFMD_MEM_TOKENIZER);
    if (!v) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    t->decs = v;
    struct tk_dec d = {.kind = k, .start = start};
    if (a) {
        d.a = lfmd_strdup(a, LFMD_MEM_TOKENIZER);
        d.a_len = strlen(a);
    }
    if (b) {
        d.b = lfmd_strdup(b, LFMD_MEM_TOKENIZER);
        d.b_len = strlen(b);
    }
    t->decs[t->n_decs++] = d;
    if ((a && !d.a) || (b && !d.b)) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    return 0;
}

static int add_norm(struct tokenizer *t, enum tk_norm_kind k, const char *a, const char *b,
                    struct lfmd_err_ctx *err) {
    struct tk_norm *v = t->norms ? lfmd_realloc(t->norms, (t->n_norms + 1) * sizeof *v)
                                 : lfmd_malloc(sizeof *v, LFMD_MEM_TOKENIZER);
    if (!v) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    t->norms = v;
    struct tk_norm n = {.kind = k};
    n.a = lfmd_strdup(a, LFMD_MEM_TOKENIZER);
    n.a_len = strlen(a);
    if (b) {
        n.b = lfmd_strdup(b, LFMD_MEM_TOKENIZER);
        n.b_len = strlen(b);
    }
    t->norms[t->n_norms++] = n;
    if (!n.a || (b && !n.b)) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    return 0;
}

static int add_pre(struct tokenizer *t, struct tk_pre p, struct lfmd_err_ctx *err) {
    struct tk_pre *v = t->pres ? lfmd_realloc(t->pres, (t->n_pres + 1) * sizeof *v)
                               : lfmd_malloc(sizeof *v, LFMD_MEM_TOKENIZER);
    if (!v) {
        pcre2_code_free(p.re);
        return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    t->pres = v;
    t->pres[t->n_pres++] = p;
    return 0;
}

static char *dup_token(const struct tokenizer *t, int32_t id) {
    size_t n;
    const char *s = tokenizer_token_text(t, id, &n);
    return s ? lfmd_strndup(s, n, LFMD_MEM_TOKENIZER) : NULL;
}

int tokenizer_from_arrays(const struct tokenizer_arrays *a, struct tokenizer **out,
                          struct lfmd_err_ctx *err) {
    *out = NULL;
    if (!a || !a->model || !a->tokens)
        return lfmd_err_set(err, LFMD_EINVAL, "tokenizer: arrays need a model and tokens");
    bool bpe = !strcmp(a->model, "gpt2"), spm = !strcmp(a->model, "llama");
    if (!bpe && !spm)
        return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: GGUF tokenizer model '%.40s' is not "
                                               "supported (gpt2, llama)", a->model);
    struct tokenizer *t = tokenizer__new();
    if (!t) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    int rc = tokenizer__set_n_vocab(t, (int64_t)a->n_tokens, err);
    size_t n_added = 0;
    for (size_t i = 0; !rc && i < a->n_tokens; i++) {
        int32_t ty = a->token_types ? a->token_types[i] : 1;
        unsigned attr = 0;
        if (ty == 3) attr = TOKENIZER_ATTR_ADDED | TOKENIZER_ATTR_SPECIAL;
        else if (ty == 4) attr = TOKENIZER_ATTR_ADDED;
        if (attr) n_added++;
        const char *s = a->tokens[i] ? a->tokens[i] : "";
        rc = tokenizer__set_token(t, (int32_t)i, s, strlen(s), attr, err);
    }
    if (!rc && n_added) {
        t->added = lfmd_calloc(n_added, sizeof *t->added, LFMD_MEM_TOKENIZER);
        if (!t->added) rc = lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
        for (size_t i = 0; !rc && i < a->n_tokens; i++) {
            unsigned at = t->tok_attr[i];
            if (!(at & TOKENIZER_ATTR_ADDED) || !t->tok_len[i]) continue;
            struct tk_added *ad = &t->added[t->n_added++];
            ad->id = (int32_t)i;
            ad->len = t->tok_len[i];
            ad->special = (at & TOKENIZER_ATTR_SPECIAL) != 0;
            ad->text = dup_token(t, (int32_t)i);
            if (!ad->text) rc = lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
        }
    }
    if (!rc) rc = tokenizer__build_vocab_hash(t, err);
    if (!rc) rc = tokenizer__merges_reserve(t, a->n_merges, err);
    for (size_t i = 0; !rc && i < a->n_merges; i++) {
        const char *m = a->merges[i] ? a->merges[i] : "";
        const char *sp = strchr(m, ' ');
        if (!sp) {
            rc = lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: merge %zu has no space", i);
            break;
        }
        rc = tokenizer__merge_add(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), (int32_t)i, err);
    }
    if (!rc && bpe) {
        const char *pre = a->pre ? a->pre : "default";
        const char *re = NULL;
        if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "lfm2") ||
            !strcmp(pre, "smaug-bpe") || !strcmp(pre, "dbrx")) {
            re = LLAMA3_RE;
            t->ignore_merges = true;
        } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) {
            re = QWEN2_RE;
        } else if (strcmp(pre, "default") && strcmp(pre, "gpt2") && strcmp(pre, "gpt-2")) {
            rc = lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: GGUF pre-tokenizer '%.40s' is not "
                                                 "supported", pre);
        }
        struct tk_pre p = {.kind = re ? TK_PRE_SPLIT : TK_PRE_BYTELEVEL,
                           .behavior = TK_SPLIT_ISOLATED};
        if (!rc)
            rc = pretok__compile(re ? re : pretok__gpt2_pattern,
                                 strlen(re ? re : pretok__gpt2_pattern), false, &p.re, err);
        if (!rc) rc = add_pre(t, p, err);
        if (!rc && re) rc = add_pre(t, (struct tk_pre){.kind = TK_PRE_BYTELEVEL}, err);
        t->byte_level = true;
        if (!rc) rc = add_dec(t, TK_DEC_BYTELEVEL, NULL, NULL, 0, err);
    }
    if (!rc && spm) {
        t->byte_fallback = true;
        t->fuse_unk = true;
        t->unk_id = a->unk_id >= 0 && (size_t)a->unk_id < a->n_tokens ? a->unk_id : -1;
        if (!a->n_merges) {
            t->merge_by_score = true;
            if (a->scores) {
                t->scores = lfmd_malloc(a->n_tokens * sizeof *t->scores, LFMD_MEM_TOKENIZER);
                if (!t->scores) rc = lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
                else memcpy(t->scores, a->scores, a->n_tokens * sizeof *t->scores);
            }
        }
        if (!rc && a->add_space_prefix)
            rc = add_norm(t, TK_NORM_PREPEND, "\xe2\x96\x81", NULL, err);
        if (!rc) rc = add_norm(t, TK_NORM_REPLACE, " ", "\xe2\x96\x81", err);
        if (!rc) rc = add_dec(t, TK_DEC_REPLACE, "\xe2\x96\x81", " ", 0, err);
        if (!rc) rc = add_dec(t, TK_DEC_BYTEFALLBACK, NULL, NULL, 0, err);
        if (!rc) rc = add_dec(t, TK_DEC_FUSE, NULL, NULL, 0, err);
        if (!rc && a->add_space_prefix) rc = add_dec(t, TK_DEC_STRIP, " ", NULL, 1, err);
    }
    int32_t n = (int32_t)a->n_tokens;
    t->bos_id = a->bos_id >= 0 && a->bos_id < n ? a->bos_id : -1;
    t->eos_id = a->eos_id >= 0 && a->eos_id < n ? a->eos_id : -1;
    if (!rc && ((a->add_bos && t->bos_id >= 0) || (a->add_eos && t->eos_id >= 0))) {
        t->post_single = lfmd_malloc(3 * sizeof *t->post_single, LFMD_MEM_TOKENIZER);
        if (!t->post_single) rc = lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
        else {
            if (a->add_bos && t->bos_id >= 0) t->post_single[t->n_post_single++] = t->bos_id;
            t->post_single[t->n_post_single++] = -1;
            if (a->add_eos && t->eos_id >= 0) t->post_single[t->n_post_single++] = t->eos_id;
        }
    }
    if (!rc && t->bos_id >= 0 && !(t->bos_text = dup_token(t, t->bos_id))) rc = LFMD_ENOMEM;
    if (!rc && t->eos_id >= 0 && !(t->eos_text = dup_token(t, t->eos_id))) rc = LFMD_ENOMEM;
    if (!rc && t->unk_id >= 0 && !(t->unk_text = dup_token(t, t->unk_id))) rc = LFMD_ENOMEM;
    if (!rc && a->pad_id >= 0 && a->pad_id < n && !(t->pad_text = dup_token(t, a->pad_id)))
        rc = LFMD_ENOMEM;
    if (rc == LFMD_ENOMEM && (!err || !err->code)) lfmd_err_set(err, rc, "tokenizer: out of memory");
    if (!rc) rc = tokenizer__finish(t, err);
    if (!rc && a->eot_id >= 0) tokenizer__add_eos(t, a->eot_id);
    if (!rc && a->chat_template) {
        t->chat_template_src = lfmd_strdup(a->chat_template, LFMD_MEM_TOKENIZER);
        rc = t->chat_template_src ? chat_template__compile(t, t->chat_template_src, err)
                                  : lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
