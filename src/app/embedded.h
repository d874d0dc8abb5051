// The default model embedded in the lfmd binary (models/lfm2-router quantized to 8-bit MLX at build
// time by the stage-0 binary). The files live in the binary's read-only data; on first use they are
// written once to a cache directory (atomically: temp dir + rename) and loaded from there like any
// model directory, so the usual mmap/lazy-load path applies.
// SPDX-License-Identifier: MIT
#ifndef LFMD_APP_EMBEDDED_H
#define LFMD_APP_EMBEDDED_H

#include <stddef.h>

struct embedded_file {
    const char *name;
    const unsigned char *data;
    size_t size;
};

// The embedded files (NULL/0 when this binary carries none, e.g. the stage-0 build).
const struct embedded_file *embedded_model_files(size_t *n);
const char *embedded_model_name(void);
// Returns the directory holding the extracted default model (static storage), or NULL with a
// message on stderr.
const char *embedded_model_dir(void);

#endif
