// Private layout of struct tokenizer, shared by the files of src/tokenizer/ only.
// Invariant: after tokenizer__finish succeeds every table is built and nothing is written again,
// so all readers may run concurrently.
// SPDX-License-Identifier: MIT
#ifndef LFMD_TOKENIZER_INTERNAL_H
#define LFMD_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/buf.h"
#include "tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

struct jinja_tmpl; // chat template program (jinja.h)

enum tk_norm_kind { TK_NORM_NFC, TK_NORM_NFKC, TK_NORM_PREPEND, TK_NORM_REPLACE, TK_NORM_LOWER };

struct tk_norm {
    enum tk_norm_kind kind;
    char *a; // Prepend: text; Replace: literal pattern (NULL when re is used)
    size_t a_len;
    char *b; // Replace: content
    size_t b_len;
    pcre2_code *re; // Replace with a Regex pattern
};

enum tk_split_behavior {
    TK_SPLIT_REMOVED,
    TK_SPLIT_ISOLATED,
    TK_SPLIT_MERGED_PREV,
    TK_SPLIT_MERGED_NEXT,
    TK_SPLIT_CONTIGUOUS,
};

enum tk_pre_kind { TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_METASPACE, TK_PRE_DIGITS };

enum tk_prepend_scheme { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };

struct tk_pre {
    enum tk_pre_kind kind;
    pcre2_code *re;                  // Split, ByteLevel with use_regex (may be NULL otherwise)
    enum tk_split_behavior behavior; // Split
    bool invert;                     // Split
    bool add_prefix_space;           // ByteLevel
    bool metaspace_split;            // Metaspace
    bool individual_digits;          // Digits
    enum tk_prepend_scheme prepend;  // Metaspace
    char repl[8];                    // Metaspace replacement (UTF-8)
    uint8_t repl_len;
};

enum tk_dec_kind {
    TK_DEC_BYTELEVEL,
    TK_DEC_REPLACE,
    TK_DEC_BYTEFALLBACK,
    TK_DEC_FUSE,
    TK_DEC_STRIP,
    TK_DEC_METASPACE,
};

struct tk_dec {
    enum tk_dec_kind kind;
    char *a; // Replace pattern / Strip content / Metaspace replacement
    size_t a_len;
    char *b; // Replace content
    size_t b_len;
    int start, stop; // Strip
    bool prefix;     // Metaspace: strip the leading space of the first token
};

struct tk_added {
    int32_t id;
    uint32_t len;
    char *text;
    bool special, lstrip, rstrip, single_word, normalized;
};

// Added-token matcher: tokens bucketed by first byte, longest first.
struct tk_matcher {
    uint32_t start[257]; // bucket b is idx[start[b] .. start[b+1])
    uint32_t *idx;       // indices into tokenizer.added
    bool any;
};

struct merge_slot {
    uint64_t key; // (left << 32 | right) + 1; 0 = empty
    int32_t rank;
    int32_t result;
};

#define TK_MAX_EOS 16

struct tokenizer {
    // ---- vocab ----
    int32_t n_vocab;     // max id + 1
    char *pool;          // all token texts, NUL-separated
    size_t pool_len, pool_cap;
    uint32_t *tok_off;   // [n_vocab] offset into pool
    uint32_t *tok_len;   // [n_vocab]
    uint8_t *tok_attr;   // [n_vocab] enum tokenizer_attr bits
    float *scores;       // [n_vocab] (GGUF SentencePiece without merges), or NULL
    int32_t *vhash;      // open addressing: token id or -1
    uint32_t vhash_mask;

    // ---- BPE model ----
    struct merge_slot *merges;
    uint32_t merges_mask;
    size_t n_merges;
    bool byte_level;     // ByteLevel pre-tokenizer present: pieces are bytes mapped to chars
    bool byte_fallback;
    bool fuse_unk;
    bool ignore_merges;
    bool merge_by_score; // GGUF llama without merges
    // SentencePiece-style vocab where no token has "▁" after another character: BPE of a piece
    // equals the concatenation of BPE over its sub-pieces split before each "▁" run, so long
    // unsplit inputs (no pre-tokenizer) are encoded word by word through the cache.
    bool split_metaspace;
    int32_t unk_id;
    int32_t byte_sym[256];      // byte-level: id of the mapped char of each byte
    int32_t byte_fallback_id[256]; // id of <0xNN>, or -1

    // ---- pipeline ----
    struct tk_norm *norms;
    size_t n_norms;
    struct tk_pre *pres;
    size_t n_pres;
    struct tk_dec *decs;
    size_t n_decs;
    struct tk_added *added;
    size_t n_added;
    struct tk_matcher match_raw;  // added tokens with normalized=false
    struct tk_matcher match_norm; // added tokens with normalized=true
    int32_t *post_single;         // post-processor template; -1 = the sequence
    size_t n_post_single;

