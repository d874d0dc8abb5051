// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded RNG.
// A sampler is caller storage with one scratch array sized at init; sampling allocates nothing.
// Order of operations (llama.cpp's default chain): repetition penalty -> (temperature 0: argmax)
// -> top-k -> softmax with temperature -> top-p -> min-p -> draw.
// SPDX-License-Identifier: MIT
#ifndef LFMD_SAMPLE_SAMPLER_H
#define LFMD_SAMPLE_SAMPLER_H

#include "base/err.h"

#include <stdint.h>

struct sampler_params {
    float temperature;     // 0 = greedy
    int top_k;             // 0 = off
    float top_p;           // 1 = off
    float min_p;           // 0 = off
    float repeat_penalty;  // 1 = off (HF/llama.cpp semantics: logit>0 ? l/p : l*p)
    int repeat_last_n;     // window of history the penalty looks at (0 = whole history)
    uint64_t seed;
};

struct sampler {
    struct sampler_params p;
    uint64_t rng[2];       // xoroshiro128+ state
    int n_vocab;
    struct sampler_cand *cand; // owned, n_vocab entries
};

struct sampler_cand {
    float logit;
    int32_t id;
};

void sampler_params_default(struct sampler_params *p);
LFMD_MUST_CHECK int sampler_init(struct sampler *s, const struct sampler_params *p, int n_vocab);
void sampler_fini(struct sampler *s);
// Picks the next token. logits (n_vocab) may be modified (penalty). history: tokens so far
// (prompt + generated) for the repetition penalty; may be NULL when n_history is 0.
int32_t sampler_sample(struct sampler *s, float *logits, const int32_t *history, int n_history);
// argmax, lowest id wins ties (same as torch.argmax on CPU/GPU for exact ties in practice).
int32_t sampler_argmax(const float *logits, int n_vocab);
// The plain one-pass loop sampler_argmax must equal (tests).
int32_t sampler_argmax_ref(const float *logits, int n_vocab);

#endif
