// lfmd route: scores routes for a text with the same code as POST /v1/route (src/server/route.c)
// and prints the chosen route and every route's probability (JSON with --json). --jsonl FILE
// routes every {"text", "route"?} line as one batch and reports the accuracy on labelled lines.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "format/json.h"
#include "server/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    fprintf(stderr,
            "usage: lfmd route [-m MODEL] [--routes FILE] [--system TEXT] [--json] TEXT\n"
            "       lfmd route [-m MODEL] [--routes FILE] --jsonl FILE\n\n"
            "  -m, --model PATH   model (default: $LFMD_MODEL, else the embedded router)\n"
            "  --routes FILE      JSON array of {\"name\",\"description\"} or \"name: description\" "
            "lines\n"
            "                     (default: code, math, creative, analysis, chat)\n"
            "  --json             print {\"route\",\"confidence\",\"scores\",\"usage\"}\n"
            "  --jsonl FILE       route each line's \"text\"; with \"route\" labels print the "
            "accuracy\n"
            "  --threads N        compute threads\n");
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct buf b;
    buf_init(&b, 64u << 20, LFMD_MEM_REQUEST);
    char tmp[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(tmp, 1, sizeof tmp, f)) > 0) rc = buf_append(&b, tmp, n);
    fclose(f);
    if (rc) {
        buf_fini(&b);
        return NULL;
    }
    char *s = buf_take(&b, len);
    return s ? s : lfmd_strdup("", LFMD_MEM_REQUEST);
}

static int print_result(const struct route_def *routes, int n, const struct route_result *r,
                        bool json) {
    struct buf b;
    buf_init(&b, 1u << 20, LFMD_MEM_REQUEST);
    int rc = 0;
    if (json) {
        rc = buf_puts(&b, "{\"route\":");
        if (!rc) rc = buf_json_str(&b, routes[r->best].name, strlen(routes[r->best].name));
        if (!rc) rc = buf_printf(&b, ",\"confidence\":%.6g,\"scores\":{", r->prob[r->best]);
        for (int i = 0; i < n && !rc; i++) {
            if (i) rc = buf_putc(&b, ',');
            if (!rc) rc = buf_json_str(&b, routes[i].name, strlen(routes[i].name));
            if (!rc) rc = buf_printf(&b, ":%.6g", r->prob[i]);
        }
        if (!rc)
            rc = buf_printf(&b, "},\"usage\":{\"prompt_tokens\":%d,\"cached_tokens\":%d}}\n",
                            r->n_prompt, r->n_cached);
    } else {
        rc = buf_printf(&b, "%s\n", routes[r->best].name);
        for (int i = 0; i < n && !rc; i++)
            rc = buf_printf(&b, "  %-16s %.4f\n", routes[i].name, r->prob[i]);
    }
    if (!rc) fwrite(b.data, 1, b.len, stdout);
    buf_fini(&b);
    return rc;
}

