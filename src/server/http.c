// HTTP front end on libmicrohttpd (one thread per connection, bounded connections, timeouts and
// per-connection memory from limits.h). Generation requests are validated (openai.c), queued on
// the engine, and answered as JSON or as SSE; a client that hangs up cancels its sequence.
// Ownership: struct conn lives from the first access callback to NOTIFY_COMPLETED; struct oai_gen
// (a gen.h engine request) belongs to the connection, or to the SSE response once it streams.
// SPDX-License-Identifier: MIT
#include "gen.h"
#include "guard.h"
#include "ollama.h"
#include "server.h"

#include "route.h"

#include "engine/constrain.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SSE_KEEPALIVE_S 1.0

struct server {
    struct MHD_Daemon *d;
    struct engine *e;
    struct server_opts o;
    char model_id[128];
    atomic_int active;        // requests between first callback and completion
    atomic_bool draining;     // reject new requests with 503
    atomic_ulong next_id;
    int port;
    struct guard *guard;      // auth, CORS, request ids, connection deadlines (guard.c)
    struct ollama_ctx ollama; // /api/* (ollama.c)
};

// An OpenAI generation: the engine request (gen.h) and the response's shape.
struct oai_gen {
    struct gen g;             // first: gen_new allocates the whole struct
    struct server *srv;
    bool chat, include_usage;
    char id[48];
    long long created;
    size_t lp_text_off;       // completions: text_offset of the next logprob record
    bool want_lp;             // logprobs requested: render them even when empty
};

struct conn {
    struct buf body;
    bool too_big;
    struct gen *gen;          // owned unless handed to an SSE response (an oai_gen)
};

void server_opts_default(struct server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_connections = 256;
    o->conn_timeout_s = LFMD_HTTP_CONN_TIMEOUT_S;
    o->request_timeout_s = LFMD_HTTP_REQUEST_TIMEOUT_S;
    o->keepalive_timeout_s = LFMD_HTTP_KEEPALIVE_TIMEOUT_S;
    o->max_body_bytes = LFMD_MAX_BODY_BYTES;
}

// ---- oai_gen ----

// c: the connection watched for a hang-up (NULL: none).
static struct oai_gen *oai_gen_new(struct server *s, bool chat, struct MHD_Connection *c) {
    struct oai_gen *x = (struct oai_gen *)gen_new(sizeof *x, c);
    if (!x) return NULL;
    x->srv = s;
    x->chat = chat;
    snprintf(x->id, sizeof x->id, "%s-%lu", chat ? "chatcmpl" : "cmpl",
             (unsigned long)atomic_fetch_add(&s->next_id, 1));
    x->created = (long long)time(NULL);
    return x;
}

// ---- responses ----

static enum MHD_Result send_error(struct MHD_Connection *c, int code, const char *msg,
                                  const char *param) {
    struct buf b;
    buf_init(&b, 4096, LFMD_MEM_REQUEST);
    if (oai_error_json(&b, code, msg, param)) {
        buf_reset(&b);
        if (buf_puts(&b, "{\"error\":{\"message\":\"error\",\"type\":\"server_error\"}}"))
            return MHD_NO;
    }
    int status = oai_http_status(code);
    if (status == 499) status = 503;
    enum MHD_Result r = http_send_buf(c, status, &b, "application/json", status == 503 ? 1 : 0);
    buf_fini(&b);
    return r;
}

static int usage_json(struct buf *b, const struct oai_gen *x) {
    return buf_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
                         "\"total_tokens\":%d}",
                      x->g.n_prompt, x->g.n_gen, x->g.n_prompt + x->g.n_gen);
}

static int head_json(struct buf *b, const struct oai_gen *x, const char *object) {
    int rc = buf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", x->id,
                        object, x->created);
    if (!rc) rc = buf_json_str(b, x->srv->model_id, strlen(x->srv->model_id));
    return rc;
}

static const char *finish_str(const struct oai_gen *x) {
    return x->g.finish == ENGINE_FINISH_LENGTH ? "length" : "stop";
}

