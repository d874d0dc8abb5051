// safetensors header parsing and validation. Format: u64 LE header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then data.
// SPDX-License-Identifier: MIT
#include "safetensors.h"

#include "base/alloc.h"
#include "base/io.h"
#include "base/limits.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

size_t st_dtype_size(const char *d) {
    static const struct { const char *name; size_t size; } types[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(d, types[i].name)) return types[i].size;
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int read_full(int fd, void *buf, size_t n, off_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = lfmd_io_pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

static int parse_entry(struct st_file *f, const struct json *e, size_t data_start,
                       struct st_tensor *t, struct lfmd_err_ctx *err) {
    const char *path = f->path, *name = e->key;
    const struct json *dt = json_get(e, "dtype"), *shape = json_get(e, "shape");
    const struct json *offs = json_get(e, "data_offsets");
    if (!json_is(dt, JSON_STRING) || !json_is(shape, JSON_ARRAY) || !json_is(offs, JSON_ARRAY) ||
        offs->len != 2)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': header entry needs dtype, shape and "
                            "data_offsets [begin, end]", path, name);
    size_t esize = st_dtype_size(dt->u.str);
    if (!esize || dt->len >= sizeof t->dtype)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                            dt->u.str);
    if (shape->len > 4)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': %u dimensions (at most 4 supported)",
                            path, name, shape->len);
    memcpy(t->dtype, dt->u.str, dt->len + 1);
    t->n_dims = (int)shape->len;
    uint64_t nelem = 1;
    for (int i = 0; i < t->n_dims; i++) {
        int64_t d;
        if (json_int(json_at(shape, (size_t)i), 0, LFMD_MAX_DIM * (int64_t)64, &d))
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': bad shape dimension %d", path,
                                name, i);
        t->shape[i] = d;
        if (d && nelem > UINT64_MAX / (uint64_t)d)
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': shape overflows", path, name);
        nelem *= (uint64_t)d;
    }
    int64_t b, en;
    int64_t avail = (int64_t)(f->file_size - data_start);
    if (json_int(json_at(offs, 0), 0, INT64_MAX / 2, &b) || json_int(json_at(offs, 1), 0, INT64_MAX / 2, &en) ||
        b > en)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': bad data_offsets", path, name);
    if (en > avail)
        return lfmd_err_set(err, LFMD_EFORMAT,
                            "%s: tensor '%s': data_offsets end %lld is past the end of the data "
                            "section (%lld bytes; file truncated?)", path, name, (long long)en,
                            (long long)avail);
    if (nelem > UINT64_MAX / esize || (uint64_t)(en - b) != nelem * esize)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': %lld bytes in file but shape and "
                            "dtype %s need %llu", path, name, (long long)(en - b), t->dtype,
                            (unsigned long long)(nelem * esize));
    t->offset = data_start + (size_t)b;
    t->size_bytes = (size_t)(en - b);
    t->name = lfmd_strndup(name, e->key_len, LFMD_MEM_OTHER);
    if (!t->name) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
    return 0;
}

int st_open(const char *path, struct st_file **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct json_doc *doc = NULL;
    char *hdr = NULL;
    struct st_tensor **sorted = NULL;
    int rc;
    struct st_file *f = lfmd_calloc(1, sizeof *f, LFMD_MEM_OTHER);
    if (!f) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->path = lfmd_strdup(path, LFMD_MEM_OTHER);
    if (!f->path) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    f->fd = lfmd_io_open(path, O_RDONLY);
    if (f->fd < 0) {
        rc = lfmd_err_set(err, LFMD_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = lfmd_err_set(err, LFMD_EIO, "%s: not a regular file", path);
        goto fail;
    }
    f->file_size = (size_t)st.st_size;
    uint8_t lenbuf[8];
    if (f->file_size < 8 || read_full(f->fd, lenbuf, 8, 0)) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: too short for a safetensors header (%zu bytes)", path,
                          f->file_size);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lenbuf[i];
    if (n < 2 || n > LFMD_MAX_SAFETENSORS_HEADER || n > f->file_size - 8) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: header length %llu is invalid for a %zu-byte file",
                          path, (unsigned long long)n, f->file_size);
        goto fail;
    }
    hdr = lfmd_malloc(n, LFMD_MEM_OTHER);
    if (!hdr) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (read_full(f->fd, hdr, n, 8)) {
        rc = lfmd_err_set(err, LFMD_EIO, "%s: cannot read header", path);
        goto fail;
    }
    // The header may be padded with trailing spaces.
    size_t hl = n;
    while (hl > 0 && (hdr[hl - 1] == ' ' || hdr[hl - 1] == 0)) hl--;
    struct lfmd_err_ctx jerr = {0};
    if ((rc = json_parse(hdr, hl, LFMD_MEM_OTHER, &doc, &jerr))) {
        lfmd_err_set(err, rc, "%s: header: %s", path, jerr.msg);
        goto fail;
    }
    const struct json *root = json_root(doc);
    if (!json_is(root, JSON_OBJECT)) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    if (root->len > LFMD_MAX_TENSORS) {
        rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: %u tensors (limit %d)", path, root->len, LFMD_MAX_TENSORS);
        goto fail;
    }
    f->tensors = lfmd_calloc(root->len ? root->len : 1, sizeof *f->tensors, LFMD_MEM_OTHER);
    if (!f->tensors) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    size_t data_start = 8 + (size_t)n;
    for (size_t i = 0; i < root->len; i++) {
        const struct json *e = &root->u.items[i];
        if (!strcmp(e->key, "__metadata__")) continue;
        if (!json_is(e, JSON_OBJECT)) {
            rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: tensor '%s': header entry is not an object", path,
                              e->key);
            goto fail;
        }
        if ((rc = parse_entry(f, e, data_start, &f->tensors[f->n_tensors], err))) goto fail;
        f->n_tensors++;
    }
    // Reject overlapping tensors (a crafted header could alias one tensor's bytes as another).
    sorted = lfmd_malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *sorted, LFMD_MEM_OTHER);
    if (!sorted) {
        rc = lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < f->n_tensors; i++) sorted[i] = &f->tensors[i];
    qsort(sorted, f->n_tensors, sizeof *sorted, cmp_offset);
    for (size_t i = 1; i < f->n_tensors; i++) {
        if (sorted[i - 1]->offset + sorted[i - 1]->size_bytes > sorted[i]->offset) {
            rc = lfmd_err_set(err, LFMD_EFORMAT, "%s: tensors '%s' and '%s' overlap", path,
                              sorted[i - 1]->name, sorted[i]->name);
            goto fail;
        }
    }
    f->map = lfmd_io_mmap(f->fd, f->file_size);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = lfmd_err_set(err, LFMD_EIO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    lfmd_free(sorted);
    lfmd_free(hdr);
    json_doc_free(doc);
    *out = f;
    return 0;
fail:
    lfmd_free(sorted);
    lfmd_free(hdr);
    json_doc_free(doc);
    st_close(f);
    return rc;
}

void st_close(struct st_file *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->file_size);
    if (f->fd >= 0) close(f->fd);
    for (size_t i = 0; i < f->n_tensors; i++) lfmd_free(f->tensors[i].name);
    lfmd_free(f->tensors);
    lfmd_free(f->path);
    lfmd_free(f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}
