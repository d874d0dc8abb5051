// Quantized dtypes: GGUF block layouts against hand-computed examples, quantize->dequantize
// error bounds, and the dispatched (integer-dot) products against the reference over random
// shapes, odd row counts, 1..37 tokens and arbitrary row splits.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "kernels/kern_internal.h"

#include <stdint.h>
#include <stdlib.h>

#define TEST_RNG_SEED 0x1234567887654321ull
#include "test_rng.h"

static void test_layouts(void) {
    float y[256];
    // Q8_0: d = 0.5
    struct block_q8_0 b8 = {.d = 0x3800};
    b8.qs[0] = -3;
    b8.qs[31] = 127;
    CHECK_EQ(dequantize_row_ref(LFMD_DTYPE_Q8_0, &b8, y, 32), 0);
    CHECK(y[0] == -1.5f && y[1] == 0.0f && y[31] == 63.5f);
    // Q4_0: d = 1; byte 0 = 0x9A -> element 0 = 0xA - 8 = 2, element 16 = 9 - 8 = 1
    struct block_q4_0 b40 = {.d = 0x3c00};
    memset(b40.qs, 0x88, 16);
    b40.qs[0] = 0x9A;
    b40.qs[15] = 0x0F;
    dequantize_row_ref(LFMD_DTYPE_Q4_0, &b40, y, 32);
    CHECK(y[0] == 2.0f && y[16] == 1.0f && y[1] == 0.0f && y[15] == 7.0f && y[31] == -8.0f);
    // Q4_1: d = 0.5, m = -1; byte 1 = 0x3F -> element 1 = 15*0.5-1, element 17 = 3*0.5-1
    struct block_q4_1 b41 = {.d = 0x3800, .m = 0xbc00};
    b41.qs[1] = 0x3F;
    dequantize_row_ref(LFMD_DTYPE_Q4_1, &b41, y, 32);
    CHECK(y[1] == 6.5f && y[17] == 0.5f && y[0] == -1.0f);
    // Q4_K: d = 1, dmin = 0.5. Sub-block scales ls = {1,2,3,4, 37,5,6,7}, mins lm = {0,1,2,3,
    // 4,50,6,7} packed by hand: bytes 0-3 = ls0-3 | (ls4-7 >> 4) << 6, bytes 4-7 = lm0-3 |
    // (lm4-7 >> 4) << 6, bytes 8-11 = (ls4-7 & 15) | (lm4-7 & 15) << 4.
    struct block_q4_k bk = {.d = 0x3c00, .dmin = 0x3800,
                            .scales = {1 | 2 << 6, 2, 3, 4, 0, 1 | 3 << 6, 2, 3, 5 | 4 << 4,
                                       5 | 2 << 4, 6 | 6 << 4, 7 | 7 << 4}};
    bk.qs[0] = 0x53;  // element 0 (sub-block 0): q=3; element 32 (sub-block 1): q=5
    bk.qs[64] = 0x2F; // element 128 (sub-block 4): q=15; element 160 (sub-block 5): q=2
    dequantize_row_ref(LFMD_DTYPE_Q4_K, &bk, y, 256);
    CHECK(y[0] == 3.0f);                  // 1*1*3 - 0.5*0
    CHECK(y[32] == 2.0f * 5 - 0.5f);      // ls1=2, lm1=1
    CHECK(y[128] == 37.0f * 15 - 2.0f);   // ls4=37, lm4=4
    CHECK(y[160] == 5.0f * 2 - 25.0f);    // ls5=5, lm5=50
    CHECK(y[1] == 0.0f);
    // Q5_K: same scales; qh bit 0 of byte 0 -> +16 on element 0, bit 3 -> element 32+64=96
    struct block_q5_k b5 = {.d = 0x3c00, .dmin = 0x3800};
    memcpy(b5.scales, bk.scales, 12);
    b5.qs[0] = 0x53;
    b5.qh[0] = 1 | 8;
    b5.qs[32] = 0x10; // element 64 (sub-block 2): 0; element 96 (sub-block 3): 1
    dequantize_row_ref(LFMD_DTYPE_Q5_K, &b5, y, 256);
    CHECK(y[0] == 19.0f);
    CHECK(y[32] == 2.0f * 5 - 0.5f);
    CHECK(y[96] == 4.0f * 17 - 1.5f);
    CHECK(y[64] == -1.0f);
    // Q6_K: d = 0.5, scales[j] = j+1 (sc[8..15] negative). ql[0] = 0x21, qh[0] = 0b11100100:
    // e0: q = 1 | 0<<4 = 1 -> -31; e32: q = 0 | 1<<4 -> -16; e64: 2 | 2<<4 = 34 -> 2;
    // e96: 0 | 3<<4 = 48 -> 16. Second half: ql[64] = 0x0F, qh[32] = 0 -> e128 = 15-32.
    struct block_q6_k b6 = {.d = 0x3800};
    for (int j = 0; j < 16; j++) b6.scales[j] = (int8_t)(j < 8 ? j + 1 : -(j + 1));
    memset(b6.ql, 0, sizeof b6.ql);
    memset(b6.qh, 0xAA, sizeof b6.qh); // default q high bits 2 -> q = 32 -> 0
    b6.ql[0] = 0x21;
    b6.qh[0] = 0xE4;
    b6.ql[64] = 0x0F;
    b6.qh[32] = 0;
    dequantize_row_ref(LFMD_DTYPE_Q6_K, &b6, y, 256);
    CHECK(y[0] == 0.5f * 1 * -31);
    CHECK(y[32] == 0.5f * 3 * -16);
    CHECK(y[64] == 0.5f * 5 * 2);
    CHECK(y[96] == 0.5f * 7 * 16);
    CHECK(y[128] == 0.5f * -9 * -17);
    CHECK(y[1] == 0.0f && y[255] == 0.0f);
    // MLX: word 0x76543210 = elements 0..7 = 0..7 (first element in the low bits)
    uint32_t wq[8] = {0x76543210u, 0xFEDCBA98u};
    uint16_t sc[1] = {0x4000}, bi[1] = {0xbc00}; // f16 2.0, -1.0
    dequantize_mlx_ref(wq, sc, bi, LFMD_DTYPE_F16, 32, 4, 32, y);
    CHECK(y[0] == -1.0f && y[1] == 1.0f && y[7] == 13.0f && y[8] == 15.0f && y[15] == 29.0f);
    uint32_t w8[8] = {0x030201FFu};
    float sc8 = 0.25f, bi8 = 1.0f;
    dequantize_mlx_ref(w8, &sc8, &bi8, LFMD_DTYPE_F32, 32, 8, 32, y);
    CHECK(y[0] == 0.25f * 255 + 1 && y[1] == 1.25f && y[3] == 1.75f && y[4] == 1.0f);
}

