// Jinja evaluator: Python-like values (str() and repr() formatting, truthiness, equality),
// scopes (for loops and macros scope their sets; namespace() objects carry state out), filters,
// tests, string/dict methods and the globals transformers provides.
// Invariant: every value lives in the render arena; the AST is never modified. Work is bounded
// by a step counter, range() size and the output buffer's ceiling.
// SPDX-License-Identifier: MIT
#include "jinja.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#define MAX_STEPS 20000000
#define MAX_DEPTH 64
#define MAX_ARGS 8
#define MAX_RANGE 1000000

enum { F_ABS, F_CAPITALIZE, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E, F_ESCAPE, F_FIRST, F_FLOAT,
       F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN,
       F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR,
       F_SORT, F_STRING, F_SUM, F_TITLE, F_TOJSON, F_TRIM, F_UNIQUE, F_UPPER, F_WORDCOUNT, F_N };
static const char *const filter_names[F_N] = {
    "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
    "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
    "string", "sum", "title", "tojson", "trim", "unique", "upper", "wordcount"};

enum { T_BOOLEAN, T_CALLABLE, T_DEFINED, T_DIVISIBLEBY, T_EQ, T_EQUALTO, T_EVEN, T_FALSE, T_FLOAT,
       T_GE, T_GT, T_IN, T_INTEGER, T_ITERABLE, T_LE, T_LOWER, T_LT, T_MAPPING, T_NE, T_NONE,
       T_NUMBER, T_ODD, T_SAMEAS, T_SEQUENCE, T_STRING, T_TRUE, T_UNDEFINED, T_UPPER, T_N };
static const char *const test_names[T_N] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float",
    "ge", "gt", "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none",
    "number", "odd", "sameas", "sequence", "string", "true", "undefined", "upper"};

enum { FN_RANGE, FN_NAMESPACE, FN_RAISE, FN_DICT, FN_STRFTIME, FN_MACRO_CALLER,
       M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER, M_TITLE,
       M_CAPITALIZE, M_REPLACE, M_FIND, M_COUNT, M_JOIN, M_SPLITLINES, M_ISDIGIT, M_ISALPHA,
       M_ITEMS, M_KEYS, M_VALUES, M_GET, M_CYCLE };
static const char *const str_methods[] = {"strip", "lstrip", "rstrip", "split", "startswith",
                                          "endswith", "upper", "lower", "title", "capitalize",
                                          "replace", "find", "count", "join", "splitlines",
                                          "isdigit", "isalpha"};

int jinja__filter_id(const char *s, size_t n) {
    for (int i = 0; i < F_N; i++)
        if (strlen(filter_names[i]) == n && !memcmp(filter_names[i], s, n)) return i;
    return -1;
}

int jinja__test_id(const char *s, size_t n) {
    for (int i = 0; i < T_N; i++)
        if (strlen(test_names[i]) == n && !memcmp(test_names[i], s, n)) return i;
    return -1;
}

struct jloop {
    int64_t index0, length;
    const struct jlist *items;
};

struct jscope {
    struct jscope *parent;
    struct jdict vars;
};

struct ctx {
    struct jarena *ar;
    struct buf *out;
    struct lfmd_err_ctx *err;
    struct jscope *scope, *root;
    int depth;
    bool brk, cont;
    long steps;
};

#define TRY(x)                                                                                   \
    do {                                                                                         \
        int _rc = (x);                                                                           \
        if (_rc) return _rc;                                                                     \
    } while (0)

static int fail(struct ctx *c, const struct jnode *n, int code, const char *fmt, const char *a) {
    return lfmd_err_set(c->err, code, "chat template line %d: %s%s", n ? n->line : 0, fmt,
                        a ? a : "");
}

static int oom(struct ctx *c) { return lfmd_err_set(c->err, LFMD_ENOMEM, "chat template: out of memory"); }

// ---- value constructors ----

static const struct jval UNDEF = {.t = JT_UNDEF};
static struct jval vnone(void) { return (struct jval){.t = JT_NONE}; }
static struct jval vbool(bool b) { return (struct jval){.t = JT_BOOL, .u.b = b}; }
static struct jval vint(int64_t i) { return (struct jval){.t = JT_INT, .u.i = i}; }
static struct jval vfloat(double f) { return (struct jval){.t = JT_FLOAT, .u.f = f}; }
struct jval jv_str(const char *p, size_t n) { return (struct jval){.t = JT_STR, .u.s = {p, n}}; }

static struct jlist *list_new(struct jarena *ar, size_t cap) {
    struct jlist *l = jarena_alloc(ar, sizeof *l);
    if (!l) return NULL;
    l->cap = cap ? cap : 4;
    l->v = jarena_alloc(ar, l->cap * sizeof *l->v);
    return l->v ? l : NULL;
}

static int list_push(struct jarena *ar, struct jlist *l, struct jval v) {
    if (l->n == l->cap) {
        struct jval *nv = jarena_alloc(ar, l->cap * 2 * sizeof *nv);
        if (!nv) return LFMD_ENOMEM;
        memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = v;
    return 0;
}

static struct jval vlist(struct jlist *l) { return (struct jval){.t = JT_LIST, .u.l = l}; }
static struct jval vdict(struct jdict *d) { return (struct jval){.t = JT_DICT, .u.d = d}; }

static const struct jval *dict_get(const struct jdict *d, const char *k, size_t kn) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].u.s.n == kn && !memcmp(d->k[i].u.s.p, k, kn)) return &d->v[i];
    return NULL;
}

int jdict_set(struct jarena *ar, struct jdict *d, const char *k, size_t kn, struct jval v) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].u.s.n == kn && !memcmp(d->k[i].u.s.p, k, kn)) {
            d->v[i] = v;
            return 0;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct jval *nk = jarena_alloc(ar, cap * sizeof *nk), *nv = jarena_alloc(ar, cap * sizeof *nv);
        if (!nk || !nv) return LFMD_ENOMEM;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = jv_str(k, kn);
    d->v[d->n++] = v;
    return 0;
}

int jv_from_json(struct jarena *ar, const struct json *j, struct jval *out) {
    if (!j) {
        *out = UNDEF;
        return 0;
    }
    switch (j->type) {
    case JSON_NULL: *out = vnone(); return 0;
    case JSON_TRUE: *out = vbool(true); return 0;
    case JSON_FALSE: *out = vbool(false); return 0;
    case JSON_NUMBER: {
        double d = j->u.num;
        if (d == floor(d) && fabs(d) < 9e15) *out = vint((int64_t)d);
        else *out = vfloat(d);
        return 0;
    }
    case JSON_STRING: *out = jv_str(j->u.str, j->len); return 0;
    case JSON_ARRAY: {
        struct jlist *l = list_new(ar, j->len);
        if (!l) return LFMD_ENOMEM;
        for (size_t i = 0; i < j->len; i++) {
            struct jval v;
            TRY(jv_from_json(ar, &j->u.items[i], &v));
            TRY(list_push(ar, l, v));
        }
        *out = vlist(l);
        return 0;
    }
    case JSON_OBJECT: {
        struct jdict *d = jarena_alloc(ar, sizeof *d);
        if (!d) return LFMD_ENOMEM;
        for (size_t i = 0; i < j->len; i++) {
            struct jval v;
            TRY(jv_from_json(ar, &j->u.items[i], &v));
            TRY(jdict_set(ar, d, j->u.items[i].key, j->u.items[i].key_len, v));
        }
        *out = vdict(d);
        return 0;
    }
    }
    return LFMD_EINVAL;
}

// ---- Python-like formatting ----

static int put_float(struct buf *b, double f) {
    if (isnan(f)) return buf_puts(b, "nan");
    if (isinf(f)) return buf_puts(b, f < 0 ? "-inf" : "inf");
    char tmp[64];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    // tmp = [-]d.ddde[+-]XX; rebuild as Python repr does.
    char digits[32];
    int nd = 0, exp10;
    bool neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char out[64];
    int k = 0;
    if (neg) out[k++] = '-';
    if (exp10 >= -5 && exp10 < 16) {
        if (exp10 < 0) {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) out[k++] = '0';
            for (int i = 0; i < nd; i++) out[k++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) out[k++] = i < nd ? digits[i] : '0';
            out[k++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) out[k++] = digits[i];
            else out[k++] = '0';
        }
        out[k] = 0;
    } else {
        out[k++] = digits[0];
        if (nd > 1) {
            out[k++] = '.';
            for (int i = 1; i < nd; i++) out[k++] = digits[i];
        }
        snprintf(out + k, sizeof out - (size_t)k, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    return buf_puts(b, out);
}

// Values can nest without bound at run time ({% set ns.x = [ns.x] %} in a loop) and a namespace
// can hold itself, so every walker over values carries a depth and fails past MAX_VALUE_DEPTH
// instead of overflowing the stack.
#define MAX_VALUE_DEPTH 128

static int put_repr(struct buf *b, const struct jval *v, int depth);

static int put_str(struct buf *b, const struct jval *v, int depth) {
    char tmp[32];
    if (depth > MAX_VALUE_DEPTH) return LFMD_ETOOBIG;
    switch (v->t) {
    case JT_UNDEF: return 0;
    case JT_NONE: return buf_puts(b, "None");
    case JT_BOOL: return buf_puts(b, v->u.b ? "True" : "False");
    case JT_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        return buf_puts(b, tmp);
    case JT_FLOAT: return put_float(b, v->u.f);
    case JT_STR: return buf_append(b, v->u.s.p, v->u.s.n);
    case JT_LIST: {
        TRY(buf_putc(b, '['));
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i) TRY(buf_puts(b, ", "));
            TRY(put_repr(b, &v->u.l->v[i], depth + 1));
        }
        return buf_putc(b, ']');
    }
    case JT_DICT: {
        TRY(buf_putc(b, '{'));
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i) TRY(buf_puts(b, ", "));
            TRY(put_repr(b, &v->u.d->k[i], depth + 1));
            TRY(buf_puts(b, ": "));
            TRY(put_repr(b, &v->u.d->v[i], depth + 1));
        }
        return buf_putc(b, '}');
    }
    case JT_LOOP: return buf_puts(b, "<LoopContext>");
    default: return buf_puts(b, "<function>");
    }
}

