// The KV cache's layout (head-major, src/model/runner.c) seen from outside: for every KV type, a
// sequence copied (seq_copy) into one of another context size continues exactly like the
// original (bit-identical logits, both ways between context sizes), and a prompt fed token by
// token ends with the logits of the same prompt at once (up to the batched products' rounding).
// A copy that placed any head's rows at the wrong offset would change the next logits.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "model/model.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define ROUTER "models/lfm2-router"
#define NP 11

static float la[1 << 16], lb[1 << 16], lc[1 << 16];

static double rel_l2(const float *a, const float *b, int n) {
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)a[i] * a[i];
    }
    return s > 0 ? sqrt(d / s) : sqrt(d);
}

int main(void) {
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    struct runner *r = NULL;
    CHECK_EQ(model_open(ROUTER, NULL, &m, &err), 0);
    const int V = model_get_config(m)->n_vocab;
    CHECK(V <= (1 << 16));
    CHECK_EQ(runner_new(m, 2, 16, &r, &err), 0);
    const int32_t toks[NP + 1] = {1, 42, 7, 300, 12, 99, 5, 1000, 64, 3, 17, 250};
    const char *types[] = {"f32", "f16", "q8"};
    for (int ti = 0; ti < 3; ti++) {
        struct seq_opts o = {0};
        CHECK_EQ(seq_kv_type_parse(types[ti], &o.kv_type), 0);
        struct seq *a = NULL, *b = NULL, *c = NULL;
        CHECK_EQ(seq_new_ex(m, 24, &o, &a, &err), 0);
        CHECK_EQ(seq_new_ex(m, 24, &o, &b, &err), 0);
        CHECK_EQ(seq_new_ex(m, 40, &o, &c, &err), 0);
        // a: the prompt, then one more token
        CHECK_EQ(model_forward(r, a, toks, NP, NULL, &err), 0);
        CHECK_EQ(model_forward(r, a, toks + NP, 1, la, &err), 0);
        // b: the same prompt token by token, copied into c (another n_ctx), c continues
        for (int t = 0; t < NP; t++) CHECK_EQ(model_forward(r, b, toks + t, 1, NULL, &err), 0);
        CHECK_EQ(seq_copy(c, b), 0);
        CHECK_EQ(seq_pos(c), NP);
        CHECK_EQ(model_forward(r, c, toks + NP, 1, lc, &err), 0);
        CHECK_EQ(model_forward(r, b, toks + NP, 1, lb, &err), 0);
        CHECK(memcmp(lb, lc, (size_t)V * sizeof *lb) == 0);
        // token by token vs an 11-token prompt: the same up to the products' rounding (the
        // prompt runs the batched kernels; f16 / q8 caches round the same values alike)
        CHECK(rel_l2(la, lb, V) < 1e-4);
        // the other direction: a prompt run in a 40-position cache, copied into a 12-position
        // one (heads sit at other offsets in each), continues exactly like a
        struct seq *d = NULL, *e12 = NULL;
        CHECK_EQ(seq_new_ex(m, 40, &o, &d, &err), 0);
        CHECK_EQ(seq_new_ex(m, 12, &o, &e12, &err), 0);
        CHECK_EQ(model_forward(r, d, toks, NP, NULL, &err), 0);
        CHECK_EQ(seq_copy(e12, d), 0);
        CHECK_EQ(model_forward(r, e12, toks + NP, 1, lc, &err), 0);
        CHECK(memcmp(la, lc, (size_t)V * sizeof *la) == 0);
        seq_free(d);
        seq_free(e12);
        seq_free(a);
        seq_free(b);
        seq_free(c);
    }
    runner_free(r);
    model_close(m);
    return check_done();
}
