// Constrained output (see constrain.h): a schema is compiled into nodes; the state is a stack of
// frames (object, array, string, number, literal set) fed one byte at a time. Literal sets
// (enum values, true/false/null, property keys, choices) are sorted, so the candidates that
// match a prefix form a range [lo, hi). constraint_min_bytes gives the fewest bytes to finish,
// which lets the mask keep the value completable within the token budget.
// Invariant: feed() never leaves the state in a position from which no valid value can follow.
// SPDX-License-Identifier: MIT
#include "constrain.h"

#include "base/alloc.h"
#include "base/buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 24        // frames (nesting of the output)
#define MAX_NODES 1024
#define MAX_PROPS 64
#define MAX_LITS 256
#define MAX_LIT_BYTES 4096
#define MAX_ALTS 8
#define MAX_NUM_BYTES 24
#define MAX_KEY_CHARS 256
#define WS_MAX 2            // whitespace bytes in a row between tokens of the value
#define CACHE_SLOTS 8
#define INF_COST (1 << 28)
#define LONG_TOK 16         // tokens longer than this are budget-checked one by one

enum kind { K_OBJ, K_ARR, K_STR, K_NUM, K_INT, K_LIT, K_MULTI };

struct littab {
    int n;
    char **s;               // sorted
    uint32_t *len;
    int *orig;              // index before sorting (property index for keys)
};

struct cnode {
    uint8_t kind;
    int items;              // K_ARR
    int min_items, max_items;
    int min_len, max_len;   // K_STR (characters)
    int n_props;            // K_OBJ
    int prop_node[MAX_PROPS];
    int keytab;             // encoded keys ("name" with quotes), orig = property index
    uint64_t required;
    int addl;               // node of additional properties, -1 = none allowed
    int littab;             // K_LIT
    int alts[MAX_ALTS], n_alts; // K_MULTI
    int minb;               // fewest bytes of a value
};

enum fkind { F_OBJ, F_ARR, F_STR, F_NUM, F_LIT };
enum { O_OPEN, O_NEXT, O_KEY, O_COLON, O_VSTART, O_VALUE, O_AFTER };
enum { A_OPEN, A_NEXT, A_VALUE, A_AFTER };
enum { S_NORM, S_ESC, S_U1, S_U2, S_U3, S_U4 };
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

struct frame {
    uint16_t node;
    uint8_t kind, st;
    uint8_t ws;             // whitespace run
    uint8_t key;            // F_STR/F_LIT: this is an object key (tables of the parent)
    uint8_t u8need, u8lo, u8hi;
    int16_t cur;            // object: property of the current member (-1: additional)
    uint16_t lo, hi, pos;   // literal range / key shadow range
    uint32_t n;             // chars, items, members, number bytes
    uint64_t seen;          // object: declared properties present
};

struct cstate {
    int depth;
    bool started, done;
    struct frame f[MAX_DEPTH];
};

struct cache_slot {
    bool used;
    struct cstate key;
    uint64_t *bits;
};

struct engine_constraint {
    struct cnode *nodes;
    int n_nodes;
    struct littab *tabs;
    int n_tabs;
    int root;
    int max_minb;           // largest minb of a node or key (bounds how fast min_bytes can grow)
    struct cstate s;
    struct cache_slot cache[CACHE_SLOTS];
    int cache_next;
    int cache_words;
};

// ---- compile ----

static void *grow(void *p, size_t n) {
    return p ? lfmd_realloc(p, n) : lfmd_malloc(n, LFMD_MEM_REQUEST);
}

struct compiler {
    struct engine_constraint *c;
    struct lfmd_err_ctx *err;
    int any;                // node of "any JSON value", -1 until needed
};

static int new_node(struct compiler *cp, enum kind k) {
    struct engine_constraint *c = cp->c;
    if (c->n_nodes >= MAX_NODES) return lfmd_err_set(cp->err, LFMD_EINVAL, "schema too large");
    if (c->n_nodes % 64 == 0) {
        void *p = grow(c->nodes, (size_t)(c->n_nodes + 64) * sizeof *c->nodes);
        if (!p) return lfmd_err_set(cp->err, LFMD_ENOMEM, "out of memory");
        c->nodes = p;
    }
    struct cnode *n = &c->nodes[c->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)k;
    n->items = n->addl = n->keytab = n->littab = -1;
    n->max_items = n->max_len = INT32_MAX;
    return c->n_nodes++;
}

static int cmp_lit(const void *a, const void *b, void *t) {
    const struct littab *tab = t;
    int x = *(const int *)a, y = *(const int *)b;
    uint32_t lx = tab->len[x], ly = tab->len[y];
    int r = memcmp(tab->s[x], tab->s[y], lx < ly ? lx : ly);
    if (r) return r;
    return lx < ly ? -1 : lx > ly;
}

// Adds a table of n strings (copied, sorted, duplicates dropped). Returns its index or -code.
static int new_tab(struct compiler *cp, const char *const *s, const size_t *len, int n) {
    struct engine_constraint *c = cp->c;
    if (n < 1 || n > MAX_LITS)
        return lfmd_err_set(cp->err, LFMD_EINVAL, "between 1 and %d values are supported",
                             MAX_LITS);
    void *p = grow(c->tabs, (size_t)(c->n_tabs + 1) * sizeof *c->tabs);
    if (!p) return lfmd_err_set(cp->err, LFMD_ENOMEM, "out of memory");
    c->tabs = p;
    struct littab *t = &c->tabs[c->n_tabs];
    memset(t, 0, sizeof *t);
    c->n_tabs++;
    t->s = lfmd_calloc((size_t)n, sizeof *t->s, LFMD_MEM_REQUEST);
    t->len = lfmd_calloc((size_t)n, sizeof *t->len, LFMD_MEM_REQUEST);
    t->orig = lfmd_calloc((size_t)n, sizeof *t->orig, LFMD_MEM_REQUEST);
    int *ix = lfmd_calloc((size_t)n, sizeof *ix, LFMD_MEM_REQUEST);
    if (!t->s || !t->len || !t->orig || !ix) {
        lfmd_free(ix);
        return lfmd_err_set(cp->err, LFMD_ENOMEM, "out of memory");
    }
    struct littab tmp = {.n = n, .s = (char **)s, .len = NULL};
    uint32_t *l32 = lfmd_calloc((size_t)n, sizeof *l32, LFMD_MEM_REQUEST);
    if (!l32) {
        lfmd_free(ix);
        return lfmd_err_set(cp->err, LFMD_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (len[i] < 1 || len[i] > MAX_LIT_BYTES) {
            lfmd_free(ix);
            lfmd_free(l32);
            return lfmd_err_set(cp->err, LFMD_EINVAL, "values must be 1 to %d bytes long",
                                 MAX_LIT_BYTES);
        }
        l32[i] = (uint32_t)len[i];
        ix[i] = i;
    }
    tmp.len = l32;
    qsort_r(ix, (size_t)n, sizeof *ix, cmp_lit, &tmp);
    for (int i = 0; i < n; i++) {
        int k = ix[i];
        if (t->n && t->len[t->n - 1] == l32[k] && !memcmp(t->s[t->n - 1], s[k], l32[k]))
            continue; // duplicate
        t->s[t->n] = lfmd_malloc(l32[k], LFMD_MEM_REQUEST);
        if (!t->s[t->n]) {
            lfmd_free(ix);
            lfmd_free(l32);
            return lfmd_err_set(cp->err, LFMD_ENOMEM, "out of memory");
        }
        memcpy(t->s[t->n], s[k], l32[k]);
        t->len[t->n] = l32[k];
        t->orig[t->n] = k;
        t->n++;
    }
    lfmd_free(ix);
    lfmd_free(l32);
    return c->n_tabs - 1;
}

// Compact JSON text of a value (enum/const literals).
static int write_json(struct buf *b, const struct json *j) {
    int rc = 0;
    switch (j->type) {
    case JSON_NULL: return buf_puts(b, "null");
    case JSON_TRUE: return buf_puts(b, "true");
    case JSON_FALSE: return buf_puts(b, "false");
    case JSON_NUMBER:
        if (!isfinite(j->u.num)) return LFMD_EINVAL;
        if (j->u.num == floor(j->u.num) && fabs(j->u.num) < 1e15)
            return buf_printf(b, "%lld", (long long)j->u.num);
        return buf_printf(b, "%.17g", j->u.num);
    case JSON_STRING: return buf_json_str(b, j->u.str, j->len);
    case JSON_ARRAY:
        rc = buf_putc(b, '[');
        for (uint32_t i = 0; i < j->len && !rc; i++) {
            if (i) rc = buf_putc(b, ',');
            if (!rc) rc = write_json(b, &j->u.items[i]);
        }
        return rc ? rc : buf_putc(b, ']');
    case JSON_OBJECT:
        rc = buf_putc(b, '{');
        for (uint32_t i = 0; i < j->len && !rc; i++) {
            if (i) rc = buf_putc(b, ',');
            if (!rc) rc = buf_json_str(b, j->u.items[i].key, j->u.items[i].key_len);
            if (!rc) rc = buf_putc(b, ':');
            if (!rc) rc = write_json(b, &j->u.items[i]);
        }
        return rc ? rc : buf_putc(b, '}');
    }
    return LFMD_EINVAL;
}

// A literal node from JSON values (enum) or raw strings.
static int lit_node_json(struct compiler *cp, const struct json *const *vals, int n,
                         const char *path) {
    if (n < 1 || n > MAX_LITS)
        return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: enum needs 1 to %d values", path,
                             MAX_LITS);
    struct buf b;
    buf_init(&b, (size_t)MAX_LITS * MAX_LIT_BYTES, LFMD_MEM_REQUEST);
    size_t off[MAX_LITS + 1];
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        off[i] = b.len;
        rc = write_json(&b, vals[i]);
    }
    off[n] = b.len;
    if (rc) {
        buf_fini(&b);
        return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: enum values too large", path);
    }
    const char *s[MAX_LITS];
    size_t len[MAX_LITS];
    for (int i = 0; i < n; i++) {
        s[i] = b.data + off[i];
        len[i] = off[i + 1] - off[i];
    }
    int t = new_tab(cp, s, len, n);
    buf_fini(&b);
    if (t < 0) return t;
    int id = new_node(cp, K_LIT);
    if (id < 0) return id;
    cp->c->nodes[id].littab = t;
    return id;
}