static int put_repr(struct buf *b, const struct jval *v, int depth) {
    if (v->t != JT_STR) return put_str(b, v, depth);
    bool sq = memchr(v->u.s.p, '\'', v->u.s.n) != NULL, dq = memchr(v->u.s.p, '"', v->u.s.n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    TRY(buf_putc(b, q));
    for (size_t i = 0; i < v->u.s.n; i++) {
        unsigned char c = (unsigned char)v->u.s.p[i];
        char tmp[8];
        if (c == '\\' || c == (unsigned char)q) {
            TRY(buf_putc(b, '\\'));
            TRY(buf_putc(b, (char)c));
        } else if (c == '\n') TRY(buf_puts(b, "\\n"));
        else if (c == '\r') TRY(buf_puts(b, "\\r"));
        else if (c == '\t') TRY(buf_puts(b, "\\t"));
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            TRY(buf_puts(b, tmp));
        } else TRY(buf_putc(b, (char)c));
    }
    return buf_putc(b, q);
}

static int put_json_str(struct buf *b, const char *s, size_t n) {
    TRY(buf_putc(b, '"'));
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == '\b') esc = "\\b";
        else if (c == '\f') esc = "\\f";
        else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            esc = tmp;
        }
        if (!esc) continue;
        TRY(buf_append(b, s + run, i - run));
        TRY(buf_puts(b, esc));
        run = i + 1;
    }
    TRY(buf_append(b, s + run, n - run));
    return buf_putc(b, '"');
}

static int put_indent(struct buf *b, int indent, int level) {
    TRY(buf_putc(b, '\n'));
    for (int i = 0; i < indent * level; i++) TRY(buf_putc(b, ' '));
    return 0;
}

// json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: none).
static int put_json(struct buf *b, const struct jval *v, int indent, int level) {
    char tmp[32];
    if (level > MAX_VALUE_DEPTH) return LFMD_ETOOBIG;
    switch (v->t) {
    case JT_UNDEF:
    case JT_NONE: return buf_puts(b, "null");
    case JT_BOOL: return buf_puts(b, v->u.b ? "true" : "false");
    case JT_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        return buf_puts(b, tmp);
    case JT_FLOAT:
        if (isnan(v->u.f)) return buf_puts(b, "NaN");
        if (isinf(v->u.f)) return buf_puts(b, v->u.f < 0 ? "-Infinity" : "Infinity");
        return put_float(b, v->u.f);
    case JT_STR: return put_json_str(b, v->u.s.p, v->u.s.n);
    case JT_LIST:
    case JT_DICT: {
        bool dict = v->t == JT_DICT;
        size_t n = dict ? v->u.d->n : v->u.l->n;
        TRY(buf_putc(b, dict ? '{' : '['));
        if (!n) return buf_putc(b, dict ? '}' : ']');
        for (size_t i = 0; i < n; i++) {
            if (i) TRY(buf_puts(b, indent >= 0 ? "," : ", "));
            if (indent >= 0) TRY(put_indent(b, indent, level + 1));
            if (dict) {
                TRY(put_json_str(b, v->u.d->k[i].u.s.p, v->u.d->k[i].u.s.n));
                TRY(buf_puts(b, ": "));
                TRY(put_json(b, &v->u.d->v[i], indent, level + 1));
            } else {
                TRY(put_json(b, &v->u.l->v[i], indent, level + 1));
            }
        }
        if (indent >= 0) TRY(put_indent(b, indent, level));
        return buf_putc(b, dict ? '}' : ']');
    }
    default: return buf_puts(b, "null");
    }
}

// Materializes a formatted value as an arena string.
static int to_string(struct ctx *c, const struct jval *v, struct jval *out) {
    if (v->t == JT_STR) {
        *out = *v;
        return 0;
    }
    struct buf b;
    buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
    int rc = put_str(&b, v, 0);
    char *p = rc ? NULL : jarena_alloc(c->ar, b.len + 1);
    if (!rc && !p) rc = LFMD_ENOMEM;
    if (!rc && b.len) memcpy(p, b.data, b.len);
    if (!rc) *out = jv_str(p, b.len);
    buf_fini(&b);
    return rc ? (rc == LFMD_ENOMEM ? oom(c) : rc) : 0;
}

static int buf_to_val(struct ctx *c, struct buf *b, struct jval *out) {
    char *p = jarena_alloc(c->ar, b->len + 1);
    if (!p) return oom(c);
    if (b->len) memcpy(p, b->data, b->len);
    *out = jv_str(p, b->len);
    return 0;
}

// ---- semantics ----

static bool truthy(const struct jval *v) {
    switch (v->t) {
    case JT_UNDEF:
    case JT_NONE: return false;
    case JT_BOOL: return v->u.b;
    case JT_INT: return v->u.i != 0;
    case JT_FLOAT: return v->u.f != 0;
    case JT_STR: return v->u.s.n != 0;
    case JT_LIST: return v->u.l->n != 0;
    case JT_DICT: return v->u.d->n != 0;
    default: return true;
    }
}

static bool is_num(const struct jval *v) {
    return v->t == JT_INT || v->t == JT_FLOAT || v->t == JT_BOOL;
}
static double num(const struct jval *v) {
    return v->t == JT_FLOAT ? v->u.f : v->t == JT_INT ? (double)v->u.i : v->t == JT_BOOL ? v->u.b : 0;
}
// double -> int64, saturating (the cast is undefined outside int64 and for NaN).
static int64_t i64_of(double d) {
    return d != d ? 0 : d >= 0x1p63 ? INT64_MAX : d < -0x1p63 ? INT64_MIN : (int64_t)d;
}
static int64_t inum(const struct jval *v) {
    return v->t == JT_INT ? v->u.i : v->t == JT_BOOL ? v->u.b : i64_of(num(v));
}

static bool jv_eq_d(const struct jval *a, const struct jval *b, int depth) {
    if (depth > MAX_VALUE_DEPTH) return false; // too deep to compare (Python raises); not equal
    if (is_num(a) && is_num(b)) {
        if (a->t != JT_FLOAT && b->t != JT_FLOAT) return inum(a) == inum(b);
        return num(a) == num(b);
    }
    if (a->t != b->t) return false;
    switch (a->t) {
    case JT_UNDEF:
    case JT_NONE: return true;
    case JT_STR: return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case JT_LIST:
        if (a->u.l == b->u.l) return true;
        if (a->u.l->n != b->u.l->n) return false;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!jv_eq_d(&a->u.l->v[i], &b->u.l->v[i], depth + 1)) return false;
        return true;
    case JT_DICT:
        if (a->u.d == b->u.d) return true;
        if (a->u.d->n != b->u.d->n) return false;
        for (size_t i = 0; i < a->u.d->n; i++) {
            const struct jval *o = dict_get(b->u.d, a->u.d->k[i].u.s.p, a->u.d->k[i].u.s.n);
            if (!o || !jv_eq_d(&a->u.d->v[i], o, depth + 1)) return false;
        }
        return true;
    default: return a->u.m == b->u.m;
    }
}

static bool jv_eq(const struct jval *a, const struct jval *b) { return jv_eq_d(a, b, 0); }

// -1, 0, 1; *ok false when the types do not order.
static int jv_cmp(const struct jval *a, const struct jval *b, bool *ok) {
    *ok = true;
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y;
    }
    if (a->t == JT_STR && b->t == JT_STR) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int r = memcmp(a->u.s.p, b->u.s.p, n);
        if (r) return r < 0 ? -1 : 1;
        return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
    }
    *ok = false;
    return 0;
}

static size_t utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

// Byte offset of code point index i (clamped).
static size_t utf8_off(const char *s, size_t n, size_t i) {
    size_t k = 0, p = 0;
    while (p < n && k < i) {
        p++;
        while (p < n && ((unsigned char)s[p] & 0xC0) == 0x80) p++;
        k++;
    }
    return p;
}

static int length_of(const struct jval *v, int64_t *n) {
    switch (v->t) {
    case JT_STR: *n = (int64_t)utf8_count(v->u.s.p, v->u.s.n); return 0;
    case JT_LIST: *n = (int64_t)v->u.l->n; return 0;
    case JT_DICT: *n = (int64_t)v->u.d->n; return 0;
    case JT_UNDEF: *n = 0; return 0;
    default: return LFMD_EINVAL;
    }
}

// Turns an iterable into a list (dict -> keys, string -> chars).
static int iter_list(struct ctx *c, const struct jval *v, const struct jlist **out) {
    static struct jlist empty;
    switch (v->t) {
    case JT_LIST: *out = v->u.l; return 0;
    case JT_UNDEF: *out = &empty; return 0;
    case JT_DICT: {
        struct jlist *l = list_new(c->ar, v->u.d->n);
        if (!l) return oom(c);
        for (size_t i = 0; i < v->u.d->n; i++) TRY(list_push(c->ar, l, v->u.d->k[i]));
        *out = l;
        return 0;
    }
    case JT_STR: {
        struct jlist *l = list_new(c->ar, v->u.s.n);
        if (!l) return oom(c);
        for (size_t i = 0; i < v->u.s.n;) {
            size_t j = i + 1;
            while (j < v->u.s.n && ((unsigned char)v->u.s.p[j] & 0xC0) == 0x80) j++;
            TRY(list_push(c->ar, l, jv_str(v->u.s.p + i, j - i)));
            i = j;
        }
        *out = l;
        return 0;
    }
    default: return LFMD_EINVAL;
    }
}

static bool py_space(uint32_t cp) {
    return pretok__is_ws(cp) || (cp >= 0x1C && cp <= 0x1F);
}

