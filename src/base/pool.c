// Thread pool: generation counter + spin-then-sleep workers. See pool.h.
// SPDX-License-Identifier: MIT
#include "pool.h"

#include "alloc.h"
#include "limits.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 20000 // pauses before a waiting thread starts to sched_yield() between looks
// A worker keeps looking (yielding) this long after its last job before it sleeps. Waking a
// sleeping worker took about 1 ms on the VMs measured (the idle vCPU is halted), and the caller
// loses its CPU for a time slice now and then, so the old 20000 pauses put the worker to sleep
// 90-160 times per 250 decode tokens, each a late start: 10 ms outlasts a slice and is short
// against any idle period that matters.
#define WORKER_SPIN_NS 10000000u
#define WARM_STEP 16 // cache lines asked for between two looks at the wait's end

struct worker {
    struct pool *pool;
    int ith;
    pthread_t th;
};

// pool_warm_after's range for one thread, padded to a cache line's size (the array comes from
// lfmd_calloc, which promises 16-byte alignment only: no _Alignas).
struct warm {
    const char *p;
    size_t n;
    char pad[64 - sizeof(const char *) - sizeof(size_t)];
};

struct pool {
    int n;
    struct worker *workers; // n - 1 workers
    _Atomic unsigned gen;
    _Atomic int pending;
    _Atomic int stop;
    pool_fn fn;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sleepers; // guarded by mu
    struct warm *warm; // [n]
};

// Asks for lines [*off, *off + WARM_STEP) of w into L2; false when the range is done.
static bool warm_step(const struct warm *w, size_t *off) {
    if (*off >= w->n) return false;
    size_t end = *off + WARM_STEP * 64 < w->n ? *off + WARM_STEP * 64 : w->n;
    for (; *off < end; *off += 64) __builtin_prefetch(w->p + *off, 0, 2);
    return true;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g, spins = 0;
        uint64_t t0 = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                CPU_RELAX();
                continue;
            }
            // Then yield between looks: with more threads than CPUs, the thread this one waits
            // for may need this CPU.
            sched_yield();
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 < WORKER_SPIN_NS) continue;
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (atomic_load(&p->gen) == seen) pthread_cond_wait(&p->cv, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
            spins = 0;
            t0 = 0;
        }
        seen = g;
        if (atomic_load(&p->stop)) break;
        p->fn(p->ctx, w->ith, p->n);
        // The job (and p->ctx) may be gone once pending drops: take the warm range first.
        struct warm mine = p->warm[w->ith];
        p->warm[w->ith].n = 0;
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
        size_t off = 0;
        while (atomic_load_explicit(&p->gen, memory_order_relaxed) == seen && warm_step(&mine, &off)) {
        }
    }
    return NULL;
}

int pool_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int pool_new(int n_threads, struct pool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > LFMD_MAX_THREADS) n_threads = LFMD_MAX_THREADS;
    struct pool *p = lfmd_calloc(1, sizeof *p, LFMD_MEM_OTHER);
    if (!p) return LFMD_ENOMEM;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->warm = lfmd_calloc((size_t)n_threads, sizeof *p->warm, LFMD_MEM_OTHER);
    if (!p->warm) {
        p->n = 1;
        goto fail;
    }
    if (n_threads > 1) {
        p->workers = lfmd_calloc((size_t)n_threads - 1, sizeof *p->workers, LFMD_MEM_OTHER);
        if (!p->workers) {
            p->n = 1; // no worker exists: pool_free must not join any
            goto fail;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker *w = &p->workers[i - 1];
        w->pool = p;
        w->ith = i;
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
            p->n = i; // only workers 1..i-1 exist
            goto fail;
        }
    }
    *out = p;
    return 0;
fail:
    pool_free(p);
    return LFMD_ENOMEM;
}

void pool_free(struct pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->workers[i - 1].th, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    lfmd_free(p->warm);
    lfmd_free(p->workers);
    lfmd_free(p);
}

int pool_threads(const struct pool *p) { return p->n; }

void pool_warm_after(struct pool *p, int ith, const void *ptr, size_t n) {
    p->warm[ith] = (struct warm){.p = ptr, .n = ptr ? n : 0};
}

void pool_run(struct pool *p, pool_fn fn, void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        p->warm[0].n = 0;
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    if (p->sleepers) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    struct warm mine = p->warm[0];
    p->warm[0].n = 0;
    size_t off = 0;
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (warm_step(&mine, &off)) continue;
        if (++spins < SPIN_ITERS) CPU_RELAX();
        else sched_yield();
    }
}
