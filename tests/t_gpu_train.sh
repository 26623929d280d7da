#!/usr/bin/env bash
# presight train on the GPU engine (cuda/engine.cu), run here on its CPU
# emulator build (build/emu/libpresight-cuda.so, selected with
# PRESIGHT_CUDA_ENGINE), so the trainer's GPU path is checked without a GPU:
#  - ddp, zero1 and fsdp (with a tied head, gradient accumulation, per-block
#    recomputation, no prefetch / no resharding) follow the CPU backend's loss
#    and gradient-norm trajectory within bf16 tolerance, on 1 rank and on 2
#    and 3 ranks (uneven slices) and 4 in hybrid sharding (2 groups of 2)
#    through the emulator's NCCL, which is MPI;
#  - SIGTERM, checkpoint, exit 75, resume: bit-identical to an uninterrupted run;
#    the same checkpoint resumes on the CPU backend;
#  - the allocator's peak equals `presight plan`'s GPU figure (within 2%);
#  - a warm step does no cudaMalloc;
#  - no GPU: run.backend = cuda stops with the reason, auto trains on the CPU;
#    2 ranks without NCCL stop with the reason; running out of GPU memory
#    names the buffer and what to change.
# Tolerances: bf16 activations and weights against fp32: losses within 1e-2
# relative per step (measured about 3e-4), gradient norms within 5e-2.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
bin=build/presight
engine=$PWD/build/emu/libpresight-cuda.so
[ -x "$bin" ] && [ -f "$engine" ] || { echo "SKIP: $bin or $engine not built"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
STEPS=5

train() { # dir backend [key=value ...]
  local dir=$1 backend=$2; shift 2
  PRESIGHT_CUDA_ENGINE=$engine $bin train config/tiny.cfg run.dir="$dir" run.backend="\"$backend\"" \
    train.steps=$STEPS "$@" >"$dir.log" 2>&1 || { tail -20 "$dir.log"; fail "train $dir ($backend $*)"; }
}
field() { sed "s/.*\"$2\":\([^,]*\),.*/\1/" "$1/metrics.jsonl"; }
close() { # gpu-dir cpu-dir field tol what
  paste <(field "$1" "$3") <(field "$2" "$3") | awk -v tol="$4" -v what="$5" '
    { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($2 > 0 ? $2 : -$2); if (r > worst) worst = r }
    END { if (n < 1 || worst > tol) { printf "FAIL: %s: worst relative difference %.3g > %s over %d steps\n", what, worst, tol, n; exit 1 }
          printf "  %-64s worst rel diff %.2e over %d steps\n", what, worst, n }'
}

echo "GPU engine (emulated) against the CPU backend:"
i=0
for opts in 'parallel.strategy="ddp"' 'parallel.strategy="zero1"' 'parallel.strategy="fsdp"' \
  'parallel.strategy="fsdp" model.tied_head=true train.grad_accum=2 parallel.recompute_blocks=true' \
  'parallel.strategy="fsdp" parallel.prefetch=false parallel.reshard_after_forward=false train.grad_accum=3' \
  'parallel.strategy="ddp" model.tied_head=true train.grad_accum=2' \
  'parallel.strategy="fsdp" model.dim=128 model.heads=2 model.kv_heads=1 model.ffn_dim=256'; do
  i=$((i + 1))
  eval "set -- $opts"
  train "$tmp/gpu$i" cuda "$@"
  train "$tmp/cpu$i" cpu "$@"
  grep -q '"backend":"cuda"' "$tmp/gpu$i/final.json" || fail "$opts: final.json does not say cuda"
  grep -q '"gpu_step_mallocs":0,' "$tmp/gpu$i/final.json" || fail "$opts: a warm step called cudaMalloc: $(cat "$tmp/gpu$i/final.json")"
  close "$tmp/gpu$i" "$tmp/cpu$i" loss 1e-2 "loss, $opts"
  close "$tmp/gpu$i" "$tmp/cpu$i" grad_norm 5e-2 "grad norm, $opts"
done

echo "Several ranks (the emulator's NCCL is MPI), against the CPU backend at the same ranks:"
# 16 tokens a sequence: what several ranks add is in the collectives over the parameters,
# which do not depend on it, and the emulator's work halves (an fsdp run on 2 ranks: 7.1 s of
# CPU instead of 15.7 at 32).
train_np() { # dir np backend [key=value ...]: global batch 12 sequences
  local dir=$1 np=$2 backend=$3; shift 3
  PRESIGHT_CUDA_ENGINE=$engine mpirun -np "$np" -x PRESIGHT_CUDA_ENGINE -x PRESIGHT_THREADS $bin train config/tiny.cfg \
    run.dir="$dir" run.backend="\"$backend\"" train.steps=$STEPS train.micro_batch=$((12 / np)) train.seq_len=16 "$@" >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log"; fail "train $dir ($np ranks, $backend $*)"; }
}
i=0
for run in '2 parallel.strategy="ddp"' '2 parallel.strategy="zero1"' '2 parallel.strategy="fsdp"' \
  '3 parallel.strategy="fsdp" model.tied_head=true train.grad_accum=2' '3 parallel.strategy="zero1"' \
  '4 parallel.strategy="fsdp" parallel.shard_group=2' \
  '4 parallel.strategy="zero1" parallel.shard_group=2 train.grad_accum=2' \
  '2 parallel.strategy="fsdp" parallel.reshard_after_forward=false model.tied_head=true train.grad_accum=2'; do
  i=$((i + 1))
  eval "set -- $run"
  np=$1
  shift
  train_np "$tmp/gpu-np$i" "$np" cuda "$@"
  train_np "$tmp/cpu-np$i" "$np" cpu "$@"
  close "$tmp/gpu-np$i" "$tmp/cpu-np$i" loss 1e-2 "loss, $np ranks, $*"
  close "$tmp/gpu-np$i" "$tmp/cpu-np$i" grad_norm 5e-2 "grad norm, $np ranks, $*"
done

echo "SIGTERM, checkpoint, exit 75, resume:"
STEPS=8
train "$tmp/whole" cuda parallel.strategy='"fsdp"'
dir=$tmp/stopped
PRESIGHT_CUDA_ENGINE=$engine $bin train config/tiny.cfg run.dir="$dir" run.backend='"cuda"' train.steps=$STEPS \
  parallel.strategy='"fsdp"' >"$dir.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ "$(wc -l 2>/dev/null <"$dir/metrics.jsonl" || echo 0)" -ge 2 ] && break
  sleep 0.1
done
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 75 ] || { tail "$dir.log"; fail "SIGTERM: exit $rc, expected 75"; }
stopped_at=$(wc -l <"$dir/metrics.jsonl")
[ "$stopped_at" -lt $STEPS ] || fail "the run finished before the signal; nothing resumed"
train "$dir" cuda parallel.strategy='"fsdp"'
grep -q "resumed from" "$dir.log" || fail "no resume: $(cat "$dir.log")"
cmp <(field "$tmp/whole" loss) <(field "$dir" loss) || fail "resumed trajectory differs from the uninterrupted one"
echo "  stopped after step $stopped_at, resumed: losses bit-identical over $STEPS steps"

