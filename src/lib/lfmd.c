// liblfmd: the public embedding API (include/lfmd.h) over the engine. A struct lfmd owns one
// engine; lfmd_generate submits a request and blocks on a condition variable until DONE, passing
// text to the caller's callback on the way. Invariant: nothing here touches the model; only the
// engine thread does. Internal symbols stay hidden (the shared library exports lfmd_* only).
// SPDX-License-Identifier: MIT
#include "lfmd.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "engine/engine.h"
#include "server/route.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct lfmd {
    struct engine *e;
    char *model;              // owned copy of the path (the engine borrows it)
};

static int map_code(int code) {
    switch (code) {
    case 0: return 0;
    case LFMD_EINVAL:
    case LFMD_EFORMAT:
    case LFMD_ENOTSUP:
    case LFMD_ETOOBIG: return LFMD_ERR_INVALID;
    case LFMD_ENOMEM:
    case LFMD_EBUDGET: return LFMD_ERR_NOMEM;
    case LFMD_EIO:
    case LFMD_ENOENT: return LFMD_ERR_IO;
    case LFMD_EBUSY:
    case LFMD_ETIMEDOUT: return LFMD_ERR_BUSY;
    case LFMD_ECANCELED: return LFMD_ERR_CANCELED;
    default: return LFMD_ERR_OTHER;
    }
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return map_code(code);
}

const char *lfmd_version(void) { return LFMD_LIB_VERSION; }

void lfmd_options_default(struct lfmd_options *o) {
    memset(o, 0, sizeof *o);
    o->ctx = 1024;
    o->max_tokens = 256;
}

void lfmd_gen_params_default(struct lfmd_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->top_p = 1.0f;
}

int lfmd_open(const struct lfmd_options *o, struct lfmd **out, char *err, size_t errlen) {
    *out = NULL;
    if (!o || !o->model || !*o->model) return fail(err, errlen, LFMD_EINVAL, "no model path");
    struct lfmd *m = lfmd_calloc(1, sizeof *m, LFMD_MEM_OTHER);
    if (!m) return fail(err, errlen, LFMD_ENOMEM, "out of memory");
    m->model = lfmd_strdup(o->model, LFMD_MEM_OTHER);
    if (!m->model) {
        lfmd_free(m);
        return fail(err, errlen, LFMD_ENOMEM, "out of memory");
    }
    struct engine_opts eo;
    engine_opts_default(&eo);
    eo.model_path = m->model;
    eo.ops = engine_ops_for_path(m->model);
    eo.n_ctx = o->ctx > 0 ? o->ctx : 1024;
    eo.max_tokens = o->max_tokens > 0 ? o->max_tokens : 256;
    eo.n_threads = o->threads;
    eo.memory_limit = o->memory_limit;
    eo.idle_unload_s = o->idle_unload_s > 0 ? o->idle_unload_s : 0;
    eo.idle_trim_s = 0;
    struct lfmd_err_ctx ec = {0};
    int rc = engine_start(&eo, &m->e, &ec);
    if (rc) {
        lfmd_free(m->model);
        lfmd_free(m);
        return fail(err, errlen, rc, "%s", ec.msg);
    }
    *out = m;
    return 0;
}

struct wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, stop;
    int code;
    char msg[256];
    struct engine_event last;
    struct buf text;
    bool collect;
    lfmd_text_fn fn;
    void *user;
    struct engine_req *req;
};

