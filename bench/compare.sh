#!/usr/bin/env bash
# lfmd vs llama.cpp (node-llama-cpp 3.21.1) on the same GGUF files, interleaved run by run, plus
# lfmd on the MLX-layout equivalents. Random-weight LFM2 models are generated with
# tools/gen_model.py and converted with `lfmd quantize` (cached in --dir).
# Prints a markdown table of medians: prompt tok/s, decode tok/s, load ms, peak RSS. lfmd runs
# twice per rep: mapping the file (the default) and with --no-mmap (weights read into huge-page
# memory, Q4_0/Q8_0 matrices repacked there for the decode kernel; load ms then includes
# reading the file). lfmd's KV cache is f16 (--kv-type, via LFMD_KV_TYPE), as llama.cpp's
# default and lfmd serve's. When bench_bandwidth is found (next to the lfmd build, or
# LFMD_BW_BIN), the read-bandwidth ceiling is measured before and after the runs (2 threads,
# 2 MiB pages, best of 5) and each decode row gets its file bytes x tok/s as a share of the
# better of the two.
#
#   bench/compare.sh [--shapes "350m 1.2b"] [--types "q4_0 q8_0 f16"] [--threads 2]
#                    [--pp 512] [--tg 128] [--reps 3] [--dir /tmp/lfmd-compare] [--no-mlx]
#                    [--kv-type f16|f32|q8]
# Needs: a built lfmd (LFMD_BIN or build/src/lfmd) and `npm install` done in bench/llamacpp.
# SPDX-License-Identifier: MIT
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${LFMD_BIN:-$ROOT/build/src/lfmd}
SHAPES="350m 1.2b" TYPES="q4_0 q8_0 f16" THREADS=2 PP=512 TG=128 REPS=3 DIR=/tmp/lfmd-compare MLX=1
KV=f16
while [ $# -gt 0 ]; do
    case $1 in
    --shapes) SHAPES=$2; shift 2 ;;
    --types) TYPES=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --pp) PP=$2; shift 2 ;;
    --tg) TG=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --no-mlx) MLX=0; shift ;;
    --kv-type) KV=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$BIN" ] || { echo "lfmd binary not found: $BIN (set LFMD_BIN)" >&2; exit 1; }
[ -d "$HERE/llamacpp/node_modules/node-llama-cpp" ] ||
    { echo "run 'npm install' in $HERE/llamacpp first" >&2; exit 1; }
mkdir -p "$DIR"

# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
jget() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(o[process.argv[1]])})' "$1"; }

# Shape names: 350m, 700m, 1.2b, 2.6b (LFM2) or tinyllama (TinyLlama-1.1B, Llama architecture).
preset_of() { case $1 in tinyllama) echo tinyllama-1.1b ;; *) echo "lfm2-$1" ;; esac; }

prepare() { # shape type -> path of the model file/dir
    local shape=$1 type=$2 name
    name=$(preset_of "$1")
    local hf="$DIR/$name-bf16"
    if [ ! -f "$hf/model.safetensors" ]; then
        /usr/bin/python3 "$ROOT/tools/gen_model.py" --preset "$name" --seed 1 --out "$hf" >&2
    fi
    case $type in
    mlx4 | mlx8)
        local out="$DIR/$name-$type"
        [ -d "$out" ] || "$BIN" quantize "$hf" "$out" --bits "${type#mlx}" >&2
        echo "$out" ;;
    *)
        local out="$DIR/$name-$type.gguf"
        [ -f "$out" ] || "$BIN" quantize "$hf" "$out" --format gguf --type "$type" >&2
        echo "$out" ;;
    esac
}

lfmd_once() { # model [extra flag] -> "pp tg load_ms rss_mib"
    local j
    j=$(LFMD_KV_TYPE=$KV "$BIN" bench -m "$1" -p "$PP" -n "$TG" -t "$THREADS" -r 1 --json ${2:-} \
        2>/dev/null | tail -1)
    echo "$(echo "$j" | jget prefill_tok_s) $(echo "$j" | jget decode_tok_s) $(echo "$j" | jget load_ms)" \
         "$(( $(echo "$j" | jget peak_rss_bytes) / 1048576 ))"
}

