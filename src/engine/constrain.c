// Constrained output (see constrain.h). Placeholder until the grammar lands: choices only.
// SPDX-License-Identifier: MIT
#include "constrain.h"

#include "base/alloc.h"

#include <string.h>

struct engine_constraint {
    char **choices;
    int n;
    char out[256];
    size_t len;
};

int constraint_json(const struct json *schema, struct engine_constraint **out,
                    struct lfmd_err_ctx *err) {
    (void)schema;
    *out = NULL;
    return lfmd_err_set(err, LFMD_EINVAL, "JSON constraints are not supported yet");
}

int constraint_choices(const char *const *choices, int n, struct engine_constraint **out,
                       struct lfmd_err_ctx *err) {
    (void)choices;
    (void)n;
    *out = NULL;
    return lfmd_err_set(err, LFMD_EINVAL, "choices constraints are not supported yet");
}

void constraint_free(struct engine_constraint *c) { (void)c; }
bool constraint_allows(const struct engine_constraint *c, const char *b, size_t n) {
    (void)c; (void)b; (void)n;
    return true;
}
int constraint_feed(struct engine_constraint *c, const char *b, size_t n) {
    (void)c; (void)b; (void)n;
    return 0;
}
bool constraint_complete(const struct engine_constraint *c) { (void)c; return true; }
bool constraint_final(const struct engine_constraint *c) { (void)c; return false; }
