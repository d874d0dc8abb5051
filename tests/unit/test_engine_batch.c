// Continuous batching, prefix cache and scoring on the real embedded router model: N concurrent
// greedy streams give exactly the tokens each gives alone; cached prompts give identical outputs;
// choice scores are identical cached or not and match a one-at-a-time computation; the KV cache
// types (--kv-type) size sequences as they should and serve.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "engine/engine.h"
#include "sample/sampler.h"
#include "engine_collect.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUTER "models/lfm2-router"

// Every request in this file is greedy: a logprob event for a token that is not the most likely
// one fails the request (code -999).
static void greedy_collect_init(struct collect *c) {
    collect_init(c);
    c->check_greedy = true;
}

// The real model's ops plus a forward_batch_greedy that picks each sequence's token with
// sampler_argmax on its logits: the CUDA backend's greedy-step path (argmax on the device), run
// on the CPU so that CI covers the engine side of it.
static struct engine_model_ops greedy_ops;
static _Atomic int greedy_calls;
static int g_n_vocab;
static int greedy_forward(void *r, void *const *seqs, const int32_t *const *toks, const int *n,
                          int n_seqs, int32_t *next, struct lfmd_err_ctx *err) {
    static float logits[16 * 65536];
    if (n_seqs > 16 || g_n_vocab > 65536) return LFMD_EINVAL;
    int rc = engine_model_real.forward_batch(r, seqs, toks, n, n_seqs, logits, err);
    if (rc) return rc;
    for (int i = 0; i < n_seqs; i++)
        next[i] = sampler_argmax(logits + (size_t)i * (size_t)g_n_vocab, g_n_vocab);
    atomic_fetch_add(&greedy_calls, 1);
    return 0;
}

static struct engine *start(int parallel, size_t prefix_bytes);

static struct engine *start_ops(int parallel, size_t prefix_bytes, const struct engine_model_ops *ops) {
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = ROUTER;
    o.ops = ops ? ops : engine_ops_for_path(ROUTER);
    o.n_ctx = 256;
    o.max_tokens = 24;
    o.n_threads = 2;
    o.parallel = parallel;
    o.prefix_cache_bytes = prefix_bytes;
    o.preload = true;
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = engine_start(&o, &e, &err);
    if (rc) fprintf(stderr, "engine_start: %s\n", err.msg);
    CHECK_EQ(rc, 0);
    return e;
}

static struct engine *start(int parallel, size_t prefix_bytes) {
    return start_ops(parallel, prefix_bytes, NULL);
}

static const char *const prompts[] = {
    "Hello!", "What is the capital of France?", "Write a short poem about the sea.",
    "Give me three tips for sleeping better.", "Tell me a short story about a brave fox.",
    "Who are you?", "What is photosynthesis?", "What is 12 plus 7?",
};
#define NP 8

static void greedy(struct engine_params *p, const char *prompt) {
    engine_params_default(p);
    p->prompt = prompt;
    p->prompt_as_user_turn = true;
    p->max_tokens = 24;
    p->sampling.temperature = 0;
}

