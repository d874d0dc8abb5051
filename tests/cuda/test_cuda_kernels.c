// Every CUDA kernel (src/cuda/kernels.cu, matvec.cu) against its CPU twin (src/model/runner.c ops,
// kern_matmul_ref, kern_get_row) over random shapes and fresh random inputs; outputs are
// poisoned (NaN) before each launch so unwritten elements fail. Needs a CUDA device.
// SPDX-License-Identifier: MIT
#include "check.h"

#include "cuda/cuda.h"
#include "cuda/kernels.h"
#include "model/internal.h"

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static int irand(int lo, int hi) { return lo + (int)(urand() * (hi - lo + 1)); }
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((urand() * 2 - 1) * s);
}

static void *dup_d(const void *h, size_t n) {
    void *d = NULL;
    if (cudaMalloc(&d, n ? n : 1) != cudaSuccess) return NULL;
    if (n) cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);
    return d;
}
static void *poison_d(size_t n) {
    void *d = NULL;
    if (cudaMalloc(&d, n) != cudaSuccess) return NULL;
    cudaMemset(d, 0xff, n);   // 0xffffffff is a NaN
    return d;
}
static void get(void *h, const void *d, size_t n) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
    CHECK(e == cudaSuccess);
    cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost);
}

static double rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        if (a[i] != a[i]) return INFINITY;
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int worst_fail;
static void expect(const char *what, double e, double tol) {
    if (!(e < tol)) {
        fprintf(stderr, "%s: rel error %.3g (tol %.1g)\n", what, e, tol);
        worst_fail++;
    }
    CHECK(e < tol);
}

static void t_matvec(void) {
    for (int it = 0; it < 12; it++) {
        // small, long-row and many-row shapes (the kernel shares rows of small matrices
        // among warps by N)
        int N = irand(1, it % 4 == 1 ? 9000 : 700), K = 8 * irand(1, it % 3 ? 300 : 1200);
        int T = it % 3 == 2 || it % 6 == 0 ? 1 : irand(1, CUK_MV_MAX_TOK);   // 1: ring kernel
        uint16_t *W = malloc((size_t)N * K * 2);
        float *X = malloc((size_t)T * K * 4), *Y = malloc((size_t)T * N * 4),
              *R = malloc((size_t)T * N * 4);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = f32_to_bf16((float)(urand() * 2 - 1));
        fill(X, (size_t)T * K, 1);
        struct tensor w = {.name = "w",
                           .dtype = LFMD_DTYPE_BF16,
                           .n_dims = 2,
                           .shape = {N, K},
                           .data = W,
                           .size_bytes = (size_t)N * K * 2};
        kern_matmul_ref(&w, X, T, R, N, 0, N);
        void *dW = dup_d(W, (size_t)N * K * 2), *dX = dup_d(X, (size_t)T * K * 4),
             *dY = poison_d((size_t)T * N * 4);
        cuk_matvec_bf16(dW, N, K, dX, T, dY, N, 0);
        get(Y, dY, (size_t)T * N * 4);
        expect("matvec", rel(Y, R, (size_t)T * N), 1e-5);
        cudaFree(dW);
        cudaFree(dX);
        cudaFree(dY);
        free(W);
        free(X);
        free(Y);
        free(R);
    }
}

static void t_embed_bf16(void) {
    int V = irand(10, 300), D = irand(1, 500), T = irand(1, 40);
    uint16_t *E = malloc((size_t)V * D * 2);
    for (size_t i = 0; i < (size_t)V * D; i++) E[i] = f32_to_bf16((float)(urand() * 2 - 1));
    int32_t *tok = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++) tok[t] = irand(0, V - 1);
    float *X = malloc((size_t)T * D * 4), *R = malloc((size_t)T * D * 4);
    struct tensor e = {
        .name = "e", .dtype = LFMD_DTYPE_BF16, .n_dims = 2, .shape = {V, D}, .data = E};
    for (int t = 0; t < T; t++) kern_get_row(&e, tok[t], R + (size_t)t * D);
    void *dE = dup_d(E, (size_t)V * D * 2), *dT = dup_d(tok, (size_t)T * 4),
         *dX = poison_d((size_t)T * D * 4);
    cuk_embed(dE, dT, T, D, dX, 0);
    get(X, dX, (size_t)T * D * 4);
    expect("embed", rel(X, R, (size_t)T * D), 1e-7);
    // f32 -> bf16 rounding
    uint16_t *B = malloc((size_t)T * D * 2);
    void *dB = poison_d((size_t)T * D * 2);
    cuk_to_bf16(dX, (int64_t)T * D, dB, 0);
    fill(R, (size_t)T * D, 3);
    cudaMemcpy(dX, R, (size_t)T * D * 4, cudaMemcpyHostToDevice);
    cuk_to_bf16(dX, (int64_t)T * D, dB, 0);
    get(B, dB, (size_t)T * D * 2);
    int bad = 0;
    for (size_t i = 0; i < (size_t)T * D; i++) bad += B[i] != f32_to_bf16(R[i]);
    CHECK_EQ(bad, 0);
    cudaFree(dE);
    cudaFree(dT);
    cudaFree(dX);
    cudaFree(dB);
    free(E);
    free(tok);
    free(X);
    free(R);
    free(B);
}

static void t_rmsnorm(void) {
    for (int it = 0; it < 6; it++) {
        int R = irand(1, 40), n = irand(1, 3000);
        bool with_add = it & 1, with_rows = it >= 4;
        float *x = malloc((size_t)R * n * 4), *a = malloc((size_t)R * n * 4),
              *w = malloc((size_t)n * 4);
        float *o = malloc((size_t)R * n * 4), *ref = malloc((size_t)R * n * 4),
              *xr = malloc((size_t)R * n * 4);
        int32_t rows[40];
        int nr = with_rows ? irand(1, R) : R;
        for (int i = 0; i < nr; i++) rows[i] = with_rows ? irand(0, R - 1) : i;
        fill(x, (size_t)R * n, 2);
        fill(a, (size_t)R * n, 1);
        fill(w, (size_t)n, 1);
        memcpy(xr, x, (size_t)R * n * 4);
        if (with_add) op_add(xr, a, (size_t)R * n);
        for (int i = 0; i < nr; i++)
            op_rmsnorm(xr + (size_t)rows[i] * n, w, 1, n, n, 1e-5f, ref + (size_t)i * n, n);
        float *dx = dup_d(x, (size_t)R * n * 4), *da = dup_d(a, (size_t)R * n * 4),
              *dw = dup_d(w, (size_t)n * 4);
        int32_t *dr = dup_d(rows, sizeof rows);
        float *dout = poison_d((size_t)R * n * 4);
        cuk_add_rmsnorm(dx, with_add ? da : NULL, dw, with_rows ? dr : NULL, nr, n, 1e-5f, dout, 0);
        get(o, dout, (size_t)nr * n * 4);
        expect("add_rmsnorm", rel(o, ref, (size_t)nr * n), 1e-5);
        if (with_add && !with_rows) {
            get(o, dx, (size_t)R * n * 4);
            expect("add_rmsnorm residual", rel(o, xr, (size_t)R * n), 1e-6);
        }
        cuk_add(dx, da, (int64_t)R * n, 0);
        memcpy(xr, x, (size_t)R * n * 4);
        if (with_add && !with_rows) op_add(xr, a, (size_t)R * n);
        op_add(xr, a, (size_t)R * n);
        get(o, dx, (size_t)R * n * 4);
        expect("add", rel(o, xr, (size_t)R * n), 1e-6);
        cudaFree(dx);
        cudaFree(da);
        cudaFree(dw);
        cudaFree(dr);
        cudaFree(dout);
        free(x);
        free(a);
        free(w);
        free(o);
        free(ref);
        free(xr);
    }
}

