// The engine's view of a model on CUDA devices: delegates opening, text and tokenizer ops to
// engine_model_real and runs sequences, runners and forward passes through src/cuda. Weights are
// uploaded at open (the host pages are released right after); close frees every device
// allocation and destroys the device contexts, so an idle-unloaded engine holds no GPU memory;
// release_pages (idle trim) returns pooled device memory to the driver. Steps in which every
// sequence decodes greedily take forward_batch_greedy (argmax on the GPU, only token ids come
// back); the others copy logits to the host.
// SPDX-License-Identifier: MIT
#include "model_cuda.h"

#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

#ifdef LFMD_HAVE_CUDA
static const char *g_device, *g_split;
static size_t g_gpu_limit;
static bool g_cuda;
static bool g_no_greedy;        // engine_cuda_set_gpu_greedy(false): logits to the host always
static uint64_t g_greedy_steps; // forward_batch_greedy calls (engine thread only)

#include "cuda/cuda.h"
#include "model/model.h"

struct cuda_handle {
    void *real;                // engine_model_real handle (model + tokenizer)
    struct cuda_model *cm;
};

static void cu_close(void *h) {
    struct cuda_handle *ch = h;
    if (!ch) return;
    cuda_model_free(ch->cm);
    cuda_shutdown();
    engine_model_real.close(ch->real);
    lfmd_free(ch);
}

static int cu_open(const char *path, int n_threads, void **out, struct engine_model_info *info,
                   struct lfmd_err_ctx *err) {
    *out = NULL;
    struct cuda_opts o = {0};
    int rc = cuda_parse_devices(g_device, g_split, &o, err);
    if (rc) return rc;
    struct cuda_handle *ch = lfmd_calloc(1, sizeof *ch, LFMD_MEM_OTHER);
    if (!ch) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    rc = engine_model_real.open(path, n_threads, &ch->real, info, err);
    if (!rc) {
        cuda_set_limit(g_gpu_limit);
        rc = cuda_model_new(engine_real_model(ch->real), &o, &ch->cm, err);
    }
    if (rc) {
        cu_close(ch);
        return rc;
    }
    model_release_pages(engine_real_model(ch->real));
    *out = ch;
    return 0;
}

static size_t cu_seq_bytes(void *h, int n_ctx) {
    (void)h;
    (void)n_ctx;
    return 4096;   // host bytes; device bytes are checked against --gpu-memory-limit
}

static int cu_seq_new(void *h, int n_ctx, void **out, struct lfmd_err_ctx *err) {
    struct cuda_handle *ch = h;
    struct cuda_seq *s = NULL;
    int rc = cuda_seq_new(ch->cm, n_ctx, &s, err);
    *out = s;
    return rc;
}

static void cu_seq_free(void *s) { cuda_seq_free(s); }
static void cu_seq_reset(void *s) { cuda_seq_reset(s); }
static int cu_seq_copy(void *dst, const void *src) { return cuda_seq_copy(dst, src); }

static int cu_runner_new(void *h, int n_threads, void **out, struct lfmd_err_ctx *err) {
    struct cuda_handle *ch = h;
    struct cuda_runner *r = NULL;
    (void)n_threads;
    int rc = cuda_runner_new(ch->cm, LFMD_MAX_BATCH_TOKENS, &r, err);
    *out = r;
    return rc;
}

static void cu_runner_free(void *r) { cuda_runner_free(r); }

static int cu_forward(void *r, void *s, const int32_t *toks, int n, float *logits,
                      struct lfmd_err_ctx *err) {
    return cuda_forward(r, s, toks, n, logits, err);
}

static int cu_forward_batch(void *r, void *const *seqs, const int32_t *const *toks, const int *n,
                            int n_seqs, float *logits, struct lfmd_err_ctx *err) {
    return cuda_forward_batch(r, (struct cuda_seq *const *)seqs, toks, n, n_seqs, logits, err);
}

static int cu_forward_batch_greedy(void *r, void *const *seqs, const int32_t *const *toks,
                                   const int *n, int n_seqs, int32_t *next,
                                   struct lfmd_err_ctx *err) {
    g_greedy_steps++;
    return cuda_forward_batch_greedy(r, (struct cuda_seq *const *)seqs, toks, n, n_seqs, next, err);
}

static int32_t cu_eot_id(void *h) {
    return engine_model_real.eot_id(((struct cuda_handle *)h)->real);
}

static const char *cu_token_bytes(void *h, int32_t id, size_t *len) {
    return engine_model_real.token_bytes(((struct cuda_handle *)h)->real, id, len);
}

static void cu_release_pages(void *h) {
    struct cuda_handle *ch = h;
    engine_model_real.release_pages(ch->real);
    cuda_trim();
}

