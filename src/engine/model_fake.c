// A deterministic stand-in model for tests of the engine and the front ends (path "@test").
// Tokens are bytes (0..255) plus BOS 256 and EOS 257; it generates "Hello from the lfmd test
// model. " over and over, or EOS after N tokens when the prompt contains "[eos:N]". Its weights
// are an anonymous mapping (LFMD_TEST_WEIGHTS_MB, default 16) charged as weights and released
// by trim; sequences and scratch are real budgeted allocations, so memory behaves like a model's.
// LFMD_TEST_TOKEN_MS delays each forward pass, LFMD_TEST_LOAD_MS delays open.
// SPDX-License-Identifier: MIT
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define FAKE_VOCAB 259
#define FAKE_BOS 256
#define FAKE_EOS 257
#define FAKE_SEQ_BYTES_PER_TOKEN 1024
#define FAKE_SCRATCH_BYTES (1u << 20)

static const char fake_text[] = "Hello from the lfmd test model. ";

struct fake_model {
    unsigned char *weights;
    size_t weight_bytes;
    long token_ms;
};

struct fake_seq {
    int n_ctx, pos, n_prompt, eos_after; // eos_after < 0: never
    int predicted;                       // token the last pass predicted (-1: none)
    unsigned char *state;                // [n_ctx * FAKE_SEQ_BYTES_PER_TOKEN]
};

struct fake_runner {
    struct fake_model *m;
    unsigned char *scratch;
    bool batched;             // inside forward_batch: one delay per pass, not per sequence
};

static long env_long(const char *name, long def) {
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 10) : def;
}

static void sleep_ms(long ms) {
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void touch(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i] = (unsigned char)(i >> 12);
}

static void fake_close(void *h) {
    struct fake_model *m = h;
    if (!m) return;
    if (m->weights) {
        munmap(m->weights, m->weight_bytes);
        lfmd_mem_uncharge(LFMD_MEM_WEIGHTS, m->weight_bytes);
    }
    lfmd_free(m);
}

