// CUDA backend: weight upload, device memory accounting, sequences on the device, and the LFM2 /
// Llama forward passes composed from kernels.cu (the twins of lfm2.c / llama.c) and cuBLAS.
// Layers are split into contiguous stages, one per listed device; the residual stream moves
// between stages with peer copies. Decode steps of a single-stage model are captured once per
// (tokens, logits) shape in a CUDA graph and replayed (all per-token data lives in device
// metadata, so launch parameters depend on the shape only).
// SPDX-License-Identifier: MIT
#include "cuda.h"

#include "base/alloc.h"
#include "kernels.h"
#include "kernels/kern_internal.h"
#include "model/internal.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEV 16
#define MAX_GRAPHS 32
#define WS_BYTES ((size_t)32 << 20)
#define WT_ELEMS ((size_t)8 << 20)   // bf16 elements of a dequantized 4-bit weight tile
#define STACK_MAX_T 64          // products of up to this many tokens stack hi | lo in one GEMM
#define PROF_MAX 1024           // events per forward pass when profiling
#define PROF_NAMES 32

// ---- device memory accounting ----
static size_t g_limit, g_used, g_peak;
static unsigned g_touched;  // bitmask of devices with a context

static int cu_err(struct lfmd_err_ctx *err, cudaError_t e, const char *what) {
    return lfmd_err_set(err, LFMD_ECUDA, "CUDA: %s: %s", what, cudaGetErrorString(e));
}
#define CK(call, what)                                \
    do {                                              \
        cudaError_t e_ = (call);                      \
        if (e_ != cudaSuccess) return cu_err(err, e_, what); \
    } while (0)

static int set_dev(int dev, struct lfmd_err_ctx *err) {
    CK(cudaSetDevice(dev), "set device");
    if (dev < MAX_DEV && !(g_touched & (1u << dev))) {
        g_touched |= 1u << dev;
        cudaMemPool_t pool;
        if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
            uint64_t keep = UINT64_MAX;   // keep freed blocks pooled until cuda_trim
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
        }
    }
    return 0;
}

static int dalloc(void **p, size_t n, cudaStream_t s, struct lfmd_err_ctx *err) {
    *p = NULL;
    if (!n) return 0;
    if (g_limit && g_used + n > g_limit)
        return lfmd_err_set(err, LFMD_EBUDGET,
                            "GPU memory limit: %zu bytes used, %zu more requested, limit %zu",
                            g_used, n, g_limit);
    cudaError_t e = cudaMallocAsync(p, n, s);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
        return lfmd_err_set(err, e == cudaErrorMemoryAllocation ? LFMD_EBUDGET : LFMD_ECUDA,
                            "CUDA: allocating %zu bytes: %s", n, cudaGetErrorString(e));
    }
    g_used += n;
    if (g_used > g_peak) g_peak = g_used;
    cudaStreamSynchronize(s);  // usable from any stream (uploads use the legacy stream)
    return 0;
}

static void dfree(void *p, size_t n, cudaStream_t s) {
    if (!p) return;
    cudaFreeAsync(p, s);
    g_used -= n;
}

void cuda_set_limit(size_t bytes) { g_limit = bytes; }
size_t cuda_mem_used(void) { return g_used; }
size_t cuda_mem_peak(void) { return g_peak; }

int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

void cuda_trim(void) {
    for (int d = 0; d < MAX_DEV; d++) {
        if (!(g_touched & (1u << d))) continue;
        cudaMemPool_t pool;
        cudaSetDevice(d);
        cudaDeviceSynchronize();
        if (cudaDeviceGetDefaultMemPool(&pool, d) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
    }
}

void cuda_shutdown(void) {
    for (int d = 0; d < MAX_DEV; d++) {
        if (!(g_touched & (1u << d))) continue;
        cudaSetDevice(d);
        cudaDeviceReset();
    }
    cuk_forget_attributes();   // the reset dropped them
    g_touched = 0;
    g_used = 0;
}

int cuda_parse_devices(const char *devices, const char *split, struct cuda_opts *o,
                       struct lfmd_err_ctx *err) {
    int n = 0;
    const char *p = devices && *devices ? devices : "cuda:0";
    while (*p) {
        if (strncmp(p, "cuda", 4))
            return lfmd_err_set(err, LFMD_EINVAL, "device '%s': expected cuda[:N][,cuda:M...]",
                                devices);
        p += 4;
        long d = 0;
        if (*p == ':') {
            char *end;
            d = strtol(p + 1, &end, 10);
            if (end == p + 1 || d < 0 || d >= MAX_DEV)
                return lfmd_err_set(err, LFMD_EINVAL, "device '%s': bad index", devices);
            p = end;
        }
        if (n >= CUDA_MAX_STAGES)
            return lfmd_err_set(err, LFMD_EINVAL, "device '%s': at most %d devices", devices,
                                CUDA_MAX_STAGES);
        o->dev[n++] = (int)d;
        if (*p == ',') p++;
        else if (*p)
            return lfmd_err_set(err, LFMD_EINVAL, "device '%s': unexpected '%c'", devices, *p);
    }
    o->n_dev = n;
    for (int i = 0; i < CUDA_MAX_STAGES; i++) o->split[i] = 0;
    if (split && *split) {
        int k = 0;
        p = split;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v <= 0 || k >= n)
                return lfmd_err_set(err, LFMD_EINVAL,
                                    "--split '%s': one positive number per device", split);
            o->split[k++] = (int)v;
            p = *end == ',' ? end + 1 : end;
            if (*end && *end != ',')
                return lfmd_err_set(err, LFMD_EINVAL, "--split '%s': bad number", split);
        }
        if (k != n)
            return lfmd_err_set(err, LFMD_EINVAL, "--split '%s': %d numbers for %d devices", split,
                                k, n);
    }
    return 0;
}

// ---- model ----

struct cw {                     // a matrix on the device: bf16 (d) or 4-bit (q4: q + sb)
    uint16_t *d;
    int64_t rows, cols;
    bool q4;
    uint32_t *q;                // [rows][cols / 8] code words
    void *sb;                   // [rows][cols / gs] scale-bias pairs (sbk: CUK_SB_*)
    int sbk, gs;
};

struct clayer {
    bool attn;
    int slot;                   // index among this stage's attention (or conv) layers
    struct cw qkv, o, w13, w2, in_proj,
        conv_out; // qkv: q, k, v rows; w13: gate/up rows interleaved
    float *n1, *n2, *qn, *kn, *convw, *qkvb, *ob;
};

struct stage {
    int dev, l0, l1;
    int n_attn, n_conv;         // layers of each kind in this stage
    cudaStream_t st;
    struct clayer *layers;      // [l1 - l0]
    struct cw embed, lm_head;   // first / last stage
    float *final_norm, *inv_freq;
    bool lm_shared;             // lm_head aliases embed
    int n_sm;
};

struct cuda_model {
    const struct model *m;
    struct model_config c;
    int n_stages;
    struct stage st[CUDA_MAX_STAGES];
    bool interleaved, qk_norm;
    bool no_graphs, fast_gemm, pdl, no_q4, no_norm_fuse, no_prefetch, no_conv_fuse, no_rope_fuse;
    struct cuda_opts kopt;      // options as given (kernel launch settings: apply_kernel_opts)
    bool has_q4;                // some matrix is kept 4-bit (runners then get a dequant tile)
    int mv_max;
    size_t weight_bytes;
    // every device allocation of the model, for freeing
    void **allocs;
    size_t *alloc_sz;
    int *alloc_stage;
    int n_allocs, cap_allocs;
};

static int track(struct cuda_model *cm, int si, void *p, size_t n, struct lfmd_err_ctx *err) {
    if (cm->n_allocs == cm->cap_allocs) {
        int cap = cm->cap_allocs ? 2 * cm->cap_allocs : 256;
        void **a = lfmd_realloc(cm->allocs, (size_t)cap * sizeof *a);
        if (a) cm->allocs = a;
        size_t *s = a ? lfmd_realloc(cm->alloc_sz, (size_t)cap * sizeof *s) : NULL;
        if (s) cm->alloc_sz = s;
        int *g = s ? lfmd_realloc(cm->alloc_stage, (size_t)cap * sizeof *g) : NULL;
        if (!g) {
            dfree(p, n, cm->st[si].st);
            return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        }
        cm->alloc_stage = g;
        cm->cap_allocs = cap;
    }
    cm->allocs[cm->n_allocs] = p;
    cm->alloc_sz[cm->n_allocs] = n;
    cm->alloc_stage[cm->n_allocs++] = si;
    cm->weight_bytes += n;
    return 0;
}

