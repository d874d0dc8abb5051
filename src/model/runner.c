// Sequences (per-request state), the runner (thread pool + scratch) and the ops that
// architecture files compose. Ops split work across the pool by output rows or by (token, head)
// pairs; row ranges are multiples of 16 so threads never share a cache line of Y.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

// ---- sequences ----

// The cache is head-major: [layer][K, V][KV head][n_ctx][kv_head_bytes], so one head's rows over
// all positions are contiguous (attention streams them; row-major, a head's 128-byte rows were a
// whole KV row apart, which the hardware prefetchers do not follow). seq_k / seq_v give a layer's
// K / V region, these a head's rows within it.
static uint8_t *seq_kh(const struct seq *s, int li, int g) {
    return seq_k(s, li) + (size_t)g * s->n_ctx * s->kv_head_bytes;
}
static uint8_t *seq_vh(const struct seq *s, int li, int g) {
    return seq_v(s, li) + (size_t)g * s->n_ctx * s->kv_head_bytes;
}

// The KV dtype of sequences created without options: f32, unless LFMD_KV_TYPE names another
// (a measurement aid; the engine passes an explicit type).
static enum lfmd_dtype default_kv_type(void) {
    enum lfmd_dtype t = LFMD_DTYPE_F32;
    const char *e = getenv("LFMD_KV_TYPE");
    if (e && seq_kv_type_parse(e, &t)) t = LFMD_DTYPE_F32;
    return t;
}

int seq_kv_type_parse(const char *name, enum lfmd_dtype *out) {
    if (!strcmp(name, "f32")) *out = LFMD_DTYPE_F32;
    else if (!strcmp(name, "f16")) *out = LFMD_DTYPE_F16;
    else if (!strcmp(name, "q8") || !strcmp(name, "q8_0")) *out = LFMD_DTYPE_Q8_0;
    else return LFMD_EINVAL;
    return 0;
}

static bool kv_type_ok(const struct model_config *c, enum lfmd_dtype t) {
    return t == LFMD_DTYPE_F32 || t == LFMD_DTYPE_F16 || (t == LFMD_DTYPE_Q8_0 && c->head_dim % 32 == 0);
}

static size_t kv_head_bytes(const struct model_config *c, enum lfmd_dtype t) {
    return kern_row_bytes(t, c->head_dim);
}

static size_t conv_floats(const struct model_config *c) {
    return c->arch == MODEL_ARCH_LFM2
               ? (size_t)(c->n_layer - c->n_attn_layers) * c->n_embd * (size_t)(c->conv_L - 1)
               : 0;
}

size_t seq_state_bytes_kv(const struct model_config *c, int n_ctx, enum lfmd_dtype kv_type) {
    if (!kv_type_ok(c, kv_type)) kv_type = LFMD_DTYPE_F32;
    size_t kv = (size_t)c->n_attn_layers * 2 * (size_t)n_ctx * (size_t)c->n_kv_head * kv_head_bytes(c, kv_type);
    return kv + conv_floats(c) * sizeof(float) + sizeof(struct seq);
}

size_t seq_state_bytes(const struct model_config *c, int n_ctx) {
    return seq_state_bytes_kv(c, n_ctx, default_kv_type());
}