static void t_norm_rope(void) {
    for (int it = 0; it < 8; it++) {
        int T = irand(1, 20), H = irand(1, 12), hd = 2 * irand(1, CUK_MAX_HEAD_DIM / 2);
        bool inter = it & 1, norm = it & 2;
        size_t n = (size_t)T * H * hd;
        float *x = malloc(n * 4), *ref = malloc(n * 4), *w = malloc((size_t)hd * 4),
              *inv = malloc((size_t)hd * 2);
        int32_t *pos = malloc((size_t)T * 4);
        fill(x, n, 2);
        fill(w, (size_t)hd, 1);
        for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
        for (int t = 0; t < T; t++) pos[t] = irand(0, 5000);
        memcpy(ref, x, n * 4);
        for (int t = 0; t < T; t++) {
            float *r = ref + (size_t)t * H * hd;
            if (norm) op_rmsnorm(r, w, H, hd, hd, 1e-5f, r, hd);
            if (inter) op_rope_interleaved(r, H, hd, pos[t], inv);
            else op_rope_neox(r, H, hd, pos[t], inv);
        }
        float *dx = dup_d(x, n * 4), *dw = dup_d(w, (size_t)hd * 4),
              *di = dup_d(inv, (size_t)hd * 2);
        int32_t *dp = dup_d(pos, (size_t)T * 4);
        cuk_norm_rope(dx, T, H, hd, norm ? dw : NULL, 1e-5f, dp, di, inter, 0);
        get(x, dx, n * 4);
        expect(inter ? "rope interleaved" : "rope neox", rel(x, ref, n), 1e-5);
        cudaFree(dx);
        cudaFree(dw);
        cudaFree(di);
        cudaFree(dp);
        free(x);
        free(ref);
        free(w);
        free(inv);
        free(pos);
    }
}

static void t_swiglu(void) {
    size_t n = (size_t)irand(1, 100000);
    float *g = malloc(n * 4), *u = malloc(n * 4), *o = malloc(n * 4);
    fill(g, n, 6);
    fill(u, n, 2);
    float *dg = dup_d(g, n * 4), *du = dup_d(u, n * 4);
    cuk_swiglu(dg, du, (int64_t)n, 0);
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i]; // op_swiglu's formula
    get(o, dg, n * 4);
    expect("swiglu", rel(o, g, n), 1e-6);
    cudaFree(dg);
    cudaFree(du);
    free(g);
    free(u);
    free(o);
}

// Twin of lfm2.c conv_block's loop (the CPU code is inline there): two sequences in token
// order (two runs, or alternating), each with its own state block.
static void t_shortconv(int T) {
    int D = irand(1, 700), K = irand(2, 5), H = K - 1, slot = irand(0, 2), S = 3;
    float *z = malloc((size_t)T * 3 * D * 4), *wc = malloc((size_t)D * K * 4),
          *y = malloc((size_t)T * D * 4);
    float *ry = malloc((size_t)T * D * 4);
    size_t blk = (size_t)S * D * H;
    float *st[2] = {malloc(blk * 4), malloc(blk * 4)}, *rst[2] = {malloc(blk * 4), malloc(blk * 4)};
    int owner[64];
    fill(z, (size_t)T * 3 * D, 1);
    fill(wc, (size_t)D * K, 1);
    for (int s = 0; s < 2; s++) {
        fill(st[s], blk, 1);
        memcpy(rst[s], st[s], blk * 4);
    }
    int inter = irand(0, 1);  // 0: two runs (a batch), 1: alternating tokens
    for (int t = 0; t < T; t++) owner[t] = inter ? t % 2 : t < T / 2 ? 0 : 1;
    for (int t = 0; t < T; t++) {
        const float *B = z + (size_t)t * 3 * D, *C = B + D, *xx = B + 2 * D;
        float *stt = rst[owner[t]] + (size_t)slot * D * H;
        for (int k = 0; k < D; k++) {
            float bx = B[k] * xx[k];
            const float *wk = wc + (size_t)k * K;
            float *sk = stt + (size_t)k * H;
            float acc = wk[H] * bx;
            for (int j = 0; j < H; j++) acc += wk[j] * sk[j];
            for (int j = 0; j + 1 < H; j++) sk[j] = sk[j + 1];
            sk[H - 1] = bx;
            ry[(size_t)t * D + k] = C[k] * acc;
        }
    }
    float *dz = dup_d(z, (size_t)T * 3 * D * 4), *dwc = dup_d(wc, (size_t)D * K * 4),
          *dy = poison_d((size_t)T * D * 4);
    float *ds[2] = {dup_d(st[0], blk * 4), dup_d(st[1], blk * 4)};
    float *ptrs[64];
    for (int t = 0; t < T; t++) ptrs[t] = ds[owner[t]];
    float **dptr = dup_d(ptrs, (size_t)T * sizeof(float *));
    cuk_shortconv(dz, T, D, K, dwc, dptr, slot, dy, 0);
    get(y, dy, (size_t)T * D * 4);
    expect("shortconv", rel(y, ry, (size_t)T * D), 1e-6);
    for (int s = 0; s < 2; s++) {
        get(st[s], ds[s], blk * 4);
        expect("shortconv state", rel(st[s], rst[s], blk), 1e-7);
        cudaFree(ds[s]);
        free(st[s]);
        free(rst[s]);
    }
    cudaFree(dz);
    cudaFree(dwc);
    cudaFree(dy);
    cudaFree(dptr);
    free(z);
    free(wc);
    free(y);
    free(ry);
}

// kv_store + attention against a double-precision causal GQA attention (the math of
// op_attention), two sequences with different contexts, several split counts.
static void t_attention(void) {
    for (int it = 0; it < 6; it++) {
        int KVH = irand(1, 4), rep = irand(1, 4), H = KVH * rep,
            hd = 2 * irand(1, CUK_MAX_HEAD_DIM / 2);
        if (it == 0) hd = 64;
        int kvd = KVH * hd, slot = irand(0, 1), nslots = 2;
        int nctx[2] = {irand(8, 700), irand(8, 300)}, past[2];
        int T = irand(1, 8);
        past[0] = irand(0, nctx[0] - T);
        past[1] = irand(0, nctx[1] - T);
        int owner[8], pos[8];
        for (int t = 0; t < T; t++) {
            owner[t] = t < (T + 1) / 2 ? 0 : 1;
            pos[t] = past[owner[t]] + (owner[t] == 0 ? t : t - (T + 1) / 2);
        }
        float *cache[2], *dcache[2];
        for (int s = 0; s < 2; s++) {
            size_t n = (size_t)nslots * 2 * nctx[s] * kvd;
            cache[s] = malloc(n * 4);
            fill(cache[s], n, 1);
            dcache[s] = dup_d(cache[s], n * 4);
        }
        float *q = malloc((size_t)T * H * hd * 4), *k = malloc((size_t)T * kvd * 4),
              *v = malloc((size_t)T * kvd * 4);
        fill(q, (size_t)T * H * hd, 1.5f);
        fill(k, (size_t)T * kvd, 1);
        fill(v, (size_t)T * kvd, 1);
        for (int t = 0; t < T; t++) {  // CPU op_kv_store layout
            int s = owner[t];
            float *K = cache[s] + (size_t)slot * 2 * nctx[s] * kvd, *V = K + (size_t)nctx[s] * kvd;
            memcpy(K + (size_t)pos[t] * kvd, k + (size_t)t * kvd, (size_t)kvd * 4);
            memcpy(V + (size_t)pos[t] * kvd, v + (size_t)t * kvd, (size_t)kvd * 4);
        }
        float *ref = malloc((size_t)T * H * hd * 4), *out = malloc((size_t)T * H * hd * 4);
        double *sc = malloc(sizeof(double) * 1024);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                int s = owner[t], g = h / rep, len = pos[t] + 1;
                const float *K = cache[s] + (size_t)slot * 2 * nctx[s] * kvd + (size_t)g * hd;
                const float *V = K + (size_t)nctx[s] * kvd;
                const float *qh = q + ((size_t)t * H + h) * hd;
                double mx = -1e300, l = 0;
                for (int p = 0; p < len; p++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++) d += (double)qh[e] * K[(size_t)p * kvd + e];
                    sc[p] = d / sqrt((double)hd);
                    if (sc[p] > mx) mx = sc[p];
                }
                for (int p = 0; p < len; p++) l += exp(sc[p] - mx);
                for (int e = 0; e < hd; e++) {
                    double a = 0;
                    for (int p = 0; p < len; p++) a += exp(sc[p] - mx) * V[(size_t)p * kvd + e];
                    ref[((size_t)t * H + h) * hd + e] = (float)(a / l);
                }
            }
        float *ptrs[8];
        int32_t nc[8];
        for (int t = 0; t < T; t++) {
            ptrs[t] = dcache[owner[t]];
            nc[t] = nctx[owner[t]];
        }
        float **dp = dup_d(ptrs, sizeof ptrs);
        int32_t *dn = dup_d(nc, sizeof nc), *dpos = dup_d(pos, sizeof pos);
        float *dq = dup_d(q, (size_t)T * H * hd * 4), *dk = dup_d(k, (size_t)T * kvd * 4),
              *dv = dup_d(v, (size_t)T * kvd * 4);
        cuk_kv_store(dk, dv, T, kvd, dp, dn, dpos, slot, 0);
        float *part = poison_d((size_t)T * H * CUK_MAX_SPLIT * (hd + 2) * 4);
        float *dout = poison_d((size_t)T * H * hd * 4);
        int splits[3] = {1, irand(2, 7), CUK_MAX_SPLIT};
        unsigned *ticket = NULL;
        cudaMalloc((void **)&ticket, (size_t)T * H * sizeof(unsigned));
        cudaMemset(ticket, 0, (size_t)T * H * sizeof(unsigned));
        for (int si = 0; si < 6; si++) {   // merge kernel, then merged by the last split block
            cudaMemset(dout, 0xff, (size_t)T * H * hd * 4);
            cuk_attention(dq, T, H, KVH, hd, dp, dn, dpos, slot, splits[si % 3], part,
                          si < 3 ? NULL : ticket, dout, 0);
            get(out, dout, (size_t)T * H * hd * 4);
            expect(si < 3 ? "attention" : "attention (merged in place)",
                   rel(out, ref, (size_t)T * H * hd), 1e-5);
        }
        unsigned tk[8 * 16];
        get(tk, ticket, (size_t)T * H * sizeof(unsigned));
        int nz = 0;
        for (int i = 0; i < T * H; i++) nz += tk[i] != 0;
        CHECK_EQ(nz, 0);   // counters left at zero for the next launch
        cudaFree(ticket);
        for (int s = 0; s < 2; s++) {   // the stored rows match the CPU layout
            size_t n = (size_t)nslots * 2 * nctx[s] * kvd;
            float *back = malloc(n * 4);
            get(back, dcache[s], n * 4);
            expect("kv_store", rel(back, cache[s], n), 1e-7);
            free(back);
            cudaFree(dcache[s]);
            free(cache[s]);
        }
        cudaFree(dp);
        cudaFree(dn);
        cudaFree(dpos);
        cudaFree(dq);
        cudaFree(dk);
        cudaFree(dv);
        cudaFree(part);
        cudaFree(dout);
        free(q);
        free(k);
        free(v);
        free(ref);
        free(out);
        free(sc);
    }
}

