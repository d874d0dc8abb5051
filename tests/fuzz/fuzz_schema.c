// Fuzz target: JSON-schema constraints (src/engine/constrain.c). Input: a schema as JSON
// [`\n#LFMD#\n` walk bytes]. The schema part compiles with constraint_json (null: the
// json_object constraint; an array of strings: constraint_choices); the walk bytes then drive the
// pushdown automaton over a fixed synthetic vocabulary (every single byte, JSON fragments, long
// tokens, an EOG id and an unusable special id), built once per process:
//   op 0: feed one byte          op 1: feed one vocab token (allowed or not)
//   op 2: constraint_mask with a budget, then feed a token the mask left
//   op 3: consistency checks of complete/final/min_bytes
// Checked on every step: feed succeeds exactly when constraint_allows says so and a rejected
// feed leaves the state as it was; the mask's count matches the tokens it left, it only leaves
// allowed tokens, and EOG only once the value is complete; a complete value parses as JSON (and
// is one of the choices); the state never gets stuck (final implies complete, min_bytes finite).
// Nothing may leak (the constraint and its mask cache are freed per input; the vocab is not
// what is fuzzed and stays for the process).
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "engine/constrain.h"
#include "format/json.h"

#include <math.h>

#define SCHEMA_SEP "\n#LFMD#\n"
#define OUT_MAX 8192
#define STEPS_MAX 2048

enum { V_BYTES = 256, V_EOG = 256, V_SPECIAL = 257 };

static const char *const frags[] = {
    "{\"", "\":", "\",\"", "\"}", "}", "]", "[", "true", "false", "null", "na", "name",
    "\"name\":\"", "\": \"", ", ", "1", "12", "0.", "e-", "E+", "-0", "1e5", "re", "red", "green",
    "\\u00", "\\u", "\\n", "\\\"", "\\\\", "\xc3\xa9", "\xc3", "\xa9", "\xe2\x82", "\xac",
    "\xf0\x9f\x98\x80", "\"a\":", "bb", "ok\"", "x y", "   ", "\n", "\t", "[1]", "7,", "-", "\"\"",
    "{}", "[]", "\":[", "],\"", "},{", "\"re", "\"id\":", "\"type\":\"", "0", "00", ".5", "1.",
    "[\"", "\"]", "{\"a\":1}", "{\"name\":\"billing\",\"id\":42,\"tags\":[\"x\",\"y\"]}",
    "\"service\":\"billing\",", "                                        ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "true,false,null,1,2,3,\"s\"]"};

static struct {
    int n;
    const char *bytes[V_SPECIAL + 1 + sizeof frags / sizeof frags[0]];
    size_t len[V_SPECIAL + 1 + sizeof frags / sizeof frags[0]];
    char single[V_BYTES];
    struct constraint_vocab *v;
    float *logits;
} g_voc;

static const char *voc_get(void *u, int32_t id, size_t *len) {
    (void)u;
    *len = g_voc.len[id];
    return g_voc.bytes[id];
}

static bool voc_eog(void *u, int32_t id) {
    (void)u;
    return id == V_EOG;
}

// Built on the first input, before its allocation count is taken.
static void voc_init(void) {
    if (g_voc.v) return;
    for (int b = 0; b < V_BYTES; b++) {
        g_voc.single[b] = (char)b;
        g_voc.bytes[b] = &g_voc.single[b];
        g_voc.len[b] = 1;
    }
    g_voc.bytes[V_EOG] = g_voc.bytes[V_SPECIAL] = "";
    g_voc.n = V_SPECIAL + 1;
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++) {
        g_voc.bytes[g_voc.n] = frags[i];
        g_voc.len[g_voc.n++] = strlen(frags[i]);
    }
    struct lfmd_err_ctx err = {0};
    if (constraint_vocab_new(g_voc.n, voc_get, voc_eog, NULL, &g_voc.v, &err)) {
        fprintf(stderr, "constraint_vocab_new: %s\n", err.msg);
        abort();
    }
    g_voc.logits = malloc((size_t)g_voc.n * sizeof *g_voc.logits);
    if (!g_voc.logits) abort();
}

static void fail(const char *what, const char *out, size_t len) {
    fprintf(stderr, "fuzz_schema: %s (output so far: %.*s)\n", what, (int)len, out);
    abort();
}

// Feeds bytes; checks feed against allows, and that a rejected feed changes nothing.
static void feed(struct engine_constraint *c, const char *bytes, size_t n, char *out,
                 size_t *len) {
    bool allowed = constraint_allows(c, bytes, n);
    int mb = constraint_min_bytes(c);
    bool comp = constraint_complete(c);
    int rc = constraint_feed(c, bytes, n);
    if (allowed != (rc == 0)) fail("feed and allows disagree", out, *len);
    if (rc) {
        if (rc != LFMD_EINVAL) fail("feed failed with a code other than LFMD_EINVAL", out, *len);
        if (constraint_min_bytes(c) != mb || constraint_complete(c) != comp)
            fail("a rejected feed changed the state", out, *len);
        return;
    }
    if (*len + n > OUT_MAX) fail("output longer than the walk can feed", out, *len);
    memcpy(out + *len, bytes, n);
    *len += n;
}