int seq_new_ex(const struct model *m, int n_ctx, const struct seq_opts *opts, struct seq **out,
               struct lfmd_err_ctx *err) {
    *out = NULL;
    const struct model_config *c = &m->cfg;
    enum lfmd_dtype kvt = opts ? opts->kv_type : default_kv_type();
    if (n_ctx < 1 || n_ctx > LFMD_MAX_CTX)
        return lfmd_err_set(err, LFMD_EINVAL, "context size %d out of range [1, %d]", n_ctx, LFMD_MAX_CTX);
    if (!kv_type_ok(c, kvt))
        return lfmd_err_set(err, LFMD_EINVAL, "KV cache type %s not supported for head_dim %d",
                            lfmd_dtype_name(kvt), c->head_dim);
    struct seq *s = lfmd_calloc(1, sizeof *s, LFMD_MEM_KV);
    if (!s) return lfmd_err_set(err, LFMD_EBUDGET, "no memory for a sequence");
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv_type = kvt;
    s->kv_row = (size_t)c->n_kv_head * c->head_dim;
    s->kv_head_bytes = kv_head_bytes(c, kvt);
    s->kv_row_bytes = (size_t)c->n_kv_head * s->kv_head_bytes;
    size_t kv = (size_t)c->n_attn_layers * 2 * (size_t)n_ctx * s->kv_row_bytes;
    size_t conv = conv_floats(c);
    // Untouched pages of the KV cache cost no RSS; it is reserved in the budget at full size.
    if (kv) s->kv = lfmd_malloc(kv, LFMD_MEM_KV);
    if (conv) s->conv = lfmd_calloc(conv, sizeof(float), LFMD_MEM_CONV);
    if ((kv && !s->kv) || (conv && !s->conv)) {
        seq_free(s);
        return lfmd_err_set(err, LFMD_EBUDGET, "no memory for a %d-token sequence (%zu bytes)", n_ctx,
                            seq_state_bytes_kv(c, n_ctx, kvt));
    }
    s->bytes = seq_state_bytes_kv(c, n_ctx, kvt);
    *out = s;
    return 0;
}

int seq_new(const struct model *m, int n_ctx, struct seq **out, struct lfmd_err_ctx *err) {
    return seq_new_ex(m, n_ctx, NULL, out, err);
}

enum lfmd_dtype seq_kv_type(const struct seq *s) { return s->kv_type; }

void seq_free(struct seq *s) {
    if (!s) return;
    lfmd_free(s->kv);
    lfmd_free(s->conv);
    lfmd_free(s);
}

void seq_reset(struct seq *s) {
    s->pos = 0;
    if (s->conv) memset(s->conv, 0, conv_floats(&s->m->cfg) * sizeof(float));
}

int seq_pos(const struct seq *s) { return s->pos; }
int seq_n_ctx(const struct seq *s) { return s->n_ctx; }

int seq_copy(struct seq *dst, const struct seq *src) {
    const struct model_config *c = &src->m->cfg;
    if (dst->m != src->m || dst->n_ctx < src->pos || dst->kv_type != src->kv_type) return LFMD_EINVAL;
    for (int li = 0; li < c->n_attn_layers; li++)
        for (int g = 0; g < c->n_kv_head; g++) {
            memcpy(seq_kh(dst, li, g), seq_kh(src, li, g), (size_t)src->pos * src->kv_head_bytes);
            memcpy(seq_vh(dst, li, g), seq_vh(src, li, g), (size_t)src->pos * src->kv_head_bytes);
        }
    if (src->conv) memcpy(dst->conv, src->conv, conv_floats(c) * sizeof(float));
    dst->pos = src->pos;
    return 0;
}

