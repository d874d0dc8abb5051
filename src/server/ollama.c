// Ollama-compatible API over the same engine as the OpenAI routes: /api/generate and /api/chat
// (NDJSON streaming by default, stream:false for one object), /api/ps, /api/tags, /api/show,
// /api/version. keep_alive maps onto the engine's idle unload (engine_set_keep_alive).
// Invariant: like openai.c, every field is validated before the engine sees the request; one
// model is served whatever name the client asks for (the reply echoes the requested name).
// SPDX-License-Identifier: MIT
#include "ollama.h"

#include "gen.h"

#include "engine/constrain.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define OL_MODEL_NAME_MAX 200

// ---- request ----

struct ol_request {
    bool chat, stream, unload_only;
    bool keep_alive_set;
    double keep_alive_s;      // -1 forever, 0 unload, >0 seconds
    char model[OL_MODEL_NAME_MAX + 1];
    struct engine_params params;
    struct engine_chat_msg msgs[LFMD_MAX_CHAT_MESSAGES];
    struct json_doc *doc;
};

static int bad(struct lfmd_err_ctx *err, const char *field, const char *what) {
    return lfmd_err_set(err, LFMD_EINVAL, "'%s' %s", field, what);
}

// Go-style duration: optional sign, then number+unit groups (ns us µs ms s m h); a bare number is
// seconds.
int ollama_parse_keep_alive(const char *s, double *out) {
    const char *p = s;
    double sign = 1;
    if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
    if (!*p) return LFMD_EINVAL;
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || v < 0) return LFMD_EINVAL;
    if (!*end) {
        *out = sign * v < 0 ? -1 : v;
        return 0;
    }
    double total = 0;
    for (;;) {
        double mul;
        if (!strncmp(end, "ns", 2)) mul = 1e-9, end += 2;
        else if (!strncmp(end, "us", 2)) mul = 1e-6, end += 2;
        else if (!strncmp(end, "\xc2\xb5s", 3)) mul = 1e-6, end += 3;
        else if (!strncmp(end, "ms", 2)) mul = 1e-3, end += 2;
        else if (*end == 's') mul = 1, end++;
        else if (*end == 'm') mul = 60, end++;
        else if (*end == 'h') mul = 3600, end++;
        else return LFMD_EINVAL;
        total += v * mul;
        if (!*end) break;
        p = end;
        v = strtod(p, &end);
        if (end == p || !isfinite(v) || v < 0) return LFMD_EINVAL;
    }
    *out = sign < 0 && total > 0 ? -1 : total;
    return 0;
}

static int parse_keep_alive(struct ol_request *r, const struct json *j, struct lfmd_err_ctx *err) {
    if (!j || json_is(j, JSON_NULL)) return 0;
    double v;
    if (json_is(j, JSON_NUMBER)) {
        if (!isfinite(j->u.num)) return bad(err, "keep_alive", "must be finite");
        v = j->u.num < 0 ? -1 : j->u.num;
    } else if (json_is(j, JSON_STRING)) {
        if (ollama_parse_keep_alive(j->u.str, &v))
            return bad(err, "keep_alive",
                       "must be seconds or a duration such as \"5m\", \"1h30m\", \"-1\" or \"0\"");
    } else {
        return bad(err, "keep_alive", "must be a number of seconds or a duration string");
    }
    r->keep_alive_set = true;
    r->keep_alive_s = v;
    return 0;
}

static int opt_num(const struct json *opts, const char *name, double lo, double hi, double *out,
                   bool *present, struct lfmd_err_ctx *err) {
    const struct json *j = json_get(opts, name);
    *present = false;
    if (!j || json_is(j, JSON_NULL)) return 0;
    if (!json_is(j, JSON_NUMBER) || !(j->u.num >= lo && j->u.num <= hi))
        return lfmd_err_set(err, LFMD_EINVAL, "'options.%s' must be a number from %g to %g", name,
                            lo, hi);
    *out = j->u.num;
    *present = true;
    return 0;
}

