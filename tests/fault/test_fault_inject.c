// Fault injection: the n-th allocation (lfmd_alloc_fail_after) or the n-th file call
// (lfmd_io_fail_after: open/pread/read/mmap) fails, for n = 0, 1, 2, ... through model open,
// tokenizer load, a forward pass, and engine request handling/generation (the fake "@test" model
// and the embedded router model). Every failure must give a clean error with a message and no
// leak (lfmd_alloc_live() back to its baseline), and the engine must serve the next request.
// Sweeps stop when an operation succeeds with the fault armed past its last call. Long sweeps
// (thousands of allocations in a tokenizer load) test every point up to 300, then a stride.
// SPDX-License-Identifier: MIT
#include "check.h"

#include "base/alloc.h"
#include "base/io.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long g_faults; // injected faults that produced a clean error

enum kind { ALLOC, IO };
static void arm(enum kind k, long n) {
    if (k == ALLOC) lfmd_alloc_fail_after(n);
    else lfmd_io_fail_after(n);
}
static void disarm(void) {
    lfmd_alloc_fail_after(-1);
    lfmd_io_fail_after(-1);
}
static long next_n(long n) { return n < 300 ? n + 1 : n + 1 + n / 40; }

static char g_router[1024];

// ---- model open ----
typedef int (*op_fn)(struct lfmd_err_ctx *err); // 0 on success (everything released again)

static int op_model_open(struct lfmd_err_ctx *err) {
    struct model *m = NULL;
    struct model_open_opts o = {0};
    int rc = model_open(g_router, &o, &m, err);
    if (!rc) model_close(m);
    return rc;
}

static int op_tokenizer_load(struct lfmd_err_ctx *err) {
    struct tokenizer *t = NULL;
    int rc = tokenizer_load(g_router, &t, err);
    if (!rc) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = tokenizer_encode(t, "route: hello world", 18, true, true, &ids, &n, err);
        lfmd_free(ids);
        tokenizer_free(t);
    }
    return rc;
}

static int op_forward(struct lfmd_err_ctx *err) {
    static struct model *m;
    if (!m) {
        struct model_open_opts o = {0};
        if (model_open(g_router, &o, &m, err)) return -1; // opened once, outside the fault
    }
    struct runner *r = NULL;
    struct seq *s = NULL;
    float *logits = lfmd_malloc((size_t)model_get_config(m)->n_vocab * sizeof(float),
                                LFMD_MEM_SCRATCH);
    int rc = logits ? 0 : lfmd_err_set(err, LFMD_ENOMEM, "logits");
    if (!rc) rc = runner_new(m, 2, 8, &r, err);
    if (!rc) rc = seq_new(m, 16, &s, err);
    int32_t toks[4] = {1, 2, 3, 4};
    if (!rc) rc = model_forward(r, s, toks, 4, logits, err);
    seq_free(s);
    runner_free(r);
    lfmd_free(logits);
    return rc;
}

static void sweep(const char *what, enum kind k, op_fn fn) {
    long base = lfmd_alloc_live();
    long n = 0, faults = 0;
    for (;; n = next_n(n)) {
        struct lfmd_err_ctx err = {0};
        arm(k, n);
        int rc = fn(&err);
        disarm();
        if (lfmd_alloc_live() != base) {
            fprintf(stderr, "%s: fault %s #%ld leaked %ld allocations (rc %d: %s)\n", what,
                    k == ALLOC ? "alloc" : "io", n, lfmd_alloc_live() - base, rc, err.msg);
            CHECK(0);
            return;
        }
        if (rc == 0) break;
        if (!err.msg[0] || rc >= 0) {
            fprintf(stderr, "%s: fault #%ld: rc %d without a message\n", what, n, rc);
            CHECK(0);
        }
        faults++;
        if (n > 200000) {
            CHECK(0);
            break;
        }
    }
    // Unarmed it must succeed.
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(fn(&err), 0);
    printf("%-22s %-5s: %ld faults injected, all clean (first success at n=%ld)\n", what,
           k == ALLOC ? "alloc" : "io", faults, n);
    g_faults += faults;
}

// ---- engine ----
struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int code;
    char msg[256];
    int n_gen;
};

