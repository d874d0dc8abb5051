// Decoding: ids -> token strings -> the decoder chain (ByteLevel, Replace, ByteFallback, Fuse,
// Strip, Metaspace) exactly as Hugging Face decode does (no clean-up pass), and a streaming
// decoder that only ever emits complete UTF-8 characters.
// Invariant: invalid UTF-8 becomes U+FFFD per maximal ill-formed subpart (Rust from_utf8_lossy),
// except where ByteFallback itself emits one U+FFFD per byte, as the Rust decoder does.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/limits.h"

#include <string.h>

static const char REPL[] = "\xEF\xBF\xBD";

// Length of a valid UTF-8 sequence at s[0..n): >0 valid length; 0 = incomplete but valid so far
// (only possible when it runs into the end); <0 = -(maximal ill-formed subpart length).
static int utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t b = s[i];
        if (b < lo || b > hi) return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return need;
}

// Appends s as UTF-8, replacing ill-formed parts. With hold != NULL an incomplete tail is not
// emitted: its length is stored in *hold.
static int lossy_append(struct buf *o, const uint8_t *s, size_t n, size_t *hold) {
    size_t i = 0, run = 0;
    int rc = 0;
    while (i < n) {
        int k = utf8_seq(s + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if ((rc = buf_append(o, s + run, i - run))) return rc;
        if (k == 0 && hold) {
            *hold = n - i;
            return 0;
        }
        if ((rc = buf_append(o, REPL, 3))) return rc;
        i += k == 0 ? n - i : (size_t)(-k);
        run = i;
    }
    if (hold) *hold = 0;
    return buf_append(o, s + run, i - run);
}

// ---- token lists ----

struct toks {
    struct buf text;
    struct tk_piece *v;
    size_t n, cap;
};

static int toks_push(struct toks *l, const void *s, size_t n) {
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        struct tk_piece *v = l->v ? lfmd_realloc(l->v, c * sizeof *v)
                                  : lfmd_malloc(c * sizeof *v, LFMD_MEM_REQUEST);
        if (!v) return LFMD_ENOMEM;
        l->v = v;
        l->cap = c;
    }
    size_t off = l->text.len;
    int rc = buf_append(&l->text, s, n);
    if (rc) return rc;
    l->v[l->n++] = (struct tk_piece){(uint32_t)off, (uint32_t)n};
    return 0;
}

// Appends to the last token (creating one if the list is empty).
static int toks_extend(struct toks *l, const void *s, size_t n) {
    if (!l->n) return toks_push(l, s, n);
    int rc = buf_append(&l->text, s, n);
    if (!rc) l->v[l->n - 1].len += (uint32_t)n;
    return rc;
}

static void toks_fini(struct toks *l) {
    buf_fini(&l->text);
    lfmd_free(l->v);
}

static int byte_of_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

// Byte-level: the mapped chars of s back to bytes; false if some char is not in the map.
static bool bytelevel_bytes(const char *s, size_t n, uint8_t *out, size_t *out_n) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = pretok__utf8_next((const uint8_t *)s + i, n - i, &adv);
        int b = tokenizer__cp_to_byte(cp);
        if (b < 0) return false;
        out[k++] = (uint8_t)b;
        i += adv;
    }
    *out_n = k;
    return true;
}

static int replace_into(struct buf *o, const char *s, size_t n, const char *a, size_t al,
                        const char *b, size_t bl) {
    int rc = 0;
    size_t i = 0;
    while (!rc && i < n) {
        if (al && n - i >= al && !memcmp(s + i, a, al)) {
            rc = buf_append(o, b, bl);
            i += al;
        } else {
            rc = buf_putc(o, s[i++]);
        }
    }
    return rc;
}

