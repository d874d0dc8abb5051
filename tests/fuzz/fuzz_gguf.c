// Fuzz target: a GGUF file. gguf_open parses the header, metadata and tensor table; every
// key is then read through the typed getters (strings, arrays element by element), and the file
// is opened as a model (model_open: GGUF hooks, tensor checks, GGUF tokenizer arrays).
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "format/gguf.h"
#include "model/model.h"

static void walk(const struct gguf *g) {
    struct lfmd_err_ctx err = {0};
    for (size_t i = 0; i < g->n_kv; i++) {
        const struct gguf_kv *kv = &g->kv[i];
        int64_t iv;
        double dv;
        bool bv;
        const char *s;
        size_t sl;
        char small[64];
        (void)gguf_get_i64(g, kv->key, &iv, &err);
        (void)gguf_get_f64(g, kv->key, &dv, &err);
        (void)gguf_get_bool(g, kv->key, &bv, &err);
        (void)gguf_get_str(g, kv->key, &s, &sl, &err);
        (void)gguf_get_str_buf(g, kv->key, small, sizeof small, &err);
        if (kv->type == GGUF_VT_ARRAY) {
            uint64_t n = kv->n < 64 ? kv->n : 64;
            for (uint64_t j = 0; j < n; j++) {
                (void)gguf_arr_i64(g, kv, j, &iv);
                (void)gguf_arr_f64(g, kv, j, &dv);
            }
            char **strs = NULL;
            size_t *lens = NULL;
            size_t ns = 0;
            if (gguf_get_str_array(g, kv->key, &strs, &lens, &ns, &err) == 0) {
                size_t total = 0;
                for (size_t j = 0; j < ns; j++) total += lens ? lens[j] : strlen(strs[j]);
                (void)total;
                lfmd_free(strs);
            }
        }
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        (void)gguf_find_tensor(g, g->tensors[i].name);
        (void)ggml_type_name(g->tensors[i].type);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.gguf", data, size, 0);
    long live = lfmd_alloc_live();
    struct gguf *g = NULL;
    struct lfmd_err_ctx err = {0};
    if (gguf_open(path, &g, &err) == 0) {
        walk(g);
        gguf_close(g);
    }
    fuzz_check_leaks(live, "gguf_open");
    struct model *m = NULL;
    struct model_open_opts opts = {0};
    if (model_open(path, &opts, &m, &err) == 0) {
        (void)model_weight_bytes(m);
        (void)model_dtype_desc(m);
        model_close(m);
    }
    fuzz_check_leaks(live, "model_open(gguf)");
    return 0;
}
