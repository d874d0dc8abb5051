// Shared helpers of the fuzz targets: a per-process scratch directory, writing an input to a
// file there, and the leak check every target runs after each input (lfmd_alloc_live() must
// return to its value before the input; a difference is reported and aborts, which libFuzzer
// and the replay runner both treat as a failure).
// SPDX-License-Identifier: MIT
#ifndef LFMD_FUZZ_COMMON_H
#define LFMD_FUZZ_COMMON_H

#include "base/alloc.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Directory created once per process (removed at exit by the replay runner; libFuzzer runs
// leave it behind, a handful of small files). On tmpfs (/dev/shm) when there is one: on a disk
// file system every rewrite of a truncated file is flushed at close (ext4 auto_da_alloc), which
// cost the file-based targets more than the parsing they fuzz.
static inline const char *fuzz_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/lfmd-fuzz-XXXXXX");
        if (!mkdtemp(dir)) {
            snprintf(dir, sizeof dir, "/tmp/lfmd-fuzz-XXXXXX");
            if (!mkdtemp(dir)) abort();
        }
    }
    return dir;
}

// Writes data to fuzz_dir()/name; returns the full path (static storage, one per slot).
static inline const char *fuzz_write(const char *name, const void *data, size_t n, int slot) {
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(paths[slot], "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return paths[slot];
}

// Splits data at the first occurrence of sep: [0, *n1) and [*off2, size).
static inline void fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *n1,
                              size_t *off2) {
    size_t sl = strlen(sep);
    for (size_t i = 0; i + sl <= size; i++) {
        if (!memcmp(data + i, sep, sl)) {
            *n1 = i;
            *off2 = i + sl;
            return;
        }
    }
    *n1 = size;
    *off2 = size;
}

static inline void fuzz_check_leaks(long before, const char *what) {
    long after = lfmd_alloc_live();
    if (after != before) {
        fprintf(stderr, "LEAK in %s: %ld live allocations before, %ld after\n", what, before, after);
        if (!getenv("LFMD_FUZZ_LEAK_WARN")) abort(); // debugging aid: report and go on

    }
}

#endif
