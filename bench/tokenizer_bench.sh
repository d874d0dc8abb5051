#!/usr/bin/env bash
# Encode MB/s, single thread: lfmd vs Hugging Face tokenizers (npm binding) on the 20 KB paragraph
# case of tests/data/tokenizers/cases.jsonl, for each fixture tokenizer.
# Usage: bench/tokenizer_bench.sh [LFMD_BIN] [ITERS]   (installs npm `tokenizers` into
# bench/tokenizer_node/ on first use; RAYON_NUM_THREADS=1 keeps HF single-threaded)
# SPDX-License-Identifier: MIT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/src/lfmd}
iters=${2:-200}
data=$root/tests/data/tokenizers
in=$(mktemp)
trap 'rm -f "$in"' EXIT
python3 -c "
import json, sys
for l in open('$data/cases.jsonl'):
    d = json.loads(l)
    if d['cat'] == 'paragraph-20k': print(json.dumps({'text': d['text']}))" > "$in"
if [ ! -d "$root/bench/tokenizer_node/node_modules/tokenizers" ]; then
  (mkdir -p "$root/bench/tokenizer_node" && cd "$root/bench/tokenizer_node" &&
   npm install --no-audit --no-fund tokenizers >/dev/null)
fi
printf '%-8s %12s %12s %8s\n' tokenizer lfmd_MB/s hf_MB/s ratio
for t in gpt2 llama3 qwen3 llama2; do
  ours=$(taskset -c 0 "$bin" tokenize --tokenizer "$data/$t" --no-special --jsonl --bench "$iters" < "$in" |
         python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["mb_per_s"])')
  hf=$(RAYON_NUM_THREADS=1 taskset -c 0 node "$root/bench/tokenizer_bench.js" "$data/$t/tokenizer.json" "$in" "$iters" |
       python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["mb_per_s"])')
  printf '%-8s %12s %12s %8s\n' "$t" "$ours" "$hf" "$(python3 -c "print(f'{$ours/$hf:.2f}x')")"
done
