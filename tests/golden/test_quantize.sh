#!/usr/bin/env bash
# lfmd quantize from the command line: outputs load and run (lfmd run), sizes are reported,
# SIGINT/SIGTERM midway leaves neither OUT nor OUT.tmp-*, a file-size limit (stand-in for a full
# disk) and an unwritable path give clear errors and leave nothing behind.
# SPDX-License-Identifier: MIT
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:?}
T=$(mktemp -d /tmp/lfmd-test-quantize-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

/usr/bin/python3 "$SRC/tools/gen_model.py" --preset tiny-lfm2 --seed 5 --out "$T/tiny" >/dev/null || exit 1
# a bigger model (46M params) so a conversion lasts long enough to be interrupted
/usr/bin/python3 "$SRC/tools/gen_model.py" --preset tiny-lfm2 --seed 2 \
    --config '{"vocab_size": 65536, "hidden_size": 512, "block_ff_dim": 2048}' --out "$T/mid" >/dev/null || exit 1

# 1. GGUF and MLX outputs load and generate; bf16 and q8_0 agree on greedy tokens
for spec in "q8.gguf --format gguf --type q8_0" "q4.gguf --type q4_0" "m4 --bits 4" "m8 --bits 8 --group-size 32"; do
    set -- $spec
    out=$1; shift
    if "$BIN" quantize "$T/tiny" "$T/$out" "$@" 2>"$T/log"; then
        grep -q '^before:' "$T/log" && grep -q '^after:' "$T/log" && ok "quantize $out ($*)" || bad "no sizes in output for $out"
    else
        bad "quantize $out: $(cat "$T/log")"
    fi
    "$BIN" run -m "$T/$out" --prompt-ids 1,2,3,4 --max-tokens 4 -t 1 >"$T/$out.ids" 2>"$T/log" || bad "run $out: $(cat "$T/log")"
done
"$BIN" run -m "$T/tiny" --prompt-ids 1,2,3,4 --max-tokens 4 -t 1 >"$T/ref.ids" 2>/dev/null
cmp -s "$T/ref.ids" "$T/q8.gguf.ids" && ok "q8_0 greedy tokens = bf16" || bad "q8_0 tokens differ: $(cat "$T/ref.ids") vs $(cat "$T/q8.gguf.ids")"

# 1b. llama.cpp (node-llama-cpp, when installed in bench/llamacpp) loads our GGUF and generates
# the same 32 greedy tokens as lfmd (f16 matrices: both engines compute in f32 from identical weights)
if [ -d "$SRC/bench/llamacpp/node_modules/node-llama-cpp" ] && command -v node >/dev/null; then
    "$BIN" quantize "$T/tiny" "$T/f16.gguf" --type f16 2>/dev/null
    P=1,100,200,300,400,500,17,42
    a=$("$BIN" run -m "$T/f16.gguf" --prompt-ids $P --max-tokens 32 --ignore-eos -t 1 2>/dev/null | tr ' ' ',')
    b=$(cd "$SRC/bench/llamacpp" && node run.mjs greedy "$T/f16.gguf" --prompt-ids $P --n 32 --threads 1 2>&1 | sed -n 's/^ids: //p')
    [ -n "$a" ] && [ "$a" = "$b" ] && ok "llama.cpp: same 32 greedy tokens" || bad "llama.cpp tokens differ: lfmd $a, llama.cpp $b"
else
    echo "skip: bench/llamacpp not installed"
fi

# 2. interrupted runs leave nothing (SIGINT on a GGUF file, SIGTERM on an MLX directory)
interrupt() {
    local sig=$1 out=$2; shift 2
    "$BIN" quantize "$T/mid" "$out" "$@" 2>"$T/intr.log" &
    local pid=$! i=0
    while [ $i -lt 500 ] && ! ls -d "$out".tmp-* >/dev/null 2>&1; do sleep 0.01; i=$((i + 1)); done
    kill -s "$sig" $pid 2>/dev/null
    wait $pid
    local rc=$?
    if [ $rc -eq 0 ]; then
        bad "$sig: conversion finished before the signal (inconclusive)"
    elif [ -e "$out" ] || ls -d "$out".tmp-* >/dev/null 2>&1; then
        bad "$sig: output or temp left behind: $(ls -d "$out"*)"
    else
        grep -q interrupted "$T/intr.log" && ok "$sig midway leaves no output (rc $rc)" || bad "$sig: no message: $(cat "$T/intr.log")"
    fi
}
interrupt INT "$T/intr.gguf" --type q4_k
interrupt TERM "$T/intr-mlx" --bits 4

# 3. file-size limit (EFBIG, as a full disk gives ENOSPC) -> clear error, no output
( ulimit -f 2048; "$BIN" quantize "$T/mid" "$T/big.gguf" --type q8_0 ) 2>"$T/fsz.log"
rc=$?
if [ $rc -ne 0 ] && grep -q "write failed" "$T/fsz.log" && ! ls -d "$T"/big.gguf* >/dev/null 2>&1; then
    ok "file size limit: $(head -1 "$T/fsz.log")"
else
    bad "file size limit: rc $rc, $(cat "$T/fsz.log"), $(ls "$T")"
fi
# 4. unwritable destination and existing output
"$BIN" quantize "$T/tiny" /nonexistent-dir/out.gguf --type q8_0 2>"$T/log" && bad "wrote to a missing directory" ||
    { grep -q "cannot create" "$T/log" && ok "unwritable: $(cat "$T/log")" || bad "unwritable: $(cat "$T/log")"; }
"$BIN" quantize "$T/tiny" "$T/m4" 2>"$T/log" && bad "overwrote an existing output" ||
    { grep -q "already exists" "$T/log" && ok "existing output refused" || bad "existing: $(cat "$T/log")"; }
exit $fail
