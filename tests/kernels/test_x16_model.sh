#!/usr/bin/env bash
# --no-mmap on a Q4_0 / Q8_0 GGUF: the model layer repacks the matrices into the kernels' x16
# layouts (kern_repack) at the first runner. Logits of a 9-token prompt (the x16 decode kernel,
# 8 + 1 tokens) and of a 20-token prompt (the unpack-and-run-plain fallback) stay within f32
# summation error of the mapped file's, greedy tokens are the same, and LFMD_REPACK=0 gives the
# mapped file's logits exactly. Model: the embedded router (bf16) quantized to Q4_0 and Q8_0.
# SPDX-License-Identifier: MIT
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:?}
T=$(mktemp -d /tmp/lfmd-test-x16-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# relative L2 distance of two raw f32 files
rel() {
    paste <(od -An -v -f -w4 "$1") <(od -An -v -f -w4 "$2") |
        awk '{d += ($1 - $2) ^ 2; n += $1 ^ 2} END {printf "%.3g\n", (n > 0 ? sqrt(d / n) : 1)}'
}
for ty in q4_0 q8_0; do
    G="$T/$ty.gguf"
    "$BIN" quantize "$SRC/models/lfm2-router" "$G" --format gguf --type $ty >/dev/null 2>&1 ||
        { bad "quantize $ty"; continue; }
    for P in 1,42,7,300,12,99,5,6,8 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20; do
        n="$ty, $(echo $P | tr ',' '\n' | wc -l) tokens"
        "$BIN" run -m "$G" --prompt-ids $P --max-tokens 0 -t 2 --logits "$T/map.f32" >/dev/null 2>&1
        "$BIN" run -m "$G" --prompt-ids $P --max-tokens 0 -t 2 --no-mmap --logits "$T/x16.f32" \
            >/dev/null 2>&1
        LFMD_REPACK=0 "$BIN" run -m "$G" --prompt-ids $P --max-tokens 0 -t 2 --no-mmap \
            --logits "$T/plain.f32" >/dev/null 2>&1
        [ -s "$T/map.f32" ] && [ -s "$T/x16.f32" ] || { bad "no logits ($n)"; continue; }
        cmp -s "$T/map.f32" "$T/plain.f32" && ok "$n: LFMD_REPACK=0 = mapped" ||
            bad "$n: LFMD_REPACK=0 differs from mapped"
        r=$(rel "$T/map.f32" "$T/x16.f32")
        if awk -v r="$r" 'BEGIN {exit !(r != "" && r + 0 < 1e-4)}'; then
            ok "$n: repacked vs mapped rel L2 $r"
        else
            bad "$n: repacked vs mapped rel L2 $r"
        fi
        rm -f "$T"/*.f32
    done
    a=$("$BIN" run -m "$G" --prompt-ids 1,42,7 --max-tokens 24 --ignore-eos -t 2 2>/dev/null)
    b=$("$BIN" run -m "$G" --prompt-ids 1,42,7 --max-tokens 24 --ignore-eos -t 2 --no-mmap \
        2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] && ok "$ty: 24 greedy tokens equal" ||
        bad "$ty: greedy tokens: '$a' vs '$b'"
done
exit $fail
