// Deterministic test data for the kernel tests: one xorshift64 stream per test program, seeded
// by TEST_RNG_SEED (defined before the include), so every run draws the same numbers.
// SPDX-License-Identifier: MIT
#ifndef LFMD_TEST_RNG_H
#define LFMD_TEST_RNG_H

#include <stdint.h>

#ifndef TEST_RNG_SEED
#error "define TEST_RNG_SEED before including test_rng.h"
#endif

static uint64_t rng = TEST_RNG_SEED;

static inline uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

// Uniform in [-1, 1).
static inline float frand(void) { return (float)((double)rnd() / 4294967296.0 * 2.0 - 1.0); }

#endif
