// GGUF v3 writer: metadata and tensor infos are built in memory (they are small next to the
// weights), written in one go by gguf_w_header, then tensor data is streamed in declaration order
// with alignment padding. Write errors (full disk, EFBIG) come back with the path and errno text.
// SPDX-License-Identifier: MIT
#include "gguf.h"

#include "base/alloc.h"
#include "base/buf.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define GGUF_W_MAX_META (1u << 30)

struct gguf_writer {
    int fd;
    char *path;
    struct buf kv;       // serialized KV pairs
    struct buf ti;       // serialized tensor infos
    uint64_t n_kv, n_tensors;
    int sticky;          // first error of a metadata call
    uint64_t data_size;  // running aligned size of the data section
    uint64_t *sizes;     // per tensor byte size (for padding while streaming)
    size_t sizes_cap;
    bool header_done;
    size_t cur;          // tensor being written
    uint64_t cur_done;   // bytes of it written
    uint64_t written;    // bytes written to the file so far
};

static const size_t align = GGUF_DEFAULT_ALIGNMENT;

int gguf_writer_new(int fd, const char *path, struct gguf_writer **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct gguf_writer *w = lfmd_calloc(1, sizeof *w, LFMD_MEM_OTHER);
    if (!w || !(w->path = lfmd_strdup(path, LFMD_MEM_OTHER))) {
        lfmd_free(w);
        return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
    }
    w->fd = fd;
    buf_init(&w->kv, GGUF_W_MAX_META, LFMD_MEM_OTHER);
    buf_init(&w->ti, GGUF_W_MAX_META, LFMD_MEM_OTHER);
    *out = w;
    return 0;
}

void gguf_writer_free(struct gguf_writer *w) {
    if (!w) return;
    buf_fini(&w->kv);
    buf_fini(&w->ti);
    lfmd_free(w->sizes);
    lfmd_free(w->path);
    lfmd_free(w);
}

static int put(struct gguf_writer *w, struct buf *b, const void *p, size_t n) {
    if (w->sticky) return w->sticky;
    int rc = buf_append(b, p, n);
    if (rc) w->sticky = rc;
    return rc;
}

static int put_str(struct gguf_writer *w, struct buf *b, const char *s) {
    uint64_t n = strlen(s);
    int rc = put(w, b, &n, 8);
    return rc ? rc : put(w, b, s, (size_t)n);
}

static int put_key(struct gguf_writer *w, const char *key, uint32_t type) {
    int rc = put_str(w, &w->kv, key);
    if (rc || (rc = put(w, &w->kv, &type, 4))) return rc;
    w->n_kv++;
    return 0;
}

int gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v) {
    int rc = put_key(w, key, GGUF_VT_U32);
    return rc ? rc : put(w, &w->kv, &v, 4);
}

int gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v) {
    int rc = put_key(w, key, GGUF_VT_I32);
    return rc ? rc : put(w, &w->kv, &v, 4);
}

int gguf_w_f32(struct gguf_writer *w, const char *key, float v) {
    int rc = put_key(w, key, GGUF_VT_F32);
    return rc ? rc : put(w, &w->kv, &v, 4);
}

int gguf_w_bool(struct gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    int rc = put_key(w, key, GGUF_VT_BOOL);
    return rc ? rc : put(w, &w->kv, &b, 1);
}

int gguf_w_str(struct gguf_writer *w, const char *key, const char *v) {
    int rc = put_key(w, key, GGUF_VT_STRING);
    return rc ? rc : put_str(w, &w->kv, v);
}

static size_t elem_size(enum gguf_vtype t) {
    switch (t) {
    case GGUF_VT_U8: case GGUF_VT_I8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_U16: case GGUF_VT_I16: return 2;
    case GGUF_VT_U32: case GGUF_VT_I32: case GGUF_VT_F32: return 4;
    case GGUF_VT_U64: case GGUF_VT_I64: case GGUF_VT_F64: return 8;
    default: return 0;
    }
}

int gguf_w_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem, const void *data, size_t n) {
    size_t es = elem_size(elem);
    if (!es) return w->sticky = LFMD_EINVAL;
    uint32_t et = elem;
    uint64_t cnt = n;
    int rc = put_key(w, key, GGUF_VT_ARRAY);
    if (rc || (rc = put(w, &w->kv, &et, 4)) || (rc = put(w, &w->kv, &cnt, 8))) return rc;
    return put(w, &w->kv, data, n * es);
}

int gguf_w_arr_str(struct gguf_writer *w, const char *key, const char *const *strs, size_t n) {
    uint32_t et = GGUF_VT_STRING;
    uint64_t cnt = n;
    int rc = put_key(w, key, GGUF_VT_ARRAY);
    if (rc || (rc = put(w, &w->kv, &et, 4)) || (rc = put(w, &w->kv, &cnt, 8))) return rc;
    for (size_t i = 0; i < n && !rc; i++) rc = put_str(w, &w->kv, strs[i]);
    return rc;
}

