// Golden test: the four real tokenizers in tests/data/tokenizers against the ids and decodings
// Hugging Face tokenizers 0.23.2 produced (expected.jsonl), and the chat prompts + ids Jinja2
// produced (expected.chat.jsonl). Every case, both add_special modes, decode and stream-decode.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA LFMD_SOURCE_DIR "/tests/data/tokenizers"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    p[n] = 0;
    *len = (size_t)n;
    return p;
}

// Calls fn for each JSON line of a file.
static int each_line(const char *path, void (*fn)(const struct json *, void *), void *ud) {
    size_t len;
    char *text = slurp(path, &len);
    if (!text) return -1;
    int n = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if (ll) {
            struct json_doc *doc;
            struct lfmd_err_ctx err = {0};
            if (json_parse(line, ll, LFMD_MEM_OTHER, &doc, &err) == 0) {
                fn(json_root(doc), ud);
                json_doc_free(doc);
                n++;
            } else {
                fprintf(stderr, "%s: %s\n", path, err.msg);
            }
        }
        line += ll + (nl ? 1 : 0);
    }
    free(text);
    return n;
}

struct ctx {
    const char *name;
    struct tokenizer *t;
    struct json_doc *cases; // cases.jsonl is read once per tokenizer into texts by id
    int fails, n;
};

static bool ids_equal(const int32_t *ids, size_t n, const struct json *exp) {
    if (!json_is(exp, JSON_ARRAY) || exp->len != n) return false;
    for (size_t i = 0; i < n; i++)
        if ((int32_t)json_num(&exp->u.items[i], -1) != ids[i]) return false;
    return true;
}

static void report(struct ctx *c, const char *id, const char *what, const int32_t *ids, size_t n,
                   const struct json *exp) {
    c->fails++;
    if (c->fails > 12) return;
    fprintf(stderr, "[%s %s] %s mismatch: got %zu ids:", c->name, id, what, n);
    for (size_t i = 0; i < n && i < 24; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n   expected %u:", exp ? exp->len : 0);
    for (size_t i = 0; exp && i < exp->len && i < 24; i++)
        fprintf(stderr, " %d", (int)json_num(&exp->u.items[i], -1));
    fprintf(stderr, "\n");
}

static void check_decode(struct ctx *c, const char *id, const int32_t *ids, size_t n,
                         const struct json *exp, const char *what) {
    char *text;
    size_t len;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(tokenizer_decode(c->t, ids, n, false, &text, &len, &err), 0);
    bool ok = json_is(exp, JSON_STRING) && exp->len == len && !memcmp(text, exp->u.str, len);
    CHECK(ok);
    if (!ok && ++c->fails <= 12)
        fprintf(stderr, "[%s %s] %s: got \"%.200s\" expected \"%.200s\"\n", c->name, id, what, text,
                json_str(exp, "?"));
    // Streaming the same ids must give the same text when the full text is valid UTF-8.
    struct tok_stream st;
    struct buf out;
    buf_init(&out, 1 << 26, LFMD_MEM_OTHER);
    tok_stream_init(&st, c->t, false);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = tok_stream_push(&st, ids[i], &out);
    if (!rc) rc = tok_stream_flush(&st, &out);
    CHECK_EQ(rc, 0);
    bool has_repl = memmem(text, len, "\xEF\xBF\xBD", 3) != NULL;
    if (!has_repl) {
        bool sok = out.len == len && (!len || !memcmp(out.data, text, len));
        CHECK(sok);
        if (!sok && ++c->fails <= 12)
            fprintf(stderr, "[%s %s] stream: got \"%.200s\" expected \"%.200s\"\n", c->name, id,
                    out.data ? out.data : "", text);
    }
    buf_fini(&out);
    lfmd_free(text);
}

static const char *case_text(struct ctx *c, const char *id, size_t *len) {
    const struct json *root = json_root(c->cases);
    const struct json *v = json_get(root, id);
    *len = v ? v->len : 0;
    return json_str(v, NULL);
}

static void one_case(const struct json *exp, void *ud) {
    struct ctx *c = ud;
    const char *id = json_str(json_get(exp, "id"), "?");
    size_t len;
    const char *text = case_text(c, id, &len);
    CHECK(text != NULL);
    if (!text) return;
    c->n++;
    for (int mode = 0; mode < 2; mode++) {
        int32_t *ids;
        size_t n;
        struct lfmd_err_ctx err = {0};
        int rc = tokenizer_encode(c->t, text, len, mode == 0, true, &ids, &n, &err);
        CHECK_EQ(rc, 0);
        const struct json *e = json_get(exp, mode == 0 ? "ids" : "ids_no_special");
        bool ok = rc == 0 && ids_equal(ids, n, e);
        CHECK(ok);
        if (!ok) report(c, id, mode == 0 ? "ids" : "ids_no_special", ids, n, e);
        // Decode the expected ids (not ours) so a decode bug is reported separately.
        if (json_is(e, JSON_ARRAY)) {
            int32_t *eids = malloc((e->len + 1) * sizeof *eids);
            for (size_t i = 0; i < e->len; i++) eids[i] = (int32_t)json_num(&e->u.items[i], -1);
            check_decode(c, id, eids, e->len,
                         json_get(exp, mode == 0 ? "decoded" : "decoded_no_special"),
                         mode == 0 ? "decoded" : "decoded_no_special");
            free(eids);
        }
        lfmd_free(ids);
    }
}

// cases.jsonl -> one JSON object {id: text} for lookups.
static struct json_doc *load_cases(void) {
    size_t len;
    char *text = slurp(DATA "/cases.jsonl", &len);
    if (!text) return NULL;
    struct buf b;
    buf_init(&b, 1 << 26, LFMD_MEM_OTHER);
    int rc = buf_putc(&b, '{');
    bool first = true;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        struct json_doc *doc;
        struct lfmd_err_ctx err = {0};
        if (ll && json_parse(line, ll, LFMD_MEM_OTHER, &doc, &err) == 0) {
            const struct json *r = json_root(doc);
            const struct json *id = json_get(r, "id"), *tx = json_get(r, "text");
            if (!first) rc |= buf_putc(&b, ',');
            first = false;
            rc |= buf_json_str(&b, id->u.str, id->len);
            rc |= buf_putc(&b, ':');
            rc |= buf_json_str(&b, tx->u.str, tx->len);
            json_doc_free(doc);
        }
        line += ll + (nl ? 1 : 0);
    }
    rc |= buf_putc(&b, '}');
    free(text);
    struct json_doc *doc = NULL;
    struct lfmd_err_ctx err = {0};
    if (!rc && json_parse(b.data, b.len, LFMD_MEM_OTHER, &doc, &err) != 0) doc = NULL;
    buf_fini(&b);
    return doc;
}

