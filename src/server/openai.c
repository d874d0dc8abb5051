// OpenAI request bodies: /v1/chat/completions and /v1/completions are validated field by field
// into struct oai_request before the engine sees them; each bad field gets one clear message.
// Unknown fields are ignored (clients send many); fields we cannot honour (n > 1) are rejected.
// Also: response_format -> a constraint per prompt, logprobs records and their OpenAI shapes.
// SPDX-License-Identifier: MIT
#include "server.h"

#include "engine/constrain.h"

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

// response_format: {"type":"text"|"json_object"} or {"type":"json_schema","json_schema":
// {"name":..,"schema":{...},"strict":..}}; the schema is compiled once here to report errors.
static int parse_format(struct oai_request *r, const struct json *f, const char **param,
                        struct lfmd_err_ctx *err) {
    if (!f || json_is(f, JSON_NULL)) return 0;
    const char *type = json_str(json_get(f, "type"), NULL);
    if (!json_is(f, JSON_OBJECT) || !type)
        return bad(err, param, "response_format", "must be an object with a \"type\"");
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) {
        r->format = 1;
    } else if (!strcmp(type, "json_schema")) {
        const struct json *js = json_get(f, "json_schema");
        const struct json *sc = json_get(js, "schema");
        if (!json_is(js, JSON_OBJECT) || !sc)
            return bad(err, param, "response_format",
                       "json_schema needs {\"json_schema\":{\"schema\":{...}}}");
        r->format = 2;
        r->schema = sc;
    } else {
        return bad(err, param, "response_format",
                   "type must be \"text\", \"json_object\" or \"json_schema\"");
    }
    struct engine_constraint *c = NULL;
    struct lfmd_err_ctx e2 = {0};
    int rc = oai_constraint(r, &c, &e2);
    constraint_free(c);
    if (rc) {
        *param = "response_format";
        return lfmd_err_set(err, rc, "'response_format' %s", e2.msg);
    }
    return 0;
}

// Chat: logprobs (bool) + top_logprobs (0..20). Completions: logprobs (integer 0..20).
static int parse_logprobs(struct oai_request *r, const struct json *root, bool chat,
                          const char **param, struct lfmd_err_ctx *err) {
    const struct json *lp = json_get(root, "logprobs");
    const struct json *top = json_get(root, "top_logprobs");
    int64_t v = 0;
    if (chat) {
        if (lp && !json_is(lp, JSON_NULL)) {
            if (!json_is_bool(lp)) return bad(err, param, "logprobs", "must be true or false");
            r->params.logprobs = json_bool(lp, false);
        }
        if (top && !json_is(top, JSON_NULL)) {
            if (json_int(top, 0, ENGINE_MAX_TOP_LOGPROBS, &v))
                return bad(err, param, "top_logprobs", "must be an integer from 0 to 20");
            if (!r->params.logprobs)
                return bad(err, param, "top_logprobs", "needs \"logprobs\": true");
            r->params.top_logprobs = (int)v;
        }
        return 0;
    }
    if (lp && !json_is(lp, JSON_NULL)) {
        if (json_int(lp, 0, ENGINE_MAX_TOP_LOGPROBS, &v))
            return bad(err, param, "logprobs", "must be an integer from 0 to 20");
        r->params.logprobs = true;
        r->params.top_logprobs = (int)v;
    }
    return 0;
}

int oai_constraint(const struct oai_request *r, struct engine_constraint **out,
                   struct lfmd_err_ctx *err) {
    *out = NULL;
    if (r->format == 1) return constraint_json(NULL, out, err);
    if (r->format == 2) return constraint_json(r->schema, out, err);
    return 0;
}

// Record: float logprob, int32 n_top, uint32 len, bytes; then n_top x (float, uint32, bytes).
static int rec_tok(struct buf *rec, float lp, int n_top, const char *t, size_t len) {
    uint32_t l = (uint32_t)len;
    int32_t nt = n_top;
    int rc = buf_append(rec, &lp, sizeof lp);
    if (!rc && n_top >= 0) rc = buf_append(rec, &nt, sizeof nt);
    if (!rc) rc = buf_append(rec, &l, sizeof l);
    if (!rc) rc = buf_append(rec, t ? t : "", len);
    return rc;
}

int oai_logprob_record(struct buf *rec, const struct engine_event *ev) {
    if (ev->tok.len == 0) return 0; // end-of-turn and other special tokens carry no text
    int rc = rec_tok(rec, ev->tok.logprob, ev->n_top, ev->tok.text, ev->tok.len);
    for (int i = 0; i < ev->n_top && !rc; i++)
        rc = rec_tok(rec, ev->top[i].logprob, -1, ev->top[i].text, ev->top[i].len);
    return rc;
}

struct rec_rd {
    const char *p, *end;
};

