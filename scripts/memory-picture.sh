#!/usr/bin/env bash
# Draws the memory lifecycle: starts lfmd serve, runs a scripted scenario (start, first request,
# burst of concurrent requests, idle trim, idle unload, reload) while sampling RSS (/proc) and the
# budget categories (/metrics) every 100 ms, then plots them with the events marked (gnuplot) into
# docs/memory-timeline.svg (and the raw samples into docs/memory-timeline.csv).
# Usage: scripts/memory-picture.sh [MODEL] (default: the built-in @test model with 64 MiB weights)
# Needs: curl, gnuplot (apt install gnuplot-nox). SPDX-License-Identifier: MIT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LFMD_BIN:-$root/build/src/lfmd}
model=${1:-@test}
out=${OUT:-$root/docs/memory-timeline}
port=${PORT:-18999}
trim=${TRIM:-3}
unload=${UNLOAD:-7}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export LFMD_TEST_WEIGHTS_MB=${LFMD_TEST_WEIGHTS_MB:-64} LFMD_TEST_TOKEN_MS=${LFMD_TEST_TOKEN_MS:-2}

"$bin" serve -m "$model" --port "$port" --idle-trim "$trim" --idle-unload "$unload" \
    --parallel 4 --ctx 512 2>"$work/log" &
pid=$!
url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -fs "$url/health" >/dev/null 2>&1 && break; sleep 0.05; done
t0=$(date +%s.%N)
now() { awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.2f", a - b}'; }
event() { echo "$(now) $1" >>"$work/events"; }

sample() {
    echo "t rss_mib weights_mib kv_mib scratch_mib tokenizer_mib request_mib budget_mib" >"$work/samples"
    while kill -0 "$pid" 2>/dev/null; do
        local t rss m
        t=$(now)
        rss=$(awk '/VmRSS/ {print $2 / 1024}' /proc/$pid/status 2>/dev/null || echo 0)
        m=$(curl -fs --max-time 1 "$url/metrics" 2>/dev/null || true)
        awk -v t="$t" -v rss="$rss" '
            /^lfmd_memory_bytes\{category="weights"\}/ {w += $2}
            /^lfmd_memory_bytes\{category="converted_weights"\}/ {w += $2}
            /^lfmd_memory_bytes\{category="kv_cache"\}/ {kv += $2}
            /^lfmd_memory_bytes\{category="conv_state"\}/ {kv += $2}
            /^lfmd_memory_bytes\{category="scratch"\}/ {s = $2}
            /^lfmd_memory_bytes\{category="tokenizer"\}/ {tk = $2}
            /^lfmd_memory_bytes\{category="request"\}/ {rq = $2}
            /^lfmd_memory_total_bytes/ {tot = $2}
            END {M = 1048576; printf "%s %.2f %.2f %.3f %.3f %.2f %.3f %.2f\n", t, rss, w/M, kv/M, s/M, tk/M, rq/M, tot/M}
        ' <<<"$m" >>"$work/samples"
        sleep 0.1
    done
}
: >"$work/events"
sample &
spid=$!
event "start"
sleep 1
event "first request"
curl -fs "$url/v1/completions" -d '{"prompt":"hello","max_tokens":64}' >/dev/null
sleep 1
event "burst of 16"
burst=()
for i in $(seq 16); do
    curl -fs "$url/v1/completions" -d "{\"prompt\":\"burst $i\",\"max_tokens\":100}" >/dev/null &
    burst+=($!)
done
wait "${burst[@]}" || true
event "idle"
sleep "$trim"; sleep 0.3
event "idle trim"
sleep $((unload - trim)); sleep 0.3
event "idle unload"
sleep 1.5
event "reload"
curl -fs "$url/v1/completions" -d '{"prompt":"back again","max_tokens":64}' >/dev/null
sleep 1.5
kill -TERM $pid
wait $pid || true
wait $spid 2>/dev/null || true
cp "$work/samples" "$out.csv"

{
    echo "set terminal svg size 1000,500 dynamic background rgb 'white' font 'sans,11'"
    echo "set termoption noenhanced"
    echo "set output '$out.svg'"
    echo "set title 'lfmd memory over a scripted lifecycle (model: $model)'"
    echo "set xlabel 'seconds'; set ylabel 'MiB'; set grid; set key outside right top"
    echo "set yrange [0:*]"
    while read -r t name rest; do
        label="$name${rest:+ $rest}"
        echo "set arrow from first $t, graph 0 to first $t, graph 1 nohead lc rgb '#aaaaaa'"
        echo "set label '$label' at first $t, graph 0.97 rotate by 90 right front font 'sans,9' offset -0.6,0"
    done <"$work/events"
    echo "plot '$out.csv' using 1:2 with lines lw 2 title 'RSS', \\"
    echo "  '' using 1:8 with lines lw 2 title 'budgeted total', \\"
    echo "  '' using 1:3 with lines title 'weights', \\"
    echo "  '' using 1:4 with lines title 'KV + conv state', \\"
    echo "  '' using 1:5 with lines title 'scratch', \\"
    echo "  '' using 1:6 with lines title 'tokenizer'"
} >"$work/plot.gp"
gnuplot "$work/plot.gp"
echo "wrote $out.svg and $out.csv" >&2
