// GGUF reader: maps the file read-only and walks header, metadata and tensor infos through a
// bounds-checked cursor; every count, length and offset is checked against the bytes left before
// it is used. Tensor data is only range-checked, never touched.
// SPDX-License-Identifier: MIT
#include "gguf.h"

#include "base/alloc.h"
#include "base/io.h"
#include "base/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct type_row {
    const char *name;
    int blck;
    size_t size;
};

static const struct type_row type_table[] = {
    [GGML_T_F32] = {"f32", 1, 4},       [GGML_T_F16] = {"f16", 1, 2},
    [GGML_T_Q4_0] = {"q4_0", 32, 18},   [GGML_T_Q4_1] = {"q4_1", 32, 20},
    [GGML_T_Q5_0] = {"q5_0", 32, 22},   [GGML_T_Q5_1] = {"q5_1", 32, 24},
    [GGML_T_Q8_0] = {"q8_0", 32, 34},   [GGML_T_Q8_1] = {"q8_1", 32, 36},
    [GGML_T_Q2_K] = {"q2_k", 256, 84},  [GGML_T_Q3_K] = {"q3_k", 256, 110},
    [GGML_T_Q4_K] = {"q4_k", 256, 144}, [GGML_T_Q5_K] = {"q5_k", 256, 176},
    [GGML_T_Q6_K] = {"q6_k", 256, 210}, [GGML_T_Q8_K] = {"q8_k", 256, 292},
    [GGML_T_I8] = {"i8", 1, 1},         [GGML_T_I16] = {"i16", 1, 2},
    [GGML_T_I32] = {"i32", 1, 4},       [GGML_T_I64] = {"i64", 1, 8},
    [GGML_T_F64] = {"f64", 1, 8},       [GGML_T_BF16] = {"bf16", 1, 2},
};

bool ggml_type_info(uint32_t type, int *blck, size_t *type_size) {
    if (type >= sizeof type_table / sizeof type_table[0] || !type_table[type].name) return false;
    if (blck) *blck = type_table[type].blck;
    if (type_size) *type_size = type_table[type].size;
    return true;
}

const char *ggml_type_name(uint32_t type) {
    if (type >= sizeof type_table / sizeof type_table[0] || !type_table[type].name) return "?";
    return type_table[type].name;
}

// Size of one scalar value type (0 for STRING/ARRAY/unknown).
static size_t vt_size(uint32_t t) {
    switch (t) {
    case GGUF_VT_U8: case GGUF_VT_I8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_U16: case GGUF_VT_I16: return 2;
    case GGUF_VT_U32: case GGUF_VT_I32: case GGUF_VT_F32: return 4;
    case GGUF_VT_U64: case GGUF_VT_I64: case GGUF_VT_F64: return 8;
    default: return 0;
    }
}

struct cur {
    const uint8_t *base;
    size_t pos, end;
    const char *path;
    struct lfmd_err_ctx *err;
};

