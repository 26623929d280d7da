#!/usr/bin/env bash
# slurm/cluster-nodes.sh - a SLURM cluster of N nodes on this one machine, each
# node its own network namespace with its own address and hostname: the
# multi-node paths (srun across hosts, MPI over TCP between them, hybrid
# sharding, a node lost mid-job) for real, without leaving the machine.
#
#   bash slurm/cluster-nodes.sh start DIR [--nodes N]  # N compute nodes (default 3, 1..9)
#   bash slurm/cluster-nodes.sh stop DIR               # every daemon, job and namespace of DIR gone
#   bash slurm/cluster-nodes.sh exec DIR NODE CMD...   # CMD inside NODE's namespace (NODE: ctl, node1..)
#   bash slurm/cluster-nodes.sh kill-node DIR NODE     # power loss: cut NODE's link, kill -9 all in it
#   bash slurm/cluster-nodes.sh revive-node DIR NODE   # link up again, slurmd started again
#   bash slurm/cluster-nodes.sh pids DIR NODE          # the processes in NODE's namespace
#   bash slurm/cluster-nodes.sh netns DIR NODE         # the name of NODE's namespace (for ip -n)
#
# (`slurm/local-cluster.sh start DIR --nodes N` runs this too.)
#
# Layout: namespace "<p>-ctl" holds a bridge (10.213.0.1/24) and slurmctld,
# hostname "ctl"; namespace "<p>-nodeI" holds eth0 = 10.213.0.(10+I)/24, the
# other end of a veth pair whose bridge end lives in <p>-ctl, and slurmd -N
# nodeI, hostname nodeI (its own UTS namespace). <p> is derived from DIR so
# that two clusters never share a namespace. The root namespace gets no device
# and no address: clients run inside a namespace, `cluster-nodes.sh exec DIR
# ctl sbatch ...` (DIR/env also defines the shell function `cluster`, which does
# that). One munged in the root namespace serves every node: its socket is a
# file, and namespaces share the file system. Each node has its own spool, pid
# file, log and TMPDIR (DIR/nodes/nodeI/...; the TaskProlog sets TMPDIR for
# every task) so that the PMIx and Open MPI session folders of two nodes never
# collide.
#
# Timeouts are short for the tests: SlurmdTimeout=10 (a node that stops
# answering is DOWN 10-20 s later and its jobs are requeued), KillWait=5.
#
# Exit status of start: 0 up, 77 when it cannot run here (not root, no network
# namespaces, no slurm; the message says why), 1 on other errors. A failed start
# tears down what it made.
set -u

die() { echo "cluster-nodes: $1" >&2; exit "${2:-1}"; }

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|exec|kill-node|revive-node|pids DIR ..." 2
shift 2
nodes=3
subnet=10.213.0

if [ "$cmd" = start ]; then
  mkdir -p "$dir" || die "cannot create $dir"
fi
[ -d "$dir" ] || { [ "$cmd" = stop ] && exit 0; die "no cluster in $dir"; }
dir=$(cd "$dir" && pwd)
prefix=ps$(printf '%s' "$dir" | md5sum | cut -c1-6)
ns() { echo "$prefix-$1"; }
[ -f "$dir/nodes.count" ] && nodes=$(cat "$dir/nodes.count")

# ---------------------------------------------------------------- helpers
stop_pid() { # pid: TERM, wait up to 5 s, then KILL
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}
ns_exists() { [ -e "/run/netns/$(ns "$1")" ]; }
ns_pids() { ns_exists "$1" && ip netns pids "$(ns "$1")" 2>/dev/null; }
kill_ns() { # every process in the namespace, KILL (bounded)
  local pid
  for _ in $(seq 1 50); do
    [ -z "$(ns_pids "$1")" ] && return 0
    for pid in $(ns_pids "$1"); do kill -9 "$pid" 2>/dev/null; done
    sleep 0.1
  done
}
in_ns() { # NODE CMD...: CMD inside NODE's namespace, with the cluster's SLURM_CONF
  local node=$1
  shift
  ns_exists "$node" || die "no namespace for $node (is the cluster in $dir up?)"
  SLURM_CONF=$dir/slurm.conf nsenter --net="/run/netns/$(ns "$node")" "$@"
}
node_names() { local i; for i in $(seq 1 "$nodes"); do echo "node$i"; done; }

