// GGUF (llama.cpp / ggml) v2/v3 little-endian files: a validating reader over a read-only mapping
// and a streaming writer.
// Reader invariants after gguf_open succeeds: every key, string, array and tensor info lies inside
// the file; array counts are bounded by the bytes left; every tensor's type is known, its ne0 is a
// multiple of the type's block size, its [offset, offset + size) lies inside the data section, is
// aligned to general.alignment, and no two tensors overlap. Tensor bytes are never read here.
// SPDX-License-Identifier: MIT
#ifndef LFMD_FORMAT_GGUF_H
#define LFMD_FORMAT_GGUF_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_KV 65536                  // metadata entries
#define GGUF_MAX_ARRAY_DEPTH 8             // nesting of arrays of arrays
#define GGUF_MAX_KEY_BYTES 65535           // one key
#define GGUF_MAX_STRING_BYTES (256u << 20) // one string value

// Metadata value types (gguf_type in ggml).
enum gguf_vtype {
    GGUF_VT_U8 = 0,
    GGUF_VT_I8 = 1,
    GGUF_VT_U16 = 2,
    GGUF_VT_I16 = 3,
    GGUF_VT_U32 = 4,
    GGUF_VT_I32 = 5,
    GGUF_VT_F32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_U64 = 10,
    GGUF_VT_I64 = 11,
    GGUF_VT_F64 = 12,
    GGUF_VT_COUNT
};

// Tensor types (ggml_type ids as stored in the file). Only these are accepted.
enum ggml_type {
    GGML_T_F32 = 0,
    GGML_T_F16 = 1,
    GGML_T_Q4_0 = 2,
    GGML_T_Q4_1 = 3,
    GGML_T_Q5_0 = 6,
    GGML_T_Q5_1 = 7,
    GGML_T_Q8_0 = 8,
    GGML_T_Q8_1 = 9,
    GGML_T_Q2_K = 10,
    GGML_T_Q3_K = 11,
    GGML_T_Q4_K = 12,
    GGML_T_Q5_K = 13,
    GGML_T_Q6_K = 14,
    GGML_T_Q8_K = 15,
    GGML_T_I8 = 24,
    GGML_T_I16 = 25,
    GGML_T_I32 = 26,
    GGML_T_I64 = 27,
    GGML_T_F64 = 28,
    GGML_T_BF16 = 30,
};

// Block size (elements) and bytes per block of a ggml type; false if the type is unknown.
bool ggml_type_info(uint32_t type, int *blck, size_t *type_size);
const char *ggml_type_name(uint32_t type);   // "q4_0", ..., "?" when unknown

struct gguf_kv {
    char *key;             // owned, NUL-terminated
    enum gguf_vtype type;
    enum gguf_vtype arr_type; // element type when type == ARRAY
    uint64_t n;            // element count when type == ARRAY (else 1)
    size_t off;            // file offset of the value (for arrays: of the first element)
    size_t size;           // bytes of the value in the file (for arrays: of all elements)
};

struct gguf_tensor {
    char *name;            // owned, NUL-terminated
    uint32_t type;         // enum ggml_type
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; // ggml order: ne[0] is the contiguous dimension; unused = 1
    size_t offset;         // absolute file offset of the data
    size_t size;           // bytes
};

struct gguf {
    char *path;
    int fd;
    const uint8_t *map;    // whole file, PROT_READ
    size_t file_size;
    uint32_t version;
    size_t alignment;
    size_t data_offset;    // absolute offset of the tensor data section
    struct gguf_kv *kv;
    size_t n_kv;
    struct gguf_tensor *tensors;
    size_t n_tensors;
};

LFMD_MUST_CHECK int gguf_open(const char *path, struct gguf **out, struct lfmd_err_ctx *err);
// As gguf_open, but always maps the file lazily (never an in-memory copy, see lfmd_io_mmap): for
// callers that read metadata only.
LFMD_MUST_CHECK int gguf_open_meta(const char *path, struct gguf **out, struct lfmd_err_ctx *err);
void gguf_close(struct gguf *g);

