// Attention over f32/f16/q8_0 KV rows, RMSNorm, SwiGLU and the AVX-512 prefill tiles: dispatched
// kernels vs the scalar references (kern_*_ref) over random shapes, odd sizes included, plus the
// attention reference vs an independent double-precision softmax.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "kernels/kernels.h"

#include <stdint.h>
#include <stdlib.h>

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_rng.h"

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_attention(void) {
    const enum lfmd_dtype kvts[3] = {LFMD_DTYPE_F32, LFMD_DTYPE_F16, LFMD_DTYPE_Q8_0};
    const int hds[5] = {32, 64, 128, 24, 256};
    double worst_fast = 0, worst_ind = 0;
    for (int it = 0; it < 60; it++) {
        enum lfmd_dtype kvt = kvts[it % 3];
        int hd = hds[(it / 3) % 5];
        if (kvt == LFMD_DTYPE_Q8_0 && hd % 32) hd = 64;
        int n_q = 1 + (int)(rnd() % 9), n_pos = 1 + (int)(rnd() % 150);
        int n_heads = 3; // rows hold 3 heads; we attend with head 1 (stride test)
        size_t hb = kern_row_bytes(kvt, hd), stride = hb * (size_t)n_heads;
        uint8_t *K = malloc(stride * (size_t)n_pos), *V = malloc(stride * (size_t)n_pos);
        float *kf = malloc(sizeof(float) * (size_t)hd), *q = malloc(sizeof(float) * (size_t)n_q * hd);
        float *o = malloc(sizeof(float) * (size_t)n_q * hd), *orf = malloc(sizeof(float) * (size_t)n_q * hd);
        float *kd = malloc(sizeof(float) * (size_t)n_pos * hd), *vd = malloc(sizeof(float) * (size_t)n_pos * hd);
        float amp = (it % 4 == 0) ? 8.0f : 1.0f; // peaky softmax too
        for (int p = 0; p < n_pos; p++)
            for (int h = 0; h < n_heads; h++) {
                for (int d = 0; d < hd; d++) kf[d] = frand() * amp;
                kern_kv_store(kvt, kf, K + p * stride + h * hb, hd);
                if (h == 1) dequantize_row_ref(kvt, K + p * stride + h * hb, kd + (size_t)p * hd, hd);
                for (int d = 0; d < hd; d++) kf[d] = frand();
                kern_kv_store(kvt, kf, V + p * stride + h * hb, hd);
                if (h == 1) dequantize_row_ref(kvt, V + p * stride + h * hb, vd + (size_t)p * hd, hd);
            }
        for (int i = 0; i < n_q * hd; i++) q[i] = frand();
        float scale = 1.0f / sqrtf((float)hd);
        kern_attention(kvt, q, hd, n_q, K + hb, V + hb, stride, n_pos, hd, scale, o, hd);
        kern_attention_ref(kvt, q, hd, n_q, K + hb, V + hb, stride, n_pos, hd, scale, orf, hd);
        double e = rel_l2(o, orf, (size_t)n_q * hd);
        if (e > worst_fast) worst_fast = e;
        // independent: double softmax over the stored (dequantized) rows
        for (int i = 0; i < n_q; i++) {
            double *w = malloc(sizeof(double) * (size_t)n_pos), mx = -1e300, sum = 0;
            for (int p = 0; p < n_pos; p++) {
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[i * hd + d] * kd[(size_t)p * hd + d];
                w[p] = s * scale;
                if (w[p] > mx) mx = w[p];
            }
            for (int p = 0; p < n_pos; p++) sum += (w[p] = exp(w[p] - mx));
            float ind[KERN_ATTN_MAX_HD];
            for (int d = 0; d < hd; d++) {
                double a = 0;
                for (int p = 0; p < n_pos; p++) a += w[p] * vd[(size_t)p * hd + d];
                ind[d] = (float)(a / sum);
            }
            double e2 = rel_l2(orf + i * hd, ind, (size_t)hd);
            if (e2 > worst_ind) worst_ind = e2;
            free(w);
        }
        free(K), free(V), free(kf), free(q), free(o), free(orf), free(kd), free(vd);
    }
    fprintf(stderr, "attention: fast vs ref rel L2 %.2e, ref vs double %.2e\n", worst_fast, worst_ind);
    CHECK(worst_fast < 2e-6);
    CHECK(worst_ind < 1e-5);
}

