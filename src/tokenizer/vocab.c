// Vocabulary storage (one string pool + per-id offsets), the token-text hash, the merge-rank hash,
// the GPT-2 byte<->char map, the added-token matchers and the public accessors.
// Invariant: ids are dense in [0, n_vocab); an id with no text is a hole (TOKENIZER_ATTR_UNUSED).
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- hashing ----

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

uint64_t tokenizer__hash(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        h = (h ^ rd64(p)) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < n; i++) tail |= (uint64_t)p[i] << (8 * i);
    h = (h ^ tail) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

// ---- lifecycle ----

struct tokenizer *tokenizer__new(void) {
    struct tokenizer *t = lfmd_calloc(1, sizeof *t, LFMD_MEM_TOKENIZER);
    if (!t) return NULL;
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++) t->byte_sym[i] = t->byte_fallback_id[i] = -1;
    return t;
}

void tokenizer_free(struct tokenizer *t) {
    if (!t) return;
    lfmd_free(t->pool);
    lfmd_free(t->tok_off);
    lfmd_free(t->tok_len);
    lfmd_free(t->tok_attr);
    lfmd_free(t->scores);
    lfmd_free(t->vhash);
    lfmd_free(t->merges);
    pretok__free_norms(t->norms, t->n_norms);
    pretok__free_pres(t->pres, t->n_pres);
    for (size_t i = 0; i < t->n_decs; i++) {
        lfmd_free(t->decs[i].a);
        lfmd_free(t->decs[i].b);
    }
    lfmd_free(t->decs);
    for (size_t i = 0; i < t->n_added; i++) lfmd_free(t->added[i].text);
    lfmd_free(t->added);
    lfmd_free(t->match_raw.idx);
    lfmd_free(t->match_norm.idx);
    lfmd_free(t->post_single);
    lfmd_free(t->bos_text);
    lfmd_free(t->eos_text);
    lfmd_free(t->unk_text);
    lfmd_free(t->pad_text);
    lfmd_free(t->chat_template_src);
    chat_template__free(t->chat_template);
    lfmd_free(t->chat_template_err);
    lfmd_free(t);
}

int tokenizer__set_n_vocab(struct tokenizer *t, int64_t n, struct lfmd_err_ctx *err) {
    if (n <= 0 || n > LFMD_MAX_VOCAB)
        return lfmd_err_set(err, n <= 0 ? LFMD_EFORMAT : LFMD_ETOOBIG,
                            "tokenizer: vocabulary size %lld outside 1..%d", (long long)n,
                            LFMD_MAX_VOCAB);
    t->n_vocab = (int32_t)n;
    t->tok_off = lfmd_calloc((size_t)n, sizeof *t->tok_off, LFMD_MEM_TOKENIZER);
    t->tok_len = lfmd_calloc((size_t)n, sizeof *t->tok_len, LFMD_MEM_TOKENIZER);
    t->tok_attr = lfmd_malloc((size_t)n, LFMD_MEM_TOKENIZER);
    if (!t->tok_off || !t->tok_len || !t->tok_attr)
        return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory for %lld tokens",
                            (long long)n);
    memset(t->tok_attr, TOKENIZER_ATTR_UNUSED, (size_t)n);
    return 0;
}

int tokenizer__set_token(struct tokenizer *t, int32_t id, const char *text, size_t len,
                         unsigned attr, struct lfmd_err_ctx *err) {
    if (id < 0 || id >= t->n_vocab)
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: token id %d out of range", id);
    if (len > (1u << 20))
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: token %d is %zu bytes long", id, len);
    if (!(t->tok_attr[id] & TOKENIZER_ATTR_UNUSED)) {
        // Redefinition (an added token that is also in the model vocab): keep the text, add flags.
        t->tok_attr[id] |= (uint8_t)attr;
        return 0;
    }
    if (t->pool_len + len + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap * 2 : (1u << 16);
        while (cap < t->pool_len + len + 1) cap *= 2;
        if (cap > UINT32_MAX)
            return lfmd_err_set(err, LFMD_ETOOBIG, "tokenizer: vocabulary text over 4 GiB");
        char *p = t->pool ? lfmd_realloc(t->pool, cap) : lfmd_malloc(cap, LFMD_MEM_TOKENIZER);
        if (!p) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory (vocab text)");
        t->pool = p;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, text, len);
    t->pool[t->pool_len + len] = 0;
    t->tok_off[id] = (uint32_t)t->pool_len;
    t->tok_len[id] = (uint32_t)len;
    t->tok_attr[id] = (uint8_t)attr;
    t->pool_len += len + 1;
    return 0;
}

static int32_t vocab_find(const struct tokenizer *t, const char *s, size_t n) {
    if (!t->vhash) return -1;
    uint64_t h = tokenizer__hash(s, n);
    for (uint32_t i = (uint32_t)h & t->vhash_mask;; i = (i + 1) & t->vhash_mask) {
        int32_t id = t->vhash[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->pool + t->tok_off[id], s, n) == 0) return id;
    }
}

