// Opening a model: HF/MLX directory (config.json + one or more safetensors files) -> tensor table
// of views into the mappings -> architecture binding. Nothing here reads tensor bytes.
// SPDX-License-Identifier: MIT
#include "internal.h"

#include "base/alloc.h"
#include "base/io.h"
#include "format/gguf.h"
#include "format/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int load_json(const char *path, struct json_doc **doc, struct lfmd_err_ctx *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = lfmd_io_read_file(path, LFMD_MAX_CONFIG_BYTES, LFMD_MEM_OTHER, &text, &len, err);
    if (rc) return rc;
    struct lfmd_err_ctx jerr = {0};
    rc = json_parse(text, len, LFMD_MEM_OTHER, doc, &jerr);
    lfmd_free(text);
    if (rc) return lfmd_err_set(err, rc, "%s: %s", path, jerr.msg);
    return 0;
}

static enum lfmd_dtype st_to_dtype(const char *d, bool *ok) {
    *ok = true;
    if (!strcmp(d, "F32")) return LFMD_DTYPE_F32;
    if (!strcmp(d, "F16")) return LFMD_DTYPE_F16;
    if (!strcmp(d, "BF16")) return LFMD_DTYPE_BF16;
    *ok = false;
    return LFMD_DTYPE_F32;
}

// MLX quantization of one module: config "quantization": {"group_size", "bits", "<module>": {...}
// or false}. Returns bits (0 = not quantized) and group size.
static void mlx_quant_of(const struct json *q, const char *module, int *bits, int *gs) {
    *bits = (int)json_num(json_get(q, "bits"), 0);
    *gs = (int)json_num(json_get(q, "group_size"), 64);
    const struct json *o = json_get(q, module);
    if (o && o->type == JSON_FALSE) *bits = 0;
    if (json_is(o, JSON_OBJECT)) {
        *bits = (int)json_num(json_get(o, "bits"), *bits);
        *gs = (int)json_num(json_get(o, "group_size"), *gs);
    }
}

// Builds model->tensors from the safetensors files. MLX-quantized linears (U32 weight + scales +
// biases) become one tensor of dtype MLX_Q4/MLX_Q8 with the logical [n_out, n_in] shape.
static int build_tensor_table(struct model *m, const struct json *quant, struct lfmd_err_ctx *err) {
    size_t total = 0;
    for (int f = 0; f < m->n_files; f++) total += m->files[f]->n_tensors;
    m->tensors = lfmd_calloc(total ? total : 1, sizeof *m->tensors, LFMD_MEM_OTHER);
    if (!m->tensors) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    for (int f = 0; f < m->n_files; f++) {
        struct st_file *sf = m->files[f];
        for (size_t i = 0; i < sf->n_tensors; i++) {
            const struct st_tensor *st = &sf->tensors[i];
            size_t nl = strlen(st->name);
            // scales/biases are folded into their weight.
            if ((nl > 7 && !strcmp(st->name + nl - 7, ".scales")) ||
                (nl > 7 && !strcmp(st->name + nl - 7, ".biases")))
                continue;
            struct tensor *t = &m->tensors[m->n_tensors];
            t->name = st->name;
            t->n_dims = st->n_dims;
            memcpy(t->shape, st->shape, sizeof t->shape);
            t->data = st_data(sf, st);
            t->size_bytes = st->size_bytes;
            bool ok;
            t->dtype = st_to_dtype(st->dtype, &ok);
            if (!ok && !strcmp(st->dtype, "U32") && nl > 7 && !strcmp(st->name + nl - 7, ".weight")) {
                char module[512], sname[520];
                if (nl - 7 >= sizeof module)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor name too long", sf->path);
                memcpy(module, st->name, nl - 7);
                module[nl - 7] = 0;
                int bits, gs;
                mlx_quant_of(quant, module, &bits, &gs);
                if (bits != 4 && bits != 8)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s' is U32 (MLX-packed) but the "
                                        "config's quantization gives bits=%d (4 or 8 supported)",
                                        sf->path, st->name, bits);
                if (gs != 32 && gs != 64 && gs != 128)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': group_size %d not supported "
                                        "(32, 64, 128)", sf->path, st->name, gs);
                if (st->n_dims != 2)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': packed weight must be 2-D",
                                        sf->path, st->name);
                int64_t n_in = st->shape[1] * 32 / bits;
                if (n_in % gs)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': %lld columns is not a multiple "
                                        "of group_size %d", sf->path, st->name, (long long)n_in, gs);
                const struct st_tensor *sc = NULL, *bi = NULL;
                snprintf(sname, sizeof sname, "%s.scales", module);
                sc = st_find(sf, sname);
                snprintf(sname, sizeof sname, "%s.biases", module);
                bi = st_find(sf, sname);
                if (!sc || !bi)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': missing %s.scales or "
                                        "%s.biases", sf->path, st->name, module, module);
                bool sok;
                enum lfmd_dtype sdt = st_to_dtype(sc->dtype, &sok);
                if (!sok || strcmp(sc->dtype, bi->dtype) != 0 || sc->n_dims != 2 || bi->n_dims != 2 ||
                    sc->shape[0] != st->shape[0] || sc->shape[1] != n_in / gs ||
                    bi->shape[0] != st->shape[0] || bi->shape[1] != n_in / gs)
                    return lfmd_err_set(err, LFMD_EFORMAT, "%s: %s.scales/biases must be [%lld, %lld] of "
                                        "f16/bf16/f32", sf->path, module, (long long)st->shape[0],
                                        (long long)(n_in / gs));
                t->dtype = bits == 4 ? LFMD_DTYPE_MLX_Q4 : LFMD_DTYPE_MLX_Q8;
                t->shape[1] = n_in;
                t->scales = st_data(sf, sc);
                t->biases = st_data(sf, bi);
                t->scale_dtype = sdt;
                t->group_size = gs;
                t->bits = bits;
                t->size_bytes += sc->size_bytes + bi->size_bytes;
                ok = true;
            }
            if (!ok)
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': dtype %s is not supported "
                                    "(F32, F16, BF16, or U32 with MLX quantization)", sf->path,
                                    st->name, st->dtype);
            m->n_tensors++;
        }
    }
    return 0;
}

