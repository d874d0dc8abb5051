// `lfmd ps [--url URL]`: a running server's state and memory, read from its /metrics (which never
// wakes the model), printed like `ollama ps`. Plain HTTP/1.0 over a socket; no client library.
// SPDX-License-Identifier: MIT
#include "commands.h"
#include "base/buf.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int http_get(const char *host, const char *port, const char *path, struct buf *out) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai)) return -1;
    int fd = -1;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (!connect(fd, p->ai_addr, p->ai_addrlen)) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    char req[1024];
    const char *key = getenv("LFMD_API_KEY"); // servers started with --api-key guard /metrics
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n%s%.512s%s\r\n", path,
                     host, key && *key ? "x-api-key: " : "", key && *key ? key : "",
                     key && *key ? "\r\n" : "");
    if (n < 0 || n >= (int)sizeof req) {
        close(fd);
        return -1;
    }
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char tmp[8192];
    ssize_t r;
    while ((r = read(fd, tmp, sizeof tmp)) > 0)
        if (buf_append(out, tmp, (size_t)r)) break;
    close(fd);
    return out->len ? 0 : -1;
}

// Value of the first line starting with key (exact prefix up to a space).
static double metric(const char *body, const char *key, double def) {
    size_t k = strlen(key);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (!strncmp(p, key, k) && p[k] == ' ') return strtod(p + k + 1, NULL);
    }
    return def;
}

static void human(double b, char *out, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void label(const char *body, const char *key, const char *lab, char *out, size_t cap) {
    snprintf(out, cap, "-");
    const char *p = strstr(body, key);
    if (!p) return;
    const char *l = strstr(p, lab);
    const char *eol = strchr(p, '\n');
    if (!l || (eol && l > eol)) return;
    l += strlen(lab);
    const char *end = strchr(l, '"');
    if (end) snprintf(out, cap, "%.*s", (int)(end - l), l);
}

int cmd_ps(int argc, char **argv) {
    const char *url = getenv("LFMD_URL");
    if (!url) url = "http://127.0.0.1:8080";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: lfmd ps [--url URL]\n\nShows a running lfmd server's model state and "
                 "memory (from URL/metrics;\ndefault $LFMD_URL or http://127.0.0.1:8080).\n"
                 "A server started with --api-key needs LFMD_API_KEY set to the same key.\n"
                 "Exit status: 0 ok, 1 server unreachable or bad reply, 2 usage error.\n"
                 "See docs/OPERATIONS.md for the metrics behind each column.");
            return 0;
        }
        if (!strcmp(argv[i], "--url") && i + 1 < argc) url = argv[++i];
        else if (!strncmp(argv[i], "--url=", 6)) url = argv[i] + 6;
        else {
            fprintf(stderr, "lfmd ps: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    char host[256], port[16] = "80";
    const char *h = strncmp(url, "http://", 7) ? url : url + 7;
    size_t n = strcspn(h, ":/");
    snprintf(host, sizeof host, "%.*s", (int)n, h);
    if (h[n] == ':') snprintf(port, sizeof port, "%.*s", (int)strcspn(h + n + 1, "/"), h + n + 1);
    struct buf b;
    buf_init(&b, 4u << 20, LFMD_MEM_REQUEST);
    if (http_get(host, port, "/metrics", &b)) {
        fprintf(stderr, "lfmd ps: cannot reach %s (is `lfmd serve` running?)\n", url);
        buf_fini(&b);
        return 1;
    }
    const char *body = strstr(b.data, "\r\n\r\n");
    if (!body || strncmp(b.data, "HTTP/1.", 7) || strncmp(b.data + 9, "200", 3)) {
        fprintf(stderr, "lfmd ps: %s/metrics did not answer 200\n", url);
        buf_fini(&b);
        return 1;
    }
    body += 4;
    const char *states[] = {"unloaded", "loading", "ready", "trimmed", "unloading"};
    const char *state = "?";
    for (int i = 0; i < 5; i++) {
        char key[64];
        snprintf(key, sizeof key, "lfmd_model_state{state=\"%s\"}", states[i]);
        if (metric(body, key, 0) == 1) state = states[i];
    }
    char model[128], dtype[32], ctx[16], rss[32], total[32], limit[32], peak[32];
    label(body, "lfmd_model_info{", "model=\"", model, sizeof model);
    label(body, "lfmd_model_info{", "dtype=\"", dtype, sizeof dtype);
    label(body, "lfmd_model_info{", "ctx=\"", ctx, sizeof ctx);
    human(metric(body, "lfmd_rss_bytes", 0), rss, sizeof rss);
    human(metric(body, "lfmd_memory_total_bytes", 0), total, sizeof total);
    human(metric(body, "lfmd_memory_peak_bytes", 0), peak, sizeof peak);
    double lim = metric(body, "lfmd_memory_limit_bytes", 0);
    if (lim > 0) human(lim, limit, sizeof limit);
    else snprintf(limit, sizeof limit, "none");
    printf("%-24s %-10s %-8s %-6s %-11s %-11s %-11s %-6s %-6s %s\n", "MODEL", "STATE", "DTYPE",
           "CTX", "RSS", "BUDGETED", "LIMIT", "QUEUE", "ACTIVE", "UPTIME");
    printf("%-24s %-10s %-8s %-6s %-11s %-11s %-11s %-6.0f %-6.0f %.0fs\n",
           model[0] && strcmp(model, "-") ? model : "(not loaded yet)", state, dtype, ctx, rss,
           total, limit, metric(body, "lfmd_queue_depth", 0),
           metric(body, "lfmd_active_sequences", 0), metric(body, "lfmd_uptime_seconds", 0));
    printf("\nMEMORY (budgeted, peak %s)\n", peak);
    const char *cats[] = {"weights", "converted_weights", "kv_cache", "conv_state", "scratch",
                          "prefix_cache", "request", "tokenizer", "other"};
    for (int i = 0; i < 9; i++) {
        char key[80], v[32];
        snprintf(key, sizeof key, "lfmd_memory_bytes{category=\"%s\"}", cats[i]);
        human(metric(body, key, 0), v, sizeof v);
        printf("  %-18s %s\n", cats[i], v);
    }
    printf("\nREQUESTS ok %.0f, invalid %.0f, rejected %.0f, canceled %.0f, error %.0f; "
           "loads %.0f, unloads %.0f, trims %.0f\n",
           metric(body, "lfmd_requests_total{outcome=\"ok\"}", 0),
           metric(body, "lfmd_requests_total{outcome=\"invalid\"}", 0),
           metric(body, "lfmd_requests_total{outcome=\"rejected\"}", 0),
           metric(body, "lfmd_requests_total{outcome=\"canceled\"}", 0),
           metric(body, "lfmd_requests_total{outcome=\"error\"}", 0),
           metric(body, "lfmd_model_loads_total", 0), metric(body, "lfmd_model_unloads_total", 0),
           metric(body, "lfmd_trims_total", 0));
    buf_fini(&b);
    return 0;
}