static int lit_node_raw(struct compiler *cp, const char *const *s, int n) {
    size_t len[MAX_LITS];
    if (n > MAX_LITS) return lfmd_err_set(cp->err, LFMD_EINVAL, "too many values");
    for (int i = 0; i < n; i++) len[i] = strlen(s[i]);
    int t = new_tab(cp, s, len, n);
    if (t < 0) return t;
    int id = new_node(cp, K_LIT);
    if (id < 0) return id;
    cp->c->nodes[id].littab = t;
    return id;
}

static int compile(struct compiler *cp, const struct json *s, const char *path, int depth);

// Any JSON value (json_object's members, schema-less items): MULTI over any-object, any-array,
// string, number, true/false/null.
static int any_node(struct compiler *cp) {
    if (cp->any >= 0) return cp->any;
    int m = new_node(cp, K_MULTI);
    if (m < 0) return m;
    cp->any = m;
    int o = new_node(cp, K_OBJ), a = new_node(cp, K_ARR), s = new_node(cp, K_STR);
    int nn = new_node(cp, K_NUM);
    static const char *const lits[] = {"true", "false", "null"};
    int l = lit_node_raw(cp, lits, 3);
    if (o < 0 || a < 0 || s < 0 || nn < 0 || l < 0) return cp->err->code;
    struct cnode *N = cp->c->nodes;
    N[o].addl = m;
    N[a].items = m;
    N[m].alts[0] = o;
    N[m].alts[1] = a;
    N[m].alts[2] = s;
    N[m].alts[3] = nn;
    N[m].alts[4] = l;
    N[m].n_alts = 5;
    return m;
}

static int get_count(struct compiler *cp, const struct json *s, const char *kw, const char *path,
                     int *out) {
    const struct json *j = json_get(s, kw);
    if (!j) return 0;
    int64_t v;
    if (json_int(j, 0, 1 << 20, &v))
        return lfmd_err_set(cp->err, LFMD_EINVAL, "%s.%s must be an integer from 0 to %d", path,
                            kw, 1 << 20);
    *out = (int)v;
    return 0;
}

static int compile_type(struct compiler *cp, const struct json *s, const char *type,
                        const char *path, int depth) {
    int id;
    struct cnode *N;
    char sub[512];
    if (!strcmp(type, "string")) {
        if ((id = new_node(cp, K_STR)) < 0) return id;
        N = &cp->c->nodes[id];
        if (get_count(cp, s, "minLength", path, &N->min_len) ||
            get_count(cp, s, "maxLength", path, &N->max_len))
            return cp->err->code;
        if (N->min_len > N->max_len)
            return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: minLength > maxLength", path);
        return id;
    }
    if (!strcmp(type, "number")) return new_node(cp, K_NUM);
    if (!strcmp(type, "integer")) return new_node(cp, K_INT);
    if (!strcmp(type, "boolean")) {
        static const char *const b[] = {"true", "false"};
        return lit_node_raw(cp, b, 2);
    }
    if (!strcmp(type, "null")) {
        static const char *const n[] = {"null"};
        return lit_node_raw(cp, n, 1);
    }
    if (!strcmp(type, "array")) {
        if ((id = new_node(cp, K_ARR)) < 0) return id;
        int mn = 0, mx = INT32_MAX;
        if (get_count(cp, s, "minItems", path, &mn) || get_count(cp, s, "maxItems", path, &mx))
            return cp->err->code;
        if (mn > mx) return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: minItems > maxItems", path);
        const struct json *it = json_get(s, "items");
        snprintf(sub, sizeof sub, "%s.items", path);
        int item = it ? compile(cp, it, sub, depth + 1) : any_node(cp);
        if (item < 0) return item;
        N = &cp->c->nodes[id];
        N->items = item;
        N->min_items = mn;
        N->max_items = mx;
        return id;
    }
    if (!strcmp(type, "object")) {
        if ((id = new_node(cp, K_OBJ)) < 0) return id;
        const struct json *props = json_get(s, "properties");
        const struct json *ap = json_get(s, "additionalProperties");
        const struct json *req = json_get(s, "required");
        if (props && !json_is(props, JSON_OBJECT))
            return lfmd_err_set(cp->err, LFMD_EINVAL, "%s.properties must be an object", path);
        if (props && props->len > MAX_PROPS)
            return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: at most %d properties", path,
                                 MAX_PROPS);
        int addl = -1;
        if ((!props && !ap) || (ap && json_is(ap, JSON_TRUE))) {
            if ((addl = any_node(cp)) < 0) return addl;
        } else if (ap && json_is(ap, JSON_OBJECT)) {
            snprintf(sub, sizeof sub, "%s.additionalProperties", path);
            if ((addl = compile(cp, ap, sub, depth + 1)) < 0) return addl;
        } else if (ap && !json_is(ap, JSON_FALSE)) {
            return lfmd_err_set(cp->err, LFMD_EINVAL,
                                "%s.additionalProperties must be a boolean or a schema", path);
        }
        int n = props ? (int)props->len : 0;
        int pn[MAX_PROPS];
        for (int i = 0; i < n; i++) {
            const struct json *p = &props->u.items[i];
            snprintf(sub, sizeof sub, "%s.properties.%s", path, p->key);
            if ((pn[i] = compile(cp, p, sub, depth + 1)) < 0) return pn[i];
        }
        uint64_t required = 0;
        if (req) {
            if (!json_is(req, JSON_ARRAY))
                return lfmd_err_set(cp->err, LFMD_EINVAL, "%s.required must be an array", path);
            for (uint32_t r = 0; r < req->len; r++) {
                const char *name = json_str(json_at(req, r), NULL);
                int k = -1;
                for (int i = 0; name && i < n; i++)
                    if (!strcmp(props->u.items[i].key, name)) k = i;
                if (k < 0)
                    return lfmd_err_set(cp->err, LFMD_EINVAL,
                                         "%s.required names '%s', which is not in properties",
                                         path, name ? name : "(not a string)");
                required |= 1ull << k;
            }
        }
        int keytab = -1;
        if (n) {
            struct buf kb;
            buf_init(&kb, (size_t)MAX_PROPS * (MAX_LIT_BYTES + 8), LFMD_MEM_REQUEST);
            size_t off[MAX_PROPS + 1];
            int rc = 0;
            for (int i = 0; i < n && !rc; i++) {
                off[i] = kb.len;
                rc = buf_json_str(&kb, props->u.items[i].key, props->u.items[i].key_len);
            }
            off[n] = kb.len;
            const char *ks[MAX_PROPS];
            size_t kl[MAX_PROPS];
            for (int i = 0; i < n; i++) {
                ks[i] = kb.data + off[i];
                kl[i] = off[i + 1] - off[i];
            }
            keytab = rc ? lfmd_err_set(cp->err, LFMD_EINVAL, "%s: keys too long", path)
                        : new_tab(cp, ks, kl, n);
            buf_fini(&kb);
            if (keytab < 0) return keytab;
            if (cp->c->tabs[keytab].n != n)
                return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: duplicate property names", path);
        }
        N = &cp->c->nodes[id];
        N->n_props = n;
        memcpy(N->prop_node, pn, (size_t)n * sizeof pn[0]);
        N->required = required;
        N->addl = addl;
        N->keytab = keytab;
        return id;
    }
    return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: unsupported type '%s'", path, type);
}

