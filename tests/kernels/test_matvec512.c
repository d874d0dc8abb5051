// AVX-512 decode kernels (kern_matvec_avx512) against the scalar reference: quantized weights
// (Q4_0, Q8_0, MLX Q4/Q8 with group 32/64/128 and f16/bf16/f32 scales) against
// kern_matmul_ref on the dequantized int8 activations (the integer dots are exact, so only f32
// summation order differs), F32/F16/BF16 against kern_matmul_ref on the f32 activations.
// Random shapes: odd row counts, n_in with 1-3 leftover blocks past the 128-element steps,
// 1-3 tokens, rows split unevenly into 3 calls (as threads would), Y with a padded stride; the
// 1-8-token Q4_0/Q8_0/MLX Q4 kernel bit-identical to one-token decodes.
// Skips (passes) on CPUs without AVX-512 VNNI/VBMI; the dispatched path is covered there too.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "kernels/kern_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#include "test_rng.h"

struct qt {
    struct tensor W;
    void *data, *scales, *biases;
};

static void make_tensor(struct qt *q, enum lfmd_dtype t, int64_t n_out, int64_t n_in, int gs,
                        enum lfmd_dtype sdt, const float *src) {
    memset(q, 0, sizeof *q);
    size_t rb = kern_row_bytes(t, n_in);
    q->data = malloc(rb * (size_t)n_out);
    int bits = 0;
    if (t == LFMD_DTYPE_MLX_Q4 || t == LFMD_DTYPE_MLX_Q8) {
        bits = t == LFMD_DTYPE_MLX_Q4 ? 4 : 8;
        size_t ss = sdt == LFMD_DTYPE_F32 ? 4 : 2;
        // exact-size scale arrays: the kernels' masked loads must not read past them (ASan)
        q->scales = malloc(ss * (size_t)(n_out * n_in / gs));
        q->biases = malloc(ss * (size_t)(n_out * n_in / gs));
        for (int64_t r = 0; r < n_out; r++)
            quantize_mlx_ref(src + r * n_in, n_in, bits, gs, sdt,
                             (uint32_t *)((uint8_t *)q->data + rb * (size_t)r),
                             (uint8_t *)q->scales + ss * (size_t)(r * n_in / gs),
                             (uint8_t *)q->biases + ss * (size_t)(r * n_in / gs));
    } else {
        for (int64_t r = 0; r < n_out; r++)
            quantize_row_ref(t, src + r * n_in, (uint8_t *)q->data + rb * (size_t)r, n_in);
    }
    q->W = (struct tensor){.name = "w", .dtype = t, .n_dims = 2, .shape = {n_out, n_in},
                           .data = q->data, .size_bytes = rb * (size_t)n_out,
                           .scales = q->scales, .biases = q->biases, .scale_dtype = sdt,
                           .group_size = gs, .bits = bits};
}

