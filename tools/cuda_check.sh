#!/usr/bin/env bash
# One-call CUDA check for the GPU machine: builds lfmd's CUDA backend with CMake
# (-DLFMD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a), runs every CUDA kernel test against its CPU
# twin, runs the golden models on the GPU (logits vs CPU f32 and HF, greedy tokens, chunked,
# batched, two-stage split, 4-bit models, memory limit, unload/reload), then times a 1.2B-shaped
# bf16 LFM2 (tools/gen_model.py --preset lfm2-1.2b; also with the previous bf16 matvec kernel),
# its MLX q4 (group 64) and GGUF Q4_0 copies, and the embedded router. Log: $OUT/cuda_check.log.
#
#   tools/cuda_check.sh --snapshot   (here) copy HEAD's build inputs into .cudasnap/ (ignored) so
#                                    the device builds committed code, not others' edits in flight
#   tools/cuda_check.sh              (device) build + check + time; reads .cudasnap if present
# Build dependencies missing on the device (pcre2, utf8proc, libmicrohttpd) are unpacked from
# .cudadeps/*.deb (fetch with: cd .cudadeps && apt-get download libpcre2-dev libpcre2-8-0
# libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2 libmicrohttpd-dev
# libmicrohttpd12). Both folders travel with `carry`.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ "${1:-}" = "--snapshot" ]; then
    rm -rf .cudasnap && mkdir -p .cudasnap
    git archive HEAD CMakeLists.txt cmake src tests/CMakeLists.txt tests/check.h tests/golden_util.h \
        tests/engine_collect.h tests/cuda \
        bench examples include | tar -x -C .cudasnap
    # tests/<tier> folders other than cuda are globbed by tests/CMakeLists.txt: keep them empty.
    du -sh .cudasnap
    exit 0