int tokenizer__build_vocab_hash(struct tokenizer *t, struct lfmd_err_ctx *err) {
    uint32_t cap = 64;
    while (cap < (uint32_t)t->n_vocab * 2u) cap *= 2;
    lfmd_free(t->vhash);
    t->vhash = lfmd_malloc(cap * sizeof *t->vhash, LFMD_MEM_TOKENIZER);
    if (!t->vhash) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory (vocab hash)");
    memset(t->vhash, 0xff, cap * sizeof *t->vhash);
    t->vhash_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->tok_attr[id] & TOKENIZER_ATTR_UNUSED) continue;
        const char *s = t->pool + t->tok_off[id];
        size_t n = t->tok_len[id];
        uint64_t h = tokenizer__hash(s, n);
        for (uint32_t i = (uint32_t)h & t->vhash_mask;; i = (i + 1) & t->vhash_mask) {
            int32_t o = t->vhash[i];
            if (o < 0) {
                t->vhash[i] = id;
                break;
            }
            // Duplicate text: the lowest id wins (first in vocab order).
            if (t->tok_len[o] == n && memcmp(t->pool + t->tok_off[o], s, n) == 0) break;
        }
    }
    return 0;
}

int tokenizer__merges_reserve(struct tokenizer *t, size_t n, struct lfmd_err_ctx *err) {
    if (n > (size_t)LFMD_MAX_VOCAB * 4)
        return lfmd_err_set(err, LFMD_ETOOBIG, "tokenizer: %zu merges is too many", n);
    uint32_t cap = 64;
    while (cap < n * 2 + 1) cap *= 2;
    t->merges = lfmd_calloc(cap, sizeof *t->merges, LFMD_MEM_TOKENIZER);
    if (!t->merges) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory (merges)");
    t->merges_mask = cap - 1;
    return 0;
}

int tokenizer__merge_add(struct tokenizer *t, const char *l, size_t ll, const char *r, size_t rl,
                         int32_t rank, struct lfmd_err_ctx *err) {
    int32_t a = vocab_find(t, l, ll), b = vocab_find(t, r, rl);
    if (a < 0 || b < 0)
        return lfmd_err_set(err, LFMD_EFORMAT, "tokenizer: merge %d names unknown token '%.*s'",
                            rank, (int)(a < 0 ? (ll > 64 ? 64 : ll) : (rl > 64 ? 64 : rl)),
                            a < 0 ? l : r);
    char stackbuf[256];
    char *cat = ll + rl <= sizeof stackbuf ? stackbuf : lfmd_malloc(ll + rl, LFMD_MEM_TOKENIZER);
    if (!cat) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    memcpy(cat, l, ll);
    memcpy(cat + ll, r, rl);
    int32_t res = vocab_find(t, cat, ll + rl);
    if (cat != stackbuf) lfmd_free(cat);
    if (res < 0)
        return lfmd_err_set(err, LFMD_EFORMAT,
                            "tokenizer: merge %d ('%.*s' + '%.*s') gives a token not in the vocab",
                            rank, (int)(ll > 64 ? 64 : ll), l, (int)(rl > 64 ? 64 : rl), r);
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t h = key ^ (key >> 33); // splitmix64 finalizer: every key bit reaches the index
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    for (uint32_t i = (uint32_t)h & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        struct merge_slot *s = &t->merges[i];
        if (s->key == 0 || s->key == key) {
            // A repeated pair takes the later rank, as the Rust library's HashMap collect does.
            if (s->key == 0) t->n_merges++;
            s->key = key;
            s->rank = rank;
            s->result = res;
            return 0;
        }
    }
}

// ---- GPT-2 byte map ----
// Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100.. in byte order.

uint32_t tokenizer__byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) n++;
    return 256 + n;
}

int tokenizer__cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t n = 0;
    for (unsigned c = 0; c < 256; c++) {
        if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE) continue;
        if (256 + n == cp) return (int)c;
        n++;
    }
    return -1;
}

static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

// ---- added-token matchers ----

static int cmp_added(const struct tokenizer *t, uint32_t a, uint32_t b) {
    const struct tk_added *x = &t->added[a];
    const struct tk_added *y = &t->added[b];
    uint8_t fx = (uint8_t)x->text[0], fy = (uint8_t)y->text[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; // longest first
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_matcher(struct tokenizer *t, struct tk_matcher *m, bool normalized,
                         struct lfmd_err_ctx *err) {
    size_t n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len && t->added[i].normalized == normalized) n++;
    memset(m->start, 0, sizeof m->start);
    m->any = n > 0;
    if (!n) return 0;
    m->idx = lfmd_malloc(n * sizeof *m->idx, LFMD_MEM_TOKENIZER);
    if (!m->idx) return lfmd_err_set(err, LFMD_ENOMEM, "tokenizer: out of memory");
    n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len && t->added[i].normalized == normalized) m->idx[n++] = (uint32_t)i;
    for (size_t i = 1; i < n; i++) { // insertion sort: added-token lists are short
        uint32_t v = m->idx[i];
        size_t j = i;
        while (j > 0 && cmp_added(t, m->idx[j - 1], v) > 0) {
            m->idx[j] = m->idx[j - 1];
            j--;
        }
        m->idx[j] = v;
    }
    for (size_t i = 0; i < n; i++) m->start[(uint8_t)t->added[m->idx[i]].text[0] + 1]++;
    for (int b = 0; b < 256; b++) m->start[b + 1] += m->start[b];
    return 0;
}