// Copies 2-D weight t as bf16 to device rows d, d + pitch, d + 2 pitch, ... (pitch in rows;
// converting other dtypes row by row on the host).
static int fill_mat(struct cuda_model *cm, int si, const struct tensor *t, uint16_t *d, int pitch,
                    struct lfmd_err_ctx *err) {
    struct cw o = {.rows = tensor_rows(t), .cols = tensor_cols(t)}, *out = &o;
    size_t rb = (size_t)out->cols * 2;
    int rc;
    if (t->dtype == LFMD_DTYPE_BF16) {
        CK(cudaMemcpy2DAsync(d, rb * (size_t)pitch, t->data, rb, rb, (size_t)out->rows,
                             cudaMemcpyHostToDevice, cm->st[si].st),
           "upload");
        return cudaStreamSynchronize(cm->st[si].st) == cudaSuccess
                   ? 0
                   : cu_err(err, cudaGetLastError(), "upload");
    }
    rc = 0;
    int64_t chunk = ((int64_t)8 << 20) / (out->cols * 2);
    if (chunk < 1) chunk = 1;
    float *row = lfmd_malloc((size_t)out->cols * sizeof(float), LFMD_MEM_SCRATCH);
    uint16_t *buf = lfmd_malloc((size_t)chunk * (size_t)out->cols * 2, LFMD_MEM_SCRATCH);
    if (!row || !buf) {
        lfmd_free(row);
        lfmd_free(buf);
        return lfmd_err_set(err, LFMD_ENOMEM, "no memory to convert %s", t->name);
    }
    for (int64_t r0 = 0; r0 < out->rows && !rc; r0 += chunk) {
        int64_t nr = out->rows - r0 < chunk ? out->rows - r0 : chunk;
        for (int64_t r = 0; r < nr; r++) {
            kern_get_row(t, r0 + r, row);
            for (int64_t c = 0; c < out->cols; c++) buf[r * out->cols + c] = f32_to_bf16(row[c]);
        }
        cudaError_t e = cudaMemcpy2D((uint16_t *)d + r0 * pitch * out->cols, rb * (size_t)pitch,
                                     buf, rb, rb, (size_t)nr, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) rc = cu_err(err, e, "upload");
    }
    lfmd_free(row);
    lfmd_free(buf);
    return rc;
}

// ---- 4-bit weights kept quantized ----

int cuda_q4_format(const struct tensor *t, int *gs, int *sbk) {
    int64_t cols = tensor_cols(t), rows = tensor_rows(t);
    if (t->n_dims < 2 || cols % 32) return 0;
    switch (t->dtype) {
    case LFMD_DTYPE_MLX_Q4:
        if (t->group_size % 32 || t->group_size > 128 || cols % t->group_size) return 0;
        *gs = t->group_size;
        *sbk = t->scale_dtype == LFMD_DTYPE_BF16 ? CUK_SB_BF16
             : t->scale_dtype == LFMD_DTYPE_F16  ? CUK_SB_F16
                                                 : CUK_SB_F32;
        return 1;
    case LFMD_DTYPE_Q4_0: {
        // bias = -8 d: exact in f16 unless it overflows (then f32 pairs)
        *gs = 32;
        *sbk = CUK_SB_F16;
        const struct block_q4_0 *b = t->data;
        for (int64_t i = 0; i < rows * (cols / 32); i++)
            if (!(fabsf(f16_to_f32(b[i].d)) * 8.0f <= 65504.0f)) {
                *sbk = CUK_SB_F32;
                break;
            }
        return 1;
    }
    case LFMD_DTYPE_Q4_1:
        *gs = 32;
        *sbk = CUK_SB_F16;
        return 1;
    case LFMD_DTYPE_Q4_K:
        if (cols % 256) return 0;
        *gs = 32;
        *sbk = CUK_SB_F32;   // d * scale (f16 x 6 bits) is exact in f32
        return 1;
    default:
        return 0;
    }
}

static void put_sb(void *sb, int sbk, int64_t g, float s, float b, uint16_t s16, uint16_t b16) {
    if (sbk == CUK_SB_F32) {
        ((float *)sb)[2 * g] = s;
        ((float *)sb)[2 * g + 1] = b;
    } else {
        ((uint32_t *)sb)[g] = (uint32_t)s16 | (uint32_t)b16 << 16;
    }
}

// Device order: the row's K / 8 code words in element order (word w: elements 8 w .. 8 w + 7,
// element e in bits 4 (e % 8); the MLX layout), then its K / gs scale-bias pairs.
void cuda_q4_pack_row(const struct tensor *t, int64_t r, int sbk, uint32_t *codes, void *sb) {
    int64_t K = tensor_cols(t);
    if (t->dtype == LFMD_DTYPE_MLX_Q4) {
        int64_t ng = K / t->group_size;
        memcpy(codes, (const uint32_t *)t->data + r * (K / 8), (size_t)(K / 8) * 4);
        for (int64_t g = 0; g < ng; g++) {
            int64_t i = r * ng + g;
            if (sbk == CUK_SB_F32)
                put_sb(sb, sbk, g, kern_load_scalar(t->scale_dtype, t->scales, i),
                       kern_load_scalar(t->scale_dtype, t->biases, i), 0, 0);
            else
                put_sb(sb, sbk, g, 0, 0, ((const uint16_t *)t->scales)[i],
                       ((const uint16_t *)t->biases)[i]);
        }
        return;
    }
    memset(codes, 0, (size_t)(K / 8) * 4);
#define PUTQ(e, v) (codes[(e) >> 3] |= (uint32_t)(v) << (((e) & 7) * 4))
    const uint8_t *row = (const uint8_t *)t->data + (size_t)r * kern_row_bytes(t->dtype, K);
    if (t->dtype == LFMD_DTYPE_Q4_0 || t->dtype == LFMD_DTYPE_Q4_1) {
        bool q1 = t->dtype == LFMD_DTYPE_Q4_1;
        for (int64_t i = 0; i < K / 32; i++) {
            const uint8_t *qs;
            uint16_t d16, b16;
            float d, b;
            if (q1) {
                const struct block_q4_1 *blk = (const struct block_q4_1 *)row + i;
                d16 = blk->d;
                b16 = blk->m;
                qs = blk->qs;
                d = f16_to_f32(d16);
                b = f16_to_f32(b16);
            } else {
                const struct block_q4_0 *blk = (const struct block_q4_0 *)row + i;
                d16 = blk->d;
                qs = blk->qs;
                d = f16_to_f32(d16);
                b = -8.0f * d;
                b16 = f32_to_f16(b);
            }
            for (int j = 0; j < 16; j++) {
                PUTQ(32 * i + j, qs[j] & 0xF);
                PUTQ(32 * i + 16 + j, qs[j] >> 4);
            }
            put_sb(sb, sbk, i, d, b, d16, b16);
        }
    } else if (t->dtype == LFMD_DTYPE_Q4_K) {
        for (int64_t i = 0; i < K / 256; i++) {
            const struct block_q4_k *blk = (const struct block_q4_k *)row + i;
            float d = f16_to_f32(blk->d), dmin = f16_to_f32(blk->dmin);
            for (int j = 0; j < 4; j++) {
                uint8_t sc, m;
                kern_get_scale_min_k4(2 * j, blk->scales, &sc, &m);
                put_sb(sb, sbk, 8 * i + 2 * j, d * sc, -(dmin * m), 0, 0);
                kern_get_scale_min_k4(2 * j + 1, blk->scales, &sc, &m);
                put_sb(sb, sbk, 8 * i + 2 * j + 1, d * sc, -(dmin * m), 0, 0);
                const uint8_t *q = blk->qs + 32 * j;
                for (int l = 0; l < 32; l++) {
                    PUTQ(256 * i + 64 * j + l, q[l] & 0xF);
                    PUTQ(256 * i + 64 * j + 32 + l, q[l] >> 4);
                }
            }
        }
    }
#undef PUTQ
}

// Copies 4-bit weight t (cuda_q4_format) to device rows d, d + pitch, ... of out (pitch in rows),
// packing chunks of rows on the host.
static int fill_q4(struct cuda_model *cm, int si, const struct tensor *t, const struct cw *out,
                   int64_t row0, int pitch, struct lfmd_err_ctx *err) {
    int64_t rows = tensor_rows(t), K = out->cols;
    size_t cb = (size_t)K / 2, sbb = (size_t)(K / out->gs) * (out->sbk == CUK_SB_F32 ? 8 : 4);
    int64_t chunk = ((int64_t)4 << 20) / (int64_t)cb;
    if (chunk < 1) chunk = 1;
    uint32_t *codes = lfmd_malloc((size_t)chunk * cb, LFMD_MEM_SCRATCH);
    uint8_t *sb = lfmd_malloc((size_t)chunk * sbb, LFMD_MEM_SCRATCH);
    int rc = 0;
    if (!codes || !sb) rc = lfmd_err_set(err, LFMD_ENOMEM, "no memory to pack %s", t->name);
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += chunk) {
        int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        for (int64_t r = 0; r < nr; r++)
            cuda_q4_pack_row(t, r0 + r, out->sbk, codes + (size_t)r * (cb / 4),
                             sb + (size_t)r * sbb);
        size_t drow = (size_t)(row0 + r0 * pitch);
        cudaError_t e = cudaMemcpy2D((uint8_t *)out->q + drow * cb, cb * (size_t)pitch, codes, cb,
                                     cb, (size_t)nr, cudaMemcpyHostToDevice);
        if (e == cudaSuccess)
            e = cudaMemcpy2D((uint8_t *)out->sb + drow * sbb, sbb * (size_t)pitch, sb, sbb, sbb,
                             (size_t)nr, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) rc = cu_err(err, e, "upload");
    }
    (void)cm;
    (void)si;
    lfmd_free(codes);
    lfmd_free(sb);
    return rc;
}

