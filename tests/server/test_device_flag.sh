#!/usr/bin/env bash
# --device / --split / --gpu-memory-limit (and LFMD_DEVICE): junk is refused with exit 2; in a
# build without CUDA, asking for a CUDA device is a clear error, not a silent CPU fallback.
# SPDX-License-Identifier: MIT
set -uo pipefail
bin=${LFMD_BIN:?}
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$bin" serve -m @test --device gpu0 --port 0 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "expected cpu or cuda" <<<"$out" || fail "--device gpu0: rc=$rc: $out"
out=$("$bin" serve -m @test --gpu-memory-limit lots --port 0 2>&1); rc=$?
[ $rc -eq 2 ] || fail "--gpu-memory-limit lots: rc=$rc: $out"
help=$("$bin" serve --help) # (not piped into grep -q: with pipefail, SIGPIPE would fail it)
grep -q -- "--device" <<<"$help" || fail "--device missing from help"
out=$("$bin" serve -m @test --device cuda:0 --port 0 2>&1 </dev/null & p=$!; sleep 2; kill $p 2>/dev/null; wait $p)
rc=$?
if grep -q "built without CUDA" <<<"$out"; then
    out=$(LFMD_DEVICE=cuda:1 "$bin" stdio @test 2>&1 </dev/null); rc=$?
    [ $rc -eq 2 ] && grep -q "built without CUDA" <<<"$out" || fail "LFMD_DEVICE=cuda:1 stdio: rc=$rc: $out"
    out=$("$bin" serve -m @test --device cuda:0,cuda:1 --split 3 --port 0 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "--split: rc=$rc"
fi
echo ok
