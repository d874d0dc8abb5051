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
    struct engine *e = NULL;
    int src = app_start_engine("stdio", &c, on_stop, on_usr1, &e);
    if (src) return src;
    int rc = stdio_serve(e, STDIN_FILENO, stdout, &g_stop, &g_trim, c.shutdown_timeout_s);
    engine_stop(e, 0);
    return rc ? 1 : 0;
}
