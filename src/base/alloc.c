// Budgeted allocator: a 16-byte header records size and category so frees can be un-counted.
// Invariant: total == sum(used[cat]) <= limit (when limit != 0), checked before allocating.
// SPDX-License-Identifier: MIT
#include "alloc.h"

#include "err.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16u
#define MAGIC 0x6c666d64u

struct hdr {
    size_t size;
    uint32_t cat;
    uint32_t magic;
};
_Static_assert(sizeof(struct hdr) == HDR, "allocation header is 16 bytes");

static _Atomic size_t g_used[LFMD_MEM_COUNT];
static _Atomic size_t g_total;
static _Atomic size_t g_peak;
static _Atomic size_t g_limit;
static _Atomic long g_fail_after = -1;
static _Atomic long g_live;

static const char *const names[LFMD_MEM_COUNT] = {
    [LFMD_MEM_WEIGHTS] = "weights",     [LFMD_MEM_CONVERTED] = "converted_weights",
    [LFMD_MEM_KV] = "kv_cache",         [LFMD_MEM_CONV] = "conv_state",
    [LFMD_MEM_SCRATCH] = "scratch",     [LFMD_MEM_PREFIX] = "prefix_cache",
    [LFMD_MEM_REQUEST] = "request",     [LFMD_MEM_TOKENIZER] = "tokenizer",
    [LFMD_MEM_OTHER] = "other",
};

const char *lfmd_mem_name(enum lfmd_mem cat) {
    return (unsigned)cat < LFMD_MEM_COUNT ? names[cat] : "?";
}

static int should_fail(void) {
    long n = atomic_load(&g_fail_after);
    if (n < 0) return 0;
    // Decrement; the allocation that finds 0 fails, then the hook disarms.
    while (n >= 0) {
        if (atomic_compare_exchange_weak(&g_fail_after, &n, n - 1)) return n == 0;
    }
    return 0;
}

// Reserve n bytes in cat; 0 on success.
static int charge(enum lfmd_mem cat, size_t n) {
    size_t limit = atomic_load(&g_limit);
    size_t t = atomic_load(&g_total);
    for (;;) {
        if (limit && (t + n < t || t + n > limit)) return LFMD_EBUDGET;
        if (atomic_compare_exchange_weak(&g_total, &t, t + n)) break;
    }
    atomic_fetch_add(&g_used[cat], n);
    size_t p = atomic_load(&g_peak);
    while (t + n > p && !atomic_compare_exchange_weak(&g_peak, &p, t + n)) {
    }
    return 0;
}

static void uncharge(enum lfmd_mem cat, size_t n) {
    atomic_fetch_sub(&g_used[cat], n);
    atomic_fetch_sub(&g_total, n);
}

void *lfmd_malloc(size_t n, enum lfmd_mem cat) {
    if ((unsigned)cat >= LFMD_MEM_COUNT) cat = LFMD_MEM_OTHER;
    if (n > SIZE_MAX - HDR || should_fail()) return NULL;
    if (charge(cat, n)) return NULL;
    struct hdr *h = malloc(HDR + n);
    if (!h) {
        uncharge(cat, n);
        return NULL;
    }
    h->size = n;
    h->cat = cat;
    h->magic = MAGIC;
    atomic_fetch_add(&g_live, 1);
    return (char *)h + HDR;
}

void *lfmd_calloc(size_t count, size_t size, enum lfmd_mem cat) {
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = lfmd_malloc(count * size, cat);
    if (p) memset(p, 0, count * size);
    return p;
}

void *lfmd_realloc(void *p, size_t n) {
    if (!p) return lfmd_malloc(n, LFMD_MEM_OTHER);
    struct hdr *h = (struct hdr *)((char *)p - HDR);
    LFMD_ASSERT(h->magic == MAGIC);
    if (n > SIZE_MAX - HDR || should_fail()) return NULL;
    enum lfmd_mem cat = h->cat;
    size_t old = h->size;
    if (n > old && charge(cat, n - old)) return NULL;
    struct hdr *nh = realloc(h, HDR + n);
    if (!nh) {
        if (n > old) uncharge(cat, n - old);
        return NULL;
    }
    if (n < old) uncharge(cat, old - n);
    nh->size = n;
    return (char *)nh + HDR;
}

void lfmd_free(void *p) {
    if (!p) return;
    struct hdr *h = (struct hdr *)((char *)p - HDR);
    LFMD_ASSERT(h->magic == MAGIC);
    h->magic = 0;
    uncharge(h->cat, h->size);
    atomic_fetch_sub(&g_live, 1);
    free(h);
}

char *lfmd_strndup(const char *s, size_t n, enum lfmd_mem cat) {
    char *d = lfmd_malloc(n + 1, cat);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

char *lfmd_strdup(const char *s, enum lfmd_mem cat) { return lfmd_strndup(s, strlen(s), cat); }

int lfmd_mem_charge(enum lfmd_mem cat, size_t n) {
    if ((unsigned)cat >= LFMD_MEM_COUNT) cat = LFMD_MEM_OTHER;
    return charge(cat, n);
}

void lfmd_mem_uncharge(enum lfmd_mem cat, size_t n) {
    if ((unsigned)cat >= LFMD_MEM_COUNT) cat = LFMD_MEM_OTHER;
    uncharge(cat, n);
}

size_t lfmd_mem_used(enum lfmd_mem cat) {
    return (unsigned)cat < LFMD_MEM_COUNT ? atomic_load(&g_used[cat]) : 0;
}
size_t lfmd_mem_total(void) { return atomic_load(&g_total); }
size_t lfmd_mem_peak(void) { return atomic_load(&g_peak); }
void lfmd_mem_set_limit(size_t bytes) { atomic_store(&g_limit, bytes); }
size_t lfmd_mem_limit(void) { return atomic_load(&g_limit); }
int lfmd_mem_fits(size_t n) {
    size_t limit = atomic_load(&g_limit), t = atomic_load(&g_total);
    return !limit || (t + n >= t && t + n <= limit);
}
void lfmd_alloc_fail_after(long n) { atomic_store(&g_fail_after, n); }
long lfmd_alloc_live(void) { return atomic_load(&g_live); }
