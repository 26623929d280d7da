#!/usr/bin/env bash
# A study on a real SLURM: starts munged, slurmctld and slurmd on localhost
# (slurm/local-cluster.sh; installs slurm-wlm and munge when missing), runs
# config/studies/tiny-local.cfg (4 runs x 2 stages, 2 MPI ranks per pretrain
# task through srun --mpi=pmix) with `presight study submit`, interrupts two
# running pretrain tasks - one with `scontrol requeue` (SIGTERM, as on
# preemption) and one with SIGUSR1 to its batch shell (the time-limit warning
# of --signal=B:USR1@N) - and checks that:
#   - every run finishes, and `presight study status` / `collect` say so;
#   - the interrupted tasks ran twice (attempts logs, status restarts);
#   - each run's "plan" stage started only after its own pretrain ended (aftercorr);
#   - every run's losses, step by step, and final.json equal those of an
#     uninterrupted `presight study run --local` of the same study;
#   - config/studies/tiny-vision.cfg, pretrain -> encode -> align (2 ranks) -> eval,
#     chains its arrays with aftercorr, finishes, and writes the shared features once.
# Every daemon it started is stopped by PID on exit. Skips (77) when the
# daemons cannot run here.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
study=config/studies/tiny-local.cfg
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$bin" ] || fail "build/presight is missing (make build/presight)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
start=$SECONDS

