// CLI helpers; see app.h.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "embedded.h"

#include "base/alloc.h"
#include "base/io.h"
#include "engine/model_cuda.h"
#include "server/options.h"
#include "base/pool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *app_opt(int argc, char **argv, int *i, const char *name, bool *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        fprintf(stderr, "lfmd: option %s needs a value\n", name);
        return NULL;
    }
    return argv[++*i];
}

const char *app_model_path(const char *explicit_path) {
    if (explicit_path && *explicit_path) return explicit_path;
    const char *env = getenv("LFMD_MODEL");
    if (env && *env) return env;
    const char *emb = embedded_model_dir();
    if (emb) return emb;
    static char path[4096];
    // Installed layout: <prefix>/bin/lfmd -> <prefix>/share/lfmd/models/lfm2-router
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof path, "%s/../share/lfmd/models/lfm2-router", exe);
            if (access(path, R_OK) == 0) return path;
        }
    }
    snprintf(path, sizeof path, "%s/models/lfm2-router", LFMD_SOURCE_DIR);
    if (access(path, R_OK) == 0) return path;
    fprintf(stderr, "lfmd: no model given (-m DIR) and the default model was not found\n");
    return NULL;
}

double app_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0, kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) {
            kb = strtoull(line + kl, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

size_t app_rss_bytes(void) { return status_kb("VmRSS:"); }
size_t app_peak_rss_bytes(void) { return status_kb("VmHWM:"); }

int app_parse_ids(const char *s, int32_t **out) {
    *out = NULL;
    size_t cap = 16, n = 0;
    int32_t *ids = lfmd_malloc(cap * sizeof *ids, LFMD_MEM_REQUEST);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            lfmd_free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *g = lfmd_realloc(ids, cap * 2 * sizeof *ids);
            if (!g) {
                lfmd_free(ids);
                return -1;
            }
            ids = g;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    *out = ids;
    return (int)n;
}

int app_threads_default(void) {
    const char *e = getenv("LFMD_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    return pool_cpu_count();
}

int app_start_engine(const char *cmd, struct serve_config *c, void (*on_stop)(int),
                     void (*on_usr1)(int), struct engine **out) {
    *out = NULL;
    c->eng.model_path = app_model_path(c->eng.model_path);
    if (!c->eng.model_path) return 1;
    if (strcmp(c->eng.model_path, "@test") && access(c->eng.model_path, R_OK) != 0) {
        fprintf(stderr, "lfmd %s: ERROR: model '%s' does not exist or is not readable\n", cmd,
                c->eng.model_path);
        return 1;
    }
    serve_config_apply_profile(c);
    struct lfmd_err_ctx err = {0};
    if (engine_cuda_configure(c->device, c->split, c->gpu_memory_limit, &err)) {
        fprintf(stderr, "lfmd %s: ERROR: %s\n", cmd, err.msg);
        return 2;
    }
    c->eng.ops = engine_ops_for_path(c->eng.model_path);
    lfmd_io_set_copy_maps(c->no_mmap);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (engine_start(&c->eng, out, &err)) {
        fprintf(stderr, "lfmd %s: ERROR: %s\n", cmd, err.msg);
        return 1;
    }
    return 0;
}