// Returns the number of mismatching outputs.
static int check(enum lfmd_dtype t, int gs, enum lfmd_dtype sdt, int64_t n_out, int64_t n_in,
                 int n_tok) {
    float *src = malloc(sizeof(float) * (size_t)(n_out * n_in));
    for (int64_t i = 0; i < n_out * n_in; i++) src[i] = frand() * (i % 7 == 0 ? 4.0f : 1.0f);
    struct qt q;
    make_tensor(&q, t, n_out, n_in, gs, sdt, src);
    CHECK(kern_matvec_avx512_supports(&q.W, n_tok));
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *xr = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand() * (i % 11 == 0 ? 3.0f : 1.0f);
    bool quant = kern_traits[t].quantized;
    struct block_qx *qx = NULL;
    if (quant) {
        int64_t nb = n_in / QKX;
        qx = malloc(sizeof *qx * (size_t)(n_tok * nb));
        for (int tk = 0; tk < n_tok; tk++) kern_quantize_x_ref(x + tk * n_in, n_in, qx + tk * nb);
        for (int64_t i = 0; i < n_tok * nb; i++)
            for (int j = 0; j < QKX; j++) xr[i * QKX + j] = qx[i].d * (float)qx[i].qs[j];
    } else {
        memcpy(xr, x, sizeof(float) * (size_t)(n_tok * n_in));
    }
    int64_t ldy = n_out + 3;
    float *y = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    float *yr = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    for (int64_t i = 0; i < n_tok * ldy; i++) y[i] = yr[i] = 12345.0f;
    int64_t s1 = n_out > 1 ? 1 + (int64_t)(rnd() % (uint32_t)(n_out - 1)) : n_out;
    int64_t s2 = s1 + (n_out - s1) / 3;
    kern_matvec_avx512(&q.W, x, qx, n_tok, y, ldy, 0, s1);
    kern_matvec_avx512(&q.W, x, qx, n_tok, y, ldy, s1, s2);
    kern_matvec_avx512(&q.W, x, qx, n_tok, y, ldy, s2, n_out);
    kern_matmul_ref(&q.W, xr, n_tok, yr, ldy, 0, n_out);
    float *w = malloc(sizeof(float) * (size_t)n_in);
    int bad = 0;
    for (int64_t r = 0; r < n_out; r++) {
        kern_get_row(&q.W, r, w);
        for (int tk = 0; tk < n_tok; tk++) {
            double mag = 0;
            for (int64_t c = 0; c < n_in; c++) mag += fabs((double)w[c] * xr[tk * n_in + c]);
            double got = y[tk * ldy + r], ref = yr[tk * ldy + r];
            if (!(fabs(got - ref) <= 1e-5 * mag + 1e-6)) {
                if (bad < 3)
                    fprintf(stderr, "  row %lld tok %d: got %.7g ref %.7g (mag %.3g)\n",
                            (long long)r, tk, got, ref, mag);
                bad++;
            }
        }
    }
    for (int tk = 0; tk < n_tok; tk++) // the padding column is never written
        if (y[tk * ldy + n_out] != 12345.0f) bad++;
    if (bad)
        fprintf(stderr, "%s g%d s%s %lldx%lld tok %d: %d bad\n", lfmd_dtype_name(t), gs,
                lfmd_dtype_name(sdt), (long long)n_out, (long long)n_in, n_tok, bad);
    free(w);
    free(y);
    free(yr);
    free(qx);
    free(x);
    free(xr);
    free(src);
    free(q.data);
    free(q.scales);
    free(q.biases);
    return bad;
}

// kern_matvec_avx512_multi: every token's outputs are bit-identical to the one-token decode of
// that token (odd row counts: the last row goes three tokens at a time; n_in with leftover
// blocks). Returns the number of differing outputs.
static int check_multi(enum lfmd_dtype t, int gs, enum lfmd_dtype sdt, int64_t n_out, int64_t n_in,
                       int n_tok) {
    float *src = malloc(sizeof(float) * (size_t)(n_out * n_in));
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    for (int64_t i = 0; i < n_out * n_in; i++) src[i] = frand() * (i % 7 == 0 ? 4.0f : 1.0f);
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand();
    struct qt q;
    make_tensor(&q, t, n_out, n_in, gs, sdt, src);
    int64_t nb = n_in / QKX, ldy = n_out + 1;
    struct block_qx *qx = malloc(sizeof *qx * (size_t)(n_tok * nb));
    for (int k = 0; k < n_tok; k++) kern_quantize_x_ref(x + k * n_in, n_in, qx + k * nb);
    float *y = malloc(sizeof(float) * (size_t)(n_tok * ldy)), *y1 = malloc(sizeof(float) * (size_t)ldy);
    CHECK(kern_matvec_avx512_multi_supports(&q.W, n_tok));
    int64_t cut = (n_out / 3) | 1; // an odd split, as threads might get
    kern_matvec_avx512_multi(&q.W, qx, n_tok, y, ldy, 0, cut);
    kern_matvec_avx512_multi(&q.W, qx, n_tok, y, ldy, cut, n_out);
    int bad = 0;
    for (int k = 0; k < n_tok; k++) {
        kern_matvec_avx512(&q.W, x + k * n_in, qx + k * nb, 1, y1, ldy, 0, n_out);
        if (memcmp(y + k * ldy, y1, sizeof(float) * (size_t)n_out) != 0) bad++;
    }
    free(src), free(x), free(qx), free(y), free(y1);
    free(q.data), free(q.scales), free(q.biases);
    return bad;
}

