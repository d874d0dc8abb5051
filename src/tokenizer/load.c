// tokenizer.json / tokenizer_config.json / generation_config.json loader. Validates every id,
// count and type before use; anything it does not implement is LFMD_ENOTSUP naming the type.
// Invariant: on failure nothing is leaked and *out is NULL.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/io.h"
#include "base/limits.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

// ---- files ----

static int parse_file(const char *path, size_t max, struct json_doc **doc,
                      struct lfmd_err_ctx *err) {
    char *text;
    size_t len;
    *doc = NULL;
    int rc = lfmd_io_read_file(path, max, LFMD_MEM_TOKENIZER, &text, &len, err);
    if (rc) return rc;
    struct lfmd_err_ctx e2 = {0};
    rc = json_parse(text, len, LFMD_MEM_TOKENIZER, doc, &e2);
    lfmd_free(text);
    if (rc) return lfmd_err_set(err, rc, "%s: %s", path, e2.msg);
    return 0;
}

// ---- helpers ----

static bool jstr_is(const struct json *j, const char *s) {
    return json_is(j, JSON_STRING) && j->len == strlen(s) && !memcmp(j->u.str, s, j->len);
}

static char *dupn(const char *s, size_t n) { return lfmd_strndup(s, n, LFMD_MEM_TOKENIZER); }

// "String" or "Regex" pattern object.
static int get_pattern(const struct json *pat, const char **s, size_t *n, bool *is_regex) {
    const struct json *v = json_get(pat, "String");
    *is_regex = false;
    if (!json_is(v, JSON_STRING)) {
        v = json_get(pat, "Regex");
        *is_regex = true;
    }
    if (!json_is(v, JSON_STRING)) return LFMD_EFORMAT;
    *s = v->u.str;
    *n = v->len;
    return 0;
}

static const char *type_of(const struct json *j) { return json_str(json_get(j, "type"), ""); }

// ---- normalizers ----

static int add_norm(struct tokenizer *t, const struct json *j, int depth,
                    struct lfmd_err_ctx *err) {
    if (json_is(j, JSON_NULL) || !j) return 0;
    if (depth > 8) return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: normalizers nest too deep");
    const char *ty = type_of(j);
    if (!strcmp(ty, "Sequence")) {
        const struct json *v = json_get(j, "normalizers");
        if (!json_is(v, JSON_ARRAY))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Sequence normalizer without list");
        for (size_t i = 0; i < v->len; i++) {
            int rc = add_norm(t, &v->u.items[i], depth + 1, err);
            if (rc) return rc;
        }
        return 0;
    }
    struct tk_norm nm = {0};
    if (!strcmp(ty, "NFC")) nm.kind = TK_NORM_NFC;
    else if (!strcmp(ty, "NFKC")) nm.kind = TK_NORM_NFKC;
    else if (!strcmp(ty, "Lowercase")) nm.kind = TK_NORM_LOWER;
    else if (!strcmp(ty, "Prepend")) {
        const struct json *p = json_get(j, "prepend");
        if (!json_is(p, JSON_STRING))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Prepend normalizer without text");
        nm.kind = TK_NORM_PREPEND;
        nm.a = dupn(p->u.str, p->len);
        nm.a_len = p->len;
        if (!nm.a) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    } else if (!strcmp(ty, "Replace")) {
        const char *s;
        size_t n;
        bool rx;
        const struct json *c = json_get(j, "content");
        if (get_pattern(json_get(j, "pattern"), &s, &n, &rx) || !json_is(c, JSON_STRING))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Replace normalizer is malformed");
        nm.kind = TK_NORM_REPLACE;
        if (rx) {
            int rc = pretok__compile(s, n, false, &nm.re, err);
            if (rc) return rc;
        } else {
            nm.a = dupn(s, n);
            nm.a_len = n;
        }
        nm.b = dupn(c->u.str, c->len);
        nm.b_len = c->len;
        if ((!rx && !nm.a) || !nm.b) {
            lfmd_free(nm.a);
            lfmd_free(nm.b);
            pcre2_code_free(nm.re);
            return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
        }
    } else {
        return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: normalizer type '%s' is not supported",
                            ty);
    }
    struct tk_norm *v = t->norms ? lfmd_realloc(t->norms, (t->n_norms + 1) * sizeof *v)
                                 : lfmd_malloc(sizeof *v, LFMD_MEM_TOKENIZER);
    if (!v) {
        lfmd_free(nm.a);
        lfmd_free(nm.b);
        pcre2_code_free(nm.re);
        return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    t->norms = v;
    t->norms[t->n_norms++] = nm;
    return 0;
}

