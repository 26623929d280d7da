#!/usr/bin/env bash
# The GPU backend, on a machine without a GPU (CI):
#   1. the CPU emulator build of cuda/ (cuda/emu/, AddressSanitizer + UBSan)
#      runs the check program's CPU comparisons: every op, flash and GEMM
#      attention, a small model trained 3 steps on the GPU engine against core/model.c, the
#      block benchmark's code path. Needs only the host compiler.
#   2. with a CUDA toolkit: the real objects and build/gpu_check compile and
#      link (presight too); without a GPU the check says so plainly and exits
#      77; with one it runs its quick mode.
# Exit: 0 pass, 77 skip (no toolkit for part 2: part 1 still must pass), 1 fail.
set -uo pipefail
cd "$(dirname "$0")/.."
fail() { echo "FAIL: $*"; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# --- 1. the emulator
make --no-print-directory build/gpu_check_emu >"$log" 2>&1 || { cat "$log"; fail "build of the emulator check"; }
ASAN_OPTIONS=detect_leaks=0 GPU_CHECK_TIMEOUT_SCALE=${GPU_CHECK_TIMEOUT_SCALE:-8} \
  ./build/gpu_check_emu --quick --sections ops,attention,step,gemm,blocks >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  grep -E 'FAIL|ERROR|emu:|runtime error' "$log" | head -n 40
  tail -n 30 "$log"
  fail "emulated GPU check exited $rc"
fi
tail -n 1 "$log" | sed 's/^/emulator: /'

# --- 2. the real build
nvcc=$(command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
if [ -z "$nvcc" ]; then
  echo "no CUDA toolkit (nvcc) here: the real GPU build is not checked"
  exit 77
fi
make --no-print-directory build/gpu_check build/presight >"$log" 2>&1 || { cat "$log"; fail "build"; }

# presight links the CUDA objects with no unresolved symbol, and gpu_check
# carries the kernels (its fatbinary names the flash attention kernels).
lib_syms=$(nm -C build/libpresight.a 2>/dev/null)
chk_syms=$(nm -C build/gpu_check 2>/dev/null)
grep -q ' T gpu_matmul_forward' <<<"$lib_syms" || fail "libpresight.a has no GPU ops"
grep -q ' T gpu_attention_backward' <<<"$chk_syms" || fail "gpu_check lacks the attention op"
grep -aq flash_fwd2_kernel build/gpu_check || fail "gpu_check carries no flash attention kernel"
./build/presight >/dev/null 2>&1
[ $? -le 2 ] || fail "build/presight does not start"

out=$(./build/gpu_check --quick 2>&1)
rc=$?
case $rc in
  77)
    echo "$out" | tail -n 1 | grep -q '^no usable GPU (' || { echo "$out"; fail "exit 77 without the plain 'no usable GPU (...)' message last"; }
    echo "$out" | tail -n 1
    echo "real build: compiled and linked; no GPU here (the emulator check above passed)"
    exit 0 ;;
  0) echo "GPU present: quick check passed" ;;
  *) echo "$out" | tail -n 60; fail "gpu_check exited $rc" ;;
esac