static int need(struct cur *c, size_t n, const char *what) {
    if (n > c->end - c->pos)
        return lfmd_err_set(c->err, LFMD_EFORMAT, "%s: truncated at offset %zu reading %s (%zu bytes "
                            "needed, %zu left)", c->path, c->pos, what, n, c->end - c->pos);
    return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what) {
    int rc = need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what) {
    int rc = need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

// A string: u64 length + bytes. Returns the payload's offset and length.
static int rd_str(struct cur *c, size_t max, size_t *off, size_t *len, const char *what) {
    uint64_t n;
    int rc = rd_u64(c, &n, what);
    if (rc) return rc;
    if (n > max)
        return lfmd_err_set(c->err, LFMD_EFORMAT, "%s: %s at offset %zu has length %llu (limit %zu)",
                            c->path, what, c->pos - 8, (unsigned long long)n, max);
    if ((rc = need(c, (size_t)n, what))) return rc;
    *off = c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return 0;
}

// Skips (validates) one value of type t at the cursor. depth counts array nesting.
static int skip_value(struct cur *c, uint32_t t, int depth, const char *key) {
    size_t s = vt_size(t);
    int rc;
    if (s) {
        if ((rc = need(c, s, key))) return rc;
        c->pos += s;
        return 0;
    }
    if (t == GGUF_VT_STRING) {
        size_t off, len;
        return rd_str(c, GGUF_MAX_STRING_BYTES, &off, &len, key);
    }
    if (t != GGUF_VT_ARRAY)
        return lfmd_err_set(c->err, LFMD_EFORMAT, "%s: key '%s': unknown value type %u", c->path, key, t);
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return lfmd_err_set(c->err, LFMD_EFORMAT, "%s: key '%s': arrays nested deeper than %d", c->path,
                            key, GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    if ((rc = rd_u32(c, &et, key)) || (rc = rd_u64(c, &n, key))) return rc;
    size_t es = vt_size(et);
    // Every element takes at least 1 byte (strings/arrays: at least 8), so a count larger than
    // the bytes left is malformed and rejected before any loop runs.
    size_t min_es = es ? es : (et == GGUF_VT_STRING ? 8 : 12);
    if (et >= GGUF_VT_COUNT)
        return lfmd_err_set(c->err, LFMD_EFORMAT, "%s: key '%s': unknown array element type %u", c->path,
                            key, et);
    if (n > (c->end - c->pos) / min_es)
        return lfmd_err_set(c->err, LFMD_EFORMAT, "%s: key '%s': array count %llu exceeds the %zu bytes "
                            "left in the file", c->path, key, (unsigned long long)n, c->end - c->pos);
    if (es) {
        c->pos += (size_t)n * es;
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if ((rc = skip_value(c, et, depth + 1, key))) return rc;
    return 0;
}

static int key_cmp(const void *a, const void *b) {
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
    const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(struct gguf *g, struct lfmd_err_ctx *err) {
    struct cur c = {.base = g->map, .pos = 0, .end = g->file_size, .path = g->path, .err = err};
    int rc;
    if (g->file_size < 4 || memcmp(g->map, GGUF_MAGIC, 4) != 0)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: not a GGUF file (bad magic)", g->path);
    c.pos = 4;
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u32(&c, &g->version, "version"))) return rc;
    if (g->version != 2 && g->version != 3)
        return lfmd_err_set(err, LFMD_ENOTSUP, "%s: GGUF version %u not supported (2 and 3 are; a "
                            "big-endian file also lands here)", g->path, g->version);
    if ((rc = rd_u64(&c, &n_tensors, "tensor count")) || (rc = rd_u64(&c, &n_kv, "metadata count")))
        return rc;
    if (n_tensors > LFMD_MAX_TENSORS)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor count %llu exceeds the limit %d", g->path,
                            (unsigned long long)n_tensors, LFMD_MAX_TENSORS);
    if (n_kv > GGUF_MAX_KV)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata count %llu exceeds the limit %d", g->path,
                            (unsigned long long)n_kv, GGUF_MAX_KV);
    // Each KV takes at least 8 + 4 bytes, each tensor info at least 8 + 4 + 4 + 8.
    if (n_kv * 12 + n_tensors * 24 > c.end - c.pos)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: %llu metadata entries and %llu tensors cannot fit "
                            "in the %zu bytes left", g->path, (unsigned long long)n_kv,
                            (unsigned long long)n_tensors, c.end - c.pos);
    g->kv = lfmd_calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv, LFMD_MEM_OTHER);
    g->tensors = lfmd_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors, LFMD_MEM_OTHER);
    if (!g->kv || !g->tensors) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", g->path);
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        size_t koff, klen;
        uint32_t t;
        if ((rc = rd_str(&c, GGUF_MAX_KEY_BYTES, &koff, &klen, "metadata key"))) return rc;
        struct gguf_kv *kv = &g->kv[g->n_kv];
        kv->key = lfmd_strndup((const char *)g->map + koff, klen, LFMD_MEM_OTHER);
        if (!kv->key) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", g->path);
        g->n_kv++;
        if (strlen(kv->key) != klen)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata key at offset %zu contains a NUL byte",
                                g->path, koff);
        for (size_t j = 0; j + 1 < g->n_kv; j++)
            if (!strcmp(g->kv[j].key, kv->key))
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: duplicate metadata key '%s'", g->path, kv->key);
        if ((rc = rd_u32(&c, &t, kv->key))) return rc;
        if (t >= GGUF_VT_COUNT)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: key '%s': unknown value type %u", g->path, kv->key, t);
        kv->type = (enum gguf_vtype)t;
        kv->n = 1;
        size_t start = c.pos;
        if (t == GGUF_VT_ARRAY) {
            uint32_t et;
            uint64_t n;
            if ((rc = rd_u32(&c, &et, kv->key)) || (rc = rd_u64(&c, &n, kv->key))) return rc;
            c.pos = start;
            kv->arr_type = et < GGUF_VT_COUNT ? (enum gguf_vtype)et : GGUF_VT_U8;
            kv->n = n;
            kv->off = start + 12;
        } else {
            kv->off = t == GGUF_VT_STRING ? start + 8 : start;
        }
        if ((rc = skip_value(&c, t, 0, kv->key))) return rc;
        kv->size = c.pos - kv->off;
    }
    int64_t align;
    struct lfmd_err_ctx aerr = {0};
    rc = gguf_get_i64(g, "general.alignment", &align, &aerr);
    if (rc == 0) {
        if (align <= 0 || align > (1 << 20) || (align & (align - 1)))
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: general.alignment %lld is not a power of two in "
                                "[1, 1 MiB]", g->path, (long long)align);
        g->alignment = (size_t)align;
    } else if (rc != LFMD_ENOENT) {
        return lfmd_err_set(err, rc, "%s", aerr.msg);
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[g->n_tensors];
        size_t noff, nlen;
        uint32_t nd;
        if ((rc = rd_str(&c, 4096, &noff, &nlen, "tensor name"))) return rc;
        t->name = lfmd_strndup((const char *)g->map + noff, nlen, LFMD_MEM_OTHER);
        if (!t->name) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", g->path);
        g->n_tensors++;
        if (strlen(t->name) != nlen || nlen == 0)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor %llu: empty name or NUL byte in name",
                                g->path, (unsigned long long)i);
        if ((rc = rd_u32(&c, &nd, t->name))) return rc;
        if (nd < 1 || nd > GGUF_MAX_DIMS)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': %u dimensions (1 to %d allowed)",
                                g->path, t->name, nd, GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne;
            if ((rc = rd_u64(&c, &ne, t->name))) return rc;
            if (ne == 0 || ne > ((uint64_t)1 << 40) || nel > (((uint64_t)1 << 42) / ne))
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': dimension %u is %llu (zero or "
                                    "absurdly large)", g->path, t->name, d, (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
            nel *= ne;
        }
        uint64_t off;
        if ((rc = rd_u32(&c, &t->type, t->name)) || (rc = rd_u64(&c, &off, t->name))) return rc;
        int blck;
        size_t tsz;
        if (!ggml_type_info(t->type, &blck, &tsz))
            return lfmd_err_set(err, LFMD_ENOTSUP, "%s: tensor '%s': unknown ggml type %u", g->path, t->name,
                                t->type);
        if (t->ne[0] % blck)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': ne0 = %lld is not a multiple of the "
                                "%s block size %d", g->path, t->name, (long long)t->ne[0],
                                ggml_type_name(t->type), blck);
        t->size = (size_t)(nel / (uint64_t)blck * tsz);
        if (off % g->alignment)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': offset %llu is not aligned to %zu",
                                g->path, t->name, (unsigned long long)off, g->alignment);
        t->offset = (size_t)(off < SIZE_MAX / 2 ? off : SIZE_MAX / 2); // checked after data_offset
        for (size_t j = 0; j + 1 < g->n_tensors; j++)
            if (!strcmp(g->tensors[j].name, t->name))
                return lfmd_err_set(err, LFMD_EFORMAT, "%s: duplicate tensor name '%s'", g->path, t->name);
    }
    size_t data = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (n_tensors && data > g->file_size)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor data section starts at %zu, past the end of "
                            "the %zu-byte file", g->path, data, g->file_size);
    g->data_offset = data;
    size_t avail = g->file_size > data ? g->file_size - data : 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->size > avail - t->offset)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': data [%zu, +%zu) runs past the end of "
                                "the file (%zu data bytes)", g->path, t->name, t->offset, t->size, avail);
        t->offset += data;
    }
    if (g->n_tensors > 1) {
        struct gguf_tensor **order = lfmd_malloc(g->n_tensors * sizeof *order, LFMD_MEM_OTHER);
        if (!order) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", g->path);
        for (size_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
        qsort(order, g->n_tensors, sizeof *order, key_cmp);
        for (size_t i = 1; i < g->n_tensors; i++) {
            if (order[i - 1]->offset + order[i - 1]->size > order[i]->offset) {
                rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: tensors '%s' and '%s' overlap", g->path,
                                  order[i - 1]->name, order[i]->name);
                lfmd_free(order);
                return rc;
            }
        }
        lfmd_free(order);
    }
    return 0;
}

