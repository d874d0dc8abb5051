// The engine thread: request queue, admission against the memory budget, the generation loop
// (one forward per active sequence per step; issue 6 turns a step into one batched forward),
// stop strings, and the model lifecycle (lazy load, per-request release, idle trim and unload).
// Locking: e->mu guards the queue, the active list, flags and stats. Model calls run on the
// engine thread without e->mu. A request's callback runs under r->mu so release can detach it.
// SPDX-License-Identifier: MIT
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ENGINE_MAX_PARALLEL LFMD_MAX_PARALLEL
#define TEXT_MAX_BYTES (4u << 20)

const double engine_hist_bounds[ENGINE_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                        0.5,   1.0,  2.5,   5.0,  10.0, INFINITY};

enum req_phase { PHASE_QUEUED, PHASE_ACTIVE, PHASE_DONE };

struct engine_req {
    struct engine *e;
    struct engine_req *next;    // queue link (under e->mu)
    atomic_int refs;            // engine + caller
    atomic_bool cancel;
    pthread_mutex_t mu;         // guards fn/user
    engine_event_fn fn;
    void *user;

    // request, owned copies (LFMD_MEM_REQUEST)
    char *prompt;
    struct engine_chat_msg *msgs;
    int n_msgs;
    bool as_user_turn;
    int max_tokens;
    struct sampler_params sp;
    char *stop[LFMD_MAX_STOP_STRINGS];
    int n_stop;
    size_t stop_max_len;
    double t_submit, queue_deadline, deadline; // deadline 0 = none

    // engine-thread state
    enum req_phase phase;
    bool tokenized;
    int32_t *toks;              // [cap] prompt + generated ids
    int n_toks, n_prompt, n_gen, cap;
    int seq_ctx;
    void *seq;
    void *dec;
    bool sampler_ready;
    struct sampler smp;
    struct buf text;            // generated text so far
    size_t emitted;             // bytes of text already sent
    double t_first, t_last;
};

struct engine {
    struct engine_opts o;
    const struct engine_model_ops *ops;
    char *model_path;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    // under mu
    struct engine_req *q_head, *q_tail;
    int q_len;
    struct engine_req *active[ENGINE_MAX_PARALLEL];
    int n_active;
    bool stopping;              // no new submits
    bool abort_all;             // cancel everything and exit
    bool want_trim, want_unload;
    atomic_int state;
    double last_activity;
    struct engine_stats st;     // counters (state/mem fields filled on read)

    // engine thread only
    void *model;
    struct engine_model_info info;
    void *runner;
    float *logits;              // [n_vocab]
    void *cached_seq;           // --keep-cache: one idle sequence at full n_ctx
    double t_start;
};

