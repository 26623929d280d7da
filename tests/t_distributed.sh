#!/usr/bin/env bash
# Distributed training with real MPI ranks (oversubscribed on 2 cores):
#  - the same run at 1, 2, 3 and 4 ranks (uneven slices) gives the same loss
#    trajectory, for ddp, zero1 and fsdp (and their variants);
#  - gradient accumulation x ranks equals the single-rank large batch;
#  - kill -9 at random moments, then resume: bit-identical trajectory;
#  - resume at another world size: within the equivalence tolerance;
#  - SIGTERM (one process) and SIGUSR1 (through mpirun): checkpoint, exit 75, resume;
#  - a corrupt newest checkpoint is reported and the previous one is used;
#  - bad input (another config, another model shape) is refused, nothing overwritten.
# Tolerance: losses agree to 1e-5 relative (float32 sums in another order).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
bin=build/presight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
TOL=1e-5
STEPS=8
# Global batch 12 sequences: micro_batch = 12 / ranks.
run() { # dir ranks [key=value ...]
  local dir=$1 np=$2; shift 2
  if [ "$np" -eq 1 ]; then
    $bin train config/tiny.cfg run.dir="$dir" train.steps=$STEPS train.micro_batch=12 "$@" >"$dir.log" 2>&1
  else
    mpirun -np "$np" $bin train config/tiny.cfg run.dir="$dir" train.steps=$STEPS train.micro_batch=$((12 / np)) \
      "$@" >"$dir.log" 2>&1
  fi || { tail -20 "$dir.log"; fail "run $dir ($np ranks $*)"; }
}
losses() { sed 's/.*"loss":\([^,]*\),.*/\1/' "$1/metrics.jsonl"; }
same_within() { # a b what
  paste <(losses "$1") <(losses "$2") | awk -v tol=$TOL -v what="$3" '
    { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($2 > 0 ? $2 : -$2); if (r > worst) worst = r }
    END { if (n < 1 || worst > tol) { printf "FAIL: %s: worst relative loss difference %.3g > %s over %d steps\n", what, worst, tol, n; exit 1 }
          printf "  %-52s worst rel diff %.2e over %d steps\n", what, worst, n }'
}
wait_steps() { # dir n: until metrics.jsonl has n lines (at most 60 s)
  for _ in $(seq 600); do
    [ "$(cat "$1/metrics.jsonl" 2>/dev/null | wc -l)" -ge "$2" ] && return 0
    sleep 0.1
  done
}
identical() { # a b what
  cmp -s <(losses "$1") <(losses "$2") || fail "$3: trajectories differ"
  echo "  $3: bit-identical"
}

echo "== equivalence across ranks and strategies"
run "$tmp/ref" 1
for strategy in ddp zero1 fsdp; do
  for np in 2 3 4; do
    run "$tmp/$strategy-$np" "$np" parallel.strategy=$strategy
    same_within "$tmp/ref" "$tmp/$strategy-$np" "$strategy at $np ranks vs 1 rank"
  done
done
run "$tmp/fsdp-variants" 4 parallel.strategy=fsdp parallel.prefetch=false parallel.reshard_after_forward=false
same_within "$tmp/ref" "$tmp/fsdp-variants" "fsdp, no prefetch, no reshard, 4 ranks"
run "$tmp/hybrid" 4 parallel.strategy=fsdp parallel.shard_group=2 parallel.recompute_blocks=true
same_within "$tmp/ref" "$tmp/hybrid" "fsdp hybrid (2 groups of 2) + recompute"
run "$tmp/zero1-hybrid" 4 parallel.strategy=zero1 parallel.shard_group=2
same_within "$tmp/ref" "$tmp/zero1-hybrid" "zero1 hybrid (2 groups of 2)"
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/accum" train.steps=$STEPS train.micro_batch=2 train.grad_accum=3 \
  parallel.strategy=fsdp >"$tmp/accum.log" 2>&1 || fail "accumulation run"
