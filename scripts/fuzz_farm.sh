#!/usr/bin/env bash
# Fuzz campaigns on a borrowed many-core machine that has no clang (the GPU machine: 16 cores).
# The libFuzzer binaries are built here (from HEAD in build-fuzzfarm-src/, a git worktree, into
# build-fuzzfarm/; ASan+UBSan as scripts/fuzz.sh builds them), packed with
# the shared libraries they need, and run there as parallel libFuzzer workers (-jobs/-workers,
# one shared corpus directory per target, reloaded by every worker), started and stopped around
# whatever else the call does.
#
#   scripts/fuzz_farm.sh pack [--corpus DIR] [TARGET...]
#                                                  (here) build + pack into .fuzzfarm/ (ignored;
#                                                  name it in the device call's `carry`); DIR/TARGET
#                                                  (an earlier segment's corpus) travels too
#   scripts/fuzz_farm.sh start SECONDS PLAN        (there) start workers in the background and
#                                                  return; PLAN is "target:workers[:runs] ..."
#                                                  e.g. "fuzz_gguf:3 fuzz_stdio:4:500000"
#   scripts/fuzz_farm.sh stop                      (there) interrupt the workers that are still
#                                                  running, wait for their final stats, print one
#                                                  summary line per target and write
#                                                  $OUT/fuzzfarm.tgz (new corpus inputs, crashes,
#                                                  logs, summary)
#   scripts/fuzz_farm.sh run SECONDS PLAN          (there) start, sleep SECONDS, stop
#
# Executions per target are the sum over its workers of libFuzzer's final
# stat::number_of_executed_units. Each worker stops at SECONDS (-max_total_time), at its share of
# RUNS executions (env RUNS, default 10,000,000 per target) or at its first crash, whichever comes
# first (a plan item's runs replace RUNS for that target). Same options as scripts/fuzz.sh: -timeout=10 -rss_limit_mb=2048 -max_len=65536, leak
# detection on, UBSan halts on error.
# SPDX-License-Identifier: MIT
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
F=$ROOT/.fuzzfarm
W=${FUZZFARM_WORK:-/tmp/fuzzfarm}
cmd=${1:?usage: scripts/fuzz_farm.sh pack|start|stop|run ...}
shift