static void hist_add(struct engine_hist *h, double v) {
    int i = 0;
    while (i < ENGINE_HIST_BUCKETS - 1 && v > engine_hist_bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

double engine_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *engine_state_name(enum engine_state s) {
    switch (s) {
    case ENGINE_UNLOADED: return "unloaded";
    case ENGINE_LOADING: return "loading";
    case ENGINE_READY: return "ready";
    case ENGINE_TRIMMED: return "trimmed";
    case ENGINE_UNLOADING: return "unloading";
    }
    return "?";
}

const char *engine_finish_name(enum engine_finish f) {
    return f == ENGINE_FINISH_STOP ? "stop" : f == ENGINE_FINISH_LENGTH ? "length" : "none";
}

const char *engine_outcome_name(enum engine_outcome o) {
    static const char *const n[ENGINE_OUT_COUNT] = {"ok", "invalid", "rejected", "canceled",
                                                    "error"};
    return (unsigned)o < ENGINE_OUT_COUNT ? n[o] : "?";
}

void engine_opts_default(struct engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    o->max_tokens = 256;
    o->parallel = 1;
    o->max_queue = LFMD_MAX_QUEUE;
    o->queue_timeout_s = 30;
    o->idle_trim_s = 300;
    o->idle_unload_s = 600;
}

void engine_params_default(struct engine_params *p) {
    memset(p, 0, sizeof *p);
    sampler_params_default(&p->sampling);
}

// ---- request objects ----

static void req_free_state(struct engine_req *r) {
    struct engine *e = r->e;
    if (r->seq) {
        // --keep-cache keeps one full-size idle sequence for the next request.
        if (e->o.keep_cache && !e->cached_seq && r->seq_ctx == e->o.n_ctx) {
            e->ops->seq_reset(r->seq);
            e->cached_seq = r->seq;
        } else {
            e->ops->seq_free(r->seq);
        }
        r->seq = NULL;
    }
    if (r->dec) e->ops->dec_free(r->dec);
    r->dec = NULL;
    if (r->sampler_ready) sampler_fini(&r->smp);
    r->sampler_ready = false;
    lfmd_free(r->toks);
    r->toks = NULL;
    buf_fini(&r->text);
}

static void req_unref(struct engine_req *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    req_free_state(r);
    lfmd_free(r->prompt);
    for (int i = 0; i < r->n_msgs; i++) {
        lfmd_free((char *)r->msgs[i].role);
        lfmd_free((char *)r->msgs[i].content);
    }
    lfmd_free(r->msgs);
    for (int i = 0; i < r->n_stop; i++) lfmd_free(r->stop[i]);
    pthread_mutex_destroy(&r->mu);
    lfmd_free(r);
}

static void deliver(struct engine_req *r, const struct engine_event *ev) {
    pthread_mutex_lock(&r->mu);
    if (r->fn) r->fn(r->user, ev);
    pthread_mutex_unlock(&r->mu);
}

static enum engine_outcome outcome_of(int code) {
    switch (code) {
    case 0: return ENGINE_OUT_OK;
    case LFMD_EINVAL:
    case LFMD_ETOOBIG: return ENGINE_OUT_INVALID;
    case LFMD_EBUDGET:
    case LFMD_EBUSY:
    case LFMD_ETIMEDOUT: return ENGINE_OUT_REJECTED;
    case LFMD_ECANCELED: return ENGINE_OUT_CANCELED;
    default: return ENGINE_OUT_ERROR;
    }
}

// Sends DONE, updates stats, frees the request's state and drops the engine's reference.
// The request must already be unlinked from the queue/active list.
static void req_finish(struct engine_req *r, int code, enum engine_finish fin, const char *msg) {
    struct engine *e = r->e;
    struct engine_event ev = {.kind = ENGINE_EV_DONE, .n_prompt = r->n_prompt,
                              .n_gen = r->n_gen, .finish = fin, .code = code,
                              .msg = code ? (msg && *msg ? msg : lfmd_strerror(code)) : NULL};
    pthread_mutex_lock(&e->mu);
    e->st.requests[outcome_of(code)]++;
    e->st.prompt_tokens += (uint64_t)(r->tokenized ? r->n_prompt : 0);
    e->st.gen_tokens += (uint64_t)r->n_gen;
    if (r->t_first > 0) e->st.gen_seconds += r->t_last - r->t_first;
    e->last_activity = engine_now();
    pthread_mutex_unlock(&e->mu);
    // State goes back to the budget before the front end hears DONE.
    req_free_state(r);
    deliver(r, &ev);
    r->phase = PHASE_DONE;
    req_unref(r);
}

static char *dup_req(const char *s) { return lfmd_strdup(s ? s : "", LFMD_MEM_REQUEST); }

int engine_submit(struct engine *e, const struct engine_params *p, engine_event_fn fn, void *user,
                  struct engine_req **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    if (p->n_stop < 0 || p->n_stop > LFMD_MAX_STOP_STRINGS || p->n_msgs < 0 ||
        p->n_msgs > LFMD_MAX_CHAT_MESSAGES)
        return lfmd_err_set(err, LFMD_EINVAL, "too many stop strings or messages");
    struct engine_req *r = lfmd_calloc(1, sizeof *r, LFMD_MEM_REQUEST);
    if (!r) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory queueing the request");
    r->e = e;
    atomic_init(&r->refs, 2);
    atomic_init(&r->cancel, false);
    pthread_mutex_init(&r->mu, NULL);
    r->fn = fn;
    r->user = user;
    buf_init(&r->text, TEXT_MAX_BYTES, LFMD_MEM_REQUEST);
    int rc = LFMD_ENOMEM;
    if (!(r->prompt = dup_req(p->prompt))) goto fail;
    if (p->n_msgs > 0) {
        if (!(r->msgs = lfmd_calloc((size_t)p->n_msgs, sizeof *r->msgs, LFMD_MEM_REQUEST)))
            goto fail;
        for (int i = 0; i < p->n_msgs; i++) {
            r->msgs[i].role = dup_req(p->msgs[i].role);
            r->msgs[i].content = dup_req(p->msgs[i].content);
            r->n_msgs = i + 1;
            if (!r->msgs[i].role || !r->msgs[i].content) goto fail;
        }
    }
    for (int i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || !*p->stop[i]) continue; // empty stop strings mean nothing
        if (!(r->stop[r->n_stop] = dup_req(p->stop[i]))) goto fail;
        size_t n = strlen(p->stop[i]);
        if (n > r->stop_max_len) r->stop_max_len = n;
        r->n_stop++;
    }
    r->as_user_turn = p->prompt_as_user_turn;
    r->max_tokens = p->max_tokens <= 0 || p->max_tokens > e->o.max_tokens ? e->o.max_tokens
                                                                           : p->max_tokens;
    r->sp = p->sampling;
    r->t_submit = engine_now();
    double qt = e->o.queue_timeout_s > 0 ? e->o.queue_timeout_s : 1e9;
    r->queue_deadline = r->t_submit + qt;
    if (p->deadline_ms > 0) {
        r->deadline = r->t_submit + p->deadline_ms / 1000.0;
        if (r->deadline < r->queue_deadline) r->queue_deadline = r->deadline;
    }

    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        e->st.requests[ENGINE_OUT_REJECTED]++;
        pthread_mutex_unlock(&e->mu);
        rc = lfmd_err_set(err, LFMD_EBUSY, "server is shutting down");
        goto fail;
    }
    if (e->q_len >= e->o.max_queue) {
        e->st.requests[ENGINE_OUT_REJECTED]++;
        pthread_mutex_unlock(&e->mu);
        rc = lfmd_err_set(err, LFMD_EBUSY, "request queue is full (%d waiting)", e->o.max_queue);
        goto fail;
    }
    r->phase = PHASE_QUEUED;
    if (e->q_tail) e->q_tail->next = r;
    else e->q_head = r;
    e->q_tail = r;
    e->q_len++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return 0;
fail:
    if (rc == LFMD_ENOMEM) lfmd_err_set(err, rc, "out of memory queueing the request");
    r->fn = NULL;
    atomic_store(&r->refs, 1);
    req_unref(r);
    return rc;
}

