#!/usr/bin/env bash
# SLURM test cluster for the SLURM launcher's tests: installs Debian's slurmctld, slurmd,
# slurm-client and munge if they are missing, writes slurm.conf, creates the munge key,
# starts munged, slurmctld and slurmd if they are not running, and waits until sinfo
# shows the nodes ready. Idempotent and quiet; returns at once when all is there.
#
# The cluster has two partitions:
#   debug (default)  this host, one node: the one-node tests and --vllm-slurm without options
#   multi            two nodes, pvs-node1 and pvs-node2. Each is a slurmd in its own network
#                    namespace (and UTS namespace: its own hostname), with its own address on
#                    a private bridge, pvs-br0 (SUBNET.1 on the host, SUBNET.11 and SUBNET.12 in
#                    the namespaces). The namespaces have no default route: their traffic stays
#                    on the bridge. slurmctld and munged stay on the host; the filesystem is the
#                    host's. Jobs run inside the node's namespaces, so addresses, ports and
#                    hostnames are those of separate hosts.
#
# Settings (root, no systemd, no cgroups, no accounting): proctrack/linuxproc,
# task/none, select/cons_tres with CR_Core. Each slurmd has its own spool, pid and log
# file (%n in slurm.conf). An existing slurm.conf that this script did not write is left
# as it is (and then no namespace nodes are made).
#   bash scripts/services/slurm.sh          start (or check) the cluster
#   bash scripts/services/slurm.sh --down   stop the two namespace nodes and remove their
#                                           namespaces, veths and the bridge (the host's
#                                           daemons, which the one-node tests use, stay)
#   SLURM_CONF_FILE  where slurm.conf goes (default /etc/slurm/slurm.conf)
#   SLURM_LOG_DIR    daemon logs (default /var/log/slurm)
#   PVS_SLURM_SUBNET the bridge's /24, as its first three numbers (default 10.213.87)
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

conf=${SLURM_CONF_FILE:-/etc/slurm/slurm.conf}
logs=${SLURM_LOG_DIR:-/var/log/slurm}
subnet=${PVS_SLURM_SUBNET:-10.213.87}
bridge=pvs-br0
ns_nodes=(pvs-node1 pvs-node2)
marker="# written by pytest-vllm-serve scripts/services/slurm.sh"
say() { echo "services/slurm: $*"; }
fail() { echo "services/slurm: $*" >&2; exit 1; }

host=$(hostname -s)
node_addr() { echo "$subnet.$((10 + ${1#pvs-node}))"; }  # pvs-node1 -> SUBNET.11
veth_host() { echo "pvs-v${1#pvs-node}"; }               # the host end of a node's veth

node_state() { sinfo -h -n "$1" -N -o '%t' 2>/dev/null | head -n1; }
node_ready() {
    # A responsive node: idle, mixed, allocated or completing (no trailing '*').
    local state
    state=$(node_state "$1") || return 1
    [[ "$state" =~ ^(idle|mix|alloc|comp)$ ]]
}
all_ready() {
    local node
    node_ready "$host" || return 1
    for node in "${ns_nodes[@]}"; do node_ready "$node" || return 1; done
}

