// A small fixed thread pool for compute kernels. pool_run executes fn(ctx, ith, nth) on all nth
// threads (the caller is thread 0) and returns when every thread has finished.
// Workers spin between jobs (a forward pass issues hundreds of jobs per token) for up to 10 ms
// and then sleep on a condition variable, so an idle server burns no CPU. Not reentrant: one pool_run at
// a time per pool (the engine thread owns the pool).
// SPDX-License-Identifier: MIT
#ifndef LFMD_BASE_POOL_H
#define LFMD_BASE_POOL_H

#include "err.h"

#include <stddef.h>

struct pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);

LFMD_MUST_CHECK int pool_new(int n_threads, struct pool **out);
void pool_free(struct pool *p);
int pool_threads(const struct pool *p);
void pool_run(struct pool *p, pool_fn fn, void *ctx);
// Called from a job function on thread ith: once that thread's share of the job is done, it
// asks for [ptr, ptr + n) to be read into its L2 cache while it waits (a worker until the next
// job is posted, the caller until the workers finish), stopping as soon as the wait ends. For
// memory-bound jobs that follow each other (decode's matrix products): memory keeps streaming
// while one thread finishes or the caller runs serial steps. A hint: never needed for
// correctness, dropped after the job.
void pool_warm_after(struct pool *p, int ith, const void *ptr, size_t n);
// Number of online CPUs (>= 1).
int pool_cpu_count(void);

#endif
