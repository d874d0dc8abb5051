// Hugging Face compatible tokenizer: tokenizer.json (+ tokenizer_config.json) or GGUF-style arrays,
// byte-level and SentencePiece-style BPE, added/special tokens, decoding, streaming decoding and
// chat templates (a Jinja subset, see docs/TOKENIZER.md).
// Invariant: a loaded tokenizer is immutable; every function taking `const struct tokenizer *` is
// safe to call from several threads at once (all per-call state lives on the stack or in buffers
// the call allocates). Does not do truncation, padding or pairs of sequences.
// SPDX-License-Identifier: MIT
#ifndef LFMD_TOKENIZER_TOKENIZER_H
#define LFMD_TOKENIZER_TOKENIZER_H

#include "base/buf.h"
#include "base/err.h"
#include "format/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tokenizer;

// Token attributes (bit flags) returned by tokenizer_token_attr.
enum tokenizer_attr {
    TOKENIZER_ATTR_NORMAL = 0,
    TOKENIZER_ATTR_ADDED = 1,   // an added token (matched in raw text before splitting)
    TOKENIZER_ATTR_SPECIAL = 2, // special/control token (skipped by decode with skip_special)
    TOKENIZER_ATTR_BYTE = 4,    // a <0xNN> byte-fallback token
    TOKENIZER_ATTR_UNUSED = 8,  // hole in the id space (no text)
};

// Loads a tokenizer from `path`: either a directory holding tokenizer.json (and optionally
// tokenizer_config.json, generation_config.json) or the tokenizer.json file itself (config files
// are then looked up next to it). Returns 0 and *out (free with tokenizer_free), or
// LFMD_EIO (unreadable), LFMD_EFORMAT (malformed JSON, unknown tokens in merges, bad ids),
// LFMD_ENOTSUP (a model/normalizer/pre-tokenizer/decoder type or a chat-template construct that
// is not implemented; the message names it), LFMD_ETOOBIG, LFMD_ENOMEM. *out is NULL on failure.
LFMD_MUST_CHECK int tokenizer_load(const char *path, struct tokenizer **out,
                                   struct lfmd_err_ctx *err);

// GGUF-style construction. model: "gpt2" (byte-level BPE with the GPT-2 regex, or `pre` naming a
// known regex: "llama-bpe", "llama3", "qwen2", "lfm2", "default") or "llama" (SentencePiece BPE
// with byte fallback; merges optional: when absent, pieces are merged by score).
// All arrays are borrowed for the duration of the call. token_types follow GGUF
// (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); may be NULL.
// scores may be NULL. merges are "a b" strings (n_merges may be 0). bos/eos/unk ids may be -1.
// chat_template may be NULL.
struct tokenizer_arrays {
    const char *model;             // "gpt2" or "llama"
    const char *pre;               // tokenizer.ggml.pre, may be NULL
    const char *const *tokens;     // [n_tokens] UTF-8 token texts (NUL-terminated)
    size_t n_tokens;
    const char *const *merges;     // [n_merges] "left right"
    size_t n_merges;
    const int32_t *token_types;    // [n_tokens] or NULL
    const float *scores;           // [n_tokens] or NULL
    int32_t bos_id, eos_id, unk_id, eot_id, pad_id;
    bool add_bos, add_eos;
    bool add_space_prefix;         // llama: prepend "▁" (default true)
    const char *chat_template;
};
LFMD_MUST_CHECK int tokenizer_from_arrays(const struct tokenizer_arrays *a, struct tokenizer **out,
                                          struct lfmd_err_ctx *err);

// Frees everything the tokenizer owns. NULL is a no-op.
void tokenizer_free(struct tokenizer *t);

