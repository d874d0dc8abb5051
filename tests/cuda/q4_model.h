// Test helper for the CUDA tests: a 4-bit copy of a golden model written by quantize_model
// (MLX q4 with group gs, or GGUF type gt) under /tmp, named by the test, pid and source.
// Invariant: header-only, included by one test file each (static functions).
// SPDX-License-Identifier: MIT
#ifndef LFMD_TESTS_CUDA_Q4_MODEL_H
#define LFMD_TESTS_CUDA_Q4_MODEL_H

#include "model/quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Removes the copy at path (a directory or a file).
static void q4_model_remove(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd)) {
    }
}

// Quantizes golden model dir into out (size n; "/tmp/lfmd-<tag>-<pid>-<name>-<kind><gs>[.gguf]");
// 0 on success, -1 (after printing why) on failure.
static int q4_model_make(const char *dir, const char *tag, enum quant_format fmt, int gs,
                         enum lfmd_dtype gt, char *out, size_t n) {
    const char *base = strrchr(dir, '/');
    snprintf(out, n, "/tmp/lfmd-%s-%d-%s-%s%d%s", tag, (int)getpid(), base ? base + 1 : dir,
             fmt == QUANT_FMT_MLX ? "mlx" : lfmd_dtype_name(gt), gs,
             fmt == QUANT_FMT_GGUF ? ".gguf" : "");
    struct quant_opts qo;
    quant_opts_default(&qo);
    qo.format = fmt;
    qo.bits = 4;
    qo.group_size = gs;
    qo.gguf_type = gt;
    struct quant_stats qs;
    struct lfmd_err_ctx err = {0};
    q4_model_remove(out);
    if (quantize_model(dir, out, &qo, &qs, &err)) {
        fprintf(stderr, "quantize %s: %s\n", dir, err.msg);
        return -1;
    }
    return 0;
}

#endif
