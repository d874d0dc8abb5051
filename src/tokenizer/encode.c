// Encoding pipeline, in Hugging Face order: added tokens matched in the raw text (leftmost,
// longest, with lstrip/rstrip/single_word), normalizer on the rest, normalized added tokens,
// pre-tokenizers, BPE per piece (with a per-call cache of repeated pieces), post-processor.
// Invariant: reads the tokenizer only; all state is per call, so calls may run concurrently.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/limits.h"

#include <string.h>

#define CACHE_MIN_TEXT 512    // texts shorter than this skip the piece cache
#define CACHE_SLOTS 4096      // power of two
#define CACHE_MAX_PIECE 64    // longer pieces are not cached

struct cache_slot {
    uint64_t hash; // 0 = empty
    uint32_t key_off, key_len;
    uint32_t ids_off, n_ids;
};

struct enc {
    const struct tokenizer *t;
    bool parse_special;
    int32_t *ids;
    size_t n_ids, cap_ids;
    struct buf norm, seg, work;
    struct tk_pieces pieces;
    pcre2_match_data *md;
    struct bpe_scratch bpe;
    struct cache_slot *cache;
    size_t cache_used;
    struct buf cache_keys;
    int32_t *cache_ids;
    size_t n_cache_ids, cap_cache_ids;
};

static int push_id(struct enc *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        if (e->n_ids >= (size_t)LFMD_MAX_CTX * 4) return LFMD_ETOOBIG;
        size_t c = e->cap_ids ? e->cap_ids * 2 : 256;
        int32_t *v = e->ids ? lfmd_realloc(e->ids, c * sizeof *v)
                            : lfmd_malloc(c * sizeof *v, LFMD_MEM_REQUEST);
        if (!v) return LFMD_ENOMEM;
        e->ids = v;
        e->cap_ids = c;
    }
    e->ids[e->n_ids++] = id;
    return 0;
}

// BPE of one piece through the cache.
static int encode_piece(struct enc *e, const char *p, size_t n) {
    if (!e->cache || n > CACHE_MAX_PIECE)
        return bpe__encode_piece(e->t, p, n, &e->bpe, &e->ids, &e->n_ids, &e->cap_ids);
    uint64_t h = tokenizer__hash(p, n) | 1;
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    for (;; i = (i + 1) & (CACHE_SLOTS - 1)) {
        struct cache_slot *s = &e->cache[i];
        if (s->hash == 0) break;
        if (s->hash == h && s->key_len == n && !memcmp(e->cache_keys.data + s->key_off, p, n)) {
            for (uint32_t k = 0; k < s->n_ids; k++) {
                int rc = push_id(e, e->cache_ids[s->ids_off + k]);
                if (rc) return rc;
            }
            return 0;
        }
    }
    size_t before = e->n_ids;
    int rc = bpe__encode_piece(e->t, p, n, &e->bpe, &e->ids, &e->n_ids, &e->cap_ids);
    if (rc || e->cache_used >= CACHE_SLOTS / 2) return rc;
    size_t k = e->n_ids - before;
    if (e->n_cache_ids + k > e->cap_cache_ids) {
        size_t c = e->cap_cache_ids ? e->cap_cache_ids * 2 : 4096;
        while (c < e->n_cache_ids + k) c *= 2;
        int32_t *v = e->cache_ids ? lfmd_realloc(e->cache_ids, c * sizeof *v)
                                  : lfmd_malloc(c * sizeof *v, LFMD_MEM_REQUEST);
        if (!v) return 0; // the cache is an optimisation only
        e->cache_ids = v;
        e->cap_cache_ids = c;
    }
    uint32_t key_off = (uint32_t)e->cache_keys.len;
    if (buf_append(&e->cache_keys, p, n)) return 0;
    memcpy(e->cache_ids + e->n_cache_ids, e->ids + before, k * sizeof(int32_t));
    e->cache[i] = (struct cache_slot){h, key_off, (uint32_t)n, (uint32_t)e->n_cache_ids,
                                      (uint32_t)k};
    e->n_cache_ids += k;
    e->cache_used++;
    return 0;
}

// Pre-tokenizes and encodes one normalized text run with no added tokens in it.
static int encode_plain(struct enc *e, const char *s, size_t n, bool at_start) {
    if (!n) return 0;
    buf_reset(&e->seg);
    int rc = buf_append(&e->seg, s, n);
    if (rc) return rc;
    struct buf *text;
    if ((rc = pretok__run(e->t, &e->seg, at_start, &e->work, &e->pieces, e->md, &text))) return rc;
    for (size_t i = 0; !rc && i < e->pieces.n; i++) {
        const char *p = text->data + e->pieces.v[i].off;
        size_t len = e->pieces.v[i].len;
        if (!e->t->split_metaspace) {
            rc = encode_piece(e, p, len);
            continue;
        }
        // Cut before every "▁" that follows another character (see split_metaspace).
        size_t start = 0;
        for (size_t j = 1; !rc && j + 3 <= len; j++) {
            if ((unsigned char)p[j] == 0xE2 && (unsigned char)p[j + 1] == 0x96 &&
                (unsigned char)p[j + 2] == 0x81 &&
                !(j >= 3 && (unsigned char)p[j - 3] == 0xE2 && (unsigned char)p[j - 2] == 0x96 &&
                  (unsigned char)p[j - 1] == 0x81)) {
                rc = encode_piece(e, p + start, j - start);
                start = j;
            }
        }
        if (!rc) rc = encode_piece(e, p + start, len - start);
    }
    return rc;
}

static bool ends_with_word(const char *s, size_t n) {
    if (!n) return false;
    size_t i = n - 1;
    while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    size_t adv;
    return pretok__is_alnum(pretok__utf8_next((const uint8_t *)s + i, n - i, &adv));
}