static int open_impl(const char *path, bool meta_only, struct gguf **out,
                     struct lfmd_err_ctx *err);

int gguf_open(const char *path, struct gguf **out, struct lfmd_err_ctx *err) {
    return open_impl(path, false, out, err);
}

int gguf_open_meta(const char *path, struct gguf **out, struct lfmd_err_ctx *err) {
    return open_impl(path, true, out, err);
}

static int open_impl(const char *path, bool meta_only, struct gguf **out,
                     struct lfmd_err_ctx *err) {
    *out = NULL;
    struct gguf *g = lfmd_calloc(1, sizeof *g, LFMD_MEM_OTHER);
    if (!g) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
    g->fd = -1;
    int rc;
    g->path = lfmd_strdup(path, LFMD_MEM_OTHER);
    if (!g->path) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    g->fd = lfmd_io_open(path, O_RDONLY);
    if (g->fd < 0) {
        rc = lfmd_err_set(err, errno == ENOENT ? LFMD_ENOENT : LFMD_EIO, "%s: cannot open: %s", path,
                          strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(g->fd, &st) || !S_ISREG(st.st_mode)) {
        rc = lfmd_err_set(err, LFMD_EIO, "%s: not a regular file", path);
        goto fail;
    }
    g->file_size = (size_t)st.st_size;
    if (g->file_size < 24) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: %zu bytes is too small for a GGUF header", path,
                          g->file_size);
        goto fail;
    }
    void *map = meta_only ? lfmd_io_mmap_file(g->fd, g->file_size)
                          : lfmd_io_mmap(g->fd, g->file_size);
    if (map == MAP_FAILED) {
        rc = lfmd_err_set(err, LFMD_EIO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    g->map = map;
    if ((rc = parse(g, err))) goto fail;
    *out = g;
    return 0;
fail:
    gguf_close(g);
    return rc;
}

void gguf_close(struct gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) lfmd_free(g->kv[i].key);
    for (size_t i = 0; i < g->n_tensors; i++) lfmd_free(g->tensors[i].name);
    lfmd_free(g->kv);
    lfmd_free(g->tensors);
    if (g->map) munmap((void *)g->map, g->file_size);
    if (g->fd >= 0) close(g->fd);
    lfmd_free(g->path);
    lfmd_free(g);
}

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

