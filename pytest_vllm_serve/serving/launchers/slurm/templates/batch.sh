{## The batch script: sbatch runs it on the job's first node (or bash, inside an allocation).
    Rendered by script.render_script; values are quoted where the shell reads them (`q`).
    Template comments open with two hashes, as here: one would open one in ${#ARRAY[@]}. ##}
#!/bin/bash
# pytest-vllm-serve: one vLLM server as a SLURM job.
{% if title %}
#   spec:     {{ title }}
{% endif %}
#   topology: {{ topology }}
#   submit:   {{ sbatch_line }}
#   or, inside an allocation (salloc): bash THIS_FILE
# One srun step runs NODE_SCRIPT on every node; each node picks its command by its own
# SLURM_NODEID. Logs: node<N>.log (one per node) and batch-<job id>.log next to this file.
#SBATCH --job-name={{ job_name }}
#SBATCH --nodes={{ nodes }}
#SBATCH --ntasks-per-node=1
{% if output %}
#SBATCH --output={{ output }}
{% endif %}
set -euo pipefail

JOB_DIR={{ job_dir | q }}
NNODES={{ nodes }}
GPUS_PER_NODE={{ gpus_per_node }}  # empty: CPU nodes
PORT_SEQUENCE={{ port_sequence }}
export JOB_DIR NNODES GPUS_PER_NODE
log() { echo "[$(date +%Y-%m-%dT%H:%M:%S)][batch] $*"; }
die() { log "error: $*"; exit 1; }

[ -n "${SLURM_JOB_ID:-}" ] || die "not inside a SLURM job. fix: submit it with sbatch, or run it inside salloc"
[ "${SLURM_JOB_NUM_NODES:-0}" -eq "$NNODES" ] || die "the job has ${SLURM_JOB_NUM_NODES:-0} node(s) but was planned for $NNODES. fix: ask for --nodes=$NNODES"
if [ -n "$GPUS_PER_NODE" ] && [ -n "${SLURM_GPUS_ON_NODE:-}" ] && [ "$SLURM_GPUS_ON_NODE" -ne "$GPUS_PER_NODE" ]; then
  die "a node has $SLURM_GPUS_ON_NODE GPU(s) but the plan needs $GPUS_PER_NODE. fix: ask for --gpus-per-node=$GPUS_PER_NODE"
fi

# The head is the job's first node; its address is the one SLURM uses for it (NodeAddr).
node_address() {
  local addr
  addr=$(scontrol show node -o "$1" | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
  getent ahostsv4 "${addr:-$1}" | awk '{print $1; exit}'
}
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
HEAD_IP=$(node_address "$HEAD_NODE")
[ -n "$HEAD_IP" ] || die "cannot resolve the head node $HEAD_NODE to an IPv4 address"
# Ports derive from the job id, so concurrent jobs do not collide.
OFFSET=$(((SLURM_JOB_ID + PORT_SEQUENCE) % {{ port_spread }}))
{% for name, base in ports.items() %}
{{ name }}=$(({{ base }} + OFFSET))
{% endfor %}
export HEAD_NODE HEAD_IP {{ ports | join(" ") }}
log "job ${SLURM_JOB_ID}: nodes $(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd " "), head ${HEAD_NODE} (${HEAD_IP}), API port ${API_PORT}"

NODE_SCRIPT=$(cat <<'NODE_SCRIPT_END'
{{ node_script }}
NODE_SCRIPT_END
)

srun --nodes=$NNODES --ntasks-per-node=1 --kill-on-bad-exit=1 --job-name={{ job_name | q }} --output="$JOB_DIR/node%n.log"{% for option in srun_options %} {{ option | q }}{% endfor %} bash -c "$NODE_SCRIPT" &
STEP=$!
trap 'log "stopping"; kill -TERM "$STEP" 2>/dev/null; wait "$STEP"; exit 143' TERM INT
set +e
wait "$STEP"
status=$?
log "the server step ended with status $status"
[ "$status" -ne 0 ] || status=1
exit "$status"
