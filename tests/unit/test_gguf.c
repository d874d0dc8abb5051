// GGUF reader/writer: round trip of every metadata type (nested arrays included) and tensor data,
// then malformed files (truncations, absurd counts, huge strings, bad offsets, overlaps, unknown
// types) that must fail with a clean error and no leak.
// SPDX-License-Identifier: MIT
#include "check.h"

#include "base/alloc.h"
#include "format/gguf.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/lfmd-test-gguf-XXXXXX";

// ---- a tiny byte builder for hand-made files ----
struct bb {
    uint8_t d[8192];
    size_t n;
};
static void bb_raw(struct bb *b, const void *p, size_t n) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void bb_u32(struct bb *b, uint32_t v) { bb_raw(b, &v, 4); }
static void bb_u64(struct bb *b, uint64_t v) { bb_raw(b, &v, 8); }
static void bb_str(struct bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_pad(struct bb *b, size_t a) {
    while (b->n % a) b->d[b->n++] = 0;
}
static void bb_hdr(struct bb *b, uint64_t nt, uint64_t nkv) {
    b->n = 0;
    bb_raw(b, "GGUF", 4);
    bb_u32(b, 3);
    bb_u64(b, nt);
    bb_u64(b, nkv);
}
static void bb_tensor(struct bb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                      uint64_t off) {
    bb_str(b, name);
    bb_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, off);
}