// Uploads n 2-D weights (same column count) as one bf16 matrix: stacked (t[0] rows, then t[1]
// rows, ...) or, interleave, row-interleaved (row n i + j = row i of t[j]; equal row counts).
// With q4_ok and every part in one 4-bit layout (cuda_q4_format: same group size and scale
// kind), the matrix stays 4-bit on the device.
static int up_cat(struct cuda_model *cm, int si, const struct tensor *const *t, int n,
                  bool interleave, bool q4_ok, struct cw *out, struct lfmd_err_ctx *err) {
    memset(out, 0, sizeof *out);
    out->cols = tensor_cols(t[0]);
    int gs = 0, sbk = 0;
    bool q4 = q4_ok && !cm->no_q4 && cuda_q4_format(t[0], &gs, &sbk);
    for (int i = 0; i < n; i++) {
        if (tensor_cols(t[i]) != out->cols ||
            (interleave && tensor_rows(t[i]) != tensor_rows(t[0])))
            return lfmd_err_set(err, LFMD_EFORMAT, "%s and %s: shapes differ", t[0]->name,
                                t[i]->name);
        out->rows += tensor_rows(t[i]);
        int g2, k2;
        if (q4 && (!cuda_q4_format(t[i], &g2, &k2) || g2 != gs || k2 != sbk)) q4 = false;
    }
    if (q4) {
        out->q4 = true;
        out->gs = gs;
        out->sbk = sbk;
        size_t cbytes = (size_t)out->rows * (size_t)out->cols / 2;
        size_t sbytes = (size_t)out->rows * (size_t)(out->cols / gs) * (sbk == CUK_SB_F32 ? 8 : 4);
        void *d;
        int rc = dalloc(&d, cbytes, cm->st[si].st, err);
        if (rc || (rc = track(cm, si, d, cbytes, err))) return rc;
        out->q = d;
        if ((rc = dalloc(&d, sbytes, cm->st[si].st, err)) || (rc = track(cm, si, d, sbytes, err)))
            return rc;
        out->sb = d;
        cm->has_q4 = true;
        int64_t r0 = 0;
        for (int i = 0; i < n && !rc; i++) {
            rc = fill_q4(cm, si, t[i], out, interleave ? i : r0, interleave ? n : 1, err);
            r0 += tensor_rows(t[i]);
        }
        return rc;
    }
    size_t bytes = (size_t)out->rows * (size_t)out->cols * 2;
    void *d;
    int rc = dalloc(&d, bytes, cm->st[si].st, err);
    if (rc || (rc = track(cm, si, d, bytes, err))) return rc;
    out->d = d;
    int64_t r0 = 0;
    for (int i = 0; i < n && !rc; i++) {
        uint16_t *dst = (uint16_t *)d + (size_t)(interleave ? i : r0) * out->cols;
        rc = fill_mat(cm, si, t[i], dst, interleave ? n : 1, err);
        r0 += tensor_rows(t[i]);
    }
    return rc;
}

static int up_mat(struct cuda_model *cm, int si, const struct tensor *t, struct cw *out,
                  struct lfmd_err_ctx *err) {
    return up_cat(cm, si, &t, 1, false, true, out, err);
}



static int up_f32(struct cuda_model *cm, int si, const float *h, size_t n_f, float **out,
                  struct lfmd_err_ctx *err) {
    void *d;
    size_t n = n_f * sizeof(float);
    int rc = dalloc(&d, n, cm->st[si].st, err);
    if (rc || (rc = track(cm, si, d, n, err))) return rc;
    *out = d;
    CK(cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, cm->st[si].st), "upload");
    CK(cudaStreamSynchronize(cm->st[si].st), "upload");
    return 0;
}

static int up_vec(struct cuda_model *cm, int si, const struct tensor *t, float **out,
                  struct lfmd_err_ctx *err) {
    if (!t) {
        *out = NULL;
        return 0;
    }
    size_t n = (size_t)tensor_nelem(t);
    float *h = lfmd_malloc(n * sizeof(float), LFMD_MEM_SCRATCH);
    if (!h) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    op_vec_f32(t, h);
    int rc = up_f32(cm, si, h, n, out, err);
    lfmd_free(h);
    return rc;
}

static const struct tensor *layer_t(const struct model *m, int l, const char *suffix) {
    char n[200];
    snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix);
    return model_find(m, n);
}

static int need_t(const struct model *m, int l, const char *suffix, const struct tensor **out,
                  struct lfmd_err_ctx *err) {
    *out = layer_t(m, l, suffix);
    if (!*out) return lfmd_err_set(err, LFMD_EFORMAT, "layer %d: no tensor %s", l, suffix);
    return 0;
}