start_slurmd() { # node: slurmd -N node in its namespace, its own hostname and TMPDIR
  local node=$1 nd=$dir/nodes/$1
  mkdir -p "$nd/spool" "$nd/tmp"
  chmod 1777 "$nd/tmp"
  SLURM_CONF=$dir/slurm.conf TMPDIR=$nd/tmp nsenter --net="/run/netns/$(ns "$node")" \
    unshare --uts sh -c "hostname $node && exec slurmd -D -N $node -f $dir/slurm.conf" >>"$nd/slurmd.out" 2>&1 &
  echo $! >"$nd/slurmd.pid.launch"
}

stop_cluster() {
  local node
  if [ -f "$dir/slurm.conf" ] && ns_exists ctl && [ -n "$(ns_pids ctl)" ]; then
    in_ns ctl scancel --full --quiet 2>/dev/null
    for _ in $(seq 1 50); do
      [ -z "$(in_ns ctl squeue -h 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  # Nodes first (slurmd, slurmstepd, any rank left), then the controller.
  for node in $(node_names) ctl; do
    pids=()
    for pid in $(ns_pids "$node"); do stop_pid "$pid" & pids+=($!); done
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
    kill_ns "$node"
    ns_exists "$node" && ip netns del "$(ns "$node")" 2>/dev/null
  done
  [ -f "$dir/munged.pid" ] && stop_pid "$(cat "$dir/munged.pid")"
  rm -f "$dir/munged.pid"
}

case $cmd in
  stop) stop_cluster; exit 0 ;;
  exec) [ $# -ge 2 ] || die "usage: $0 exec DIR NODE CMD..." 2
        node=$1; shift; in_ns "$node" "$@"; exit $? ;;
  pids) ns_pids "${1:?node}"; exit 0 ;;
  netns) ns "${1:?node}"; exit 0 ;;
  kill-node)
    node=${1:?node}
    ns_exists "$node" || die "no node $node"
    # A lost node sends nothing: cut the link first so that no FIN or RST
    # reaches the peers, then kill every process in it.
    in_ns ctl ip link set "v$node" down
    kill_ns "$node"
    [ -z "$(ns_pids "$node")" ] || die "processes survive in $node: $(ns_pids "$node" | tr '\n' ' ')"
    echo "cluster-nodes: $node lost (link down, every process killed)"
    exit 0 ;;
  revive-node)
    node=${1:?node}
    ns_exists "$node" || die "no node $node"
    in_ns ctl ip link set "v$node" up
    start_slurmd "$node"
    echo "cluster-nodes: $node back (link up, slurmd started)"
    exit 0 ;;
  start) ;;
  *) die "unknown command '$cmd'" 2 ;;
esac

while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=${2:-}; shift 2 ;;
    --nodes=*) nodes=${1#--nodes=}; shift ;;
    *) die "unknown option '$1'" 2 ;;
  esac
done
case $nodes in [1-9]) ;; *) die "--nodes takes 1 to 9, not '$nodes'" 2 ;; esac

# ---------------------------------------------------------------- can it run here
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, daemons as root)" 77
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
for p in slurmd slurmctld sbatch munged; do
  command -v $p >/dev/null 2>&1 || { need+=(slurm-wlm munge); break; }
