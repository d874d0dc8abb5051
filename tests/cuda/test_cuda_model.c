// The CUDA backend end to end on the golden models (tests/golden/data, reference from HF
// transformers fp32): last-position logits within 1e-2 relative L2 of the CPU f32 path and of
// the reference; 32 greedy tokens by incremental decoding identical to the reference; chunked
// prefill, a continuous batch of three sequences, graph vs. direct launches, and a two-stage
// layer split (on two GPUs when present, else two ranges on device 0) all agree with one
// device. 4-bit models (golden models quantized to MLX q4 / GGUF Q4_0) kept 4-bit on
// the GPU match the CPU reference kernels on the same weights. Then: the device memory limit
// refuses a sequence; after free + cuda_shutdown the process holds no GPU memory (nvidia-smi)
// and a reload works.
// SPDX-License-Identifier: MIT
#include "check.h"
#include "golden_util.h"
#include "q4_model.h"

#include "base/alloc.h"
#include "cuda/cuda.h"
#include "format/json.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/quantize.h"

#include <cuda_runtime.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static double worst_gpu_cpu, worst_gpu_ref;
static int n_cases, greedy_ok;

// Prefill in chunks of `chunk` tokens through a runner of max_tok tokens.
static int gpu_feed(struct cuda_model *cm, int max_tok, int chunk, const int32_t *ids, int n,
                    int n_ctx, float *lg, struct cuda_seq **keep) {
    struct lfmd_err_ctx err = {0};
    struct cuda_runner *r = NULL;
    struct cuda_seq *s = NULL;
    int rc = cuda_runner_new(cm, max_tok, &r, &err);
    if (!rc) rc = cuda_seq_new(cm, n_ctx, &s, &err);
    for (int p = 0; !rc && p < n; p += chunk) {
        int k = n - p < chunk ? n - p : chunk;
        rc = cuda_forward(r, s, ids + p, k, p + k == n ? lg : NULL, &err);
    }
    if (rc) fprintf(stderr, "gpu forward: %s\n", err.msg);
    cuda_runner_free(r);
    if (keep && !rc) *keep = s;
    else cuda_seq_free(s);
    return rc;
}

