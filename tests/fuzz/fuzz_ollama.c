// Fuzz target: Ollama request bodies, the parser behind /api/chat (first byte odd) and
// /api/generate (first byte even; the byte is part of the body too), then what the handler
// would build from the result: the {"error":...} line, or for a load/unload request the reply
// head, and for a generation the strings the engine would read and the format constraint.
// The parser (ol_parse) is static in src/server/ollama.c, so this file compiles that source into
// itself with its exported names renamed (no clash with the library's copy): the code fuzzed is
// the server's own, unchanged. Valid or not, nothing may leak and an error must carry a message.
// /api/show bodies are only json_parse'd (fuzz_json covers them).
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#define ollama_handle fuzz_ollama_handle
#define ollama_init fuzz_ollama_init
#define ollama_is_route fuzz_ollama_is_route
#define ollama_parse_keep_alive fuzz_ollama_parse_keep_alive
#include "server/ollama.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bool chat = size && (data[0] & 1);
    long live = lfmd_alloc_live();
    struct ol_request *rq = lfmd_calloc(1, sizeof *rq, LFMD_MEM_REQUEST);
    if (!rq) abort();
    struct lfmd_err_ctx err = {0};
    int rc = ol_parse((const char *)data, size, chat, rq, &err);
    struct buf b;
    buf_init(&b, 1 << 16, LFMD_MEM_REQUEST);
    if (rc) {
        if (!err.msg[0]) {
            fprintf(stderr, "ol_parse failed without a message\n");
            abort();
        }
        unsigned st = err_status(rc);
        if (st < 400 || st > 599) {
            fprintf(stderr, "ol_parse error %d maps to HTTP %u\n", rc, st);
            abort();
        }
        if (error_line(&b, err.msg)) abort();
    } else if (rq->unload_only) {
        // handle_load without the engine calls: the reply echoes the requested model name
        if (head(&b, rq->model[0] ? rq->model : "m")) abort();
        if (text_field(&b, rq->chat, "", 0)) abort();
        if (rq->keep_alive_set && isnan(rq->keep_alive_s)) abort();
    } else {
        // What the engine would read: every borrowed string must be NUL-terminated and valid.
        const struct engine_params *p = &rq->params;
        size_t total = p->prompt ? strlen(p->prompt) : 0;
        if (!p->prompt && p->n_msgs <= 0) abort(); // a generation has a prompt or messages
        if (p->n_msgs > LFMD_MAX_CHAT_MESSAGES || p->n_stop > LFMD_MAX_STOP_STRINGS) abort();
        for (int i = 0; i < p->n_msgs; i++)
            total += strlen(p->msgs[i].role) + strlen(p->msgs[i].content);
        for (int i = 0; i < p->n_stop; i++) total += strlen(p->stop[i]);
        (void)total;
        if (p->constraint) {
            // the engine asks these first; a fresh constraint is never finished
            if (constraint_final(p->constraint) && !constraint_complete(p->constraint)) abort();
            if (constraint_min_bytes(p->constraint) < 0) abort();
        }
        if (rq->keep_alive_set && isnan(rq->keep_alive_s)) abort();
        if (head(&b, rq->model[0] ? rq->model : "m") || text_field(&b, rq->chat, "x", 1)) abort();
    }
    // handle_gen frees the format constraint on every path that does not hand it to the engine
    // (errors after parse_format, load/unload requests) and the engine frees it otherwise.
    constraint_free(rq->params.constraint);
    buf_fini(&b);
    json_doc_free(rq->doc);
    lfmd_free(rq);
    fuzz_check_leaks(live, "ol_parse");
    return 0;
}