void engine_req_cancel(struct engine_req *r) {
    if (!r) return;
    atomic_store(&r->cancel, true);
    pthread_mutex_lock(&r->e->mu);
    pthread_cond_signal(&r->e->cv);
    pthread_mutex_unlock(&r->e->mu);
}

void engine_req_release(struct engine_req *r) {
    if (!r) return;
    engine_req_cancel(r);
    pthread_mutex_lock(&r->mu);
    r->fn = NULL;
    r->user = NULL;
    pthread_mutex_unlock(&r->mu);
    req_unref(r);
}

// ---- lifecycle (engine thread) ----

static void set_state(struct engine *e, enum engine_state s) { atomic_store(&e->state, (int)s); }

static void free_idle(struct engine *e, bool runner_too) {
    if (e->cached_seq) {
        e->ops->seq_free(e->cached_seq);
        e->cached_seq = NULL;
    }
    if (runner_too && e->runner) {
        e->ops->runner_free(e->runner);
        e->runner = NULL;
    }
}

static void do_unload(struct engine *e) {
    if (!e->model) return;
    set_state(e, ENGINE_UNLOADING);
    free_idle(e, true);
    lfmd_free(e->logits);
    e->logits = NULL;
    e->ops->close(e->model);
    e->model = NULL;
    malloc_trim(0);
    set_state(e, ENGINE_UNLOADED);
    pthread_mutex_lock(&e->mu);
    e->st.unloads++;
    pthread_mutex_unlock(&e->mu);
    fprintf(stderr, "lfmd: model unloaded\n");
}

// Trim: free idle sequences (and scratch when nothing is active), drop weight pages, return
// freed heap to the OS. Safe while requests are active: they only re-fault weight pages.
static void do_trim(struct engine *e, bool idle) {
    if (!e->model) return;
    free_idle(e, idle);
    e->ops->release_pages(e->model);
    malloc_trim(0);
    if (idle) set_state(e, ENGINE_TRIMMED);
    pthread_mutex_lock(&e->mu);
    e->st.trims++;
    pthread_mutex_unlock(&e->mu);
}