// ---- pre-tokenizers ----

static int push_pre(struct tokenizer *t, struct tk_pre *p, struct lfmd_err_ctx *err) {
    struct tk_pre *v = t->pres ? lfmd_realloc(t->pres, (t->n_pres + 1) * sizeof *v)
                               : lfmd_malloc(sizeof *v, LFMD_MEM_TOKENIZER);
    if (!v) {
        pcre2_code_free(p->re);
        return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    t->pres = v;
    t->pres[t->n_pres++] = *p;
    return 0;
}

static int parse_prepend_scheme(const struct json *j, enum tk_prepend_scheme *out) {
    const struct json *ps = json_get(j, "prepend_scheme");
    if (json_is(ps, JSON_STRING)) {
        if (jstr_is(ps, "always")) *out = TK_PREPEND_ALWAYS;
        else if (jstr_is(ps, "first")) *out = TK_PREPEND_FIRST;
        else if (jstr_is(ps, "never")) *out = TK_PREPEND_NEVER;
        else return LFMD_EFORMAT;
    } else {
        *out = json_bool(json_get(j, "add_prefix_space"), true) ? TK_PREPEND_ALWAYS
                                                                 : TK_PREPEND_NEVER;
    }
    return 0;
}

static int add_pre(struct tokenizer *t, const struct json *j, int depth,
                   struct lfmd_err_ctx *err) {
    if (json_is(j, JSON_NULL) || !j) return 0;
    if (depth > 8) return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: pre-tokenizers nest too deep");
    const char *ty = type_of(j);
    struct tk_pre p = {0};
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const struct json *v = json_get(j, "pretokenizers");
        if (!json_is(v, JSON_ARRAY))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Sequence pre-tokenizer without list");
        for (size_t i = 0; i < v->len; i++)
            if ((rc = add_pre(t, &v->u.items[i], depth + 1, err))) return rc;
        return 0;
    }
    if (!strcmp(ty, "Split")) {
        const char *s;
        size_t n;
        bool rx;
        if (get_pattern(json_get(j, "pattern"), &s, &n, &rx))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Split pre-tokenizer without pattern");
        const struct json *b = json_get(j, "behavior");
        p.kind = TK_PRE_SPLIT;
        if (jstr_is(b, "Isolated")) p.behavior = TK_SPLIT_ISOLATED;
        else if (jstr_is(b, "Removed")) p.behavior = TK_SPLIT_REMOVED;
        else if (jstr_is(b, "MergedWithPrevious")) p.behavior = TK_SPLIT_MERGED_PREV;
        else if (jstr_is(b, "MergedWithNext")) p.behavior = TK_SPLIT_MERGED_NEXT;
        else if (jstr_is(b, "Contiguous")) p.behavior = TK_SPLIT_CONTIGUOUS;
        else
            return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: Split behavior '%s' is not supported",
                                json_str(b, "?"));
        p.invert = json_bool(json_get(j, "invert"), false);
        if ((rc = pretok__compile(s, n, !rx, &p.re, err))) return rc;
        return push_pre(t, &p, err);
    }
    if (!strcmp(ty, "ByteLevel")) {
        p.kind = TK_PRE_BYTELEVEL;
        p.add_prefix_space = json_bool(json_get(j, "add_prefix_space"), true);
        t->byte_level = true;
        if (json_bool(json_get(j, "use_regex"), true) &&
            (rc = pretok__compile(pretok__gpt2_pattern, strlen(pretok__gpt2_pattern), false, &p.re,
                                  err)))
            return rc;
        return push_pre(t, &p, err);
    }
    if (!strcmp(ty, "Metaspace")) {
        p.kind = TK_PRE_METASPACE;
        const struct json *r = json_get(j, "replacement");
        const char *rs = json_str(r, "\xe2\x96\x81");
        size_t rl = json_is(r, JSON_STRING) ? r->len : 3;
        if (rl == 0 || rl > sizeof p.repl)
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: bad Metaspace replacement");
        memcpy(p.repl, rs, rl);
        p.repl_len = (uint8_t)rl;
        if (parse_prepend_scheme(j, &p.prepend))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: bad Metaspace prepend_scheme");
        p.metaspace_split = json_bool(json_get(j, "split"), true);
        return push_pre(t, &p, err);
    }
    if (!strcmp(ty, "Digits")) {
        p.kind = TK_PRE_DIGITS;
        p.individual_digits = json_bool(json_get(j, "individual_digits"), false);
        return push_pre(t, &p, err);
    }
    return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: pre-tokenizer type '%s' is not supported",
                        ty);
}

