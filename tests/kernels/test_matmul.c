// Float-weight matrix products: exact f16/bf16 conversions, kern_matmul (dispatched) vs
// kern_matmul_ref vs an independent double-precision product over random shapes and row splits.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "kernels/kernels.h"

#include <stdint.h>
#include <stdlib.h>

#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "test_rng.h"

// independent f16 decode via ldexp
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0) return s * ldexp(m, -24);
    if (e == 31) return m ? NAN : s * INFINITY;
    return s * ldexp(1024 + m, e - 25);
}

static void test_f16(void) {
    int bad = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        double v = f16_value((uint16_t)h);
        float f = f16_to_f32((uint16_t)h);
        if (isnan(v)) {
            if (!isnan(f)) bad++;
            if (!isnan(f16_to_f32(f32_to_f16(f)))) bad_rt++;
            continue;
        }
        if ((double)f != v || !signbit(f) != !signbit(v)) bad++;
        if (f32_to_f16(f) != h) bad_rt++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(bad_rt, 0);
    // rounding: halfway cases go to even, overflow to inf, tiny to zero
    CHECK_EQ(f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);          // tie -> even (1.0)
    CHECK_EQ(f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);      // tie -> even (up)
    CHECK_EQ(f32_to_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01);
    CHECK_EQ(f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ(f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ(f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ(f32_to_f16(-1e9f), 0xfc00);
    CHECK_EQ(f32_to_f16(ldexpf(1.0f, -25)), 0x0000);                 // tie -> even (0)
    CHECK_EQ(f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    CHECK_EQ(f32_to_f16(ldexpf(3.0f, -25)), 0x0002);                 // 1.5 ulp tie -> 2
    CHECK_EQ(f32_to_f16(ldexpf(1023.5f, -24)), 0x0400);              // rounds into normal
    // brute check of rounding against double for random floats in the f16 range
    int bad_round = 0;
    for (int i = 0; i < 200000; i++) {
        float f = ldexpf(frand(), (int)(rnd() % 40) - 26);
        uint16_t h = f32_to_f16(f);
        double v = f16_value(h), err = fabs(v - f);
        // neighbours must not be closer
        double up = f16_value((uint16_t)(h + 1)), dn = h & 0x7fff ? f16_value((uint16_t)(h - 1)) : v;
        if (fabs(up - f) < err || fabs(dn - f) < err) bad_round++;
    }
    CHECK_EQ(bad_round, 0);
    CHECK_STR(lfmd_dtype_name(LFMD_DTYPE_BF16), "bf16");
    CHECK_STR(lfmd_dtype_name(LFMD_DTYPE_Q4_K), "q4_k");
}

static float wval(enum lfmd_dtype dt, const void *w, int64_t i) {
    if (dt == LFMD_DTYPE_F32) return ((const float *)w)[i];
    if (dt == LFMD_DTYPE_F16) return f16_to_f32(((const uint16_t *)w)[i]);
    return bf16_to_f32(((const uint16_t *)w)[i]);
}

static void test_shape(enum lfmd_dtype dt, int64_t n_out, int64_t n_in, int n_tok, int *bad) {
    size_t esz = dt == LFMD_DTYPE_F32 ? 4 : 2;
    void *w = malloc((size_t)(n_out * n_in) * esz);
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    int64_t ldy = n_out + 3;
    float *y = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    float *yr = malloc(sizeof(float) * (size_t)(n_tok * ldy));
    for (int64_t i = 0; i < n_out * n_in; i++) {
        float v = frand();
        if (dt == LFMD_DTYPE_F32) ((float *)w)[i] = v;
        else if (dt == LFMD_DTYPE_F16) ((uint16_t *)w)[i] = f32_to_f16(v);
        else ((uint16_t *)w)[i] = f32_to_bf16(v);
    }
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand();
    for (int64_t i = 0; i < n_tok * ldy; i++) y[i] = yr[i] = -7.0f;
    struct tensor W = {.name = "w", .dtype = dt, .n_dims = 2, .shape = {n_out, n_in}, .data = w};
    // dispatched product computed in 3 uneven row ranges (threads split rows anywhere)
    int64_t s1 = n_out / 3, s2 = n_out - n_out / 5;
    kern_matmul(&W, x, NULL, n_tok, y, ldy, 0, s1);
    kern_matmul(&W, x, NULL, n_tok, y, ldy, s1, s2);
    kern_matmul(&W, x, NULL, n_tok, y, ldy, s2, n_out);
    kern_matmul_ref(&W, x, n_tok, yr, ldy, 0, n_out);
    for (int t = 0; t < n_tok; t++) {
        for (int64_t r = 0; r < n_out; r++) {
            double acc = 0, mag = 0;
            for (int64_t c = 0; c < n_in; c++) {
                double p = (double)wval(dt, w, r * n_in + c) * x[t * n_in + c];
                acc += p;
                mag += fabs(p);
            }
            double tol = 1e-6 * mag + 1e-30;
            double tol_fast = 4.0 * n_in * 6e-8 * mag / 8 + 1e-6 * mag;
            if (!(fabs(yr[t * ldy + r] - acc) <= tol)) (*bad)++;
            if (!(fabs(y[t * ldy + r] - acc) <= tol_fast)) (*bad)++;
        }
        for (int64_t r = n_out; r < ldy; r++)
            if (y[t * ldy + r] != -7.0f || yr[t * ldy + r] != -7.0f) (*bad)++;
    }
    free(w);
    free(x);
    free(y);
    free(yr);
}

static void test_matmul(void) {
    enum lfmd_dtype dts[] = {LFMD_DTYPE_F32, LFMD_DTYPE_F16, LFMD_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        int bad = 0;
        test_shape(dts[d], 1, 1, 1, &bad);
        test_shape(dts[d], 7, 5, 3, &bad);
        test_shape(dts[d], 33, 64, 1, &bad);
        test_shape(dts[d], 64, 256, 16, &bad);
        for (int it = 0; it < 12; it++) {
            int64_t n_out = 1 + rnd() % 70, n_in = 1 + rnd() % 300;
            int n_tok = 1 + (int)(rnd() % 37);
            test_shape(dts[d], n_out, n_in, n_tok, &bad);
        }
        test_shape(dts[d], 37, 2048, 37, &bad);
        test_shape(dts[d], 150, 96, 7, &bad); // few-token decode path: 64-row blocks, 3 + 3 + 1
        test_shape(dts[d], 130, 64, 8, &bad);
        if (bad) fprintf(stderr, "dtype %s: %d mismatches\n", lfmd_dtype_name(dts[d]), bad);
        CHECK_EQ(bad, 0);
    }
    // get_row
    uint16_t wb[6] = {0x3f80, 0xc000, 0, 0x4040, 0x3f00, 0x8000};
    struct tensor W = {.dtype = LFMD_DTYPE_BF16, .n_dims = 2, .shape = {2, 3}, .data = wb};
    float row[3];
    kern_get_row(&W, 1, row);
    CHECK(row[0] == 3.0f && row[1] == 0.5f && row[2] == 0.0f && signbit(row[2]));
}

int main(void) {
    test_f16();
    fprintf(stderr, "isa: %s\n", kern_isa());
    test_matmul();
    kern_force_ref(true);
    CHECK_STR(kern_isa(), "scalar");
    test_matmul();
    kern_force_ref(false);
    return check_done();
}
