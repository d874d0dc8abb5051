// safetensors reader: parses and validates the JSON header (read with pread, never through the
// mapping), then maps the whole file read-only. Tensor bytes are not touched here.
// Invariant after st_open succeeds: every tensor's [offset, offset+size) lies inside the file,
// size == product(shape) * dtype size, and no two tensors overlap.
// SPDX-License-Identifier: MIT
#ifndef LFMD_FORMAT_SAFETENSORS_H
#define LFMD_FORMAT_SAFETENSORS_H

#include "base/err.h"

#include <stddef.h>
#include <stdint.h>

struct st_tensor {
    char *name;        // owned by the st_file
    char dtype[8];     // "BF16", "F16", "F32", "U32", "I8", ...
    int n_dims;
    int64_t shape[4];
    size_t offset;     // absolute byte offset in the file
    size_t size_bytes;
};

struct st_file {
    char *path;
    int fd;
    const uint8_t *map;  // whole file, PROT_READ
    size_t file_size;
    struct st_tensor *tensors;
    size_t n_tensors;
};

LFMD_MUST_CHECK int st_open(const char *path, struct st_file **out, struct lfmd_err_ctx *err);
void st_close(struct st_file *f);
const struct st_tensor *st_find(const struct st_file *f, const char *name);
static inline const void *st_data(const struct st_file *f, const struct st_tensor *t) {
    return f->map + t->offset;
}
// Element size in bytes of a safetensors dtype string, 0 if unknown.
size_t st_dtype_size(const char *dtype);

#endif
