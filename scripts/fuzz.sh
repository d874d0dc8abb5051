#!/usr/bin/env bash
# Fuzz one target (or all, one after another) with libFuzzer under ASan+UBSan.
#   scripts/fuzz.sh TARGET [MINUTES [RUNS]]   e.g. scripts/fuzz.sh fuzz_gguf 60 10000000
#   scripts/fuzz.sh all [MINUTES [RUNS]]      every tests/fuzz/fuzz_*.c target in turn
# With RUNS (or env RUNS) a run ends after RUNS executions or MINUTES, whichever comes first
# (issue 11's campaign: 60 minutes or 10 million executions).
# Builds build-fuzz/ with clang (-DLFMD_FUZZ=ON, -fsanitize=fuzzer-no-link on the libraries),
# runs from the checked-in corpus tests/fuzz/corpus/TARGET plus a scratch corpus in
# build-fuzz/corpus/TARGET (new inputs land there; copy minimized ones into the checked-in corpus
# with `-merge=1`), writes crashes to build-fuzz/crashes/TARGET/ and prints the executions.
# Environment: JOBS (build parallelism, default 2), FUZZ_FLAGS (extra libFuzzer flags), NICE
# (default 19). The machine is shared: run one target at a time.
# SPDX-License-Identifier: MIT
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
target=${1:?usage: scripts/fuzz.sh TARGET|all [MINUTES]}
minutes=${2:-5}
runs=${3:-${RUNS:-}}
B=${FUZZ_BUILD:-$ROOT/build-fuzz}
if [ ! -f "$B/CMakeCache.txt" ]; then
  CC=clang cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLFMD_FUZZ=ON \
    -DLFMD_SANITIZE=address,undefined -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
fi
if [ "$target" = all ]; then
  targets=$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
else
  targets=$target
fi
# shellcheck disable=SC2086
nice -n "${NICE:-19}" cmake --build "$B" -j"${JOBS:-2}" --target $targets >/dev/null
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LFMD_SRC=$ROOT
for t in $targets; do
  mkdir -p "$B/corpus/$t" "$B/crashes/$t"
  log="$B/fuzz-$t.log"
  echo "== $t: $minutes min${runs:+ or $runs runs} (log $log)"
  rc=0
  t0=$(date +%s)
  # shellcheck disable=SC2086
  nice -n "${NICE:-19}" "$B/tests/$t" -max_total_time=$((minutes * 60)) -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$B/crashes/$t/" ${runs:+-runs=$runs} \
    ${FUZZ_FLAGS:-} "$B/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  secs=$(($(date +%s) - t0))
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
  eps=$(grep -a 'stat::average_exec_per_sec' "$log" | awk '{print $2}' | tail -1)
  cov=$(grep -a '^#' "$log" | tail -1 | grep -ao 'cov: [0-9]*' || true)
  line="$t: rc=$rc executions=${execs:-?} seconds=$secs exec/s=${eps:-?} $cov"
  line="$line crashes=$(ls "$B/crashes/$t" | wc -l) started=$(date -u -d @"$t0" +%FT%TZ)"
  echo "$line"
  echo "$line" >>"$B/fuzz-results.txt"
  [ "$rc" = 0 ] || { grep -a -m5 -E 'ERROR|LEAK|SUMMARY|runtime error' "$log" || true; }
done