// Full (non-streaming) response body for a finished request.
static int complete_json(struct buf *b, const struct oai_gen *x, const char *text, size_t len) {
    int rc = head_json(b, x, x->chat ? "chat.completion" : "text_completion");
    if (!rc) rc = buf_puts(b, ",\"choices\":[{\"index\":0,");
    if (!rc && x->chat) rc = buf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
    if (!rc && !x->chat) rc = buf_puts(b, "\"text\":");
    if (!rc) rc = buf_json_str(b, text, len);
    if (!rc && x->chat) rc = buf_putc(b, '}');
    if (!rc) rc = buf_puts(b, ",\"logprobs\":");
    if (!rc) rc = x->want_lp ? oai_logprobs_json(b, x->chat, x->g.lp.data, x->g.lp.len, 0)
                            : buf_puts(b, "null");
    if (!rc) rc = buf_printf(b, ",\"finish_reason\":\"%s\"}],", finish_str(x));
    if (!rc) rc = usage_json(b, x);
    if (!rc) rc = buf_putc(b, '}');
    return rc;
}

// One SSE chunk: text (may be empty) and finish_reason (NULL while streaming). Text consumes the
// logprob records staged for it.
static int sse_chunk(struct buf *b, struct oai_gen *x, const char *text, size_t len,
                     const char *finish, bool role, bool usage) {
    int rc = buf_puts(b, "data: ");
    if (!rc) rc = head_json(b, x, x->chat ? "chat.completion.chunk" : "text_completion");
    if (!rc) rc = buf_puts(b, ",\"choices\":[{\"index\":0,");
    if (!rc && x->chat) {
        rc = buf_puts(b, "\"delta\":{");
        if (!rc && role) rc = buf_puts(b, "\"role\":\"assistant\",");
        if (!rc && (text || role)) {
            rc = buf_puts(b, "\"content\":");
            if (!rc) rc = buf_json_str(b, text ? text : "", len);
        }
        if (!rc) rc = buf_putc(b, '}');
    } else if (!rc) {
        rc = buf_puts(b, "\"text\":");
        if (!rc) rc = buf_json_str(b, text ? text : "", len);
    }
    if (!rc) rc = buf_puts(b, ",\"logprobs\":");
    if (!rc && text && len && x->g.lp.len) {
        rc = oai_logprobs_json(b, x->chat, x->g.lp.data, x->g.lp.len, x->lp_text_off);
        x->lp_text_off += len;
        buf_reset(&x->g.lp);
    } else if (!rc) {
        rc = buf_puts(b, "null");
    }
    if (!rc) rc = buf_puts(b, ",\"finish_reason\":");
    if (!rc) rc = finish ? buf_printf(b, "\"%s\"", finish) : buf_puts(b, "null");
    if (!rc) rc = buf_puts(b, "}]");
    if (!rc && usage) {
        rc = buf_putc(b, ',');
        if (!rc) rc = usage_json(b, x);
    }
    if (!rc) rc = buf_puts(b, "}\n\n");
    return rc;
}

// ---- SSE stream (gen.h hooks; a gen here is always an oai_gen) ----

static int sse_begin(struct gen *g, struct buf *out) {
    struct oai_gen *x = (struct oai_gen *)g;
    return x->chat ? sse_chunk(out, x, "", 0, NULL, true, false) : 0;
}

static int sse_text(struct gen *g, struct buf *out, const char *text, size_t len) {
    return sse_chunk(out, (struct oai_gen *)g, text, len, NULL, false, false);
}

// Keep-alive comment: lets a hung-up client be noticed while nothing is generated.
static int sse_idle(struct gen *g, struct buf *out) {
    (void)g;
    return buf_puts(out, ": keep-alive\n\n");
}

