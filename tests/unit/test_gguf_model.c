// A GGUF written by lfmd quantize (F16) opens through model_open with the same config as the
// Hugging Face directory it came from (layer pattern from the head_count_kv array, FFN size from
// tensor shapes), Hugging Face tensor names and shapes (conv kernel [D, 1, L]), and logits equal
// to the bf16 model's (bf16 -> f16 is exact for these weights).
// SPDX-License-Identifier: MIT
#include "check.h"

#include "model/model.h"
#include "model/quantize.h"

#include <stdlib.h>

static char dir[] = "/tmp/lfmd-test-ggufm-XXXXXX";

static float *logits(struct model *m) {
    static const int32_t prompt[] = {1, 9, 99, 199, 299};
    struct seq *s = NULL;
    struct runner *r = NULL;
    struct lfmd_err_ctx err = {0};
    float *lg = NULL;
    if (!seq_new(m, 32, &s, &err) && !runner_new(m, 1, 8, &r, &err)) {
        lg = malloc((size_t)model_get_config(m)->n_vocab * sizeof *lg);
        if (model_forward(r, s, prompt, 5, lg, &err)) {
            free(lg);
            lg = NULL;
        }
    }
    runner_free(r);
    seq_free(s);
    return lg;
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    char cmd[512], src[256], out[256];
    snprintf(src, sizeof src, "%s/bf16", dir);
    snprintf(out, sizeof out, "%s/f16.gguf", dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/gen_model.py --preset tiny-lfm2 --seed 11 --out %s "
             "--config '{\"num_key_value_heads\": 1}' >/dev/null", src);
    if (system(cmd)) return 1;
    struct quant_opts o;
    quant_opts_default(&o);
    o.format = QUANT_FMT_GGUF;
    o.gguf_type = LFMD_DTYPE_F16;
    struct quant_stats st;
    struct lfmd_err_ctx err = {0};
    CHECK_EQ(quantize_model(src, out, &o, &st, &err), 0);
    struct model *a = NULL, *b = NULL;
    CHECK_EQ(model_open(src, NULL, &a, &err), 0);
    int rc = model_open(out, NULL, &b, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CHECK_EQ(rc, 0);
    if (a && b) {
        const struct model_config *x = model_get_config(a), *y = model_get_config(b);
        CHECK_EQ(y->arch, MODEL_ARCH_LFM2);
        CHECK_EQ(y->n_vocab, x->n_vocab);
        CHECK_EQ(y->n_embd, x->n_embd);
        CHECK_EQ(y->n_layer, x->n_layer);
        CHECK_EQ(y->n_head, x->n_head);
        CHECK_EQ(y->n_kv_head, 1);
        CHECK_EQ(y->head_dim, x->head_dim);
        CHECK_EQ(y->n_ff, x->n_ff);
        CHECK_EQ(y->conv_L, x->conv_L);
        CHECK_EQ(y->n_attn_layers, x->n_attn_layers);
        for (int l = 0; l < x->n_layer; l++) CHECK_EQ(y->is_attn[l], x->is_attn[l]);
        CHECK_NEAR(y->rope_theta, x->rope_theta, 1e-3);
        CHECK_NEAR(y->norm_eps, x->norm_eps, 1e-12);
        CHECK_EQ(y->tied_embeddings, true);
        CHECK_EQ(y->bos_id, 1);
        CHECK_EQ(y->eos_id, 7);
        CHECK_EQ(model_tensor_count(b), model_tensor_count(a));
        for (size_t i = 0; i < model_tensor_count(b); i++) {
            const struct tensor *t = model_tensor_at(b, i);
            const struct tensor *u = NULL;
            for (size_t j = 0; j < model_tensor_count(a); j++)
                if (!strcmp(model_tensor_at(a, j)->name, t->name)) u = model_tensor_at(a, j);
            CHECK(u != NULL);
            if (!u) {
                fprintf(stderr, "GGUF tensor renamed to unknown '%s'\n", t->name);
                continue;
            }
            CHECK_EQ(t->n_dims, u->n_dims);
            for (int d = 0; d < t->n_dims; d++) CHECK_EQ(t->shape[d], u->shape[d]);
        }
        float *la = logits(a), *lb = logits(b);
        CHECK(la && lb);
        if (la && lb) {
            double d = 0, r = 0;
            for (int i = 0; i < x->n_vocab; i++) {
                d += (double)(la[i] - lb[i]) * (la[i] - lb[i]);
                r += (double)la[i] * la[i];
            }
            fprintf(stderr, "f16 GGUF vs bf16 directory: relative L2 error %.2e\n", sqrt(d / r));
            CHECK(sqrt(d / r) < 1e-4);
        }
        free(la);
        free(lb);
    }
    model_close(a);
    model_close(b);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_done();
}
