// `lfmd stdio [MODEL]`: the NDJSON bridge protocol on stdin/stdout (bridge-protocol.md).
// MODEL comes from the positional argument or LFMD_MODEL; every other setting from LFMD_*
// variables (unknown ones are ignored). Signal handlers only set flags.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"
#include "engine/model_cuda.h"
#include "server/options.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop, g_trim;

static void on_stop(int sig) { g_stop = sig; }
static void on_usr1(int sig) { g_trim = 1; }

int cmd_stdio(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        puts("usage: lfmd stdio [MODEL]\n\n"
             "Serves the bridge NDJSON protocol: one JSON request per stdin line, one JSON reply\n"
             "per stdout line (INITIALIZED first, at once; the model loads on the first request).\n"
             "MODEL defaults to $LFMD_MODEL, else the embedded default model. Settings come from LFMD_CTX, LFMD_MAX_TOKENS,\n"
             "LFMD_MEMORY_LIMIT, LFMD_IDLE_TRIM, LFMD_IDLE_UNLOAD, LFMD_THREADS, LFMD_PRELOAD, ...\n"
             "(see lfmd serve --help). SIGUSR1 trims memory; EOF, SIGTERM or SIGINT exit 0.");
        return 0;
    }
    struct serve_config c;
    struct lfmd_err_ctx err = {0};
    serve_config_default(&c);
    if (serve_config_from_env(&c, &err)) {
        fprintf(stderr, "lfmd stdio: %s\n", err.msg);
        return 2;
    }
    if (argc > 2) {
        fprintf(stderr, "lfmd stdio: expected at most one argument (MODEL)\n");
        return 2;
    }
    if (argc == 2) c.eng.model_path = argv[1];
    c.eng.model_path = app_model_path(c.eng.model_path); // MODEL, $LFMD_MODEL, else the embedded model
    if (!c.eng.model_path) return 1;
    if (strcmp(c.eng.model_path, "@test") && access(c.eng.model_path, R_OK) != 0) {
        fprintf(stderr, "lfmd stdio: ERROR: model '%s' does not exist or is not readable\n",
                c.eng.model_path);
        return 1;
    }
    serve_config_apply_profile(&c);
    {
        struct lfmd_err_ctx derr = {0}; // --device / --split / --gpu-memory-limit
        if (engine_cuda_configure(c.device, c.split, c.gpu_memory_limit, &derr)) {
            fprintf(stderr, "lfmd stdio: ERROR: %s\n", derr.msg);
            return 2;
        }
    }
    c.eng.ops = engine_ops_for_path(c.eng.model_path);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    struct engine *e = NULL;
    if (engine_start(&c.eng, &e, &err)) {
        fprintf(stderr, "lfmd stdio: ERROR: %s\n", err.msg);
        return 1;
    }
    int rc = stdio_serve(e, STDIN_FILENO, stdout, &g_stop, &g_trim, c.shutdown_timeout_s);
    engine_stop(e, 0);
    return rc ? 1 : 0;
}
