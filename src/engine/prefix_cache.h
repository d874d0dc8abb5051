// Prefix cache: snapshots of sequence state (KV rows + conv state) at token prefixes worth
// returning to (end of a system prompt or routing template, end of a finished request's prompt).
// LRU with a byte cap checked before insertion; the bytes are charged to LFMD_MEM_PREFIX.
// Invariant: used <= cap; every entry's seq holds exactly the state after its n tokens.
// Engine thread only (not thread-safe); counters are read through the engine's stats.
// SPDX-License-Identifier: MIT
#ifndef LFMD_ENGINE_PREFIX_CACHE_H
#define LFMD_ENGINE_PREFIX_CACHE_H

#include "engine.h"

struct pc_entry {
    struct pc_entry *prev, *next; // LRU list: head = most recently used
    int32_t *toks;
    int n;
    void *seq;                    // state after toks (pos == n)
    float *logits;                // last token's logits [n_vocab], or NULL
    size_t bytes;                 // everything this entry holds
    size_t kv_bytes, conv_bytes;  // the sequence's bytes, moved to LFMD_MEM_PREFIX
};

struct prefix_cache {
    const struct engine_model_ops *ops;
    void *model;
    int n_vocab;
    size_t cap, used;
    int n;
    struct pc_entry *head, *tail;
    uint64_t hits, misses, inserts, evictions;
};

void pc_init(struct prefix_cache *pc, size_t cap);
// Binds to a loaded model (after load) or unbinds (model NULL: entries must be cleared first).
void pc_bind(struct prefix_cache *pc, const struct engine_model_ops *ops, void *model, int n_vocab);
// Longest entry whose tokens are a prefix of toks[0..n) with entry->n < n, or == n when the entry
// has logits. Counts a hit or a miss; a hit becomes most recently used. NULL when none.
struct pc_entry *pc_lookup(struct prefix_cache *pc, const int32_t *toks, int n);
// True when an entry for exactly toks[0..n) exists (no counters touched).
bool pc_has(struct prefix_cache *pc, const int32_t *toks, int n);
// Snapshots seq (whose position is n, state after toks[0..n)) with optional logits. Evicts LRU
// entries until the new one fits the cap; skips silently (returns 1) when it is larger than the
// cap, the cache is off, or memory is short. Returns 0 when inserted.
int pc_insert(struct prefix_cache *pc, const int32_t *toks, int n, void *seq,
              const float *logits);
// Drops every entry (trim, unload).
void pc_clear(struct prefix_cache *pc);

#endif