static bool in_chars(uint32_t cp, const struct jval *chars) {
    if (!chars || chars->t != JT_STR) return py_space(cp);
    for (size_t i = 0; i < chars->u.s.n;) {
        size_t adv;
        uint32_t x = pretok__utf8_next((const uint8_t *)chars->u.s.p + i, chars->u.s.n - i, &adv);
        if (x == cp) return true;
        i += adv;
    }
    return false;
}

static struct jval strip(const struct jval *s, const struct jval *chars, bool left, bool right) {
    const char *p = s->u.s.p;
    size_t a = 0, b = s->u.s.n;
    while (left && a < b) {
        size_t adv;
        uint32_t cp = pretok__utf8_next((const uint8_t *)p + a, b - a, &adv);
        if (!in_chars(cp, chars)) break;
        a += adv;
    }
    while (right && b > a) {
        size_t i = b - 1;
        while (i > a && ((unsigned char)p[i] & 0xC0) == 0x80) i--;
        size_t adv;
        uint32_t cp = pretok__utf8_next((const uint8_t *)p + i, b - i, &adv);
        if (!in_chars(cp, chars)) break;
        b = i;
    }
    return jv_str(p + a, b - a);
}

enum casemode { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE };

static int change_case(struct ctx *c, const struct jval *s, enum casemode m, struct jval *out) {
    struct buf b;
    buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
    int rc = 0;
    bool prev_cased = false, first = true;
    for (size_t i = 0; !rc && i < s->u.s.n;) {
        size_t adv;
        uint32_t cp = pretok__utf8_next((const uint8_t *)s->u.s.p + i, s->u.s.n - i, &adv);
        int32_t r = (int32_t)cp;
        switch (m) {
        case CASE_UPPER: r = utf8proc_toupper(r); break;
        case CASE_LOWER: r = utf8proc_tolower(r); break;
        case CASE_TITLE: {
            bool cased = utf8proc_toupper(r) != r || utf8proc_tolower(r) != r;
            r = prev_cased ? utf8proc_tolower(r) : utf8proc_totitle(r);
            prev_cased = cased;
            break;
        }
        case CASE_CAPITALIZE: r = first ? utf8proc_totitle(r) : utf8proc_tolower(r); break;
        }
        first = false;
        utf8proc_uint8_t enc[4];
        rc = buf_append(&b, enc, (size_t)utf8proc_encode_char(r, enc));
        i += adv;
    }
    if (!rc) rc = buf_to_val(c, &b, out);
    buf_fini(&b);
    return rc;
}

static int str_replace(struct ctx *c, const struct jval *s, const struct jval *a,
                       const struct jval *b, int64_t count, struct jval *out) {
    struct buf o;
    buf_init(&o, c->out->max_bytes, LFMD_MEM_REQUEST);
    int rc = 0;
    size_t i = 0, n = s->u.s.n, al = a->u.s.n;
    int64_t done = 0;
    while (!rc && i <= n) {
        const char *hit = NULL;
        if (count < 0 || done < count) {
            if (!al) hit = s->u.s.p + i; // empty pattern: insert between every char
            else if (n - i >= al) hit = memmem(s->u.s.p + i, n - i, a->u.s.p, al);
        }
        if (!hit) {
            rc = buf_append(&o, s->u.s.p + i, n - i);
            break;
        }
        size_t h = (size_t)(hit - s->u.s.p);
        rc = buf_append(&o, s->u.s.p + i, h - i);
        if (!rc) rc = buf_append(&o, b->u.s.p, b->u.s.n);
        done++;
        if (!al) {
            if (h >= n) break;
            size_t adv = 1;
            while (h + adv < n && ((unsigned char)s->u.s.p[h + adv] & 0xC0) == 0x80) adv++;
            if (!rc) rc = buf_append(&o, s->u.s.p + h, adv);
            i = h + adv;
        } else {
            i = h + al;
        }
    }
    if (!rc) rc = buf_to_val(c, &o, out);
    buf_fini(&o);
    return rc;
}

static int str_split(struct ctx *c, const struct jval *s, const struct jval *sep, int64_t maxsplit,
                     struct jval *out) {
    struct jlist *l = list_new(c->ar, 8);
    if (!l) return oom(c);
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (!sep || sep->t != JT_STR) {
        size_t i = 0;
        int64_t k = 0;
        for (;;) {
            while (i < n) {
                size_t adv;
                if (!py_space(pretok__utf8_next((const uint8_t *)p + i, n - i, &adv))) break;
                i += adv;
            }
            if (i >= n) break;
            size_t j = i;
            if (maxsplit >= 0 && k >= maxsplit) {
                size_t e = n;
                TRY(list_push(c->ar, l, strip(&(struct jval){.t = JT_STR, .u.s = {p + i, e - i}}, NULL, false, true)));
                break;
            }
            while (j < n) {
                size_t adv;
                if (py_space(pretok__utf8_next((const uint8_t *)p + j, n - j, &adv))) break;
                j += adv;
            }
            TRY(list_push(c->ar, l, jv_str(p + i, j - i)));
            k++;
            i = j;
        }
    } else {
        if (!sep->u.s.n) return fail(c, NULL, LFMD_EINVAL, "split: empty separator", NULL);
        size_t i = 0;
        int64_t k = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || k < maxsplit) && n - i >= sep->u.s.n
                                  ? memmem(p + i, n - i, sep->u.s.p, sep->u.s.n)
                                  : NULL;
            if (!hit) {
                TRY(list_push(c->ar, l, jv_str(p + i, n - i)));
                break;
            }
            TRY(list_push(c->ar, l, jv_str(p + i, (size_t)(hit - p) - i)));
            i = (size_t)(hit - p) + sep->u.s.n;
            k++;
        }
    }
    *out = vlist(l);
    return 0;
}

// ---- evaluation ----

static int eval(struct ctx *c, const struct jnode *n, struct jval *out);
static int exec_body(struct ctx *c, const struct jnode *n);

static const struct jval *lookup(struct ctx *c, const char *s, size_t n) {
    for (struct jscope *sc = c->scope; sc; sc = sc->parent) {
        const struct jval *v = dict_get(&sc->vars, s, n);
        if (v) return v;
    }
    return NULL;
}

static int set_var(struct ctx *c, const char *s, size_t n, struct jval v) {
    return jdict_set(c->ar, &c->scope->vars, s, n, v) ? oom(c) : 0;
}

struct args {
    int n;
    struct jval v[MAX_ARGS];
    const char *name[MAX_ARGS];
    size_t name_len[MAX_ARGS];
};

static int eval_args(struct ctx *c, const struct jnode *a, struct args *out) {
    out->n = 0;
    for (; a; a = a->next) {
        if (out->n == MAX_ARGS) return fail(c, a, LFMD_EINVAL, "too many arguments", NULL);
        int i = out->n++;
        out->name[i] = a->kind == JN_KWARG ? a->s : NULL;
        out->name_len[i] = a->kind == JN_KWARG ? a->n : 0;
        TRY(eval(c, a->kind == JN_KWARG ? a->a : a, &out->v[i]));
    }
    return 0;
}

// Positional argument pos or keyword `name`; NULL when absent.
static const struct jval *arg(const struct args *a, int pos, const char *name) {
    int k = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->name[i]) {
            if (name && strlen(name) == a->name_len[i] && !memcmp(a->name[i], name, a->name_len[i]))
                return &a->v[i];
        } else if (k++ == pos) {
            return &a->v[i];
        }
    }
    return NULL;
}

static int need_str(struct ctx *c, const struct jnode *n, const struct jval *v, const char *what) {
    if (v && v->t == JT_STR) return 0;
    return fail(c, n, LFMD_EINVAL, "expected a string for ", what);
}

static int getattr(struct ctx *c, const struct jnode *n, const struct jval *obj, const char *name,
                   size_t nl, struct jval *out);

static int call_macro(struct ctx *c, const struct jnode *m, const struct args *a, struct jval *out);

static int apply_test(struct ctx *c, const struct jnode *n, int id, const struct jval *v,
                      const struct args *a, bool *res);
static int apply_filter(struct ctx *c, const struct jnode *n, int id, const struct jval *v,
                        const struct args *a, struct jval *out);

