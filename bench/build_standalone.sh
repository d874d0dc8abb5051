#!/usr/bin/env bash
# Builds bench_kernels without CMake or the upper layers' dependencies (for a bare machine):
#   bench/build_standalone.sh OUTDIR   -> OUTDIR/bench_kernels, OUTDIR/bench_bandwidth
# SPDX-License-Identifier: MIT
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/lfmd-bench}
mkdir -p "$OUT/obj"
CF="-O2 -std=gnu11 -I$ROOT/src -I$ROOT/include ${EXTRA_CFLAGS:-}"
objs=()
for f in "$ROOT"/src/base/*.c "$ROOT"/src/format/*.c "$ROOT"/src/kernels/*.c "$ROOT"/src/kernels/ref/*.c \
         "$ROOT"/src/kernels/cpu/*.c; do
    o="$OUT/obj/$(basename "$(dirname "$f")")_$(basename "$f" .c).o"
    extra=""
    case $f in *avx2*) extra="-mavx2 -mfma -mf16c" ;; esac
    gcc $CF $extra -c "$f" -o "$o" &
    objs+=("$o")
done
wait
gcc $CF "$ROOT/bench/kernels_bench.c" "${objs[@]}" -lm -lpthread -o "$OUT/bench_kernels"
gcc $CF -mavx2 "$ROOT/bench/bandwidth.c" "${objs[@]}" -lm -lpthread -o "$OUT/bench_bandwidth"
