// Normalizers (NFC/NFKC/NFD/NFKD, Prepend, Replace, Lowercase) and pre-tokenizers (Split,
// ByteLevel, Metaspace, Digits) with the exact split semantics of Hugging Face tokenizers.
// Regexes run on PCRE2 (UTF + UCP + JIT) after \p{L}, \p{N} and \s are rewritten into the
// Unicode 16 tables the Rust library uses (unicode_classes.h), so rare letters split the same.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "unicode_classes.h"

#include <string.h>
#include <utf8proc.h>

const char pretok__gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---- Unicode helpers ----

uint32_t pretok__utf8_next(const uint8_t *s, size_t n, size_t *adv) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *adv = 1;
        return c;
    }
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!need || c > 0xF4 || need > n) goto bad;
    uint32_t cp = c & (0x7F >> need);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        goto bad;
    *adv = need;
    return cp;
bad:
    *adv = 1;
    return 0xFFFD;
}

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

bool pretok__is_ws(uint32_t cp) {
    return in_ranges(uclass_S_ranges, sizeof uclass_S_ranges / sizeof uclass_S_ranges[0], cp);
}

bool pretok__is_alnum(uint32_t cp) {
    return in_ranges(uclass_L_ranges, sizeof uclass_L_ranges / sizeof uclass_L_ranges[0], cp) ||
           in_ranges(uclass_N_ranges, sizeof uclass_N_ranges / sizeof uclass_N_ranges[0], cp);
}

// ---- regex compilation ----

static void *pc_malloc(size_t n, void *ud) {
    (void)ud;
    return lfmd_malloc(n, LFMD_MEM_TOKENIZER);
}
static void pc_free(void *p, void *ud) {
    (void)ud;
    lfmd_free(p);
}

// Appends the replacement for a class escape; `in_class` selects a bare body vs [..] / [^..].
static int put_class(struct buf *o, const char *body, bool in_class, bool neg) {
    int rc = 0;
    if (!in_class) rc = buf_puts(o, neg ? "[^" : "[");
    if (!rc) rc = buf_puts(o, body);
    if (!rc && !in_class) rc = buf_putc(o, ']');
    return rc;
}