static int do_load(struct engine *e, struct lfmd_err_ctx *err) {
    if (e->model) return 0;
    set_state(e, ENGINE_LOADING);
    double t0 = engine_now();
    int rc = e->ops->open(e->model_path, e->o.n_threads, &e->model, &e->info, err);
    if (rc == 0) {
        e->logits = lfmd_malloc((size_t)e->info.n_vocab * sizeof(float), LFMD_MEM_SCRATCH);
        if (!e->logits) {
            e->ops->close(e->model);
            e->model = NULL;
            rc = lfmd_err_set(err, LFMD_EBUDGET, "no memory for the logits buffer (%zu bytes)",
                              (size_t)e->info.n_vocab * sizeof(float));
        }
    }
    if (rc) {
        set_state(e, ENGINE_UNLOADED);
        malloc_trim(0);
        fprintf(stderr, "lfmd: ERROR loading %s: %s\n", e->model_path, err->msg);
        return rc;
    }
    set_state(e, ENGINE_READY);
    pthread_mutex_lock(&e->mu);
    e->st.loads++;
    e->st.load_seconds_last = engine_now() - t0;
    snprintf(e->st.model_name, sizeof e->st.model_name, "%s", e->info.name);
    snprintf(e->st.model_dtype, sizeof e->st.model_dtype, "%s", e->info.dtype);
    pthread_mutex_unlock(&e->mu);
    fprintf(stderr, "lfmd: model %s loaded in %.3f s\n", e->info.name, engine_now() - t0);
    return 0;
}

// ---- preparing a request (engine thread) ----

// Renders and tokenizes the prompt. On failure returns an LFMD_E* with a message in err.
static int req_tokenize(struct engine *e, struct engine_req *r, struct lfmd_err_ctx *err) {
    struct buf rendered;
    buf_init(&rendered, LFMD_MAX_BODY_BYTES * 2, LFMD_MEM_REQUEST);
    const char *text = r->prompt;
    size_t len = strlen(r->prompt);
    bool special = false, add_bos = true;
    int rc = 0;
    if (r->n_msgs > 0 || (r->as_user_turn && e->info.has_template && len > 0)) {
        struct engine_chat_msg one = {"user", r->prompt};
        rc = e->ops->render_chat(e->model, r->n_msgs > 0 ? r->msgs : &one,
                                 r->n_msgs > 0 ? r->n_msgs : 1, &rendered, err);
        if (rc) goto out;
        text = rendered.data ? rendered.data : "";
        len = rendered.len;
        special = true;  // the template's own special tokens
        add_bos = false; // the template writes BOS itself
    }
    // Room for one token past ctx tells "too long" from "exactly fits".
    r->cap = e->o.n_ctx + 1;
    r->toks = lfmd_malloc((size_t)r->cap * sizeof(int32_t), LFMD_MEM_REQUEST);
    if (!r->toks) {
        rc = lfmd_err_set(err, LFMD_EBUDGET, "no memory for %d prompt tokens", r->cap);
        goto out;
    }
    int n = 0;
    if (len == 0 && r->n_msgs == 0) {
        n = 0; // an empty prompt generates nothing
    } else {
        rc = e->ops->encode(e->model, text, len, special, add_bos, r->toks, r->cap, &n, err);
        if (rc) goto out;
    }
    if (n > e->o.n_ctx) {
        rc = lfmd_err_set(err, LFMD_EINVAL,
                          "prompt is %d tokens, longer than the context limit of %d tokens", n,
                          e->o.n_ctx);
        r->n_prompt = n;
        goto out;
    }
    r->n_prompt = r->n_toks = n;
    r->tokenized = true;
out:
    buf_fini(&rendered);
    return rc;
}

static int seq_ctx_for(const struct engine *e, const struct engine_req *r) {
    if (e->o.keep_cache) return e->o.n_ctx;
    long need = (long)r->n_prompt + r->max_tokens;
    return need < e->o.n_ctx ? (int)need : e->o.n_ctx;
}

// Undoes a partial admission (sequence, sampler, decoder) but keeps the prompt tokens.
static void req_unadmit(struct engine_req *r) {
    struct engine *e = r->e;
    if (r->seq) e->ops->seq_free(r->seq);
    r->seq = NULL;
    if (r->dec) e->ops->dec_free(r->dec);
    r->dec = NULL;
    if (r->sampler_ready) sampler_fini(&r->smp);
    r->sampler_ready = false;
}

