#!/usr/bin/env bash
# The embedded default model (models/lfm2-router): lfmd's greedy output equals transformers' for the
# 10 reference prompts in tests/data/router_eval/greedy_ref.jsonl (computed by
# tools/train_router/train.py on the GPU machine: fp32 from the bf16 weights, eager, no TF32), and
# the chat path answers through the chat template.
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:-.}
export LFMD_CACHE_DIR=$(mktemp -d)
trap 'rm -rf "$LFMD_CACHE_DIR"' EXIT
# The embedded default (8-bit, extracted to the cache on first use) must agree as well.
EMBEDDED=$(LFMD_MODEL= "$BIN" inspect | sed -n 's/^model: *\([^ ]*\).*/\1/p')
fails=0
n=0
for MODEL in "$SRC/models/lfm2-router" "$EMBEDDED"; do
echo "model $MODEL"
while IFS= read -r line; do
    ids=$(printf '%s' "$line" | /usr/bin/python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["prompt_ids"])))')
    want=$(printf '%s' "$line" | /usr/bin/python3 -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["greedy_ids"])))')
    k=$(printf '%s' "$want" | wc -w)
    got=$("$BIN" run -m "$MODEL" --prompt-ids "$ids" --max-tokens "$k" --temp 0 --ignore-eos --output ids -t 2)
    n=$((n + 1))
    if [ "$got" != "$want" ]; then
        echo "FAIL prompt $n: got [$got] want [$want]"
        fails=$((fails + 1))
    fi
done < "$SRC/tests/data/router_eval/greedy_ref.jsonl"
done
echo "$n prompts, $fails mismatches"
# The default model is used when no -m is given, and answers a chat turn with text.
out=$(LFMD_MODEL= "$BIN" run -p "Hello!" --chat --max-tokens 24 -t 2)
echo "chat: $out"
[ -n "$out" ] || { echo "FAIL: empty chat answer"; fails=$((fails + 1)); }
# lfmd bench on the default model: the server's KV cache type (f16) unless told otherwise,
# --kv-type honoured, an unknown type refused with a usage error (timings are not checked).
j=$(LFMD_MODEL= LFMD_KV_TYPE= "$BIN" bench -p 8 -n 4 -r 1 -t 2 --json)
echo "bench: $j"
echo "$j" | grep -q '"kv_type":"f16"' || { echo "FAIL: bench default KV type"; fails=$((fails + 1)); }
j=$(LFMD_MODEL= "$BIN" bench -p 8 -n 4 -r 1 -t 2 --json --kv-type q8)
echo "$j" | grep -q '"kv_type":"q8"' || { echo "FAIL: bench --kv-type q8: $j"; fails=$((fails + 1)); }
LFMD_MODEL= "$BIN" bench --kv-type f8 >/dev/null 2>&1
rc=$?
[ "$rc" = 2 ] || { echo "FAIL: bench --kv-type f8 exit $rc, want 2"; fails=$((fails + 1)); }
[ "$n" = 20 ] && [ "$fails" = 0 ]