# The pids of the slurmd processes that run in the host's own network namespace.
host_netns=$(readlink /proc/self/ns/net)
host_slurmd_pids() {
    local pid
    for pid in $(pgrep -x slurmd || true); do
        [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$host_netns" ] && echo "$pid"
    done
    return 0
}
# The pid of a namespace node's slurmd, if it runs (its pid file, checked against its netns).
ns_slurmd_pid() {
    local pid
    pid=$(cat "/run/slurmd-$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}

stop_ns_node() {
    local node=$1 pid
    if pid=$(ns_slurmd_pid "$node"); then kill "$pid" 2>/dev/null || true; fi
    if ip netns list | grep -qw "$node"; then
        # Whatever still runs in the node (job steps): it was started by this cluster.
        for pid in $(ip netns pids "$node" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        for _ in $(seq 1 20); do [ -z "$(ip netns pids "$node" 2>/dev/null)" ] && break; sleep 0.25; done
        ip netns del "$node"
    fi
    ip link del "$(veth_host "$node")" 2>/dev/null || true
    rm -rf "/etc/netns/$node" "/run/slurmd-$node.pid"
}

if [ "${1:-}" = "--down" ]; then
    [ "$(id -u)" = 0 ] || fail "--down needs root"
    for node in "${ns_nodes[@]}"; do stop_ns_node "$node"; done
    ip link del "$bridge" 2>/dev/null || true
    rmdir /etc/netns 2>/dev/null || true
    for node in "${ns_nodes[@]}"; do
        scontrol update nodename="$node" state=down reason="namespace removed by slurm.sh --down" >/dev/null 2>&1 || true
    done
    say "the namespace nodes ${ns_nodes[*]}, their veths and $bridge are gone; the host's daemons still run"
    exit 0
fi
[ $# -eq 0 ] || fail "unknown argument $1 (use no argument to start, --down to remove the namespace nodes)"

ours=true
[ -e "$conf" ] && ! grep -qxF "$marker" "$conf" && ours=false
if command -v sinfo >/dev/null 2>&1; then
    if $ours && all_ready && grep -qF "NodeName=${ns_nodes[0]} " "$conf"; then exit 0; fi
    if ! $ours && node_ready "$host"; then exit 0; fi
fi
[ "$(id -u)" = 0 ] || fail "the SLURM cluster is not answering, and starting one needs root.
  fix: run this script as root, or point SLURM_CONF at a running cluster"

missing=()
command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
command -v munged >/dev/null 2>&1 || missing+=(munge)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# -- munge --------------------------------------------------------------------
key=/etc/munge/munge.key
if [ ! -s "$key" ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile "$key" --force
fi
chown munge:munge /etc/munge "$key"
chmod 700 /etc/munge
chmod 400 "$key"
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- munged --force
fi
munge -n | unmunge >/dev/null || fail "munged does not answer (munge -n | unmunge failed)"

# -- slurm.conf -----------------------------------------------------------------
# The daemons find each other by the host's name; a name that does not resolve gets loopback
# (and then the namespace nodes, which reach the host through the bridge, cannot be made).
addr=""
getent hosts "$host" >/dev/null || addr=127.0.0.1
multi=true
if [ -n "$addr" ]; then
    multi=false
    say "the host name $host does not resolve, so slurmctld is at 127.0.0.1, which the namespace"
    say "  nodes cannot reach; only the one-node partition is made. fix: add $host to /etc/hosts"
fi
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
ns_mem_mb=$((mem_mb / 3))
nodes_conf=""
if $multi; then
    for node in "${ns_nodes[@]}"; do
        nodes_conf+="NodeName=$node NodeAddr=$(node_addr "$node") CPUs=$cpus RealMemory=$ns_mem_mb State=UNKNOWN"$'\n'
    done
    nodes_conf+="PartitionName=multi Nodes=$(IFS=,; echo "${ns_nodes[*]}") MaxTime=INFINITE State=UP"
fi
wanted=$(cat <<EOF
$marker
ClusterName=pvs
SlurmctldHost=$host${addr:+($addr)}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd-%n.log
NodeName=$host${addr:+ NodeAddr=$addr} CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
$nodes_conf
EOF
)
changed=false
if ! $ours; then
    say "keeping $conf (not written by this script); no namespace nodes"
    multi=false
    ns_nodes=()
elif [ ! -e "$conf" ] || [ "$(cat "$conf")" != "$wanted" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" >"$conf"
    changed=true
fi
mkdir -p /var/spool/slurmctld "$logs"
for node in "$host" "${ns_nodes[@]}"; do mkdir -p "/var/spool/slurmd/$node"; done

# -- daemons on the host --------------------------------------------------------
if $changed && [ -n "$(squeue -h 2>/dev/null)" ]; then
    say "slurm.conf changed while jobs are queued; restarting the daemons anyway (running jobs survive)"
fi
if pgrep -x slurmctld >/dev/null; then
    if $changed; then
        # Slurm 22.05 needs a restart (not a reconfigure) to add nodes; its state is kept.
        pkill -x slurmctld
        for _ in $(seq 1 40); do pgrep -x slurmctld >/dev/null || break; sleep 0.25; done
        slurmctld
    fi
else
    slurmctld
fi
pids=$(host_slurmd_pids)
if [ -n "$pids" ] && $changed; then
    kill $pids 2>/dev/null || true  # it re-reads its spool and pid file paths only at start
    for _ in $(seq 1 40); do [ -z "$(host_slurmd_pids)" ] && break; sleep 0.25; done
    pids=""
fi
[ -n "$pids" ] || slurmd

# -- the namespace nodes ------------------------------------------------------------
start_ns_node() {
    local node=$1 ip veth
    ip=$(node_addr "$node")
    veth=$(veth_host "$node")
    ip netns list | grep -qw "$node" || ip netns add "$node"
    if ! ip netns exec "$node" ip link show eth0 >/dev/null 2>&1; then
        ip link del "$veth" 2>/dev/null || true
        ip link add "$veth" type veth peer name "$veth-n"
        ip link set "$veth-n" netns "$node"
        ip netns exec "$node" ip link set "$veth-n" name eth0
    fi
    ip link set "$veth" master "$bridge"
    ip link set "$veth" up
    ip netns exec "$node" ip link set lo up
    ip netns exec "$node" ip addr replace "$ip/24" dev eth0
    ip netns exec "$node" ip link set eth0 up
    # Name resolution inside the node (ip netns exec mounts these over /etc): its own name,
    # the other nodes, and the controller's host name at the host's bridge address.
    mkdir -p "/etc/netns/$node"
    {
        echo "127.0.0.1 localhost"
        echo "$subnet.1 $host"
        for other in "${ns_nodes[@]}"; do echo "$(node_addr "$other") $other"; done
    } >"/etc/netns/$node/hosts"
    if ! ns_slurmd_pid "$node" >/dev/null; then
        # Not `ip netns exec`: it remounts /sys, which hides the host's cgroup mounts that
        # slurmd needs. A private mount namespace gets the node's hosts file instead, and a
        # UTS namespace its hostname. Job steps inherit all three.
        nsenter --net="/run/netns/$node" unshare --mount --uts sh -c \
            "mount --bind /etc/netns/$node/hosts /etc/hosts && hostname $node && exec slurmd -N $node"
    fi
}
if $multi; then
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
    fi
    ip addr replace "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
    for node in "${ns_nodes[@]}"; do start_ns_node "$node"; done
fi

wait_ready() {
    for _ in $(seq 1 "$1"); do
        all_ready && return 0
        sleep 0.5
    done
    return 1
}
if ! wait_ready 60; then
    # A node left down or drained by an earlier run comes back once it answers.
    for node in "$host" "${ns_nodes[@]}"; do
        node_ready "$node" || scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    done
    wait_ready 20 || true
fi
if ! all_ready; then
    sinfo -N -l >&2 || true
    echo "last lines of $logs/slurmctld.log:" >&2
    tail -n 15 "$logs/slurmctld.log" >&2 || true
    for node in "$host" "${ns_nodes[@]}"; do
        echo "last lines of $logs/slurmd-$node.log:" >&2
        tail -n 15 "$logs/slurmd-$node.log" >&2 || true
    done
    fail "the nodes did not all become ready within 40 s"
fi
where="$host in partition debug (default)"
$multi && where+=", ${ns_nodes[*]} ($subnet.11 and $subnet.12 on $bridge) in partition multi"
say "slurmctld and slurmd are running: $where"
