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
# libFuzzer's -timeout is wall-clock time per input, so a fuzzer that is paused (SIGSTOP, e.g.
# while someone benchmarks on the shared machine) reports a timeout when it resumes. A timeout
# whose input then runs in under 2 s on its own is such a false alarm: the input moves to
# build-fuzz/paused/TARGET/, the run resumes from the corpus with the time and runs left, and the
# summary counts it as paused=N. A real timeout (the input is slow on its own) stops the run.
for t in $targets; do
  mkdir -p "$B/corpus/$t" "$B/crashes/$t"
  log="$B/fuzz-$t.log"
  echo "== $t: $minutes min${runs:+ or $runs runs} (log $log)"
  : >"$log"
  rc=0 total=0 paused=0 seg=0
  t0=$(date +%s)
  while :; do
    left=$((minutes * 60 - ($(date +%s) - t0)))
    [ "$left" -gt 5 ] || break
    runs_left=
    if [ -n "$runs" ]; then
      runs_left=$((runs - total))
      [ "$runs_left" -gt 0 ] || break
    fi
    seg=$((seg + 1))
    slog="$B/fuzz-$t.seg.log"
    rc=0
    # shellcheck disable=SC2086
    nice -n "${NICE:-19}" "$B/tests/$t" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$B/crashes/$t/" \
      ${runs_left:+-runs=$runs_left} ${FUZZ_FLAGS:-} "$B/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" \
      >"$slog" 2>&1 || rc=$?
    cat "$slog" >>"$log"
    n=$(grep -a 'stat::number_of_executed_units' "$slog" | awk '{print $2}' | tail -1)
    total=$((total + ${n:-0}))
    [ "$rc" != 0 ] || break
    grep -aq 'ERROR: libFuzzer: timeout' "$slog" || break
    art=$(ls -t "$B/crashes/$t"/timeout-* 2>/dev/null | head -1)
    [ -n "$art" ] || break
    a0=$(date +%s%N)
    timeout 60 "$B/tests/$t" "$art" >/dev/null 2>&1 || break
    [ $((($(date +%s%N) - a0) / 1000000)) -lt 2000 ] || break
    mkdir -p "$B/paused/$t"
    mv "$art" "$B/paused/$t/"
    paused=$((paused + 1))
    echo "   (false timeout after a pause: resuming, segment $((seg + 1)))"
    rc=0
  done
  secs=$(($(date +%s) - t0))
  eps=$((total / (secs > 0 ? secs : 1)))
  cov=$(grep -a '^#[0-9]' "$log" | tail -1 | grep -ao 'cov: [0-9]*' || true)
  line="$t: rc=$rc executions=$total seconds=$secs exec/s=$eps $cov paused=$paused"
  found=$(find "$B/crashes/$t" -newermt "@$t0" -name 'crash-*' -o -newermt "@$t0" -name 'leak-*' \
    -o -newermt "@$t0" -name 'timeout-*' -o -newermt "@$t0" -name 'oom-*' | wc -l)
  line="$line crashes=$found started=$(date -u -d @"$t0" +%FT%TZ)"
  echo "$line"
  echo "$line" >>"$B/fuzz-results.txt"
  [ "$rc" = 0 ] || { grep -a -m5 -E 'ERROR|LEAK|SUMMARY|runtime error' "$log" || true; }
done
