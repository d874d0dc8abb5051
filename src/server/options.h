// Options of `lfmd serve` / `lfmd stdio`: flags and LFMD_* environment variables in one table.
// SPDX-License-Identifier: MIT
#ifndef LFMD_SERVER_OPTIONS_H
#define LFMD_SERVER_OPTIONS_H

#include "server.h"

struct serve_config {
    struct engine_opts eng;
    struct server_opts http;
    double shutdown_timeout_s;   // default 30
    const char *profile;         // "auto", "small", "large"
    const char *log_format;      // "text" or "json" (serve)
    bool profile_small;          // what the profile resolved to
    unsigned set_mask;           // options given explicitly (they beat the profile)
    const char *device;          // --device cpu|cuda:N[,cuda:M] (NULL = cpu)
    const char *split;           // --split A,B: layers per device
    size_t gpu_memory_limit;     // --gpu-memory-limit (0 = none)
    bool no_mmap;                // --no-mmap: read weights into huge-page memory (lfmd_io_mmap)
};

void serve_config_default(struct serve_config *c);
// Is NAME (a long flag without dashes) known, and does it take a value?
bool serve_config_is_option(const char *name, bool *takes_value);
// Sets one option from text; origin ("--ctx", "LFMD_CTX") is used in messages. Values are
// borrowed (argv/environ strings live for the process). LFMD_EINVAL with a message.
LFMD_MUST_CHECK int serve_config_set(struct serve_config *c, const char *name, const char *value,
                                     const char *origin, struct lfmd_err_ctx *err);
// Reads LFMD_<NAME> for every option (LFMD_MEMORY_LIMIT, LFMD_IDLE_UNLOAD, ...).
LFMD_MUST_CHECK int serve_config_from_env(struct serve_config *c, struct lfmd_err_ctx *err);
// --profile: auto reads total RAM (< 12 GiB: ctx 256, idle trim 3 min; else ctx 1024, 10 min).
// Explicit --ctx / --idle-trim (flag or env) win.
void serve_config_apply_profile(struct serve_config *c);
size_t serve_total_ram(void);

#endif