int pretok__compile(const char *pat, size_t len, bool literal, pcre2_code **out,
                    struct lfmd_err_ctx *err) {
    *out = NULL;
    struct buf o;
    buf_init(&o, 1u << 20, LFMD_MEM_TOKENIZER);
    int rc = 0;
    if (literal) {
        rc = buf_puts(&o, "\\Q");
        for (size_t i = 0; !rc && i < len; i++) {
            if (pat[i] == '\\' && i + 1 < len && pat[i + 1] == 'E') rc = buf_puts(&o, "\\E\\\\\\Q");
            else rc = buf_putc(&o, pat[i]);
        }
        if (!rc) rc = buf_puts(&o, "\\E");
    } else {
        bool in_class = false;
        for (size_t i = 0; !rc && i < len; i++) {
            char c = pat[i];
            if (c == '\\' && i + 1 < len) {
                char e = pat[i + 1];
                const char *body = NULL;
                bool neg = false;
                size_t skip = 2;
                if ((e == 'p' || e == 'P') && i + 2 < len) {
                    neg = e == 'P';
                    char cls = 0;
                    if (pat[i + 2] == '{' && i + 4 < len && pat[i + 4] == '}') {
                        cls = pat[i + 3];
                        skip = 5;
                    } else if (pat[i + 2] != '{') {
                        cls = pat[i + 2];
                        skip = 3;
                    }
                    if (cls == 'L') body = UCLASS_L_PCRE;
                    else if (cls == 'N') body = UCLASS_N_PCRE;
                } else if (e == 's' || e == 'S') {
                    body = UCLASS_S_PCRE;
                    neg = e == 'S';
                }
                if (body && !(neg && in_class)) {
                    rc = put_class(&o, body, in_class, neg);
                    i += skip - 1;
                } else {
                    rc = buf_append(&o, pat + i, 2);
                    i++;
                }
                continue;
            }
            if (c == '[' && !in_class) {
                in_class = true;
                rc = buf_putc(&o, c);
                // A ']' right after '[' or '[^' is a literal member.
                if (!rc && i + 1 < len && pat[i + 1] == '^') rc = buf_putc(&o, pat[++i]);
                if (!rc && i + 1 < len && pat[i + 1] == ']') rc = buf_putc(&o, pat[++i]);
                continue;
            }
            if (c == ']' && in_class) in_class = false;
            rc = buf_putc(&o, c);
        }
    }
    if (rc) {
        buf_fini(&o);
        return lfmd_err_set(err, rc, "tokenizer: regex too long");
    }
    pcre2_general_context *gc = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    pcre2_compile_context *cc = gc ? pcre2_compile_context_create(gc) : NULL;
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    pcre2_code *re = NULL;
    if (cc)
        re = pcre2_compile((PCRE2_SPTR)o.data, o.len,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ecode, &eoff, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(gc);
    if (!re) {
        PCRE2_UCHAR msg[160] = "out of memory";
        if (ecode) pcre2_get_error_message(ecode, msg, sizeof msg);
        rc = lfmd_err_set(err, ecode ? LFMD_EFORMAT : LFMD_ENOMEM,
                          "tokenizer: cannot compile regex '%.80s': %s", pat, (char *)msg);
        buf_fini(&o);
        return rc;
    }
    buf_fini(&o);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // falls back to the interpreter if JIT is absent
    *out = re;
    return 0;
}

void pretok__free_norms(struct tk_norm *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        lfmd_free(v[i].a);
        lfmd_free(v[i].b);
        pcre2_code_free(v[i].re);
    }
    lfmd_free(v);
}

void pretok__free_pres(struct tk_pre *v, size_t n) {
    for (size_t i = 0; i < n; i++) pcre2_code_free(v[i].re);
    lfmd_free(v);
}

// ---- normalizers ----

static int norm_unicode(const char *s, size_t n, utf8proc_option_t opts, struct buf *out) {
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++) ascii = (uint8_t)s[i] < 0x80;
    if (ascii) return buf_append(out, s, n);
    utf8proc_ssize_t cnt = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                              NULL, 0, opts);
    if (cnt < 0) return buf_append(out, s, n); // invalid UTF-8: left as is
    // Decompose into the tail of out (as int32 code points), then re-encode in place.
    size_t need = ((size_t)cnt + 1) * sizeof(utf8proc_int32_t);
    size_t base = out->len;
    int rc = buf_append(out, NULL, 0);
    if (rc) return rc;
    // Reserve: append zero bytes and then shrink.
    static const char zeros[256];
    for (size_t left = need + 4; left;) {
        size_t k = left < sizeof zeros ? left : sizeof zeros;
        if ((rc = buf_append(out, zeros, k))) return rc;
        left -= k;
    }
    size_t align = (4 - ((uintptr_t)(out->data + base) & 3)) & 3;
    utf8proc_int32_t *cps = (utf8proc_int32_t *)(void *)(out->data + base + align);
    cnt = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, cps, cnt, opts);
    utf8proc_ssize_t m = cnt < 0 ? cnt : utf8proc_reencode(cps, cnt, opts);
    if (m < 0) {
        out->len = base;
        return buf_append(out, s, n);
    }
    memmove(out->data + base, cps, (size_t)m);
    out->len = base + (size_t)m;
    out->data[out->len] = 0;
    return 0;
}

