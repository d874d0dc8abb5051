// The engine on the CUDA adapter (src/engine/model_cuda.c): concurrent greedy requests give the
// same text whether greedy steps pick tokens on the GPU (forward_batch_greedy, only token ids
// back) or copy every step's logits to the host and sample there; the GPU path is taken.
// Reports generated tokens per second for both (wall clock from the first submit to the last
// DONE, prefill included) and how many texts equal the CPU engine's.
// Usage: cuda_test_cuda_engine [MODEL [PARALLEL [MAX_TOKENS [REQUESTS]]]] (default: the
// embedded router, 8, 24, 8; the CPU comparison runs for the default model only).
// SPDX-License-Identifier: MIT
#include "check.h"
#include "engine/engine.h"
#include "engine/model_cuda.h"
#include "engine_collect.h"

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static const char *const prompts[] = {
    "Hello!", "What is the capital of France?", "Write a short poem about the sea.",
    "Give me three tips for sleeping better.", "Tell me a short story about a brave fox.",
    "Who are you?", "What is photosynthesis?", "What is 12 plus 7?",
};
#define NPROMPT 8
#define MAX_REQ 256

static struct collect res[3][MAX_REQ];

// Runs n greedy requests on ops; fills res[k]; returns generated tokens per second.
static double run(const struct engine_model_ops *ops, const char *model, int parallel,
                  int max_tokens, int n, int k) {
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = model;
    o.ops = ops;
    o.n_ctx = 64 + max_tokens;
    o.max_tokens = max_tokens;
    o.n_threads = 2;
    o.parallel = parallel;
    o.preload = true;
    struct engine *e = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = engine_start(&o, &e, &err);
    if (rc) fprintf(stderr, "engine_start: %s\n", err.msg);
    CHECK_EQ(rc, 0);
    if (rc) return 0;
    static struct engine_req *rs[MAX_REQ];
    char text[MAX_REQ][96];
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        struct engine_params p;
        engine_params_default(&p);
        snprintf(text[i], sizeof text[i], "%s (%d)", prompts[i % NPROMPT], i / NPROMPT);
        p.prompt = i < NPROMPT ? prompts[i] : text[i];
        p.prompt_as_user_turn = true;
        p.max_tokens = max_tokens;
        p.sampling.temperature = 0;
        collect_init(&res[k][i]);
        CHECK_EQ(engine_submit(e, &p, on_event, &res[k][i], &rs[i], &err), 0);
    }
    long gen = 0;
    for (int i = 0; i < n; i++) {
        collect_wait(&res[k][i]);
        engine_req_release(rs[i]);
        CHECK_EQ(res[k][i].code, 0);
        gen += res[k][i].n_gen;
    }
    double dt = now_s() - t0;
    struct engine_stats st;
    engine_get_stats(e, &st);
    engine_stop(e, 5);
    fprintf(stderr,
            "%s: %d requests x <= %d tokens, parallel %d: %ld tokens in %.3f s = %.0f tok/s (%llu "
            "steps)\n",
            k == 0   ? "GPU greedy"
            : k == 1 ? "logits to host"
                     : "CPU",
            n, max_tokens, parallel, gen, dt, gen / dt, (unsigned long long)st.steps);
    return gen / dt;
}

int main(int argc, char **argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    const char *model = argc > 1 ? argv[1] : "models/lfm2-router";
    int parallel = argc > 2 ? atoi(argv[2]) : 8, max_tokens = argc > 3 ? atoi(argv[3]) : 24;
    int n = argc > 4 ? atoi(argv[4]) : NPROMPT;
    if (n > MAX_REQ) n = MAX_REQ;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(engine_cuda_configure("cuda:0", NULL, 0, &err), 0);
    engine_cuda_set_gpu_greedy(false);   // warm-up (driver, module loading), not compared
    run(engine_ops_for_path(model), model, parallel, max_tokens, n < NPROMPT ? n : NPROMPT, 1);
    engine_cuda_set_gpu_greedy(true);
    uint64_t g0 = engine_cuda_greedy_steps();
    double a = run(engine_ops_for_path(model), model, parallel, max_tokens, n, 0);
    uint64_t g1 = engine_cuda_greedy_steps();
    engine_cuda_set_gpu_greedy(false);
    double b = run(engine_ops_for_path(model), model, parallel, max_tokens, n, 1);
    uint64_t g2 = engine_cuda_greedy_steps();
    fprintf(stderr, "greedy steps on the GPU: %llu (then %llu with logits to host)\n",
            (unsigned long long)(g1 - g0), (unsigned long long)(g2 - g1));
    CHECK(g1 > g0);
    CHECK(g2 == g1);
    int same = 0;
    for (int i = 0; i < n; i++) {
        same += !strcmp(res[0][i].text, res[1][i].text) && res[0][i].n_gen == res[1][i].n_gen;
        if (strcmp(res[0][i].text, res[1][i].text))
            fprintf(stderr, "request %d differs:\n  gpu greedy: %s\n  host:       %s\n", i,
                    res[0][i].text, res[1][i].text);
    }
    fprintf(stderr, "texts identical GPU greedy vs logits to host: %d of %d; speedup %.2fx\n", same,
            n, a / b);
    CHECK_EQ(same, n);
    if (argc <= 1) {   // the CPU engine on the same model and prompts (reported, not required)
        CHECK_EQ(engine_cuda_configure("cpu", NULL, 0, &err), 0);
        run(engine_ops_for_path(model), model, parallel, max_tokens, n, 2);
        int cpu_same = 0;
        for (int i = 0; i < n; i++) cpu_same += !strcmp(res[0][i].text, res[2][i].text);
        fprintf(stderr, "texts identical GPU vs CPU engine: %d of %d\n", cpu_same, n);
    }
    return check_done();
}
