#!/usr/bin/env bash
# presight study run --local: the tiny study (4 runs x 2 stages, the pretrain
# stage on 2 MPI ranks through mpirun) runs to the end and the collected
# table has every run; a second run skips what is done; an attempt that left
# no checkpoint is moved aside and redone; a task stopped by SIGUSR1 exits 75
# and resumes (or restarts) on the next run, with the same losses as an
# uninterrupted run.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
study=config/studies/tiny-local.cfg
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$bin" ] || fail "build/presight is missing (make build/presight)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dir=$tmp/study
start=$SECONDS

# ---------------------------------------------------------------- the whole study
"$bin" study run "$study" --local --dir "$dir" >"$tmp/run1.log" 2>&1 || { tail -n 40 "$tmp/run1.log"; fail "study run --local"; }
echo "study run --local: $((SECONDS - start))s"
grep -q "running 8 tasks locally (0 already done)" "$tmp/run1.log" || { cat "$tmp/run1.log"; fail "expected 8 tasks"; }
[ "$(grep -c "pretrain: mpirun -np 2" "$tmp/run1.log")" -eq 4 ] || { cat "$tmp/run1.log"; fail "pretrain should run on 2 ranks (mpirun -np 2)"; }
[ "$(grep -c " plan: 1 process" "$tmp/run1.log")" -eq 4 ] || fail "the plan stage should run as one process"
grep -q "4 of 4 runs done" "$tmp/run1.log" || fail "the collected table does not say 4 of 4 done"
ids=$(awk -F'\t' '$1 !~ /^#/ { print $2 }' "$dir/runs.tsv")
[ "$(echo "$ids" | wc -w)" -eq 4 ] || fail "runs.tsv should list 4 runs"
for id in $ids; do
  grep -q "^[0-9]*  *$id  *done " "$tmp/run1.log" || { tail -n 8 "$tmp/run1.log"; fail "run $id missing from the table"; }
  [ -s "$dir/runs/$id/pretrain/final.json" ] || fail "run $id: no final.json"
  grep -qi "param" "$dir/runs/$id/plan/plan.txt" || fail "run $id: plan.txt lacks the plan report"
  grep -q "presight task: mpirun -np 2 .* train .*/runs/$id/config.cfg run.dir=.*/runs/$id/pretrain" \
    "$dir/logs/pretrain-local-"*.out || fail "run $id: no 2-rank train command in the task logs"
done
[ "$(grep -c ',done,' "$dir/results.csv")" -eq 4 ] || { cat "$dir/results.csv"; fail "results.csv should have 4 done rows"; }
head -n 1 "$dir/results.csv" | grep -q "^index,id,state,train.lr,train.seed,.*final_loss" ||
  fail "results.csv header: $(head -n 1 "$dir/results.csv")"
[ "$(wc -l <"$dir/results.jsonl")" -eq 4 ] || fail "results.jsonl should have 4 lines"
/usr/bin/python3 - "$dir/results.jsonl" <<'PY' || fail "results.jsonl is not JSON lines with axes and pretrain"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    assert r["state"] == "done" and set(r["axes"]) == {"train.lr", "train.seed"}, r
    assert r["pretrain"]["steps"] == 600 and r["pretrain"]["final_loss"] > 0, r
PY

# Done runs are skipped.
"$bin" study run "$study" --local --dir "$dir" >"$tmp/run2.log" 2>&1 || { cat "$tmp/run2.log"; fail "second study run"; }
grep -q "running 0 tasks locally (8 already done)" "$tmp/run2.log" || { cat "$tmp/run2.log"; fail "done tasks were not skipped"; }
"$bin" study status "$study" --dir "$dir" >"$tmp/status.log" 2>&1 || fail "study status"
grep -q "summary: 4 runs: 4 done, 0 running, 0 pending, 0 failed; 0 restarts" "$tmp/status.log" || { cat "$tmp/status.log"; fail "status"; }

losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\).*/\1 \2/p' "$1" | awk '{ l[$1] = $2 } END { for (s in l) print s, l[s] }' | sort -n; }
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }
set -- $ids
first=$1 second=$2