done
if [ ${#need[@]} -gt 0 ]; then
  echo "cluster-nodes: installing ${need[*]} (apt-get, quiet)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$dir/apt.log" 2>&1 ||
    die "could not install ${need[*]} (see $dir/apt.log)" 77
fi
for p in ip unshare nsenter md5sum; do command -v $p >/dev/null 2>&1 || die "needs $p" 77; done
ns_exists ctl && die "a cluster already runs in $dir (stop it first)"
echo "$nodes" >"$dir/nodes.count"
trap 'rc=$?; [ $rc -eq 0 ] || stop_cluster; exit $rc' EXIT
trap 'exit 143' TERM INT
ip netns add "$(ns ctl)" 2>"$dir/netns.err" || die "cannot create a network namespace: $(cat "$dir/netns.err")" 77
mkdir -p "$dir/munge" "$dir/state" "$dir/log" "$dir/nodes"
chmod 0755 "$dir" "$dir/munge"

# ---------------------------------------------------------------- network
net() { ip netns exec "$(ns ctl)" "$@"; }
net ip link set lo up &&
  net ip link add br0 type bridge &&
  net ip addr add "$subnet.1/24" dev br0 &&
  net ip link set br0 up || die "cannot set up the bridge in $(ns ctl)" 77
for i in $(seq 1 "$nodes"); do
  node=node$i
  ip netns add "$(ns "$node")" || die "cannot create namespace $(ns "$node")" 77
  # Both ends are made inside our namespaces: the root namespace never sees them.
  net ip link add "v$node" type veth peer name eth0 netns "$(ns "$node")" &&
    net ip link set "v$node" master br0 &&
    net ip link set "v$node" up &&
    ip netns exec "$(ns "$node")" ip link set lo up &&
    ip netns exec "$(ns "$node")" ip addr add "$subnet.$((10 + i))/24" dev eth0 &&
    ip netns exec "$(ns "$node")" ip link set eth0 up || die "cannot wire $node" 77
done
# ---------------------------------------------------------------- munge
key=$dir/munge/munge.key
[ -s "$key" ] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none || die "cannot write the munge key"
chmod 0600 "$key"
socket=$dir/munge/munge.socket.2
munged --foreground --force --socket="$socket" --key-file="$key" --log-file="$dir/log/munged.log" \
  --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" >>"$dir/log/munged.out" 2>&1 &
echo $! >"$dir/munged.pid"
for _ in $(seq 1 50); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || die "munged did not start: $(tail -n 3 "$dir/log/munged.log" 2>/dev/null)" 77

# ---------------------------------------------------------------- slurm.conf
# Every task gets its node's TMPDIR (Open MPI's session folder lives there).
cat >"$dir/task-prolog.sh" <<EOF
#!/bin/sh
echo "export TMPDIR=$dir/nodes/\$SLURMD_NODENAME/tmp"
EOF
chmod 0755 "$dir/task-prolog.sh"
mem=$(free -m | awk '/^Mem:/ { print int($2 * 0.9 / '"$nodes"') }')
{
  cat <<EOF
# Generated by slurm/cluster-nodes.sh: $nodes compute nodes in network namespaces ($prefix-*)
ClusterName=presight-nodes
SlurmctldHost=ctl($subnet.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/nodes/%n/spool
TmpFS=$dir/nodes/%n/tmp
SlurmctldPidFile=$dir/state/slurmctld.pid
SlurmdPidFile=$dir/nodes/%n/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/nodes/%n/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
TaskProlog=$dir/task-prolog.sh
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
TreeWidth=16
EOF
  for i in $(seq 1 "$nodes"); do
    echo "NodeName=node$i NodeAddr=$subnet.$((10 + i)) NodeHostname=node$i CPUs=2 RealMemory=$mem State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=node[1-$nodes] Default=YES MaxTime=INFINITE State=UP"
} >"$dir/slurm.conf"
cat >"$dir/env" <<EOF
# source $dir/env: the clients (sbatch, srun, squeue, ...) run in the controller's namespace
export SLURM_CONF=$dir/slurm.conf
cluster() { bash $(cd "$(dirname "$0")" && pwd)/cluster-nodes.sh exec $dir "\$@"; }
EOF

# ---------------------------------------------------------------- daemons
SLURM_CONF=$dir/slurm.conf nsenter --net="/run/netns/$(ns ctl)" \
  unshare --uts sh -c "hostname ctl && exec slurmctld -D -i -f $dir/slurm.conf" >>"$dir/log/slurmctld.out" 2>&1 &
for node in $(node_names); do start_slurmd "$node"; done

up=0
for _ in $(seq 1 300); do
  idle=$(in_ns ctl sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 ~ /^idle/ { n++ } END { print n + 0 }')
  [ "$idle" -eq "$nodes" ] && { up=1; break; }
  [ -n "$(ns_pids ctl)" ] || die "slurmctld exited at start: $(tail -n 5 "$dir/log/slurmctld.log" "$dir/log/slurmctld.out" 2>/dev/null)" 77
  sleep 0.1
done
[ $up -eq 1 ] || die "the nodes did not come up: $(in_ns ctl sinfo -N 2>&1 | tr '\n' ';') $(tail -n 3 "$dir"/nodes/*/slurmd.log 2>/dev/null)" 77
trap - EXIT TERM INT
echo "cluster-nodes: up in $dir: ctl $subnet.1 (slurmctld), $(for i in $(seq 1 "$nodes"); do printf 'node%d %s.%d  ' "$i" "$subnet" $((10 + i)); done)"
echo "clients: source $dir/env; cluster ctl sinfo"
