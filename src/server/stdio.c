// The stdio NDJSON bridge protocol (docs in bridge-protocol.md): INITIALIZED at once (the model
// loads lazily), one compact JSON reply per request line with requestId echoed on every reply,
// replies in completion order, cancel/ping/stats, deadlines, clean exit on EOF or stop flag.
// Threads: the caller's thread reads stdin and reaps finished requests; replies are written by
// the engine thread's callback under out_mu, one whole line per fflush.
// SPDX-License-Identifier: MIT
#include "server.h"

#include "route.h"

#include "engine/constrain.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum task { TASK_COMPLETION, TASK_CLASSIFICATION, TASK_COORDINATION, TASK_ROUTING };

struct job {
    struct job *next;
    struct stdio_ctx *ctx;
    struct engine_req *req;
    char *id;                 // requestId as sent (NULL when absent)
    enum task task;
    struct buf text;
    char **choices;           // categories (classification) or agent names (coordination)
    int n_choices;
    bool scored;              // the choices were scored by the model (confidence = probability)
    double t0;
    bool done;                // reply written; reap
};

struct stdio_ctx {
    struct engine *e;
    FILE *out;
    pthread_mutex_t mu;       // jobs list and output
    struct job *jobs;
    int n_jobs;
    double t_start;
    uint64_t n_replies;
};

static int put_id(struct buf *b, const char *id) {
    int rc = buf_puts(b, ",\"requestId\":");
    if (!rc) rc = id ? buf_json_str(b, id, strlen(id)) : buf_puts(b, "null");
    return rc;
}

// Writes one line (b without newline) to out; caller holds ctx->mu.
static void write_line(struct stdio_ctx *x, struct buf *b) {
    if (buf_putc(b, '\n')) return;
    fwrite(b->data, 1, b->len, x->out);
    fflush(x->out);
    x->n_replies++;
}

static void reply_error(struct stdio_ctx *x, const char *id, const char *msg, double t0) {
    struct buf b;
    buf_init(&b, 8192, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"success\":false,\"error\":");
    if (!rc) rc = buf_json_str(&b, msg, strlen(msg));
    if (!rc) rc = buf_printf(&b, ",\"processingTime\":%d", (int)((engine_now() - t0) * 1000));
    if (!rc) rc = put_id(&b, id);
    if (!rc) rc = buf_putc(&b, '}');
    pthread_mutex_lock(&x->mu);
    if (!rc) write_line(x, &b);
    pthread_mutex_unlock(&x->mu);
    buf_fini(&b);
}

// Case-insensitive search for needle in hay.
static bool contains_ci(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (!m) return false;
    for (size_t i = 0; i + m <= n; i++)
        if (!strncasecmp(hay + i, needle, m)) return true;
    return false;
}

static int model_name(struct stdio_ctx *x, struct buf *b) {
    struct engine_stats st;
    engine_get_stats(x->e, &st);
    const char *name = st.model_name[0] ? st.model_name : st.model_path;
    return buf_json_str(b, name, strlen(name));
}

