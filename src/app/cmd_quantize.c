// lfmd quantize IN OUT: option parsing, SIGINT/SIGTERM handling (a flag the converter checks
// between row chunks), a progress bar on a terminal, and the before/after size report.
// SPDX-License-Identifier: MIT
#include "app.h"
#include "commands.h"

#include "model/quantize.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void quantize_usage(FILE *f) {
    fprintf(f,
            "usage: lfmd quantize IN OUT [--bits 4|8] [--group-size 32|64|128] [--format mlx|gguf]\n"
            "                     [--type q4_0|q8_0|q4_1|q4_k|q5_k|q6_k|f16|bf16|f32]\n\n"
            "Converts a Hugging Face bf16/f16/f32 model directory IN into\n"
            "  --format mlx (default): an MLX-layout directory OUT (uint32-packed weights with bf16\n"
            "                 scales/biases per group, \"quantization\" block in config.json; loads in\n"
            "                 lfmd and mlx-lm). --bits (default 4) and --group-size (default 64).\n"
            "  --format gguf: a GGUF file OUT for llama.cpp (LFM2, Llama). --type picks the matrix type\n"
            "                 (default q4_0, or q8_0 with --bits 8); norms and the conv kernel stay f32.\n"
            "Writes OUT.tmp-XXXXXX and renames it when complete; an interrupted or failed run leaves\n"
            "no output. OUT must not exist.\n");
}

struct bar {
    bool tty;
    int last;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total, const char *tensor) {
    struct bar *b = ctx;
    if (!b->tty || !total) return;
    int pct = (int)(done * 1000 / total);
    if (pct == b->last && done != total) return;
    b->last = pct;
    int fill = (int)(done * 30 / total);
    char bar[31];
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %5.1f%%  %-48.48s", bar, pct / 10.0, tensor);
    fflush(stderr);
}

static void print_size(const char *label, uint64_t n) {
    fprintf(stderr, "%s %llu bytes (%.1f MiB)\n", label, (unsigned long long)n, (double)n / 1048576.0);
}

int cmd_quantize(int argc, char **argv) {
    struct quant_opts o;
    quant_opts_default(&o);
    const char *pos[2] = {NULL, NULL}, *type = NULL;
    int n_pos = 0;
    bool missing = false, bits_given = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            quantize_usage(stdout);
            return 0;
        }
        if ((v = app_opt(argc, argv, &i, "--bits", &missing))) {
            o.bits = atoi(v);
            bits_given = true;
        } else if ((v = app_opt(argc, argv, &i, "--group-size", &missing))) {
            o.group_size = atoi(v);
        } else if ((v = app_opt(argc, argv, &i, "--format", &missing))) {
            if (!strcmp(v, "mlx")) o.format = QUANT_FMT_MLX;
            else if (!strcmp(v, "gguf")) o.format = QUANT_FMT_GGUF;
            else {
                fprintf(stderr, "lfmd quantize: --format must be mlx or gguf\n");
                return 2;
            }
        } else if ((v = app_opt(argc, argv, &i, "--type", &missing))) {
            type = v;
        } else if (missing) {
            break;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "lfmd quantize: unknown option '%s'\n", argv[i]);
            quantize_usage(stderr);
            return 2;
        } else if (n_pos < 2) {
            pos[n_pos++] = argv[i];
        } else {
            fprintf(stderr, "lfmd quantize: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (missing || n_pos != 2) {
        if (missing) fprintf(stderr, "lfmd quantize: option needs a value\n");
        quantize_usage(stderr);
        return 2;
    }
    if (type && o.format != QUANT_FMT_GGUF) {
        // --type implies GGUF output
        o.format = QUANT_FMT_GGUF;
    }
    if (o.format == QUANT_FMT_GGUF) {
        if (type && !quant_parse_type(type, &o.gguf_type)) {
            fprintf(stderr, "lfmd quantize: unknown --type '%s'\n", type);
            return 2;
        }
        if (!type) o.gguf_type = bits_given && o.bits == 8 ? LFMD_DTYPE_Q8_0 : LFMD_DTYPE_Q4_0;
    } else if ((o.bits != 4 && o.bits != 8) || (o.group_size != 32 && o.group_size != 64 && o.group_size != 128)) {
        fprintf(stderr, "lfmd quantize: --bits must be 4 or 8 and --group-size 32, 64 or 128\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    // A file-size limit (RLIMIT_FSIZE) then surfaces as EFBIG from write instead of killing us.
    signal(SIGXFSZ, SIG_IGN);
    struct bar bar = {.tty = isatty(2) != 0, .last = -1};
    o.cancel = &stop_flag;
    o.progress = on_progress;
    o.progress_ctx = &bar;
    struct quant_stats st;
    struct lfmd_err_ctx err = {0};
    double t0 = app_now_ms();
    int rc = quantize_model(pos[0], pos[1], &o, &st, &err);
    if (bar.tty && bar.last >= 0) fprintf(stderr, "\n");
    if (rc) {
        fprintf(stderr, "lfmd quantize: %s\n", err.msg[0] ? err.msg : "failed");
        if (rc == LFMD_ECANCELED) fprintf(stderr, "lfmd quantize: interrupted; no output was written\n");
        return rc == LFMD_EINVAL ? 2 : 1;
    }
    if (o.format == QUANT_FMT_GGUF)
        fprintf(stderr, "wrote %s: GGUF, matrices %s, %zu tensors (%zu quantized); %s\n", pos[1],
                lfmd_dtype_name(o.gguf_type), st.n_tensors, st.n_quantized, st.tokenizer_note);
    else
        fprintf(stderr, "wrote %s: MLX %d-bit, group size %d, %zu tensors (%zu linear weights quantized)\n",
                pos[1], o.bits, o.group_size, st.n_tensors, st.n_quantized);
    print_size("before:", st.in_bytes);
    print_size("after: ", st.out_bytes);
    if (st.in_bytes)
        fprintf(stderr, "size: %.1f%% of the input (%.1f%% smaller) in %.1f s\n",
                100.0 * (double)st.out_bytes / (double)st.in_bytes,
                100.0 - 100.0 * (double)st.out_bytes / (double)st.in_bytes, (app_now_ms() - t0) / 1000.0);
    return 0;
}
