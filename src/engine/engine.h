// The engine: one thread that owns the model and serves queued generation requests for every
// front end (HTTP, stdio). It implements the memory lifecycle UNLOADED -> LOADING -> READY ->
// TRIMMED -> UNLOADED, admission against the global budget, sequence limits, sampling, stop
// strings and cancellation. Front ends never touch the model or the tokenizer directly.
// Invariant: every model/tokenizer call happens on the engine thread; a request's memory
// (sequence, decoder, text) is returned when it finishes unless --keep-cache keeps one sequence.
// Does not parse HTTP or JSON, and does not install signal handlers (the app layer does).
// SPDX-License-Identifier: MIT
#ifndef LFMD_ENGINE_ENGINE_H
#define LFMD_ENGINE_ENGINE_H

#include "base/buf.h"
#include "base/err.h"
#include "base/limits.h"
#include "sample/sampler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---- the model as the engine sees it (a vtable so tests can substitute a fake) ----

struct engine_model_info {
    int n_vocab;
    int max_ctx;              // model's own position limit (0 = unknown)
    bool has_template;        // the tokenizer carries a chat template
    size_t weight_bytes;      // bytes of weights the forward pass reads
    char name[128];           // shown in /v1/models and stdio replies
    char dtype[32];           // "bf16", "mlx-q4", ...
};

struct engine_chat_msg {
    const char *role;         // borrowed: "system", "user", "assistant", "tool"
    const char *content;      // borrowed, NUL-terminated
};

// Every function runs on the engine thread only. Handles are opaque to the engine.
struct engine_model_ops {
    const char *name;
    // Opens model + tokenizer. Returns owned *model (free with close).
    int (*open)(const char *path, int n_threads, void **model, struct engine_model_info *info,
                struct lfmd_err_ctx *err);
    void (*close)(void *model);
    // Bytes of per-sequence state for n_ctx tokens (KV + conv state).
    size_t (*seq_bytes)(void *model, int n_ctx);
    int (*seq_new)(void *model, int n_ctx, void **seq, struct lfmd_err_ctx *err);
    void (*seq_free)(void *seq);
    void (*seq_reset)(void *seq);
    // Runner = thread pool + forward scratch.
    int (*runner_new)(void *model, int n_threads, void **runner, struct lfmd_err_ctx *err);
    void (*runner_free)(void *runner);
    // Feeds n tokens; logits (n_vocab) receives the last token's logits.
    int (*forward)(void *runner, void *seq, const int32_t *toks, int n, float *logits,
                   struct lfmd_err_ctx *err);
    void (*release_pages)(void *model);
    // Renders chat messages with the chat template (add_generation_prompt) into out.
    int (*render_chat)(void *model, const struct engine_chat_msg *msgs, int n, struct buf *out,
                       struct lfmd_err_ctx *err);
    // Encodes text. special: parse special-token text (rendered templates); add_bos: prepend BOS.
    // Writes at most max ids; *n_out receives the full count (may exceed max).
    int (*encode)(void *model, const char *text, size_t len, bool special, bool add_bos,
                  int32_t *ids, int max, int *n_out, struct lfmd_err_ctx *err);
    // Streaming detokenizer: push one id, append its complete UTF-8 text to out.
    int (*dec_new)(void *model, void **dec, struct lfmd_err_ctx *err);
    int (*dec_push)(void *dec, int32_t id, struct buf *out);
    void (*dec_free)(void *dec);
    // True for end-of-generation ids (EOS, <|im_end|>, ...).
    bool (*is_eog)(void *model, int32_t id);
    // Optional: element type of the KV cache of sequences created from now on ("f16", "f32",
    // "q8"); seq_bytes follows it. Backends without it keep their own (CUDA: f32 on the device).
    int (*set_kv_type)(void *model, const char *name, struct lfmd_err_ctx *err);
    // One pass over several sequences (continuous batching): seqs[i] gets n[i] tokens; logits is
    // [n_seqs, n_vocab], each sequence's last-token logits. Any split gives identical results.
    int (*forward_batch)(void *runner, void *const *seqs, const int32_t *const *toks,
                         const int *n, int n_seqs, float *logits, struct lfmd_err_ctx *err);
    // Copies src's whole state (positions [0, pos)) into dst (dst's n_ctx >= src's pos).
    int (*seq_copy)(void *dst, const void *src);
    // The id that ends an assistant turn (<|im_end|>, <|eot_id|>, else EOS); -1 if none.
    int32_t (*eot_id)(void *model);
    // A token's decoded bytes on their own (no special tokens: empty). Borrowed from a table built
    // once per model; *len receives the byte count.
    const char *(*token_bytes)(void *model, int32_t id, size_t *len);
    // Optional: as forward_batch, but next[i] receives sequence i's greedy token (the first
    // maximum of its last-token logits, what sampler_argmax picks) and no logits come back (the
    // CUDA backend picks them on the GPU). Used for steps in which every sequence samples
    // greedily and needs no logits (engine_step).
    int (*forward_batch_greedy)(void *runner, void *const *seqs, const int32_t *const *toks,
                                const int *n, int n_seqs, int32_t *next, struct lfmd_err_ctx *err);
};

