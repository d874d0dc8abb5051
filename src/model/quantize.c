// lfmd quantize: HF bf16/f16/f32 directory -> MLX-layout safetensors directory or GGUF file.
// The input is opened with model_open (validated, mmapped); each tensor is converted row chunk by
// row chunk through kern_get_row + quantize_*_ref into a bounded buffer and written with pwrite at
// offsets computed up front, so memory stays at a few MB whatever the model size.
// Output goes to OUT.tmp-XXXXXX beside OUT and is renamed into place only when complete.
// SPDX-License-Identifier: MIT
#include "quantize.h"

#include "internal.h"

#include "base/alloc.h"
#include "base/io.h"
#include "base/buf.h"
#include "format/gguf.h"
#include "format/json.h"
#include "format/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_BYTES (4u << 20)   // f32 rows converted per step

void quant_opts_default(struct quant_opts *o) {
    memset(o, 0, sizeof *o);
    o->format = QUANT_FMT_MLX;
    o->bits = 4;
    o->group_size = 64;
    o->gguf_type = LFMD_DTYPE_Q4_0;
}

bool quant_parse_type(const char *s, enum lfmd_dtype *out) {
    static const struct {
        const char *name;
        enum lfmd_dtype t;
    } tab[] = {
        {"q8_0", LFMD_DTYPE_Q8_0}, {"q4_0", LFMD_DTYPE_Q4_0}, {"q4_1", LFMD_DTYPE_Q4_1},
        {"q4_k", LFMD_DTYPE_Q4_K}, {"q4_k_m", LFMD_DTYPE_Q4_K}, {"q4_k_s", LFMD_DTYPE_Q4_K},
        {"q5_k", LFMD_DTYPE_Q5_K}, {"q5_k_m", LFMD_DTYPE_Q5_K}, {"q5_k_s", LFMD_DTYPE_Q5_K},
        {"q6_k", LFMD_DTYPE_Q6_K}, {"f16", LFMD_DTYPE_F16},     {"bf16", LFMD_DTYPE_BF16},
        {"f32", LFMD_DTYPE_F32},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcasecmp(s, tab[i].name)) {
            *out = tab[i].t;
            return true;
        }
    return false;
}

static uint32_t ggml_of(enum lfmd_dtype t) {
    switch (t) {
    case LFMD_DTYPE_F32: return GGML_T_F32;
    case LFMD_DTYPE_F16: return GGML_T_F16;
    case LFMD_DTYPE_BF16: return GGML_T_BF16;
    case LFMD_DTYPE_Q8_0: return GGML_T_Q8_0;
    case LFMD_DTYPE_Q4_0: return GGML_T_Q4_0;
    case LFMD_DTYPE_Q4_1: return GGML_T_Q4_1;
    case LFMD_DTYPE_Q4_K: return GGML_T_Q4_K;
    case LFMD_DTYPE_Q5_K: return GGML_T_Q5_K;
    default: return GGML_T_Q6_K;
    }
}

// llama_ftype of a file whose big matrices are all of type t.
static uint32_t ftype_of(enum lfmd_dtype t) {
    switch (t) {
    case LFMD_DTYPE_F32: return 0;
    case LFMD_DTYPE_F16: return 1;
    case LFMD_DTYPE_Q4_0: return 2;
    case LFMD_DTYPE_Q4_1: return 3;
    case LFMD_DTYPE_Q8_0: return 7;
    case LFMD_DTYPE_Q4_K: return 14; // Q4_K_S: every matrix Q4_K
    case LFMD_DTYPE_Q5_K: return 16; // Q5_K_S
    case LFMD_DTYPE_Q6_K: return 18;
    case LFMD_DTYPE_BF16: return 32;
    default: return 0;
    }
}

static const char *st_dtype_of(enum lfmd_dtype t) {
    return t == LFMD_DTYPE_F32 ? "F32" : t == LFMD_DTYPE_F16 ? "F16" : "BF16";
}

// ---- shared state of one run ----
struct qrun {
    const struct quant_opts *o;
    struct model *m;
    const char *out;
    struct lfmd_err_ctx *err;
    int fd;
    char *tmp;              // temp file (GGUF) or temp dir (MLX)
    uint64_t done, total;   // elements, for progress
    float *src;             // CHUNK_BYTES of f32 rows
    uint8_t *dst;           // converted rows
    size_t dst_cap;
};

static int cancelled(struct qrun *q) {
    if (q->o->cancel && *q->o->cancel) return lfmd_err_set(q->err, LFMD_ECANCELED, "interrupted");
    return 0;
}