// ---- chat templates ----

struct chat_ctx {
    struct ctx *c;
    struct json_doc *chats;
};

static void one_chat(const struct json *exp, void *ud) {
    struct chat_ctx *cc = ud;
    struct ctx *c = cc->c;
    const char *id = json_str(json_get(exp, "id"), "?");
    const struct json *chat = json_get(json_root(cc->chats), id);
    CHECK(chat != NULL);
    if (!chat) return;
    char *prompt = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = tokenizer_apply_template(c->t, json_get(chat, "messages"),
                                      json_bool(json_get(chat, "add_generation_prompt"), false),
                                      json_get(chat, "kwargs"), json_get(chat, "tools"), &prompt,
                                      &err);
    CHECK_EQ(rc, 0);
    if (rc) {
        if (++c->fails <= 12) fprintf(stderr, "[%s %s] template: %s\n", c->name, id, err.msg);
        return;
    }
    const struct json *ep = json_get(exp, "prompt");
    bool ok = json_is(ep, JSON_STRING) && strlen(prompt) == ep->len && !strcmp(prompt, ep->u.str);
    CHECK(ok);
    if (!ok && ++c->fails <= 12)
        fprintf(stderr, "[%s %s] prompt:\n--- got\n%s\n--- expected\n%s\n", c->name, id, prompt,
                json_str(ep, "?"));
    int32_t *ids;
    size_t n;
    CHECK_EQ(tokenizer_encode(c->t, prompt, strlen(prompt), false, true, &ids, &n, &err), 0);
    bool iok = ids_equal(ids, n, json_get(exp, "ids"));
    CHECK(iok);
    if (!iok) report(c, id, "chat ids", ids, n, json_get(exp, "ids"));
    lfmd_free(ids);
    lfmd_free(prompt);
}

static struct json_doc *load_chats(void) {
    size_t len;
    char *text = slurp(DATA "/chats.jsonl", &len);
    if (!text) return NULL;
    struct buf b;
    buf_init(&b, 1 << 24, LFMD_MEM_OTHER);
    int rc = buf_putc(&b, '{');
    bool first = true;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        struct json_doc *doc;
        struct lfmd_err_ctx err = {0};
        if (ll && json_parse(line, ll, LFMD_MEM_OTHER, &doc, &err) == 0) {
            const struct json *id = json_get(json_root(doc), "id");
            if (!first) rc |= buf_putc(&b, ',');
            first = false;
            rc |= buf_json_str(&b, id->u.str, id->len);
            rc |= buf_putc(&b, ':');
            rc |= buf_append(&b, line, ll);
            json_doc_free(doc);
        }
        line += ll + (nl ? 1 : 0);
    }
    rc |= buf_putc(&b, '}');
    free(text);
    struct json_doc *doc = NULL;
    struct lfmd_err_ctx err = {0};
    if (!rc && json_parse(b.data, b.len, LFMD_MEM_OTHER, &doc, &err) != 0) doc = NULL;
    buf_fini(&b);
    return doc;
}

int main(int argc, char **argv) {
    static const char *const names[] = {"gpt2", "llama2", "llama3", "qwen3"};
    struct json_doc *cases = load_cases();
    struct json_doc *chats = load_chats();
    CHECK(cases != NULL);
    CHECK(chats != NULL);
    for (size_t k = 0; k < 4 && cases; k++) {
        if (argc > 1 && strcmp(argv[1], names[k]) != 0) continue;
        char path[512];
        snprintf(path, sizeof path, DATA "/%s", names[k]);
        struct ctx c = {.name = names[k], .cases = cases};
        struct lfmd_err_ctx err = {0};
        int rc = tokenizer_load(path, &c.t, &err);
        CHECK_EQ(rc, 0);
        if (rc) {
            fprintf(stderr, "load %s: %s\n", names[k], err.msg);
            continue;
        }
        snprintf(path, sizeof path, DATA "/%s/expected.jsonl", names[k]);
        CHECK(each_line(path, one_case, &c) > 0);
        int case_fails = c.fails;
        snprintf(path, sizeof path, DATA "/%s/expected.chat.jsonl", names[k]);
        struct chat_ctx cc = {&c, chats};
        int n_chats = chats ? each_line(path, one_chat, &cc) : -1;
        fprintf(stderr, "%s: %d cases, %d case failures; %d chats, %d chat failures\n", names[k],
                c.n, case_fails, n_chats < 0 ? 0 : n_chats, c.fails - case_fails);
        tokenizer_free(c.t);
    }
    json_doc_free(cases);
    json_doc_free(chats);
    return check_done();
}
