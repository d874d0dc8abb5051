// An engine request seen from an HTTP handler (OpenAI routes in http.c, Ollama routes in
// ollama.c): the engine callback collects the events, text and logprob records under a mutex; the
// handler's thread waits with a timeout and cancels the sequence when the client hangs up; a
// streaming response stages its bytes through one MHD content reader with per-API hooks.
// Ownership: a gen belongs to its handler, or to the streaming response once gen_stream_response
// succeeds (MHD frees it with the response). gen_free releases the engine request first, so no
// callback runs after it. A handler extends a gen by embedding it as its struct's first member.
// SPDX-License-Identifier: MIT
#ifndef LFMD_SERVER_GEN_H
#define LFMD_SERVER_GEN_H

#include "base/buf.h"
#include "base/err.h"
#include "engine/engine.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

// Generated text (and logprob records) not yet consumed; more than this cancels the request.
#define GEN_PENDING_MAX (4u << 20)

struct gen;

// The per-API parts of a streaming response. Each appends to out and returns 0 or an LFMD_E*
// code; an error ends the stream with an error.
struct gen_stream_ops {
    double idle_s; // how long one read waits for text before idle runs
    int (*begin)(struct gen *g, struct buf *out); // once, before anything else; may be NULL
    int (*text)(struct gen *g, struct buf *out, const char *text, size_t len); // g->mu held
    int (*idle)(struct gen *g, struct buf *out);  // no text for idle_s and not done
    int (*end)(struct gen *g, struct buf *out);   // done (g->code non-zero on failure); last
};

struct gen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // Written by the engine callback under mu (fixed once done is set):
    struct buf pending;       // generated text not yet consumed
    struct buf lp;            // LOGPROB records (oai_logprob_record) not yet consumed
    bool started, done;
    int code;                 // DONE: 0 or LFMD_E*
    char msg[512];            // DONE: the error message
    enum engine_finish finish;
    int n_prompt, n_gen;
    double t_start, t_first, t_done; // engine_now() at START, first TEXT, DONE; 0 = not yet
    // The handler's:
    struct engine_req *req;
    int fd;                   // client socket (hang-up detection); -1 = none
    const struct gen_stream_ops *ops;
    int phase;                // streaming: 0 not begun, 1 streaming, 2 finished
    struct buf out;           // staged response bytes
    size_t out_off;
};

// A zeroed allocation of size bytes (at least sizeof(struct gen); a handler's struct whose first
// member is a struct gen) with the gen initialised. c: the connection whose socket is watched
// for a hang-up (NULL: none). NULL when out of memory.
struct gen *gen_new(size_t size, struct MHD_Connection *c);
// Releases the engine request (cancelling it if still running) and frees the allocation. NULL is
// a no-op.
void gen_free(struct gen *g);
// engine_submit with g as the event sink; g->req receives the request. On failure the caller
// still owns p->constraint.
LFMD_MUST_CHECK int gen_submit(struct gen *g, struct engine *e, const struct engine_params *p,
                               struct lfmd_err_ctx *err);
// Waits (no time limit) until the request is done, or has started when want_start; a client
// hang-up cancels it. Returns its error code when it failed by then, else 0.
int gen_wait_first(struct gen *g, bool want_start);
// Cancels the request when the client has hung up.
void gen_cancel_if_gone(struct gen *g);
// A streaming response over g (Content-Type ctype, no caching) driven by ops; it owns g from now
// on. NULL when it cannot be created (the caller still owns g).
struct MHD_Response *gen_stream_response(struct gen *g, const struct gen_stream_ops *ops,
                                         const char *ctype);

#endif
