#!/usr/bin/env bash
# device_decode.sh - the GPU engine's decoding and projector, for real, on a
# GPU machine, in one call (written for a lent H200: nvcc 13 and cuBLASLt,
# but no MPI or HDF5 headers, so it builds the two checks alone from core/'s
# C (a leaf: no MPI, no HDF5) and cuda/, not through the Makefile).
#
#   bash cuda/check/device_decode.sh [OUTDIR]     (OUTDIR: $OUT, else /tmp/device_decode)
#
#   1. build (about 2 minutes on 16 cores): build/device/engine_check and
#      build/device/gpu_check for sm_90;
#   2. engine_check: the engine on the model contract against core/model.c,
#      the trainable projector against core/projector.c, greedy decoding with
#      the KV cache against core/decode.c on a trained model, also with
#      embedding rows in the prompts (greedy_decode_embeds), and evaluation's
#      score_batch (log-probs, argmax, batch-invariance at other shapes: on a
#      GPU cuBLASLt may pick another kernel per shape, which this measures)
#      (the same checks as tests/t_gpu_contract.sh in the emulator, with real kernels);
#   3. gpu_check --sections device,ops: every op against the CPU backend,
#      the projector's bias and GELU and the KV cache's write and decode
#      attention included, at medium and 8B shapes;
#   4. engine_check --bench: decode tokens/s with the KV cache against a full
#      recompute per token, config/model/1b.cfg's shape, 8 x 128 new tokens.
# Everything is also written to OUTDIR (*.txt, gpu_ops.json). Exit: 0 all
# passed, else the first failing step's status. Expect 5 to 7 minutes in all.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-/tmp/device_decode}}
mkdir -p "$out"
b=build/device
mkdir -p "$b"
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}
say() { echo "== $*" | tee -a "$out/device_decode.txt"; }
say "device_decode on $(uname -n), $(date -u +%Y-%m-%dT%H:%M:%SZ), nvcc $("$NVCC" --version | tail -n 1)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
  --format=csv,noheader 2>&1 | tee -a "$out/device_decode.txt"

# cuBLASLt: the toolkit's, else the nvidia-cublas wheel's.
lt=$(ls "$CUDA_HOME"/lib64/libcublasLt.so* "$CUDA_HOME"/targets/x86_64-linux/lib/libcublasLt.so* 2>/dev/null | head -n 1)
[ -n "$lt" ] || lt=$(find / -name 'libcublasLt.so.13*' -not -path '/proc/*' 2>/dev/null | head -n 1)
[ -n "$lt" ] || { say "FAIL: no libcublasLt.so.13"; exit 1; }
ltdir=$(dirname "$lt")
[ -e "$ltdir/libcublasLt.so" ] || ln -sf "$(basename "$lt")" "$b/libcublasLt.so"
export LD_LIBRARY_PATH="$ltdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "cuBLASLt: $lt"

t0=$(date +%s)
cflags="-O3 -std=c11 -D_GNU_SOURCE -fopenmp -Icore"
nvflags="-O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -Icore -Impi -Istages -Icuda"
jobs=${JOBS:-$(nproc)}
compile() { # one source file into $b (run by xargs, JOBS at a time)
  case $1 in
    *.c) cc $cflags -c "$1" -o "$b/$(basename "$1" .c).o" ;;
    *.cu) "$NVCC" $nvflags -c "$1" -o "$b/$(basename "$1" .cu).cu.o" ;;
  esac
}
export -f compile
export b cflags nvflags NVCC
printf '%s\n' core/{backend_cpu,blas,error,rng,model,optim,decode,projector}.c cuda/*.cu cuda/check/engine_check.cu \
  cuda/check/gpu_check.cu | xargs -P "$jobs" -I{} bash -c 'compile {}' >>"$out/build.txt" 2>&1 ||
  { cat "$out/build.txt"; say "FAIL: build"; exit 1; }
objs="$(ls $b/*.o | grep -v -e engine_check.cu.o -e gpu_check.cu.o | tr '\n' ' ')"
libs="-L$b -L$ltdir -L$CUDA_HOME/lib64 -lcublasLt -lcudart_static -fopenmp -ldl -lrt -lpthread -lm"
for prog in engine_check gpu_check; do
  g++ -o "$b/$prog" "$b/$prog.cu.o" $objs $libs 2>>"$out/build.txt" || { cat "$out/build.txt"; say "FAIL: link $prog"; exit 1; }
done
say "built in $(( $(date +%s) - t0 )) s"

status=0
step() { # name, command...: runs it, keeps its output, remembers the first failure
  local name=$1; shift
  say "$name"
  "$@" 2>&1 | tee "$out/$name.txt"
  local s=${PIPESTATUS[0]}
  say "$name: exit $s"
  [ $s -eq 0 ] || [ $status -ne 0 ] || status=$s
}
step engine_check timeout 300 "$b/engine_check"
step gpu_ops timeout 200 "$b/gpu_check" --sections device,ops --json "$out/gpu_ops.json"
step decode_bench timeout 300 "$b/engine_check" --bench
say "done: exit $status"
exit $status