same_within "$tmp/ref" "$tmp/accum" "2 ranks x 3 accumulation x 2 vs 1 rank x 12"
run "$tmp/tied" 1 model.tied_head=true
run "$tmp/tied-fsdp" 3 model.tied_head=true parallel.strategy=fsdp
same_within "$tmp/tied" "$tmp/tied-fsdp" "tied head, fsdp at 3 ranks"
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/tied-accum" train.steps=$STEPS train.micro_batch=3 \
  train.grad_accum=2 model.tied_head=true parallel.strategy=fsdp >"$tmp/tied-accum.log" 2>&1 ||
  { tail "$tmp/tied-accum.log"; fail "tied head with accumulation under fsdp"; }
same_within "$tmp/tied" "$tmp/tied-accum" "tied head, fsdp, 2 ranks x 2 accumulation"

echo "== kill -9 at random moments, then resume"
STEPS=60
long=(checkpoint.every_steps=3 parallel.strategy=fsdp)
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/whole" train.steps=$STEPS train.micro_batch=6 "${long[@]}" \
  >"$tmp/whole.log" 2>&1 || fail "uninterrupted run"
# Kill when the run has logged a random number of steps: mid-step or in the
# middle of a checkpoint write (every 3 steps), wherever the moment falls.
for attempt in 1 2 3 4; do
  [ -f "$tmp/killed/final.json" ] && break
  mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/killed" train.steps=$STEPS train.micro_batch=6 "${long[@]}" \
    >>"$tmp/killed.log" 2>&1 &
  pid=$!
  wait_steps "$tmp/killed" $((attempt * 12 + RANDOM % 10))
  sleep "0.0$((RANDOM % 10))"
  pkill -9 -f "run.dir=$tmp/killed" || true
  wait $pid 2>/dev/null || true
done
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/killed" train.steps=$STEPS train.micro_batch=6 "${long[@]}" \
  >>"$tmp/killed.log" 2>&1 || { tail "$tmp/killed.log"; fail "final resume"; }
resumes=$(grep -c "resumed from" "$tmp/killed.log" || true)
[ "$resumes" -ge 1 ] || fail "never resumed (the kills came too late?)"
identical "$tmp/whole" "$tmp/killed" "killed $attempt times, resumed $resumes times"
ls "$tmp/killed/checkpoints" | grep -q '\.tmp$' && fail "a .tmp checkpoint was left behind by a completed run"

echo "== resume at another world size"
mpirun -np 3 $bin train config/tiny.cfg run.dir="$tmp/grow" train.steps=$STEPS train.micro_batch=4 \
  checkpoint.every_steps=3 parallel.strategy=fsdp >"$tmp/grow.log" 2>&1 &
pid=$!
wait_steps "$tmp/grow" 20
pkill -9 -f "run.dir=$tmp/grow" || true
wait $pid 2>/dev/null || true
[ -n "$(ls "$tmp/grow/checkpoints" 2>/dev/null | grep -v tmp)" ] || fail "no checkpoint before the kill"
$bin train config/tiny.cfg run.dir="$tmp/grow" train.steps=$STEPS train.micro_batch=12 checkpoint.every_steps=3 \
  parallel.strategy=zero1 >>"$tmp/grow.log" 2>&1 || fail "resume on 1 rank"
grep -q "written by 3 ranks" "$tmp/grow.log" || fail "did not resume a 3-rank checkpoint"
same_within "$tmp/whole" "$tmp/grow" "3 ranks (fsdp) resumed on 1 rank (zero1)"

echo "== preemption: signal, checkpoint, exit 75, resume"
STEPS=400
pre=(train.steps=$STEPS checkpoint.every_steps=1000)
$bin train config/tiny.cfg run.dir="$tmp/pre-ref" train.micro_batch=12 "${pre[@]}" >"$tmp/pre-ref.log" 2>&1 ||
  fail "uninterrupted run"