static int open_hf_dir(struct model *m, const char *dir, struct lfmd_err_ctx *err) {
    char path[4096];
    struct json_doc *cfg = NULL, *idx = NULL;
    int rc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = load_json(path, &cfg, err))) goto done;
    if ((rc = config_parse(json_root(cfg), path, &m->cfg, &m->llama, err))) goto done;
    // Weights: model.safetensors, or the shards listed in model.safetensors.index.json.
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) {
        if ((rc = st_open(path, &m->files[0], err))) goto done;
        m->n_files = 1;
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        struct lfmd_err_ctx ierr = {0};
        if ((rc = load_json(path, &idx, &ierr))) {
            rc = lfmd_err_set(err, rc == LFMD_ENOENT ? LFMD_ENOENT : rc,
                              "%s: no model.safetensors or model.safetensors.index.json (%s)", dir, ierr.msg);
            goto done;
        }
        const struct json *wm = json_get(json_root(idx), "weight_map");
        if (!json_is(wm, JSON_OBJECT)) {
            rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: missing object 'weight_map'", path);
            goto done;
        }
        for (size_t i = 0; i < wm->len; i++) {
            const char *shard = json_str(&wm->u.items[i], NULL);
            if (!shard || strchr(shard, '/')) {
                rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: bad shard name for '%s'", path, wm->u.items[i].key);
                goto done;
            }
            bool seen = false;
            for (int f = 0; f < m->n_files && !seen; f++) {
                const char *p = m->files[f]->path;
                size_t pl = strlen(p), sl = strlen(shard);
                seen = pl >= sl && !strcmp(p + pl - sl, shard) && (pl == sl || p[pl - sl - 1] == '/');
            }
            if (seen) continue;
            if (m->n_files == LFMD_MAX_SHARDS) {
                rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: more than %d shards", path, LFMD_MAX_SHARDS);
                goto done;
            }
            char sp[4096];
            snprintf(sp, sizeof sp, "%s/%s", dir, shard);
            if ((rc = st_open(sp, &m->files[m->n_files], err))) goto done;
            m->n_files++;
        }
    }
    rc = build_tensor_table(m, json_get(json_root(cfg), "quantization"), err);
