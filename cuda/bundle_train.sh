#!/usr/bin/env bash
# train.sh - presight train on this GPU, from the bundle (run.sh calls it
# after gpu_check, with the CUDA libraries on the path):
#  1. the tiny model trained by the GPU engine (ddp; fsdp through NCCL at
#     world size 1) against the CPU backend, step by step;
#  2. config/gpu-1b.cfg (1B, seq 2048, micro_batch 4) through train_bench
#     under ddp and fsdp: tokens/s, MFU against the GEMM peak gpu_check
#     measured (gpu.json), the allocator's peak against presight plan.
# Writes train_*.json and gpu_train.txt into $OUT (or the bundle).
set -u
B=$(cd "$(dirname "$0")" && pwd)
dest=${OUT:-$B}
report="$dest/gpu_train.txt"
: >"$report"
say() { echo "$*" | tee -a "$report"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

field() { sed "s/.*\"$2\":\([^,}]*\).*/\1/" "$1"; }
worst() { # a-dir b-dir field
  paste <(field "$1/metrics.jsonl" "$3") <(field "$2/metrics.jsonl" "$3") | awk '
    { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($2 > 0 ? $2 : -$2); if (r > w) w = r } END { printf "%.2e over %d steps", w, n }'
}

say "== presight train on the GPU: tiny model, GPU engine against the CPU backend (20 steps)"
tiny() { # name backend [key=value ...]
  local name=$1 backend=$2; shift 2
  timeout 120 "$B/bin/presight" train "$B/config/tiny.cfg" data.path="$B/data/tiny.txt" run.dir="$tmp/$name" \
    run.backend="\"$backend\"" "$@" >"$tmp/$name.log" 2>&1 || { say "FAILED: $name"; tail -5 "$tmp/$name.log" | tee -a "$report"; }
}
tiny cpu cpu
tiny gpu-ddp cuda
tiny gpu-fsdp cuda parallel.strategy='"fsdp"'
grep -m1 "presight train:" "$tmp/gpu-fsdp.log" | tee -a "$report"
for g in gpu-ddp gpu-fsdp; do
  [ -s "$tmp/$g/final.json" ] || continue
  say "$g: loss $(worst "$tmp/$g" "$tmp/cpu" loss), grad norm $(worst "$tmp/$g" "$tmp/cpu" grad_norm) (worst relative difference)"
  say "$g final.json: $(cat "$tmp/$g/final.json")"
done

say "== config/gpu-1b.cfg (1B; @3b: config/model/3b.cfg's shape), seq 2048, micro_batch 4, 8 timed steps"
head -c 6000000 /dev/urandom | base64 -w 0 >"$tmp/text.txt"
peak=$(sed -n 's/.*"gemm_peak_tflops": \([0-9.]*\).*/\1/p' "$dest/gpu.json" 2>/dev/null | head -1)
shape_3b="model.dim=3072 model.layers=28 model.heads=24 model.kv_heads=8 model.ffn_dim=8192"
# Runs: strategy[:NAME=value, an environment setting][@3b] (PRESIGHT_TRAIN_RUNS to choose).
for run in ${PRESIGHT_TRAIN_RUNS:-ddp fsdp}; do
  spec=${run%@*} shape=""
  [ "$spec" != "$run" ] && shape=$shape_3b
  strategy=${spec%%:*} setting=PRESIGHT_NOTHING=
  [ "$spec" != "$strategy" ] && setting=${spec#*:}
  out="$dest/train_$(echo "$run" | tr -c 'A-Za-z0-9\n' _).json"
  # shellcheck disable=SC2086
  planned=$("$B/bin/presight" plan "$B/config/gpu-1b.cfg" $shape --gpus-per-node 1 --global-batch 4 --micro-batch 4 \
    --gpu-mem 141 2>&1 | sed -n 's/^gpu_allocator_bytes=\([0-9]*\),.*/\1/p')
  # shellcheck disable=SC2086
  env "$setting" timeout 240 "$B/bin/train_bench" "$B/config/gpu-1b.cfg" $shape \
    data.path="$tmp/text.txt" parallel.strategy="\"$strategy\"" >"$out" 2>"$tmp/run.log" ||
    { say "FAILED: $run"; tail -5 "$tmp/run.log" | tee -a "$report"; continue; }
  tps=$(field "$out" tokens_per_s) gf=$(field "$out" model_gflops) mem=$(field "$out" gpu_peak_bytes)
  used=$(field "$out" gpu_device_used_bytes) mallocs=$(field "$out" gpu_step_mallocs) best=$(field "$out" best_step_s)
  params=$(field "$out" params)
  awk -v s="$run" -v tps="$tps" -v gf="$gf" -v peak="${peak:-0}" -v mem="$mem" -v plan="${planned:-0}" \
    -v used="$used" -v m="$mallocs" -v best="$best" -v params="$params" 'BEGIN {
      printf "%s (%.2fB params): %.0f tokens/s (best step %.3f s), %.1f TFLOP/s model FLOPs", s, params / 1e9, tps, best, gf / 1000
      if (peak > 0) printf ", MFU %.1f%% of the measured GEMM peak %.0f", 100 * gf / 1000 / peak, peak
      printf "\n        allocator peak %.2f GB", mem / 1e9
      if (plan > 0) printf " vs presight plan %.2f GB (ratio %.3f)", plan / 1e9, mem / plan
      printf "; device in use %.2f GB; cudaMalloc calls in a warm step: %d\n", used / 1e9, m }' | tee -a "$report"
done
say "(fsdp's plan figure is for fsdp; ddp at one GPU holds the same units without the gather buffers)"