static void job_on_event(void *user, const struct engine_event *ev) {
    struct job *j = user;
    struct stdio_ctx *x = j->ctx;
    if (ev->kind == ENGINE_EV_TEXT) {
        if (buf_append(&j->text, ev->text, ev->len)) engine_req_cancel(j->req);
        return;
    }
    if (ev->kind != ENGINE_EV_DONE) return;
    if (ev->code) {
        reply_error(x, j->id, ev->msg ? ev->msg : lfmd_strerror(ev->code), j->t0);
        pthread_mutex_lock(&x->mu);
        j->done = true;
        pthread_mutex_unlock(&x->mu);
        return;
    }
    const char *text = j->text.data ? j->text.data : "";
    size_t len = j->text.len;
    struct buf b;
    buf_init(&b, LFMD_MAX_LINE_BYTES, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"success\":true,");
    if (j->scored && ev->n_scores == j->n_choices && j->n_choices > 0) {
        // Scored: the label is the model's most probable choice, confidence its probability.
        double mx = -INFINITY, sum = 0;
        int best = 0;
        for (int i = 0; i < ev->n_scores; i++)
            if (ev->scores[i] > mx) mx = ev->scores[i], best = i;
        for (int i = 0; i < ev->n_scores; i++) sum += exp(ev->scores[i] - mx);
        double conf = 1.0 / sum;
        const char *name = j->choices[best];
        size_t nl = strlen(name);
        if (j->task == TASK_ROUTING) {
            struct buf t;
            buf_init(&t, 4096, LFMD_MEM_REQUEST);
            int r2 = buf_puts(&t, "{\"service\":");
            if (!r2) r2 = buf_json_str(&t, name, nl);
            if (!r2)
                r2 = buf_printf(&t, ",\"confidence\":%.6g,\"reasoning\":\"highest model "
                                    "probability among %d listed services\",\"tokens\":%d}",
                                conf, j->n_choices, ev->n_prompt);
            if (!r2) r2 = buf_puts(&b, "\"text\":");
            if (!r2) r2 = buf_json_str(&b, t.data, t.len);
            if (!r2) r2 = buf_puts(&b, ",\"service\":");
            if (!r2) r2 = buf_json_str(&b, name, nl);
            buf_fini(&t);
            rc = rc ? rc : r2;
        } else if (j->task == TASK_CLASSIFICATION) {
            if (!rc) rc = buf_puts(&b, "\"category\":");
            if (!rc) rc = buf_json_str(&b, name, nl);
        } else {
            if (!rc) rc = buf_puts(&b, "\"strategy\":");
            if (!rc) rc = buf_json_str(&b, name, nl);
            if (!rc) rc = buf_puts(&b, ",\"suggestedAgent\":");
            if (!rc) rc = buf_json_str(&b, name, nl);
        }
        if (!rc) rc = buf_printf(&b, ",\"confidence\":%.6g", conf);
    } else if (j->task == TASK_COMPLETION || j->task == TASK_ROUTING) {
        if (!rc) rc = buf_puts(&b, "\"text\":");
        if (!rc) rc = buf_json_str(&b, text, len);
    } else {
        // The chosen label: the first listed name the output mentions, else the trimmed text.
        const char *pick = NULL;
        for (int i = 0; i < j->n_choices && !pick; i++)
            if (contains_ci(text, len, j->choices[i])) pick = j->choices[i];
        size_t a = 0, z = len;
        while (a < z && isspace((unsigned char)text[a])) a++;
        while (z > a && isspace((unsigned char)text[z - 1])) z--;
        if (j->task == TASK_CLASSIFICATION) {
            if (!rc) rc = buf_puts(&b, "\"category\":");
            if (!rc) rc = pick ? buf_json_str(&b, pick, strlen(pick))
                               : buf_json_str(&b, text + a, z - a);
        } else {
            if (!rc) rc = buf_puts(&b, "\"strategy\":");
            if (!rc) rc = buf_json_str(&b, text + a, z - a);
            if (!rc && pick) {
                rc = buf_puts(&b, ",\"suggestedAgent\":");
                if (!rc) rc = buf_json_str(&b, pick, strlen(pick));
            }
        }
    }
    if (!rc) rc = buf_puts(&b, ",\"model\":");
    if (!rc) rc = model_name(x, &b);
    if (!rc)
        rc = buf_printf(&b,
                        ",\"processingTime\":%d,\"promptTokens\":%d,\"completionTokens\":%d,"
                        "\"finishReason\":\"%s\"",
                        (int)((engine_now() - j->t0) * 1000), ev->n_prompt, ev->n_gen,
                        engine_finish_name(ev->finish));
    if (!rc) rc = put_id(&b, j->id);
    if (!rc) rc = buf_putc(&b, '}');
    pthread_mutex_lock(&x->mu);
    if (!rc) write_line(x, &b);
    j->done = true;
    pthread_mutex_unlock(&x->mu);
    buf_fini(&b);
    if (rc) reply_error(x, j->id, "reply too large", j->t0);
}

