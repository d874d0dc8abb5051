// Ollama-compatible API (/api/generate, /api/chat, /api/ps, /api/tags, /api/show, /api/version) and
// responses go through http_queue (guard.h).
// SPDX-License-Identifier: MIT
#ifndef LFMD_SERVER_OLLAMA_H
#define LFMD_SERVER_OLLAMA_H

#include "guard.h"
#include "server.h"

#include <microhttpd.h>

struct ollama_ctx {
    struct engine *e;
    const char *model_id;     // borrowed (the server's)
    const char *version;      // lfmd version for /api/version
    uint64_t disk_bytes;      // model files on disk (for /api/tags)
    char format[16];          // "gguf", "safetensors", "test"
    long long modified_at;    // model mtime (wall seconds)
};

// Fills o (disk size, format, mtime) from the engine's model path.
void ollama_init(struct ollama_ctx *o, struct engine *e, const char *model_id, const char *version);
// Is url an Ollama route (starts with "/api/")?
bool ollama_is_route(const char *url);
// Serves one request whose whole body has arrived. Blocks for non-streaming generation; streaming
// responses own their state until MHD frees them. Errors use Ollama's shape {"error":"..."}.
enum MHD_Result ollama_handle(struct ollama_ctx *o, struct MHD_Connection *c, const char *url,
                              const char *method, const char *body, size_t len);

// Ollama keep_alive: seconds as a number, or a Go duration string ("5m", "1h30m", "-1", "0").
// Negative = forever (returns -1), 0 = unload now/after. LFMD_EINVAL on junk.
int ollama_parse_keep_alive(const char *s, double *out);

#endif
