// Options shared by `lfmd serve` and `lfmd stdio`: one table maps each long flag to its
// environment variable (LFMD_ + upper-cased name) and its parser, so flags and env agree.
// Precedence: profile defaults < environment < command-line flags.
// SPDX-License-Identifier: MIT
#include "options.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum kind { K_STR, K_INT, K_DUR, K_BYTES, K_BOOL };

struct opt {
    const char *name;
    enum kind kind;
    int lo, hi;               // K_INT range
    unsigned bit;             // set-mask bit (explicit values beat the profile)
};

#define BIT_CTX 1u
#define BIT_TRIM 2u

static const struct opt opts[] = {
    {"model", K_STR, 0, 0, 0},
    {"host", K_STR, 0, 0, 0},
    {"port", K_INT, 0, 65535, 0},
    {"memory-limit", K_BYTES, 0, 0, 0},
    {"ctx", K_INT, 1, LFMD_MAX_CTX, BIT_CTX},
    {"max-tokens", K_INT, 1, LFMD_MAX_TOKENS_PER_REQUEST, 0},
    {"parallel", K_INT, 1, LFMD_MAX_PARALLEL, 0},
    {"threads", K_INT, 0, LFMD_MAX_THREADS, 0},
    {"idle-trim", K_DUR, 0, 0, BIT_TRIM},
    {"idle-unload", K_DUR, 0, 0, 0},
    {"preload", K_BOOL, 0, 0, 0},
    {"keep-cache", K_BOOL, 0, 0, 0},
    {"prefix-cache", K_BYTES, 0, 0, 0},
    {"kv-type", K_STR, 0, 0, 0},
    {"no-mmap", K_BOOL, 0, 0, 0},
    {"shutdown-timeout", K_DUR, 0, 0, 0},
    {"profile", K_STR, 0, 0, 0},
    {"queue", K_INT, 1, LFMD_MAX_QUEUE, 0},
    {"queue-timeout", K_DUR, 0, 0, 0},
    {"api-key", K_STR, 0, 0, 0},
    {"max-connections", K_INT, 1, LFMD_MAX_CONNECTIONS, 0},
    {"cors-origin", K_STR, 0, 0, 0},
    {"request-timeout", K_DUR, 0, 0, 0},
    {"keepalive-timeout", K_DUR, 0, 0, 0},
    {"max-body", K_BYTES, 0, 0, 0},
    {"log-format", K_STR, 0, 0, 0},
    {"device", K_STR, 0, 0, 0},
    {"split", K_STR, 0, 0, 0},
    {"gpu-memory-limit", K_BYTES, 0, 0, 0},
};

void serve_config_default(struct serve_config *c) {
    memset(c, 0, sizeof *c);
    engine_opts_default(&c->eng);
    server_opts_default(&c->http);
    c->shutdown_timeout_s = 30;
    c->profile = "auto";
    c->log_format = "text";
}

bool serve_config_is_option(const char *name, bool *takes_value) {
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (strcmp(opts[i].name, name) != 0) continue;
        *takes_value = opts[i].kind != K_BOOL;
        return true;
    }
    return false;
}

