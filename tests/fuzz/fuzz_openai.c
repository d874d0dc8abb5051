// Fuzz target: OpenAI request bodies (oai_request_parse for /v1/chat/completions when the first
// byte is odd, /v1/completions otherwise; the byte is part of the body too), then the error
// JSON the server would send. Valid or not, nothing may leak and an error must name a message.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "server/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bool chat = size && (data[0] & 1);
    long live = lfmd_alloc_live();
    struct oai_request *r = lfmd_calloc(1, sizeof *r, LFMD_MEM_REQUEST);
    if (!r) abort();
    const char *param = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = oai_request_parse((const char *)data, size, chat, r, &param, &err);
    if (rc) {
        if (!err.msg[0]) {
            fprintf(stderr, "oai_request_parse failed without a message\n");
            abort();
        }
        struct buf out;
        buf_init(&out, 1 << 16, LFMD_MEM_REQUEST);
        if (oai_error_json(&out, rc, err.msg, param)) abort();
        (void)oai_http_status(rc);
        buf_fini(&out);
    } else {
        // What the engine would read: every borrowed string must be NUL-terminated and valid.
        const struct engine_params *p = &r->params;
        size_t total = p->prompt ? strlen(p->prompt) : 0;
        for (int i = 0; i < p->n_msgs; i++)
            total += strlen(p->msgs[i].role) + strlen(p->msgs[i].content);
        for (int i = 0; i < p->n_stop; i++) total += strlen(p->stop[i]);
        (void)total;
    }
    oai_request_fini(r);
    lfmd_free(r);
    fuzz_check_leaks(live, "oai_request_parse");
    return 0;
}
