// BPE on one pre-tokenized piece: initial symbols (mapped bytes for byte-level models; UTF-8 chars,
// <0xNN> byte fallback or <unk> for SentencePiece-style ones), then repeated merging of the
// lowest-ranked adjacent pair, leftmost first, exactly as the Rust library's merge_word.
// Short words use a linear scan over cached pair ranks; long ones a binary heap with lazy
// invalidation, so the cost stays O(n log n). No allocation once the scratch has grown.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/limits.h"

#include <string.h>

struct bpe_sym {
    int32_t id;
    int32_t prev, next; // -1 at the ends
    int32_t rank;       // rank of the pair (this, next), INT32_MAX if none (scan mode)
};

struct bpe_item {
    int32_t rank;
    int32_t pos;
    int32_t left, right; // ids at push time; a stale item no longer matches
};

#define NO_RANK INT32_MAX
#define SCAN_MAX 192 // words up to this many symbols use the quadratic scan

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (*cap >= need) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = *p ? lfmd_realloc(*p, c * elem) : lfmd_malloc(c * elem, LFMD_MEM_REQUEST);
    if (!q) return LFMD_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

void bpe__scratch_fini(struct bpe_scratch *s) {
    lfmd_free(s->syms);
    lfmd_free(s->heap);
    lfmd_free(s->word);
    memset(s, 0, sizeof *s);
}