static int call(struct ctx *c, const struct jnode *n, const struct jval *f, const struct args *a,
                struct jval *out) {
    if (f->t == JT_MACRO) return call_macro(c, f->u.m, a, out);
    if (f->t != JT_FUNC) return fail(c, n, LFMD_EINVAL, "value is not callable", NULL);
    const struct jval *self = f->u.fn.self;
    const struct jval *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
    switch (f->u.fn.id) {
    case FN_RANGE: {
        int64_t lo = 0, hi, st = 1;
        if (!a0) return fail(c, n, LFMD_EINVAL, "range() needs an argument", NULL);
        if (a1) {
            lo = inum(a0);
            hi = inum(a1);
            const struct jval *a2 = arg(a, 2, NULL);
            if (a2) st = inum(a2);
        } else {
            hi = inum(a0);
        }
        if (!st) return fail(c, n, LFMD_EINVAL, "range() step is zero", NULL);
        struct jlist *l = list_new(c->ar, 8);
        if (!l) return oom(c);
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
            if (l->n >= MAX_RANGE) return fail(c, n, LFMD_ETOOBIG, "range() too large", NULL);
            TRY(list_push(c->ar, l, vint(i)));
        }
        *out = vlist(l);
        return 0;
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        struct jdict *d = jarena_alloc(c->ar, sizeof *d);
        if (!d) return oom(c);
        d->is_ns = f->u.fn.id == FN_NAMESPACE;
        for (int i = 0; i < a->n; i++) {
            if (a->name[i]) TRY(jdict_set(c->ar, d, a->name[i], a->name_len[i], a->v[i]));
            else if (a->v[i].t == JT_DICT)
                for (size_t k = 0; k < a->v[i].u.d->n; k++)
                    TRY(jdict_set(c->ar, d, a->v[i].u.d->k[k].u.s.p, a->v[i].u.d->k[k].u.s.n,
                                  a->v[i].u.d->v[k]));
        }
        *out = vdict(d);
        return 0;
    }
    case FN_RAISE: {
        struct jval s = UNDEF;
        if (a0) TRY(to_string(c, a0, &s));
        return lfmd_err_set(c->err, LFMD_EINVAL, "chat template raised an exception: %.*s",
                            (int)(s.t == JT_STR ? s.u.s.n : 0), s.t == JT_STR ? s.u.s.p : "");
    }
    case FN_STRFTIME: {
        TRY(need_str(c, n, a0, "strftime_now"));
        char fmt[128], res[256];
        snprintf(fmt, sizeof fmt, "%.*s", (int)a0->u.s.n, a0->u.s.p);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        size_t k = strftime(res, sizeof res, fmt, &tm); // the template chooses the format
#pragma GCC diagnostic pop
        char *p = jarena_alloc(c->ar, k + 1);
        if (!p) return oom(c);
        memcpy(p, res, k);
        *out = jv_str(p, k);
        return 0;
    }
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        struct jlist *l = list_new(c->ar, self->u.d->n);
        if (!l) return oom(c);
        for (size_t i = 0; i < self->u.d->n; i++) {
            if (f->u.fn.id == M_ITEMS) {
                struct jlist *p = list_new(c->ar, 2);
                if (!p) return oom(c);
                TRY(list_push(c->ar, p, self->u.d->k[i]));
                TRY(list_push(c->ar, p, self->u.d->v[i]));
                TRY(list_push(c->ar, l, vlist(p)));
            } else {
                TRY(list_push(c->ar, l, f->u.fn.id == M_KEYS ? self->u.d->k[i] : self->u.d->v[i]));
            }
        }
        *out = vlist(l);
        return 0;
    }
    case M_GET: {
        TRY(need_str(c, n, a0, "get"));
        const struct jval *v = dict_get(self->u.d, a0->u.s.p, a0->u.s.n);
        *out = v ? *v : a1 ? *a1 : vnone();
        return 0;
    }
    case M_CYCLE: {
        if (!a->n) return fail(c, n, LFMD_EINVAL, "loop.cycle() needs arguments", NULL);
        *out = a->v[self->u.loop->index0 % a->n];
        return 0;
    }
    default: break;
    }
    // string methods
    const struct jval *s = self;
    switch (f->u.fn.id) {
    case M_STRIP: *out = strip(s, a0, true, true); return 0;
    case M_LSTRIP: *out = strip(s, a0, true, false); return 0;
    case M_RSTRIP: *out = strip(s, a0, false, true); return 0;
    case M_SPLIT: {
        const struct jval *ms = arg(a, 1, "maxsplit");
        const struct jval *sep = arg(a, 0, "sep");
        return str_split(c, s, sep && sep->t == JT_STR ? sep : NULL, ms ? inum(ms) : -1, out);
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        bool r = false;
        const struct jlist *opts = NULL;
        struct jlist one = {1, 1, (struct jval *)a0};
        if (a0 && a0->t == JT_LIST) opts = a0->u.l;
        else if (a0 && a0->t == JT_STR) opts = &one;
        else return fail(c, n, LFMD_EINVAL, "startswith/endswith needs a string", NULL);
        for (size_t i = 0; i < opts->n && !r; i++) {
            const struct jval *o = &opts->v[i];
            if (o->t != JT_STR || o->u.s.n > s->u.s.n) continue;
            r = f->u.fn.id == M_STARTSWITH
                    ? !memcmp(s->u.s.p, o->u.s.p, o->u.s.n)
                    : !memcmp(s->u.s.p + s->u.s.n - o->u.s.n, o->u.s.p, o->u.s.n);
        }
        *out = vbool(r);
        return 0;
    }
    case M_UPPER: return change_case(c, s, CASE_UPPER, out);
    case M_LOWER: return change_case(c, s, CASE_LOWER, out);
    case M_TITLE: return change_case(c, s, CASE_TITLE, out);
    case M_CAPITALIZE: return change_case(c, s, CASE_CAPITALIZE, out);
    case M_REPLACE: {
        TRY(need_str(c, n, a0, "replace"));
        TRY(need_str(c, n, a1, "replace"));
        const struct jval *cnt = arg(a, 2, "count");
        return str_replace(c, s, a0, a1, cnt ? inum(cnt) : -1, out);
    }
    case M_FIND:
    case M_COUNT: {
        TRY(need_str(c, n, a0, "find/count"));
        if (f->u.fn.id == M_FIND) {
            const char *h = a0->u.s.n <= s->u.s.n ? memmem(s->u.s.p, s->u.s.n, a0->u.s.p, a0->u.s.n)
                                                  : NULL;
            *out = vint(h ? (int64_t)utf8_count(s->u.s.p, (size_t)(h - s->u.s.p)) : -1);
        } else {
            int64_t k = 0;
            for (size_t i = 0; a0->u.s.n && i + a0->u.s.n <= s->u.s.n;) {
                const char *h = memmem(s->u.s.p + i, s->u.s.n - i, a0->u.s.p, a0->u.s.n);
                if (!h) break;
                k++;
                i = (size_t)(h - s->u.s.p) + a0->u.s.n;
            }
            *out = vint(k);
        }
        return 0;
    }
    case M_JOIN: {
        const struct jlist *l;
        if (!a0 || iter_list(c, a0, &l)) return fail(c, n, LFMD_EINVAL, "join needs a list", NULL);
        struct buf b;
        buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = 0;
        for (size_t i = 0; !rc && i < l->n; i++) {
            if (i) rc = buf_append(&b, s->u.s.p, s->u.s.n);
            if (!rc) rc = put_str(&b, &l->v[i], 0);
        }
        if (!rc) rc = buf_to_val(c, &b, out);
        buf_fini(&b);
        return rc;
    }
    case M_SPLITLINES: {
        struct jlist *l = list_new(c->ar, 8);
        if (!l) return oom(c);
        size_t i = 0, n2 = s->u.s.n;
        while (i < n2) {
            size_t j = i;
            while (j < n2 && s->u.s.p[j] != '\n' && s->u.s.p[j] != '\r') j++;
            TRY(list_push(c->ar, l, jv_str(s->u.s.p + i, j - i)));
            if (j < n2 && s->u.s.p[j] == '\r' && j + 1 < n2 && s->u.s.p[j + 1] == '\n') j++;
            i = j + 1;
        }
        *out = vlist(l);
        return 0;
    }
    case M_ISDIGIT:
    case M_ISALPHA: {
        bool r = s->u.s.n > 0;
        for (size_t i = 0; r && i < s->u.s.n;) {
            size_t adv;
            uint32_t cp = pretok__utf8_next((const uint8_t *)s->u.s.p + i, s->u.s.n - i, &adv);
            utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
            r = f->u.fn.id == M_ISDIGIT ? cat == UTF8PROC_CATEGORY_ND
                                        : (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO);
            i += adv;
        }
        *out = vbool(r);
        return 0;
    }
    default: break;
    }
    return fail(c, n, LFMD_EINVAL, "bad call", NULL);
}

static struct jval method(struct ctx *c, const struct jval *self, int id) {
    struct jval *s = jarena_alloc(c->ar, sizeof *s);
    if (s) *s = *self;
    return (struct jval){.t = JT_FUNC, .u.fn = {id, s}};
}

static int getattr(struct ctx *c, const struct jnode *n, const struct jval *obj, const char *name,
                   size_t nl, struct jval *out) {
    *out = UNDEF;
    switch (obj->t) {
    case JT_DICT: {
        static const char *const dm[] = {"items", "keys", "values", "get"};
        if (!obj->u.d->is_ns)
            for (int i = 0; i < 4; i++)
                if (strlen(dm[i]) == nl && !memcmp(dm[i], name, nl)) {
                    *out = method(c, obj, M_ITEMS + i);
                    return 0;
                }
        const struct jval *v = dict_get(obj->u.d, name, nl);
        if (v) *out = *v;
        return 0;
    }
    case JT_STR:
        for (size_t i = 0; i < sizeof str_methods / sizeof str_methods[0]; i++)
            if (strlen(str_methods[i]) == nl && !memcmp(str_methods[i], name, nl)) {
                *out = method(c, obj, M_STRIP + (int)i);
                return 0;
            }
        return 0;
    case JT_LOOP: {
        const struct jloop *lp = obj->u.loop;
        int64_t i = lp->index0, len = lp->length;
#define IS(s) (nl == strlen(s) && !memcmp(name, s, nl))
        if (IS("index")) *out = vint(i + 1);
        else if (IS("index0")) *out = vint(i);
        else if (IS("revindex")) *out = vint(len - i);
        else if (IS("revindex0")) *out = vint(len - i - 1);
        else if (IS("first")) *out = vbool(i == 0);
        else if (IS("last")) *out = vbool(i == len - 1);
        else if (IS("length")) *out = vint(len);
        else if (IS("previtem")) *out = i > 0 ? lp->items->v[i - 1] : UNDEF;
        else if (IS("nextitem")) *out = i + 1 < len ? lp->items->v[i + 1] : UNDEF;
        else if (IS("cycle")) *out = method(c, obj, M_CYCLE);
#undef IS
        return 0;
    }
    case JT_UNDEF: {
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)(nl > 60 ? 60 : nl), name);
        return fail(c, n, LFMD_EINVAL, "attribute of an undefined value: ", nm);
    }
    default: return 0;
    }
}