// The real model (src/model + src/tokenizer).
extern const struct engine_model_ops engine_model_real;
// A deterministic fake for tests ("@test" as the model path): byte tokens, tiny state, cycles a
// fixed text; LFMD_TEST_TOKEN_MS sets a per-token delay, LFMD_TEST_LOAD_MS a load delay.
extern const struct engine_model_ops engine_model_fake;

// "@test" -> the fake, anything else -> the real model. (In model_real.c, so that programs
// that only use the fake do not link the model layer.)
const struct engine_model_ops *engine_ops_for_path(const char *path);

// ---- engine ----

enum engine_state {
    ENGINE_UNLOADED,
    ENGINE_LOADING,
    ENGINE_READY,
    ENGINE_TRIMMED,
    ENGINE_UNLOADING,
};
const char *engine_state_name(enum engine_state s);

struct engine_opts {
    const char *model_path;   // borrowed for the engine's lifetime
    const struct engine_model_ops *ops; // required; engine_ops_for_path picks one
    int n_ctx;                // tokens per sequence (prompt + generated); default 512
    int max_tokens;           // default and cap of generated tokens; default 256
    int n_threads;            // compute threads (0 = online CPUs)
    int parallel;             // sequences decoded concurrently (default 1)
    int max_queue;            // waiting requests (default LFMD_MAX_QUEUE)
    double queue_timeout_s;   // default deadline for admission (default 30)
    double idle_trim_s;       // 0 = never
    double idle_unload_s;     // 0 = never
    bool preload;             // load at engine_start
    bool keep_cache;          // keep one idle sequence + scratch between requests
    size_t memory_limit;      // 0 = unlimited (applied by engine_start)
    size_t prefix_cache_bytes;// prefix cache cap (default 64 MiB; 0 = off)
    int step_tokens;          // tokens per batched step: decode tokens + prefill chunks (256)
    const char *kv_type;      // KV cache elements: "f16" (default), "f32" or "q8" (ops->set_kv_type)
};
void engine_opts_default(struct engine_opts *o);

enum engine_finish {
    ENGINE_FINISH_NONE,
    ENGINE_FINISH_STOP,       // EOS or a stop string
    ENGINE_FINISH_LENGTH,     // max_tokens or context full
};
const char *engine_finish_name(enum engine_finish f);

struct engine_params {
    const char *prompt;       // raw prompt (completion); borrowed until engine_submit returns
    const struct engine_chat_msg *msgs; // chat messages (used when n_msgs > 0)
    int n_msgs;
    bool prompt_as_user_turn; // render prompt as one user turn when the model has a template
    int max_tokens;           // <= 0: server default; clamped to the server's cap
    struct sampler_params sampling;
    const char *stop[LFMD_MAX_STOP_STRINGS];
    int n_stop;
    double deadline_ms;       // whole-request deadline from submit; 0 = queue timeout only
    bool raw_prompt;          // prompt is already rendered (special tokens parsed, no BOS added)
    size_t cache_prefix_bytes;// raw_prompt: bytes of prompt worth a prefix-cache snapshot
    // Scoring mode (n_choices > 0): nothing is generated; after the prompt each choice's tokens
    // followed by the end-of-turn token are scored and DONE carries their summed log-probs.
    const char *const *choices;
    int n_choices;
    // Log-probabilities: ENGINE_EV_LOGPROB per generated token with top_logprobs alternatives.
    bool logprobs;
    int top_logprobs;         // 0..LFMD_MAX_TOP_LOGPROBS
    // Constrained output: owned by the engine from a successful engine_submit (freed at DONE).
    struct engine_constraint *constraint;
    // Ollama keep_alive: set_keep_alive applies keep_alive_s (engine_set_keep_alive's meaning)
    // atomically with queueing this request.
    bool set_keep_alive;
    double keep_alive_s;
};
void engine_params_default(struct engine_params *p);

enum engine_ev_kind {
    ENGINE_EV_START,          // admitted: n_prompt is known, tokens follow
    ENGINE_EV_TEXT,           // a piece of generated text
    ENGINE_EV_DONE,           // last event: code 0 (finish, usage) or an error (code, msg)
    ENGINE_EV_LOGPROB,        // one generated token's log-probability (only with params.logprobs)
};

#define ENGINE_MAX_TOP_LOGPROBS 20
#define ENGINE_MAX_CHOICES 64

struct engine_logprob {
    const char *text;         // the token's decoded bytes (borrowed)
    size_t len;
    float logprob;
};

struct engine_event {
    enum engine_ev_kind kind;
    const char *text;         // TEXT: borrowed for the callback's duration
    size_t len;
    int n_prompt;             // START, DONE
    int n_gen;                // DONE
    enum engine_finish finish;// DONE
    int code;                 // DONE: 0 or LFMD_E*
    const char *msg;          // DONE with error: a human-readable message
    const double *scores;     // DONE in scoring mode: summed log-prob per choice (n_scores)
    int n_scores;
    int n_cached;             // START/DONE: prompt tokens restored from the prefix cache
    struct engine_logprob tok;// LOGPROB: the chosen token
    const struct engine_logprob *top; // LOGPROB: the n_top most likely tokens
    int n_top;
};

