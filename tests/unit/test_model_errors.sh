#!/usr/bin/env bash
# Bad model files must give a one-line error on stderr and exit code 1, never a crash.
# Starts from a committed golden model and corrupts copies of it (python3 stdlib only).
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:-.}
BASE=$SRC/tests/golden/data/lfm2-gqa2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

mk() { rm -rf "$T/m"; cp -r "$BASE" "$T/m"; }

expect_error() { # name, pattern
    local out rc lines
    out=$("$BIN" run -m "$T/m" --prompt-ids 1,2,3 --max-tokens 2 2>&1 >/dev/null)
    rc=$?
    lines=$(printf '%s\n' "$out" | grep -c .)
    if [ "$rc" != 1 ] || [ "$lines" != 1 ] || ! printf '%s' "$out" | grep -qiE "$2"; then
        echo "FAIL $1: rc=$rc lines=$lines out=[$out]"
        fails=$((fails + 1))
    else
        echo "ok   $1: $out"
    fi
}

edit_header() { # python snippet operating on dict h (header) and bytes data; rewrites the file
    /usr/bin/python3 - "$T/m/model.safetensors" "$1" <<'PY'
import json, struct, sys
path, code = sys.argv[1], sys.argv[2]
raw = open(path, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
exec(code)
hb = json.dumps(h).encode()
open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
PY
}

mk; /usr/bin/python3 -c "import os,sys; p=sys.argv[1]; os.truncate(p, os.path.getsize(p)//2)" "$T/m/model.safetensors"
expect_error truncated "past the end|truncated"
mk; printf 'abc' > "$T/m/model.safetensors"
expect_error tiny-file "too short"
mk; /usr/bin/python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[0:8]=(10**12).to_bytes(8,'little'); open(p,'wb').write(b)" "$T/m/model.safetensors"
expect_error header-length "header length"
mk; /usr/bin/python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[12]=ord('}'); open(p,'wb').write(b)" "$T/m/model.safetensors"
expect_error corrupt-json "JSON|header"
mk; edit_header "del h['model.layers.1.self_attn.q_proj.weight']"
expect_error missing-tensor "missing tensor 'model.layers.1.self_attn.q_proj.weight'"
mk; edit_header "t=h['model.layers.0.feed_forward.w1.weight']; t['shape']=t['shape'][::-1]"
expect_error wrong-shape "model.layers.0.feed_forward.w1.weight.*shape"
mk; edit_header "h['model.layers.0.ffn_norm.weight']['dtype']='F8_E9M9'"
expect_error unknown-dtype "unknown dtype"
mk; edit_header "t=h['model.layers.0.ffn_norm.weight']; t['dtype']='I16'"
expect_error unsupported-dtype "not supported"
mk; edit_header "a=h['model.layers.0.ffn_norm.weight']; b=h['model.layers.0.operator_norm.weight']; a['data_offsets']=b['data_offsets']"
expect_error overlap "overlap"
mk; edit_header "h['model.embed_tokens.weight']['data_offsets']=[0, 1<<60]"
expect_error offsets "past the end|bytes"
mk; /usr/bin/python3 -c "
import json,sys; p=sys.argv[1]; c=json.load(open(p)); del c['hidden_size']; json.dump(c,open(p,'w'))" "$T/m/config.json"
expect_error config-missing "missing field 'hidden_size'"
mk; /usr/bin/python3 -c "
import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['num_attention_heads']='four'; json.dump(c,open(p,'w'))" "$T/m/config.json"
expect_error config-type "num_attention_heads"
mk; printf '{"model_type": "lfm2", ' > "$T/m/config.json"
expect_error config-json "config.json.*JSON"
mk; rm "$T/m/config.json"
expect_error no-config "config.json"
mk; rm "$T/m/model.safetensors"
expect_error no-weights "model.safetensors"
mk; /usr/bin/python3 -c "
import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['model_type']='gpt_neox'; json.dump(c,open(p,'w'))" "$T/m/config.json"
expect_error unknown-arch "not supported"
rm -rf "$T/m"; mkdir -p "$T/m"
expect_error empty-dir "config.json"

echo "$fails failures"
[ "$fails" = 0 ]