static int getitem(struct ctx *c, const struct jnode *n, const struct jval *obj,
                   const struct jval *key, struct jval *out) {
    *out = UNDEF;
    if (obj->t == JT_DICT) {
        if (key->t != JT_STR) return 0;
        const struct jval *v = dict_get(obj->u.d, key->u.s.p, key->u.s.n);
        if (v) *out = *v;
        return 0;
    }
    if (obj->t == JT_LIST || obj->t == JT_STR) {
        if (!is_num(key)) return obj->t == JT_STR && key->t == JT_STR
                                    ? getattr(c, n, obj, key->u.s.p, key->u.s.n, out)
                                    : 0;
        int64_t len, i = inum(key);
        TRY(length_of(obj, &len));
        if (i < 0) i += len;
        if (i < 0 || i >= len) return 0;
        if (obj->t == JT_LIST) *out = obj->u.l->v[i];
        else {
            size_t a = utf8_off(obj->u.s.p, obj->u.s.n, (size_t)i);
            size_t b = utf8_off(obj->u.s.p, obj->u.s.n, (size_t)i + 1);
            *out = jv_str(obj->u.s.p + a, b - a);
        }
        return 0;
    }
    if (obj->t == JT_UNDEF) return fail(c, n, LFMD_EINVAL, "subscript of an undefined value", NULL);
    if (key->t == JT_STR) return getattr(c, n, obj, key->u.s.p, key->u.s.n, out);
    return 0;
}

static int slice(struct ctx *c, const struct jnode *n, const struct jval *obj, struct jval *out) {
    struct jval vs = UNDEF, ve = UNDEF, vst = UNDEF;
    if (n->b) TRY(eval(c, n->b, &vs));
    if (n->c) TRY(eval(c, n->c, &ve));
    if (n->d) TRY(eval(c, n->d, &vst));
    int64_t len;
    if (length_of(obj, &len) || obj->t == JT_DICT || obj->t == JT_UNDEF)
        return fail(c, n, LFMD_EINVAL, "slice of a value that is not a list or string", NULL);
    int64_t step = is_num(&vst) ? inum(&vst) : 1;
    if (!step) return fail(c, n, LFMD_EINVAL, "slice step is zero", NULL);
    int64_t lo, hi;
    // Python slice.indices
    if (step > 0) {
        lo = is_num(&vs) ? inum(&vs) : 0;
        hi = is_num(&ve) ? inum(&ve) : len;
        if (lo < 0) lo = lo + len < 0 ? 0 : lo + len;
        if (hi < 0) hi = hi + len < 0 ? 0 : hi + len;
        if (lo > len) lo = len;
        if (hi > len) hi = len;
    } else {
        lo = is_num(&vs) ? inum(&vs) : len - 1;
        hi = is_num(&ve) ? inum(&ve) : -1 - len;
        if (lo < 0) lo = lo + len < 0 ? -1 : lo + len;
        if (hi < 0) hi = hi + len < 0 ? -1 : hi + len;
        if (lo >= len) lo = len - 1;
        if (hi >= len) hi = len - 1;
    }
    const struct jlist *items;
    TRY(iter_list(c, obj, &items));
    struct jlist *l = list_new(c->ar, 8);
    if (!l) return oom(c);
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) TRY(list_push(c->ar, l, items->v[i]));
    if (obj->t == JT_LIST) {
        *out = vlist(l);
        return 0;
    }
    struct buf b;
    buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
    int rc = 0;
    for (size_t i = 0; !rc && i < l->n; i++) rc = buf_append(&b, l->v[i].u.s.p, l->v[i].u.s.n);
    if (!rc) rc = buf_to_val(c, &b, out);
    buf_fini(&b);
    return rc;
}

