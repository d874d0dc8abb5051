// Fuzz target: the Jinja chat-template interpreter (parse + render with transformers'
// conventions): the template compiles with chat_template__compile, the call tokenizer_load and
// tokenizer_from_arrays make, into a tiny tokenizer built once per process (its vocabulary is
// not what is fuzzed), then renders through tokenizer_apply_template on fixed messages, tools and
// kwargs (parsed once) or the input's messages. Work and output limits must stop runaway
// templates (loops, recursion, huge strings) with a clean error. The compiled template and its
// error are freed after each input and the allocation count must return to its value before.
// Input: the template source; optionally "\n#LFMD#\n" then a messages JSON array.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "tokenizer/internal.h"
#include "tokenizer/tokenizer.h"

static const char default_msgs[] =
    "[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"},"
    "{\"role\":\"assistant\",\"content\":\"hello\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
    "\"arguments\":{\"a\":1}}}]},{\"role\":\"tool\",\"content\":\"42\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]";
static const char tools_json[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]";
static const char kwargs_json[] = "{\"enable_thinking\":false,\"custom\":[1,2.5,\"s\",null,true]}";

static struct tokenizer *g_tok;
static struct json_doc *g_msgs, *g_tools, *g_kw;

static void setup(void) {
    static const char *const toks[] = {"a", "b", "<s>", "</s>"};
    struct tokenizer_arrays a = {.model = "gpt2", .tokens = toks, .n_tokens = 4, .bos_id = 2,
                                 .eos_id = 3, .unk_id = -1, .eot_id = -1, .pad_id = -1};
    struct lfmd_err_ctx err = {0};
    if (tokenizer_from_arrays(&a, &g_tok, &err) ||
        json_parse(default_msgs, sizeof default_msgs - 1, LFMD_MEM_OTHER, &g_msgs, &err) ||
        json_parse(tools_json, sizeof tools_json - 1, LFMD_MEM_OTHER, &g_tools, &err) ||
        json_parse(kwargs_json, sizeof kwargs_json - 1, LFMD_MEM_OTHER, &g_kw, &err)) {
        fprintf(stderr, "fuzz_chat_template setup: %s\n", err.msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) setup();
    if (size > 65536) return 0;
    size_t n1, off2;
    fuzz_split(data, size, "\n#LFMD#\n", &n1, &off2);
    char *tmpl = malloc(n1 + 1);
    if (!tmpl) abort();
    memcpy(tmpl, data, n1);
    tmpl[n1] = 0;
    long live = lfmd_alloc_live();
    struct tokenizer *t = g_tok;
    struct lfmd_err_ctx err = {0};
    if (chat_template__compile(t, tmpl, &err) == 0) {
        struct json_doc *m = NULL;
        int rc = 0;
        if (off2 < size || n1 < size)
            rc = json_parse((const char *)data + off2, size - off2, LFMD_MEM_OTHER, &m, &err);
        if (!rc) {
            for (int gen = 0; gen < 2; gen++) {
                char *p = NULL;
                if (tokenizer_apply_template(t, json_root(m ? m : g_msgs), gen, json_root(g_kw),
                                             json_root(g_tools), &p, &err) == 0)
                    lfmd_free(p);
                else if (!err.msg[0])
                    abort(); // an error must carry a message
            }
        }
        json_doc_free(m);
    }
    chat_template__free(t->chat_template);
    lfmd_free(t->chat_template_err);
    t->chat_template = NULL;
    t->chat_template_err = NULL;
    fuzz_check_leaks(live, "chat template");
    free(tmpl);
    return 0;
}