pack() {
    local from=
    if [ "${1:-}" = --corpus ]; then from=$2; shift 2; fi
    local targets=${*:-$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')}
    # Built from HEAD in a worktree of its own, not from the working tree (others' edits in
    # flight must not reach a campaign); checkout there touches only changed files.
    local S=${FUZZ_FARM_SRC:-$ROOT/../lfmd-fuzzfarm-src}
    local B=${FUZZ_BUILD:-$ROOT/build-fuzzfarm}
    if [ ! -d "$S/.git" ] && [ ! -f "$S/.git" ]; then
        git -C "$ROOT" worktree add --detach "$S" HEAD >/dev/null 2>&1 || exit 1
    else
        git -C "$S" checkout -q --detach "$(git -C "$ROOT" rev-parse HEAD)" || exit 1
    fi
    if [ ! -f "$B/CMakeCache.txt" ]; then
        CC=clang cmake -S "$S" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLFMD_FUZZ=ON \
            -DLFMD_SANITIZE=address,undefined -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" \
            >/dev/null || exit 1
    fi
    # shellcheck disable=SC2086
    cmake --build "$B" -j"${JOBS:-2}" --target $targets >/dev/null || exit 1
    grep -qx '/.fuzzfarm/' "$ROOT/.git/info/exclude" 2>/dev/null ||
        echo '/.fuzzfarm/' >>"$ROOT/.git/info/exclude"
    rm -rf "$F" && mkdir -p "$F/bin" "$F/lib"
    for t in $targets; do cp "$B/tests/$t" "$F/bin/" && strip --strip-debug "$F/bin/$t"; done
    # The libraries the GPU machine's image lacks travel too (FUZZFARM_LIBS, a regex; its image
    # has libstdc++ and gnutls). `start` names any that are still missing there.
    for t in $targets; do ldd "$B/tests/$t"; done | awk '/=> \// {print $3}' | sort -u |
        grep -E "/lib(${FUZZFARM_LIBS:-pcre2|utf8proc|microhttpd})[^/]*\.so" |
        while read -r l; do cp -L "$l" "$F/lib/"; done
    # Symbols only (no DWARF): reports name functions; reproduce a crash here for lines.
    [ -n "${FUZZFARM_STRIP_ALL:-}" ] && strip --strip-all "$F"/bin/*
    tar -cJf "$F/pack.tar.xz" -C "$F" bin lib && rm -rf "$F/bin" "$F/lib"
    if [ -n "$from" ]; then # one archive: the transfer limit counts each small file as a block
        local have=
        for t in $targets; do [ -d "$from/$t" ] && have="$have $t"; done
        # shellcheck disable=SC2086
        [ -n "$have" ] && tar -cJf "$F/corpus.tar.xz" -C "$from" $have
    fi
    git -C "$ROOT" rev-parse --short HEAD >"$F/commit"
    echo "packed $(echo "$targets" | wc -w) targets built from $(cat "$F/commit"): $(du -h "$F/pack.tar.xz" | cut -f1)"
}

start() {
    local secs=${1:?SECONDS} plan=${2:?PLAN}
    rm -rf "$W" && mkdir -p "$W"
    tar -xJf "$F/pack.tar.xz" -C "$W" || exit 1
    export LD_LIBRARY_PATH=$W/lib:${LD_LIBRARY_PATH:-}
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
    export LFMD_SRC=$ROOT
    echo "$plan" >"$W/plan"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$W/started"
    for item in $plan; do
        local t n runs
        IFS=: read -r t n runs <<<"$item"
        [ -x "$W/bin/$t" ] || { echo "fuzz_farm: no binary for $t" >&2; continue; }
        if ldd "$W/bin/$t" | grep -q 'not found'; then
            echo "fuzz_farm: $t misses libraries:" >&2
            ldd "$W/bin/$t" | grep 'not found' >&2
            continue
        fi
        mkdir -p "$W/corpus/$t" "$W/crashes/$t" "$W/logs/$t"
        # A corpus carried from an earlier segment (pack --corpus DIR) continues the campaign.
        [ -f "$F/corpus.tar.xz" ] && tar -xJf "$F/corpus.tar.xz" -C "$W/corpus" "$t" 2>/dev/null
        runs=$(((${runs:-${RUNS:-10000000}} + n - 1) / n))
        # -jobs=N -workers=N: N independent processes on the same corpus dir (new inputs are
        # written there and reloaded by the others); each writes fuzz-K.log in its cwd.
        (cd "$W/logs/$t" && nice -n "${NICE:-19}" "$W/bin/$t" -jobs="$n" -workers="$n" \
            -max_total_time="$secs" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
            -max_len=65536 -print_final_stats=1 -artifact_prefix="$W/crashes/$t/" \
            "$W/corpus/$t" "$ROOT/tests/fuzz/corpus/$t" >"$W/logs/$t/parent.log" 2>&1 &)
    done
    echo "fuzz_farm: started $plan for $secs s"
}

stop() {
    [ -d "$W/logs" ] || { echo "fuzz_farm: nothing started" >&2; return 1; }
    # Workers still running get SIGINT: libFuzzer prints its final stats before exiting.
    pkill -INT -f "$W/bin/fuzz_" 2>/dev/null
    for _ in $(seq 60); do pgrep -f "$W/bin/fuzz_" >/dev/null || break; sleep 1; done
    pkill -KILL -f "$W/bin/fuzz_" 2>/dev/null
    local sum=$W/summary.txt
    : >"$sum"
    for d in "$W"/logs/*/; do
        local t
        t=$(basename "$d")
        local execs secs crashes
        execs=$(cat "$d"/fuzz-*.log 2>/dev/null | awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}')
        # worker seconds: each worker's executions / its average rate (both from its final stats)
        secs=$(for l in "$d"/fuzz-*.log; do awk '/stat::number_of_executed_units/ {u = $2}
            /stat::average_exec_per_sec/ {r = $2} END {if (r > 0) print u / r; else print 0}' "$l"
            done 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}')
        crashes=$(find "$W/crashes/$t" -type f | wc -l)
        local workers
        workers=$(ls "$d"/fuzz-*.log 2>/dev/null | wc -l)
        printf '%s: executions=%s workers=%s worker_seconds=%s crashes=%s started=%s commit=%s\n' \
            "$t" "$execs" "$workers" "$secs" "$crashes" "$(cat "$W/started")" \
            "$(cat "$F/commit" 2>/dev/null)" | tee -a "$sum"
        grep -h -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' \
            "$d"/fuzz-*.log 2>/dev/null | sort | uniq -c | head -5
    done
    if [ -n "${OUT:-}" ]; then
        tar -czf "$OUT/fuzzfarm.tgz" -C "$W" summary.txt plan started corpus crashes logs
        echo "fuzz_farm: wrote $OUT/fuzzfarm.tgz ($(du -h "$OUT/fuzzfarm.tgz" | cut -f1))"
    fi
}

case $cmd in
pack) pack "$@" ;;
start) start "$@" ;;
stop) stop ;;
run)
    start "$@" || exit 1
    sleep "${1:?SECONDS}"
    stop
    ;;
*) echo "usage: scripts/fuzz_farm.sh pack|start|stop|run ..." >&2; exit 2 ;;
esac