static void test_batch_equals_alone(void) {
    static struct collect alone[NP], together[NP];
    struct engine *e = start(1, 0);
    for (int i = 0; i < NP; i++) {
        struct engine_params p;
        greedy(&p, prompts[i]);
        greedy_collect_init(&alone[i]);
        struct engine_req *r = NULL;
        struct lfmd_err_ctx err = {0};
        CHECK_EQ(engine_submit(e, &p, on_event, &alone[i], &r, &err), 0);
        collect_wait(&alone[i]);
        engine_req_release(r);
        CHECK_EQ(alone[i].code, 0);
        CHECK(alone[i].n_gen > 0);
    }
    engine_stop(e, 5);
    e = start(NP, 0);
    struct engine_req *rs[NP];
    for (int i = 0; i < NP; i++) {
        struct engine_params p;
        greedy(&p, prompts[i]);
        greedy_collect_init(&together[i]);
        struct lfmd_err_ctx err = {0};
        CHECK_EQ(engine_submit(e, &p, on_event, &together[i], &rs[i], &err), 0);
    }
    for (int i = 0; i < NP; i++) {
        collect_wait(&together[i]);
        engine_req_release(rs[i]);
        CHECK_EQ(together[i].code, 0);
        CHECK_STR(together[i].text, alone[i].text);
        CHECK_EQ(together[i].n_gen, alone[i].n_gen);
    }
    struct engine_stats st;
    engine_get_stats(e, &st);
    // Batched: far fewer forward passes than tokens.
    CHECK(st.steps < st.gen_tokens);
    engine_stop(e, 5);

    // The same batch through forward_batch_greedy (tokens picked by the backend): same texts.
    struct engine_model_info info;
    struct lfmd_err_ctx err = {0};
    void *m = NULL;
    CHECK_EQ(engine_model_real.open(ROUTER, 1, &m, &info, &err), 0);
    g_n_vocab = info.n_vocab;
    engine_model_real.close(m);
    greedy_ops = engine_model_real;
    greedy_ops.forward_batch_greedy = greedy_forward;
    e = start_ops(NP, 0, &greedy_ops);
    for (int i = 0; i < NP; i++) {
        struct engine_params p;
        greedy(&p, prompts[i]);
        greedy_collect_init(&together[i]);
        CHECK_EQ(engine_submit(e, &p, on_event, &together[i], &rs[i], &err), 0);
    }
    for (int i = 0; i < NP; i++) {
        collect_wait(&together[i]);
        engine_req_release(rs[i]);
        CHECK_EQ(together[i].code, 0);
        CHECK_STR(together[i].text, alone[i].text);
    }
    CHECK(atomic_load(&greedy_calls) > 0); // the greedy-step path ran
    engine_stop(e, 5);
}

static void test_prefix_cache(void) {
    struct engine *e = start(4, 8u << 20);
    struct engine_chat_msg msgs[2] = {{"system", "You are a helpful assistant."},
                                      {"user", "What is the capital of France?"}};
    struct collect a, b;
    for (int k = 0; k < 2; k++) {
        struct collect *c = k ? &b : &a;
        struct engine_params p;
        engine_params_default(&p);
        p.msgs = msgs;
        p.n_msgs = 2;
        p.max_tokens = 16;
        p.sampling.temperature = 0;
        p.logprobs = true;
        p.top_logprobs = 3;
        greedy_collect_init(c);
        struct engine_req *r = NULL;
        struct lfmd_err_ctx err = {0};
        CHECK_EQ(engine_submit(e, &p, on_event, c, &r, &err), 0);
        collect_wait(c);
        engine_req_release(r);
        CHECK_EQ(c->code, 0);
    }
    CHECK_EQ(a.n_cached, 0);
    CHECK_EQ(b.n_cached, b.n_prompt); // the whole prompt came from the cache
    CHECK_STR(a.text, b.text);
    CHECK_EQ(a.n_lp, a.n_gen + 1);  // + the end-of-turn token
    CHECK(fabsf(a.lp_sum - b.lp_sum) < 1e-4f);
    // A different user turn reuses the system-prompt snapshot.
    msgs[1].content = "Who are you?";
    struct collect c;
    struct engine_params p;
    engine_params_default(&p);
    p.msgs = msgs;
    p.n_msgs = 2;
    p.max_tokens = 16;
    p.sampling.temperature = 0;
    greedy_collect_init(&c);
    struct engine_req *r = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(engine_submit(e, &p, on_event, &c, &r, &err), 0);
    collect_wait(&c);
    engine_req_release(r);
    CHECK(c.n_cached > 0 && c.n_cached < c.n_prompt);
    struct engine_stats st;
    engine_get_stats(e, &st);
    CHECK(st.prefix_hits >= 2);
    CHECK(st.prefix_bytes > 0 && st.prefix_bytes <= st.prefix_cap);
    CHECK_EQ(st.mem_used[LFMD_MEM_PREFIX] > 0, 1);
    engine_trim(e);
    for (int i = 0; i < 200 && lfmd_mem_used(LFMD_MEM_PREFIX); i++) usleep(10000);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_PREFIX), 0);
    engine_stop(e, 5);
}

static const char *const routes[] = {"code", "math", "creative", "analysis", "chat"};

static void score(struct engine *e, const char *prompt, size_t prefix, struct collect *c) {
    struct engine_params p;
    engine_params_default(&p);
    p.prompt = prompt;
    p.raw_prompt = true;
    p.cache_prefix_bytes = prefix;
    p.choices = routes;
    p.n_choices = 5;
    greedy_collect_init(c);
    struct engine_req *r = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(engine_submit(e, &p, on_event, c, &r, &err), 0);
    collect_wait(c);
    engine_req_release(r);
    CHECK_EQ(c->code, 0);
    CHECK_EQ(c->n_scores, 5);
}