static void check_model(const char *dir, struct model *m) {
    char path[1200];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    size_t len;
    char *text = slurp(path, &len);
    struct json_doc *doc = NULL;
    struct lfmd_err_ctx err = {0};
    CHECK(text && json_parse(text, len, LFMD_MEM_OTHER, &doc, &err) == 0);
    free(text);
    if (!doc) return;
    const struct model_config *c = model_get_config(m);
    int V = c->n_vocab;
    struct cuda_model *cm = NULL, *cm2 = NULL;
    // LFMD_CUDA_FAST_GEMM / LFMD_CUDA_NO_PDL / LFMD_CUDA_MV_MAX: check those paths
    // (tools/cuda_check.sh)
    struct cuda_opts o = {.fast_gemm = getenv("LFMD_CUDA_FAST_GEMM") != NULL,
                          .no_pdl = getenv("LFMD_CUDA_NO_PDL") != NULL,
                          .mv_max_tok =
                              getenv("LFMD_CUDA_MV_MAX") ? atoi(getenv("LFMD_CUDA_MV_MAX")) : 0};
    CHECK(cuda_model_new(m, &o, &cm, &err) == 0);
    struct cuda_opts o2 = o;
    char devs[64];
    snprintf(devs, sizeof devs, cuda_device_count() >= 2 ? "cuda:0,cuda:1" : "cuda:0,cuda:0");
    CHECK(cuda_parse_devices(devs, NULL, &o2, &err) == 0);
    if (c->n_layer >= 2) CHECK(cuda_model_new(m, &o2, &cm2, &err) == 0);
    if (!cm) {
        fprintf(stderr, "%s: %s\n", dir, err.msg);
        json_doc_free(doc);
        return;
    }
    const struct json *cases = json_get(json_root(doc), "cases");
    int32_t ids[4096];
    float *lg = malloc((size_t)V * 4 * 4), *cpu = malloc((size_t)V * 4),
          *lg2 = malloc((size_t)V * 4);
    for (size_t ci = 0; cases && ci < cases->len; ci++) {
        const struct json *cs = json_at(cases, ci);
        const struct json *pj = json_get(cs, "prompt_ids");
        int n = 0;
        for (size_t i = 0; pj && i < pj->len && n < 4000; i++)
            ids[n++] = (int32_t)json_num(json_at(pj, i), -1);
        snprintf(path, sizeof path, "%s/%s", dir, json_str(json_get(cs, "logits"), "?"));
        size_t rl;
        float *ref = (float *)slurp(path, &rl);
        const struct json *greedy = json_get(cs, "greedy");
        int n_gen = greedy ? (int)greedy->len : 0;
        // CPU f32 path
        struct runner *cr = NULL;
        struct seq *cseq = NULL;
        int rc = runner_new(m, 2, 128, &cr, &err);
        if (!rc) rc = seq_new(m, n + 1, &cseq, &err);
        if (!rc) rc = model_forward(cr, cseq, ids, n, cpu, &err);
        CHECK(rc == 0);
        runner_free(cr);
        seq_free(cseq);
        // GPU, whole prompt
        struct cuda_seq *s = NULL;
        CHECK(gpu_feed(cm, 512, n, ids, n, n + n_gen + 1, lg, &s) == 0);
        double e_cpu = rel_l2(lg, cpu, V),
               e_ref = ref && rl == (size_t)V * 4 ? rel_l2(lg, ref, V) : INFINITY;
        fprintf(stderr, "%s case %zu (%d tokens): gpu vs cpu f32 %.3g, gpu vs HF %.3g\n", dir, ci,
                n, e_cpu, e_ref);
        CHECK(e_cpu < 1e-2);
        CHECK(e_ref < 1e-2);
        if (e_cpu > worst_gpu_cpu) worst_gpu_cpu = e_cpu;
        if (e_ref > worst_gpu_ref) worst_gpu_ref = e_ref;
        n_cases++;
        // chunked prefill (odd chunks through a 5-token runner)
        CHECK(gpu_feed(cm, 5, n > 7 ? 7 : 1, ids, n, n + 1, lg2, NULL) == 0);
        double ec = rel_l2(lg2, lg, V);
        if (!(ec < 1e-2)) fprintf(stderr, "chunked prefill differs: %.3g\n", ec);
        CHECK(ec < 1e-2);
        // two-stage split: same logits
        if (cm2) {
            CHECK(gpu_feed(cm2, 512, n, ids, n, n + 1, lg2, NULL) == 0);
            double es = rel_l2(lg2, lg, V);
            fprintf(stderr, "  split %s vs one stage: %.3g\n", devs, es);
            CHECK(es < 1e-6);
        }
        // greedy continuation (decode steps: matvec kernels, CUDA graphs)
        struct cuda_runner *r = NULL;
        CHECK(cuda_runner_new(cm, 16, &r, &err) == 0);
        int mismatch = -1;
        for (int g = 0; r && s && g < n_gen; g++) {
            int32_t id = argmax(lg, V);
            if (id != (int32_t)json_num(json_at(greedy, (size_t)g), -1)) {
                mismatch = g;
                break;
            }
            if (g + 1 < n_gen && cuda_forward(r, s, &id, 1, lg, &err)) {
                mismatch = g;
                break;
            }
        }
        if (mismatch >= 0)
            fprintf(stderr, "%s case %zu: greedy differs at step %d of %d\n", dir, ci, mismatch,
                    n_gen);
        CHECK(mismatch < 0);
        greedy_ok += mismatch < 0;
        cuda_runner_free(r);
        cuda_seq_free(s);
        free(ref);
        // continuous batch: three sequences (prompt prefixes of different lengths) in one call
        // equal three separate runs.
        if (n >= 3) {
            struct cuda_runner *br = NULL;
            struct cuda_seq *bs[3] = {0};
            int nt[3] = {n, n / 2, n / 3};
            const int32_t *tk[3] = {ids, ids, ids + 1};
            CHECK(cuda_runner_new(cm, 512, &br, &err) == 0);
            for (int i = 0; i < 3; i++) CHECK(cuda_seq_new(cm, n + 4, &bs[i], &err) == 0);
            if (br && bs[0] && bs[1] && bs[2]) {
                CHECK(cuda_forward_batch(br, bs, tk, nt, 3, lg, &err) == 0);
                int32_t nx[3], *nxp[3] = {&nx[0], &nx[1], &nx[2]};
                int one[3] = {1, 1, 1};
                for (int i = 0; i < 3; i++) nx[i] = argmax(lg + (size_t)i * V, V);
                CHECK(cuda_forward_batch(br, bs, (const int32_t *const *)nxp, one, 3, lg, &err) ==
                      0);
                for (int i = 0; i < 3; i++) {
                    int32_t solo[4096];
                    memcpy(solo, tk[i], (size_t)nt[i] * 4);
                    solo[nt[i]] = nx[i];
                    CHECK(gpu_feed(cm, 512, nt[i], solo, nt[i], n + 4, lg2, &s) == 0);
                    struct cuda_runner *r1 = NULL;
                    CHECK(cuda_runner_new(cm, 16, &r1, &err) == 0);
                    if (r1 && s) CHECK(cuda_forward(r1, s, &nx[i], 1, lg2, &err) == 0);
                    double eb = rel_l2(lg + (size_t)i * V, lg2, V);
                    if (!(eb < 1e-3))
                        fprintf(stderr, "batch seq %d differs from solo: %.3g\n", i, eb);
                    CHECK(eb < 1e-3);
                    cuda_runner_free(r1);
                    cuda_seq_free(s);
                    s = NULL;
                }
            }
            for (int i = 0; i < 3; i++) cuda_seq_free(bs[i]);
            cuda_runner_free(br);
        }
    }
    free(lg);
    free(lg2);
    free(cpu);
    cuda_model_free(cm2);
    cuda_model_free(cm);
    json_doc_free(doc);
}

