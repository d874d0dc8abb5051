// Routing (see route.h): builds the routing chat (system lists the routes, user = input), asks
// the engine to score each route name followed by the end-of-turn token after it (one prefill per
// input, shared by all candidates; the system prefix comes from the prefix cache after the first
// call), and turns the summed log-probs into probabilities with a softmax over the candidates.
// SPDX-License-Identifier: MIT
#include "route.h"

#include "format/json.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const struct route_def route_defaults[5] = {
    {"code", "writing, reading or debugging programs"},
    {"math", "calculation, equations, units, statistics"},
    {"creative", "stories, poems, slogans, jokes"},
    {"analysis", "research, comparisons, summarising documents, planning"},
    {"chat", "greetings, small talk, short everyday questions"},
};

int route_system_prompt(const struct route_def *routes, int n, struct buf *out) {
    int rc = buf_puts(out, "Classify the request into one of these routes:\n");
    for (int i = 0; i < n && !rc; i++) {
        rc = buf_puts(out, routes[i].name);
        if (!rc && routes[i].desc && *routes[i].desc) rc = buf_printf(out, ": %s", routes[i].desc);
        if (!rc) rc = buf_putc(out, '\n');
    }
    if (!rc) rc = buf_puts(out, "Answer with the route name only.");
    return rc;
}

struct waiter {
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *left;
    struct route_result *res;
    int n_routes;
};

static void on_event(void *user, const struct engine_event *ev) {
    struct waiter *w = user;
    if (ev->kind != ENGINE_EV_DONE) return;
    struct route_result *r = w->res;
    r->code = ev->code;
    r->n_prompt = ev->n_prompt;
    r->n_cached = ev->n_cached;
    if (ev->code) {
        snprintf(r->msg, sizeof r->msg, "%s", ev->msg ? ev->msg : lfmd_strerror(ev->code));
    } else if (ev->n_scores != w->n_routes) {
        r->code = LFMD_EIO;
        snprintf(r->msg, sizeof r->msg, "the engine returned no scores");
    } else {
        double mx = -INFINITY, sum = 0;
        r->best = 0;
        for (int i = 0; i < ev->n_scores; i++) {
            r->logp[i] = ev->scores[i];
            if (ev->scores[i] > mx) {
                mx = ev->scores[i];
                r->best = i;
            }
        }
        for (int i = 0; i < ev->n_scores; i++) sum += exp(ev->scores[i] - mx);
        for (int i = 0; i < ev->n_scores; i++) r->prob[i] = exp(ev->scores[i] - mx) / sum;
    }
    pthread_mutex_lock(w->mu);
    (*w->left)--;
    pthread_cond_broadcast(w->cv);
    pthread_mutex_unlock(w->mu);
}

int route_run(struct engine *e, const char *system, const struct route_def *routes, int n_routes,
              const char *const *inputs, int n_inputs, const char *context, double deadline_ms,
              struct route_result *res, struct lfmd_err_ctx *err) {
    if (n_routes < 1 || n_routes > ENGINE_MAX_CHOICES)
        return lfmd_err_set(err, LFMD_EINVAL, "need 1 to %d routes", ENGINE_MAX_CHOICES);
    if (n_inputs < 1 || n_inputs > ROUTE_MAX_INPUTS)
        return lfmd_err_set(err, LFMD_EINVAL, "need 1 to %d inputs", ROUTE_MAX_INPUTS);
    struct buf sys, user;
    buf_init(&sys, LFMD_MAX_BODY_BYTES, LFMD_MEM_REQUEST);
    buf_init(&user, LFMD_MAX_BODY_BYTES, LFMD_MEM_REQUEST);
    int rc = system ? buf_puts(&sys, system) : route_system_prompt(routes, n_routes, &sys);
    const char *names[ENGINE_MAX_CHOICES];
    for (int i = 0; i < n_routes; i++) names[i] = routes[i].name;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int left = 0;
    struct waiter *ws = lfmd_calloc((size_t)n_inputs, sizeof *ws, LFMD_MEM_REQUEST);
    struct engine_req **reqs = lfmd_calloc((size_t)n_inputs, sizeof *reqs, LFMD_MEM_REQUEST);
    if (rc || !ws || !reqs) {
        rc = lfmd_err_set(err, LFMD_EBUDGET, "no memory for the routing request");
        goto out;
    }
    for (int i = 0; i < n_inputs; i++) {
        memset(&res[i], 0, sizeof res[i]);
        buf_reset(&user);
        rc = buf_puts(&user, inputs[i]);
        if (!rc && context && *context) rc = buf_printf(&user, "\n\nContext:\n%s", context);
        if (rc) {
            rc = lfmd_err_set(err, LFMD_ETOOBIG, "input %d too large", i);
            break;
        }
        struct engine_chat_msg msgs[2] = {{"system", sys.data}, {"user", user.data ? user.data : ""}};
        struct engine_params p;
        engine_params_default(&p);
        p.msgs = msgs;
        p.n_msgs = 2;
        p.choices = names;
        p.n_choices = n_routes;
        p.deadline_ms = deadline_ms;
        ws[i] = (struct waiter){&mu, &cv, &left, &res[i], n_routes};
        pthread_mutex_lock(&mu);
        left++;
        pthread_mutex_unlock(&mu);
        rc = engine_submit(e, &p, on_event, &ws[i], &reqs[i], err);
        if (rc) {
            pthread_mutex_lock(&mu);
            left--;
            pthread_mutex_unlock(&mu);
            break;
        }
    }
    pthread_mutex_lock(&mu);
    while (left > 0) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n_inputs; i++) engine_req_release(reqs[i]);
