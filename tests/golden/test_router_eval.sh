#!/usr/bin/env bash
# Routing accuracy of the default router model through lfmd's own routing code (the same code as
# POST /v1/route): the 125 held-out hand-written requests must be >= 90% correct (transformers
# measured 94.4%, models/README.md), every reply must be JSON whose probabilities sum to 1, and
# the routing template must come from the prefix cache after the first request.
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:-.}
OUT=$(mktemp)
ERR=$(mktemp)
trap 'rm -f "$OUT" "$ERR"' EXIT
"$BIN" route -m "$SRC/models/lfm2-router" --threads 2 \
    --jsonl "$SRC/tests/data/router_eval/heldout.jsonl" >"$OUT" 2>"$ERR" || {
    echo "FAIL: lfmd route exited with an error"; cat "$ERR"; exit 1; }
cat "$ERR" | grep accuracy
/usr/bin/python3 - "$OUT" "$ERR" "$SRC/tests/data/router_eval/heldout.jsonl" <<'PY'
import json, sys
out = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ref = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
assert len(out) == len(ref) == 125, (len(out), len(ref))
ok = 0
for o, r in zip(out, ref):
    s = o["scores"]
    assert set(s) == {"code", "math", "creative", "analysis", "chat"}, s
    assert abs(sum(s.values()) - 1) < 1e-4, s
    assert o["route"] == max(s, key=s.get) and abs(o["confidence"] - s[o["route"]]) < 1e-6
    ok += o["route"] == r["route"]
cached = sum(1 for o in out if o["usage"]["cached_tokens"] > 0)
print(f"accuracy {ok}/{len(out)} = {ok/len(out):.4f}; {cached} requests reused the cached template")
assert ok / len(out) >= 0.90, "routing accuracy below 90%"
assert cached >= len(out) - 16, "the routing template was not reused from the prefix cache"
PY
