#!/usr/bin/env bash
# A real multi-node cluster: slurm/cluster-nodes.sh starts slurmctld and three
# slurmd, each node its own network namespace (own address on a bridge, own
# hostname, spool and TMPDIR), and this test checks that:
#   - `srun --mpi=pmix -N 2 --ntasks-per-node=2` runs presight train with ranks
#     on two nodes, Open MPI over TCP between the namespaces (btl self,tcp), and
#     hybrid sharding (parallel.shard_group = 2 = ranks per node) gives the
#     losses of the same 4 ranks on one host (shared memory), within 1e-5;
#   - `presight study submit` spreads a 3-task array over the 3 nodes and
#     `presight study status` names the node each run ran on;
#   - a job submitted with -N 1-2 (GLOBAL_BATCH=8: the micro-batch follows the
#     task count) trains on two nodes; after its 2nd checkpoint the non-batch
#     node is lost (link cut, every process in it killed; SlurmdTimeout=10):
#     no rank is left on any node, SLURM requeues the job, it resumes from the
#     newest checkpoint on the nodes that remain; then the batch node of that
#     attempt is lost too and the job resumes on the last node with one task
#     (micro_batch 8 instead of 4): it finishes with the losses of an
#     uninterrupted run of the same global batch (within 1e-4: other rank
#     counts sum in another order) and every step is there;
#   - the lost nodes come back (slurmd again, ReturnToService=2) and take jobs.
# Everything it made (namespaces, daemons) goes on exit, pass or fail. Skips
# (77) when network namespaces or the daemons cannot run here.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$bin" ] || fail "build/presight is missing (make build/presight)"
start=$SECONDS
t() { echo "$* ($((SECONDS - start))s)"; }

# shellcheck source=../slurm/cluster-lib.sh
source slurm/cluster-lib.sh
cluster_up cluster
t "cluster up: ctl + node1..node3, each in its own network namespace"

# ---------------------------------------------------------------- the micro-batch from the task count
# pretrain.sbatch with `echo` for presight: the arguments it would pass.
"$bin" study plan tests/fixtures/cluster/loss.cfg --dir "$tmp/arith" >/dev/null 2>&1 || fail "study plan (arith)"
task_args() { env -u SLURM_JOB_ID PRESIGHT_BIN=echo STUDY_DIR="$tmp/arith" TASK_INDEX=0 GLOBAL_BATCH=8 "$@" bash slurm/pretrain.sbatch 2>&1; }
# (the task fails afterwards, as echo writes no final.json: only the arguments count)
has_args() { local want=$1; shift; out=$(task_args "$@"); echo "$out" | grep -q -- "$want"; }
has_args "^train .* train.micro_batch=4 train.grad_accum=1$" SLURM_NTASKS=2 || fail "GLOBAL_BATCH=8 over 2 tasks is not micro_batch 4: $out"
has_args "train.micro_batch=2 train.grad_accum=2$" SLURM_NTASKS=2 GRAD_ACCUM=2 || fail "GLOBAL_BATCH=8 over 2 tasks x accum 2: $out"
has_args "train.micro_batch=8 " SLURM_NTASKS=2 SLURM_JOB_NUM_NODES=1 RANKS_PER_NODE=1 || fail "1 node x RANKS_PER_NODE=1 is not micro_batch 8: $out"
out=$(task_args SLURM_NTASKS=3)
[ $? -eq 2 ] && echo "$out" | grep -q "does not split over 3 tasks" || fail "GLOBAL_BATCH=8 over 3 tasks was not refused: $out"
out=$(task_args SLURM_NTASKS=2 SLURM_JOB_NUM_NODES=1 RANKS_PER_NODE=x)
[ $? -eq 2 ] || fail "RANKS_PER_NODE=x was not refused: $out"

# ---------------------------------------------------------------- across nodes: hybrid sharding
train_args=(config/tiny.cfg parallel.strategy=fsdp parallel.shard_group=2 train.steps=30 train.log_every=10)
( export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    OMPI_MCA_mpi_yield_when_idle=1 PRESIGHT_THREADS=1
  timeout 120 mpirun -np 4 "$bin" train "${train_args[@]}" run.dir="$tmp/one-host" ) >"$tmp/one-host.log" 2>&1 ||
  { tail -n 20 "$tmp/one-host.log"; fail "4 ranks on one host"; }
cluster_mpi_env
timeout 120 bash "$nodes_sh" exec "$cluster" ctl srun --mpi=pmix -N 2 --ntasks-per-node=2 bash -c \
  'echo "$SLURM_PROCID $(hostname) $(ip -4 -o addr show eth0 | awk "{ print \$4 }")" >>"$0/ranks"; exec "$@"' \
  "$tmp" "$bin" train "${train_args[@]}" run.dir="$tmp/two-nodes" >"$tmp/two-nodes.log" 2>&1 ||
  { tail -n 20 "$tmp/two-nodes.log"; fail "srun -N 2 --ntasks-per-node=2"; }
