// Jinja lexer and recursive-descent parser (see jinja.h). Whitespace control follows Jinja2 with
// trim_blocks and lstrip_blocks on: `{%-`/`-%}` strip all whitespace, a block or comment tag
// alone on its line loses its indentation, and the first newline after `%}`/`#}` is dropped.
// Invariant: every AST node lives in the template arena; nothing is evaluated here.
// SPDX-License-Identifier: MIT
#include "jinja.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- arena ----

struct jchunk {
    struct jchunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void jarena_init(struct jarena *a, size_t max_bytes) {
    memset(a, 0, sizeof *a);
    a->max_bytes = max_bytes;
}

void jarena_fini(struct jarena *a) {
    for (struct jchunk *c = a->head, *n; c; c = n) {
        n = c->next;
        lfmd_free(c);
    }
    a->head = NULL;
    a->used_bytes = 0;
}

void *jarena_alloc(struct jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    struct jchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        if (a->used_bytes + cap > a->max_bytes) return NULL;
        c = lfmd_malloc(sizeof *c + cap, LFMD_MEM_REQUEST);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
        a->used_bytes += cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

// ---- lexer ----

// Text scanning state between tags.
struct scan {
    bool strip_next; // previous tag ended with '-'
    bool trim_next;  // previous tag was a block/comment: drop one leading newline (trim_blocks)
};

enum tok { T_EOF, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_END }; // T_END: %} or }}

struct lex {
    const char *src;
    size_t len, pos;
    int line;
    struct jarena *ar;
    struct lfmd_err_ctx *err;
    // current token
    enum tok t;
    const char *s;
    size_t n;
    int64_t iv;
    double fv;
    char op[3];
    bool in_expr;   // inside {{ }} (T_END means }})
    bool strip_after; // the closing tag had '-'
    int rc;
    int depth;        // expression + statement nesting, bounded by JINJA_MAX_NESTING
    struct scan sc;
};

#define JINJA_MAX_NESTING 200 // deeper nesting fails (the parser recurses per level)

static int lex_fail(struct lex *l, int code, const char *fmt, const char *what) {
    if (!l->rc) {
        l->rc = lfmd_err_set(l->err, code, "chat template line %d: %s%s", l->line, fmt,
                             what ? what : "");
    }
    return l->rc;
}

static bool is_name_char(char c, bool first) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (!first && c >= '0' && c <= '9');
}

// Reads the next token inside a tag.
static void next(struct lex *l) {
    if (l->rc) {
        l->t = T_EOF;
        return;
    }
    const char *s = l->src;
    while (l->pos < l->len && (s[l->pos] == ' ' || s[l->pos] == '\t' || s[l->pos] == '\n' ||
                               s[l->pos] == '\r')) {
        if (s[l->pos] == '\n') l->line++;
        l->pos++;
    }
    if (l->pos >= l->len) {
        l->t = T_EOF;
        lex_fail(l, LFMD_EFORMAT, "unterminated tag", NULL);
        return;
    }
    size_t p = l->pos;
    char c = s[p];
    // closing tags, with optional '-' or '+'
    const char *close = l->in_expr ? "}}" : "%}";
    if ((c == '-' || c == '+') && p + 2 < l->len + 0 && !memcmp(s + p + 1, close, 2)) {
        l->strip_after = c == '-';
        l->pos = p + 3;
        l->t = T_END;
        return;
    }
    if (p + 1 < l->len && !memcmp(s + p, close, 2)) {
        l->strip_after = false;
        l->pos = p + 2;
        l->t = T_END;
        return;
    }
    if (is_name_char(c, true)) {
        size_t q = p;
        while (q < l->len && is_name_char(s[q], false)) q++;
        l->t = T_NAME;
        l->s = s + p;
        l->n = q - p;
        l->pos = q;
        return;
    }
    if (c >= '0' && c <= '9') {
        size_t q = p;
        bool flt = false;
        while (q < l->len && ((s[q] >= '0' && s[q] <= '9') || s[q] == '_')) q++;
        if (q + 1 < l->len && s[q] == '.' && s[q + 1] >= '0' && s[q + 1] <= '9') {
            flt = true;
            q++;
            while (q < l->len && s[q] >= '0' && s[q] <= '9') q++;
        }
        if (q < l->len && (s[q] == 'e' || s[q] == 'E')) {
            size_t r = q + 1;
            if (r < l->len && (s[r] == '+' || s[r] == '-')) r++;
            if (r < l->len && s[r] >= '0' && s[r] <= '9') {
                flt = true;
                q = r;
                while (q < l->len && s[q] >= '0' && s[q] <= '9') q++;
            }
        }
        char buf[64];
        size_t k = 0;
        for (size_t i = p; i < q && k < sizeof buf - 1; i++)
            if (s[i] != '_') buf[k++] = s[i];
        buf[k] = 0;
        l->pos = q;
        if (flt) {
            l->t = T_FLOAT;
            l->fv = strtod(buf, NULL);
        } else {
            l->t = T_INT;
            l->iv = strtoll(buf, NULL, 10);
        }
        return;
    }
    if (c == '\'' || c == '"') {
        // Unescape into the arena.
        size_t q = p + 1;
        char *out = jarena_alloc(l->ar, l->len - p + 1);
        if (!out) {
            lex_fail(l, LFMD_ENOMEM, "out of memory", NULL);
            return;
        }
        size_t k = 0;
        while (q < l->len && s[q] != c) {
            char ch = s[q];
            if (ch == '\n') l->line++;
            if (ch == '\\' && q + 1 < l->len) {
                char e = s[++q];
                switch (e) {
                case 'n': out[k++] = '\n'; break;
                case 't': out[k++] = '\t'; break;
                case 'r': out[k++] = '\r'; break;
                case '\\': out[k++] = '\\'; break;
                case '\'': out[k++] = '\''; break;
                case '"': out[k++] = '"'; break;
                case '0': out[k++] = '\0'; break;
                case 'u':
                case 'x': {
                    int digits = e == 'u' ? 4 : 2;
                    unsigned v = 0;
                    int i = 0;
                    for (; i < digits && q + 1 < l->len; i++) {
                        char h = s[q + 1];
                        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                        if (d < 0) break;
                        v = v * 16 + (unsigned)d;
                        q++;
                    }
                    if (v < 0x80) out[k++] = (char)v;
                    else if (v < 0x800) {
                        out[k++] = (char)(0xC0 | (v >> 6));
                        out[k++] = (char)(0x80 | (v & 0x3F));
                    } else {
                        out[k++] = (char)(0xE0 | (v >> 12));
                        out[k++] = (char)(0x80 | ((v >> 6) & 0x3F));
                        out[k++] = (char)(0x80 | (v & 0x3F));
                    }
                    break;
                }
                default:
                    out[k++] = '\\';
                    out[k++] = e;
                }
                q++;
                continue;
            }
            out[k++] = ch;
            q++;
        }
        if (q >= l->len) {
            lex_fail(l, LFMD_EFORMAT, "unterminated string", NULL);
            l->t = T_EOF;
            return;
        }
        l->t = T_STR;
        l->s = out;
        l->n = k;
        l->pos = q + 1;
        return;
    }
    static const char *const two[] = {"==", "!=", "<=", ">=", "//", "**"};
    for (size_t i = 0; i < 6; i++) {
        if (p + 1 < l->len && s[p] == two[i][0] && s[p + 1] == two[i][1]) {
            l->t = T_OP;
            memcpy(l->op, two[i], 3);
            l->pos = p + 2;
            return;
        }
    }
    if (strchr("+-*/%~<>=.,:|()[]{}", c)) {
        l->t = T_OP;
        l->op[0] = c;
        l->op[1] = 0;
        l->pos = p + 1;
        return;
    }
    char what[8] = {c, 0};
    lex_fail(l, LFMD_EFORMAT, "unexpected character ", what);
    l->t = T_EOF;
}

static bool is_op(struct lex *l, const char *op) { return l->t == T_OP && !strcmp(l->op, op); }
static bool is_kw(struct lex *l, const char *kw) {
    return l->t == T_NAME && l->n == strlen(kw) && !memcmp(l->s, kw, l->n);
}
static bool accept_op(struct lex *l, const char *op) {
    if (!is_op(l, op)) return false;
    next(l);
    return true;
}
static bool accept_kw(struct lex *l, const char *kw) {
    if (!is_kw(l, kw)) return false;
    next(l);
    return true;
}
static void expect_op(struct lex *l, const char *op) {
    if (!accept_op(l, op)) lex_fail(l, LFMD_EFORMAT, "expected ", op);
}

static struct jnode *mk(struct lex *l, enum jn kind) {
    struct jnode *n = jarena_alloc(l->ar, sizeof *n);
    if (!n) {
        lex_fail(l, LFMD_ENOMEM, "out of memory", NULL);
        return NULL;
    }
    n->kind = kind;
    n->line = l->line;
    return n;
}

// ---- expressions ----

static struct jnode *parse_expr(struct lex *l);
static struct jnode *parse_or(struct lex *l);
static struct jnode *parse_unary(struct lex *l);

static char *name_copy(struct lex *l) {
    char *s = jarena_alloc(l->ar, l->n + 1);
    if (s) memcpy(s, l->s, l->n);
    return s;
}

// Call arguments after '(' : positional and name=value, until ')'.
static struct jnode *parse_args(struct lex *l) {
    struct jnode *head = NULL, **tail = &head;
    while (!l->rc && !is_op(l, ")")) {
        struct jnode *arg;
        if (l->t == T_NAME) {
            // lookahead for name '='
            size_t save_pos = l->pos;
            int save_line = l->line;
            const char *ns = l->s;
            size_t nn = l->n;
            next(l);
            if (is_op(l, "=")) {
                next(l);
                arg = mk(l, JN_KWARG);
                if (!arg) return NULL;
                arg->s = ns;
                arg->n = nn;
                arg->a = parse_expr(l);
            } else {
                // rewind: re-lex from the name
                l->pos = save_pos - nn;
                l->line = save_line;
                next(l);
                arg = parse_expr(l);
            }
        } else {
            arg = parse_expr(l);
        }
        if (!arg) return NULL;
        *tail = arg;
        tail = &arg->next;
        if (!accept_op(l, ",")) break;
    }
    expect_op(l, ")");
    return head;
}

static struct jnode *parse_primary(struct lex *l) {
    struct jnode *n = NULL;
    if (l->rc) return NULL;
    switch (l->t) {
    case T_STR: {
        n = mk(l, JN_LIT);
        if (!n) return NULL;
        n->lit.t = JT_STR;
        n->lit.u.s.p = l->s;
        n->lit.u.s.n = l->n;
        next(l);
        // adjacent string literals concatenate
        while (l->t == T_STR && !l->rc) {
            char *cat = jarena_alloc(l->ar, n->lit.u.s.n + l->n + 1);
            if (!cat) return NULL;
            memcpy(cat, n->lit.u.s.p, n->lit.u.s.n);
            memcpy(cat + n->lit.u.s.n, l->s, l->n);
            n->lit.u.s.p = cat;
            n->lit.u.s.n += l->n;
            next(l);
        }
        return n;
    }
    case T_INT:
        n = mk(l, JN_LIT);
        if (!n) return NULL;
        n->lit.t = JT_INT;
        n->lit.u.i = l->iv;
        next(l);
        return n;
    case T_FLOAT:
        n = mk(l, JN_LIT);
        if (!n) return NULL;
        n->lit.t = JT_FLOAT;
        n->lit.u.f = l->fv;
        next(l);
        return n;
    case T_NAME:
        if (is_kw(l, "true") || is_kw(l, "True") || is_kw(l, "false") || is_kw(l, "False")) {
            n = mk(l, JN_LIT);
            if (!n) return NULL;
            n->lit.t = JT_BOOL;
            n->lit.u.b = l->s[0] == 't' || l->s[0] == 'T';
            next(l);
            return n;
        }
        if (is_kw(l, "none") || is_kw(l, "None")) {
            n = mk(l, JN_LIT);
            if (!n) return NULL;
            n->lit.t = JT_NONE;
            next(l);
            return n;
        }
        n = mk(l, JN_NAME);
        if (!n) return NULL;
        n->s = name_copy(l);
        n->n = l->n;
        next(l);
        return n;
    case T_OP:
        if (accept_op(l, "(")) {
            if (accept_op(l, ")")) return mk(l, JN_TUPLE);
            struct jnode *e = parse_expr(l);
            if (!e) return NULL; // "(," and friends: the error is already set
            if (is_op(l, ",")) {
                n = mk(l, JN_TUPLE);
                if (!n) return NULL;
                n->d = e;
                struct jnode **tail = &e->next;
                while (accept_op(l, ",") && !is_op(l, ")")) {
                    *tail = parse_expr(l);
                    if (!*tail) return NULL;
                    tail = &(*tail)->next;
                }
                e = n;
            }
            expect_op(l, ")");
            return e;
        }
        if (accept_op(l, "[")) {
            n = mk(l, JN_LIST);
            if (!n) return NULL;
            struct jnode **tail = &n->d;
            while (!l->rc && !is_op(l, "]")) {
                *tail = parse_expr(l);
                if (!*tail) return NULL;
                tail = &(*tail)->next;
                if (!accept_op(l, ",")) break;
            }
            expect_op(l, "]");
            return n;
        }
        if (accept_op(l, "{")) {
            n = mk(l, JN_DICT);
            if (!n) return NULL;
            struct jnode **tail = &n->d;
            while (!l->rc && !is_op(l, "}")) {
                struct jnode *p = mk(l, JN_PAIR);
                if (!p) return NULL;
                p->a = parse_expr(l);
                expect_op(l, ":");
                p->b = parse_expr(l);
                *tail = p;
                tail = &p->next;
                if (!accept_op(l, ",")) break;
            }
            expect_op(l, "}");
            return n;
        }
        break;
    default: break;
    }
    lex_fail(l, LFMD_EFORMAT, "unexpected token in expression", NULL);
    return NULL;
}

static struct jnode *parse_postfix(struct lex *l, struct jnode *n) {
    while (n && !l->rc) {
        if (accept_op(l, ".")) {
            if (l->t != T_NAME && l->t != T_INT) {
                lex_fail(l, LFMD_EFORMAT, "expected attribute name", NULL);
                return NULL;
            }
            struct jnode *a = mk(l, l->t == T_INT ? JN_ITEM : JN_ATTR);
            if (!a) return NULL;
            a->a = n;
            if (l->t == T_INT) {
                a->b = mk(l, JN_LIT);
                if (!a->b) return NULL;
                a->b->lit.t = JT_INT;
                a->b->lit.u.i = l->iv;
            } else {
                a->s = name_copy(l);
                a->n = l->n;
            }
            next(l);
            n = a;
        } else if (accept_op(l, "[")) {
            struct jnode *idx = NULL, *stop = NULL, *step = NULL;
            bool slice = false;
            if (!is_op(l, ":")) idx = parse_expr(l);
            if (accept_op(l, ":")) {
                slice = true;
                if (!is_op(l, "]") && !is_op(l, ":")) stop = parse_expr(l);
                if (accept_op(l, ":") && !is_op(l, "]")) step = parse_expr(l);
            }
            expect_op(l, "]");
            struct jnode *a = mk(l, slice ? JN_SLICE : JN_ITEM);
            if (!a) return NULL;
            a->a = n;
            a->b = idx;
            a->c = stop;
            a->d = step;
            n = a;
        } else if (accept_op(l, "(")) {
            struct jnode *c = mk(l, JN_CALL);
            if (!c) return NULL;
            c->a = n;
            c->d = parse_args(l);
            n = c;
        } else {
            break;
        }
    }
    return n;
}

// Filters (|name(args)) and tests (is [not] name [arg]) bind tighter than any operator.
static struct jnode *parse_filters(struct lex *l, struct jnode *n) {
    while (n && !l->rc) {
        if (accept_op(l, "|")) {
            if (l->t != T_NAME) {
                lex_fail(l, LFMD_EFORMAT, "expected filter name", NULL);
                return NULL;
            }
            struct jnode *f = mk(l, JN_FILTER);
            if (!f) return NULL;
            f->s = name_copy(l);
            f->n = l->n;
            f->op = jinja__filter_id(l->s, l->n);
            if (f->op < 0) {
                lex_fail(l, LFMD_ENOTSUP, "unsupported filter: ", f->s);
                return NULL;
            }
            f->a = n;
            next(l);
            if (accept_op(l, "(")) f->d = parse_args(l);
            n = f;
        } else if (accept_kw(l, "is")) {
            struct jnode *t = mk(l, JN_TEST);
            if (!t) return NULL;
            if (accept_kw(l, "not")) t->e = t; // e != NULL marks negation
            if (l->t != T_NAME) {
                lex_fail(l, LFMD_EFORMAT, "expected test name", NULL);
                return NULL;
            }
            t->s = name_copy(l);
            t->n = l->n;
            t->op = jinja__test_id(l->s, l->n);
            if (t->op < 0) {
                lex_fail(l, LFMD_ENOTSUP, "unsupported test: ", t->s);
                return NULL;
            }
            t->a = n;
            next(l);
            if (accept_op(l, "(")) {
                t->d = parse_args(l);
            } else if (l->t == T_STR || l->t == T_INT || l->t == T_FLOAT ||
                       (l->t == T_NAME && !is_kw(l, "and") && !is_kw(l, "or") &&
                        !is_kw(l, "else") && !is_kw(l, "if") && !is_kw(l, "in") &&
                        !is_kw(l, "is") && !is_kw(l, "not"))) {
                t->d = parse_primary(l);
            }
            n = t;
        } else {
            break;
        }
    }
    return n;
}

static struct jnode *parse_unary_1(struct lex *l) {
    if (accept_op(l, "-")) {
        struct jnode *n = mk(l, JN_NEG);
        if (n) n->a = parse_unary(l);
        return n;
    }
    if (accept_op(l, "+")) return parse_unary(l);
    struct jnode *n = parse_postfix(l, parse_primary(l));
    return parse_filters(l, n);
}

// Every nested expression ('(', '[', '{', call arguments, unary signs) comes through here.
static struct jnode *parse_unary(struct lex *l) {
    if (l->depth >= JINJA_MAX_NESTING) {
        lex_fail(l, LFMD_EFORMAT, "expression nested too deeply", NULL);
        return NULL;
    }
    l->depth++;
    struct jnode *n = parse_unary_1(l);
    l->depth--;
    return n;
}

static struct jnode *bin(struct lex *l, int op, struct jnode *a, struct jnode *b) {
    struct jnode *n = mk(l, JN_BIN);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static struct jnode *parse_pow(struct lex *l) {
    struct jnode *n = parse_unary(l);
    while (n && is_op(l, "**")) {
        next(l);
        n = bin(l, 'P', n, parse_unary(l));
    }
    return n;
}

static struct jnode *parse_mul(struct lex *l) {
    struct jnode *n = parse_pow(l);
    while (n && l->t == T_OP && (is_op(l, "*") || is_op(l, "/") || is_op(l, "//") || is_op(l, "%"))) {
        int op = is_op(l, "//") ? 'F' : l->op[0];
        next(l);
        n = bin(l, op, n, parse_pow(l));
    }
    return n;
}

static struct jnode *parse_concat(struct lex *l) {
    struct jnode *n = parse_mul(l);
    while (n && is_op(l, "~")) {
        next(l);
        n = bin(l, '~', n, parse_mul(l));
    }
    return n;
}

static struct jnode *parse_add(struct lex *l) {
    struct jnode *n = parse_concat(l);
    while (n && (is_op(l, "+") || is_op(l, "-"))) {
        int op = l->op[0];
        next(l);
        n = bin(l, op, n, parse_concat(l));
    }
    return n;
}

static struct jnode *parse_cmp(struct lex *l) {
    struct jnode *n = parse_add(l);
    while (n && !l->rc) {
        int op = 0;
        if (is_op(l, "==")) op = 'E';
        else if (is_op(l, "!=")) op = 'N';
        else if (is_op(l, "<")) op = '<';
        else if (is_op(l, ">")) op = '>';
        else if (is_op(l, "<=")) op = 'L';
        else if (is_op(l, ">=")) op = 'G';
        else if (is_kw(l, "in")) op = 'I';
        else if (is_kw(l, "not")) {
            // "not in" (lookahead)
            size_t save = l->pos;
            int sl = l->line;
            next(l);
            if (!is_kw(l, "in")) {
                l->pos = save - 3;
                l->line = sl;
                next(l);
                break;
            }
            op = 'J';
        }
        if (!op) break;
        next(l);
        struct jnode *c = mk(l, JN_CMP);
        if (!c) return NULL;
        c->op = op;
        c->a = n;
        c->b = parse_add(l);
        n = c;
    }
    return n;
}

static struct jnode *parse_not(struct lex *l) {
    if (accept_kw(l, "not")) {
        struct jnode *n = mk(l, JN_NOT);
        if (n) n->a = parse_not(l);
        return n;
    }
    return parse_cmp(l);
}

static struct jnode *parse_and(struct lex *l) {
    struct jnode *n = parse_not(l);
    while (n && accept_kw(l, "and")) {
        struct jnode *a = mk(l, JN_AND);
        if (!a) return NULL;
        a->a = n;
        a->b = parse_not(l);
        n = a;
    }
    return n;
}

static struct jnode *parse_or(struct lex *l) {
    struct jnode *n = parse_and(l);
    while (n && accept_kw(l, "or")) {
        struct jnode *a = mk(l, JN_OR);
        if (!a) return NULL;
        a->a = n;
        a->b = parse_and(l);
        n = a;
    }
    return n;
}

static struct jnode *parse_expr(struct lex *l) {
    struct jnode *n = parse_or(l);
    if (n && accept_kw(l, "if")) {
        struct jnode *c = mk(l, JN_COND);
        if (!c) return NULL;
        c->b = n;
        c->a = parse_or(l);
        if (accept_kw(l, "else")) c->c = parse_expr(l);
        n = c;
    }
    return n;
}

// ---- statements ----

static struct jnode *parse_body(struct lex *l, const char *const *ends, int n_ends,
                                const char **ended);

// Checks that the tag ends here and records its whitespace effect on the following text:
// '-' strips it; a statement tag (trim_blocks) drops one newline.
static void end_tag(struct lex *l) {
    if (l->t != T_END) {
        lex_fail(l, LFMD_EFORMAT, "expected end of tag", NULL);
        return;
    }
    l->sc.strip_next = l->strip_after;
    l->sc.trim_next = !l->in_expr;
}


// Returns the next text chunk node (may be NULL if empty) and positions l at the next tag start.
// *tag_kind: '{' expression, '%' statement, 0 at EOF.
static struct jnode *scan_text(struct lex *l, struct scan *sc, char *tag_kind) {
    const char *s = l->src;
    size_t start = l->pos, p = start;
    *tag_kind = 0;
    for (;;) {
        const char *q = memchr(s + p, '{', l->len - p);
        if (!q || (size_t)(q - s) + 1 >= l->len) {
            p = l->len;
            break;
        }
        p = (size_t)(q - s);
        char k = s[p + 1];
        if (k == '{' || k == '%' || k == '#') {
            *tag_kind = k;
            break;
        }
        p++;
    }
    size_t a = start, b = p;
    if (sc->trim_next && a < b) { // trim_blocks
        if (s[a] == '\n') a++;
        else if (s[a] == '\r' && a + 1 < b && s[a + 1] == '\n') a += 2;
    }
    if (sc->strip_next)
        while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\n' || s[a] == '\r')) a++;
    if (*tag_kind) {
        char m = p + 2 < l->len ? s[p + 2] : 0;
        if (m == '-') {
            while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\n' ||
                             s[b - 1] == '\r'))
                b--;
        } else if ((*tag_kind == '%' || *tag_kind == '#') && m != '+') {
            // lstrip_blocks: indentation from the line start up to the tag goes.
            size_t i = p;
            while (i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t')) i--;
            if ((i == 0 || s[i - 1] == '\n') && i >= a) b = i;
        }
    }
    for (size_t i = start; i < p; i++)
        if (s[i] == '\n') l->line++;
    l->pos = p;
    sc->strip_next = sc->trim_next = false;
    if (b <= a) return NULL;
    struct jnode *n = mk(l, JN_TEXT);
    if (!n) return NULL;
    n->s = s + a;
    n->n = b - a;
    return n;
}

static struct jnode *parse_target(struct lex *l) {
    // name | name.attr | name, name
    if (l->t != T_NAME) {
        lex_fail(l, LFMD_EFORMAT, "expected a variable name", NULL);
        return NULL;
    }
    struct jnode *n = mk(l, JN_NAME);
    if (!n) return NULL;
    n->s = name_copy(l);
    n->n = l->n;
    next(l);
    if (accept_op(l, ".")) {
        struct jnode *a = mk(l, JN_ATTR);
        if (!a || l->t != T_NAME) {
            lex_fail(l, LFMD_EFORMAT, "expected attribute name", NULL);
            return NULL;
        }
        a->a = n;
        a->s = name_copy(l);
        a->n = l->n;
        next(l);
        return a;
    }
    if (is_op(l, ",")) {
        struct jnode *t = mk(l, JN_TUPLE);
        if (!t) return NULL;
        t->d = n;
        struct jnode **tail = &n->next;
        while (accept_op(l, ",")) {
            if (l->t != T_NAME) break;
            struct jnode *m = mk(l, JN_NAME);
            if (!m) return NULL;
            m->s = name_copy(l);
            m->n = l->n;
            next(l);
            *tail = m;
            tail = &m->next;
        }
        return t;
    }
    return n;
}

// Parses one statement tag whose keyword is the current token. Returns the node or NULL (check
// l->rc). Sets *ended when the keyword is one of `ends`.
static struct jnode *parse_stmt_1(struct lex *l, const char *const *ends, int n_ends,
                                  const char **ended) {
    for (int i = 0; i < n_ends; i++) {
        if (is_kw(l, ends[i])) {
            *ended = ends[i];
            next(l);
            return NULL;
        }
    }
    if (l->t != T_NAME) {
        lex_fail(l, LFMD_EFORMAT, "expected a statement", NULL);
        return NULL;
    }
    struct jnode *n = NULL;
    const char *ended2 = NULL;
    if (accept_kw(l, "if")) {
        n = mk(l, JN_IF);
        if (!n) return NULL;
        n->a = parse_expr(l);
        end_tag(l);
        static const char *const e[] = {"elif", "else", "endif"};
        n->b = parse_body(l, e, 3, &ended2);
        struct jnode *cur = n;
        while (!l->rc && ended2 && !strcmp(ended2, "elif")) {
            struct jnode *m = mk(l, JN_IF);
            if (!m) return NULL;
            m->a = parse_expr(l);
            end_tag(l);
            l->sc.strip_next = l->strip_after;
            l->sc.trim_next = true;
            m->b = parse_body(l, e, 3, &ended2);
            cur->c = m;
            cur = m;
        }
        if (!l->rc && ended2 && !strcmp(ended2, "else")) {
            end_tag(l);
            static const char *const e2[] = {"endif"};
            cur->c = parse_body(l, e2, 1, &ended2);
        }
        if (!l->rc && !ended2) lex_fail(l, LFMD_EFORMAT, "missing endif", NULL);
        return n;
    }
    if (accept_kw(l, "for")) {
        n = mk(l, JN_FOR);
        if (!n) return NULL;
        n->d = parse_target(l);
        if (!accept_kw(l, "in")) return lex_fail(l, LFMD_EFORMAT, "expected 'in'", NULL), NULL;
        n->a = parse_or(l); // not parse_expr: a trailing "if" is the loop filter
        if (accept_kw(l, "if")) n->e = parse_expr(l);
        if (is_kw(l, "recursive"))
            return lex_fail(l, LFMD_ENOTSUP, "unsupported construct: recursive for loop", NULL),
                   NULL;
        end_tag(l);
        static const char *const e[] = {"else", "endfor"};
        n->b = parse_body(l, e, 2, &ended2);
        if (!l->rc && ended2 && !strcmp(ended2, "else")) {
            end_tag(l);
            static const char *const e2[] = {"endfor"};
            n->c = parse_body(l, e2, 1, &ended2);
        }
        if (!l->rc && !ended2) lex_fail(l, LFMD_EFORMAT, "missing endfor", NULL);
        return n;
    }
    if (accept_kw(l, "set")) {
        struct jnode *target = parse_target(l);
        if (accept_op(l, "=")) {
            n = mk(l, JN_SET);
            if (!n) return NULL;
            n->d = target;
            n->a = parse_expr(l);
            if (!n->a) return NULL; // "set a = , b": the error is already set
            if (is_op(l, ",")) { // set a = x, y  -> tuple
                struct jnode *t = mk(l, JN_TUPLE);
                if (!t) return NULL;
                t->d = n->a;
                struct jnode **tail = &n->a->next;
                while (accept_op(l, ",")) {
                    *tail = parse_expr(l);
                    if (!*tail) return NULL;
                    tail = &(*tail)->next;
                }
                n->a = t;
            }
            return n;
        }
        n = mk(l, JN_SETBLOCK);
        if (!n) return NULL;
        n->d = target;
        if (accept_op(l, "|"))
            return lex_fail(l, LFMD_ENOTSUP, "unsupported construct: filtered set block", NULL),
                   NULL;
        end_tag(l);
        static const char *const e[] = {"endset"};
        n->b = parse_body(l, e, 1, &ended2);
        if (!l->rc && !ended2) lex_fail(l, LFMD_EFORMAT, "missing endset", NULL);
        return n;
    }
    if (accept_kw(l, "macro")) {
        n = mk(l, JN_MACRO);
        if (!n || l->t != T_NAME) return lex_fail(l, LFMD_EFORMAT, "bad macro", NULL), NULL;
        n->s = name_copy(l);
        n->n = l->n;
        next(l);
        expect_op(l, "(");
        struct jnode **tail = &n->d;
        while (!l->rc && l->t == T_NAME) {
            struct jnode *p = mk(l, JN_NAME);
            if (!p) return NULL;
            p->s = name_copy(l);
            p->n = l->n;
            next(l);
            if (accept_op(l, "=")) p->a = parse_expr(l);
            *tail = p;
            tail = &p->next;
            if (!accept_op(l, ",")) break;
        }
        expect_op(l, ")");
        end_tag(l);
        static const char *const e[] = {"endmacro"};
        n->b = parse_body(l, e, 1, &ended2);
        if (!l->rc && !ended2) lex_fail(l, LFMD_EFORMAT, "missing endmacro", NULL);
        return n;
    }
    if (accept_kw(l, "break")) return mk(l, JN_BREAK);
    if (accept_kw(l, "continue")) return mk(l, JN_CONTINUE);
    if (accept_kw(l, "generation")) { // transformers' assistant-mask marker: renders its body
        n = mk(l, JN_BLOCK);
        if (!n) return NULL;
        end_tag(l);
        static const char *const e[] = {"endgeneration"};
        n->b = parse_body(l, e, 1, &ended2);
        if (!l->rc && !ended2) lex_fail(l, LFMD_EFORMAT, "missing endgeneration", NULL);
        return n;
    }
    char what[64];
    snprintf(what, sizeof what, "{%% %.*s %%}", (int)(l->n > 40 ? 40 : l->n), l->s);
    lex_fail(l, LFMD_ENOTSUP, "unsupported construct: ", what);
    return NULL;
}

// Block statements nest through parse_body -> parse_stmt; the depth they add shares the
// expression bound, so no template can recurse the parser (or the evaluator, which follows the
// tree) deeper than JINJA_MAX_NESTING levels.
static struct jnode *parse_stmt(struct lex *l, const char *const *ends, int n_ends,
                                const char **ended) {
    if (l->depth >= JINJA_MAX_NESTING) {
        lex_fail(l, LFMD_EFORMAT, "statements nested too deeply", NULL);
        return NULL;
    }
    l->depth++;
    struct jnode *n = parse_stmt_1(l, ends, n_ends, ended);
    l->depth--;
    return n;
}

static struct jnode *parse_body(struct lex *l, const char *const *ends, int n_ends,
                                const char **ended) {
    struct jnode *head = NULL, **tail = &head;
    struct scan *sc = &l->sc;
    *ended = NULL;
    for (;;) {
        // The previous tag's end already consumed; l->pos is at text.
        char kind;
        struct jnode *txt = scan_text(l, sc, &kind);
        if (l->rc) return NULL;
        if (txt) {
            *tail = txt;
            tail = &txt->next;
        }
        if (!kind) {
            if (n_ends) lex_fail(l, LFMD_EFORMAT, "unexpected end of template, missing ", ends[n_ends - 1]);
            return head;
        }
        size_t p = l->pos + 2;
        if (p < l->len && (l->src[p] == '-' || l->src[p] == '+')) p++;
        l->pos = p;
        if (kind == '#') {
            const char *e = NULL;
            for (size_t i = p; i + 1 < l->len; i++)
                if (l->src[i] == '#' && l->src[i + 1] == '}') {
                    e = l->src + i;
                    break;
                }
            if (!e) return lex_fail(l, LFMD_EFORMAT, "unterminated comment", NULL), NULL;
            size_t ep = (size_t)(e - l->src);
            for (size_t i = p; i < ep; i++)
                if (l->src[i] == '\n') l->line++;
            sc->strip_next = ep > p && l->src[ep - 1] == '-';
            sc->trim_next = true;
            l->pos = ep + 2;
            continue;
        }
        if (kind == '{') {
            l->in_expr = true;
            next(l);
            struct jnode *o = mk(l, JN_OUT);
            if (!o) return NULL;
            o->a = parse_expr(l);
            end_tag(l);
            l->in_expr = false;
            if (l->rc) return NULL;
            sc->strip_next = l->strip_after;
            *tail = o;
            tail = &o->next;
            continue;
        }
        l->in_expr = false;
        next(l);
        if (is_kw(l, "raw")) {
            next(l);
            end_tag(l);
            const char *e = NULL;
            for (size_t i = l->pos; i + 1 < l->len && !e; i++) {
                if (l->src[i] == '{' && l->src[i + 1] == '%') {
                    size_t j = i + 2;
                    if (j < l->len && (l->src[j] == '-' || l->src[j] == '+')) j++;
                    while (j < l->len && l->src[j] == ' ') j++;
                    if (l->len - j >= 6 && !memcmp(l->src + j, "endraw", 6)) e = l->src + i;
                }
            }
            if (!e) return lex_fail(l, LFMD_EFORMAT, "missing endraw", NULL), NULL;
            struct jnode *t = mk(l, JN_TEXT);
            if (!t) return NULL;
            t->s = l->src + l->pos;
            t->n = (size_t)(e - l->src) - l->pos;
            if (sc->trim_next && t->n && t->s[0] == '\n') {
                t->s++;
                t->n--;
            }
            *tail = t;
            tail = &t->next;
            l->pos = (size_t)(e - l->src) + 2;
            if (l->pos < l->len && (l->src[l->pos] == '-' || l->src[l->pos] == '+')) l->pos++;
            next(l); // endraw
            next(l);
            end_tag(l);
            sc->strip_next = l->strip_after;
            sc->trim_next = true;
            continue;
        }
        struct jnode *st = parse_stmt(l, ends, n_ends, ended);
        if (l->rc) return NULL;
        if (*ended && !strcmp(*ended, "elif")) return head; // the caller parses its condition
        end_tag(l);
        if (l->rc) return NULL;
        sc->strip_next = l->strip_after;
        sc->trim_next = true;
        if (*ended) return head;
        if (st) {
            *tail = st;
            tail = &st->next;
        }
    }
}

void jinja_free(struct jinja_tmpl *t) {
    if (!t) return;
    struct jarena ar = t->ar;
    jarena_fini(&ar);
}

int jinja_parse(const char *src, size_t len, struct jinja_tmpl **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct jarena ar;
    jarena_init(&ar, (size_t)64 << 20);
    struct jinja_tmpl *t = jarena_alloc(&ar, sizeof *t);
    if (!t) return lfmd_err_set(err, LFMD_ENOMEM, "chat template: out of memory");
    struct lex l = {.src = src, .len = len, .line = 1, .ar = &ar, .err = err};
    const char *ended;
    struct jnode *body = parse_body(&l, NULL, 0, &ended);
    if (l.rc) {
        jarena_fini(&ar);
        return l.rc;
    }
    t->body = body;
    t->ar = ar;
    *out = t;
    return 0;
}
