// A small fixed thread pool for compute kernels. pool_run executes fn(ctx, ith, nth) on all nth
// threads (the caller is thread 0) and returns when every thread has finished.
// Workers spin briefly between jobs (a forward pass issues hundreds of jobs per token) and then
// sleep on a condition variable, so an idle server burns no CPU. Not reentrant: one pool_run at
// a time per pool (the engine thread owns the pool).
// SPDX-License-Identifier: MIT
#ifndef LFMD_BASE_POOL_H
#define LFMD_BASE_POOL_H

#include "err.h"

struct pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);

LFMD_MUST_CHECK int pool_new(int n_threads, struct pool **out);
void pool_free(struct pool *p);
int pool_threads(const struct pool *p);
void pool_run(struct pool *p, pool_fn fn, void *ctx);
// Number of online CPUs (>= 1).
int pool_cpu_count(void);

#endif