static int pwrite_all(struct qrun *q, const char *path, const void *p, size_t n, uint64_t off) {
    const uint8_t *b = p;
    while (n) {
        ssize_t r = pwrite(q->fd, b, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return lfmd_err_set(q->err, LFMD_EIO, "%s: write failed at offset %llu: %s", path,
                                (unsigned long long)off, r < 0 ? strerror(errno) : "wrote nothing");
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int grow_dst(struct qrun *q, size_t n) {
    if (n <= q->dst_cap) return 0;
    uint8_t *d = q->dst ? lfmd_realloc(q->dst, n) : lfmd_malloc(n, LFMD_MEM_CONVERTED);
    if (!d) return lfmd_err_set(q->err, LFMD_ENOMEM, "out of memory (%zu-byte row buffer)", n);
    q->dst = d;
    q->dst_cap = n;
    return 0;
}

static int64_t chunk_rows(int64_t cols) {
    int64_t r = (int64_t)(CHUNK_BYTES / 4) / cols;
    return r < 1 ? 1 : r;
}

static void progress(struct qrun *q, const char *name) {
    if (q->o->progress) q->o->progress(q->o->progress_ctx, q->done, q->total, name);
}

// Rows [r0, r0+n) of W as f32 into q->src (cols floats per row).
static void load_rows(struct qrun *q, const struct tensor *W, int64_t r0, int64_t n) {
    int64_t cols = tensor_cols(W);
    for (int64_t i = 0; i < n; i++) kern_get_row(W, r0 + i, q->src + i * cols);
}

// Drops the input's resident pages (the next tensor faults its own in).
static void release_input(struct qrun *q) { model_release_pages(q->m); }

// ---- MLX directory ----

static bool mlx_quantizable(const struct tensor *t, int gs) {
    size_t nl = strlen(t->name);
    return t->n_dims == 2 && nl > 7 && !strcmp(t->name + nl - 7, ".weight") && tensor_cols(t) % gs == 0;
}

static int write_small_file(const char *path, const void *p, size_t n, struct lfmd_err_ctx *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return lfmd_err_set(err, LFMD_EIO, "%s: cannot create: %s", path, strerror(errno));
    const uint8_t *b = p;
    while (n) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            return lfmd_err_set(err, LFMD_EIO, "%s: write failed: %s", path, strerror(e));
        }
        b += r;
        n -= (size_t)r;
    }
    if (close(fd)) return lfmd_err_set(err, LFMD_EIO, "%s: close failed: %s", path, strerror(errno));
    return 0;
}

// config.json with a "quantization" (and "quantization_config", as mlx-lm writes) block added.
static int mlx_config(struct qrun *q, const char *in, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", in);
    char *text;
    size_t len;
    int rc = lfmd_io_read_file(path, LFMD_MAX_CONFIG_BYTES, LFMD_MEM_OTHER, &text, &len, q->err);
    if (rc) return rc;
    size_t end = len;
    while (end > 0 && text[end - 1] != '}') end--;
    if (end == 0) {
        lfmd_free(text);
        return lfmd_err_set(q->err, LFMD_EFORMAT, "%s: not a JSON object", path);
    }
    struct buf b;
    buf_init(&b, LFMD_MAX_CONFIG_BYTES + 4096, LFMD_MEM_OTHER);
    size_t body = end - 1;
    while (body > 0 && (text[body - 1] == ' ' || text[body - 1] == '\n' || text[body - 1] == '\r' ||
                        text[body - 1] == '\t'))
        body--;
    bool empty = body > 0 && text[body - 1] == '{';
    rc = buf_append(&b, text, body);
    if (!rc)
        rc = buf_printf(&b, "%s\n  \"quantization\": {\"group_size\": %d, \"bits\": %d},\n"
                        "  \"quantization_config\": {\"group_size\": %d, \"bits\": %d}\n}\n",
                        empty ? "" : ",", q->o->group_size, q->o->bits, q->o->group_size, q->o->bits);
    lfmd_free(text);
    if (rc) {
        buf_fini(&b);
        return lfmd_err_set(q->err, rc, "%s: config too large", path);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    rc = write_small_file(path, b.data, b.len, q->err);
    buf_fini(&b);
    return rc;
}

// Copies every other regular file of the input directory (tokenizer, generation config, ...).
static int copy_side_files(struct qrun *q, const char *in, const char *dir) {
    DIR *d = opendir(in);
    if (!d) return lfmd_err_set(q->err, LFMD_EIO, "%s: cannot list: %s", in, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t nl = strlen(n);
        if (n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
            (nl > 12 && !strcmp(n + nl - 12, ".safetensors")))
            continue;
        char sp[4096], dp[4096];
        snprintf(sp, sizeof sp, "%s/%s", in, n);
        snprintf(dp, sizeof dp, "%s/%s", dir, n);
        struct stat st;
        if (stat(sp, &st) || !S_ISREG(st.st_mode) || st.st_size > (256 << 20)) continue;
        char *text;
        size_t len;
        if ((rc = lfmd_io_read_file(sp, 256u << 20, LFMD_MEM_OTHER, &text, &len, q->err))) break;
        rc = write_small_file(dp, text, len, q->err);
        lfmd_free(text);
    }
    closedir(d);
    return rc;
}

struct mlx_out {
    const struct tensor *src;
    bool quant;
    uint64_t off_w, off_s, off_b;   // data offsets (relative to the data section)
    uint64_t sz_w, sz_s;            // bytes of weight, of scales (= biases)
};

static int mlx_write(struct qrun *q, const char *in, const char *dir, struct quant_stats *st) {
    struct model *m = q->m;
    int bits = q->o->bits, gs = q->o->group_size;
    struct mlx_out *plan = lfmd_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *plan, LFMD_MEM_OTHER);
    if (!plan) return lfmd_err_set(q->err, LFMD_ENOMEM, "out of memory");
    struct buf h;
    buf_init(&h, 64u << 20, LFMD_MEM_OTHER);
    int rc = buf_puts(&h, "{\"__metadata__\":{\"format\":\"mlx\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < m->n_tensors && !rc; i++) {
        const struct tensor *t = &m->tensors[i];
        struct mlx_out *p = &plan[i];
        p->src = t;
        p->quant = mlx_quantizable(t, gs);
        int64_t rows = tensor_rows(t), cols = tensor_cols(t);
        if (!p->quant) {
            p->off_w = off;
            p->sz_w = t->size_bytes;
            off += p->sz_w;
            rc = buf_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, st_dtype_of(t->dtype));
            for (int d = 0; d < t->n_dims && !rc; d++)
                rc = buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            if (!rc)
                rc = buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)p->off_w,
                                (unsigned long long)off);
            st->n_tensors++;
            continue;
        }
        size_t nl = strlen(t->name) - 7; // module name without ".weight"
        size_t ssz = t->dtype == LFMD_DTYPE_F32 ? 4 : 2;
        p->sz_w = (uint64_t)rows * (uint64_t)(cols * bits / 32) * 4;
        p->sz_s = (uint64_t)rows * (uint64_t)(cols / gs) * ssz;
        p->off_w = off;
        p->off_s = off + p->sz_w;
        p->off_b = p->off_s + p->sz_s;
        off = p->off_b + p->sz_s;
        rc = buf_printf(&h, ",\"%s\":{\"dtype\":\"U32\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                        t->name, (long long)rows, (long long)(cols * bits / 32),
                        (unsigned long long)p->off_w, (unsigned long long)p->off_s);
        const char *sd = st_dtype_of(t->dtype == LFMD_DTYPE_F32 ? LFMD_DTYPE_F32 : t->dtype);
        if (!rc)
            rc = buf_printf(&h, ",\"%.*s.scales\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":"
                            "[%llu,%llu]}", (int)nl, t->name, sd, (long long)rows, (long long)(cols / gs),
                            (unsigned long long)p->off_s, (unsigned long long)p->off_b);
        if (!rc)
            rc = buf_printf(&h, ",\"%.*s.biases\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":"
                            "[%llu,%llu]}", (int)nl, t->name, sd, (long long)rows, (long long)(cols / gs),
                            (unsigned long long)p->off_b, (unsigned long long)off);
        st->n_tensors += 3;
        st->n_quantized++;
    }
    if (!rc) rc = buf_putc(&h, '}');
    while (!rc && h.len % 8) rc = buf_putc(&h, ' ');
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (rc) {
        rc = lfmd_err_set(q->err, rc, "%s: header too large", path);
        goto done;
    }
    q->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (q->fd < 0) {
        rc = lfmd_err_set(q->err, LFMD_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    uint64_t hl = h.len, base = 8 + hl;
    if ((rc = pwrite_all(q, path, &hl, 8, 0)) || (rc = pwrite_all(q, path, h.data, h.len, 8))) goto done;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const struct mlx_out *p = &plan[i];
        const struct tensor *t = p->src;
        int64_t rows = tensor_rows(t), cols = tensor_cols(t);
        if ((rc = cancelled(q))) goto done;
        if (!p->quant) {
            // kept as is (norms, the conv kernel, anything not group-divisible)
            if ((rc = pwrite_all(q, path, t->data, t->size_bytes, base + p->off_w))) goto done;
            q->done += (uint64_t)tensor_nelem(t);
            progress(q, t->name);
            release_input(q);
            continue;
        }
        enum lfmd_dtype sdt = t->dtype == LFMD_DTYPE_F32 ? LFMD_DTYPE_F32 : t->dtype;
        size_t ssz = sdt == LFMD_DTYPE_F32 ? 4 : 2;
        size_t wrow = (size_t)(cols * bits / 32) * 4, srow = (size_t)(cols / gs) * ssz;
        int64_t cr = chunk_rows(cols);
        if ((rc = grow_dst(q, (size_t)cr * (wrow + 2 * srow)))) goto done;
        for (int64_t r0 = 0; r0 < rows; r0 += cr) {
            int64_t n = rows - r0 < cr ? rows - r0 : cr;
            if ((rc = cancelled(q))) goto done;
            load_rows(q, t, r0, n);
            uint8_t *w = q->dst, *s = w + (size_t)n * wrow, *b = s + (size_t)n * srow;
            for (int64_t r = 0; r < n; r++)
                if (quantize_mlx_ref(q->src + r * cols, cols, bits, gs, sdt, (uint32_t *)(w + r * wrow),
                                     s + r * srow, b + r * srow)) {
                    rc = lfmd_err_set(q->err, LFMD_EINVAL, "%s: MLX quantization failed", t->name);
                    goto done;
                }
            if ((rc = pwrite_all(q, path, w, (size_t)n * wrow, base + p->off_w + (uint64_t)r0 * wrow)) ||
                (rc = pwrite_all(q, path, s, (size_t)n * srow, base + p->off_s + (uint64_t)r0 * srow)) ||
                (rc = pwrite_all(q, path, b, (size_t)n * srow, base + p->off_b + (uint64_t)r0 * srow)))
                goto done;
            q->done += (uint64_t)(n * cols);
            progress(q, t->name);
        }
        release_input(q);
    }
    if (fsync(q->fd)) {
        rc = lfmd_err_set(q->err, LFMD_EIO, "%s: fsync failed: %s", path, strerror(errno));
        goto done;
    }
    st->out_bytes = base + off;
    if ((rc = mlx_config(q, in, dir)) || (rc = copy_side_files(q, in, dir))) goto done;
done:
    if (q->fd >= 0 && close(q->fd) && !rc)
        rc = lfmd_err_set(q->err, LFMD_EIO, "%s: close failed: %s", path, strerror(errno));
    q->fd = -1;
    buf_fini(&h);
    lfmd_free(plan);
    return rc;
}