done:
    json_doc_free(cfg);
    json_doc_free(idx);
    return rc;
}

const struct tensor *model_find(const struct model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

int model_need(const struct model *m, const char *name, int n_dims, const int64_t *shape,
               const struct tensor **out, struct lfmd_err_ctx *err) {
    const struct tensor *t = model_find(m, name);
    *out = NULL;
    if (!t) return lfmd_err_set(err, LFMD_EFORMAT, "%s: missing tensor '%s'", m->path, name);
    // A [n] vector may be stored as [n] or [1, n]; conv kernels [D, 1, L] or [D, L].
    int64_t have = 1, want = 1;
    for (int i = 0; i < t->n_dims; i++) have *= t->shape[i];
    for (int i = 0; i < n_dims; i++) want *= shape[i];
    bool same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) same = t->shape[i] == shape[i];
    if (!same && !(have == want && t->dtype <= LFMD_DTYPE_BF16 && (n_dims == 1 || n_dims == 3))) {
        char want_s[96] = "", have_s[96] = "";
        for (int i = 0; i < n_dims; i++)
            snprintf(want_s + strlen(want_s), sizeof want_s - strlen(want_s), "%s%lld", i ? ", " : "",
                     (long long)shape[i]);
        for (int i = 0; i < t->n_dims; i++)
            snprintf(have_s + strlen(have_s), sizeof have_s - strlen(have_s), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", m->path,
                            name, have_s, want_s);
    }
    if (t->n_dims == 1 && t->dtype > LFMD_DTYPE_BF16)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': 1-D tensors must be f32/f16/bf16", m->path,
                            name);
    *out = t;
    return 0;
}

static void describe_dtypes(struct model *m) {
    int counts[LFMD_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].n_dims >= 2) counts[m->tensors[i].dtype]++;
    int best = 0, kinds = 0;
    for (int d = 0; d < LFMD_DTYPE_COUNT; d++) {
        if (counts[d]) kinds++;
        if (counts[d] > counts[best]) best = d;
    }
    snprintf(m->dtype_desc, sizeof m->dtype_desc, "%s%s", lfmd_dtype_name(best), kinds > 1 ? "+mixed" : "");
}

int model_open(const char *path, const struct model_open_opts *opts, struct model **out,
               struct lfmd_err_ctx *err) {
    *out = NULL;
    struct model *m = lfmd_calloc(1, sizeof *m, LFMD_MEM_OTHER);
    if (!m) return lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
    pthread_mutex_init(&m->repack_mu, NULL);
    int rc;
    m->maps_copied = lfmd_io_copy_maps();
    m->path = lfmd_strdup(path, LFMD_MEM_OTHER);
    if (!m->path) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        rc = lfmd_err_set(err, LFMD_ENOENT, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = open_hf_dir(m, path, err);
    } else {
        rc = model_open_gguf(m, path, err);
    }
    if (rc) goto fail;
    m->ops = m->cfg.arch == MODEL_ARCH_LFM2 ? &lfm2_ops : &llama_ops;
    if ((rc = m->ops->bind(m, err))) goto fail;
    // Weight bytes / params: everything in the table (unused tensors are rare and small).
    for (size_t i = 0; i < m->n_tensors; i++) {
        m->weight_bytes += m->tensors[i].size_bytes;
        m->n_params += (uint64_t)tensor_nelem(&m->tensors[i]);
    }
    describe_dtypes(m);
    // Mapped weights count against the memory budget: they become resident as they are used.
    if (lfmd_mem_charge(LFMD_MEM_WEIGHTS, m->weight_bytes)) {
        rc = lfmd_err_set(err, LFMD_EBUDGET, "%s: weights (%zu bytes) do not fit the memory limit (%zu bytes, "
                          "%zu in use)", path, m->weight_bytes, lfmd_mem_limit(), lfmd_mem_total());
        goto fail;
    }
    m->charged_bytes = m->weight_bytes;
    const struct model_config *c = &m->cfg;
    m->rope_inv_freq = lfmd_malloc((size_t)c->head_dim / 2 * sizeof(float), LFMD_MEM_OTHER);
    if (!m->rope_inv_freq) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    // As transformers computes it: 1 / theta^(arange(0, hd, 2) / hd) in fp32.
    for (int i = 0; i < c->head_dim / 2; i++) {
        float expo = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf(c->rope_theta, expo);
        if (m->llama.rope_llama3) {
            // Llama 3.x frequency-dependent scaling (transformers _compute_llama3_parameters).
            float lo_wl = (float)m->llama.rope_orig_max_pos / m->llama.rope_low_freq;
            float hi_wl = (float)m->llama.rope_orig_max_pos / m->llama.rope_high_freq;
            float wl = 2.0f * (float)M_PI / f;
            if (wl > lo_wl) {
                f = f / m->llama.rope_factor;
            } else if (wl >= hi_wl) {
                float smooth = ((float)m->llama.rope_orig_max_pos / wl - m->llama.rope_low_freq) /
                               (m->llama.rope_high_freq - m->llama.rope_low_freq);
                f = (1 - smooth) * f / m->llama.rope_factor + smooth * f;
            }
        }
        m->rope_inv_freq[i] = f;
    }
    if (opts && opts->preload) {
        for (int f = 0; f < m->n_files; f++)
            madvise((void *)m->files[f]->map, m->files[f]->file_size, MADV_WILLNEED);
    }
    *out = m;
    return 0;
fail:
    model_close(m);
    return rc;
}