static const char *const known_kw[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "minLength", "maxLength", "title", "description", "default", "examples",
    "$schema", "$id", "$comment", "strict", "name"};

static int compile(struct compiler *cp, const struct json *s, const char *path, int depth) {
    if (depth > MAX_DEPTH - 4)
        return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: schema nested too deeply", path);
    if (json_is(s, JSON_TRUE)) return any_node(cp);
    if (!json_is(s, JSON_OBJECT))
        return lfmd_err_set(cp->err, LFMD_EINVAL, "%s: a schema must be an object", path);
    for (uint32_t i = 0; i < s->len; i++) {
        const char *kw = s->u.items[i].key;
        bool ok = false;
        for (size_t k = 0; k < sizeof known_kw / sizeof known_kw[0]; k++)
            ok = ok || !strcmp(kw, known_kw[k]);
        if (!ok)
            return lfmd_err_set(cp->err, LFMD_EINVAL,
                                 "%s: unsupported JSON schema keyword '%s' (supported: type, "
                                 "properties, required, additionalProperties, items, minItems, "
                                 "maxItems, enum, const, minLength, maxLength)",
                                 path, kw);
    }
    const struct json *en = json_get(s, "enum"), *cn = json_get(s, "const");
    if (cn) return lit_node_json(cp, &cn, 1, path);
    if (en) {
        if (!json_is(en, JSON_ARRAY) || en->len < 1 || en->len > MAX_LITS)
            return lfmd_err_set(cp->err, LFMD_EINVAL, "%s.enum must be an array of 1 to %d values",
                                 path, MAX_LITS);
        const struct json *v[MAX_LITS];
        for (uint32_t i = 0; i < en->len; i++) v[i] = &en->u.items[i];
        return lit_node_json(cp, v, (int)en->len, path);
    }
    const struct json *t = json_get(s, "type");
    if (!t) {
        if (json_get(s, "properties")) return compile_type(cp, s, "object", path, depth);
        if (json_get(s, "items")) return compile_type(cp, s, "array", path, depth);
        return any_node(cp);
    }
    if (json_is(t, JSON_STRING)) return compile_type(cp, s, t->u.str, path, depth);
    if (!json_is(t, JSON_ARRAY) || t->len < 1 || t->len > 7)
        return lfmd_err_set(cp->err, LFMD_EINVAL, "%s.type must be a string or an array of types",
                             path);
    int m = new_node(cp, K_MULTI);
    if (m < 0) return m;
    bool has_num = false;
    for (uint32_t i = 0; i < t->len; i++)
        has_num = has_num || !strcmp(json_str(json_at(t, i), ""), "number");
    int alts[MAX_ALTS], na = 0;
    unsigned seen = 0;
    for (uint32_t i = 0; i < t->len; i++) {
        const char *ty = json_str(json_at(t, i), NULL);
        if (!ty) return lfmd_err_set(cp->err, LFMD_EINVAL, "%s.type: types must be strings", path);
        if (has_num && !strcmp(ty, "integer")) continue; // number covers integer
        int a = compile_type(cp, s, ty, path, depth);
        if (a < 0) return a;
        unsigned bit = 1u << cp->c->nodes[a].kind;
        if (cp->c->nodes[a].kind == K_LIT) bit = !strcmp(ty, "null") ? 1u << 10 : 1u << 11;
        if (seen & bit) continue;
        seen |= bit;
        alts[na++] = a;
    }
    struct cnode *N = &cp->c->nodes[m];
    memcpy(N->alts, alts, (size_t)na * sizeof alts[0]);
    N->n_alts = na;
    return m;
}

static int tab_min_len(const struct littab *t) {
    int m = INF_COST;
    for (int i = 0; i < t->n; i++)
        if ((int)t->len[i] < m) m = (int)t->len[i];
    return m;
}

// minb of every node (fixed point: any-object and any-array refer back to any).
static void compute_minb(struct engine_constraint *c) {
    for (int i = 0; i < c->n_nodes; i++) c->nodes[i].minb = INF_COST;
    for (int iter = 0; iter < 64; iter++) {
        bool changed = false;
        for (int i = 0; i < c->n_nodes; i++) {
            struct cnode *n = &c->nodes[i];
            long v = INF_COST;
            switch (n->kind) {
            case K_STR: v = 2 + n->min_len; break;
            case K_NUM:
            case K_INT: v = 1; break;
            case K_LIT: v = tab_min_len(&c->tabs[n->littab]); break;
            case K_MULTI:
                for (int a = 0; a < n->n_alts; a++)
                    if (c->nodes[n->alts[a]].minb < v) v = c->nodes[n->alts[a]].minb;
                break;
            case K_ARR:
                v = 2 + (long)n->min_items * ((long)c->nodes[n->items].minb + 1) -
                    (n->min_items ? 1 : 0);
                break;
            case K_OBJ: {
                v = 2;
                int k = 0;
                for (int p = 0; p < n->n_props; p++) {
                    if (!(n->required >> p & 1)) continue;
                    const struct littab *t = &c->tabs[n->keytab];
                    int kl = 0;
                    for (int q = 0; q < t->n; q++)
                        if (t->orig[q] == p) kl = (int)t->len[q];
                    v += (k++ ? 1 : 0) + kl + 1 + c->nodes[n->prop_node[p]].minb;
                }
                break;
            }
            }
            if (v > INF_COST) v = INF_COST;
            if ((int)v != n->minb) {
                n->minb = (int)v;
                changed = true;
            }
        }
        if (!changed) break;
    }
    int mb = 0, ml = 0;
    for (int i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].minb < INF_COST && c->nodes[i].minb > mb) mb = c->nodes[i].minb;
    for (int i = 0; i < c->n_tabs; i++)
        for (int k = 0; k < c->tabs[i].n; k++)
            if ((int)c->tabs[i].len[k] > ml) ml = (int)c->tabs[i].len[k];
    c->max_minb = mb + ml + 8;
}