// ---- GGUF file ----

static const struct {
    const char *hf, *gguf;
} lfm2_names[] = {
    {"operator_norm.weight", "attn_norm.weight"},
    {"ffn_norm.weight", "ffn_norm.weight"},
    {"feed_forward.w1.weight", "ffn_gate.weight"},
    {"feed_forward.w3.weight", "ffn_up.weight"},
    {"feed_forward.w2.weight", "ffn_down.weight"},
    {"conv.in_proj.weight", "shortconv.in_proj.weight"},
    {"conv.conv.weight", "shortconv.conv.weight"},
    {"conv.out_proj.weight", "shortconv.out_proj.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.out_proj.weight", "attn_output.weight"},
    {"self_attn.q_layernorm.weight", "attn_q_norm.weight"},
    {"self_attn.k_layernorm.weight", "attn_k_norm.weight"},
};

static const struct {
    const char *hf, *gguf;
} llama_names[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

// llama.cpp's converter permutes q/k rows (and biases) so that its interleaved RoPE rotates the
// pairs transformers' split-half RoPE rotates. Returns the number of heads to permute over (0 =
// no permutation) for a llama tensor.
static int llama_permute_heads(const struct model *m, const char *hf) {
    size_t n = strlen(hf);
    if (m->cfg.arch != MODEL_ARCH_LLAMA) return 0;
    if (n >= 13 && (!strcmp(hf + n - 13, "q_proj.weight"))) return m->cfg.n_head;
    if (n >= 11 && (!strcmp(hf + n - 11, "q_proj.bias"))) return m->cfg.n_head;
    if (n >= 13 && (!strcmp(hf + n - 13, "k_proj.weight"))) return m->cfg.n_kv_head;
    if (n >= 11 && (!strcmp(hf + n - 11, "k_proj.bias"))) return m->cfg.n_kv_head;
    return 0;
}

// GGUF row g of a permuted q/k tensor holds Hugging Face row llama_src_row(g): within each head,
// HF rows [0, hd/2) are the first halves of the rotated pairs and [hd/2, hd) the second halves;
// GGUF interleaves them (pair i = rows 2i, 2i+1).
static int64_t llama_src_row(int64_t g, int head_dim) {
    int64_t h = g / head_dim, j = g % head_dim;
    return h * head_dim + (j % 2) * (head_dim / 2) + j / 2;
}

static bool llama_gguf_name(const char *hf, char *out, size_t cap) {
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight"), true;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight"), true;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight"), true;
    unsigned l;
    int used = 0;
    if (sscanf(hf, "model.layers.%u.%n", &l, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof llama_names / sizeof llama_names[0]; i++)
            if (!strcmp(hf + used, llama_names[i].hf)) {
                snprintf(out, cap, "blk.%u.%s", l, llama_names[i].gguf);
                return true;
            }
    return false;
}

static bool lfm2_gguf_name(const char *hf, char *out, size_t cap) {
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight"), true;
    if (!strcmp(hf, "model.embedding_norm.weight")) return snprintf(out, cap, "token_embd_norm.weight"), true;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight"), true;
    unsigned l;
    int used = 0;
    if (sscanf(hf, "model.layers.%u.%n", &l, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof lfm2_names / sizeof lfm2_names[0]; i++)
            if (!strcmp(hf + used, lfm2_names[i].hf)) {
                snprintf(out, cap, "blk.%u.%s", l, lfm2_names[i].gguf);
                return true;
            }
    return false;
}

// Output type of one tensor: vectors and the conv kernel in F32; matrices in the requested type,
// falling back to Q8_0 / F16 when the row length is not a multiple of the block size.
static enum lfmd_dtype gguf_type_for(const struct tensor *t, enum lfmd_dtype want) {
    if (t->n_dims != 2) return LFMD_DTYPE_F32;
    int64_t cols = tensor_cols(t);
    if (cols % kern_block_size(want) == 0) return want;
    if (cols % 32 == 0 && want != LFMD_DTYPE_F32 && want != LFMD_DTYPE_F16 && want != LFMD_DTYPE_BF16)
        return LFMD_DTYPE_Q8_0;
    return LFMD_DTYPE_F16;
}

// GPT-2 byte -> unicode code point mapping (printable bytes map to themselves).
static unsigned byte_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (unsigned)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
    return 256u + (unsigned)n;
}

static size_t utf8_put(unsigned cp, char *o) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

// Vocabulary for GGUF metadata: tokens, types, merges (all owned by one arena + arrays).
struct vocab {
    char **tok;
    int32_t *type;
    char **merges;
    size_t n_merges;
    char *tmpl;
    struct json_doc *doc;   // tokenizer.json, when used
    char *arena;
};

static void vocab_free(struct vocab *v) {
    lfmd_free(v->tok);
    lfmd_free(v->type);
    lfmd_free(v->merges);
    lfmd_free(v->tmpl);
    lfmd_free(v->arena);
    json_doc_free(v->doc);
}

static const char *const lfm2_specials[] = {
    "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|fim_pre|>", "<|fim_mid|>", "<|fim_suf|>",
    "<|im_start|>", "<|im_end|>", "<|tool_list_start|>", "<|tool_list_end|>", "<|tool_call_start|>",
    "<|tool_call_end|>", "<|tool_response_start|>", "<|tool_response_end|>",
};
#define N_SPECIAL 14

// Synthetic vocabulary (no tokenizer.json): the 14 LFM2 specials (control), the 256 byte-level
// symbols, two merged tokens ("ĠĠ", "ĊĊ") with their merges, then "tok<N>" fillers up to n_vocab.
static int vocab_synthetic(struct vocab *v, int n_vocab, struct lfmd_err_ctx *err) {
    size_t n = (size_t)n_vocab;
    v->tok = lfmd_calloc(n, sizeof *v->tok, LFMD_MEM_OTHER);
    v->type = lfmd_calloc(n, sizeof *v->type, LFMD_MEM_OTHER);
    v->merges = lfmd_calloc(2, sizeof *v->merges, LFMD_MEM_OTHER);
    v->arena = lfmd_malloc(n * 24 + 64, LFMD_MEM_OTHER);
    if (!v->tok || !v->type || !v->merges || !v->arena) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    if (n_vocab < N_SPECIAL + 256 + 2)
        return lfmd_err_set(err, LFMD_EINVAL, "vocab of %d is too small for a synthetic GGUF vocabulary "
                            "(needs %d)", n_vocab, N_SPECIAL + 258);
    char *a = v->arena;
    size_t id = 0;
    for (; id < N_SPECIAL; id++) {
        v->tok[id] = (char *)lfm2_specials[id];
        v->type[id] = 3;
    }
    for (int b = 0; b < 256; b++, id++) {
        v->tok[id] = a;
        a += utf8_put(byte_cp(b), a);
        *a++ = 0;
        v->type[id] = 1;
    }
    char sp[4], nl[4];
    sp[utf8_put(byte_cp(' '), sp)] = 0;
    nl[utf8_put(byte_cp('\n'), nl)] = 0;
    v->tok[id] = a;
    a += sprintf(a, "%s%s", sp, sp) + 1;
    v->type[id++] = 1;
    v->tok[id] = a;
    a += sprintf(a, "%s%s", nl, nl) + 1;
    v->type[id++] = 1;
    v->merges[0] = a;
    a += sprintf(a, "%s %s", sp, sp) + 1;
    v->merges[1] = a;
    a += sprintf(a, "%s %s", nl, nl) + 1;
    v->n_merges = 2;
    for (; id < n; id++) {
        v->tok[id] = a;
        a += sprintf(a, "tok%zu", id) + 1;
        v->type[id] = 1;
    }
    return 0;
}

// Vocabulary from tokenizer.json (BPE model): vocab, merges ("a b" or ["a", "b"]), added tokens.
static int vocab_from_json(struct vocab *v, const char *path, int n_vocab, struct lfmd_err_ctx *err) {
    char *text;
    size_t len;
    int rc = lfmd_io_read_file(path, LFMD_MAX_TOKENIZER_BYTES, LFMD_MEM_OTHER, &text, &len, err);
    if (rc) return rc;
    struct lfmd_err_ctx jerr = {0};
    rc = json_parse(text, len, LFMD_MEM_OTHER, &v->doc, &jerr);
    lfmd_free(text);
    if (rc) return lfmd_err_set(err, rc, "%s: %s", path, jerr.msg);
    const struct json *model = json_get(json_root(v->doc), "model");
    const struct json *vocab = json_get(model, "vocab");
    const struct json *merges = json_get(model, "merges");
    const char *type = json_str(json_get(model, "type"), "");
    if (strcmp(type, "BPE") || !json_is(vocab, JSON_OBJECT))
        return lfmd_err_set(err, LFMD_ENOTSUP, "%s: only BPE tokenizers can be written to GGUF", path);
    size_t n = (size_t)n_vocab, nm = json_is(merges, JSON_ARRAY) ? merges->len : 0;
    v->tok = lfmd_calloc(n, sizeof *v->tok, LFMD_MEM_OTHER);
    v->type = lfmd_calloc(n, sizeof *v->type, LFMD_MEM_OTHER);
    v->merges = lfmd_calloc(nm ? nm : 1, sizeof *v->merges, LFMD_MEM_OTHER);
    size_t arena = n * 16;
    for (size_t i = 0; i < nm; i++) {
        const struct json *e = &merges->u.items[i];
        if (json_is(e, JSON_ARRAY) && e->len == 2)
            arena += e->u.items[0].len + e->u.items[1].len + 2;
    }
    v->arena = lfmd_malloc(arena + 1, LFMD_MEM_OTHER);
    if (!v->tok || !v->type || !v->merges || !v->arena) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    for (size_t i = 0; i < vocab->len; i++) {
        int64_t id;
        const struct json *e = &vocab->u.items[i];
        if (json_int(e, 0, n_vocab - 1, &id))
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: vocab id of '%s' is outside [0, %d)", path, e->key,
                                n_vocab);
        v->tok[id] = (char *)e->key;
        v->type[id] = 1;
    }
    const struct json *added = json_get(json_root(v->doc), "added_tokens");
    for (size_t i = 0; json_is(added, JSON_ARRAY) && i < added->len; i++) {
        const struct json *e = &added->u.items[i];
        int64_t id;
        const char *c = json_str(json_get(e, "content"), NULL);
        if (!c || json_int(json_get(e, "id"), 0, n_vocab - 1, &id))
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: added_tokens[%zu] has no content or a bad id", path, i);
        v->tok[id] = (char *)c;
        v->type[id] = json_bool(json_get(e, "special"), false) ? 3 : 4;
    }
    char *a = v->arena;
    for (size_t id = 0; id < n; id++)
        if (!v->tok[id]) { // hole: unused placeholder
            v->tok[id] = a;
            a += sprintf(a, "[UNUSED%zu]", id) + 1;
            v->type[id] = 5;
        }
    for (size_t i = 0; i < nm; i++) {
        const struct json *e = &merges->u.items[i];
        if (json_is(e, JSON_STRING)) {
            v->merges[v->n_merges++] = (char *)e->u.str;
        } else if (json_is(e, JSON_ARRAY) && e->len == 2 && json_is(&e->u.items[0], JSON_STRING) &&
                   json_is(&e->u.items[1], JSON_STRING)) {
            v->merges[v->n_merges++] = a;
            a += sprintf(a, "%s %s", e->u.items[0].u.str, e->u.items[1].u.str) + 1;
        } else {
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: merges[%zu] is not a string or a pair", path, i);
        }
    }
    return 0;
}