static int fake_open(const char *path, int n_threads, void **out, struct engine_model_info *info,
                     struct lfmd_err_ctx *err) {
    *out = NULL;
    sleep_ms(env_long("LFMD_TEST_LOAD_MS", 0));
    struct fake_model *m = lfmd_calloc(1, sizeof *m, LFMD_MEM_OTHER);
    if (!m) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    m->token_ms = env_long("LFMD_TEST_TOKEN_MS", 0);
    m->weight_bytes = (size_t)env_long("LFMD_TEST_WEIGHTS_MB", 16) << 20;
    if (lfmd_mem_charge(LFMD_MEM_WEIGHTS, m->weight_bytes)) {
        lfmd_free(m);
        return lfmd_err_set(err, LFMD_EBUDGET, "@test: %zu bytes of weights exceed the budget",
                            m->weight_bytes);
    }
    m->weights = mmap(NULL, m->weight_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (m->weights == MAP_FAILED) {
        m->weights = NULL;
        lfmd_mem_uncharge(LFMD_MEM_WEIGHTS, m->weight_bytes);
        lfmd_free(m);
        return lfmd_err_set(err, LFMD_ENOMEM, "@test: cannot map weights");
    }
    touch(m->weights, m->weight_bytes);
    memset(info, 0, sizeof *info);
    info->n_vocab = FAKE_VOCAB;
    info->max_ctx = 1 << 16;
    info->has_template = true;
    info->weight_bytes = m->weight_bytes;
    snprintf(info->name, sizeof info->name, "lfmd-test");
    snprintf(info->dtype, sizeof info->dtype, "f32");
    *out = m;
    return 0;
}

static size_t fake_seq_bytes(void *h, int n_ctx) {
    return sizeof(struct fake_seq) + (size_t)n_ctx * FAKE_SEQ_BYTES_PER_TOKEN;
}

static int fake_seq_new(void *h, int n_ctx, void **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct fake_seq *s = lfmd_calloc(1, sizeof *s, LFMD_MEM_KV);
    if (!s) return lfmd_err_set(err, LFMD_EBUDGET, "no memory for a sequence");
    s->state = lfmd_malloc((size_t)n_ctx * FAKE_SEQ_BYTES_PER_TOKEN, LFMD_MEM_KV);
    if (!s->state) {
        lfmd_free(s);
        return lfmd_err_set(err, LFMD_EBUDGET, "no memory for %d tokens of state", n_ctx);
    }
    s->n_ctx = n_ctx;
    s->eos_after = -1;
    s->predicted = -1;
    *out = s;
    return 0;
}

static void fake_seq_free(void *p) {
    struct fake_seq *s = p;
    if (!s) return;
    lfmd_free(s->state);
    lfmd_free(s);
}

static void fake_seq_reset(void *p) {
    struct fake_seq *s = p;
    s->pos = s->n_prompt = 0;
    s->eos_after = -1;
    s->predicted = -1;
}

static int fake_runner_new(void *h, int n_threads, void **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct fake_runner *r = lfmd_calloc(1, sizeof *r, LFMD_MEM_SCRATCH);
    if (!r) return lfmd_err_set(err, LFMD_EBUDGET, "no memory for a runner");
    r->scratch = lfmd_malloc(FAKE_SCRATCH_BYTES, LFMD_MEM_SCRATCH);
    if (!r->scratch) {
        lfmd_free(r);
        return lfmd_err_set(err, LFMD_EBUDGET, "no memory for scratch");
    }
    touch(r->scratch, FAKE_SCRATCH_BYTES);
    r->m = h;
    *out = r;
    return 0;
}

static void fake_runner_free(void *p) {
    struct fake_runner *r = p;
    if (!r) return;
    lfmd_free(r->scratch);
    lfmd_free(r);
}

static int fake_forward(void *rp, void *sp, const int32_t *toks, int n, float *logits,
                        struct lfmd_err_ctx *err) {
    struct fake_runner *r = rp;
    struct fake_seq *s = sp;
    if (n < 1 || s->pos + n > s->n_ctx)
        return lfmd_err_set(err, LFMD_ETOOBIG, "sequence of %d tokens is full", s->n_ctx);
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= FAKE_VOCAB)
            return lfmd_err_set(err, LFMD_EINVAL, "token id %d out of range", (int)toks[i]);
    // A single token equal to the last prediction is generated output fed back; anything else is
    // prompt (a whole prompt, a chunk of one, or the rest of one after a prefix-cache restore).
    if (!(n == 1 && s->pos > 0 && toks[0] == s->predicted)) {
        // Prompt: look for "[eos:N]" in the prompt bytes.
        char tmp[4096];
        int k = 0;
        for (int i = 0; i < n && k < (int)sizeof tmp - 1; i++)
            if (toks[i] < 256) tmp[k++] = (char)toks[i];
        tmp[k] = 0;
        const char *p = strstr(tmp, "[eos:");
        if (p) s->eos_after = atoi(p + 5);
        s->n_prompt = s->pos + n;
    }
    for (int i = 0; i < n; i++) s->state[(size_t)(s->pos + i) * FAKE_SEQ_BYTES_PER_TOKEN] = 1;
    s->pos += n;
    touch(r->m->weights, r->m->weight_bytes);
    r->scratch[0]++;
    if (!r->batched) sleep_ms(r->m->token_ms);
    int gen = s->pos - s->n_prompt; // tokens generated so far (fed back)
    int next = (s->eos_after >= 0 && gen >= s->eos_after)
                   ? FAKE_EOS
                   : (unsigned char)fake_text[gen % (int)(sizeof fake_text - 1)];
    for (int i = 0; i < FAKE_VOCAB; i++) logits[i] = 0.0f;
    logits[next] = 40.0f;
    s->predicted = next;
    return 0;
}

