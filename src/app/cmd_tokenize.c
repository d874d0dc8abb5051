// `lfmd tokenize`, `lfmd detokenize`, `lfmd template`: JSONL in, JSONL out, one output line per
// input line in order. Exit 0 on success, 1 on bad input or a runtime error (message on stderr,
// naming the line), 2 on usage errors.
// SPDX-License-Identifier: MIT
#include "commands.h"

#include "base/limits.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum mode { MODE_TOKENIZE, MODE_DETOKENIZE, MODE_TEMPLATE };

struct opts {
    const char *tokenizer;
    bool no_special, jsonl, skip_special, literal_special;
    long bench_iters; // tokenize --bench N: time N encodes per line, print MB/s instead of ids
};

static void usage(FILE *f, enum mode m) {
    static const char *const name[] = {"tokenize", "detokenize", "template"};
    fprintf(f, "usage: lfmd %s --tokenizer DIR_OR_FILE %s--jsonl < in.jsonl > out.jsonl\n",
            name[m], m == MODE_TOKENIZE ? "[--no-special] [--literal-special] "
                     : m == MODE_DETOKENIZE ? "[--skip-special] " : "");
    switch (m) {
    case MODE_TOKENIZE:
        fprintf(f, "  input lines {\"text\": \"...\"}, output lines {\"ids\": [...]}\n"
                   "  --no-special       do not add BOS/post-processor tokens (add_special_tokens=false)\n"
                   "  --literal-special  encode special-token text as plain text\n"
                   "  --bench N          encode each line N times; print timing JSON instead of ids\n");
        break;
    case MODE_DETOKENIZE:
        fprintf(f, "  input lines {\"ids\": [...]}, output lines {\"text\": \"...\"}\n"
                   "  --skip-special     drop special tokens from the text\n");
        break;
    case MODE_TEMPLATE:
        fprintf(f, "  input lines {\"messages\": [...], \"add_generation_prompt\": bool,\n"
                   "               \"kwargs\": {...}, \"tools\": [...]} (kwargs, tools optional)\n"
                   "  output lines {\"prompt\": \"...\"}\n");
        break;
    }
}

static int parse_args(int argc, char **argv, enum mode m, struct opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, m);
            return 0;
        }
        if (!strcmp(a, "--tokenizer") && i + 1 < argc) o->tokenizer = argv[++i];
        else if (!strncmp(a, "--tokenizer=", 12)) o->tokenizer = a + 12;
        else if (!strcmp(a, "--jsonl")) o->jsonl = true;
        else if (m == MODE_TOKENIZE && !strcmp(a, "--no-special")) o->no_special = true;
        else if (m == MODE_TOKENIZE && !strcmp(a, "--literal-special")) o->literal_special = true;
        else if (m == MODE_TOKENIZE && !strcmp(a, "--bench") && i + 1 < argc &&
                 (o->bench_iters = strtol(argv[++i], NULL, 10)) > 0) {
        }
        else if (m == MODE_DETOKENIZE && !strcmp(a, "--skip-special")) o->skip_special = true;
        else {
            fprintf(stderr, "lfmd: unknown or incomplete option '%s'\n", a);
            usage(stderr, m);
            return 2;
        }
    }
    if (!o->tokenizer || !o->jsonl) {
        fprintf(stderr, "lfmd: %s is required\n", !o->tokenizer ? "--tokenizer" : "--jsonl");
        usage(stderr, m);
        return 2;
    }
    return -1; // proceed
}