sort -n "$tmp/ranks" >"$tmp/ranks.sorted"
[ "$(wc -l <"$tmp/ranks.sorted")" -eq 4 ] || { cat "$tmp/ranks"; fail "expected 4 ranks"; }
[ "$(awk '{ print $2 }' "$tmp/ranks.sorted" | sort -u | wc -l)" -eq 2 ] || { cat "$tmp/ranks.sorted"; fail "the ranks are not on two nodes"; }
# Ranks 0,1 share a node, 2,3 the other: a shard group (2 ranks) is a node.
[ "$(awk 'NR <= 2 { print $2 }' "$tmp/ranks.sorted" | sort -u | wc -l)" -eq 1 ] &&
  [ "$(awk 'NR > 2 { print $2 }' "$tmp/ranks.sorted" | sort -u | wc -l)" -eq 1 ] || { cat "$tmp/ranks.sorted"; fail "ranks are not grouped by node"; }
grep -q "fsdp x 4 ranks" "$tmp/two-nodes.log" || { head "$tmp/two-nodes.log"; fail "not one 4-rank job"; }
cmp_out=$(compare_losses "$tmp/two-nodes/metrics.jsonl" "$tmp/one-host/metrics.jsonl" 1e-5) ||
  fail "hybrid sharding on 2 nodes differs from one host: $cmp_out"
t "hybrid sharding, 2 nodes x 2 ranks over TCP vs 4 ranks on one host: $cmp_out"

# ---------------------------------------------------------------- a study spread over the nodes
sdir=$tmp/study
ctl "$bin" study submit tests/fixtures/cluster/study.cfg --dir "$sdir" >"$tmp/submit.log" 2>&1 || { cat "$tmp/submit.log"; fail "study submit"; }
array=$(awk -F'\t' '$1 == "pretrain" { print $3 }' "$sdir/jobs.tsv")
[ -n "$array" ] || { cat "$sdir/jobs.tsv"; fail "jobs.tsv lacks the array job"; }
queue_empty() { [ -z "$(ctl squeue -h -j "$1" 2>/dev/null)" ]; }
wait_for 120 "the study's array job" queue_empty "$array"
ctl "$bin" study status tests/fixtures/cluster/study.cfg --dir "$sdir" >"$tmp/status.log" 2>&1 || { cat "$tmp/status.log"; fail "study status"; }
cat "$tmp/status.log"
grep -q "summary: 3 runs: 3 done, 0 running, 0 pending, 0 failed" "$tmp/status.log" || fail "not every run is done"
ran_on=()
while IFS=$'\t' read -r index id _; do
  case $index in \#*) continue ;; esac
  node=$(sed -n 's/.* start .*nodes=\([^ ]*\).*/\1/p' "$sdir/runs/$id/pretrain.attempts" | tail -n 1)
  [ -n "$node" ] || { cat "$sdir/runs/$id/pretrain.attempts"; fail "run $index: no nodes= in its attempts log"; }
  grep -E "^ *$index +$id .* $node( |$)" "$tmp/status.log" >/dev/null || fail "status does not show run $index on $node"
  ran_on+=("$node")
done <"$sdir/runs.tsv"
[ "$(printf '%s\n' "${ran_on[@]}" | sort -u | wc -l)" -eq 3 ] || fail "the 3 tasks did not run on 3 nodes: ${ran_on[*]}"
# Negative control: the loss comparison tells two seeds apart.
ids=($(awk -F'\t' '!/^#/ { print $2 }' "$sdir/runs.tsv"))
compare_losses "$sdir/runs/${ids[0]}/pretrain/metrics.jsonl" "$sdir/runs/${ids[1]}/pretrain/metrics.jsonl" 1e-4 >/dev/null &&
  fail "the loss comparison does not tell seed 1 from seed 2"
t "study: 3 tasks on ${ran_on[*]}, status names them"

# ---------------------------------------------------------------- nodes lost mid-job
ldir=$tmp/loss
"$bin" study plan tests/fixtures/cluster/loss.cfg --dir "$ldir" >"$tmp/plan.log" 2>&1 || { cat "$tmp/plan.log"; fail "study plan (loss)"; }
run=$ldir/runs/$(awk -F'\t' '$1 == "0" { print $2 }' "$ldir/runs.tsv")
# The uninterrupted reference: one process, micro_batch 8 = the global batch.
"$bin" train "$run/config.cfg" run.dir="$tmp/reference" train.micro_batch=8 >"$tmp/reference.log" 2>&1 ||
  { tail "$tmp/reference.log"; fail "the reference run"; }
