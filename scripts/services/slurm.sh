#!/usr/bin/env bash
# One-node SLURM cluster for the SLURM launcher's tests: installs Debian's slurmctld,
# slurmd, slurm-client and munge if they are missing, writes slurm.conf for this host,
# creates the munge key, starts munged, slurmctld and slurmd if they are not running,
# and waits until sinfo shows the node ready. Idempotent and quiet; returns at once
# when the cluster already answers.
#
# Settings (root, no systemd, no cgroups, no accounting): proctrack/linuxproc,
# task/none, select/cons_tres with CR_Core, one partition "debug" holding this host.
# An existing slurm.conf that this script did not write is left as it is.
#   SLURM_CONF_FILE  where slurm.conf goes (default /etc/slurm/slurm.conf)
#   SLURM_LOG_DIR    daemon logs (default /var/log/slurm)
set -euo pipefail

conf=${SLURM_CONF_FILE:-/etc/slurm/slurm.conf}
logs=${SLURM_LOG_DIR:-/var/log/slurm}
marker="# written by pytest-vllm-serve scripts/services/slurm.sh"
say() { echo "services/slurm: $*"; }
fail() { echo "services/slurm: $*" >&2; exit 1; }

node_ready() {
    # A responsive node: idle, mixed, allocated or completing (no trailing '*').
    local state
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n1) || return 1
    [[ "$state" =~ ^(idle|mix|alloc|comp)$ ]]
}

if command -v sinfo >/dev/null 2>&1 && node_ready; then
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "the SLURM cluster is not answering, and starting one needs root.
  fix: run this script as root, or point SLURM_CONF at a running cluster"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
    || ! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
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
host=$(hostname -s)
# The daemons find each other by the host's name; a name that does not resolve gets loopback.
addr=""
getent hosts "$host" >/dev/null || addr=127.0.0.1
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
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
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
NodeName=$host${addr:+ NodeAddr=$addr} CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=false
if [ -e "$conf" ] && ! grep -qxF "$marker" "$conf"; then
    say "keeping $conf (not written by this script)"
elif [ ! -e "$conf" ] || [ "$(cat "$conf")" != "$wanted" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" >"$conf"
    changed=true
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd "$logs"

# -- daemons --------------------------------------------------------------------
if pgrep -x slurmctld >/dev/null; then
    if $changed; then scontrol reconfigure >/dev/null; fi
else
    slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
    slurmd
fi

for _ in $(seq 1 60); do
    node_ready && break
    sleep 0.5
done
if ! node_ready; then
    # A node left down or drained by an earlier run comes back once it answers.
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do
        node_ready && break
        sleep 0.5
    done
fi
if ! node_ready; then
    sinfo -N -l >&2 || true
    echo "last lines of $logs/slurmctld.log:" >&2
    tail -n 15 "$logs/slurmctld.log" >&2 || true
    echo "last lines of $logs/slurmd.log:" >&2
    tail -n 15 "$logs/slurmd.log" >&2 || true
    fail "the node $host did not become ready within 40 s"
fi
say "slurmctld and slurmd are running; node $host ($cpus CPUs, ${mem_mb} MB) is $(sinfo -h -N -o '%t' | head -n1)"
