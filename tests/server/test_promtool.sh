#!/usr/bin/env bash
# /metrics passes `promtool check metrics` (Debian package prometheus) after OpenAI and Ollama
# traffic. Skips (exit 0 with a message) when promtool is not installed.
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${LFMD_BIN:-$src/build/src/lfmd}
if ! command -v promtool >/dev/null; then
    echo "SKIP: promtool not installed (apt install prometheus)"
    exit 0
fi
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin" serve -m @test --port "$port" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
url=http://127.0.0.1:$port
curl -sf "$url/v1/completions" -d '{"prompt":"hi","max_tokens":4}' >/dev/null
curl -sf "$url/api/generate" -d '{"model":"m","prompt":"hi","options":{"num_predict":4}}' >/dev/null
curl -s "$url/v1/completions" -d '{"prompt":' >/dev/null || true
metrics=$(curl -sf "$url/metrics")
echo "$metrics" | grep -q '^lfmd_requests_total{outcome="ok"} 2$' || {
    echo "FAIL: expected 2 ok requests in /metrics" >&2; exit 1; }
if ! out=$(echo "$metrics" | promtool check metrics 2>&1); then
    echo "FAIL: promtool check metrics:" >&2
    echo "$out" >&2
    exit 1
fi
[ -z "$out" ] || { echo "promtool warnings:"; echo "$out"; }
echo "promtool check metrics: ok ($(echo "$metrics" | grep -vc '^#') samples)"