static int apply_step(const struct tk_dec *d, struct toks *in, struct toks *out) {
    int rc = 0;
    struct buf tmp;
    buf_init(&tmp, (size_t)LFMD_MAX_TOKENIZER_BYTES * 4, LFMD_MEM_REQUEST);
    switch (d->kind) {
    case TK_DEC_BYTELEVEL: {
        for (size_t i = 0; !rc && i < in->n; i++) {
            const char *s = in->text.data + in->v[i].off;
            size_t n = in->v[i].len, k;
            // Worst case one byte per char: reserve n bytes in tmp, then fill.
            size_t base = tmp.len;
            if ((rc = buf_append(&tmp, s, n))) break;
            if (bytelevel_bytes(s, n, (uint8_t *)tmp.data + base, &k)) tmp.len = base + k;
        }
        if (!rc && (in->n || tmp.len)) {
            struct buf o;
            buf_init(&o, tmp.max_bytes, LFMD_MEM_REQUEST);
            rc = lossy_append(&o, (const uint8_t *)(tmp.data ? tmp.data : ""), tmp.len, NULL);
            if (!rc) rc = toks_push(out, o.data ? o.data : "", o.len);
            buf_fini(&o);
        }
        break;
    }
    case TK_DEC_REPLACE:
    case TK_DEC_METASPACE:
        for (size_t i = 0; !rc && i < in->n; i++) {
            buf_reset(&tmp);
            const char *s = in->text.data + in->v[i].off;
            size_t n = in->v[i].len;
            rc = d->kind == TK_DEC_REPLACE ? replace_into(&tmp, s, n, d->a, d->a_len, d->b, d->b_len)
                                           : replace_into(&tmp, s, n, d->a, d->a_len, " ", 1);
            size_t skip = d->kind == TK_DEC_METASPACE && d->prefix && i == 0 && tmp.len &&
                                  tmp.data[0] == ' '
                              ? 1
                              : 0;
            if (!rc) rc = toks_push(out, tmp.data ? tmp.data + skip : "", tmp.len - skip);
        }
        break;
    case TK_DEC_BYTEFALLBACK: {
        size_t nb = 0; // pending bytes live in tmp
        for (size_t i = 0; !rc && i <= in->n; i++) {
            int b = i < in->n ? byte_of_token(in->text.data + in->v[i].off, in->v[i].len) : -1;
            if (b >= 0) {
                uint8_t c = (uint8_t)b;
                rc = buf_append(&tmp, &c, 1);
                nb++;
                continue;
            }
            if (nb) {
                // Valid UTF-8 as a whole -> one string, else one U+FFFD per byte.
                bool ok = true;
                for (size_t k = 0; k < tmp.len && ok;) {
                    int q = utf8_seq((const uint8_t *)tmp.data + k, tmp.len - k);
                    if (q <= 0) ok = false;
                    else k += (size_t)q;
                }
                if (ok) rc = toks_push(out, tmp.data, tmp.len);
                else {
                    struct buf r;
                    buf_init(&r, tmp.max_bytes, LFMD_MEM_REQUEST);
                    for (size_t k = 0; !rc && k < nb; k++) rc = buf_append(&r, REPL, 3);
                    if (!rc) rc = toks_push(out, r.data, r.len);
                    buf_fini(&r);
                }
                buf_reset(&tmp);
                nb = 0;
            }
            if (!rc && i < in->n) rc = toks_push(out, in->text.data + in->v[i].off, in->v[i].len);
        }
        break;
    }
    case TK_DEC_FUSE:
        if (in->n) rc = toks_push(out, "", 0);
        for (size_t i = 0; !rc && i < in->n; i++)
            rc = toks_extend(out, in->text.data + in->v[i].off, in->v[i].len);
        break;
    case TK_DEC_STRIP:
        for (size_t i = 0; !rc && i < in->n; i++) {
            const char *s = in->text.data + in->v[i].off;
            size_t n = in->v[i].len, a = 0, b = n;
            for (int k = 0; k < d->start && b - a >= d->a_len && !memcmp(s + a, d->a, d->a_len); k++)
                a += d->a_len;
            for (int k = 0; k < d->stop && b - a >= d->a_len && !memcmp(s + b - d->a_len, d->a, d->a_len);
                 k++)
                b -= d->a_len;
            rc = toks_push(out, s + a, b - a);
        }
        break;
    }
    buf_fini(&tmp);
    return rc;
}

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                     char **text_out, size_t *len_out, struct lfmd_err_ctx *err) {
    *text_out = NULL;
    if (len_out) *len_out = 0;
    size_t max = (size_t)LFMD_MAX_TOKENIZER_BYTES * 4;
    struct toks a = {0}, b = {0};
    buf_init(&a.text, max, LFMD_MEM_REQUEST);
    buf_init(&b.text, max, LFMD_MEM_REQUEST);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) {
            rc = lfmd_err_set(err, LFMD_EINVAL, "detokenize: id %d is outside 0..%d", id,
                              t->n_vocab - 1);
            break;
        }
        unsigned at = t->tok_attr[id];
        if ((at & TOKENIZER_ATTR_UNUSED) || (skip_special && (at & TOKENIZER_ATTR_SPECIAL)))
            continue;
        rc = toks_push(&a, t->pool + t->tok_off[id], t->tok_len[id]);
    }
    for (size_t k = 0; !rc && k < t->n_decs; k++) {
        b.n = 0;
        buf_reset(&b.text);
        rc = apply_step(&t->decs[k], &a, &b);
        struct toks sw = a;
        a = b;
        b = sw;
    }
    struct buf o;
    buf_init(&o, max, LFMD_MEM_REQUEST);
    for (size_t i = 0; !rc && i < a.n; i++) {
        if (!t->n_decs && i) rc = buf_putc(&o, ' ');
        if (!rc) rc = buf_append(&o, a.text.data + a.v[i].off, a.v[i].len);
    }
    if (!rc) rc = buf_append(&o, "", 0); // ensure data is allocated and NUL-terminated
    toks_fini(&a);
    toks_fini(&b);
    if (rc) {
        buf_fini(&o);
        if (!err || !err->code) lfmd_err_set(err, rc, "detokenize: %s", lfmd_strerror(rc));
        return rc;
    }
    size_t len;
    char *s = buf_take(&o, &len);
    if (!s) {
        s = lfmd_malloc(1, LFMD_MEM_REQUEST);
        if (!s) return lfmd_err_set(err, LFMD_ENOMEM, "detokenize: out of memory");
        s[0] = 0;
        len = 0;
    }
    *text_out = s;
    if (len_out) *len_out = len;
    return 0;
}