int tokenizer__add_eos(struct tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 0;
    for (size_t i = 0; i < t->n_eos_ids; i++)
        if (t->eos_ids[i] == id) return 0;
    if (t->n_eos_ids < TK_MAX_EOS) t->eos_ids[t->n_eos_ids++] = id;
    return 0;
}

int tokenizer__finish(struct tokenizer *t, struct lfmd_err_ctx *err) {
    int rc;
    if (!t->vhash && (rc = tokenizer__build_vocab_hash(t, err))) return rc;
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t n = utf8_put(s, tokenizer__byte_to_cp((uint8_t)b));
        t->byte_sym[b] = vocab_find(t, s, n);
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->byte_fallback_id[b] = vocab_find(t, s, 6);
        if (t->byte_fallback_id[b] >= 0) t->tok_attr[t->byte_fallback_id[b]] |= TOKENIZER_ATTR_BYTE;
    }
    t->split_metaspace = !t->byte_level && !t->ignore_merges && vocab_find(t, "\xE2\x96\x81", 3) >= 0;
    for (int32_t id = 0; t->split_metaspace && id < t->n_vocab; id++) {
        const unsigned char *s = (const unsigned char *)t->pool + t->tok_off[id];
        uint32_t n = t->tok_len[id];
        if (t->tok_attr[id] & (TOKENIZER_ATTR_ADDED | TOKENIZER_ATTR_UNUSED)) continue;
        for (uint32_t i = 3; i + 3 <= n; i++)
            if (s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81 &&
                !(s[i - 3] == 0xE2 && s[i - 2] == 0x96 && s[i - 1] == 0x81)) {
                t->split_metaspace = false; // a merge can join a word and a following "▁"
                break;
            }
        for (uint32_t i = 1; t->split_metaspace && i + 3 <= n && i < 3; i++)
            if (s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) t->split_metaspace = false;
    }
    if ((rc = build_matcher(t, &t->match_raw, false, err))) return rc;
    if ((rc = build_matcher(t, &t->match_norm, true, err))) return rc;
    // Turn-ending tokens: the configured eos plus the well-known end-of-turn markers.
    tokenizer__add_eos(t, t->eos_id);
    static const char *const eos_names[] = {"<|im_end|>",    "<|eot_id|>",    "<|end_of_text|>",
                                            "<|endoftext|>", "</s>",          "<end_of_turn>",
                                            "<|eom_id|>",    "<|end|>",       "<|return|>"};
    for (size_t i = 0; i < sizeof eos_names / sizeof eos_names[0]; i++) {
        int32_t id = vocab_find(t, eos_names[i], strlen(eos_names[i]));
        if (id >= 0 && (t->tok_attr[id] & TOKENIZER_ATTR_SPECIAL)) tokenizer__add_eos(t, id);
    }
    return 0;
}

// ---- accessors ----

int32_t tokenizer_n_vocab(const struct tokenizer *t) { return t->n_vocab; }

const char *tokenizer_token_text(const struct tokenizer *t, int32_t id, size_t *len_out) {
    if (id < 0 || id >= t->n_vocab || (t->tok_attr[id] & TOKENIZER_ATTR_UNUSED)) {
        if (len_out) *len_out = 0;
        return NULL;
    }
    if (len_out) *len_out = t->tok_len[id];
    return t->pool + t->tok_off[id];
}

int32_t tokenizer_token_id(const struct tokenizer *t, const char *text, size_t len) {
    return vocab_find(t, text, len);
}

unsigned tokenizer_token_attr(const struct tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return TOKENIZER_ATTR_UNUSED;
    return t->tok_attr[id];
}

bool tokenizer_is_special(const struct tokenizer *t, int32_t id) {
    return (tokenizer_token_attr(t, id) & TOKENIZER_ATTR_SPECIAL) != 0;
}

int32_t tokenizer_bos_id(const struct tokenizer *t) { return t->bos_id; }
int32_t tokenizer_eos_id(const struct tokenizer *t) { return t->eos_id; }

bool tokenizer_is_eos(const struct tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_eos_ids; i++)
        if (t->eos_ids[i] == id) return true;
    return false;
}

const int32_t *tokenizer_eos_ids(const struct tokenizer *t, size_t *n) {
    *n = t->n_eos_ids;
    return t->eos_ids;
}

bool tokenizer_has_template(const struct tokenizer *t) { return t->chat_template != NULL; }
