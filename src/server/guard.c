// Protective layer of the HTTP server. Each connection gets a struct track (MHD socket context)
// from accept to close; a watchdog thread shuts down connections that miss their phase deadline
// (headers + body within header_timeout, idle keep-alive within keepalive_timeout), and new
// connections evict the oldest idle one once 3/4 of the connection limit is in use, so neither
// slow clients (one byte per second) nor piles of idle sockets can exhaust the server.
// Invariant: a track is on the list exactly while MHD owns its socket; shutdown(2) on it happens
// under the list lock, and the CLOSED notification (before MHD closes the fd) takes that lock.
// SPDX-License-Identifier: MIT
#include "guard.h"

#include "base/alloc.h"
#include "base/limits.h"
#include "engine/engine.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum phase { PH_NEW, PH_BODY, PH_HANDLING, PH_IDLE };

enum drop { DROP_HEADER, DROP_IDLE, DROP_EVICTED, DROP_COUNT };
static const char *const drop_names[DROP_COUNT] = {"request_timeout", "idle_timeout", "evicted"};

struct track {
    struct track *prev, *next;
    struct guard *g;
    int fd;
    enum phase phase;
    double since;             // start of the current phase (monotonic)
    bool shut;
    // current request
    char id[72];
    char method[12];
    char path[128];
    char remote[64];
    unsigned status;
};

struct guard {
    struct guard_opts o;
    char *key;
    char *origins;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct track head;        // circular list sentinel, oldest first
    int n;
    bool stop;
    pthread_t thread;
    atomic_ulong next_id;
    unsigned long id_salt;
    atomic_ulong drops[DROP_COUNT];
    atomic_ulong responses[6]; // 1xx..5xx by class, [0] other
    atomic_ulong accepted;
};

// ---- log ----

static atomic_bool g_log_json;

void lfmd_log_set_json(bool json) { atomic_store(&g_log_json, json); }
bool lfmd_log_is_json(void) { return atomic_load(&g_log_json); }

static void json_esc(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", f);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void wall_iso(char *out, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char d[32];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03ldZ", d, ts.tv_nsec / 1000000L);
}

void lfmd_log(const char *level, const char *request_id, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    flockfile(stderr);
    if (lfmd_log_is_json()) {
        char ts[48];
        wall_iso(ts, sizeof ts);
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",", ts, level);
        if (request_id) {
            fputs("\"request_id\":", stderr);
            json_esc(stderr, request_id);
            fputc(',', stderr);
        }
        fputs("\"msg\":", stderr);
        json_esc(stderr, msg);
        fputs("}\n", stderr);
    } else if (request_id) {
        fprintf(stderr, "lfmd: [%s] %s\n", request_id, msg);
    } else {
        fprintf(stderr, "lfmd: %s\n", msg);
    }
    funlockfile(stderr);
}

// ---- helpers ----

bool guard_secret_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char diff = (unsigned char)(la != lb);
    // Compare over b's length (the configured secret) so time depends on it only.
    for (size_t i = 0; i < lb; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

static struct track *track_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void list_del(struct track *t) {
    t->prev->next = t->next;
    t->next->prev = t->prev;
}

static void list_add_tail(struct guard *g, struct track *t) {
    t->prev = g->head.prev;
    t->next = &g->head;
    g->head.prev->next = t;
    g->head.prev = t;
}

// g->mu held.
static void drop_conn(struct guard *g, struct track *t, enum drop why) {
    if (t->shut) return;
    t->shut = true;
    shutdown(t->fd, SHUT_RDWR);
    atomic_fetch_add(&g->drops[why], 1);
}

static void *watchdog(void *arg) {
    struct guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        double now = engine_now();
        for (struct track *t = g->head.next; t != &g->head; t = t->next) {
            if (t->shut) continue;
            if ((t->phase == PH_NEW || t->phase == PH_BODY) &&
                now - t->since > g->o.header_timeout_s)
                drop_conn(g, t, DROP_HEADER);
            else if (t->phase == PH_IDLE && now - t->since > g->o.keepalive_timeout_s)
                drop_conn(g, t, DROP_IDLE);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 200L * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

// ---- lifecycle ----

int guard_new(const struct guard_opts *o, struct guard **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct guard *g = lfmd_calloc(1, sizeof *g, LFMD_MEM_OTHER);
    if (!g) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    g->o = *o;
    if (o->api_key && *o->api_key) g->key = lfmd_strdup(o->api_key, LFMD_MEM_OTHER);
    if (o->cors_origins && *o->cors_origins)
        g->origins = lfmd_strdup(o->cors_origins, LFMD_MEM_OTHER);
    if ((o->api_key && *o->api_key && !g->key) ||
        (o->cors_origins && *o->cors_origins && !g->origins)) {
        lfmd_free(g->key);
        lfmd_free(g);
        return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    }
    g->o.api_key = g->key;
    g->o.cors_origins = g->origins;
    if (g->o.header_timeout_s <= 0) g->o.header_timeout_s = LFMD_HTTP_REQUEST_TIMEOUT_S;
    if (g->o.keepalive_timeout_s <= 0) g->o.keepalive_timeout_s = LFMD_HTTP_KEEPALIVE_TIMEOUT_S;
    g->head.next = g->head.prev = &g->head;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g->id_salt = (unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 16);
    atomic_init(&g->next_id, 1);
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&g->thread, NULL, watchdog, g)) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        lfmd_free(g->key);
        lfmd_free(g->origins);
        lfmd_free(g);
        return lfmd_err_set(err, LFMD_ENOMEM, "cannot start the connection watchdog");
    }
    *out = g;
    return 0;
}

