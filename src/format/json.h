// A strict RFC 8259 JSON parser producing a read-only tree in one arena, plus lookups.
// Invariants: strings are unescaped, NUL-terminated UTF-8 (\u0000 is kept as a byte: use len);
// depth is bounded by LFMD_MAX_JSON_DEPTH; input size is bounded by the caller.
// Not a streaming parser and not a writer (use buf_json_str for output).
// SPDX-License-Identifier: MIT
#ifndef LFMD_FORMAT_JSON_H
#define LFMD_FORMAT_JSON_H

#include "base/alloc.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
    enum json_type type;
    uint32_t len;      // string: bytes; array/object: element count
    const char *key;   // set when this value is an object member (NUL-terminated)
    uint32_t key_len;
    union {
        double num;
        const char *str;          // JSON_STRING
        struct json *items;       // JSON_ARRAY / JSON_OBJECT: len elements
    } u;
};

struct json_doc; // owns every node and string

// Parses text[0..len). On success *out owns the tree (free with json_doc_free).
// Errors: LFMD_EFORMAT with "line:col: what" in err; LFMD_ENOMEM.
LFMD_MUST_CHECK int json_parse(const char *text, size_t len, enum lfmd_mem cat, struct json_doc **out,
                               struct lfmd_err_ctx *err);
void json_doc_free(struct json_doc *doc);
const struct json *json_root(const struct json_doc *doc);

// Lookups return NULL when absent or when the container has the wrong type.
const struct json *json_get(const struct json *obj, const char *key);
const struct json *json_at(const struct json *arr, size_t i);
static inline bool json_is(const struct json *j, enum json_type t) { return j && j->type == t; }
static inline bool json_is_bool(const struct json *j) {
    return j && (j->type == JSON_TRUE || j->type == JSON_FALSE);
}
// Typed getters with defaults (default returned when absent or of another type).
double json_num(const struct json *j, double def);
bool json_bool(const struct json *j, bool def);
const char *json_str(const struct json *j, const char *def);
// Integer value if j is a number with an exact integer value in [lo, hi]; else LFMD_EINVAL.
int json_int(const struct json *j, int64_t lo, int64_t hi, int64_t *out);

#endif
