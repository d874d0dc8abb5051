// Prometheus text exposition of the engine's counters, memory per budget category and RSS.
// Rendering reads a stats snapshot only: scraping never wakes or blocks on the model.
// SPDX-License-Identifier: MIT
#include "server.h"

#include <math.h>
#include <string.h>

static int hist(struct buf *b, const char *name, const char *help, const struct engine_hist *h) {
    int rc = buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < ENGINE_HIST_BUCKETS && !rc; i++) {
        cum += h->counts[i];
        if (isinf(engine_hist_bounds[i]))
            rc = buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
        else
            rc = buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, engine_hist_bounds[i],
                            (unsigned long long)cum);
    }
    if (!rc)
        rc = buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
                        (unsigned long long)h->n);
    return rc;
}

static int counter(struct buf *b, const char *name, const char *help, const char *type,
                   double v) {
    return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

int metrics_render(struct engine *e, struct buf *b) {
    struct engine_stats st;
    engine_get_stats(e, &st);
    int rc = buf_puts(b, "# HELP lfmd_model_state Model lifecycle state (1 = current).\n"
                         "# TYPE lfmd_model_state gauge\n");
    for (int s = ENGINE_UNLOADED; s <= ENGINE_UNLOADING && !rc; s++)
        rc = buf_printf(b, "lfmd_model_state{state=\"%s\"} %d\n",
                        engine_state_name((enum engine_state)s), st.state == (enum engine_state)s);
    if (!rc) rc = buf_puts(b, "# HELP lfmd_model_info Loaded model.\n# TYPE lfmd_model_info gauge\n");
    if (!rc) rc = buf_puts(b, "lfmd_model_info{model=");
    if (!rc) rc = buf_json_str(b, st.model_name, strlen(st.model_name));
    if (!rc) rc = buf_puts(b, ",dtype=");
    if (!rc) rc = buf_json_str(b, st.model_dtype, strlen(st.model_dtype));
    if (!rc) rc = buf_printf(b, ",ctx=\"%d\",max_tokens=\"%d\",parallel=\"%d\"} 1\n", st.n_ctx,
                             st.max_tokens, st.parallel);
    if (!rc) rc = buf_puts(b, "# HELP lfmd_requests_total Finished requests by outcome.\n"
                              "# TYPE lfmd_requests_total counter\n");
    for (int o = 0; o < ENGINE_OUT_COUNT && !rc; o++)
        rc = buf_printf(b, "lfmd_requests_total{outcome=\"%s\"} %llu\n",
                        engine_outcome_name((enum engine_outcome)o),
                        (unsigned long long)st.requests[o]);
    if (!rc) rc = counter(b, "lfmd_prompt_tokens_total", "Prompt tokens processed.", "counter",
                          (double)st.prompt_tokens);
    if (!rc) rc = counter(b, "lfmd_generated_tokens_total", "Tokens generated.", "counter",
                          (double)st.gen_tokens);
    if (!rc) rc = counter(b, "lfmd_model_loads_total", "Model loads.", "counter", (double)st.loads);
    if (!rc) rc = counter(b, "lfmd_model_unloads_total", "Model unloads.", "counter",
                          (double)st.unloads);
    if (!rc) rc = counter(b, "lfmd_trims_total", "Memory trims.", "counter", (double)st.trims);
    if (!rc) rc = counter(b, "lfmd_model_load_seconds", "Duration of the last load.", "gauge",
                          st.load_seconds_last);
    if (!rc) rc = counter(b, "lfmd_queue_depth", "Requests waiting for admission.", "gauge",
                          st.queue_depth);
    if (!rc) rc = counter(b, "lfmd_active_sequences", "Sequences being generated.", "gauge",
                          st.active);
    if (!rc) rc = buf_puts(b, "# HELP lfmd_memory_bytes Budgeted bytes by category.\n"
                              "# TYPE lfmd_memory_bytes gauge\n");
    for (int c = 0; c < LFMD_MEM_COUNT && !rc; c++)
        rc = buf_printf(b, "lfmd_memory_bytes{category=\"%s\"} %zu\n",
                        lfmd_mem_name((enum lfmd_mem)c), st.mem_used[c]);
    if (!rc) rc = counter(b, "lfmd_memory_total_bytes", "All budgeted bytes.", "gauge",
                          (double)st.mem_total);
    if (!rc) rc = counter(b, "lfmd_memory_peak_bytes", "Peak of budgeted bytes.", "gauge",
                          (double)st.mem_peak);
    if (!rc) rc = counter(b, "lfmd_memory_limit_bytes", "Budget limit (0 = unlimited).", "gauge",
                          (double)st.mem_limit);
    if (!rc) rc = counter(b, "lfmd_rss_bytes", "Resident set size (/proc/self/statm).", "gauge",
                          (double)engine_rss_bytes());
    if (!rc) rc = counter(b, "lfmd_uptime_seconds", "Seconds since start.", "gauge", st.uptime_s);
    if (!rc) rc = counter(b, "lfmd_generation_seconds_total", "Wall time spent generating.",
                          "counter", st.gen_seconds);
    if (!rc) rc = counter(b, "lfmd_prefix_cache_hits_total", "Prompts that reused a cached prefix.",
                          "counter", (double)st.prefix_hits);
    if (!rc) rc = counter(b, "lfmd_prefix_cache_misses_total", "Prompts with no cached prefix.",
                          "counter", (double)st.prefix_misses);
    if (!rc) rc = counter(b, "lfmd_prefix_cache_bytes", "Bytes held by the prefix cache.",
                          "gauge", (double)st.prefix_bytes);
    if (!rc) rc = counter(b, "lfmd_prefix_cache_entries", "Prefixes held by the prefix cache.",
                          "gauge", (double)st.prefix_entries);
    if (!rc) rc = counter(b, "lfmd_batch_steps_total", "Batched forward passes.", "counter",
                          (double)st.steps);
    if (!rc) rc = counter(b, "lfmd_batch_step_tokens_total", "Tokens carried by batched passes.",
                          "counter", (double)st.step_tokens);
    if (!rc) rc = hist(b, "lfmd_ttft_seconds", "Time from request to first token.", &st.ttft);
    if (!rc) rc = hist(b, "lfmd_token_latency_seconds", "Time between generated tokens.",
                       &st.token_latency);
    return rc;
}