void guard_free(struct guard *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    // MHD is stopped by now: every CLOSED notification has run and the list is empty.
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    lfmd_free(g->key);
    lfmd_free(g->origins);
    lfmd_free(g);
}

void guard_notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe) {
    struct guard *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct track *t = lfmd_calloc(1, sizeof *t, LFMD_MEM_REQUEST);
        *socket_context = t;
        if (!t) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        t->g = g;
        t->fd = ci ? ci->connect_fd : -1;
        t->phase = PH_NEW;
        t->since = engine_now();
        atomic_fetch_add(&g->accepted, 1);
        pthread_mutex_lock(&g->mu);
        list_add_tail(g, t);
        g->n++;
        // Above 3/4 of the limit, the oldest idle connection makes room for the new one.
        int high = g->o.max_connections * LFMD_HTTP_EVICT_NUM / LFMD_HTTP_EVICT_DEN;
        if (high < 1) high = 1;
        int live = 0;
        for (struct track *x = g->head.next; x != &g->head; x = x->next) live += !x->shut;
        if (live > high) {
            for (struct track *x = g->head.next; x != t; x = x->next) {
                if (!x->shut && (x->phase == PH_NEW || x->phase == PH_IDLE)) {
                    drop_conn(g, x, DROP_EVICTED);
                    break;
                }
            }
        }
        pthread_mutex_unlock(&g->mu);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct track *t = *socket_context;
        if (!t) return;
        pthread_mutex_lock(&g->mu);
        list_del(t);
        g->n--;
        pthread_mutex_unlock(&g->mu);
        lfmd_free(t);
        *socket_context = NULL;
    }
}

static bool id_char_ok(char ch) {
    return isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':';
}

void guard_request_begin(struct guard *g, struct MHD_Connection *c, const char *method,
                         const char *url) {
    struct track *t = track_of(c);
    if (!t) return;
    const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    bool ok = rid && *rid && strlen(rid) <= 64;
    for (const char *p = rid; ok && *p; p++) ok = id_char_ok(*p);
    if (ok) {
        snprintf(t->id, sizeof t->id, "%s", rid);
    } else {
        unsigned long n = atomic_fetch_add(&g->next_id, 1);
        snprintf(t->id, sizeof t->id, "req-%06lx%06lx", g->id_salt & 0xffffffUL, n);
    }
    snprintf(t->method, sizeof t->method, "%s", method);
    snprintf(t->path, sizeof t->path, "%s", url);
    t->remote[0] = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, t->remote,
                  sizeof t->remote);
    t->status = 0;
    pthread_mutex_lock(&g->mu);
    // On a new connection the deadline for headers + body runs from accept; on a kept-alive one
    // it starts now (the idle wait had its own deadline).
    if (t->phase == PH_IDLE) t->since = engine_now();
    t->phase = PH_BODY;
    pthread_mutex_unlock(&g->mu);
}

void guard_request_handling(struct MHD_Connection *c) {
    struct track *t = track_of(c);
    if (!t) return;
    pthread_mutex_lock(&t->g->mu);
    t->phase = PH_HANDLING;
    pthread_mutex_unlock(&t->g->mu);
}

