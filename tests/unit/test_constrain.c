// Constrained output: hand-written accept/reject cases, then a property test (random schemas x
// random token streams over a synthetic vocab with multi-byte tokens x seeds, token budgets):
// every finished output parses and validates against its schema, judged by a separate small
// validator below (not by the automaton). Also the engine path on the fake and the embedded
// router model: constrained outputs validate, unconstrained outputs are unchanged by a
// constrained neighbour in the same batch and by logprobs, and the mask cost on a big vocab.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "base/alloc.h"
#include "engine/constrain.h"
#include "engine/engine.h"
#include "engine_collect.h"
#include "format/json.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---- independent validator ----

static bool json_equal(const struct json *a, const struct json *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case JSON_NUMBER: return a->u.num == b->u.num;
    case JSON_STRING: return a->len == b->len && !memcmp(a->u.str, b->u.str, a->len);
    case JSON_ARRAY:
    case JSON_OBJECT:
        if (a->len != b->len) return false;
        for (uint32_t i = 0; i < a->len; i++) {
            if (a->type == JSON_OBJECT && strcmp(a->u.items[i].key, b->u.items[i].key)) return false;
            if (!json_equal(&a->u.items[i], &b->u.items[i])) return false;
        }
        return true;
    default: return true;
    }
}

static size_t utf8_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static bool type_ok(const char *t, const struct json *v) {
    if (!strcmp(t, "string")) return v->type == JSON_STRING;
    if (!strcmp(t, "number")) return v->type == JSON_NUMBER;
    if (!strcmp(t, "integer")) return v->type == JSON_NUMBER && v->u.num == floor(v->u.num);
    if (!strcmp(t, "boolean")) return v->type == JSON_TRUE || v->type == JSON_FALSE;
    if (!strcmp(t, "null")) return v->type == JSON_NULL;
    if (!strcmp(t, "array")) return v->type == JSON_ARRAY;
    if (!strcmp(t, "object")) return v->type == JSON_OBJECT;
    return false;
}

static bool validate(const struct json *s, const struct json *v) {
    if (!s || json_is(s, JSON_TRUE)) return true;
    const struct json *e = json_get(s, "enum"), *c = json_get(s, "const");
    if (c) return json_equal(c, v);
    if (e) {
        for (uint32_t i = 0; i < e->len; i++)
            if (json_equal(&e->u.items[i], v)) return true;
        return false;
    }
    const struct json *t = json_get(s, "type");
    if (t && json_is(t, JSON_STRING) && !type_ok(t->u.str, v)) return false;
    if (t && json_is(t, JSON_ARRAY)) {
        bool any = false;
        for (uint32_t i = 0; i < t->len; i++) any = any || type_ok(json_at(t, i)->u.str, v);
        if (!any) return false;
    }
    if (v->type == JSON_STRING) {
        size_t n = utf8_chars(v->u.str, v->len);
        if (n < (size_t)json_num(json_get(s, "minLength"), 0)) return false;
        if (n > (size_t)json_num(json_get(s, "maxLength"), 1e18)) return false;
    }
    if (v->type == JSON_ARRAY) {
        if (v->len < json_num(json_get(s, "minItems"), 0)) return false;
        if (v->len > json_num(json_get(s, "maxItems"), 1e18)) return false;
        for (uint32_t i = 0; i < v->len; i++)
            if (!validate(json_get(s, "items"), &v->u.items[i])) return false;
    }
    if (v->type == JSON_OBJECT) {
        const struct json *props = json_get(s, "properties");
        const struct json *ap = json_get(s, "additionalProperties");
        bool extra_ok = !props ? (!ap || !json_is(ap, JSON_FALSE)) : (ap && !json_is(ap, JSON_FALSE));
        for (uint32_t i = 0; i < v->len; i++) {
            const char *k = v->u.items[i].key;
            const struct json *ps = props ? json_get(props, k) : NULL;
            // declared keys must be unique; repeated undeclared keys are a documented
            // limitation (parsers keep the last one, which is validated like the others)
            for (uint32_t j = 0; ps && j < i; j++)
                if (!strcmp(v->u.items[j].key, k)) return false;
            if (ps) {
                if (!validate(ps, &v->u.items[i])) return false;
            } else {
                if (!extra_ok) return false;
                if (ap && json_is(ap, JSON_OBJECT) && !validate(ap, &v->u.items[i])) return false;
            }
        }
        const struct json *req = json_get(s, "required");
        for (uint32_t i = 0; req && i < req->len; i++)
            if (!json_get(v, json_at(req, i)->u.str)) return false;
    }
    return true;
}

