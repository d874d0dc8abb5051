#!/usr/bin/env bash
# Llama GGUF path: `lfmd quantize --format gguf` permutes q/k rows as llama.cpp's converter does,
# and the GGUF loader undoes it with interleaved RoPE. An F32 GGUF of a golden Llama model must give
# the logits of the Hugging Face directory (and therefore of transformers) to 1e-6.
set -u
BIN=${LFMD_BIN:?}
SRC=${LFMD_SRC:-.}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
for name in llama-gqa-tied llama-bias-untied lfm2-gqa2; do
    dir=$SRC/tests/golden/data/$name
    "$BIN" quantize "$dir" "$T/$name.gguf" --format gguf --type f32 >/dev/null 2>"$T/err" ||
        { echo "FAIL $name: quantize: $(cat "$T/err")"; fails=$((fails + 1)); continue; }
    ids=$(/usr/bin/python3 -c "import json; print(','.join(map(str, json.load(open('$dir/reference.json'))['cases'][2]['prompt_ids'])))")
    "$BIN" run -m "$dir" --prompt-ids "$ids" --max-tokens 0 --logits "$T/hf.f32" -t 2 >/dev/null &&
    "$BIN" run -m "$T/$name.gguf" --prompt-ids "$ids" --max-tokens 0 --logits "$T/gguf.f32" -t 2 >/dev/null ||
        { echo "FAIL $name: run"; fails=$((fails + 1)); continue; }
    err=$(/usr/bin/python3 -c "
import numpy as np
a = np.fromfile('$T/hf.f32', '<f4'); b = np.fromfile('$T/gguf.f32', '<f4')
print(float(np.linalg.norm(a - b) / np.linalg.norm(a)) if a.size == b.size else 1.0)")
    echo "$name: GGUF f32 vs HF logits rel L2 $err"
    /usr/bin/python3 -c "import sys; sys.exit(0 if $err < 1e-6 else 1)" || fails=$((fails + 1))
done
echo "$fails failures"
[ "$fails" = 0 ]
