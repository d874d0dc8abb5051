// Recursive-descent JSON parser. Children of a container are collected on a shared stack and
// copied into the arena when the container closes, so every container's items are contiguous.
// SPDX-License-Identifier: MIT
#include "json.h"

#include "base/limits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- arena ----

struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

struct json_doc {
    struct chunk *chunks;
    enum lfmd_mem cat;
    struct json root;
};

static void *arena_alloc(struct json_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = d->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (1u << 16) ? n : (1u << 16);
        c = lfmd_malloc(sizeof *c + cap, d->cat);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void json_doc_free(struct json_doc *doc) {
    if (!doc) return;
    struct chunk *c = doc->chunks;
    while (c) {
        struct chunk *n = c->next;
        lfmd_free(c);
        c = n;
    }
    lfmd_free(doc);
}

const struct json *json_root(const struct json_doc *doc) { return doc ? &doc->root : NULL; }

// ---- parser ----

struct parser {
    const char *s, *end, *start;
    struct json_doc *doc;
    struct json *stack; // pending children of open containers
    size_t sp, scap;
    struct lfmd_err_ctx *err;
    int depth;
};

static int fail(struct parser *p, const char *what) {
    size_t line = 1, col = 1;
    for (const char *q = p->start; q < p->s && q < p->end; q++) {
        if (*q == '\n') line++, col = 1;
        else col++;
    }
    return lfmd_err_set(p->err, LFMD_EFORMAT, "JSON %zu:%zu: %s", line, col, what);
}

static void skip_ws(struct parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t')) p->s++;
}

static int push(struct parser *p, const struct json *v) {
    if (p->sp == p->scap) {
        size_t ncap = p->scap ? p->scap * 2 : 256;
        struct json *ns = p->stack ? lfmd_realloc(p->stack, ncap * sizeof *ns)
                                   : lfmd_malloc(ncap * sizeof *ns, p->doc->cat);
        if (!ns) return lfmd_err_set(p->err, LFMD_ENOMEM, "JSON: out of memory");
        p->stack = ns;
        p->scap = ncap;
    }
    p->stack[p->sp++] = *v;
    return 0;
}

static unsigned hexval(char c) {
    if (c >= '0' && c <= '9') return (unsigned)(c - '0');
    if (c >= 'a' && c <= 'f') return (unsigned)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (unsigned)(c - 'A' + 10);
    return 16;
}

static int read_hex4(struct parser *p, unsigned *out) {
    if (p->end - p->s < 4) return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned h = hexval(p->s[i]);
        if (h > 15) return fail(p, "bad \\u escape");
        v = v * 16 + h;
    }
    p->s += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

// Parses a string at p->s (after the opening quote). Output is never longer than the input.
static int parse_string(struct parser *p, const char **out, uint32_t *out_len) {
    const char *q = p->s;
    // Fast scan for the closing quote to size the output.
    while (q < p->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= p->end) return fail(p, "unterminated string");
    if ((size_t)(q - p->s) > UINT32_MAX - 1) return fail(p, "string too long");
    char *o = arena_alloc(p->doc, (size_t)(q - p->s) + 1);
    if (!o) return lfmd_err_set(p->err, LFMD_ENOMEM, "JSON: out of memory");
    char *w = o;
    while (p->s < p->end) {
        unsigned char c = (unsigned char)*p->s;
        if (c == '"') break;
        if (c < 0x20) return fail(p, "control character in string");
        if (c != '\\') {
            *w++ = (char)c;
            p->s++;
            continue;
        }
        p->s++;
        if (p->s >= p->end) return fail(p, "truncated escape");
        char e = *p->s++;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp;
            int rc = read_hex4(p, &cp);
            if (rc) return rc;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->end - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u') {
                    p->s += 2;
                    if ((rc = read_hex4(p, &lo))) return rc;
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else {
                        w += put_utf8(w, 0xFFFD);
                        cp = lo >= 0xD800 && lo <= 0xDFFF ? 0xFFFD : lo;
                    }
                } else {
                    cp = 0xFFFD; // lone high surrogate
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD; // lone low surrogate
            }
            w += put_utf8(w, cp);
            break;
        }
        default: return fail(p, "bad escape");
        }
    }
    if (p->s >= p->end) return fail(p, "unterminated string");
    p->s++; // closing quote
    *w = 0;
    *out = o;
    *out_len = (uint32_t)(w - o);
    return 0;
}

static int parse_number(struct parser *p, double *out) {
    const char *b = p->s, *q = p->s;
    if (q < p->end && *q == '-') q++;
    if (q >= p->end) return fail(p, "bad number");
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') while (q < p->end && *q >= '0' && *q <= '9') q++;
    else return fail(p, "bad number");
    if (q < p->end && *q == '.') {
        q++;
        if (q >= p->end || *q < '0' || *q > '9') return fail(p, "bad number");
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < p->end && (*q == '+' || *q == '-')) q++;
        if (q >= p->end || *q < '0' || *q > '9') return fail(p, "bad number");
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    char tmp[64];
    size_t n = (size_t)(q - b);
    if (n < sizeof tmp) {
        memcpy(tmp, b, n);
        tmp[n] = 0;
        *out = strtod(tmp, NULL);
    } else {
        char *big = lfmd_strndup(b, n, p->doc->cat);
        if (!big) return lfmd_err_set(p->err, LFMD_ENOMEM, "JSON: out of memory");
        *out = strtod(big, NULL);
        lfmd_free(big);
    }
    p->s = q;
    return 0;
}