// ---- decoders ----

static int add_dec(struct tokenizer *t, const struct json *j, int depth,
                   struct lfmd_err_ctx *err) {
    if (json_is(j, JSON_NULL) || !j) return 0;
    if (depth > 8) return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: decoders nest too deep");
    const char *ty = type_of(j);
    struct tk_dec d = {0};
    if (!strcmp(ty, "Sequence")) {
        const struct json *v = json_get(j, "decoders");
        if (!json_is(v, JSON_ARRAY))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Sequence decoder without list");
        for (size_t i = 0; i < v->len; i++) {
            int rc = add_dec(t, &v->u.items[i], depth + 1, err);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) d.kind = TK_DEC_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback")) d.kind = TK_DEC_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse")) d.kind = TK_DEC_FUSE;
    else if (!strcmp(ty, "Replace")) {
        const char *s;
        size_t n;
        bool rx;
        const struct json *c = json_get(j, "content");
        if (get_pattern(json_get(j, "pattern"), &s, &n, &rx) || !json_is(c, JSON_STRING))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Replace decoder is malformed");
        if (rx)
            return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: Replace decoder with a Regex pattern "
                                                   "is not supported");
        d.kind = TK_DEC_REPLACE;
        d.a = dupn(s, n);
        d.a_len = n;
        d.b = dupn(c->u.str, c->len);
        d.b_len = c->len;
    } else if (!strcmp(ty, "Strip")) {
        const struct json *c = json_get(j, "content");
        int64_t a = 0, b = 0;
        if (!json_is(c, JSON_STRING) || json_int(json_get(j, "start"), 0, 1 << 20, &a) ||
            json_int(json_get(j, "stop"), 0, 1 << 20, &b))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Strip decoder is malformed");
        d.kind = TK_DEC_STRIP;
        d.a = dupn(c->u.str, c->len);
        d.a_len = c->len;
        d.start = (int)a;
        d.stop = (int)b;
    } else if (!strcmp(ty, "Metaspace")) {
        const struct json *r = json_get(j, "replacement");
        enum tk_prepend_scheme ps;
        d.kind = TK_DEC_METASPACE;
        d.a = dupn(json_str(r, "\xe2\x96\x81"), json_is(r, JSON_STRING) ? r->len : 3);
        d.a_len = json_is(r, JSON_STRING) ? r->len : 3;
        if (parse_prepend_scheme(j, &ps))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: bad Metaspace prepend_scheme");
        d.prefix = ps != TK_PREPEND_NEVER;
    } else {
        return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: decoder type '%s' is not supported", ty);
    }
    struct tk_dec *v = t->decs ? lfmd_realloc(t->decs, (t->n_decs + 1) * sizeof *v)
                               : lfmd_malloc(sizeof *v, LFMD_MEM_TOKENIZER);
    if (!v || ((d.kind == TK_DEC_REPLACE || d.kind == TK_DEC_STRIP || d.kind == TK_DEC_METASPACE) &&
               !d.a) ||
        (d.kind == TK_DEC_REPLACE && !d.b)) {
        lfmd_free(d.a);
        lfmd_free(d.b);
        if (v) t->decs = v;
        return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    t->decs = v;
    t->decs[t->n_decs++] = d;
    return 0;
}

// ---- post-processors ----

