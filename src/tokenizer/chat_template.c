// Chat-template glue: compiles tokenizer_config.json's chat_template at load and renders it with
// the variables transformers' apply_chat_template passes (messages, tools, add_generation_prompt,
// bos/eos/unk/pad tokens, then the caller's kwargs, which override).
// Invariant: a template that fails to compile keeps the tokenizer usable for encoding; the
// load-time message is returned by every tokenizer_apply_template call.
// SPDX-License-Identifier: MIT
#include "internal.h"
#include "jinja.h"

#include "base/limits.h"

#include <string.h>

void chat_template__free(struct jinja_tmpl *j) { jinja_free(j); }

int chat_template__compile(struct tokenizer *t, const char *src, struct lfmd_err_ctx *err) {
    struct lfmd_err_ctx e2 = {0};
    int rc = jinja_parse(src, strlen(src), &t->chat_template, &e2);
    if (rc == LFMD_ENOMEM) return lfmd_err_set(err, rc, "%s", e2.msg);
    if (rc) {
        t->chat_template_err = lfmd_strdup(e2.msg, LFMD_MEM_TOKENIZER);
        if (!t->chat_template_err) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    }
    return 0;
}

const char *tokenizer_template_error(const struct tokenizer *t) { return t->chat_template_err; }

int tokenizer_apply_template(const struct tokenizer *t, const struct json *messages,
                             bool add_generation_prompt, const struct json *kwargs,
                             const struct json *tools, char **prompt_out,
                             struct lfmd_err_ctx *err) {
    *prompt_out = NULL;
    if (t->chat_template_err)
        return lfmd_err_set(err, LFMD_ENOTSUP, "%s", t->chat_template_err);
    if (!t->chat_template)
        return lfmd_err_set(err, LFMD_ENOENT, "tokenizer has no chat_template");
    if (!json_is(messages, JSON_ARRAY))
        return lfmd_err_set(err, LFMD_EINVAL, "chat template: messages must be an array");
    if (kwargs && !json_is(kwargs, JSON_OBJECT) && !json_is(kwargs, JSON_NULL))
        return lfmd_err_set(err, LFMD_EINVAL, "chat template: kwargs must be an object");
    struct jarena ar;
    jarena_init(&ar, (size_t)LFMD_MAX_BODY_BYTES * 8);
    struct buf out;
    buf_init(&out, LFMD_MAX_BODY_BYTES, LFMD_MEM_REQUEST);
    struct jdict *g = jarena_alloc(&ar, sizeof *g);
    int rc = g ? 0 : LFMD_ENOMEM;
    struct jval v;
    const char *names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    const char *vals[] = {t->bos_text, t->eos_text, t->unk_text, t->pad_text};
    for (int i = 0; !rc && i < 4; i++)
        if (vals[i]) rc = jdict_set(&ar, g, names[i], strlen(names[i]), jv_str(vals[i], strlen(vals[i])));
    if (!rc) rc = jv_from_json(&ar, messages, &v);
    if (!rc) rc = jdict_set(&ar, g, "messages", 8, v);
    if (!rc && tools && !json_is(tools, JSON_NULL)) {
        rc = jv_from_json(&ar, tools, &v);
        if (!rc) rc = jdict_set(&ar, g, "tools", 5, v);
    }
    if (!rc)
        rc = jdict_set(&ar, g, "add_generation_prompt", 21,
                       (struct jval){.t = JT_BOOL, .u.b = add_generation_prompt});
    for (size_t i = 0; !rc && json_is(kwargs, JSON_OBJECT) && i < kwargs->len; i++) {
        rc = jv_from_json(&ar, &kwargs->u.items[i], &v);
        if (!rc) rc = jdict_set(&ar, g, kwargs->u.items[i].key, kwargs->u.items[i].key_len, v);
    }
    if (rc) {
        lfmd_err_set(err, rc, "chat template: out of memory");
    } else {
        struct jval gv = {.t = JT_DICT, .u.d = g};
        rc = jinja_render(t->chat_template, &ar, &gv, &out, err);
        if (rc == LFMD_ETOOBIG && (!err || !err->code))
            lfmd_err_set(err, rc, "chat template: prompt over %u bytes", LFMD_MAX_BODY_BYTES);
    }
    if (!rc) rc = buf_append(&out, "", 0);
    if (!rc) {
        size_t len;
        *prompt_out = buf_take(&out, &len);
        if (!*prompt_out) rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    }
    buf_fini(&out);
    jarena_fini(&ar);
    return rc;
}