job=$(ctl sbatch --parsable -N 1-2 -n 2 --spread-job --cpus-per-task=1 --requeue --open-mode=append \
  --output="$tmp/loss-job.out" --export=ALL,PRESIGHT_BIN="$bin",STUDY_DIR="$ldir",TASK_INDEX=0,GLOBAL_BATCH=8,RANKS_PER_NODE=1 \
  slurm/pretrain.sbatch) || fail "sbatch -N 1-2"
dir=$run/pretrain

# lose NODE_PICK AFTER_STEP: once a checkpoint newer than AFTER_STEP exists, the
# node (first = batch host, last = the other) of the running attempt is lost;
# then no rank may be left anywhere, the job must be requeued and is released.
lose() {
  local pick=$1 after=$2 nodes restarts n
  running() { [ "$(job_state "$job")" = RUNNING ] && [ "$(newest_step "$dir")" -gt "$after" ]; }
  wait_for 90 "job $job to run past step $after" running
  nodes=$(job_field "$job" NodeList)
  restarts=$(job_field "$job" Restarts)
  victim=$(ctl scontrol show hostnames "$nodes" | { [ "$pick" = first ] && head -n 1 || tail -n 1; })
  bash "$nodes_sh" kill-node "$cluster" "$victim" >/dev/null || fail "kill-node $victim"
  # The survivors cannot finish a collective checkpoint without the lost rank:
  # this stays the newest, and the next attempt must resume from it.
  resume_steps+=("$(newest_step "$dir")")
  t "lost $victim of $nodes (the $pick node) after checkpoint step $(newest_step "$dir")"
  requeued() { [ "$(job_field "$job" Restarts)" -gt "$restarts" ]; }
  wait_for 90 "job $job to be requeued after $victim was lost" requeued
  no_ranks() { for n in node1 node2 node3; do [ -z "$(ranks_in $n)" ] || return 1; done; }
  wait_for 30 "every rank of the lost job to end" no_ranks
  [ "$(node_state "$victim")" = down ] || [ "$(node_state "$victim")" = "down*" ] || fail "$victim is $(node_state "$victim"), not down"
  pending() { [ "$(job_state "$job")" = PENDING ]; }
  wait_for 30 "job $job to be pending again" pending
  release "$job"
}
resume_steps=()
lose last 50
first=$victim
t "job $job requeued, no rank left"
lose first "$(newest_step "$dir")"
second=$victim
t "job $job requeued again, no rank left"
finished() { [ -e "$dir/final.json" ] && [ -z "$(job_state "$job")" ]; }
wait_for 120 "job $job to finish" finished
grep "resumed from" "$tmp/loss-job.out" >"$tmp/resumed" || true
[ "$(wc -l <"$tmp/resumed")" -eq 2 ] || { cat "$tmp/loss-job.out"; fail "expected 2 resumes, found $(wc -l <"$tmp/resumed")"; }
for k in 0 1; do
  sed -n "$((k + 1))p" "$tmp/resumed" | grep -q "at step ${resume_steps[k]} " ||
    { cat "$tmp/resumed"; fail "resume $((k + 1)) did not start from the newest checkpoint (step ${resume_steps[k]})"; }
done
cat "$dir/../pretrain.attempts"
starts=$(grep " start " "$dir/../pretrain.attempts")
[ "$(echo "$starts" | wc -l)" -eq 3 ] || fail "expected 3 attempts"
echo "$starts" | sed -n 1p | grep -q "tasks=2 micro_batch=4" || fail "attempt 1 was not 2 tasks x micro_batch 4"
echo "$starts" | sed -n 3p | grep -q "tasks=1 micro_batch=8" || fail "the last attempt was not 1 task x micro_batch 8"
echo "$starts" | sed -n 2p | grep -q "$first" && fail "attempt 2 ran on the lost $first"
echo "$starts" | sed -n 3p | grep -Eq "$first|$second" && fail "attempt 3 ran on a lost node"
cmp_out=$(compare_losses "$dir/metrics.jsonl" "$tmp/reference/metrics.jsonl" 1e-4) ||
  fail "the resumed run's losses differ from the uninterrupted run: $cmp_out"
t "node-loss run finished: $cmp_out"

# ---------------------------------------------------------------- the nodes come back
for n in "$first" "$second"; do bash "$nodes_sh" revive-node "$cluster" "$n" >/dev/null || fail "revive-node $n"; done
all_idle() { [ "$(ctl sinfo -h -N -o %T | grep -c '^idle$')" -eq 3 ]; }
wait_for 60 "the lost nodes to come back" all_idle
[ "$(timeout 60 bash "$nodes_sh" exec "$cluster" ctl srun -N 3 hostname | sort -u | wc -l)" -eq 3 ] || fail "srun -N 3 after the nodes came back"
t "ok: $first and $second back, srun -N 3 runs on all three"
