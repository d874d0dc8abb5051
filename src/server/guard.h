// The HTTP server's protective layer: API-key checks (constant time), CORS, request ids, the
// access log (text or JSON), and connection tracking with per-phase deadlines and eviction of
// idle connections so slow or idle clients cannot hold the server (limits in base/limits.h).
// SPDX-License-Identifier: MIT
#ifndef LFMD_SERVER_GUARD_H
#define LFMD_SERVER_GUARD_H

#include "base/buf.h"
#include "base/err.h"

#include <microhttpd.h>
#include <stdbool.h>

struct guard_opts {
    const char *api_key;        // NULL/"" = no auth
    const char *cors_origins;   // NULL/"" = CORS off; "*" or "https://a,https://b"
    double header_timeout_s;    // new connection -> complete request headers + body
    double keepalive_timeout_s; // idle between requests on one connection
    int max_connections;        // idle ones are evicted above 3/4 of this
};

struct guard;
LFMD_MUST_CHECK int guard_new(const struct guard_opts *o, struct guard **out,
                              struct lfmd_err_ctx *err);
void guard_free(struct guard *g);

// MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard.
void guard_notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe);
// First access callback of a request (headers complete; body may follow).
void guard_request_begin(struct guard *g, struct MHD_Connection *c, const char *method,
                         const char *url);
// The whole body has arrived; the request is being handled (no deadline from here on).
void guard_request_handling(struct MHD_Connection *c);
// MHD_OPTION_NOTIFY_COMPLETED: writes the access log line; the connection becomes idle.
void guard_request_end(struct guard *g, struct MHD_Connection *c,
                       enum MHD_RequestTerminationCode toe);

// True when no key is configured, or the request carries it (Authorization: Bearer, x-api-key).
bool guard_authorized(const struct guard *g, struct MHD_Connection *c);
// Answers an OPTIONS request (CORS preflight when an allowed Origin asks).
enum MHD_Result guard_options(struct guard *g, struct MHD_Connection *c);
// Constant-time string equality (time depends only on the lengths).
bool guard_secret_equal(const char *a, const char *b);
// lfmd_http_* series (connections, drops by reason, responses by status class).
LFMD_MUST_CHECK int guard_metrics(struct guard *g, struct buf *out);

// Adds CORS headers (when the request's Origin is allowed) and X-Request-Id, records status for
// the access log, then queues r. Every handler uses this instead of MHD_queue_response.
enum MHD_Result http_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r);
// Queues b's bytes (taken from b; empty when b has none) as the body with Content-Type ctype and,
// when retry_after > 0, Retry-After: retry_after. MHD_NO when the response cannot be created.
enum MHD_Result http_send_buf(struct MHD_Connection *c, int status, struct buf *b,
                              const char *ctype, int retry_after);

// ---- process log (stderr) ----

// "text" (default) or "json": one object per line with time, level, msg and fields.
void lfmd_log_set_json(bool json);
bool lfmd_log_is_json(void);
// One log line. request_id may be NULL.
void lfmd_log(const char *level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
