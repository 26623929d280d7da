#!/usr/bin/env bash
# Checkpoint format 1 still loads: a run directory written by presight before
# format 2 (tests/fixtures/checkpoint_v1, step 2 of 4) resumes, and steps 3
# and 4 log exactly what the uninterrupted old run logged (tests/
# test_checkpoint_v2.c checks the format 2 files themselves).
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PRESIGHT_THREADS=1
bin=build/presight
[ -x "$bin" ] || { echo "SKIP: $bin not built"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
fixture=tests/fixtures/checkpoint_v1
mkdir -p "$tmp/run/checkpoints"
cp "$fixture/config.cfg" "$tmp/run/"
cp "$fixture/checkpoints/step_00000002.h5" "$tmp/run/checkpoints/"
head -n 2 "$fixture/expected_metrics.txt" | sed 's/$/,"tokens_per_s":0,"elapsed_s":0}/' >"$tmp/run/metrics.jsonl"
out=$($bin train "$fixture/config.cfg" run.dir="$tmp/run" 2>&1) || fail "resuming the v1 run failed: $out"
echo "$out" | grep -q 'resumed from .*step_00000002.h5 at step 2' || fail "did not resume from the v1 checkpoint: $out"
diff <(sed 's/,"tokens_per_s".*//' "$tmp/run/metrics.jsonl") "$fixture/expected_metrics.txt" ||
  fail "steps 3 and 4 after resuming from format 1 differ from the old run's"
[ -e "$tmp/run/final.json" ] || fail "no final.json"
echo "PASS: a format 1 checkpoint resumes bit-identically"