static bool parse_validate(const char *schema, const char *out, size_t len) {
    struct json_doc *sd = NULL, *vd = NULL;
    struct lfmd_err_ctx err = {0};
    bool ok = false;
    if (json_parse(out, len, LFMD_MEM_OTHER, &vd, &err) == 0) {
        if (!schema) {
            ok = json_is(json_root(vd), JSON_OBJECT);
        } else if (json_parse(schema, strlen(schema), LFMD_MEM_OTHER, &sd, &err) == 0) {
            ok = validate(json_root(sd), json_root(vd));
        }
    }
    json_doc_free(sd);
    json_doc_free(vd);
    return ok;
}

static struct engine_constraint *make(const char *schema, struct lfmd_err_ctx *err) {
    struct engine_constraint *c = NULL;
    struct json_doc *d = NULL;
    if (schema && json_parse(schema, strlen(schema), LFMD_MEM_OTHER, &d, err)) return NULL;
    int rc = constraint_json(d ? json_root(d) : NULL, &c, err);
    json_doc_free(d);
    return rc ? NULL : c;
}

static bool accepts_all(const char *schema, const char *text) {
    struct lfmd_err_ctx err = {0};
    struct engine_constraint *c = make(schema, &err);
    if (!c) return false;
    bool ok = constraint_feed(c, text, strlen(text)) == 0 && constraint_complete(c);
    constraint_free(c);
    return ok;
}

// ---- hand cases ----

static void test_cases(void) {
    const char *person = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                         "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":"
                         "{\"enum\":[\"a\",\"b\",1,null]}}},\"required\":[\"name\"]}";
    CHECK(accepts_all(person, "{\"name\":\"x\"}"));
    CHECK(accepts_all(person, "{\"age\":-12,\"name\":\"\\u00e9\\n\",\"tags\":[\"a\",1,null]}"));
    CHECK(accepts_all(person, "{ \"name\": \"caf\xc3\xa9\" }"));
    CHECK(!accepts_all(person, "{}"));                         // required missing
    CHECK(!accepts_all(person, "{\"name\":\"x\",\"name\":\"y\"}")); // duplicate
    CHECK(!accepts_all(person, "{\"name\":\"x\",\"zz\":1}"));   // additional
    CHECK(!accepts_all(person, "{\"name\":\"x\",\"age\":1.5}")); // integer
    CHECK(!accepts_all(person, "{\"name\":\"x\",\"tags\":[\"c\"]}"));
    CHECK(!accepts_all(person, "{\"name\":\"\xc3\"}"));          // broken UTF-8
    CHECK(!accepts_all(person, "{\"name\":\"a\x01\"}"));         // control char
    CHECK(accepts_all(NULL, "{\"a\":[1,2.5e-3,{\"b\":true}],\"c\":\"\"}"));
    CHECK(!accepts_all(NULL, "[1]"));
    CHECK(!accepts_all(NULL, "{\"a\":01}"));
    CHECK(accepts_all("{\"type\":[\"string\",\"null\"]}", "null"));
    CHECK(accepts_all("{\"type\":\"number\"}", "-0.5E+3"));
    CHECK(accepts_all("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"ab\""));
    CHECK(!accepts_all("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"abcd\""));
    CHECK(!accepts_all("{\"type\":\"array\",\"minItems\":2}", "[1]"));
    // completion and finality
    struct lfmd_err_ctx err = {0};
    struct engine_constraint *c = make("{\"type\":\"integer\"}", &err);
    CHECK(c && constraint_feed(c, "12", 2) == 0 && constraint_complete(c) && !constraint_final(c));
    constraint_free(c);
    c = make(person, &err);
    CHECK(c && constraint_feed(c, "{\"name\":\"q\"}", 12) == 0 && constraint_final(c));
    CHECK(c && !constraint_allows(c, " ", 1));
    constraint_free(c);
    const char *ch[] = {"yes", "no", "yes please"};
    CHECK_EQ(constraint_choices(ch, 3, &c, &err), 0);
    CHECK(constraint_allows(c, "yes", 3) && !constraint_allows(c, "ye!", 3));
    CHECK(constraint_feed(c, "yes", 3) == 0 && constraint_complete(c) && !constraint_final(c));
    CHECK(constraint_feed(c, " please", 7) == 0 && constraint_final(c));
    constraint_free(c);
    // unsupported features are named
    static const char *const bad[] = {
        "{\"$ref\":\"#/x\"}", "{\"type\":\"string\",\"pattern\":\"a+\"}",
        "{\"anyOf\":[{\"type\":\"string\"}]}", "{\"type\":\"integer\",\"minimum\":1}",
        "{\"type\":\"frob\"}", "{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        CHECK(make(bad[i], &err) == NULL);
        CHECK_EQ(err.code, LFMD_EINVAL);
    }
    memset(&err, 0, sizeof err);
    CHECK(!make("{\"type\":\"string\",\"pattern\":\"a+\"}", &err) && strstr(err.msg, "pattern"));
}