fi
SWEEP=0
[ "${1:-}" = "--sweep" ] && SWEEP=1   # build the bench only; time 4-bit / bf16 variants, ncu
OUT=${OUT:-/tmp/cuda_out}
mkdir -p "$OUT"
LOG=$OUT/cuda_check.log
exec > >(tee "$LOG") 2>&1
SRC=$ROOT
[ -d .cudasnap/src ] && SRC=$ROOT/.cudasnap
echo "== source: $SRC"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader || true
nvcc --version | tail -1
if ! pkg-config --exists libpcre2-8 libutf8proc libmicrohttpd 2>/dev/null && ls .cudadeps/*.deb >/dev/null 2>&1; then
    D=/tmp/lfmd-deps
    mkdir -p $D
    for f in .cudadeps/*.deb; do dpkg -x "$f" $D; done
    # libmicrohttpd.pc names gnutls under Requires.private; the library itself is on the system.
    for p in gnutls; do pkg-config --exists $p 2>/dev/null ||
        printf 'Name: %s\nDescription: stub\nVersion: 3.8.0\nLibs:\nCflags:\n' $p \
            > $D/usr/lib/x86_64-linux-gnu/pkgconfig/$p.pc; done
    export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$D
    export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
    export LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu
    echo "== build deps from .cudadeps"
fi
B=/tmp/lfmd-cuda-build
GEN=""
command -v ninja >/dev/null && GEN="-G Ninja"
t0=$(date +%s)
cmake -S "$SRC" -B $B $GEN -DLFMD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=Release \
    > $OUT/cmake.log 2>&1 || { tail -30 $OUT/cmake.log; echo "CONFIGURE FAILED"; }
cmake --build $B -j16 --target cuda_test_cuda_kernels cuda_test_cuda_model cuda_test_cuda_engine lfmd-cuda-bench 2>&1 | tail -15
echo "== build $(( $(date +%s) - t0 )) s"
declare -A RES
T0=$(date +%s)
run() { # name, timeout, command... (stdout unbuffered: a killed run keeps its output)
    local name=$1 to=$2; shift 2
    echo "== $name (at $(( $(date +%s) - T0 )) s)"
    timeout "$to" stdbuf -oL "$@"
    local rc=$?
    RES[$name]=$rc
    echo "== $name rc=$rc"
}
if [ $SWEEP = 1 ]; then
    M=/tmp/lfm2-1.2b
    python3 tools/gen_model.py --preset lfm2-1.2b --seed 3 --out $M --jobs 8 > $OUT/gen.log 2>&1
    $B/src/lfmd-cuda-bench --quantize mlx4 $M $M-mlx4
    for r in 4 2 1; do LFMD_CUDA_Q4_ROWS=$r run q4_rows$r 60 $B/src/lfmd-cuda-bench $M-mlx4; done
    LFMD_CUDA_NO_NORM_FUSE=1 run q4_nofuse 60 $B/src/lfmd-cuda-bench $M-mlx4
    run bf16 60 $B/src/lfmd-cuda-bench $M
    LFMD_CUDA_NO_NORM_FUSE=1 run bf16_nofuse 60 $B/src/lfmd-cuda-bench $M
    if command -v ncu >/dev/null; then
        LFMD_CUDA_NO_GRAPHS=1 timeout 150 ncu --section SpeedOfLight --section Occupancy --section WarpStateStats \
            --section LaunchStats -k regex:k_mv -s 200 -c 4 $B/src/lfmd-cuda-bench $M-mlx4 > $OUT/ncu.txt 2>&1
        grep -E "k_mv|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers|Stall|Warp Cycles|Issued Warp|Block Limit|Grid Size" $OUT/ncu.txt | head -120
    else
        echo "no ncu"
    fi
    exit 0
fi
run kernels 180 $B/src/cuda_test_cuda_kernels
run golden 300 $B/src/cuda_test_cuda_model
# the engine on the GPU: greedy steps on the GPU vs logits to the host (same texts), CPU engine
run engine 120 $B/src/cuda_test_cuda_engine
M=/tmp/lfm2-1.2b
t1=$(date +%s)
python3 tools/gen_model.py --preset lfm2-1.2b --seed 3 --out $M --jobs 8 > $OUT/gen.log 2>&1 || tail -5 $OUT/gen.log
echo "== generated $M in $(( $(date +%s) - t1 )) s: $(du -sh $M | cut -f1)"
# 4-bit copies (MLX q4 group 64, GGUF Q4_0) of the same weights, kept 4-bit on the GPU
# (wait on the pids: a bare `wait` also waits for the tee of this script's output)
$B/src/lfmd-cuda-bench --quantize mlx4 $M $M-mlx4 & p1=$!
$B/src/lfmd-cuda-bench --quantize q4_0 $M $M-q4_0.gguf & p2=$!
$B/src/lfmd-cuda-bench --quantize bf16 $M $M-bf16.gguf & p3=$!   # same bf16 weights + a GGUF vocabulary
wait $p1 $p2 $p3
LFMD_CUDA_PROFILE=1 run bench 200 $B/src/lfmd-cuda-bench $M models/lfm2-router
grep '^greedy 32' $LOG | head -1 > $OUT/greedy_1gpu.txt
# before/after in the same call: the previous bf16 matvec kernel
LFMD_CUDA_MV_OLD=1 run bench_mv_old 120 $B/src/lfmd-cuda-bench $M
LFMD_CUDA_PROFILE=1 run bench_mlx4 120 $B/src/lfmd-cuda-bench $M-mlx4
# the RMSNorm as its own kernel instead of each 4-bit matvec block's prologue
LFMD_CUDA_NO_NORM_FUSE=1 run bench_mlx4_nofuse 60 $B/src/lfmd-cuda-bench $M-mlx4
run bench_q4_0 120 $B/src/lfmd-cuda-bench $M-q4_0.gguf
# attention splits along the sequence (default: by shape, 9 at batch 1 on 132 SMs); measured
# 2026-11-27 on H200: 2 and 4 splits no faster. LFMD_CUDA_ATT_SPLITS=N lfmd-cuda-bench MODEL
# batch 64 through the engine (64 concurrent greedy requests of 256 tokens), both sampling paths
run engine_b64 200 $B/src/cuda_test_cuda_engine $M-bf16.gguf 64 256 64
NG=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$NG" -ge 2 ]; then
    # Layer sharding over two physical GPUs: same greedy tokens as one GPU, and timings.
    LFMD_CUDA_DEVICES=cuda:0,cuda:1 run bench_2gpu 200 $B/src/lfmd-cuda-bench $M
    grep '^greedy 32' $LOG | tail -1 > $OUT/greedy_2gpu.txt
    if cmp -s $OUT/greedy_1gpu.txt $OUT/greedy_2gpu.txt; then RES[sharded_tokens]=0; else RES[sharded_tokens]=1; fi
    echo "== sharded greedy tokens identical to one GPU: $([ ${RES[sharded_tokens]} = 0 ] && echo yes || echo NO)"
fi
echo "== summary"
for k in kernels golden engine bench bench_mv_old bench_mlx4 bench_mlx4_nofuse bench_q4_0 engine_b64 bench_2gpu sharded_tokens; do echo "$k rc=${RES[$k]:-not run}"; done