static void job_free(struct job *j) {
    engine_req_release(j->req);
    lfmd_free(j->id);
    buf_fini(&j->text);
    for (int i = 0; i < j->n_choices; i++) lfmd_free(j->choices[i]);
    lfmd_free(j->choices);
    lfmd_free(j);
}

// Frees finished jobs (never from the callback: release waits for the callback to return).
static void reap(struct stdio_ctx *x) {
    pthread_mutex_lock(&x->mu);
    struct job **pp = &x->jobs, *dead = NULL;
    while (*pp) {
        struct job *j = *pp;
        if (j->done) {
            *pp = j->next;
            j->next = dead;
            dead = j;
            x->n_jobs--;
        } else {
            pp = &j->next;
        }
    }
    pthread_mutex_unlock(&x->mu);
    while (dead) {
        struct job *n = dead->next;
        job_free(dead);
        dead = n;
    }
}

static void reply_stats(struct stdio_ctx *x, const char *id, const char *type, double t0) {
    struct engine_stats st;
    engine_get_stats(x->e, &st);
    struct buf b;
    buf_init(&b, 8192, LFMD_MEM_REQUEST);
    int rc = buf_printf(&b, "{\"success\":true,\"type\":\"%s\",\"mode\":\"stdio\",\"state\":\"%s\","
                            "\"model\":",
                        type, engine_state_name(st.state));
    if (!rc) rc = model_name(x, &b);
    if (!rc) rc = buf_puts(&b, ",\"modelFile\":");
    if (!rc) rc = buf_json_str(&b, st.model_path, strlen(st.model_path));
    if (!rc) rc = buf_puts(&b, ",\"quantization\":");
    if (!rc) rc = buf_json_str(&b, st.model_dtype, strlen(st.model_dtype));
    double tps = st.gen_seconds > 0 ? (double)st.gen_tokens / st.gen_seconds : 0;
    if (!rc)
        rc = buf_printf(&b,
                        ",\"rssBytes\":%zu,\"kvBytes\":%zu,\"convStateBytes\":%zu,"
                        "\"budgetBytes\":%zu,\"memoryLimitBytes\":%zu,\"queueDepth\":%d,"
                        "\"active\":%d,\"tokensPerSecond\":%.2f,\"uptime\":%.3f,"
                        "\"requests\":%llu,\"processingTime\":%d",
                        engine_rss_bytes(), st.mem_used[LFMD_MEM_KV], st.mem_used[LFMD_MEM_CONV],
                        st.mem_total, st.mem_limit, st.queue_depth, st.active, tps, st.uptime_s,
                        (unsigned long long)st.requests[ENGINE_OUT_OK],
                        (int)((engine_now() - t0) * 1000));
    if (!rc) rc = put_id(&b, id);
    if (!rc) rc = buf_putc(&b, '}');
    pthread_mutex_lock(&x->mu);
    if (!rc) write_line(x, &b);
    pthread_mutex_unlock(&x->mu);
    buf_fini(&b);
}

// Copies the names of a categories/agents array (strings, or objects with "name"/"id").
static int copy_choices(struct job *j, const struct json *arr) {
    if (!json_is(arr, JSON_ARRAY) || arr->len == 0) return 0;
    size_t n = arr->len > 256 ? 256 : arr->len;
    j->choices = lfmd_calloc(n, sizeof *j->choices, LFMD_MEM_REQUEST);
    if (!j->choices) return LFMD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct json *v = json_at(arr, i);
        const char *s = json_str(v, NULL);
        if (!s) s = json_str(json_get(v, "name"), NULL);
        if (!s) s = json_str(json_get(v, "id"), NULL);
        if (!s) continue;
        if (!(j->choices[j->n_choices] = lfmd_strdup(s, LFMD_MEM_REQUEST))) return LFMD_ENOMEM;
        j->n_choices++;
    }
    return 0;
}

static void handle_obj(struct stdio_ctx *x, const struct json *root, double t0, int depth);