static int post_push(struct tokenizer *t, int32_t id, struct lfmd_err_ctx *err) {
    if (t->n_post_single >= 64)
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: post-processor template too long");
    if (!t->post_single) {
        t->post_single = lfmd_malloc(64 * sizeof *t->post_single, LFMD_MEM_TOKENIZER);
        if (!t->post_single) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    if (id != -1 && (id < 0 || id >= t->n_vocab))
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: post-processor id %d out of range", id);
    t->post_single[t->n_post_single++] = id;
    return 0;
}

static int add_post(struct tokenizer *t, const struct json *j, int depth,
                    struct lfmd_err_ctx *err) {
    if (json_is(j, JSON_NULL) || !j) return 0;
    if (depth > 8) return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: post-processors nest too deep");
    const char *ty = type_of(j);
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const struct json *v = json_get(j, "processors");
        if (!json_is(v, JSON_ARRAY))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: Sequence post-processor without list");
        for (size_t i = 0; i < v->len; i++)
            if ((rc = add_post(t, &v->u.items[i], depth + 1, err))) return rc;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) return 0; // offsets only
    if (!strcmp(ty, "TemplateProcessing")) {
        const struct json *single = json_get(j, "single");
        const struct json *sp = json_get(j, "special_tokens");
        if (!json_is(single, JSON_ARRAY))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: TemplateProcessing without single");
        t->n_post_single = 0;
        for (size_t i = 0; i < single->len; i++) {
            const struct json *it = &single->u.items[i];
            const struct json *st = json_get(it, "SpecialToken");
            if (st) {
                const char *name = json_str(json_get(st, "id"), NULL);
                const struct json *def = name ? json_get(sp, name) : NULL;
                const struct json *ids = json_get(def, "ids");
                if (!json_is(ids, JSON_ARRAY))
                    return lfmd_err_set(err, LFMD_EFORMAT,
                                        "tokenizer: TemplateProcessing names unknown token '%s'",
                                        name ? name : "?");
                for (size_t k = 0; k < ids->len; k++) {
                    int64_t id;
                    if (json_int(&ids->u.items[k], 0, t->n_vocab - 1, &id))
                        return lfmd_err_set(err, LFMD_EFORMAT,
                                            "tokenizer: TemplateProcessing id out of range");
                    if ((rc = post_push(t, (int32_t)id, err))) return rc;
                }
            } else if (json_get(it, "Sequence")) {
                const char *sid = json_str(json_get(json_get(it, "Sequence"), "id"), "A");
                if (!strcmp(sid, "A") && (rc = post_push(t, -1, err))) return rc;
            } else {
                return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: bad TemplateProcessing item");
            }
        }
        return 0;
    }
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        int64_t cls, sep;
        if (json_int(json_at(json_get(j, "cls"), 1), 0, t->n_vocab - 1, &cls) ||
            json_int(json_at(json_get(j, "sep"), 1), 0, t->n_vocab - 1, &sep))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: %s is malformed", ty);
        t->n_post_single = 0;
        if ((rc = post_push(t, (int32_t)cls, err)) || (rc = post_push(t, -1, err)) ||
            (rc = post_push(t, (int32_t)sep, err)))
            return rc;
        return 0;
    }
    return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: post-processor type '%s' is not supported",
                        ty);
}

// ---- model + added tokens ----