// Encodes text[0..len) (UTF-8; invalid bytes are treated as U+FFFD only for splitting, the bytes
// themselves are kept). add_special: run the post-processor (BOS etc.), like HF
// add_special_tokens. parse_special: match special-token text as special tokens (HF default);
// false treats it literally (non-special added tokens are still matched).
// Returns 0 and *ids_out (free with lfmd_free; NULL when *n_out is 0), or LFMD_ENOMEM /
// LFMD_ETOOBIG (more than LFMD_MAX_CTX tokens / input over LFMD_MAX_BODY_BYTES).
LFMD_MUST_CHECK int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
                                     bool add_special, bool parse_special, int32_t **ids_out,
                                     size_t *n_out, struct lfmd_err_ctx *err);

// Decodes ids through the tokenizer's decoder exactly as HF decode(ids, skip_special) does (no
// clean-up pass). Returns 0 and *text_out (NUL-terminated, free with lfmd_free) and *len_out, or
// LFMD_EINVAL (id out of range), LFMD_ENOMEM.
LFMD_MUST_CHECK int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n,
                                     bool skip_special, char **text_out, size_t *len_out,
                                     struct lfmd_err_ctx *err);

// Streaming decoder in caller storage. Appends to `out` only complete UTF-8 characters; bytes of a
// character still incomplete are held (at most 3) until later tokens complete it. Invalid
// sequences come out as U+FFFD. Borrows t until fini.
struct tok_stream {
    const struct tokenizer *t;
    bool skip_special;
    bool started;      // a non-skipped token was seen (leading-space strip applies once)
    uint8_t n_pending;
    uint8_t pending[8];
};
void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool skip_special);
// Returns 0, LFMD_EINVAL (bad id) or buf_append's error.
LFMD_MUST_CHECK int tok_stream_push(struct tok_stream *s, int32_t id, struct buf *out);
// Flushes held bytes (as U+FFFD) at end of stream.
LFMD_MUST_CHECK int tok_stream_flush(struct tok_stream *s, struct buf *out);
void tok_stream_fini(struct tok_stream *s);

// Renders the chat template with transformers' conventions (trim_blocks, lstrip_blocks; variables
// messages, add_generation_prompt, tools, bos_token, eos_token, ... plus kwargs members).
// messages: JSON array; kwargs: JSON object or NULL; tools: JSON array or NULL.
// Returns 0 and *prompt_out (NUL-terminated, free with lfmd_free), or LFMD_ENOENT (no template),
// LFMD_EINVAL (template raised an error / type error at run time), LFMD_ETOOBIG, LFMD_ENOMEM.
LFMD_MUST_CHECK int tokenizer_apply_template(const struct tokenizer *t,
                                             const struct json *messages,
                                             bool add_generation_prompt,
                                             const struct json *kwargs, const struct json *tools,
                                             char **prompt_out, struct lfmd_err_ctx *err);
bool tokenizer_has_template(const struct tokenizer *t);
// Why the chat template failed to compile at load (names the unsupported construct), or NULL.
const char *tokenizer_template_error(const struct tokenizer *t);

// ---- accessors (all O(1) except id lookup, which is a hash lookup) ----
int32_t tokenizer_n_vocab(const struct tokenizer *t);
// Token text as stored in the vocab (byte-level tokens are in their mapped form). Borrowed until
// tokenizer_free. NULL for an out-of-range id or hole.
const char *tokenizer_token_text(const struct tokenizer *t, int32_t id, size_t *len_out);
// Id of an exact token text, or -1.
int32_t tokenizer_token_id(const struct tokenizer *t, const char *text, size_t len);
unsigned tokenizer_token_attr(const struct tokenizer *t, int32_t id);
bool tokenizer_is_special(const struct tokenizer *t, int32_t id);
int32_t tokenizer_bos_id(const struct tokenizer *t); // -1 when none
int32_t tokenizer_eos_id(const struct tokenizer *t); // -1 when none
// True for ids that end a generation turn (eos, <|im_end|>, <|eot_id|>, generation_config ids...).
bool tokenizer_is_eos(const struct tokenizer *t, int32_t id);
// The eos-like ids (borrowed), count in *n.
const int32_t *tokenizer_eos_ids(const struct tokenizer *t, size_t *n);

#endif
