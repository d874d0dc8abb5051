// GGUF tokenizer metadata -> struct tokenizer_arrays -> tokenizer_from_arrays.
// SPDX-License-Identifier: MIT
#include "gguf_tokenizer.h"

#include <sys/stat.h>

#include "base/alloc.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

#include <string.h>

static int32_t opt_id(const struct gguf *g, const char *key, size_t n_tok) {
    int64_t v;
    if (gguf_get_i64(g, key, &v, NULL) || v < 0 || (uint64_t)v >= n_tok) return -1;
    return (int32_t)v;
}

static bool opt_bool(const struct gguf *g, const char *key, bool def) {
    bool v;
    return gguf_get_bool(g, key, &v, NULL) ? def : v;
}

// Copies a numeric array of n entries into a new int32/float array; NULL if absent or wrong length.
static int num_array(const struct gguf *g, const char *key, size_t n, bool as_float, void **out,
                     struct lfmd_err_ctx *err) {
    *out = NULL;
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_VT_ARRAY || kv->n != n)
        return lfmd_err_set(err, LFMD_EFORMAT, "%s: '%s' must be an array of %zu numbers", g->path, key, n);
    void *a = lfmd_malloc(n * 4 + 1, LFMD_MEM_TOKENIZER);
    if (!a) return lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", g->path);
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (as_float) {
            double d;
            rc = gguf_arr_f64(g, kv, i, &d);
            ((float *)a)[i] = (float)d;
        } else {
            int64_t v;
            rc = gguf_arr_i64(g, kv, i, &v);
            ((int32_t *)a)[i] = (int32_t)v;
        }
        if (rc) {
            lfmd_free(a);
            return lfmd_err_set(err, LFMD_EFORMAT, "%s: '%s' element %zu is not a number", g->path, key, i);
        }
    }
    *out = a;
    return 0;
}

int gguf_load_tokenizer(const char *path, struct tokenizer **out, struct lfmd_err_ctx *err) {
    *out = NULL;
    struct gguf *g;
    int rc = gguf_open_meta(path, &g, err); // metadata only: no copy of the weights (--no-mmap)
    if (rc) return rc;
    char **tokens = NULL, **merges = NULL;
    size_t n_tok = 0, n_merges = 0;
    int32_t *types = NULL;
    float *scores = NULL;
    char model[32] = "", pre[64] = "", *tmpl = NULL;
    struct tokenizer_arrays a = {0};
    if (!gguf_find_kv(g, "tokenizer.ggml.tokens")) {
        rc = lfmd_err_set(err, LFMD_ENOENT, "%s: no tokenizer in the GGUF metadata", path);
        goto done;
    }
    if ((rc = gguf_get_str_buf(g, "tokenizer.ggml.model", model, sizeof model, err)) ||
        (rc = gguf_get_str_array(g, "tokenizer.ggml.tokens", &tokens, NULL, &n_tok, err)))
        goto done;
    if (gguf_find_kv(g, "tokenizer.ggml.pre") &&
        (rc = gguf_get_str_buf(g, "tokenizer.ggml.pre", pre, sizeof pre, err)))
        goto done;
    if (gguf_find_kv(g, "tokenizer.ggml.merges") &&
        (rc = gguf_get_str_array(g, "tokenizer.ggml.merges", &merges, NULL, &n_merges, err)))
        goto done;
    if ((rc = num_array(g, "tokenizer.ggml.token_type", n_tok, false, (void **)&types, err)) ||
        (rc = num_array(g, "tokenizer.ggml.scores", n_tok, true, (void **)&scores, err)))
        goto done;
    const char *tp;
    size_t tl;
    if (gguf_get_str(g, "tokenizer.chat_template", &tp, &tl, NULL) == 0) {
        tmpl = lfmd_strndup(tp, tl, LFMD_MEM_TOKENIZER);
        if (!tmpl) {
            rc = lfmd_err_set(err, LFMD_ENOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    a.model = model;
    a.pre = pre[0] ? pre : NULL;
    a.tokens = (const char *const *)tokens;
    a.n_tokens = n_tok;
    a.merges = (const char *const *)merges;
    a.n_merges = n_merges;
    a.token_types = types;
    a.scores = scores;
    a.bos_id = opt_id(g, "tokenizer.ggml.bos_token_id", n_tok);
    a.eos_id = opt_id(g, "tokenizer.ggml.eos_token_id", n_tok);
    a.unk_id = opt_id(g, "tokenizer.ggml.unknown_token_id", n_tok);
    a.eot_id = opt_id(g, "tokenizer.ggml.eot_token_id", n_tok);
    a.pad_id = opt_id(g, "tokenizer.ggml.padding_token_id", n_tok);
    // llama.cpp's defaults: SentencePiece adds BOS, byte-level BPE does not unless told.
    a.add_bos = opt_bool(g, "tokenizer.ggml.add_bos_token", !strcmp(model, "llama"));
    a.add_eos = opt_bool(g, "tokenizer.ggml.add_eos_token", false);
    a.add_space_prefix = opt_bool(g, "tokenizer.ggml.add_space_prefix", true);
    a.chat_template = tmpl;
    rc = tokenizer_from_arrays(&a, out, err);
done:
    lfmd_free(tokens);
    lfmd_free(merges);
    lfmd_free(types);
    lfmd_free(scores);
    lfmd_free(tmpl);
    gguf_close(g);
    return rc;
}

int model_tokenizer_load(const char *model_path, struct tokenizer **out, struct lfmd_err_ctx *err) {
    struct stat st;
    if (stat(model_path, &st) == 0 && S_ISREG(st.st_mode)) return gguf_load_tokenizer(model_path, out, err);
    return tokenizer_load(model_path, out, err);
}