static int parse_options(struct ol_request *r, const struct json *o, struct lfmd_err_ctx *err) {
    if (!o || json_is(o, JSON_NULL)) return 0;
    if (!json_is(o, JSON_OBJECT)) return bad(err, "options", "must be an object");
    struct sampler_params *sp = &r->params.sampling;
    double v;
    bool have;
    int rc;
    if ((rc = opt_num(o, "temperature", 0, 100, &v, &have, err))) return rc;
    if (have) sp->temperature = (float)v;
    if ((rc = opt_num(o, "top_p", 0, 1, &v, &have, err))) return rc;
    if (have) sp->top_p = v > 0 ? (float)v : 1.0f;
    if ((rc = opt_num(o, "min_p", 0, 1, &v, &have, err))) return rc;
    if (have) sp->min_p = (float)v;
    if ((rc = opt_num(o, "top_k", 0, LFMD_MAX_VOCAB, &v, &have, err))) return rc;
    if (have) sp->top_k = (int)v;
    if ((rc = opt_num(o, "repeat_penalty", 0, 100, &v, &have, err))) return rc;
    if (have && v > 0) sp->repeat_penalty = (float)v;
    if ((rc = opt_num(o, "repeat_last_n", -1, LFMD_MAX_CTX, &v, &have, err))) return rc;
    if (have) sp->repeat_last_n = v < 0 ? 0 : (int)v;
    if ((rc = opt_num(o, "num_predict", -2, LFMD_MAX_TOKENS_PER_REQUEST, &v, &have, err)))
        return rc;
    if (have) r->params.max_tokens = v <= 0 ? 0 : (int)v; // -1/-2: up to the server's cap
    // num_ctx: the server's --ctx is fixed per process; smaller or larger values are accepted
    // and prompts longer than --ctx still get 400 with both counts.
    if ((rc = opt_num(o, "num_ctx", 0, LFMD_MAX_CTX, &v, &have, err))) return rc;
    const struct json *j = json_get(o, "seed");
    if (j && !json_is(j, JSON_NULL)) {
        int64_t s;
        if (json_int(j, INT64_MIN, INT64_MAX, &s)) return bad(err, "options.seed", "must be an integer");
        sp->seed = (uint64_t)s;
    }
    j = json_get(o, "stop");
    if (j && !json_is(j, JSON_NULL)) {
        if (json_is(j, JSON_STRING)) {
            r->params.stop[r->params.n_stop++] = j->u.str;
        } else if (json_is(j, JSON_ARRAY) && j->len <= LFMD_MAX_STOP_STRINGS) {
            for (size_t i = 0; i < j->len; i++) {
                const struct json *x = json_at(j, i);
                if (!json_is(x, JSON_STRING))
                    return bad(err, "options.stop", "must contain only strings");
                r->params.stop[r->params.n_stop++] = x->u.str;
            }
        } else {
            return bad(err, "options.stop", "must be an array of at most 16 strings");
        }
    }
    return 0;
}

// format: "json" (any JSON object) or a JSON schema -> a constraint the engine enforces.
static int parse_format(struct ol_request *r, const struct json *f, struct lfmd_err_ctx *err) {
    if (!f || json_is(f, JSON_NULL)) return 0;
    if (json_is(f, JSON_STRING) && !f->u.str[0]) return 0;
    const struct json *schema = f;
    struct json_doc *any = NULL;
    if (json_is(f, JSON_STRING)) {
        if (strcmp(f->u.str, "json"))
            return bad(err, "format", "must be \"json\" or a JSON schema object");
        static const char obj[] = "{\"type\":\"json_object\"}";
        struct lfmd_err_ctx jerr = {0};
        if (json_parse(obj, sizeof obj - 1, LFMD_MEM_REQUEST, &any, &jerr))
            return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        schema = json_root(any);
    } else if (!json_is(f, JSON_OBJECT)) {
        return bad(err, "format", "must be \"json\" or a JSON schema object");
    }
    struct lfmd_err_ctx cerr = {0};
    int rc = constraint_json(schema, &r->params.constraint, &cerr);
    json_doc_free(any);
    if (rc) return lfmd_err_set(err, rc, "'format': %s", cerr.msg);
    return 0;
}

static bool no_nul(const struct json *j) { return strlen(j->u.str) == j->len; }