int cmd_route(int argc, char **argv) {
    const char *model_arg = NULL, *routes_path = NULL, *jsonl = NULL, *text = NULL,
               *system = NULL;
    bool json = false, missing = false;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = app_opt(argc, argv, &i, "-m", &missing)) ||
            (v = app_opt(argc, argv, &i, "--model", &missing)))
            model_arg = v;
        else if ((v = app_opt(argc, argv, &i, "--routes", &missing))) routes_path = v;
        else if ((v = app_opt(argc, argv, &i, "--jsonl", &missing))) jsonl = v;
        else if ((v = app_opt(argc, argv, &i, "--system", &missing))) system = v;
        else if ((v = app_opt(argc, argv, &i, "--threads", &missing))) threads = atoi(v);
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "lfmd route: unknown option %s\n", argv[i]);
            return 2;
        } else if (!text) text = argv[i];
        else {
            fprintf(stderr, "lfmd route: give the text as one argument (quote it)\n");
            return 2;
        }
        if (missing) {
            fprintf(stderr, "lfmd route: %s needs a value\n", argv[i]);
            return 2;
        }
    }
    if (!text == !jsonl) {
        usage();
        return 2;
    }
    const char *path = app_model_path(model_arg);
    if (!path) return 1;
    int status = 1;
    struct route_def routes[ENGINE_MAX_CHOICES];
    int n_routes = 5;
    memcpy(routes, route_defaults, sizeof route_defaults);
    char *rtext = NULL, *store = NULL, *lines = NULL;
    struct json_doc *rdoc = NULL;
    const char **inputs = NULL, **labels = NULL;
    struct route_result *res = NULL;
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    static struct json_doc *docs[4096];
    int n_docs = 0;
    if (routes_path) {
        size_t len = 0;
        if (!(rtext = slurp(routes_path, &len))) {
            fprintf(stderr, "lfmd route: cannot read %s\n", routes_path);
            goto out;
        }
        if (!json_parse(rtext, len, LFMD_MEM_REQUEST, &rdoc, &err) &&
            json_is(json_root(rdoc), JSON_ARRAY)) {
            const struct json *a = json_root(rdoc);
            n_routes = 0;
            for (size_t i = 0; i < a->len && n_routes < ENGINE_MAX_CHOICES; i++) {
                const struct json *r = json_at(a, i);
                const char *name = json_is(r, JSON_STRING) ? r->u.str
                                                           : json_str(json_get(r, "name"), NULL);
                if (name && *name)
                    routes[n_routes++] = (struct route_def){
                        name, json_str(json_get(r, "description"), NULL)};
            }
        } else {
            n_routes = route_parse_listed(rtext, routes, ENGINE_MAX_CHOICES, &store);
        }
        if (n_routes < 1) {
            fprintf(stderr, "lfmd route: no routes in %s\n", routes_path);
            goto out;
        }
    }
    int n_inputs = 1;
    inputs = lfmd_calloc(100000, sizeof *inputs, LFMD_MEM_REQUEST);
    labels = lfmd_calloc(100000, sizeof *labels, LFMD_MEM_REQUEST);
    if (!inputs || !labels) goto out;
    inputs[0] = text;
    if (jsonl) {
        size_t len = 0;
        if (!(lines = slurp(jsonl, &len))) {
            fprintf(stderr, "lfmd route: cannot read %s\n", jsonl);
            goto out;
        }
        n_inputs = 0;
        for (char *p = lines; *p && n_docs < 4096;) {
            char *eol = strchr(p, '\n');
            size_t n = eol ? (size_t)(eol - p) : strlen(p);
            if (n > 1 && !json_parse(p, n, LFMD_MEM_REQUEST, &docs[n_docs], &err)) {
                const struct json *o = json_root(docs[n_docs]);
                const char *t = json_str(json_get(o, "text"), NULL);
                if (!t) t = json_str(json_get(o, "input"), NULL);
                if (t) {
                    labels[n_inputs] = json_str(json_get(o, "route"), NULL);
                    inputs[n_inputs++] = t;
                }
                n_docs++;
            }
            if (!eol) break;
            p = eol + 1;
        }
    }
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = path;
    o.ops = engine_ops_for_path(path);
    o.n_ctx = 2048;
    o.parallel = 16;
    o.n_threads = threads > 0 ? threads : app_threads_default();
    o.preload = true;
    o.max_queue = LFMD_MAX_QUEUE;
    o.idle_trim_s = o.idle_unload_s = 0;
    if (engine_start(&o, &e, &err)) {
        fprintf(stderr, "lfmd route: ERROR: %s\n", err.msg);
        goto out;
    }
    res = lfmd_calloc((size_t)n_inputs, sizeof *res, LFMD_MEM_REQUEST);
    if (!res) goto out;
    int correct = 0, labelled = 0;
    // Batches of at most the queue size (each batch runs concurrently).
    for (int b0 = 0; b0 < n_inputs; b0 += ROUTE_MAX_INPUTS) {
        int nb = n_inputs - b0 < ROUTE_MAX_INPUTS ? n_inputs - b0 : ROUTE_MAX_INPUTS;
        if (route_run(e, system, routes, n_routes, inputs + b0, nb, NULL, 0, res + b0, &err)) {
            fprintf(stderr, "lfmd route: ERROR: %s\n", err.msg);
            goto out;
        }
    }
    for (int i = 0; i < n_inputs; i++) {
        if (res[i].code) {
            fprintf(stderr, "lfmd route: ERROR: %s\n", res[i].msg);
            goto out;
        }
        if (print_result(routes, n_routes, &res[i], json || jsonl)) goto out;
        if (labels[i]) {
            labelled++;
            correct += !strcmp(labels[i], routes[res[i].best].name);
        }
    }
    if (labelled)
        fprintf(stderr, "accuracy %d/%d = %.4f\n", correct, labelled,
                (double)correct / labelled);
    status = 0;
out:
    engine_stop(e, 5);
    for (int i = 0; i < n_docs; i++) json_doc_free(docs[i]);
    lfmd_free(res);
    lfmd_free(inputs);
    lfmd_free(labels);
    lfmd_free(lines);
    lfmd_free(store);
    json_doc_free(rdoc);
    lfmd_free(rtext);
    return status;
}
