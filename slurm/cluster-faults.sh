#!/usr/bin/env bash
# slurm/cluster-faults.sh - the fault campaign on the three-node test cluster
# (`make cluster-faults`; longer than `make test`). Each round submits the
# node-loss run of tests/fixtures/cluster/loss.cfg as `sbatch -N 1-2 -n 2
# --spread-job` (GLOBAL_BATCH=8, RANKS_PER_NODE=1) and hits one node of it at a
# random moment (seeded), with each of these faults in turn:
#   kill      link cut, then every process of the node killed (power loss), at
#             a random checkpoint count plus a random delay of 0-300 ms, so
#             that some kills land while a checkpoint is being written;
#   ckpt      the same, fired the moment the checkpoint after a random one
#             starts (its .tmp file appears);
#   partition link cut only: the node's processes live on, cut off; the link
#             comes back once the job runs again elsewhere (a node that comes
#             back holding a stale copy of the job);
# on the batch host for the first round of each fault, the other node next. Every
# round must: end every rank of the hit attempt (none left waiting on any node, the cut-off ones
# included once the link is back), get requeued by SLURM, resume from the newest
# complete checkpoint on the nodes left, finish with every step and losses
# within 1e-4 of an uninterrupted run of the same global batch. Then the node is
# brought back and the next round starts. Prints one line per round and a
# summary table; exits 1 if any round failed.
#
#   bash slurm/cluster-faults.sh [ROUNDS] [SEED] [KINDS]  # default 6 rounds, seed 1, "kill ckpt partition"
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
seed=${2:-1}
read -r -a kinds <<<"${3:-kill ckpt partition}"
bin=$PWD/build/presight
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$bin" ] || fail "build/presight is missing (make build/presight)"
start=$SECONDS
RANDOM=$seed

