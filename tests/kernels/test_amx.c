// AMX prefill kernels (src/kernels/cpu/matmul_amx.c) against the scalar reference over random
// shapes: odd n_out (AVX-512 row tails), n_tok 4..64 (BF16 few-token orientation) and 16..200
// (partial token tiles), n_in past the
// n_in chunks, row ranges split like the runner does. BF16/F16 must match the exact product
// to f32 rounding (2e-6 of sum|w*x|: 3-part bf16 activations); Q8_0/Q4_0 must match the
// reference product on the int8-quantized activations to f32 rounding. Skipped when the CPU or
// OS has no AMX.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "kernels/kern_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_rng.h"

// Returns the number of bad elements.
// MLX types: gs and sdt give the group size and the scale/bias dtype.
static int check_case_g(enum lfmd_dtype dt, int gs, enum lfmd_dtype sdt, int64_t n_out,
                        int64_t n_in, int n_tok) {
    bool mlx = dt == LFMD_DTYPE_MLX_Q4 || dt == LFMD_DTYPE_MLX_Q8;
    int bits = dt == LFMD_DTYPE_MLX_Q4 ? 4 : 8;
    size_t rb = mlx ? (size_t)n_in * (size_t)bits / 8 : kern_row_bytes(dt, n_in);
    size_t ssz = sdt == LFMD_DTYPE_F32 ? 4 : 2, ng = mlx ? (size_t)(n_in / gs) : 0;
    uint8_t *w = malloc(rb * (size_t)n_out);
    uint8_t *sc = mlx ? malloc(ng * ssz * (size_t)n_out) : NULL;
    uint8_t *bi = mlx ? malloc(ng * ssz * (size_t)n_out) : NULL;
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t r = 0; r < n_out; r++) {
        float scale = 0.02f + 0.2f * (float)(rnd() % 100) / 100.0f;
        for (int64_t i = 0; i < n_in; i++) row[i] = frand() * scale;
        if (mlx)
            CHECK(quantize_mlx_ref(row, n_in, bits, gs, sdt, (uint32_t *)(w + rb * (size_t)r),
                                   sc + ng * ssz * (size_t)r, bi + ng * ssz * (size_t)r) == 0);
        else
            CHECK(quantize_row_ref(dt, row, w + rb * (size_t)r, n_in) == 0);
    }
    struct tensor W = {.name = "w", .dtype = dt, .n_dims = 2, .shape = {n_out, n_in}, .data = w,
                       .size_bytes = rb * (size_t)n_out, .scales = sc, .biases = bi,
                       .scale_dtype = sdt, .group_size = gs, .bits = mlx ? bits : 0};
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand() * (i % 17 == 0 ? 4.0f : 1.0f);
    size_t qb = kern_input_bytes(dt, n_tok, n_in);
    CHECK(qb > 0);
    CHECK(kern_matmul_uses_qx(&W, n_tok));
    // 16 bytes past a 64-byte boundary: the scratch of the runner is only 16-byte aligned
    uint8_t *qx_raw = aligned_alloc(64, qb + 64 + 64 - (qb + 64) % 64);
    void *qx = qx_raw + 16;
    // prepare in two token ranges (callers may split tokens across threads), or in one call as
    // the runner does (even n_tok)
    if (n_tok % 2) {
        kern_prepare_input(dt, x, n_in, n_tok, 0, n_tok / 3, qx);
        kern_prepare_input(dt, x, n_in, n_tok, n_tok / 3, n_tok, qx);
    } else {
        kern_prepare_input(dt, x, n_in, n_tok, 0, n_tok, qx);
    }
    int64_t ldy = n_out + 3;
    float *y = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    float *yr = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    for (int64_t i = 0; i < n_tok * ldy; i++) y[i] = yr[i] = NAN;
    // rows split at a multiple of 16 (as the runner does) and at an odd row
    int64_t s1 = (n_out / 2) & ~(int64_t)15, s2 = s1 + (n_out - s1) / 2 + 1;
    if (s2 > n_out) s2 = n_out;
    kern_matmul(&W, x, qx, n_tok, y, ldy, 0, s1);
    kern_matmul(&W, x, qx, n_tok, y, ldy, s1, s2);
    kern_matmul(&W, x, qx, n_tok, y, ldy, s2, n_out);
    bool q = dt == LFMD_DTYPE_Q8_0 || dt == LFMD_DTYPE_Q4_0 || mlx;
    float *xq = x;
    if (q) { // reference on the int8 activations the integer path multiplies
        int64_t nb = n_in / QKX;
        struct block_qx *bq = malloc(sizeof *bq * (size_t)(n_tok * nb));
        xq = malloc(sizeof(float) * (size_t)(n_tok * n_in));
        for (int t = 0; t < n_tok; t++) kern_quantize_x_ref(x + t * n_in, n_in, bq + t * nb);
        for (int64_t i = 0; i < n_tok * nb; i++)
            for (int j = 0; j < QKX; j++) xq[i * QKX + j] = bq[i].d * (float)bq[i].qs[j];
        free(bq);
    }
    kern_matmul_ref(&W, xq, n_tok, yr, ldy, 0, n_out);
    // Rows past the last multiple of 16 of each call go to the AVX-512 kernel (BF16/F16) or
    // the integer decode kernel (Q8_0/Q4_0, same int8 activations): the same references.
    float *ye = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    kern_matmul_ref(&W, x, n_tok, ye, ldy, 0, n_out);
    bool *tail = calloc((size_t)n_out, 1);
    const int64_t cuts[4] = {0, s1, s2, n_out};
    for (int k = 0; k < 3; k++)
        for (int64_t r = cuts[k] + (cuts[k + 1] - cuts[k]) / 16 * 16; r < cuts[k + 1]; r++)
            tail[r] = true;
    float *wr = malloc(sizeof(float) * (size_t)n_in);
    int bad = 0;
    double e2 = 0, r2 = 0;
    for (int64_t r = 0; r < n_out; r++) {
        kern_get_row(&W, r, wr);
        for (int t = 0; t < n_tok; t++) {
            double mag = 0;
            const float *xs = xq;
            for (int64_t c = 0; c < n_in; c++) mag += fabs((double)wr[c] * xs[t * n_in + c]);
            double got = y[t * ldy + r], ref = tail[r] ? ye[t * ldy + r] : yr[t * ldy + r];
            if (q) ref = yr[t * ldy + r];
            double tol = 2e-6 * mag + 1e-6;
            if (!(fabs(got - ref) <= tol)) {
                if (bad < 3)
                    fprintf(stderr, "  %s r %lld t %d: got %.7g ref %.7g (mag %.3g)\n",
                            lfmd_dtype_name(dt), (long long)r, t, got, ref, mag);
                bad++;
            }
            e2 += (got - ref) * (got - ref);
            r2 += ref * ref;
        }
    }
    // the padding columns of Y are untouched
    for (int t = 0; t < n_tok; t++)
        for (int64_t c = n_out; c < ldy; c++)
            if (!isnan(y[t * ldy + c])) bad++;
    fprintf(stderr, "%-6s g%-3d %4lldx%-5lld tok %3d: rel L2 %.2e%s\n", lfmd_dtype_name(dt), gs,
            (long long)n_out, (long long)n_in, n_tok, sqrt(e2 / (r2 + 1e-300)), bad ? " BAD" : "");
    if (q) free(xq);
    free(sc), free(bi);
    free(ye), free(tail), free(wr), free(w), free(row), free(x), free(qx_raw), free(y), free(yr);
    return bad;
}

