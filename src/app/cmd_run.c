// lfmd run: one-shot generation from token ids or text, printing ids or streaming text.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"

#include "base/alloc.h"
#include "base/io.h"
#include "base/buf.h"
#include "model/gguf_tokenizer.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: lfmd run [-m MODEL] (--prompt-ids IDS | -p TEXT) [options]\n\n"
            "Generates a continuation and prints it (text by default, ids with --output ids).\n\n"
            "  -m, --model PATH      model directory (HF/MLX safetensors) or .gguf file;\n"
            "                        default: $LFMD_MODEL, else the embedded default model\n"
            "  --prompt-ids LIST     prompt as comma-separated token ids (no tokenizer needed)\n"
            "  -p, --prompt TEXT     prompt text (tokenized with the model's tokenizer)\n"
            "  --chat                render TEXT as one user turn with the chat template\n"
            "  --max-tokens N        tokens to generate (default 128; 0 = only run the prompt)\n"
            "  --temp T              temperature (default 0 = greedy)\n"
            "  --top-k K, --top-p P, --min-p P, --repeat-penalty R, --seed S   sampling\n"
            "  --ignore-eos          do not stop at end-of-sequence tokens\n"
            "  --output ids|text     what to print (default text, ids when --prompt-ids is used)\n"
            "  --logits FILE         write the last prompt position's logits (raw little-endian f32)\n"
            "  -t, --threads N       compute threads (default: all cores)\n"
            "  --ctx N               context size (default: prompt + max tokens)\n"
            "  --chunk N             tokens per forward call when feeding the prompt (default: all)\n"
            "  --no-mmap             read the weights into huge-page memory instead of mapping\n"
            "  --batch-tokens N      tokens per internal compute chunk (default 512, as the server)\n"
            "  --stats               print timings and resident memory to stderr\n\n"
            "Environment: LFMD_MODEL (default model), LFMD_THREADS, LFMD_CACHE_DIR (where the embedded\n"
            "model is extracted), LFMD_KERNELS=ref (scalar kernels, for debugging).\n"
            "Exit status: 0 success, 1 runtime error (bad model file, out of memory), 2 usage error.\n\n"
            "Examples:\n"
            "  lfmd run -p \"Hello!\" --chat\n"
            "  lfmd run -m ./LFM2-350M -p \"The capital of France is\" --max-tokens 16 --temp 0.3\n"
            "  lfmd run -m DIR --prompt-ids 1,523,88 --max-tokens 0 --logits out.f32\n");
}