static int parse_messages(struct ol_request *r, const struct json *m, struct lfmd_err_ctx *err) {
    if (!m || !json_is(m, JSON_ARRAY)) return bad(err, "messages", "must be an array of messages");
    if (m->len > LFMD_MAX_CHAT_MESSAGES) return bad(err, "messages", "has more than 1024 messages");
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    for (size_t i = 0; i < m->len; i++) {
        const struct json *msg = json_at(m, i);
        if (!json_is(msg, JSON_OBJECT))
            return lfmd_err_set(err, LFMD_EINVAL, "'messages[%zu]' must be an object", i);
        const char *role = json_str(json_get(msg, "role"), NULL);
        bool ok = false;
        for (size_t k = 0; role && k < sizeof roles / sizeof roles[0]; k++)
            ok = ok || !strcmp(role, roles[k]);
        if (!ok)
            return lfmd_err_set(err, LFMD_EINVAL,
                                "'messages[%zu].role' must be system, user, assistant or tool", i);
        const struct json *c = json_get(msg, "content");
        if (c && !json_is(c, JSON_NULL) && (!json_is(c, JSON_STRING) || !no_nul(c)))
            return lfmd_err_set(err, LFMD_EINVAL, "'messages[%zu].content' must be a string", i);
        const struct json *im = json_get(msg, "images");
        if (im && json_is(im, JSON_ARRAY) && im->len > 0)
            return lfmd_err_set(err, LFMD_EINVAL, "'messages[%zu].images': images are not "
                                                  "supported (text-only models)", i);
        r->msgs[i].role = role;
        r->msgs[i].content = c && json_is(c, JSON_STRING) ? c->u.str : "";
    }
    r->params.msgs = r->msgs;
    r->params.n_msgs = (int)m->len;
    if (m->len == 0) r->unload_only = true; // Ollama: empty messages only loads/unloads
    return 0;
}

static int ol_parse(const char *body, size_t len, bool chat, struct ol_request *r,
                    struct lfmd_err_ctx *err) {
    r->chat = chat;
    r->stream = true;
    engine_params_default(&r->params);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->params.sampling.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)r;
    struct lfmd_err_ctx jerr = {0};
    int rc = json_parse(body, len, LFMD_MEM_REQUEST, &r->doc, &jerr);
    if (rc == LFMD_ENOMEM) return lfmd_err_set(err, LFMD_EBUDGET, "no memory to parse the body");
    if (rc) return lfmd_err_set(err, LFMD_EINVAL, "request body is not valid JSON: %s", jerr.msg);
    const struct json *root = json_root(r->doc), *j;
    if (!json_is(root, JSON_OBJECT)) return lfmd_err_set(err, LFMD_EINVAL, "body must be an object");
    if ((j = json_get(root, "model")) && !json_is(j, JSON_NULL)) {
        if (!json_is(j, JSON_STRING) || j->len > OL_MODEL_NAME_MAX || !no_nul(j))
            return bad(err, "model", "must be a string of at most 200 bytes");
        snprintf(r->model, sizeof r->model, "%s", j->u.str);
    }
    if ((j = json_get(root, "stream")) && !json_is(j, JSON_NULL)) {
        if (!json_is_bool(j)) return bad(err, "stream", "must be true or false");
        r->stream = json_bool(j, true);
    }
    if ((rc = parse_keep_alive(r, json_get(root, "keep_alive"), err))) return rc;
    if ((rc = parse_format(r, json_get(root, "format"), err))) return rc;
    if ((rc = parse_options(r, json_get(root, "options"), err))) return rc;
    if (chat) {
        const struct json *t = json_get(root, "tools");
        if (t && json_is(t, JSON_ARRAY) && t->len > 0)
            return bad(err, "tools", "tool calling is not supported");
        return parse_messages(r, json_get(root, "messages"), err);
    }
    const struct json *im = json_get(root, "images");
    if (im && json_is(im, JSON_ARRAY) && im->len > 0)
        return bad(err, "images", "images are not supported (text-only models)");
    const struct json *sfx = json_get(root, "suffix");
    if (sfx && json_is(sfx, JSON_STRING) && sfx->len > 0)
        return bad(err, "suffix", "fill-in-the-middle is not supported");
    const char *prompt = "";
    if ((j = json_get(root, "prompt")) && !json_is(j, JSON_NULL)) {
        if (!json_is(j, JSON_STRING) || !no_nul(j)) return bad(err, "prompt", "must be a string");
        prompt = j->u.str;
    }
    if (!*prompt) {
        r->unload_only = true;
        return 0;
    }
    bool raw = json_bool(json_get(root, "raw"), false);
    const char *system = json_str(json_get(root, "system"), NULL);
    if (system && *system && !raw) {
        r->msgs[0] = (struct engine_chat_msg){.role = "system", .content = system};
        r->msgs[1] = (struct engine_chat_msg){.role = "user", .content = prompt};
        r->params.msgs = r->msgs;
        r->params.n_msgs = 2;
    } else {
        r->params.prompt = prompt;
        r->params.prompt_as_user_turn = !raw;
    }
    return 0;
}