static int check_case(enum lfmd_dtype dt, int64_t n_out, int64_t n_in, int n_tok) {
    if (dt == LFMD_DTYPE_F16 && n_tok < KERN_AMX_MIN_TOK_F16) n_tok += KERN_AMX_MIN_TOK_F16;
    return check_case_g(dt, 0, LFMD_DTYPE_F32, n_out, n_in, n_tok);
}

// The bf16 activation split: hi + mid + lo within 2^-24 relative of x.
static void test_split(void) {
    int n_in = 64, bad = 0;
    float x[64];
    static uint16_t q[16 * 3 * 64]; // one token tile, two k-steps
    for (int i = 0; i < n_in; i++) x[i] = frand() * powf(2.0f, (float)(i % 40) - 20.0f);
    kern_prepare_amx_bf16(LFMD_DTYPE_F16, x, n_in, 64, 0, 1, q); // the tile-blocked layout
    for (int i = 0; i < n_in; i++) {
        const uint16_t *p = q + (i / 32) * 3 * 512 + i % 32; // token 0: row 0 of each part
        double v = (double)bf16_to_f32(p[0]) + bf16_to_f32(p[512]) + bf16_to_f32(p[1024]);
        if (!(fabs(v - x[i]) <= fabs(x[i]) * ldexp(1.0, -24))) bad++;
    }
    CHECK(bad == 0);
}

