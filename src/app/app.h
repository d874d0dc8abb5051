// Helpers shared by the CLI subcommands: option parsing, the default model, timing, RSS.
// SPDX-License-Identifier: MIT
#ifndef LFMD_APP_APP_H
#define LFMD_APP_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Returns the value of option `name` at argv[*i] ("--name VALUE" or "--name=VALUE"), advancing *i,
// or NULL if argv[*i] is not that option. Sets *missing when the value is absent.
const char *app_opt(int argc, char **argv, int *i, const char *name, bool *missing);
// Model path: explicit, else $LFMD_MODEL, else the default model shipped with lfmd.
// Returns NULL (and prints why) when none is found.
const char *app_model_path(const char *explicit_path);
double app_now_ms(void);
size_t app_rss_bytes(void);       // current resident set size
size_t app_peak_rss_bytes(void);  // high-water mark (VmHWM)
// Parses "1,2,3" into ids (malloc'd with lfmd_malloc). Returns count or -1 on syntax error.
int app_parse_ids(const char *s, int32_t **out);
int app_threads_default(void);

struct serve_config;
struct engine;
// Start-up shared by `serve` and `stdio`: resolves the model (given, $LFMD_MODEL, else the embedded
// default), applies the profile and the device (--device/--split/--gpu-memory-limit), installs the
// signal handlers (SIGTERM/SIGINT -> on_stop, SIGUSR1 -> on_usr1; they only set flags; SIGPIPE
// ignored) and starts the engine. Returns 0 and *out, or the exit code (1 runtime, 2 usage) after
// printing "lfmd CMD: ..." on stderr.
int app_start_engine(const char *cmd, struct serve_config *c, void (*on_stop)(int),
                     void (*on_usr1)(int), struct engine **out);

#endif