static int gguf_metadata(struct qrun *q, struct gguf_writer *w, const char *in, struct vocab *v,
                         struct quant_stats *st) {
    const struct model_config *c = &q->m->cfg;
    const char *base = strrchr(in, '/');
    base = base && base[1] ? base + 1 : in;
    bool llama = c->arch == MODEL_ARCH_LLAMA;
    gguf_w_str(w, "general.architecture", llama ? "llama" : "lfm2");
    gguf_w_str(w, "general.name", base);
    gguf_w_u32(w, "general.file_type", ftype_of(q->o->gguf_type));
    if (kern_block_size(q->o->gguf_type) > 1) gguf_w_u32(w, "general.quantization_version", 2);
    if (llama) {
        gguf_w_u32(w, "llama.vocab_size", (uint32_t)c->n_vocab);
        gguf_w_u32(w, "llama.context_length", (uint32_t)c->max_pos);
        gguf_w_u32(w, "llama.embedding_length", (uint32_t)c->n_embd);
        gguf_w_u32(w, "llama.feed_forward_length", (uint32_t)c->n_ff);
        gguf_w_u32(w, "llama.block_count", (uint32_t)c->n_layer);
        gguf_w_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
        gguf_w_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_head);
        gguf_w_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
        gguf_w_f32(w, "llama.rope.freq_base", c->rope_theta);
        gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
        if (c->head_dim != c->n_embd / c->n_head) {
            gguf_w_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
            gguf_w_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
        }
    } else {
        gguf_w_u32(w, "lfm2.vocab_size", (uint32_t)c->n_vocab);
    gguf_w_u32(w, "lfm2.context_length", (uint32_t)c->max_pos);
    gguf_w_u32(w, "lfm2.embedding_length", (uint32_t)c->n_embd);
    gguf_w_u32(w, "lfm2.feed_forward_length", (uint32_t)c->n_ff);
    gguf_w_u32(w, "lfm2.block_count", (uint32_t)c->n_layer);
    gguf_w_u32(w, "lfm2.attention.head_count", (uint32_t)c->n_head);
    int32_t kv[LFMD_MAX_LAYERS];
    for (int l = 0; l < c->n_layer; l++) kv[l] = c->is_attn[l] ? c->n_kv_head : 0;
    gguf_w_arr(w, "lfm2.attention.head_count_kv", GGUF_VT_I32, kv, (size_t)c->n_layer);
    gguf_w_f32(w, "lfm2.rope.freq_base", c->rope_theta);
    gguf_w_f32(w, "lfm2.attention.layer_norm_rms_epsilon", c->norm_eps);
    gguf_w_u32(w, "lfm2.shortconv.l_cache", (uint32_t)c->conv_L);
    if (c->head_dim != c->n_embd / c->n_head) {
        gguf_w_u32(w, "lfm2.attention.key_length", (uint32_t)c->head_dim);
        gguf_w_u32(w, "lfm2.attention.value_length", (uint32_t)c->head_dim);
    }
    }
    // tokenizer
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", in);
    int rc;
    if (access(path, F_OK) == 0) {
        if ((rc = vocab_from_json(v, path, c->n_vocab, q->err))) return rc;
        snprintf(st->tokenizer_note, sizeof st->tokenizer_note, "vocabulary from tokenizer.json (%zu merges)",
                 v->n_merges);
    } else {
        if ((rc = vocab_synthetic(v, c->n_vocab, q->err))) return rc;
        snprintf(st->tokenizer_note, sizeof st->tokenizer_note, "no tokenizer.json: wrote a synthetic "
                 "byte-level vocabulary of %d tokens (14 LFM2 specials, 256 bytes, fillers)", c->n_vocab);
    }
    // chat template: tokenizer_config.json "chat_template" or chat_template.jinja
    snprintf(path, sizeof path, "%s/chat_template.jinja", in);
    size_t len;
    struct lfmd_err_ctx terr = {0};
    if (lfmd_io_read_file(path, LFMD_MAX_CONFIG_BYTES, LFMD_MEM_OTHER, &v->tmpl, &len, &terr) != 0) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", in);
        char *text;
        struct json_doc *doc = NULL;
        if (lfmd_io_read_file(path, LFMD_MAX_CONFIG_BYTES, LFMD_MEM_OTHER, &text, &len, &terr) == 0) {
            if (json_parse(text, len, LFMD_MEM_OTHER, &doc, &terr) == 0) {
                const char *t = json_str(json_get(json_root(doc), "chat_template"), NULL);
                if (t) v->tmpl = lfmd_strdup(t, LFMD_MEM_OTHER);
                json_doc_free(doc);
            }
            lfmd_free(text);
        }
    }
    gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_w_str(w, "tokenizer.ggml.pre", "lfm2");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, (size_t)c->n_vocab);
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, v->type, (size_t)c->n_vocab);
    gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, v->n_merges);
    if (c->bos_id >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id);
    if (c->eos_id >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_id);
    if (c->pad_id >= 0) gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)c->pad_id);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (v->tmpl) gguf_w_str(w, "tokenizer.chat_template", v->tmpl);
    return 0;
}

