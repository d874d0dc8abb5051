// lfmd quantize end to end on random tiny models (tools/gen_model.py): MLX 4/8-bit and GGUF
// Q8_0/Q4_0/Q4_1/F16 outputs load in lfmd with the expected dtypes, their last-position logits stay
// close to the bf16 model's (relative L2 error, measured), the GGUF's own tokenizer loads, and a
// cancelled run or an existing output leaves nothing behind.
// SPDX-License-Identifier: MIT
#include "check.h"

#include "base/alloc.h"
#include "model/gguf_tokenizer.h"
#include "model/model.h"
#include "model/quantize.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/lfmd-test-quant-XXXXXX";
static const int32_t prompt[] = {1, 20, 30, 40, 50, 60, 70, 80};
#define N_PROMPT 8

// Last-position logits of path (malloc'd), NULL on failure.
static float *logits_of(const char *path, int *n_vocab) {
    struct model *m;
    struct lfmd_err_ctx err = {0};
    if (model_open(path, NULL, &m, &err)) {
        fprintf(stderr, "open %s: %s\n", path, err.msg);
        return NULL;
    }
    struct seq *s = NULL;
    struct runner *r = NULL;
    float *lg = NULL;
    *n_vocab = model_get_config(m)->n_vocab;
    if (!seq_new(m, 64, &s, &err) && !runner_new(m, 1, 16, &r, &err)) {
        lg = malloc((size_t)*n_vocab * sizeof *lg);
        if (model_forward(r, s, prompt, N_PROMPT, lg, &err)) {
            fprintf(stderr, "forward %s: %s\n", path, err.msg);
            free(lg);
            lg = NULL;
        }
    }
    runner_free(r);
    seq_free(s);
    model_close(m);
    return lg;
}