static void write_file(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

// Opens path expecting failure; checks an error message was produced and nothing leaked.
static void expect_fail(const char *path, const char *what) {
    long live = lfmd_alloc_live();
    struct gguf *g = (struct gguf *)1;
    struct lfmd_err_ctx err = {0};
    int rc = gguf_open(path, &g, &err);
    if (rc == 0) fprintf(stderr, "case '%s' unexpectedly opened\n", what);
    CHECK(rc < 0);
    CHECK(g == NULL);
    CHECK(err.msg[0] != 0);
    CHECK_EQ(lfmd_alloc_live(), live);
    if (rc == 0) gguf_close(g);
}

static void expect_bb_fail(struct bb *b, const char *what) {
    char path[128];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    write_file(path, b->d, b->n);
    expect_fail(path, what);
}

static size_t good_size;
static uint8_t *good;

static void test_roundtrip(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/good.gguf", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct gguf_writer *w;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(gguf_writer_new(fd, path, &w, &err), 0);
    CHECK_EQ(gguf_w_str(w, "general.architecture", "lfm2"), 0);
    CHECK_EQ(gguf_w_u32(w, "a.u32", 4000000000u), 0);
    CHECK_EQ(gguf_w_i32(w, "a.i32", -7), 0);
    CHECK_EQ(gguf_w_f32(w, "a.f32", 1.5f), 0);
    CHECK_EQ(gguf_w_bool(w, "a.bool", true), 0);
    int32_t arr[5] = {0, 0, 8, 0, 8};
    CHECK_EQ(gguf_w_arr(w, "a.arr", GGUF_VT_I32, arr, 5), 0);
    double f64s[2] = {0.25, -2};
    CHECK_EQ(gguf_w_arr(w, "a.f64s", GGUF_VT_F64, f64s, 2), 0);
    const char *strs[3] = {"<|pad|>", "", "\xc4\x8a"};
    CHECK_EQ(gguf_w_arr_str(w, "a.strs", strs, 3), 0);
    // nested: array of 2 arrays of u16 {1,2} and {3}; then u8, i8, i16, u64, i64, f64 scalars
    struct bb b = {.n = 0};
    bb_str(&b, "a.nested");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, GGUF_VT_U16);
    bb_u64(&b, 2);
    uint16_t u16s[3] = {1, 2, 3};
    bb_raw(&b, u16s, 4);
    bb_u32(&b, GGUF_VT_U16);
    bb_u64(&b, 1);
    bb_raw(&b, u16s + 2, 2);
    CHECK_EQ(gguf_w_raw_kv(w, b.d, b.n), 0);
    b.n = 0;
    bb_str(&b, "a.i64");
    bb_u32(&b, GGUF_VT_I64);
    bb_u64(&b, (uint64_t)-5);
    CHECK_EQ(gguf_w_raw_kv(w, b.d, b.n), 0);
    b.n = 0;
    bb_str(&b, "a.f64");
    bb_u32(&b, GGUF_VT_F64);
    double d = 1e6;
    bb_raw(&b, &d, 8);
    CHECK_EQ(gguf_w_raw_kv(w, b.d, b.n), 0);
    b.n = 0;
    bb_str(&b, "a.u8");
    bb_u32(&b, GGUF_VT_U8);
    uint8_t u8 = 200;
    bb_raw(&b, &u8, 1);
    CHECK_EQ(gguf_w_raw_kv(w, b.d, b.n), 0);
    int64_t ne0[2] = {4, 3}, ne1[2] = {32, 2}, ne2[1] = {5};
    CHECK_EQ(gguf_w_tensor(w, "t.f32", GGML_T_F32, 2, ne0), 0);
    CHECK_EQ(gguf_w_tensor(w, "t.q8", GGML_T_Q8_0, 2, ne1), 0);
    CHECK_EQ(gguf_w_tensor(w, "t.f16", GGML_T_F16, 1, ne2), 0);
    int64_t bad[1] = {33};
    CHECK(gguf_w_tensor(w, "t.bad", GGML_T_Q8_0, 1, bad) < 0); // not a block multiple
    gguf_writer_free(w);
    // again without the bad tensor
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK(ftruncate(fd, 0) == 0);
    CHECK_EQ(gguf_writer_new(fd, path, &w, &err), 0);
    CHECK_EQ(gguf_w_str(w, "general.architecture", "lfm2"), 0);
    CHECK_EQ(gguf_w_u32(w, "a.u32", 4000000000u), 0);
    CHECK_EQ(gguf_w_i32(w, "a.i32", -7), 0);
    CHECK_EQ(gguf_w_f32(w, "a.f32", 1.5f), 0);
    CHECK_EQ(gguf_w_bool(w, "a.bool", true), 0);
    CHECK_EQ(gguf_w_arr(w, "a.arr", GGUF_VT_I32, arr, 5), 0);
    CHECK_EQ(gguf_w_arr(w, "a.f64s", GGUF_VT_F64, f64s, 2), 0);
    CHECK_EQ(gguf_w_arr_str(w, "a.strs", strs, 3), 0);
    CHECK_EQ(gguf_w_tensor(w, "t.f32", GGML_T_F32, 2, ne0), 0);
    CHECK_EQ(gguf_w_tensor(w, "t.q8", GGML_T_Q8_0, 2, ne1), 0);
    CHECK_EQ(gguf_w_tensor(w, "t.f16", GGML_T_F16, 1, ne2), 0);
    CHECK_EQ(gguf_w_header(w, &err), 0);
    float f[12];
    for (int i = 0; i < 12; i++) f[i] = (float)i;
    uint8_t q8[68];
    for (int i = 0; i < 68; i++) q8[i] = (uint8_t)i;
    uint16_t h[5] = {1, 2, 3, 4, 5};
    CHECK_EQ(gguf_w_data(w, f, 20, &err), 0); // split writes
    CHECK_EQ(gguf_w_data(w, (uint8_t *)f + 20, 28, &err), 0);
    CHECK(gguf_w_finish(w, &err) < 0); // not all written yet
    err = (struct lfmd_err_ctx){0};
    CHECK_EQ(gguf_w_data(w, q8, 68, &err), 0);
    CHECK_EQ(gguf_w_data(w, h, 10, &err), 0);
    CHECK_EQ(gguf_w_finish(w, &err), 0);
    uint64_t total = gguf_w_total_bytes(w);
    gguf_writer_free(w);
    close(fd);

    struct gguf *g;
    CHECK_EQ(gguf_open(path, &g, &err), 0);
    if (!g) return;
    CHECK_EQ(g->file_size, total);
    CHECK_EQ(g->version, 3);
    CHECK_EQ(g->n_kv, 8);
    CHECK_EQ(g->n_tensors, 3);
    char s[32];
    CHECK_EQ(gguf_get_str_buf(g, "general.architecture", s, sizeof s, &err), 0);
    CHECK_STR(s, "lfm2");
    int64_t v;
    double dv;
    bool bv;
    CHECK_EQ(gguf_get_i64(g, "a.u32", &v, &err), 0);
    CHECK_EQ(v, 4000000000LL);
    CHECK_EQ(gguf_get_i64(g, "a.i32", &v, &err), 0);
    CHECK_EQ(v, -7);
    CHECK_EQ(gguf_get_f64(g, "a.f32", &dv, &err), 0);
    CHECK_NEAR(dv, 1.5, 0);
    CHECK_EQ(gguf_get_bool(g, "a.bool", &bv, &err), 0);
    CHECK(bv);
    struct lfmd_err_ctx e2 = {0};
    CHECK_EQ(gguf_get_i64(g, "a.f32", &v, &e2), LFMD_EFORMAT);
    CHECK(strstr(e2.msg, "a.f32") != NULL);
    e2 = (struct lfmd_err_ctx){0};
    CHECK_EQ(gguf_get_i64(g, "nope", &v, &e2), LFMD_ENOENT);
    const struct gguf_kv *kv = gguf_find_kv(g, "a.arr");
    CHECK(kv && kv->n == 5 && kv->arr_type == GGUF_VT_I32);
    CHECK_EQ(gguf_arr_i64(g, kv, 2, &v), 0);
    CHECK_EQ(v, 8);
    CHECK(gguf_arr_i64(g, kv, 5, &v) != 0);
    kv = gguf_find_kv(g, "a.f64s");
    CHECK_EQ(gguf_arr_f64(g, kv, 1, &dv), 0);
    CHECK_NEAR(dv, -2, 0);
    char **sa;
    size_t *lens, n;
    CHECK_EQ(gguf_get_str_array(g, "a.strs", &sa, &lens, &n, &err), 0);
    CHECK_EQ(n, 3);
    CHECK_STR(sa[0], "<|pad|>");
    CHECK_STR(sa[1], "");
    CHECK_STR(sa[2], "\xc4\x8a");
    CHECK_EQ(lens[2], 2);
    lfmd_free(sa);
    const struct gguf_tensor *t = gguf_find_tensor(g, "t.q8");
    CHECK(t && t->type == GGML_T_Q8_0 && t->ne[0] == 32 && t->ne[1] == 2 && t->size == 68);
    CHECK(t && t->offset % 32 == 0 && memcmp(gguf_tensor_data(g, t), q8, 68) == 0);
    t = gguf_find_tensor(g, "t.f32");
    CHECK(t && memcmp(gguf_tensor_data(g, t), f, 48) == 0 && t->offset == g->data_offset);
    t = gguf_find_tensor(g, "t.f16");
    CHECK(t && t->n_dims == 1 && memcmp(gguf_tensor_data(g, t), h, 10) == 0);
    gguf_close(g);
    // keep the bytes for the truncation test
    FILE *fp = fopen(path, "rb");
    good = malloc((size_t)total);
    good_size = fread(good, 1, (size_t)total, fp);
    fclose(fp);
}