// Creates the request's sequence, sampler and decoder if the budget allows. Returns 0 when
// started, 1 when it does not fit yet (keep waiting), or an error.
static int req_admit(struct engine *e, struct engine_req *r, struct lfmd_err_ctx *err) {
    r->seq_ctx = seq_ctx_for(e, r);
    if (e->o.keep_cache && e->cached_seq) {
        r->seq = e->cached_seq;
        e->cached_seq = NULL;
    } else {
        size_t need = e->ops->seq_bytes(e->model, r->seq_ctx);
        if (!lfmd_mem_fits(need) && e->cached_seq) free_idle(e, false);
        if (!lfmd_mem_fits(need)) return 1;
        struct lfmd_err_ctx e2 = {0};
        int rc = e->ops->seq_new(e->model, r->seq_ctx, &r->seq, &e2);
        if (rc == LFMD_EBUDGET || rc == LFMD_ENOMEM) return 1; // raced with other allocations
        if (rc) return lfmd_err_set(err, rc, "%s", e2.msg);
    }
    if (!e->runner) {
        struct lfmd_err_ctx e2 = {0};
        int rc = e->ops->runner_new(e->model, e->o.n_threads, &e->runner, &e2);
        if (rc == LFMD_EBUDGET || rc == LFMD_ENOMEM) goto wait;
        if (rc) {
            lfmd_err_set(err, rc, "%s", e2.msg);
            goto fail;
        }
    }
    int rc = sampler_init(&r->smp, &r->sp, e->info.n_vocab);
    if (rc) goto wait;
    r->sampler_ready = true;
    rc = e->ops->dec_new(e->model, &r->dec, err);
    if (rc == LFMD_EBUDGET || rc == LFMD_ENOMEM) goto wait;
    if (rc) goto fail;
    return 0;
wait:
    req_unadmit(r);
    return 1;
fail:
    req_unadmit(r);
    return err->code ? err->code : LFMD_ENOMEM;
}

// ---- generation (engine thread) ----

static void emit_text(struct engine_req *r, size_t upto) {
    if (upto <= r->emitted) return;
    struct engine_event ev = {.kind = ENGINE_EV_TEXT, .text = r->text.data + r->emitted,
                              .len = upto - r->emitted};
    deliver(r, &ev);
    r->emitted = upto;
}

// Looks for a stop string in the not-yet-emitted text. Returns its offset or -1; *hold receives
// how many tail bytes might start a stop string and must be held back.
static long find_stop(const struct engine_req *r, size_t *hold) {
    *hold = 0;
    if (!r->n_stop) return -1;
    size_t len = r->text.len;
    size_t from = r->emitted;
    long best = -1;
    for (int i = 0; i < r->n_stop; i++) {
        const char *p = memmem(r->text.data + from, len - from, r->stop[i], strlen(r->stop[i]));
        if (p && (best < 0 || p - r->text.data < best)) best = p - r->text.data;
    }
    if (best >= 0) return best;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1; k > *hold; k--) {
            if (k <= len - from && !memcmp(r->text.data + len - k, r->stop[i], k)) {
                *hold = k;
                break;
            }
        }
    }
    return -1;
}

static void req_complete(struct engine *e, struct engine_req *r, int code, enum engine_finish f,
                         const char *msg) {
    for (int i = 0; i < e->n_active; i++) {
        if (e->active[i] != r) continue;
        pthread_mutex_lock(&e->mu);
        e->active[i] = e->active[--e->n_active];
        pthread_mutex_unlock(&e->mu);
        break;
    }
    if (code == 0) emit_text(r, r->text.len);
    req_finish(r, code, f, msg);
}

// One step of one active sequence: prefill or feed the last token, then sample one token.
static void req_step(struct engine *e, struct engine_req *r) {
    struct lfmd_err_ctx err = {0};
    double now = engine_now();
    if (atomic_load(&r->cancel)) {
        req_complete(e, r, LFMD_ECANCELED, ENGINE_FINISH_NONE, "request canceled");
        return;
    }
    if (r->deadline > 0 && now > r->deadline) {
        req_complete(e, r, LFMD_ETIMEDOUT, ENGINE_FINISH_NONE, "deadline exceeded");
        return;
    }
    if (r->n_prompt == 0) { // empty prompt: nothing to continue from
        req_complete(e, r, 0, ENGINE_FINISH_STOP, NULL);
        return;
    }
    int rc;
    if (r->n_gen == 0) rc = e->ops->forward(e->runner, r->seq, r->toks, r->n_prompt, e->logits, &err);
    else rc = e->ops->forward(e->runner, r->seq, &r->toks[r->n_toks - 1], 1, e->logits, &err);
    if (rc) {
        req_complete(e, r, rc, ENGINE_FINISH_NONE, err.msg);
        return;
    }
    int32_t tok = sampler_sample(&r->smp, e->logits, r->toks, r->n_toks);
    now = engine_now();
    pthread_mutex_lock(&e->mu);
    if (r->n_gen == 0) hist_add(&e->st.ttft, now - r->t_submit);
    else hist_add(&e->st.token_latency, now - r->t_last);
    pthread_mutex_unlock(&e->mu);
    if (r->n_gen == 0) r->t_first = now;
    r->t_last = now;
    if (e->ops->is_eog(e->model, tok)) {
        req_complete(e, r, 0, ENGINE_FINISH_STOP, NULL);
        return;
    }
    r->toks[r->n_toks++] = tok;
    r->n_gen++;
    if (e->ops->dec_push(r->dec, tok, &r->text)) {
        req_complete(e, r, LFMD_ETOOBIG, ENGINE_FINISH_NONE, "generated text too large");
        return;
    }
    size_t hold;
    long at = find_stop(r, &hold);
    if (at >= 0) {
        emit_text(r, (size_t)at);
        r->text.len = (size_t)at; // drop the stop string and anything after it
        req_complete(e, r, 0, ENGINE_FINISH_STOP, NULL);
        return;
    }
    emit_text(r, r->text.len - hold);
    // Length: the cap, or no room to feed the token just sampled.
    if (r->n_gen >= r->max_tokens || r->n_toks >= r->seq_ctx || r->n_toks >= r->cap)
        req_complete(e, r, 0, ENGINE_FINISH_LENGTH, NULL);
}

