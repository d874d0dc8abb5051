// lfmd-cuda-bench MODEL [ROUTER]: times the CUDA backend (--quantize mlx4|q4_0 IN OUT writes a
// 4-bit copy of a model first). Prints the device copy bandwidth
// (bytes read + written), prefill tok/s (512-token prompt), decode tok/s at batch 1, 8, 64
// (continuous batch, one token per sequence per step) with the bandwidth ceiling
// (weight bytes / copy bandwidth), and, given ROUTER, the p50 latency of a 350-token prefill
// plus logits. Times are host wall clock around synchronized passes, medians of repeats.
// SPDX-License-Identifier: MIT
#include "cuda/cuda.h"
#include "cuda/kernels.h"
#include "model/quantize.h"

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double copy_bw(void) {
    size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, n) != cudaSuccess || cudaMalloc(&b, n) != cudaSuccess) return 0;
    cudaMemset(a, 1, n);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double best[10];
    for (int i = 0; i < 12; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 2) best[i - 2] = 2.0 * n / (ms * 1e-3);
    }
    qsort(best, 10, sizeof best[0], cmp_d);
    cudaFree(a);
    cudaFree(b);
    return best[5];
}

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); return 1; } while (0)

static int cmp_u64(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

// LFMD_CUDA_TRACE=1: the step trace (cuk_trace) of a batch-1 decode run. h: n records (ns),
// K kernels per step noted at the graph's capture; per kernel the median over the steps after
// the first of (its record -> the next record): its time on the step's critical path (the last
// kernel's runs to the next step's first, host turnaround included).
static void trace_print(const unsigned long long *h, long n) {
    const struct cuk_trace_kernel *kn = NULL;
    const int K = cuk_trace_kernels(&kn);
    if (K > 0 && n == CUK_TRACE_MAX) n = n / K * K;   // the buffer filled: whole steps
    const long steps = K > 0 ? n / K : 0;
    printf("trace: %ld records, %d kernels noted per step, %ld steps\n", n, K, steps);
    if (K < 1 || K >= CUK_TRACE_MAX_KERNELS || steps < 3 || n % K) {
        printf("trace: records do not divide into steps; not analysed\n");
        return;
    }
    unsigned long long *d = malloc((size_t)steps * sizeof *d);
    double total = 0;
    for (int i = 0; i < K; i++) {
        long m = 0;
        for (long st = 1; st + 1 < steps; st++) d[m++] = h[st * K + i + 1] - h[st * K + i];
        qsort(d, (size_t)m, sizeof *d, cmp_u64);
        const double us = d[m / 2] / 1000.0;
        total += us;
        printf("trace %3d %8.2f us  %-56.56s (%d,%d,%d)x%d\n", i, us, kn[i].name, kn[i].grid[0],
               kn[i].grid[1], kn[i].grid[2], kn[i].block);
    }
    long m = 0;
    for (long st = 1; st + 1 < steps; st++) d[m++] = h[(st + 1) * K] - h[st * K];
    qsort(d, (size_t)m, sizeof *d, cmp_u64);
    printf("trace: step median %.2f us (sum of kernel medians %.2f us)\n", d[m / 2] / 1000.0,
           total);
    free(d);
}

// greedy: tokens picked on the GPU (cuda_forward_batch_greedy, no logits copy) and fed back;
// else logits copied to the host every step.
static int decode_bench(struct cuda_model *cm, int V, int batch, int steps, bool greedy,
                        double *tok_s) {
    struct lfmd_err_ctx err = {0};
    struct cuda_runner *r = NULL;
    struct cuda_seq **s = calloc((size_t)batch, sizeof *s);
    int32_t *tok = malloc((size_t)batch * 4), **tp = malloc((size_t)batch * sizeof *tp);
    int *one = malloc((size_t)batch * sizeof *one);
    float *lg = malloc((size_t)batch * V * 4);
    if (cuda_runner_new(cm, 512, &r, &err)) FAIL("runner: %s\n", err.msg);
    int32_t prompt[32];
    for (int i = 0; i < 32; i++) prompt[i] = 1 + (i * 7919) % (V - 1);
    for (int i = 0; i < batch; i++) {
        if (cuda_seq_new(cm, 32 + steps + 8, &s[i], &err)) FAIL("seq: %s\n", err.msg);
        if (cuda_forward(r, s[i], prompt, 32, lg, &err)) FAIL("prefill: %s\n", err.msg);
        tok[i] = (int32_t)(i % V);
        tp[i] = &tok[i];
        one[i] = 1;
    }
    double *ts = malloc((size_t)steps * sizeof *ts);
    unsigned long long *tb = NULL;   // LFMD_CUDA_TRACE: the step trace of batch 1
    if (getenv("LFMD_CUDA_TRACE") && batch == 1) {
        if (cudaMalloc((void **)&tb, (1 + CUK_TRACE_MAX) * sizeof *tb) != cudaSuccess ||
            cudaMemset(tb, 0, sizeof *tb) != cudaSuccess || cuk_trace(tb, 1))
            FAIL("trace: CUDA error, or built without -DLFMD_CUDA_TRACE=ON\n");
    }
    for (int k = 0; k < steps; k++) {
        double t0 = now();
        if (greedy) {
            if (cuda_forward_batch_greedy(r, s, (const int32_t *const *)tp, one, batch, tok, &err))
                FAIL("decode: %s\n", err.msg);
        } else if (cuda_forward_batch(r, s, (const int32_t *const *)tp, one, batch, lg, &err)) {
            FAIL("decode: %s\n", err.msg);
        }
        ts[k] = now() - t0;
        if (tb && k == 0) cuk_trace(tb, 0);   // the kernels of one step noted (capture)
        if (!greedy)
            for (int i = 0; i < batch; i++) tok[i] = (tok[i] * 31 + 7) % V;
    }
    qsort(ts, (size_t)steps, sizeof *ts, cmp_d);
    *tok_s = batch / ts[steps / 2];
    if (tb) {
        cuk_trace(NULL, 0);
        unsigned long long *h = malloc((1 + CUK_TRACE_MAX) * sizeof *h);
        if (cudaMemcpy(h, tb, (1 + CUK_TRACE_MAX) * sizeof *h, cudaMemcpyDeviceToHost) ==
            cudaSuccess) {
            printf("trace (%s):\n", greedy ? "greedy on GPU" : "logits to host");
            trace_print(h + 1, (long)(h[0] < CUK_TRACE_MAX ? h[0] : CUK_TRACE_MAX));
        }
        free(h);
        cudaFree(tb);
    }
    if (getenv("LFMD_CUDA_PROFILE") && !greedy) {   // device time per kernel group (no graphs)
        cuda_runner_profile(r, true);
        for (int k = 0; k < 5; k++)
            if (cuda_forward_batch(r, s, (const int32_t *const *)tp, one, batch, lg, &err))
                FAIL("decode: %s\n", err.msg);
        printf("batch %d ", batch);
        cuda_runner_profile_print(r, stdout);
        cuda_runner_profile(r, false);
    }
    for (int i = 0; i < batch; i++) cuda_seq_free(s[i]);
    cuda_runner_free(r);
    free(s);
    free(tok);
    free(tp);
    free(one);
    free(lg);
    free(ts);
    return 0;
}

// --probe: the fixed cost of a kernel-to-kernel dependency. 80 dependent launches (cuk_probe,
// 2 blocks per SM, PDL, one CUDA graph) of each kind, replayed; time per launch, median of 7
// rounds of 20 replays. Streaming launches are compared with the bytes' time at the copy
// bandwidth: the excess is what a dependency costs a product of that size.
static int probe(void) {
    cuk_set_pdl(1);
    cuk_set_carveout(100);
    const double bw = copy_bw();
    const int K = 2048, n = 80;
    const int64_t sizes[3] = {(int64_t)8 << 20, (int64_t)32 << 20, (int64_t)64 << 20};
    float *x = NULL, *y = NULL;
    void *w = NULL;
    if (cudaMalloc((void **)&x, K * 4) != cudaSuccess ||
        cudaMalloc((void **)&y, 4096 * 4) != cudaSuccess ||
        cudaMalloc(&w, (size_t)sizes[2] * n / 8) != cudaSuccess)   // 640 MB: spans > L2
        FAIL("probe: cudaMalloc failed\n");
    cudaMemset(x, 0, K * 4);
    cudaMemset(w, 1, (size_t)sizes[2] * n / 8);
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    printf("device copy %.0f GB/s (read + write)\n", bw / 1e9);
    for (int c = 0; c < 5; c++) {
        const int stage = c < 2 ? c : 2;
        const int64_t wb = c < 2 ? 0 : sizes[c - 2];
        const int64_t span = (int64_t)sizes[2] * n / 8;   // launches read different bytes
        cudaGraph_t g;
        cudaGraphExec_t ge;
        cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
        for (int i = 0; i < n; i++)
            cuk_probe(x, K, (char *)w + (wb ? (i * wb) % (span - wb + 1) / 16 * 16 : 0), wb, y,
                      stage, st);
        if (cudaStreamEndCapture(st, &g) != cudaSuccess ||
            cudaGraphInstantiate(&ge, g, 0) != cudaSuccess)
            FAIL("probe: graph capture failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        double ts[7];
        for (int r = 0; r < 8; r++) {
            cudaStreamSynchronize(st);
            double a = now();
            for (int k = 0; k < 20; k++) cudaGraphLaunch(ge, st);
            cudaStreamSynchronize(st);
            if (r) ts[r - 1] = (now() - a) / (20.0 * n);
        }
        qsort(ts, 7, sizeof ts[0], cmp_d);
        if (wb)
            printf("probe: %d dependent launches streaming %.1f MB each: %.2f us per launch "
                   "(bytes at copy bandwidth %.2f us: %.2f us more)\n",
                   n, wb / 1e6, ts[3] * 1e6, wb / bw * 1e6, ts[3] * 1e6 - wb / bw * 1e6);
        else
            printf("probe: %d dependent launches, %s: %.2f us per launch\n", n,
                   stage ? "RMSNorm of 2048 floats staged per block" : "empty", ts[3] * 1e6);
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(g);
    }
    cudaStreamDestroy(st);
    cudaFree(x);
    cudaFree(y);
    cudaFree(w);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr,
                "usage: lfmd-cuda-bench MODEL [ROUTER] | --quantize mlx4|q4_0 IN OUT | --probe\n");
        return 2;
    }
    if (!strcmp(argv[1], "--probe")) return probe();
    struct lfmd_err_ctx err = {0};
    if (!strcmp(argv[1], "--quantize") && argc == 5) {   // a 4-bit copy of IN for the q4 timings
        struct quant_opts qo;
        struct quant_stats qs;
        quant_opts_default(&qo);
        qo.bits = 4;
        qo.group_size = 64;
        if (strcmp(argv[2], "mlx4")) {
            qo.format = QUANT_FMT_GGUF;
            if (!quant_parse_type(argv[2], &qo.gguf_type)) FAIL("unknown type %s\n", argv[2]);
        }
        double t0 = now();
        if (quantize_model(argv[3], argv[4], &qo, &qs, &err)) FAIL("quantize: %s\n", err.msg);
        printf("quantized %s -> %s (%s) in %.1f s: %.1f MB\n", argv[3], argv[4], argv[2],
               now() - t0, qs.out_bytes / 1e6);
        return 0;
    }
    struct model *m = NULL;
    if (model_open(argv[1], NULL, &m, &err)) FAIL("%s: %s\n", argv[1], err.msg);
    const struct model_config *c = model_get_config(m);
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double bw = copy_bw();
    printf("device: %s, %d SMs; device copy %.0f GB/s (read + write)\n", prop.name,
           prop.multiProcessorCount, bw / 1e9);
    struct cuda_opts o = {0};
    const char *env_mv = getenv("LFMD_CUDA_MV_MAX");
    if (env_mv) o.mv_max_tok = atoi(env_mv);
    o.no_graphs = getenv("LFMD_CUDA_NO_GRAPHS") != NULL;
    o.fast_gemm = getenv("LFMD_CUDA_FAST_GEMM") != NULL;
    o.no_pdl = getenv("LFMD_CUDA_NO_PDL") != NULL;
    o.mv_blocks = getenv("LFMD_CUDA_MV_BLOCKS") ? atoi(getenv("LFMD_CUDA_MV_BLOCKS")) : 0;
    o.mv_old = getenv("LFMD_CUDA_MV_OLD") != NULL;   // the previous bf16 matvec kernel
    o.no_q4 = getenv("LFMD_CUDA_NO_Q4") != NULL;     // 4-bit weights dequantized to bf16 at upload
    o.att_splits = getenv("LFMD_CUDA_ATT_SPLITS") ? atoi(getenv("LFMD_CUDA_ATT_SPLITS")) : 0;
    o.att_min_chunk = getenv("LFMD_CUDA_ATT_MIN_CHUNK") ? atoi(getenv("LFMD_CUDA_ATT_MIN_CHUNK")) : 0;
    o.q4_rows = getenv("LFMD_CUDA_Q4_ROWS") ? atoi(getenv("LFMD_CUDA_Q4_ROWS")) : 0;
    o.no_norm_fuse = getenv("LFMD_CUDA_NO_NORM_FUSE") != NULL;
    o.no_prefetch = getenv("LFMD_CUDA_NO_PREFETCH") != NULL;   // no tail prefetch of next weights
    o.prefetch_mb = getenv("LFMD_CUDA_PREFETCH_MB") ? atoi(getenv("LFMD_CUDA_PREFETCH_MB")) : 0;
    o.no_q8 = getenv("LFMD_CUDA_NO_Q8") != NULL;      // 4-bit matvec with f32 activations
    o.no_conv_fuse = getenv("LFMD_CUDA_NO_CONV_FUSE") != NULL;   // short conv as its own kernel
    o.no_rope_fuse = getenv("LFMD_CUDA_NO_ROPE_FUSE") != NULL;   // rope + KV store kernel
    o.no_preload = getenv("LFMD_CUDA_NO_PRELOAD") != NULL;  // matvec weights only to L2 first
    o.no_stage1 = getenv("LFMD_CUDA_NO_STAGE1") != NULL;    // matvec: general staging loops
    o.no_stage_x = getenv("LFMD_CUDA_NO_STAGE_X") != NULL;  // bf16 matvec: X through L1
    o.ring = getenv("LFMD_CUDA_NO_RING") ? -1   // one-token matvecs: general kernels
           : getenv("LFMD_CUDA_RING") ? atoi(getenv("LFMD_CUDA_RING")) : 0;   // 1 bf16, 2 4-bit
    o.ring_chunk = getenv("LFMD_CUDA_RING_CHUNK") ? atoi(getenv("LFMD_CUDA_RING_CHUNK")) : 0;
    o.ring_bytes = getenv("LFMD_CUDA_RING_BYTES") ? atoi(getenv("LFMD_CUDA_RING_BYTES")) : 0;
    o.ring_warps = getenv("LFMD_CUDA_RING_WARPS") ? atoi(getenv("LFMD_CUDA_RING_WARPS")) : 0;
    o.ring_pair = getenv("LFMD_CUDA_RING_PAIR") ? atoi(getenv("LFMD_CUDA_RING_PAIR")) : 0;
    o.ring_max_rows = getenv("LFMD_CUDA_RING_MAX_ROWS") ? atoi(getenv("LFMD_CUDA_RING_MAX_ROWS")) : 0;
    o.no_argmax_fuse = getenv("LFMD_CUDA_NO_ARGMAX_FUSE") != NULL;   // argmax kernel
    o.att_round = getenv("LFMD_CUDA_ATT_ROUND") ? atoi(getenv("LFMD_CUDA_ATT_ROUND")) : 0;
    o.carveout = getenv("LFMD_CUDA_CARVEOUT") ? atoi(getenv("LFMD_CUDA_CARVEOUT")) : 0;
    bool quick = getenv("LFMD_CUDA_QUICK") != NULL;   // decode batch 1 only (A/B sweeps)
    const char *devs = getenv("LFMD_CUDA_DEVICES");   // e.g. cuda:0,cuda:1 (layer sharding)
    if (devs && cuda_parse_devices(devs, getenv("LFMD_CUDA_SPLIT"), &o, &err))
        FAIL("%s\n", err.msg);
    double t0 = now();
    struct cuda_model *cm = NULL;
    if (cuda_model_new(m, &o, &cm, &err)) FAIL("upload: %s\n", err.msg);
    size_t wb = cuda_model_weight_bytes(cm);
    printf("model %s: %d layers, dim %d, ff %d, vocab %d; %.1f MB of weights on the GPU, upload "
           "%.2f s\n",
           argv[1], c->n_layer, c->n_embd, c->n_ff, c->n_vocab, wb / 1e6, now() - t0);
    for (int i = 0; i < cuda_model_stages(cm); i++) {
        int d, l0, l1;
        cuda_stage_layers(cm, i, &d, &l0, &l1);
        printf("stage %d: cuda:%d layers %d..%d\n", i, d, l0, l1 - 1);
    }
    double ceil_tok = bw / (double)wb;
    {   // greedy tokens: compare runs with different devices / options
        struct cuda_runner *r = NULL;
        struct cuda_seq *s = NULL;
        float *lg = malloc((size_t)c->n_vocab * 4);
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = 1 + (i * 7919) % (c->n_vocab - 1);
        if (cuda_runner_new(cm, 64, &r, &err) || cuda_seq_new(cm, 64, &s, &err))
            FAIL("%s\n", err.msg);
        if (cuda_forward(r, s, ids, 16, lg, &err)) FAIL("greedy: %s\n", err.msg);
        printf("greedy 32:");
        for (int k = 0; k < 32; k++) {
            int32_t best = 0;
            for (int v = 1; v < c->n_vocab; v++)
                if (lg[v] > lg[best]) best = v;
            printf(" %d", best);
            if (cuda_forward(r, s, &best, 1, lg, &err)) FAIL("greedy: %s\n", err.msg);
        }
        printf("\n");
        // the same 32 tokens with the argmax on the GPU
        int32_t host_tok[32], dev_tok[32], nxt = 0;
        cuda_seq_reset(s);
        if (cuda_forward(r, s, ids, 16, lg, &err)) FAIL("greedy: %s\n", err.msg);
        int32_t best = 0;
        for (int v = 1; v < c->n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        for (int k = 0; k < 32; k++) {
            host_tok[k] = best;
            const int32_t *tp = &best;
            int one = 1;
            if (cuda_forward_batch_greedy(r, &s, &tp, &one, 1, &nxt, &err))
                FAIL("greedy: %s\n", err.msg);
            best = nxt;
        }
        cuda_seq_reset(s);
        if (cuda_forward(r, s, ids, 16, lg, &err)) FAIL("greedy: %s\n", err.msg);
        best = 0;
        for (int v = 1; v < c->n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        for (int k = 0; k < 32; k++) {   // host argmax of the same passes
            dev_tok[k] = best;
            if (cuda_forward(r, s, &best, 1, lg, &err)) FAIL("greedy: %s\n", err.msg);
            best = 0;
            for (int v = 1; v < c->n_vocab; v++)
                if (lg[v] > lg[best]) best = v;
        }
        printf("device argmax tokens identical to host argmax (32): %s\n",
               memcmp(host_tok, dev_tok, sizeof host_tok) ? "NO" : "yes");
        cuda_seq_free(s);
        cuda_runner_free(r);
        free(lg);
    }
    // prefill 512 tokens
    if (!quick) {
        struct cuda_runner *r = NULL;
        struct cuda_seq *s = NULL;
        int32_t ids[512];
        float *lg = malloc((size_t)c->n_vocab * 4);
        for (int i = 0; i < 512; i++) ids[i] = 1 + (i * 104729) % (c->n_vocab - 1);
        if (cuda_runner_new(cm, 512, &r, &err) || cuda_seq_new(cm, 520, &s, &err))
            FAIL("%s\n", err.msg);
        double ts[7];
        for (int k = 0; k < 8; k++) {
            cuda_seq_reset(s);
            double a = now();
            if (cuda_forward(r, s, ids, 512, lg, &err)) FAIL("prefill: %s\n", err.msg);
            if (k) ts[k - 1] = now() - a;
        }
        qsort(ts, 7, sizeof ts[0], cmp_d);
        printf("prefill 512 tokens: %.2f ms, %.0f tok/s\n", ts[3] * 1e3, 512 / ts[3]);
        cuda_seq_free(s);
        cuda_runner_free(r);
        free(lg);
    }
    int batches[3] = {1, 8, 64};
    for (int gr = quick ? 1 : 0; gr < 2; gr++)
        for (int i = 0; i < (quick ? 1 : 3); i++) {
            double tps = 0;
            const char *how = gr ? "greedy on GPU" : "logits to host";
            if (decode_bench(cm, c->n_vocab, batches[i], batches[i] == 1 ? 200 : 60, gr, &tps))
                return 1;
            if (batches[i] == 1)
                printf("decode batch 1 (%s): %.1f tok/s (%.3f ms/token); ceiling %.1f tok/s -> "
                       "%.1f%% of ceiling\n",
                       how, tps, 1e3 / tps, ceil_tok, 100 * tps / ceil_tok);
            else
                printf("decode batch %d (%s): %.0f tok/s\n", batches[i], how, tps);
        }
    printf("device memory peak %.1f MB\n", cuda_mem_peak() / 1e6);
    cuda_model_free(cm);
    model_close(m);
    cuda_shutdown();
    if (argc > 2 && !quick) {
        if (model_open(argv[2], NULL, &m, &err)) FAIL("%s: %s\n", argv[2], err.msg);
        c = model_get_config(m);
        if (cuda_model_new(m, &o, &cm, &err)) FAIL("router upload: %s\n", err.msg);
        struct cuda_runner *r = NULL;
        struct cuda_seq *s = NULL;
        if (cuda_runner_new(cm, 512, &r, &err) || cuda_seq_new(cm, 400, &s, &err))
            FAIL("%s\n", err.msg);
        int32_t ids[350];
        float *lg = malloc((size_t)c->n_vocab * 4);
        for (int i = 0; i < 350; i++) ids[i] = 1 + (i * 7919) % (c->n_vocab - 1);
        double ts[40];
        for (int k = 0; k < 41; k++) {
            double a = now();
            cuda_seq_reset(s);
            if (cuda_forward(r, s, ids, 350, lg, &err)) FAIL("route: %s\n", err.msg);
            if (k) ts[k - 1] = now() - a;
        }
        qsort(ts, 40, sizeof ts[0], cmp_d);
        printf("router %s: 350-token prefill + logits p50 %.3f ms, p90 %.3f ms\n", argv[2],
               ts[20] * 1e3, ts[36] * 1e3);
        cuda_seq_free(s);
        cuda_runner_free(r);
        cuda_model_free(cm);
        model_close(m);
        free(lg);
    }
    return 0;
}