static int parse_value(struct parser *p, struct json *v);

static int close_container(struct parser *p, struct json *v, size_t base) {
    size_t n = p->sp - base;
    if (n > UINT32_MAX) return fail(p, "too many elements");
    v->len = (uint32_t)n;
    v->u.items = NULL;
    if (n) {
        v->u.items = arena_alloc(p->doc, n * sizeof(struct json));
        if (!v->u.items) return lfmd_err_set(p->err, LFMD_ENOMEM, "JSON: out of memory");
        memcpy(v->u.items, p->stack + base, n * sizeof(struct json));
    }
    p->sp = base;
    return 0;
}

static int parse_container(struct parser *p, struct json *v, bool is_obj) {
    if (++p->depth > LFMD_MAX_JSON_DEPTH) return fail(p, "nesting too deep");
    char close = is_obj ? '}' : ']';
    size_t base = p->sp;
    int rc;
    v->type = is_obj ? JSON_OBJECT : JSON_ARRAY;
    p->s++; // opening bracket
    skip_ws(p);
    if (p->s < p->end && *p->s == close) {
        p->s++;
        p->depth--;
        return close_container(p, v, base);
    }
    for (;;) {
        struct json item = {0};
        skip_ws(p);
        if (is_obj) {
            if (p->s >= p->end || *p->s != '"') return fail(p, "expected member name");
            p->s++;
            if ((rc = parse_string(p, &item.key, &item.key_len))) return rc;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') return fail(p, "expected ':'");
            p->s++;
        }
        const char *key = item.key;
        uint32_t key_len = item.key_len;
        if ((rc = parse_value(p, &item))) return rc;
        item.key = key;
        item.key_len = key_len;
        if ((rc = push(p, &item))) return rc;
        skip_ws(p);
        if (p->s >= p->end) return fail(p, "unterminated container");
        if (*p->s == ',') {
            p->s++;
            continue;
        }
        if (*p->s == close) {
            p->s++;
            break;
        }
        return fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->depth--;
    return close_container(p, v, base);
}

static int literal(struct parser *p, const char *word, enum json_type t, struct json *v) {
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0) return fail(p, "unexpected token");
    p->s += n;
    v->type = t;
    return 0;
}

static int parse_value(struct parser *p, struct json *v) {
    skip_ws(p);
    if (p->s >= p->end) return fail(p, "unexpected end of input");
    v->key = NULL;
    v->key_len = 0;
    v->len = 0;
    switch (*p->s) {
    case '{': return parse_container(p, v, true);
    case '[': return parse_container(p, v, false);
    case '"':
        p->s++;
        v->type = JSON_STRING;
        return parse_string(p, &v->u.str, &v->len);
    case 't': return literal(p, "true", JSON_TRUE, v);
    case 'f': return literal(p, "false", JSON_FALSE, v);
    case 'n': return literal(p, "null", JSON_NULL, v);
    default:
        v->type = JSON_NUMBER;
        return parse_number(p, &v->u.num);
    }
}

int json_parse(const char *text, size_t len, enum lfmd_mem cat, struct json_doc **out,
               struct lfmd_err_ctx *err) {
    *out = NULL;
    struct json_doc *d = lfmd_calloc(1, sizeof *d, cat);
    if (!d) return lfmd_err_set(err, LFMD_ENOMEM, "JSON: out of memory");
    d->cat = cat;
    struct parser p = {.s = text, .end = text + len, .start = text, .doc = d, .err = err};
    int rc = parse_value(&p, &d->root);
    if (!rc) {
        skip_ws(&p);
        if (p.s != p.end) rc = fail(&p, "trailing characters after JSON value");
    }
    lfmd_free(p.stack);
    if (rc) {
        json_doc_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

// ---- lookups ----

const struct json *json_get(const struct json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    // Last duplicate wins, as in most JSON libraries (Python's json, serde_json maps).
    for (size_t i = obj->len; i-- > 0;) {
        const struct json *m = &obj->u.items[i];
        if (m->key_len == kl && memcmp(m->key, key, kl) == 0) return m;
    }
    return NULL;
}

const struct json *json_at(const struct json *arr, size_t i) {
    if (!arr || (arr->type != JSON_ARRAY && arr->type != JSON_OBJECT) || i >= arr->len) return NULL;
    return &arr->u.items[i];
}

double json_num(const struct json *j, double def) {
    return j && j->type == JSON_NUMBER ? j->u.num : def;
}

bool json_bool(const struct json *j, bool def) {
    if (!j) return def;
    if (j->type == JSON_TRUE) return true;
    if (j->type == JSON_FALSE) return false;
    return def;
}

const char *json_str(const struct json *j, const char *def) {
    return j && j->type == JSON_STRING ? j->u.str : def;
}

int json_int(const struct json *j, int64_t lo, int64_t hi, int64_t *out) {
    if (!j || j->type != JSON_NUMBER) return LFMD_EINVAL;
    double d = j->u.num;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return LFMD_EINVAL;
    *out = (int64_t)d;
    return 0;
}