static int replace_literal(const char *s, size_t n, const char *pat, size_t pl, const char *rep,
                           size_t rl, struct buf *out) {
    int rc = 0;
    size_t i = 0;
    if (!pl) return buf_append(out, s, n);
    while (!rc && i < n) {
        const char *hit = (n - i >= pl) ? memmem(s + i, n - i, pat, pl) : NULL;
        if (!hit) {
            rc = buf_append(out, s + i, n - i);
            break;
        }
        size_t h = (size_t)(hit - s);
        rc = buf_append(out, s + i, h - i);
        if (!rc) rc = buf_append(out, rep, rl);
        i = h + pl;
    }
    return rc;
}

static int replace_regex(const char *s, size_t n, pcre2_code *re, const char *rep, size_t rl,
                         struct buf *out) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return LFMD_ENOMEM;
    int rc = 0;
    size_t i = 0;
    while (!rc && i <= n) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, i, 0, md, NULL);
        if (m < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { // empty match: no replacement, step one char
            if (ov[0] >= n) break;
            size_t adv;
            pretok__utf8_next((const uint8_t *)s + ov[0], n - ov[0], &adv);
            rc = buf_append(out, s + i, ov[0] + adv - i);
            i = ov[0] + adv;
            continue;
        }
        rc = buf_append(out, s + i, ov[0] - i);
        if (!rc) rc = buf_append(out, rep, rl);
        i = ov[1];
    }
    if (!rc && i < n) rc = buf_append(out, s + i, n - i);
    pcre2_match_data_free(md);
    return rc;
}

static int lowercase(const char *s, size_t n, struct buf *out) {
    int rc = 0;
    for (size_t i = 0; !rc && i < n;) {
        size_t adv;
        uint32_t cp = pretok__utf8_next((const uint8_t *)s + i, n - i, &adv);
        if (cp == 0xFFFD && adv == 1 && (uint8_t)s[i] >= 0x80) {
            rc = buf_append(out, s + i, 1);
        } else {
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t k = utf8proc_encode_char(utf8proc_tolower((utf8proc_int32_t)cp), enc);
            rc = buf_append(out, enc, (size_t)k);
        }
        i += adv;
    }
    return rc;
}

int pretok__normalize(const struct tokenizer *t, const char *text, size_t len, struct buf *out) {
    struct buf tmp;
    buf_init(&tmp, out->max_bytes, LFMD_MEM_REQUEST);
    buf_reset(out);
    int rc = buf_append(out, text, len);
    for (size_t k = 0; !rc && k < t->n_norms; k++) {
        const struct tk_norm *nm = &t->norms[k];
        buf_reset(&tmp);
        const char *s = out->data ? out->data : "";
        size_t n = out->len;
        switch (nm->kind) {
        case TK_NORM_NFC: rc = norm_unicode(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, &tmp); break;
        case TK_NORM_NFKC:
            rc = norm_unicode(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, &tmp);
            break;
        case TK_NORM_PREPEND:
            if (n) rc = buf_append(&tmp, nm->a, nm->a_len);
            if (!rc) rc = buf_append(&tmp, s, n);
            break;
        case TK_NORM_REPLACE:
            rc = nm->re ? replace_regex(s, n, nm->re, nm->b, nm->b_len, &tmp)
                        : replace_literal(s, n, nm->a, nm->a_len, nm->b, nm->b_len, &tmp);
            break;
        case TK_NORM_LOWER: rc = lowercase(s, n, &tmp); break;
        }
        if (!rc) {
            struct buf sw = *out;
            *out = tmp;
            tmp = sw;
        }
    }
    buf_fini(&tmp);
    return rc;
}

// ---- pre-tokenizers ----

static int pieces_push(struct tk_pieces *p, size_t off, size_t len) {
    if (!len) return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct tk_piece *v = p->v ? lfmd_realloc(p->v, cap * sizeof *v)
                                  : lfmd_malloc(cap * sizeof *v, LFMD_MEM_REQUEST);
        if (!v) return LFMD_ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n].off = (uint32_t)off;
    p->v[p->n].len = (uint32_t)len;
    p->n++;
    return 0;
}