static void test_scoring(void) {
    static const char prefix[] =
        "<|startoftext|><|im_start|>system\nClassify the request into one of these routes:\n"
        "code: writing, reading or debugging programs\nmath: calculation, equations, units, "
        "statistics\ncreative: stories, poems, slogans, jokes\nanalysis: research, comparisons, "
        "summarising documents, planning\nchat: greetings, small talk, short everyday questions\n"
        "Answer with the route name only.<|im_end|>\n<|im_start|>user\n";
    char prompt[2048];
    snprintf(prompt, sizeof prompt, "%sWrite a Python function that reverses a string.<|im_end|>\n"
             "<|im_start|>assistant\n", prefix);
    struct engine *e = start(4, 0);
    struct collect cold, warm1, warm2;
    score(e, prompt, strlen(prefix), &cold);
    engine_stop(e, 5);
    e = start(4, 8u << 20);
    score(e, prompt, strlen(prefix), &warm1);
    score(e, prompt, strlen(prefix), &warm2);
    CHECK_EQ(warm1.n_cached, 0);
    // The routing template (78 of 95 tokens) came from the cache; only the input was prefilled.
    CHECK(warm2.n_cached > 70 && warm2.n_cached < warm2.n_prompt);
    for (int i = 0; i < 5; i++) {
        CHECK(cold.scores[i] < 0);
        CHECK_EQ(cold.scores[i], warm1.scores[i]);
        CHECK_EQ(cold.scores[i], warm2.scores[i]);
    }
    int best = 0;
    for (int i = 1; i < 5; i++)
        if (cold.scores[i] > cold.scores[best]) best = i;
    CHECK_STR(routes[best], "code"); // greedy_ref.jsonl line 7 answers "code"
    engine_stop(e, 5);
}

// --kv-type: sequence sizes follow the type (f16 = half of f32's KV, q8 smaller still), a bad
// name or a load-time refusal is a clean error, and the engine serves with each type.
static void test_kv_types(void) {
    const struct engine_model_ops *ops = engine_ops_for_path(ROUTER);
    struct engine_model_info info;
    struct lfmd_err_ctx err = {0};
    void *m = NULL;
    CHECK_EQ(ops->open(ROUTER, 1, &m, &info, &err), 0);
    CHECK(ops->set_kv_type != NULL);
    size_t b[3];
    const char *names[3] = {"f32", "f16", "q8"};
    for (int i = 0; i < 3; i++) {
        int rc = ops->set_kv_type(m, names[i], &err);
        if (i == 2 && rc) { // q8 needs head_dim % 32 == 0: refused with a message, else sized
            CHECK(strstr(err.msg, "head_dim") != NULL);
            b[2] = 0;
            continue;
        }
        CHECK_EQ(rc, 0);
        b[i] = ops->seq_bytes(m, 200) - ops->seq_bytes(m, 100); // KV of 100 tokens
    }
    CHECK(b[0] > 0 && b[1] * 2 == b[0]);
    CHECK(b[2] == 0 || b[2] < b[1]);
    CHECK(ops->set_kv_type(m, "f8", &err) != 0);
    ops->close(m);

    for (int i = 0; i < 2; i++) {
        struct engine_opts o;
        engine_opts_default(&o);
        CHECK_STR(o.kv_type, "f16"); // the default
        o.model_path = ROUTER;
        o.ops = ops;
        o.n_threads = 2;
        o.preload = true;
        o.kv_type = i == 0 ? "f32" : "bogus";
        struct engine *e = NULL;
        struct lfmd_err_ctx e2 = {0};
        int rc = engine_start(&o, &e, &e2);
        if (i == 1) {
            CHECK(rc != 0 && strstr(e2.msg, "bogus") != NULL);
            continue;
        }
        CHECK_EQ(rc, 0);
        struct collect c;
        greedy_collect_init(&c);
        struct engine_params p;
        greedy(&p, prompts[1]);
        struct engine_req *r = NULL;
        CHECK_EQ(engine_submit(e, &p, on_event, &c, &r, &err), 0);
        collect_wait(&c);
        engine_req_release(r);
        CHECK_EQ(c.code, 0);
        CHECK(c.n_gen > 0);
        engine_stop(e, 5);
    }
}

int main(void) {
    test_kv_types();
    test_batch_equals_alone();
    test_prefix_cache();
    test_scoring();
    return check_done();
}