static int finish_new(struct compiler *cp, int root, struct engine_constraint **out) {
    struct engine_constraint *c = cp->c;
    if (root < 0) {
        constraint_free(c);
        return cp->err->code ? cp->err->code : LFMD_EINVAL;
    }
    c->root = root;
    compute_minb(c);
    if (c->nodes[root].minb >= INF_COST) {
        constraint_free(c);
        return lfmd_err_set(cp->err, LFMD_EINVAL, "the schema admits no finite value");
    }
    *out = c;
    return 0;
}

int constraint_json(const struct json *schema, struct engine_constraint **out,
                    struct lfmd_err_ctx *err) {
    *out = NULL;
    struct engine_constraint *c = lfmd_calloc(1, sizeof *c, LFMD_MEM_REQUEST);
    if (!c) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    struct compiler cp = {.c = c, .err = err, .any = -1};
    int root;
    const char *ty = json_str(json_get(schema, "type"), NULL);
    if (schema && json_is(schema, JSON_OBJECT) && schema->len == 1 && ty &&
        !strcmp(ty, "json_object"))
        schema = NULL; // {"type":"json_object"} (OpenAI's spelling) = any object
    if (!schema) {
        root = new_node(&cp, K_OBJ);
        int any = root >= 0 ? any_node(&cp) : -1;
        if (any >= 0) c->nodes[root].addl = any;
        else root = -1;
    } else {
        root = compile(&cp, schema, "schema", 0);
    }
    return finish_new(&cp, root, out);
}

int constraint_choices(const char *const *choices, int n, struct engine_constraint **out,
                       struct lfmd_err_ctx *err) {
    *out = NULL;
    if (n < 1 || n > MAX_LITS)
        return lfmd_err_set(err, LFMD_EINVAL, "choices: 1 to %d strings are supported", MAX_LITS);
    struct engine_constraint *c = lfmd_calloc(1, sizeof *c, LFMD_MEM_REQUEST);
    if (!c) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    struct compiler cp = {.c = c, .err = err, .any = -1};
    return finish_new(&cp, lit_node_raw(&cp, choices, n), out);
}

void constraint_free(struct engine_constraint *c) {
    if (!c) return;
    for (int i = 0; i < c->n_tabs; i++) {
        for (int k = 0; k < c->tabs[i].n; k++) lfmd_free(c->tabs[i].s[k]);
        lfmd_free(c->tabs[i].s);
        lfmd_free(c->tabs[i].len);
        lfmd_free(c->tabs[i].orig);
    }
    for (int i = 0; i < CACHE_SLOTS; i++) lfmd_free(c->cache[i].bits);
    lfmd_free(c->tabs);
    lfmd_free(c->nodes);
    lfmd_free(c);
}

// ---- the automaton ----

enum step { ST_REJECT, ST_OK, ST_OK_POP, ST_END };

static bool is_ws(unsigned char b) { return b == ' ' || b == '\n'; }

static const struct littab *frame_tab(const struct engine_constraint *c, const struct cstate *s,
                                      const struct frame *f) {
    (void)s;
    if (f->key) return &c->tabs[c->nodes[f->node].keytab]; // key frames carry the object node
    return &c->tabs[c->nodes[f->node].littab];
}

// Narrows [lo, hi) to the strings with byte b at pos. Returns false when none is left.
static bool tab_narrow(const struct littab *t, uint16_t *lo, uint16_t *hi, uint16_t pos,
                       unsigned char b) {
    int l = *lo, h = *hi;
    while (l < h && (t->len[l] <= pos || (unsigned char)t->s[l][pos] < b)) l++;
    int e = l;
    while (e < h && t->len[e] > pos && (unsigned char)t->s[e][pos] == b) e++;
    *lo = (uint16_t)l;
    *hi = (uint16_t)e;
    return l < e;
}

static bool obj_more_keys(const struct engine_constraint *c, const struct frame *f) {
    const struct cnode *n = &c->nodes[f->node];
    if (n->addl >= 0) return true;
    uint64_t all = n->n_props == 64 ? ~0ull : (1ull << n->n_props) - 1;
    return (f->seen & all) != all;
}

static bool obj_can_close(const struct engine_constraint *c, const struct frame *f) {
    const struct cnode *n = &c->nodes[f->node];
    return (n->required & ~f->seen) == 0;
}

// Is some unused key among [lo, hi) of an object's key table?
static bool keys_unused(const struct littab *t, const struct frame *obj, int lo, int hi) {
    for (int i = lo; i < hi; i++)
        if (!(obj->seen >> t->orig[i] & 1)) return true;
    return false;
}

static int push(struct cstate *s, int node, enum fkind k) {
    if (s->depth >= MAX_DEPTH) return -1;
    struct frame *f = &s->f[s->depth++];
    memset(f, 0, sizeof *f);
    f->node = (uint16_t)node;
    f->kind = (uint8_t)k;
    f->cur = -1;
    return 0;
}

static bool step_byte(const struct engine_constraint *c, struct cstate *s, unsigned char b);

// Starts a value of node with byte b (pushes its frame).
static bool start_value(const struct engine_constraint *c, struct cstate *s, int node,
                        unsigned char b) {
    const struct cnode *n = &c->nodes[node];
    switch (n->kind) {
    case K_MULTI:
        for (int a = 0; a < n->n_alts; a++) {
            const struct cnode *x = &c->nodes[n->alts[a]];
            bool fits = false;
            switch (x->kind) {
            case K_OBJ: fits = b == '{'; break;
            case K_ARR: fits = b == '['; break;
            case K_STR: fits = b == '"'; break;
            case K_NUM:
            case K_INT: fits = b == '-' || (b >= '0' && b <= '9'); break;
            case K_LIT: {
                const struct littab *t = &c->tabs[x->littab];
                for (int i = 0; i < t->n && !fits; i++) fits = (unsigned char)t->s[i][0] == b;
                break;
            }
            default: break;
            }
            if (fits) return start_value(c, s, n->alts[a], b);
        }
        return false;
    case K_OBJ:
        if (b != '{' || s->depth >= MAX_DEPTH - 2) return false;
        push(s, node, F_OBJ);
        s->f[s->depth - 1].st = O_OPEN;
        return true;
    case K_ARR:
        if (b != '[' || s->depth >= MAX_DEPTH - 2) return false;
        if (push(s, node, F_ARR)) return false;
        return true;
    case K_STR:
        if (b != '"' || push(s, node, F_STR)) return false;
        return true;
    case K_NUM:
    case K_INT:
        if (push(s, node, F_NUM)) return false;
        return step_byte(c, s, b);
    case K_LIT: {
        if (push(s, node, F_LIT)) return false;
        s->f[s->depth - 1].hi = (uint16_t)c->tabs[n->littab].n;
        return step_byte(c, s, b);
    }
    }
    return false;
}

static bool lit_can_end(const struct engine_constraint *c, const struct cstate *s,
                        const struct frame *f) {
    const struct littab *t = frame_tab(c, s, f);
    return f->lo < f->hi && t->len[f->lo] == f->pos;
}

static bool num_can_end(const struct frame *f) {
    return f->st == N_ZERO || f->st == N_INT || f->st == N_FRAC || f->st == N_EXP;
}

// The top frame finished; tell its parent.
static void child_done(const struct engine_constraint *c, struct cstate *s, int key_prop) {
    s->depth--;
    if (s->depth == 0) {
        s->done = true;
        return;
    }
    struct frame *p = &s->f[s->depth - 1];
    p->ws = 0;
    if (p->kind == F_OBJ) {
        if (p->st == O_KEY) {
            p->cur = (int16_t)key_prop;
            p->st = O_COLON;
        } else {
            if (p->cur >= 0) p->seen |= 1ull << p->cur;
            p->n++;
            p->st = O_AFTER;
        }
    } else {
        p->n++;
        p->st = A_AFTER;
    }
    (void)c;
}