static int gguf_write_model(struct qrun *q, const char *in, struct quant_stats *st) {
    struct model *m = q->m;
    bool llama = m->cfg.arch == MODEL_ARCH_LLAMA;
    if (llama && m->llama.rope_llama3)
        return lfmd_err_set(q->err, LFMD_ENOTSUP, "%s: GGUF output of Llama 3 rope scaling (rope_freqs) is "
                            "not implemented (use --format mlx)", in);
    struct gguf_writer *w = NULL;
    struct vocab v = {0};
    enum lfmd_dtype *types = lfmd_calloc(m->n_tensors ? m->n_tensors : 1, sizeof *types, LFMD_MEM_OTHER);
    if (!types) return lfmd_err_set(q->err, LFMD_ENOMEM, "out of memory");
    int rc = gguf_writer_new(q->fd, q->out, &w, q->err);
    if (rc) goto done;
    if ((rc = gguf_metadata(q, w, in, &v, st))) goto done;
    char name[256];
    for (size_t i = 0; i < m->n_tensors; i++) {
        const struct tensor *t = &m->tensors[i];
        if (!(llama ? llama_gguf_name : lfm2_gguf_name)(t->name, name, sizeof name)) {
            rc = lfmd_err_set(q->err, LFMD_ENOTSUP, "%s: tensor '%s' has no GGUF name", in, t->name);
            goto done;
        }
        types[i] = gguf_type_for(t, q->o->gguf_type);
        int64_t ne[4];
        int nd = t->n_dims;
        for (int d = 0; d < nd; d++) ne[d] = t->shape[nd - 1 - d];
        if (nd == 3 && t->shape[1] == 1) { // conv [D, 1, L] -> ggml [L, D]
            nd = 2;
            ne[0] = t->shape[2];
            ne[1] = t->shape[0];
        }
        if (gguf_w_tensor(w, name, ggml_of(types[i]), nd, ne)) {
            rc = lfmd_err_set(q->err, LFMD_EINVAL, "%s: cannot declare tensor '%s'", q->tmp, name);
            goto done;
        }
        st->n_tensors++;
        st->n_quantized += kern_block_size(types[i]) > 1;
    }
    if ((rc = gguf_w_header(w, q->err))) goto done;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const struct tensor *t = &m->tensors[i];
        int64_t rows = tensor_rows(t), cols = tensor_cols(t);
        size_t rb = kern_row_bytes(types[i], cols);
        int64_t cr = chunk_rows(cols);
        if ((rc = grow_dst(q, (size_t)cr * rb))) goto done;
        for (int64_t r0 = 0; r0 < rows; r0 += cr) {
            int64_t n = rows - r0 < cr ? rows - r0 : cr;
            if ((rc = cancelled(q))) goto done;
            int heads = llama_permute_heads(m, t->name);
            if (heads && t->n_dims == 1 && 2 * cols <= (int64_t)(CHUNK_BYTES / 4)) { // q/k bias
                kern_get_row(t, 0, q->src + cols);
                for (int64_t k = 0; k < cols; k++) q->src[k] = q->src[cols + llama_src_row(k, m->cfg.head_dim)];
            } else if (heads) {
                for (int64_t r = 0; r < n; r++)
                    kern_get_row(t, llama_src_row(r0 + r, m->cfg.head_dim), q->src + r * cols);
            } else {
                load_rows(q, t, r0, n);
            }
            for (int64_t r = 0; r < n; r++)
                if (quantize_row_ref(types[i], q->src + r * cols, q->dst + (size_t)r * rb, cols)) {
                    rc = lfmd_err_set(q->err, LFMD_EINVAL, "%s: quantization to %s failed", t->name,
                                      lfmd_dtype_name(types[i]));
                    goto done;
                }
            if ((rc = gguf_w_data(w, q->dst, (size_t)n * rb, q->err))) goto done;
            q->done += (uint64_t)(n * cols);
            progress(q, t->name);
        }
        release_input(q);
    }
    if ((rc = gguf_w_finish(w, q->err))) goto done;
    if (fsync(q->fd)) {
        rc = lfmd_err_set(q->err, LFMD_EIO, "%s: fsync failed: %s", q->tmp, strerror(errno));
        goto done;
    }
    st->out_bytes = gguf_w_total_bytes(w);
