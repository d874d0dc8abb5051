// `lfmd serve`: the HTTP server. Parses flags and LFMD_* variables, starts the engine and the
// HTTP front end, and turns signals into actions: SIGUSR1 trims, SIGTERM/SIGINT drain and exit 0.
// Signal handlers only set flags; this thread polls them.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"
#include "server/guard.h"
#include "engine/model_cuda.h"
#include "server/options.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop, g_trim;

static void on_stop(int sig) { g_stop = sig; }
static void on_usr1(int sig) { g_trim = 1; }

static void help(FILE *f) {
    fputs(
        "NAME\n"
        "    lfmd serve - HTTP inference server (OpenAI and Ollama APIs) under a memory budget\n"
        "\n"
        "SYNOPSIS\n"
        "    lfmd serve [-m MODEL] [options]\n"
        "\n"
        "DESCRIPTION\n"
        "    Serves MODEL over HTTP within a hard memory budget. The model is loaded on the first\n"
        "    request, per-request state is freed after each request, memory is trimmed when idle\n"
        "    and the model is unloaded after a longer idle period (or per request: Ollama's\n"
        "    keep_alive). Replicas hold no client state between requests, so any number can sit\n"
        "    behind a load balancer (deploy/nginx.conf, docs/OPERATIONS.md).\n"
        "\n"
        "OPTIONS\n"
        "    Each option is also read from the environment variable shown; flags win.\n"
        "  Model and memory\n"
        "    -m, --model PATH         model directory or .gguf file; '@test' = built-in test model\n"
        "                             (LFMD_MODEL; default: the embedded default model,\n"
        "                             models/lfm2-router)\n"
        "    --memory-limit BYTES     hard budget for weights, KV, conv state, scratch, caches and\n"
        "                             request buffers; K/M/G suffixes; refused at start if below\n"
        "                             what one request needs (LFMD_MEMORY_LIMIT; unlimited)\n"
        "    --ctx N                  tokens per sequence, prompt + generated; longer prompts get\n"
        "                             HTTP 400 (LFMD_CTX; from --profile)\n"
        "    --max-tokens N           default and cap of generated tokens (LFMD_MAX_TOKENS; 256)\n"
        "    --parallel N             sequences generated concurrently (LFMD_PARALLEL; 1)\n"
        "    --threads N              compute threads, 0 = all CPUs (LFMD_THREADS; 0)\n"
        "    --idle-trim DUR          free scratch/idle state and drop weight pages after DUR idle;\n"
        "                             0 = never (LFMD_IDLE_TRIM; from --profile)\n"
        "    --idle-unload DUR        unload the model after DUR idle; 0 = never\n"
        "                             (LFMD_IDLE_UNLOAD; 10m)\n"
        "    --preload                load the model at start instead of on first request\n"
        "                             (LFMD_PRELOAD)\n"
        "    --keep-cache             keep one sequence and the scratch between requests\n"
        "                             (LFMD_KEEP_CACHE; off: everything is freed after a request)\n"
        "    --prefix-cache BYTES     prefix cache cap (LFMD_PREFIX_CACHE; 64M, 0 = off)\n"
        "    --kv-type f16|f32|q8     KV cache element type (LFMD_KV_TYPE; f16: half the memory of\n"
        "                             f32, logits within ~1e-3; f32 is exact; q8 a quarter)\n"
        "    --no-mmap                read the weights into huge-page memory at load instead of\n"
        "                             mapping the file (LFMD_NO_MMAP): ~20% faster decode, but the\n"
        "                             pages stay resident until unload (idle trim keeps them)\n"
        "    --device cpu|cuda:N[,cuda:M]  run on the CPU or on CUDA GPU(s); several devices split\n"
        "                             the layers (LFMD_DEVICE; cpu; needs a -DLFMD_CUDA=ON build)\n"
        "    --split A,B              layers per device, relative (LFMD_SPLIT; by free memory)\n"
        "    --gpu-memory-limit BYTES cap on device memory (LFMD_GPU_MEMORY_LIMIT; unlimited)\n"
        "    --profile auto|small|large  small: ctx 256, idle trim 3m; large: ctx 1024, idle\n"
        "                             trim 10m; auto picks small under 12 GB of RAM\n"
        "                             (LFMD_PROFILE; auto)\n"
        "  Queue\n"
        "    --queue N                requests waiting for memory or a slot; more get 503\n"
        "                             (LFMD_QUEUE; 256)\n"
        "    --queue-timeout DUR      how long a request may wait before 503 + Retry-After\n"
        "                             (LFMD_QUEUE_TIMEOUT; 30s)\n"
        "    --shutdown-timeout DUR   on SIGTERM/SIGINT, time given to in-flight requests\n"
        "                             (LFMD_SHUTDOWN_TIMEOUT; 30s)\n"
        "  Network and security\n"
        "    --host ADDR              IPv4 address to listen on; the default only accepts local\n"
        "                             clients, 0.0.0.0 = every interface (LFMD_HOST; 127.0.0.1)\n"
        "    --port N                 TCP port, 0 = any free port (LFMD_PORT; 8080)\n"
        "    --api-key KEY            require 'Authorization: Bearer KEY' or 'x-api-key: KEY' on\n"
        "                             every route but /health; 401 otherwise; prefer the\n"
        "                             variable, flags show in ps (LFMD_API_KEY; none)\n"
        "    --cors-origin LIST       allow browser calls from these origins (comma-separated,\n"
        "                             or *); preflights answered (LFMD_CORS_ORIGIN; CORS off)\n"
        "    --max-connections N      concurrent HTTP connections; idle ones are closed, oldest\n"
        "                             first, above 3/4 of N (LFMD_MAX_CONNECTIONS; 256)\n"
        "    --max-body BYTES         request body cap, larger bodies get 413 (LFMD_MAX_BODY; 8M)\n"
        "    --request-timeout DUR    a client must send its whole request (headers and body)\n"
        "                             within DUR of connecting, or is disconnected\n"
        "                             (LFMD_REQUEST_TIMEOUT; 30s)\n"
        "    --keepalive-timeout DUR  idle keep-alive connections are closed after DUR\n"
        "                             (LFMD_KEEPALIVE_TIMEOUT; 75s)\n"
        "  Logging\n"
        "    --log-format text|json   stderr log lines; json: one object per line with time,\n"
        "                             level, msg, request_id (LFMD_LOG_FORMAT; text)\n"
        "    -h, --help               this text\n"
        "\n"
        "    DUR is 90s, 5m, 1h, 250ms or plain seconds.\n"
        "\n"
        "ENDPOINTS\n"
        "    POST /v1/chat/completions, POST /v1/completions (stream: SSE), GET /v1/models;\n"
        "    POST /api/generate, POST /api/chat (Ollama; NDJSON stream by default), GET /api/ps,\n"
        "    GET /api/tags, POST /api/show, GET /api/version; GET /health (public; 503 while\n"
        "    loading), GET /metrics (Prometheus), POST /admin/trim, POST /admin/unload.\n"
        "    Every response carries X-Request-Id (a valid incoming one is kept).\n"
        "\n"
        "SIGNALS\n"
        "    SIGUSR1 trims memory now (in-flight requests continue); SIGTERM/SIGINT stop\n"
        "    accepting, finish in-flight requests within --shutdown-timeout, exit 0.\n"
        "\n"
        "EXIT STATUS\n"
        "    0 ok, 1 runtime error (model, port, budget), 2 usage error.\n"
        "\n"
        "EXAMPLES\n"
        "    lfmd serve -m ./LFM2-350M --memory-limit 1G\n"
        "    LFMD_API_KEY=secret lfmd serve -m model.gguf --host 0.0.0.0 --log-format json\n"
        "\n"
        "SEE ALSO\n"
        "    lfmd ps --help, docs/SERVER.md, docs/OPERATIONS.md, deploy/lfmd.service\n",
        f);
}

