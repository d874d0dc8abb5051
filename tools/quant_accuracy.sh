#!/usr/bin/env bash
# Accuracy of quantized weights (issue 5): next-token logits of the LFM2-350M-shaped golden model
# from lfmd (bf16; GGUF F16/Q8_0/Q4_0; MLX 8/4-bit, group 64 and 32; all written by `lfmd quantize`
# from the golden bf16 weights; quantized files also fed token by token) and from llama.cpp
# (node-llama-cpp 3.21.1, bench/llamacpp/run.mjs) on the same GGUF files, each compared with the
# transformers fp32 reference (relative L2 of log-probabilities, logits up to a constant, KL,
# top-1). Prints markdown tables and verdicts (docs/QUANTIZE.md, "Accuracy of quantized weights").
# Invariant: all files it makes live in $QA_WORK; the references are read, never written.
#
#   tools/quant_accuracy.sh      (from the repo root; about 1.5 CPU-minutes, all under nice)
# Environment: LFMD_BIN (default build/src/lfmd); QA_WORK (default /tmp/lfmd-quant-accuracy: models,
# about 3 GB, reused across runs: delete it after changing lfmd quantize); QA_THREADS (default 2);
# QA_EXACT=1 (also the exact float64 logits of the quantized weights, tools/quant_accuracy/exact.py:
# 15-25 more minutes, 6 GB of memory); QA_REF (reference folder, default
# tools/quant_accuracy/lfm2-350m, else tests/golden/data/lfm2-350m). Exit 1 when a verdict says lfmd
# is not as close as llama.cpp (compare.py's rule), 2 on setup errors.
# SPDX-License-Identifier: MIT
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
LFMD=${LFMD_BIN:-$SRC/build/src/lfmd}
WORK=${QA_WORK:-/tmp/lfmd-quant-accuracy}
THREADS=${QA_THREADS:-2}
PY=/usr/bin/python3
GOLD=$SRC/tests/golden/data/lfm2-350m
REF=${QA_REF:-$SRC/tools/quant_accuracy/lfm2-350m}
[ -f "$REF/reference.json" ] || REF=$GOLD
NICE="nice -n 10"

[ -x "$LFMD" ] || { echo "quant_accuracy: no lfmd at $LFMD (set LFMD_BIN)" >&2; exit 2; }
[ -d "$SRC/bench/llamacpp/node_modules/node-llama-cpp" ] ||
    { echo "quant_accuracy: run 'npm install' in bench/llamacpp first" >&2; exit 2; }
mkdir -p "$WORK/out"

# 1. the golden bf16 model (bit-identical to the one transformers ran on) and its quantized forms
want=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['model']
                ['safetensors_sha256'])" "$GOLD/reference.json")
if [ ! -f "$WORK/bf16.ok" ]; then
    rm -rf "$WORK/bf16"
    $NICE $PY "$SRC/tools/gen_model.py" --golden lfm2-350m --out "$WORK/bf16" --jobs 2 --sha256 \
        | tee "$WORK/gen.log"
    grep -q "sha256 $want" "$WORK/gen.log" ||
        { echo "quant_accuracy: regenerated model's sha256 is not $want" >&2; exit 2; }
    touch "$WORK/bf16.ok"
fi
for t in f16 q8_0 q4_0; do
    [ -f "$WORK/$t.gguf" ] ||
        $NICE "$LFMD" quantize "$WORK/bf16" "$WORK/$t.gguf" --format gguf --type "$t" | tail -1
done
for b in 8 4; do
    [ -d "$WORK/mlx$b" ] ||
        $NICE "$LFMD" quantize "$WORK/bf16" "$WORK/mlx$b" --format mlx --bits "$b" | tail -1
    [ -d "$WORK/mlx${b}g32" ] || $NICE "$LFMD" quantize "$WORK/bf16" "$WORK/mlx${b}g32" \
        --format mlx --bits "$b" --group-size 32 | tail -1
done