llama_once() {
    local j
    j=$(cd "$HERE/llamacpp" && node run.mjs bench "$1" --threads "$THREADS" --pp "$PP" --tg "$TG" --reps 1 2>/dev/null | tail -1)
    echo "$(echo "$j" | jget pp_tok_s) $(echo "$j" | jget tg_tok_s) $(echo "$j" | jget load_ms) $(echo "$j" | jget peak_rss_mib)"
}

BW=${LFMD_BW_BIN:-$(dirname "$BIN")/../bench/bench_bandwidth}
ceiling() { # best 2 MiB-page read GB/s at $THREADS threads, or empty
    [ -x "$BW" ] || return 0
    "$BW" 2048 "$THREADS" 5 | awk -v t="$THREADS" '/THP/ {h = 1} h && $1 == "threads" && $2 == t ":" {print $3}'
}
CEIL=$(mktemp)
ceiling >>"$CEIL"

row() { # label engine file results-file
    local f=$4 tg share=""
    tg=$(cut -d' ' -f2 "$f" | median)
    [ -n "${CEIL_BEST:-}" ] &&
        share=$(awk -v b="$(du -sbL "$3" | cut -f1)" -v t="$tg" \
            -v c="$CEIL_BEST" 'BEGIN {printf " %.0f%% |", 100 * b * t / 1e9 / c}')
    printf "| %s | %s | %.1f | %.1f | %.0f | %.0f |%s\n" "$1" "$2" \
        "$(cut -d' ' -f1 "$f" | median)" "$tg" \
        "$(cut -d' ' -f3 "$f" | median)" "$(cut -d' ' -f4 "$f" | median)" "$share"
}

# rows are printed after the closing ceiling run (the share needs it)
OUT=$(mktemp)
for shape in $SHAPES; do
    for type in $TYPES; do
        m=$(prepare "$shape" "$type")
        a=$(mktemp) b=$(mktemp) c=$(mktemp)
        for r in $(seq "$REPS"); do
            lfmd_once "$m" >>"$a"
            lfmd_once "$m" --no-mmap >>"$c"
            llama_once "$m" >>"$b"
        done
        echo "$shape $type|lfmd|$m|$(cat "$a" | tr '\n' ';')" >>"$OUT"
        echo "$shape $type|lfmd --no-mmap|$m|$(cat "$c" | tr '\n' ';')" >>"$OUT"
        echo "$shape $type|llama.cpp|$m|$(cat "$b" | tr '\n' ';')" >>"$OUT"
        rm -f "$a" "$b" "$c"
    done
    if [ "$MLX" = 1 ]; then
        for type in mlx4 mlx8; do
            m=$(prepare "$shape" "$type")
            a=$(mktemp)
            for r in $(seq "$REPS"); do lfmd_once "$m" >>"$a"; done
            echo "$shape $type|lfmd|$m|$(cat "$a" | tr '\n' ';')" >>"$OUT"
            rm -f "$a"
        done
    fi
done
ceiling >>"$CEIL"
CEIL_BEST=$(sort -g "$CEIL" | tail -1)

echo "lfmd vs llama.cpp: $THREADS threads, pp$PP / tg$TG, median of $REPS interleaved runs, lfmd KV $KV ($(date -u +%F), $(nproc) CPUs)"
[ -n "$CEIL_BEST" ] && echo "read ceiling (bench_bandwidth 2048 $THREADS 5, 2 MiB pages) before / after: $(tr '\n' ' ' <"$CEIL")GB/s"
echo
if [ -n "$CEIL_BEST" ]; then
    echo "| model | engine | prompt tok/s | decode tok/s | load ms | peak RSS MiB | decode / ceiling |"
    echo "|---|---|---|---|---|---|---|"
else
    echo "| model | engine | prompt tok/s | decode tok/s | load ms | peak RSS MiB |"
    echo "|---|---|---|---|---|---|"
fi
while IFS='|' read -r label engine m res; do
    f=$(mktemp)
    echo "$res" | tr ';' '\n' | grep . >"$f"
    row "$label" "$engine" "$m" "$f"
    rm -f "$f"
done <"$OUT"
rm -f "$OUT" "$CEIL"
exit 0
