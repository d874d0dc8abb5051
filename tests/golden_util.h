// Test helpers for comparisons against reference files: read a whole file, relative L2 error.
// SPDX-License-Identifier: MIT
#ifndef LFMD_TESTS_GOLDEN_UTIL_H
#define LFMD_TESTS_GOLDEN_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

// Whole file, NUL-terminated, malloc'd (free with free); NULL if unreadable.
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = b ? (size_t)n : 0;
    return b;
}

// ||a - b|| / ||b|| (||a - b|| when b is zero); INFINITY when a holds a NaN.
static double rel_l2(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        if (a[i] != a[i]) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