// Scalar of numeric type t at p as int64 (ok=false for floats that are not integral) or double.
static bool num_i64(uint32_t t, const uint8_t *p, int64_t *v) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64;
            int64_t i64; float f32; double f64; } u;
    memcpy(&u, p, vt_size(t));
    switch (t) {
    case GGUF_VT_U8: case GGUF_VT_BOOL: *v = u.u8; return true;
    case GGUF_VT_I8: *v = u.i8; return true;
    case GGUF_VT_U16: *v = u.u16; return true;
    case GGUF_VT_I16: *v = u.i16; return true;
    case GGUF_VT_U32: *v = u.u32; return true;
    case GGUF_VT_I32: *v = u.i32; return true;
    case GGUF_VT_U64: if (u.u64 > INT64_MAX) return false; *v = (int64_t)u.u64; return true;
    case GGUF_VT_I64: *v = u.i64; return true;
    default: return false;
    }
}

static bool num_f64(uint32_t t, const uint8_t *p, double *v) {
    if (t == GGUF_VT_F32) {
        float f;
        memcpy(&f, p, 4);
        *v = f;
        return true;
    }
    if (t == GGUF_VT_F64) {
        memcpy(v, p, 8);
        return true;
    }
    int64_t i;
    if (!num_i64(t, p, &i)) return false;
    *v = (double)i;
    return true;
}

