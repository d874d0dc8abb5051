// Sampler: greedy ties, top-k = 1 equals greedy, seeded determinism, temperature and top-p/min-p
// shaping of the empirical distribution, repetition penalty semantics (HF: l>0 ? l/p : l*p).
// SPDX-License-Identifier: MIT
#include "check.h"

#include "base/alloc.h"
#include "sample/sampler.h"

#include <math.h>
#include <string.h>

#define V 8

static void set_logits(float *l) {
    const float base[V] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f, 2.5f, -2.0f};
    memcpy(l, base, sizeof base);
}

// Empirical frequencies of n draws.
static void freqs(struct sampler_params *p, int n, double *f) {
    struct sampler s;
    CHECK(sampler_init(&s, p, V) == 0);
    for (int i = 0; i < V; i++) f[i] = 0;
    float l[V];
    for (int i = 0; i < n; i++) {
        set_logits(l);
        int32_t id = sampler_sample(&s, l, NULL, 0);
        CHECK(id >= 0 && id < V);
        f[id] += 1.0 / n;
    }
    sampler_fini(&s);
}

// sampler_argmax (two passes) against the one-pass reference: random lengths, values drawn from a
// small set so that ties are common, with NaN, +-0 and +-inf mixed in, and NaN at id 0.
static void argmax_vs_ref(void) {
    static float buf[70000];
    const float special[] = {NAN, 0.0f, -0.0f, INFINITY, -INFINITY, 1.0f, -1.0f, 2.0f};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int mism = 0;
    for (int it = 0; it < 3000; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int n = it < 2000 ? 1 + (int)(x % 300) : 65536 + (int)(x % 3000);
        for (int i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int k = (int)(x % 64);
            buf[i] = k < 8 ? special[k] : (float)((int)(x >> 8) % 9) - 4.0f;
        }
        if (it % 7 == 0) buf[0] = NAN;
        if (it % 11 == 0) buf[n - 1] = 100.0f; // the maximum in the unvectorized tail
        if (sampler_argmax(buf, n) != sampler_argmax_ref(buf, n)) mism++;
    }
    CHECK_EQ(mism, 0);
}

int main(void) {
    float l[V];
    set_logits(l);
    CHECK_EQ(sampler_argmax(l, V), 1); // tie between 1 and 3: lowest id
    argmax_vs_ref();

    struct sampler_params p;
    sampler_params_default(&p);
    struct sampler s;
    CHECK(sampler_init(&s, &p, V) == 0);
    set_logits(l);
    CHECK_EQ(sampler_sample(&s, l, NULL, 0), 1); // temperature 0 = greedy
    sampler_fini(&s);

    // top-k 1 at any temperature is greedy (ties broken towards the lower id).
    p.temperature = 5.0f;
    p.top_k = 1;
    double f[V];
    freqs(&p, 200, f);
    CHECK_NEAR(f[1], 1.0, 1e-9);

    // Same seed -> same sequence; different seed -> (almost surely) different.
    p.top_k = 0;
    p.temperature = 1.0f;
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run < 2 ? 42 : 43;
        CHECK(sampler_init(&s, &p, V) == 0);
        for (int i = 0; i < 64; i++) {
            set_logits(l);
            (run == 0 ? a : run == 1 ? b : c)[i] = sampler_sample(&s, l, NULL, 0);
        }
        sampler_fini(&s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);

    // Temperature 1: frequencies approach softmax(logits).
    set_logits(l);
    double z = 0, pr[V];
    for (int i = 0; i < V; i++) z += exp(l[i]);
    for (int i = 0; i < V; i++) pr[i] = exp(l[i]) / z;
    freqs(&p, 40000, f);
    for (int i = 0; i < V; i++) CHECK_NEAR(f[i], pr[i], 0.015);

    // top-p 0.5: only the smallest set of most likely tokens reaching 0.5 survives: ids 1 and 3
    // (each ~0.29 of the mass; together 0.58).
    p.top_p = 0.5f;
    freqs(&p, 4000, f);
    CHECK_NEAR(f[1] + f[3], 1.0, 1e-9);
    CHECK(f[1] > 0.4 && f[3] > 0.4);

    // min-p 0.5: keeps tokens with p >= 0.5 * p_max: ids 1, 3 (p_max) and 6 (e^-0.5 = 0.61 of it).
    p.top_p = 1.0f;
    p.min_p = 0.5f;
    freqs(&p, 4000, f);
    CHECK_NEAR(f[1] + f[3] + f[6], 1.0, 1e-9);
    CHECK(f[6] > 0.1);

    // Repetition penalty: positive logits divided, negative multiplied, each id once.
    sampler_params_default(&p);
    p.repeat_penalty = 2.0f;
    CHECK(sampler_init(&s, &p, V) == 0);
    set_logits(l);
    int32_t hist[4] = {1, 1, 4, 3};
    int32_t id = sampler_sample(&s, l, hist, 4);
    CHECK_NEAR(l[1], 1.5, 1e-6);
    CHECK_NEAR(l[3], 1.5, 1e-6);
    CHECK_NEAR(l[4], -2.0, 1e-6);
    CHECK_EQ(id, 6); // 2.5 is now the largest
    sampler_fini(&s);

    CHECK_EQ(lfmd_alloc_live(), 0);
    return check_done();
}