// One pass for all sequences: the per-token delay is paid once (weights are read once).
static int fake_forward_batch(void *rp, void *const *seqs, const int32_t *const *toks,
                              const int *n, int n_seqs, float *logits, struct lfmd_err_ctx *err) {
    struct fake_runner *r = rp;
    r->batched = true;
    int rc = 0;
    for (int i = 0; i < n_seqs && !rc; i++)
        rc = fake_forward(rp, seqs[i], toks[i], n[i], logits + (size_t)i * FAKE_VOCAB, err);
    r->batched = false;
    if (!rc) sleep_ms(r->m->token_ms);
    return rc;
}

static int fake_seq_copy(void *dst, const void *src) {
    struct fake_seq *d = dst;
    const struct fake_seq *s = src;
    if (d->n_ctx < s->pos) return LFMD_EINVAL;
    memcpy(d->state, s->state, (size_t)s->pos * FAKE_SEQ_BYTES_PER_TOKEN);
    d->pos = s->pos;
    d->n_prompt = s->n_prompt;
    d->eos_after = s->eos_after;
    d->predicted = s->predicted;
    return 0;
}

static int32_t fake_eot_id(void *h) { return FAKE_EOS; }

static const char *fake_token_bytes(void *h, int32_t id, size_t *len) {
    static char bytes[256];
    if (!bytes[1])
        for (int i = 0; i < 256; i++) bytes[i] = (char)i;
    *len = id >= 0 && id < 256 ? 1 : 0;
    return *len ? &bytes[id] : "";
}

static void fake_release_pages(void *h) {
    struct fake_model *m = h;
    madvise(m->weights, m->weight_bytes, MADV_DONTNEED);
}

static int fake_render_chat(void *h, const struct engine_chat_msg *msgs, int n, struct buf *out,
                            struct lfmd_err_ctx *err) {
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = buf_printf(out, "<%s>%s\n", msgs[i].role, msgs[i].content);
    if (!rc) rc = buf_puts(out, "<assistant>");
    return rc ? lfmd_err_set(err, rc, "rendered prompt too large") : 0;
}

static int fake_encode(void *h, const char *text, size_t len, bool special, bool add_bos,
                       int32_t *ids, int max, int *n_out, struct lfmd_err_ctx *err) {
    int n = 0;
    if (add_bos) {
        if (n < max) ids[n] = FAKE_BOS;
        n++;
    }
    for (size_t i = 0; i < len; i++, n++)
        if (n < max) ids[n] = (unsigned char)text[i];
    *n_out = n;
    return 0;
}

static int fake_dec_new(void *h, void **out, struct lfmd_err_ctx *err) {
    *out = h; // stateless: every token is one byte
    return 0;
}

static int fake_dec_push(void *d, int32_t id, struct buf *out) {
    if (id >= 256) return 0;
    return buf_putc(out, (char)id);
}

static void fake_dec_free(void *d) {}

static bool fake_is_eog(void *h, int32_t id) { return id == FAKE_EOS; }

const struct engine_model_ops engine_model_fake = {
    .name = "fake",
    .open = fake_open,
    .close = fake_close,
    .seq_bytes = fake_seq_bytes,
    .seq_new = fake_seq_new,
    .seq_free = fake_seq_free,
    .seq_reset = fake_seq_reset,
    .runner_new = fake_runner_new,
    .runner_free = fake_runner_free,
    .forward = fake_forward,
    .release_pages = fake_release_pages,
    .render_chat = fake_render_chat,
    .encode = fake_encode,
    .dec_new = fake_dec_new,
    .dec_push = fake_dec_push,
    .dec_free = fake_dec_free,
    .is_eog = fake_is_eog,
    .forward_batch = fake_forward_batch,
    .seq_copy = fake_seq_copy,
    .eot_id = fake_eot_id,
    .token_bytes = fake_token_bytes,
};