static void on_event(void *user, const struct engine_event *ev) {
    struct wait *w = user;
    if (ev->kind == ENGINE_EV_TEXT) {
        pthread_mutex_lock(&w->mu); // w->req is set once engine_submit has returned
        if (w->collect && buf_append(&w->text, ev->text, ev->len)) engine_req_cancel(w->req);
        if (w->fn && !w->stop && w->fn(w->user, ev->text, ev->len)) {
            w->stop = true;
            engine_req_cancel(w->req);
        }
        pthread_mutex_unlock(&w->mu);
        return;
    }
    if (ev->kind != ENGINE_EV_DONE) return;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->code = ev->code;
    w->last = *ev;
    if (ev->msg) snprintf(w->msg, sizeof w->msg, "%s", ev->msg);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int lfmd_generate(struct lfmd *m, const char *prompt, const struct lfmd_gen_params *p,
                  lfmd_text_fn on_text, void *user, char **text, struct lfmd_result *res,
                  char *err, size_t errlen) {
    if (text) *text = NULL;
    if (!m || !prompt) return fail(err, errlen, LFMD_EINVAL, "no model or no prompt");
    struct lfmd_gen_params def;
    if (!p) {
        lfmd_gen_params_default(&def);
        p = &def;
    }
    struct engine_params ep;
    engine_params_default(&ep);
    ep.prompt = prompt;
    ep.prompt_as_user_turn = p->chat != 0;
    ep.max_tokens = p->max_tokens;
    ep.sampling.temperature = p->temperature;
    ep.sampling.top_p = p->top_p > 0 && p->top_p <= 1 ? p->top_p : 1.0f;
    ep.sampling.top_k = p->top_k > 0 ? p->top_k : 0;
    ep.sampling.seed = p->seed;
    for (int i = 0; i < 4 && p->stop[i]; i++) ep.stop[ep.n_stop++] = p->stop[i];

    struct wait w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    buf_init(&w.text, (size_t)LFMD_MAX_BODY_BYTES * 2, LFMD_MEM_REQUEST);
    w.collect = text != NULL;
    w.fn = on_text;
    w.user = user;
    struct lfmd_err_ctx ec = {0};
    // The callback may run before engine_submit returns: hold the lock so w.req is set first.
    pthread_mutex_lock(&w.mu);
    int rc = engine_submit(m->e, &ep, on_event, &w, &w.req, &ec);
    if (!rc) {
        while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    if (!rc) engine_req_release(w.req);
    if (!rc && w.code) {
        rc = w.code;
        snprintf(ec.msg, sizeof ec.msg, "%s", w.stop ? "stopped by the callback" : w.msg);
    }
    if (res) {
        res->prompt_tokens = w.last.n_prompt;
        res->generated_tokens = w.last.n_gen;
        res->finish_length = w.last.finish == ENGINE_FINISH_LENGTH;
    }
    if (!rc && text) {
        *text = buf_take(&w.text, NULL);
        if (!*text) *text = lfmd_strdup("", LFMD_MEM_REQUEST);
        if (!*text) rc = LFMD_ENOMEM;
    }
    buf_fini(&w.text);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc ? fail(err, errlen, rc, "%s", ec.msg[0] ? ec.msg : lfmd_err_name(rc)) : 0;
}

void lfmd_text_free(char *text) { lfmd_free(text); }

int lfmd_route(struct lfmd *m, const char *text, const char *const *names,
               const char *const *descs, int n, int *best, double *probs, char *err,
               size_t errlen) {
    if (!m || !text || !names || n < 1 || n > ENGINE_MAX_CHOICES)
        return fail(err, errlen, LFMD_EINVAL, "need a text and 1..%d routes", ENGINE_MAX_CHOICES);
    struct route_def defs[ENGINE_MAX_CHOICES];
    for (int i = 0; i < n; i++) {
        defs[i].name = names[i];
        defs[i].desc = descs ? descs[i] : NULL;
    }
    struct route_result *res = lfmd_calloc(1, sizeof *res, LFMD_MEM_REQUEST);
    if (!res) return fail(err, errlen, LFMD_ENOMEM, "out of memory");
    struct lfmd_err_ctx ec = {0};
    const char *inputs[1] = {text};
    int rc = route_run(m->e, NULL, defs, n, inputs, 1, NULL, 0, res, &ec);
    if (!rc && res->code) {
        rc = res->code;
        snprintf(ec.msg, sizeof ec.msg, "%s", res->msg);
    }
    if (!rc) {
        if (best) *best = res->best;
        if (probs)
            for (int i = 0; i < n; i++) probs[i] = res->prob[i];
    }
    lfmd_free(res);
    return rc ? fail(err, errlen, rc, "%s", ec.msg) : 0;
}

void lfmd_unload(struct lfmd *m) {
    if (m) engine_unload(m->e);
}

size_t lfmd_memory_used(void) { return lfmd_mem_total(); }

void lfmd_close(struct lfmd *m) {
    if (!m) return;
    engine_stop(m->e, 10);
    lfmd_free(m->model);
    lfmd_free(m);
}