static void check_state(const struct engine_constraint *c, const char *out, size_t len) {
    int mb = constraint_min_bytes(c);
    bool comp = constraint_complete(c), fin = constraint_final(c);
    if (mb < 0 || mb >= (1 << 20)) fail("min_bytes out of range (stuck state)", out, len);
    if (comp && mb != 0) fail("complete but min_bytes > 0", out, len);
    if (!comp && mb == 0) fail("min_bytes 0 but not complete", out, len);
    if (fin && !comp) fail("final but not complete (stuck state)", out, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    voc_init();
    long live = lfmd_alloc_live();
    size_t n1, off2;
    fuzz_split(data, size, SCHEMA_SEP, &n1, &off2);
    struct lfmd_err_ctx err = {0};
    struct json_doc *doc = NULL;
    if (json_parse((const char *)data, n1, LFMD_MEM_OTHER, &doc, &err)) {
        fuzz_check_leaks(live, "json_parse (schema)");
        return 0;
    }
    const struct json *root = json_root(doc);
    struct engine_constraint *c = NULL;
    const char *choices[300];
    int n_choices = -1;
    if (json_is(root, JSON_ARRAY) && root->len >= 1 && root->len <= 300) {
        n_choices = (int)root->len;
        for (int i = 0; i < n_choices && n_choices > 0; i++) {
            const struct json *s = json_at(root, (size_t)i);
            if (json_is(s, JSON_STRING)) choices[i] = s->u.str;
            else n_choices = -1;
        }
    }
    int rc = n_choices > 0 ? constraint_choices(choices, n_choices, &c, &err)
                           : constraint_json(json_is(root, JSON_NULL) ? NULL : root, &c, &err);
    if (rc) {
        if (!err.msg[0]) fail("constraint compile failed without a message", "", 0);
        if (c) fail("constraint compile failed but returned a constraint", "", 0);
        json_doc_free(doc);
        fuzz_check_leaks(live, "constraint compile (rejected)");
        return 0;
    }
    if (!c) fail("constraint compile succeeded without a constraint", "", 0);

    static char out[OUT_MAX + 64];
    size_t len = 0;
    check_state(c, out, len);
    const uint8_t *w = data + off2, *end = data + size;
    for (int step = 0; step < STEPS_MAX && w < end; step++) {
        uint8_t op = *w++;
        uint8_t a = w < end ? *w++ : 0;
        if (len + 64 > OUT_MAX) break;
        switch (op & 3) {
        case 0: {
            char b = (char)a;
            feed(c, &b, 1, out, &len);
            break;
        }
        case 1: {
            int id = (int)(((unsigned)a | (unsigned)(op >> 2) << 8) % (unsigned)g_voc.n);
            if (g_voc.len[id]) feed(c, g_voc.bytes[id], g_voc.len[id], out, &len);
            break;
        }
        case 2: {
            int budget = a < 16 ? 0 : a - 15 + (op >> 2);
            for (int i = 0; i < g_voc.n; i++) g_voc.logits[i] = 0.0f;
            int left = constraint_mask(c, g_voc.v, budget, g_voc.logits);
            int count = 0, pick = -1, want = op >> 2;
            for (int i = 0; i < g_voc.n; i++) {
                if (g_voc.logits[i] == -INFINITY) continue;
                count++;
                if (i == V_EOG) {
                    if (!constraint_complete(c)) fail("mask left EOG before complete", out, len);
                    continue;
                }
                if (i == V_SPECIAL) fail("mask left the unusable special token", out, len);
                if (!constraint_allows(c, g_voc.bytes[i], g_voc.len[i]))
                    fail("mask left a token that allows rejects", out, len);
                if (pick < 0 || want-- > 0) pick = i;
            }
            if (left != count) fail("mask count differs from the tokens it left", out, len);
            if (left == 0 && !constraint_final(c) && !constraint_complete(c))
                fail("mask left nothing before the value is complete", out, len);
            if (pick >= 0) {
                if (constraint_feed(c, g_voc.bytes[pick], g_voc.len[pick]))
                    fail("a token the mask left was rejected", out, len);
                memcpy(out + len, g_voc.bytes[pick], g_voc.len[pick]);
                len += g_voc.len[pick];
            }
            break;
        }
        default: check_state(c, out, len); break;
        }
        check_state(c, out, len);
    }
    if (constraint_complete(c)) {
        if (n_choices > 0) {
            bool found = false;
            for (int i = 0; i < n_choices && !found; i++)
                found = strlen(choices[i]) == len && !memcmp(choices[i], out, len);
            if (!found) fail("complete output is none of the choices", out, len);
        } else {
            struct json_doc *o = NULL;
            struct lfmd_err_ctx oerr = {0};
            if (json_parse(out, len, LFMD_MEM_OTHER, &o, &oerr)) {
                fprintf(stderr, "fuzz_schema: %s\n", oerr.msg);
                fail("complete output is not valid JSON", out, len);
            }
            json_doc_free(o);
        }
    }
    constraint_free(c);
    json_doc_free(doc);
    fuzz_check_leaks(live, "constraint walk");
    return 0;
}