// Gate|up SwiGLU and the hi + lo half sum (the op_swiglu formula; plain sums).
static void t_swiglu_cat_halves(void) {
    int T = irand(1, 9), F = irand(1, 3000), N = irand(1, 3000), ld = N + irand(0, 5);
    float *gu = malloc((size_t)T * 2 * F * 4), *o = malloc((size_t)T * F * 4),
          *r = malloc((size_t)T * F * 4);
    fill(gu, (size_t)T * 2 * F, 6);
    for (int t = 0; t < T; t++)
        for (int f = 0; f < F; f++) {
            float a = gu[(size_t)t * 2 * F + f];
            r[(size_t)t * F + f] = a / (1.0f + expf(-a)) * gu[(size_t)t * 2 * F + F + f];
        }
    float *dgu = dup_d(gu, (size_t)T * 2 * F * 4), *dout = poison_d((size_t)T * F * 4);
    cuk_swiglu_cat(dgu, T, F, dout, 0);
    get(o, dout, (size_t)T * F * 4);
    expect("swiglu_cat", rel(o, r, (size_t)T * F), 1e-6);
    float *C = malloc((size_t)2 * T * N * 4), *Y = malloc((size_t)T * ld * 4),
          *R = malloc((size_t)T * N * 4);
    fill(C, (size_t)2 * T * N, 1);
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++)
            R[(size_t)t * N + n] = C[(size_t)t * N + n] + C[(size_t)(T + t) * N + n];
    float *dC = dup_d(C, (size_t)2 * T * N * 4), *dY = poison_d((size_t)T * ld * 4);
    cuk_add_halves(dC, T, N, dY, ld, 0, 0);
    get(Y, dY, (size_t)T * ld * 4);
    for (int t = 0; t < T; t++) memmove(Y + (size_t)t * N, Y + (size_t)t * ld, (size_t)N * 4);
    expect("add_halves", rel(Y, R, (size_t)T * N), 1e-7);
    // accumulate: Y += hi + lo (Y = 1 everywhere first)
    float *ones = malloc((size_t)T * ld * 4);
    for (size_t i = 0; i < (size_t)T * ld; i++) ones[i] = 1.0f;
    cudaMemcpy(dY, ones, (size_t)T * ld * 4, cudaMemcpyHostToDevice);
    cuk_add_halves(dC, T, N, dY, ld, 1, 0);
    get(Y, dY, (size_t)T * ld * 4);
    for (int t = 0; t < T; t++) memmove(Y + (size_t)t * N, Y + (size_t)t * ld, (size_t)N * 4);
    for (size_t i = 0; i < (size_t)T * N; i++) R[i] += 1.0f;
    expect("add_halves accumulate", rel(Y, R, (size_t)T * N), 1e-7);
    free(ones);
    cudaFree(dgu);
    cudaFree(dout);
    cudaFree(dC);
    cudaFree(dY);
    free(gu);
    free(o);
    free(r);
    free(C);
    free(Y);
    free(R);
}

static void t_bias(void) {
    int T = irand(1, 10), n = irand(1, 2000);
    float *y = malloc((size_t)T * n * 4), *b = malloc((size_t)n * 4),
          *o = malloc((size_t)T * n * 4);
    fill(y, (size_t)T * n, 1);
    fill(b, (size_t)n, 1);
    float *dy = dup_d(y, (size_t)T * n * 4), *db = dup_d(b, (size_t)n * 4);
    cuk_add_bias(dy, db, T, n, 0);
    for (int t = 0; t < T; t++) op_add(y + (size_t)t * n, b, (size_t)n);
    get(o, dy, (size_t)T * n * 4);
    expect("add_bias", rel(o, y, (size_t)T * n), 1e-7);
    cudaFree(dy);
    cudaFree(db);
    free(y);
    free(b);
    free(o);
}