const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);
static inline const void *gguf_tensor_data(const struct gguf *g, const struct gguf_tensor *t) {
    return g->map + t->offset;
}

// Typed metadata access. Integer getters accept any integer or bool type whose value fits;
// float getters accept F32/F64 and integers. Return 0, LFMD_ENOENT (absent) or LFMD_EFORMAT
// (wrong type / out of range); err names the file and key.
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out, struct lfmd_err_ctx *err);
int gguf_get_f64(const struct gguf *g, const char *key, double *out, struct lfmd_err_ctx *err);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct lfmd_err_ctx *err);
// String value: borrowed pointer into the mapping (NOT NUL-terminated) and its length.
int gguf_get_str(const struct gguf *g, const char *key, const char **p, size_t *len,
                 struct lfmd_err_ctx *err);
// Copies a string value into buf (NUL-terminated); LFMD_ETOOBIG if it does not fit.
int gguf_get_str_buf(const struct gguf *g, const char *key, char *buf, size_t cap,
                     struct lfmd_err_ctx *err);
// Element i of a numeric array as int64 / double (any integer/float/bool element type).
int gguf_arr_i64(const struct gguf *g, const struct gguf_kv *kv, uint64_t i, int64_t *out);
int gguf_arr_f64(const struct gguf *g, const struct gguf_kv *kv, uint64_t i, double *out);
// An array of strings copied into one owned block: (*out)[i] is NUL-terminated (embedded NULs
// are kept, use lens when given). Free *out with lfmd_free (one allocation). *n gets the count.
int gguf_get_str_array(const struct gguf *g, const char *key, char ***out, size_t **lens,
                       size_t *n, struct lfmd_err_ctx *err);

// ---- writer: metadata first, then tensor infos, then tensor data in the same order ----
struct gguf_writer;

// Starts a GGUF v3 file on fd (not closed by the writer). path is only for messages.
LFMD_MUST_CHECK int gguf_writer_new(int fd, const char *path, struct gguf_writer **out,
                                    struct lfmd_err_ctx *err);
void gguf_writer_free(struct gguf_writer *w);
int gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_w_f32(struct gguf_writer *w, const char *key, float v);
int gguf_w_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_w_str(struct gguf_writer *w, const char *key, const char *v);
// Numeric array: elem is U8..F64 (not STRING/ARRAY); data has n elements of that type.
int gguf_w_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem, const void *data,
               size_t n);
int gguf_w_arr_str(struct gguf_writer *w, const char *key, const char *const *strs, size_t n);
// One pre-serialized KV pair (key, type, value) appended verbatim (nested arrays, tests).
int gguf_w_raw_kv(struct gguf_writer *w, const void *p, size_t n);
// Declares a tensor (ggml order ne). Its data offset follows the previous tensor, aligned.
int gguf_w_tensor(struct gguf_writer *w, const char *name, uint32_t type, int n_dims,
                  const int64_t *ne);
// Writes header, metadata and tensor infos, padded to the alignment; call once after the last
// gguf_w_tensor. Then gguf_w_data for each tensor in order (may be split over several calls).
LFMD_MUST_CHECK int gguf_w_header(struct gguf_writer *w, struct lfmd_err_ctx *err);
LFMD_MUST_CHECK int gguf_w_data(struct gguf_writer *w, const void *p, size_t n,
                                struct lfmd_err_ctx *err);
// Checks every declared byte was written and pads the last tensor.
LFMD_MUST_CHECK int gguf_w_finish(struct gguf_writer *w, struct lfmd_err_ctx *err);
// Bytes the finished file will have (valid after all gguf_w_tensor calls).
uint64_t gguf_w_total_bytes(const struct gguf_writer *w);

#endif