    // ---- config ----
    int32_t bos_id, eos_id;
    char *bos_text, *eos_text, *unk_text, *pad_text; // for templates; may be NULL
    int32_t eos_ids[TK_MAX_EOS];
    size_t n_eos_ids;
    char *chat_template_src;
    struct jinja_tmpl *chat_template;
    char *chat_template_err; // why the template did not compile (it is then NULL)
};

// ---- vocab.c ----
// Hash of a byte string (64-bit, not cryptographic).
uint64_t tokenizer__hash(const void *p, size_t n);
// Allocates an empty tokenizer with every id field at -1.
struct tokenizer *tokenizer__new(void);
// Sizes the id space; every id starts as a hole. Fails with LFMD_ETOOBIG past LFMD_MAX_VOCAB.
int tokenizer__set_n_vocab(struct tokenizer *t, int64_t n, struct lfmd_err_ctx *err);
// Sets the text of id (first definition wins unless overwrite).
int tokenizer__set_token(struct tokenizer *t, int32_t id, const char *text, size_t len,
                         unsigned attr, struct lfmd_err_ctx *err);
// Builds the vocab hash (after every token is set).
int tokenizer__build_vocab_hash(struct tokenizer *t, struct lfmd_err_ctx *err);
// Merge table: call reserve with the count, then add each pair in rank order.
int tokenizer__merges_reserve(struct tokenizer *t, size_t n, struct lfmd_err_ctx *err);
int tokenizer__merge_add(struct tokenizer *t, const char *l, size_t ll, const char *r, size_t rl,
                         int32_t rank, struct lfmd_err_ctx *err);
// Merge rank/result of a pair, or rank -1.
static inline const struct merge_slot *tokenizer__merge_find(const struct tokenizer *t,
                                                             int32_t l, int32_t r) {
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint64_t h = key ^ (key >> 33); // splitmix64 finalizer: every key bit reaches the index
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    for (uint32_t i = (uint32_t)h & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        const struct merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (s->key == 0) return NULL;
    }
}
// Final step shared by both constructors: byte tables, matchers, eos set.
int tokenizer__finish(struct tokenizer *t, struct lfmd_err_ctx *err);
// GPT-2 byte <-> char mapping: code point of byte b; inverse returns -1 for other chars.
uint32_t tokenizer__byte_to_cp(uint8_t b);
int tokenizer__cp_to_byte(uint32_t cp);
int tokenizer__add_eos(struct tokenizer *t, int32_t id);

// ---- pretok.c ----
// Compiles a Hugging Face (Rust regex / Oniguruma-style) pattern with PCRE2 after rewriting
// \p{L}, \p{N}, \s (and \P{..}, \S outside classes) into the Unicode 16 tables.
int pretok__compile(const char *pat, size_t len, bool literal, pcre2_code **out,
                    struct lfmd_err_ctx *err);
extern const char pretok__gpt2_pattern[];
// Unicode class membership (the Rust library's tables).
bool pretok__is_ws(uint32_t cp);
bool pretok__is_alnum(uint32_t cp);
// Decodes one UTF-8 char at s[0..n); invalid bytes give U+FFFD with length 1.
uint32_t pretok__utf8_next(const uint8_t *s, size_t n, size_t *adv);

// A list of pieces (byte ranges into text) built by pre-tokenization.
struct tk_piece {
    uint32_t off, len;
};
struct tk_pieces {
    struct tk_piece *v;
    size_t n, cap;
};
// Normalizes text[0..len) into out (reset first) with t->norms.
int pretok__normalize(const struct tokenizer *t, const char *text, size_t len, struct buf *out);
// Pre-tokenizes `in` (a normalized segment) into pieces over *text_out (which may be `in` itself
// or a rewritten copy kept in work). at_start: the segment starts at offset 0 of the input.
int pretok__run(const struct tokenizer *t, struct buf *in, bool at_start, struct buf *work,
                struct tk_pieces *out, pcre2_match_data *md, struct buf **text_out);
void pretok__free_norms(struct tk_norm *v, size_t n);
void pretok__free_pres(struct tk_pre *v, size_t n);

// ---- bpe.c ----
struct bpe_scratch {
    struct bpe_sym *syms;
    size_t cap_syms;
    struct bpe_item *heap;
    size_t cap_heap;
    char *word; // byte-level mapped form (ignore_merges lookups)
    size_t cap_word;
};
// Appends the ids of one piece to *ids (growing it). Returns 0 or LFMD_ENOMEM / LFMD_ETOOBIG.
int bpe__encode_piece(const struct tokenizer *t, const char *p, size_t n, struct bpe_scratch *s,
                      int32_t **ids, size_t *n_ids, size_t *cap_ids);
void bpe__scratch_fini(struct bpe_scratch *s);

// ---- chat_template.c ----
void chat_template__free(struct jinja_tmpl *j);
int chat_template__compile(struct tokenizer *t, const char *src, struct lfmd_err_ctx *err);

#endif