int main(void) {
    fprintf(stderr, "isa: %s\n", kern_isa());
    if (!kern_amx_usable() || strstr(kern_isa(), "amx") == NULL) {
        fprintf(stderr, "SKIP: AMX not available on this CPU/OS (or disabled by LFMD_KERNELS)\n");
        return check_done();
    }
    test_split();
    const enum lfmd_dtype dts[4] = {LFMD_DTYPE_BF16, LFMD_DTYPE_F16, LFMD_DTYPE_Q8_0,
                                    LFMD_DTYPE_Q4_0};
    const int toks[8] = {16, 17, 31, 32, 45, 64, 100, 200};
    for (int d = 0; d < 4; d++) {
        bool q = d >= 2;
        // fixed edge shapes: one row tile, chunk boundaries, tails
        CHECK(check_case(dts[d], 16, q ? 128 : 32, 16) == 0);
        CHECK(check_case(dts[d], 47, q ? 1152 : 544, 33) == 0);
        CHECK(check_case(dts[d], 64, q ? 2048 : 1024, 48) == 0);
        for (int i = 0; i < 5; i++) {
            int64_t n_out = (16 + (int64_t)(rnd() % 120)) | 1;
            int64_t n_in = q ? 128 * (1 + (int64_t)(rnd() % 20)) : 32 * (1 + (int64_t)(rnd() % 70));
            int n_tok = toks[rnd() % 8];
            CHECK(check_case(dts[d], n_out, n_in, n_tok) == 0);
        }
    }
    // BF16, few tokens (weights as the A operand): every n_tok of the range, odd n_out, long
    // and one-step rows, tokens prepared in two ranges
    for (int n_tok = KERN_AMX_FEW_MIN_TOK; n_tok <= KERN_AMX_FEW_MAX_TOK;
         n_tok += n_tok < 20 ? 1 : 1 + (int)(rnd() % 7)) {
        CHECK(check_case(LFMD_DTYPE_BF16, 16, 32, n_tok) == 0);
        int64_t n_out = (16 + (int64_t)(rnd() % 200)) | 1;
        int64_t n_in = 32 * (1 + (int64_t)(rnd() % 150));
        CHECK(check_case(LFMD_DTYPE_BF16, n_out, n_in, n_tok) == 0);
    }
    // MLX affine types: every group size and scale dtype, chunk boundaries, tails
    const struct { enum lfmd_dtype t; int gs; enum lfmd_dtype sdt; } mx[6] = {
        {LFMD_DTYPE_MLX_Q4, 64, LFMD_DTYPE_BF16}, {LFMD_DTYPE_MLX_Q4, 32, LFMD_DTYPE_F16},
        {LFMD_DTYPE_MLX_Q4, 128, LFMD_DTYPE_F32}, {LFMD_DTYPE_MLX_Q8, 64, LFMD_DTYPE_BF16},
        {LFMD_DTYPE_MLX_Q8, 32, LFMD_DTYPE_F16},  {LFMD_DTYPE_MLX_Q8, 128, LFMD_DTYPE_BF16},
    };
    for (int i = 0; i < 6; i++) {
        CHECK(check_case_g(mx[i].t, mx[i].gs, mx[i].sdt, 16, 128, 16) == 0);
        CHECK(check_case_g(mx[i].t, mx[i].gs, mx[i].sdt, 47, 1152, 33) == 0);
        int64_t n_out = (16 + (int64_t)(rnd() % 120)) | 1;
        int64_t n_in = 128 * (1 + (int64_t)(rnd() % 20));
        CHECK(check_case_g(mx[i].t, mx[i].gs, mx[i].sdt, n_out, n_in, toks[rnd() % 8]) == 0);
    }
    // Below the threshold or with an unsupported width the dispatcher does not take AMX.
    struct tensor W = {.dtype = LFMD_DTYPE_Q8_0, .n_dims = 2, .shape = {64, 96}};
    CHECK(!kern_amx_supports(&W, 64));
    W.shape[1] = 128;
    CHECK(kern_amx_supports(&W, KERN_AMX_MIN_TOK));
    CHECK(!kern_amx_supports(&W, KERN_AMX_MIN_TOK - 1));
    CHECK(!kern_amx_supports(&W, KERN_AMX_FEW_MIN_TOK)); // the few-token path is BF16 only
    W.dtype = LFMD_DTYPE_BF16;
    CHECK(kern_amx_supports(&W, KERN_AMX_FEW_MIN_TOK));
    CHECK(!kern_amx_supports(&W, KERN_AMX_FEW_MIN_TOK - 1));
    W.dtype = LFMD_DTYPE_F16;
    CHECK(!kern_amx_supports(&W, KERN_AMX_MIN_TOK_F16 - 1));
    CHECK(kern_amx_supports(&W, KERN_AMX_MIN_TOK_F16));
    return check_done();
}
