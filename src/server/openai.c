// OpenAI request bodies: /v1/chat/completions and /v1/completions are validated field by field
// into struct oai_request before the engine sees them; each bad field gets one clear message.
// Unknown fields are ignored (clients send many); fields we cannot honour (n > 1) are rejected.
// SPDX-License-Identifier: MIT
#include "server.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int bad(struct lfmd_err_ctx *err, const char **param, const char *field, const char *what) {
    *param = field;
    return lfmd_err_set(err, LFMD_EINVAL, "'%s' %s", field, what);
}

// Content: a string, null, or an array of {"type":"text","text":...} parts (joined).
static int parse_content(struct oai_request *r, const struct json *c, const char **out,
                         const char **param, struct lfmd_err_ctx *err) {
    if (!c || json_is(c, JSON_NULL)) {
        *out = "";
        return 0;
    }
    if (json_is(c, JSON_STRING)) {
        if (strlen(c->u.str) != c->len)
            return bad(err, param, "messages", "content contains a NUL character");
        *out = c->u.str;
        return 0;
    }
    if (!json_is(c, JSON_ARRAY))
        return bad(err, param, "messages", "content must be a string or an array of text parts");
    struct buf b;
    buf_init(&b, LFMD_MAX_BODY_BYTES, LFMD_MEM_REQUEST);
    for (size_t i = 0; i < c->len; i++) {
        const struct json *part = json_at(c, i);
        const char *type = json_str(json_get(part, "type"), NULL);
        const char *text = json_str(json_get(part, "text"), NULL);
        if (!type || strcmp(type, "text") != 0 || !text) {
            buf_fini(&b);
            return bad(err, param, "messages", "only content parts of type \"text\" are supported");
        }
        if (buf_puts(&b, text)) {
            buf_fini(&b);
            return lfmd_err_set(err, LFMD_ETOOBIG, "message content too large");
        }
    }
    if (r->n_owned >= LFMD_MAX_CHAT_MESSAGES) {
        buf_fini(&b);
        return bad(err, param, "messages", "too many messages");
    }
    char *s = buf_take(&b, NULL);
    if (!s) s = lfmd_strdup("", LFMD_MEM_REQUEST);
    if (!s) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    r->owned[r->n_owned++] = s;
    *out = s;
    return 0;
}

static int parse_messages(struct oai_request *r, const struct json *m, const char **param,
                          struct lfmd_err_ctx *err) {
    if (!m) return bad(err, param, "messages", "is required");
    if (!json_is(m, JSON_ARRAY) || m->len == 0)
        return bad(err, param, "messages", "must be a non-empty array of messages");
    if (m->len > LFMD_MAX_CHAT_MESSAGES)
        return bad(err, param, "messages", "has more than 1024 messages");
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < m->len; i++) {
        const struct json *msg = json_at(m, i);
        char where[64];
        snprintf(where, sizeof where, "messages[%zu]", i);
        if (!json_is(msg, JSON_OBJECT)) {
            *param = "messages";
            return lfmd_err_set(err, LFMD_EINVAL, "'%s' must be an object", where);
        }
        const char *role = json_str(json_get(msg, "role"), NULL);
        bool ok = false;
        for (size_t k = 0; role && k < sizeof roles / sizeof roles[0]; k++)
            ok = ok || !strcmp(role, roles[k]);
        if (!ok) {
            *param = "messages";
            return lfmd_err_set(err, LFMD_EINVAL,
                                "'%s.role' must be one of system, developer, user, assistant, "
                                "tool",
                                where);
        }
        r->msgs[i].role = !strcmp(role, "developer") ? "system" : role;
        int rc = parse_content(r, json_get(msg, "content"), &r->msgs[i].content, param, err);
        if (rc) return rc;
    }
    r->params.msgs = r->msgs;
    r->params.n_msgs = (int)m->len;
    return 0;
}

static int parse_stop(struct oai_request *r, const struct json *s, const char **param,
                      struct lfmd_err_ctx *err) {
    if (!s || json_is(s, JSON_NULL)) return 0;
    if (json_is(s, JSON_STRING)) {
        r->params.stop[0] = s->u.str;
        r->params.n_stop = 1;
        return 0;
    }
    if (!json_is(s, JSON_ARRAY) || s->len > LFMD_MAX_STOP_STRINGS)
        return bad(err, param, "stop", "must be a string or an array of at most 16 strings");
    for (size_t i = 0; i < s->len; i++) {
        const struct json *x = json_at(s, i);
        if (!json_is(x, JSON_STRING))
            return bad(err, param, "stop", "must contain only strings");
        r->params.stop[r->params.n_stop++] = x->u.str;
    }
    return 0;
}

static int get_number(const struct json *root, const char *field, double lo, double hi, double *out,
                      bool *present, const char **param, struct lfmd_err_ctx *err) {
    const struct json *j = json_get(root, field);
    *present = false;
    if (!j || json_is(j, JSON_NULL)) return 0;
    if (!json_is(j, JSON_NUMBER) || !(j->u.num >= lo && j->u.num <= hi)) {
        *param = field;
        return lfmd_err_set(err, LFMD_EINVAL, "'%s' must be a number from %g to %g", field, lo, hi);
    }
    *out = j->u.num;
    *present = true;
    return 0;
}