// 4-bit models: golden model dir quantized by quantize_model (MLX q4 group gs, or GGUF type);
// GPU (weights kept 4-bit) vs the CPU reference kernels on the same quantized weights: last
// logits of prompts of 1, 7 (matvec path) and 40 tokens (dequantized tiles + cuBLAS), then 32
// greedy tokens by incremental decoding identical. Run twice, every check both times: with f32
// activations (no_q8) and with the default integer activations of the decode matvec (two int8
// levels, up to CUK_MV_Q8_MAX_TOK tokens).
static double worst_q4, worst_q4_q8;
static int q4_models, q4_greedy_ok, q4_greedy_cases, q8_greedy_ok, q8_greedy_cases;

static void check_q4(const char *dir, enum quant_format fmt, int gs, enum lfmd_dtype gt) {
    char out[512];
    if (q4_model_make(dir, "cuda-q4", fmt, gs, gt, out, sizeof out)) {
        CHECK(!"quantize");
        return;
    }
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    if (model_open(out, NULL, &m, &err)) {
        fprintf(stderr, "%s: %s\n", out, err.msg);
        CHECK(!"q4 model opens");
        q4_model_remove(out);
        return;
    }
    const struct model_config *c = model_get_config(m);
    int V = c->n_vocab;
    struct cuda_model *cm = NULL, *cmb = NULL;
    for (int q8 = 0; q8 < 2; q8++) {
        struct cuda_opts o = {.no_q8 = !q8}, ob = {.no_q4 = true};
        fprintf(stderr, "  %s activations\n", q8 ? "integer" : "f32");
        CHECK(cuda_model_new(m, &o, &cm, &err) == 0);
        CHECK(cuda_model_new(m, &ob, &cmb, &err) == 0);
        if (cm && cmb) {
            fprintf(stderr, "%s: %zu device weight bytes kept 4-bit, %zu as bf16\n", out,
                    cuda_model_weight_bytes(cm), cuda_model_weight_bytes(cmb));
            CHECK(cuda_model_weight_bytes(cm) < cuda_model_weight_bytes(cmb));
        }
        float *lg = malloc((size_t)V * 4), *cpu = malloc((size_t)V * 4);
        int lens[3] = {1, 7, 40};
        for (int k = 0; cm && k < 3; k++) {
            int n = lens[k];
            int32_t ids[64];
            for (int i = 0; i < n; i++) ids[i] = 1 + (i * 7919 + k) % (V - 1);
            struct runner *cr = NULL;
            struct seq *cs = NULL;
            kern_force_ref(true);
            int rc = runner_new(m, 2, 128, &cr, &err);
            if (!rc) rc = seq_new(m, n + 40, &cs, &err);
            if (!rc) rc = model_forward(cr, cs, ids, n, cpu, &err);
            CHECK(rc == 0);
            struct cuda_seq *s = NULL;
            CHECK(gpu_feed(cm, 512, n, ids, n, n + 40, lg, &s) == 0);
            double e = rel_l2(lg, cpu, V);
            fprintf(stderr, "  q4 %d tokens: gpu vs cpu ref %.3g\n", n, e);
            CHECK(e < 1e-2);
            if (!q8 && e > worst_q4) worst_q4 = e;
            if (q8 && e > worst_q4_q8) worst_q4_q8 = e;
            struct cuda_runner *r = NULL;
            CHECK(cuda_runner_new(cm, 16, &r, &err) == 0);
            int mismatch = -1;
            for (int g = 0; r && s && !rc && g < 32; g++) {
                int32_t a = argmax(lg, V), b = argmax(cpu, V);
                if (a != b) {
                    mismatch = g;
                    fprintf(stderr,
                            "  q4 greedy differs at step %d: gpu %d (cpu logit %.5g) vs cpu %d "
                            "(%.5g)\n",
                            g, a, cpu[a], b, cpu[b]);
                    break;
                }
                if (cuda_forward(r, s, &a, 1, lg, &err) ||
                    model_forward(cr, cs, &a, 1, cpu, &err)) {
                    mismatch = g;
                    break;
                }
            }
            kern_force_ref(false);
            CHECK(mismatch < 0);
            if (q8) {
                q8_greedy_ok += mismatch < 0;
                q8_greedy_cases++;
            } else {
                q4_greedy_ok += mismatch < 0;
                q4_greedy_cases++;
            }
            cuda_runner_free(r);
            cuda_seq_free(s);
            runner_free(cr);
            seq_free(cs);
        }
        free(lg);
        free(cpu);
        cuda_model_free(cm);
        cuda_model_free(cmb);
        cm = cmb = NULL;
    }
    model_close(m);
    q4_models++;
    q4_model_remove(out);
}

