// Run-time kernel selection: the one place that chooses among the _ref / _avx2 / _neon variants.
// The choice is made once (CPU feature check, LFMD_KERNELS=ref forces scalar) and can be
// overridden by kern_force_ref() for tests.
// SPDX-License-Identifier: MIT
#include "kern_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <string.h>

enum kern_isa_level { ISA_UNKNOWN, ISA_SCALAR, ISA_AVX2 };

static _Atomic int g_isa = ISA_UNKNOWN;
static _Atomic bool g_force_ref;

static int detect_isa(void) {
    int isa = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (isa != ISA_UNKNOWN) return isa;
    isa = ISA_SCALAR;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#if defined(__clang__) && __clang_major__ < 16
    // clang < 16 does not know "f16c" here; every AVX2+FMA x86 CPU has F16C.
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = ISA_AVX2;
#else
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        isa = ISA_AVX2;
#endif
#endif
    const char *env = getenv("LFMD_KERNELS");
    if (env && (strcmp(env, "ref") == 0 || strcmp(env, "scalar") == 0)) isa = ISA_SCALAR;
    atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    return isa;
}

// AVX-512 prefill tiles on top of the AVX2 level (LFMD_KERNELS=avx2 turns them off).
static _Atomic int g_avx512 = -1;
static bool use_avx512(void) {
    int v = atomic_load_explicit(&g_avx512, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LFMD_KERNELS");
        v = kern_avx512_usable() && !(env && strcmp(env, "avx2") == 0);
        atomic_store_explicit(&g_avx512, v, memory_order_relaxed);
    }
    return v;
}

static _Atomic int g_vnni = -1;
static bool use_vnni(void) {
    int v = atomic_load_explicit(&g_vnni, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LFMD_KERNELS");
        v = 0;
#if defined(__x86_64__) && defined(__GNUC__)
        // CPUID.(EAX=7,ECX=1):EAX[4] = AVX-VNNI (clang < 16 has no "avxvnni" builtin name).
        unsigned a = 0, bx = 0, c = 0, d = 0;
        v = __get_cpuid_count(7, 1, &a, &bx, &c, &d) && ((a >> 4) & 1) && !(env && strcmp(env, "avx2") == 0);
#endif
        atomic_store_explicit(&g_vnni, v, memory_order_relaxed);
    }
    return v;
}

// AVX-512 decode kernels (LFMD_KERNELS=avx2 or LFMD_MATVEC512=0 turns them off).
static _Atomic int g_mv512 = -1;
static bool use_mv512(void) {
    int v = atomic_load_explicit(&g_mv512, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LFMD_MATVEC512");
        v = use_avx512() && kern_matvec_avx512_usable() && !(env && strcmp(env, "0") == 0);
        atomic_store_explicit(&g_mv512, v, memory_order_relaxed);
    }
    return v;
}

// AMX tiles for prefill (LFMD_KERNELS=avx2 or avx512 turns them off).
static _Atomic int g_amx = -1;
static bool use_amx(void) {
    int v = atomic_load_explicit(&g_amx, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LFMD_KERNELS");
        v = !(env && (strcmp(env, "avx2") == 0 || strcmp(env, "avx512") == 0)) && use_avx512() &&
            kern_amx_usable();
        atomic_store_explicit(&g_amx, v, memory_order_relaxed);
    }
    return v;
}

static int active_isa(void) {
    if (atomic_load_explicit(&g_force_ref, memory_order_relaxed)) return ISA_SCALAR;
    return detect_isa();
}

const char *kern_isa(void) {
    if (active_isa() == ISA_AVX2)
        return use_amx() ? "avx2+avx512+amx" : use_avx512() ? "avx2+avx512" : "avx2";
    return "scalar";
}

void kern_force_ref(bool on) {
    atomic_store_explicit(&g_force_ref, on, memory_order_relaxed);
}

static bool uses_qx(enum lfmd_dtype wt) {
    return (unsigned)wt < LFMD_DTYPE_COUNT && kern_traits[wt].quantized;
}

