# slurm/cluster-lib.sh - shell functions shared by tests/t_cluster_nodes.sh and
# slurm/cluster-faults.sh (sourced, not run). Expects: $cluster (the cluster
# dir of slurm/cluster-nodes.sh), $bin (build/presight), fail() and $start.

nodes_sh=slurm/cluster-nodes.sh
# A client command in the controller's namespace (sbatch, squeue, srun, presight study ...).
ctl() { bash "$nodes_sh" exec "$cluster" ctl "$@"; }

# cluster_up NAME: a fresh temp dir ($tmp), a 3-node cluster in $tmp/cluster
# ($cluster), torn down on exit whatever happens (the dir is kept when it
# failed); exits 77 with the reason when the cluster cannot run here.
cluster_up() {
  tmp=$(mktemp -d "/tmp/presight-$1.XXXXXX")
  chmod 0755 "$tmp"
  cluster=$tmp/cluster
  trap cluster_cleanup EXIT
  trap "exit 143" TERM INT
  bash "$nodes_sh" start "$cluster" --nodes 3 >"$tmp/cluster.log" 2>&1
  local rc=$?
  [ $rc -eq 77 ] && { echo "SKIP: no multi-node test cluster here: $(tail -n 3 "$tmp/cluster.log" | tr '\n' ' ')"; exit 77; }
  [ $rc -eq 0 ] || { cat "$tmp/cluster.log"; fail "cluster-nodes.sh start (exit $rc)"; }
  # The root namespace got no address of the cluster's subnet.
  ip -4 -o addr show | grep -q '10\.213\.' && fail "the root namespace has a 10.213 address"
  return 0
}
cluster_cleanup() {
  local rc=$?
  bash "$nodes_sh" stop "$cluster" >/dev/null 2>&1
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then echo "kept $tmp (runs, job output, cluster logs) for a look"; else rm -rf "$tmp"; fi
}

# Open MPI between the namespaces: TCP only (no shared memory), on the
# cluster's own subnet; yield when idle (2 cores, many ranks).
cluster_mpi_env() {
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=10.213.0.0/24 OMPI_MCA_oob_tcp_if_include=10.213.0.0/24
  export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1 PRESIGHT_THREADS=1
}

# Losses by step of a metrics.jsonl (the last line of a step counts, should a
# resumed run repeat one).
losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\).*/\1 \2/p' "$1" | awk '{ l[$1] = $2 } END { for (s in l) print s, l[s] }' | sort -n; }

# compare_losses A B TOL: every step of A and B, |a - b| <= TOL * |b|; prints
# the worst relative difference; fails when the steps differ or one is over.
compare_losses() {
  awk -v tol="$3" 'NR == FNR { a[$1] = $2; na++; next }
    { nb++; if (!($1 in a)) { miss++; next }
      d = a[$1] - $2; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > worst) worst = r; n++ }
    END { printf "%d steps, worst relative difference %.3g\n", n, worst
          exit !(n > 0 && n == na && n == nb && worst <= tol) }' <(losses "$1") <(losses "$2")
}

# wait_for SECONDS WHAT CMD...: polls CMD every 0.1 s; fails naming WHAT on timeout.
wait_for() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      declare -F diagnose >/dev/null && diagnose
      fail "timed out after ${limit}s waiting for $what"
    fi
    sleep 0.1
  done
}

job_field() { ctl scontrol show job "$1" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
job_state() { ctl squeue -h -j "$1" -o %T 2>/dev/null | head -n 1; }
# A requeued job waits for its BeginTime (about 2 minutes) or is held: start it now.
release() {
  [ "$(job_state "$1")" = PENDING ] || return 0
  echo "job $1 pending: $(job_field "$1" Reason), $(ctl scontrol show job "$1" -o | grep -o 'Restarts=[0-9]*') -> released"
  ctl scontrol release "$1" >/dev/null 2>&1
  ctl scontrol update JobId="$1" StartTime=now >/dev/null 2>&1
  return 0
}
newest_step() { # the step of the newest complete checkpoint in a run dir, 0 when none
  local f
  f=$(ls "$1"/checkpoints/step_*.h5 2>/dev/null | sort | tail -n 1)
  [ -n "$f" ] || { echo 0; return; }
  f=${f##*/step_}
  echo $((10#${f%.h5}))
}
# The presight ranks still alive in a node's namespace.
ranks_in() {
  local pid
  for pid in $(bash "$nodes_sh" pids "$cluster" "$1"); do
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = presight ] && echo "$pid"
  done
}
# What the cluster looks like, for a failure message.
diagnose() {
  echo "--- squeue / sinfo / jobs"
  ctl squeue -o '%i %T %r %N %b' 2>&1
  ctl sinfo -N 2>&1
  ctl scontrol show job -o 2>&1 | tr ' ' '\n' | grep -E '^(JobId|JobState|Reason|Restarts|NodeList|BatchHost|StartTime)=' | paste -sd' '
}
node_state() { ctl sinfo -h -n "$1" -o %T 2>/dev/null | head -n 1; }