// ---- random schemas ----

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static void gen_schema(char *o, size_t cap, int depth) {
    int k = (int)(rnd() % (depth > 2 ? 6 : 9));
    static const char *const names[] = {"a", "bb", "name", "x y", "na", "\\u00e9t\\u00e9", "ok"};
    switch (k) {
    case 0: snprintf(o, cap, "{\"type\":\"string\"%s}", rnd() % 2 ? ",\"maxLength\":5" : ""); break;
    case 1: snprintf(o, cap, "{\"type\":\"%s\"}", rnd() % 2 ? "integer" : "number"); break;
    case 2: snprintf(o, cap, "{\"type\":\"boolean\"}"); break;
    case 3: snprintf(o, cap, "{\"enum\":[\"red\",\"green\",\"re\",7,null,[1]]}"); break;
    case 4: snprintf(o, cap, "{\"type\":[\"integer\",\"null\",\"string\"]}"); break;
    case 5: snprintf(o, cap, "{\"type\":\"null\"}"); break;
    case 6: case 7: {
        char items[2048];
        gen_schema(items, sizeof items, depth + 1);
        snprintf(o, cap, "{\"type\":\"array\",\"items\":%s%s}", items,
                 rnd() % 2 ? ",\"minItems\":1,\"maxItems\":3" : "");
        break;
    }
    default: {
        int n = 1 + (int)(rnd() % 4);
        size_t len = (size_t)snprintf(o, cap, "{\"type\":\"object\",\"properties\":{");
        char req[256] = "";
        size_t rl = 0;
        int used = 0;
        for (int i = 0; i < n; i++) {
            int ni = (int)(rnd() % 7);
            if (used >> ni & 1) continue;
            used |= 1 << ni;
            char sub[2048];
            gen_schema(sub, sizeof sub, depth + 1);
            len += (size_t)snprintf(o + len, cap - len, "%s\"%s\":%s", len > 34 ? "," : "",
                                    names[ni], sub);
            if (rnd() % 2)
                rl += (size_t)snprintf(req + rl, sizeof req - rl, "%s\"%s\"", rl ? "," : "",
                                       names[ni]);
        }
        snprintf(o + len, cap - len, "},\"required\":[%s]%s}", req,
                 rnd() % 3 == 0 ? ",\"additionalProperties\":true" : "");
    }
    }
}

// Synthetic vocab: 256 single bytes, JSON-ish fragments, random strings, one EOG id.
#define SV_EOG 0
static char sv_bytes[2048][24];
static size_t sv_len[2048];
static int sv_n;

static const char *sv_get(void *u, int32_t id, size_t *len) {
    (void)u;
    *len = sv_len[id];
    return sv_bytes[id];
}
static bool sv_eog(void *u, int32_t id) {
    (void)u;
    return id == SV_EOG;
}

