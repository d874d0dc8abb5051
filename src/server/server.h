// Front ends over the engine: the HTTP server (OpenAI-compatible API, health, metrics, admin),
// the stdio NDJSON bridge protocol, and the pieces they share (OpenAI request parsing, Prometheus
// text). Invariant: front ends validate untrusted input completely before the engine sees it;
// they never touch the model (only the engine thread does).
// SPDX-License-Identifier: MIT
#ifndef LFMD_SERVER_SERVER_H
#define LFMD_SERVER_SERVER_H

#include "base/buf.h"
#include "base/err.h"
#include "engine/engine.h"
#include "format/json.h"

#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>

// ---- OpenAI request bodies (openai.c) ----

struct oai_request {
    bool chat;                // /v1/chat/completions (else /v1/completions)
    bool stream;
    bool include_usage;       // stream_options.include_usage
    const char *model;        // borrowed from doc; may be NULL
    struct engine_params params; // prompt/msgs/stop borrow from doc and from owned[]
    struct engine_chat_msg msgs[LFMD_MAX_CHAT_MESSAGES];
    char *owned[LFMD_MAX_CHAT_MESSAGES]; // joined multi-part contents (LFMD_MEM_REQUEST)
    int n_owned;
    struct json_doc *doc;     // owned
    // (openai.c, constrained output and logprobs)
    const char *prompts[64];  // /v1/completions: prompt or prompt array (n_prompts >= 1)
    int n_prompts;
    int format;               // response_format: 0 text, 1 json_object, 2 json_schema
    const struct json *schema;// json_schema's schema (borrowed from doc)
};

// A fresh constraint for r's response_format (*out NULL for text); one per submitted prompt.
LFMD_MUST_CHECK int oai_constraint(const struct oai_request *r, struct engine_constraint **out,
                                   struct lfmd_err_ctx *err);
// Stores a LOGPROB event as a record in rec; oai_logprobs_json renders the records as OpenAI's
// logprobs object (chat: {"content":[...]}, completions: tokens/token_logprobs/top_logprobs/
// text_offset with offsets from text_offset0).
LFMD_MUST_CHECK int oai_logprob_record(struct buf *rec, const struct engine_event *ev);
LFMD_MUST_CHECK int oai_logprobs_json(struct buf *out, bool chat, const char *rec, size_t len,
                                      size_t text_offset0);

// Parses and validates body into *r (caller storage, lfmd_calloc it: it is large). On error
// returns LFMD_EINVAL with one message naming the field and what was expected; *param receives
// the field name. Release with oai_request_fini (also after errors).
LFMD_MUST_CHECK int oai_request_parse(const char *body, size_t len, bool chat,
                                      struct oai_request *r, const char **param,
                                      struct lfmd_err_ctx *err);
void oai_request_fini(struct oai_request *r);

// HTTP status for an LFMD_E* code (400, 413, 503, 500, ...) and OpenAI's error type for it.
int oai_http_status(int code);
const char *oai_error_type(int code);
// {"error":{"message":...,"type":...,"param":...,"code":...}}
LFMD_MUST_CHECK int oai_error_json(struct buf *out, int code, const char *msg, const char *param);

// ---- Prometheus text (metrics.c) ----

LFMD_MUST_CHECK int metrics_render(struct engine *e, struct buf *out);

// ---- HTTP server (http.c) ----

struct server_opts {
    const char *host;         // default 127.0.0.1
    int port;                 // default 8080; 0 = any free port (see server_port)
    int max_connections;      // default 256, at most LFMD_MAX_CONNECTIONS
    double conn_timeout_s;    // idle connection timeout
    const char *api_key;      // NULL = no auth; else Bearer KEY or x-api-key on all but /health
    const char *cors_origin;  // NULL = CORS off; "*" or comma-separated origins
    double request_timeout_s; // accept -> complete request (headers + body); slower: dropped
    double keepalive_timeout_s; // idle keep-alive connection lifetime
    size_t max_body_bytes;    // request body cap (413), at most LFMD_MAX_BODY_BYTES
    const char *version;      // reported by /api/version
};
void server_opts_default(struct server_opts *o);

struct server;
// Starts listening (the engine is borrowed until server_stop). Errors: LFMD_EIO (bind failed,
// message names host:port), LFMD_EINVAL, LFMD_ENOMEM.
LFMD_MUST_CHECK int server_start(struct engine *e, const struct server_opts *o, struct server **out,
                                 struct lfmd_err_ctx *err);
int server_port(const struct server *s);
// Stops accepting new connections (in-flight ones continue).
void server_quiesce(struct server *s);
// Number of connections being served right now.
int server_active_connections(const struct server *s);
// Closes everything. NULL is a no-op.
void server_stop(struct server *s);

// ---- stdio NDJSON bridge (stdio.c) ----

// Serves the bridge protocol on in_fd/out until EOF or *stop becomes non-zero; *trim non-zero asks
// for a trim (cleared by this function). Prints INITIALIZED first. Returns 0 on clean exit.
int stdio_serve(struct engine *e, int in_fd, FILE *out, volatile sig_atomic_t *stop,
                volatile sig_atomic_t *trim, double drain_timeout_s);

#endif