echo "A GPU checkpoint resumed on the CPU backend:"
dir=$tmp/moved
mkdir -p "$dir"
cp "$tmp/stopped/config.cfg" "$tmp/stopped/metrics.jsonl" "$dir/"
mkdir -p "$dir/checkpoints"
cp "$tmp/stopped/checkpoints/step_$(printf %08d "$stopped_at").h5" "$dir/checkpoints/"
train "$dir" cpu parallel.strategy='"fsdp"'
grep -q "resumed from" "$dir.log" || fail "the CPU run did not resume from the GPU checkpoint: $(cat "$dir.log")"
train "$tmp/cpu-whole" cpu parallel.strategy='"fsdp"'
close "$dir" "$tmp/cpu-whole" loss 1e-2 "loss after step $stopped_at on the CPU, against a CPU-only run"

echo "GPU memory against presight plan (GEMM attention at head_dim 16, flash with a GQA group at 64):"
STEPS=1
for shape in "train.micro_batch=8 train.seq_len=128" \
  "model.dim=128 model.heads=2 model.kv_heads=1 model.ffn_dim=256 train.micro_batch=4 train.seq_len=128"; do
  dir=$tmp/mem
  rm -rf "$dir"
  # shellcheck disable=SC2086
  train "$dir" cuda parallel.strategy='"fsdp"' $shape
  mb=$(echo "$shape" | sed 's/.*train.micro_batch=\([0-9]*\).*/\1/')
  measured=$(sed 's/.*"gpu_peak_mb":\[\([^],]*\).*/\1/' "$dir/final.json")
  # shellcheck disable=SC2086
  planned=$($bin plan config/tiny.cfg $shape --gpus-per-node 1 --global-batch "$mb" --micro-batch "$mb" |
    sed -n 's/^gpu_allocator_bytes=\([0-9]*\),.*/\1/p')
  [ -n "$measured" ] && [ -n "$planned" ] || fail "no figures (measured '$measured', planned '$planned')"
  awk -v m="$measured" -v p="$planned" -v s="$shape" 'BEGIN { r = m * 1048576 / p;
    printf "  %-90s peak %.2f MiB, plan %.2f MiB: ratio %.4f\n", s, m, p / 1048576, r; exit (r < 0.98 || r > 1.02) }' ||
    fail "measured GPU peak differs from the plan by more than 2%"
