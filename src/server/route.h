// Routing: score every candidate route name after a routing prompt (one shared prefill, the
// template prefix from the prefix cache) and normalise over the candidates. Used by POST
// /v1/route, `lfmd route` and the stdio routing/classification/coordination tasks.
// Invariant: probabilities are a softmax of the model's summed log-probs of "NAME<end of turn>".
// SPDX-License-Identifier: MIT
#ifndef LFMD_SERVER_ROUTE_H
#define LFMD_SERVER_ROUTE_H

#include "base/buf.h"
#include "engine/engine.h"

#define ROUTE_MAX_INPUTS 256

struct route_def {
    const char *name;
    const char *desc;         // NULL or "" = no description
};

struct route_result {
    int code;                 // 0 or LFMD_E*
    char msg[256];
    int best;                 // index into the routes
    double prob[ENGINE_MAX_CHOICES];
    double logp[ENGINE_MAX_CHOICES];
    int n_prompt, n_cached;
};

// The five default routes of models/README.md.
extern const struct route_def route_defaults[5];

// The routing system prompt: header, one "NAME: DESCRIPTION" line per route, footer, joined
// with "\n" (models/README.md).
LFMD_MUST_CHECK int route_system_prompt(const struct route_def *routes, int n, struct buf *out);

// Routes n_inputs texts (all submitted at once: one batch) and waits for every result.
// system: NULL = route_system_prompt(routes). context: NULL or appended to each input.
LFMD_MUST_CHECK int route_run(struct engine *e, const char *system, const struct route_def *routes,
                              int n_routes, const char *const *inputs, int n_inputs,
                              const char *context, double deadline_ms, struct route_result *res,
                              struct lfmd_err_ctx *err);

// POST /v1/route: parses body, routes, writes the JSON reply into out. Returns 0, or an LFMD_E*
// with err set (and *param naming the bad field) for the caller's error reply.
LFMD_MUST_CHECK int route_http(struct engine *e, const char *body, size_t len, struct buf *out,
                               const char **param, struct lfmd_err_ctx *err);

// Parses "NAME: description" lines (optionally bulleted or numbered) out of a free-text prompt.
// Fills routes with pointers into the owned copy *store (free with lfmd_free); returns the count.
int route_parse_listed(const char *prompt, struct route_def *routes, int max, char **store);

#endif