// ---- runner ----

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int runner_new(const struct model *m, int n_threads, int max_tokens, struct runner **out,
               struct lfmd_err_ctx *err) {
    *out = NULL;
    const struct model_config *c = &m->cfg;
    if (max_tokens < 1) max_tokens = 1;
    if (max_tokens > LFMD_MAX_BATCH_TOKENS) max_tokens = LFMD_MAX_BATCH_TOKENS;
    int rp = model_repack_cpu((struct model *)m, err); // the one write to the model
    if (rp) return rp;
    struct runner *r = lfmd_calloc(1, sizeof *r, LFMD_MEM_SCRATCH);
    if (!r) return lfmd_err_set(err, LFMD_EBUDGET, "no memory for the runner");
    r->m = m;
    r->max_tok = max_tokens;
    size_t T = (size_t)max_tokens, D = (size_t)c->n_embd;
    size_t qdim = (size_t)c->n_head * c->head_dim, kvdim = (size_t)c->n_kv_head * c->head_dim;
    r->wide = max_sz(max_sz(3 * D, (size_t)c->n_ff), qdim + 2 * kvdim);
    size_t cw = max_sz(D, qdim);
    // The largest input width any matmul sees: n_embd, n_ff or n_head*head_dim.
    int64_t max_in = (int64_t)max_sz(max_sz(D, (size_t)c->n_ff), qdim);
    for (int d = 0; d < LFMD_DTYPE_COUNT; d++)
        r->qx_bytes = max_sz(r->qx_bytes, kern_input_bytes((enum lfmd_dtype)d, max_tokens, max_in));
    int rc = pool_new(n_threads, &r->pool);
    if (rc) goto fail;
    int nth = pool_threads(r->pool);
    r->x = lfmd_malloc(T * D * sizeof(float), LFMD_MEM_SCRATCH);
    r->xn = lfmd_malloc(T * D * sizeof(float), LFMD_MEM_SCRATCH);
    r->a = lfmd_malloc(T * r->wide * sizeof(float), LFMD_MEM_SCRATCH);
    r->b = lfmd_malloc(T * r->wide * sizeof(float), LFMD_MEM_SCRATCH);
    r->c = lfmd_malloc(T * cw * sizeof(float), LFMD_MEM_SCRATCH);
    r->qx_bytes = (r->qx_bytes + 63) & ~(size_t)63;
    r->qx = r->qx_bytes ? lfmd_malloc(r->qx_bytes * (size_t)nth, LFMD_MEM_SCRATCH) : NULL;
    r->vecs = lfmd_malloc((D * (size_t)(c->conv_L + 4) + 2 * (size_t)c->head_dim) * sizeof(float),
                          LFMD_MEM_SCRATCH);
    r->att = lfmd_malloc((size_t)nth * (size_t)c->head_dim * sizeof(float), LFMD_MEM_SCRATCH);
    r->tok_seq = lfmd_malloc(T * sizeof *r->tok_seq, LFMD_MEM_SCRATCH);
    r->tok_pos = lfmd_malloc(T * sizeof *r->tok_pos, LFMD_MEM_SCRATCH);
    r->rows = lfmd_malloc(T * sizeof *r->rows, LFMD_MEM_SCRATCH);
    if (!r->x || !r->xn || !r->a || !r->b || !r->c || (r->qx_bytes && !r->qx) || !r->vecs || !r->att ||
        !r->tok_seq || !r->tok_pos || !r->rows) {
        rc = LFMD_EBUDGET;
        goto fail;
    }
    r->bytes = (2 * T * D + 2 * T * r->wide + T * cw) * sizeof(float) + r->qx_bytes * (size_t)nth;
    *out = r;
    return 0;
fail:
    runner_free(r);
    return lfmd_err_set(err, rc, "no memory for the runner's scratch (%d tokens)", max_tokens);
}

void runner_free(struct runner *r) {
    if (!r) return;
    pool_free(r->pool);
    lfmd_free(r->x);
    lfmd_free(r->xn);
    lfmd_free(r->a);
    lfmd_free(r->b);
    lfmd_free(r->c);
    lfmd_free(r->qx);
    lfmd_free(r->vecs);
    lfmd_free(r->att);
    lfmd_free(r->tok_seq);
    lfmd_free(r->tok_pos);
    lfmd_free(r->rows);
    lfmd_free(r);
}

int runner_threads(const struct runner *r) { return pool_threads(r->pool); }

// ---- forward entry points: validation + chunking into batches ----