// rms(dequant(quant(x)) - x) / rms(x) over random data with per-block outliers
static double roundtrip(enum lfmd_dtype t, int bits, int gs, double *max_rel) {
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t buf[N * 4];
    static uint16_t sc[N], bi[N];
    double se = 0, sx = 0;
    *max_rel = 0;
    for (int i = 0; i < N; i++) x[i] = frand() * (i % 97 == 0 ? 4.0f : 1.0f);
    if (t == LFMD_DTYPE_MLX_Q4 || t == LFMD_DTYPE_MLX_Q8) {
        CHECK_EQ(quantize_mlx_ref(x, N, bits, gs, LFMD_DTYPE_BF16, (uint32_t *)buf, sc, bi), 0);
        dequantize_mlx_ref((uint32_t *)buf, sc, bi, LFMD_DTYPE_BF16, N, bits, gs, y);
    } else {
        CHECK_EQ(quantize_row_ref(t, x, buf, N), 0);
        CHECK_EQ(dequantize_row_ref(t, buf, y, N), 0);
    }
    int blk = gs;
    for (int b = 0; b < N / blk; b++) {
        double amax = 0;
        for (int j = 0; j < blk; j++) amax = fmax(amax, fabs(x[b * blk + j]));
        for (int j = 0; j < blk; j++) {
            double e = fabs((double)y[b * blk + j] - x[b * blk + j]);
            se += e * e;
            sx += (double)x[b * blk + j] * x[b * blk + j];
            if (amax > 0) *max_rel = fmax(*max_rel, e / amax);
        }
    }
    return sqrt(se / sx);
}

