// Constrained output: a JSON grammar (any JSON value for json_object, or a JSON-schema subset:
// object/properties/required/additionalProperties/enum/const/string/number/integer/boolean/null/
// array/items/minItems/maxItems/minLength/maxLength/type arrays/nesting) and a plain choices
// constraint, run as a byte-level pushdown automaton. The engine masks every vocab token whose
// bytes the machine would reject (constraint_mask walks a prefix trie of the vocab, so shared
// token prefixes are checked once, and caches masks per state), and stops when the value is
// complete.
// Invariant: a state only ever accepts bytes that keep the output a prefix of a valid value;
// with a token budget, only tokens after which the value can still be completed in time.
// SPDX-License-Identifier: MIT
#ifndef LFMD_ENGINE_CONSTRAIN_H
#define LFMD_ENGINE_CONSTRAIN_H

#include "base/err.h"
#include "format/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine_constraint;
struct constraint_vocab;

// schema NULL ({"type":"json_object"}): any JSON object. Otherwise a JSON schema (subset above);
// unsupported keywords ($ref, pattern, anyOf, format, minimum, ...) are rejected with LFMD_EINVAL
// and a message naming the keyword and its path. An object schema with "properties" allows no
// other keys unless additionalProperties says so; one without "properties" allows any keys.
LFMD_MUST_CHECK int constraint_json(const struct json *schema, struct engine_constraint **out,
                                    struct lfmd_err_ctx *err);
// Output must be exactly one of the strings (1..256 of them, each 1..4096 bytes).
LFMD_MUST_CHECK int constraint_choices(const char *const *choices, int n,
                                       struct engine_constraint **out, struct lfmd_err_ctx *err);
void constraint_free(struct engine_constraint *c);
// Would the output stay valid after appending bytes? (Does not change c.)
bool constraint_allows(const struct engine_constraint *c, const char *bytes, size_t len);
// Appends bytes (must be allowed). Returns 0 or LFMD_EINVAL (c unchanged then).
int constraint_feed(struct engine_constraint *c, const char *bytes, size_t len);
// The output so far is a complete value (generation may stop).
bool constraint_complete(const struct engine_constraint *c);
// No byte can follow (stop now).
bool constraint_final(const struct engine_constraint *c);
// Fewest bytes that complete the value from here (0 when complete).
int constraint_min_bytes(const struct engine_constraint *c);

// ---- the vocabulary as a prefix trie (built once per model) ----

// get(user, id, &len) returns token id's bytes (len 0: special / unusable); is_eog marks the
// end-of-generation ids, allowed only once the value is complete.
typedef const char *(*constraint_bytes_fn)(void *user, int32_t id, size_t *len);
typedef bool (*constraint_eog_fn)(void *user, int32_t id);
LFMD_MUST_CHECK int constraint_vocab_new(int n_vocab, constraint_bytes_fn get,
                                         constraint_eog_fn is_eog, void *user,
                                         struct constraint_vocab **out, struct lfmd_err_ctx *err);
void constraint_vocab_free(struct constraint_vocab *v);
size_t constraint_vocab_bytes(const struct constraint_vocab *v);

// Sets logits[id] = -INFINITY for every token that would break the constraint (EOG ids unless
// the value is complete). budget: tokens that may still be generated including this one (<= 0:
// unlimited); tokens after which the value could not be completed within the budget (one byte
// per token at worst) are masked too, unless that would leave nothing. Returns the number of
// tokens left (0: nothing can follow). Uses c's mask cache (not thread-safe per constraint).
int constraint_mask(struct engine_constraint *c, const struct constraint_vocab *v, int budget,
                    float *logits);

#endif