static int arith(struct ctx *c, const struct jnode *n, int op, const struct jval *a,
                 const struct jval *b, struct jval *out) {
    if (op == '~') {
        struct buf o;
        buf_init(&o, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = put_str(&o, a, 0);
        if (!rc) rc = put_str(&o, b, 0);
        if (!rc) rc = buf_to_val(c, &o, out);
        buf_fini(&o);
        return rc;
    }
    if (op == '+' && a->t == JT_STR && b->t == JT_STR) {
        char *p = jarena_alloc(c->ar, a->u.s.n + b->u.s.n + 1);
        if (!p) return oom(c);
        memcpy(p, a->u.s.p, a->u.s.n);
        memcpy(p + a->u.s.n, b->u.s.p, b->u.s.n);
        *out = jv_str(p, a->u.s.n + b->u.s.n);
        return 0;
    }
    if (op == '+' && a->t == JT_LIST && b->t == JT_LIST) {
        struct jlist *l = list_new(c->ar, a->u.l->n + b->u.l->n);
        if (!l) return oom(c);
        for (size_t i = 0; i < a->u.l->n; i++) TRY(list_push(c->ar, l, a->u.l->v[i]));
        for (size_t i = 0; i < b->u.l->n; i++) TRY(list_push(c->ar, l, b->u.l->v[i]));
        *out = vlist(l);
        return 0;
    }
    if (op == '*' && ((a->t == JT_STR && b->t == JT_INT) || (a->t == JT_INT && b->t == JT_STR))) {
        const struct jval *s = a->t == JT_STR ? a : b;
        int64_t k = a->t == JT_INT ? a->u.i : b->u.i;
        struct buf o;
        buf_init(&o, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = 0;
        for (int64_t i = 0; !rc && i < k; i++) rc = buf_append(&o, s->u.s.p, s->u.s.n);
        if (!rc) rc = buf_to_val(c, &o, out);
        buf_fini(&o);
        return rc == LFMD_ETOOBIG ? fail(c, n, rc, "string repetition too large", NULL) : rc;
    }
    if (!is_num(a) || !is_num(b)) {
        char o[2] = {(char)op, 0};
        return fail(c, n, LFMD_EINVAL, "unsupported operand types for ", op == 'F' ? "//" : op == 'P' ? "**" : o);
    }
    bool flt = a->t == JT_FLOAT || b->t == JT_FLOAT;
    double x = num(a), y = num(b);
    int64_t i = inum(a), j = inum(b), iv;
    // Integer results outside int64 become floats (Python has big ints; signed overflow is UB).
    switch (op) {
    case '+': *out = flt || __builtin_add_overflow(i, j, &iv) ? vfloat(x + y) : vint(iv); return 0;
    case '-': *out = flt || __builtin_sub_overflow(i, j, &iv) ? vfloat(x - y) : vint(iv); return 0;
    case '*': *out = flt || __builtin_mul_overflow(i, j, &iv) ? vfloat(x * y) : vint(iv); return 0;
    case '/':
        if (y == 0) return fail(c, n, LFMD_EINVAL, "division by zero", NULL);
        *out = vfloat(x / y);
        return 0;
    case 'F':
    case '%':
        if (y == 0) return fail(c, n, LFMD_EINVAL, "division by zero", NULL);
        if (flt || (i == INT64_MIN && j == -1)) {
            double q = floor(x / y);
            *out = op == 'F' ? vfloat(q) : vfloat(x - q * y);
        } else {
            int64_t q = i / j, r = i % j;
            if (r != 0 && ((r < 0) != (j < 0))) {
                q--;
                r += j;
            }
            *out = vint(op == 'F' ? q : r);
        }
        return 0;
    case 'P':
        if (!flt && j >= 0) {
            int64_t p = 1;
            bool ovf = false;
            for (int64_t k = 0; k < j && k < 64 && !ovf; k++)
                ovf = __builtin_mul_overflow(p, i, &p);
            *out = ovf ? vfloat(pow(x, y)) : vint(p);
        } else {
            *out = vfloat(pow(x, y));
        }
        return 0;
    }
    return fail(c, n, LFMD_EINVAL, "bad operator", NULL);
}

static int contains(struct ctx *c, const struct jnode *n, const struct jval *needle,
                    const struct jval *hay, bool *res) {
    *res = false;
    if (hay->t == JT_STR) {
        if (needle->t != JT_STR) return fail(c, n, LFMD_EINVAL, "'in <string>' needs a string", NULL);
        *res = needle->u.s.n == 0 ||
               (needle->u.s.n <= hay->u.s.n &&
                memmem(hay->u.s.p, hay->u.s.n, needle->u.s.p, needle->u.s.n) != NULL);
        return 0;
    }
    if (hay->t == JT_DICT) {
        *res = needle->t == JT_STR && dict_get(hay->u.d, needle->u.s.p, needle->u.s.n) != NULL;
        return 0;
    }
    if (hay->t == JT_LIST) {
        for (size_t i = 0; i < hay->u.l->n && !*res; i++) *res = jv_eq(needle, &hay->u.l->v[i]);
        return 0;
    }
    if (hay->t == JT_UNDEF) return 0;
    return fail(c, n, LFMD_EINVAL, "'in' needs a string, list or mapping", NULL);
}

static int eval(struct ctx *c, const struct jnode *n, struct jval *out) {
    if (++c->steps > MAX_STEPS) return fail(c, n, LFMD_ETOOBIG, "template runs too long", NULL);
    struct jval a, b;
    switch (n->kind) {
    case JN_LIT: *out = n->lit; return 0;
    case JN_NAME: {
        const struct jval *v = lookup(c, n->s, n->n);
        *out = v ? *v : UNDEF;
        return 0;
    }
    case JN_ATTR:
        TRY(eval(c, n->a, &a));
        return getattr(c, n, &a, n->s, n->n, out);
    case JN_ITEM:
        TRY(eval(c, n->a, &a));
        TRY(eval(c, n->b, &b));
        return getitem(c, n, &a, &b, out);
    case JN_SLICE:
        TRY(eval(c, n->a, &a));
        return slice(c, n, &a, out);
    case JN_CALL: {
        struct args args;
        TRY(eval(c, n->a, &a));
        TRY(eval_args(c, n->d, &args));
        return call(c, n, &a, &args, out);
    }
    case JN_FILTER: {
        struct args args;
        TRY(eval(c, n->a, &a));
        TRY(eval_args(c, n->d, &args));
        return apply_filter(c, n, n->op, &a, &args, out);
    }
    case JN_TEST: {
        struct args args = {0};
        bool r;
        TRY(eval(c, n->a, &a));
        if (n->d) {
            if (n->d->kind == JN_KWARG || n->d->next) TRY(eval_args(c, n->d, &args));
            else {
                args.n = 1;
                TRY(eval(c, n->d, &args.v[0]));
            }
        }
        TRY(apply_test(c, n, n->op, &a, &args, &r));
        *out = vbool(n->e ? !r : r);
        return 0;
    }
    case JN_BIN:
        TRY(eval(c, n->a, &a));
        TRY(eval(c, n->b, &b));
        return arith(c, n, n->op, &a, &b, out);
    case JN_CMP: {
        TRY(eval(c, n->a, &a));
        TRY(eval(c, n->b, &b));
        bool r = false, ok;
        int k;
        switch (n->op) {
        case 'E': r = jv_eq(&a, &b); break;
        case 'N': r = !jv_eq(&a, &b); break;
        case 'I':
        case 'J':
            TRY(contains(c, n, &a, &b, &r));
            if (n->op == 'J') r = !r;
            break;
        default:
            k = jv_cmp(&a, &b, &ok);
            if (!ok) return fail(c, n, LFMD_EINVAL, "values cannot be ordered", NULL);
            r = n->op == '<' ? k < 0 : n->op == '>' ? k > 0 : n->op == 'L' ? k <= 0 : k >= 0;
        }
        *out = vbool(r);
        return 0;
    }
    case JN_AND:
        TRY(eval(c, n->a, &a));
        if (!truthy(&a)) {
            *out = a;
            return 0;
        }
        return eval(c, n->b, out);
    case JN_OR:
        TRY(eval(c, n->a, &a));
        if (truthy(&a)) {
            *out = a;
            return 0;
        }
        return eval(c, n->b, out);
    case JN_NOT:
        TRY(eval(c, n->a, &a));
        *out = vbool(!truthy(&a));
        return 0;
    case JN_NEG:
        TRY(eval(c, n->a, &a));
        if (a.t == JT_FLOAT) *out = vfloat(-a.u.f);
        else if (is_num(&a)) *out = inum(&a) == INT64_MIN ? vfloat(0x1p63) : vint(-inum(&a));
        else return fail(c, n, LFMD_EINVAL, "bad operand for unary -", NULL);
        return 0;
    case JN_COND:
        TRY(eval(c, n->a, &a));
        if (truthy(&a)) return eval(c, n->b, out);
        if (n->c) return eval(c, n->c, out);
        *out = UNDEF;
        return 0;
    case JN_LIST:
    case JN_TUPLE: {
        struct jlist *l = list_new(c->ar, 4);
        if (!l) return oom(c);
        for (const struct jnode *i = n->d; i; i = i->next) {
            TRY(eval(c, i, &a));
            TRY(list_push(c->ar, l, a));
        }
        *out = vlist(l);
        return 0;
    }
    case JN_DICT: {
        struct jdict *d = jarena_alloc(c->ar, sizeof *d);
        if (!d) return oom(c);
        for (const struct jnode *p = n->d; p; p = p->next) {
            TRY(eval(c, p->a, &a));
            TRY(eval(c, p->b, &b));
            if (a.t != JT_STR) TRY(to_string(c, &a, &a));
            TRY(jdict_set(c->ar, d, a.u.s.p, a.u.s.n, b));
        }
        *out = vdict(d);
        return 0;
    }
    default: return fail(c, n, LFMD_EINVAL, "not an expression", NULL);
    }
}

// ---- tests ----

static int apply_test(struct ctx *c, const struct jnode *n, int id, const struct jval *v,
                      const struct args *a, bool *res) {
    const struct jval *a0 = arg(a, 0, NULL);
    bool ok;
    switch (id) {
    case T_BOOLEAN: *res = v->t == JT_BOOL; return 0;
    case T_CALLABLE: *res = v->t == JT_FUNC || v->t == JT_MACRO; return 0;
    case T_DEFINED: *res = v->t != JT_UNDEF; return 0;
    case T_UNDEFINED: *res = v->t == JT_UNDEF; return 0;
    case T_NONE: *res = v->t == JT_NONE; return 0;
    case T_TRUE: *res = v->t == JT_BOOL && v->u.b; return 0;
    case T_FALSE: *res = v->t == JT_BOOL && !v->u.b; return 0;
    case T_STRING: *res = v->t == JT_STR; return 0;
    case T_NUMBER: *res = v->t == JT_INT || v->t == JT_FLOAT; return 0;
    case T_INTEGER: *res = v->t == JT_INT; return 0;
    case T_FLOAT: *res = v->t == JT_FLOAT; return 0;
    case T_MAPPING: *res = v->t == JT_DICT; return 0;
    case T_ITERABLE: *res = v->t == JT_LIST || v->t == JT_DICT || v->t == JT_STR; return 0;
    case T_SEQUENCE: *res = v->t == JT_LIST || v->t == JT_DICT || v->t == JT_STR; return 0;
    case T_ODD:
    case T_EVEN:
        if (v->t != JT_INT) return fail(c, n, LFMD_EINVAL, "odd/even needs an integer", NULL);
        *res = (v->u.i % 2 != 0) == (id == T_ODD);
        return 0;
    case T_DIVISIBLEBY:
        if (!a0 || !is_num(a0) || !inum(a0) || !is_num(v))
            return fail(c, n, LFMD_EINVAL, "divisibleby needs integers", NULL);
        *res = inum(v) % inum(a0) == 0;
        return 0;
    case T_LOWER:
    case T_UPPER: {
        if (v->t != JT_STR) {
            *res = false;
            return 0;
        }
        struct jval t;
        TRY(change_case(c, v, id == T_LOWER ? CASE_LOWER : CASE_UPPER, &t));
        *res = jv_eq(&t, v);
        return 0;
    }
    case T_IN:
        if (!a0) return fail(c, n, LFMD_EINVAL, "'in' test needs an argument", NULL);
        return contains(c, n, v, a0, res);
    default: break;
    }
    if (!a0) return fail(c, n, LFMD_EINVAL, "comparison test needs an argument", NULL);
    switch (id) {
    case T_EQ:
    case T_EQUALTO: *res = jv_eq(v, a0); return 0;
    case T_NE: *res = !jv_eq(v, a0); return 0;
    case T_SAMEAS:
        *res = v->t == a0->t && (v->t == JT_NONE || v->t == JT_UNDEF ||
                                 (v->t == JT_BOOL && v->u.b == a0->u.b) || jv_eq(v, a0));
        return 0;
    default: {
        int k = jv_cmp(v, a0, &ok);
        if (!ok) return fail(c, n, LFMD_EINVAL, "values cannot be ordered", NULL);
        *res = id == T_LT ? k < 0 : id == T_LE ? k <= 0 : id == T_GT ? k > 0 : k >= 0;
        return 0;
    }
    }
}

// ---- filters ----

// attribute lookup with dotted path ("a.b") for map/selectattr/sort/join.
static int attr_path(struct ctx *c, const struct jnode *n, const struct jval *v,
                     const struct jval *path, struct jval *out) {
    *out = *v;
    const char *p = path->u.s.p, *e = p + path->u.s.n;
    while (p < e) {
        const char *dot = memchr(p, '.', (size_t)(e - p));
        size_t k = dot ? (size_t)(dot - p) : (size_t)(e - p);
        struct jval key = jv_str(p, k), cur = *out;
        if (cur.t == JT_UNDEF) return 0;
        if (k && p[0] >= '0' && p[0] <= '9') key = vint(strtoll(p, NULL, 10));
        TRY(getitem(c, n, &cur, &key, out));
        p += k + (dot ? 1 : 0);
    }
    return 0;
}

static int select_items(struct ctx *c, const struct jnode *n, int id, const struct jval *v,
                        const struct args *a, struct jval *out) {
    const struct jlist *l;
    if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "select needs a sequence", NULL);
    bool by_attr = id == F_SELECTATTR || id == F_REJECTATTR;
    bool reject = id == F_REJECT || id == F_REJECTATTR;
    int first = by_attr ? 1 : 0;
    const struct jval *attr = by_attr ? arg(a, 0, NULL) : NULL;
    const struct jval *tname = arg(a, first, NULL);
    if (by_attr && (!attr || attr->t != JT_STR))
        return fail(c, n, LFMD_EINVAL, "selectattr needs an attribute name", NULL);
    int tid = -1;
    if (tname) {
        if (tname->t != JT_STR) return fail(c, n, LFMD_EINVAL, "select needs a test name", NULL);
        tid = jinja__test_id(tname->u.s.p, tname->u.s.n);
        if (tid < 0) return fail(c, n, LFMD_EINVAL, "unknown test in select", NULL);
    }
    struct args targs = {0};
    for (int i = first + 1; i < a->n && targs.n < MAX_ARGS; i++)
        if (!a->name[i]) targs.v[targs.n++] = a->v[i];
    struct jlist *r = list_new(c->ar, l->n);
    if (!r) return oom(c);
    for (size_t i = 0; i < l->n; i++) {
        struct jval x = l->v[i];
        if (by_attr) TRY(attr_path(c, n, &l->v[i], attr, &x));
        bool ok;
        if (tid < 0) ok = truthy(&x);
        else TRY(apply_test(c, n, tid, &x, &targs, &ok));
        if (ok != reject) TRY(list_push(c->ar, r, l->v[i]));
    }
    *out = vlist(r);
    return 0;
}

static int apply_filter(struct ctx *c, const struct jnode *n, int id, const struct jval *v,
                        const struct args *a, struct jval *out) {
    const struct jval *a0 = arg(a, 0, NULL);
    const struct jlist *l;
    int64_t len;
    switch (id) {
    case F_ABS:
        if (!is_num(v)) return fail(c, n, LFMD_EINVAL, "abs needs a number", NULL);
        *out = v->t == JT_FLOAT ? vfloat(fabs(v->u.f))
               : inum(v) == INT64_MIN ? vfloat(0x1p63) : vint(llabs(inum(v)));
        return 0;
    case F_CAPITALIZE:
    case F_LOWER:
    case F_UPPER:
    case F_TITLE: {
        struct jval s;
        TRY(to_string(c, v, &s));
        return change_case(c, &s, id == F_CAPITALIZE ? CASE_CAPITALIZE : id == F_LOWER ? CASE_LOWER
                                                      : id == F_UPPER ? CASE_UPPER : CASE_TITLE,
                           out);
    }
    case F_COUNT:
    case F_LENGTH:
        if (length_of(v, &len)) return fail(c, n, LFMD_EINVAL, "length of a value without one", NULL);
        *out = vint(len);
        return 0;
    case F_D:
    case F_DEFAULT: {
        const struct jval *boolean = arg(a, 1, "boolean");
        bool use = v->t == JT_UNDEF || (boolean && truthy(boolean) && !truthy(v));
        *out = use ? (a0 ? *a0 : jv_str("", 0)) : *v;
        return 0;
    }
    case F_DICTSORT: {
        if (v->t != JT_DICT) return fail(c, n, LFMD_EINVAL, "dictsort needs a mapping", NULL);
        struct jval items;
        struct jval m = method(c, v, M_ITEMS);
        struct args none = {0};
        TRY(call(c, n, &m, &none, &items));
        struct jlist *il = items.u.l;
        for (size_t i = 1; i < il->n; i++) // insertion sort by key
            for (size_t j = i; j > 0; j--) {
                bool ok;
                if (jv_cmp(&il->v[j - 1].u.l->v[0], &il->v[j].u.l->v[0], &ok) <= 0) break;
                struct jval t = il->v[j];
                il->v[j] = il->v[j - 1];
                il->v[j - 1] = t;
            }
        *out = items;
        return 0;
    }
    case F_E:
    case F_ESCAPE: {
        struct jval s;
        TRY(to_string(c, v, &s));
        struct buf b;
        buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = 0;
        for (size_t i = 0; !rc && i < s.u.s.n; i++) {
            char ch = s.u.s.p[i];
            rc = ch == '&' ? buf_puts(&b, "&amp;") : ch == '<' ? buf_puts(&b, "&lt;")
                 : ch == '>' ? buf_puts(&b, "&gt;") : ch == '"' ? buf_puts(&b, "&#34;")
                 : ch == '\'' ? buf_puts(&b, "&#39;") : buf_putc(&b, ch);
        }
        if (!rc) rc = buf_to_val(c, &b, out);
        buf_fini(&b);
        return rc;
    }
    case F_FIRST:
    case F_LAST:
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "first/last needs a sequence", NULL);
        *out = l->n ? l->v[id == F_FIRST ? 0 : l->n - 1] : UNDEF;
        return 0;
    case F_FLOAT:
    case F_INT: {
        double d = 0;
        if (is_num(v)) d = num(v);
        else if (v->t == JT_STR) {
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(v->u.s.n > 60 ? 60 : v->u.s.n), v->u.s.p);
            char *end;
            d = strtod(tmp, &end);
            if (end == tmp) d = a0 ? num(a0) : 0;
        } else if (a0) d = num(a0);
        *out = id == F_FLOAT ? vfloat(d) : vint(i64_of(d));
        return 0;
    }
    case F_INDENT: {
        struct jval s;
        TRY(to_string(c, v, &s));
        const struct jval *w = arg(a, 0, "width"), *first = arg(a, 1, "first"),
                          *blank = arg(a, 2, "blank");
        struct buf pad, b;
        buf_init(&pad, 4096, LFMD_MEM_REQUEST);
        buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = 0;
        if (w && w->t == JT_STR) rc = buf_append(&pad, w->u.s.p, w->u.s.n);
        else
            for (int64_t i = 0; !rc && i < (w ? inum(w) : 4); i++) rc = buf_putc(&pad, ' ');
        bool first_line = true;
        for (size_t i = 0; !rc && i <= s.u.s.n;) {
            size_t j = i;
            while (j < s.u.s.n && s.u.s.p[j] != '\n') j++;
            bool empty = j == i;
            if ((!first_line || (first && truthy(first))) && (!empty || (blank && truthy(blank))) &&
                pad.len)
                rc = buf_append(&b, pad.data, pad.len);
            if (!rc) rc = buf_append(&b, s.u.s.p + i, j - i);
            if (!rc && j < s.u.s.n) rc = buf_putc(&b, '\n');
            first_line = false;
            i = j + 1;
        }
        if (!rc) rc = buf_to_val(c, &b, out);
        buf_fini(&pad);
        buf_fini(&b);
        return rc;
    }
    case F_ITEMS: {
        if (v->t == JT_UNDEF) {
            struct jlist *e = list_new(c->ar, 1);
            if (!e) return oom(c);
            *out = vlist(e);
            return 0;
        }
        if (v->t != JT_DICT) return fail(c, n, LFMD_EINVAL, "items needs a mapping", NULL);
        struct jval m = method(c, v, M_ITEMS);
        struct args none = {0};
        return call(c, n, &m, &none, out);
    }
    case F_JOIN: {
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "join needs a sequence", NULL);
        const struct jval *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        struct buf b;
        buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = 0;
        for (size_t i = 0; !rc && i < l->n; i++) {
            if (i && sep) rc = put_str(&b, sep, 0);
            struct jval x = l->v[i];
            if (!rc && attr && attr->t == JT_STR) rc = attr_path(c, n, &l->v[i], attr, &x);
            if (!rc) rc = put_str(&b, &x, 0);
        }
        if (!rc) rc = buf_to_val(c, &b, out);
        buf_fini(&b);
        return rc;
    }
    case F_LIST:
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "list needs a sequence", NULL);
        *out = vlist((struct jlist *)l);
        return 0;
    case F_MAP: {
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "map needs a sequence", NULL);
        const struct jval *attr = arg(a, -1, "attribute");
        const struct jval *def = arg(a, -1, "default");
        struct jlist *r = list_new(c->ar, l->n);
        if (!r) return oom(c);
        int fid = -1;
        struct args fargs = {0};
        if (!attr) {
            if (!a0 || a0->t != JT_STR) return fail(c, n, LFMD_EINVAL, "map needs a filter name", NULL);
            fid = jinja__filter_id(a0->u.s.p, a0->u.s.n);
            if (fid < 0) return fail(c, n, LFMD_EINVAL, "unknown filter in map", NULL);
            for (int i = 1; i < a->n; i++) fargs.v[fargs.n++] = a->v[i];
        }
        for (size_t i = 0; i < l->n; i++) {
            struct jval x;
            if (attr) {
                if (attr->t != JT_STR) return fail(c, n, LFMD_EINVAL, "map attribute must be a string", NULL);
                TRY(attr_path(c, n, &l->v[i], attr, &x));
                if (x.t == JT_UNDEF && def) x = *def;
            } else {
                TRY(apply_filter(c, n, fid, &l->v[i], &fargs, &x));
            }
            TRY(list_push(c->ar, r, x));
        }
        *out = vlist(r);
        return 0;
    }
    case F_MAX:
    case F_MIN: {
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "min/max needs a sequence", NULL);
        *out = UNDEF;
        for (size_t i = 0; i < l->n; i++) {
            bool ok;
            if (out->t == JT_UNDEF) *out = l->v[i];
            else {
                int k = jv_cmp(&l->v[i], out, &ok);
                if (!ok) return fail(c, n, LFMD_EINVAL, "values cannot be ordered", NULL);
                if ((id == F_MAX && k > 0) || (id == F_MIN && k < 0)) *out = l->v[i];
            }
        }
        return 0;
    }
    case F_REJECT:
    case F_REJECTATTR:
    case F_SELECT:
    case F_SELECTATTR: return select_items(c, n, id, v, a, out);
    case F_REPLACE: {
        struct jval s;
        TRY(to_string(c, v, &s));
        const struct jval *a1 = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
        TRY(need_str(c, n, a0, "replace"));
        TRY(need_str(c, n, a1, "replace"));
        return str_replace(c, &s, a0, a1, cnt && is_num(cnt) ? inum(cnt) : -1, out);
    }
    case F_REVERSE: {
        if (v->t == JT_STR) {
            struct jval st = vint(-1);
            struct jnode sl = {.kind = JN_SLICE, .line = n->line};
            struct jnode stepn = {.kind = JN_LIT, .lit = st};
            sl.d = &stepn;
            return slice(c, &sl, v, out);
        }
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "reverse needs a sequence", NULL);
        struct jlist *r = list_new(c->ar, l->n);
        if (!r) return oom(c);
        for (size_t i = l->n; i-- > 0;) TRY(list_push(c->ar, r, l->v[i]));
        *out = vlist(r);
        return 0;
    }
    case F_ROUND: {
        const struct jval *prec = arg(a, 0, "precision"), *meth = arg(a, 1, "method");
        double d = num(v), m = pow(10, prec ? (double)inum(prec) : 0);
        bool fl = meth && meth->t == JT_STR && meth->u.s.n && meth->u.s.p[0] == 'f';
        bool ce = meth && meth->t == JT_STR && meth->u.s.n && meth->u.s.p[0] == 'c';
        double r = fl ? floor(d * m) / m : ce ? ceil(d * m) / m : round(d * m) / m;
        *out = vfloat(r);
        return 0;
    }
    case F_SAFE: *out = *v; return 0;
    case F_SORT: {
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "sort needs a sequence", NULL);
        const struct jval *rev = arg(a, 0, "reverse"), *attr = arg(a, 2, "attribute");
        struct jlist *r = list_new(c->ar, l->n);
        if (!r) return oom(c);
        for (size_t i = 0; i < l->n; i++) TRY(list_push(c->ar, r, l->v[i]));
        bool desc = rev && truthy(rev);
        for (size_t i = 1; i < r->n; i++) // stable insertion sort
            for (size_t j = i; j > 0; j--) {
                struct jval x = r->v[j - 1], y = r->v[j];
                if (attr && attr->t == JT_STR) {
                    TRY(attr_path(c, n, &r->v[j - 1], attr, &x));
                    TRY(attr_path(c, n, &r->v[j], attr, &y));
                }
                bool ok;
                int k = jv_cmp(&x, &y, &ok);
                if (!ok) return fail(c, n, LFMD_EINVAL, "values cannot be ordered", NULL);
                if (desc ? k >= 0 : k <= 0) break;
                struct jval t = r->v[j];
                r->v[j] = r->v[j - 1];
                r->v[j - 1] = t;
            }
        *out = vlist(r);
        return 0;
    }
    case F_STRING: return to_string(c, v, out);
    case F_SUM: {
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "sum needs a sequence", NULL);
        const struct jval *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        struct jval acc = start ? *start : vint(0);
        for (size_t i = 0; i < l->n; i++) {
            struct jval x = l->v[i];
            if (attr && attr->t == JT_STR) TRY(attr_path(c, n, &l->v[i], attr, &x));
            TRY(arith(c, n, '+', &acc, &x, &acc));
        }
        *out = acc;
        return 0;
    }
    case F_TOJSON: {
        const struct jval *ind = arg(a, 0, "indent");
        struct buf b;
        buf_init(&b, c->out->max_bytes, LFMD_MEM_REQUEST);
        int rc = put_json(&b, v, ind && is_num(ind) ? (int)inum(ind) : -1, 0);
        if (!rc) rc = buf_to_val(c, &b, out);
        buf_fini(&b);
        return rc;
    }
    case F_TRIM: {
        struct jval s;
        TRY(to_string(c, v, &s));
        *out = strip(&s, a0, true, true);
        return 0;
    }
    case F_UNIQUE: {
        if (iter_list(c, v, &l)) return fail(c, n, LFMD_EINVAL, "unique needs a sequence", NULL);
        struct jlist *r = list_new(c->ar, l->n);
        if (!r) return oom(c);
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t k = 0; k < r->n && !seen; k++) seen = jv_eq(&r->v[k], &l->v[i]);
            if (!seen) TRY(list_push(c->ar, r, l->v[i]));
        }
        *out = vlist(r);
        return 0;
    }
    case F_WORDCOUNT: {
        struct jval s, parts;
        TRY(to_string(c, v, &s));
        TRY(str_split(c, &s, NULL, -1, &parts));
        *out = vint((int64_t)parts.u.l->n);
        return 0;
    }
    }
    return fail(c, n, LFMD_EINVAL, "bad filter", NULL);
}