static int load_model(struct tokenizer *t, const struct json *root, struct lfmd_err_ctx *err) {
    const struct json *model = json_get(root, "model");
    const struct json *added = json_get(root, "added_tokens");
    if (!json_is(model, JSON_OBJECT))
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: no \"model\" object");
    const char *ty = json_str(json_get(model, "type"), "BPE");
    if (strcmp(ty, "BPE") != 0)
        return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: model type '%s' is not supported "
                                               "(only BPE)", ty);
    const struct json *vocab = json_get(model, "vocab");
    const struct json *merges = json_get(model, "merges");
    if (!json_is(vocab, JSON_OBJECT))
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: model.vocab is not an object");
    if (merges && !json_is(merges, JSON_ARRAY))
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: model.merges is not an array");
    if (added && !json_is(added, JSON_ARRAY) && !json_is(added, JSON_NULL))
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: added_tokens is not an array");
    const char *cp = json_str(json_get(model, "continuing_subword_prefix"), "");
    const char *ew = json_str(json_get(model, "end_of_word_suffix"), "");
    if (*cp || *ew)
        return lfmd_err_set(err, LFMD_ENOTSUP, "tokenizer: BPE %s is not supported",
                            *cp ? "continuing_subword_prefix" : "end_of_word_suffix");

    // Id space: the largest id of the vocab and the added tokens.
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        int64_t id;
        if (json_int(&vocab->u.items[i], 0, LFMD_MAX_VOCAB - 1, &id))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: vocab entry '%.64s' has a bad id "
                                                   "(not an integer in 0..%d)",
                                vocab->u.items[i].key, LFMD_MAX_VOCAB - 1);
        if (id > max_id) max_id = id;
    }
    size_t n_added = json_is(added, JSON_ARRAY) ? added->len : 0;
    for (size_t i = 0; i < n_added; i++) {
        int64_t id;
        const struct json *a = &added->u.items[i];
        if (json_int(json_get(a, "id"), 0, LFMD_MAX_VOCAB - 1, &id) ||
            !json_is(json_get(a, "content"), JSON_STRING))
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: added_tokens[%zu] is malformed", i);
        if (id > max_id) max_id = id;
    }
    int rc = tokenizer__set_n_vocab(t, max_id + 1, err);
    if (rc) return rc;
    for (size_t i = 0; i < vocab->len; i++) {
        int64_t id;
        (void)json_int(&vocab->u.items[i], 0, LFMD_MAX_VOCAB - 1, &id);
        if ((rc = tokenizer__set_token(t, (int32_t)id, vocab->u.items[i].key,
                                       vocab->u.items[i].key_len, 0, err)))
            return rc;
    }
    if (n_added) {
        t->added = lfmd_calloc(n_added, sizeof *t->added, LFMD_MEM_TOKENIZER);
        if (!t->added) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < n_added; i++) {
        const struct json *a = &added->u.items[i];
        const struct json *c = json_get(a, "content");
        int64_t id;
        (void)json_int(json_get(a, "id"), 0, LFMD_MAX_VOCAB - 1, &id);
        struct tk_added *ad = &t->added[t->n_added];
        ad->id = (int32_t)id;
        ad->special = json_bool(json_get(a, "special"), false);
        ad->lstrip = json_bool(json_get(a, "lstrip"), false);
        ad->rstrip = json_bool(json_get(a, "rstrip"), false);
        ad->single_word = json_bool(json_get(a, "single_word"), false);
        ad->normalized = json_bool(json_get(a, "normalized"), !ad->special);
        ad->len = c->len;
        ad->text = dupn(c->u.str, c->len);
        if (!ad->text) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
        t->n_added++;
        unsigned attr = TOKENIZER_ATTR_ADDED | (ad->special ? TOKENIZER_ATTR_SPECIAL : 0);
        if ((rc = tokenizer__set_token(t, ad->id, c->u.str, c->len, attr, err))) return rc;
    }
    if ((rc = tokenizer__build_vocab_hash(t, err))) return rc;

    size_t n_merges = merges ? merges->len : 0;
    if ((rc = tokenizer__merges_reserve(t, n_merges, err))) return rc;
    for (size_t i = 0; i < n_merges; i++) {
        const struct json *m = &merges->u.items[i];
        const char *l, *r;
        size_t ll, rl;
        if (json_is(m, JSON_STRING)) {
            const char *sp = memchr(m->u.str, ' ', m->len);
            if (!sp)
                return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: merge %zu ('%.64s') has no space",
                                    i, m->u.str);
            l = m->u.str;
            ll = (size_t)(sp - l);
            r = sp + 1;
            rl = m->len - ll - 1;
        } else if (json_is(m, JSON_ARRAY) && m->len == 2 && json_is(&m->u.items[0], JSON_STRING) &&
                   json_is(&m->u.items[1], JSON_STRING)) {
            l = m->u.items[0].u.str;
            ll = m->u.items[0].len;
            r = m->u.items[1].u.str;
            rl = m->u.items[1].len;
        } else {
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: merge %zu is neither \"a b\" nor "
                                                   "[\"a\", \"b\"]", i);
        }
        if ((rc = tokenizer__merge_add(t, l, ll, r, rl, (int32_t)i, err))) return rc;
    }
    t->byte_fallback = json_bool(json_get(model, "byte_fallback"), false);
    t->fuse_unk = json_bool(json_get(model, "fuse_unk"), false);
    t->ignore_merges = json_bool(json_get(model, "ignore_merges"), false);
    const struct json *unk = json_get(model, "unk_token");
    if (json_is(unk, JSON_STRING)) {
        t->unk_id = tokenizer_token_id(t, unk->u.str, unk->len);
        if (t->unk_id < 0)
            return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: unk_token '%.64s' is not in the vocab",
                                unk->u.str);
    }
    return 0;
}

// ---- config files ----

// A special-token field of tokenizer_config.json: "text" or {"content": "text", ...}.
static const struct json *special_field(const struct json *cfg, const char *name) {
    const struct json *v = json_get(cfg, name);
    if (json_is(v, JSON_OBJECT)) v = json_get(v, "content");
    return json_is(v, JSON_STRING) ? v : NULL;
}

