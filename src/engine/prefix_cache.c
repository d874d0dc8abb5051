// Prefix cache (see prefix_cache.h). Entries are whole sequences sized to their prefix, restored
// with seq_copy. Bytes move from LFMD_MEM_KV/CONV to LFMD_MEM_PREFIX while cached, so /metrics
// shows the cache as its own category and the global budget still counts every byte once.
// SPDX-License-Identifier: MIT
#include "prefix_cache.h"

#include <string.h>

void pc_init(struct prefix_cache *pc, size_t cap) {
    memset(pc, 0, sizeof *pc);
    pc->cap = cap;
}

void pc_bind(struct prefix_cache *pc, const struct engine_model_ops *ops, void *model, int n_vocab) {
    pc->ops = ops;
    pc->model = model;
    pc->n_vocab = n_vocab;
}

static void unlink_entry(struct prefix_cache *pc, struct pc_entry *x) {
    if (x->prev) x->prev->next = x->next;
    else pc->head = x->next;
    if (x->next) x->next->prev = x->prev;
    else pc->tail = x->prev;
    x->prev = x->next = NULL;
}

static void push_front(struct prefix_cache *pc, struct pc_entry *x) {
    x->prev = NULL;
    x->next = pc->head;
    if (pc->head) pc->head->prev = x;
    pc->head = x;
    if (!pc->tail) pc->tail = x;
}

static void entry_free(struct prefix_cache *pc, struct pc_entry *x) {
    // Hand the sequence's bytes back to the categories seq_free un-counts.
    lfmd_mem_uncharge(LFMD_MEM_PREFIX, x->kv_bytes + x->conv_bytes);
    // The total is unchanged (PREFIX was just uncharged), so these fit under any limit.
    (void)lfmd_mem_charge(LFMD_MEM_KV, x->kv_bytes);
    (void)lfmd_mem_charge(LFMD_MEM_CONV, x->conv_bytes);
    pc->ops->seq_free(x->seq);
    lfmd_free(x->toks);
    lfmd_free(x->logits);
    pc->used -= x->bytes;
    pc->n--;
    lfmd_free(x);
}

static void evict_lru(struct prefix_cache *pc) {
    struct pc_entry *x = pc->tail;
    if (!x) return;
    unlink_entry(pc, x);
    entry_free(pc, x);
    pc->evictions++;
}

struct pc_entry *pc_lookup(struct prefix_cache *pc, const int32_t *toks, int n) {
    if (!pc->cap || !pc->ops) return NULL;
    struct pc_entry *best = NULL;
    for (struct pc_entry *x = pc->head; x; x = x->next) {
        if (x->n > n || (x->n == n && !x->logits)) continue;
        if (best && x->n <= best->n) continue;
        if (!memcmp(x->toks, toks, (size_t)x->n * sizeof *toks)) best = x;
    }
    if (!best) {
        pc->misses++;
        return NULL;
    }
    pc->hits++;
    unlink_entry(pc, best);
    push_front(pc, best);
    return best;
}

bool pc_has(struct prefix_cache *pc, const int32_t *toks, int n) {
    for (struct pc_entry *x = pc->head; x; x = x->next)
        if (x->n == n && !memcmp(x->toks, toks, (size_t)n * sizeof *toks)) return true;
    return false;
}

int pc_insert(struct prefix_cache *pc, const int32_t *toks, int n, void *seq,
              const float *logits) {
    if (!pc->cap || !pc->ops || !pc->ops->seq_copy || n < 1) return 1;
    if (pc_has(pc, toks, n)) return 1;
    size_t sb = pc->ops->seq_bytes(pc->model, n);
    size_t need = sb + (size_t)n * sizeof(int32_t) + sizeof(struct pc_entry) +
                  (logits ? (size_t)pc->n_vocab * sizeof(float) : 0);
    if (need > pc->cap) return 1;
    // Cap checked before inserting: evict least recently used entries first.
    while (pc->head && pc->used + need > pc->cap) evict_lru(pc);
    while (pc->head && !lfmd_mem_fits(need)) evict_lru(pc);
    if (!lfmd_mem_fits(need)) return 1;
    struct pc_entry *x = lfmd_calloc(1, sizeof *x, LFMD_MEM_PREFIX);
    if (!x) return 1;
    struct lfmd_err_ctx err = {0};
    x->toks = lfmd_malloc((size_t)n * sizeof(int32_t), LFMD_MEM_PREFIX);
    if (logits) x->logits = lfmd_malloc((size_t)pc->n_vocab * sizeof(float), LFMD_MEM_PREFIX);
    size_t kv0 = lfmd_mem_used(LFMD_MEM_KV), cv0 = lfmd_mem_used(LFMD_MEM_CONV);
    if (!x->toks || (logits && !x->logits) || pc->ops->seq_new(pc->model, n, &x->seq, &err)) {
        lfmd_free(x->toks);
        lfmd_free(x->logits);
        lfmd_free(x);
        return 1;
    }
    if (pc->ops->seq_copy(x->seq, seq)) {
        pc->ops->seq_free(x->seq);
        lfmd_free(x->toks);
        lfmd_free(x->logits);
        lfmd_free(x);
        return 1;
    }
    // Only the engine thread allocates sequence state, so the deltas are this sequence's.
    x->kv_bytes = lfmd_mem_used(LFMD_MEM_KV) - kv0;
    x->conv_bytes = lfmd_mem_used(LFMD_MEM_CONV) - cv0;
    lfmd_mem_uncharge(LFMD_MEM_KV, x->kv_bytes);
    lfmd_mem_uncharge(LFMD_MEM_CONV, x->conv_bytes);
    lfmd_mem_charge(LFMD_MEM_PREFIX, x->kv_bytes + x->conv_bytes);
    memcpy(x->toks, toks, (size_t)n * sizeof *toks);
    if (logits) memcpy(x->logits, logits, (size_t)pc->n_vocab * sizeof(float));
    x->n = n;
    x->bytes = need;
    pc->used += need;
    pc->n++;
    pc->inserts++;
    push_front(pc, x);
    return 0;
}

void pc_clear(struct prefix_cache *pc) {
    while (pc->head) evict_lru(pc);
}
