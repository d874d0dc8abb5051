// Status code names/messages generated from LFMD_ERR_MAP, and the error context helpers.
// SPDX-License-Identifier: MIT
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lfmd_strerror(int code) {
    switch (code) {
    case 0: return "ok";
#define XX(name, c, msg) \
    case c: return msg;
        LFMD_ERR_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *lfmd_err_name(int code) {
    switch (code) {
    case 0: return "LFMD_OK";
#define XX(name, c, msg) \
    case c: return "LFMD_" #name;
        LFMD_ERR_MAP(XX)
#undef XX
    }
    return "LFMD_EUNKNOWN";
}

int lfmd_err_set(struct lfmd_err_ctx *err, int code, const char *fmt, ...) {
    if (err && err->code == 0) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void lfmd_err_clear(struct lfmd_err_ctx *err) {
    if (err) {
        err->code = 0;
        err->msg[0] = 0;
    }
}

void lfmd_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "lfmd: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
