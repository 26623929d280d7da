#!/usr/bin/env bash
# A failure on one rank ends the whole job, within seconds, with that rank's
# message: rank 1 of 3 fails to read its data at step 3 (PRESIGHT_FAULT=1:3,
# a fault injected in the pretraining stage's data read) while ranks 0 and 2
# go on into the step's collectives. Under ddp, zero1 and fsdp, on the CPU
# and fsdp on the GPU engine (its CPU emulator, whose NCCL is MPI), the job must
# exit non-zero, print rank 1's message and leave no final.json. Negative
# control: the same runs without the fault complete.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
bin=build/presight
engine=$PWD/build/emu/libpresight-cuda.so
[ -x "$bin" ] || { echo "SKIP: $bin not built"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
LIMIT=60 # seconds; a healthy 3-rank run of 4 steps takes about 2

run() { # name fault [key=value ...]: runs 3 ranks, sets rc and took
  local name=$1 fault=$2; shift 2
  local start=$SECONDS
  rc=0
  PRESIGHT_FAULT=$fault PRESIGHT_CUDA_ENGINE=$engine timeout $LIMIT mpirun -np 3 -x PRESIGHT_FAULT \
    -x PRESIGHT_CUDA_ENGINE $bin train config/tiny.cfg run.dir="$tmp/$name" train.steps=4 train.grad_accum=2 "$@" \
    >"$tmp/$name.log" 2>&1 || rc=$?
  took=$((SECONDS - start))
}

# Every strategy on the CPU; fsdp (gathers in flight) on the GPU engine's
# emulator, which is slow to start (about 15 s for 3 ranks on 2 cores).
cases="cpu:ddp cpu:zero1 cpu:fsdp"
[ -f "$engine" ] && cases="$cases cuda:fsdp"
for c in $cases; do
    backend=${c%:*} strategy=${c#*:} name=$backend-$strategy
    run "$name" 1:3 parallel.strategy="\"$strategy\"" run.backend="\"$backend\""
    [ $rc -ne 124 ] || fail "$name: the job hung (killed after ${LIMIT}s): $(tail -5 "$tmp/$name.log")"
    [ $rc -ne 0 ] || fail "$name: a job with a failing rank exited 0"
    grep -q 'rank 1): reading sequences .*injected fault' "$tmp/$name.log" ||
      fail "$name: rank 1's message is missing: $(tail -8 "$tmp/$name.log")"
    [ ! -e "$tmp/$name/final.json" ] || fail "$name: a failed run wrote final.json"
    echo "  $name: exit $rc after ${took}s: $(grep -m1 'injected fault' "$tmp/$name.log" | cut -c1-90)"
done
# Negative control: no fault (a fault at a step the run never reaches), and the job completes.
run control 1:99 parallel.strategy='"fsdp"'
[ $rc -eq 0 ] && [ -e "$tmp/control/final.json" ] || fail "the run without a fault failed: $(tail -5 "$tmp/control.log")"
# One rank alone: a plain error, exit 1.
rc=0
PRESIGHT_FAULT=0:2 $bin train config/tiny.cfg run.dir="$tmp/one" train.steps=3 >"$tmp/one.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q 'rank 0): reading sequences .*injected fault' "$tmp/one.log" ||
  fail "1 rank: exit $rc, $(tail -3 "$tmp/one.log")"
echo "PASS: a failing rank ends the job under every strategy, without a hang"
