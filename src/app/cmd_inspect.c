// lfmd inspect: architecture, layer types, shapes, dtypes, bytes and parameter count of a model.
// Reads headers only (weights stay untouched on disk).
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"

#include "model/model.h"

#include <stdio.h>
#include <string.h>

int cmd_inspect(int argc, char **argv) {
    const char *model_arg = NULL;
    bool tensors = false, missing = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lfmd inspect [MODEL | -m MODEL] [--tensors]\n\n"
                   "Prints the architecture, layer types, dimensions, dtypes, weight bytes and\n"
                   "parameter count; --tensors lists every tensor with its shape and dtype.\n"
                   "With no MODEL, inspects the model lfmd would use by default. Reads headers\n"
                   "only: no weight bytes are touched.\n"
                   "Exit status: 0 success, 1 the model cannot be opened (the message says why),\n"
                   "2 usage error.\n");
            return 0;
        }
        if ((v = app_opt(argc, argv, &i, "-m", &missing)) || (v = app_opt(argc, argv, &i, "--model", &missing)))
            model_arg = v;
        else if (!strcmp(argv[i], "--tensors")) tensors = true;
        else if (argv[i][0] != '-' && !model_arg) model_arg = argv[i];
        else if (!missing) {
            fprintf(stderr, "lfmd inspect: unknown option '%s'\n", argv[i]);
            return 2;
        }
        if (missing) return 2;
    }
    const char *path = app_model_path(model_arg);
    if (!path) return 1;
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    double t0 = app_now_ms();
    if (model_open(path, NULL, &m, &err)) {
        fprintf(stderr, "lfmd inspect: %s\n", err.msg);
        return 1;
    }
    double t1 = app_now_ms();
    const struct model_config *c = model_get_config(m);
    printf("model:        %s%s\n", path, model_arg ? "" : "  (default model)");
    printf("architecture: %s\n", c->arch == MODEL_ARCH_LFM2 ? "lfm2" : "llama");
    printf("parameters:   %llu\n", (unsigned long long)model_param_count(m));
    printf("weight bytes: %zu (%.1f MiB)\n", model_weight_bytes(m), model_weight_bytes(m) / 1048576.0);
    printf("dtype:        %s\n", model_dtype_desc(m));
    printf("vocab:        %d\nhidden:       %d\nlayers:       %d (%d attention, %d conv)\n", c->n_vocab,
           c->n_embd, c->n_layer, c->n_attn_layers, c->n_layer - c->n_attn_layers);
    printf("heads:        %d query, %d kv, head_dim %d\nffn:          %d\n", c->n_head, c->n_kv_head,
           c->head_dim, c->n_ff);
    printf("layer types:  ");
    for (int l = 0; l < c->n_layer; l++) printf("%s%s", l ? "," : "", c->is_attn[l] ? "attn" : "conv");
    printf("\nrope theta:   %g\nnorm eps:     %g\ntied embed:   %s\n", c->rope_theta, c->norm_eps,
           c->tied_embeddings ? "yes" : "no");
    printf("bos/eos/pad:  %d/%d/%d\n", c->bos_id, c->eos_id, c->pad_id);
    printf("state/token:  %zu bytes KV (f32) + %zu bytes fixed per sequence\n",
           (seq_state_bytes(c, 1001) - seq_state_bytes(c, 1)) / 1000, seq_state_bytes(c, 0));
    printf("open time:    %.2f ms\n", t1 - t0);
    if (tensors) {
        for (size_t i = 0; i < model_tensor_count(m); i++) {
            const struct tensor *t = model_tensor_at(m, i);
            printf("  %-56s %-7s [", t->name, lfmd_dtype_name(t->dtype));
            for (int d = 0; d < t->n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
            printf("] %zu bytes\n", t->size_bytes);
        }
    }
    model_close(m);
    return 0;
}
