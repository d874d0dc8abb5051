// Minimal test harness: CHECK* macros count failures and print file:line; main returns check_done().
// SPDX-License-Identifier: MIT
#ifndef LFMD_TESTS_CHECK_H
#define LFMD_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures, check_count;

#define CHECK(c)                                                                          \
    do {                                                                                  \
        check_count++;                                                                    \
        if (!(c)) {                                                                       \
            check_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);         \
        }                                                                                 \
    } while (0)

#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        long long _a = (long long)(a), _b = (long long)(b);                               \
        check_count++;                                                                    \
        if (_a != _b) {                                                                   \
            check_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", __FILE__,   \
                    __LINE__, #a, _a, #b, _b);                                            \
        }                                                                                 \
    } while (0)

#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        const char *_a = (a), *_b = (b);                                                  \
        check_count++;                                                                    \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                          \
            check_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", __FILE__,      \
                    __LINE__, _a ? _a : "(null)", _b ? _b : "(null)");                    \
        }                                                                                 \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                             \
    do {                                                                                  \
        double _a = (double)(a), _b = (double)(b);                                        \
        check_count++;                                                                    \
        if (!(fabs(_a - _b) <= (tol))) {                                                  \
            check_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %g, %s = %g (tol %g)\n",      \
                    __FILE__, __LINE__, #a, _a, #b, _b, (double)(tol));                   \
        }                                                                                 \
    } while (0)

static inline int check_done(void) {
    fprintf(stderr, "%d checks, %d failures\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