$bin train config/tiny.cfg run.dir="$tmp/pre" train.micro_batch=12 "${pre[@]}" >"$tmp/pre.log" 2>&1 &
pid=$!
wait_steps "$tmp/pre" 50
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 75 ] || fail "exit status after SIGTERM was $rc, expected 75"
grep -q "stopping on signal" "$tmp/pre.log" || fail "no stop message"
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/pre" train.micro_batch=6 "${pre[@]}" >"$tmp/pre2.log" 2>&1 &
pid=$!
wait_steps "$tmp/pre" 150
kill -USR1 $pid  # mpirun forwards SIGUSR1 to the ranks (SIGTERM makes mpirun tear the job down itself)
rc=0; wait $pid || rc=$?
[ $rc -eq 75 ] || { tail "$tmp/pre2.log"; fail "mpirun exit status after SIGUSR1 was $rc, expected 75"; }
$bin train config/tiny.cfg run.dir="$tmp/pre" train.micro_batch=12 "${pre[@]}" >>"$tmp/pre.log" 2>&1 ||
  fail "resume after preemption"
same_within "$tmp/pre-ref" "$tmp/pre" "preempted twice (1 rank, then 2), resumed"
STEPS=60

echo "== corrupt newest checkpoint"
cp -r "$tmp/whole" "$tmp/corrupt"
rm "$tmp/corrupt/final.json" "$tmp/corrupt/model.h5"
newest=$(ls "$tmp/corrupt/checkpoints"/step_*.h5 | tail -n 1)
size=$(stat -c %s "$newest")
printf 'garbage!' | dd of="$newest" bs=1 seek=$((size / 2)) conv=notrunc status=none
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/corrupt" train.steps=$STEPS train.micro_batch=6 "${long[@]}" \
  >"$tmp/corrupt.log" 2>&1 || { cat "$tmp/corrupt.log"; fail "resume past a corrupt checkpoint"; }
grep -q "unusable" "$tmp/corrupt.log" || { cat "$tmp/corrupt.log"; fail "the corrupt checkpoint was not reported"; }
identical "$tmp/whole" "$tmp/corrupt" "resumed from the previous checkpoint"
truncate -s 1000 "$(ls "$tmp/corrupt/checkpoints"/step_*.h5 | tail -n 1)"
rm "$tmp/corrupt/final.json"
$bin train config/tiny.cfg run.dir="$tmp/corrupt" train.steps=$STEPS train.micro_batch=12 "${long[@]}" \
  >"$tmp/trunc.log" 2>&1 || fail "resume past a truncated checkpoint"
grep -q "unusable" "$tmp/trunc.log" || fail "the truncated checkpoint was not reported"

echo "== bad input is refused and nothing is overwritten"
before=$(md5sum "$tmp/whole/model.h5" "$tmp/whole/metrics.jsonl")
if $bin train config/tiny.cfg run.dir="$tmp/whole" train.steps=$STEPS model.ffn_dim=96 >"$tmp/bad.log" 2>&1; then
  fail "trained into a run of another config"
fi
grep -q "model.ffn_dim = 96 (was 128)" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "the difference is not named"; }
[ "$before" = "$(md5sum "$tmp/whole/model.h5" "$tmp/whole/metrics.jsonl")" ] || fail "files changed"
# A checkpoint of another model shape under a matching config.
mkdir -p "$tmp/shape/checkpoints"
$bin train config/tiny.cfg run.dir="$tmp/wide" train.steps=2 model.ffn_dim=96 >/dev/null 2>&1 || fail "wide run"
cp "$tmp/wide/checkpoints/step_00000002.h5" "$tmp/shape/checkpoints/"
if $bin train config/tiny.cfg run.dir="$tmp/shape" train.steps=$STEPS >"$tmp/shape.log" 2>&1; then
  fail "resumed a checkpoint of another shape"
fi
grep -q "feed_forward" "$tmp/shape.log" || { cat "$tmp/shape.log"; fail "the shape mismatch does not name the tensor"; }
[ -f "$tmp/shape/checkpoints/step_00000002.h5" ] || fail "the foreign checkpoint was deleted"
echo "ok"