int model_forward_batch(struct runner *r, struct seq *const *seqs, const int32_t *const *tokens,
                        const int *n_tok, int n_seqs, float *logits, struct lfmd_err_ctx *err) {
    const struct model *m = r->m;
    const struct model_config *c = &m->cfg;
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i]->m != m) return lfmd_err_set(err, LFMD_EINVAL, "sequence belongs to another model");
        if (n_tok[i] < 1) return lfmd_err_set(err, LFMD_EINVAL, "sequence %d: no tokens", i);
        if (seqs[i]->pos + n_tok[i] > seqs[i]->n_ctx)
            return lfmd_err_set(err, LFMD_ETOOBIG, "sequence of %d tokens would exceed its context of %d",
                                seqs[i]->pos + n_tok[i], seqs[i]->n_ctx);
        for (int t = 0; t < n_tok[i]; t++)
            if (tokens[i][t] < 0 || tokens[i][t] >= c->n_vocab)
                return lfmd_err_set(err, LFMD_EINVAL, "token id %d out of range [0, %d)", tokens[i][t],
                                    c->n_vocab);
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return lfmd_err_set(err, LFMD_EINVAL, "sequence listed twice");
    }
    // Greedy packing: walk sequences, cut chunks of at most max_tok tokens. A sequence may span
    // several chunks; its logits row is produced by the chunk holding its last token.
    int si = 0, ti = 0;
    while (si < n_seqs) {
        int nt = 0, nl = 0;
        int32_t flat[LFMD_MAX_BATCH_TOKENS];
        int first_logit_seq = 0; // sequence of the chunk's first logits row
        while (si < n_seqs && nt < r->max_tok) {
            struct seq *s = seqs[si];
            int take = n_tok[si] - ti;
            if (take > r->max_tok - nt) take = r->max_tok - nt;
            for (int k = 0; k < take; k++) {
                flat[nt] = tokens[si][ti + k];
                r->tok_seq[nt] = s;
                r->tok_pos[nt] = s->pos + k;
                nt++;
            }
            ti += take;
            if (ti == n_tok[si]) {
                if (logits) {
                    if (nl == 0) first_logit_seq = si;
                    r->rows[nl++] = nt - 1;
                }
                si++;
                ti = 0;
            } else {
                break; // chunk full
            }
        }
        struct batch b = {.n_tok = nt, .tokens = flat, .seq = r->tok_seq, .pos = r->tok_pos,
                          .n_logits = nl, .logit_rows = r->rows};
        // The sequences finishing in this chunk are consecutive, so their logits rows go straight to
        // their slots.
        float *out = logits ? logits + (size_t)first_logit_seq * c->n_vocab : NULL;
        r->trace_pos = 0;
        m->ops->forward(r, &b, out);
        // Advance positions after the pass (ops read tok_pos, not s->pos).
        for (int k = 0; k < nt; k++)
            if (k == nt - 1 || r->tok_seq[k + 1] != r->tok_seq[k]) r->tok_seq[k]->pos = r->tok_pos[k] + 1;
    }
    return 0;
}

int model_forward(struct runner *r, struct seq *s, const int32_t *tokens, int n_tok, float *logits,
                  struct lfmd_err_ctx *err) {
    return model_forward_batch(r, &s, &tokens, &n_tok, 1, logits, err);
}

// ---- ops ----

struct mm_job {
    const struct tensor *W;
    const float *X;
    uint8_t *qx;            // per-thread regions of qx_bytes, or NULL
    size_t qx_bytes;
    bool qx_ready;          // the previous job of the dispatch left the same qx (same X, dtype)
    bool qx_shared;         // the caller prepared qx (region 0) for every thread before the job
    int n_tok;
    float *Y;
    int64_t ldy, n_in, n_out;
    int64_t chunk;          // rows per claim (a multiple of 16)
    _Atomic int64_t next;   // first unclaimed row
    _Atomic bool first_taken[LFMD_MAX_THREADS]; // decode: thread t's first chunk claimed
};

// Decode products (1-3 tokens) give each thread a first chunk known in advance, rows
// [ith c0, (ith + 1) c0), before the claims: the thread can warm those rows while it waits for
// the product (warm_next), and its first chunk comes from L2. A thread that runs out of rows
// takes the first chunks nobody has started (a worker that lost its core for a while must not
// leave a quarter of the product to do after everyone else is done).
static int64_t first_chunk(int64_t n_out, int nth) {
    int64_t c0 = (n_out / (2 * (int64_t)nth)) & ~(int64_t)15;
    return c0 < 16 ? 16 : c0;
}