static long gpu_mem_of_pid(void) {
    char cmd[200];
    snprintf(cmd, sizeof cmd,
             "nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits "
             "2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[256];
    long mem = 0;
    int me = (int)getpid();
    while (fgets(line, sizeof line, p)) {
        int pid;
        long mb;
        if (sscanf(line, "%d, %ld", &pid, &mb) == 2 && pid == me) mem += mb;
    }
    pclose(p);
    return mem;
}

static void check_lifecycle(struct model *m) {
    struct lfmd_err_ctx err = {0};
    struct cuda_model *cm = NULL;
    CHECK(cuda_model_new(m, NULL, &cm, &err) == 0);
    if (!cm) return;
    struct cuda_seq *s = NULL;
    size_t used = cuda_mem_used();
    cuda_set_limit(used + 1000);
    int rc = cuda_seq_new(cm, 4096, &s, &err);
    CHECK_EQ(rc, LFMD_EBUDGET);
    fprintf(stderr, "limit: %s\n", err.msg);
    cuda_set_limit(0);
    long before = gpu_mem_of_pid();
    cuda_model_free(cm);
    cuda_trim();
    cuda_shutdown();
    long after = gpu_mem_of_pid();
    fprintf(stderr, "nvidia-smi MiB for this process: loaded %ld, after unload %ld\n", before,
            after);
    CHECK(after == 0);
    CHECK(cuda_mem_used() == 0);
    // reload on demand
    CHECK(cuda_model_new(m, NULL, &cm, &err) == 0);
    float *lg = malloc((size_t)model_get_config(m)->n_vocab * 4);
    int32_t ids[3] = {1, 2, 3};
    if (cm) CHECK(gpu_feed(cm, 16, 3, ids, 3, 8, lg, NULL) == 0);
    free(lg);
    cuda_model_free(cm);
    cuda_shutdown();
}

int main(void) {
    if (cuda_device_count() < 1) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    const char *root = "tests/golden/data";
    DIR *d = opendir(root);
    CHECK(d != NULL);
    int n_models = 0;
    struct dirent *e;
    struct model *keep = NULL;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[512], cfg[1200];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        struct stat st;
        if (stat(cfg, &st) != 0) continue;
        struct model *m = NULL;
        struct lfmd_err_ctx err = {0};
        if (model_open(dir, NULL, &m, &err)) {
            fprintf(stderr, "%s: %s\n", dir, err.msg);
            CHECK(!"model opens");
            continue;
        }
        check_model(dir, m);
        n_models++;
        if (!keep) keep = m;
        else model_close(m);
    }
    if (d) closedir(d);
    // 4-bit: MLX q4 (group 32 / 64) and GGUF Q4_0, weights kept 4-bit on the GPU
    check_q4("tests/golden/data/lfm2-gqa2", QUANT_FMT_MLX, 32, LFMD_DTYPE_Q4_0);
    check_q4("tests/golden/data/lfm2-gqa4-ropeparams", QUANT_FMT_MLX, 64, LFMD_DTYPE_Q4_0);
    check_q4("tests/golden/data/llama-gqa-tied", QUANT_FMT_MLX, 64, LFMD_DTYPE_Q4_0);
    check_q4("tests/golden/data/llama-gqa-tied", QUANT_FMT_GGUF, 32, LFMD_DTYPE_Q4_0);
    check_q4("tests/golden/data/lfm2-gqa2", QUANT_FMT_GGUF, 32, LFMD_DTYPE_Q4_0);
    check_q4("tests/golden/data/lfm2-mha-legacy", QUANT_FMT_MLX, 32, LFMD_DTYPE_Q4_0);
    fprintf(stderr, "%d q4 models: worst gpu-vs-cpu-ref %.3g, greedy identical in %d of %d\n",
            q4_models, worst_q4, q4_greedy_ok, q4_greedy_cases);
    fprintf(stderr,
            "  integer activations: worst gpu-vs-cpu-ref %.3g, greedy identical in %d of %d\n",
            worst_q4_q8, q8_greedy_ok, q8_greedy_cases);
    if (keep) check_lifecycle(keep);
    model_close(keep);
    fprintf(stderr,
            "%d golden models, %d cases, greedy identical in %d; worst gpu-vs-cpu %.3g, gpu-vs-HF "
            "%.3g\n",
            n_models, n_cases, greedy_ok, worst_gpu_cpu, worst_gpu_ref);
    CHECK(n_models > 0);
    return check_done();
}