static enum step step_str(const struct engine_constraint *c, struct cstate *s, struct frame *f,
                          unsigned char b, int *key_prop) {
    const struct cnode *n = f->key ? NULL : &c->nodes[f->node];
    int max_len = n ? n->max_len : MAX_KEY_CHARS;
    if (f->u8need) {
        if (b < (f->u8lo ? f->u8lo : 0x80) || b > (f->u8hi ? f->u8hi : 0xBF)) return ST_REJECT;
        f->u8need--;
        f->u8lo = f->u8hi = 0;
        goto shadow;
    }
    switch (f->st) {
    case S_NORM:
        if (b == '"') {
            if (n && (int)f->n < n->min_len) return ST_REJECT;
            if (f->key) {
                const struct frame *obj = &s->f[s->depth >= 2 ? s->depth - 2 : 0];
                const struct cnode *on = &c->nodes[obj->node];
                *key_prop = -1;
                if (on->keytab >= 0 && f->lo < f->hi) {
                    const struct littab *t = &c->tabs[on->keytab];
                    uint16_t lo = f->lo, hi = f->hi;
                    if (tab_narrow(t, &lo, &hi, f->pos, b) && t->len[lo] == (uint32_t)f->pos + 1) {
                        if (obj->seen >> t->orig[lo] & 1) return ST_REJECT; // duplicate key
                        *key_prop = t->orig[lo];
                    }
                }
            }
            return ST_OK_POP;
        }
        if ((int)f->n >= max_len) return ST_REJECT;
        if (b == '\\') {
            f->st = S_ESC;
            goto shadow;
        }
        if (b < 0x20 || b == 0x7F) return ST_REJECT;
        if (b < 0x80) {
            f->n++;
        } else if (b >= 0xC2 && b <= 0xDF) {
            f->u8need = 1, f->n++;
        } else if (b >= 0xE0 && b <= 0xEF) {
            f->u8need = 2, f->n++;
            if (b == 0xE0) f->u8lo = 0xA0;
            if (b == 0xED) f->u8hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            f->u8need = 3, f->n++;
            if (b == 0xF0) f->u8lo = 0x90;
            if (b == 0xF4) f->u8hi = 0x8F;
        } else {
            return ST_REJECT;
        }
        goto shadow;
    case S_ESC:
        if (b == 'u') {
            f->st = S_U1;
        } else if (strchr("\"\\/bfnrt", b) && b) {
            f->st = S_NORM;
            f->n++;
        } else {
            return ST_REJECT;
        }
        goto shadow;
    default: // S_U1..S_U4
        if (!((b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F')))
            return ST_REJECT;
        if (f->st == S_U4) {
            f->st = S_NORM;
            f->n++;
        } else {
            f->st++;
        }
        goto shadow;
    }
shadow:
    if (f->key && f->lo < f->hi) {
        const struct cnode *on = &c->nodes[f->node];
        if (!tab_narrow(&c->tabs[on->keytab], &f->lo, &f->hi, f->pos, b)) f->lo = f->hi = 0;
        f->pos++;
    }
    return ST_OK;
}

static enum step step_num(const struct engine_constraint *c, struct frame *f, unsigned char b) {
    bool integer = c->nodes[f->node].kind == K_INT;
    bool digit = b >= '0' && b <= '9';
    if (f->n >= MAX_NUM_BYTES) return num_can_end(f) ? ST_END : ST_REJECT;
    uint8_t next = 0xFF;
    switch (f->st) {
    case N_START:
        if (b == '-') next = N_MINUS;
        else if (b == '0') next = N_ZERO;
        else if (digit) next = N_INT;
        break;
    case N_MINUS:
        if (b == '0') next = N_ZERO;
        else if (digit) next = N_INT;
        break;
    case N_ZERO:
    case N_INT:
        if (f->st == N_INT && digit) next = N_INT;
        else if (!integer && b == '.') next = N_DOT;
        else if (!integer && (b == 'e' || b == 'E')) next = N_E;
        break;
    case N_DOT:
    case N_FRAC:
        if (digit) next = N_FRAC;
        else if (f->st == N_FRAC && (b == 'e' || b == 'E')) next = N_E;
        break;
    case N_E:
        if (b == '+' || b == '-') next = N_ESIGN;
        else if (digit) next = N_EXP;
        break;
    case N_ESIGN:
    case N_EXP:
        if (digit) next = N_EXP;
        break;
    }
    // A state that still needs a digit ('-', '.', 'e', 'e-') must leave room for it.
    if ((next == N_MINUS || next == N_DOT || next == N_E || next == N_ESIGN) &&
        f->n + 2 > MAX_NUM_BYTES)
        next = 0xFF;
    if (next == 0xFF) return num_can_end(f) ? ST_END : ST_REJECT;
    f->st = next;
    f->n++;
    return ST_OK;
}

static enum step step_lit(const struct engine_constraint *c, struct cstate *s, struct frame *f,
                          unsigned char b, int *key_prop) {
    const struct littab *t = frame_tab(c, s, f);
    uint16_t lo = f->lo, hi = f->hi;
    if (!tab_narrow(t, &lo, &hi, f->pos, b))
        return !f->key && lit_can_end(c, s, f) ? ST_END : ST_REJECT;
    if (f->key && !keys_unused(t, &s->f[s->depth >= 2 ? s->depth - 2 : 0], lo, hi)) return ST_REJECT;
    f->lo = lo;
    f->hi = hi;
    f->pos++;
    if (t->len[lo] == f->pos && (hi - lo == 1 || f->key)) {
        *key_prop = t->orig[lo];
        return ST_OK_POP;
    }
    return ST_OK;
}

static bool ws_ok(struct frame *f, unsigned char b) {
    if (!is_ws(b) || f->ws >= WS_MAX) return false;
    f->ws++;
    return true;
}

static bool step_obj(const struct engine_constraint *c, struct cstate *s, struct frame *f,
                     unsigned char b) {
    const struct cnode *n = &c->nodes[f->node];
    switch (f->st) {
    case O_OPEN:
    case O_NEXT:
        if (ws_ok(f, b)) return true;
        if (b == '}' && f->st == O_OPEN && obj_can_close(c, f)) {
            child_done(c, s, -1);
            return true;
        }
        if (b != '"' || !obj_more_keys(c, f)) return false;
        f->ws = 0;
        if (n->addl >= 0) {
            if (push(s, f->node, F_STR)) return false;
            struct frame *k = &s->f[s->depth - 1];
            k->key = 1;
            if (n->keytab >= 0) {
                k->hi = (uint16_t)c->tabs[n->keytab].n;
                k->pos = 1; // every encoded key starts with the quote
            }
        } else {
            if (push(s, f->node, F_LIT)) return false;
            struct frame *k = &s->f[s->depth - 1];
            k->key = 1;
            k->hi = (uint16_t)c->tabs[n->keytab].n;
            k->pos = 1;
        }
        f->st = O_KEY;
        return true;
    case O_COLON:
        if (ws_ok(f, b)) return true;
        if (b != ':') return false;
        f->ws = 0;
        f->st = O_VSTART;
        return true;
    case O_VSTART: {
        if (ws_ok(f, b)) return true;
        int vn = f->cur >= 0 ? n->prop_node[f->cur] : n->addl;
        f->st = O_VALUE;
        f->ws = 0;
        return start_value(c, s, vn, b);
    }
    case O_AFTER:
        if (ws_ok(f, b)) return true;
        if (b == ',' && obj_more_keys(c, f)) {
            f->ws = 0;
            f->st = O_NEXT;
            return true;
        }
        if (b == '}' && obj_can_close(c, f)) {
            child_done(c, s, -1);
            return true;
        }
        return false;
    }
    return false;
}

static bool step_arr(const struct engine_constraint *c, struct cstate *s, struct frame *f,
                     unsigned char b) {
    const struct cnode *n = &c->nodes[f->node];
    switch (f->st) {
    case A_OPEN:
    case A_NEXT:
        if (ws_ok(f, b)) return true;
        if (b == ']' && f->st == A_OPEN && n->min_items == 0) {
            child_done(c, s, -1);
            return true;
        }
        if (f->st == A_OPEN && n->max_items == 0) return false;
        f->st = A_VALUE;
        f->ws = 0;
        return start_value(c, s, n->items, b);
    case A_AFTER:
        if (ws_ok(f, b)) return true;
        if (b == ',' && (int)f->n < n->max_items) {
            f->ws = 0;
            f->st = A_NEXT;
            return true;
        }
        if (b == ']' && (int)f->n >= n->min_items) {
            child_done(c, s, -1);
            return true;
        }
        return false;
    }
    return false;
}

// Feeds one byte; false (state undefined) when it breaks the constraint.
static bool step_byte(const struct engine_constraint *c, struct cstate *s, unsigned char b) {
    for (;;) {
        if (s->done) return false;
        if (!s->started) {
            s->started = true;
            return start_value(c, s, c->root, b);
        }
        struct frame *f = &s->f[s->depth - 1];
        int key_prop = -1;
        enum step r;
        switch (f->kind) {
        case F_OBJ: return step_obj(c, s, f, b);
        case F_ARR: return step_arr(c, s, f, b);
        case F_STR: r = step_str(c, s, f, b, &key_prop); break;
        case F_NUM: r = step_num(c, f, b); break;
        default: r = step_lit(c, s, f, b, &key_prop); break;
        }
        if (r == ST_REJECT) return false;
        if (r == ST_OK) return true;
        child_done(c, s, key_prop);
        if (r == ST_OK_POP) return true;
        // ST_END: the frame ended before b; b goes to the parent
    }
}

static bool state_complete(const struct engine_constraint *c, const struct cstate *s) {
    if (s->done) return true;
    if (s->depth != 1) return false;
    const struct frame *f = &s->f[0];
    if (f->kind == F_NUM) return num_can_end(f);
    if (f->kind == F_LIT) return lit_can_end(c, s, f);
    return false;
}

// ---- fewest bytes to finish ----

static int key_len_of(const struct engine_constraint *c, const struct cnode *n, int prop) {
    const struct littab *t = &c->tabs[n->keytab];
    for (int q = 0; q < t->n; q++)
        if (t->orig[q] == prop) return (int)t->len[q];
    return 2;
}

// Bytes to close an object with members seen and n members so far: missing required + '}'.
static int obj_close_cost(const struct engine_constraint *c, const struct cnode *n, uint64_t seen,
                          uint32_t members) {
    int cost = 1;
    uint32_t k = members;
    for (int p = 0; p < n->n_props; p++) {
        if (!(n->required >> p & 1) || (seen >> p & 1)) continue;
        cost += (k++ ? 1 : 0) + key_len_of(c, n, p) + 1 + c->nodes[n->prop_node[p]].minb;
    }
    return cost;
}

// Fewest bytes for a new member (key, ':', value) and then the close. key: the key frame in
// progress (NULL: the key has not started).
static int obj_member_cost(const struct engine_constraint *c, const struct cnode *n,
                           const struct frame *f, const struct frame *key) {
    long best = INF_COST;
    const struct littab *t = n->keytab >= 0 ? &c->tabs[n->keytab] : NULL;
    if (!key) {
        for (int p = 0; p < n->n_props; p++) {
            if (f->seen >> p & 1) continue;
            long v = key_len_of(c, n, p) + 1 + c->nodes[n->prop_node[p]].minb +
                     obj_close_cost(c, n, f->seen | 1ull << p, f->n + 1);
            if (v < best) best = v;
        }
        if (n->addl >= 0) {
            long v = 3 + c->nodes[n->addl].minb + obj_close_cost(c, n, f->seen, f->n + 1);
            if (v < best) best = v;
        }
        return (int)best;
    }
    if (key->kind == F_LIT) {
        for (int i = key->lo; i < key->hi; i++) {
            int p = t->orig[i];
            if (f->seen >> p & 1) continue;
            long v = (long)t->len[i] - key->pos + 1 + c->nodes[n->prop_node[p]].minb +
                     obj_close_cost(c, n, f->seen | 1ull << p, f->n + 1);
            if (v < best) best = v;
        }
        return (int)best;
    }
    // A free key: close it now (as an additional key, or as the declared key it spells), or
    // finish spelling a longer declared key; the cheapest of those.
    int kc = 1 + key->u8need +
             (key->st == S_ESC ? 1 : key->st >= S_U1 ? 4 - (key->st - S_U1) : 0);
    int exact = -1;
    for (int i = key->lo; t && i < key->hi; i++) {
        int p = t->orig[i];
        if (t->len[i] == (uint32_t)key->pos + 1) {
            exact = p;
            continue;
        }
        if (f->seen >> p & 1) continue;
        long v = (long)t->len[i] - key->pos + 1 + c->nodes[n->prop_node[p]].minb +
                 obj_close_cost(c, n, f->seen | 1ull << p, f->n + 1);
        if (v < best) best = v;
    }
    long v;
    if (exact >= 0 && !(f->seen >> exact & 1))
        v = kc + 1 + c->nodes[n->prop_node[exact]].minb +
            obj_close_cost(c, n, f->seen | 1ull << exact, f->n + 1);
    else
        v = kc + (exact >= 0) + 1 + c->nodes[n->addl].minb +
            obj_close_cost(c, n, f->seen, f->n + 1);
    if (v < best) best = v;
    return best > INF_COST ? INF_COST : (int)best;
}

static int frame_rest(const struct engine_constraint *c, const struct cstate *s, int d) {
    const struct frame *f = &s->f[d];
    const struct cnode *n = &c->nodes[f->node];
    bool top = d == s->depth - 1;
    switch (f->kind) {
    case F_STR: {
        int need = f->u8need + (f->st == S_ESC ? 1 : f->st >= S_U1 ? 4 - (f->st - S_U1) : 0);
        int chars = f->st != S_NORM ? 1 : 0;
        int more = !f->key && n->min_len > (int)f->n + chars ? n->min_len - (int)f->n - chars : 0;
        return need + more + 1;
    }
    case F_NUM: return num_can_end(f) ? 0 : 1;
    case F_LIT: {
        const struct littab *t = frame_tab(c, s, f);
        int best = INF_COST;
        for (int i = f->lo; i < f->hi; i++)
            if ((int)t->len[i] - f->pos < best) best = (int)t->len[i] - f->pos;
        return best;
    }
    case F_ARR: {
        int item = c->nodes[n->items].minb;
        int have = (int)f->n + (f->st == A_VALUE && !top ? 1 : 0);
        int missing = n->min_items > have ? n->min_items - have : 0;
        switch (f->st) {
        case A_OPEN: return n->min_items ? n->min_items * (item + 1) : 1;
        case A_NEXT:
            return item + (missing > 1 ? (missing - 1) * (item + 1) : 0) + 1;
        default: return missing * (item + 1) + 1;
        }
    }
    case F_OBJ:
        switch (f->st) {
        case O_OPEN: return obj_close_cost(c, n, f->seen, 0);
        case O_NEXT: return obj_member_cost(c, n, f, NULL);
        case O_KEY: return obj_member_cost(c, n, f, top ? NULL : &s->f[d + 1]);
        case O_COLON:
        case O_VSTART: {
            int vn = f->cur >= 0 ? n->prop_node[f->cur] : n->addl;
            uint64_t seen = f->cur >= 0 ? f->seen | 1ull << f->cur : f->seen;
            return (f->st == O_COLON) + c->nodes[vn].minb + obj_close_cost(c, n, seen, f->n + 1);
        }
        case O_VALUE: {
            uint64_t seen = f->cur >= 0 ? f->seen | 1ull << f->cur : f->seen;
            return obj_close_cost(c, n, seen, f->n + 1);
        }
        default: return obj_close_cost(c, n, f->seen, f->n);
        }
    }
    return 0;
}

static int state_min_bytes(const struct engine_constraint *c, const struct cstate *s) {
    if (s->done) return 0;
    if (!s->started) return c->nodes[c->root].minb;
    long cost = 0;
    for (int d = s->depth - 1; d >= 0; d--) {
        const struct frame *f = &s->f[d];
        if (f->key) continue; // counted by the object (obj_member_cost with the key frame)
        cost += frame_rest(c, s, d);
    }
    return cost > INF_COST ? INF_COST : (int)cost;
}

// ---- public state API ----

bool constraint_allows(const struct engine_constraint *c, const char *bytes, size_t len) {
    struct cstate s;
    memcpy(&s, &c->s, offsetof(struct cstate, f) + (size_t)c->s.depth * sizeof s.f[0]);
    for (size_t i = 0; i < len; i++)
        if (!step_byte(c, &s, (unsigned char)bytes[i])) return false;
    return true;
}

int constraint_feed(struct engine_constraint *c, const char *bytes, size_t len) {
    struct cstate s;
    memcpy(&s, &c->s, offsetof(struct cstate, f) + (size_t)c->s.depth * sizeof s.f[0]);
    for (size_t i = 0; i < len; i++)
        if (!step_byte(c, &s, (unsigned char)bytes[i])) return LFMD_EINVAL;
    memcpy(&c->s, &s, offsetof(struct cstate, f) + (size_t)s.depth * sizeof s.f[0]);
    return 0;
}

bool constraint_complete(const struct engine_constraint *c) { return state_complete(c, &c->s); }
bool constraint_final(const struct engine_constraint *c) { return c->s.done; }
int constraint_min_bytes(const struct engine_constraint *c) { return state_min_bytes(c, &c->s); }

// ---- vocabulary trie and masking ----

struct tnode {
    uint32_t first_edge;    // into edges
    uint16_t n_edges;
    uint8_t depth_clip;     // depth (bytes from the root), clipped at 255
    uint32_t first_tok;     // into toks
    uint32_t n_toks;
};

struct tedge {
    uint8_t byte;
    uint32_t child;
};

struct constraint_vocab {
    int n_vocab;
    struct tnode *nodes;
    uint32_t n_nodes;
    struct tedge *edges;
    int32_t *toks;          // token ids grouped by the node where they end
    int32_t *eog;
    int n_eog;
    int max_len;
    size_t bytes;
    int n_long;             // tokens longer than LONG_TOK bytes, with their bytes
    int32_t *long_ids;
    uint32_t *long_off;
    char *long_bytes;
};

struct tok_ref {
    const char *b;
    size_t len;
    int32_t id;
};

static int cmp_tok(const void *a, const void *b) {
    const struct tok_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->b, y->b, n);
    if (r) return r;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void constraint_vocab_free(struct constraint_vocab *v) {
    if (!v) return;
    lfmd_free(v->nodes);
    lfmd_free(v->edges);
    lfmd_free(v->toks);
    lfmd_free(v->eog);
    lfmd_free(v->long_ids);
    lfmd_free(v->long_off);
    lfmd_free(v->long_bytes);
    lfmd_free(v);
}

size_t constraint_vocab_bytes(const struct constraint_vocab *v) { return v ? v->bytes : 0; }

// Builds the trie from the sorted token list: node for every distinct prefix; a node's children
// are the distinct next bytes. Built recursively over the sorted range [lo, hi) sharing depth.
struct tbuild {
    struct constraint_vocab *v;
    struct tok_ref *t;
    uint32_t cap_nodes, cap_edges, n_edges, n_toks;
};

static int tb_node(struct tbuild *tb, int lo, int hi, size_t depth, uint32_t *out) {
    struct constraint_vocab *v = tb->v;
    if (v->n_nodes == tb->cap_nodes) {
        uint32_t nc = tb->cap_nodes ? tb->cap_nodes * 2 : 4096;
        size_t sz = (size_t)nc * sizeof *v->nodes;
        void *p = v->nodes ? lfmd_realloc(v->nodes, sz) : lfmd_malloc(sz, LFMD_MEM_TOKENIZER);
        if (!p) return LFMD_ENOMEM;
        v->nodes = p;
        tb->cap_nodes = nc;
    }
    uint32_t me = v->n_nodes++;
    *out = me;
    struct tnode nd = {.depth_clip = (uint8_t)(depth > 255 ? 255 : depth)};
    nd.first_tok = tb->n_toks;
    int i = lo;
    while (i < hi && tb->t[i].len == depth) v->toks[tb->n_toks++] = tb->t[i++].id;
    nd.n_toks = tb->n_toks - nd.first_tok;
    // children: groups of equal byte at depth
    int n_children = 0;
    for (int j = i; j < hi;) {
        int k = j;
        while (k < hi && tb->t[k].b[depth] == tb->t[j].b[depth]) k++;
        n_children++;
        j = k;
    }
    if (tb->n_edges + (uint32_t)n_children > tb->cap_edges) {
        uint32_t nc = tb->cap_edges ? tb->cap_edges * 2 : 4096;
        while (nc < tb->n_edges + (uint32_t)n_children) nc *= 2;
        size_t sz = (size_t)nc * sizeof *v->edges;
        void *p = v->edges ? lfmd_realloc(v->edges, sz) : lfmd_malloc(sz, LFMD_MEM_TOKENIZER);
        if (!p) return LFMD_ENOMEM;
        v->edges = p;
        tb->cap_edges = nc;
    }
    nd.first_edge = tb->n_edges;
    nd.n_edges = (uint16_t)n_children;
    tb->n_edges += (uint32_t)n_children;
    v->nodes[me] = nd;
    int e = 0;
    for (int j = i; j < hi; e++) {
        int k = j;
        unsigned char byte = (unsigned char)tb->t[j].b[depth];
        while (k < hi && (unsigned char)tb->t[k].b[depth] == byte) k++;
        uint32_t child;
        int rc = tb_node(tb, j, k, depth + 1, &child);
        if (rc) return rc;
        v->edges[v->nodes[me].first_edge + (uint32_t)e] = (struct tedge){byte, child};
        j = k;
    }
    return 0;
}

int constraint_vocab_new(int n_vocab, constraint_bytes_fn get, constraint_eog_fn is_eog,
                         void *user, struct constraint_vocab **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct constraint_vocab *v = lfmd_calloc(1, sizeof *v, LFMD_MEM_TOKENIZER);
    struct tok_ref *t = lfmd_calloc((size_t)n_vocab + 1, sizeof *t, LFMD_MEM_TOKENIZER);
    if (v) {
        v->toks = lfmd_calloc((size_t)n_vocab + 1, sizeof *v->toks, LFMD_MEM_TOKENIZER);
        v->eog = lfmd_calloc(64, sizeof *v->eog, LFMD_MEM_TOKENIZER);
    }
    if (!v || !t || !v->toks || !v->eog) {
        lfmd_free(t);
        constraint_vocab_free(v);
        return lfmd_err_set(err, LFMD_ENOMEM, "no memory for the vocabulary trie");
    }
    v->n_vocab = n_vocab;
    int n = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        if (is_eog && is_eog(user, id)) {
            if (v->n_eog < 64) v->eog[v->n_eog++] = id;
            continue;
        }
        size_t len = 0;
        const char *b = get(user, id, &len);
        if (!len) continue;
        t[n++] = (struct tok_ref){b, len, id};
        if ((int)len > v->max_len) v->max_len = (int)len;
    }
    int nl = 0;
    size_t lb = 0;
    for (int i = 0; i < n; i++)
        if (t[i].len > LONG_TOK) nl++, lb += t[i].len;
    v->long_ids = lfmd_calloc((size_t)nl + 1, sizeof *v->long_ids, LFMD_MEM_TOKENIZER);
    v->long_off = lfmd_calloc((size_t)nl + 1, sizeof *v->long_off, LFMD_MEM_TOKENIZER);
    v->long_bytes = lfmd_malloc(lb + 1, LFMD_MEM_TOKENIZER);
    if (!v->long_ids || !v->long_off || !v->long_bytes) {
        lfmd_free(t);
        constraint_vocab_free(v);
        return lfmd_err_set(err, LFMD_ENOMEM, "no memory for the vocabulary trie");
    }
    lb = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].len <= LONG_TOK) continue;
        v->long_ids[v->n_long] = t[i].id;
        v->long_off[v->n_long++] = (uint32_t)lb;
        memcpy(v->long_bytes + lb, t[i].b, t[i].len);
        lb += t[i].len;
    }
    v->long_off[v->n_long] = (uint32_t)lb;
    qsort(t, (size_t)n, sizeof *t, cmp_tok);
    struct tbuild tb = {.v = v, .t = t};
    uint32_t root;
    int rc = tb_node(&tb, 0, n, 0, &root);
    lfmd_free(t);
    if (rc) {
        constraint_vocab_free(v);
        return lfmd_err_set(err, LFMD_ENOMEM, "no memory for the vocabulary trie");
    }
    v->bytes = (size_t)v->n_nodes * sizeof *v->nodes + (size_t)tb.n_edges * sizeof *v->edges +
               (size_t)n_vocab * sizeof *v->toks;
    *out = v;
    return 0;
}

