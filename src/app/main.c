// lfmd entry point: dispatches to a subcommand. The app layer is the only code that may exit().
// SPDX-License-Identifier: MIT
#include "commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "HTTP server (OpenAI, Ollama, /v1/route, /metrics)"},
    {"stdio", cmd_stdio, "NDJSON over stdin/stdout (bridge protocol)"},
    {"run", cmd_run, "one-shot generation"},
    {"route", cmd_route, "score routes for a text"},
    {"bench", cmd_bench, "prefill/decode speed, load time, peak RSS"},
    {"inspect", cmd_inspect, "architecture, tensors, dtypes, bytes"},
    {"quantize", cmd_quantize, "write a 4/8-bit model (MLX safetensors or GGUF)"},
    {"tokenize", cmd_tokenize, "text -> token ids"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"template", cmd_template, "render a chat template"},
    {"ps", cmd_ps, "state and memory of a running server"},
};

static void usage(FILE *f) {
    fprintf(f, "lfmd %s - memory-bounded inference server for small language models\n\n"
               "usage: lfmd COMMAND [options]   (lfmd COMMAND --help for details)\n\ncommands:\n",
            LFMD_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].fn ? "" : " (not built)");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("lfmd %s\n", LFMD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        if (!commands[i].fn) {
            fprintf(stderr, "lfmd: command '%s' is not available in this build\n", argv[1]);
            return 2;
        }
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "lfmd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
