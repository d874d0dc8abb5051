// Fuzz target: the strict JSON parser every front end and loader uses (depth limit, numbers,
// escapes, \u surrogates, duplicate keys). A parsed tree is walked completely.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "format/json.h"

static size_t walk(const struct json *j, int depth) {
    size_t n = 1;
    if (depth > 1000) abort();
    if (j->type == JSON_STRING && strlen(j->u.str) > j->len) abort();
    if (j->type == JSON_ARRAY || j->type == JSON_OBJECT) {
        for (uint32_t i = 0; i < j->len; i++) {
            const struct json *c = &j->u.items[i];
            if (j->type == JSON_ARRAY && json_at(j, i) != c) abort();
            if (j->type == JSON_OBJECT && !c->key) abort();
            if (j->type == JSON_OBJECT && strlen(c->key) == c->key_len && !json_get(j, c->key))
                abort();
            n += walk(c, depth + 1);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = lfmd_alloc_live();
    struct json_doc *d = NULL;
    struct lfmd_err_ctx err = {0};
    if (json_parse((const char *)data, size, LFMD_MEM_OTHER, &d, &err) == 0) {
        (void)walk(json_root(d), 0);
        json_doc_free(d);
    } else if (!err.msg[0]) {
        abort();
    }
    fuzz_check_leaks(live, "json_parse");
    return 0;
}