static int find_typed(const struct gguf *g, const char *key, const struct gguf_kv **kv,
                      struct lfmd_err_ctx *err) {
    *kv = gguf_find_kv(g, key);
    if (!*kv) return lfmd_err_set(err, LFMD_ENOENT, "%s: missing metadata key '%s'", g->path, key);
    return 0;
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out, struct lfmd_err_ctx *err) {
    const struct gguf_kv *kv;
    int rc = find_typed(g, key, &kv, err);
    if (rc) return rc;
    if (!vt_size(kv->type) || !num_i64(kv->type, g->map + kv->off, out))
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata key '%s' is not an integer", g->path, key);
    return 0;
}

int gguf_get_f64(const struct gguf *g, const char *key, double *out, struct lfmd_err_ctx *err) {
    const struct gguf_kv *kv;
    int rc = find_typed(g, key, &kv, err);
    if (rc) return rc;
    if (!vt_size(kv->type) || !num_f64(kv->type, g->map + kv->off, out))
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata key '%s' is not a number", g->path, key);
    return 0;
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct lfmd_err_ctx *err) {
    int64_t v;
    int rc = gguf_get_i64(g, key, &v, err);
    if (rc) return rc;
    *out = v != 0;
    return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, const char **p, size_t *len,
                 struct lfmd_err_ctx *err) {
    const struct gguf_kv *kv;
    int rc = find_typed(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != GGUF_VT_STRING)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata key '%s' is not a string", g->path, key);
    *p = (const char *)g->map + kv->off;
    *len = kv->size;
    return 0;
}

int gguf_get_str_buf(const struct gguf *g, const char *key, char *buf, size_t cap,
                     struct lfmd_err_ctx *err) {
    const char *p = NULL;
    size_t len = 0;
    int rc = gguf_get_str(g, key, &p, &len, err);
    if (rc) return rc;
    if (len >= cap)
        return lfmd_err_set(err, LFMD_ETOOBIG, "%s: metadata key '%s': string of %zu bytes is too long",
                            g->path, key, len);
    memcpy(buf, p, len);
    buf[len] = 0;
    return 0;
}

int gguf_arr_i64(const struct gguf *g, const struct gguf_kv *kv, uint64_t i, int64_t *out) {
    size_t es = vt_size(kv->arr_type);
    if (kv->type != GGUF_VT_ARRAY || !es || i >= kv->n) return LFMD_EINVAL;
    return num_i64(kv->arr_type, g->map + kv->off + (size_t)i * es, out) ? 0 : LFMD_EFORMAT;
}

int gguf_arr_f64(const struct gguf *g, const struct gguf_kv *kv, uint64_t i, double *out) {
    size_t es = vt_size(kv->arr_type);
    if (kv->type != GGUF_VT_ARRAY || !es || i >= kv->n) return LFMD_EINVAL;
    return num_f64(kv->arr_type, g->map + kv->off + (size_t)i * es, out) ? 0 : LFMD_EFORMAT;
}

int gguf_get_str_array(const struct gguf *g, const char *key, char ***out, size_t **lens, size_t *n,
                       struct lfmd_err_ctx *err) {
    *out = NULL;
    if (lens) *lens = NULL;
    *n = 0;
    const struct gguf_kv *kv;
    int rc = find_typed(g, key, &kv, err);
    if (rc) return rc;
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: metadata key '%s' is not an array of strings", g->path,
                            key);
    // Validated at open: n strings of (8 + len) bytes occupy exactly kv->size bytes.
    size_t cnt = (size_t)kv->n;
    size_t text = kv->size - cnt * 8 + cnt; // payload bytes + a NUL per string
    size_t hdr = cnt * sizeof(char *) + (lens ? cnt * sizeof(size_t) : 0);
    char *block = lfmd_malloc(hdr + text + 1, LFMD_MEM_TOKENIZER);
    if (!block) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory for '%s'", g->path, key);
    char **ptrs = (char **)block;
    size_t *ls = lens ? (size_t *)(block + cnt * sizeof(char *)) : NULL;
    char *dst = block + hdr;
    size_t pos = kv->off;
    for (size_t i = 0; i < cnt; i++) {
        uint64_t l;
        memcpy(&l, g->map + pos, 8);
        pos += 8;
        memcpy(dst, g->map + pos, (size_t)l);
        dst[l] = 0;
        ptrs[i] = dst;
        if (ls) ls[i] = (size_t)l;
        dst += l + 1;
        pos += (size_t)l;
    }
    *out = ptrs;
    if (lens) *lens = ls;
    *n = cnt;
    return 0;
}