size_t kern_input_bytes(enum lfmd_dtype wt, int n_tok, int64_t n_in) {
    size_t amx = detect_isa() == ISA_AVX2 && use_amx() ? kern_amx_input_bytes(wt, n_tok, n_in) : 0;
    if (!uses_qx(wt) || n_tok <= 0) return amx;
    return (size_t)n_tok * (size_t)(n_in / QKX) * sizeof(struct block_qx);
}

void kern_prepare_input(enum lfmd_dtype wt, const float *X, int64_t n_in, int n_tok, int t0,
                        int t1, void *qx) {
    if ((wt == LFMD_DTYPE_BF16 || wt == LFMD_DTYPE_F16) && qx && n_in % 32 == 0 &&
        active_isa() == ISA_AVX2 && use_amx()) {
        kern_prepare_amx_bf16(wt, X, n_in, n_tok, t0, t1, qx);
        return;
    }
    if (!uses_qx(wt) || !qx) return;
    if (active_isa() == ISA_AVX2) {
        kern_quantize_x_avx2(X, n_in, t0, t1, qx);
        return;
    }
    struct block_qx *q = qx;
    int64_t nb = n_in / QKX;
    for (int t = t0; t < t1; t++)
        kern_quantize_x_ref(X + (int64_t)t * n_in, n_in, q + (int64_t)t * nb);
}

// Few tokens (from KERN_QUANT_PANEL_MIN_TOK to 12 for quantized weights, 8 for float ones) on
// weights the decode kernel takes and AMX does not: the decode kernel over blocks of rows, three
// tokens per call. The block's weights come from memory once (from L2 for the later token
// groups), and every token's result is bit-identical to its decode alone. Measured (350M FFN
// shapes, 2 threads, GB/s of weights, f32 panels -> this): 4 tokens Q4_0 3.7 -> 10.1, Q8_0 6.5
// -> 11.5, MLX Q4 3.4 -> 8.8, F16 13.8 -> 14.9; 8 tokens Q4_0 3.5 -> 5.2, Q8_0 5.2 -> 6.3, MLX Q4
// 2.8 -> 4.7, F16 9.7 -> 9.6; 15 tokens Q8_0 3.9 -> 3.3 and F16 6.4 -> 5.6 (hence the limits).
#ifndef KERN_MV_TOKENS_MAX
#define KERN_MV_TOKENS_MAX 12
#endif
#define KERN_MV_FLOAT_TOKENS_MAX 8
#define KERN_MV_BLOCK_ROWS 64
static bool mv_tokens(const struct tensor *W, int n_tok) {
    int max = uses_qx(W->dtype) ? KERN_MV_TOKENS_MAX : KERN_MV_FLOAT_TOKENS_MAX;
    return n_tok >= KERN_QUANT_PANEL_MIN_TOK && n_tok <= max && use_mv512() &&
           kern_matvec_avx512_supports(W, KERN_QUANT_PANEL_MIN_TOK - 1) &&
           !(use_amx() && kern_amx_supports(W, n_tok));
}

static void matvec_tokens(const struct tensor *W, const float *X, const void *qx, int n_tok,
                          float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    const int64_t n_in = tensor_cols(W);
    const size_t qrow = (size_t)(n_in / QKX) * sizeof(struct block_qx);
    if (qx && kern_matvec_avx512_multi_supports(W, n_tok)) { // one pass over the weights
        kern_matvec_avx512_multi(W, qx, n_tok, Y, ldy, r0, r1);
        return;
    }
    const int step = KERN_QUANT_PANEL_MIN_TOK - 1;
    for (int64_t r = r0; r < r1; r += KERN_MV_BLOCK_ROWS) {
        int64_t re = r + KERN_MV_BLOCK_ROWS < r1 ? r + KERN_MV_BLOCK_ROWS : r1;
        for (int t = 0; t < n_tok; t += step) {
            int nt = n_tok - t < step ? n_tok - t : step;
            kern_matvec_avx512(W, X + (int64_t)t * n_in,
                               qx ? (const uint8_t *)qx + (size_t)t * qrow : NULL, nt,
                               Y + (int64_t)t * ldy, ldy, r, re);
        }
    }
}