// {"type":"batch","requests":[...]}: every inner request is submitted at once (so they share
// batched steps) and replies on its own line with its own requestId; the batch has no reply of
// its own unless it is malformed.
static void handle_batch(struct stdio_ctx *x, const struct json *root, const char *id, double t0,
                         int depth) {
    const struct json *rs = json_get(root, "requests");
    if (depth > 0 || !json_is(rs, JSON_ARRAY) || rs->len == 0 || rs->len > 1024) {
        reply_error(x, id, depth > 0 ? "batches cannot be nested"
                                     : "'requests' must be an array of 1 to 1024 requests", t0);
        return;
    }
    for (uint32_t i = 0; i < rs->len; i++) handle_obj(x, json_at(rs, i), t0, depth + 1);
}

static void handle_line(struct stdio_ctx *x, const char *line, size_t len) {
    double t0 = engine_now();
    struct json_doc *doc = NULL;
    struct lfmd_err_ctx err = {0};
    if (json_parse(line, len, LFMD_MEM_REQUEST, &doc, &err)) {
        char msg[600];
        snprintf(msg, sizeof msg, "invalid JSON: %s", err.msg);
        reply_error(x, NULL, msg, t0);
        return;
    }
    handle_obj(x, json_root(doc), t0, 0);
    json_doc_free(doc);
}