// Applies a split behaviour to the (range, is_match) list of one piece, appending to out.
struct span {
    size_t a, b;
    bool m;
};

static int emit_spans(struct span *v, size_t n, enum tk_split_behavior beh, struct tk_pieces *out) {
    int rc = 0;
    switch (beh) {
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; !rc && i < n; i++)
            if (!v[i].m) rc = pieces_push(out, v[i].a, v[i].b - v[i].a);
        return rc;
    case TK_SPLIT_ISOLATED:
        for (size_t i = 0; !rc && i < n; i++) rc = pieces_push(out, v[i].a, v[i].b - v[i].a);
        return rc;
    case TK_SPLIT_MERGED_PREV:
    case TK_SPLIT_CONTIGUOUS: {
        size_t k = 0; // merge in place, then emit
        bool prev = false;
        for (size_t i = 0; i < n; i++) {
            bool join = beh == TK_SPLIT_MERGED_PREV ? (v[i].m && !prev) : (v[i].m == prev);
            if (join && k) v[k - 1].b = v[i].b;
            else v[k++] = v[i];
            prev = v[i].m;
        }
        for (size_t i = 0; !rc && i < k; i++) rc = pieces_push(out, v[i].a, v[i].b - v[i].a);
        return rc;
    }
    case TK_SPLIT_MERGED_NEXT: {
        // Walk backwards: a match glues onto the piece after it.
        size_t k = n; // result occupies v[k..n) in order
        bool prev = false;
        for (size_t i = n; i-- > 0;) {
            if (v[i].m && !prev && k < n) v[k].a = v[i].a;
            else v[--k] = v[i];
            prev = v[i].m;
        }
        for (size_t i = k; !rc && i < n; i++) rc = pieces_push(out, v[i].a, v[i].b - v[i].a);
        return rc;
    }
    }
    return 0;
}

struct span_vec {
    struct span *v;
    size_t n, cap;
};

static int span_push(struct span_vec *s, size_t a, size_t b, bool m) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct span *v = s->v ? lfmd_realloc(s->v, cap * sizeof *v)
                              : lfmd_malloc(cap * sizeof *v, LFMD_MEM_REQUEST);
        if (!v) return LFMD_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (struct span){a, b, m};
    return 0;
}