// Matvec epilogues (store, accumulate, SwiGLU of row pairs) and the fused RMSNorm prologue
// (optionally on gathered rows) against op_rmsnorm + kern_matmul_ref + op_swiglu's formula.
static void t_matvec_modes(void) {
    for (int it = 0; it < 12; it++) {
        int mode = it % 3, norm = (it / 3) % 2, gather = it >= 6 && norm;
        int K = 8 * irand(1, 512), T = it % 2 ? 1 : irand(1, CUK_MV_MAX_TOK),
            N = 2 * irand(1, it % 4 == 0 ? 4600 : 600);
        while (norm && !cuk_matvec_norm_fits(T, K)) T--;
        if (T < 1) continue;
        int R = gather ? T + 3 : T;   // rows of x to gather from
        uint16_t *W = malloc((size_t)N * K * 2);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = f32_to_bf16((float)(urand() * 2 - 1));
        float *X = malloc((size_t)R * K * 4), *Xn = malloc((size_t)T * K * 4),
              *nw = malloc((size_t)K * 4);
        float *P = malloc((size_t)T * N * 4), *Y0 = malloc((size_t)T * N * 4),
              *Ref = malloc((size_t)T * N * 4);
        float *Y = malloc((size_t)T * N * 4);
        int32_t rows[CUK_MV_MAX_TOK];
        fill(X, (size_t)R * K, 2);
        fill(nw, (size_t)K, 1);
        fill(Y0, (size_t)T * N, 1);
        for (int t = 0; t < T; t++) {
            rows[t] = gather ? irand(0, R - 1) : t;
            float *src = X + (size_t)rows[t] * K;
            if (norm) op_rmsnorm(src, nw, 1, K, K, 1e-5f, Xn + (size_t)t * K, K);
            else memcpy(Xn + (size_t)t * K, src, (size_t)K * 4);
        }
        struct tensor w = {.name = "w",
                           .dtype = LFMD_DTYPE_BF16,
                           .n_dims = 2,
                           .shape = {N, K},
                           .data = W,
                           .size_bytes = (size_t)N * K * 2};
        kern_matmul_ref(&w, Xn, T, P, N, 0, N);
        int ldy = mode == CUK_MV_SWIGLU ? N / 2 : N, nout = T * ldy;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < ldy; r++) {
                size_t o = (size_t)t * ldy + r;
                if (mode == CUK_MV_STORE) Ref[o] = P[(size_t)t * N + r];
                else if (mode == CUK_MV_ACC) Ref[o] = Y0[o] + P[(size_t)t * N + r];
                else {
                    float a = P[(size_t)t * N + 2 * r];
                    Ref[o] = a / (1.0f + expf(-a)) * P[(size_t)t * N + 2 * r + 1];
                }
            }
        void *dW = dup_d(W, (size_t)N * K * 2), *dX = dup_d(X, (size_t)R * K * 4),
             *dn = dup_d(nw, (size_t)K * 4);
        void *dr = dup_d(rows, sizeof rows);
        void *dY = mode == CUK_MV_ACC ? dup_d(Y0, (size_t)nout * 4) : poison_d((size_t)nout * 4);
        if (it % 2) cuk_mv_prefetch_next(dW, (size_t)N * K * 2);   // tail prefetch (a hint only)
        cuk_matvec(dW, N, K, dX, T, dY, ldy, mode, norm ? dn : NULL, gather ? dr : NULL, 1e-5f, 0);
        get(Y, dY, (size_t)nout * 4);
        const char *what[3] = {"matvec store", "matvec accumulate", "matvec swiglu"};
        expect(what[mode], rel(Y, Ref, (size_t)nout), norm ? 2e-5 : 1e-5);
        cudaFree(dW);
        cudaFree(dX);
        cudaFree(dn);
        cudaFree(dr);
        cudaFree(dY);
        free(W);
        free(X);
        free(Xn);
        free(nw);
        free(P);
        free(Y0);
        free(Ref);
        free(Y);
    }
}

// A random 4-bit tensor [N, K] of kind k (0: MLX q4 with group gs and scale dtype sdt, 1: Q4_0,
// 2: Q4_1, 3: Q4_K) quantized from uniform floats by the CPU quantizers; *mem gets what to free.
static struct tensor q4_tensor(int kind, int N, int K, int gs, enum lfmd_dtype sdt, void **mem) {
    struct tensor w = {.name = "wq", .n_dims = 2, .shape = {N, K}};
    float *src = malloc((size_t)K * 4);
    if (kind == 0) {
        size_t ss = sdt == LFMD_DTYPE_F32 ? 4 : 2, ng = (size_t)K / gs;
        uint8_t *b = malloc((size_t)N * K / 2 + 2 * (size_t)N * ng * ss);
        uint8_t *sc = b + (size_t)N * K / 2, *bi = sc + (size_t)N * ng * ss;
        for (int r = 0; r < N; r++) {
            fill(src, (size_t)K, (float)(0.5 + urand()));
            CHECK(quantize_mlx_ref(src, K, 4, gs, sdt, (uint32_t *)(b + (size_t)r * K / 2),
                                   sc + (size_t)r * ng * ss, bi + (size_t)r * ng * ss) == 0);
        }
        w.dtype = LFMD_DTYPE_MLX_Q4;
        w.data = b;
        w.scales = sc;
        w.biases = bi;
        w.scale_dtype = sdt;
        w.group_size = gs;
        w.bits = 4;
        w.size_bytes = (size_t)N * K / 2;
        *mem = b;
    } else {
        w.dtype = kind == 1 ? LFMD_DTYPE_Q4_0 : kind == 2 ? LFMD_DTYPE_Q4_1 : LFMD_DTYPE_Q4_K;
        size_t rb = kern_row_bytes(w.dtype, K);
        uint8_t *b = malloc((size_t)N * rb);
        for (int r = 0; r < N; r++) {
            fill(src, (size_t)K, (float)(0.5 + urand()));
            CHECK(quantize_row_ref(w.dtype, src, b + (size_t)r * rb, K) == 0);
        }
        w.data = b;
        w.size_bytes = (size_t)N * rb;
        *mem = b;
    }
    free(src);
    return w;
}

// Host twin of the integer activations of k_mvq8 / k_mvr (kern_common.cuh q8_codes /
// q8_unit_store), two int8 levels per 32-element unit: dd = amax / 32258 (amax over the unit),
// q1 = rint(x 127 / amax), q2 = rint((x - 254 dd q1) / dd) clamped to [-127, 127] (0 when amax
// is 0); xd = dd (254 q1 + q2), the activations the kernel multiplies.
static void q16_units_ref(const float *x, int K, float *xd) {
    for (int u = 0; u < K / 32; u++) {
        const float *xu = x + 32 * u;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xu[j]));
        float dd = amax / 32258.0f, v = 254.0f * dd;
        float i1 = amax > 0 ? 127.0f / amax : 0.0f, i2 = amax > 0 ? 32258.0f / amax : 0.0f;
        for (int j = 0; j < 32; j++) {
            int q1 = (int)rintf(xu[j] * i1);
            float r = fmaf(-v, (float)q1, xu[j]);
            int q2 = (int)rintf(r * i2);
            q2 = q2 > 127 ? 127 : q2 < -127 ? -127 : q2;
            xd[32 * u + j] = dd * (float)(254 * q1 + q2);
        }
    }
}

// A 4-bit tensor in the device layout (cuda_q4_pack_row): group size, scale-bias kind, bytes of
// a row's scale-bias pairs, codes [N, K / 8] and pairs [N, sbb bytes] (malloc'd).
static void q4_pack(const struct tensor *w, int N, int K, int *qgs, int *sbk, size_t *sbb,
                    uint32_t **codes, uint8_t **sb) {
    CHECK(cuda_q4_format(w, qgs, sbk) == 1);
    *sbb = (size_t)(K / *qgs) * (*sbk == CUK_SB_F32 ? 8 : 4);
    *codes = malloc((size_t)N * K / 2);
    *sb = malloc((size_t)N * *sbb);
    for (int r = 0; r < N; r++)
        cuda_q4_pack_row(w, r, *sbk, *codes + (size_t)r * K / 8, *sb + (size_t)r * *sbb);
}