// Called on the engine thread; must not block or call back into the engine.
typedef void (*engine_event_fn)(void *user, const struct engine_event *ev);

struct engine;
struct engine_req;

// Creates the engine and starts its thread (and loads the model when opts->preload).
// With a memory limit, probes the model once and refuses a limit below one request's need
// (weights + one sequence at n_ctx + scratch): LFMD_EBUDGET with the numbers in err.
LFMD_MUST_CHECK int engine_start(const struct engine_opts *opts, struct engine **out,
                                 struct lfmd_err_ctx *err);
// Stops accepting new requests (engine_submit returns LFMD_EBUSY) and waits until the queue and
// the active set are empty or timeout_s passes. Returns the number of requests still pending.
int engine_drain(struct engine *e, double timeout_s);
// Stops accepting, lets in-flight and queued requests finish until timeout_s, cancels the rest,
// unloads and frees everything. NULL is a no-op.
void engine_stop(struct engine *e, double timeout_s);

// Queues a request. Events go to fn(user, ...) until DONE. Returns a handle owned by the caller
// (release with engine_req_release), or LFMD_EBUSY when the queue is full / the engine is
// stopping, LFMD_EINVAL for bad params, LFMD_ENOMEM. Thread-safe.
LFMD_MUST_CHECK int engine_submit(struct engine *e, const struct engine_params *p,
                                  engine_event_fn fn, void *user, struct engine_req **out,
                                  struct lfmd_err_ctx *err);
// Cancels the request if still running and detaches the callback: after this returns fn is not
// running and will not be called again. Do not hold a lock that fn takes while calling this.
void engine_req_release(struct engine_req *r);
// Sets the cancel flag (the callback still receives DONE with LFMD_ECANCELED).
void engine_req_cancel(struct engine_req *r);

// Asks the engine thread to trim (free idle state, release weight pages) or unload now.
// Never interrupts in-flight requests: those complete and the action follows.
void engine_trim(struct engine *e);
void engine_unload(struct engine *e);
// Per-request idle unload (Ollama keep_alive): after the engine goes idle, unload once `seconds`
// have passed; seconds < 0 = never, 0 = as soon as idle, NAN = back to opts.idle_unload_s.
// Lasts until the unload it causes (or the next call). Thread-safe.
void engine_set_keep_alive(struct engine *e, double seconds);
// Seconds until the idle unload would happen (the full keep-alive while requests run);
// INFINITY when it never will. Thread-safe.
double engine_expires_in(struct engine *e);

// ---- observability ----

#define ENGINE_HIST_BUCKETS 12
extern const double engine_hist_bounds[ENGINE_HIST_BUCKETS]; // seconds, last is +Inf

struct engine_hist {
    uint64_t counts[ENGINE_HIST_BUCKETS]; // non-cumulative
    double sum;
    uint64_t n;
};

enum engine_outcome {
    ENGINE_OUT_OK,
    ENGINE_OUT_INVALID,       // bad request (prompt too long, ...)
    ENGINE_OUT_REJECTED,      // queue full / budget / deadline
    ENGINE_OUT_CANCELED,
    ENGINE_OUT_ERROR,
    ENGINE_OUT_COUNT
};
const char *engine_outcome_name(enum engine_outcome o);

struct engine_stats {
    enum engine_state state;
    char model_name[128];
    char model_dtype[32];
    char model_path[256];
    int n_ctx, max_tokens, parallel;
    uint64_t requests[ENGINE_OUT_COUNT];
    uint64_t prompt_tokens, gen_tokens;
    uint64_t loads, unloads, trims;
    int queue_depth, active;
    struct engine_hist ttft, token_latency;
    double load_seconds_last;
    double uptime_s;
    double gen_seconds;       // wall time spent generating (for tokens/s)
    size_t mem_used[LFMD_MEM_COUNT];
    size_t mem_total, mem_peak, mem_limit;
    uint64_t prefix_hits, prefix_misses, prefix_evictions;
    size_t prefix_bytes, prefix_cap;
    int prefix_entries;
    uint64_t steps, step_tokens; // batched forward passes and the tokens they carried
};
// Snapshot; never wakes or blocks on the model. Thread-safe.
void engine_get_stats(struct engine *e, struct engine_stats *out);
enum engine_state engine_get_state(struct engine *e);
const struct engine_opts *engine_get_opts(const struct engine *e);

// ---- small helpers shared by front ends ----

// Resident set size in bytes from /proc/self/statm (0 if unavailable).
size_t engine_rss_bytes(void);
// "90s", "5m", "1h", "250ms", "2.5" (seconds) -> seconds. LFMD_EINVAL on junk or negatives.
int engine_parse_duration(const char *s, double *out);
// "1048576", "512K", "2G", "1.5GiB" -> bytes (powers of 1024). LFMD_EINVAL on junk.
int engine_parse_bytes(const char *s, size_t *out);
// Monotonic seconds.
double engine_now(void);

#endif
