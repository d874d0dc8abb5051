// Streaming-read bandwidth of this machine: each thread sums its slice of a buffer much larger
// than the last-level cache with AVX2 loads; best of repeated runs for 1..N threads, once with
// 4 KiB pages (what a mapped model file gets) and once with transparent huge pages
// (madvise(MADV_HUGEPAGE): what `--no-mmap` weights get). The ceiling is the better of the two.
// Each is measured with plain loads and with software prefetch (what the decode kernels do);
// the line prints the better and both.
// Usage: bandwidth [MiB=2048] [max_threads=2] [reps=10]
// SPDX-License-Identifier: MIT
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct job {
    const float *p;
    size_t n;
    pthread_barrier_t *bar;
    float sink;
    int reps;
    double *best;
    int tid;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Sums n floats with four independent accumulators. With pf, also prefetches in software as
// lfmd's decode kernels do: 2 KiB ahead into L1 and 8 KiB ahead into L2 (without it the hardware
// streamer alone measured below what the kernels reached: 1.2B F16 decode streamed 28.6 GB/s
// against a 27.8 GB/s "ceiling"). Always inlined with a constant pf, so each caller gets its own
// loop with no branch in it.
__attribute__((target("avx2"), always_inline)) static inline float
sum_stream_loop(const float *p, size_t n, const int pf) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        if (pf) {
            _mm_prefetch((const char *)(p + i) + 2048, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i) + 2048 + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + i) + 8192, _MM_HINT_T1);
            _mm_prefetch((const char *)(p + i) + 8192 + 64, _MM_HINT_T1);
        }
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float v[8];
    _mm256_storeu_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

__attribute__((target("avx2"))) static float sum_stream(const float *p, size_t n) {
    return sum_stream_loop(p, n, 0);
}

__attribute__((target("avx2"))) static float sum_stream_pf(const float *p, size_t n) {
    return sum_stream_loop(p, n, 1);
}

static double g_t0[64], g_t1[64];
static int g_pf; // which loop the workers run

static void *worker(void *arg) {
    struct job *j = arg;
    for (int r = 0; r < j->reps; r++) {
        pthread_barrier_wait(j->bar);
        g_t0[j->tid] = now();
        j->sink += g_pf ? sum_stream_pf(j->p, j->n) : sum_stream(j->p, j->n);
        g_t1[j->tid] = now();
        pthread_barrier_wait(j->bar);
    }
    return NULL;
}

static double run_threads_once(float *buf, size_t n, int nt, int reps, float *sinkp);

// Per thread count: the best of the plain and the prefetching loop (both printed).
static void run_threads(float *buf, size_t n, int max_threads, int reps) {
    for (int nt = 1; nt <= max_threads; nt++) {
        float sink = 0;
        g_pf = 0;
        double plain = run_threads_once(buf, n, nt, reps, &sink);
        g_pf = 1;
        double pf = run_threads_once(buf, n, nt, reps, &sink);
        printf("threads %d: %.2f GB/s (plain loads %.2f, with prefetch %.2f; sink %g)\n", nt,
               plain > pf ? plain : pf, plain, pf, (double)sink);
    }
}

static double run_threads_once(float *buf, size_t n, int nt, int reps, float *sinkp) {
    {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, (unsigned)nt + 1);
        struct job jobs[64];
        pthread_t th[64];
        size_t per = (n / (size_t)nt) & ~(size_t)31;
        for (int t = 0; t < nt; t++) {
            jobs[t] = (struct job){.p = buf + per * (size_t)t, .n = per, .bar = &bar, .reps = reps,
                                   .tid = t};
            pthread_create(&th[t], NULL, worker, &jobs[t]);
        }
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            pthread_barrier_wait(&bar); // start
            pthread_barrier_wait(&bar); // done
            double t0 = 1e30, t1 = 0;
            for (int t = 0; t < nt; t++) {
                if (g_t0[t] < t0) t0 = g_t0[t];
                if (g_t1[t] > t1) t1 = g_t1[t];
            }
            if (t1 - t0 < best) best = t1 - t0;
        }
        float sink = 0;
        for (int t = 0; t < nt; t++) {
            pthread_join(th[t], NULL);
            sink += jobs[t].sink;
        }
        pthread_barrier_destroy(&bar);
        *sinkp += sink;
        return (double)(per * (size_t)nt * 4) / best / 1e9;
    }
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 2048;
    int max_threads = argc > 2 ? atoi(argv[2]) : 2;
    int reps = argc > 3 ? atoi(argv[3]) : 10;
    if (max_threads < 1 || max_threads > 64 || reps < 1 || mib < 1) return 2;
    size_t bytes = mib << 20, n = bytes / sizeof(float), huge_sz = (size_t)2 << 20;
    for (int huge = 0; huge < 2; huge++) {
        // 2 MiB-aligned so that every page of the buffer can be a huge page
        void *raw = mmap(NULL, bytes + huge_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        if (raw == MAP_FAILED) {
            fprintf(stderr, "cannot allocate %zu MiB\n", mib);
            return 1;
        }
        float *buf = (float *)(((uintptr_t)raw + huge_sz - 1) & ~(uintptr_t)(huge_sz - 1));
        madvise(buf, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
        for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023);
        printf("streaming read, %zu MiB buffer, %s pages, best of %d runs\n", mib,
               huge ? "2 MiB (THP)" : "4 KiB", reps);
        run_threads(buf, n, max_threads, reps);
        munmap(raw, bytes + huge_sz);
    }
    return 0;
}
