// Constrained output: a JSON grammar (any JSON value for json_object, or a JSON-schema subset:
// object/properties/required/enum/const/string/number/integer/boolean/null/array/items/nesting)
// and a plain choices constraint, run as a byte-level state machine. The engine masks every
// vocab token whose bytes the machine would reject, and stops when the value is complete.
// Invariant: a state only ever accepts bytes that keep the output a prefix of a valid value.
// SPDX-License-Identifier: MIT
#ifndef LFMD_ENGINE_CONSTRAIN_H
#define LFMD_ENGINE_CONSTRAIN_H

#include "base/err.h"
#include "format/json.h"

#include <stdbool.h>
#include <stddef.h>

struct engine_constraint;

// {"type":"json_object"}: any JSON object. schema: a JSON schema (subset above); unsupported
// keywords are rejected with LFMD_EINVAL and a message naming the keyword and its path.
LFMD_MUST_CHECK int constraint_json(const struct json *schema, struct engine_constraint **out,
                                    struct lfmd_err_ctx *err);
// Output must be exactly one of the strings.
LFMD_MUST_CHECK int constraint_choices(const char *const *choices, int n,
                                       struct engine_constraint **out, struct lfmd_err_ctx *err);
void constraint_free(struct engine_constraint *c);
// Would the output stay valid after appending bytes? (Does not change c.)
bool constraint_allows(const struct engine_constraint *c, const char *bytes, size_t len);
// Appends bytes (must be allowed). Returns 0 or LFMD_EINVAL.
int constraint_feed(struct engine_constraint *c, const char *bytes, size_t len);
// The output so far is a complete value (generation may stop).
bool constraint_complete(const struct engine_constraint *c);
// No byte can follow (stop now).
bool constraint_final(const struct engine_constraint *c);

#endif