bool kern_matmul_uses_qx(const struct tensor *W, int n_tok) {
    if (active_isa() != ISA_AVX2) return false;
    if (use_amx() && kern_amx_supports(W, n_tok)) return true;
    if (uses_qx(W->dtype) && mv_tokens(W, n_tok)) return true;
    return n_tok < KERN_QUANT_PANEL_MIN_TOK && kern_quant_avx2_supports(W);
}

// ---- x16 layouts (kern_repack) ----

// LFMD_REPACK=0 keeps every tensor in the file's layout (A/B measurements).
static _Atomic int g_repack = -1;
static bool use_repack(void) {
    int v = atomic_load_explicit(&g_repack, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LFMD_REPACK");
        v = !(env && strcmp(env, "0") == 0);
        atomic_store_explicit(&g_repack, v, memory_order_relaxed);
    }
    return v;
}

bool kern_repack_supported(const struct tensor *W) {
    int64_t n_in = tensor_cols(W);
    return use_repack() && (W->dtype == LFMD_DTYPE_Q4_0 || W->dtype == LFMD_DTYPE_Q8_0) &&
           W->n_dims == 2 &&
           tensor_rows(W) % 16 == 0 && n_in % 64 == 0 && n_in <= 16384 &&
           active_isa() == ISA_AVX2 && use_mv512();
}

// Scratch of the fallback: up to 64 plain rows (16 at n_in 16384: 147 / 279 KiB for Q4_0 /
// Q8_0), on the stack.
#define X16_SCRATCH (280 * 1024)

// A repacked matrix on any path but the x16 decode kernel: its 16-row groups are unpacked into
// plain rows on the stack, and the plain path runs on that view (same results as on the
// original bytes).
static void x16_fallback(const struct tensor *W, const float *X, const void *qx, int n_tok,
                         float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    _Alignas(64) uint8_t buf[X16_SCRATCH];
    const size_t rb = kern_row_bytes(W->dtype, tensor_cols(W));
    int64_t step = (int64_t)(X16_SCRATCH / rb) & ~(int64_t)15;
    if (step > 64) step = 64;
    for (int64_t g0 = r0 & ~(int64_t)15; g0 < r1; g0 += step) {
        int64_t g1 = g0 + step < tensor_rows(W) ? g0 + step : tensor_rows(W);
        for (int64_t g = g0; g < g1; g += 16)
            kern_x16_unpack_group_fast(W, g / 16, buf + rb * (size_t)(g - g0));
        struct tensor v = *W;
        v.layout = KERN_LAYOUT_PLAIN;
        v.data = buf;
        v.shape[0] = g1 - g0;
        v.size_bytes = rb * (size_t)(g1 - g0);
        int64_t a = r0 > g0 ? r0 : g0, b = r1 < g1 ? r1 : g1;
        kern_matmul(&v, X, qx, n_tok, Y + g0, ldy, a - g0, b - g0);
    }
}

static void x16_matmul(const struct tensor *W, const float *X, const void *qx, int n_tok,
                       float *Y, int64_t ldy, int64_t r0, int64_t r1) {
    if (qx && active_isa() == ISA_AVX2 && use_mv512() && n_tok <= KERN_MV_TOKENS_MAX &&
        !(use_amx() && kern_amx_supports(W, n_tok)) && r0 % 16 == 0 &&
        (r1 % 16 == 0 || r1 == tensor_rows(W))) {
        // qx holds block_qx rows here (kern_prepare_input for Q4_0 / Q8_0 below the AMX range)
        const size_t qrow = (size_t)(tensor_cols(W) / QKX) * sizeof(struct block_qx);
        for (int t = 0; t < n_tok; t += KERN_X16_MAX_TOK)
            kern_matvec_x16(W, (const uint8_t *)qx + (size_t)t * qrow,
                            n_tok - t < KERN_X16_MAX_TOK ? n_tok - t : KERN_X16_MAX_TOK,
                            Y + (int64_t)t * ldy, ldy, r0, r1);
        return;
    }
    x16_fallback(W, X, qx, n_tok, Y, ldy, r0, r1);
}