// A hand-built file with nested arrays and every scalar type is accepted.
static void test_nested(void) {
    struct bb b;
    bb_hdr(&b, 0, 2);
    bb_str(&b, "n");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, 1);
    bb_str(&b, "x");
    bb_u32(&b, GGUF_VT_I16);
    bb_u64(&b, 1);
    bb_raw(&b, "\x01\x00", 2);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_VT_U32);
    bb_u32(&b, 64);
    char path[128];
    snprintf(path, sizeof path, "%s/nested.gguf", dir);
    write_file(path, b.d, b.n);
    struct gguf *g;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(gguf_open(path, &g, &err), 0);
    if (g) {
        CHECK_EQ(g->alignment, 64);
        const struct gguf_kv *kv = gguf_find_kv(g, "n");
        CHECK(kv && kv->type == GGUF_VT_ARRAY && kv->arr_type == GGUF_VT_ARRAY && kv->n == 2);
        int64_t v;
        CHECK(gguf_arr_i64(g, kv, 0, &v) != 0); // not a numeric array
        gguf_close(g);
    }
}

static void test_malformed(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/trunc.gguf", dir);
    // every truncation point up to the end of the last tensor's data
    size_t data_end = good_size - 22; // the last tensor (10 bytes) is followed by 22 bytes of padding
    int failures_ok = 0, n = 0;
    for (size_t cut = 0; cut < data_end; cut += (cut < 400 ? 1 : 7)) {
        write_file(path, good, cut);
        long live = lfmd_alloc_live();
        struct gguf *g = NULL;
        struct lfmd_err_ctx err = {0};
        int rc = gguf_open(path, &g, &err);
        n++;
        failures_ok += rc < 0 && g == NULL && err.msg[0] && lfmd_alloc_live() == live;
        if (rc == 0) {
            fprintf(stderr, "truncation at %zu of %zu opened\n", cut, good_size);
            gguf_close(g);
        }
    }
    CHECK_EQ(failures_ok, n);
    write_file(path, good, good_size);
    struct gguf *g;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(gguf_open(path, &g, &err), 0);
    gguf_close(g);

    struct bb b;
    uint64_t ne[2] = {4, 2};
    bb_hdr(&b, 0, 0);
    b.d[0] = 'X';
    expect_bb_fail(&b, "bad magic");
    bb_hdr(&b, 0, 0);
    b.d[4] = 1;
    expect_bb_fail(&b, "version 1");
    bb_hdr(&b, (uint64_t)1 << 60, 0);
    expect_bb_fail(&b, "absurd tensor count");
    bb_hdr(&b, 0, (uint64_t)1 << 40);
    expect_bb_fail(&b, "absurd kv count");
    bb_hdr(&b, 0, 1000);
    expect_bb_fail(&b, "kv count larger than the file");
    bb_hdr(&b, 0, 1);
    bb_u64(&b, (uint64_t)1 << 62);
    expect_bb_fail(&b, "huge key length");
    bb_hdr(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, 100000);
    bb_raw(&b, "abc", 3);
    expect_bb_fail(&b, "string past the end");
    bb_hdr(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u32(&b, 0);
    expect_bb_fail(&b, "unknown value type");
    bb_hdr(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, 99);
    bb_u64(&b, 1);
    bb_u32(&b, 0);
    expect_bb_fail(&b, "unknown array element type");
    bb_hdr(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_ARRAY);
    bb_u32(&b, GGUF_VT_U32);
    bb_u64(&b, (uint64_t)1 << 61);
    expect_bb_fail(&b, "absurd array count");
    bb_hdr(&b, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_ARRAY);
    for (int i = 0; i < 40; i++) { // arrays nested 40 deep
        bb_u32(&b, GGUF_VT_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_VT_U8);
    bb_u64(&b, 1);
    bb_raw(&b, "\x01", 1);
    expect_bb_fail(&b, "deep nesting");
    bb_hdr(&b, 0, 2);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_U8);
    bb_raw(&b, "\x01", 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_VT_U8);
    bb_raw(&b, "\x01", 1);
    expect_bb_fail(&b, "duplicate key");
    bb_hdr(&b, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, GGUF_VT_U32);
    bb_u32(&b, 48);
    expect_bb_fail(&b, "alignment not a power of two");

    // tensors: a valid base, then one mutation each
#define TENSOR_CASE(what, nd, nev, type, off, extra_tensor)                           \
    do {                                                                                \
        bb_hdr(&b, (extra_tensor) ? 2 : 1, 0);                                          \
        bb_tensor(&b, "w", nd, nev, type, off);                                         \
        if (extra_tensor) bb_tensor(&b, "v", 2, ne, GGML_T_F32, 0);                     \
        bb_pad(&b, 32);                                                                 \
        memset(b.d + b.n, 0, 64);                                                       \
        b.n += 64;                                                                      \
        expect_bb_fail(&b, what);                                                       \
    } while (0)
    uint64_t zero[2] = {0, 2}, big[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40}, odd[2] = {33, 1};
    TENSOR_CASE("offset past the end", 2, ne, GGML_T_F32, 64, false);
    TENSOR_CASE("size past the end", 2, big, GGML_T_F32, 0, false);
    TENSOR_CASE("zero dim", 2, zero, GGML_T_F32, 0, false);
    TENSOR_CASE("five dims", 5, ne, GGML_T_F32, 0, false);
    TENSOR_CASE("unknown ggml type", 2, ne, 4, 0, false);
    TENSOR_CASE("unknown ggml type 99", 2, ne, 99, 0, false);
    TENSOR_CASE("not a block multiple", 2, odd, GGML_T_Q8_0, 0, false);
    TENSOR_CASE("misaligned offset", 2, ne, GGML_T_F32, 4, false);
    TENSOR_CASE("overlapping tensors", 2, ne, GGML_T_F32, 0, true);
    // and the base itself (one tensor of 32 bytes at 0) opens
    bb_hdr(&b, 1, 0);
    bb_tensor(&b, "w", 2, ne, GGML_T_F32, 0);
    bb_pad(&b, 32);
    memset(b.d + b.n, 0, 32);
    b.n += 32;
    snprintf(path, sizeof path, "%s/ok.gguf", dir);
    write_file(path, b.d, b.n);
    CHECK_EQ(gguf_open(path, &g, &err), 0);
    gguf_close(g);
    expect_fail("/nonexistent/x.gguf", "missing file");
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_roundtrip();
    test_nested();
    if (good) test_malformed();
    free(good);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_done();
}