static bool rd_tok(struct rec_rd *r, bool head, float *lp, int *n_top, const char **t,
                   uint32_t *len) {
    size_t need = sizeof(float) + (head ? sizeof(int32_t) : 0) + sizeof(uint32_t);
    if ((size_t)(r->end - r->p) < need) return false;
    memcpy(lp, r->p, sizeof *lp);
    r->p += sizeof *lp;
    if (head) {
        int32_t nt;
        memcpy(&nt, r->p, sizeof nt);
        r->p += sizeof nt;
        *n_top = nt;
    }
    memcpy(len, r->p, sizeof *len);
    r->p += sizeof *len;
    if ((size_t)(r->end - r->p) < *len) return false;
    *t = r->p;
    r->p += *len;
    return true;
}

static int lp_num(struct buf *b, float lp) {
    if (!isfinite(lp)) return buf_puts(b, "-9999.0");
    return buf_printf(b, "%.6g", (double)lp);
}

static int bytes_arr(struct buf *b, const char *t, uint32_t len) {
    int rc = buf_putc(b, '[');
    for (uint32_t i = 0; i < len && !rc; i++)
        rc = buf_printf(b, "%s%u", i ? "," : "", (unsigned)(unsigned char)t[i]);
    return rc ? rc : buf_putc(b, ']');
}

int oai_logprobs_json(struct buf *out, bool chat, const char *rec, size_t len,
                      size_t text_offset0) {
    struct rec_rd r = {rec, rec + len};
    float lp;
    int nt;
    const char *t;
    uint32_t tl;
    int rc = 0;
    if (chat) {
        rc = buf_puts(out, "{\"content\":[");
        for (int k = 0; !rc && rd_tok(&r, true, &lp, &nt, &t, &tl); k++) {
            rc = buf_puts(out, k ? ",{\"token\":" : "{\"token\":");
            if (!rc) rc = buf_json_str(out, t, tl);
            if (!rc) rc = buf_puts(out, ",\"logprob\":");
            if (!rc) rc = lp_num(out, lp);
            if (!rc) rc = buf_puts(out, ",\"bytes\":");
            if (!rc) rc = bytes_arr(out, t, tl);
            if (!rc) rc = buf_puts(out, ",\"top_logprobs\":[");
            for (int i = 0; i < nt && !rc; i++) {
                int d;
                if (!rd_tok(&r, false, &lp, &d, &t, &tl)) return LFMD_EINVAL;
                rc = buf_puts(out, i ? ",{\"token\":" : "{\"token\":");
                if (!rc) rc = buf_json_str(out, t, tl);
                if (!rc) rc = buf_puts(out, ",\"logprob\":");
                if (!rc) rc = lp_num(out, lp);
                if (!rc) rc = buf_puts(out, ",\"bytes\":");
                if (!rc) rc = bytes_arr(out, t, tl);
                if (!rc) rc = buf_putc(out, '}');
            }
            if (!rc) rc = buf_puts(out, "]}");
        }
        return rc ? rc : buf_puts(out, "]}");
    }
    // completions: four parallel arrays, written in four passes over the records
    static const char *const keys[] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    rc = buf_putc(out, '{');
    for (int pass = 0; pass < 4 && !rc; pass++) {
        rc = buf_printf(out, "%s\"%s\":[", pass ? "," : "", keys[pass]);
        r.p = rec;
        size_t off = text_offset0;
        for (int k = 0; !rc && rd_tok(&r, true, &lp, &nt, &t, &tl); k++) {
            if (k) rc = buf_putc(out, ',');
            if (!rc && pass == 0) rc = buf_json_str(out, t, tl);
            if (!rc && pass == 1) rc = lp_num(out, lp);
            if (!rc && pass == 3) rc = buf_printf(out, "%zu", off);
            off += tl;
            if (!rc && pass == 2) rc = buf_putc(out, '{');
            for (int i = 0; i < nt && !rc; i++) {
                int d;
                float l2;
                if (!rd_tok(&r, false, &l2, &d, &t, &tl)) return LFMD_EINVAL;
                if (pass != 2) continue;
                if (i) rc = buf_putc(out, ',');
                if (!rc) rc = buf_json_str(out, t, tl);
                if (!rc) rc = buf_putc(out, ':');
                if (!rc) rc = lp_num(out, l2);
            }
            if (!rc && pass == 2) rc = buf_putc(out, '}');
        }
        if (!rc) rc = buf_putc(out, ']');
    }
    return rc ? rc : buf_putc(out, '}');
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
        if (!j) return bad(err, param, "prompt", "is required");
        int n = json_is(j, JSON_ARRAY) ? (int)j->len : 1;
        if (n < 1 || n > (int)(sizeof r->prompts / sizeof r->prompts[0]))
            return bad(err, param, "prompt", "must be a string or an array of 1 to 64 strings");
        for (int i = 0; i < n; i++) {
            const struct json *x = json_is(j, JSON_ARRAY) ? json_at(j, (size_t)i) : j;
            if (!json_is(x, JSON_STRING))
                return bad(err, param, "prompt", "must be a string or an array of strings");
            if (strlen(x->u.str) != x->len)
                return bad(err, param, "prompt", "contains a NUL character");
            r->prompts[i] = x->u.str;
        }
        r->n_prompts = n;
        r->params.prompt = r->prompts[0];
    }
    if ((rc = parse_format(r, json_get(root, "response_format"), param, err))) return rc;
    if ((rc = parse_logprobs(r, root, chat, param, err))) return rc;
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
