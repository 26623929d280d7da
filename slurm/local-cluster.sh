#!/usr/bin/env bash
# slurm/local-cluster.sh - a one-node SLURM cluster on localhost, for tests and
# for trying `presight study submit` on a laptop. No systemd, no root-owned
# system files touched: everything (munge key and socket, slurm.conf, state,
# logs) lives in one folder, and the daemons are stopped by PID.
#
#   bash slurm/local-cluster.sh start DIR   # install slurm-wlm + munge if missing, start munged,
#                                            # slurmctld, slurmd; prints `export SLURM_CONF=...`
#   bash slurm/local-cluster.sh stop DIR    # stops the daemons started in DIR (by PID)
#   bash slurm/local-cluster.sh start DIR --nodes N   # N nodes, each in its own network
#                                            # namespace: slurm/cluster-nodes.sh (stop DIR stops it too)
#
# After `start`, point the clients at the cluster with
#   export SLURM_CONF=DIR/slurm.conf
# (DIR/env holds that line; `source DIR/env`).
#
# Exit status of start: 0 up, 77 when the daemons cannot run here (the message
# says why; tests skip on it), 1 on other errors. Settings known to work with
# Debian 12's Slurm 22.05: proctrack/linuxproc, task/none, select/cons_tres,
# MpiDefault=pmix, munge on a private socket whose folder is mode 0755, the
# node named localhost (slurmd -N localhost) with the machine's real CPUs and
# memory, no accounting, ReturnToService=2, short timeouts.
set -u

die() { echo "local-cluster: $*" >&2; exit "${2:-1}"; }

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR [--nodes N]" 2

# Several nodes: the namespace cluster of slurm/cluster-nodes.sh.
case ${3:-} in --nodes | --nodes=*) exec bash "$(dirname "$0")/cluster-nodes.sh" "$@" ;; esac
if [ "$cmd" = stop ] && [ -f "$dir/nodes.count" ]; then exec bash "$(dirname "$0")/cluster-nodes.sh" stop "$dir"; fi

# The slurmstepd processes of this cluster (they outlive slurmd): found by the
# SLURM_CONF they inherited from our slurmd.
stepd_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    case "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" in
      slurmstepd*) tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$dir/slurm.conf" && echo "${p#/proc/}" ;;
    esac
  done
}

stop_pid() { # pid: TERM, wait up to 5 s, then KILL
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}

stop_cluster() {
  local name pid
  # Cancel what still runs so that the step daemons end their jobs cleanly.
  if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF=$dir/slurm.conf scancel --full --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 1 100); do
      [ -z "$(SLURM_CONF=$dir/slurm.conf squeue -h 2>/dev/null)" ] && [ -z "$(stepd_pids)" ] && break
      sleep 0.1
    done
  fi
  for name in slurmd slurmctld; do
    [ -f "$dir/$name.pid" ] && stop_pid "$(cat "$dir/$name.pid")"
    rm -f "$dir/$name.pid"
  done
  for pid in $(stepd_pids); do stop_pid "$pid"; done
  [ -f "$dir/munged.pid" ] && stop_pid "$(cat "$dir/munged.pid")"
  rm -f "$dir/munged.pid"
}

if [ "$cmd" = stop ]; then
  [ -d "$dir" ] || exit 0
  dir=$(cd "$dir" && pwd)
  stop_cluster
  exit 0
fi
[ "$cmd" = start ] || die "unknown command '$cmd' (start or stop)" 2

# ---------------------------------------------------------------- packages
need=()
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "needs ${need[*]} installed (run as root to install them)" 77
  echo "local-cluster: installing ${need[*]} (apt-get, quiet)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"${TMPDIR:-/tmp}/local-cluster-apt.log" 2>&1 ||
    die "could not install slurm-wlm and munge (see ${TMPDIR:-/tmp}/local-cluster-apt.log)" 77
fi
[ "$(id -u)" -eq 0 ] || die "the local cluster runs its daemons as root; run as root" 77

mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 0755 "$dir" "$dir/munge"

# ---------------------------------------------------------------- munge
key=$dir/munge/munge.key
if [ ! -s "$key" ]; then
  dd if=/dev/urandom of="$key" bs=1024 count=1 status=none || die "cannot write the munge key"
fi
chmod 0600 "$key"
socket=$dir/munge/munge.socket.2
munged --foreground --force --socket="$socket" --key-file="$key" --log-file="$dir/log/munged.log" \
  --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" >>"$dir/log/munged.out" 2>&1 &
echo $! >"$dir/munged.pid"
for _ in $(seq 1 50); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || { stop_cluster; die "munged did not start: $(tail -n 3 "$dir/log/munged.log" 2>/dev/null)" 77; }

# ---------------------------------------------------------------- slurm.conf
free_port() { # a TCP port nobody listens on
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo 6817
}
ctld_port=$(free_port)
slurmd_port=$(free_port)
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
cpus=$(nproc)
mem=$(free -m | awk '/^Mem:/ { print int($2 * 0.9) }')

cat >"$dir/slurm.conf" <<EOF
# Generated by slurm/local-cluster.sh: a one-node test cluster in $dir
ClusterName=presight-local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/state/slurmctld.pid
SlurmdPidFile=$dir/spool/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
MaxArraySize=1001
SlurmctldTimeout=10
SlurmdTimeout=10
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
MessageTimeout=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env"
export SLURM_CONF=$dir/slurm.conf

# ---------------------------------------------------------------- daemons
slurmctld -D -i -f "$SLURM_CONF" >>"$dir/log/slurmctld.out" 2>&1 &
echo $! >"$dir/slurmctld.pid"
slurmd -D -N localhost -f "$SLURM_CONF" >>"$dir/log/slurmd.out" 2>&1 &
echo $! >"$dir/slurmd.pid"

for _ in $(seq 1 200); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n 1)
  case $state in idle|idle*|mixed|allocated) break ;; esac
  for name in slurmctld slurmd; do
    kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null && continue
    log=$(tail -n 5 "$dir/log/$name.log" "$dir/log/$name.out" 2>/dev/null)
    stop_cluster
    die "$name exited at start:
$log" 77
  done
  sleep 0.1
done
case ${state:-} in
  idle*|mixed|allocated) ;;
  *) log=$(tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" 2>/dev/null)
     stop_cluster
     die "the node did not come up (state '${state:-none}'):
$log" 77 ;;
esac
echo "local-cluster: up in $dir (slurmctld port $ctld_port, node localhost with $cpus CPUs, $mem MB)"
echo "export SLURM_CONF=$dir/slurm.conf"