tmp=$(mktemp -d /tmp/presight-slurm.XXXXXX)
chmod 0755 "$tmp"
cluster=$tmp/cluster
cleanup() {
  local rc=$?
  bash slurm/local-cluster.sh stop "$cluster" >/dev/null 2>&1
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "kept $tmp (study dirs, task logs, cluster logs) for a look"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- the cluster
bash slurm/local-cluster.sh start "$cluster" >"$tmp/cluster.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: no local SLURM cluster here: $(tail -n 3 "$tmp/cluster.log" | tr '\n' ' ')"
  exit 77
fi
[ $rc -eq 0 ] || { cat "$tmp/cluster.log"; fail "local-cluster.sh start (exit $rc)"; }
# shellcheck disable=SC1091
source "$cluster/env"
echo "cluster up: $((SECONDS - start))s"

# ---------------------------------------------------------------- the reference, without SLURM
"$bin" study run "$study" --local --dir "$tmp/local" >"$tmp/local.log" 2>&1 ||
  { tail -n 30 "$tmp/local.log"; fail "presight study run --local"; }
echo "local reference: $((SECONDS - start))s"

# ---------------------------------------------------------------- submit
dir=$tmp/slurm
"$bin" study submit "$study" --dir "$dir" >"$tmp/submit.log" 2>&1 || { cat "$tmp/submit.log"; fail "study submit"; }
grep -q "submitted pretrain" "$tmp/submit.log" && grep -q "aftercorr" "$tmp/submit.log" ||
  { cat "$tmp/submit.log"; fail "submit did not report its arrays"; }
pre=$(awk -F'\t' '$1 == "pretrain" { print $3 }' "$dir/jobs.tsv")
plan=$(awk -F'\t' '$1 == "plan" { print $3 }' "$dir/jobs.tsv")
[ -n "$pre" ] && [ -n "$plan" ] || { cat "$dir/jobs.tsv"; fail "jobs.tsv lacks the array jobs"; }
scontrol show job "$plan" | grep -q "Dependency=aftercorr:$pre" ||
  { scontrol show job "$plan"; fail "the plan array does not depend on the pretrain array (aftercorr)"; }
# Any second submission while jobs are queued is refused (it would run tasks twice).
"$bin" study submit "$study" --dir "$dir" >"$tmp/again.log" 2>&1 && fail "a second submit while queued was accepted"
grep -q "still queued" "$tmp/again.log" || { cat "$tmp/again.log"; fail "no clear message for a second submit"; }

run_dir() { echo "$dir/runs/$(awk -F'\t' -v i="$1" '$1 == i { print $2 }' "$dir/sbatch/runs.tsv")"; }
state_of() { squeue -h -j "$1" -o '%T' 2>/dev/null | head -n 1; }

# Requeued jobs wait ~2 minutes (BeginTime); start them now.
release_pending() {
  local line id
  squeue -h -r -o '%i %T %r' 2>/dev/null | while read -r id st reason; do
    [ "$st" = PENDING ] && [ "$reason" = BeginTime ] && scontrol update JobId="$id" StartTime=now 2>/dev/null
  done
}

# Interrupts the first pretrain task found running mid-training (metrics
# written, no final.json), with how ("requeue" or "usr1"); prints its index.
interrupt_one() {
  local how=$1 skip=${2:-} deadline=$((SECONDS + 120)) i d
  while [ $SECONDS -lt $deadline ]; do
    for i in 0 1 2 3; do
      [ "$i" = "$skip" ] && continue
      d=$(run_dir "$i")/pretrain
      [ -s "$d/metrics.jsonl" ] && [ ! -e "$d/final.json" ] || continue
      [ "$(state_of "${pre}_$i")" = RUNNING ] || continue
      if [ "$how" = requeue ]; then
        scontrol requeue "${pre}_$i" 2>/dev/null || continue
      else
        # scancel delivers the signal but may then report "Job can not be altered
        # now" for an array task and retry for a minute: do not wait for it, watch
        # the task's attempts log for the end of this attempt instead.
        local ends
        ends=$(grep -c " end " "$d/../pretrain.attempts" 2>/dev/null)
        scancel --batch --signal=USR1 "${pre}_$i" >/dev/null 2>&1 &
        local sc=$! t=$((SECONDS + 15))
        while [ $SECONDS -lt $t ] && [ "$(grep -c " end " "$d/../pretrain.attempts" 2>/dev/null)" = "$ends" ]; do
          sleep 0.1
        done
        # Its retries would signal the next attempt of the task too.
        kill "$sc" 2>/dev/null
        wait "$sc" 2>/dev/null
        [ "$(grep -c " end " "$d/../pretrain.attempts" 2>/dev/null)" = "$ends" ] && continue
      fi
      echo "$i"
      return 0
    done
    release_pending
    sleep 0.05
  done
  return 1
}

first=$(interrupt_one requeue) || { squeue; fail "no pretrain task was caught running to requeue"; }
echo "requeued task $first (scontrol requeue): $((SECONDS - start))s"
second=$(interrupt_one usr1 "$first") || { squeue; fail "no other pretrain task was caught running to signal"; }
echo "signalled task $second (USR1 to the batch shell): $((SECONDS - start))s"

# ---------------------------------------------------------------- wait for the study
deadline=$((SECONDS + 240))
while [ -n "$(squeue -h -j "$pre,$plan" 2>/dev/null)" ]; do
  [ $SECONDS -lt $deadline ] || { squeue; "$bin" study status "$study" --dir "$dir"; fail "the study did not finish in time"; }
  release_pending
  sleep 0.5
done
echo "study finished on SLURM: $((SECONDS - start))s"

"$bin" study status "$study" --dir "$dir" >"$tmp/status.log" 2>&1 || { cat "$tmp/status.log"; fail "study status"; }
cat "$tmp/status.log"
grep -q "summary: 4 runs: 4 done, 0 running, 0 pending, 0 failed" "$tmp/status.log" || fail "not every run is done"
restarts=$(sed -n 's/.*; \([0-9]*\) restarts*$/\1/p' "$tmp/status.log")
[ "${restarts:-0}" -ge 2 ] || fail "status counts ${restarts:-0} restarts, expected at least 2"
for i in "$first" "$second"; do
  starts=$(grep -c " start " "$(run_dir "$i")/pretrain.attempts")
  [ "$starts" -ge 2 ] || { cat "$(run_dir "$i")/pretrain.attempts"; fail "task $i started $starts times, expected 2"; }
done
grep -q "requeue" "$(run_dir "$second")/pretrain.attempts" ||
  { cat "$(run_dir "$second")/pretrain.attempts"; fail "the USR1 task did not requeue itself"; }

# aftercorr: each run's plan stage started after its own pretrain ended.
for i in 0 1 2 3; do
  r=$(run_dir "$i")
  pre_end=$(grep -E " end rc=[0-9]+ done$" "$r/pretrain.attempts" | tail -n 1 | cut -d' ' -f1)
  plan_start=$(grep " start " "$r/plan.attempts" | head -n 1 | cut -d' ' -f1)
  [ -n "$pre_end" ] && [ -n "$plan_start" ] || fail "run $i: missing attempts lines"
  [[ ! "$plan_start" < "$pre_end" ]] || fail "run $i: plan started ($plan_start) before pretrain ended ($pre_end)"
  [ -s "$r/plan/plan.txt" ] && grep -qi "param" "$r/plan/plan.txt" || fail "run $i: no plan.txt"
done

# ---------------------------------------------------------------- the same results as without SLURM
# Losses by step (the last line of each step counts, should a resumed run repeat one).
losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\).*/\1 \2/p' "$1" | awk '{ l[$1] = $2 } END { for (s in l) print s, l[s] }' | sort -n; }
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }
while IFS=$'\t' read -r index id _; do
  case $index in \#*) continue ;; esac
  a=$dir/runs/$id/pretrain b=$tmp/local/runs/$id/pretrain
  [ -e "$a/final.json" ] && [ -e "$b/final.json" ] || fail "run $index ($id): final.json missing"
  cmp -s <(losses "$a/metrics.jsonl") <(losses "$b/metrics.jsonl") ||
    fail "run $index ($id): the losses differ from the uninterrupted local run"
  for f in steps final_loss tokens params; do
    [ "$(field "$a/final.json" $f)" = "$(field "$b/final.json" $f)" ] ||
      fail "run $index ($id): final.json $f differs ($(field "$a/final.json" $f) vs $(field "$b/final.json" $f))"
  done