# 2. the cases: prompt ids and reference logits (a case's .f32 from REF, else the committed one)
$PY - "$REF" "$GOLD" "$WORK/cases.json" <<'EOF'
import json, os, sys
ref, gold, out = sys.argv[1:4]
r = json.load(open(os.path.join(ref, "reference.json")))
g = json.load(open(os.path.join(gold, "reference.json")))
cases = []
for i, c in enumerate(r["cases"]):
    path = os.path.join(ref, c["logits"])
    if not os.path.exists(path):
        # only the committed golden cases may be taken from tests/golden (same prompt, same model)
        gc = g["cases"][i] if i < len(g["cases"]) else None
        if gc is None or gc["prompt_ids"] != c["prompt_ids"]:
            sys.exit("case %d: no logits file and no identical committed case" % i)
        path = os.path.join(gold, gc["logits"])
    cases.append({"name": "case%d" % i, "n": len(c["prompt_ids"]), "ref": path,
                  "ids": ",".join(map(str, c["prompt_ids"]))})
json.dump(cases, open(out, "w"), indent=1)
EOF

# 3. logits: lfmd on every weight form, llama.cpp on the GGUF files
n_cases=$($PY -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$WORK/cases.json")
for ((i = 0; i < n_cases; i++)); do
    ids=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]['ids'])" \
          "$WORK/cases.json" "$i")
    for m in bf16 f16.gguf q8_0.gguf q4_0.gguf mlx8 mlx4 mlx8g32 mlx4g32; do
        $NICE "$LFMD" run -m "$WORK/$m" --prompt-ids "$ids" --max-tokens 0 -t "$THREADS" \
            --logits "$WORK/out/lfmd-$m-case$i.f32" >/dev/null
    done
    # the same files fed one token per forward call: the last position goes through the decode
    # kernels (int8-quantized activations for Q8_0/Q4_0/MLX), not the prefill ones
    for m in q8_0.gguf q4_0.gguf mlx8 mlx4; do
        $NICE "$LFMD" run -m "$WORK/$m" --prompt-ids "$ids" --max-tokens 0 -t "$THREADS" --chunk 1 \
            --logits "$WORK/out/lfmd1-$m-case$i.f32" >/dev/null
    done
    for t in f16 q8_0 q4_0; do
        (cd "$SRC/bench/llamacpp" && $NICE node run.mjs greedy "$WORK/$t.gguf" --prompt-ids "$ids" \
            --n 1 --threads "$THREADS" --logits "$WORK/out/llama-$t-case$i.f32" >/dev/null)
    done
done

# 3b. (QA_EXACT=1) exact float64 logits of the quantized weights themselves (numpy; about 2.5
# minutes and 6 GB per weight form on 2 cores), so each engine's own arithmetic error shows
O=$WORK/out
exact=()
if [ "${QA_EXACT:-0}" = 1 ]; then
    for m in q8_0.gguf q4_0.gguf mlx8 mlx4; do
        $NICE $PY "$SRC/tools/quant_accuracy/exact.py" "$WORK/bf16" "$WORK/$m" "$WORK/cases.json" \
            "$O/exact-$m-{case}.f32"
    done
    exact=(--run "numpy float64, GGUF Q8_0 weights=$O/exact-q8_0.gguf-{case}.f32"
           --run "numpy float64, GGUF Q4_0 weights=$O/exact-q4_0.gguf-{case}.f32"
           --run "numpy float64, MLX 8-bit g64 weights=$O/exact-mlx8-{case}.f32"
           --run "numpy float64, MLX 4-bit g64 weights=$O/exact-mlx4-{case}.f32"
           --exact "lfmd, GGUF Q8_0=$O/exact-q8_0.gguf-{case}.f32"
           --exact "llama.cpp, GGUF Q8_0=$O/exact-q8_0.gguf-{case}.f32"
           --exact "lfmd, GGUF Q4_0=$O/exact-q4_0.gguf-{case}.f32"
           --exact "llama.cpp, GGUF Q4_0=$O/exact-q4_0.gguf-{case}.f32"
           --exact "lfmd, MLX 8-bit g64=$O/exact-mlx8-{case}.f32"
           --exact "lfmd, MLX 4-bit g64=$O/exact-mlx4-{case}.f32"
           --exact "lfmd, GGUF Q8_0, token by token=$O/exact-q8_0.gguf-{case}.f32"
           --exact "lfmd, GGUF Q4_0, token by token=$O/exact-q4_0.gguf-{case}.f32"
           --exact "lfmd, MLX 8-bit g64, token by token=$O/exact-mlx8-{case}.f32"
           --exact "lfmd, MLX 4-bit g64, token by token=$O/exact-mlx4-{case}.f32")