// The greedy token of n logits as k_argmax picks it: the first strict maximum above -inf (NaN
// never), 0 when there is none.
static int argmax_ref(const float *x, int n) {
    int best = 0;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

static double worst_q8_vs_f32;   // integer-activation 4-bit products vs f32 activations
static int n_fused_argmax;       // one-row products that wrote the fused argmax (ring launches)

// The fused argmax of a one-token product (cuk_mv_argmax_next) against the host's argmax of the
// outputs it stored: first maximum, NaN and -inf never chosen (k_argmax's rule). Three launches
// on one state (it must come back zero); in ACC mode the last starts from a residual with a NaN,
// an -inf and a tie of two rows at 1e30 (1e30 + a product rounds to 1e30): the first must win.
// Products the ring does not take leave cuk_mv_argmax_done() false: then k_argmax runs instead,
// as in the backend.
static void fused_argmax_check(const struct cuk_q4 *q, int N, int K, const void *dX,
                               const float *Y0, int mode, const void *dn, const void *dr) {
    unsigned long long zero[2] = {0, 0};
    void *dst = dup_d(zero, sizeof zero);
    int32_t am = -7, tie = -1;
    void *dam = dup_d(&am, sizeof am);
    float *Yi = malloc((size_t)N * 4), *Yg = malloc((size_t)N * 4);
    for (int rep = 0; rep < 3; rep++) {
        am = -7;   // each launch must write it
        cudaMemcpy(dam, &am, sizeof am, cudaMemcpyHostToDevice);
        memcpy(Yi, Y0, (size_t)N * 4);
        if (mode == CUK_MV_ACC && rep == 2 && N >= 4) {
            int a = irand(0, N - 4), b = irand(a + 1, N - 3), c = irand(b + 1, N - 2);
            Yi[a] = NAN;
            Yi[b] = -INFINITY;
            Yi[c] = Yi[N - 1] = 1e30f;
            tie = c;
        }
        void *dY = mode == CUK_MV_ACC ? dup_d(Yi, (size_t)N * 4) : poison_d((size_t)N * 4);
        cuk_mv_argmax_next(dst, dam);
        cuk_matvec_q4(q, N, K, dX, 1, dY, N, mode, dn, dr, 1e-5f, 0);
        const int done = cuk_mv_argmax_done();
        if (!done) cuk_argmax(dY, 1, N, dam, 0);
        n_fused_argmax += done;
        get(Yg, dY, (size_t)N * 4);
        get(&am, dam, sizeof am);
        CHECK_EQ(am, argmax_ref(Yg, N));
        if (tie >= 0) CHECK_EQ(am, tie);
        cudaFree(dY);
    }
    unsigned long long st[2];
    get(st, dst, sizeof st);
    CHECK(st[0] == 0 && st[1] == 0);
    free(Yi);
    free(Yg);
    cudaFree(dst);
    cudaFree(dam);
}

// 4-bit matvec (every mode, norm prologue, gathered rows) and the bf16 tile dequantizer vs
// kern_matmul_ref / kern_get_row on the same quantized tensor.
static void t_matvec_q4(void) {
    for (int it = 0; it < 16; it++) {
        int kind = it % 4, mode = (it / 4) % 3, norm = (it / 2) % 2, gather = norm && it >= 8;
        int gs = kind == 0 ? 32 << irand(0, 2) : 32;
        enum lfmd_dtype sdts[3] = {LFMD_DTYPE_BF16, LFMD_DTYPE_F16, LFMD_DTYPE_F32};
        enum lfmd_dtype sdt = sdts[irand(0, 2)];
        int unit = kind == 3 ? 256 : gs;
        int K = unit * irand(1, kind == 3 ? 12 : 3072 / unit), T = irand(1, CUK_MV_MAX_TOK);
        int N = 2 * irand(1, it % 5 == 0 ? 12000 : it % 5 == 1 ? 3000 : 400);
        if (it % 2 == 0 && kind != 3) {   // the ring kernel's shapes (whole 1024-element blocks)
            T = 1;
            K = 1024 * irand(1, it % 4 == 0 ? 8 : 3);
        }
        while (norm && !cuk_matvec_norm_fits(T, K)) T--;
        if (T < 1) continue;
        int R = gather ? T + 3 : T;
        void *mem = NULL;
        struct tensor w = q4_tensor(kind, N, K, gs, sdt, &mem);
        int qgs = 0, sbk = 0;
        size_t sbb = 0;
        uint32_t *codes = NULL;
        uint8_t *sb = NULL;
        q4_pack(&w, N, K, &qgs, &sbk, &sbb, &codes, &sb);
        float *X = malloc((size_t)R * K * 4), *Xn = malloc((size_t)T * K * 4),
              *nw = malloc((size_t)K * 4);
        float *P = malloc((size_t)T * N * 4), *Y0 = malloc((size_t)T * N * 4),
              *Ref = malloc((size_t)T * N * 4);
        float *Y = malloc((size_t)T * N * 4);
        int32_t rows[CUK_MV_MAX_TOK];
        fill(X, (size_t)R * K, 2);
        fill(nw, (size_t)K, 1);
        fill(Y0, (size_t)T * N, 1);
        for (int t = 0; t < T; t++) {
            rows[t] = gather ? irand(0, R - 1) : t;
            float *src = X + (size_t)rows[t] * K;
            if (norm) op_rmsnorm(src, nw, 1, K, K, 1e-5f, Xn + (size_t)t * K, K);
            else memcpy(Xn + (size_t)t * K, src, (size_t)K * 4);
        }
        // q8: the kernel multiplies integer activations (host twin q16_units_ref); the
        // reference on those is exact up to summation order, the one on f32 activations shows
        // what the quantization costs.
        const bool q8 = cuk_matvec_q8_used(T, K);
        float *Ref32 = malloc((size_t)T * N * 4);
        for (int pass = q8 ? 0 : 1; pass < 2; pass++) {
            float *Xq = malloc((size_t)T * K * 4);
            for (int t = 0; t < T; t++) {
                if (pass == 0) q16_units_ref(Xn + (size_t)t * K, K, Xq + (size_t)t * K);
                else memcpy(Xq + (size_t)t * K, Xn + (size_t)t * K, (size_t)K * 4);
            }
            kern_matmul_ref(&w, Xq, T, P, N, 0, N);
            free(Xq);
            int ld = mode == CUK_MV_SWIGLU ? N / 2 : N;
            float *dst = pass == 0 ? Ref : Ref32;
            for (int t = 0; t < T; t++)
                for (int r = 0; r < ld; r++) {
                    size_t o = (size_t)t * ld + r;
                    if (mode == CUK_MV_STORE) dst[o] = P[(size_t)t * N + r];
                    else if (mode == CUK_MV_ACC) dst[o] = Y0[o] + P[(size_t)t * N + r];
                    else {
                        float a = P[(size_t)t * N + 2 * r];
                        dst[o] = a / (1.0f + expf(-a)) * P[(size_t)t * N + 2 * r + 1];
                    }
                }
        }
        if (!q8) memcpy(Ref, Ref32, (size_t)T * N * 4);
        int ldy = mode == CUK_MV_SWIGLU ? N / 2 : N, nout = T * ldy;
        void *dq = dup_d(codes, (size_t)N * K / 2), *dsb = dup_d(sb, (size_t)N * sbb);
        void *dX = dup_d(X, (size_t)R * K * 4), *dn = dup_d(nw, (size_t)K * 4),
             *dr = dup_d(rows, sizeof rows);
        void *dY = mode == CUK_MV_ACC ? dup_d(Y0, (size_t)nout * 4) : poison_d((size_t)nout * 4);
        struct cuk_q4 q = {dq, dsb, sbk, qgs};
        cuk_mv_prefetch_next(dq, (size_t)N * K / 2);   // the tail-prefetch path (a hint only)
        cuk_matvec_q4(&q, N, K, dX, T, dY, ldy, mode, norm ? dn : NULL, gather ? dr : NULL, 1e-5f,
                      0);
        get(Y, dY, (size_t)nout * 4);
        char what[112];
        snprintf(what, sizeof what,
                 "q4 matvec%s kind %d gs %d sbk %d mode %d norm %d (N %d K %d T %d)",
                 q8 ? " (int act)" : "", kind, qgs, sbk, mode, norm, N, K, T);
        // integer path: f32 summation order, plus (norm) the device normalization may round one
        // activation to the neighbouring code
        expect(what, rel(Y, Ref, (size_t)nout), q8 ? (norm ? 1e-4 : 2e-5) : 3e-5);
        if (q8) {
            // activation rounding: |x - x'| <= dd / 2 = amax / 64516 per element (about 1e-5
            // relative L2 on these uniform activations); 1e-4 leaves room for summation order
            double e32 = rel(Y, Ref32, (size_t)nout);
            if (e32 > worst_q8_vs_f32) worst_q8_vs_f32 = e32;
            snprintf(what, sizeof what, "q4 matvec (int act) vs f32 activations (N %d K %d T %d)",
                     N, K, T);
            expect(what, e32, 1e-4);
        }
        free(Ref32);
        if (T == 1 && mode != CUK_MV_SWIGLU)
            fused_argmax_check(&q, N, K, dX, Y0, mode, norm ? dn : NULL, gather ? dr : NULL);
        // dequantized bf16 tile of rows [r0, r0 + n)
        int r0 = irand(0, N - 1), n = irand(1, N - r0);
        uint16_t *B = malloc((size_t)n * K * 2), *Bl = malloc((size_t)n * K * 2);
        float *Bf = malloc((size_t)n * K * 4), *Rf = malloc((size_t)n * K * 4);
        void *dB = poison_d((size_t)n * K * 2), *dBl = poison_d((size_t)n * K * 2);
        cuk_q4_to_bf16(&q, K, r0, n, dB, dBl, 0);
        get(B, dB, (size_t)n * K * 2);
        get(Bl, dBl, (size_t)n * K * 2);
        for (int r = 0; r < n; r++) kern_get_row(&w, r0 + r, Rf + (size_t)r * K);
        for (size_t i = 0; i < (size_t)n * K; i++) Bf[i] = bf16_to_f32(B[i]);
        expect("q4 -> bf16 tile", rel(Bf, Rf, (size_t)n * K), 4e-3);
        for (size_t i = 0; i < (size_t)n * K; i++) Bf[i] += bf16_to_f32(Bl[i]);
        expect("q4 -> bf16 hi + lo tile", rel(Bf, Rf, (size_t)n * K), 2e-5);
        free(Bl);
        cudaFree(dBl);
        // embedding gather of T random rows
        int32_t tok[CUK_MV_MAX_TOK];
        for (int t = 0; t < T; t++) tok[t] = irand(0, N - 1);
        void *dt = dup_d(tok, sizeof tok), *dE = poison_d((size_t)T * K * 4);
        float *Eg = malloc((size_t)T * K * 4), *Er = malloc((size_t)T * K * 4);
        cuk_embed_q4(&q, dt, T, K, dE, 0);
        get(Eg, dE, (size_t)T * K * 4);
        for (int t = 0; t < T; t++) kern_get_row(&w, tok[t], Er + (size_t)t * K);
        expect("q4 embed", rel(Eg, Er, (size_t)T * K), 1e-6);
        free(Eg);
        free(Er);
        cudaFree(dt);
        cudaFree(dE);
        cudaFree(dB);
        free(B);
        free(Bf);
        free(Rf);
        cudaFree(dq);
        cudaFree(dsb);
        cudaFree(dX);
        cudaFree(dn);
        cudaFree(dr);
        cudaFree(dY);
        free(mem);
        free(codes);
        free(sb);
        free(X);
        free(Xn);
        free(nw);
        free(P);
        free(Y0);
        free(Ref);
        free(Y);
    }
}

// in_proj product + short conv in one launch (cuk_matvec_conv, cuk_matvec_q4_conv) vs
// op_rmsnorm + kern_matmul_ref (on the integer activations of the q8 path when taken) + the
// CPU conv loop (as t_shortconv): outputs and both sequences' states.
static void t_matvec_conv(void) {
    for (int it = 0; it < 8; it++) {
        int q4 = it % 2, norm = it < 6, gs = 32 << irand(0, 1);
        int D = q4 ? gs * irand(1, 1536 / gs) : 8 * irand(1, 300), N = 3 * D;
        int T = irand(1, CUK_MV_MAX_TOK), L = irand(2, 4), H = L - 1, slot = irand(0, 1), S = 2;
        if ((it / 2) % 2) {   // the ring kernel (4-bit: whole 1024-element blocks)
            T = 1;
            if (q4) D = 1024 * irand(1, 2), N = 3 * D;
        }
        while (norm && !cuk_matvec_norm_fits(T, D)) T--;
        if (T < 1) continue;
        const bool q8 = q4 && cuk_matvec_q8_used(T, D);
        void *mem = NULL;
        struct tensor w;
        uint32_t *codes = NULL;
        uint8_t *sbh = NULL;
        uint16_t *Wb = NULL;
        int qgs = 0, sbk = 0;
        size_t sbb = 0;
        if (q4) {
            w = q4_tensor(0, N, D, gs, LFMD_DTYPE_BF16, &mem);
            CHECK(cuda_q4_format(&w, &qgs, &sbk) == 1);
            sbb = (size_t)(D / qgs) * (sbk == CUK_SB_F32 ? 8 : 4);
            codes = malloc((size_t)N * D / 2);
            sbh = malloc((size_t)N * sbb);
            for (int r = 0; r < N; r++)
                cuda_q4_pack_row(&w, r, sbk, codes + (size_t)r * D / 8, sbh + (size_t)r * sbb);
        } else {
            Wb = malloc((size_t)N * D * 2);
            for (size_t i = 0; i < (size_t)N * D; i++)
                Wb[i] = f32_to_bf16((float)(urand() * 2 - 1));
            w = (struct tensor){.name = "w", .dtype = LFMD_DTYPE_BF16, .n_dims = 2,
                                .shape = {N, D}, .data = Wb, .size_bytes = (size_t)N * D * 2};
        }
        float *X = malloc((size_t)T * D * 4), *Xn = malloc((size_t)T * D * 4),
              *nw = malloc((size_t)D * 4), *wc = malloc((size_t)D * L * 4);
        float *z = malloc((size_t)T * N * 4), *ry = malloc((size_t)T * D * 4),
              *y = malloc((size_t)T * D * 4);
        size_t blk = (size_t)S * D * H;
        float *st[2] = {malloc(blk * 4), malloc(blk * 4)};
        float *rst[2] = {malloc(blk * 4), malloc(blk * 4)};
        fill(X, (size_t)T * D, 2);
        fill(nw, (size_t)D, 1);
        fill(wc, (size_t)D * L, 1);
        for (int q = 0; q < 2; q++) {
            fill(st[q], blk, 1);
            memcpy(rst[q], st[q], blk * 4);
        }
        int owner[CUK_MV_MAX_TOK], inter = irand(0, 1);
        for (int t = 0; t < T; t++) owner[t] = inter ? t % 2 : t < T / 2 ? 0 : 1;
        for (int t = 0; t < T; t++) {
            if (norm) op_rmsnorm(X + (size_t)t * D, nw, 1, D, D, 1e-5f, Xn + (size_t)t * D, D);
            else memcpy(Xn + (size_t)t * D, X + (size_t)t * D, (size_t)D * 4);
            if (q8) q16_units_ref(Xn + (size_t)t * D, D, Xn + (size_t)t * D);
        }
        kern_matmul_ref(&w, Xn, T, z, N, 0, N);
        for (int t = 0; t < T; t++) {   // the CPU conv loop, tokens in order
            const float *B = z + (size_t)t * N, *C = B + D, *xx = B + 2 * D;
            float *stt = rst[owner[t]] + (size_t)slot * D * H;
            for (int k = 0; k < D; k++) {
                float bx = B[k] * xx[k];
                const float *wk = wc + (size_t)k * L;
                float *sk = stt + (size_t)k * H;
                float acc = wk[H] * bx;
                for (int j = 0; j < H; j++) acc += wk[j] * sk[j];
                for (int j = 0; j + 1 < H; j++) sk[j] = sk[j + 1];
                sk[H - 1] = bx;
                ry[(size_t)t * D + k] = C[k] * acc;
            }
        }
        float *dX = dup_d(X, (size_t)T * D * 4), *dn = dup_d(nw, (size_t)D * 4),
              *dwc = dup_d(wc, (size_t)D * L * 4), *dy = poison_d((size_t)T * D * 4);
        float *ds[2] = {dup_d(st[0], blk * 4), dup_d(st[1], blk * 4)};
        float *ptrs[CUK_MV_MAX_TOK];
        for (int t = 0; t < T; t++) ptrs[t] = ds[owner[t]];
        float **dptr = dup_d(ptrs, (size_t)T * sizeof(float *));
        struct cuk_conv cv = {dwc, dptr, slot, L};
        void *dq = NULL, *dsb = NULL, *dW = NULL;
        if (q4) {
            dq = dup_d(codes, (size_t)N * D / 2);
            dsb = dup_d(sbh, (size_t)N * sbb);
            struct cuk_q4 q = {dq, dsb, sbk, qgs};
            cuk_matvec_q4_conv(&q, N, D, dX, T, dy, D, norm ? dn : NULL, NULL, 1e-5f, &cv, 0);
        } else {
            dW = dup_d(Wb, (size_t)N * D * 2);
            cuk_matvec_conv(dW, N, D, dX, T, dy, D, norm ? dn : NULL, NULL, 1e-5f, &cv, 0);
        }
        get(y, dy, (size_t)T * D * 4);
        char what[96];
        snprintf(what, sizeof what, "matvec + conv%s%s (D %d T %d L %d)", q4 ? " q4" : "",
                 q8 ? " int act" : "", D, T, L);
        double tol = q8 && norm ? 1e-4 : 2e-5;   // q8 + norm: an activation may round to the
        expect(what, rel(y, ry, (size_t)T * D), tol);   // neighbouring code (see t_matvec_q4)
        for (int q = 0; q < 2; q++) {
            get(st[q], ds[q], blk * 4);
            expect("matvec + conv state", rel(st[q], rst[q], blk), tol);
            cudaFree(ds[q]);
            free(st[q]);
            free(rst[q]);
        }
        cudaFree(dX);
        cudaFree(dn);
        cudaFree(dwc);
        cudaFree(dy);
        cudaFree(dptr);
        cudaFree(dq);
        cudaFree(dsb);
        cudaFree(dW);
        free(mem);
        free(codes);
        free(sbh);
        free(Wb);
        free(X);
        free(Xn);
        free(nw);
        free(wc);
        free(z);
        free(ry);
        free(y);
    }
}

// Fused q|k|v head norm + RoPE + KV store vs op_rmsnorm, op_rope_*, op_kv_store's layout.
static void t_qkv_rope_store(void) {
    for (int it = 0; it < 6; it++) {
        int KVH = irand(1, 4), H = KVH * irand(1, 4), hd = 2 * irand(1, CUK_MAX_HEAD_DIM / 2);
        int T = irand(1, 12), kvd = KVH * hd, per = H + 2 * KVH, slot = irand(0, 1), inter = it & 1;
        bool norm = it & 2;
        int nctx = irand(T, 300);
        size_t nq = (size_t)T * per * hd, cn = (size_t)2 * 2 * nctx * kvd;
        float *qkv = malloc(nq * 4), *qw = malloc((size_t)hd * 4), *kw = malloc((size_t)hd * 4);
        float *inv = malloc((size_t)hd * 2), *cache = malloc(cn * 4),
              *ref_q = malloc((size_t)T * H * hd * 4);
        float *q = malloc((size_t)T * H * hd * 4), *back = malloc(cn * 4),
              *tmp = malloc((size_t)per * hd * 4);
        int32_t pos[12], nc[12];
        fill(qkv, nq, 2);
        fill(qw, (size_t)hd, 1);
        fill(kw, (size_t)hd, 1);
        fill(cache, cn, 1);
        for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
        int p0 = irand(0, nctx - T);
        for (int t = 0; t < T; t++) {   // one sequence, consecutive positions
            pos[t] = p0 + t;
            nc[t] = nctx;
        }
        float *dcache = dup_d(cache, cn * 4);
        for (int t = 0; t < T; t++) {
            memcpy(tmp, qkv + (size_t)t * per * hd, (size_t)per * hd * 4);
            float *qh = tmp, *kh = tmp + (size_t)H * hd, *vh = kh + kvd;
            if (norm) {
                op_rmsnorm(qh, qw, H, hd, hd, 1e-5f, qh, hd);
                op_rmsnorm(kh, kw, KVH, hd, hd, 1e-5f, kh, hd);
            }
            if (inter) {
                op_rope_interleaved(qh, H, hd, pos[t], inv);
                op_rope_interleaved(kh, KVH, hd, pos[t], inv);
            } else {
                op_rope_neox(qh, H, hd, pos[t], inv);
                op_rope_neox(kh, KVH, hd, pos[t], inv);
            }
            memcpy(ref_q + (size_t)t * H * hd, qh, (size_t)H * hd * 4);
            float *Kc = cache + (size_t)slot * 2 * nctx * kvd, *Vc = Kc + (size_t)nctx * kvd;
            memcpy(Kc + (size_t)pos[t] * kvd, kh, (size_t)kvd * 4);
            memcpy(Vc + (size_t)pos[t] * kvd, vh, (size_t)kvd * 4);
        }
        float *ptrs[12];
        for (int t = 0; t < T; t++) ptrs[t] = dcache;
        void *dqkv = dup_d(qkv, nq * 4), *dqw = dup_d(qw, (size_t)hd * 4),
             *dkw = dup_d(kw, (size_t)hd * 4);
        void *dinv = dup_d(inv, (size_t)hd * 2), *dpos = dup_d(pos, sizeof pos),
             *dnc = dup_d(nc, sizeof nc);
        void *dptr = dup_d(ptrs, sizeof ptrs), *dq = poison_d((size_t)T * H * hd * 4);
        cuk_qkv_rope_store(dqkv, T, H, KVH, hd, norm ? dqw : NULL, norm ? dkw : NULL, 1e-5f, dpos,
                           dinv, inter, dptr, dnc, slot, dq, 0);
        get(q, dq, (size_t)T * H * hd * 4);
        expect("qkv rope q", rel(q, ref_q, (size_t)T * H * hd), 1e-5);
        get(back, dcache, cn * 4);
        expect("qkv rope kv cache", rel(back, cache, cn), 1e-5);
        cudaFree(dcache);
        cudaFree(dqkv);
        cudaFree(dqw);
        cudaFree(dkw);
        cudaFree(dinv);
        cudaFree(dpos);
        cudaFree(dnc);
        cudaFree(dptr);
        cudaFree(dq);
        free(qkv);
        free(qw);
        free(kw);
        free(inv);
        free(cache);
        free(ref_q);
        free(q);
        free(back);
        free(tmp);
    }
}

// The fused one-token attention (head norm + RoPE + KV store inside) against the two launches
// it replaces, on T sequences of one token each: same outputs and the same caches.
static void t_attention_rope(void) {
    for (int it = 0; it < 6; it++) {
        int hds[3] = {16, 32, 64};
        int hd = hds[irand(0, 2)], KVH = irand(1, 4), H = KVH * irand(1, 4), T = irand(1, 4);
        int per = H + 2 * KVH, kvd = KVH * hd, slot = irand(0, 2), nslots = 3;
        int norm = it % 2, inter = (it / 2) % 2, n_split = irand(1, CUK_MAX_SPLIT);
        size_t nq = (size_t)T * per * hd;
        float *qkv = malloc(nq * 4), *qw = malloc((size_t)hd * 4), *kw = malloc((size_t)hd * 4);
        float *inv = malloc((size_t)hd * 2);
        fill(qkv, nq, 2);
        fill(qw, (size_t)hd, 1);
        fill(kw, (size_t)hd, 1);
        for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
        float *ptr_a[4], *ptr_b[4], *cache[4];
        int32_t pos[4], nc[4];
        size_t cn[4];
        for (int t = 0; t < T; t++) {   // T sequences, one token each
            nc[t] = irand(1, 300);
            pos[t] = irand(0, nc[t] - 1);
            cn[t] = (size_t)nslots * 2 * nc[t] * kvd;
            cache[t] = malloc(cn[t] * 4);
            fill(cache[t], cn[t], 1);
            ptr_a[t] = dup_d(cache[t], cn[t] * 4);
            ptr_b[t] = dup_d(cache[t], cn[t] * 4);
        }
        void *dqkv = dup_d(qkv, nq * 4), *dqw = dup_d(qw, (size_t)hd * 4),
             *dkw = dup_d(kw, (size_t)hd * 4), *dinv = dup_d(inv, (size_t)hd * 2);
        void *dpos = dup_d(pos, sizeof pos), *dnc = dup_d(nc, sizeof nc);
        void *dpa = dup_d(ptr_a, sizeof ptr_a), *dpb = dup_d(ptr_b, sizeof ptr_b);
        size_t no = (size_t)T * H * hd;
        float *dq = poison_d(no * 4), *oa = poison_d(no * 4), *ob = poison_d(no * 4);
        float *part = poison_d((size_t)T * H * CUK_MAX_SPLIT * (hd + 2) * 4);
        unsigned *ticket = NULL;
        cudaMalloc((void **)&ticket, (size_t)T * H * sizeof(unsigned));
        cudaMemset(ticket, 0, (size_t)T * H * sizeof(unsigned));
        cuk_set_attn_min_chunk(it % 2 ? 1 : 0);   // every split busy, or >= 32 positions each
        cuk_qkv_rope_store(dqkv, T, H, KVH, hd, norm ? dqw : NULL, norm ? dkw : NULL, 1e-5f, dpos,
                           dinv, inter, dpa, dnc, slot, dq, 0);
        cuk_attention(dq, T, H, KVH, hd, dpa, dnc, dpos, slot, n_split, part, ticket, oa, 0);
        struct cuk_rope r = {dqkv, norm ? dqw : NULL, norm ? dkw : NULL, 1e-5f, dinv, inter};
        cuk_attention_rope(&r, T, H, KVH, hd, dpb, dnc, dpos, slot, n_split, part, ticket, ob, 0);
        cuk_set_attn_min_chunk(0);
        float *ha = malloc(no * 4), *hb = malloc(no * 4);
        get(ha, oa, no * 4);
        get(hb, ob, no * 4);
        expect("attention with rope inside vs rope_store + attention", rel(hb, ha, no), 1e-6);
        for (int t = 0; t < T; t++) {
            float *ca = malloc(cn[t] * 4), *cb = malloc(cn[t] * 4);
            get(ca, ptr_a[t], cn[t] * 4);
            get(cb, ptr_b[t], cn[t] * 4);
            expect("attention with rope inside: kv cache", rel(cb, ca, cn[t]), 1e-12);
            free(ca);
            free(cb);
            cudaFree(ptr_a[t]);
            cudaFree(ptr_b[t]);
            free(cache[t]);
        }
        unsigned tk[16 * 4];
        get(tk, ticket, (size_t)T * H * sizeof(unsigned));
        int nz = 0;
        for (int i = 0; i < T * H; i++) nz += tk[i] != 0;
        CHECK_EQ(nz, 0);
        void *fr[] = {dqkv, dqw, dkw, dinv, dpos, dnc, dpa, dpb, dq, oa, ob, part, ticket};
        for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) cudaFree(fr[i]);
        free(qkv);
        free(qw);
        free(kw);
        free(inv);
        free(ha);
        free(hb);
    }
}