struct walk {
    const struct engine_constraint *c;
    const struct constraint_vocab *v;
    uint64_t *bits;
    int budget_after;       // < 0: no budget checks
    int check_from;         // depth from which budget checks are needed
    int n_allowed;
};

static void walk(struct walk *w, uint32_t node, const struct cstate *s, int depth) {
    const struct tnode *nd = &w->v->nodes[node];
    for (uint32_t e = 0; e < nd->n_edges; e++) {
        const struct tedge *ed = &w->v->edges[nd->first_edge + e];
        struct cstate s2;
        memcpy(&s2, s, offsetof(struct cstate, f) + (size_t)s->depth * sizeof s->f[0]);
        if (!step_byte(w->c, &s2, ed->byte)) continue;
        const struct tnode *ch = &w->v->nodes[ed->child];
        if (ch->n_toks) {
            bool ok = w->budget_after < 0 || depth + 1 < w->check_from ||
                      state_min_bytes(w->c, &s2) <= w->budget_after;
            if (ok) {
                for (uint32_t k = 0; k < ch->n_toks; k++) {
                    int32_t id = w->v->toks[ch->first_tok + k];
                    w->bits[id >> 6] |= 1ull << (id & 63);
                }
                w->n_allowed += (int)ch->n_toks;
            }
        }
        if (ch->n_edges) walk(w, ed->child, &s2, depth + 1);
    }
}