void kern_matmul(const struct tensor *W, const float *X, const void *qx, int n_tok, float *Y,
                 int64_t ldy, int64_t r0, int64_t r1) {
    if (r1 <= r0 || n_tok <= 0) return;
    if (W->layout != KERN_LAYOUT_PLAIN) {
        x16_matmul(W, X, qx, n_tok, Y, ldy, r0, r1);
        return;
    }
    if (active_isa() == ISA_AVX2) {
        if (qx && use_amx() && kern_amx_supports(W, n_tok)) {
            kern_matmul_amx(W, X, qx, n_tok, Y, ldy, r0, r1);
            return;
        }
        if (mv_tokens(W, n_tok) && (qx || !uses_qx(W->dtype))) {
            matvec_tokens(W, X, qx, n_tok, Y, ldy, r0, r1);
            return;
        }
        if (n_tok >= KERN_QUANT_PANEL_MIN_TOK && use_avx512()) {
            kern_matmul_tiled_avx512(W, X, n_tok, Y, ldy, r0, r1);
            return;
        }
        if (n_tok < KERN_QUANT_PANEL_MIN_TOK && use_mv512() &&
            kern_matvec_avx512_supports(W, n_tok) && (qx || !uses_qx(W->dtype))) {
            kern_matvec_avx512(W, X, qx, n_tok, Y, ldy, r0, r1);
            return;
        }
        switch (W->dtype) {
        case LFMD_DTYPE_F32:
        case LFMD_DTYPE_F16:
        case LFMD_DTYPE_BF16:
            kern_matmul_float_avx2(W, X, qx, n_tok, Y, ldy, r0, r1);
            return;
        default:
            if (qx && kern_matmul_uses_qx(W, n_tok)) {
                if (use_vnni() && (W->dtype == LFMD_DTYPE_Q4_0 || W->dtype == LFMD_DTYPE_Q8_0))
                    kern_matmul_quant_vnni(W, X, qx, n_tok, Y, ldy, r0, r1);
                else
                    kern_matmul_quant_avx2(W, X, qx, n_tok, Y, ldy, r0, r1);
            }
            else
                kern_matmul_panel_avx2(W, X, n_tok, Y, ldy, r0, r1);
            return;
        }
    }
    kern_matmul_ref(W, X, n_tok, Y, ldy, r0, r1);
}

void kern_get_row(const struct tensor *W, int64_t r, float *out) {
    if (W->layout != KERN_LAYOUT_PLAIN) {
        _Alignas(64) uint8_t row[16384 / QK8_0 * sizeof(struct block_q8_0)];
        kern_x16_unpack_row(W, r, row);
        struct tensor v = *W;
        v.layout = KERN_LAYOUT_PLAIN;
        v.data = row;
        v.shape[0] = 1;
        v.size_bytes = kern_row_bytes(W->dtype, tensor_cols(W));
        kern_get_row_ref(&v, 0, out);
        return;
    }
    kern_get_row_ref(W, r, out);
}

void kern_attention(enum lfmd_dtype kvt, const float *q, int64_t ldq, int n_q, const void *K,
                    const void *V, size_t stride, int n_pos, int hd, float scale, float *out,
                    int64_t ldo) {
    if (active_isa() == ISA_AVX2)
        kern_attention_avx2(kvt, q, ldq, n_q, K, V, stride, n_pos, hd, scale, out, ldo);
    else
        kern_attention_ref(kvt, q, ldq, n_q, K, V, stride, n_pos, hd, scale, out, ldo);
}

void kern_rmsnorm(const float *x, const float *w, int n, float eps, float *out) {
    if (active_isa() == ISA_AVX2) kern_rmsnorm_avx2(x, w, n, eps, out);
    else kern_rmsnorm_ref(x, w, n, eps, out);
}

void kern_swiglu(float *g, const float *u, size_t n) {
    if (active_isa() == ISA_AVX2) kern_swiglu_avx2(g, u, n);
    else kern_swiglu_ref(g, u, n);
}