// Thread t's first chunk [*r0, *r1) of a product of n_out rows; false when it is empty.
static bool first_rows(int64_t n_out, int t, int nth, int64_t *r0, int64_t *r1) {
    int64_t c0 = first_chunk(n_out, nth);
    *r0 = (int64_t)t * c0;
    *r1 = *r0 + c0 < n_out ? *r0 + c0 : n_out;
    return *r0 < n_out;
}

// Runs thread t's first chunk of a decode product unless another thread already took it.
static void take_first(struct mm_job *j, void *qx, int t, int nth) {
    int64_t r0, r1;
    if (!first_rows(j->n_out, t, nth, &r0, &r1) ||
        atomic_exchange_explicit(&j->first_taken[t], true, memory_order_relaxed))
        return;
    kern_matmul(j->W, j->X, qx, j->n_tok, j->Y, j->ldy, r0, r1);
}

// One pool dispatch per product: each thread quantizes the (few) activation rows into its own
// region when the kernel wants them, then claims chunks of output rows (multiples of 16) until
// none is left. Claiming instead of a fixed half per thread: a thread that gets less memory
// bandwidth (or loses its core for a moment) takes fewer chunks, so the other one does not
// spin at the end of every product (measured: ~25% of decode time spent waiting with halves).
static void mm_rows(struct mm_job *j, int ith, int nth) {
    void *qx = NULL;
    if (j->qx_shared) {
        qx = j->qx;
    } else if (j->qx) {
        qx = j->qx + (size_t)ith * j->qx_bytes;
        if (!j->qx_ready) kern_prepare_input(j->W->dtype, j->X, j->n_in, j->n_tok, 0, j->n_tok, qx);
    }
    if (j->n_tok < 4) take_first(j, qx, ith, nth);
    // Decode (1-3 tokens) claims guided chunks: 1 / (2 x threads) of the rows left, down to 16
    // (multiples of 16, the x16 layouts' groups), so the last claims are short and neither
    // thread waits long for the other at the end (350M Q4_0 decode +7%, F16 +4%, others within
    // noise; fixed chunks capped at 48 or 96 KiB measured 3-16% slower).
    int64_t r0 = atomic_load_explicit(&j->next, memory_order_relaxed);
    for (;;) {
        if (r0 >= j->n_out) {
            for (int t = 0; t < nth && j->n_tok < 4; t++) take_first(j, qx, t, nth);
            return;
        }
        int64_t c = j->chunk;
        if (j->n_tok < 4) {
            c = ((j->n_out - r0) / (2 * (int64_t)nth)) & ~(int64_t)15;
            if (c < 16) c = 16;
        }
        if (!atomic_compare_exchange_weak_explicit(&j->next, &r0, r0 + c, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        int64_t r1 = r0 + c > j->n_out ? j->n_out : r0 + c;
        kern_matmul(j->W, j->X, qx, j->n_tok, j->Y, j->ldy, r0, r1);
        r0 = atomic_load_explicit(&j->next, memory_order_relaxed);
    }
}

// About 8 chunks per thread, at least 64 rows (16 when the matrix is small).
static int64_t mm_chunk(int64_t n_out, int nth) {
    int64_t c = n_out / ((int64_t)nth * 8);
    c = (c + 15) & ~(int64_t)15;
    if (c < 64) c = n_out >= 64 * nth ? 64 : 16;
    return c;
}

static void mm_init(struct mm_job *j, struct runner *r, const struct tensor *W, const float *X,
                    int n_tok, float *Y, int64_t ldy) {
    int nth = pool_threads(r->pool);
    j->W = W, j->X = X, j->n_tok = n_tok, j->Y = Y, j->ldy = ldy;
    j->n_in = tensor_cols(W), j->n_out = tensor_rows(W), j->qx_bytes = r->qx_bytes;
    j->qx = kern_matmul_uses_qx(W, n_tok) && kern_input_bytes(W->dtype, n_tok, j->n_in) ? r->qx : NULL;
    j->chunk = mm_chunk(j->n_out, nth);
    atomic_init(&j->next, n_tok < 4 ? (int64_t)nth * first_chunk(j->n_out, nth) : 0);
    for (int t = 0; t < nth; t++) atomic_init(&j->first_taken[t], false);
}

// The products of one dispatch (op_matmul: one; op_matmul_multi: up to three sharing X) and the
// decode product expected next (warmed by each thread once its share is done), or NULL.
struct mm_multi {
    struct mm_job j[3];
    int n;
    struct pool *pool;
    const struct tensor *next;
};

// Warming: at most this many bytes of a thread's first chunk of the next product (L2: 2 MiB
// per core on the machines measured).
#define WARM_MAX (512u << 10)

static void warm_next(const struct mm_multi *m, int ith, int nth) {
    const struct tensor *W = m->next;
    if (!W) return;
    int64_t r0, r1;
    if (!first_rows(tensor_rows(W), ith, nth, &r0, &r1)) return;
    size_t rb = kern_row_bytes(W->dtype, tensor_cols(W)), n = rb * (size_t)(r1 - r0);
    pool_warm_after(m->pool, ith, (const uint8_t *)W->data + rb * (size_t)r0,
                    n < WARM_MAX ? n : WARM_MAX);
}

static void mm_rows_multi(void *ctx, int ith, int nth) {
    struct mm_multi *m = ctx;
    for (int k = 0; k < m->n; k++) mm_rows(&m->j[k], ith, nth);
    warm_next(m, ith, nth);
}

// Records decode product W at the pass's current position and returns the product that came
// after it in the previous pass (after the last: the first, i.e. the next token's), or NULL.
static const struct tensor *trace_next(struct runner *r, const struct tensor *W, int n_tok) {
    if (n_tok >= 4) return NULL;
    int i = r->trace_pos++;
    if (i >= RUNNER_TRACE_MAX) return NULL;
    if (i >= r->trace_n || r->trace[i] != W) {
        r->trace[i] = W;
        r->trace_n = i + 1;   // what followed W last time is unknown now
        return NULL;
    }
    return i + 1 < r->trace_n ? r->trace[i + 1] : r->trace[0];
}

void op_matmul_multi(struct runner *r, int n, const struct tensor *const *W, const float *X, int n_tok,
                     float *const *Y, const int64_t *ldy) {
    struct mm_multi m = {.n = n, .pool = r->pool};
    LFMD_ASSERT(n >= 1 && n <= 3);
    for (int k = 0; k < n; k++) {
        mm_init(&m.j[k], r, W[k], X, n_tok, Y[k], ldy[k]);
        // q, k, v (or gate, up) of one dtype read the same quantized X: prepared once per thread
        m.j[k].qx_ready = k > 0 && m.j[k].qx && m.j[k - 1].qx && W[k]->dtype == W[k - 1]->dtype &&
                          m.j[k].n_in == m.j[k - 1].n_in;
    }
    // Decode: the caller quantizes X once, into its own region, which every thread then reads,
    // instead of each thread quantizing the same rows (the workers meanwhile go on warming
    // their first rows). Only when every product of the dispatch reads the same qx.
    bool shared = n_tok < 4 && pool_threads(r->pool) > 1 && m.j[0].qx;
    for (int k = 1; k < n; k++) shared = shared && m.j[k].qx_ready;
    if (shared) {
        kern_prepare_input(W[0]->dtype, X, m.j[0].n_in, n_tok, 0, n_tok, m.j[0].qx);
        for (int k = 0; k < n; k++) m.j[k].qx_shared = true;
    }
    m.next = trace_next(r, W[0], n_tok);
    pool_run(r->pool, mm_rows_multi, &m);
}

void op_matmul(struct runner *r, const struct tensor *W, const float *X, int n_tok, float *Y, int64_t ldy) {
    op_matmul_multi(r, 1, &W, X, n_tok, &Y, &ldy);
}

void op_vec_f32(const struct tensor *w, float *out) {
    struct tensor flat = *w;
    flat.n_dims = 1;
    flat.shape[0] = tensor_nelem(w);
    kern_get_row(&flat, 0, out);
}

void op_rmsnorm(float *x, const float *w, int n_rows, int n, int64_t ld, float eps, float *out,
                int64_t ld_out) {
    for (int t = 0; t < n_rows; t++) kern_rmsnorm(x + (size_t)t * ld, w, n, eps, out + (size_t)t * ld_out);
}

void op_rope_neox(float *x, int n_heads, int head_dim, int pos, const float *inv_freq) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float ang = (float)pos * inv_freq[i];
        float cs = cosf(ang), sn = sinf(ang);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            float x1 = v[i], x2 = v[i + half];
            v[i] = x1 * cs - x2 * sn;
            v[i + half] = x2 * cs + x1 * sn;
        }
    }
}

