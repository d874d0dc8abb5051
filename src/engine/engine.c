// The engine thread: request queue, admission against the memory budget, continuous batching
// (every step is ONE batched forward over all active sequences: a decode token for each
// generating sequence plus prefill chunks, oldest first, within a per-step token budget), the
// prefix cache, scoring (routing), constrained output, log-probs, stop strings, and the model
// lifecycle (lazy load, per-request release, idle trim and unload).
// Locking: e->mu guards the queue, the active list, flags and stats. Model calls run on the
// engine thread without e->mu. A request's callback runs under r->mu so release can detach it.
// SPDX-License-Identifier: MIT
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine.h"

#include "constrain.h"
#include "prefix_cache.h"

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
    bool raw_prompt;
    size_t cache_prefix_bytes;
    char **choices;             // scoring mode
    int n_choices;
    bool logprobs;
    int top_logprobs;
    struct engine_constraint *con;

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
    int n_fed;                  // tokens of toks already in seq
    int snap_at;                // prefix-cache snapshot boundary in tokens (0 = none)
    int n_cached;               // prompt tokens restored from the prefix cache
    const float *ready_logits;  // restored prompt logits (prefix cache hit on the whole prompt)
    int32_t *ch_toks;           // scoring: the choices' tokens, concatenated
    int ch_off[ENGINE_MAX_CHOICES + 1];
    double *scores;
    float *lp_row;              // logprobs: copy of the raw logits row
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
    double keep_alive_s;        // per-request idle unload (Ollama keep_alive); NAN = --idle-unload
    struct engine_stats st;     // counters (state/mem fields filled on read)

    // engine thread only
    void *model;
    struct engine_model_info info;
    void *runner;
    float *logits;              // [parallel, n_vocab]: one row per batched sequence
    void *cached_seq;           // --keep-cache: one idle sequence at full n_ctx
    double t_start;
    struct prefix_cache pc;
    char *tok_bytes;            // token_bytes table for constraints (lazily built)
    struct constraint_vocab *cvocab; // vocab trie for constraint masks (lazily built)
    bool cvocab_failed;
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
    o->prefix_cache_bytes = (size_t)64 << 20;
    o->step_tokens = 256;
    o->kv_type = "f16";
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
    lfmd_free(r->ch_toks);
    r->ch_toks = NULL;
    lfmd_free(r->scores);
    r->scores = NULL;
    lfmd_free(r->lp_row);
    r->lp_row = NULL;
    constraint_free(r->con);
    r->con = NULL;
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
    for (int i = 0; i < r->n_choices; i++) lfmd_free(r->choices[i]);
    lfmd_free(r->choices);
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
                              .msg = code ? (msg && *msg ? msg : lfmd_strerror(code)) : NULL,
                              .n_cached = r->n_cached};
    double scores[ENGINE_MAX_CHOICES];
    if (!code && r->scores) { // copied: state is freed before delivery
        memcpy(scores, r->scores, (size_t)r->n_choices * sizeof *scores);
        ev.scores = scores;
        ev.n_scores = r->n_choices;
    }
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
    if (p->n_choices < 0 || p->n_choices > ENGINE_MAX_CHOICES)
        return lfmd_err_set(err, LFMD_EINVAL, "at most %d choices can be scored",
                            ENGINE_MAX_CHOICES);
    if (p->top_logprobs < 0 || p->top_logprobs > ENGINE_MAX_TOP_LOGPROBS)
        return lfmd_err_set(err, LFMD_EINVAL, "top_logprobs must be from 0 to %d",
                            ENGINE_MAX_TOP_LOGPROBS);
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
    if (p->n_choices > 0) {
        if (!(r->choices = lfmd_calloc((size_t)p->n_choices, sizeof *r->choices,
                                       LFMD_MEM_REQUEST)))
            goto fail;
        for (int i = 0; i < p->n_choices; i++) {
            if (!(r->choices[i] = dup_req(p->choices[i]))) goto fail;
            r->n_choices = i + 1;
        }
    }
    r->raw_prompt = p->raw_prompt;
    r->cache_prefix_bytes = p->cache_prefix_bytes;
    r->logprobs = p->logprobs;
    r->top_logprobs = p->logprobs ? p->top_logprobs : 0;
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
    r->con = p->constraint; // owned from here on
    // Under the same lock as the enqueue: the idle loop never sees a new keep_alive (0: unload
    // now) without the request that carries it, so it cannot unload before serving it.
    if (p->set_keep_alive) e->keep_alive_s = p->keep_alive_s;
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
    pc_clear(&e->pc);
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
    pc_bind(&e->pc, NULL, NULL, 0);
    constraint_vocab_free(e->cvocab);
    e->cvocab = NULL;
    e->cvocab_failed = false;
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
    if (rc == 0 && e->o.kv_type && e->ops->set_kv_type &&
        (rc = e->ops->set_kv_type(e->model, e->o.kv_type, err)) != 0) {
        e->ops->close(e->model);
        e->model = NULL;
    }
    if (rc == 0) {
        size_t lb = (size_t)e->o.parallel * (size_t)e->info.n_vocab * sizeof(float);
        e->logits = lfmd_malloc(lb, LFMD_MEM_SCRATCH);
        if (!e->logits) {
            e->ops->close(e->model);
            e->model = NULL;
            rc = lfmd_err_set(err, LFMD_EBUDGET, "no memory for the logits buffer (%zu bytes)",
                              lb);
        } else {
            pc_bind(&e->pc, e->ops, e->model, e->info.n_vocab);
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

// Byte length of the rendered prompt before the first non-system message's content, or 0.
static size_t system_prefix_bytes(struct engine *e, struct engine_req *r, const char *full,
                                  size_t full_len) {
    static const char marker[] = "\x01lfmd-prefix\x01";
    struct buf b;
    buf_init(&b, LFMD_MAX_BODY_BYTES * 2, LFMD_MEM_REQUEST);
    const char *saved = r->msgs[1].content;
    r->msgs[1].content = marker;
    struct lfmd_err_ctx err = {0};
    size_t at = 0;
    if (!e->ops->render_chat(e->model, r->msgs, r->n_msgs, &b, &err) && b.data) {
        const char *m = memmem(b.data, b.len, marker, sizeof marker - 1);
        if (m && (size_t)(m - b.data) <= full_len && !memcmp(b.data, full, (size_t)(m - b.data)))
            at = (size_t)(m - b.data);
    }
    r->msgs[1].content = saved;
    buf_fini(&b);
    return at;
}

// Scoring mode: each choice's tokens (no BOS) followed by the end-of-turn token.
static int tokenize_choices(struct engine *e, struct engine_req *r, struct lfmd_err_ctx *err) {
    int32_t eot = e->ops->eot_id ? e->ops->eot_id(e->model) : -1;
    int total = 0, cap = 0;
    for (int i = 0; i < r->n_choices; i++) cap += (int)strlen(r->choices[i]) + 2;
    r->ch_toks = lfmd_malloc((size_t)cap * sizeof(int32_t), LFMD_MEM_REQUEST);
    r->scores = lfmd_calloc((size_t)r->n_choices, sizeof(double), LFMD_MEM_REQUEST);
    if (!r->ch_toks || !r->scores) return lfmd_err_set(err, LFMD_EBUDGET, "no memory for choices");
    for (int i = 0; i < r->n_choices; i++) {
        r->ch_off[i] = total;
        int n = 0;
        size_t len = strlen(r->choices[i]);
        if (!len) return lfmd_err_set(err, LFMD_EINVAL, "choice %d is empty", i);
        int rc = e->ops->encode(e->model, r->choices[i], len, false, false, r->ch_toks + total,
                                cap - total - 1, &n, err);
        if (rc) return rc;
        if (n < 1 || n > cap - total - 1)
            return lfmd_err_set(err, LFMD_EINVAL, "cannot tokenize choice %d", i);
        total += n;
        if (eot >= 0) r->ch_toks[total++] = eot;
    }
    r->ch_off[r->n_choices] = total;
    return 0;
}

// Renders and tokenizes the prompt. On failure returns an LFMD_E* with a message in err.
static int req_tokenize(struct engine *e, struct engine_req *r, struct lfmd_err_ctx *err) {
    struct buf rendered;
    buf_init(&rendered, LFMD_MAX_BODY_BYTES * 2, LFMD_MEM_REQUEST);
    const char *text = r->prompt;
    size_t len = strlen(r->prompt);
    bool special = false, add_bos = true;
    size_t prefix_bytes = 0; // a boundary worth a prefix-cache snapshot
    int rc = 0;
    if (r->raw_prompt) {
        special = true;
        add_bos = false;
        prefix_bytes = r->cache_prefix_bytes < len ? r->cache_prefix_bytes : 0;
    } else if (r->n_msgs > 0 || (r->as_user_turn && e->info.has_template && len > 0)) {
        struct engine_chat_msg one = {"user", r->prompt};
        rc = e->ops->render_chat(e->model, r->n_msgs > 0 ? r->msgs : &one,
                                 r->n_msgs > 0 ? r->n_msgs : 1, &rendered, err);
        if (rc) goto out;
        text = rendered.data ? rendered.data : "";
        len = rendered.len;
        special = true;  // the template's own special tokens
        add_bos = false; // the template writes BOS itself
        if (r->n_msgs > 1 && !strcmp(r->msgs[0].role, "system") && e->pc.cap) {
            // End of the system prompt: render with the next message's content replaced by a
            // marker; everything before the marker is the cacheable prefix.
            prefix_bytes = system_prefix_bytes(e, r, text, len);
        }
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
    if (prefix_bytes > 0 && e->pc.cap && n > 1) {
        // The boundary in tokens: the common prefix of the prefix's own tokens and the prompt's
        // (BPE may merge across the boundary; the common part is always safe).
        int32_t *pt = lfmd_malloc((size_t)r->cap * sizeof(int32_t), LFMD_MEM_REQUEST);
        int np = 0;
        if (pt && !e->ops->encode(e->model, text, prefix_bytes, special, add_bos, pt, r->cap, &np,
                                  err)) {
            int k = 0;
            while (k < np && k < n && pt[k] == r->toks[k]) k++;
            if (k > 0 && k < n) r->snap_at = k;
        }
        err->code = 0;
        lfmd_free(pt);
    }
    if (r->n_choices > 0) {
        rc = tokenize_choices(e, r, err);
        if (rc) goto out;
    }
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
        if (!lfmd_mem_fits(need) && (e->cached_seq || e->pc.n)) free_idle(e, false);
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
    if (r->logprobs && !r->lp_row) {
        r->lp_row = lfmd_malloc((size_t)e->info.n_vocab * sizeof(float), LFMD_MEM_REQUEST);
        if (!r->lp_row) goto wait;
    }
    if ((r->con || r->logprobs) && e->ops->token_bytes) {
        size_t tl;
        (void)e->ops->token_bytes(e->model, 0, &tl); // builds the table once per model
    }
    // Prefix cache: restore the longest cached prefix of the prompt.
    r->n_fed = 0;
    r->n_cached = 0;
    r->ready_logits = NULL;
    if (e->pc.cap && e->ops->seq_copy && r->n_prompt > 0) {
        struct pc_entry *x = pc_lookup(&e->pc, r->toks, r->n_prompt);
        if (x && x->n <= r->seq_ctx && e->ops->seq_copy(r->seq, x->seq) == 0) {
            r->n_fed = r->n_cached = x->n;
            if (x->n == r->n_prompt) r->ready_logits = x->logits;
        } else if (x) {
            e->ops->seq_reset(r->seq);
        }
    }
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
        // Keep admission order: prefill chunks are handed out oldest first.
        memmove(&e->active[i], &e->active[i + 1],
                (size_t)(e->n_active - i - 1) * sizeof e->active[0]);
        e->n_active--;
        pthread_mutex_unlock(&e->mu);
        break;
    }
    if (code == 0) emit_text(r, r->text.len);
    req_finish(r, code, f, msg);
}

static double log_sum_exp(const float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) return -INFINITY;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
    return (double)mx + log(sum);
}

static const char *tok_bytes(struct engine *e, int32_t id, size_t *len) {
    *len = 0;
    return e->ops->token_bytes ? e->ops->token_bytes(e->model, id, len) : "";
}

// One batched pass, or one pass per sequence for models without forward_batch.
static int forward_many(struct engine *e, void *const *seqs, const int32_t *const *tk,
                        const int *nt, int n, float *logits, struct lfmd_err_ctx *err) {
    if (e->ops->forward_batch) return e->ops->forward_batch(e->runner, seqs, tk, nt, n, logits, err);
    for (int i = 0; i < n; i++) {
        int rc = e->ops->forward(e->runner, seqs[i], tk[i], nt[i],
                                 logits + (size_t)i * (size_t)e->info.n_vocab, err);
        if (rc) return rc;
    }
    return 0;
}

static const char *cv_bytes(void *user, int32_t id, size_t *len) {
    return tok_bytes(user, id, len);
}

static bool cv_eog(void *user, int32_t id) {
    struct engine *e = user;
    return e->ops->is_eog(e->model, id);
}

// Masks every token that would break the request's constraint. Returns how many remain.
static int apply_constraint(struct engine *e, struct engine_req *r, float *logits) {
    if (!e->cvocab && !e->cvocab_failed && e->ops->token_bytes) {
        struct lfmd_err_ctx err = {0};
        if (constraint_vocab_new(e->info.n_vocab, cv_bytes, cv_eog, e, &e->cvocab, &err))
            e->cvocab_failed = true;
    }
    if (e->cvocab) {
        // tokens that may still follow, this one included
        int budget = r->max_tokens - r->n_gen;
        int room = (r->seq_ctx < r->cap ? r->seq_ctx : r->cap) - r->n_toks;
        if (room < budget) budget = room;
        if (budget < 1) budget = 1;
        int n = constraint_mask(r->con, e->cvocab, budget, logits);
        if (n >= 0) return n;
    }
    int allowed = 0;
    bool complete = constraint_complete(r->con);
    for (int id = 0; id < e->info.n_vocab; id++) {
        if (logits[id] == -INFINITY) continue;
        bool ok;
        if (e->ops->is_eog(e->model, id)) {
            ok = complete;
        } else {
            size_t n;
            const char *b = tok_bytes(e, id, &n);
            ok = n > 0 && constraint_allows(r->con, b, n);
        }
        if (ok) allowed++;
        else logits[id] = -INFINITY;
    }
    return allowed;
}

// Sends one LOGPROB event for the sampled token (raw model distribution, before constraints).
static void emit_logprob(struct engine *e, struct engine_req *r, int32_t tok) {
    const float *row = r->lp_row;
    double lse = log_sum_exp(row, e->info.n_vocab);
    struct engine_logprob top[ENGINE_MAX_TOP_LOGPROBS];
    int32_t ids[ENGINE_MAX_TOP_LOGPROBS];
    int nt = 0;
    for (int id = 0; id < e->info.n_vocab; id++) { // insertion into a short sorted list
        float v = row[id];
        if (nt == r->top_logprobs && (nt == 0 || v <= row[ids[nt - 1]])) continue;
        int k = nt < r->top_logprobs ? nt++ : nt - 1;
        while (k > 0 && row[ids[k - 1]] < v) {
            ids[k] = ids[k - 1];
            k--;
        }
        ids[k] = id;
    }
    for (int i = 0; i < nt; i++) {
        top[i].text = tok_bytes(e, ids[i], &top[i].len);
        top[i].logprob = (float)((double)row[ids[i]] - lse);
    }
    struct engine_event ev = {.kind = ENGINE_EV_LOGPROB, .top = top, .n_top = nt};
    ev.tok.text = tok_bytes(e, tok, &ev.tok.len);
    ev.tok.logprob = (float)((double)row[tok] - lse);
    deliver(r, &ev);
}

static void req_accept(struct engine *e, struct engine_req *r, int32_t tok);

// Samples the next token from the logits after the request's last fed token and handles EOS,
// constraints, stop strings and length.
static void req_sample(struct engine *e, struct engine_req *r, float *logits) {
    if (r->lp_row) memcpy(r->lp_row, logits, (size_t)e->info.n_vocab * sizeof(float));
    if (r->con && apply_constraint(e, r, logits) == 0) {
        req_complete(e, r, 0, ENGINE_FINISH_STOP, NULL);
        return;
    }
    req_accept(e, r, sampler_sample(&r->smp, logits, r->toks, r->n_toks));
}

// True when the request's next token is its logits' plain argmax and nothing else reads the
// logits (forward_batch_greedy may then pick it on the device).
static bool req_plain_greedy(const struct engine_req *r) {
    return r->smp.p.temperature <= 0.0f && r->smp.p.repeat_penalty == 1.0f && !r->lp_row &&
           !r->con && r->n_choices == 0;
}

// Takes sampled token tok: EOS, stop strings, constraint completion, length.
static void req_accept(struct engine *e, struct engine_req *r, int32_t tok) {
    double now = engine_now();
    pthread_mutex_lock(&e->mu);
    if (r->n_gen == 0) hist_add(&e->st.ttft, now - r->t_submit);
    else hist_add(&e->st.token_latency, now - r->t_last);
    pthread_mutex_unlock(&e->mu);
    if (r->n_gen == 0) r->t_first = now;
    r->t_last = now;
    if (r->lp_row) emit_logprob(e, r, tok);
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
    if (r->con) {
        size_t n;
        const char *b = tok_bytes(e, tok, &n);
        if (constraint_feed(r->con, b, n) == 0 && constraint_final(r->con)) {
            req_complete(e, r, 0, ENGINE_FINISH_STOP, NULL); // the JSON value is complete
            return;
        }
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

// Scoring mode: summed log-prob of each choice's tokens (+ end of turn) after the prompt, whose
// last logits are row. Choices share the prompt state: each gets a copy of the request's
// sequence and all of them advance together in batched passes.
static int score_choices(struct engine *e, struct engine_req *r, const float *row,
                         struct lfmd_err_ctx *err) {
    int nv = e->info.n_vocab;
    double lse = log_sum_exp(row, nv);
    int max_len = 0;
    for (int c = 0; c < r->n_choices; c++) {
        r->scores[c] = (double)row[r->ch_toks[r->ch_off[c]]] - lse;
        int len = r->ch_off[c + 1] - r->ch_off[c];
        if (len > max_len) max_len = len;
    }
    if (max_len < 2) return 0;
    if (!e->ops->seq_copy)
        return lfmd_err_set(err, LFMD_EINVAL, "this model cannot score multi-token choices");
    enum { GROUP = 16 };
    float *lg = lfmd_malloc((size_t)GROUP * (size_t)nv * sizeof(float), LFMD_MEM_SCRATCH);
    if (!lg) return lfmd_err_set(err, LFMD_EBUDGET, "no memory to score the choices");
    int rc = 0;
    for (int g0 = 0; g0 < r->n_choices && !rc; g0 += GROUP) {
        int g1 = g0 + GROUP < r->n_choices ? g0 + GROUP : r->n_choices;
        void *seqs[GROUP] = {0};
        for (int c = g0; c < g1 && !rc; c++) {
            int len = r->ch_off[c + 1] - r->ch_off[c];
            if (len < 2) continue;
            rc = e->ops->seq_new(e->model, r->n_prompt + len, &seqs[c - g0], err);
            if (!rc && e->ops->seq_copy(seqs[c - g0], r->seq))
                rc = lfmd_err_set(err, LFMD_EINVAL, "cannot copy the prompt state");
        }
        for (int k = 1; k < max_len && !rc; k++) {
            void *bs[GROUP];
            const int32_t *bt[GROUP];
            int bn[GROUP], who[GROUP], nb = 0;
            for (int c = g0; c < g1; c++) {
                int len = r->ch_off[c + 1] - r->ch_off[c];
                if (len <= k) continue;
                bs[nb] = seqs[c - g0];
                bt[nb] = &r->ch_toks[r->ch_off[c] + k - 1];
                bn[nb] = 1;
                who[nb++] = c;
            }
            if (!nb) break;
            rc = forward_many(e, bs, bt, bn, nb, lg, err);
            for (int i = 0; i < nb && !rc; i++) {
                const float *lr = lg + (size_t)i * nv;
                int c = who[i];
                r->scores[c] += (double)lr[r->ch_toks[r->ch_off[c] + k]] - log_sum_exp(lr, nv);
            }
        }
        for (int i = 0; i < GROUP; i++)
            if (seqs[i]) e->ops->seq_free(seqs[i]);
    }
    lfmd_free(lg);
    return rc;
}

// Checks cancellation and deadlines; returns false when r was completed.
static bool req_alive(struct engine *e, struct engine_req *r) {
    if (atomic_load(&r->cancel)) {
        req_complete(e, r, LFMD_ECANCELED, ENGINE_FINISH_NONE, "request canceled");
        return false;
    }
    if (r->deadline > 0 && engine_now() > r->deadline) {
        req_complete(e, r, LFMD_ETIMEDOUT, ENGINE_FINISH_NONE, "deadline exceeded");
        return false;
    }
    if (r->n_prompt == 0) { // empty prompt: nothing to continue from
        req_complete(e, r, 0, ENGINE_FINISH_STOP, NULL);
        return false;
    }
    return true;
}

// One step of continuous batching: every generating sequence feeds its last token, prefilling
// sequences get chunks of their prompt (oldest first) within the step's token budget, all in ONE
// batched forward pass; then each sequence whose input is complete samples (or is scored).
static void engine_step(struct engine *e) {
    struct engine_req *act[ENGINE_MAX_PARALLEL];
    int n_act = 0;
    for (int i = 0; i < e->n_active; i++) act[n_act++] = e->active[i];
    int n = 0;
    for (int i = 0; i < n_act; i++)
        if (req_alive(e, act[i])) act[n++] = act[i];
    if (!n) return;
    void *seqs[ENGINE_MAX_PARALLEL];
    const int32_t *tk[ENGINE_MAX_PARALLEL];
    int nt[ENGINE_MAX_PARALLEL], nb = 0, n_ready = 0;
    struct engine_req *who[ENGINE_MAX_PARALLEL], *ready[ENGINE_MAX_PARALLEL];
    int budget = e->o.step_tokens;
    for (int i = 0; i < n; i++) { // decode tokens first: one each
        struct engine_req *r = act[i];
        if (r->ready_logits) ready[n_ready++] = r;
        else if (r->n_fed >= r->n_prompt) {
            who[nb] = r;
            seqs[nb] = r->seq;
            tk[nb] = r->toks + r->n_fed;
            nt[nb++] = r->n_toks - r->n_fed;
            budget -= r->n_toks - r->n_fed;
        }
    }
    bool any_prefill = false;
    for (int i = 0; i < n; i++) { // then prompt chunks, in admission order
        struct engine_req *r = act[i];
        if (r->ready_logits || r->n_fed >= r->n_prompt) continue;
        if (budget < 1 && any_prefill) break;
        int take = r->n_prompt - r->n_fed;
        if (r->snap_at > r->n_fed && r->snap_at - r->n_fed < take) take = r->snap_at - r->n_fed;
        int cap = budget > 16 ? budget : 16; // the oldest prompt always progresses
        if (take > cap) take = cap;
        who[nb] = r;
        seqs[nb] = r->seq;
        tk[nb] = r->toks + r->n_fed;
        nt[nb++] = take;
        budget -= take;
        any_prefill = true;
    }
    size_t nv = (size_t)e->info.n_vocab;
    // Whole prompts restored from the cache: their logits go to rows after the batch's.
    for (int i = 0; i < n_ready; i++) {
        memcpy(e->logits + (size_t)(nb + i) * nv, ready[i]->ready_logits, nv * sizeof(float));
        ready[i]->ready_logits = NULL;
    }
    // Steps of greedy decoding alone (no prompt completes, nothing reads logits) take the
    // tokens picked by the model (forward_batch_greedy) instead of logits.
    bool greedy = nb > 0 && n_ready == 0 && e->ops->forward_batch_greedy;
    int32_t next[ENGINE_MAX_PARALLEL];
    for (int i = 0; i < nb && greedy; i++)
        if (who[i]->n_fed < who[i]->n_prompt ? who[i]->n_fed + nt[i] >= who[i]->n_prompt
                                             : !req_plain_greedy(who[i]))
            greedy = false;
    if (nb) {
        struct lfmd_err_ctx err = {0};
        int rc = greedy ? e->ops->forward_batch_greedy(e->runner, seqs, tk, nt, nb, next, &err)
                        : forward_many(e, seqs, tk, nt, nb, e->logits, &err);
        if (rc) {
            for (int i = 0; i < nb; i++) req_complete(e, who[i], rc, ENGINE_FINISH_NONE, err.msg);
            nb = 0;
        } else {
            long tot = 0;
            for (int i = 0; i < nb; i++) tot += nt[i];
            pthread_mutex_lock(&e->mu);
            e->st.steps++;
            e->st.step_tokens += (uint64_t)tot;
            pthread_mutex_unlock(&e->mu);
        }
    }
    for (int i = 0; i < nb + n_ready; i++) {
        struct engine_req *r = i < nb ? who[i] : ready[i - nb];
        float *row = e->logits + (size_t)i * nv;
        if (i < nb) r->n_fed += nt[i];
        if (r->n_fed < r->n_prompt) { // mid-prompt: maybe a boundary worth caching
            if (r->n_fed == r->snap_at) pc_insert(&e->pc, r->toks, r->n_fed, r->seq, NULL);
            continue;
        }
        if (r->n_gen == 0 && r->n_fed == r->n_prompt) { // the prompt is complete
            if (r->n_choices > 0) {
                struct lfmd_err_ctx err = {0};
                int rc = score_choices(e, r, row, &err);
                req_complete(e, r, rc, ENGINE_FINISH_STOP, err.msg);
                continue;
            }
            if (r->n_cached < r->n_prompt) pc_insert(&e->pc, r->toks, r->n_prompt, r->seq, row);
        }
        if (greedy) req_accept(e, r, next[i]);
        else req_sample(e, r, row);
    }
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
            double unload_s = isnan(e->keep_alive_s) ? e->o.idle_unload_s : e->keep_alive_s;
            double t_unload = e->last_activity + unload_s;
            if (s == ENGINE_READY && e->o.idle_trim_s > 0) {
                if (now >= t_trim) {
                    trim = true;
                    break;
                }
                if (t_trim < wake) wake = t_trim;
            }
            if ((s == ENGINE_READY || s == ENGINE_TRIMMED) &&
                (unload_s > 0 || (unload_s == 0 && !isnan(e->keep_alive_s)))) {
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
        if (unload) {
            do_unload(e);
            pthread_mutex_lock(&e->mu);
            e->keep_alive_s = NAN; // a per-request keep_alive lasts until the unload it causes
            pthread_mutex_unlock(&e->mu);
        }
        else if (trim) do_trim(e, idle);
        admit_queued(e);
        // One step: one batched forward pass advances every active sequence.
        engine_step(e);
        pthread_mutex_lock(&e->mu);
        e->st.prefix_hits = e->pc.hits;
        e->st.prefix_misses = e->pc.misses;
        e->st.prefix_evictions = e->pc.evictions;
        e->st.prefix_bytes = e->pc.used;
        e->st.prefix_entries = e->pc.n;
        pthread_mutex_unlock(&e->mu);
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
    if (e->o.step_tokens < 1 || e->o.step_tokens > LFMD_MAX_BATCH_TOKENS)
        e->o.step_tokens = LFMD_MAX_BATCH_TOKENS / 2;
    pc_init(&e->pc, e->ops->seq_copy ? e->o.prefix_cache_bytes : 0);
    e->st.prefix_cap = e->pc.cap;
    e->t_start = e->last_activity = engine_now();
    e->keep_alive_s = NAN;
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

void engine_set_keep_alive(struct engine *e, double seconds) {
    pthread_mutex_lock(&e->mu);
    e->keep_alive_s = seconds;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

double engine_expires_in(struct engine *e) {
    pthread_mutex_lock(&e->mu);
    double ka = isnan(e->keep_alive_s) ? e->o.idle_unload_s : e->keep_alive_s;
    bool never = ka < 0 || (ka == 0 && isnan(e->keep_alive_s));
    bool busy = e->q_head || e->n_active;
    double left = never ? INFINITY : busy ? ka : e->last_activity + ka - engine_now();
    pthread_mutex_unlock(&e->mu);
    return left < 0 ? 0 : left;
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
