// Status codes and the caller-owned error context.
// Every fallible function returns 0 or a negative LFMD_E* code and, when given an err ctx,
// writes one human-readable line into it. No global error strings.
// SPDX-License-Identifier: MIT
#ifndef LFMD_BASE_ERR_H
#define LFMD_BASE_ERR_H

#include <stdarg.h>

#define LFMD_ERR_MAP(XX)                                             \
    XX(ENOMEM, -1, "out of memory")                                  \
    XX(EBUDGET, -2, "memory budget exceeded")                        \
    XX(EIO, -3, "input/output error")                                \
    XX(EFORMAT, -4, "malformed file")                                \
    XX(EINVAL, -5, "invalid argument")                               \
    XX(ETOOBIG, -6, "too large")                                     \
    XX(ENOTSUP, -7, "not supported")                                 \
    XX(ECANCELED, -8, "canceled")                                    \
    XX(ETIMEDOUT, -9, "timed out")                                   \
    XX(ECUDA, -10, "CUDA error")                                     \
    XX(ENOENT, -11, "not found")                                     \
    XX(EBUSY, -12, "busy")

enum lfmd_status {
    LFMD_OK = 0,
#define XX(name, code, msg) LFMD_##name = code,
    LFMD_ERR_MAP(XX)
#undef XX
};

#define LFMD_MUST_CHECK __attribute__((warn_unused_result))
#define LFMD_PRINTF(a, b) __attribute__((format(printf, a, b)))

// Detailed failure description, owned by the caller. Zero-initialise before use.
struct lfmd_err_ctx {
    int code;
    char msg[512];
};

const char *lfmd_strerror(int code);
const char *lfmd_err_name(int code);

// Record code + formatted message into err (if non-NULL, first error wins) and return code.
int lfmd_err_set(struct lfmd_err_ctx *err, int code, const char *fmt, ...) LFMD_PRINTF(3, 4);
void lfmd_err_clear(struct lfmd_err_ctx *err);

#define LFMD_ASSERT(c)                                                                   \
    do {                                                                                 \
        if (!(c)) lfmd_assert_fail(#c, __FILE__, __LINE__);                              \
    } while (0)
_Noreturn void lfmd_assert_fail(const char *expr, const char *file, int line);

#endif