out:
    lfmd_free(ws);
    lfmd_free(reqs);
    buf_fini(&sys);
    buf_fini(&user);
    return rc;
}

static int bad(struct lfmd_err_ctx *err, const char **param, const char *field, const char *what) {
    *param = field;
    return lfmd_err_set(err, LFMD_EINVAL, "'%s' %s", field, what);
}

static int result_json(struct buf *b, const struct route_def *routes, int n,
                       const struct route_result *r) {
    const char *best = routes[r->best].name;
    int rc = buf_puts(b, "{\"route\":");
    if (!rc) rc = buf_json_str(b, best, strlen(best));
    if (!rc) rc = buf_printf(b, ",\"confidence\":%.6g,\"scores\":{", r->prob[r->best]);
    for (int i = 0; i < n && !rc; i++) {
        if (i) rc = buf_putc(b, ',');
        if (!rc) rc = buf_json_str(b, routes[i].name, strlen(routes[i].name));
        if (!rc) rc = buf_printf(b, ":%.6g", r->prob[i]);
    }
    if (!rc)
        rc = buf_printf(b, "},\"usage\":{\"prompt_tokens\":%d,\"cached_tokens\":%d,"
                           "\"completion_tokens\":0,\"total_tokens\":%d}}",
                        r->n_prompt, r->n_cached, r->n_prompt);
    return rc;
}

