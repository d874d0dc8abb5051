// Fuzz target: the Jinja chat-template interpreter (parse + render with transformers'
// conventions) through the public path: a tiny tokenizer built with the template, then
// tokenizer_apply_template on fixed messages, tools and kwargs. Work and output limits must
// stop runaway templates (loops, recursion, huge strings) with a clean error.
// Input: the template source; optionally "\n#LFMD#\n" then a messages JSON array.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "tokenizer/tokenizer.h"

static const char default_msgs[] =
    "[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"},"
    "{\"role\":\"assistant\",\"content\":\"hello\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
    "\"arguments\":{\"a\":1}}}]},{\"role\":\"tool\",\"content\":\"42\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]";
static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]";
static const char kwargs_json[] = "{\"enable_thinking\":false,\"custom\":[1,2.5,\"s\",null,true]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    size_t n1, off2;
    fuzz_split(data, size, "\n#LFMD#\n", &n1, &off2);
    char *tmpl = malloc(n1 + 1);
    if (!tmpl) abort();
    memcpy(tmpl, data, n1);
    tmpl[n1] = 0;
    long live = lfmd_alloc_live();
    static const char *const toks[] = {"a", "b", "<s>", "</s>"};
    struct tokenizer_arrays a = {.model = "gpt2", .tokens = toks, .n_tokens = 4, .bos_id = 2,
                                 .eos_id = 3, .unk_id = -1, .eot_id = -1, .pad_id = -1,
                                 .chat_template = tmpl};
    struct tokenizer *t = NULL;
    struct lfmd_err_ctx err = {0};
    if (tokenizer_from_arrays(&a, &t, &err) == 0) {
        struct json_doc *m = NULL, *tools = NULL, *kw = NULL;
        const char *mj = off2 < size || n1 < size ? (const char *)data + off2 : default_msgs;
        size_t ml = off2 < size || n1 < size ? size - off2 : sizeof default_msgs - 1;
        int rc = json_parse(mj, ml, LFMD_MEM_OTHER, &m, &err);
        if (!rc) rc = json_parse(tools_json, sizeof tools_json - 1, LFMD_MEM_OTHER, &tools, &err);
        if (!rc) rc = json_parse(kwargs_json, sizeof kwargs_json - 1, LFMD_MEM_OTHER, &kw, &err);
        if (!rc) {
            for (int gen = 0; gen < 2; gen++) {
                char *p = NULL;
                if (tokenizer_apply_template(t, json_root(m), gen, json_root(kw),
                                             json_root(tools), &p, &err) == 0)
                    lfmd_free(p);
            }
        }
        json_doc_free(m);
        json_doc_free(tools);
        json_doc_free(kw);
        tokenizer_free(t);
    }
    fuzz_check_leaks(live, "chat template");
    free(tmpl);
    return 0;
}
