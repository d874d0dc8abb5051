// Kernel throughput at LFM2-1.2B shapes: decode matvec GB/s (weights streamed from DRAM: a set
// of matrices larger than the LLC, visited in turn like a forward pass; LFMD_BENCH_DECODE_TOK=N
// gives each decode product N tokens, as a continuous-batching step does) and prefill matmul
// GFLOP/s (n_tok tokens). Rows are split across threads as the engine does; a spin barrier
// separates products. Usage: bench_kernels [threads=2] [dtype ...]
// SPDX-License-Identifier: MIT
#include "base/alloc.h"
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct spin_barrier {
    _Atomic int count, gen;
    int n;
};
static void barrier_wait(struct spin_barrier *b) {
    int g = atomic_load(&b->gen);
    if (atomic_fetch_add(&b->count, 1) == b->n - 1) {
        atomic_store(&b->count, 0);
        atomic_fetch_add(&b->gen, 1);
    } else {
        while (atomic_load(&b->gen) == g) __builtin_ia32_pause();
    }
}

struct work {
    struct tensor *mats;
    int n_mats, n_tok, reps, nth;
    const float *X;
    void *qx;
    float *Y;
    struct spin_barrier bar;
};
struct arg {
    struct work *w;
    int tid;
};

static void *run(void *p) {
    struct arg *a = p;
    struct work *w = a->w;
    for (int rep = 0; rep < w->reps; rep++)
        for (int m = 0; m < w->n_mats; m++) {
            struct tensor *W = &w->mats[m];
            int64_t n_out = W->shape[0], n_in = W->shape[1];
            // each thread prepares its token share, then computes its row share
            int t0 = w->n_tok * a->tid / w->nth, t1 = w->n_tok * (a->tid + 1) / w->nth;
            kern_prepare_input(W->dtype, w->X, n_in, w->n_tok, t0, t1, w->qx);
            barrier_wait(&w->bar);
            int64_t r0 = (n_out * a->tid / w->nth) & ~15, r1 = (n_out * (a->tid + 1) / w->nth) & ~15;
            if (a->tid == w->nth - 1) r1 = n_out;
            kern_matmul(W, w->X, w->qx, w->n_tok, w->Y, n_out, r0, r1);
            barrier_wait(&w->bar);
        }
    return NULL;
}

static double timed(struct work *w) {
    pthread_t th[16];
    struct arg args[16];
    w->bar = (struct spin_barrier){.n = w->nth};
    double t0 = now();
    for (int i = 1; i < w->nth; i++) {
        args[i] = (struct arg){w, i};
        pthread_create(&th[i], NULL, run, &args[i]);
    }
    args[0] = (struct arg){w, 0};
    run(&args[0]);
    for (int i = 1; i < w->nth; i++) pthread_join(th[i], NULL);
    return now() - t0;
}

static enum lfmd_dtype parse_dtype(const char *s) {
    for (int t = 0; t < LFMD_DTYPE_COUNT; t++)
        if (strcmp(lfmd_dtype_name((enum lfmd_dtype)t), s) == 0) return (enum lfmd_dtype)t;
    return LFMD_DTYPE_COUNT;
}