// Handles one input line; appends the output line (without newline) to out.
static int one_line(const struct tokenizer *t, enum mode m, const struct opts *o, const char *line,
                    size_t len, struct buf *out, struct lfmd_err_ctx *err) {
    struct json_doc *doc;
    int rc = json_parse(line, len, LFMD_MEM_REQUEST, &doc, err);
    if (rc) return rc;
    const struct json *root = json_root(doc);
    if (!json_is(root, JSON_OBJECT)) {
        json_doc_free(doc);
        return lfmd_err_set(err, LFMD_EINVAL, "input line is not a JSON object");
    }
    if (m == MODE_TOKENIZE) {
        const struct json *tx = json_get(root, "text");
        if (!json_is(tx, JSON_STRING)) {
            rc = lfmd_err_set(err, LFMD_EINVAL, "missing string field \"text\"");
        } else {
            int32_t *ids;
            size_t n;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (long k = 1; !rc && k < o->bench_iters; k++) { // warm-up + timed repeats
                rc = tokenizer_encode(t, tx->u.str, tx->len, !o->no_special, !o->literal_special,
                                      &ids, &n, err);
                if (!rc) lfmd_free(ids);
            }
            if (!rc)
                rc = tokenizer_encode(t, tx->u.str, tx->len, !o->no_special, !o->literal_special,
                                      &ids, &n, err);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (!rc && o->bench_iters) {
                double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
                double mb = (double)tx->len * (double)o->bench_iters / 1e6;
                rc = buf_printf(out, "{\"bytes\": %u, \"tokens\": %zu, \"iters\": %ld, "
                                     "\"seconds\": %.4f, \"mb_per_s\": %.2f}",
                                tx->len, n, o->bench_iters, s, mb / s);
                lfmd_free(ids);
            } else if (!rc) {
                rc = buf_puts(out, "{\"ids\": [");
                for (size_t i = 0; !rc && i < n; i++) rc = buf_printf(out, i ? ", %d" : "%d", ids[i]);
                if (!rc) rc = buf_puts(out, "]}");
                lfmd_free(ids);
            }
        }
    } else if (m == MODE_DETOKENIZE) {
        const struct json *ids = json_get(root, "ids");
        int32_t *v = NULL;
        if (!json_is(ids, JSON_ARRAY)) {
            rc = lfmd_err_set(err, LFMD_EINVAL, "missing array field \"ids\"");
        } else if (ids->len && !(v = lfmd_malloc(ids->len * sizeof *v, LFMD_MEM_REQUEST))) {
            rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        }
        for (size_t i = 0; !rc && json_is(ids, JSON_ARRAY) && i < ids->len; i++) {
            int64_t x;
            if (json_int(&ids->u.items[i], 0, tokenizer_n_vocab(t) - 1, &x))
                rc = lfmd_err_set(err, LFMD_EINVAL, "ids[%zu] is not an integer in 0..%d", i,
                                  tokenizer_n_vocab(t) - 1);
            else v[i] = (int32_t)x;
        }
        if (!rc) {
            char *text;
            size_t tl;
            rc = tokenizer_decode(t, v, ids->len, o->skip_special, &text, &tl, err);
            if (!rc) {
                rc = buf_puts(out, "{\"text\": ");
                if (!rc) rc = buf_json_str(out, text, tl);
                if (!rc) rc = buf_putc(out, '}');
                lfmd_free(text);
            }
        }
        lfmd_free(v);
    } else {
        const struct json *msgs = json_get(root, "messages");
        const struct json *agp = json_get(root, "add_generation_prompt");
        const struct json *kw = json_get(root, "kwargs");
        const struct json *tools = json_get(root, "tools");
        if (!json_is(msgs, JSON_ARRAY)) rc = lfmd_err_set(err, LFMD_EINVAL, "missing array field \"messages\"");
        else if (agp && !json_is_bool(agp))
            rc = lfmd_err_set(err, LFMD_EINVAL, "\"add_generation_prompt\" must be a boolean");
        else if (kw && !json_is(kw, JSON_OBJECT) && !json_is(kw, JSON_NULL))
            rc = lfmd_err_set(err, LFMD_EINVAL, "\"kwargs\" must be an object");
        else if (tools && !json_is(tools, JSON_ARRAY) && !json_is(tools, JSON_NULL))
            rc = lfmd_err_set(err, LFMD_EINVAL, "\"tools\" must be an array");
        // kwargs may carry tools too (transformers passes them as a template variable).
        if (!rc && !tools && kw) tools = json_get(kw, "tools");
        char *prompt = NULL;
        if (!rc) rc = tokenizer_apply_template(t, msgs, json_bool(agp, false), kw, tools, &prompt, err);
        if (!rc) {
            rc = buf_puts(out, "{\"prompt\": ");
            if (!rc) rc = buf_json_str(out, prompt, strlen(prompt));
            if (!rc) rc = buf_putc(out, '}');
        }
        lfmd_free(prompt);
    }
    json_doc_free(doc);
    if (rc && !err->code) lfmd_err_set(err, rc, "%s", lfmd_strerror(rc));
    return rc;
}

static int run(int argc, char **argv, enum mode m) {
    struct opts o;
    int rc = parse_args(argc, argv, m, &o);
    if (rc >= 0) return rc;
    struct tokenizer *t;
    struct lfmd_err_ctx err = {0};
    if (tokenizer_load(o.tokenizer, &t, &err)) {
        fprintf(stderr, "lfmd: %s\n", err.msg);
        return 1;
    }
    if (m == MODE_TEMPLATE && tokenizer_template_error(t)) {
        fprintf(stderr, "lfmd: %s\n", tokenizer_template_error(t));
        tokenizer_free(t);
        return 1;
    }
    size_t cap = 1 << 16;
    char *line = lfmd_malloc(cap, LFMD_MEM_REQUEST);
    struct buf out;
    buf_init(&out, (size_t)LFMD_MAX_LINE_BYTES * 8, LFMD_MEM_REQUEST);
    long lineno = 0;
    int status = 0;
    for (;;) {
        // Read one line of any length up to the limit.
        size_t len = 0;
        int ch = 0;
        while ((ch = getchar()) != EOF && ch != '\n') {
            if (len + 1 >= cap) {
                if (cap >= LFMD_MAX_LINE_BYTES) {
                    fprintf(stderr, "lfmd: line %ld: longer than %u bytes\n", lineno + 1,
                            LFMD_MAX_LINE_BYTES);
                    status = 1;
                    goto done;
                }
                cap *= 2;
                char *nl = lfmd_realloc(line, cap);
                if (!nl) {
                    status = 1;
                    goto done;
                }
                line = nl;
            }
            line[len++] = (char)ch;
        }
        if (ch == EOF && len == 0) break;
        lineno++;
        if (len && line[len - 1] == '\r') len--;
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++) blank = line[i] == ' ' || line[i] == '\t';
        if (blank) {
            if (ch == EOF) break;
            continue;
        }
        buf_reset(&out);
        lfmd_err_clear(&err);
        if (one_line(t, m, &o, line, len, &out, &err)) {
            fflush(stdout);
            fprintf(stderr, "lfmd: line %ld: %s\n", lineno, err.msg);
            status = 1;
            break;
        }
        fwrite(out.data, 1, out.len, stdout);
        putchar('\n');
        if (ch == EOF) break;
    }
done:
    if (fflush(stdout) != 0) status = 1;
    lfmd_free(line);
    buf_fini(&out);
    tokenizer_free(t);
    return status;
}

int cmd_tokenize(int argc, char **argv) { return run(argc, argv, MODE_TOKENIZE); }
int cmd_detokenize(int argc, char **argv) { return run(argc, argv, MODE_DETOKENIZE); }
int cmd_template(int argc, char **argv) { return run(argc, argv, MODE_TEMPLATE); }