done <"$dir/sbatch/runs.tsv"

"$bin" study collect "$study" --dir "$dir" >"$tmp/collect.log" 2>&1 || { cat "$tmp/collect.log"; fail "study collect"; }
[ "$(grep -c ',done,' "$dir/results.csv")" -eq 4 ] || { cat "$dir/results.csv"; fail "results.csv should list 4 done runs"; }
echo "ok: 4 runs x 2 stages on SLURM, 2 interrupted and resumed, results equal to the local run ($((SECONDS - start))s)"

# ---------------------------------------------------------------- a vision chain
# config/studies/tiny-vision.cfg: 2 runs, each pretrain -> encode -> align (2 ranks) -> eval,
# one array job per stage, each depending on the one before (aftercorr); both runs share the
# study's features folder: one encode task writes it, the other finds it complete.
vdir=$tmp/vision
"$bin" study submit config/studies/tiny-vision.cfg --dir "$vdir" >"$tmp/vsubmit.log" 2>&1 ||
  { cat "$tmp/vsubmit.log"; fail "study submit (vision chain)"; }
prev=
jobs=
for st in pretrain encode align eval; do
  j=$(awk -F'\t' -v s="$st" '$1 == s { print $3 }' "$vdir/jobs.tsv")
  [ -n "$j" ] || { cat "$vdir/jobs.tsv"; fail "vision chain: no $st array"; }
  if [ -n "$prev" ]; then
    scontrol show job "$j" | grep -q "Dependency=aftercorr:$prev" ||
      { scontrol show job "$j"; fail "vision chain: $st does not depend on the previous stage (aftercorr:$prev)"; }
  fi
  prev=$j jobs=$jobs${jobs:+,}$j
done
deadline=$((SECONDS + 300))
while [ -n "$(squeue -h -j "$jobs" 2>/dev/null)" ]; do
  [ $SECONDS -lt $deadline ] || { squeue; "$bin" study status config/studies/tiny-vision.cfg --dir "$vdir"; fail "the vision chain did not finish in time"; }
  sleep 0.5
done
"$bin" study status config/studies/tiny-vision.cfg --dir "$vdir" >"$tmp/vstatus.log" 2>&1 || { cat "$tmp/vstatus.log"; fail "study status (vision chain)"; }
grep -q "summary: 2 runs: 2 done" "$tmp/vstatus.log" || { cat "$tmp/vstatus.log"; tail -n 20 "$vdir"/logs/*; fail "vision chain: not every run is done"; }
written=0
while IFS=$'\t' read -r index id _; do
  case $index in \#*) continue ;; esac
  r=$vdir/runs/$id
  for pair in pretrain:encode encode:align align:eval; do
    a=${pair%:*} b=${pair#*:}
    a_end=$(grep -E " end rc=[0-9]+ done$" "$r/$a.attempts" | tail -n 1 | cut -d' ' -f1)
    b_start=$(grep " start " "$r/$b.attempts" | head -n 1 | cut -d' ' -f1)
    [ -n "$a_end" ] && [ -n "$b_start" ] && [[ ! "$b_start" < "$a_end" ]] ||
      fail "vision run $index: $b started (${b_start:-never}) before $a ended (${a_end:-never})"
  done
  grep -q '"llm_unchanged": *true' "$r/align/final.json" || { cat "$r/align/final.json"; fail "vision run $index: align changed the LLM"; }
  grep -q '"task":"qs-vqa-knowledge"' "$r/eval/results.jsonl" || fail "vision run $index: no eval results"
  grep -q "0 failed, /features" "$r/encode/encode.log" && written=$((written + 1))
done <"$vdir/sbatch/runs.tsv"
[ $written -eq 1 ] || { cat "$vdir"/runs/*/encode/encode.log; fail "the features were written $written times, expected once"; }
echo "ok: vision chain pretrain -> encode -> align -> eval on SLURM, aftercorr, features shared ($((SECONDS - start))s)"