int main(void) {
    if (!kern_matvec_avx512_usable()) {
        fprintf(stderr, "no AVX-512 VNNI/VBMI on this CPU (or compiler): skipped\n");
        return check_done();
    }
    struct {
        enum lfmd_dtype t;
        int gs;
        enum lfmd_dtype sdt;
    } types[] = {
        {LFMD_DTYPE_Q4_0, 32, 0},
        {LFMD_DTYPE_Q8_0, 32, 0},
        {LFMD_DTYPE_MLX_Q4, 32, LFMD_DTYPE_BF16},
        {LFMD_DTYPE_MLX_Q4, 64, LFMD_DTYPE_F16},
        {LFMD_DTYPE_MLX_Q4, 128, LFMD_DTYPE_F32},
        {LFMD_DTYPE_MLX_Q8, 32, LFMD_DTYPE_F16},
        {LFMD_DTYPE_MLX_Q8, 64, LFMD_DTYPE_BF16},
        {LFMD_DTYPE_MLX_Q8, 128, LFMD_DTYPE_BF16},
        {LFMD_DTYPE_F16, 1, 0},
        {LFMD_DTYPE_BF16, 1, 0},
        {LFMD_DTYPE_F32, 1, 0},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        enum lfmd_dtype t = types[i].t;
        int gs = types[i].gs, unit = kern_traits[t].quantized ? (gs > 32 ? gs : 32) : 1;
        int bad = 0;
        bad += check(t, gs, types[i].sdt, 1, unit, 1);
        bad += check(t, gs, types[i].sdt, 7, 128, 1);
        bad += check(t, gs, types[i].sdt, 33, 1024, 1);
        bad += check(t, gs, types[i].sdt, 5, 384, 3);
        for (int it = 0; it < 10; it++) {
            int64_t n_out = 1 + 2 * (rnd() % 40); // odd row counts
            int64_t n_in = unit * (int64_t)(1 + rnd() % (unit == 1 ? 300 : 4096 / unit));
            int n_tok = 1 + (int)(rnd() % 3);
            bad += check(t, gs, types[i].sdt, n_out, n_in, n_tok);
        }
        CHECK_EQ(bad, 0);
    }
    const struct { enum lfmd_dtype t; int gs; enum lfmd_dtype sdt; } mt[5] = {
        {LFMD_DTYPE_Q4_0, 32, 0}, {LFMD_DTYPE_Q8_0, 32, 0},
        {LFMD_DTYPE_MLX_Q4, 64, LFMD_DTYPE_BF16}, {LFMD_DTYPE_MLX_Q4, 32, LFMD_DTYPE_F16},
        {LFMD_DTYPE_MLX_Q4, 128, LFMD_DTYPE_F32}};
    for (int k = 0; k < 5; k++) {
        enum lfmd_dtype t = mt[k].t;
        int bad = 0, unit = mt[k].gs > 32 ? mt[k].gs : 32;
        for (int n_tok = 1; n_tok <= 8; n_tok++) {
            int64_t n_out = 1 + 2 * (rnd() % 40), n_in = unit * (1 + (int64_t)(rnd() % (3200 / unit)));
            bad += check_multi(t, mt[k].gs, mt[k].sdt, n_out, n_in, n_tok);
        }
        bad += check_multi(t, mt[k].gs, mt[k].sdt, 64, 8192, 8);
        CHECK(!kern_matvec_avx512_multi_supports(&(struct tensor){.dtype = t, .n_dims = 2,
                                                                  .shape = {4, 8224}}, 8));
        CHECK_EQ(bad, 0);
    }
    return check_done();
}