static void on_event(void *user, const struct engine_event *ev) {
    struct collect *c = user;
    if (ev->kind != ENGINE_EV_DONE) return;
    pthread_mutex_lock(&c->mu);
    c->done = true;
    c->code = ev->code;
    c->n_gen = ev->n_gen;
    snprintf(c->msg, sizeof c->msg, "%s", ev->msg ? ev->msg : "");
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

// Submits one request; returns the submit error or the DONE code; *msg_ok when an error had a
// message.
static int request(struct engine *e, int max_tokens, enum kind k, long n, bool *msg_ok) {
    struct collect c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct engine_params p;
    engine_params_default(&p);
    p.prompt = "route: hello there";
    p.max_tokens = max_tokens;
    struct engine_req *r = NULL;
    struct lfmd_err_ctx err = {0};
    if (n >= 0) arm(k, n);
    int rc = engine_submit(e, &p, on_event, &c, &r, &err);
    if (rc) {
        disarm();
        *msg_ok = err.msg[0] != 0;
        return rc;
    }
    pthread_mutex_lock(&c.mu);
    while (!c.done) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    disarm();
    engine_req_release(r);
    *msg_ok = c.code == 0 || c.msg[0];
    return c.code;
}

// Waits until the engine is idle, trims it, and waits for the live count to reach target.
static bool settle(struct engine *e, long target) {
    engine_trim(e);
    for (int i = 0; i < 3000; i++) {
        if (lfmd_alloc_live() == target) return true;
        if (i % 100 == 99) engine_trim(e);
        usleep(1000);
    }
    return false;
}

static void sweep_engine(const char *model, enum kind k, bool lazy_load) {
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = model;
    o.ops = engine_ops_for_path(model);
    o.n_ctx = 64;
    o.max_tokens = 8;
    o.n_threads = 2;
    o.preload = !lazy_load;
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(engine_start(&o, &e, &err), 0);
    if (!e) return;
    bool ok;
    if (!lazy_load) CHECK_EQ(request(e, 4, k, -1, &ok), 0); // warm: prefix cache, runner
    if (lazy_load) engine_unload(e);
    // Baseline: idle and trimmed (lazy: unloaded).
    if (lazy_load) {
        for (int i = 0; i < 2000 && engine_get_state(e) != ENGINE_UNLOADED; i++) usleep(1000);
    }
    settle(e, lfmd_alloc_live());
    usleep(20000);
    long base = lfmd_alloc_live();
    long n = 0, faults = 0;
    for (;; n = next_n(n)) {
        int rc = request(e, 4, k, n, &ok);
        if (rc) {
            faults++;
            if (!ok) {
                fprintf(stderr, "engine %s fault #%ld: error %d without a message\n", model, n, rc);
                CHECK(0);
            }
        }
        // The engine keeps serving.
        int rc2 = request(e, 2, k, -1, &ok);
        if (rc2) {
            fprintf(stderr, "engine %s: request after fault #%ld failed: %d\n", model, n, rc2);
            CHECK(0);
            break;
        }
        if (lazy_load) {
            engine_unload(e);
            for (int i = 0; i < 2000 && engine_get_state(e) != ENGINE_UNLOADED; i++) usleep(1000);
        }
        if (!settle(e, base)) {
            fprintf(stderr, "engine %s: fault %s #%ld: live %ld, baseline %ld\n", model,
                    k == ALLOC ? "alloc" : "io", n, lfmd_alloc_live(), base);
            CHECK(0);
            break;
        }
        if (rc == 0) break;
        if (n > 100000) break;
    }
    printf("engine %-14s %-5s %s: %ld faults injected, engine served after each (n=%ld)\n",
           model[0] == '@' ? model : "router", k == ALLOC ? "alloc" : "io",
           lazy_load ? "load+gen" : "gen", faults, n);
    g_faults += faults;
    engine_stop(e, 5);
}

int main(void) {
    const char *src = getenv("LFMD_SRC");
    snprintf(g_router, sizeof g_router, "%s/models/lfm2-router", src ? src : LFMD_SOURCE_DIR);
    setenv("LFMD_TEST_TOKEN_MS", "0", 1);
    long base = lfmd_alloc_live();
    sweep("model_open", ALLOC, op_model_open);
    sweep("model_open", IO, op_model_open);
    sweep("tokenizer_load+encode", ALLOC, op_tokenizer_load);
    sweep("tokenizer_load+encode", IO, op_tokenizer_load);
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(op_forward(&err), 0); // opens the model it keeps, outside the sweep
    sweep("runner+seq+forward", ALLOC, op_forward);
    (void)base;
    sweep_engine("@test", ALLOC, false);
    sweep_engine("@test", ALLOC, true);
    sweep_engine(g_router, ALLOC, false);
    sweep_engine(g_router, IO, true);
    sweep_engine(g_router, ALLOC, true);
    printf("total: %ld injected faults, every one a clean error with no leak\n", g_faults);
    return check_done();
}
