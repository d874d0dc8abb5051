// liblfmd: the lfmd engine embedded in another C program. Open a model under a memory budget,
// generate text (whole or streamed through a callback), route a text to one of several named
// routes, and free. Every function is thread-safe; generation calls from several threads queue
// on the one engine thread like HTTP requests do. Errors: functions return 0 or a negative code
// (LFMD_ERR_*) and write a human-readable message into err[0..errlen) when err is not NULL.
// Link with `pkg-config --cflags --libs lfmd`.
// SPDX-License-Identifier: MIT
#ifndef LFMD_H
#define LFMD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LFMD_API __attribute__((visibility("default")))
#else
#define LFMD_API
#endif

#define LFMD_ERR_INVALID (-1)   // bad argument, prompt too long, unknown model format
#define LFMD_ERR_NOMEM (-2)     // out of memory or over the memory limit
#define LFMD_ERR_IO (-3)        // model files missing or unreadable
#define LFMD_ERR_BUSY (-4)      // queue full or engine stopping
#define LFMD_ERR_CANCELED (-5)  // the callback asked to stop
#define LFMD_ERR_OTHER (-6)

struct lfmd;                    // one model behind one engine thread

struct lfmd_options {
    const char *model;          // model directory, .gguf file, or "@test" (built-in fake)
    size_t memory_limit;        // bytes; 0 = unlimited
    int ctx;                    // tokens per sequence (prompt + generated); 0 = 1024
    int max_tokens;             // cap of generated tokens; 0 = 256
    int threads;                // compute threads; 0 = all CPUs
    double idle_unload_s;       // unload the weights after this idle time; 0 = never
};

struct lfmd_gen_params {
    int max_tokens;             // 0 = the cap from lfmd_options
    float temperature;          // 0 = greedy (default)
    float top_p;                // 1 = off (default)
    int top_k;                  // 0 = off (default)
    uint64_t seed;
    int chat;                   // 1: render prompt as one user turn with the chat template
    const char *stop[4];        // NULL-terminated stop strings (up to 4)
};

struct lfmd_result {
    int prompt_tokens, generated_tokens;
    int finish_length;          // 1: stopped by max_tokens / context, 0: EOS or stop string
};

// Streaming callback: called from the engine thread with each new piece of text. Return
// non-zero to stop generating (lfmd_generate then returns LFMD_ERR_CANCELED).
typedef int (*lfmd_text_fn)(void *user, const char *text, size_t len);

LFMD_API const char *lfmd_version(void);
LFMD_API void lfmd_options_default(struct lfmd_options *o);
LFMD_API void lfmd_gen_params_default(struct lfmd_gen_params *p);

// Starts the engine for o->model. The weights load lazily on the first request (and again after
// an idle unload). With a memory limit, a limit below one request's need fails here.
LFMD_API int lfmd_open(const struct lfmd_options *o, struct lfmd **out, char *err, size_t errlen);

// Generates a continuation of prompt. *text (may be NULL: not collected) receives the whole
// text, NUL-terminated, to release with lfmd_text_free. on_text (may be NULL) streams it.
LFMD_API int lfmd_generate(struct lfmd *m, const char *prompt, const struct lfmd_gen_params *p,
                           lfmd_text_fn on_text, void *user, char **text,
                           struct lfmd_result *res, char *err, size_t errlen);
LFMD_API void lfmd_text_free(char *text);

// Scores each route name as the answer to a routing prompt listing "name: description" lines
// (descs may be NULL) and returns the most likely index in *best; probs (may be NULL, n
// entries) receives the softmax over the routes. n is 1..64.
LFMD_API int lfmd_route(struct lfmd *m, const char *text, const char *const *names,
                        const char *const *descs, int n, int *best, double *probs, char *err,
                        size_t errlen);

// Unloads the weights now (the next request loads them again).
LFMD_API void lfmd_unload(struct lfmd *m);
// Bytes currently held under the budget (weights, state, scratch, buffers).
LFMD_API size_t lfmd_memory_used(void);
// Finishes queued requests (up to 10 s), stops the engine and frees everything. NULL: no-op.
LFMD_API void lfmd_close(struct lfmd *m);

#ifdef __cplusplus
}
#endif
#endif
