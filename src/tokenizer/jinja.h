// A small Jinja2 interpreter for chat templates (private to the tokenizer layer): lexer+parser
// (jinja_parse.c) build an AST once at load; the evaluator (jinja_eval.c) renders it with values
// in a per-render arena. Configured as transformers does: trim_blocks, lstrip_blocks, loop
// controls, raise_exception, strftime_now, tojson without key sorting or HTML escaping.
// Invariant: parsing rejects unknown statements, filters and tests with a message naming them,
// so rendering only meets constructs it implements.
// SPDX-License-Identifier: MIT
#ifndef LFMD_TOKENIZER_JINJA_H
#define LFMD_TOKENIZER_JINJA_H

#include "base/buf.h"
#include "base/err.h"
#include "format/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---- arena ----
struct jarena {
    struct jchunk *head;
    size_t used_bytes, max_bytes;
};
void jarena_init(struct jarena *a, size_t max_bytes);
void jarena_fini(struct jarena *a);
void *jarena_alloc(struct jarena *a, size_t n); // zeroed; NULL past max_bytes or on OOM

// ---- values ----
enum jt { JT_UNDEF, JT_NONE, JT_BOOL, JT_INT, JT_FLOAT, JT_STR, JT_LIST, JT_DICT, JT_FUNC,
          JT_MACRO, JT_LOOP };

struct jlist;
struct jdict;
struct jnode;
struct jloop;

struct jval {
    enum jt t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct jlist *l;
        struct jdict *d;
        struct {
            int id;
            const struct jval *self;
        } fn;
        const struct jnode *m;
        struct jloop *loop;
    } u;
};

struct jlist {
    size_t n, cap;
    struct jval *v;
};

struct jdict {
    bool is_ns; // a namespace(): the only dict templates may assign attributes on
    size_t n, cap;
    struct jval *k; // string keys
    struct jval *v;
};

// ---- AST ----
enum jn {
    JN_TEXT, JN_OUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE, JN_BLOCK,
    JN_LIT, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_KWARG, JN_FILTER, JN_TEST, JN_BIN,
    JN_CMP, JN_AND, JN_OR, JN_NOT, JN_NEG, JN_COND, JN_LIST, JN_TUPLE, JN_DICT, JN_PAIR,
};

struct jnode {
    enum jn kind;
    int op;   // operator / filter or test id / negation flag
    int line;
    const char *s; // text, name, attribute, filter/test name, kwarg name
    size_t n;
    struct jval lit;
    struct jnode *a, *b, *c, *d, *e;
    struct jnode *next; // sibling chain (statement bodies, argument and item lists)
};

struct jinja_tmpl {
    struct jarena ar;
    struct jnode *body;
};

// Parses src. Returns 0 and *out (free with jinja_free), LFMD_ENOTSUP naming an unsupported
// construct, LFMD_EFORMAT for a syntax error ("line N: ..."), LFMD_ENOMEM.
int jinja_parse(const char *src, size_t len, struct jinja_tmpl **out, struct lfmd_err_ctx *err);
void jinja_free(struct jinja_tmpl *t);

// Renders with the given global variables (a JT_DICT value built by the caller in `ar`).
// Output is appended to out. Errors: LFMD_EINVAL (raise_exception, type errors; message says
// which), LFMD_ETOOBIG (output or work limit), LFMD_ENOMEM.
int jinja_render(const struct jinja_tmpl *t, struct jarena *ar, const struct jval *globals,
                 struct buf *out, struct lfmd_err_ctx *err);

// Value helpers used by the glue code.
struct jval jv_str(const char *p, size_t n);
int jv_from_json(struct jarena *ar, const struct json *j, struct jval *out);
int jdict_set(struct jarena *ar, struct jdict *d, const char *k, size_t kn, struct jval v);

// Filter and test name tables (ids stored in jnode.op).
int jinja__filter_id(const char *s, size_t n);
int jinja__test_id(const char *s, size_t n);

#endif