// Takes queued requests into the active set while slots and budget allow; fails the ones that
// are canceled, invalid or past their queue deadline. Runs without e->mu except for list edits.
static void admit_queued(struct engine *e) {
    for (;;) {
        pthread_mutex_lock(&e->mu);
        struct engine_req *r = e->q_head;
        int n_active = e->n_active;
        pthread_mutex_unlock(&e->mu);
        if (!r) return;
        struct lfmd_err_ctx err = {0};
        int rc = 0;
        double now = engine_now();
        if (atomic_load(&r->cancel)) rc = lfmd_err_set(&err, LFMD_ECANCELED, "request canceled");
        else if (now > r->queue_deadline)
            rc = lfmd_err_set(&err, r->deadline > 0 && now > r->deadline ? LFMD_ETIMEDOUT
                                                                        : LFMD_EBUDGET,
                              "timed out after %.1f s waiting for memory or a free slot",
                              now - r->t_submit);
        else if (n_active >= e->o.parallel) return;
        if (!rc && !e->model) rc = do_load(e, &err);
        if (!rc && !r->tokenized) rc = req_tokenize(e, r, &err);
        int adm = 0;
        if (!rc) {
            adm = req_admit(e, r, &err);
            if (adm < 0) rc = adm;
        }
        if (!rc && adm == 1) return; // does not fit yet: wait for memory or its deadline
        pthread_mutex_lock(&e->mu);
        e->q_head = r->next;
        if (!e->q_head) e->q_tail = NULL;
        e->q_len--;
        r->next = NULL;
        if (!rc) {
            r->phase = PHASE_ACTIVE;
            e->active[e->n_active++] = r;
        }
        pthread_mutex_unlock(&e->mu);
        if (rc) {
            req_finish(r, rc, ENGINE_FINISH_NONE, err.msg);
            continue;
        }
        set_state(e, ENGINE_READY);
        struct engine_event ev = {.kind = ENGINE_EV_START, .n_prompt = r->n_prompt};
        deliver(r, &ev);
    }
}

static void fail_all(struct engine *e, int code, const char *msg) {
    while (e->n_active) req_complete(e, e->active[0], code, ENGINE_FINISH_NONE, msg);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        struct engine_req *r = e->q_head;
        if (r) {
            e->q_head = r->next;
            if (!e->q_head) e->q_tail = NULL;
            e->q_len--;
        }
        pthread_mutex_unlock(&e->mu);
        if (!r) break;
        req_finish(r, code, ENGINE_FINISH_NONE, msg);
    }
}