fi

# 4. the table
$PY "$SRC/tools/quant_accuracy/compare.py" --cases "$WORK/cases.json" --json "$WORK/accuracy.json" \
    --run "lfmd, bf16 safetensors (sanity)=$O/lfmd-bf16-{case}.f32" \
    --run "lfmd, GGUF F16=$O/lfmd-f16.gguf-{case}.f32" \
    --run "llama.cpp, GGUF F16 (sanity)=$O/llama-f16-{case}.f32" \
    --run "lfmd, GGUF Q8_0=$O/lfmd-q8_0.gguf-{case}.f32" \
    --run "llama.cpp, GGUF Q8_0=$O/llama-q8_0-{case}.f32" \
    --run "lfmd, MLX 8-bit g64=$O/lfmd-mlx8-{case}.f32" \
    --run "lfmd, MLX 8-bit g32=$O/lfmd-mlx8g32-{case}.f32" \
    --run "lfmd, GGUF Q4_0=$O/lfmd-q4_0.gguf-{case}.f32" \
    --run "llama.cpp, GGUF Q4_0=$O/llama-q4_0-{case}.f32" \
    --run "lfmd, MLX 4-bit g64=$O/lfmd-mlx4-{case}.f32" \
    --run "lfmd, MLX 4-bit g32=$O/lfmd-mlx4g32-{case}.f32" \
    --run "lfmd, GGUF Q8_0, token by token=$O/lfmd1-q8_0.gguf-{case}.f32" \
    --run "lfmd, GGUF Q4_0, token by token=$O/lfmd1-q4_0.gguf-{case}.f32" \
    --run "lfmd, MLX 8-bit g64, token by token=$O/lfmd1-mlx8-{case}.f32" \
    --run "lfmd, MLX 4-bit g64, token by token=$O/lfmd1-mlx4-{case}.f32" \
    --pair "GGUF F16:lfmd, GGUF F16:llama.cpp, GGUF F16 (sanity)" \
    --pair "GGUF Q8_0:lfmd, GGUF Q8_0:llama.cpp, GGUF Q8_0" \
    --pair "GGUF Q4_0:lfmd, GGUF Q4_0:llama.cpp, GGUF Q4_0" \
    --pair "GGUF Q8_0, lfmd token by token:lfmd, GGUF Q8_0, token by token:llama.cpp, GGUF Q8_0" \
    --pair "GGUF Q4_0, lfmd token by token:lfmd, GGUF Q4_0, token by token:llama.cpp, GGUF Q4_0" \
    --pair "MLX 8-bit g64 vs llama.cpp Q8_0:lfmd, MLX 8-bit g64:llama.cpp, GGUF Q8_0" \
    --pair "MLX 8-bit g32 vs llama.cpp Q8_0:lfmd, MLX 8-bit g32:llama.cpp, GGUF Q8_0" \
    --pair "MLX 4-bit g64 vs llama.cpp Q4_0:lfmd, MLX 4-bit g64:llama.cpp, GGUF Q4_0" \
    --pair "MLX 4-bit g32 vs llama.cpp Q4_0:lfmd, MLX 4-bit g32:llama.cpp, GGUF Q4_0" \
    "${exact[@]}"