void op_rope_interleaved(float *x, int n_heads, int head_dim, int pos, const float *inv_freq) {
    for (int i = 0; i < head_dim / 2; i++) {
        float ang = (float)pos * inv_freq[i];
        float cs = cosf(ang), sn = sinf(ang);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim + 2 * i;
            float x1 = v[0], x2 = v[1];
            v[0] = x1 * cs - x2 * sn;
            v[1] = x2 * cs + x1 * sn;
        }
    }
}

void op_kv_store(const struct batch *b, int li, const float *k, const float *v) {
    const struct model_config *c = &b->seq[0]->m->cfg;
    for (int t = 0; t < b->n_tok; t++) {
        struct seq *s = b->seq[t];
        size_t at = (size_t)b->pos[t] * s->kv_head_bytes;
        for (int g = 0; g < c->n_kv_head; g++) {
            size_t off = (size_t)g * c->head_dim;
            kern_kv_store(s->kv_type, k + (size_t)t * s->kv_row + off, seq_kh(s, li, g) + at, c->head_dim);
            kern_kv_store(s->kv_type, v + (size_t)t * s->kv_row + off, seq_vh(s, li, g) + at, c->head_dim);
        }
    }
}

struct att_job {
    struct runner *r;
    const struct batch *b;
    int li;
    const float *q;
    float *out;
    _Atomic int next; // first unclaimed work item
};

