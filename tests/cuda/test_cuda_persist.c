// The persistent batch-1 decode kernel (src/cuda/persist.cu) against the per-kernel CUDA path
// and the CPU reference, on the LFM2 golden models (bf16 on the GPU) and 4-bit copies of some of
// them (MLX q4 group 32 / 64, GGUF Q4_0; kept 4-bit on the GPU): after an 8-token prompt, 32
// decode steps fed the CPU's greedy token, where every step's logits must be within 1e-2
// relative L2 of the CPU (f32 path; reference kernels for 4-bit weights, as test_cuda_model)
// and within 1e-4 of the per-kernel path (the default, cuda_opts.persist off), and the persistent
// runner must really have taken those steps (cuda_runner_persist_steps); then the same 32 steps
// with the argmax on the GPU (cuda_forward_batch_greedy) must give the CPU's greedy tokens. A long
// context (2100 positions: attention chunks longer than 32 positions) on one model, last.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "golden_util.h"
#include "q4_model.h"

#include "base/alloc.h"
#include "cuda/cuda.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/quantize.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STEPS 32

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static double worst_cpu, worst_old;
static int n_models, greedy_ok, greedy_cases;

// n_prompt prompt tokens (chunks of at most 512), then STEPS decode steps; ref_q4: CPU reference
// kernels (4-bit weights).
static void check_decode(struct model *m, const char *name, int n_prompt, bool ref_q4) {
    const struct model_config *c = model_get_config(m);
    const int V = c->n_vocab, n_ctx = n_prompt + STEPS + 2;
    struct lfmd_err_ctx err = {0};
    struct cuda_opts op = {.persist = true}, oo = {0};
    struct cuda_model *cp = NULL, *co = NULL;
    CHECK(cuda_model_new(m, &op, &cp, &err) == 0);
    CHECK(cuda_model_new(m, &oo, &co, &err) == 0);
    struct cuda_runner *rp = NULL, *ro = NULL;
    struct cuda_seq *sp = NULL, *so = NULL;
    if (cp) CHECK(cuda_runner_new(cp, 512, &rp, &err) == 0);
    if (co) CHECK(cuda_runner_new(co, 512, &ro, &err) == 0);
    if (rp) CHECK(cuda_seq_new(cp, n_ctx, &sp, &err) == 0);
    if (ro) CHECK(cuda_seq_new(co, n_ctx, &so, &err) == 0);
    struct runner *cr = NULL;
    struct seq *cs = NULL;
    kern_force_ref(ref_q4);
    CHECK(runner_new(m, 2, 512, &cr, &err) == 0);
    if (cr) CHECK(seq_new(m, n_ctx, &cs, &err) == 0);
    if (!sp || !so || !cs) {
        fprintf(stderr, "%s: setup failed: %s\n", name, err.msg);
        goto out;
    }
    int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
    float *lp = malloc((size_t)V * 4), *lo = malloc((size_t)V * 4), *lc = malloc((size_t)V * 4);
    for (int i = 0; i < n_prompt; i++)
        ids[i] = 1 + (int32_t)(((int64_t)i * 7919 + 3) % (V - 1));
    int rc = 0;
    for (int p = 0; p < n_prompt && !rc; p += 512) {
        int k = n_prompt - p < 512 ? n_prompt - p : 512;
        bool lastc = p + k == n_prompt;
        rc = cuda_forward(rp, sp, ids + p, k, lastc ? lp : NULL, &err) ||
             cuda_forward(ro, so, ids + p, k, lastc ? lo : NULL, &err) ||
             model_forward(cr, cs, ids + p, k, lastc ? lc : NULL, &err);
    }
    CHECK(rc == 0);
    uint64_t before = cuda_runner_persist_steps(rp);
    int32_t toks[STEPS];
    double w_cpu = 0, w_old = 0;
    for (int g = 0; g < STEPS && !rc; g++) {
        int32_t t = argmax(lc, V);
        toks[g] = t;
        if (g == STEPS - 1) break;
        rc = cuda_forward(rp, sp, &t, 1, lp, &err) || cuda_forward(ro, so, &t, 1, lo, &err) ||
             model_forward(cr, cs, &t, 1, lc, &err);
        if (rc) break;
        double e1 = rel_l2(lp, lc, V), e2 = rel_l2(lp, lo, V);
        if (e1 > w_cpu || e1 != e1) w_cpu = e1 != e1 ? INFINITY : e1;
        if (e2 > w_old || e2 != e2) w_old = e2 != e2 ? INFINITY : e2;
        if (!(e1 < 1e-2) || !(e2 < 1e-4))
            fprintf(stderr, "%s step %d: persistent vs cpu %.3g, vs per-kernel path %.3g\n", name,
                    g, e1, e2);
    }
    CHECK(rc == 0);
    CHECK(w_cpu < 1e-2);
    CHECK(w_old < 1e-4);
    uint64_t steps = cuda_runner_persist_steps(rp) - before;
    CHECK_EQ((long)steps, (long)(STEPS - 1));
    CHECK_EQ((long)cuda_runner_persist_steps(ro), 0L);
    // greedy on the GPU through the persistent kernel: the CPU's tokens
    struct cuda_seq *sg = NULL;
    CHECK(cuda_seq_new(cp, n_ctx, &sg, &err) == 0);
    int mismatch = -1;
    for (int p = 0; sg && p < n_prompt && !rc; p += 512) {
        int k = n_prompt - p < 512 ? n_prompt - p : 512;
        rc = cuda_forward(rp, sg, ids + p, k, p + k == n_prompt ? lp : NULL, &err);
    }
    int32_t next = sg && !rc ? argmax(lp, V) : -1;
    for (int g = 0; sg && !rc && g < STEPS; g++) {
        if (next != toks[g]) {
            mismatch = g;
            break;
        }
        if (g == STEPS - 1) break;
        const int32_t *tp = &toks[g];
        int one = 1;
        rc = cuda_forward_batch_greedy(rp, &sg, &tp, &one, 1, &next, &err);
    }
    CHECK(rc == 0);
    if (mismatch >= 0) fprintf(stderr, "%s: GPU greedy differs at step %d\n", name, mismatch);
    CHECK(sg && mismatch < 0);
    greedy_ok += sg && !rc && mismatch < 0;
    greedy_cases++;
    cuda_seq_free(sg);
    fprintf(stderr,
            "%s (%d prompt tokens): %llu persistent steps; worst vs cpu %.3g, vs per-kernel %.3g\n",
            name, n_prompt, (unsigned long long)steps, w_cpu, w_old);
    if (w_cpu > worst_cpu) worst_cpu = w_cpu;
    if (w_old > worst_old) worst_old = w_old;
    n_models++;
    free(ids);
    free(lp);
    free(lo);
    free(lc);
out:
    kern_force_ref(false);
    seq_free(cs);
    runner_free(cr);
    cuda_seq_free(sp);
    cuda_seq_free(so);
    cuda_runner_free(rp);
    cuda_runner_free(ro);
    cuda_model_free(cp);
    cuda_model_free(co);
}

