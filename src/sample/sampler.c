// Sampling implementation; see sampler.h for the chain. Ties in argmax go to the lowest id.
// SPDX-License-Identifier: MIT
#include "sampler.h"

#include "base/alloc.h"

#include <math.h>
#include <stdlib.h>

void sampler_params_default(struct sampler_params *p) {
    *p = (struct sampler_params){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                 .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0x5eed};
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Uniform in [0, 1).
static double rng_next(struct sampler *s) {
    uint64_t s0 = s->rng[0], s1 = s->rng[1];
    uint64_t r = s0 + s1;
    s1 ^= s0;
    s->rng[0] = rotl(s0, 24) ^ s1 ^ (s1 << 16);
    s->rng[1] = rotl(s1, 37);
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_init(struct sampler *s, const struct sampler_params *p, int n_vocab) {
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t seed = p->seed;
    s->rng[0] = splitmix64(&seed);
    s->rng[1] = splitmix64(&seed);
    s->cand = lfmd_malloc((size_t)n_vocab * sizeof *s->cand, LFMD_MEM_REQUEST);
    return s->cand ? 0 : LFMD_ENOMEM;
}

void sampler_fini(struct sampler *s) {
    lfmd_free(s->cand);
    s->cand = NULL;
}

int32_t sampler_argmax_ref(const float *logits, int n_vocab) {
    int32_t best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

// The same result in two passes that carry no dependency from one element to the next (the
// reference reloads logits[best] every step: ~100 us for 65,536 logits, 1.3% of a 350M decode
// step on the main thread): the maximum over 16 independent lanes (v > m ? v : m skips NaN, as
// the reference's comparison does; maxps), then the first id holding it. A NaN at id 0 makes
// every comparison of the reference false, so it returns 0: kept.
int32_t sampler_argmax(const float *logits, int n_vocab) {
    enum { LANES = 16 };
    if (n_vocab < 2 * LANES || logits[0] != logits[0]) return sampler_argmax_ref(logits, n_vocab);
    float m[LANES];
    for (int k = 0; k < LANES; k++) m[k] = logits[0];
    int i = 0;
    for (; i + LANES <= n_vocab; i += LANES)
        for (int k = 0; k < LANES; k++) m[k] = logits[i + k] > m[k] ? logits[i + k] : m[k];
    float best = m[0];
    for (int k = 1; k < LANES; k++) best = m[k] > best ? m[k] : best;
    for (; i < n_vocab; i++) best = logits[i] > best ? logits[i] : best;
    for (i = 0; i < n_vocab; i++)
        if (logits[i] == best) break;
    return i;
}

static int cmp_desc(const void *a, const void *b) {
    const struct sampler_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

// Moves the k largest candidates to the front, sorted (partial selection then sort).
static void top_k_sort(struct sampler_cand *c, int n, int k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cmp_desc);
        return;
    }
    // Quickselect on the k-th element, then sort the head.
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        struct sampler_cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_desc(&c[i], &pivot) < 0) i++;
            while (cmp_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                struct sampler_cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, cmp_desc);
}

int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history) {
    const struct sampler_params *p = &s->p;
    int n = s->n_vocab;
    if (p->repeat_penalty != 1.0f && n_history > 0) {
        int start = p->repeat_last_n > 0 && n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        // Penalise each distinct id once: mark by sign trick is unsafe, so use the candidate array as
        // a seen-set (cleared lazily).
        for (int i = start; i < n_history; i++) {
            int32_t id = history[i];
            if (id >= 0 && id < n) s->cand[id].id = -1;
        }
        for (int i = start; i < n_history; i++) {
            int32_t id = history[i];
            if (id < 0 || id >= n || s->cand[id].id != -1) continue;
            s->cand[id].id = 0;
            float l = logits[id];
            logits[id] = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        }
    }
    if (p->temperature <= 0.0f) return sampler_argmax(logits, n);

    struct sampler_cand *c = s->cand;
    for (int i = 0; i < n; i++) c[i] = (struct sampler_cand){logits[i], i};
    int k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    top_k_sort(c, n, k);
    // Softmax with temperature over the k survivors (c[0] is the max).
    double sum = 0;
    float maxl = c[0].logit;
    for (int i = 0; i < k; i++) {
        c[i].logit = (float)exp((double)(c[i].logit - maxl) / p->temperature);
        sum += c[i].logit;
    }
    for (int i = 0; i < k; i++) c[i].logit = (float)(c[i].logit / sum);
    // top-p: keep the smallest prefix whose mass reaches top_p.
    if (p->top_p < 1.0f) {
        double cum = 0;
        int keep = k;
        for (int i = 0; i < k; i++) {
            cum += c[i].logit;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        k = keep;
    }
    // min-p: drop candidates below min_p * p_max.
    if (p->min_p > 0.0f) {
        float thr = p->min_p * c[0].logit;
        int keep = 1;
        while (keep < k && c[keep].logit >= thr) keep++;
        k = keep;
    }
    double mass = 0;
    for (int i = 0; i < k; i++) mass += c[i].logit;
    double r = rng_next(s) * mass;
    for (int i = 0; i < k; i++) {
        r -= c[i].logit;
        if (r < 0) return c[i].id;
    }
    return c[k - 1].id;
}
