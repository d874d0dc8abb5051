// The load-time x16 layouts of Q4_0 / Q8_0 (kern_repack) against the plain layout, over
// random shapes (rows multiples of 16, n_in multiples of 64 up to 16384; unsupported shapes stay
// plain): unpacking (reference and AVX-512) gives the original bytes back; kern_get_row is
// identical; kern_matmul on the repacked tensor for 1-12 tokens (the x16 decode kernel) matches
// kern_matmul_ref on the dequantized int8 activations within f32 summation error, and each
// token's result is bit-identical to decoding that token alone; for 13+ tokens and for row
// ranges not aligned to 16 (the unpack-and-run-plain fallback) it matches kern_matmul on the
// plain bytes within f32 error (the plain kernels themselves differ in the last bits between
// row partitions).
// On CPUs without the AVX-512 decode kernel kern_repack leaves tensors plain (checked).
// SPDX-License-Identifier: MIT
#include "check.h"
#include "kernels/kern_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x243f6a8885a308d3ull
#include "test_rng.h"

static void run_case(enum lfmd_dtype dt, int64_t n_out, int64_t n_in, int n_tok) {
    size_t rb = kern_row_bytes(dt, n_in), bytes = rb * (size_t)n_out;
    float *src = malloc(sizeof(float) * (size_t)n_in);
    uint8_t *plain = malloc(bytes), *pk = malloc(bytes), *tmp = malloc(rb * 16);
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t c = 0; c < n_in; c++) src[c] = frand() * (c % 7 == 0 ? 4.0f : 1.0f);
        quantize_row_ref(dt, src, plain + rb * (size_t)r, n_in);
    }
    memcpy(pk, plain, bytes);
    struct tensor Wp = {.name = "w", .dtype = dt, .n_dims = 2,
                        .shape = {n_out, n_in}, .data = plain, .size_bytes = bytes};
    struct tensor Wr = Wp;
    Wr.data = pk;
    bool sup = kern_repack_supported(&Wr);
    CHECK_EQ(kern_repack(&Wr), 0);
    CHECK_EQ(Wr.layout, !sup ? KERN_LAYOUT_PLAIN
                        : dt == LFMD_DTYPE_Q8_0 ? KERN_LAYOUT_Q8_0_X16 : KERN_LAYOUT_Q4_0_X16);
    if (n_out % 16 || n_in % 64) CHECK(!sup);
    if (sup) {
        CHECK(memcmp(pk, plain, bytes) != 0); // really rewritten
        int bad = 0;
        for (int64_t g = 0; g < n_out / 16; g++) { // kern_repack (AVX-512) = the reference pack
            kern_x16_pack_group(dt, plain + rb * 16 * (size_t)g, rb, n_in / 32, tmp);
            bad += memcmp(tmp, pk + rb * 16 * (size_t)g, rb * 16) != 0;
        }
        for (int64_t g = 0; g < n_out / 16; g++) {
            kern_x16_unpack_group(&Wr, g, tmp);
            bad += memcmp(tmp, plain + rb * 16 * (size_t)g, rb * 16) != 0;
            memset(tmp, 0, rb * 16);
            kern_x16_unpack_group_fast(&Wr, g, tmp);
            bad += memcmp(tmp, plain + rb * 16 * (size_t)g, rb * 16) != 0;
        }
        for (int64_t r = 0; r < n_out; r += 7) {
            kern_x16_unpack_row(&Wr, r, tmp);
            bad += memcmp(tmp, plain + rb * (size_t)r, rb) != 0;
        }
        CHECK_EQ(bad, 0);
    }
    // embedding lookup
    float *ra = malloc(sizeof(float) * (size_t)n_in), *rr = malloc(sizeof(float) * (size_t)n_in);
    int bad_row = 0;
    for (int64_t r = 0; r < n_out; r += 5) {
        kern_get_row(&Wp, r, ra);
        kern_get_row(&Wr, r, rr);
        bad_row += memcmp(ra, rr, sizeof(float) * (size_t)n_in) != 0;
    }
    CHECK_EQ(bad_row, 0);

    // products
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand() * (i % 11 == 0 ? 3.0f : 1.0f);
    size_t qb = kern_input_bytes(dt, n_tok, n_in);
    void *qx = qb ? aligned_alloc(64, (qb + 63) & ~(size_t)63) : NULL;
    bool uq = kern_matmul_uses_qx(&Wp, n_tok);
    if (qx && uq) kern_prepare_input(dt, x, n_in, n_tok, 0, n_tok, qx);
    int64_t ldy = n_out + 5;
    float *yp = calloc((size_t)(n_tok * ldy), sizeof(float));
    float *yr = calloc((size_t)(n_tok * ldy), sizeof(float));
    float *ya = calloc((size_t)(n_tok * ldy), sizeof(float));
    // split as threads would: multiples of 16, then a split that is not
    int64_t s1 = (n_out / 3) & ~(int64_t)15, s2 = (2 * n_out / 3) & ~(int64_t)15;
    const void *q = uq ? qx : NULL;
    kern_matmul(&Wp, x, q, n_tok, yp, ldy, 0, n_out);
    kern_matmul(&Wr, x, q, n_tok, yr, ldy, 0, s1);
    kern_matmul(&Wr, x, q, n_tok, yr, ldy, s1, s2);
    kern_matmul(&Wr, x, q, n_tok, yr, ldy, s2, n_out);
    int64_t u = n_out > 16 ? 5 + (int64_t)(rnd() % (uint32_t)(n_out - 10)) : n_out / 2;
    kern_matmul(&Wr, x, q, n_tok, ya, ldy, 0, u);
    kern_matmul(&Wr, x, q, n_tok, ya, ldy, u, n_out);
    int bad_fb = 0, bad_ref = 0, bad_alone = 0;
    // plain kernels differ in the last bits between row partitions (multi-token pairs and odd
    // rows, AMX edge tiles), so the fallback is held to the plain result within f32 error
    double *mag = malloc(sizeof(double) * (size_t)(n_tok * n_out));
    for (int64_t r = 0; r < n_out; r++) {
        kern_get_row(&Wp, r, ra);
        for (int t = 0; t < n_tok; t++) {
            double m = 0;
            for (int64_t c = 0; c < n_in; c++) m += fabs((double)ra[c] * x[t * n_in + c]);
            mag[t * n_out + r] = m;
        }
    }
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_out; r++)
            bad_fb += !(fabs((double)ya[t * ldy + r] - yp[t * ldy + r]) <=
                        2e-5 * mag[t * n_out + r] + 1e-6);
    bool kernel_path = sup && uq && n_tok <= 12 && !kern_amx_supports(&Wp, n_tok);
    if (!kernel_path) {
        for (int t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < n_out; r++)
                bad_ref += !(fabs((double)yr[t * ldy + r] - yp[t * ldy + r]) <=
                             2e-5 * mag[t * n_out + r] + 1e-6);
    } else {
        // reference on the dequantized int8 activations; error bound from sum |w x|
        const struct block_qx *bq = qx;
        int64_t nb = n_in / QKX;
        float *xr = malloc(sizeof(float) * (size_t)n_in);
        float *yref = malloc(sizeof(float) * (size_t)n_out);
        for (int t = 0; t < n_tok; t++) {
            for (int64_t i = 0; i < nb; i++)
                for (int j = 0; j < QKX; j++)
                    xr[i * QKX + j] = bq[t * nb + i].d * (float)bq[t * nb + i].qs[j];
            kern_matmul_ref(&Wp, xr, 1, yref, n_out, 0, n_out);
            for (int64_t r = 0; r < n_out; r++) {
                kern_get_row(&Wp, r, ra);
                double mg = 0;
                for (int64_t c = 0; c < n_in; c++) mg += fabs((double)ra[c] * xr[c]);
                if (!(fabs((double)yr[t * ldy + r] - yref[r]) <= 2e-6 * mg + 1e-6)) bad_ref++;
            }
            // alone: the token's own 1-token product
            // C11 aligned_alloc needs a size that is a multiple of the alignment
            struct block_qx *q1 = aligned_alloc(64, (sizeof *q1 * (size_t)nb + 63) & ~(size_t)63);
            memcpy(q1, bq + t * nb, sizeof *q1 * (size_t)nb);
            kern_matmul(&Wr, x + t * n_in, q1, 1, yref, n_out, 0, n_out);
            for (int64_t r = 0; r < n_out; r++)
                bad_alone += memcmp(&yref[r], &yr[t * ldy + r], sizeof(float)) != 0;
            free(q1);
        }
        free(xr);
        free(yref);
    }
    if (bad_fb || bad_ref || bad_alone)
        fprintf(stderr, "case %s %lldx%lld tok %d (x16 %d kernel %d): fallback %d ref %d alone %d\n",
                lfmd_dtype_name(dt), (long long)n_out, (long long)n_in, n_tok, sup, kernel_path,
                bad_fb, bad_ref, bad_alone);
    CHECK_EQ(bad_fb, 0);
    CHECK_EQ(bad_ref, 0);
    CHECK_EQ(bad_alone, 0);
    free(src), free(plain), free(pk), free(tmp), free(ra), free(rr), free(x), free(qx);
    free(yp), free(yr), free(ya), free(mag);
}

int main(void) {
    const int toks[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 21, 40};
    const enum lfmd_dtype dts[2] = {LFMD_DTYPE_Q4_0, LFMD_DTYPE_Q8_0};
    for (int d = 0; d < 2; d++) {
        for (int i = 0; i < 26; i++) {
            int64_t n_out = 16 * (1 + (int64_t)(rnd() % 12));
            int64_t n_in = 64 * (1 + (int64_t)(rnd() % 24));
            run_case(dts[d], n_out, n_in, toks[i % 13]);
        }
        run_case(dts[d], 32, 16384, 1);
        run_case(dts[d], 16, 16384, 3);
        run_case(dts[d], 48, 4608, 2);
        run_case(dts[d], 40, 256, 1);   // rows not a multiple of 16: stays plain
        run_case(dts[d], 32, 96, 2);    // n_in not a multiple of 64: stays plain
        run_case(dts[d], 16, 32768, 1); // n_in above the kernel's limit: stays plain
    }
    return check_done();
}
