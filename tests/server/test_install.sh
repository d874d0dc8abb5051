#!/usr/bin/env bash
# `cmake --install` into a temporary prefix installs bin/lfmd, liblfmd, include/lfmd.h and
# lfmd.pc; examples/embed.c then builds with `pkg-config --cflags --libs lfmd` alone and runs
# on the @test model. Also checks that liblfmd exports only the public lfmd_* functions.
# SPDX-License-Identifier: MIT
set -euo pipefail
src=${LFMD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${LFMD_BUILD:-$src/build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in bin/lfmd include/lfmd.h; do
    [ -e "$tmp/prefix/$f" ] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
pc=$(find "$tmp/prefix" -name lfmd.pc | head -1)
lib=$(find "$tmp/prefix" -name 'liblfmd.so*' | head -1)
[ -n "$pc" ] && [ -n "$lib" ] || { echo "FAIL: lfmd.pc or liblfmd.so missing" >&2; exit 1; }
"$tmp/prefix/bin/lfmd" --version | grep -q '^lfmd [0-9]' || { echo "FAIL: installed lfmd --version" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
flags=$(pkg-config --cflags --libs lfmd)
cc -std=c11 -Wall -Wextra -Werror "$src/examples/embed.c" $flags -o "$tmp/embed"
libdir=$(pkg-config --variable=libdir lfmd)
out=$(LD_LIBRARY_PATH=$libdir "$tmp/embed" @test "Hello" 2>/dev/null)
echo "$out"
echo "$out" | tail -1 | grep -qx ok || { echo "FAIL: embed example" >&2; exit 1; }
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^lfmd_' || true)
[ -z "$bad" ] || { echo "FAIL: liblfmd exports internal symbols: $(echo $bad | head -c 300)" >&2; exit 1; }
echo "install ok: $(nm -D --defined-only "$lib" | grep -c ' T lfmd_') public functions"
