// lfmd bench: prefill and decode throughput, load time and peak RSS of one model on this machine.
// Prompt tokens are pseudo-random ids (speed does not depend on their values). Each figure is the
// median of --reps runs. Load time is model_open (lazy mmap) plus the first forward's page faults
// are part of the first prefill run, which is why a warm-up run precedes the timed ones.
// --streams N measures continuous batching at the model layer: N sequences are prefilled, then
// every decode step is one model_forward_batch with one token per sequence (what the engine
// runs for N concurrent greedy requests); decode tok/s is then the aggregate over the N.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"

#include "base/alloc.h"
#include "base/io.h"
#include "model/model.h"
#include "sample/sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cmd_bench(int argc, char **argv) {
    const char *model_arg = NULL;
    int n_prompt = 512, n_gen = 128, threads = app_threads_default(), reps = 3, batch_tokens = LFMD_MAX_BATCH_TOKENS;
    int streams = 1;
    bool json = false, missing = false;
    const char *kv_name = getenv("LFMD_KV_TYPE");   // the server's default unless set
    if (!kv_name || !*kv_name) kv_name = "f16";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lfmd bench [-m MODEL] [-p 512] [-n 128] [-t THREADS] [-r REPS]\n"
                   "                  [--batch-tokens 512] [--streams N] [--kv-type f16|f32|q8]\n"
                   "                  [--no-mmap] [--json]\n\n"
                   "Measures prefill tok/s (a -p token prompt), decode tok/s (-n tokens one at a time\n"
                   "after it), model open time and peak RSS. Medians of -r runs after one warm-up.\n"
                   "--streams N decodes N sequences together (one batched forward per step) and\n"
                   "reports their aggregate decode tok/s. --no-mmap reads the weights into huge-page\n"
                   "memory instead of mapping the file (load time then includes the read).\n"
                   "--kv-type sets the KV cache element type (LFMD_KV_TYPE; default f16, as\n"
                   "lfmd serve).\n"
                   "--json prints one object with prefill_tok_s, decode_tok_s, load_ms, peak_rss_bytes.\n"
                   "Prompt ids are pseudo-random (speed does not depend on them). Run nothing else on\n"
                   "the machine while measuring; compare with llama.cpp via bench/compare.sh.\n"
                   "Exit status: 0 success, 1 runtime error, 2 usage error.\n");
            return 0;
        }
        if ((v = app_opt(argc, argv, &i, "-m", &missing)) || (v = app_opt(argc, argv, &i, "--model", &missing))) model_arg = v;
        else if ((v = app_opt(argc, argv, &i, "-p", &missing))) n_prompt = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "-n", &missing))) n_gen = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "-t", &missing)) || (v = app_opt(argc, argv, &i, "--threads", &missing))) threads = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "-r", &missing)) || (v = app_opt(argc, argv, &i, "--reps", &missing))) reps = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--batch-tokens", &missing))) batch_tokens = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--streams", &missing))) streams = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--kv-type", &missing))) kv_name = v;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--no-mmap")) lfmd_io_set_copy_maps(true);
        else if (!missing) {
            fprintf(stderr, "lfmd bench: unknown option '%s'\n", argv[i]);
            return 2;
        }
        if (missing) return 2;
    }
    if (n_prompt < 1 || n_gen < 0 || reps < 1 || reps > 100 || streams < 1 || streams > 64) {
        fprintf(stderr, "lfmd bench: need -p >= 1, -n >= 0, 1 <= -r <= 100, 1 <= --streams <= 64\n");
        return 2;
    }
    struct seq_opts so = {0};
    if (seq_kv_type_parse(kv_name, &so.kv_type)) {
        fprintf(stderr, "lfmd bench: --kv-type must be f16, f32 or q8 (got '%s')\n", kv_name);
        return 2;
    }
    const char *path = app_model_path(model_arg);
    if (!path) return 1;
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    struct runner *r = NULL;
    struct seq *s = NULL, *ss[64] = {0};
    int32_t *ids = NULL;
    float *logits = NULL;
    double *pf = NULL, *dc = NULL;
    int status = 1;
    double t0 = app_now_ms();
    if (model_open(path, NULL, &m, &err)) goto fail;
    double load_ms = app_now_ms() - t0;
    const struct model_config *c = model_get_config(m);
    if (runner_new(m, threads, batch_tokens, &r, &err) ||
        seq_new_ex(m, n_prompt + n_gen + 1, &so, &s, &err))
        goto fail;
    for (int k = 1; k < streams; k++)
        if (seq_new_ex(m, n_prompt + n_gen + 1, &so, &ss[k], &err)) goto fail;
    ss[0] = s;
    ids = lfmd_malloc((size_t)n_prompt * sizeof *ids, LFMD_MEM_REQUEST);
    logits = lfmd_malloc((size_t)c->n_vocab * (size_t)streams * sizeof *logits, LFMD_MEM_SCRATCH);
    pf = calloc((size_t)reps, sizeof *pf);
    dc = calloc((size_t)reps, sizeof *dc);
    if (!ids || !logits || !pf || !dc) {
        lfmd_err_set(&err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_prompt; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)c->n_vocab);
    }
    double first_ms = 0;
    for (int rep = -1; rep < reps; rep++) {
        seq_reset(s);
        double a = app_now_ms();
        if (model_forward(r, s, ids, n_prompt, logits, &err)) goto fail;
        double b = app_now_ms();
        for (int k = 1; k < streams; k++) { // the other streams start from the same prompt state
            seq_reset(ss[k]);
            if (model_forward(r, ss[k], ids, n_prompt, logits + (size_t)k * c->n_vocab, &err)) goto fail;
        }
        if (streams > 1) b = app_now_ms();
        for (int g = 0; g < n_gen; g++) {
            int32_t id[64];
            const int32_t *tp[64];
            int one[64];
            for (int k = 0; k < streams; k++) {
                id[k] = sampler_argmax(logits + (size_t)k * c->n_vocab, c->n_vocab);
                tp[k] = &id[k];
                one[k] = 1;
            }
            if (streams == 1 ? model_forward(r, s, id, 1, logits, &err)
                             : model_forward_batch(r, ss, tp, one, streams, logits, &err))
                goto fail;
        }
        double e = app_now_ms();
        if (rep < 0) {
            first_ms = b - a;
            continue;
        }
        pf[rep] = n_prompt / ((b - a) / 1e3);
        dc[rep] = n_gen ? (double)n_gen * streams / ((e - b) / 1e3) : 0;
    }
    double pmed = median(pf, reps), dmed = median(dc, reps);
    size_t peak = app_peak_rss_bytes();
    double gbps = dmed * (double)model_weight_bytes(m) / 1e9;
    if (json) {
        printf("{\"model\":\"%s\",\"dtype\":\"%s\",\"kv_type\":\"%s\",\"threads\":%d,\"streams\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"reps\":%d,"
               "\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,\"load_ms\":%.2f,\"first_prefill_ms\":%.1f,"
               "\"peak_rss_bytes\":%zu,\"weight_bytes\":%zu,\"decode_weight_gb_s\":%.2f}\n",
               path, model_dtype_desc(m), kv_name, runner_threads(r), streams, n_prompt, n_gen, reps, pmed, dmed, load_ms,
               first_ms, peak, model_weight_bytes(m), gbps);
    } else {
        printf("model         %s (%s, %.1f MiB of weights)\n", path, model_dtype_desc(m),
               model_weight_bytes(m) / 1048576.0);
        printf("threads       %d\n", runner_threads(r));
        printf("kv cache      %s\n", kv_name);
        printf("load          %.2f ms (open; first %d-token prefill incl. page faults: %.1f ms)\n", load_ms,
               n_prompt, first_ms);
        printf("prefill       %.2f tok/s (pp%d, median of %d)\n", pmed, n_prompt, reps);
        if (streams > 1)
            printf("decode        %.2f tok/s aggregate over %d streams (tg%d each, median of %d)\n", dmed,
                   streams, n_gen, reps);
        else
            printf("decode        %.2f tok/s (tg%d, median of %d; %.2f GB/s of weights)\n", dmed, n_gen,
                   reps, gbps);
        printf("peak RSS      %.1f MiB\n", peak / 1048576.0);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "lfmd bench: %s\n", err.msg[0] ? err.msg : lfmd_strerror(err.code));
done:
    free(pf);
    free(dc);
    lfmd_free(ids);
    lfmd_free(logits);
    for (int k = 1; k < streams; k++) seq_free(ss[k]);
    seq_free(s);
    runner_free(r);
    model_close(m);
    return status;
}
