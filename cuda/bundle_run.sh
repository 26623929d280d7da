#!/usr/bin/env bash
# run.sh - the presight GPU check, from this bundle (made by `make gpu-bundle`).
#
#   bash run.sh [gpu_check options: --quick, --sections ops,gemm,...]
#
# Finds the machine's CUDA libraries (cuBLASLt is needed, NCCL is optional:
# set PRESIGHT_CUDA_LIBS to a folder to choose), runs a short presight smoke
# test (CPU, through the bundled OpenMPI/HDF5), then bin/gpu_check (its table),
# then train.sh: presight train on the GPU (gpu_train.txt). gpu.json and gpu_check.log go to $OUT when it is set,
# else into this folder. Exit status: gpu_check's (0 pass, 1 a check failed,
# 77 no usable GPU).
set -u
B=$(cd "$(dirname "$0")" && pwd)
dest=${OUT:-$B}
mkdir -p "$dest"
log="$dest/gpu_check.log"
: >"$log"
say() { echo "$*" | tee -a "$log"; }

say "== presight gpu-bundle on $(uname -n), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 | tee -a "$log"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv 2>/dev/null | tee -a "$log"

# The directory holding a library (soname), searched where CUDA installs go,
# then the loader cache, then Python wheels (nvidia-cublas, nvidia-nccl-cu13).
find_lib() {
  local name=$1 d p
  for d in ${PRESIGHT_CUDA_LIBS:-} ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib \
    /usr/lib/x86_64-linux-gnu /usr/local/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib /opt/nvidia/lib64; do
    [ -e "$d/$name" ] && { echo "$d"; return 0; }
  done
  p=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n { print $NF; exit }')
  [ -n "$p" ] && [ -e "$p" ] && { dirname "$p"; return 0; }
  p=$(find /opt /usr/local /usr/lib /root /home -maxdepth 9 -name "$name" \( -type f -o -type l \) 2>/dev/null | head -n 1)
  [ -n "$p" ] && { dirname "$p"; return 0; }
  return 1
}

cuda_path=""
for lib in libcublasLt.so.13 libnccl.so.2; do
  if d=$(find_lib $lib); then
    say "found $lib in $d"
    case ":$cuda_path:" in *":$d:"*) ;; *) cuda_path="${cuda_path:+$cuda_path:}$d" ;; esac
    [ $lib = libnccl.so.2 ] && export PRESIGHT_NCCL="${PRESIGHT_NCCL:-$d/$lib}"
  else
    say "NOT FOUND: $lib (set PRESIGHT_CUDA_LIBS=/folder/with/it)"
  fi
done
export PRESIGHT_CUDA_LIB_PATH="$cuda_path"
export LD_LIBRARY_PATH="$B/lib${cuda_path:+:$cuda_path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PRESIGHT_BLAS="${PRESIGHT_BLAS:-$B/lib/libblis.so.4}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if ldd "$B/bin/gpu_check" 2>&1 | grep -q 'not found'; then
  say "gpu_check cannot start, libraries missing:"
  ldd "$B/bin/gpu_check" 2>&1 | grep 'not found' | tee -a "$log"
  exit 1
fi

# presight itself, on the CPU: the bundled MPI (singleton), HDF5, libconfig.
smoke=$(mktemp -d)
if timeout 60 "$B/bin/presight" plan "$B/config/model/1b.cfg" >"$smoke/plan.log" 2>&1 &&
  timeout 90 "$B/bin/presight" train "$B/config/tiny.cfg" run.dir="$smoke/run" train.steps=3 \
    data.path="$B/data/tiny.txt" >"$smoke/train.log" 2>&1 && [ -s "$smoke/run/final.json" ]; then
  say "presight smoke test: plan and a 3-step CPU training run passed"
else
  say "presight smoke test FAILED (the GPU check below is independent of it):"
  tail -n 20 "$smoke"/*.log 2>/dev/null | tee -a "$log"
fi
rm -rf "$smoke"

say "== bin/gpu_check $*"
set -o pipefail
timeout "${GPU_CHECK_WALL:-540}" "$B/bin/gpu_check" --json "$dest/gpu.json" "$@" 2>&1 | tee -a "$log"
rc=$?
[ $rc -eq 124 ] && say "gpu_check: killed after ${GPU_CHECK_WALL:-540} s (GPU_CHECK_WALL)"
say "gpu_check exit status $rc; results in $dest/gpu.json, log in $log"
set +o pipefail

# Variants (PRESIGHT_COMPARE="PRESIGHT_GPU_ATTENTION=gemm ..."): the attention checks and the
# block speed again with each setting, beside the default's.
for setting in ${PRESIGHT_COMPARE:-}; do
  [ $rc -eq 77 ] && break
  say "== bin/gpu_check --sections attention,blocks with $setting"
  env "$setting" timeout 120 "$B/bin/gpu_check" --sections attention,blocks \
    --json "$dest/gpu_$(echo "$setting" | tr -c 'A-Za-z0-9\n' _).json" 2>&1 | tail -n 24 | tee -a "$log"
done
# presight train itself on this GPU (train.sh): GPU against CPU, the 1B config's speed and memory.
if [ "${PRESIGHT_SKIP_TRAIN:-0}" != 1 ] && [ $rc -ne 77 ]; then
  timeout "${GPU_TRAIN_WALL:-420}" bash "$B/train.sh" 2>&1 | tee -a "$log"
fi
exit $rc