# ---------------------------------------------------------------- an attempt without a checkpoint
r=$dir/runs/$first
cp -r "$r/pretrain" "$tmp/ref-first"
rm -rf "$r/plan" "$r/pretrain/final.json" "$r/pretrain/model.h5" "$r/pretrain/checkpoints"
head -n 5 "$tmp/ref-first/metrics.jsonl" >"$r/pretrain/metrics.jsonl"
"$bin" study run "$study" --local --dir "$dir" >"$tmp/run3.log" 2>&1 || { tail -n 30 "$tmp/run3.log"; fail "rerun after an incomplete attempt"; }
grep -q "running 2 tasks locally" "$tmp/run3.log" || { cat "$tmp/run3.log"; fail "expected 2 tasks (pretrain, plan) of run $first"; }
[ -d "$r/pretrain.incomplete.1" ] || fail "the incomplete attempt was not moved aside"
[ "$(wc -l <"$r/pretrain.incomplete.1/metrics.jsonl")" -eq 5 ] || fail "the moved attempt lost its files"
cmp -s <(losses "$r/pretrain/metrics.jsonl") <(losses "$tmp/ref-first/metrics.jsonl") || fail "redone run: other losses"
[ "$(field "$r/pretrain/final.json" final_loss)" = "$(field "$tmp/ref-first/final.json" final_loss)" ] || fail "redone run: other final loss"

# ---------------------------------------------------------------- a task stopped by SIGUSR1
r=$dir/runs/$second
cp -r "$r/pretrain" "$tmp/ref-second"
rm -rf "$r/plan" "$r/pretrain" "$r/pretrain.attempts" "$r/plan.attempts"
"$bin" study run "$study" --local --dir "$dir" >"$tmp/run4.log" 2>&1 &
runner=$!
task=
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  if [ -s "$r/pretrain/metrics.jsonl" ] && [ ! -e "$r/pretrain/final.json" ]; then
    # The batch script the runner started (our grandchild): SIGUSR1 as SLURM's time-limit warning would send it.
    for p in /proc/[0-9]*; do
      [ "$(awk '{ print $4 }' "$p/stat" 2>/dev/null)" = "$runner" ] || continue
      tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "sbatch/pretrain.sbatch" && task=${p#/proc/}
    done
    [ -n "$task" ] && kill -USR1 "$task" && break
  fi
  kill -0 "$runner" 2>/dev/null || break
  sleep 0.05
done
wait "$runner"
rc=$?
[ -n "$task" ] || { cat "$tmp/run4.log"; fail "the pretrain task of run $second was not caught running"; }
[ $rc -eq 1 ] || { cat "$tmp/run4.log"; fail "a stopped study run should exit 1, got $rc"; }
grep -q "stopped early (exit 75" "$tmp/run4.log" || { cat "$tmp/run4.log"; fail "no 'stopped early' line"; }
grep -q "end rc=75 preempted" "$r/pretrain.attempts" || { cat "$r/pretrain.attempts"; fail "attempts log lacks the preemption"; }
"$bin" study status "$study" --dir "$dir" >"$tmp/status2.log" 2>&1
grep -q "preempted" "$tmp/status2.log" || { cat "$tmp/status2.log"; fail "status should show the run as preempted"; }
"$bin" study run "$study" --local --dir "$dir" >"$tmp/run5.log" 2>&1 || { tail -n 30 "$tmp/run5.log"; fail "resuming run"; }
how="restarted (no checkpoint)"
grep -q "resuming from the checkpoints" "$dir/logs/pretrain-local-"*.out && how="resumed from its checkpoint"
cmp -s <(losses "$r/pretrain/metrics.jsonl") <(losses "$tmp/ref-second/metrics.jsonl") ||
  fail "the stopped run $how: its losses differ from the uninterrupted run"
for f in steps final_loss tokens; do
  [ "$(field "$r/pretrain/final.json" $f)" = "$(field "$tmp/ref-second/final.json" $f)" ] || fail "stopped run: final.json $f differs"
done
"$bin" study status "$study" --dir "$dir" >"$tmp/status3.log" 2>&1
# Restarts: run $first redid pretrain and plan (2), run $second its pretrain (1).
grep -q "summary: 4 runs: 4 done, 0 running, 0 pending, 0 failed; 3 restarts" "$tmp/status3.log" || { cat "$tmp/status3.log"; fail "status after the restarts"; }

# ---------------------------------------------------------------- bad input
"$bin" study run "$study" --dir "$dir" >"$tmp/bad.log" 2>&1
[ $? -eq 2 ] && grep -q "only --local" "$tmp/bad.log" || fail "study run without --local should be a usage error"
"$bin" study plan config/studies/no-such.cfg >"$tmp/bad.log" 2>&1
[ $? -eq 2 ] && grep -q "no-such.cfg" "$tmp/bad.log" || fail "a missing study file should be named"

echo "ok: 4 runs x 2 stages locally, skip, move-aside and SIGUSR1 ($how) all give the uninterrupted losses ($((SECONDS - start))s)"