static bool starts_with_word(const char *s, size_t n) {
    size_t adv;
    return n && pretok__is_alnum(pretok__utf8_next((const uint8_t *)s, n, &adv));
}

// Splits s[0..n) on the tokens of matcher m; text runs go to `plain` (normalized == false: the
// raw pass, which normalizes runs and recurses with the normalized matcher).
static int split_added(struct enc *e, const struct tk_matcher *m, const char *s, size_t n,
                       bool raw, bool at_start);

static int encode_run(struct enc *e, const char *s, size_t n, bool raw, bool at_start) {
    if (!n) return 0;
    if (!raw) return encode_plain(e, s, n, at_start);
    const struct tokenizer *t = e->t;
    if (!t->n_norms) return split_added(e, &t->match_norm, s, n, false, at_start);
    // Normalize into a private buffer (split_added on it re-enters encode_plain, which uses
    // e->seg/e->work but not e->norm).
    int rc = pretok__normalize(t, s, n, &e->norm);
    if (rc) return rc;
    struct buf nb = e->norm;
    buf_init(&e->norm, e->norm.max_bytes, LFMD_MEM_REQUEST); // keep nb alive while we recurse
    rc = split_added(e, &t->match_norm, nb.data ? nb.data : "", nb.len, false, at_start);
    buf_fini(&e->norm);
    e->norm = nb;
    return rc;
}

static int split_added(struct enc *e, const struct tk_matcher *m, const char *s, size_t n,
                       bool raw, bool at_start) {
    const struct tokenizer *t = e->t;
    if (!m->any) return encode_run(e, s, n, raw, at_start);
    size_t seg = 0, pos = 0;
    int rc = 0;
    while (pos < n) {
        uint8_t b = (uint8_t)s[pos];
        const struct tk_added *hit = NULL;
        for (uint32_t k = m->start[b]; k < m->start[b + 1]; k++) {
            const struct tk_added *a = &t->added[m->idx[k]];
            if (a->len <= n - pos && !memcmp(s + pos, a->text, a->len)) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + hit->len;
        if ((hit->special && !e->parse_special) ||
            (hit->single_word && (ends_with_word(s, start) || starts_with_word(s + stop, n - stop)))) {
            pos = stop; // the Rust matcher consumed this span; it stays part of the text
            continue;
        }
        if (hit->lstrip) {
            size_t a = start;
            while (a > seg) {
                size_t i = a - 1;
                while (i > seg && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
                size_t adv;
                if (!pretok__is_ws(pretok__utf8_next((const uint8_t *)s + i, a - i, &adv))) break;
                a = i;
            }
            start = a;
        }
        if (hit->rstrip) {
            while (stop < n) {
                size_t adv;
                if (!pretok__is_ws(pretok__utf8_next((const uint8_t *)s + stop, n - stop, &adv)))
                    break;
                stop += adv;
            }
        }
        if ((rc = encode_run(e, s + seg, start - seg, raw, at_start && seg == 0))) return rc;
        if ((rc = push_id(e, hit->id))) return rc;
        seg = pos = stop;
    }
    return encode_run(e, s + seg, n - seg, raw, at_start && seg == 0);
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
                     bool parse_special, int32_t **ids_out, size_t *n_out,
                     struct lfmd_err_ctx *err) {
    *ids_out = NULL;
    *n_out = 0;
    if (len > LFMD_MAX_TOKENIZER_BYTES)
        return lfmd_err_set(err, LFMD_ETOOBIG, "tokenize: input of %zu bytes is too large", len);
    struct enc e = {.t = t, .parse_special = parse_special};
    size_t max = (size_t)LFMD_MAX_TOKENIZER_BYTES * 4;
    buf_init(&e.norm, max, LFMD_MEM_REQUEST);
    buf_init(&e.seg, max, LFMD_MEM_REQUEST);
    buf_init(&e.work, max, LFMD_MEM_REQUEST);
    buf_init(&e.cache_keys, max, LFMD_MEM_REQUEST);
    int rc = 0;
    e.md = pcre2_match_data_create(1, NULL);
    if (!e.md) rc = LFMD_ENOMEM;
    if (!rc && len >= CACHE_MIN_TEXT)
        e.cache = lfmd_calloc(CACHE_SLOTS, sizeof *e.cache, LFMD_MEM_REQUEST); // NULL: no cache
    if (!rc && add_special && t->n_post_single) {
        for (size_t i = 0; !rc && i < t->n_post_single && t->post_single[i] >= 0; i++)
            rc = push_id(&e, t->post_single[i]);
    }
    if (!rc) rc = split_added(&e, &t->match_raw, text ? text : "", len, true, true);
    if (!rc && add_special && t->n_post_single) {
        size_t i = 0;
        while (i < t->n_post_single && t->post_single[i] >= 0) i++;
        for (i++; !rc && i < t->n_post_single; i++) rc = push_id(&e, t->post_single[i]);
    }
    pcre2_match_data_free(e.md);
    buf_fini(&e.norm);
    buf_fini(&e.seg);
    buf_fini(&e.work);
    buf_fini(&e.cache_keys);
    lfmd_free(e.pieces.v);
    lfmd_free(e.cache);
    lfmd_free(e.cache_ids);
    bpe__scratch_fini(&e.bpe);
    if (rc) {
        lfmd_free(e.ids);
        return lfmd_err_set(err, rc, "tokenize: %s", rc == LFMD_ETOOBIG ? "too many tokens"
                                                     : rc == LFMD_EINVAL ? "regex match failed"
                                                                         : lfmd_strerror(rc));
    }
    *ids_out = e.ids;
    *n_out = e.n_ids;
    return 0;
}