// Row-interleaved SwiGLU and the greedy argmax (the CPU scan: first strict maximum).
static void t_swiglu_pair_argmax(void) {
    int T = irand(1, 9), F = irand(1, 3000);
    float *gu = malloc((size_t)T * 2 * F * 4), *o = malloc((size_t)T * F * 4),
          *r = malloc((size_t)T * F * 4);
    fill(gu, (size_t)T * 2 * F, 6);
    for (int t = 0; t < T; t++)
        for (int f = 0; f < F; f++) {
            float a = gu[(size_t)t * 2 * F + 2 * f];
            r[(size_t)t * F + f] = a / (1.0f + expf(-a)) * gu[(size_t)t * 2 * F + 2 * f + 1];
        }
    float *dgu = dup_d(gu, (size_t)T * 2 * F * 4), *dout = poison_d((size_t)T * F * 4);
    cuk_swiglu_pair(dgu, T, F, dout, 0);
    get(o, dout, (size_t)T * F * 4);
    expect("swiglu_pair", rel(o, r, (size_t)T * F), 1e-6);
    cudaFree(dgu);
    cudaFree(dout);
    free(gu);
    free(o);
    free(r);
    for (int pass = 0; pass < 2; pass++) {   // pass 1: rows of whole float4 (vector loads)
        int n = irand(1, 12), V = pass ? 4 * irand(1, 17500) : irand(1, 70000);
        float *x = malloc((size_t)n * V * 4);
        int32_t got[12], want[12];
        for (size_t i = 0; i < (size_t)n * V; i++) x[i] = (float)irand(-50, 50);   // many ties
        if (n > 1) for (int v = 0; v < V; v++) x[V + v] = -INFINITY;              // no maximum: 0
        for (int i = 0; i < n; i++) {
            want[i] = argmax_ref(x + (size_t)i * V, V);
        }
        void *dx = dup_d(x, (size_t)n * V * 4), *dg = poison_d(sizeof got);
        cuk_argmax(dx, n, V, dg, 0);
        get(got, dg, (size_t)n * 4);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += got[i] != want[i];
        CHECK_EQ(bad, 0);
        cudaFree(dx);
        cudaFree(dg);
        free(x);
    }
}