static void handle_obj(struct stdio_ctx *x, const struct json *root, double t0, int depth) {
    struct lfmd_err_ctx err = {0};
    const struct json *jid = json_get(root, "requestId");
    char idnum[64];
    const char *id = json_str(jid, NULL);
    if (!id && json_is(jid, JSON_NUMBER)) { // echo numeric ids as their text
        snprintf(idnum, sizeof idnum, "%.17g", jid->u.num);
        id = idnum;
    }
    const char *type = json_str(json_get(root, "type"), NULL);
    if (!json_is(root, JSON_OBJECT) || !type) {
        reply_error(x, id, json_is(root, JSON_OBJECT) ? "missing 'type'"
                                                      : "request must be a JSON object",
                    t0);
        goto out;
    }
    if (!strcmp(type, "ping") || !strcmp(type, "stats") || !strcmp(type, "health")) {
        reply_stats(x, id, !strcmp(type, "ping") ? "pong" : "stats", t0);
        goto out;
    }
    if (!strcmp(type, "batch")) {
        handle_batch(x, root, id, t0, depth);
        goto out;
    }
    if (!strcmp(type, "cancel")) {
        bool found = false;
        pthread_mutex_lock(&x->mu);
        for (struct job *j = x->jobs; j; j = j->next) {
            if (!j->done && id && j->id && !strcmp(j->id, id)) {
                engine_req_cancel(j->req);
                found = true;
            }
        }
        pthread_mutex_unlock(&x->mu);
        if (!found) reply_error(x, id, "no such request in flight", t0);
        // When found, the canceled request itself replies (success:false, "request canceled").
        goto out;
    }
    enum task task;
    if (!strcmp(type, "completion") || !strcmp(type, "simple_qa"))
        task = TASK_COMPLETION;
    else if (!strcmp(type, "routing"))
        task = TASK_ROUTING;
    else if (!strcmp(type, "classification"))
        task = TASK_CLASSIFICATION;
    else if (!strcmp(type, "coordination"))
        task = TASK_COORDINATION;
    else {
        char msg[300];
        snprintf(msg, sizeof msg, "Unknown task type: %.200s", type);
        reply_error(x, id, msg, t0);
        goto out;
    }
    const struct json *jp = json_get(root, "prompt");
    const char *prompt = json_str(jp, NULL);
    if (!prompt && task == TASK_CLASSIFICATION) prompt = json_str(json_get(root, "text"), NULL);
    if (!prompt && task == TASK_COORDINATION) prompt = json_str(json_get(root, "task"), NULL);
    if (!prompt) {
        reply_error(x, id, jp ? "'prompt' must be a string" : "'prompt' is required", t0);
        goto out;
    }
    struct engine_params p;
    engine_params_default(&p);
    p.prompt = prompt;
    p.prompt_as_user_turn = true;
    const struct json *jm = json_get(root, "maxTokens");
    int64_t mt = -1;
    if (jm && json_int(jm, 0, LFMD_MAX_TOKENS_PER_REQUEST, &mt)) {
        reply_error(x, id, "'maxTokens' must be an integer from 0 to 65536", t0);
        goto out;
    }
    const struct json *jt = json_get(root, "temperature");
    if (jt) {
        double t = json_num(jt, -1);
        if (!json_is(jt, JSON_NUMBER) || t < 0 || t > 5) {
            reply_error(x, id, "'temperature' must be a number from 0 to 5", t0);
            goto out;
        }
        p.sampling.temperature = (float)t;
    }
    const struct json *jd = json_get(root, "deadlineMs");
    if (jd) {
        double d = json_num(jd, -1);
        if (!json_is(jd, JSON_NUMBER) || d <= 0) {
            reply_error(x, id, "'deadlineMs' must be a positive number", t0);
            goto out;
        }
        p.deadline_ms = d;
    }
    if (json_is(json_get(root, "seed"), JSON_NUMBER))
        p.sampling.seed = (uint64_t)json_num(json_get(root, "seed"), 0);
    else
        p.sampling.seed = (uint64_t)(t0 * 1e9);
    struct job *j = lfmd_calloc(1, sizeof *j, LFMD_MEM_REQUEST);
    if (!j) {
        reply_error(x, id, "out of memory", t0);
        goto out;
    }
    j->ctx = x;
    j->task = task;
    j->t0 = t0;
    buf_init(&j->text, LFMD_MAX_LINE_BYTES / 2, LFMD_MEM_REQUEST);
    if ((id && !(j->id = lfmd_strdup(id, LFMD_MEM_REQUEST))) ||
        copy_choices(j, json_get(root, task == TASK_CLASSIFICATION ? "categories" : "agents"))) {
        reply_error(x, id, "out of memory", t0);
        job_free(j);
        goto out;
    }
    // Routing/classification/coordination over listed names: score the names with the model.
    struct buf sys;
    buf_init(&sys, LFMD_MAX_BODY_BYTES, LFMD_MEM_REQUEST);
    struct engine_chat_msg msgs[2];
    char *store = NULL;
    if (task == TASK_ROUTING) {
        struct route_def rd[ENGINE_MAX_CHOICES];
        int n = route_parse_listed(prompt, rd, ENGINE_MAX_CHOICES, &store);
        if (n >= 2 && (j->choices = lfmd_calloc((size_t)n, sizeof *j->choices,
                                                LFMD_MEM_REQUEST))) {
            for (int i = 0; i < n; i++)
                if ((j->choices[i] = lfmd_strdup(rd[i].name, LFMD_MEM_REQUEST))) j->n_choices++;
            if (j->n_choices == n && !route_system_prompt(rd, n, &sys)) j->scored = true;
        }
    } else if (task != TASK_COMPLETION && j->n_choices >= 2) {
        struct route_def rd[ENGINE_MAX_CHOICES];
        int n = j->n_choices < ENGINE_MAX_CHOICES ? j->n_choices : ENGINE_MAX_CHOICES;
        for (int i = 0; i < n; i++) rd[i] = (struct route_def){j->choices[i], NULL};
        j->n_choices = n;
        if (!route_system_prompt(rd, n, &sys)) j->scored = true;
    }
    if (j->scored) {
        msgs[0] = (struct engine_chat_msg){"system", sys.data};
        msgs[1] = (struct engine_chat_msg){"user", prompt};
        p.msgs = msgs;
        p.n_msgs = 2;
        p.choices = (const char *const *)j->choices;
        p.n_choices = j->n_choices;
        mt = 1;
    }
    if (task == TASK_ROUTING && !j->scored) {
        // No route list to score: the reply text is still JSON, by construction.
        static const char schema[] =
            "{\"type\":\"object\",\"properties\":{\"service\":{\"type\":\"string\","
            "\"maxLength\":64},\"reasoning\":{\"type\":\"string\",\"maxLength\":200}},"
            "\"required\":[\"service\",\"reasoning\"]}";
        struct json_doc *sd = NULL;
        if (json_parse(schema, sizeof schema - 1, LFMD_MEM_REQUEST, &sd, &err) == 0 &&
            constraint_json(json_root(sd), &p.constraint, &err) == 0 && mt < 64)
            mt = mt < 0 ? 256 : 64; // room for the smallest complete object
        json_doc_free(sd);
    }
    if (mt == 0) { // maxTokens 0: nothing to generate, honoured literally
        constraint_free(p.constraint);
        struct engine_event ev = {.kind = ENGINE_EV_DONE, .finish = ENGINE_FINISH_LENGTH};
        job_on_event(j, &ev);
        job_free(j);
        buf_fini(&sys);
        lfmd_free(store);
        goto out;
    }
    p.max_tokens = (int)mt;
    pthread_mutex_lock(&x->mu);
    j->next = x->jobs;
    x->jobs = j;
    x->n_jobs++;
    int rc = engine_submit(x->e, &p, job_on_event, j, &j->req, &err);
    if (rc) constraint_free(p.constraint); // owned by the engine only after success
    if (rc) j->done = true;
    pthread_mutex_unlock(&x->mu);
    if (rc) reply_error(x, id, err.msg, t0);
    buf_fini(&sys);
    lfmd_free(store);
out:;
}