static int up_layer(struct cuda_model *cm, int si, int l, struct clayer *L,
                    struct lfmd_err_ctx *err) {
    const struct model *m = cm->m;
    bool lfm2 = cm->c.arch == MODEL_ARCH_LFM2;
    const struct tensor *t;
    int rc;
#define MAT(name, dst) ((rc = need_t(m, l, name, &t, err)) || (rc = up_mat(cm, si, t, dst, err)))
#define VEC(name, dst) ((rc = need_t(m, l, name, &t, err)) || (rc = up_vec(cm, si, t, dst, err)))
#define OPT(name, dst) ((rc = up_vec(cm, si, layer_t(m, l, name), dst, err)))
    const struct tensor *ts[3];
#define MAT2(n1, n3, dst)                                                                          \
    ((rc = need_t(m, l, n1, &ts[0], err)) || (rc = need_t(m, l, n3, &ts[1], err)) ||               \
     (rc = up_cat(cm, si, ts, 2, true, true, dst, err)))
#define QKV(nq, nk, nv, dst)                                                                       \
    ((rc = need_t(m, l, nq, &ts[0], err)) || (rc = need_t(m, l, nk, &ts[1], err)) ||               \
     (rc = need_t(m, l, nv, &ts[2], err)) || (rc = up_cat(cm, si, ts, 3, false, true, dst, err)))
    L->attn = cm->c.is_attn[l];
    if (lfm2) {
        if (VEC("operator_norm.weight", &L->n1) || VEC("ffn_norm.weight", &L->n2) ||
            MAT2("feed_forward.w1.weight", "feed_forward.w3.weight", &L->w13) ||
            MAT("feed_forward.w2.weight", &L->w2))
            return rc;
        if (L->attn) {
            if (QKV("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                    &L->qkv) ||
                MAT("self_attn.out_proj.weight", &L->o) ||
                VEC("self_attn.q_layernorm.weight", &L->qn) ||
                VEC("self_attn.k_layernorm.weight", &L->kn))
                return rc;
        } else if (MAT("conv.in_proj.weight", &L->in_proj) || VEC("conv.conv.weight", &L->convw) ||
                   MAT("conv.out_proj.weight", &L->conv_out)) {
            return rc;
        }
    } else {
        if (VEC("input_layernorm.weight", &L->n1) ||
            VEC("post_attention_layernorm.weight", &L->n2) ||
            QKV("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                &L->qkv) ||
            MAT("self_attn.o_proj.weight", &L->o) ||
            MAT2("mlp.gate_proj.weight", "mlp.up_proj.weight", &L->w13) ||
            MAT("mlp.down_proj.weight", &L->w2))
            return rc;
        if (cm->m->llama.attn_bias) {
            // q|k|v biases as one vector (zeros where a bias is absent), added to the q|k|v product
            const char *bn[3] = {"self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                 "self_attn.v_proj.bias"};
            size_t nb = (size_t)L->qkv.rows, off = 0;
            float *h = lfmd_calloc(nb, sizeof(float), LFMD_MEM_SCRATCH);
            if (!h) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
            bool any = false;
            size_t part_rows[3] = {(size_t)cm->c.n_head * cm->c.head_dim,
                                   (size_t)cm->c.n_kv_head * cm->c.head_dim,
                                   (size_t)cm->c.n_kv_head * cm->c.head_dim};
            if (part_rows[0] + part_rows[1] + part_rows[2] != nb) {
                lfmd_free(h);
                return lfmd_err_set(err, LFMD_EFORMAT,
                                    "layer %d: q|k|v rows do not match the config", l);
            }
            for (int i = 0; i < 3; i++) {
                const struct tensor *b = layer_t(m, l, bn[i]);
                size_t rows_i = part_rows[i];
                if (b && (size_t)tensor_nelem(b) == rows_i) {
                    op_vec_f32(b, h + off);
                    any = true;
                }
                off += rows_i;
            }
            rc = any ? up_f32(cm, si, h, nb, &L->qkvb, err) : 0;
            lfmd_free(h);
            if (rc || OPT("self_attn.o_proj.bias", &L->ob)) return rc;
        }
    }
#undef MAT
#undef VEC
#undef OPT
#undef MAT2
#undef QKV
    return 0;
}

int cuda_model_stages(const struct cuda_model *cm) { return cm->n_stages; }
void cuda_stage_layers(const struct cuda_model *cm, int i, int *dev, int *l0, int *l1) {
    *dev = cm->st[i].dev;
    *l0 = cm->st[i].l0;
    *l1 = cm->st[i].l1;
}
size_t cuda_model_weight_bytes(const struct cuda_model *cm) { return cm->weight_bytes; }

void cuda_model_free(struct cuda_model *cm) {
    if (!cm) return;
    for (int i = 0; i < cm->n_allocs; i++) {
        struct stage *st = &cm->st[cm->alloc_stage[i]];
        cudaSetDevice(st->dev);
        dfree(cm->allocs[i], cm->alloc_sz[i], st->st);
    }
    for (int i = 0; i < cm->n_stages; i++) {
        cudaSetDevice(cm->st[i].dev);
        if (cm->st[i].st) {
            cudaStreamSynchronize(cm->st[i].st);
            cudaStreamDestroy(cm->st[i].st);
        }
        lfmd_free(cm->st[i].layers);
    }
    lfmd_free(cm->allocs);
    lfmd_free(cm->alloc_sz);
    lfmd_free(cm->alloc_stage);
    lfmd_free(cm);
}

// The kernel layer's launch settings are process-wide: each model applies its own options
// at creation and before each pass (several models with different options may coexist).
static void apply_kernel_opts(const struct cuda_model *cm) {
    const struct cuda_opts *o = &cm->kopt;
    cuk_set_pdl(!o->no_pdl);
    cuk_set_mv_old(o->mv_old);
    cuk_set_attn_splits(o->att_splits);
    cuk_set_attn_min_chunk(o->att_min_chunk);
    cuk_set_attn_round(o->att_round);
    cuk_set_q4_rows(o->q4_rows);
    cuk_set_q4_q8(!o->no_q8);
    cuk_set_mv_prefetch(o->prefetch_mb > 0 ? (size_t)o->prefetch_mb << 20 : 0);
    cuk_set_mv_blocks(o->mv_blocks);
    cuk_set_mv_preload(!o->no_preload);
    cuk_set_mv_stage1(!o->no_stage1);
    cuk_set_mv_stage_x(!o->no_stage_x);
    if (o->ring) cuk_set_mv_ring(o->ring < 0 ? 0 : o->ring);
    else cuk_set_mv_ring(CUK_RING_DEFAULT);
    cuk_set_mv_ring_sizes(o->ring_chunk, o->ring_bytes);
    cuk_set_mv_ring_warps(o->ring_warps);
    cuk_set_mv_ring_pair(o->ring_pair);
    cuk_set_mv_ring_max_rows(o->ring_max_rows);
    cuk_set_carveout(o->carveout == 0 ? 100 : o->carveout);
}

int cuda_model_new(const struct model *m, const struct cuda_opts *o, struct cuda_model **out,
                   struct lfmd_err_ctx *err) {
    *out = NULL;
    int ndev = cuda_device_count();
    if (ndev < 1) return lfmd_err_set(err, LFMD_ECUDA, "no CUDA device");
    struct cuda_model *cm = lfmd_calloc(1, sizeof *cm, LFMD_MEM_OTHER);
    if (!cm) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    cm->m = m;
    cm->c = m->cfg;
    const struct model_config *c = &cm->c;
    cm->interleaved = c->arch == MODEL_ARCH_LLAMA && m->llama.rope_interleaved;
    cm->qk_norm = c->arch == MODEL_ARCH_LFM2;
    cm->no_graphs = o && o->no_graphs;
    cm->fast_gemm = o && o->fast_gemm;
    cm->pdl = !(o && o->no_pdl);
    cm->no_q4 = o && o->no_q4;
    if (o) cm->kopt = *o;
    apply_kernel_opts(cm);
    cm->no_norm_fuse = o && o->no_norm_fuse;
    cm->no_prefetch = o && o->no_prefetch;
    cm->no_conv_fuse = o && o->no_conv_fuse;
    cm->no_rope_fuse = o && o->no_rope_fuse;
    // Matvec up to 3 tokens: beyond that its activation reads from L1 cost more than one
    // stacked tensor-core product (measured on H200: batch 8 matvec 3.1 ms of products per step
    // against 1.9 ms for the batch-64 GEMMs).
    cm->mv_max = o && o->mv_max_tok > 0 ? o->mv_max_tok : 3;
    if (cm->mv_max > CUK_MV_MAX_TOK) cm->mv_max = CUK_MV_MAX_TOK;
    int rc = 0;
    if (c->arch == MODEL_ARCH_LFM2 && (c->conv_L < 2 || c->conv_L > 9)) {
        rc =
            lfmd_err_set(err, LFMD_ENOTSUP, "conv kernel size %d not supported on CUDA", c->conv_L);
        goto fail;
    }
    if (c->head_dim > CUK_MAX_HEAD_DIM || c->head_dim % 2) {
        rc = lfmd_err_set(err, LFMD_ENOTSUP, "head_dim %d not supported on CUDA", c->head_dim);
        goto fail;
    }
    int ns = o && o->n_dev > 0 ? o->n_dev : 1;
    if (ns > c->n_layer) ns = c->n_layer;
    cm->n_stages = ns;
    // Layer ranges: by --split, else in proportion to free memory.
    double wsum = 0, w[CUDA_MAX_STAGES];
    for (int i = 0; i < ns; i++) {
        int d = o && o->n_dev > 0 ? o->dev[i] : 0;
        if (d >= ndev) {
            rc = lfmd_err_set(err, LFMD_EINVAL, "cuda:%d: only %d device(s)", d, ndev);
            goto fail;
        }
        cm->st[i].dev = d;
        if ((rc = set_dev(d, err))) goto fail;
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        w[i] = o && o->split[i] > 0 ? (double)o->split[i] : (double)fr + 1;
        wsum += w[i];
    }
    double cum = 0;
    int prev = 0;
    for (int i = 0; i < ns; i++) {
        cum += w[i];
        int end = i == ns - 1 ? c->n_layer : (int)(c->n_layer * cum / wsum + 0.5);
        if (end < prev + 1) end = prev + 1;
        if (end > c->n_layer - (ns - 1 - i)) end = c->n_layer - (ns - 1 - i);
        cm->st[i].l0 = prev;
        cm->st[i].l1 = end;
        prev = end;
    }
    for (int i = 0; i < ns && !rc; i++) {
        struct stage *st = &cm->st[i];
        if ((rc = set_dev(st->dev, err))) goto fail;
        cudaDeviceGetAttribute(&st->n_sm, cudaDevAttrMultiProcessorCount, st->dev);
        cudaError_t e = cudaStreamCreateWithFlags(&st->st, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            rc = cu_err(err, e, "stream");
            goto fail;
        }
        st->layers = lfmd_calloc((size_t)(st->l1 - st->l0), sizeof *st->layers, LFMD_MEM_OTHER);
        if (!st->layers) {
            rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
            goto fail;
        }
        for (int l = st->l0; l < st->l1 && !rc; l++) {
            struct clayer *L = &st->layers[l - st->l0];
            L->slot = c->is_attn[l] ? st->n_attn++ : st->n_conv++;
            rc = up_layer(cm, i, l, L, err);
        }
        if (!rc) rc = up_f32(cm, i, m->rope_inv_freq, (size_t)c->head_dim / 2, &st->inv_freq, err);
        if (rc) goto fail;
        const struct tensor *emb = model_find(m, "model.embed_tokens.weight");
        if (i == 0 && (rc = up_mat(cm, i, emb, &st->embed, err))) goto fail;
        if (i == ns - 1) {
            const struct tensor *fn =
                model_find(m, c->arch == MODEL_ARCH_LFM2 ? "model.embedding_norm.weight"
                                                         : "model.norm.weight");
            if ((rc = up_vec(cm, i, fn, &st->final_norm, err))) goto fail;
            if (c->tied_embeddings && i == 0) {
                st->lm_head = st->embed;
                st->lm_shared = true;
            } else {
                const struct tensor *lm =
                    c->tied_embeddings ? emb : model_find(m, "lm_head.weight");
                if ((rc = up_mat(cm, i, lm, &st->lm_head, err))) goto fail;
            }
        }
    }
    for (int i = 0; i < ns; i++) {
        cudaSetDevice(cm->st[i].dev);
        cudaStreamSynchronize(cm->st[i].st);
    }
    *out = cm;
    return 0;
fail:
    cuda_model_free(cm);
    return rc;
}

// ---- sequences ----

struct cuda_seq {
    struct cuda_model *cm;
    int n_ctx, pos;
    float *kv[CUDA_MAX_STAGES], *conv[CUDA_MAX_STAGES];
    size_t kv_bytes[CUDA_MAX_STAGES], conv_bytes[CUDA_MAX_STAGES];
};

size_t cuda_seq_bytes(const struct model_config *c, int n_ctx) {
    size_t kv = (size_t)c->n_attn_layers * 2 * (size_t)n_ctx * (size_t)c->n_kv_head * c->head_dim;
    size_t conv = c->arch == MODEL_ARCH_LFM2 ? (size_t)(c->n_layer - c->n_attn_layers) * c->n_embd *
                                                   (size_t)(c->conv_L - 1)
                                             : 0;
    return (kv + conv) * sizeof(float);
}

void cuda_seq_free(struct cuda_seq *s) {
    if (!s) return;
    for (int i = 0; i < s->cm->n_stages; i++) {
        struct stage *st = &s->cm->st[i];
        cudaSetDevice(st->dev);
        dfree(s->kv[i], s->kv_bytes[i], st->st);
        dfree(s->conv[i], s->conv_bytes[i], st->st);
    }
    lfmd_free(s);
}

void cuda_seq_reset(struct cuda_seq *s) {
    s->pos = 0;
    for (int i = 0; i < s->cm->n_stages; i++) {
        if (!s->conv[i]) continue;
        cudaSetDevice(s->cm->st[i].dev);
        cudaMemsetAsync(s->conv[i], 0, s->conv_bytes[i], s->cm->st[i].st);
    }
}

int cuda_seq_pos(const struct cuda_seq *s) { return s->pos; }

int cuda_seq_copy(struct cuda_seq *dst, const struct cuda_seq *src) {
    if (dst->cm != src->cm) return LFMD_EINVAL;
    if (src->pos > dst->n_ctx) return LFMD_ETOOBIG;
    const struct cuda_model *cm = src->cm;
    size_t kvd = (size_t)cm->c.n_kv_head * cm->c.head_dim, row = kvd * sizeof(float);
    for (int i = 0; i < cm->n_stages; i++) {
        const struct stage *st = &cm->st[i];
        if (cudaSetDevice(st->dev) != cudaSuccess) return LFMD_ECUDA;
        // [slot][2][n_ctx][kvd]: the first pos rows of each slot's K and V
        for (int b = 0; b < 2 * st->n_attn && src->pos > 0; b++)
            if (cudaMemcpyAsync(dst->kv[i] + (size_t)b * dst->n_ctx * kvd,
                                src->kv[i] + (size_t)b * src->n_ctx * kvd, (size_t)src->pos * row,
                                cudaMemcpyDeviceToDevice, st->st) != cudaSuccess)
                return LFMD_ECUDA;
        if (src->conv_bytes[i] &&
            cudaMemcpyAsync(dst->conv[i], src->conv[i], src->conv_bytes[i],
                            cudaMemcpyDeviceToDevice, st->st) != cudaSuccess)
            return LFMD_ECUDA;
    }
    dst->pos = src->pos;
    return 0;
}

int cuda_seq_new(struct cuda_model *cm, int n_ctx, struct cuda_seq **out,
                 struct lfmd_err_ctx *err) {
    *out = NULL;
    const struct model_config *c = &cm->c;
    if (n_ctx < 1 || n_ctx > LFMD_MAX_CTX)
        return lfmd_err_set(err, LFMD_EINVAL, "context size %d out of range [1, %d]", n_ctx,
                            LFMD_MAX_CTX);
    struct cuda_seq *s = lfmd_calloc(1, sizeof *s, LFMD_MEM_KV);
    if (!s) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    s->cm = cm;
    s->n_ctx = n_ctx;
    size_t kvd = (size_t)c->n_kv_head * c->head_dim;
    int rc = 0;
    for (int i = 0; i < cm->n_stages && !rc; i++) {
        struct stage *st = &cm->st[i];
        if ((rc = set_dev(st->dev, err))) break;
        s->kv_bytes[i] = (size_t)st->n_attn * 2 * (size_t)n_ctx * kvd * sizeof(float);
        s->conv_bytes[i] = (size_t)st->n_conv * c->n_embd * (size_t)(c->conv_L - 1) * sizeof(float);
        void *p;
        if ((rc = dalloc(&p, s->kv_bytes[i], st->st, err))) break;
        s->kv[i] = p;
        if ((rc = dalloc(&p, s->conv_bytes[i], st->st, err))) break;
        s->conv[i] = p;
    }
    if (rc) {
        cuda_seq_free(s);
        return rc;
    }
    cuda_seq_reset(s);
    *out = s;
    return 0;
}

// ---- runner ----

struct graph_ent {
    int T, nl;
    bool greedy;
    cudaGraphExec_t exec;
};

struct scratch {
    float *x, *xn, *a, *b, *c, *part, *logits, *stk;
    uint16_t *xb;
    uint16_t *wt;               // 4-bit weight rows dequantized for cuBLAS: hi | lo bf16 tiles
    int32_t *amax;              // greedy tokens of the logit rows
    unsigned *ticket;           // attention split counters [T * n_head], zero between launches
    unsigned long long *amst;   // fused argmax state (cuk_mv_argmax_next), zero between launches
    void *ws;
    void *meta_d, *meta_h;      // device block and pinned host mirror
    size_t meta_bytes, bytes;
    struct cuk_meta meta;       // device pointers into meta_d
    cublasHandle_t blas;
};

struct cuda_runner {
    struct cuda_model *cm;
    int max_tok;
    struct scratch sc[CUDA_MAX_STAGES];
    struct graph_ent graphs[MAX_GRAPHS];
    int n_graphs;
    struct cuda_seq **tok_seq;
    int32_t *tok, *pos, *rows;
    // profiling (cuda_runner_profile): an event after each kernel group, times summed by name
    bool prof;
    int n_ev, n_names, prof_passes;
    cudaEvent_t ev[PROF_MAX + 1];
    const char *ev_name[PROF_MAX];
    const char *names[PROF_NAMES];
    double ms[PROF_NAMES];
    int calls[PROF_NAMES];
};

static void prof_mark(struct cuda_runner *r, cudaStream_t s, const char *name) {
    if (!r->prof || r->n_ev >= PROF_MAX) return;
    if (!r->ev[r->n_ev + 1]) cudaEventCreate(&r->ev[r->n_ev + 1]);
    r->ev_name[r->n_ev] = name;
    cudaEventRecord(r->ev[++r->n_ev], s);
}

static void prof_collect(struct cuda_runner *r) {
    if (!r->prof) return;
    for (int i = 0; i < r->n_ev; i++) {
        float ms = 0;
        cudaEventSynchronize(r->ev[i + 1]);
        cudaEventElapsedTime(&ms, r->ev[i], r->ev[i + 1]);
        int k = 0;
        while (k < r->n_names && strcmp(r->names[k], r->ev_name[i])) k++;
        if (k == r->n_names) {
            if (k == PROF_NAMES) continue;
            r->names[r->n_names++] = r->ev_name[i];
        }
        r->ms[k] += ms;
        r->calls[k]++;
    }
    r->n_ev = 0;
    r->prof_passes++;
}

void cuda_runner_profile(struct cuda_runner *r, bool on) {
    r->prof = on;
    r->n_ev = r->n_names = r->prof_passes = 0;
    for (int k = 0; k < PROF_NAMES; k++) {
        r->ms[k] = 0;
        r->calls[k] = 0;
    }
}

void cuda_runner_profile_print(struct cuda_runner *r, FILE *f) {
    double tot = 0;
    int n = r->prof_passes ? r->prof_passes : 1;
    for (int k = 0; k < r->n_names; k++) tot += r->ms[k];
    fprintf(f, "profile over %d passes: %.3f ms of kernel time per pass\n", r->prof_passes,
            tot / n);
    for (int k = 0; k < r->n_names; k++)
        fprintf(f, "  %-14s %8.1f us/pass %5.1f%%  %6.1f launches/pass\n", r->names[k],
                1e3 * r->ms[k] / n, tot > 0 ? 100 * r->ms[k] / tot : 0, (double)r->calls[k] / n);
}

void cuda_runner_free(struct cuda_runner *r) {
    if (!r) return;
    struct cuda_model *cm = r->cm;
    for (int g = 0; g < r->n_graphs; g++) cudaGraphExecDestroy(r->graphs[g].exec);
    for (int k = 0; k <= PROF_MAX; k++)
        if (r->ev[k]) cudaEventDestroy(r->ev[k]);
    for (int i = 0; i < cm->n_stages; i++) {
        struct scratch *sc = &r->sc[i];
        struct stage *st = &cm->st[i];
        cudaSetDevice(st->dev);
        cudaStreamSynchronize(st->st);
        if (sc->blas) cublasDestroy(sc->blas);
        void *ps[] = {sc->x,  sc->xn, sc->a,      sc->b,   sc->c,    sc->part,   sc->logits,
                      sc->xb, sc->ws, sc->meta_d, sc->stk, sc->amax, sc->ticket, sc->wt,
                      sc->amst};
        for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
            if (ps[k]) cudaFreeAsync(ps[k], st->st);
        g_used -= sc->bytes;
        if (sc->meta_h) cudaFreeHost(sc->meta_h);
    }
    lfmd_free(r->tok_seq);
    lfmd_free(r->tok);
    lfmd_free(r->pos);
    lfmd_free(r->rows);
    lfmd_free(r);
}

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

int cuda_runner_new(struct cuda_model *cm, int max_tokens, struct cuda_runner **out,
                    struct lfmd_err_ctx *err) {
    *out = NULL;
    const struct model_config *c = &cm->c;
    if (max_tokens < 1) max_tokens = 1;
    if (max_tokens > LFMD_MAX_BATCH_TOKENS) max_tokens = LFMD_MAX_BATCH_TOKENS;
    struct cuda_runner *r = lfmd_calloc(1, sizeof *r, LFMD_MEM_SCRATCH);
    if (!r) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    r->cm = cm;
    r->max_tok = max_tokens;
    size_t T = (size_t)max_tokens, D = (size_t)c->n_embd;
    r->tok_seq = lfmd_malloc(T * sizeof *r->tok_seq, LFMD_MEM_SCRATCH);
    r->tok = lfmd_malloc(T * sizeof *r->tok, LFMD_MEM_SCRATCH);
    r->pos = lfmd_malloc(T * sizeof *r->pos, LFMD_MEM_SCRATCH);
    r->rows = lfmd_malloc(T * sizeof *r->rows, LFMD_MEM_SCRATCH);
    int rc = 0;
    if (!r->tok_seq || !r->tok || !r->pos || !r->rows) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    size_t qd = (size_t)c->n_head * c->head_dim, kvd = (size_t)c->n_kv_head * c->head_dim;
    size_t wide = max_z(max_z(3 * D, 2 * (size_t)c->n_ff), qd + 2 * kvd);
    size_t cw = max_z(D, qd);
    size_t max_in = max_z(max_z(D, (size_t)c->n_ff), qd);
    for (int i = 0; i < cm->n_stages; i++) {
        struct stage *st = &cm->st[i];
        struct scratch *sc = &r->sc[i];
        if ((rc = set_dev(st->dev, err))) goto fail;
        size_t parts = 0;
        for (int t = 1; t <= max_tokens; t++)
            parts = max_z(parts, (size_t)t * c->n_head * cuk_attn_splits(t, c->n_head, st->n_sm));
        sc->meta_bytes = T * (4 * sizeof(int32_t) + 2 * sizeof(float *));
        size_t stk_t = T < STACK_MAX_T ? T : STACK_MAX_T;
        size_t stk_n = max_z(max_z(wide, D), i == cm->n_stages - 1 ? (size_t)c->n_vocab : 0);
        if (cm->fast_gemm || (int)T <= cm->mv_max) stk_t = 0;
        struct { void **p; size_t n; } al[] = {
            {(void **)&sc->x, T * D * 4},       {(void **)&sc->xn, T * D * 4},
            {(void **)&sc->a, T * wide * 4},    {(void **)&sc->b, T * wide * 4},
            {(void **)&sc->c, T * cw * 4},      {(void **)&sc->part, parts * (c->head_dim + 2) * 4},
            {(void **)&sc->logits, i == cm->n_stages - 1 ? T * (size_t)c->n_vocab * 4 : 0},
            {(void **)&sc->xb, 2 * T * max_in * 2}, {&sc->ws, WS_BYTES},
            {&sc->meta_d, sc->meta_bytes},      {(void **)&sc->stk, 2 * stk_t * stk_n * 4},
            {(void **)&sc->amax, i == cm->n_stages - 1 ? T * sizeof(int32_t) : 0},
            {(void **)&sc->ticket, T * (size_t)c->n_head * sizeof(unsigned)},
            {(void **)&sc->amst, i == cm->n_stages - 1 ? 2 * sizeof(unsigned long long) : 0},
            {(void **)&sc->wt, cm->has_q4 && (int)T > CUK_MV_MAX_TOK ? 2 * WT_ELEMS * 2 : 0},
        };
        for (size_t k = 0; k < sizeof al / sizeof al[0]; k++) {
            if ((rc = dalloc(al[k].p, al[k].n, st->st, err))) goto fail;
            sc->bytes += al[k].n;
        }
        // pinned: the metadata mirror, then the greedy tokens' landing area (a copy into
        // pageable memory is staged by the driver and costs a few us per step)
        cudaError_t e = cudaMallocHost(&sc->meta_h, sc->meta_bytes + T * sizeof(int32_t));
        if (e != cudaSuccess) {
            rc = cu_err(err, e, "pinned memory");
            goto fail;
        }
        char *b = sc->meta_d;
        sc->meta.kv = (float **)b;
        sc->meta.conv = (float **)(b + T * sizeof(float *));
        sc->meta.tok = (int32_t *)(b + 2 * T * sizeof(float *));
        sc->meta.pos = sc->meta.tok + T;
        sc->meta.nctx = sc->meta.pos + T;
        sc->meta.rows = sc->meta.nctx + T;
        if (cublasCreate(&sc->blas) != CUBLAS_STATUS_SUCCESS) {
            rc = lfmd_err_set(err, LFMD_ECUDA, "cuBLAS: cannot create a handle");
            goto fail;
        }
        cublasSetStream(sc->blas, st->st);
        cublasSetWorkspace(sc->blas, sc->ws, WS_BYTES);
    }
    for (int i = 0; i < cm->n_stages; i++) {
        cudaSetDevice(cm->st[i].dev);
        if (r->sc[i].ticket)
            cudaMemsetAsync(r->sc[i].ticket, 0, T * (size_t)c->n_head * sizeof(unsigned),
                            cm->st[i].st);
        if (r->sc[i].amst)
            cudaMemsetAsync(r->sc[i].amst, 0, 2 * sizeof(unsigned long long), cm->st[i].st);
        cudaStreamSynchronize(cm->st[i].st);
    }
    cudaSetDevice(cm->st[0].dev);
    cudaStreamSynchronize(cm->st[0].st);
    *out = r;
    return 0;
fail:
    cuda_runner_free(r);
    return rc;
}

void cuda_runner_sync(struct cuda_runner *r) {
    for (int i = 0; i < r->cm->n_stages; i++) {
        cudaSetDevice(r->cm->st[i].dev);
        cudaStreamSynchronize(r->cm->st[i].st);
    }
}

// ---- forward ----

// Y[t, :] (=, += or SwiGLU of row pairs, by mode: CUK_MV_*) W X[t, :]: the matvec kernel for
// few tokens, else cuBLAS bf16 x bf16 -> f32. Up to STACK_MAX_T tokens, the hi and lo parts go
// through one product of 2T columns (the weights are read once) and are summed after; more
// tokens take two products. SwiGLU through cuBLAS: the [T, N] product lands in sc->a, then
// cuk_swiglu_pair writes Y.
// 4-bit matrices take the matvec kernel up to CUK_MV_MAX_TOK tokens; beyond that their rows are
// dequantized in tiles of WT_ELEMS rows x cols to bf16 hi + lo parts (sc->wt; lo skipped with
// fast_gemm) and each tile goes through cuBLAS: W_hi (x_hi + x_lo) + W_lo x_hi.
static bool use_mv(const struct cuda_model *cm, const struct cw *W, int T) {
    return W->q4 ? T <= CUK_MV_MAX_TOK : T <= cm->mv_max && W->cols % 8 == 0;
}

static void mv(const struct cw *W, const float *X, int T, float *Y, int64_t ldy, int mode,
               const float *nw, const int32_t *rows, float eps, cudaStream_t s) {
    if (W->q4) {
        struct cuk_q4 q = {W->q, W->sb, W->sbk, W->gs};
        cuk_matvec_q4(&q, (int)W->rows, (int)W->cols, X, T, Y, ldy, mode, nw, rows, eps, s);
    } else {
        cuk_matvec(W->d, (int)W->rows, (int)W->cols, X, T, Y, ldy, mode, nw, rows, eps, s);
    }
}

// The next product's weights for the matvec tail prefetch (cuk_mv_prefetch_next); NULL: none.
static void pf_set(const struct cuda_model *cm, const struct cw *W) {
    if (!W || !W->rows || cm->no_prefetch) {
        cuk_mv_prefetch_next(NULL, 0);
        return;
    }
    size_t n = (size_t)W->rows * (size_t)W->cols;
    if (W->q4) cuk_mv_prefetch_next(W->q, n / 2);
    else cuk_mv_prefetch_next(W->d, n * 2);
}

// The first product of layer l of stage st (its attention or conv input).
static const struct cw *first_w(const struct stage *st, int l) {
    const struct clayer *L = &st->layers[l - st->l0];
    return L->attn ? &L->qkv : &L->in_proj;
}

static void mm(struct cuda_model *cm, struct stage *st, struct scratch *sc, const struct cw *W,
               const float *X, int T, float *Y, int64_t ldy, int mode) {
    int N = (int)W->rows, K = (int)W->cols;
    if (use_mv(cm, W, T)) {
        mv(W, X, T, Y, ldy, mode, NULL, NULL, 0.f, st->st);
        return;
    }
    cuk_mv_hints_clear();   // cuBLAS products take no matvec hint (prefetch, fused argmax)
    float *out = Y, beta = mode == CUK_MV_ACC ? 1.0f : 0.0f;
    int64_t ldo = ldy;
    if (mode == CUK_MV_SWIGLU) {
        out = sc->a;
        ldo = N;
    }
    const float one = 1.0f, zero = 0.0f;
    uint16_t *lo = sc->xb + (size_t)T * K;
    if (cm->fast_gemm) cuk_to_bf16(X, (int64_t)T * K, sc->xb, st->st);
    else cuk_to_bf16_split(X, (int64_t)T * K, sc->xb, lo, st->st);
    bool stacked = !cm->fast_gemm && T <= STACK_MAX_T && sc->stk;
    int tile = W->q4 ? (int)(WT_ELEMS / (size_t)K) : N;
    for (int r0 = 0; r0 < N; r0 += tile) {
        int nr = N - r0 < tile ? N - r0 : tile;
        const uint16_t *w = W->d, *wl = NULL;   // wl: 4-bit weights' bf16 remainder (w + wl)
        if (W->q4) {
            struct cuk_q4 q = {W->q, W->sb, W->sbk, W->gs};
            uint16_t *hi = sc->wt, *lw = cm->fast_gemm ? NULL : sc->wt + WT_ELEMS;
            cuk_q4_to_bf16(&q, K, r0, nr, hi, lw, st->st);
            w = hi;
            wl = lw;
        }
        if (stacked) {
            cublasGemmEx(sc->blas, CUBLAS_OP_T, CUBLAS_OP_N, nr, 2 * T, K, &one, w, CUDA_R_16BF, K,
                         sc->xb, CUDA_R_16BF, K, &zero, sc->stk + r0, CUDA_R_32F, N,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (wl)   // + W_lo x_hi (the W_lo x_lo term is below the precision kept)
                cublasGemmEx(sc->blas, CUBLAS_OP_T, CUBLAS_OP_N, nr, T, K, &one, wl, CUDA_R_16BF, K,
                             sc->xb, CUDA_R_16BF, K, &one, sc->stk + r0, CUDA_R_32F, N,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        } else {
            cublasGemmEx(sc->blas, CUBLAS_OP_T, CUBLAS_OP_N, nr, T, K, &one, w, CUDA_R_16BF, K,
                         sc->xb, CUDA_R_16BF, K, &beta, out + r0, CUDA_R_32F, (int)ldo,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (!cm->fast_gemm)
                cublasGemmEx(sc->blas, CUBLAS_OP_T, CUBLAS_OP_N, nr, T, K, &one, w, CUDA_R_16BF, K,
                             lo, CUDA_R_16BF, K, &one, out + r0, CUDA_R_32F, (int)ldo,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (wl)
                cublasGemmEx(sc->blas, CUBLAS_OP_T, CUBLAS_OP_N, nr, T, K, &one, wl, CUDA_R_16BF, K,
                             sc->xb, CUDA_R_16BF, K, &one, out + r0, CUDA_R_32F, (int)ldo,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        }
    }
    if (stacked) cuk_add_halves(sc->stk, T, N, out, ldo, mode == CUK_MV_ACC, st->st);
    if (mode == CUK_MV_SWIGLU) cuk_swiglu_pair(out, T, N / 2, Y, st->st);
}

// mm of RMSNorm(x) (weight nw; token t reads x row rows[t] if rows): fused into the matvec when
// it fits, else a norm kernel into sc->xn first.
static void norm_mm(struct cuda_model *cm, struct stage *st, struct scratch *sc, const float *x,
                    const float *nw, const int32_t *rows, const struct cw *W, int T, float *Y,
                    int64_t ldy, int mode) {
    int K = (int)W->cols;
    float eps = cm->c.norm_eps;
    if (use_mv(cm, W, T) && cuk_matvec_norm_fits(T, K) && !cm->no_norm_fuse) {
        mv(W, x, T, Y, ldy, mode, nw, rows, eps, st->st);
        return;
    }
    cuk_add_rmsnorm((float *)x, NULL, nw, rows, T, K, eps, sc->xn, st->st);
    mm(cm, st, sc, W, sc->xn, T, Y, ldy, mode);
}

// One stage over T tokens. The residual stream sc->x is updated in place by the epilogues of
// the output products (CUK_MV_ACC); norms are fused into the next product. Per layer at decode:
// attention 7 launches (qkv, rope+store, attention, merge, o, gate|up+SwiGLU, down), conv 5.
static void stage_forward(struct cuda_model *cm, struct cuda_runner *r, int si, int T, int nl,
                          bool greedy) {
#define P(name) prof_mark(r, s, name)
    const struct model_config *c = &cm->c;
    struct stage *st = &cm->st[si];
    struct scratch *sc = &r->sc[si];
    cudaStream_t s = st->st;
    int D = c->n_embd, hd = c->head_dim;
    int qd = c->n_head * hd, kvd = c->n_kv_head * hd, qkvd = qd + 2 * kvd;
    float eps = c->norm_eps;
    if (r->prof) {
        if (!r->ev[0]) cudaEventCreate(&r->ev[0]);
        cudaEventRecord(r->ev[0], s);
    }
    if (si == 0 && st->embed.q4) {
        struct cuk_q4 q = {st->embed.q, st->embed.sb, st->embed.sbk, st->embed.gs};
        cuk_embed_q4(&q, sc->meta.tok, T, D, sc->x, s);
    } else if (si == 0) {
        cuk_embed(st->embed.d, sc->meta.tok, T, D, sc->x, s);
    }
    P("embed");
    for (int l = st->l0; l < st->l1; l++) {
        const struct clayer *L = &st->layers[l - st->l0];
        if (L->attn) {
            pf_set(cm, &L->o);
            norm_mm(cm, st, sc, sc->x, L->n1, NULL, &L->qkv, T, sc->a, qkvd, CUK_MV_STORE);
            if (L->qkvb) cuk_add_bias(sc->a, L->qkvb, T, qkvd, s);
            P("mm_qkv");
            if (T == 1 && !cm->no_rope_fuse) {   // one token: norm + RoPE + store inside
                struct cuk_rope rp = {sc->a, L->qn, L->kn, eps, st->inv_freq, cm->interleaved};
                cuk_attention_rope(&rp, T, c->n_head, c->n_kv_head, hd, sc->meta.kv,
                                   sc->meta.nctx, sc->meta.pos, L->slot,
                                   cuk_attn_splits(T, c->n_head, st->n_sm), sc->part, sc->ticket,
                                   sc->c, s);
            } else {
                cuk_qkv_rope_store(sc->a, T, c->n_head, c->n_kv_head, hd, L->qn, L->kn, eps,
                                   sc->meta.pos, st->inv_freq, cm->interleaved, sc->meta.kv,
                                   sc->meta.nctx, L->slot, sc->b, s);
                P("rope_store");
                cuk_attention(sc->b, T, c->n_head, c->n_kv_head, hd, sc->meta.kv, sc->meta.nctx,
                              sc->meta.pos, L->slot, cuk_attn_splits(T, c->n_head, st->n_sm),
                              sc->part, sc->ticket, sc->c, s);
            }
            P("attention");
            pf_set(cm, &L->w13);
            mm(cm, st, sc, &L->o, sc->c, T, sc->x, D, CUK_MV_ACC);
            if (L->ob) cuk_add_bias(sc->x, L->ob, T, D, s);
            P("mm_o");
        } else {
            pf_set(cm, &L->conv_out);
            const struct cw *Wi = &L->in_proj;
            if (!cm->no_conv_fuse && !cm->no_norm_fuse && use_mv(cm, Wi, T) &&
                cuk_matvec_norm_fits(T, D) && T <= CUK_CONV_SEQ_MAX_T) {
                // in_proj (normalized in its prologue) and the short conv in one launch
                struct cuk_conv cv = {L->convw, sc->meta.conv, L->slot, c->conv_L};
                if (Wi->q4) {
                    struct cuk_q4 q = {Wi->q, Wi->sb, Wi->sbk, Wi->gs};
                    cuk_matvec_q4_conv(&q, 3 * D, D, sc->x, T, sc->c, D, L->n1, NULL, eps, &cv,
                                       s);
                } else {
                    cuk_matvec_conv(Wi->d, 3 * D, D, sc->x, T, sc->c, D, L->n1, NULL, eps, &cv, s);
                }
                P("mm_in_proj_conv");
            } else {
                norm_mm(cm, st, sc, sc->x, L->n1, NULL, Wi, T, sc->a, 3 * D, CUK_MV_STORE);
                P("mm_in_proj");
                cuk_shortconv(sc->a, T, D, c->conv_L, L->convw, sc->meta.conv, L->slot, sc->c, s);
                P("shortconv");
            }
            pf_set(cm, &L->w13);
            mm(cm, st, sc, &L->conv_out, sc->c, T, sc->x, D, CUK_MV_ACC);
            P("mm_conv_out");
        }
        pf_set(cm, &L->w2);
        norm_mm(cm, st, sc, sc->x, L->n2, NULL, &L->w13, T, sc->b, c->n_ff, CUK_MV_SWIGLU);
        P("mm_gate_up");
        bool last = si == cm->n_stages - 1 && nl > 0;
        pf_set(cm, l + 1 < st->l1 ? first_w(st, l + 1) : last ? &st->lm_head : NULL);
        mm(cm, st, sc, &L->w2, sc->b, T, sc->x, D, CUK_MV_ACC);
        P("mm_down");
    }
    if (si == cm->n_stages - 1 && nl > 0) {
        // the next step starts with stage 0's first layer (same device when single-stage)
        pf_set(cm, cm->n_stages == 1 && st->l1 > st->l0 ? first_w(st, st->l0) : NULL);
        const bool fuse = greedy && !cm->kopt.no_argmax_fuse;
        if (fuse) cuk_mv_argmax_next(sc->amst, sc->amax);   // one row through the ring: fused
        norm_mm(cm, st, sc, sc->x, st->final_norm, sc->meta.rows, &st->lm_head, nl, sc->logits,
                c->n_vocab, CUK_MV_STORE);
        P("mm_lm_head");
        if (greedy && !(fuse && cuk_mv_argmax_done())) {
            cuk_argmax(sc->logits, nl, c->n_vocab, sc->amax, s);
            P("argmax");
        }
    }
#undef P
}

static int run_chunk(struct cuda_runner *r, int T, int nl, float *logits, int32_t *next,
                     struct lfmd_err_ctx *err) {
    bool greedy = next != NULL;
    struct cuda_model *cm = r->cm;
    apply_kernel_opts(cm);
    const struct model_config *c = &cm->c;
    size_t Tm = (size_t)r->max_tok;
    for (int i = 0; i < cm->n_stages; i++) {
        struct scratch *sc = &r->sc[i];
        char *h = sc->meta_h;
        float **kv = (float **)h, **cv = (float **)(h + Tm * sizeof(float *));
        int32_t *tok = (int32_t *)(h + 2 * Tm * sizeof(float *));
        int32_t *pos = tok + Tm, *nctx = pos + Tm, *rows = nctx + Tm;
        for (int t = 0; t < T; t++) {
            kv[t] = r->tok_seq[t]->kv[i];
            cv[t] = r->tok_seq[t]->conv[i];
            nctx[t] = r->tok_seq[t]->n_ctx;
        }
        memcpy(tok, r->tok, (size_t)T * sizeof *tok);
        memcpy(pos, r->pos, (size_t)T * sizeof *pos);
        memcpy(rows, r->rows, (size_t)nl * sizeof *rows);
    }
    const bool use_graph = cm->n_stages == 1 && !cm->no_graphs && !r->prof && T <= 64;
    struct scratch *lsc = &r->sc[cm->n_stages - 1];
    int32_t *next_h = (int32_t *)((char *)lsc->meta_h + lsc->meta_bytes);
    if (!use_graph) {
        for (int i = 0; i < cm->n_stages; i++) {
            struct stage *st = &cm->st[i];
            CK(cudaSetDevice(st->dev), "set device");
            CK(cudaMemcpyAsync(r->sc[i].meta_d, r->sc[i].meta_h, r->sc[i].meta_bytes,
                               cudaMemcpyHostToDevice, st->st),
               "metadata");
        }
    }
    if (use_graph) {
        // The metadata upload, the step and (greedy) the token ids' copy into pinned memory
        // are one graph: one host call per step instead of three.
        struct stage *st = &cm->st[0];
        struct scratch *sc = &r->sc[0];
        CK(cudaSetDevice(st->dev), "set device");
        cudaGraphExec_t exec = NULL;
        for (int g = 0; g < r->n_graphs; g++)
            if (r->graphs[g].T == T && r->graphs[g].nl == nl && r->graphs[g].greedy == greedy)
                exec = r->graphs[g].exec;
        if (!exec && r->n_graphs < MAX_GRAPHS) {
            // Capture once per shape; on any capture failure fall back to plain launches.
            // (Copy nodes measured faster than a kernel reading the metadata from mapped pinned
            // memory plus the argmax writing the tokens there: 1978-1981 vs 1905-1908 tok/s,
            // MLX q4 batch 1, H100, ninth round.)
            cudaGraph_t graph = NULL;
            cudaError_t e = cudaStreamBeginCapture(st->st, cudaStreamCaptureModeThreadLocal);
            if (e == cudaSuccess) {
                cudaMemcpyAsync(sc->meta_d, sc->meta_h, sc->meta_bytes, cudaMemcpyHostToDevice,
                                st->st);
                stage_forward(cm, r, 0, T, nl, greedy);
                if (greedy && nl)
                    cudaMemcpyAsync(next_h, sc->amax, (size_t)nl * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, st->st);
                e = cudaStreamEndCapture(st->st, &graph);
            }
            if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
            if (graph) cudaGraphDestroy(graph);
            if (e != cudaSuccess) {
                cudaGetLastError();
                exec = NULL;
                cm->no_graphs = true;
                fprintf(stderr, "lfmd: CUDA graph capture failed (%s); launching directly\n",
                        cudaGetErrorString(e));
            } else {
                r->graphs[r->n_graphs++] =
                    (struct graph_ent){.T = T, .nl = nl, .greedy = greedy, .exec = exec};
            }
        }
        if (exec) {
            CK(cudaGraphLaunch(exec, st->st), "graph launch");
        } else {
            CK(cudaMemcpyAsync(sc->meta_d, sc->meta_h, sc->meta_bytes, cudaMemcpyHostToDevice,
                               st->st),
               "metadata");
            stage_forward(cm, r, 0, T, nl, greedy);
            if (greedy && nl)
                CK(cudaMemcpyAsync(next_h, sc->amax, (size_t)nl * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, st->st),
                   "tokens");
        }
    } else {
        for (int i = 0; i < cm->n_stages; i++) {
            struct stage *st = &cm->st[i];
            CK(cudaSetDevice(st->dev), "set device");
            stage_forward(cm, r, i, T, nl, greedy);
            if (i + 1 < cm->n_stages) {
                struct stage *nx = &cm->st[i + 1];
                CK(cudaMemcpyPeerAsync(r->sc[i + 1].x, nx->dev, r->sc[i].x, st->dev,
                                       (size_t)T * c->n_embd * sizeof(float), st->st),
                   "activation copy");
                CK(cudaStreamSynchronize(st->st), "stage");
            }
        }
    }
    struct stage *last = &cm->st[cm->n_stages - 1];
    CK(cudaSetDevice(last->dev), "set device");
    if (next && nl && !use_graph)   // (the graph path copied them)
        CK(cudaMemcpyAsync(next_h, lsc->amax, (size_t)nl * sizeof(int32_t),
                           cudaMemcpyDeviceToHost, last->st), "tokens");
    else if (logits && nl)
        CK(cudaMemcpyAsync(logits, r->sc[cm->n_stages - 1].logits,
                           (size_t)nl * c->n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                           last->st),
           "logits");
    CK(cudaStreamSynchronize(last->st), "forward");
    CK(cudaGetLastError(), "kernel launch");
    if (next && nl) memcpy(next, next_h, (size_t)nl * sizeof(int32_t));
    prof_collect(r);
    return 0;
}

static int forward_batch(struct cuda_runner *r, struct cuda_seq *const *seqs,
                         const int32_t *const *tokens, const int *n_tok, int n_seqs, float *logits,
                         int32_t *next, struct lfmd_err_ctx *err) {
    struct cuda_model *cm = r->cm;
    const struct model_config *c = &cm->c;
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i]->cm != cm)
            return lfmd_err_set(err, LFMD_EINVAL, "sequence belongs to another model");
        if (n_tok[i] < 1) return lfmd_err_set(err, LFMD_EINVAL, "sequence %d: no tokens", i);
        if (seqs[i]->pos + n_tok[i] > seqs[i]->n_ctx)
            return lfmd_err_set(err, LFMD_ETOOBIG,
                                "sequence of %d tokens would exceed its context of %d",
                                seqs[i]->pos + n_tok[i], seqs[i]->n_ctx);
        for (int t = 0; t < n_tok[i]; t++)
            if (tokens[i][t] < 0 || tokens[i][t] >= c->n_vocab)
                return lfmd_err_set(err, LFMD_EINVAL, "token id %d out of range [0, %d)",
                                    tokens[i][t], c->n_vocab);
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return lfmd_err_set(err, LFMD_EINVAL, "sequence listed twice");
    }
    // Same greedy packing as model_forward_batch; logits of chunk rows land in consecutive
    // sequence slots.
    int si = 0, ti = 0;
    while (si < n_seqs) {
        int nt = 0, nl = 0, first_logit = -1;
        while (si < n_seqs && nt < r->max_tok) {
            struct cuda_seq *s = seqs[si];
            int take = n_tok[si] - ti;
            if (take > r->max_tok - nt) take = r->max_tok - nt;
            for (int k = 0; k < take; k++) {
                r->tok[nt] = tokens[si][ti + k];
                r->tok_seq[nt] = s;
                r->pos[nt] = s->pos + k;
                nt++;
            }
            ti += take;
            if (ti == n_tok[si]) {
                if (logits || next) {
                    if (first_logit < 0) first_logit = si;
                    r->rows[nl++] = nt - 1;
                }
                si++;
                ti = 0;
            } else {
                break;
            }
        }
        float *out = logits && nl ? logits + (size_t)first_logit * c->n_vocab : NULL;
        int32_t *nx = next && nl ? next + first_logit : NULL;
        int rc = run_chunk(r, nt, out || nx ? nl : 0, out, nx, err);
        if (rc) return rc;
        for (int k = 0; k < nt; k++)
            if (k == nt - 1 || r->tok_seq[k + 1] != r->tok_seq[k])
                r->tok_seq[k]->pos = r->pos[k] + 1;
    }
    return 0;
}

int cuda_forward_batch(struct cuda_runner *r, struct cuda_seq *const *seqs,
                       const int32_t *const *tokens, const int *n_tok, int n_seqs, float *logits,
                       struct lfmd_err_ctx *err) {
    return forward_batch(r, seqs, tokens, n_tok, n_seqs, logits, NULL, err);
}

int cuda_forward_batch_greedy(struct cuda_runner *r, struct cuda_seq *const *seqs,
                              const int32_t *const *tokens, const int *n_tok, int n_seqs,
                              int32_t *next, struct lfmd_err_ctx *err) {
    return forward_batch(r, seqs, tokens, n_tok, n_seqs, NULL, next, err);
}

int cuda_forward(struct cuda_runner *r, struct cuda_seq *s, const int32_t *tokens, int n_tok,
                 float *logits, struct lfmd_err_ctx *err) {
    return cuda_forward_batch(r, &s, &tokens, &n_tok, 1, logits, err);
}
