// Embedding lfmd in a C program through the public API only (include/lfmd.h, liblfmd):
// open a model under a memory budget, stream a generation, route a request, close.
//   cc embed.c $(pkg-config --cflags --libs lfmd) -o embed && ./embed MODEL "prompt"
// MODEL "@test" is lfmd's built-in deterministic test model.
// SPDX-License-Identifier: MIT
#include <lfmd.h>

#include <stdio.h>
#include <string.h>

static int on_text(void *user, const char *text, size_t len) {
    int *pieces = user;
    (*pieces)++;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0; // non-zero would stop the generation
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "@test";
    const char *prompt = argc > 2 ? argv[2] : "Hello";
    char err[256];

    struct lfmd_options o;
    lfmd_options_default(&o);
    o.model = model;
    o.memory_limit = (size_t)2 << 30; // 2 GiB budget
    o.ctx = 512;
    struct lfmd *m;
    if (lfmd_open(&o, &m, err, sizeof err)) {
        fprintf(stderr, "embed: %s\n", err);
        return 1;
    }
    printf("liblfmd %s, model %s\n", lfmd_version(), model);

    struct lfmd_gen_params p;
    lfmd_gen_params_default(&p);
    p.max_tokens = 24;
    p.chat = 1;
    int pieces = 0;
    char *text = NULL;
    struct lfmd_result res;
    int rc = lfmd_generate(m, prompt, &p, on_text, &pieces, &text, &res, err, sizeof err);
    printf("\n");
    if (rc) {
        fprintf(stderr, "embed: generate: %s\n", err);
        lfmd_close(m);
        return 1;
    }
    printf("%d prompt tokens, %d generated in %d pieces, finish %s, %zu bytes budgeted\n",
           res.prompt_tokens, res.generated_tokens, pieces, res.finish_length ? "length" : "stop",
           lfmd_memory_used());
    int ok = strlen(text) > 0 && res.generated_tokens > 0 && pieces > 0;
    lfmd_text_free(text);

    const char *names[] = {"weather", "code", "chat"};
    const char *descs[] = {"questions about the weather", "programming help", "small talk"};
    int best = -1;
    double probs[3];
    if (lfmd_route(m, "Will it rain in Paris tomorrow?", names, descs, 3, &best, probs, err,
                   sizeof err)) {
        fprintf(stderr, "embed: route: %s\n", err);
        ok = 0;
    } else {
        double sum = probs[0] + probs[1] + probs[2];
        printf("route: %s (p = %.3f %.3f %.3f)\n", names[best], probs[0], probs[1], probs[2]);
        ok = ok && best >= 0 && best < 3 && sum > 0.999 && sum < 1.001;
    }
    lfmd_unload(m);
    lfmd_close(m);
    printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
