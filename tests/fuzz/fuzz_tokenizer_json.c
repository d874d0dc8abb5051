// Fuzz target: tokenizer.json loaded with tokenizer_load (model, normalizer, pre-tokenizer,
// decoder, post-processor, added tokens). A tokenizer that loads is exercised: encode and decode
// a fixed text, stream-decode every id, and render its chat template if it has one.
// Input: tokenizer.json, optionally "\n#LFMD#\n" and a tokenizer_config.json.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "tokenizer/tokenizer.h"

static const char sample[] = "Hello, world! 123 \xc3\xa9t\xc3\xa9 <s> \xe2\x96\x81x\n\t  tabs";

static void exercise(const struct tokenizer *t) {
    struct lfmd_err_ctx err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    for (int special = 0; special < 2; special++) {
        if (tokenizer_encode(t, sample, sizeof sample - 1, special, special, &ids, &n, &err) == 0) {
            char *text = NULL;
            size_t len = 0;
            if (tokenizer_decode(t, ids, n, special, &text, &len, &err) == 0) lfmd_free(text);
            lfmd_free(ids);
        }
    }
    int32_t nv = tokenizer_n_vocab(t);
    struct tok_stream st;
    struct buf out;
    buf_init(&out, 1 << 20, LFMD_MEM_OTHER);
    tok_stream_init(&st, t, false);
    for (int32_t id = 0; id < nv && id < 4096; id++) {
        size_t tl;
        (void)tokenizer_token_text(t, id, &tl);
        (void)tokenizer_token_attr(t, id);
        if (tok_stream_push(&st, id, &out)) break;
        if (out.len > 65536) buf_reset(&out);
    }
    if (tok_stream_flush(&st, &out)) buf_reset(&out);
    tok_stream_fini(&st);
    buf_fini(&out);
    if (tokenizer_has_template(t)) {
        static const char msgs[] = "[{\"role\":\"system\",\"content\":\"s\"},"
                                   "{\"role\":\"user\",\"content\":\"hi\"}]";
        struct json_doc *d = NULL;
        if (json_parse(msgs, sizeof msgs - 1, LFMD_MEM_OTHER, &d, &err) == 0) {
            char *p = NULL;
            if (tokenizer_apply_template(t, json_root(d), true, NULL, NULL, &p, &err) == 0)
                lfmd_free(p);
            json_doc_free(d);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n1, off2;
    fuzz_split(data, size, "\n#LFMD#\n", &n1, &off2);
    const char *path = fuzz_write("tokenizer.json", data, n1, 0);
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", fuzz_dir());
    if (off2 < size || n1 < size) fuzz_write("tokenizer_config.json", data + off2, size - off2, 1);
    else unlink(cfg);
    long live = lfmd_alloc_live();
    struct tokenizer *t = NULL;
    struct lfmd_err_ctx err = {0};
    if (tokenizer_load(path, &t, &err) == 0) {
        exercise(t);
        tokenizer_free(t);
    }
    fuzz_check_leaks(live, "tokenizer_load");
    return 0;
}