static void sv_build(void) {
    static const char *const frags[] = {
        "{\"", "\":", "\",\"", "\"}", "}", "]", "[", "true", "false", "null", "na", "name",
        "\"name\":\"", "\": \"", ", ", "1", "12", "0.", "e-", "re", "red", "green", "\\u00",
        "\\n", "\xc3\xa9", "\xc3", "\xa9", "\xe2\x82", "\xac", "\"a\":", "bb", "ok\"", "x y",
        "   ", "\n", "[1]", "7,", "-", "\"\"", "{}", "[]", "\":[", "],\"", "},{", "\"re"};
    sv_n = 0;
    sv_len[sv_n++] = 0; // EOG
    for (int b = 1; b < 256; b++) {
        sv_bytes[sv_n][0] = (char)b;
        sv_len[sv_n++] = 1;
    }
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++) {
        sv_len[sv_n] = strlen(frags[i]);
        memcpy(sv_bytes[sv_n++], frags[i], strlen(frags[i]));
    }
    while (sv_n < 1500) {
        int n = 2 + (int)(rnd() % 10);
        for (int i = 0; i < n; i++) sv_bytes[sv_n][i] = "abcdef \"{}[]:,0123456789e.-\\ntrulsn"[rnd() % 35];
        sv_len[sv_n++] = (size_t)n;
    }
}

static int sample(const float *logits, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] != -INFINITY) sum += exp(logits[i]);
    double r = (rnd() / 4294967296.0) * sum;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (logits[i] == -INFINITY) continue;
        last = i;
        r -= exp(logits[i]);
        if (r <= 0) return i;
    }
    return last;
}

static void test_property(void) {
    rng_state = 12345;
    sv_build();
    struct constraint_vocab *v = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(constraint_vocab_new(sv_n, sv_get, sv_eog, NULL, &v, &err), 0);
    float *lg = malloc((size_t)sv_n * sizeof *lg);
    int n_ok = 0, n_runs = 0, n_budget = 0;
    for (int run = 0; run < 600; run++) {
        char schema[8192];
        bool any = run % 10 == 9;
        gen_schema(schema, sizeof schema, 0);
        struct engine_constraint *c = make(any ? NULL : schema, &err);
        if (!c) {
            fprintf(stderr, "schema rejected: %s: %s\n", schema, err.msg);
            CHECK(c != NULL);
            continue;
        }
        int budget = run % 3 == 0 ? 40 + (int)(rnd() % 40) : 400;
        char out[8192];
        size_t len = 0;
        bool stopped = false;
        for (int t = 0; t < budget; t++) {
            for (int i = 0; i < sv_n; i++) lg[i] = (float)((rnd() % 1000) / 250.0);
            // favour structure so values finish; the random logits still pick freely
            if (run % 2) lg[SV_EOG] += 3;
            int n = constraint_mask(c, v, budget - t, lg);
            if (getenv("CDEBUG") && run == atoi(getenv("CDEBUG")))
            {
                fprintf(stderr, "t=%d left=%d min=%d allowed=%d out=", t, budget - t,
                        constraint_min_bytes(c), n);
                for (size_t q = 0; q < len; q++)
                    fprintf(stderr, out[q] == '\n' ? "\\n" : "%c", out[q]);
                fprintf(stderr, "\n");
            }
            if (n <= 0) break;
            // the mask agrees with constraint_allows on every token
            if (t < 3 || rnd() % 50 == 0)
                for (int i = 1; i < sv_n; i++)
                    if (lg[i] != -INFINITY && !constraint_allows(c, sv_bytes[i], sv_len[i])) {
                        CHECK(!"mask allowed a rejected token");
                        break;
                    }
            int id = sample(lg, sv_n);
            if (id == SV_EOG) {
                CHECK(constraint_complete(c));
                stopped = true;
                break;
            }
            CHECK_EQ(constraint_feed(c, sv_bytes[id], sv_len[id]), 0);
            if (getenv("CDEBUG") && run == atoi(getenv("CDEBUG")))
                fprintf(stderr, "  chose %d '%.*s' min now %d\n", id, (int)sv_len[id],
                        sv_bytes[id], constraint_min_bytes(c));
            memcpy(out + len, sv_bytes[id], sv_len[id]);
            len += sv_len[id];
            if (constraint_final(c)) {
                stopped = true;
                break;
            }
        }
        n_runs++;
        if (!stopped) n_budget++;
        bool ok = constraint_complete(c) && parse_validate(any ? NULL : schema, out, len);
        if (!ok) fprintf(stderr, "run %d: schema %s\noutput %.*s\n", run, any ? "{}" : schema,
                         (int)len, out);
        CHECK(ok);
        n_ok += ok;
        constraint_free(c);
    }
    fprintf(stderr, "property: %d/%d outputs valid (%d ended at the token budget)\n", n_ok,
            n_runs, n_budget);
    free(lg);
    constraint_vocab_free(v);
}