static int push_id(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        if (*n >= LFMD_MAX_CTX * 4u) return LFMD_ETOOBIG;
        size_t c = *cap ? *cap * 2 : 256;
        int32_t *v = *ids ? lfmd_realloc(*ids, c * sizeof *v)
                          : lfmd_malloc(c * sizeof *v, LFMD_MEM_REQUEST);
        if (!v) return LFMD_ENOMEM;
        *ids = v;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

static inline int32_t pair_rank(const struct tokenizer *t, const struct bpe_sym *s, int32_t i) {
    if (s[i].next < 0) return NO_RANK;
    const struct merge_slot *m = tokenizer__merge_find(t, s[i].id, s[s[i].next].id);
    return m ? m->rank : NO_RANK;
}

// Score-based merging (GGUF SentencePiece vocab without merges): a pair merges when the joined
// text is a token; the highest score wins. Rank = -score order is emulated via the score.
static inline int32_t pair_rank_score(const struct tokenizer *t, const struct bpe_sym *s, int32_t i,
                                      int32_t *res) {
    if (s[i].next < 0) return NO_RANK;
    int32_t a = s[i].id, b = s[s[i].next].id;
    char tmp[512];
    size_t la = t->tok_len[a], lb = t->tok_len[b];
    if (la + lb > sizeof tmp) return NO_RANK;
    memcpy(tmp, t->pool + t->tok_off[a], la);
    memcpy(tmp + la, t->pool + t->tok_off[b], lb);
    int32_t id = tokenizer_token_id(t, tmp, la + lb);
    if (id < 0) return NO_RANK;
    *res = id;
    // Higher score = lower rank. Map a float score monotonically into int32.
    float sc = t->scores ? t->scores[id] : 0.0f;
    double r = -(double)sc * 1000.0;
    if (r < -2e9) r = -2e9;
    if (r > 2e9) r = 2e9;
    return (int32_t)r;
}

static void heap_push(struct bpe_item *h, size_t *n, struct bpe_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < it.rank || (h[p].rank == it.rank && h[p].pos < it.pos)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static struct bpe_item heap_pop(struct bpe_item *h, size_t *n) {
    struct bpe_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n &&
            (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos)))
            c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos < h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int merge_result(const struct tokenizer *t, const struct bpe_sym *s, int32_t i) {
    if (t->merge_by_score) {
        int32_t res = -1;
        pair_rank_score(t, s, i, &res);
        return res;
    }
    return tokenizer__merge_find(t, s[i].id, s[s[i].next].id)->result;
}

static inline int32_t rank_of(const struct tokenizer *t, const struct bpe_sym *s, int32_t i) {
    if (t->merge_by_score) {
        int32_t res;
        return pair_rank_score(t, s, i, &res);
    }
    return pair_rank(t, s, i);
}

int bpe__encode_piece(const struct tokenizer *t, const char *p, size_t n, struct bpe_scratch *s,
                      int32_t **ids, size_t *n_ids, size_t *cap_ids) {
    int rc;
    if (!n) return 0;
    const uint8_t *u = (const uint8_t *)p;

    // ignore_merges: a piece that is itself a token is emitted whole.
    if (t->ignore_merges) {
        int32_t id;
        if (t->byte_level) {
            if ((rc = grow((void **)&s->word, &s->cap_word, n * 2 + 1, 1))) return rc;
            size_t w = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t cp = tokenizer__byte_to_cp(u[i]);
                if (cp < 0x80) s->word[w++] = (char)cp;
                else {
                    s->word[w++] = (char)(0xC0 | (cp >> 6));
                    s->word[w++] = (char)(0x80 | (cp & 0x3F));
                }
            }
            id = tokenizer_token_id(t, s->word, w);
        } else {
            id = tokenizer_token_id(t, p, n);
        }
        if (id >= 0) return push_id(ids, n_ids, cap_ids, id);
    }

    // ---- initial symbols ----
    if ((rc = grow((void **)&s->syms, &s->cap_syms, n, sizeof *s->syms))) return rc;
    struct bpe_sym *sy = s->syms;
    int32_t ns = 0;
    bool last_unk = false;
    for (size_t i = 0; i < n;) {
        int32_t id = -1;
        size_t adv = 1;
        if (t->byte_level) {
            id = t->byte_sym[u[i]];
        } else {
            pretok__utf8_next(u + i, n - i, &adv);
            id = tokenizer_token_id(t, p + i, adv);
            if (id < 0 && t->byte_fallback) {
                bool all = true;
                for (size_t k = 0; k < adv; k++) all = all && t->byte_fallback_id[u[i + k]] >= 0;
                if (all) {
                    for (size_t k = 0; k < adv; k++)
                        sy[ns++] = (struct bpe_sym){t->byte_fallback_id[u[i + k]], -1, -1, 0};
                    last_unk = false;
                    i += adv;
                    continue;
                }
            }
        }
        if (id < 0) {
            if (t->unk_id >= 0 && !(t->fuse_unk && last_unk)) {
                sy[ns++] = (struct bpe_sym){t->unk_id, -1, -1, 0};
                last_unk = true;
            }
            i += adv;
            continue;
        }
        sy[ns++] = (struct bpe_sym){id, -1, -1, 0};
        last_unk = false;
        i += adv;
    }
    for (int32_t i = 0; i < ns; i++) {
        sy[i].prev = i - 1;
        sy[i].next = i + 1 < ns ? i + 1 : -1;
    }
    if (ns == 0) return 0;

    // ---- merging ----
    if (ns <= SCAN_MAX) {
        for (int32_t i = 0; i < ns; i++) sy[i].rank = rank_of(t, sy, i);
        for (;;) {
            int32_t best = -1, br = NO_RANK;
            for (int32_t i = 0; i >= 0; i = sy[i].next)
                if (sy[i].rank < br) {
                    br = sy[i].rank;
                    best = i;
                }
            if (best < 0) break;
            int32_t r = sy[best].next;
            sy[best].id = merge_result(t, sy, best);
            sy[best].next = sy[r].next;
            if (sy[r].next >= 0) sy[sy[r].next].prev = best;
            sy[r].id = -1;
            sy[best].rank = rank_of(t, sy, best);
            if (sy[best].prev >= 0) sy[sy[best].prev].rank = rank_of(t, sy, sy[best].prev);
        }
    } else {
        if ((rc = grow((void **)&s->heap, &s->cap_heap, (size_t)ns * 2, sizeof *s->heap)))
            return rc;
        size_t nh = 0;
        for (int32_t i = 0; i + 1 < ns; i++) {
            int32_t r = rank_of(t, sy, i);
            if (r != NO_RANK) heap_push(s->heap, &nh, (struct bpe_item){r, i, sy[i].id, sy[i + 1].id});
        }
        while (nh) {
            struct bpe_item it = heap_pop(s->heap, &nh);
            int32_t i = it.pos, r = sy[i].next;
            if (sy[i].id != it.left || r < 0 || sy[r].id != it.right) continue; // stale
            sy[i].id = merge_result(t, sy, i);
            sy[i].next = sy[r].next;
            if (sy[r].next >= 0) sy[sy[r].next].prev = i;
            sy[r].id = -1;
            // Heap size stays bounded: each merge adds at most two items and removes one symbol.
            if ((rc = grow((void **)&s->heap, &s->cap_heap, nh + 2, sizeof *s->heap))) return rc;
            int32_t pr = sy[i].prev;
            if (pr >= 0) {
                int32_t k = rank_of(t, sy, pr);
                if (k != NO_RANK)
                    heap_push(s->heap, &nh, (struct bpe_item){k, pr, sy[pr].id, sy[i].id});
            }
            if (sy[i].next >= 0) {
                int32_t k = rank_of(t, sy, i);
                if (k != NO_RANK)
                    heap_push(s->heap, &nh, (struct bpe_item){k, i, sy[i].id, sy[sy[i].next].id});
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if ((rc = push_id(ids, n_ids, cap_ids, sy[i].id))) return rc;
    return 0;
}
