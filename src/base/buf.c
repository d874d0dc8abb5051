// Bounded buffer implementation. See buf.h for the contract.
// SPDX-License-Identifier: MIT
#include "buf.h"

#include <stdio.h>
#include <string.h>

void buf_init(struct buf *b, size_t max_bytes, enum lfmd_mem cat) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->max_bytes = max_bytes;
    b->cat = cat;
}

void buf_fini(struct buf *b) {
    lfmd_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_reset(struct buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

static int reserve(struct buf *b, size_t extra) {
    if (extra > b->max_bytes || b->len > b->max_bytes - extra) return LFMD_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap * 2;
    if (cap > b->max_bytes + 1) cap = b->max_bytes + 1;
    char *d;
    if (b->data) {
        d = lfmd_realloc(b->data, cap);
    } else {
        d = lfmd_malloc(cap, b->cat);
    }
    if (!d) return LFMD_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n) {
    int rc = reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int buf_puts(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }
int buf_putc(struct buf *b, char c) { return buf_append(b, &c, 1); }

int buf_printf(struct buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return LFMD_EINVAL;
    if ((size_t)n < sizeof small) return buf_append(b, small, (size_t)n);
    int rc = reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

// Length of a valid UTF-8 sequence at s (max n bytes), or 0 if invalid.
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

int buf_json_str(struct buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    int rc = buf_putc(b, '"');
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (!rc && i < n) {
        unsigned c = u[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = buf_append(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (c == '\n') rc = buf_append(b, "\\n", 2);
            else if (c == '\r') rc = buf_append(b, "\\r", 2);
            else if (c == '\t') rc = buf_append(b, "\\t", 2);
            else rc = buf_append(b, e, 6);
            i++;
        } else if (c < 0x80) {
            size_t j = i;
            while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\') j++;
            rc = buf_append(b, s + i, j - i);
            i = j;
        } else {
            size_t l = utf8_valid_len(u + i, n - i);
            if (l) {
                rc = buf_append(b, s + i, l);
                i += l;
            } else {
                rc = buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            }
        }
    }
    if (!rc) rc = buf_putc(b, '"');
    return rc;
}

char *buf_take(struct buf *b, size_t *len) {
    char *d = b->data;
    if (len) *len = b->len;
    if (!d) {
        d = lfmd_malloc(1, b->cat);
        if (d) d[0] = 0;
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