int oai_request_parse(const char *body, size_t len, bool chat, struct oai_request *r,
                      const char **param, struct lfmd_err_ctx *err) {
    *param = NULL;
    r->chat = chat;
    engine_params_default(&r->params);
    struct lfmd_err_ctx jerr = {0};
    int rc = json_parse(body, len, LFMD_MEM_REQUEST, &r->doc, &jerr);
    if (rc == LFMD_ENOMEM) return lfmd_err_set(err, LFMD_EBUDGET, "no memory to parse the body");
    if (rc) return lfmd_err_set(err, LFMD_EINVAL, "request body is not valid JSON: %s", jerr.msg);
    const struct json *root = json_root(r->doc);
    if (!json_is(root, JSON_OBJECT))
        return lfmd_err_set(err, LFMD_EINVAL, "request body must be a JSON object");

    const struct json *j;
    if ((j = json_get(root, "model")) && !json_is(j, JSON_NULL)) {
        if (!json_is(j, JSON_STRING))
            return bad(err, param, "model", "must be a string");
        r->model = j->u.str;
    }
    if (chat) {
        if ((rc = parse_messages(r, json_get(root, "messages"), param, err))) return rc;
    } else {
        j = json_get(root, "prompt");
        if (j && json_is(j, JSON_ARRAY) && j->len == 1) j = json_at(j, 0);
        if (!j) return bad(err, param, "prompt", "is required");
        if (!json_is(j, JSON_STRING))
            return bad(err, param, "prompt", "must be a string (or an array of one string)");
        if (strlen(j->u.str) != j->len)
            return bad(err, param, "prompt", "contains a NUL character");
        r->params.prompt = j->u.str;
    }
    if ((j = json_get(root, "stream")) && !json_is(j, JSON_NULL)) {
        if (!json_is_bool(j)) return bad(err, param, "stream", "must be true or false");
        r->stream = json_bool(j, false);
    }
    if ((j = json_get(root, "stream_options")) && json_is(j, JSON_OBJECT))
        r->include_usage = json_bool(json_get(j, "include_usage"), false);
    const char *mt_field = json_get(root, "max_completion_tokens") ? "max_completion_tokens"
                                                                    : "max_tokens";
    if ((j = json_get(root, mt_field)) && !json_is(j, JSON_NULL)) {
        int64_t v;
        if (json_int(j, 1, LFMD_MAX_TOKENS_PER_REQUEST, &v))
            return bad(err, param, mt_field, "must be an integer from 1 to 65536");
        r->params.max_tokens = (int)v;
    }
    double v;
    bool present;
    if ((rc = get_number(root, "temperature", 0, 2, &v, &present, param, err))) return rc;
    if (present) r->params.sampling.temperature = (float)v;
    if ((rc = get_number(root, "top_p", 0, 1, &v, &present, param, err))) return rc;
    if (present) {
        if (v <= 0) return bad(err, param, "top_p", "must be greater than 0");
        r->params.sampling.top_p = (float)v;
    }
    if ((rc = get_number(root, "frequency_penalty", -2, 2, &v, &present, param, err))) return rc;
    if ((rc = get_number(root, "presence_penalty", -2, 2, &v, &present, param, err))) return rc;
    if ((j = json_get(root, "seed")) && !json_is(j, JSON_NULL)) {
        int64_t s;
        if (json_int(j, INT64_MIN, INT64_MAX, &s))
            return bad(err, param, "seed", "must be an integer");
        r->params.sampling.seed = (uint64_t)s;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->params.sampling.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)r;
    }
    if ((j = json_get(root, "n")) && !json_is(j, JSON_NULL)) {
        int64_t n;
        if (json_int(j, 1, 1, &n)) return bad(err, param, "n", "must be 1");
    }
    if ((rc = parse_stop(r, json_get(root, "stop"), param, err))) return rc;
    return 0;
}

void oai_request_fini(struct oai_request *r) {
    for (int i = 0; i < r->n_owned; i++) lfmd_free(r->owned[i]);
    r->n_owned = 0;
    json_doc_free(r->doc);
    r->doc = NULL;
}

int oai_http_status(int code) {
    switch (code) {
    case 0: return 200;
    case LFMD_EINVAL: return 400;
    case LFMD_ETOOBIG: return 413;
    case LFMD_ENOENT: return 404;
    case LFMD_EBUDGET:
    case LFMD_EBUSY:
    case LFMD_ETIMEDOUT: return 503;
    case LFMD_ECANCELED: return 499;
    default: return 500;
    }
}

const char *oai_error_type(int code) {
    switch (oai_http_status(code)) {
    case 400:
    case 413:
    case 404: return "invalid_request_error";
    case 503: return "server_overloaded";
    default: return "server_error";
    }
}

int oai_error_json(struct buf *out, int code, const char *msg, const char *param) {
    int rc = buf_puts(out, "{\"error\":{\"message\":");
    if (!rc) rc = buf_json_str(out, msg, strlen(msg));
    if (!rc) rc = buf_printf(out, ",\"type\":\"%s\",\"param\":", oai_error_type(code));
    if (!rc) rc = param ? buf_json_str(out, param, strlen(param)) : buf_puts(out, "null");
    if (!rc) rc = buf_printf(out, ",\"code\":\"%s\"}}", code ? lfmd_err_name(code) : "ok");
    return rc;
}