// ---- streaming ----

void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool skip_special) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->skip_special = skip_special;
}

void tok_stream_fini(struct tok_stream *s) { memset(s, 0, sizeof *s); }

// Raw bytes of one token after the decoder chain's per-token steps.
static int token_bytes(const struct tokenizer *t, int32_t id, bool first, struct buf *o) {
    const char *s = t->pool + t->tok_off[id];
    size_t n = t->tok_len[id];
    int rc = buf_append(o, s, n);
    struct buf tmp;
    buf_init(&tmp, o->max_bytes, LFMD_MEM_REQUEST);
    for (size_t k = 0; !rc && k < t->n_decs; k++) {
        const struct tk_dec *d = &t->decs[k];
        size_t m;
        buf_reset(&tmp);
        switch (d->kind) {
        case TK_DEC_BYTELEVEL:
            if (o->len && bytelevel_bytes(o->data, o->len, (uint8_t *)o->data, &m)) o->len = m;
            continue;
        case TK_DEC_BYTEFALLBACK: {
            int b = o->len ? byte_of_token(o->data, o->len) : -1;
            if (b >= 0) {
                o->data[0] = (char)b;
                o->len = 1;
            }
            continue;
        }
        case TK_DEC_FUSE: continue;
        case TK_DEC_REPLACE:
        case TK_DEC_METASPACE:
            rc = replace_into(&tmp, o->data ? o->data : "", o->len, d->a, d->a_len,
                              d->kind == TK_DEC_REPLACE ? d->b : " ",
                              d->kind == TK_DEC_REPLACE ? d->b_len : 1);
            if (!rc) {
                size_t skip =
                    d->kind == TK_DEC_METASPACE && d->prefix && first && tmp.len && tmp.data[0] == ' ';
                buf_reset(o);
                rc = buf_append(o, tmp.data ? tmp.data + skip : "", tmp.len - skip);
            }
            continue;
        case TK_DEC_STRIP: {
            size_t a = 0;
            for (int i = 0; first && i < d->start && o->len - a >= d->a_len &&
                            !memcmp(o->data + a, d->a, d->a_len);
                 i++)
                a += d->a_len;
            if (a) {
                memmove(o->data, o->data + a, o->len - a);
                o->len -= a;
            }
            continue;
        }
        }
    }
    buf_fini(&tmp);
    return rc;
}

int tok_stream_push(struct tok_stream *s, int32_t id, struct buf *out) {
    const struct tokenizer *t = s->t;
    if (id < 0 || id >= t->n_vocab) return LFMD_EINVAL;
    unsigned at = t->tok_attr[id];
    if ((at & TOKENIZER_ATTR_UNUSED) || (s->skip_special && (at & TOKENIZER_ATTR_SPECIAL))) return 0;
    struct buf tb, tok;
    buf_init(&tb, (size_t)LFMD_MAX_TOKENIZER_BYTES, LFMD_MEM_REQUEST);
    buf_init(&tok, (size_t)LFMD_MAX_TOKENIZER_BYTES, LFMD_MEM_REQUEST);
    int rc = token_bytes(t, id, !s->started, &tok);
    if (!rc) rc = buf_append(&tb, s->pending, s->n_pending);
    if (!rc) rc = buf_append(&tb, tok.data ? tok.data : "", tok.len);
    buf_fini(&tok);
    s->started = true;
    size_t hold = 0;
    if (!rc) rc = lossy_append(out, (const uint8_t *)(tb.data ? tb.data : ""), tb.len, &hold);
    if (!rc) {
        memcpy(s->pending, tb.data + tb.len - hold, hold);
        s->n_pending = (uint8_t)hold;
    }
    buf_fini(&tb);
    return rc;
}

int tok_stream_flush(struct tok_stream *s, struct buf *out) {
    int rc = 0;
    if (s->n_pending) rc = lossy_append(out, s->pending, s->n_pending, NULL);
    s->n_pending = 0;
    return rc;
}