static int cu_render_chat(void *h, const struct engine_chat_msg *msgs, int n, struct buf *out,
                          struct lfmd_err_ctx *err) {
    return engine_model_real.render_chat(((struct cuda_handle *)h)->real, msgs, n, out, err);
}

static int cu_encode(void *h, const char *text, size_t len, bool special, bool add_bos,
                     int32_t *ids, int max, int *n_out, struct lfmd_err_ctx *err) {
    return engine_model_real.encode(((struct cuda_handle *)h)->real, text, len, special, add_bos,
                                    ids, max, n_out, err);
}

static int cu_dec_new(void *h, void **dec, struct lfmd_err_ctx *err) {
    return engine_model_real.dec_new(((struct cuda_handle *)h)->real, dec, err);
}

static bool cu_is_eog(void *h, int32_t id) {
    return engine_model_real.is_eog(((struct cuda_handle *)h)->real, id);
}

static int cu_dec_push(void *d, int32_t id, struct buf *out) {
    return engine_model_real.dec_push(d, id, out);
}
static void cu_dec_free(void *d) { engine_model_real.dec_free(d); }

static const struct engine_model_ops engine_model_cuda = {
    .name = "cuda",
    .open = cu_open,
    .close = cu_close,
    .seq_bytes = cu_seq_bytes,
    .seq_new = cu_seq_new,
    .seq_free = cu_seq_free,
    .seq_reset = cu_seq_reset,
    .seq_copy = cu_seq_copy,
    .runner_new = cu_runner_new,
    .runner_free = cu_runner_free,
    .forward = cu_forward,
    .release_pages = cu_release_pages,
    .render_chat = cu_render_chat,
    .encode = cu_encode,
    .dec_new = cu_dec_new,
    .dec_push = cu_dec_push,
    .dec_free = cu_dec_free,
    .is_eog = cu_is_eog,
    .forward_batch = cu_forward_batch,
    .forward_batch_greedy = cu_forward_batch_greedy,
    .eot_id = cu_eot_id,
    .token_bytes = cu_token_bytes,
};

// Same ops without forward_batch_greedy: every step copies the logits to the host.
static const struct engine_model_ops engine_model_cuda_logits = {
    .name = "cuda",
    .open = cu_open,
    .close = cu_close,
    .seq_bytes = cu_seq_bytes,
    .seq_new = cu_seq_new,
    .seq_free = cu_seq_free,
    .seq_reset = cu_seq_reset,
    .seq_copy = cu_seq_copy,
    .runner_new = cu_runner_new,
    .runner_free = cu_runner_free,
    .forward = cu_forward,
    .release_pages = cu_release_pages,
    .render_chat = cu_render_chat,
    .encode = cu_encode,
    .dec_new = cu_dec_new,
    .dec_push = cu_dec_push,
    .dec_free = cu_dec_free,
    .is_eog = cu_is_eog,
    .forward_batch = cu_forward_batch,
    .eot_id = cu_eot_id,
    .token_bytes = cu_token_bytes,
};

const struct engine_model_ops *engine_cuda_ops(void) {
    if (!g_cuda) return NULL;
    return g_no_greedy ? &engine_model_cuda_logits : &engine_model_cuda;
}

void engine_cuda_set_gpu_greedy(bool on) { g_no_greedy = !on; }
uint64_t engine_cuda_greedy_steps(void) { return g_greedy_steps; }
#else
const struct engine_model_ops *engine_cuda_ops(void) { return NULL; }
void engine_cuda_set_gpu_greedy(bool on) { (void)on; }
uint64_t engine_cuda_greedy_steps(void) { return 0; }
#endif

int engine_cuda_configure(const char *device, const char *split, size_t gpu_memory_limit,
                          struct lfmd_err_ctx *err) {
    if (!device || !*device || !strcmp(device, "cpu")) {
#ifdef LFMD_HAVE_CUDA
        g_cuda = false;
#endif
        return 0;
    }
    if (strncmp(device, "cuda", 4))
        return lfmd_err_set(err, LFMD_EINVAL, "--device '%s': expected cpu or cuda[:N][,cuda:M...]",
                            device);
#ifndef LFMD_HAVE_CUDA
    (void)split;
    (void)gpu_memory_limit;
    return lfmd_err_set(err, LFMD_ENOTSUP,
                        "--device %s: this lfmd was built without CUDA (-DLFMD_CUDA=ON)", device);
#else
    struct cuda_opts o = {0};
    int rc = cuda_parse_devices(device, split, &o, err);
    if (rc) return rc;
    g_device = device;
    g_split = split;
    g_gpu_limit = gpu_memory_limit;
    g_cuda = true;
    return 0;
#endif
}
