#!/usr/bin/env bash
# The full-size load runs of issues 4 and 11 against the real binary (one JSON line each; exit 1
# when any fails). Defaults: the embedded router model, memory limit 64M.
#   scripts/load-test.sh [BUILD_DIR]      env: MODEL, LIMIT, BIG_CLIENTS, BIG_REQUESTS
# SPDX-License-Identifier: MIT
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$ROOT/build}
BIN=$B/src/lfmd
MODEL=${MODEL:-$ROOT/models/lfm2-router}
LIMIT=${LIMIT:-64M}
L="node $ROOT/tests/load/load.mjs --bin $BIN --model $MODEL"
fail=0
run() { echo "## $*" >&2; "$@" || fail=1; }
run $L --scenario burst --clients 64 --requests 1000 --memory-limit "$LIMIT"
run $L --scenario burst --clients 64 --requests 1000 --memory-limit "$LIMIT" --sigusr1 100
run $L --scenario drift --warmup 200 --requests 2000
run $L --scenario idle --idle-trim 2 --idle-unload 5
LFMD_MAX_CONNECTIONS=512 run $L --scenario burst --clients "${BIG_CLIENTS:-256}" \
  --requests "${BIG_REQUESTS:-10000}" --memory-limit "$LIMIT"
exit $fail