static int load_config(struct tokenizer *t, const struct json *cfg, struct lfmd_err_ctx *err) {
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    char **dst[] = {&t->bos_text, &t->eos_text, &t->unk_text, &t->pad_text};
    for (int i = 0; i < 4; i++) {
        const struct json *v = special_field(cfg, names[i]);
        if (!v) continue;
        *dst[i] = dupn(v->u.str, v->len);
        if (!*dst[i]) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    if (t->bos_text) t->bos_id = tokenizer_token_id(t, t->bos_text, strlen(t->bos_text));
    if (t->eos_text) t->eos_id = tokenizer_token_id(t, t->eos_text, strlen(t->eos_text));
    const struct json *ct = json_get(cfg, "chat_template");
    if (json_is(ct, JSON_ARRAY)) { // [{"name": "default", "template": "..."}, ...]
        const struct json *pick = NULL;
        for (size_t i = 0; i < ct->len; i++) {
            const struct json *it = &ct->u.items[i];
            if (!pick || jstr_is(json_get(it, "name"), "default")) pick = it;
        }
        ct = json_get(pick, "template");
    }
    if (json_is(ct, JSON_STRING)) {
        t->chat_template_src = dupn(ct->u.str, ct->len);
        if (!t->chat_template_src) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    }
    return 0;
}

static int load_generation_config(struct tokenizer *t, const struct json *g) {
    const struct json *e = json_get(g, "eos_token_id");
    int64_t id;
    if (json_is(e, JSON_ARRAY)) {
        for (size_t i = 0; i < e->len; i++)
            if (!json_int(&e->u.items[i], 0, t->n_vocab - 1, &id)) tokenizer__add_eos(t, (int32_t)id);
    } else if (!json_int(e, 0, t->n_vocab - 1, &id)) {
        tokenizer__add_eos(t, (int32_t)id);
        if (t->eos_id < 0) t->eos_id = (int32_t)id;
    }
    if (t->bos_id < 0 && !json_int(json_get(g, "bos_token_id"), 0, t->n_vocab - 1, &id))
        t->bos_id = (int32_t)id;
    return 0;
}

int tokenizer_load(const char *path, struct tokenizer **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    char dir[4096], file[4200];
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return lfmd_err_set(err, LFMD_ENOENT, "tokenizer: %s: %s", path ? path : "(null)",
                            strerror(errno));
    if (strlen(path) >= sizeof dir)
        return lfmd_err_set(err, LFMD_EINVAL, "tokenizer: path too long");
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(file, sizeof file, "%s/tokenizer.json", dir);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    struct tokenizer *t = tokenizer__new();
    struct json_doc *doc = NULL;
    if (!t) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    int rc = parse_file(file, LFMD_MAX_TOKENIZER_BYTES, &doc, err);
    if (rc) goto fail;
    const struct json *root = json_root(doc);
    if (!json_is(root, JSON_OBJECT)) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: top level is not an object", file);
        goto fail;
    }
    if ((rc = load_model(t, root, err))) goto fail;
    if ((rc = add_norm(t, json_get(root, "normalizer"), 0, err))) goto fail;
    if ((rc = add_pre(t, json_get(root, "pre_tokenizer"), 0, err))) goto fail;
    if ((rc = add_post(t, json_get(root, "post_processor"), 0, err))) goto fail;
    if ((rc = add_dec(t, json_get(root, "decoder"), 0, err))) goto fail;
    json_doc_free(doc);
    doc = NULL;

    char cfg[4300];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    rc = parse_file(cfg, LFMD_MAX_CONFIG_BYTES, &doc, err);
    if (rc == LFMD_ENOENT) {
        lfmd_err_clear(err);
        rc = 0;
    } else if (rc) {
        goto fail;
    } else {
        if ((rc = load_config(t, json_root(doc), err))) goto fail;
        json_doc_free(doc);
        doc = NULL;
    }
    // Without a config, BOS comes from the post-processor template's first special token.
    if (t->bos_id < 0 && t->n_post_single && t->post_single[0] >= 0) t->bos_id = t->post_single[0];
    snprintf(cfg, sizeof cfg, "%s/generation_config.json", dir);
    struct lfmd_err_ctx e2 = {0};
    if (parse_file(cfg, LFMD_MAX_CONFIG_BYTES, &doc, &e2) == 0) {
        load_generation_config(t, json_root(doc));
        json_doc_free(doc);
        doc = NULL;
    }
    if ((rc = tokenizer__finish(t, err))) goto fail;
    if (t->chat_template_src && (rc = chat_template__compile(t, t->chat_template_src, err)))
        goto fail;
    *out = t;
    return 0;
fail:
    json_doc_free(doc);
    tokenizer_free(t);
    return rc;
}