// ---- the engine ----

static struct engine *start(const char *path, int parallel) {
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = path;
    o.ops = engine_ops_for_path(path);
    o.n_ctx = 512;
    o.max_tokens = 200;
    o.n_threads = 2;
    o.parallel = parallel;
    o.preload = true;
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = engine_start(&o, &e, &err);
    if (rc) fprintf(stderr, "engine_start: %s\n", err.msg);
    CHECK_EQ(rc, 0);
    return e;
}

static void params(struct engine_params *p, const char *prompt, uint64_t seed, int max) {
    engine_params_default(p);
    p->prompt = prompt;
    p->prompt_as_user_turn = true;
    p->max_tokens = max;
    p->sampling.temperature = 1.0f;
    p->sampling.seed = seed;
}

static void run_engine(const char *path, int n_schemas, int seeds) {
    struct engine *e = start(path, 4);
    if (!e) return;
    rng_state = 777;
    int n_ok = 0, n = 0;
    for (int si = 0; si < n_schemas; si++) {
        char schema[8192];
        gen_schema(schema, sizeof schema, 0);
        struct collect col[4];
        struct engine_req *rs[4];
        int k = seeds > 4 ? 4 : seeds;
        for (int s = 0; s < k; s++) {
            struct lfmd_err_ctx err = {0};
            struct engine_params p;
            params(&p, "Reply in JSON.", (uint64_t)(si * 10 + s), 96);
            p.constraint = make(schema, &err);
            CHECK(p.constraint != NULL);
            collect_init(&col[s]);
            CHECK_EQ(engine_submit(e, &p, on_event, &col[s], &rs[s], &err), 0);
        }
        for (int s = 0; s < k; s++) {
            collect_wait(&col[s]);
            engine_req_release(rs[s]);
            bool ok = col[s].code == 0 && parse_validate(schema, col[s].text, col[s].len);
            if (!ok) fprintf(stderr, "%s: schema %s -> %s\n", path, schema, col[s].text);
            CHECK(ok);
            n_ok += ok;
            n++;
        }
    }
    fprintf(stderr, "engine %s: %d/%d constrained outputs valid\n", path, n_ok, n);
    engine_stop(e, 5);
}

// Unconstrained sampled output is the same alone, next to a constrained request in one batch,
// and with logprobs on.
static void test_unconstrained_unchanged(const char *path) {
    struct engine *e = start(path, 4);
    if (!e) return;
    struct collect alone, mixed, other, lp;
    struct engine_req *r1, *r2;
    struct lfmd_err_ctx err = {0};
    struct engine_params p;
    params(&p, "Tell me about the sea.", 42, 40);
    collect_init(&alone);
    CHECK_EQ(engine_submit(e, &p, on_event, &alone, &r1, &err), 0);
    collect_wait(&alone);
    engine_req_release(r1);
    params(&p, "Tell me about the sea.", 42, 40);
    collect_init(&mixed);
    collect_init(&other);
    struct engine_params q;
    params(&q, "Reply in JSON.", 7, 40);
    q.constraint = make(NULL, &err);
    CHECK_EQ(engine_submit(e, &q, on_event, &other, &r2, &err), 0);
    CHECK_EQ(engine_submit(e, &p, on_event, &mixed, &r1, &err), 0);
    collect_wait(&mixed);
    collect_wait(&other);
    engine_req_release(r1);
    engine_req_release(r2);
    params(&p, "Tell me about the sea.", 42, 40);
    p.logprobs = true;
    p.top_logprobs = 5;
    collect_init(&lp);
    CHECK_EQ(engine_submit(e, &p, on_event, &lp, &r1, &err), 0);
    collect_wait(&lp);
    engine_req_release(r1);
    CHECK(alone.n_gen > 0);
    CHECK_STR(mixed.text, alone.text);
    CHECK_STR(lp.text, alone.text);
    CHECK(parse_validate(NULL, other.text, other.len) || other.finish == ENGINE_FINISH_LENGTH);
    engine_stop(e, 5);
}

