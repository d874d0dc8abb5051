// Fuzz target: stdio NDJSON bridge lines. One engine with the built-in "@test" model (started
// once) serves stdio_serve over a pipe holding the input (many lines per input); replies go to
// /dev/null. Each input must be answered and drained with no leak: after stdio_serve returns
// and a trim (which empties the prefix cache), live allocations equal those before. The engine's
// model-lifetime state (the constraint vocabulary trie, built at the first constrained request:
// unscored routing) is built once at setup by a warm-up routing line, so that it is not counted
// as a leak of whichever input first asks for it.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "server/server.h"

#include <fcntl.h>
#include <signal.h>

static struct engine *g_engine;
static FILE *g_null;

static void setup(void) {
    setenv("LFMD_TEST_TOKEN_MS", "0", 1);
    // The @test model touches every page of its weights on each forward (16 MiB by default:
    // 4096 page writes per token, most of each input's time). The weights are not what is
    // fuzzed here; 1 MiB keeps the same code path.
    setenv("LFMD_TEST_WEIGHTS_MB", "1", 1);
    struct engine_opts o;
    engine_opts_default(&o);
    o.model_path = "@test";
    o.ops = engine_ops_for_path(o.model_path);
    o.max_tokens = 16;
    o.n_ctx = 256;
    o.n_threads = 1;
    o.idle_trim_s = 0;
    o.idle_unload_s = 0;
    o.preload = true; // the model's own allocations stay out of the per-input leak check
    struct lfmd_err_ctx err = {0};
    if (engine_start(&o, &g_engine, &err)) {
        fprintf(stderr, "engine_start: %s\n", err.msg);
        abort();
    }
    g_null = fopen("/dev/null", "w");
    if (!g_null) abort();
    signal(SIGPIPE, SIG_IGN);
    static const char warm[] = "{\"requestId\":\"w\",\"type\":\"routing\",\"prompt\":\"r\"}\n";
    int fds[2];
    if (pipe(fds) || write(fds[1], warm, sizeof warm - 1) != (ssize_t)(sizeof warm - 1)) abort();
    close(fds[1]);
    volatile sig_atomic_t stop = 0, trim = 0;
    if (stdio_serve(g_engine, fds[0], g_null, &stop, &trim, 10.0)) abort();
    close(fds[0]);
}

// engine_trim is asynchronous (the engine thread does it): ask for one and wait until the trim
// counter moves, so that the allocation count is read in the trimmed state.
static void settle(void) {
    struct engine_stats st;
    engine_get_stats(g_engine, &st);
    uint64_t t0 = st.trims;
    engine_trim(g_engine);
    for (int i = 0; i < 20000; i++) {
        engine_get_stats(g_engine, &st);
        if (st.trims > t0) return;
        usleep(100);
    }
    fprintf(stderr, "fuzz_stdio: the engine did not trim within 2 s\n");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_engine) setup();
    if (size > 60000) return 0; // fits the pipe buffer: written before stdio_serve reads
    int fds[2];
    if (pipe(fds)) abort();
    if (size && write(fds[1], data, size) != (ssize_t)size) abort();
    close(fds[1]);
    settle();
    long live = lfmd_alloc_live();
    volatile sig_atomic_t stop = 0, trim = 0;
    int rc = stdio_serve(g_engine, fds[0], g_null, &stop, &trim, 10.0);
    close(fds[0]);
    if (rc) {
        fprintf(stderr, "stdio_serve returned %d\n", rc);
        abort();
    }
    // The engine keeps idle state by design (prefix cache, scratch until idle): trim it, then
    // the live count must come back to the baseline (wait up to 2 s for the engine thread).
    settle();
    for (int i = 0; i < 20000 && lfmd_alloc_live() != live; i++) usleep(100);
    fuzz_check_leaks(live, "stdio_serve");
    return 0;
}
