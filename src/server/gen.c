// An engine request seen from an HTTP handler: event sink, waits with client hang-up
// cancellation, and the MHD content reader for streaming responses (contract in gen.h).
// Invariant: every field the engine callback writes is read under g->mu until done is set; after
// DONE no callback runs, so a finished gen may be read without the lock.
// SPDX-License-Identifier: MIT
#include "gen.h"

#include "server.h"

#include "base/alloc.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void gen_on_event(void *user, const struct engine_event *ev) {
    struct gen *g = user;
    double now = engine_now();
    pthread_mutex_lock(&g->mu);
    switch (ev->kind) {
    case ENGINE_EV_LOGPROB: // only when the request asked for logprobs
        if (oai_logprob_record(&g->lp, ev)) engine_req_cancel(g->req);
        break;
    case ENGINE_EV_START:
        g->started = true;
        g->t_start = now;
        g->n_prompt = ev->n_prompt;
        break;
    case ENGINE_EV_TEXT:
        if (!g->t_first) g->t_first = now;
        if (buf_append(&g->pending, ev->text, ev->len)) engine_req_cancel(g->req);
        break;
    case ENGINE_EV_DONE:
        g->done = true;
        g->t_done = now;
        g->code = ev->code;
        g->finish = ev->finish;
        g->n_prompt = ev->n_prompt;
        g->n_gen = ev->n_gen;
        if (ev->msg) snprintf(g->msg, sizeof g->msg, "%s", ev->msg);
        break;
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

struct gen *gen_new(size_t size, struct MHD_Connection *c) {
    struct gen *g = lfmd_calloc(1, size < sizeof *g ? sizeof *g : size, LFMD_MEM_REQUEST);
    if (!g) return NULL;
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    buf_init(&g->pending, GEN_PENDING_MAX, LFMD_MEM_REQUEST);
    buf_init(&g->out, GEN_PENDING_MAX * 2, LFMD_MEM_REQUEST);
    buf_init(&g->lp, GEN_PENDING_MAX, LFMD_MEM_REQUEST);
    g->fd = -1;
    if (c) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        g->fd = ci ? ci->connect_fd : -1;
    }
    return g;
}

void gen_free(struct gen *g) {
    if (!g) return;
    engine_req_release(g->req); // cancels if still running; no callback after this
    buf_fini(&g->pending);
    buf_fini(&g->out);
    buf_fini(&g->lp);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    lfmd_free(g);
}

int gen_submit(struct gen *g, struct engine *e, const struct engine_params *p,
               struct lfmd_err_ctx *err) {
    return engine_submit(e, p, gen_on_event, g, &g->req, err);
}

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void gen_cancel_if_gone(struct gen *g) {
    if (client_gone(g->fd)) engine_req_cancel(g->req);
}

// Waits (g->mu held) until done, or started when want_start, or text pending when want_text,
// or timeout_s. Cancels the request when the client hangs up.
static void gen_wait(struct gen *g, bool want_start, bool want_text, double timeout_s) {
    double until = engine_now() + timeout_s;
    while (!g->done && !(want_start && g->started) && !(want_text && g->pending.len)) {
        double now = engine_now();
        if (now >= until) return;
        double step = until - now < 0.1 ? until - now : 0.1;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(step * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (client_gone(g->fd)) {
            pthread_mutex_unlock(&g->mu);
            engine_req_cancel(g->req);
            pthread_mutex_lock(&g->mu);
        }
    }
}

int gen_wait_first(struct gen *g, bool want_start) {
    pthread_mutex_lock(&g->mu);
    gen_wait(g, want_start, false, 1e9);
    int code = g->done ? g->code : 0;
    pthread_mutex_unlock(&g->mu);
    return code;
}

// MHD content reader: stages the hooks' bytes in g->out and hands them out in pieces.
static ssize_t stream_read(void *cls, uint64_t pos, char *dst, size_t max) {
    (void)pos;
    struct gen *g = cls;
    const struct gen_stream_ops *ops = g->ops;
    for (;;) {
        if (g->out_off < g->out.len) {
            size_t n = g->out.len - g->out_off;
            if (n > max) n = max;
            memcpy(dst, g->out.data + g->out_off, n);
            g->out_off += n;
            return (ssize_t)n;
        }
        buf_reset(&g->out);
        g->out_off = 0;
        if (g->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        int rc = 0;
        if (g->phase == 0) {
            g->phase = 1;
            if (ops->begin) rc = ops->begin(g, &g->out);
            if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        pthread_mutex_lock(&g->mu);
        gen_wait(g, false, true, ops->idle_s);
        bool done = g->done;
        if (g->pending.len) {
            rc = ops->text(g, &g->out, g->pending.data, g->pending.len);
            buf_reset(&g->pending);
            done = false; // send the text first, the end on the next call
        }
        pthread_mutex_unlock(&g->mu);
        if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (g->out.len) continue;
        if (!done) {
            if (ops->idle(g, &g->out)) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        g->phase = 2;
        if (ops->end(g, &g->out)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls) { gen_free(cls); }

struct MHD_Response *gen_stream_response(struct gen *g, const struct gen_stream_ops *ops,
                                         const char *ctype) {
    g->ops = ops;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, stream_read, g, stream_free);
    if (!r) return NULL;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return r;
}
