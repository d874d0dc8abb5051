// Thread pool: every thread runs every job exactly once and pool_run returns only after all of
// them; warm hints (pool_warm_after) over large ranges never delay or lose the next job (a
// worker still warming must notice it; a hang here would show as the test's timeout); workers
// that went to sleep between jobs wake for the next one.
// SPDX-License-Identifier: MIT
#include "check.h"

#include "base/alloc.h"
#include "base/pool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define MAX_TH 4
#define WARM_BYTES ((size_t)64 << 20)

struct job {
    _Atomic int ran[MAX_TH];
    int64_t part[MAX_TH][8];   // a cache line per thread
    const int32_t *data;
    int n;
    const uint8_t *warm;       // NULL: no hint
    struct pool *pool;
};

static void sum_part(void *ctx, int ith, int nth) {
    struct job *j = ctx;
    atomic_fetch_add(&j->ran[ith], 1);
    int64_t s = 0;
    for (int i = ith; i < j->n; i += nth) s += j->data[i];
    j->part[ith][0] = s;
    if (j->warm) pool_warm_after(j->pool, ith, j->warm, WARM_BYTES);
}

static void run_jobs(int nth, const uint8_t *warm) {
    struct pool *p = NULL;
    CHECK(pool_new(nth, &p) == 0);
    if (!p) return;
    CHECK_EQ(pool_threads(p), nth);
    enum { N = 10007, JOBS = 300 };
    static int32_t data[N];
    int64_t want = 0;
    for (int i = 0; i < N; i++) want += data[i] = (i * 7919) % 1001 - 500;
    int bad = 0;
    for (int k = 0; k < JOBS; k++) {
        struct job j = {.data = data, .n = N - k, .warm = warm, .pool = p};
        pool_run(p, sum_part, &j);
        int64_t got = 0, w = want;
        for (int i = N - k; i < N; i++) w -= data[i];
        for (int t = 0; t < nth; t++) {
            got += j.part[t][0];
            if (atomic_load(&j.ran[t]) != 1) bad++;
        }
        if (got != w) bad++;
    }
    CHECK_EQ(bad, 0);
    pool_free(p);
}

// Jobs separated by pauses longer than the workers' spin (10 ms): each job then finds the
// workers asleep on the condition variable and must wake them.
static void run_after_sleep(int nth) {
    struct pool *p = NULL;
    CHECK(pool_new(nth, &p) == 0);
    if (!p) return;
    static int32_t data[1000];
    int64_t want = 0;
    for (int i = 0; i < 1000; i++) want += data[i] = i - 321;
    for (int k = 0; k < 4; k++) {
        if (k) nanosleep(&(struct timespec){.tv_nsec = 25 * 1000 * 1000}, NULL);
        struct job j = {.data = data, .n = 1000, .pool = p};
        pool_run(p, sum_part, &j);
        int64_t got = 0;
        for (int t = 0; t < nth; t++) {
            got += j.part[t][0];
            CHECK_EQ(atomic_load(&j.ran[t]), 1);
        }
        CHECK_EQ(got, want);
    }
    pool_free(p);
}

int main(void) {
    for (int nth = 2; nth <= 3; nth++) run_after_sleep(nth);
    // Untouched pages of a large allocation: the warm loop walks all of it unless a new job
    // (or the end of the wait) stops it.
    uint8_t *warm = lfmd_malloc(WARM_BYTES, LFMD_MEM_OTHER);
    CHECK(warm != NULL);
    for (int nth = 1; nth <= MAX_TH; nth++) {
        run_jobs(nth, NULL);
        run_jobs(nth, warm);
    }
    lfmd_free(warm);
    return check_done();
}