void model_close(struct model *m) {
    if (!m) return;
    if (m->charged_bytes) lfmd_mem_uncharge(LFMD_MEM_WEIGHTS, m->charged_bytes);
    if (m->gguf) model_close_gguf(m);
    for (int f = 0; f < m->n_files; f++) st_close(m->files[f]);
    lfmd_free(m->tensors);
    lfmd_free(m->w);
    lfmd_free(m->rope_inv_freq);
    lfmd_free(m->path);
    pthread_mutex_destroy(&m->repack_mu);
    lfmd_free(m);
}

const struct model_config *model_get_config(const struct model *m) { return &m->cfg; }
const char *model_path(const struct model *m) { return m->path; }
size_t model_weight_bytes(const struct model *m) { return m->weight_bytes; }
uint64_t model_param_count(const struct model *m) { return m->n_params; }
const char *model_dtype_desc(const struct model *m) { return m->dtype_desc; }
size_t model_tensor_count(const struct model *m) { return m->n_tensors; }
const struct tensor *model_tensor_at(const struct model *m, size_t i) {
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}

int model_repack_cpu(struct model *m, struct lfmd_err_ctx *err) {
    if (!m->maps_copied || !m->gguf || atomic_load(&m->repacked)) return 0;
    pthread_mutex_lock(&m->repack_mu);
    int rc = 0;
    if (!atomic_load(&m->repacked)) {
        // the copy is read-only once read: writable for the rewrite (the whole mapping, so its
        // huge pages are not split)
        uint8_t *map = (uint8_t *)(uintptr_t)m->gguf->map;
        if (mprotect(map, m->gguf->file_size, PROT_READ | PROT_WRITE) != 0) {
            rc = lfmd_err_set(err, LFMD_EIO, "%s: mprotect: %s", m->path, strerror(errno));
        } else {
            for (size_t i = 0; i < m->n_tensors && !rc; i++) {
                struct tensor *t = &m->tensors[i];
                const struct tensor *same = NULL; // another view of the same bytes
                for (size_t j = 0; j < i; j++)
                    if (m->tensors[j].data == t->data) same = &m->tensors[j];
                if (same) t->layout = same->layout;
                else if (kern_repack_supported(t) && (rc = kern_repack(t)))
                    rc = lfmd_err_set(err, rc, "%s: repacking %s", m->path, t->name);
            }
            mprotect(map, m->gguf->file_size, PROT_READ);
        }
        if (!rc) atomic_store(&m->repacked, true);
    }
    pthread_mutex_unlock(&m->repack_mu);
    return rc;
}

void model_release_pages(struct model *m) {
    if (m->maps_copied) return; // anonymous copies: MADV_DONTNEED would zero the weights
    if (m->gguf) model_release_gguf_pages(m);
    for (int f = 0; f < m->n_files; f++)
        madvise((void *)m->files[f]->map, m->files[f]->file_size, MADV_DONTNEED);
}