// ---- responses ----

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, struct buf *b) {
    return http_send_buf(c, (int)status, b, "application/json; charset=utf-8",
                         status == 503 ? 1 : 0);
}

static unsigned err_status(int code) {
    int s = oai_http_status(code);
    return s == 499 ? 503 : (unsigned)s;
}

static enum MHD_Result send_err(struct MHD_Connection *c, int code, const char *msg) {
    struct buf b;
    buf_init(&b, 4096, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"error\":");
    if (!rc) rc = buf_json_str(&b, msg, strlen(msg));
    if (!rc) rc = buf_putc(&b, '}');
    if (rc) {
        buf_fini(&b);
        return MHD_NO;
    }
    enum MHD_Result r = send_json(c, err_status(code), &b);
    buf_fini(&b);
    return r;
}

// RFC 3339 UTC with nanoseconds, like Ollama's created_at.
static void rfc3339(char *out, size_t n, double wall_s) {
    time_t t = (time_t)floor(wall_s);
    long ns = (long)((wall_s - floor(wall_s)) * 1e9);
    struct tm tm;
    gmtime_r(&t, &tm);
    char d[32];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%09ldZ", d, ns);
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---- generation ----

// An Ollama generation: the engine request (gen.h) and what the replies report.
struct og {
    struct gen g;             // first: gen_new allocates the whole struct
    struct ollama_ctx *o;
    bool chat;
    double t_submit;          // engine_now() at submission
    uint64_t loads0;          // engine loads before submission (load_duration)
    char model[OL_MODEL_NAME_MAX + 1];
};

static int head(struct buf *b, const char *model) {
    char ts[48];
    rfc3339(ts, sizeof ts, wall_now());
    int rc = buf_puts(b, "{\"model\":");
    if (!rc) rc = buf_json_str(b, model, strlen(model));
    if (!rc) rc = buf_printf(b, ",\"created_at\":\"%s\",", ts);
    return rc;
}

static int text_field(struct buf *b, bool chat, const char *text, size_t len) {
    int rc = buf_puts(b, chat ? "\"message\":{\"role\":\"assistant\",\"content\":" : "\"response\":");
    if (!rc) rc = buf_json_str(b, text, len);
    if (!rc && chat) rc = buf_putc(b, '}');
    return rc;
}

static long long ns_of(double s) { return s > 0 ? (long long)(s * 1e9) : 0; }

// The final object's statistics (g->mu not needed: done is set and the engine is finished).
static int stats_fields(struct buf *b, struct og *x) {
    const struct gen *g = &x->g;
    struct engine_stats st;
    engine_get_stats(x->o->e, &st);
    double load = st.loads > x->loads0 ? st.load_seconds_last : 0;
    double t_first = g->t_first ? g->t_first : g->t_done;
    double t_start = g->t_start ? g->t_start : g->t_done;
    return buf_printf(b,
                      ",\"done\":true,\"done_reason\":\"%s\",\"total_duration\":%lld,"
                      "\"load_duration\":%lld,\"prompt_eval_count\":%d,"
                      "\"prompt_eval_duration\":%lld,\"eval_count\":%d,\"eval_duration\":%lld}",
                      g->finish == ENGINE_FINISH_LENGTH ? "length" : "stop",
                      ns_of(g->t_done - x->t_submit), ns_of(load), g->n_prompt,
                      ns_of(t_first - t_start), g->n_gen, ns_of(g->t_done - t_first));
}

static int final_object(struct buf *b, struct og *x, const char *text, size_t len) {
    int rc = head(b, x->model);
    if (!rc) rc = text_field(b, x->chat, text, len);
    if (!rc) rc = stats_fields(b, x);
    if (!rc) rc = buf_putc(b, '\n');
    return rc;
}

static int error_line(struct buf *b, const char *msg) {
    int rc = buf_puts(b, "{\"error\":");
    if (!rc) rc = buf_json_str(b, msg, strlen(msg));
    if (!rc) rc = buf_puts(b, "}\n");
    return rc;
}

// ---- NDJSON stream (gen.h hooks; a gen here is always an og): one object per piece of text,
// then the final object ----

static int nd_text(struct gen *g, struct buf *out, const char *text, size_t len) {
    struct og *x = (struct og *)g;
    int rc = head(out, x->model);
    if (!rc) rc = text_field(out, x->chat, text, len);
    if (!rc) rc = buf_puts(out, ",\"done\":false}\n");
    return rc;
}

// Nothing yet: probe the socket so a hung-up client cancels its sequence.
static int nd_idle(struct gen *g, struct buf *out) {
    (void)out;
    gen_cancel_if_gone(g);
    return 0;
}

static int nd_end(struct gen *g, struct buf *out) {
    return g->code ? error_line(out, g->msg) : final_object(out, (struct og *)g, "", 0);
}

static const struct gen_stream_ops nd_ops = {
    .idle_s = 1.0, .begin = NULL, .text = nd_text, .idle = nd_idle, .end = nd_end};

static struct og *og_new(struct ollama_ctx *o, const struct ol_request *rq,
                         struct MHD_Connection *c) {
    struct og *x = (struct og *)gen_new(sizeof *x, c);
    if (!x) return NULL;
    x->o = o;
    x->chat = rq->chat;
    snprintf(x->model, sizeof x->model, "%s", rq->model[0] ? rq->model : o->model_id);
    return x;
}

// Empty prompt / empty messages: Ollama's load/unload request.
static enum MHD_Result handle_load(struct ollama_ctx *o, struct MHD_Connection *c,
                                   const struct ol_request *rq) {
    bool unload = rq->keep_alive_set && rq->keep_alive_s == 0;
    if (unload) engine_unload(o->e);
    else if (rq->keep_alive_set) engine_set_keep_alive(o->e, rq->keep_alive_s);
    struct buf b;
    buf_init(&b, 1024, LFMD_MEM_REQUEST);
    int rc = head(&b, rq->model[0] ? rq->model : o->model_id);
    if (!rc) rc = text_field(&b, rq->chat, "", 0);
    if (!rc) rc = buf_printf(&b, ",\"done\":true,\"done_reason\":\"%s\"}", unload ? "unload"
                                                                                   : "load");
    if (rc) {
        buf_fini(&b);
        return MHD_NO;
    }
    enum MHD_Result r = send_json(c, 200, &b);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_gen(struct ollama_ctx *o, struct MHD_Connection *c, bool chat,
                                  const char *body, size_t len) {
    struct lfmd_err_ctx err = {0};
    struct ol_request *rq = lfmd_calloc(1, sizeof *rq, LFMD_MEM_REQUEST);
    if (!rq) return send_err(c, LFMD_EBUDGET, "no memory for the request");
    int rc = ol_parse(body, len, chat, rq, &err);
    if (rc || rq->unload_only) {
        enum MHD_Result r = rc ? send_err(c, rc, err.msg) : handle_load(o, c, rq);
        constraint_free(rq->params.constraint);
        json_doc_free(rq->doc);
        lfmd_free(rq);
        return r;
    }
    struct og *x = og_new(o, rq, c);
    if (!x) {
        constraint_free(rq->params.constraint);
        json_doc_free(rq->doc);
        lfmd_free(rq);
        return send_err(c, LFMD_EBUDGET, "no memory for the request");
    }
    struct gen *g = &x->g;
    struct engine_stats st;
    engine_get_stats(o->e, &st);
    x->loads0 = st.loads;
    x->t_submit = engine_now();
    // keep_alive applies from this request on; without one, back to --idle-unload. It travels
    // with the request: set separately, an idle engine could unload (keep_alive 0) before the
    // request is queued, and the reload would then forget it.
    rq->params.set_keep_alive = true;
    rq->params.keep_alive_s = rq->keep_alive_set ? rq->keep_alive_s : NAN;
    bool stream = rq->stream;
    rc = gen_submit(g, o->e, &rq->params, &err);
    if (rc) constraint_free(rq->params.constraint); // the engine owns it only after success
    json_doc_free(rq->doc);
    lfmd_free(rq);
    if (rc) {
        gen_free(g);
        return send_err(c, rc, err.msg);
    }
    int code = gen_wait_first(g, stream);
    if (code) {
        enum MHD_Result r = send_err(c, code, g->msg);
        gen_free(g);
        return r;
    }
    if (!stream) {
        struct buf b;
        buf_init(&b, GEN_PENDING_MAX * 2, LFMD_MEM_REQUEST);
        rc = final_object(&b, x, g->pending.data ? g->pending.data : "", g->pending.len);
        gen_free(g);
        if (rc) {
            buf_fini(&b);
            return send_err(c, LFMD_ETOOBIG, "response too large");
        }
        enum MHD_Result r = send_json(c, 200, &b);
        buf_fini(&b);
        return r;
    }
    struct MHD_Response *r = gen_stream_response(g, &nd_ops, "application/x-ndjson");
    if (!r) {
        gen_free(g);
        return send_err(c, LFMD_ENOMEM, "cannot create the response");
    }
    enum MHD_Result ret = http_queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

// ---- model listings ----

static int details_json(struct buf *b, struct ollama_ctx *o, const struct engine_stats *st) {
    int rc = buf_printf(b, "\"details\":{\"parent_model\":\"\",\"format\":\"%s\",\"family\":",
                        o->format);
    if (!rc) rc = buf_json_str(b, st->model_name, strlen(st->model_name));
    if (!rc) rc = buf_puts(b, ",\"families\":null,\"parameter_size\":\"\",\"quantization_level\":");
    if (!rc) rc = buf_json_str(b, st->model_dtype, strlen(st->model_dtype));
    if (!rc) rc = buf_putc(b, '}');
    return rc;
}

static int name_fields(struct buf *b, struct ollama_ctx *o) {
    int rc = buf_puts(b, "\"name\":");
    if (!rc) rc = buf_json_str(b, o->model_id, strlen(o->model_id));
    if (!rc) rc = buf_puts(b, ",\"model\":");
    if (!rc) rc = buf_json_str(b, o->model_id, strlen(o->model_id));
    return rc;
}

static enum MHD_Result handle_tags(struct ollama_ctx *o, struct MHD_Connection *c) {
    struct engine_stats st;
    engine_get_stats(o->e, &st);
    char ts[48];
    rfc3339(ts, sizeof ts, (double)o->modified_at);
    struct buf b;
    buf_init(&b, 8192, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"models\":[{");
    if (!rc) rc = name_fields(&b, o);
    if (!rc) rc = buf_printf(&b, ",\"modified_at\":\"%s\",\"size\":%llu,\"digest\":\"\",", ts,
                             (unsigned long long)o->disk_bytes);
    if (!rc) rc = details_json(&b, o, &st);
    if (!rc) rc = buf_puts(&b, "}]}");
    enum MHD_Result r = rc ? MHD_NO : send_json(c, 200, &b);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_ps(struct ollama_ctx *o, struct MHD_Connection *c) {
    struct engine_stats st;
    engine_get_stats(o->e, &st);
    // Listed until the unload has freed it: a client that waits for an empty list may then rely
    // on the memory being gone (an UNLOADING model still holds its weights).
    bool loaded = st.state == ENGINE_READY || st.state == ENGINE_TRIMMED ||
                  st.state == ENGINE_LOADING || st.state == ENGINE_UNLOADING;
    struct buf b;
    buf_init(&b, 8192, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"models\":[");
    if (loaded && !rc) {
        double left = engine_expires_in(o->e);
        char ts[48];
        if (isinf(left)) snprintf(ts, sizeof ts, "2318-01-01T00:00:00Z"); // never, like Ollama
        else rfc3339(ts, sizeof ts, wall_now() + left);
        rc = buf_putc(&b, '{');
        if (!rc) rc = name_fields(&b, o);
        if (!rc) rc = buf_printf(&b, ",\"size\":%zu,\"digest\":\"\",", st.mem_total);
        if (!rc) rc = details_json(&b, o, &st);
        if (!rc)
            rc = buf_printf(&b, ",\"expires_at\":\"%s\",\"size_vram\":0,\"context_length\":%d}",
                            ts, st.n_ctx);
    }
    if (!rc) rc = buf_puts(&b, "]}");
    enum MHD_Result r = rc ? MHD_NO : send_json(c, 200, &b);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_show(struct ollama_ctx *o, struct MHD_Connection *c,
                                   const char *body, size_t len) {
    struct lfmd_err_ctx jerr = {0};
    struct json_doc *doc = NULL;
    if (len && json_parse(body, len, LFMD_MEM_REQUEST, &doc, &jerr))
        return send_err(c, LFMD_EINVAL, "request body is not valid JSON");
    json_doc_free(doc);
    struct engine_stats st;
    engine_get_stats(o->e, &st);
    struct buf b;
    buf_init(&b, 8192, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"modelfile\":\"\",\"parameters\":\"\",\"template\":\"\",");
    if (!rc) rc = details_json(&b, o, &st);
    if (!rc) rc = buf_printf(&b, ",\"model_info\":{\"general.architecture\":");
    if (!rc) rc = buf_json_str(&b, st.model_name, strlen(st.model_name));
    if (!rc) rc = buf_printf(&b, ",\"lfmd.context_length\":%d,\"lfmd.max_tokens\":%d},", st.n_ctx,
                             st.max_tokens);
    char ts[48];
    rfc3339(ts, sizeof ts, (double)o->modified_at);
    if (!rc) rc = buf_printf(&b, "\"capabilities\":[\"completion\"],\"modified_at\":\"%s\"}", ts);
    enum MHD_Result r = rc ? MHD_NO : send_json(c, 200, &b);
    buf_fini(&b);
    return r;
}

static enum MHD_Result handle_version(struct ollama_ctx *o, struct MHD_Connection *c) {
    struct buf b;
    buf_init(&b, 256, LFMD_MEM_REQUEST);
    int rc = buf_puts(&b, "{\"version\":");
    if (!rc) rc = buf_json_str(&b, o->version, strlen(o->version));
    if (!rc) rc = buf_putc(&b, '}');
    enum MHD_Result r = rc ? MHD_NO : send_json(c, 200, &b);
    buf_fini(&b);
    return r;
}

// ---- entry points ----

bool ollama_is_route(const char *url) { return !strncmp(url, "/api/", 5); }

enum MHD_Result ollama_handle(struct ollama_ctx *o, struct MHD_Connection *c, const char *url,
                              const char *method, const char *body, size_t len) {
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool post = !strcmp(method, "POST");
    static const struct {
        const char *url;
        bool post;
    } routes[] = {{"/api/generate", true}, {"/api/chat", true}, {"/api/show", true},
                  {"/api/ps", false},      {"/api/tags", false}, {"/api/version", false}};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].url)) continue;
        if (routes[i].post ? !post : !get) return send_err(c, LFMD_EINVAL, "method not allowed");
        switch (i) {
        case 0: return handle_gen(o, c, false, body, len);
        case 1: return handle_gen(o, c, true, body, len);
        case 2: return handle_show(o, c, body, len);
        case 3: return handle_ps(o, c);
        case 4: return handle_tags(o, c);
        default: return handle_version(o, c);
        }
    }
    return send_err(c, LFMD_ENOENT, "no such endpoint (lfmd serves generate, chat, ps, tags, "
                                    "show, version)");
}

void ollama_init(struct ollama_ctx *o, struct engine *e, const char *model_id,
                 const char *version) {
    memset(o, 0, sizeof *o);
    o->e = e;
    o->model_id = model_id;
    o->version = version && *version ? version : "0.0.0";
    const char *path = engine_get_opts(e)->model_path;
    snprintf(o->format, sizeof o->format, "safetensors");
    struct stat sb;
    if (!strcmp(path, "@test") || stat(path, &sb) != 0) {
        snprintf(o->format, sizeof o->format, "%s", !strcmp(path, "@test") ? "test" : "unknown");
        o->modified_at = (long long)time(NULL);
        return;
    }
    o->modified_at = (long long)sb.st_mtime;
    if (S_ISREG(sb.st_mode)) {
        size_t n = strlen(path);
        if (n > 5 && !strcmp(path + n - 5, ".gguf")) snprintf(o->format, sizeof o->format, "gguf");
        o->disk_bytes = (uint64_t)sb.st_size;
        return;
    }
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    char fp[4096];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(fp, sizeof fp, "%s/%s", path, de->d_name);
        struct stat fs;
        if (stat(fp, &fs) == 0 && S_ISREG(fs.st_mode)) o->disk_bytes += (uint64_t)fs.st_size;
    }
    closedir(d);
}