// The state with counters that cannot change the mask cleared (cache key).
static void cache_key(const struct engine_constraint *c, const struct cstate *s,
                      struct cstate *k) {
    memset(k, 0, sizeof *k);
    k->depth = s->depth;
    k->started = s->started;
    k->done = s->done;
    memcpy(k->f, s->f, (size_t)s->depth * sizeof s->f[0]);
    for (int d = 0; d < s->depth; d++) {
        struct frame *f = &k->f[d];
        const struct cnode *n = &c->nodes[f->node];
        if (f->kind == F_STR && !f->key && n->min_len == 0 && n->max_len == INT32_MAX) f->n = 0;
        if (f->kind == F_OBJ && f->n > 1) f->n = 1;
        if (f->kind == F_ARR && n->min_items == 0 && n->max_items == INT32_MAX) f->n = 0;
    }
}

int constraint_mask(struct engine_constraint *c, const struct constraint_vocab *v, int budget,
                    float *logits) {
    int words = (v->n_vocab + 63) / 64;
    int d0 = state_min_bytes(c, &c->s);
    int budget_after = budget > 0 ? budget - 1 : -1;
    // Far from the budget: a token of up to LONG_TOK bytes cannot push min_bytes past it (longer
    // ones are checked one by one below), so the mask does not depend on the budget.
    bool far = budget_after < 0 || budget_after >= (long)d0 + (long)LONG_TOK * c->max_minb;
    struct cstate key;
    cache_key(c, &c->s, &key);
    uint64_t *bits = NULL;
    if (far) {
        for (int i = 0; i < CACHE_SLOTS && !bits; i++)
            if (c->cache[i].used && !memcmp(&c->cache[i].key, &key, sizeof key))
                bits = c->cache[i].bits;
    }
    if (!bits) {
        if (c->cache_words != words) {
            for (int i = 0; i < CACHE_SLOTS; i++) {
                lfmd_free(c->cache[i].bits);
                c->cache[i].bits = NULL;
                c->cache[i].used = false;
            }
            c->cache_words = words;
        }
        struct cache_slot *sl = &c->cache[c->cache_next];
        if (!sl->bits) sl->bits = lfmd_malloc((size_t)words * 8, LFMD_MEM_REQUEST);
        if (!sl->bits) return -1;
        bits = sl->bits;
        memset(bits, 0, (size_t)words * 8);
        struct walk w = {.c = c, .v = v, .bits = bits, .budget_after = far ? -1 : budget_after};
        // depth k needs checks once d0 + k * max_minb may exceed the budget
        w.check_from = far ? 0 : (int)((budget_after - d0) / c->max_minb);
        if (w.check_from < 0) w.check_from = 0;
        walk(&w, 0, &c->s, 0);
        if (!far && w.n_allowed == 0 && !state_complete(c, &c->s)) {
            w.budget_after = -1; // cannot finish in time anyway: stay valid at least
            walk(&w, 0, &c->s, 0);
        }
        sl->used = far;
        sl->key = key;
        if (far) c->cache_next = (c->cache_next + 1) % CACHE_SLOTS;
    }
    bool complete = state_complete(c, &c->s);
    float eog[64];
    for (int i = 0; i < v->n_eog; i++) eog[i] = logits[v->eog[i]];
    int allowed = 0;
    for (int id = 0; id < v->n_vocab; id++) {
        if (!(bits[id >> 6] >> (id & 63) & 1)) logits[id] = -INFINITY;
        else if (logits[id] != -INFINITY) allowed++;
    }
    if (far && budget_after >= 0) {
        for (int i = 0; i < v->n_long; i++) {
            int32_t id = v->long_ids[i];
            if (logits[id] == -INFINITY) continue;
            struct cstate s2;
            memcpy(&s2, &c->s, sizeof s2);
            const char *b = v->long_bytes + v->long_off[i];
            uint32_t len = v->long_off[i + 1] - v->long_off[i];
            bool ok = true;
            for (uint32_t k = 0; k < len && ok; k++) ok = step_byte(c, &s2, (unsigned char)b[k]);
            if (ok && state_min_bytes(c, &s2) <= budget_after) continue;
            logits[id] = -INFINITY;
            allowed--;
        }
    }
    for (int i = 0; i < v->n_eog; i++) {
        bool ok = complete && eog[i] != -INFINITY;
        logits[v->eog[i]] = ok ? eog[i] : -INFINITY;
        allowed += ok;
    }
    return allowed;
}
