// The one budgeted allocator. Every heap byte lfmd owns goes through lfmd_malloc & co., is
// counted in a category, and is refused (NULL) when it would push the total past the hard limit.
// Bytes that are not malloc'd but still ours (mapped weights) are charged with lfmd_mem_charge.
// Thread-safe (atomic counters). A test hook fails the n-th allocation (SQLite faultsim style).
// SPDX-License-Identifier: MIT
#ifndef LFMD_BASE_ALLOC_H
#define LFMD_BASE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

enum lfmd_mem {
    LFMD_MEM_WEIGHTS,   // mapped weight bytes (charged at load, not malloc'd)
    LFMD_MEM_CONVERTED, // weights converted/repacked into heap memory
    LFMD_MEM_KV,        // attention KV cache
    LFMD_MEM_CONV,      // conv state of LFM2 short-conv layers
    LFMD_MEM_SCRATCH,   // forward-pass activations
    LFMD_MEM_PREFIX,    // prefix cache
    LFMD_MEM_REQUEST,   // request bodies, prompts, responses
    LFMD_MEM_TOKENIZER, // vocab, merges, templates
    LFMD_MEM_OTHER,
    LFMD_MEM_COUNT
};

const char *lfmd_mem_name(enum lfmd_mem cat);

void *lfmd_malloc(size_t n, enum lfmd_mem cat);
void *lfmd_calloc(size_t count, size_t size, enum lfmd_mem cat);
// Resizes keeping the category. On failure returns NULL and p stays valid.
void *lfmd_realloc(void *p, size_t n);
void lfmd_free(void *p);
char *lfmd_strdup(const char *s, enum lfmd_mem cat);
char *lfmd_strndup(const char *s, size_t n, enum lfmd_mem cat);

// Charge/uncharge bytes held outside malloc. Returns LFMD_EBUDGET (and charges nothing) if the
// charge would exceed the limit.
int lfmd_mem_charge(enum lfmd_mem cat, size_t n);
void lfmd_mem_uncharge(enum lfmd_mem cat, size_t n);

size_t lfmd_mem_used(enum lfmd_mem cat);
size_t lfmd_mem_total(void);
size_t lfmd_mem_peak(void);
// 0 = unlimited.
void lfmd_mem_set_limit(size_t bytes);
size_t lfmd_mem_limit(void);
// Would n more bytes fit under the limit right now?
int lfmd_mem_fits(size_t n);

// Test hook: the n-th allocation from now fails (0 = the next one); -1 turns it off.
void lfmd_alloc_fail_after(long n);
// Number of live allocations (for leak checks in tests).
long lfmd_alloc_live(void);

#endif