static void *engine_main(void *arg) {
    struct engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool trim = false, unload = false;
        for (;;) {
            if (e->abort_all) break;
            bool idle = !e->q_head && !e->n_active;
            if (e->want_trim) {
                trim = true;
                e->want_trim = false;
            }
            if (e->want_unload && idle) {
                unload = true;
                e->want_unload = false;
            }
            if (trim || unload || !idle) break;
            if (e->stopping) break;
            // Idle: sleep until the next idle deadline (trim or unload) or new work.
            double now = engine_now(), wake = now + 1.0;
            enum engine_state s = (enum engine_state)atomic_load(&e->state);
            double t_trim = e->last_activity + e->o.idle_trim_s;
            double t_unload = e->last_activity + e->o.idle_unload_s;
            if (s == ENGINE_READY && e->o.idle_trim_s > 0) {
                if (now >= t_trim) {
                    trim = true;
                    break;
                }
                if (t_trim < wake) wake = t_trim;
            }
            if ((s == ENGINE_READY || s == ENGINE_TRIMMED) && e->o.idle_unload_s > 0) {
                if (now >= t_unload) {
                    unload = true;
                    break;
                }
                if (t_unload < wake) wake = t_unload;
            }
            // Per-request release: with nothing to do, scratch goes back right away.
            if (!e->o.keep_cache && e->runner) break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double dt = wake - now;
            if (dt < 0.001) dt = 0.001;
            ts.tv_sec += (time_t)dt;
            ts.tv_nsec += (long)((dt - floor(dt)) * 1e9);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        }
        bool abort_all = e->abort_all;
        bool idle = !e->q_head && !e->n_active;
        bool exit_now = abort_all || (e->stopping && idle);
        pthread_mutex_unlock(&e->mu);
        if (exit_now) break;

        if (idle && !e->o.keep_cache && e->runner) {
            e->ops->runner_free(e->runner);
            e->runner = NULL;
            malloc_trim(0);
        }
        if (unload) do_unload(e);
        else if (trim) do_trim(e, idle);
        admit_queued(e);
        // One step: every active sequence advances by one forward pass.
        for (int i = e->n_active - 1; i >= 0; i--)
            if (i < e->n_active) req_step(e, e->active[i]);
        if (!e->n_active && !e->q_head) {
            // Drop the per-request scratch promptly, before sleeping.
            continue;
        }
        if (e->q_head && !e->n_active) {
            // Waiting for memory with nothing active: poll the budget gently.
            usleep(2000);
        }
    }
    fail_all(e, LFMD_ECANCELED, "server shutting down");
    do_unload(e);
    return NULL;
}

// ---- start / stop ----

// Measures what one request needs: opens the model, creates a runner and computes one sequence
// at n_ctx, then frees it all (unless preload keeps the model).
static int probe_need(struct engine *e, size_t *need, size_t *weights, size_t *seq,
                      size_t *other, struct lfmd_err_ctx *err) {
    size_t t0 = lfmd_mem_total();
    size_t w0 = lfmd_mem_used(LFMD_MEM_WEIGHTS) + lfmd_mem_used(LFMD_MEM_CONVERTED);
    int rc = do_load(e, err);
    if (rc) return rc;
    rc = e->ops->runner_new(e->model, e->o.n_threads, &e->runner, err);
    if (rc) return rc;
    size_t t1 = lfmd_mem_total();
    *weights = lfmd_mem_used(LFMD_MEM_WEIGHTS) + lfmd_mem_used(LFMD_MEM_CONVERTED) - w0;
    *seq = e->ops->seq_bytes(e->model, e->o.n_ctx);
    *other = (t1 - t0) - *weights; // tokenizer, scratch, logits
    *need = (t1 - t0) + *seq;
    e->ops->runner_free(e->runner);
    e->runner = NULL;
    if (!e->o.preload) {
        do_unload(e);
        e->st.loads = 0;
        e->st.unloads = 0;
    }
    return 0;
}

int engine_start(const struct engine_opts *opts, struct engine **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    if (!opts->model_path || !*opts->model_path || !opts->ops)
        return lfmd_err_set(err, LFMD_EINVAL, "no model given");
    if (opts->n_ctx < 1 || opts->n_ctx > LFMD_MAX_CTX)
        return lfmd_err_set(err, LFMD_EINVAL, "--ctx %d is out of range 1..%d", opts->n_ctx,
                            LFMD_MAX_CTX);
    if (opts->max_tokens < 1 || opts->max_tokens > LFMD_MAX_TOKENS_PER_REQUEST)
        return lfmd_err_set(err, LFMD_EINVAL, "--max-tokens %d is out of range 1..%d",
                            opts->max_tokens, LFMD_MAX_TOKENS_PER_REQUEST);
    if (opts->parallel < 1 || opts->parallel > ENGINE_MAX_PARALLEL)
        return lfmd_err_set(err, LFMD_EINVAL, "--parallel %d is out of range 1..%d",
                            opts->parallel, ENGINE_MAX_PARALLEL);
    struct engine *e = lfmd_calloc(1, sizeof *e, LFMD_MEM_OTHER);
    if (!e) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    e->o = *opts;
    if (e->o.max_queue < 1 || e->o.max_queue > LFMD_MAX_QUEUE) e->o.max_queue = LFMD_MAX_QUEUE;
    e->ops = opts->ops;
    e->model_path = lfmd_strdup(opts->model_path, LFMD_MEM_OTHER);
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&e->state, ENGINE_UNLOADED);
    e->t_start = e->last_activity = engine_now();
    snprintf(e->st.model_path, sizeof e->st.model_path, "%s", opts->model_path);
    int rc = 0;
    if (!e->model_path) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    if (opts->memory_limit) {
        size_t need = 0, w = 0, s = 0, other = 0;
        lfmd_mem_set_limit(0);
        rc = probe_need(e, &need, &w, &s, &other, err);
        if (rc) goto fail;
        size_t base = lfmd_mem_total();
        if (opts->memory_limit < base + need) {
            rc = lfmd_err_set(err, LFMD_EBUDGET,
                              "--memory-limit %zu bytes is below what one request needs: %zu "
                              "bytes (weights %zu + one sequence at ctx %d: %zu + tokenizer and "
                              "scratch %zu + process %zu)",
                              opts->memory_limit, base + need, w, e->o.n_ctx, s, other, base);
            goto fail;
        }
        lfmd_mem_set_limit(opts->memory_limit);
    } else if (opts->preload) {
        rc = do_load(e, err);
        if (rc) goto fail;
    }
    // Spawned threads must not take the process's signals (the app's handlers set flags).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&e->thread, NULL, engine_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "cannot start the engine thread: %s", strerror(rc));
        goto fail;
    }
    e->thread_started = true;
    *out = e;
    return 0;