void guard_request_end(struct guard *g, struct MHD_Connection *c,
                       enum MHD_RequestTerminationCode toe) {
    struct track *t = track_of(c);
    if (!t) return;
    double now = engine_now();
    pthread_mutex_lock(&g->mu);
    double took = now - t->since;
    t->phase = PH_IDLE;
    t->since = now;
    pthread_mutex_unlock(&g->mu);
    if (!t->method[0]) return;
    unsigned cls = t->status / 100;
    atomic_fetch_add(&g->responses[cls >= 1 && cls <= 5 ? cls : 0], 1);
    const char *how = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)";
    if (lfmd_log_is_json()) {
        char ts[48];
        wall_iso(ts, sizeof ts);
        flockfile(stderr);
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":",
                ts);
        json_esc(stderr, t->id);
        fputs(",\"method\":", stderr);
        json_esc(stderr, t->method);
        fputs(",\"path\":", stderr);
        json_esc(stderr, t->path);
        fprintf(stderr, ",\"status\":%u,\"duration_ms\":%.1f,\"remote\":\"%s\",\"complete\":%s}\n",
                t->status, took * 1e3, t->remote, *how ? "false" : "true");
        funlockfile(stderr);
    } else {
        lfmd_log("info", t->id, "%s %s %s %u %.1fms%s", t->remote, t->method, t->path, t->status,
                 took * 1e3, how);
    }
    t->method[0] = 0;
}

// ---- auth and CORS ----

bool guard_authorized(const struct guard *g, struct MHD_Connection *c) {
    if (!g->key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h && !strncasecmp(h, "Bearer ", 7) && guard_secret_equal(h + 7, g->key)) return true;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    return h && guard_secret_equal(h, g->key);
}

// Is origin in the comma-separated allow list ("*" allows any)?
static bool origin_allowed(const struct guard *g, const char *origin, bool *any) {
    *any = false;
    if (!g->origins || !origin || !*origin) return false;
    size_t on = strlen(origin);
    for (const char *p = g->origins; *p;) {
        while (*p == ',' || *p == ' ') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        size_t n = (size_t)(e - p);
        while (n && p[n - 1] == ' ') n--;
        if (n == 1 && *p == '*') {
            *any = true;
            return true;
        }
        if (n && n == on && !strncasecmp(p, origin, n)) return true;
        p = e;
    }
    return false;
}

static void add_cors(const struct guard *g, struct MHD_Connection *c, struct MHD_Response *r) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    bool any;
    if (!origin_allowed(g, origin, &any)) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", any ? "*" : origin);
    if (!any) MHD_add_response_header(r, "Vary", "Origin");
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
}

enum MHD_Result http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
    struct track *t = track_of(c);
    if (t) {
        t->status = status;
        if (t->id[0]) MHD_add_response_header(r, "X-Request-Id", t->id);
        add_cors(t->g, c, r);
    }
    return MHD_queue_response(c, status, r);
}

static void free_response_data(void *p) { lfmd_free(p); }

enum MHD_Result http_send_buf(struct MHD_Connection *c, int status, struct buf *b,
                              const char *ctype, int retry_after) {
    size_t len = 0;
    char *data = buf_take(b, &len);
    struct MHD_Response *r =
        data ? MHD_create_response_from_buffer_with_free_callback(len, data, free_response_data)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        lfmd_free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ret = http_queue(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result guard_options(struct guard *g, struct MHD_Connection *c) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    bool any;
    bool allowed = origin_allowed(g, origin, &any);
    unsigned status = origin && !allowed ? 403 : 204;
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Allow", "GET, HEAD, POST, OPTIONS");
    if (allowed) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
        const char *want =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                want && strlen(want) < 1024
                                    ? want
                                    : "Authorization, Content-Type, X-Api-Key, X-Request-Id");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    enum MHD_Result ret = http_queue(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

// ---- metrics ----

int guard_metrics(struct guard *g, struct buf *b) {
    pthread_mutex_lock(&g->mu);
    int open = g->n;
    pthread_mutex_unlock(&g->mu);
    int rc = buf_printf(b,
                        "# HELP lfmd_http_connections Open HTTP connections.\n"
                        "# TYPE lfmd_http_connections gauge\nlfmd_http_connections %d\n"
                        "# HELP lfmd_http_connections_accepted_total Accepted HTTP connections.\n"
                        "# TYPE lfmd_http_connections_accepted_total counter\n"
                        "lfmd_http_connections_accepted_total %lu\n"
                        "# HELP lfmd_http_connections_dropped_total Connections closed by the "
                        "server's limits.\n"
                        "# TYPE lfmd_http_connections_dropped_total counter\n",
                        open, atomic_load(&g->accepted));
    for (int i = 0; i < DROP_COUNT && !rc; i++)
        rc = buf_printf(b, "lfmd_http_connections_dropped_total{reason=\"%s\"} %lu\n",
                        drop_names[i], atomic_load(&g->drops[i]));
    if (!rc)
        rc = buf_puts(b, "# HELP lfmd_http_responses_total HTTP responses by status class.\n"
                         "# TYPE lfmd_http_responses_total counter\n");
    static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 6 && !rc; i++)
        rc = buf_printf(b, "lfmd_http_responses_total{code=\"%s\"} %lu\n", cls[i],
                        atomic_load(&g->responses[i]));
    return rc;
}