// One quantized matrix [n_out, n_in] of random values; MLX uses group 64, bf16 scales.
static int make_matrix(enum lfmd_dtype t, int64_t n_out, int64_t n_in, struct tensor *W,
                       void **blobs) {
    float *row = malloc(sizeof(float) * (size_t)n_in);
    size_t rb = kern_row_bytes(t, n_in);
    uint8_t *data = lfmd_malloc(rb * (size_t)n_out, LFMD_MEM_OTHER);
    uint16_t *sc = NULL, *bi = NULL;
    int mlx = t == LFMD_DTYPE_MLX_Q4 || t == LFMD_DTYPE_MLX_Q8;
    if (mlx) {
        sc = lfmd_malloc(2 * (size_t)(n_out * n_in / 64), LFMD_MEM_OTHER);
        bi = lfmd_malloc(2 * (size_t)(n_out * n_in / 64), LFMD_MEM_OTHER);
    }
    if (!row || !data || (mlx && (!sc || !bi))) return -1;
    uint32_t s = 12345;
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t c = 0; c < n_in; c++) {
            s = s * 1664525u + 1013904223u;
            row[c] = (float)(int32_t)s / 2147483648.0f;
        }
        if (mlx)
            quantize_mlx_ref(row, n_in, t == LFMD_DTYPE_MLX_Q4 ? 4 : 8, 64, LFMD_DTYPE_BF16,
                             (uint32_t *)(data + rb * (size_t)r), sc + r * n_in / 64,
                             bi + r * n_in / 64);
        else
            quantize_row_ref(t, row, data + rb * (size_t)r, n_in);
    }
    free(row);
    *W = (struct tensor){.name = "w", .dtype = t, .n_dims = 2, .shape = {n_out, n_in},
                         .data = data, .size_bytes = rb * (size_t)n_out, .scales = sc,
                         .biases = bi, .scale_dtype = LFMD_DTYPE_BF16, .group_size = 64,
                         .bits = t == LFMD_DTYPE_MLX_Q4 ? 4 : 8};
    blobs[0] = data;
    blobs[1] = sc;
    blobs[2] = bi;
    return 0;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2;
    if (nth < 1 || nth > 16) return 2;
    const char *def[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k",
                         "mlx_q4", "mlx_q8"};
    int n_dt = argc > 2 ? argc - 2 : (int)(sizeof def / sizeof def[0]);
    printf("isa %s, %d threads; decode: 2048x8192 + 8192x2048 products streamed from >=1 GiB "
           "of weights (best of 5); prefill: 512 tokens (best of 3)\n", kern_isa(), nth);
    for (int d = 0; d < n_dt; d++) {
        const char *name = argc > 2 ? argv[2 + d] : def[d];
        enum lfmd_dtype t = parse_dtype(name);
        if (t == LFMD_DTYPE_COUNT) {
            fprintf(stderr, "unknown dtype %s\n", name);
            return 2;
        }
        // two base matrices, replicated by pointer-distinct copies to exceed the LLC
        struct tensor base[2];
        void *blobs[2][3];
        // LFMD_BENCH_FF=F, LFMD_BENCH_D=D: the pair F x D + D x F (default 8192 x 2048, the
        // 1.2B FFN; 4608 x 1024 is the 350M one)
        const char *fe = getenv("LFMD_BENCH_FF"), *de = getenv("LFMD_BENCH_D");
        int64_t FF = fe && atoi(fe) >= 256 ? atoi(fe) : 8192, DD = de && atoi(de) >= 256 ? atoi(de) : 2048;
        if (make_matrix(t, FF, DD, &base[0], blobs[0]) ||
            make_matrix(t, DD, FF, &base[1], blobs[1])) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        size_t per = base[0].size_bytes + base[1].size_bytes;
        int n_copies = (int)((1100u << 20) / per) + 1;
        if (n_copies > 256) n_copies = 256;
        // LFMD_BENCH_COPIES=N: only N copies, each visited repeatedly so that as many bytes are
        // read (N = 1 with a small FF x D: a cache-resident matrix, the kernel's compute limit)
        const char *ce = getenv("LFMD_BENCH_COPIES");
        int reps = 1;
        if (ce && atoi(ce) >= 1 && atoi(ce) < n_copies) {
            reps = (n_copies + atoi(ce) - 1) / atoi(ce);
            n_copies = atoi(ce);
        }
        struct tensor *mats = calloc((size_t)n_copies * 2, sizeof *mats);
        uint8_t **copies = calloc((size_t)n_copies * 2, sizeof *copies);
        for (int c = 0; c < n_copies * 2; c++) {
            mats[c] = base[c & 1];
            copies[c] = lfmd_malloc(base[c & 1].size_bytes, LFMD_MEM_OTHER);
            const char *thp = getenv("LFMD_BENCH_THP"); // =1: huge pages for the aligned interior
            if (thp && atoi(thp) && copies[c])
                madvise((void *)(((uintptr_t)copies[c] + 4095) & ~(uintptr_t)4095),
                        base[c & 1].size_bytes & ~(size_t)4095, MADV_HUGEPAGE);
            memcpy(copies[c], base[c & 1].data, base[c & 1].size_bytes);
            mats[c].data = copies[c];
            // LFMD_BENCH_REPACK=1: the load-time layout of --no-mmap (kern_repack, Q4_0)
            const char *rp = getenv("LFMD_BENCH_REPACK");
            if (rp && atoi(rp) && kern_repack(&mats[c])) return 1;
        }
        int max_tok = 512;
        float *X = malloc(sizeof(float) * 8192 * (size_t)max_tok);
        float *Y = malloc(sizeof(float) * 8192 * (size_t)max_tok);
        for (size_t i = 0; i < 8192 * (size_t)max_tok; i++) X[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        size_t qb = kern_input_bytes(t, max_tok, 8192);
        void *qx = qb ? malloc(qb) : NULL;
        const char *dt_env = getenv("LFMD_BENCH_DECODE_TOK"); // tokens per decode product
        int dec_tok = dt_env && atoi(dt_env) > 0 && atoi(dt_env) <= 64 ? atoi(dt_env) : 1;
        struct work w = {.mats = mats, .n_mats = n_copies * 2, .n_tok = dec_tok, .reps = reps, .nth = nth,
                         .X = X, .qx = qx, .Y = Y};
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double s = timed(&w);
            if (s < best) best = s;
        }
        double bytes = (double)per * n_copies * reps;
        double gbs = bytes / best / 1e9;
        // prefill
        w.n_mats = 2;
        w.reps = 1;
        w.n_tok = max_tok;
        double bestp = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double s = timed(&w);
            if (s < bestp) bestp = s;
        }
        double flops = 2.0 * 2 * (double)FF * (double)DD * (double)max_tok;
        printf("%-7s decode %6.2f GB/s (%.3f ms per 2048x8192)   prefill %6.1f GFLOP/s\n", name,
               gbs, best / (2.0 * n_copies * reps) * 1e3, flops / bestp / 1e9);
        fflush(stdout);
        for (int c = 0; c < n_copies * 2; c++) lfmd_free(copies[c]);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) lfmd_free(blobs[i][j]);
        free(copies);
        free(mats);
        free(X);
        free(Y);
        free(qx);
    }
    return 0;
}
