#!/usr/bin/env bash
# Soak: mixed traffic for MINUTES against the real binary under a memory limit, RSS sampled every
# second into build/soak-rss.csv; prints one JSON line with the drift per hour (must be < 1 MiB/h).
#   scripts/soak.sh MINUTES [BUILD_DIR]      e.g. scripts/soak.sh 60   (an hour)
# env: MODEL (default the embedded router), LIMIT (default 64M), CLIENTS (default 8), THINK_MS
# (pause per client between requests, default 0: a light soak that can run beside other work),
# PROGRESS (seconds between progress lines on stderr, default 0 = none), CSV (default BUILD/soak-rss.csv).
# SPDX-License-Identifier: MIT
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
min=${1:-1}
B=${2:-$ROOT/build}
exec node "$ROOT/tests/load/load.mjs" --bin "$B/src/lfmd" --model "${MODEL:-$ROOT/models/lfm2-router}" \
  --scenario soak --seconds $((min * 60)) --clients "${CLIENTS:-8}" --memory-limit "${LIMIT:-64M}" \
  --think-ms "${THINK_MS:-0}" --progress "${PROGRESS:-0}" --csv "${CSV:-$B/soak-rss.csv}"
