{## The script every node runs, as one task of the job's srun step (bash -c "$NODE_SCRIPT").
    Rendered by script.node_script; the batch script exports HEAD_IP, HEAD_NODE and the ports.
    Each entry of `commands` is one node's branch of the case: its RAY_START and SERVE arrays
    come as lines of already quoted words. ##}
set -uo pipefail
NODE=${SLURM_NODEID:?}  # this node's rank in the job, read here on the node itself
export NODE
log() { echo "[$(date +%Y-%m-%dT%H:%M:%S)][node $NODE $(hostname -s)] $*"; }
# This node's own address, as SLURM has it (NodeAddr): the engines here run on it.
SELF_NODE=${SLURMD_NODENAME:-$(hostname -s)}
SELF_ADDR=$(scontrol show node -o "$SELF_NODE" 2>/dev/null | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
log "node ${SELF_NODE} at ${SELF_ADDR:-unknown address}; head ${HEAD_NODE} (${HEAD_IP}), API port ${API_PORT}"
# vLLM advertises this node to the others at VLLM_HOST_IP, else at the source address of its
# default route (0.0.0.0 on a node without one, which the other nodes cannot reach).
if [ -z "${VLLM_HOST_IP:-}" ] && [ -n "$SELF_ADDR" ]; then
  VLLM_HOST_IP=$(getent ahostsv4 "$SELF_ADDR" | awk '{print $1; exit}')
  export VLLM_HOST_IP
fi
RUN=()  # prefix that runs a command in this node's container, if any
NSYS=()
{% if container %}
{% include "container.sh" %}
{% endif %}
{% if nsys_dir %}
NSYS_DIR={{ nsys_dir | q }}
mkdir -p "$NSYS_DIR"
# shellcheck disable=SC2054  # the commas are inside nsys's option values (-t cuda,nvtx,...)
NSYS=({{ nsys_argv | words }})
{% endif %}
RAY_START=()
SERVE=()
# The arrays hold the serve arguments as given, each word quoted by shlex.quote: a $ in single
# quotes is meant literally, and a comma belongs to its word.
# shellcheck disable=SC2016,SC2054
case "$NODE" in
{% for cmd in commands %}
  {{ cmd.node }})  # {{ cmd.comment }}
    ROLE="{{ cmd.role }}"
{% if cmd.ray_start %}
    RAY_START=(
{% for line in cmd.ray_start %}
      {{ line }}
{% endfor %}
    )
{% endif %}
{% if cmd.serve %}
    SERVE=(
{% for line in cmd.serve %}
      {{ line }}
{% endfor %}
    )
{% endif %}
    ;;
{% endfor %}
  *) log "error: no command for node $NODE: the job has more nodes than planned"; exit 1 ;;
esac
{% if ray %}
wait_for_ray() {
  log "waiting for the ray cluster to reach {{ ray.target }} {{ ray.unit }}"
  for _ in $(seq 1 {{ ray.tries }}); do
    have=$(${RUN[@]+"${RUN[@]}"} {{ ray.python | q }} -c {{ ray.check | q }} 2>/dev/null | tail -n 1)
    [ "${have:-0}" -ge {{ ray.target }} ] 2>/dev/null && return 0
    kill -0 "$RAY_PID" 2>/dev/null || { log "error: the ray head exited"; return 1; }
    sleep {{ ray.interval }}
  done
  log "error: the ray cluster did not reach {{ ray.target }} {{ ray.unit }} in {{ ray.tries * ray.interval }} s"
  return 1
}
{% endif %}
PID='' RAY_PID=''
# Stops what this node started, then exits with $1.
finish() {
  trap '' TERM INT  # a second signal must not cut the cleanup short
{% if nsys_dir %}
  # nsys writes its report on SIGINT; give it up to {{ nsys_finalize_seconds }} s.
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    if [ ${#RUN[@]} -gt 0 ]; then "${RUN[@]}" pkill -INT -f "^nsys profile"; else kill -INT "$PID"; fi 2>/dev/null
    for _ in $(seq 1 {{ nsys_finalize_seconds * 5 }}); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
  fi
{% endif %}
{% if container %}
  docker stop -t {{ stop_grace_seconds }} "$CONTAINER" >/dev/null 2>&1
{% endif %}
  for pid in $PID $RAY_PID; do kill -TERM -- "-$pid" 2>/dev/null; done
  for _ in $(seq 1 {{ stop_grace_seconds * 5 }}); do kill -0 $PID $RAY_PID 2>/dev/null || break; sleep 0.2; done
  for pid in $PID $RAY_PID; do kill -KILL -- "-$pid" 2>/dev/null; done
{% if ray and not container %}
  {{ ray.cli | q }} stop --force >/dev/null 2>&1
{% endif %}
{% if container %}
  remove_container
{% endif %}
  exit "$1"
}
trap 'log "stopping"; finish 143' TERM INT
# Each process runs in its own process group, so finish() reaches all of its children.
if [ ${#RAY_START[@]} -gt 0 ]; then
  log "starting ray ($ROLE)"
  setsid ${RUN[@]+"${RUN[@]}"} "${RAY_START[@]}" &
  RAY_PID=$!
fi
if [ ${#SERVE[@]} -gt 0 ]; then
{% if ray %}
  wait_for_ray || finish 1
{% endif %}
  log "starting vLLM ($ROLE)"
  setsid ${RUN[@]+"${RUN[@]}"} ${NSYS[@]+"${NSYS[@]}"} "${SERVE[@]}" &
  PID=$!
else
  PID=$RAY_PID
fi
wait "$PID"
status=$?
log "the server process exited with status $status"
# A server never ends by itself: any exit is a failure, so the step and the job end.
[ "$status" -ne 0 ] || status=1
finish "$status"