done

echo "Failures (no GPU, no NCCL, out of GPU memory):"
out=$(EMU_NO_GPU=1 PRESIGHT_CUDA_ENGINE=$engine $bin train config/tiny.cfg run.dir="$tmp/none" run.backend='"cuda"' 2>&1) &&
  fail "run.backend = cuda without a GPU did not fail: $out"
echo "$out" | grep -q 'run.backend = "cuda": no usable GPU (cudaGetDeviceCount: error 35' ||
  fail "unclear message without a GPU: $out"
echo "  cuda: $(echo "$out" | tail -1)"
out=$(EMU_NO_GPU=1 PRESIGHT_CUDA_ENGINE=$engine $bin train config/tiny.cfg run.dir="$tmp/auto" run.backend='"auto"' \
  train.steps=2 2>&1) || fail "run.backend = auto without a GPU failed: $out"
echo "$out" | grep -q 'no usable GPU.*using the CPU backend' || fail "auto did not say why it uses the CPU: $out"
grep -q '"backend":"cpu"' "$tmp/auto/final.json" || fail "auto without a GPU did not train on the CPU"
echo "  auto: $(echo "$out" | grep -m1 'using the CPU backend')"
out=$(EMU_NO_NCCL=1 PRESIGHT_CUDA_ENGINE=$engine mpirun -np 2 -x EMU_NO_NCCL -x PRESIGHT_CUDA_ENGINE $bin train \
  config/tiny.cfg run.dir="$tmp/two" run.backend='"cuda"' 2>&1) && fail "2 GPU ranks without NCCL did not fail: $out"
echo "$out" | grep -q "2 GPU ranks need NCCL" || fail "unclear message for 2 ranks without NCCL: $out"
echo "  2 ranks: $(echo "$out" | grep -m1 'need NCCL')"
out=$(EMU_MEM_LIMIT=40000000 PRESIGHT_CUDA_ENGINE=$engine $bin train config/tiny.cfg run.dir="$tmp/oom" \
  run.backend='"cuda"' model.vocab=65536 train.micro_batch=8 train.seq_len=128 2>&1) &&
  fail "a model too large for the (emulated) GPU memory did not fail: $out"
echo "$out" | grep -q 'out of GPU memory for logits.*lower train.micro_batch' || fail "unclear out-of-memory message: $out"
[ ! -e "$tmp/oom/final.json" ] || fail "a failed run wrote final.json"
# One rank of two runs out of memory: the job must end (MPI_Abort), not hang
# with the other rank waiting in a collective.
printf '#!/bin/sh\n[ "$OMPI_COMM_WORLD_RANK" = 1 ] && export EMU_MEM_LIMIT=40000000\nexec "$@"\n' >"$tmp/rank1-small.sh"
chmod +x "$tmp/rank1-small.sh"
start=$(date +%s)
out=$(PRESIGHT_CUDA_ENGINE=$engine timeout 120 mpirun -np 2 -x PRESIGHT_CUDA_ENGINE "$tmp/rank1-small.sh" $bin train \
  config/tiny.cfg run.dir="$tmp/oom2" run.backend='"cuda"' model.vocab=65536 train.micro_batch=8 \
  train.seq_len=128 2>&1) && fail "one rank out of GPU memory did not fail the job: $out"
[ $(($(date +%s) - start)) -lt 110 ] || fail "one rank out of GPU memory: the job hung until the timeout"
echo "$out" | grep -q 'rank 1.*out of GPU memory' || fail "rank 1's out-of-memory message is missing: $out"
echo "  one rank of two out of memory: the job ended in $(($(date +%s) - start)) s with rank 1's reason"
echo "  out of memory: $(echo "$out" | grep -o 'out of GPU memory for logits ([0-9]* bytes)')... what to change"

echo "ok"