// One (token, KV head) pair per work item: the rep query heads of the group share each K/V block.
// Items are claimed one at a time (a thread that starts late, e.g. a worker that lost its CPU
// for a moment, leaves its share to the others instead of finishing alone at the end).
static void att_run(void *ctx, int ith, int nth) {
    struct att_job *j = ctx;
    const struct model_config *c = &j->r->m->cfg;
    int H = c->n_head, G = c->n_kv_head, hd = c->head_dim, rep = H / G;
    size_t qrow = (size_t)H * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int total = j->b->n_tok * G;
    (void)ith, (void)nth;
    for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < total;) {
        int t = it / G, g = it % G;
        const struct seq *s = j->b->seq[t];
        size_t off = (size_t)t * qrow + (size_t)g * rep * hd;
        kern_attention(s->kv_type, j->q + off, hd, rep, seq_kh(s, j->li, g), seq_vh(s, j->li, g),
                       s->kv_head_bytes, j->b->pos[t] + 1, hd, scale, j->out + off, hd);
    }
}

void op_attention(struct runner *r, const struct batch *b, int li, const float *q, float *out) {
    struct att_job j = {.r = r, .b = b, .li = li, .q = q, .out = out};
    atomic_init(&j.next, 0);
    pool_run(r->pool, att_run, &j);
}

struct swiglu_job {
    float *g;
    const float *u;
    size_t n;
};

static void swiglu_run(void *ctx, int ith, int nth) {
    struct swiglu_job *j = ctx;
    size_t per = ((j->n + (size_t)nth - 1) / (size_t)nth + 15) & ~(size_t)15;
    size_t i0 = (size_t)ith * per, i1 = i0 + per > j->n ? j->n : i0 + per;
    if (i0 < i1) kern_swiglu(j->g + i0, j->u + i0, i1 - i0);
}

void op_swiglu(struct runner *r, float *g, const float *u, size_t n) {
    struct swiglu_job j = {.g = g, .u = u, .n = n};
    if (n < 16384) kern_swiglu(g, u, n);
    else pool_run(r->pool, swiglu_run, &j);
}

void op_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}