int route_http(struct engine *e, const char *body, size_t len, struct buf *out, const char **param,
               struct lfmd_err_ctx *err) {
    *param = NULL;
    struct json_doc *doc = NULL;
    struct lfmd_err_ctx jerr = {0};
    int rc = json_parse(body, len, LFMD_MEM_REQUEST, &doc, &jerr);
    if (rc == LFMD_ENOMEM) return lfmd_err_set(err, LFMD_EBUDGET, "no memory to parse the body");
    if (rc) return lfmd_err_set(err, LFMD_EINVAL, "request body is not valid JSON: %s", jerr.msg);
    const struct json *root = json_root(doc);
    struct route_def routes[ENGINE_MAX_CHOICES];
    int n_routes = 0;
    const char *inputs[ROUTE_MAX_INPUTS];
    int n_inputs = 0;
    bool batch = false;
    struct route_result *res = NULL;
    const struct json *j;
    const char *system = NULL, *context = NULL;
    if (!json_is(root, JSON_OBJECT)) {
        rc = lfmd_err_set(err, LFMD_EINVAL, "request body must be a JSON object");
        goto out;
    }
    if ((j = json_get(root, "routes")) && !json_is(j, JSON_NULL)) {
        if (!json_is(j, JSON_ARRAY) || j->len < 1 || j->len > ENGINE_MAX_CHOICES) {
            rc = bad(err, param, "routes", "must be an array of 1 to 64 routes");
            goto out;
        }
        for (size_t i = 0; i < j->len; i++) {
            const struct json *r = json_at(j, i);
            const char *name = json_is(r, JSON_STRING) ? r->u.str : json_str(json_get(r, "name"), NULL);
            const char *desc = json_str(json_get(r, "description"), NULL);
            if (!name || !*name || strlen(name) > 256) {
                rc = bad(err, param, "routes", "entries need a non-empty \"name\" string");
                goto out;
            }
            for (int k = 0; k < n_routes; k++)
                if (!strcmp(routes[k].name, name)) {
                    rc = bad(err, param, "routes", "has a duplicate name");
                    goto out;
                }
            routes[n_routes++] = (struct route_def){name, desc};
        }
    } else {
        n_routes = 5;
        memcpy(routes, route_defaults, sizeof route_defaults);
    }
    if ((j = json_get(root, "system")) && !json_is(j, JSON_NULL)) {
        if (!json_is(j, JSON_STRING)) {
            rc = bad(err, param, "system", "must be a string");
            goto out;
        }
        system = j->u.str;
    }
    if ((j = json_get(root, "context")) && !json_is(j, JSON_NULL)) {
        if (!json_is(j, JSON_STRING)) {
            rc = bad(err, param, "context", "must be a string");
            goto out;
        }
        context = j->u.str;
    }
    if ((j = json_get(root, "inputs")) && !json_is(j, JSON_NULL)) {
        batch = true;
        if (!json_is(j, JSON_ARRAY) || j->len < 1 || j->len > ROUTE_MAX_INPUTS) {
            rc = bad(err, param, "inputs", "must be an array of 1 to 256 strings");
            goto out;
        }
        for (size_t i = 0; i < j->len; i++) {
            const char *s = json_str(json_at(j, i), NULL);
            if (!s) {
                rc = bad(err, param, "inputs", "must contain only strings");
                goto out;
            }
            inputs[n_inputs++] = s;
        }
    } else {
        j = json_get(root, "input");
        if (!json_is(j, JSON_STRING)) {
            rc = bad(err, param, "input", j ? "must be a string" : "is required");
            goto out;
        }
        inputs[n_inputs++] = j->u.str;
    }
    res = lfmd_calloc((size_t)n_inputs, sizeof *res, LFMD_MEM_REQUEST);
    if (!res) {
        rc = lfmd_err_set(err, LFMD_EBUDGET, "no memory for the results");
        goto out;
    }
    rc = route_run(e, system, routes, n_routes, inputs, n_inputs, context, 0, res, err);
    if (rc) goto out;
    for (int i = 0; i < n_inputs; i++)
        if (res[i].code) {
            rc = lfmd_err_set(err, res[i].code, "%s", res[i].msg);
            goto out;
        }
    if (batch) {
        int total = 0;
        rc = buf_puts(out, "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < n_inputs && !rc; i++) {
            if (i) rc = buf_putc(out, ',');
            if (!rc) rc = result_json(out, routes, n_routes, &res[i]);
            total += res[i].n_prompt;
        }
        if (!rc)
            rc = buf_printf(out, "],\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", total,
                            total);
    } else {
        rc = result_json(out, routes, n_routes, &res[0]);
    }
    if (rc) rc = lfmd_err_set(err, LFMD_ETOOBIG, "response too large");
out:
    lfmd_free(res);
    json_doc_free(doc);
    return rc;
}

int route_parse_listed(const char *prompt, struct route_def *routes, int max, char **store) {
    *store = lfmd_strdup(prompt, LFMD_MEM_REQUEST);
    if (!*store) return 0;
    static const char *const stop[] = {"task", "request", "input", "context", "question",
                                       "answer", "text", "user", "query", "output", "format",
                                       "note", "example", "response", "system", "assistant"};
    int n = 0, n_bullet = 0;
    bool bulleted[64] = {0};
    char *p = *store;
    while (*p && n < max && n < 64) {
        char *eol = strchr(p, '\n');
        if (eol) *eol = 0;
        bool bullet = false;
        for (char *q = p; *q == ' ' || *q == '\t' || *q == '-' || *q == '*' ||
                          isdigit((unsigned char)*q) || *q == '.' || *q == ')'; q++)
            bullet = bullet || (*q != ' ' && *q != '\t');
        char *s = p;
        while (*s == ' ' || *s == '\t' || *s == '-' || *s == '*' || isdigit((unsigned char)*s) ||
               *s == '.' || *s == ')')
            s++;
        if (*s == '"' || *s == '`') s++;
        char *name = s;
        while (isalnum((unsigned char)*s) || *s == '_' || *s == '-') s++;
        char *name_end = s;
        if (*s == '"' || *s == '`') s++;
        if (name_end > name && name_end - name <= 64 && *s == ':' && s[1] == ' ' && s[2]) {
            *name_end = 0;
            char *desc = s + 2;
            while (*desc == ' ') desc++;
            bool dup = false;
            for (int k = 0; k < n; k++) dup = dup || !strcmp(routes[k].name, name);
            for (size_t k = 0; k < sizeof stop / sizeof stop[0]; k++)
                dup = dup || !strcasecmp(name, stop[k]);
            if (!dup) {
                bulleted[n] = bullet;
                n_bullet += bullet;
                routes[n++] = (struct route_def){name, desc};
            }
        }
        if (!eol) break;
        p = eol + 1;
    }
    if (n_bullet >= 2) { // a bulleted list: keep only its items
        int k = 0;
        for (int i = 0; i < n; i++)
            if (bulleted[i]) routes[k++] = routes[i];
        n = k;
    }
    return n;
}
