#!/usr/bin/env bash
# Replays every checked-in fuzz corpus (tests/fuzz/corpus/<target>) under ASan+UBSan with the
# ordinary compiler: configures build-asan/ (-DLFMD_SANITIZE=address,undefined), builds the
# replay_fuzz_* programs and runs the ctest label fuzz there. This is the CI corpus replay.
#   scripts/fuzz-replay.sh [BUILD_DIR]
# SPDX-License-Identifier: MIT
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$ROOT/build-asan}
cmake -S "$ROOT" -B "$B" -DLFMD_SANITIZE=address,undefined >/dev/null
targets=$(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/^/replay_/; s/\.c$//')
# shellcheck disable=SC2086
cmake --build "$B" -j"${JOBS:-2}" --target $targets >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ctest --test-dir "$B" -L fuzz --output-on-failure