static int sse_end(struct gen *g, struct buf *out) {
    struct oai_gen *x = (struct oai_gen *)g;
    int rc;
    if (g->code) {
        rc = buf_puts(out, "data: ");
        if (!rc) rc = oai_error_json(out, g->code, g->msg, NULL);
        if (!rc) rc = buf_puts(out, "\n\n");
    } else {
        rc = sse_chunk(out, x, x->chat ? NULL : "", 0, finish_str(x), false, true);
        if (!rc && x->include_usage) {
            rc = buf_puts(out, "data: ");
            if (!rc) rc = head_json(out, x, x->chat ? "chat.completion.chunk" : "text_completion");
            if (!rc) rc = buf_puts(out, ",\"choices\":[],");
            if (!rc) rc = usage_json(out, x);
            if (!rc) rc = buf_puts(out, "}\n\n");
        }
    }
    if (!rc) rc = buf_puts(out, "data: [DONE]\n\n");
    return rc;
}

static const struct gen_stream_ops sse_ops = {
    .idle_s = SSE_KEEPALIVE_S, .begin = sse_begin, .text = sse_text, .idle = sse_idle,
    .end = sse_end};

// ---- endpoints ----

// /v1/completions with an array of prompts: all are submitted at once (they run in one batch);
// the response has one choice per prompt in order.
static enum MHD_Result handle_multi(struct server *s, struct MHD_Connection *c,
                                    struct oai_request *rq) {
    int n = rq->n_prompts;
    struct oai_gen *gs[64] = {0};
    struct lfmd_err_ctx err = {0};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        gs[i] = oai_gen_new(s, false, NULL);
        if (!gs[i]) {
            rc = lfmd_err_set(&err, LFMD_EBUDGET, "no memory for the request");
            break;
        }
        gs[i]->want_lp = rq->params.logprobs;
        struct engine_params p = rq->params;
        p.prompt = rq->prompts[i];
        rc = oai_constraint(rq, &p.constraint, &err);
        if (!rc) rc = gen_submit(&gs[i]->g, s->e, &p, &err);
        if (rc) constraint_free(p.constraint);
    }
    for (int i = 0; i < n && !rc; i++) {
        int code = gen_wait_first(&gs[i]->g, false);
        if (code) rc = lfmd_err_set(&err, code, "%s", gs[i]->g.msg);
    }
    struct buf b;
    buf_init(&b, GEN_PENDING_MAX * 4, LFMD_MEM_REQUEST);
    if (!rc) {
        int np = 0, ng = 0;
        int r2 = head_json(&b, gs[0], "text_completion");
        if (!r2) r2 = buf_puts(&b, ",\"choices\":[");
        for (int i = 0; i < n && !r2; i++) {
            struct oai_gen *x = gs[i];
            const struct gen *g = &x->g;
            np += g->n_prompt;
            ng += g->n_gen;
            r2 = buf_printf(&b, "%s{\"index\":%d,\"text\":", i ? "," : "", i);
            if (!r2) r2 = buf_json_str(&b, g->pending.data ? g->pending.data : "", g->pending.len);
            if (!r2) r2 = buf_puts(&b, ",\"logprobs\":");
            if (!r2) r2 = x->want_lp ? oai_logprobs_json(&b, false, g->lp.data, g->lp.len, 0)
                                    : buf_puts(&b, "null");
            if (!r2) r2 = buf_printf(&b, ",\"finish_reason\":\"%s\"}", finish_str(x));
        }
        if (!r2) r2 = buf_printf(&b, "],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
                                     "\"total_tokens\":%d}}", np, ng, np + ng);
        if (r2) rc = lfmd_err_set(&err, LFMD_ETOOBIG, "response too large");
    }
    for (int i = 0; i < n; i++) gen_free(gs[i] ? &gs[i]->g : NULL);
    enum MHD_Result r = rc ? send_error(c, rc, err.msg, NULL)
                           : http_send_buf(c, 200, &b, "application/json", 0);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_generate(struct server *s, struct MHD_Connection *c, struct conn *cn,
                                       bool chat) {
    struct lfmd_err_ctx err = {0};
    const char *param = NULL;
    struct oai_request *rq = lfmd_calloc(1, sizeof *rq, LFMD_MEM_REQUEST);
    if (!rq) return send_error(c, LFMD_EBUDGET, "no memory for the request", NULL);
    int rc = oai_request_parse(cn->body.data ? cn->body.data : "", cn->body.len, chat, rq, &param,
                               &err);
    if (rc) {
        oai_request_fini(rq);
        lfmd_free(rq);
        return send_error(c, rc, err.msg, param);
    }
    struct oai_gen *x = oai_gen_new(s, chat, c);
    if (!x) {
        oai_request_fini(rq);
        lfmd_free(rq);
        return send_error(c, LFMD_EBUDGET, "no memory for the request", NULL);
    }
    x->include_usage = rq->include_usage;
    x->want_lp = rq->params.logprobs;
    struct gen *g = &x->g;
    cn->gen = g;
    bool stream = rq->stream;
    if (rq->n_prompts > 1) {
        enum MHD_Result r = stream ? send_error(c, LFMD_EINVAL, "'stream' is not supported with "
                                                "an array of prompts", "stream")
                                   : handle_multi(s, c, rq);
        oai_request_fini(rq);
        lfmd_free(rq);
        return r;
    }
    rc = oai_constraint(rq, &rq->params.constraint, &err);
    if (!rc) rc = gen_submit(g, s->e, &rq->params, &err);
    if (rc) constraint_free(rq->params.constraint);
    oai_request_fini(rq);
    lfmd_free(rq);
    if (rc) return send_error(c, rc, err.msg, NULL);

    int code = gen_wait_first(g, stream);
    if (code) return send_error(c, code, g->msg, NULL);
    if (!stream) {
        struct buf b;
        buf_init(&b, GEN_PENDING_MAX * 2, LFMD_MEM_REQUEST);
        if (complete_json(&b, x, g->pending.data ? g->pending.data : "", g->pending.len)) {
            buf_fini(&b);
            return send_error(c, LFMD_ETOOBIG, "response too large", NULL);
        }
        enum MHD_Result r = http_send_buf(c, 200, &b, "application/json", 0);
        buf_fini(&b);
        return r;
    }
    struct MHD_Response *r = gen_stream_response(g, &sse_ops, "text/event-stream");
    if (!r) return send_error(c, LFMD_ENOMEM, "cannot create the response", NULL);
    cn->gen = NULL; // the response owns g now
    enum MHD_Result ret = http_queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

// POST /v1/route (route.c): blocking; all inputs of one call run as one batch.
static enum MHD_Result handle_route(struct server *s, struct MHD_Connection *c, struct conn *cn) {
    struct lfmd_err_ctx err = {0};
    const char *param = NULL;
    struct buf b;
    buf_init(&b, GEN_PENDING_MAX, LFMD_MEM_REQUEST);
    int rc = route_http(s->e, cn->body.data ? cn->body.data : "", cn->body.len, &b, &param, &err);
    enum MHD_Result r = rc ? send_error(c, rc, err.msg, param)
                           : http_send_buf(c, 200, &b, "application/json", 0);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_health(struct server *s, struct MHD_Connection *c) {
    enum engine_state st = engine_get_state(s->e);
    struct buf b;
    buf_init(&b, 256, LFMD_MEM_REQUEST);
    int status = st == ENGINE_LOADING ? 503 : 200;
    if (buf_printf(&b, "{\"status\":\"%s\",\"state\":\"%s\"}", status == 200 ? "ok" : "loading",
                   engine_state_name(st)))
        return MHD_NO;
    enum MHD_Result r = http_send_buf(c, status, &b, "application/json", status == 503 ? 1 : 0);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_metrics(struct server *s, struct MHD_Connection *c) {
    struct buf b;
    buf_init(&b, 1u << 20, LFMD_MEM_REQUEST);
    if (metrics_render(s->e, &b) || guard_metrics(s->guard, &b)) {
        buf_fini(&b);
        return send_error(c, LFMD_ETOOBIG, "metrics too large", NULL);
    }
    enum MHD_Result r = http_send_buf(c, 200, &b, "text/plain; version=0.0.4", 0);
    buf_fini(&b);
    return r;
}

// GET /: a plain liveness text (Ollama clients probe it).
static enum MHD_Result handle_root(struct MHD_Connection *c) {
    static const char msg[] = "lfmd is running\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    enum MHD_Result ret = http_queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_models(struct server *s, struct MHD_Connection *c) {
    struct buf b;
    buf_init(&b, 4096, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    if (!rc) rc = buf_json_str(&b, s->model_id, strlen(s->model_id));
    if (!rc) rc = buf_printf(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"lfmd\"}]}");
    if (rc) return MHD_NO;
    enum MHD_Result r = http_send_buf(c, 200, &b, "application/json", 0);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_admin(struct server *s, struct MHD_Connection *c, bool unload) {
    if (unload) engine_unload(s->e);
    else engine_trim(s->e);
    struct buf b;
    buf_init(&b, 256, LFMD_MEM_REQUEST);
    if (buf_printf(&b, "{\"ok\":true,\"action\":\"%s\"}", unload ? "unload" : "trim"))
        return MHD_NO;
    enum MHD_Result r = http_send_buf(c, 202, &b, "application/json", 0);
    buf_fini(&b);
    return r;
}


static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
    struct server *s = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        cn = lfmd_calloc(1, sizeof *cn, LFMD_MEM_REQUEST);
        if (!cn) return MHD_NO;
        buf_init(&cn->body, s->o.max_body_bytes, LFMD_MEM_REQUEST);
        *con_cls = cn;
        atomic_fetch_add(&s->active, 1);
        guard_request_begin(s->guard, c, method, url);
        // A declared body far over the limit is refused before any of it is read (the client
        // may see a reset); a moderately larger one is read, dropped and answered 413.
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > LFMD_HTTP_BODY_DISCARD_MAX) {
            char m[96];
            snprintf(m, sizeof m, "request body larger than %zu bytes", s->o.max_body_bytes);
            return send_error(c, LFMD_ETOOBIG, m, NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->too_big && buf_append(&cn->body, upload, *upload_size)) cn->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    guard_request_handling(c);
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool post = !strcmp(method, "POST");
    if (!strcmp(url, "/health") && get) return handle_health(s, c);
    if (!strcmp(method, "OPTIONS")) return guard_options(s->guard, c);
    if (cn->too_big) {
        char m[96];
        snprintf(m, sizeof m, "request body larger than %zu bytes", s->o.max_body_bytes);
        return send_error(c, LFMD_ETOOBIG, m, NULL);
    }
    // With --api-key every route but /health (and CORS preflights) needs the key.
    if (!guard_authorized(s->guard, c)) {
        struct buf b;
        buf_init(&b, 512, LFMD_MEM_REQUEST);
        if (oai_error_json(&b, LFMD_EINVAL, "missing or wrong API key", NULL)) return MHD_NO;
        enum MHD_Result r = http_send_buf(c, 401, &b, "application/json", 0);
        buf_fini(&b);
        return r;
    }
    if (!strcmp(url, "/metrics") && get) return handle_metrics(s, c);
    if (ollama_is_route(url)) {
        if (atomic_load(&s->draining) && post)
            return send_error(c, LFMD_EBUSY, "server is shutting down", NULL);
        return ollama_handle(&s->ollama, c, url, method, cn->body.data ? cn->body.data : "",
                             cn->body.len);
    }
    if (!strcmp(url, "/") && get) return handle_root(c);
    if (!strcmp(url, "/v1/models") && get) return handle_models(s, c);
    bool chat = !strcmp(url, "/v1/chat/completions"), cmpl = !strcmp(url, "/v1/completions");
    if ((chat || cmpl) && post) {
        if (atomic_load(&s->draining))
            return send_error(c, LFMD_EBUSY, "server is shutting down", NULL);
        return handle_generate(s, c, cn, chat);
    }
    if (!strcmp(url, "/v1/route") && post) {
        if (atomic_load(&s->draining))
            return send_error(c, LFMD_EBUSY, "server is shutting down", NULL);
        return handle_route(s, c, cn);
    }
    if (!strcmp(url, "/admin/trim") && post) return handle_admin(s, c, false);
    if (!strcmp(url, "/admin/unload") && post) return handle_admin(s, c, true);
    bool known = chat || cmpl || !strcmp(url, "/v1/route") || !strcmp(url, "/v1/models") || !strcmp(url, "/health") ||
                 !strcmp(url, "/metrics") || !strcmp(url, "/admin/trim") ||
                 !strcmp(url, "/admin/unload");
    struct buf b;
    buf_init(&b, 512, LFMD_MEM_REQUEST);
    if (oai_error_json(&b, known ? LFMD_EINVAL : LFMD_ENOENT,
                       known ? "method not allowed" : "no such endpoint", NULL))
        return MHD_NO;
    enum MHD_Result r = http_send_buf(c, known ? 405 : 404, &b, "application/json", 0);
    buf_fini(&b);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    struct server *s = cls;
    struct conn *cn = *con_cls;
    if (!cn) return;
    guard_request_end(s->guard, c, toe);
    gen_free(cn->gen);
    buf_fini(&cn->body);
    lfmd_free(cn);
    *con_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char m[1024];
    vsnprintf(m, sizeof m, fmt, ap);
    size_t n = strlen(m);
    while (n && m[n - 1] == '\n') m[--n] = 0;
    lfmd_log("warn", NULL, "http: %s", m);
}

int server_start(struct engine *e, const struct server_opts *o, struct server **out,
                 struct lfmd_err_ctx *err) {
    *out = NULL;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    const char *host = o->host && *o->host ? o->host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return lfmd_err_set(err, LFMD_EINVAL, "--host %s is not an IPv4 address", host);
    if (o->port < 0 || o->port > 65535)
        return lfmd_err_set(err, LFMD_EINVAL, "--port %d is out of range 0..65535", o->port);
    struct server *s = lfmd_calloc(1, sizeof *s, LFMD_MEM_OTHER);
    if (!s) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    s->e = e;
    s->o = *o;
    atomic_init(&s->next_id, 1);
    // The model id clients see: the model directory's or file's base name.
    const char *path = engine_get_opts(e)->model_path;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(s->model_id, sizeof s->model_id, "%.*s", (int)(n - b), path + b);
    if (!strcmp(s->model_id, "@test")) snprintf(s->model_id, sizeof s->model_id, "lfmd-test");
    int max_conn = o->max_connections > 0 && o->max_connections <= LFMD_MAX_CONNECTIONS
                       ? o->max_connections
                       : 256;
    unsigned timeout = o->conn_timeout_s > 0 ? (unsigned)o->conn_timeout_s : LFMD_HTTP_CONN_TIMEOUT_S;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); // connection threads inherit a blocked mask
    struct guard_opts go = {.api_key = o->api_key, .cors_origins = o->cors_origin,
                            .header_timeout_s = o->request_timeout_s,
                            .keepalive_timeout_s = o->keepalive_timeout_s,
                            .max_connections = max_conn};
    int grc = guard_new(&go, &s->guard, err);
    if (grc) {
        lfmd_free(s);
        return grc;
    }
    ollama_init(&s->ollama, e, s->model_id, o->version);
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
            MHD_USE_ERROR_LOG,
        (uint16_t)o->port, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conn, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)LFMD_HTTP_CONN_MEMORY,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512u << 10), MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, guard_notify_connection, s->guard,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->d) {
        guard_free(s->guard);
        lfmd_free(s);
        return lfmd_err_set(err, LFMD_EIO, "cannot listen on %s:%d (port in use?)", host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return 0;
}

int server_port(const struct server *s) { return s->port; }

void server_quiesce(struct server *s) {
    atomic_store(&s->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

int server_active_connections(const struct server *s) { return atomic_load(&s->active); }

void server_stop(struct server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    guard_free(s->guard);
    lfmd_free(s);
}