# shellcheck source=cluster-lib.sh
source slurm/cluster-lib.sh
cluster_up faults
# The references, uninterrupted: 1 rank x micro-batch 8, and 2 ranks x 4 on
# one host (shared memory), which a run resumed on 2 ranks must equal exactly.
"$bin" study plan tests/fixtures/cluster/loss.cfg --dir "$tmp/ref-plan" >/dev/null 2>&1 || fail "study plan"
ref_cfg=$(ls "$tmp"/ref-plan/runs/*/config.cfg)
"$bin" train "$ref_cfg" run.dir="$tmp/reference" train.micro_batch=8 >"$tmp/reference.log" 2>&1 || fail "the reference run"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1 PRESIGHT_THREADS=1 \
  timeout 300 mpirun -np 2 "$bin" train "$ref_cfg" run.dir="$tmp/reference2" train.micro_batch=4 >"$tmp/reference2.log" 2>&1 ||
  fail "the 2-rank reference run"
cluster_mpi_env

# One round: R K DELAY_MS KIND PICK (the fault after checkpoint K x 50 and
# DELAY_MS ms); prints "kind pick:victim at-step tmp-seen resumed-step
# last-tasks worst" or fails.
round() {
  local r=$1 kind=$4 pick=$5 ldir=$tmp/round$r run dir job nodes victim restarts at tmp_seen=no
  "$bin" study plan tests/fixtures/cluster/loss.cfg --dir "$ldir" >/dev/null 2>&1 || fail "round $r: study plan"
  run=$(ls -d "$ldir"/runs/*/)
  dir=${run%/}/pretrain
  job=$(ctl sbatch --parsable -N 1-2 -n 2 --spread-job --cpus-per-task=1 --requeue --open-mode=append \
    --output="$ldir/job.out" --export=ALL,PRESIGHT_BIN="$bin",STUDY_DIR="$ldir",TASK_INDEX=0,GLOBAL_BATCH=8,RANKS_PER_NODE=1 \
    slurm/pretrain.sbatch) || fail "round $r: sbatch"
  local k=$2 delay_ms=$3
  two_nodes() { [ "$(job_state "$job")" = RUNNING ] && [ "$(job_field "$job" NumNodes)" = 2 ] && [ -s "$dir/metrics.jsonl" ]; }
  wait_for 60 "round $r: job $job running on 2 nodes" two_nodes
  case $kind in
    ckpt) # Past checkpoint K (at least 1, so that there is one to resume from),
          # cut the link the moment the next .tmp appears (ip -n, no script in
          # between); kill-node below then kills what runs there.
          [ "$k" -ge 1 ] || k=1
          past() { [ "$(newest_step "$dir")" -ge $((k * 50)) ]; }
          wait_for 60 "round $r: checkpoint $((k * 50))" past
          victim=$(ctl scontrol show hostnames "$(job_field "$job" NodeList)" | { [ "$pick" = batch ] && head -n 1 || tail -n 1; })
          local ctlns until=$((SECONDS + 60))
          ctlns=$(bash "$nodes_sh" netns "$cluster" ctl)
          until compgen -G "$dir/checkpoints/*.tmp" >/dev/null || [ -e "$dir/final.json" ]; do
            [ $SECONDS -lt $until ] || fail "round $r: no checkpoint .tmp seen in 60 s"
            sleep 0.002
          done
          ip -n "$ctlns" link set "v$victim" down ;;
    *) past() { [ "$(newest_step "$dir")" -ge $((k * 50)) ]; }
       wait_for 60 "round $r: checkpoint $((k * 50))" past
       sleep "$(printf '0.%03d' "$delay_ms")" ;;
  esac
  [ -e "$dir/final.json" ] && { echo "round $r: the run finished before the fault; skipped"; ctl scancel "$job"; return 0; }
  nodes=$(job_field "$job" NodeList)
  restarts=$(job_field "$job" Restarts)
  victim=$(ctl scontrol show hostnames "$nodes" | { [ "$pick" = batch ] && head -n 1 || tail -n 1; })
  if [ "$kind" = partition ]; then
    ctl ip link set "v$victim" down
  else
    bash "$nodes_sh" kill-node "$cluster" "$victim" >/dev/null || fail "round $r: kill-node $victim"
  fi
  compgen -G "$dir/checkpoints/*.tmp" >/dev/null && tmp_seen=yes
  at=$(newest_step "$dir")
  requeued() { [ "$(job_field "$job" Restarts)" -gt "$restarts" ] && [ "$(job_state "$job")" = PENDING ]; }
  wait_for 90 "round $r: job $job requeued after $victim was hit" requeued
  local n survivors
  survivors=$(for n in node1 node2 node3; do [ "$n" = "$victim" ] || echo $n; done)
  no_ranks() { for n in $survivors; do [ -z "$(ranks_in "$n")" ] || return 1; done; }
  wait_for 30 "round $r: the ranks of the hit attempt on $survivors to end" no_ranks
  release "$job" >/dev/null
  again() { [ "$(job_state "$job")" = RUNNING ] || [ -e "$dir/final.json" ]; }
  wait_for 60 "round $r: job $job running again" again
  if [ "$kind" = partition ]; then
    # The node comes back with its stale ranks: they must end, not write.
    ctl ip link set "v$victim" up
    stale_gone() { [ -z "$(ranks_in "$victim")" ]; }
    wait_for 90 "round $r: the stale ranks on $victim to end after the link came back" stale_gone
  fi
  finished() { [ -e "$dir/final.json" ] && [ -z "$(job_state "$job")" ]; }
  wait_for 120 "round $r: job $job to finish" finished
  local resumed tasks worst
  resumed=$(sed -n 's/^resumed from .* at step \([0-9]*\) .*/\1/p' "$ldir/job.out" | tail -n 1)
  # No checkpoint yet at the fault: the attempt is moved aside and the run starts afresh.
  [ "$at" = 0 ] && [ -z "$resumed" ] && compgen -G "$run/pretrain.incomplete.*" >/dev/null && resumed=0
  [ "$resumed" = "$at" ] || fail "round $r: resumed at step '${resumed:-none}', the newest checkpoint at the fault was $at"
  tasks=$(grep " start " "$run/pretrain.attempts" | tail -n 1 | sed -n 's/.* tasks=\([0-9]*\).*/\1/p')
  worst=$(compare_losses "$dir/metrics.jsonl" "$tmp/reference/metrics.jsonl" 1e-4) || fail "round $r: losses: $worst"
  # Every attempt on 2 ranks: the resume rules promise the uninterrupted 2-rank run, bit for bit.
  if [ -z "$(grep " start " "$run/pretrain.attempts" | grep -v " tasks=2 ")" ]; then
    local exact
    exact=$(compare_losses "$dir/metrics.jsonl" "$tmp/reference2/metrics.jsonl" 0) || fail "round $r: not bit-identical to the 2-rank run: $exact"
    worst="$worst, bit-identical to 2 ranks"
  fi
  # Bring the node back for the next round.
  if [ "$kind" != partition ]; then bash "$nodes_sh" revive-node "$cluster" "$victim" >/dev/null; fi
  all_idle() { [ "$(ctl sinfo -h -N -o %T | grep -c '^idle$')" -eq 3 ]; }
  wait_for 90 "round $r: $victim back" all_idle
  echo "$kind $pick:$victim $at $tmp_seen $resumed $tasks ${worst#*difference }"
}

picks=(batch other)
results=$tmp/results
: >"$results"
for r in $(seq 1 "$rounds"); do
  # Every fault on either node in turn; the moments are random.
  kind=${kinds[(r - 1) % ${#kinds[@]}]}
  pick=${picks[((r - 1) / ${#kinds[@]}) % 2]}
  line=$(round "$r" $((RANDOM % 9)) $((RANDOM % 300)) "$kind" "$pick") || { echo "$line"; exit 1; }
  echo "round $r: $line ($((SECONDS - start))s)"
  echo "$r $line" >>"$results"
done
echo
printf '%-5s %-9s %-12s %-13s %-15s %-12s %-11s %s\n' round fault node "ckpt at hit" ".tmp at hit" "resumed at" "last tasks" "worst rel"
awk '{ printf "%-5s %-9s %-12s %-13s %-15s %-12s %-11s", $1, $2, $3, $4, $5, $6, $7; $1 = $2 = $3 = $4 = $5 = $6 = $7 = ""; sub(/^ +/, ""); print " " $0 }' "$results"
echo "$(wc -l <"$results") rounds survived, $(awk '$5 == "yes"' "$results" | wc -l) with a checkpoint being written at the fault ($((SECONDS - start))s)"