static void test_roundtrip(void) {
    struct {
        enum lfmd_dtype t;
        int bits, gs;
        double rms, max_rel; // bounds: rms relative error, max error / block amax
    } cases[] = {
        {LFMD_DTYPE_Q8_0, 8, 32, 0.006, 0.5 / 127 + 1e-3},
        {LFMD_DTYPE_Q4_0, 4, 32, 0.12, 1.0 / 8 + 1e-3},
        {LFMD_DTYPE_Q4_1, 4, 32, 0.10, 1.0 / 15 + 1e-3},
        {LFMD_DTYPE_Q4_K, 4, 256, 0.12, 0.2},
        {LFMD_DTYPE_Q5_K, 5, 256, 0.06, 0.1},
        {LFMD_DTYPE_Q6_K, 6, 256, 0.03, 0.05},
        {LFMD_DTYPE_MLX_Q4, 4, 32, 0.10, 1.0 / 7.5 + 0.01},
        {LFMD_DTYPE_MLX_Q4, 4, 64, 0.10, 1.0 / 7.5 + 0.01},
        {LFMD_DTYPE_MLX_Q4, 4, 128, 0.12, 1.0 / 7.5 + 0.01},
        {LFMD_DTYPE_MLX_Q8, 8, 64, 0.012, 1.0 / 127.5 + 0.01},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double mr, r = roundtrip(cases[i].t, cases[i].bits, cases[i].gs, &mr);
        if (!(r < cases[i].rms) || !(mr < cases[i].max_rel))
            fprintf(stderr, "%s g%d: rms %.4f (bound %.4f), max %.4f (bound %.4f)\n",
                    lfmd_dtype_name(cases[i].t), cases[i].gs, r, cases[i].rms, mr,
                    cases[i].max_rel);
        CHECK(r < cases[i].rms);
        CHECK(mr < cases[i].max_rel);
        CHECK(r > 0.0); // really quantized
    }
    // MLX snaps 0.0 onto the grid (exact before the scale is rounded to f16)
    float z[64] = {0}, y[64];
    uint32_t wq[8];
    uint16_t s, b;
    z[3] = 1.0f;
    z[9] = -0.3f;
    quantize_mlx_ref(z, 64, 4, 64, LFMD_DTYPE_F16, wq, &s, &b);
    dequantize_mlx_ref(wq, &s, &b, LFMD_DTYPE_F16, 64, 4, 64, y);
    CHECK(fabsf(y[0]) < 1e-3f && y[0] == y[63] && fabsf(y[3] - 1.0f) < 1e-3f);
    CHECK_EQ(quantize_mlx_ref(z, 64, 3, 64, LFMD_DTYPE_F16, wq, &s, &b), -5);
    CHECK_EQ(quantize_mlx_ref(z, 48, 4, 32, LFMD_DTYPE_F16, wq, &s, &b), -5);
}

struct qt {
    struct tensor W;
    void *data, *scales, *biases;
};