static void test_kv_store(void) {
    // f16 rows round-trip within half precision, q8_0 within its block step
    float x[64], y[64];
    uint8_t buf[256];
    for (int i = 0; i < 64; i++) x[i] = frand() * 3.0f;
    kern_kv_store(LFMD_DTYPE_F16, x, buf, 64);
    dequantize_row_ref(LFMD_DTYPE_F16, buf, y, 64);
    CHECK(rel_l2(y, x, 64) < 1e-3);
    kern_kv_store(LFMD_DTYPE_Q8_0, x, buf, 64);
    dequantize_row_ref(LFMD_DTYPE_Q8_0, buf, y, 64);
    double e = rel_l2(y, x, 64);
    CHECK(e < 1e-2 && e > 1e-5);
}

static void test_elementwise(void) {
    double we = 0, ws = 0;
    for (int it = 0; it < 40; it++) {
        int n = 1 + (int)(rnd() % 3000);
        float *x = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)n);
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        float *u = malloc(sizeof(float) * (size_t)n);
        for (int i = 0; i < n; i++) {
            x[i] = frand() * (i % 7 ? 1.0f : 30.0f);
            w[i] = frand();
            u[i] = frand();
        }
        kern_rmsnorm(x, w, n, 1e-5f, a);
        kern_rmsnorm_ref(x, w, n, 1e-5f, b);
        double e = rel_l2(a, b, (size_t)n);
        if (e > we) we = e;
        memcpy(a, x, sizeof(float) * (size_t)n);
        memcpy(b, x, sizeof(float) * (size_t)n);
        kern_swiglu(a, u, (size_t)n);
        kern_swiglu_ref(b, u, (size_t)n);
        e = rel_l2(a, b, (size_t)n);
        if (e > ws) ws = e;
        free(x), free(w), free(a), free(b), free(u);
    }
    fprintf(stderr, "rmsnorm rel L2 %.2e, swiglu rel L2 %.2e\n", we, ws);
    CHECK(we < 1e-6);
    CHECK(ws < 1e-6);
}

// Prefill tiles with n_in past the 1024-column chunk (accumulation across chunks) and odd tails.
static void test_prefill_chunks(void) {
    const enum lfmd_dtype dts[4] = {LFMD_DTYPE_F32, LFMD_DTYPE_F16, LFMD_DTYPE_Q8_0, LFMD_DTYPE_Q4_0};
    for (int d = 0; d < 4; d++) {
        int64_t n_out = 37, n_in = d >= 2 ? 2080 : 2061;
        int n_tok = 13;
        size_t rb = kern_row_bytes(dts[d], n_in);
        uint8_t *w = malloc(rb * (size_t)n_out);
        float *row = malloc(sizeof(float) * (size_t)n_in), *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
        for (int64_t r = 0; r < n_out; r++) {
            for (int64_t i = 0; i < n_in; i++) row[i] = frand();
            quantize_row_ref(dts[d], row, w + rb * (size_t)r, n_in);
        }
        for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = frand();
        struct tensor W = {.name = "w", .dtype = dts[d], .n_dims = 2, .shape = {n_out, n_in}, .data = w,
                           .size_bytes = rb * (size_t)n_out};
        float *y = malloc(sizeof(float) * (size_t)(n_tok * n_out)), *yr = malloc(sizeof(float) * (size_t)(n_tok * n_out));
        size_t qb = kern_input_bytes(dts[d], n_tok, n_in);
        void *qx = qb ? malloc(qb) : NULL;
        if (qx) kern_prepare_input(dts[d], x, n_in, n_tok, 0, n_tok, qx);
        if (!kern_matmul_uses_qx(&W, n_tok)) {
            kern_matmul(&W, x, qx, n_tok, y, n_out, 0, 16);
            kern_matmul(&W, x, qx, n_tok, y, n_out, 16, n_out);
            kern_matmul_ref(&W, x, n_tok, yr, n_out, 0, n_out);
            double e = rel_l2(y, yr, (size_t)(n_tok * n_out));
            fprintf(stderr, "prefill %s n_in %lld: rel L2 %.2e\n", lfmd_dtype_name(dts[d]), (long long)n_in, e);
            CHECK(e < 1e-5);
        }
        free(w), free(row), free(x), free(y), free(yr), free(qx);
    }
}

int main(void) {
    fprintf(stderr, "isa: %s\n", kern_isa());
    test_attention();
    test_kv_store();
    test_elementwise();
    test_prefill_chunks();
    kern_force_ref(true);
    test_attention(); // reference path through the dispatcher
    kern_force_ref(false);
    return check_done();
}
