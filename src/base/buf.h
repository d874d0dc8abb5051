// Bounded growable byte buffer (curl dynbuf style): every buffer has a ceiling given at init;
// appending past it fails with LFMD_ETOOBIG and leaves the contents unchanged. Always NUL-terminated.
// SPDX-License-Identifier: MIT
#ifndef LFMD_BASE_BUF_H
#define LFMD_BASE_BUF_H

#include "alloc.h"
#include "err.h"

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; // owned; NULL until first append
    size_t len;
    size_t cap;
    size_t max_bytes;
    enum lfmd_mem cat;
};

void buf_init(struct buf *b, size_t max_bytes, enum lfmd_mem cat);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b); // len = 0, keeps memory
LFMD_MUST_CHECK int buf_append(struct buf *b, const void *p, size_t n);
LFMD_MUST_CHECK int buf_puts(struct buf *b, const char *s);
LFMD_MUST_CHECK int buf_putc(struct buf *b, char c);
LFMD_MUST_CHECK int buf_printf(struct buf *b, const char *fmt, ...) LFMD_PRINTF(2, 3);
// Appends s as a JSON string literal (quotes included), escaping as RFC 8259 requires.
// Invalid UTF-8 bytes are replaced by U+FFFD so the output is always valid JSON.
LFMD_MUST_CHECK int buf_json_str(struct buf *b, const char *s, size_t n);
// Hands the data to the caller (free with lfmd_free); the buffer becomes empty.
char *buf_take(struct buf *b, size_t *len);

#endif