// Regex split of text[off..off+len) (offsets stay absolute).
static int split_regex(pcre2_code *re, pcre2_match_data *md, const char *text, size_t off,
                       size_t len, bool invert, struct span_vec *sv) {
    size_t end = off + len, prev = off, i = off;
    int rc = 0;
    while (i < end) {
        int m = pcre2_match(re, (PCRE2_SPTR)text, end, i, 0, md, NULL);
        if (m < 0) {
            if (m == PCRE2_ERROR_NOMATCH) break;
            return LFMD_EINVAL;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (a < off) a = off; // look-behind cannot reach outside; keep ranges sane
        if (b == a) { // empty match: produces nothing, step one char
            size_t adv;
            if (a >= end) break;
            pretok__utf8_next((const uint8_t *)text + a, end - a, &adv);
            i = a + adv;
            continue;
        }
        if (prev != a && (rc = span_push(sv, prev, a, invert))) return rc;
        if ((rc = span_push(sv, a, b, !invert))) return rc;
        prev = i = b;
    }
    if (prev != end) rc = span_push(sv, prev, end, invert);
    return rc;
}

static int split_digits(const char *text, size_t off, size_t len, bool individual,
                        struct span_vec *sv) {
    int rc = 0;
    size_t i = off, end = off + len;
    while (!rc && i < end) {
        bool d = text[i] >= '0' && text[i] <= '9';
        size_t j = i + 1;
        if (!individual || !d)
            while (j < end && ((text[j] >= '0' && text[j] <= '9') == d)) j++;
        rc = span_push(sv, i, j, d);
        i = j;
    }
    return rc;
}

int pretok__run(const struct tokenizer *t, struct buf *in, bool at_start, struct buf *work,
                struct tk_pieces *out, pcre2_match_data *md, struct buf **text_out) {
    struct buf *cur = in;
    struct tk_pieces tmp = {0};
    struct span_vec sv = {0};
    int rc = 0;
    out->n = 0;
    if (in->len) rc = pieces_push(out, 0, in->len);
    for (size_t k = 0; !rc && k < t->n_pres; k++) {
        const struct tk_pre *p = &t->pres[k];
        bool rewrite = (p->kind == TK_PRE_BYTELEVEL && p->add_prefix_space) ||
                       p->kind == TK_PRE_METASPACE;
        if (rewrite) {
            // Build the rewritten text piece by piece into the other buffer, with new ranges.
            struct buf *other = cur == in ? work : in;
            buf_reset(other);
            tmp.n = 0;
            for (size_t i = 0; !rc && i < out->n; i++) {
                const char *s = cur->data + out->v[i].off;
                size_t n = out->v[i].len, start = other->len;
                if (p->kind == TK_PRE_BYTELEVEL) {
                    if (s[0] != ' ') rc = buf_putc(other, ' ');
                    if (!rc) rc = buf_append(other, s, n);
                    if (!rc) rc = pieces_push(&tmp, start, other->len - start);
                    continue;
                }
                bool pre = p->prepend == TK_PREPEND_ALWAYS ||
                           (p->prepend == TK_PREPEND_FIRST && at_start && i == 0);
                if (pre && !(n >= p->repl_len && !memcmp(s, p->repl, p->repl_len)))
                    rc = buf_append(other, p->repl, p->repl_len);
                for (size_t j = 0; !rc && j < n; j++)
                    rc = s[j] == ' ' ? buf_append(other, p->repl, p->repl_len)
                                     : buf_putc(other, s[j]);
                if (rc) break;
                if (!p->metaspace_split) {
                    rc = pieces_push(&tmp, start, other->len - start);
                    continue;
                }
                // Split before each replacement char (MergedWithNext).
                size_t a = start;
                for (size_t j = start + 1; !rc && j + p->repl_len <= other->len; j++) {
                    if (!memcmp(other->data + j, p->repl, p->repl_len)) {
                        rc = pieces_push(&tmp, a, j - a);
                        a = j;
                    }
                }
                if (!rc) rc = pieces_push(&tmp, a, other->len - a);
            }
            cur = other;
            struct tk_pieces ps = *out;
            *out = tmp;
            tmp = ps;
            if (rc || !(p->kind == TK_PRE_BYTELEVEL && p->re)) continue;
        }
        if (p->kind == TK_PRE_METASPACE) continue;
        if (p->kind == TK_PRE_BYTELEVEL && !p->re) continue;
        // Refinement: split every piece, keep ranges into the same text.
        tmp.n = 0;
        for (size_t i = 0; !rc && i < out->n; i++) {
            sv.n = 0;
            if (p->kind == TK_PRE_DIGITS)
                rc = split_digits(cur->data, out->v[i].off, out->v[i].len, p->individual_digits,
                                  &sv);
            else
                rc = split_regex(p->re, md, cur->data, out->v[i].off, out->v[i].len,
                                 p->kind == TK_PRE_SPLIT && p->invert, &sv);
            if (!rc) {
                enum tk_split_behavior beh = p->kind == TK_PRE_SPLIT ? p->behavior
                                             : p->individual_digits || p->kind != TK_PRE_DIGITS
                                                 ? TK_SPLIT_ISOLATED
                                                 : TK_SPLIT_CONTIGUOUS;
                rc = emit_spans(sv.v, sv.n, beh, &tmp);
            }
        }
        struct tk_pieces ps = *out;
        *out = tmp;
        tmp = ps;
    }
    lfmd_free(tmp.v);
    lfmd_free(sv.v);
    *text_out = cur;
    return rc;
}
