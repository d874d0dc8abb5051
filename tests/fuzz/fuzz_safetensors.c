// Fuzz target: a model directory (config.json + model.safetensors) opened with model_open.
// Input: config.json bytes, the separator "\n#LFMD#\n", then the safetensors file bytes (without
// a separator the whole input is the safetensors file and config.json is the micro seed's).
// Every input must end in success or a clean error, with no leak.
// SPDX-License-Identifier: MIT
#include "fuzz_common.h"

#include "model/model.h"

static const char default_config[] =
    "{\"architectures\":[\"Lfm2ForCausalLM\"],\"model_type\":\"lfm2\",\"vocab_size\":32,"
    "\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
    "\"num_key_value_heads\":1,\"max_position_embeddings\":128,\"norm_eps\":1e-05,"
    "\"conv_bias\":false,\"conv_L_cache\":3,\"block_ff_dim\":32,\"block_auto_adjust_ff_dim\":false,"
    "\"layer_types\":[\"conv\",\"full_attention\"],\"rope_theta\":1000000.0,"
    "\"tie_word_embeddings\":true,\"bos_token_id\":1,\"eos_token_id\":7,\"pad_token_id\":0}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n1, off2;
    fuzz_split(data, size, "\n#LFMD#\n", &n1, &off2);
    if (off2 == size && n1 == size) {
        fuzz_write("config.json", default_config, sizeof default_config - 1, 0);
        fuzz_write("model.safetensors", data, size, 1);
    } else {
        fuzz_write("config.json", data, n1, 0);
        fuzz_write("model.safetensors", data + off2, size - off2, 1);
    }
    long live = lfmd_alloc_live();
    struct model *m = NULL;
    struct lfmd_err_ctx err = {0};
    struct model_open_opts opts = {0};
    if (model_open(fuzz_dir(), &opts, &m, &err) == 0) {
        // Touch what the engine reads at load: config, sizes, every tensor descriptor.
        (void)model_weight_bytes(m);
        (void)model_param_count(m);
        (void)model_dtype_desc(m);
        const struct model_config *c = model_get_config(m);
        // Small enough models also run one forward pass (catches configs that validate but
        // index out of bounds, and NaN/Inf weights: the logits may be NaN, nothing may crash).
        if (model_weight_bytes(m) <= (1u << 20) && c->n_embd <= 1024 && c->n_vocab <= 4096) {
            struct runner *r = NULL;
            struct seq *s = NULL;
            float *logits = lfmd_malloc((size_t)c->n_vocab * sizeof(float), LFMD_MEM_SCRATCH);
            if (logits && !runner_new(m, 1, 4, &r, &err) && !seq_new(m, 8, &s, &err)) {
                int32_t toks[3] = {0, 1 % c->n_vocab, (c->n_vocab - 1)};
                if (model_forward(r, s, toks, 3, logits, &err)) err.msg[0] = 0;
            }
            seq_free(s);
            runner_free(r);
            lfmd_free(logits);
        }
        model_close(m);
    } else if (!err.msg[0]) {
        fprintf(stderr, "model_open failed without a message\n");
        abort();
    }
    fuzz_check_leaks(live, "model_open(safetensors)");
    return 0;
}