static void make_tensor(struct qt *q, enum lfmd_dtype t, int64_t n_out, int64_t n_in, int gs,
                        enum lfmd_dtype sdt, const float *src) {
    memset(q, 0, sizeof *q);
    size_t rb = kern_row_bytes(t, n_in);
    q->data = malloc(rb * (size_t)n_out);
    if (t == LFMD_DTYPE_MLX_Q4 || t == LFMD_DTYPE_MLX_Q8) {
        int bits = t == LFMD_DTYPE_MLX_Q4 ? 4 : 8;
        size_t ss = sdt == LFMD_DTYPE_F32 ? 4 : 2;
        q->scales = malloc(ss * (size_t)(n_out * n_in / gs));
        q->biases = malloc(ss * (size_t)(n_out * n_in / gs));
        for (int64_t r = 0; r < n_out; r++)
            quantize_mlx_ref(src + r * n_in, n_in, bits, gs, sdt,
                             (uint32_t *)((uint8_t *)q->data + rb * (size_t)r),
                             (uint8_t *)q->scales + ss * (size_t)(r * n_in / gs),
                             (uint8_t *)q->biases + ss * (size_t)(r * n_in / gs));
        q->W.bits = bits;
    } else {
        for (int64_t r = 0; r < n_out; r++)
            quantize_row_ref(t, src + r * n_in, (uint8_t *)q->data + rb * (size_t)r, n_in);
    }
    q->W = (struct tensor){.name = "w", .dtype = t, .n_dims = 2, .shape = {n_out, n_in},
                           .data = q->data, .size_bytes = rb * (size_t)n_out,
                           .scales = q->scales, .biases = q->biases, .scale_dtype = sdt,
                           .group_size = gs, .bits = q->W.bits};
}

static void free_tensor(struct qt *q) {
    free(q->data);
    free(q->scales);
    free(q->biases);
}

static int check_product(enum lfmd_dtype t, int gs, enum lfmd_dtype sdt, int64_t n_out,
                         int64_t n_in, int n_tok) {
    float *src = malloc(sizeof(float) * (size_t)(n_out * n_in));
    for (int64_t i = 0; i < n_out * n_in; i++) src[i] = frand();
    struct qt q;
    make_tensor(&q, t, n_out, n_in, gs, sdt, src);
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *xq = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand() * (i % 13 == 0 ? 3.0f : 1.0f);
    size_t qb = kern_input_bytes(t, n_tok, n_in);
    CHECK(qb > 0);
    struct block_qx *qx = malloc(qb), *qr = malloc(qb);
    // prepare in two token ranges (callers may split tokens across threads)
    kern_prepare_input(t, x, n_in, n_tok, 0, n_tok / 2, qx);
    kern_prepare_input(t, x, n_in, n_tok, n_tok / 2, n_tok, qx);
    int64_t nb = n_in / QKX;
    for (int tk = 0; tk < n_tok; tk++) kern_quantize_x_ref(x + tk * n_in, n_in, qr + tk * nb);
    int bad = 0;
    if (memcmp(qx, qr, qb) != 0) bad += 1000000; // SIMD activation quantizer must be exact
    for (int64_t i = 0; i < n_tok * nb; i++)
        for (int j = 0; j < QKX; j++) xq[i * QKX + j] = qr[i].d * (float)qr[i].qs[j];
    int64_t ldy = n_out + 1;
    float *y = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    float *yr = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    float *yx = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    int64_t s1 = n_out / 2 + (n_out > 2), s2 = s1 + (n_out - s1) / 3;
    kern_matmul(&q.W, x, qx, n_tok, y, ldy, 0, s1);
    kern_matmul(&q.W, x, qx, n_tok, y, ldy, s1, s2);
    kern_matmul(&q.W, x, qx, n_tok, y, ldy, s2, n_out);
    kern_matmul_ref(&q.W, x, n_tok, yr, ldy, 0, n_out);
    kern_matmul_ref(&q.W, xq, n_tok, yx, ldy, 0, n_out);
    float *w = malloc(sizeof(float) * (size_t)n_in);
    bool int_path = kern_matmul_uses_qx(&q.W, n_tok);
    float *w2 = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t r = 0; r < n_out; r++) {
        kern_get_row(&q.W, r, w);
        if (strncmp(kern_isa(), "avx2", 4) == 0) { // SIMD dequantizer == reference (FMA rounding)
            kern_dequant_row_part_avx2(&q.W, r, 0, n_in, w2);
            for (int64_t c = 0; c < n_in; c++)
                if (!(fabsf(w2[c] - w[c]) <= 1e-6f * fabsf(w[c]) + 1e-30f)) bad++;
        }
        for (int tk = 0; tk < n_tok; tk++) {
            double mag = 0, qerr = 0;
            for (int64_t c = 0; c < n_in; c++) {
                mag += fabs((double)w[c] * x[tk * n_in + c]);
                qerr += fabs((double)w[c]) * fabs((double)x[tk * n_in + c] - xq[tk * n_in + c]);
            }
            float got = y[tk * ldy + r];
            // integer path == reference on the quantized activations up to f32 rounding
            double ref = int_path ? yx[tk * ldy + r] : yr[tk * ldy + r];
            if (!(fabs(got - ref) <= 2e-5 * mag + 1e-6)) bad++;
            // and within the activation-quantization error of the exact product
            if (!(fabs(got - yr[tk * ldy + r]) <= qerr * 1.001 + 2e-5 * mag + 1e-6)) bad++;
        }
    }
    if (bad)
        fprintf(stderr, "%s g%d %lldx%lld tok %d: %d bad\n", lfmd_dtype_name(t), gs,
                (long long)n_out, (long long)n_in, n_tok, bad);
    free(w);
    free(w2);
    free(y);
    free(yr);
    free(yx);
    free(qx);
    free(qr);
    free(x);
    free(xq);
    free(src);
    free_tensor(&q);
    return bad;
}

