#!/usr/bin/env bash
# Reads a running server's /metrics and prints its true memory: RSS (resident, not virtual),
# budgeted bytes per category, and the limit. Exit 1 when RSS exceeds --max BYTES (if given).
# Usage: scripts/mem-check.sh [--url http://127.0.0.1:8080] [--max BYTES]
# SPDX-License-Identifier: MIT
set -euo pipefail
url=${LFMD_URL:-http://127.0.0.1:8080}
max=0
while [ $# -gt 0 ]; do
    case $1 in
        --url) url=$2; shift 2 ;;
        --max) max=$2; shift 2 ;;
        *) echo "usage: $0 [--url URL] [--max BYTES]" >&2; exit 2 ;;
    esac
done
m=$(curl -fsS --max-time 5 "$url/metrics") || { echo "mem-check: cannot read $url/metrics" >&2; exit 1; }
val() { awk -v k="$1" '$1 == k {print $2; exit}' <<<"$m"; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
rss=$(val lfmd_rss_bytes)
state=$(awk -F'"' '/^lfmd_model_state\{/ && $NF ~ / 1$/ {print $2}' <<<"$m")
echo "state:    $state"
echo "rss:      $(mib "$rss") ($rss bytes)"
echo "budgeted: $(mib "$(val lfmd_memory_total_bytes)") (peak $(mib "$(val lfmd_memory_peak_bytes)"), limit $(val lfmd_memory_limit_bytes))"
awk -F'[{}"]' '/^lfmd_memory_bytes\{/ {split($0, a, " "); printf "  %-18s %10.1f MiB\n", $3, a[2] / 1048576}' <<<"$m"
if [ "$max" != 0 ] && [ "${rss%.*}" -gt "$max" ]; then
    echo "mem-check: RSS $rss exceeds $max" >&2
    exit 1
fi