// Parses argv into c: "-m X", "--name X", "--name=X", "--flag". Returns 0, 1 (help) or 2.
int serve_parse_args(int argc, char **argv, struct serve_config *c, const char *cmd);
int serve_parse_args(int argc, char **argv, struct serve_config *c, const char *cmd) {
    struct lfmd_err_ctx err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
        const char *name = NULL, *val = NULL;
        char namebuf[64];
        if (!strcmp(a, "-m")) {
            name = "model";
        } else if (!strncmp(a, "--", 2)) {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (n >= sizeof namebuf) n = sizeof namebuf - 1;
            memcpy(namebuf, a + 2, n);
            namebuf[n] = 0;
            name = namebuf;
            if (eq) val = eq + 1;
        } else {
            fprintf(stderr, "lfmd %s: unexpected argument '%s' (see lfmd %s --help)\n", cmd, a,
                    cmd);
            return 2;
        }
        bool takes;
        if (!serve_config_is_option(name, &takes)) {
            fprintf(stderr, "lfmd %s: unknown option '%s' (see lfmd %s --help)\n", cmd, a, cmd);
            return 2;
        }
        if (takes && !val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lfmd %s: option '%s' needs a value\n", cmd, a);
                return 2;
            }
            val = argv[++i];
        }
        if (!takes && !val) val = "1";
        char origin[80];
        snprintf(origin, sizeof origin, "--%s", name);
        if (serve_config_set(c, name, val, origin, &err)) {
            fprintf(stderr, "lfmd %s: %s\n", cmd, err.msg);
            return 2;
        }
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    struct serve_config c;
    struct lfmd_err_ctx err = {0};
    serve_config_default(&c);
    if (serve_config_from_env(&c, &err)) {
        fprintf(stderr, "lfmd serve: %s\n", err.msg);
        return 2;
    }
    int prc = serve_parse_args(argc, argv, &c, "serve");
    if (prc == 1) {
        help(stdout);
        return 0;
    }
    if (prc) return 2;
    lfmd_log_set_json(!strcmp(c.log_format, "json"));
    c.http.version = LFMD_VERSION;
    struct engine *e = NULL;
    int src = app_start_engine("serve", &c, on_stop, on_usr1, &e);
    if (src) return src;
    struct server *s = NULL;
    if (server_start(e, &c.http, &s, &err)) {
        fprintf(stderr, "lfmd serve: ERROR: %s\n", err.msg);
        engine_stop(e, 0);
        return 1;
    }
    lfmd_log("info", NULL,
             "listening on http://%s:%d (model %s, ctx %d, max tokens %d, memory limit %zu, "
             "idle trim %gs, idle unload %gs, profile %s, auth %s, cors %s)",
             c.http.host, server_port(s), c.eng.model_path, c.eng.n_ctx, c.eng.max_tokens,
             c.eng.memory_limit, c.eng.idle_trim_s, c.eng.idle_unload_s,
             c.profile_small ? "small" : "large", c.http.api_key && *c.http.api_key ? "on" : "off",
             c.http.cors_origin && *c.http.cors_origin ? c.http.cors_origin : "off");
    if (strcmp(c.http.host, "127.0.0.1") && strcmp(c.http.host, "localhost") &&
        !(c.http.api_key && *c.http.api_key))
        lfmd_log("warn", NULL, "listening on %s without --api-key: anyone who can reach this "
                               "address can use the server",
                 c.http.host);
    while (!g_stop) {
        if (g_trim) {
            g_trim = 0;
            engine_trim(e);
        }
        usleep(50000);
    }
    lfmd_log("info", NULL, "signal %d: draining (up to %gs)", (int)g_stop, c.shutdown_timeout_s);
    double t0 = engine_now();
    server_quiesce(s);
    int left = engine_drain(e, c.shutdown_timeout_s);
    // Let connections deliver their last bytes.
    while (server_active_connections(s) > 0 && engine_now() - t0 < c.shutdown_timeout_s + 2)
        usleep(10000);
    server_stop(s);
    engine_stop(e, 0);
    lfmd_log("info", NULL, "stopped (%d requests unfinished)", left);
    return 0;
}