int gguf_w_raw_kv(struct gguf_writer *w, const void *p, size_t n) {
    int rc = put(w, &w->kv, p, n);
    if (!rc) w->n_kv++;
    return rc;
}

int gguf_w_tensor(struct gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne) {
    int blck;
    size_t tsz;
    if (w->sticky) return w->sticky;
    if (!ggml_type_info(type, &blck, &tsz) || n_dims < 1 || n_dims > GGUF_MAX_DIMS || ne[0] % blck)
        return w->sticky = LFMD_EINVAL;
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0) return w->sticky = LFMD_EINVAL;
        nel *= (uint64_t)ne[d];
    }
    if (w->n_tensors == w->sizes_cap) {
        size_t cap = w->sizes_cap ? w->sizes_cap * 2 : 64;
        uint64_t *s = w->sizes ? lfmd_realloc(w->sizes, cap * sizeof *s)
                               : lfmd_malloc(cap * sizeof *s, LFMD_MEM_OTHER);
        if (!s) return w->sticky = LFMD_ENOMEM;
        w->sizes = s;
        w->sizes_cap = cap;
    }
    uint64_t size = nel / (uint64_t)blck * tsz;
    uint32_t nd = (uint32_t)n_dims;
    uint64_t off = w->data_size;
    int rc;
    if ((rc = put_str(w, &w->ti, name)) || (rc = put(w, &w->ti, &nd, 4))) return rc;
    for (int d = 0; d < n_dims; d++) {
        uint64_t v = (uint64_t)ne[d];
        if ((rc = put(w, &w->ti, &v, 8))) return rc;
    }
    if ((rc = put(w, &w->ti, &type, 4)) || (rc = put(w, &w->ti, &off, 8))) return rc;
    w->sizes[w->n_tensors++] = size;
    w->data_size = (off + size + align - 1) / align * align;
    return 0;
}

static uint64_t header_bytes(const struct gguf_writer *w) {
    uint64_t h = 4 + 4 + 8 + 8 + w->kv.len + w->ti.len;
    return (h + align - 1) / align * align;
}

uint64_t gguf_w_total_bytes(const struct gguf_writer *w) { return header_bytes(w) + w->data_size; }

static int write_all(struct gguf_writer *w, const void *p, size_t n, struct lfmd_err_ctx *err) {
    const uint8_t *b = p;
    while (n) {
        ssize_t r = write(w->fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return lfmd_err_set(err, LFMD_EIO, "%s: write failed after %llu bytes: %s", w->path,
                                (unsigned long long)w->written, strerror(errno));
        if (r == 0) return lfmd_err_set(err, LFMD_EIO, "%s: write returned 0", w->path);
        b += r;
        n -= (size_t)r;
        w->written += (uint64_t)r;
    }
    return 0;
}

static int pad(struct gguf_writer *w, struct lfmd_err_ctx *err) {
    static const uint8_t zeros[64];
    size_t p = (size_t)((align - w->written % align) % align);
    return p ? write_all(w, zeros, p, err) : 0;
}

int gguf_w_header(struct gguf_writer *w, struct lfmd_err_ctx *err) {
    if (w->sticky)
        return lfmd_err_set(err, w->sticky, "%s: building GGUF metadata failed: %s", w->path,
                            lfmd_strerror(w->sticky));
    if (w->header_done) return lfmd_err_set(err, LFMD_EINVAL, "%s: header written twice", w->path);
    uint8_t h[24];
    uint32_t ver = 3;
    memcpy(h, GGUF_MAGIC, 4);
    memcpy(h + 4, &ver, 4);
    memcpy(h + 8, &w->n_tensors, 8);
    memcpy(h + 16, &w->n_kv, 8);
    int rc;
    if ((rc = write_all(w, h, sizeof h, err)) || (rc = write_all(w, w->kv.data, w->kv.len, err)) ||
        (rc = write_all(w, w->ti.data, w->ti.len, err)) || (rc = pad(w, err)))
        return rc;
    w->header_done = true;
    return 0;
}

int gguf_w_data(struct gguf_writer *w, const void *p, size_t n, struct lfmd_err_ctx *err) {
    if (!w->header_done) return lfmd_err_set(err, LFMD_EINVAL, "%s: tensor data before header", w->path);
    const uint8_t *b = p;
    while (n) {
        if (w->cur >= w->n_tensors)
            return lfmd_err_set(err, LFMD_EINVAL, "%s: more tensor data than declared", w->path);
        uint64_t left = w->sizes[w->cur] - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        int rc = write_all(w, b, k, err);
        if (rc) return rc;
        b += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == w->sizes[w->cur]) {
            if ((rc = pad(w, err))) return rc;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return 0;
}

int gguf_w_finish(struct gguf_writer *w, struct lfmd_err_ctx *err) {
    if (!w->header_done || w->cur != w->n_tensors)
        return lfmd_err_set(err, LFMD_EINVAL, "%s: %zu of %llu tensors written", w->path, w->cur,
                            (unsigned long long)w->n_tensors);
    return 0;
}
