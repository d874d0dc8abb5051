// Golden test: lfmd's logits and greedy continuations against Hugging Face transformers (fp32 on
// the same bf16 weights), on the random-weight models in tests/golden/data/ (see docs/GOLDEN.md).
// Checks per case: last-position logits within 1e-4 relative L2; 32 greedy tokens by incremental
// decoding identical; chunked prefill (odd chunk sizes, small compute chunks) identical to whole.
// Models whose weights are not committed are checked when LFMD_GOLDEN_MODELS points at a directory
// holding them regenerated (tools/golden_big.sh).
// SPDX-License-Identifier: MIT
#include "check.h"
#include "golden_util.h"

#include "base/alloc.h"
#include "format/json.h"
#include "model/model.h"
#include "sample/sampler.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int ids_of(const struct json *arr, int32_t *out, int max) {
    int n = 0;
    for (size_t i = 0; i < arr->len && n < max; i++) out[n++] = (int32_t)json_num(json_at(arr, i), -1);
    return n;
}

// Feeds prompt in pieces of `chunk` tokens with a runner of `batch` tokens; returns last logits.
static int feed(struct model *m, int threads, int batch, int chunk, const int32_t *ids, int n, int n_ctx,
                float *logits, struct seq **keep) {
    struct lfmd_err_ctx err = {0};
    struct runner *r = NULL;
    struct seq *s = NULL;
    int rc = runner_new(m, threads, batch, &r, &err);
    if (!rc) rc = seq_new(m, n_ctx, &s, &err);
    for (int p = 0; !rc && p < n; p += chunk) {
        int k = n - p < chunk ? n - p : chunk;
        rc = model_forward(r, s, ids + p, k, p + k == n ? logits : NULL, &err);
    }
    if (rc) fprintf(stderr, "forward failed: %s\n", err.msg);
    runner_free(r);
    if (keep && !rc) *keep = s;
    else seq_free(s);
    return rc;
}

static void check_model(const char *dir, const char *model_dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    size_t len;
    char *text = slurp(path, &len);
    CHECK(text != NULL);
    if (!text) return;
    struct json_doc *doc = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK(json_parse(text, len, LFMD_MEM_OTHER, &doc, &err) == 0);
    free(text);
    if (!doc) return;
    struct model *m = NULL;
    if (model_open(model_dir, NULL, &m, &err)) {
        fprintf(stderr, "%s: %s\n", model_dir, err.msg);
        CHECK(!"model opens");
        json_doc_free(doc);
        return;
    }
    const struct model_config *c = model_get_config(m);
    const struct json *cases = json_get(json_root(doc), "cases");
    int32_t *ids = malloc(4096 * sizeof *ids);
    float *lg = malloc((size_t)c->n_vocab * sizeof(float)), *lg2 = malloc((size_t)c->n_vocab * sizeof(float));
    for (size_t ci = 0; cases && ci < cases->len; ci++) {
        const struct json *cs = json_at(cases, ci);
        int n = ids_of(json_get(cs, "prompt_ids"), ids, 4000);
        snprintf(path, sizeof path, "%s/%s", dir, json_str(json_get(cs, "logits"), "?"));
        size_t rl;
        float *ref = (float *)slurp(path, &rl);
        CHECK(ref && rl == (size_t)c->n_vocab * sizeof(float));
        const struct json *greedy = json_get(cs, "greedy");
        int n_gen = greedy ? (int)greedy->len : 0;
        struct seq *s = NULL;
        int rc = feed(m, 2, 128, n, ids, n, n + n_gen + 1, lg, &s);
        CHECK(rc == 0);
        if (rc || !ref) {
            free(ref);
            continue;
        }
        double e = rel_l2(lg, ref, c->n_vocab);
        fprintf(stderr, "%s case %zu (%d tokens): logits rel L2 %.3g\n", dir, ci, n, e);
        CHECK(e < 1e-4);
        // Chunked prefill with odd sizes must give the same logits.
        int chunk = n > 7 ? 7 : 1;
        CHECK(feed(m, 2, 5, chunk, ids, n, n + 1, lg2, NULL) == 0);
        double ec = rel_l2(lg2, lg, c->n_vocab);
        CHECK(ec < 1e-5);
        // Greedy continuation by incremental decoding.
        struct runner *r = NULL;
        CHECK(runner_new(m, 2, 16, &r, &err) == 0);
        int mismatch = -1;
        for (int g = 0; r && g < n_gen; g++) {
            int32_t id = sampler_argmax(lg, c->n_vocab);
            if (id != (int32_t)json_num(json_at(greedy, (size_t)g), -1)) {
                mismatch = g;
                break;
            }
            if (g + 1 < n_gen && model_forward(r, s, &id, 1, lg, &err)) {
                mismatch = g;
                break;
            }
        }
        if (mismatch >= 0) fprintf(stderr, "%s case %zu: greedy differs at step %d\n", dir, ci, mismatch);
        CHECK(mismatch < 0);
        runner_free(r);
        seq_free(s);
        free(ref);
    }
    free(ids);
    free(lg);
    free(lg2);
    model_close(m);
    json_doc_free(doc);
}

int main(void) {
    const char *root = "tests/golden/data";
    const char *big = getenv("LFMD_GOLDEN_MODELS");
    DIR *d = opendir(root);
    CHECK(d != NULL);
    int n_models = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[512], cfg[1200], model_dir[600];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        struct stat st;
        if (stat(cfg, &st) == 0) {
            snprintf(model_dir, sizeof model_dir, "%s", dir);
        } else if (big) {
            snprintf(model_dir, sizeof model_dir, "%s/%s", big, e->d_name);
            snprintf(cfg, sizeof cfg, "%s/config.json", model_dir);
            if (stat(cfg, &st) != 0) continue;
        } else {
            continue;
        }
        check_model(dir, model_dir);
        n_models++;
    }
    if (d) closedir(d);
    fprintf(stderr, "%d golden models checked\n", n_models);
    CHECK(n_models > 0);
    return check_done();
}