// Mask cost on a big vocab: the llama3 tokenizer's bytes through the real model layer would
// need a model; the trie only needs the bytes, so build it from the tokenizer's vocab strings
// decoded byte-level (GPT-2 byte mapping).
static int b2u[256];
static char big_bytes[200000][48];
static size_t big_len[200000];
static int big_n;
static const char *big_get(void *u, int32_t id, size_t *len) {
    (void)u;
    *len = big_len[id];
    return big_bytes[id];
}

static void load_llama3_vocab(void) {
    int n = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
            b2u[b] = b;
        else
            b2u[b] = 256 + n++;
    FILE *f = fopen("tests/data/tokenizers/llama3/tokenizer.json", "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *txt = malloc((size_t)sz);
    if (fread(txt, 1, (size_t)sz, f) != (size_t)sz) sz = 0;
    fclose(f);
    struct json_doc *d = NULL;
    struct lfmd_err_ctx err = {0};
    if (sz && json_parse(txt, (size_t)sz, LFMD_MEM_OTHER, &d, &err) == 0) {
        const struct json *vocab = json_get(json_get(json_root(d), "model"), "vocab");
        for (uint32_t i = 0; vocab && i < vocab->len; i++) {
            int id = (int)vocab->u.items[i].u.num;
            if (id < 0 || id >= 200000) continue;
            const unsigned char *k = (const unsigned char *)vocab->u.items[i].key;
            size_t o = 0;
            for (size_t j = 0; k[j] && o < 47;) { // UTF-8 decode, then map code points to bytes
                uint32_t cp = k[j];
                int extra = cp >= 0xF0 ? 3 : cp >= 0xE0 ? 2 : cp >= 0xC0 ? 1 : 0;
                cp &= extra ? (0x3F >> extra) : 0x7F;
                j++;
                for (int x = 0; x < extra && k[j]; x++) cp = cp << 6 | (k[j++] & 0x3F);
                for (int b = 0; b < 256; b++)
                    if ((uint32_t)b2u[b] == cp) big_bytes[id][o++] = (char)b;
            }
            big_len[id] = o;
            if (id + 1 > big_n) big_n = id + 1;
        }
    }
    json_doc_free(d);
    free(txt);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_mask_cost(void) {
    load_llama3_vocab();
    if (big_n < 1000) {
        fprintf(stderr, "llama3 tokenizer not found: skipping the mask cost\n");
        return;
    }
    struct constraint_vocab *v = NULL;
    struct lfmd_err_ctx err = {0};
    double t0 = now_s();
    CHECK_EQ(constraint_vocab_new(big_n, big_get, NULL, NULL, &v, &err), 0);
    double t_build = now_s() - t0;
    const char *schema = "{\"type\":\"object\",\"properties\":{\"service\":{\"enum\":[\"billing\","
                         "\"support\",\"sales\"]},\"reason\":{\"type\":\"string\"},\"score\":"
                         "{\"type\":\"number\"}},\"required\":[\"service\",\"reason\",\"score\"]}";
    float *lg = malloc((size_t)big_n * sizeof *lg);
    static const char *const prefixes[] = {"", "{\"service\":\"bil", "{\"service\":\"billing\",",
                                           "{\"service\":\"billing\",\"reason\":\"The customer "};
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
        struct engine_constraint *c = make(schema, &err);
        CHECK(c && constraint_feed(c, prefixes[k], strlen(prefixes[k])) == 0);
        int reps = 20, allowed = 0;
        double cold = 0, t = 0;
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < big_n; i++) lg[i] = 0;
            double a = now_s();
            allowed = constraint_mask(c, v, 1000, lg);
            double dt = now_s() - a;
            if (r == 0) cold = dt;
            else t += dt;
        }
        fprintf(stderr, "mask %d-token vocab after '%s': %d allowed, first %.2f ms, cached %.3f ms\n",
                big_n, prefixes[k], allowed, cold * 1e3, t / (reps - 1) * 1e3);
        CHECK(allowed > 0);
        constraint_free(c);
    }
    fprintf(stderr, "trie: %zu bytes, built in %.1f ms\n", constraint_vocab_bytes(v), t_build * 1e3);
    free(lg);
    constraint_vocab_free(v);
}

int main(void) {
    test_cases();
    test_property();
    run_engine("@test", 6, 4);
    run_engine("models/lfm2-router", 6, 4);
    test_unconstrained_unchanged("models/lfm2-router");
    test_mask_cost();
    return check_done();
}