done:
    gguf_writer_free(w);
    vocab_free(&v);
    lfmd_free(types);
    return rc;
}

// Removes the temp file, or the temp dir and the files in it.
static void remove_tmp(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        char p[4096];
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            unlink(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int quantize_model(const char *in, const char *out, const struct quant_opts *o, struct quant_stats *st,
                   struct lfmd_err_ctx *err) {
    memset(st, 0, sizeof *st);
    if (o->format == QUANT_FMT_MLX && ((o->bits != 4 && o->bits != 8) ||
                                       (o->group_size != 32 && o->group_size != 64 && o->group_size != 128)))
        return lfmd_err_set(err, LFMD_EINVAL, "MLX quantization needs --bits 4|8 and --group-size 32|64|128");
    if (o->format == QUANT_FMT_GGUF && (o->gguf_type >= LFMD_DTYPE_COUNT || o->gguf_type == LFMD_DTYPE_MLX_Q4 ||
                                        o->gguf_type == LFMD_DTYPE_MLX_Q8))
        return lfmd_err_set(err, LFMD_EINVAL, "bad GGUF tensor type");
    struct stat sb;
    if (lstat(out, &sb) == 0)
        return lfmd_err_set(err, LFMD_EINVAL, "%s: already exists (remove it or choose another output)", out);
    if (stat(in, &sb) || !S_ISDIR(sb.st_mode))
        return lfmd_err_set(err, LFMD_EINVAL, "%s: input must be a Hugging Face model directory", in);
    struct qrun q = {.o = o, .out = out, .err = err, .fd = -1};
    int rc = model_open(in, NULL, &q.m, err);
    if (rc) return rc;
    for (size_t i = 0; i < q.m->n_tensors; i++) {
        const struct tensor *t = &q.m->tensors[i];
        if (t->dtype > LFMD_DTYPE_BF16) {
            rc = lfmd_err_set(err, LFMD_ENOTSUP, "%s: tensor '%s' is already quantized (%s); quantize from "
                              "a bf16/f16/f32 model", in, t->name, lfmd_dtype_name(t->dtype));
            goto done;
        }
        q.total += (uint64_t)tensor_nelem(t);
    }
    for (int f = 0; f < q.m->n_files; f++) st->in_bytes += q.m->files[f]->file_size;
    q.src = lfmd_malloc(CHUNK_BYTES + 4 * (size_t)LFMD_MAX_DIM, LFMD_MEM_CONVERTED);
    size_t tl = strlen(out) + 16;
    q.tmp = lfmd_malloc(tl, LFMD_MEM_OTHER);
    if (!q.src || !q.tmp) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(q.tmp, tl, "%s.tmp-XXXXXX", out);
    if (o->format == QUANT_FMT_MLX) {
        if (!mkdtemp(q.tmp)) {
            rc = lfmd_err_set(err, LFMD_EIO, "%s: cannot create the output directory: %s", q.tmp, strerror(errno));
            q.tmp[0] = 0;
            goto done;
        }
        (void)chmod(q.tmp, 0755);
        rc = mlx_write(&q, in, q.tmp, st);
    } else {
        q.fd = mkstemp(q.tmp);
        if (q.fd < 0) {
            rc = lfmd_err_set(err, LFMD_EIO, "%s: cannot create the output file: %s", q.tmp, strerror(errno));
            q.tmp[0] = 0;
            goto done;
        }
        (void)fchmod(q.fd, 0644);
        rc = gguf_write_model(&q, in, st);
        if (close(q.fd) && !rc) rc = lfmd_err_set(err, LFMD_EIO, "%s: close failed: %s", q.tmp, strerror(errno));
        q.fd = -1;
    }
    if (!rc && !(o->cancel && *o->cancel) && rename(q.tmp, out) != 0)
        rc = lfmd_err_set(err, LFMD_EIO, "%s: cannot rename to %s: %s", q.tmp, out, strerror(errno));
    if (!rc && o->cancel && *o->cancel) rc = lfmd_err_set(err, LFMD_ECANCELED, "interrupted");
done:
    if (rc && q.tmp && q.tmp[0]) remove_tmp(q.tmp);
    if (q.fd >= 0) close(q.fd);
    lfmd_free(q.tmp);
    lfmd_free(q.src);
    lfmd_free(q.dst);
    model_close(q.m);
    return rc;
}