static void check_q4(const char *dir, enum quant_format fmt, int gs) {
    char out[512];
    if (q4_model_make(dir, "persist-q4", fmt, gs, LFMD_DTYPE_Q4_0, out, sizeof out)) {
        CHECK(!"quantize");
        return;
    }
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    if (model_open(out, NULL, &m, &err)) {
        fprintf(stderr, "%s: %s\n", out, err.msg);
        CHECK(!"q4 model opens");
    } else {
        check_decode(m, out, 8, true);
        model_close(m);
    }
    q4_model_remove(out);
}

int main(void) {
    (void)slurp;   // golden_util.h: only rel_l2 is used here
    if (cuda_device_count() < 1) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    const char *root = "tests/golden/data";
    DIR *d = opendir(root);
    CHECK(d != NULL);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "lfm2", 4)) continue;
        char dir[512], cfg[1200];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        struct stat st;
        if (stat(cfg, &st) != 0) continue;   // a data folder, not a model
        struct model *m = NULL;
        struct lfmd_err_ctx err = {0};
        if (model_open(dir, NULL, &m, &err)) {
            fprintf(stderr, "%s: %s\n", dir, err.msg);
            CHECK(!"model opens");
            continue;
        }
        check_decode(m, dir, 8, false);
        if (!strcmp(e->d_name, "lfm2-deep-1attn"))   // 2100 positions: chunks of 64 positions
            check_decode(m, "lfm2-deep-1attn (long context)", 2100, false);
        model_close(m);
    }
    if (d) closedir(d);
    check_q4("tests/golden/data/lfm2-gqa2", QUANT_FMT_MLX, 32);
    check_q4("tests/golden/data/lfm2-gqa4-ropeparams", QUANT_FMT_MLX, 64);
    check_q4("tests/golden/data/lfm2-gqa2", QUANT_FMT_GGUF, 32);
    check_q4("tests/golden/data/lfm2-mha-legacy", QUANT_FMT_MLX, 32);
    fprintf(stderr,
            "%d runs: worst persistent vs cpu %.3g, vs per-kernel path %.3g; GPU greedy identical "
            "in %d of %d\n",
            n_models, worst_cpu, worst_old, greedy_ok, greedy_cases);
    CHECK(n_models >= 8);
    return check_done();
}