static void test_products(void) {
    struct {
        enum lfmd_dtype t;
        int gs;
        enum lfmd_dtype sdt;
    } types[] = {
        {LFMD_DTYPE_Q8_0, 32, 0},          {LFMD_DTYPE_Q4_0, 32, 0},
        {LFMD_DTYPE_Q4_1, 32, 0},          {LFMD_DTYPE_Q4_K, 256, 0},
        {LFMD_DTYPE_Q5_K, 256, 0},         {LFMD_DTYPE_Q6_K, 256, 0},
        {LFMD_DTYPE_MLX_Q4, 32, LFMD_DTYPE_BF16}, {LFMD_DTYPE_MLX_Q4, 64, LFMD_DTYPE_F16},
        {LFMD_DTYPE_MLX_Q4, 128, LFMD_DTYPE_F32}, {LFMD_DTYPE_MLX_Q8, 64, LFMD_DTYPE_BF16},
        {LFMD_DTYPE_MLX_Q8, 32, LFMD_DTYPE_F16},  {LFMD_DTYPE_MLX_Q8, 128, LFMD_DTYPE_BF16},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int bad = 0;
        int blk = types[i].gs;
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 1, blk, 1);
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 9, 2 * blk, 4);
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 13, 3 * blk, 2);
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 7, 5 * blk, 3);
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 6, 4 * blk, 1);
        for (int it = 0; it < 6; it++) {
            int64_t n_out = 1 + rnd() % 41, n_in = blk * (1 + rnd() % (blk >= 256 ? 4 : 12));
            int n_tok = 1 + (int)(rnd() % 37);
            bad += check_product(types[i].t, types[i].gs, types[i].sdt, n_out, n_in, n_tok);
        }
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 35, 2048, 5);
        // several 64-row blocks of the few-token decode path, token groups of 3 + a remainder
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 150, 2 * blk, 8);
        bad += check_product(types[i].t, types[i].gs, types[i].sdt, 70, blk, 12);
        CHECK_EQ(bad, 0);
    }
}

int main(void) {
    test_layouts();
    test_roundtrip();
    fprintf(stderr, "isa: %s\n", kern_isa());
    test_products();
    kern_force_ref(true);
    test_products();
    kern_force_ref(false);
    return check_done();
}