static double rel_l2(const float *a, const float *ref, int n) {
    double d = 0, r = 0;
    for (int i = 0; i < n; i++) {
        d += (double)(a[i] - ref[i]) * (a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return sqrt(d / r);
}

static enum lfmd_dtype dtype_of(const char *path, const char *tensor) {
    struct model *m;
    struct lfmd_err_ctx err = {0};
    if (model_open(path, NULL, &m, &err)) return LFMD_DTYPE_COUNT;
    enum lfmd_dtype d = LFMD_DTYPE_COUNT;
    for (size_t i = 0; i < model_tensor_count(m); i++)
        if (!strcmp(model_tensor_at(m, i)->name, tensor)) d = model_tensor_at(m, i)->dtype;
    model_close(m);
    return d;
}

static int count_entries(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (e->d_name[0] != '.') n++;
    if (dp) closedir(dp);
    return n;
}

static void quant(const char *in, const char *out, enum quant_format f, int bits, enum lfmd_dtype t,
                  int expect_rc) {
    struct quant_opts o;
    quant_opts_default(&o);
    o.format = f;
    o.bits = bits;
    o.gguf_type = t;
    struct quant_stats st;
    struct lfmd_err_ctx err = {0};
    int rc = quantize_model(in, out, &o, &st, &err);
    if (rc != expect_rc) fprintf(stderr, "quantize %s -> %s: rc %d: %s\n", in, out, rc, err.msg);
    CHECK_EQ(rc, expect_rc);
    if (!rc) {
        CHECK(st.out_bytes > 0 && st.out_bytes < st.in_bytes + 65536);
        struct stat sb;
        CHECK(stat(out, &sb) == 0);
    }
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    char cmd[512], src[256], p[256];
    snprintf(src, sizeof src, "%s/bf16", dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/gen_model.py --preset tiny-lfm2 --seed 7 --out %s "
             ">/dev/null", src);
    if (system(cmd) != 0) {
        fprintf(stderr, "gen_model.py failed\n");
        return 1;
    }
    int V = 0, V2 = 0;
    float *ref = logits_of(src, &V);
    CHECK(ref != NULL);
    struct {
        const char *name;
        enum quant_format f;
        int bits;
        enum lfmd_dtype t;
        double max_err;
        const char *tensor;
        enum lfmd_dtype want;
    } cases[] = {
        {"mlx8", QUANT_FMT_MLX, 8, 0, 0.05, "model.embed_tokens.weight", LFMD_DTYPE_MLX_Q8},
        {"mlx4", QUANT_FMT_MLX, 4, 0, 0.6, "model.layers.0.feed_forward.w1.weight", LFMD_DTYPE_MLX_Q4},
        {"q8.gguf", QUANT_FMT_GGUF, 8, LFMD_DTYPE_Q8_0, 0.05, "model.embed_tokens.weight", LFMD_DTYPE_Q8_0},
        {"q4.gguf", QUANT_FMT_GGUF, 4, LFMD_DTYPE_Q4_0, 0.6, "model.layers.1.self_attn.q_proj.weight",
         LFMD_DTYPE_Q4_0},
        {"q41.gguf", QUANT_FMT_GGUF, 4, LFMD_DTYPE_Q4_1, 0.6, "model.layers.0.conv.in_proj.weight",
         LFMD_DTYPE_Q4_1},
        {"f16.gguf", QUANT_FMT_GGUF, 16, LFMD_DTYPE_F16, 0.01, "model.layers.0.conv.conv.weight",
         LFMD_DTYPE_F32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && ref; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, cases[i].name);
        quant(src, p, cases[i].f, cases[i].bits, cases[i].t, 0);
        float *lg = logits_of(p, &V2);
        CHECK(lg != NULL && V2 == V);
        if (lg && V2 == V) {
            double e = rel_l2(lg, ref, V);
            fprintf(stderr, "%-9s relative L2 error of last logits vs bf16: %.4f (limit %.2f)\n", cases[i].name,
                    e, cases[i].max_err);
            CHECK(e < cases[i].max_err);
            CHECK(e > 0 || cases[i].t == LFMD_DTYPE_F16);
        }
        free(lg);
        CHECK_EQ(dtype_of(p, cases[i].tensor), cases[i].want);
    }
    // norms stay in their input dtype in MLX output, f32 in GGUF
    snprintf(p, sizeof p, "%s/mlx4", dir);
    CHECK_EQ(dtype_of(p, "model.embedding_norm.weight"), LFMD_DTYPE_BF16);
    snprintf(p, sizeof p, "%s/q4.gguf", dir);
    CHECK_EQ(dtype_of(p, "model.embedding_norm.weight"), LFMD_DTYPE_F32);
    // the GGUF carries a loadable (synthetic) tokenizer
    struct tokenizer *tok = NULL;
    struct lfmd_err_ctx err = {0};
    int rc = gguf_load_tokenizer(p, &tok, &err);
    if (rc) fprintf(stderr, "tokenizer: %s\n", err.msg);
    CHECK_EQ(rc, 0);
    if (tok) {
        CHECK_EQ(tokenizer_n_vocab(tok), V);
        size_t l;
        const char *t7 = tokenizer_token_text(tok, 7, &l);
        CHECK_STR(t7, "<|im_end|>");
        CHECK(tokenizer_is_special(tok, 7));
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_EQ(tokenizer_encode(tok, "hi", 2, false, false, &ids, &n, &err), 0);
        CHECK_EQ(n, 2); // two byte tokens
        lfmd_free(ids);
        tokenizer_free(tok);
    }
    // config.json of the MLX output has the quantization block
    snprintf(p, sizeof p, "grep -q '\"quantization\": {\"group_size\": 64, \"bits\": 4}' %s/mlx4/config.json", dir);
    CHECK_EQ(system(p), 0);
    // existing output -> EINVAL, untouched
    snprintf(p, sizeof p, "%s/mlx4", dir);
    quant(src, p, QUANT_FMT_MLX, 4, 0, LFMD_EINVAL);
    // cancelled before the first tensor: no output and no temp left
    int before = count_entries(dir);
    volatile sig_atomic_t stop = 1;
    struct quant_opts o;
    quant_opts_default(&o);
    o.cancel = &stop;
    struct quant_stats st;
    snprintf(p, sizeof p, "%s/cancelled", dir);
    err = (struct lfmd_err_ctx){0};
    CHECK_EQ(quantize_model(src, p, &o, &st, &err), LFMD_ECANCELED);
    o.format = QUANT_FMT_GGUF;
    CHECK_EQ(quantize_model(src, p, &o, &st, &err), LFMD_ECANCELED);
    CHECK_EQ(count_entries(dir), before);
    // an already-quantized input is refused
    snprintf(p, sizeof p, "%s/again", dir);
    snprintf(cmd, sizeof cmd, "%s/mlx8", dir);
    quant(cmd, p, QUANT_FMT_MLX, 4, 0, LFMD_ENOTSUP);
    // unwritable destination: a clear error, nothing created
    quant(src, "/nonexistent-dir/x.gguf", QUANT_FMT_GGUF, 8, LFMD_DTYPE_Q8_0, LFMD_EIO);
    // a Llama model quantizes to MLX and loads
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/gen_model.py --preset tiny-llama --seed 3 --out %s/llama "
             ">/dev/null", dir);
    if (system(cmd) == 0) {
        snprintf(src, sizeof src, "%s/llama", dir);
        snprintf(p, sizeof p, "%s/llama8", dir);
        quant(src, p, QUANT_FMT_MLX, 8, 0, 0);
        free(ref);
        ref = logits_of(src, &V);
        float *lg = logits_of(p, &V2);
        CHECK(ref && lg && V == V2);
        if (ref && lg && V == V2) {
            double e = rel_l2(lg, ref, V);
            fprintf(stderr, "llama mlx8 relative L2 error: %.4f\n", e);
            CHECK(e < 0.05);
        }
        free(lg);
    }
    free(ref);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return check_done();
}