// A ring product whose blocks need more than 48 KB of shared memory (K = 8192: activations and
// a 16-warp ring), before and after a device reset: the reset drops the function attributes
// that allow it, so the kernel layer must set them again (cuk_forget_attributes; the backend's
// cuda_shutdown calls it before an idle-unloaded model comes back). Same bits both times.
// Resets the device: the last test.
static void t_ring_after_reset(void) {
    const int N = 2048, K = 8192;
    void *mem = NULL;
    struct tensor w = q4_tensor(0, N, K, 64, LFMD_DTYPE_BF16, &mem);
    int qgs = 0, sbk = 0;
    size_t sbb = 0;
    uint32_t *codes = NULL;
    uint8_t *sb = NULL;
    q4_pack(&w, N, K, &qgs, &sbk, &sbb, &codes, &sb);
    float *X = malloc((size_t)K * 4), *Y[2] = {malloc((size_t)N * 4), malloc((size_t)N * 4)};
    fill(X, (size_t)K, 1);
    cuk_set_mv_ring(CUK_RING_BF16 | CUK_RING_Q4);
    cuk_set_q4_q8(1);
    cuk_set_mv_ring_warps(16);
    cuk_set_mv_ring_pair(0);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            CHECK(cudaDeviceReset() == cudaSuccess);
            cuk_forget_attributes();
        }
        void *dq = dup_d(codes, (size_t)N * K / 2), *dsb = dup_d(sb, (size_t)N * sbb);
        void *dX = dup_d(X, (size_t)K * 4), *dY = poison_d((size_t)N * 4);
        struct cuk_q4 q = {dq, dsb, sbk, qgs};
        const unsigned long before = cuk_mv_ring_count();
        cuk_matvec_q4(&q, N, K, dX, 1, dY, N, CUK_MV_STORE, NULL, NULL, 1e-5f, 0);
        CHECK(cuk_mv_ring_count() == before + 1);   // the ring kernel took it
        get(Y[pass], dY, (size_t)N * 4);
        cudaFree(dq);
        cudaFree(dsb);
        cudaFree(dX);
        cudaFree(dY);
    }
    CHECK(memcmp(Y[0], Y[1], (size_t)N * 4) == 0);
    CHECK(Y[0][0] == Y[0][0]);   // not the poison (NaN)
    free(codes);
    free(sb);
    free(X);
    free(Y[0]);
    free(Y[1]);
    free(mem);
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    for (int rep = 0; rep < 5; rep++) {
        cuk_set_pdl(rep > 0);   // plain launches once, programmatic dependent launches after
        cuk_set_mv_old(rep == 3); // the previous bf16 matvec kernel (A/B timing) in round 3
        cuk_set_q4_q8(rep != 2);  // 4-bit: f32 activations in round 2, integer in the others
        cuk_set_mv_prefetch((size_t)8 << 20);   // the tail-prefetch path (a hint: results equal)
        cuk_set_mv_preload(rep != 1);           // round 1: first weights only prefetched to L2
        cuk_set_mv_ring(rep == 0 || rep == 2 || rep == 4 ? CUK_RING_BF16 | CUK_RING_Q4 : 0);
        cuk_set_attn_round(rep == 3 ? 1 : rep == 1 ? 3 : 0);   // attention rows per load round
        cuk_set_mv_stage1(rep != 4);   // round 4: the general activation staging loops
        cuk_set_mv_stage_x(rep != 4);  // and bf16 activations through L1
        cuk_set_mv_ring_warps(rep == 2 || rep == 4 ? 16 : rep == 0 ? 12 : 8);   // per block
        cuk_set_mv_ring_pair(rep == 4 ? 1 << 20 : 0);   // round 4: deeper rings
        t_matvec();
        t_matvec_q4();
        t_embed_bf16();
        t_rmsnorm();
        t_norm_rope();
        t_swiglu();
        t_shortconv(irand(1, CUK_CONV_SEQ_MAX_T));       // one launch, tokens in order
        t_shortconv(irand(CUK_CONV_SEQ_MAX_T + 1, 30));  // parallel over tokens + state kernel
        t_matvec_modes();
        t_matvec_conv();
        t_qkv_rope_store();
        t_attention_rope();
        t_swiglu_pair_argmax();
        t_attention();
        t_bias();
        t_swiglu_cat_halves();
        if (rep == 0) CHECK(cuk_mv_ring_count() >= 20);   // the ring shapes above took it
        if (rep == 0) CHECK(n_fused_argmax >= 2);          // and some wrote the fused argmax
    }
    t_ring_after_reset();
    fprintf(stderr, "q4 matvec with integer activations vs f32 activations: worst %.3g\n",
            worst_q8_vs_f32);
    fprintf(stderr, "cuda kernels: %d checks, %d failed\n", check_count, check_failures);
    return check_done();
}