// ---- statements ----

static int assign(struct ctx *c, const struct jnode *target, const struct jval *v) {
    if (target->kind == JN_NAME) return set_var(c, target->s, target->n, *v);
    if (target->kind == JN_ATTR) {
        const struct jval *obj = lookup(c, target->a->s, target->a->n);
        if (!obj || obj->t != JT_DICT || !obj->u.d->is_ns)
            return fail(c, target, LFMD_EINVAL, "can only assign attributes of a namespace: ",
                        target->a->s);
        return jdict_set(c->ar, obj->u.d, target->s, target->n, *v) ? oom(c) : 0;
    }
    // tuple unpacking
    const struct jlist *l;
    if (iter_list(c, v, &l)) return fail(c, target, LFMD_EINVAL, "cannot unpack value", NULL);
    size_t i = 0;
    for (const struct jnode *t = target->d; t; t = t->next, i++) {
        if (i >= l->n) return fail(c, target, LFMD_EINVAL, "not enough values to unpack", NULL);
        TRY(set_var(c, t->s, t->n, l->v[i]));
    }
    if (i != l->n) return fail(c, target, LFMD_EINVAL, "too many values to unpack", NULL);
    return 0;
}

static int push_scope(struct ctx *c, struct jscope *sc, struct jscope *parent) {
    memset(sc, 0, sizeof *sc);
    sc->parent = parent;
    if (++c->depth > MAX_DEPTH) return fail(c, NULL, LFMD_ETOOBIG, "template nests too deep", NULL);
    return 0;
}