fail:
    if (e->model) do_unload(e);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    lfmd_free(e->model_path);
    lfmd_free(e);
    return rc;
}

int engine_drain(struct engine *e, double timeout_s) {
    double until = engine_now() + timeout_s;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cv);
    while ((e->q_head || e->n_active) && engine_now() < until) {
        pthread_mutex_unlock(&e->mu);
        usleep(10000);
        pthread_mutex_lock(&e->mu);
    }
    int left = e->q_len + e->n_active;
    pthread_mutex_unlock(&e->mu);
    return left;
}

void engine_stop(struct engine *e, double timeout_s) {
    if (!e) return;
    engine_drain(e, timeout_s);
    pthread_mutex_lock(&e->mu);
    e->abort_all = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started) pthread_join(e->thread, NULL);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    lfmd_free(e->model_path);
    lfmd_free(e);
    malloc_trim(0);
}

void engine_trim(struct engine *e) {
    pthread_mutex_lock(&e->mu);
    e->want_trim = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_unload(struct engine *e) {
    pthread_mutex_lock(&e->mu);
    e->want_unload = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

// ---- observability ----

enum engine_state engine_get_state(struct engine *e) {
    return (enum engine_state)atomic_load(&e->state);
}

const struct engine_opts *engine_get_opts(const struct engine *e) { return &e->o; }

void engine_get_stats(struct engine *e, struct engine_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    out->queue_depth = e->q_len;
    out->active = e->n_active;
    pthread_mutex_unlock(&e->mu);
    out->state = engine_get_state(e);
    out->n_ctx = e->o.n_ctx;
    out->max_tokens = e->o.max_tokens;
    out->parallel = e->o.parallel;
    out->uptime_s = engine_now() - e->t_start;
    for (int c = 0; c < LFMD_MEM_COUNT; c++) out->mem_used[c] = lfmd_mem_used((enum lfmd_mem)c);
    out->mem_total = lfmd_mem_total();
    out->mem_peak = lfmd_mem_peak();
    out->mem_limit = lfmd_mem_limit();
}

size_t engine_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

int engine_parse_duration(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || isinf(v)) return LFMD_EINVAL;
    double mul = 1;
    if (!strcmp(end, "") || !strcmp(end, "s")) mul = 1;
    else if (!strcmp(end, "ms")) mul = 0.001;
    else if (!strcmp(end, "m")) mul = 60;
    else if (!strcmp(end, "h")) mul = 3600;
    else return LFMD_EINVAL;
    *out = v * mul;
    return 0;
}

int engine_parse_bytes(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return LFMD_EINVAL;
    double mul = 1;
    char u = *end;
    if (u == 'k' || u == 'K') mul = 1024.0;
    else if (u == 'm' || u == 'M') mul = 1024.0 * 1024;
    else if (u == 'g' || u == 'G') mul = 1024.0 * 1024 * 1024;
    else if (u == 't' || u == 'T') mul = 1024.0 * 1024 * 1024 * 1024;
    else if (u == 'b' || u == 'B' || u == 0) mul = 1;
    else return LFMD_EINVAL;
    if (u && u != 'b' && u != 'B') {
        end++;
        if (!strcmp(end, "i") || !strcmp(end, "iB") || !strcmp(end, "B") || !*end) end += strlen(end);
    } else if (u) {
        end++;
    }
    if (*end) return LFMD_EINVAL;
    double b = v * mul;
    if (b > 1.8e19) return LFMD_EINVAL;
    *out = (size_t)b;
    return 0;
}