int cmd_run(int argc, char **argv) {
    const char *model_arg = NULL, *ids_arg = NULL, *text = NULL, *output = NULL, *logits_path = NULL;
    bool chat = false, ignore_eos = false, missing = false, stats = false;
    int max_tokens = 128, threads = app_threads_default(), ctx = 0, chunk = 0, batch_tokens = LFMD_MAX_BATCH_TOKENS;
    struct sampler_params sp;
    sampler_params_default(&sp);
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            run_usage(stdout);
            return 0;
        }
        if ((v = app_opt(argc, argv, &i, "-m", &missing)) || (v = app_opt(argc, argv, &i, "--model", &missing))) model_arg = v;
        else if ((v = app_opt(argc, argv, &i, "--prompt-ids", &missing))) ids_arg = v;
        else if ((v = app_opt(argc, argv, &i, "-p", &missing)) || (v = app_opt(argc, argv, &i, "--prompt", &missing))) text = v;
        else if ((v = app_opt(argc, argv, &i, "--max-tokens", &missing)) || (v = app_opt(argc, argv, &i, "-n", &missing))) max_tokens = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--temp", &missing))) sp.temperature = strtof(v, NULL);
        else if ((v = app_opt(argc, argv, &i, "--top-k", &missing))) sp.top_k = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--top-p", &missing))) sp.top_p = strtof(v, NULL);
        else if ((v = app_opt(argc, argv, &i, "--min-p", &missing))) sp.min_p = strtof(v, NULL);
        else if ((v = app_opt(argc, argv, &i, "--repeat-penalty", &missing))) sp.repeat_penalty = strtof(v, NULL);
        else if ((v = app_opt(argc, argv, &i, "--seed", &missing))) sp.seed = strtoull(v, NULL, 10);
        else if ((v = app_opt(argc, argv, &i, "--output", &missing))) output = v;
        else if ((v = app_opt(argc, argv, &i, "--logits", &missing))) logits_path = v;
        else if ((v = app_opt(argc, argv, &i, "-t", &missing)) || (v = app_opt(argc, argv, &i, "--threads", &missing))) threads = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--ctx", &missing))) ctx = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--chunk", &missing))) chunk = atoi(v);
        else if ((v = app_opt(argc, argv, &i, "--batch-tokens", &missing))) batch_tokens = atoi(v);
        else if (!strcmp(argv[i], "--chat")) chat = true;
        else if (!strcmp(argv[i], "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(argv[i], "--stats")) stats = true;
        else if (!strcmp(argv[i], "--no-mmap")) lfmd_io_set_copy_maps(true);
        else if (!missing) {
            fprintf(stderr, "lfmd run: unknown option '%s'\n", argv[i]);
            return 2;
        }
        if (missing) return 2;
    }
    if (!ids_arg == !text || max_tokens < 0) {
        run_usage(stderr);
        return 2;
    }
    if (!output) output = ids_arg ? "ids" : "text";
    bool out_ids = !strcmp(output, "ids");
    if (!out_ids && strcmp(output, "text") != 0) {
        fprintf(stderr, "lfmd run: --output must be ids or text\n");
        return 2;
    }
    const char *path = app_model_path(model_arg);
    if (!path) return 1;

    int status = 1;
    struct lfmd_err_ctx err = {0};
    struct model *m = NULL;
    struct tokenizer *tok = NULL;
    struct runner *r = NULL;
    struct seq *s = NULL;
    struct sampler smp = {0};
    int32_t *prompt = NULL, *hist = NULL;
    float *logits = NULL;
    char *rendered = NULL;
    struct buf out;
    buf_init(&out, 1 << 20, LFMD_MEM_REQUEST);
    int n_prompt;

    double t_start = app_now_ms();
    if (model_open(path, NULL, &m, &err)) goto fail;
    double t_open = app_now_ms();
    size_t rss_open = app_rss_bytes();
    const struct model_config *c = model_get_config(m);
    if (text || !out_ids) {
        if (model_tokenizer_load(path, &tok, &err)) goto fail;
    }
    if (ids_arg) {
        n_prompt = app_parse_ids(ids_arg, &prompt);
        if (n_prompt <= 0) {
            fprintf(stderr, "lfmd run: --prompt-ids must be a non-empty list of token ids\n");
            status = 2;
            goto done;
        }
    } else {
        const char *src = text;
        bool add_special = true;
        if (chat) {
            struct json_doc *msgs = NULL;
            struct buf js;
            buf_init(&js, (size_t)1 << 26, LFMD_MEM_REQUEST);
            int rc = buf_puts(&js, "[{\"role\":\"user\",\"content\":");
            if (!rc) rc = buf_json_str(&js, text, strlen(text));
            if (!rc) rc = buf_puts(&js, "}]");
            if (!rc) rc = json_parse(js.data, js.len, LFMD_MEM_REQUEST, &msgs, &err);
            buf_fini(&js);
            if (!rc) rc = tokenizer_apply_template(tok, json_root(msgs), true, NULL, NULL, &rendered, &err);
            json_doc_free(msgs);
            if (rc) goto fail;
            src = rendered;
            add_special = false; // the template carries BOS itself
        }
        size_t n;
        if (tokenizer_encode(tok, src, strlen(src), add_special, true, &prompt, &n, &err)) goto fail;
        n_prompt = (int)n;
        if (n_prompt == 0) {
            fprintf(stderr, "lfmd run: the prompt encodes to no tokens\n");
            status = 2;
            goto done;
        }
    }
    if (ctx <= 0) ctx = n_prompt + max_tokens;
    if (n_prompt + max_tokens > ctx) {
        fprintf(stderr, "lfmd run: prompt (%d tokens) + max tokens (%d) exceeds the context (%d)\n", n_prompt,
                max_tokens, ctx);
        status = 2;
        goto done;
    }
    if (runner_new(m, threads, batch_tokens, &r, &err) || seq_new(m, ctx, &s, &err)) goto fail;
    logits = lfmd_malloc((size_t)c->n_vocab * sizeof(float), LFMD_MEM_SCRATCH);
    hist = lfmd_malloc(((size_t)n_prompt + (size_t)max_tokens) * sizeof *hist, LFMD_MEM_REQUEST);
    if (!logits || !hist) {
        lfmd_err_set(&err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    // Feed the prompt, in pieces of --chunk tokens if asked (results must not depend on it).
    int step = chunk > 0 ? chunk : n_prompt;
    for (int p = 0; p < n_prompt; p += step) {
        int n = n_prompt - p < step ? n_prompt - p : step;
        if (model_forward(r, s, prompt + p, n, p + n == n_prompt ? logits : NULL, &err)) goto fail;
    }
    double t_prefill = app_now_ms();
    size_t rss_first = app_rss_bytes();
    if (logits_path) {
        FILE *f = fopen(logits_path, "wb");
        if (!f || fwrite(logits, sizeof(float), (size_t)c->n_vocab, f) != (size_t)c->n_vocab) {
            if (f) fclose(f);
            lfmd_err_set(&err, LFMD_EIO, "%s: cannot write logits", logits_path);
            goto fail;
        }
        if (fclose(f)) {
            lfmd_err_set(&err, LFMD_EIO, "%s: cannot write logits", logits_path);
            goto fail;
        }
    }
    if (sampler_init(&smp, &sp, c->n_vocab)) {
        lfmd_err_set(&err, LFMD_ENOMEM, "out of memory");
        goto fail;
    }
    struct tok_stream ts;
    if (tok) tok_stream_init(&ts, tok, true);
    int n_hist = n_prompt;
    for (int g = 0; g < max_tokens; g++) {
        int32_t id = sampler_sample(&smp, logits, hist, n_hist);
        hist[n_hist++] = id;
        bool eos = tok ? tokenizer_is_eos(tok, id) : id == c->eos_id;
        if (out_ids) {
            printf(g ? " %d" : "%d", id);
        } else if (!(eos && !ignore_eos)) {
            buf_reset(&out);
            if (tok_stream_push(&ts, id, &out)) goto fail;
            fwrite(out.data ? out.data : "", 1, out.len, stdout);
            fflush(stdout);
        }
        if (eos && !ignore_eos) break;
        if (g + 1 < max_tokens && model_forward(r, s, &id, 1, logits, &err)) goto fail;
    }
    if (tok && !out_ids) {
        buf_reset(&out);
        if (!tok_stream_flush(&ts, &out)) fwrite(out.data ? out.data : "", 1, out.len, stdout);
        tok_stream_fini(&ts);
    }
    if (max_tokens > 0) printf("\n");
    if (stats) {
        double t_end = app_now_ms();
        fprintf(stderr,
                "open %.1f ms (RSS %.1f MiB) | prompt %d tokens in %.1f ms (%.1f tok/s; RSS %.1f MiB) | "
                "%d generated in %.1f ms (%.2f tok/s) | peak RSS %.1f MiB | weights %.1f MiB\n",
                t_open - t_start, rss_open / 1048576.0, n_prompt, t_prefill - t_open,
                n_prompt / ((t_prefill - t_open) / 1e3), rss_first / 1048576.0, n_hist - n_prompt,
                t_end - t_prefill, (n_hist - n_prompt) / ((t_end - t_prefill) / 1e3),
                app_peak_rss_bytes() / 1048576.0, model_weight_bytes(m) / 1048576.0);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "lfmd run: %s\n", err.msg[0] ? err.msg : lfmd_strerror(err.code));
    status = 1;
done:
    buf_fini(&out);
    sampler_fini(&smp);
    lfmd_free(rendered);
    lfmd_free(prompt);
    lfmd_free(hist);
    lfmd_free(logits);
    seq_free(s);
    runner_free(r);
    tokenizer_free(tok);
    model_close(m);
    return status;
}