static int capture(struct ctx *c, const struct jnode *body, struct jval *out) {
    struct buf b, *saved = c->out;
    buf_init(&b, saved->max_bytes, LFMD_MEM_REQUEST);
    c->out = &b;
    int rc = exec_body(c, body);
    c->out = saved;
    if (!rc) rc = buf_to_val(c, &b, out);
    buf_fini(&b);
    return rc;
}

static int call_macro(struct ctx *c, const struct jnode *m, const struct args *a, struct jval *out) {
    struct jscope sc, *saved = c->scope;
    TRY(push_scope(c, &sc, c->root));
    c->scope = &sc;
    int pos = 0, rc = 0;
    for (const struct jnode *p = m->d; !rc && p; p = p->next, pos++) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(p->n > 120 ? 120 : p->n), p->s);
        const struct jval *v = arg(a, pos, name);
        struct jval dv = UNDEF;
        if (!v && p->a) {
            c->scope = saved;
            rc = eval(c, p->a, &dv);
            c->scope = &sc;
            v = &dv;
        }
        if (!rc) rc = set_var(c, p->s, p->n, v ? *v : UNDEF);
    }
    if (!rc) rc = capture(c, m->b, out);
    c->scope = saved;
    c->depth--;
    return rc;
}

static int exec_for(struct ctx *c, const struct jnode *n) {
    struct jval it;
    TRY(eval(c, n->a, &it));
    const struct jlist *items;
    if (it.t == JT_NONE || iter_list(c, &it, &items))
        return fail(c, n, LFMD_EINVAL, "for loop over a value that is not iterable", NULL);
    struct jscope sc, *saved = c->scope;
    TRY(push_scope(c, &sc, saved));
    c->scope = &sc;
    int rc = 0;
    if (n->e) { // loop filter: select first, so loop.length counts the kept items
        struct jlist *kept = list_new(c->ar, items->n);
        if (!kept) rc = oom(c);
        for (size_t i = 0; !rc && i < items->n; i++) {
            struct jval cond;
            rc = assign(c, n->d, &items->v[i]);
            if (!rc) rc = eval(c, n->e, &cond);
            if (!rc && truthy(&cond)) rc = list_push(c->ar, kept, items->v[i]);
        }
        items = kept;
    }
    struct jloop lp = {0, items ? (int64_t)items->n : 0, items};
    struct jval loopv = {.t = JT_LOOP, .u.loop = &lp};
    for (size_t i = 0; !rc && i < items->n; i++) {
        lp.index0 = (int64_t)i;
        sc.vars.n = 0; // each iteration starts fresh (sets inside do not leak)
        rc = set_var(c, "loop", 4, loopv);
        if (!rc) rc = assign(c, n->d, &items->v[i]);
        if (!rc) rc = exec_body(c, n->b);
        c->cont = false;
        if (c->brk) {
            c->brk = false;
            break;
        }
    }
    c->scope = saved;
    c->depth--;
    if (!rc && items->n == 0 && n->c) rc = exec_body(c, n->c);
    return rc;
}

static int exec_body(struct ctx *c, const struct jnode *n) {
    for (; n; n = n->next) {
        if (c->brk || c->cont) return 0;
        if (++c->steps > MAX_STEPS) return fail(c, n, LFMD_ETOOBIG, "template runs too long", NULL);
        struct jval v;
        int rc = 0;
        switch (n->kind) {
        case JN_TEXT: rc = buf_append(c->out, n->s, n->n); break;
        case JN_OUT:
            rc = eval(c, n->a, &v);
            if (!rc) rc = put_str(c->out, &v, 0);
            break;
        case JN_IF: {
            // c is either an elif (a lone JN_IF) or the else body; a lone if as the whole else
            // body means the same thing as an elif.
            for (const struct jnode *b = n; b;) {
                if ((rc = eval(c, b->a, &v))) break;
                if (truthy(&v)) {
                    rc = exec_body(c, b->b);
                    break;
                }
                const struct jnode *e = b->c;
                if (e && e->kind == JN_IF && !e->next) {
                    b = e;
                    continue;
                }
                if (e) rc = exec_body(c, e);
                break;
            }
            break;
        }
        case JN_FOR: rc = exec_for(c, n); break;
        case JN_SET:
            rc = eval(c, n->a, &v);
            if (!rc) rc = assign(c, n->d, &v);
            break;
        case JN_SETBLOCK:
            rc = capture(c, n->b, &v);
            if (!rc) rc = assign(c, n->d, &v);
            break;
        case JN_MACRO:
            rc = set_var(c, n->s, n->n, (struct jval){.t = JT_MACRO, .u.m = n});
            break;
        case JN_BREAK: c->brk = true; return 0;
        case JN_CONTINUE: c->cont = true; return 0;
        case JN_BLOCK: rc = exec_body(c, n->b); break;
        default: rc = fail(c, n, LFMD_EINVAL, "bad statement", NULL);
        }
        if (rc) {
            if (rc == LFMD_ETOOBIG && (!c->err || !c->err->code))
                return lfmd_err_set(c->err, rc, "chat template: output too large");
            if (rc == LFMD_ENOMEM && (!c->err || !c->err->code)) return oom(c);
            return rc;
        }
    }
    return 0;
}

int jinja_render(const struct jinja_tmpl *t, struct jarena *ar, const struct jval *globals,
                 struct buf *out, struct lfmd_err_ctx *err) {
    struct jscope root = {0};
    struct jscope top = {.parent = &root};
    root.vars = *globals->u.d;
    static const struct {
        const char *name;
        int id;
    } fns[] = {{"range", FN_RANGE},
               {"namespace", FN_NAMESPACE},
               {"raise_exception", FN_RAISE},
               {"dict", FN_DICT},
               {"strftime_now", FN_STRFTIME}};
    struct ctx c = {.ar = ar, .out = out, .err = err, .scope = &top, .root = &root};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (!dict_get(&root.vars, fns[i].name, strlen(fns[i].name)) &&
            jdict_set(ar, &root.vars, fns[i].name, strlen(fns[i].name),
                      (struct jval){.t = JT_FUNC, .u.fn = {fns[i].id, NULL}}))
            return oom(&c);
    // Template-level sets go to `top`; macros see root + their own scope (the globals).
    c.root = &top;
    return exec_body(&c, t->body);
}
