#!/usr/bin/env bash
# Slow tier: regenerates the 350M-, 1.2B- and TinyLlama-shaped golden models (bit-identical to the
# ones transformers ran on; weights are not committed) and checks lfmd against their references.
# Models are cached in $LFMD_GOLDEN_MODELS (default: $LFMD_BUILD/golden-models, ~6 GB).
set -eu
SRC=${LFMD_SRC:-.}
OUT=${LFMD_GOLDEN_MODELS:-${LFMD_BUILD:-build}/golden-models}
mkdir -p "$OUT"
for name in lfm2-350m lfm2-1.2b tinyllama-1.1b; do
    [ -f "$SRC/tests/golden/data/$name/reference.json" ] || continue
    if [ ! -f "$OUT/$name/model.safetensors" ]; then
        /usr/bin/python3 "$SRC/tools/gen_model.py" --golden "$name" --out "$OUT/$name"
    fi
done
LFMD_GOLDEN_MODELS=$OUT "${LFMD_BUILD:-build}/tests/golden_test_model_golden"