int stdio_serve(struct engine *e, int in_fd, FILE *out, volatile sig_atomic_t *stop,
                volatile sig_atomic_t *trim, double drain_timeout_s) {
    struct stdio_ctx x = {.e = e, .out = out, .t_start = engine_now()};
    pthread_mutex_init(&x.mu, NULL);
    pthread_mutex_lock(&x.mu);
    fputs("INITIALIZED\n", out);
    fflush(out);
    pthread_mutex_unlock(&x.mu);

    struct buf line;
    buf_init(&line, LFMD_MAX_LINE_BYTES, LFMD_MEM_REQUEST);
    bool overflow = false, eof = false;
    char chunk[65536];
    while (!eof && !(stop && *stop)) {
        if (trim && *trim) {
            *trim = 0;
            engine_trim(e);
        }
        reap(&x);
        struct pollfd p = {.fd = in_fd, .events = POLLIN};
        int pr = poll(&p, 1, 100);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t n = read(in_fd, chunk, sizeof chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
            eof = true;
            n = 0;
        }
        size_t start = 0;
        for (size_t i = 0; i <= (size_t)n; i++) {
            bool end_of_data = i == (size_t)n;
            if (!end_of_data && chunk[i] != '\n') continue;
            size_t seg = i - start;
            if (!overflow && buf_append(&line, chunk + start, seg)) overflow = true;
            start = i + 1;
            if (end_of_data && !eof) break; // partial line: wait for more
            if (overflow) {
                reply_error(&x, NULL, "request line longer than 8 MiB", engine_now());
            } else {
                // Trim a CR and skip blank lines.
                size_t len = line.len;
                while (len && (line.data[len - 1] == '\r' || line.data[len - 1] == ' ')) len--;
                if (len) handle_line(&x, line.data, len);
            }
            buf_reset(&line);
            overflow = false;
            if (end_of_data) break;
        }
    }
    buf_fini(&line);
    // Drain: in-flight requests get their replies until the timeout, then are canceled.
    double until = engine_now() + drain_timeout_s;
    for (;;) {
        reap(&x);
        pthread_mutex_lock(&x.mu);
        int left = x.n_jobs;
        pthread_mutex_unlock(&x.mu);
        if (!left) break;
        if (engine_now() > until) {
            pthread_mutex_lock(&x.mu);
            for (struct job *j = x.jobs; j; j = j->next) engine_req_cancel(j->req);
            pthread_mutex_unlock(&x.mu);
            until = engine_now() + 5;
        }
        usleep(5000);
    }
    pthread_mutex_destroy(&x.mu);
    return 0;
}