static int parse_bool(const char *v, bool *out) {
    if (!v || !*v || !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off"))
        *out = false;
    else
        return LFMD_EINVAL;
    return 0;
}

int serve_config_set(struct serve_config *c, const char *name, const char *v, const char *origin,
                     struct lfmd_err_ctx *err) {
    const struct opt *o = NULL;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strcmp(opts[i].name, name)) o = &opts[i];
    if (!o) return lfmd_err_set(err, LFMD_EINVAL, "unknown option --%s", name);
    long iv = 0;
    double dv = 0;
    size_t bv = 0;
    bool b = false;
    switch (o->kind) {
    case K_INT: {
        char *end;
        iv = strtol(v, &end, 10);
        if (end == v || *end || iv < o->lo || iv > o->hi)
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' is not an integer from %d to %d",
                                origin, v, o->lo, o->hi);
        break;
    }
    case K_DUR:
        if (engine_parse_duration(v, &dv))
            return lfmd_err_set(err, LFMD_EINVAL,
                                "%s: '%s' is not a duration (90s, 5m, 1h or seconds; 0 = off)",
                                origin, v);
        break;
    case K_BYTES:
        if (engine_parse_bytes(v, &bv))
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' is not a size (bytes or K/M/G)",
                                origin, v);
        break;
    case K_BOOL:
        if (parse_bool(v, &b))
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' is not a boolean (1/0, true/false)",
                                origin, v);
        break;
    case K_STR: break;
    }
    c->set_mask |= o->bit;
    if (!strcmp(name, "model")) c->eng.model_path = v;
    else if (!strcmp(name, "host")) c->http.host = v;
    else if (!strcmp(name, "port")) c->http.port = (int)iv;
    else if (!strcmp(name, "memory-limit")) c->eng.memory_limit = bv;
    else if (!strcmp(name, "ctx")) c->eng.n_ctx = (int)iv;
    else if (!strcmp(name, "max-tokens")) c->eng.max_tokens = (int)iv;
    else if (!strcmp(name, "parallel")) c->eng.parallel = (int)iv;
    else if (!strcmp(name, "threads")) c->eng.n_threads = (int)iv;
    else if (!strcmp(name, "idle-trim")) c->eng.idle_trim_s = dv;
    else if (!strcmp(name, "idle-unload")) c->eng.idle_unload_s = dv;
    else if (!strcmp(name, "preload")) c->eng.preload = b;
    else if (!strcmp(name, "keep-cache")) c->eng.keep_cache = b;
    else if (!strcmp(name, "prefix-cache")) c->eng.prefix_cache_bytes = bv;
    else if (!strcmp(name, "no-mmap")) c->no_mmap = b;
    else if (!strcmp(name, "kv-type")) {
        if (strcmp(v, "f16") && strcmp(v, "f32") && strcmp(v, "q8"))
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' is not a KV cache type (f16, f32, q8)",
                                origin, v);
        c->eng.kv_type = v;
    }
    else if (!strcmp(name, "device")) c->device = v;
    else if (!strcmp(name, "split")) c->split = v;
    else if (!strcmp(name, "gpu-memory-limit")) c->gpu_memory_limit = bv;
    else if (!strcmp(name, "shutdown-timeout")) c->shutdown_timeout_s = dv;
    else if (!strcmp(name, "queue")) c->eng.max_queue = (int)iv;
    else if (!strcmp(name, "queue-timeout")) c->eng.queue_timeout_s = dv;
    else if (!strcmp(name, "api-key")) c->http.api_key = v;
    else if (!strcmp(name, "max-connections")) c->http.max_connections = (int)iv;
    else if (!strcmp(name, "cors-origin")) c->http.cors_origin = v;
    else if (!strcmp(name, "request-timeout") || !strcmp(name, "keepalive-timeout")) {
        if (dv <= 0 || dv > 86400)
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' must be between 1ms and 24h", origin,
                                v);
        if (name[0] == 'r') c->http.request_timeout_s = dv;
        else c->http.keepalive_timeout_s = dv;
    } else if (!strcmp(name, "max-body")) {
        if (bv < 1024 || bv > LFMD_MAX_BODY_BYTES)
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' must be from 1K to %uM", origin, v,
                                LFMD_MAX_BODY_BYTES >> 20);
        c->http.max_body_bytes = bv;
    } else if (!strcmp(name, "log-format")) {
        if (strcmp(v, "text") && strcmp(v, "json"))
            return lfmd_err_set(err, LFMD_EINVAL, "%s: '%s' is not text or json", origin, v);
        c->log_format = v;
    } else if (!strcmp(name, "profile")) {
        if (strcmp(v, "auto") && strcmp(v, "small") && strcmp(v, "large"))
            return lfmd_err_set(err, LFMD_EINVAL, "%s: profile '%s' is not auto, small or large",
                                origin, v);
        c->profile = v;
    }
    return 0;
}

int serve_config_from_env(struct serve_config *c, struct lfmd_err_ctx *err) {
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        char env[64] = "LFMD_";
        size_t k = 5;
        for (const char *p = opts[i].name; *p && k < sizeof env - 1; p++)
            env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = 0;
        const char *v = getenv(env);
        if (!v || !*v) continue;
        int rc = serve_config_set(c, opts[i].name, v, env, err);
        if (rc) return rc;
    }
    return 0;
}

size_t serve_total_ram(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;
}

void serve_config_apply_profile(struct serve_config *c) {
    bool small;
    if (!strcmp(c->profile, "small")) small = true;
    else if (!strcmp(c->profile, "large")) small = false;
    else small = serve_total_ram() < (size_t)12 << 30;
    c->profile_small = small;
    if (!(c->set_mask & BIT_CTX)) c->eng.n_ctx = small ? 256 : 1024;
    if (!(c->set_mask & BIT_TRIM)) c->eng.idle_trim_s = small ? 180 : 600;
}
