"""The batch script and the per-node commands of one vLLM server job. Pure: no I/O.

The script is meant to be read: it is printed by ``--vllm-slurm-dry-run`` and saved
next to the job's logs. Its shape:

1. ``#SBATCH`` directives, then checks that the job got the planned nodes and GPUs;
2. the head node (the job's first node, ``scontrol show hostnames``) and its address
   (the node's ``NodeAddr``), and the job's ports, derived from the job id;
3. ``NODE_SCRIPT``: run once per node by a single ``srun`` step. Each node reads its
   own ``SLURM_NODEID`` and runs its command from a ``case`` (head, workers), so
   everything per-node (the DP start rank, ``--headless``, the nsys output name) is
   resolved on that node;
4. the batch shell waits for the step: when any node's server exits, the step and so
   the job end, and the plugin reports at once.

Values that only exist at run time (head address, ports, node rank) appear in the
commands as :class:`Expanded` words such as ``${HEAD_IP}``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from pytest_vllm_serve.serving.launchers.slurm.topology import PORT_BASES, PORT_SPREAD, Topology
from pytest_vllm_serve.serving.nsys import NSYS_OPTIONS

#: nsys flags of the reference script; the output name is added per node.
NSYS_ARGS: tuple[str, ...] = ("profile", *NSYS_OPTIONS, "--force-overwrite=true")
#: How long nsys gets to write its report after SIGINT (the reference waits 30 s).
NSYS_FINALIZE_SECONDS = 25
#: How long a node's server gets after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 10
#: Ray: tries x seconds to wait for the cluster (the reference's 120 x 5 s).
RAY_WAIT_TRIES, RAY_WAIT_INTERVAL = 120, 5

_VAR = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")
_SAFE_EXPANDED = re.compile(r"^(?:\$\{[A-Z_][A-Z0-9_]*\}|[A-Za-z0-9_./:=,@%+-])+$")


class Expanded(str):
    """A word holding ``${VAR}`` references that the shell expands on the node.

    Rendered in double quotes; only variable references and plain characters are
    allowed, so nothing else in it can be interpreted by the shell.
    """

    def __new__(cls, text: str) -> Expanded:
        if not _SAFE_EXPANDED.match(text) or not _VAR.search(text):
            raise ValueError(f"not a plain word with ${{VAR}} references: {text!r}")
        return super().__new__(cls, text)


def shell_word(word: str) -> str:
    if isinstance(word, Expanded):
        return f'"{word}"'
    return shlex.quote(word)


def shell_join(words: tuple[str, ...] | list[str]) -> str:
    return " ".join(shell_word(w) for w in words)


HEAD_IP = Expanded("${HEAD_IP}")
API_PORT = Expanded("${API_PORT}")
RPC_PORT = Expanded("${RPC_PORT}")
RAY_PORT = Expanded("${RAY_PORT}")
MASTER_PORT = Expanded("${MASTER_PORT}")
NSYS_OUTPUT = Expanded("${NSYS_DIR}/profile-node${NODE}.nsys-rep")


@dataclass(frozen=True)
class Container:
    """Run each node's command in a container, as the reference does."""

    image: str  # the image to run (a tarball's RepoTags[0], or a registry reference)
    tarball: str | None = None  # docker-save tarball loaded on each node when the image is missing
    volumes: tuple[str, ...] = ()  # docker -v values: HOST:CONTAINER[:ro|rw]
    env_names: tuple[str, ...] = ()  # variables passed into the container by name only
    gpus: bool = True  # --gpus all (off on CPU nodes)


@dataclass(frozen=True)
class JobScript:
    """Everything the batch script is made from."""

    topology: Topology
    entry: tuple[str, ...]  # how the server starts, with the model: e.g. ("vllm", "serve", "M")
    serve_args: tuple[str, ...]  # ServeCommand args; they end with --host H --port PORT
    job_name: str
    job_dir: str
    title: str = ""  # the spec, one line, for the header
    ray: str = "ray"  # the ray CLI on the nodes
    python: str = "python3"  # the Python on the nodes that has ray (for the cluster check)
    container: Container | None = None
    nsys_dir: str | None = None  # nsys profile every node's server into this folder (None: off)
    srun_options: tuple[str, ...] = ()  # extra options for the step (inside an allocation)
    port_sequence: int = 0  # added to the job id for the ports (servers in one allocation)
    extra_sbatch: tuple[str, ...] = field(default=())  # shown in the header's submit line


@dataclass(frozen=True)
class NodeCommand:
    """What one node runs. ``ray`` starts the node's ray daemon (ray backend only);
    ``serve`` is the vLLM command (None on ray workers)."""

    node: int
    role: str  # "head" or "worker"
    serve: tuple[str, ...] | None
    ray: tuple[str, ...] | None = None

    def render(self) -> str:
        lines = []
        if self.ray is not None:
            lines.append(shell_join(self.ray) + (" &" if self.serve is not None else ""))
        if self.serve is not None:
            lines.append(shell_join(self.serve))
        return "\n".join(lines)


def _without_bind(args: tuple[str, ...]) -> tuple[str, ...]:
    """Drop ``--host H --port P`` (ServeCommand puts them last): headless nodes serve no API."""
    out = list(args)
    for flag in ("--port", "--host"):
        if len(out) >= 2 and out[-2] == flag:
            del out[-2:]
    return tuple(out)


def _with_port(args: tuple[str, ...], port: str) -> tuple[str, ...]:
    out = list(args)
    if len(out) >= 2 and out[-2] == "--port":
        out[-1] = port
    return tuple(out)


def node_commands(job: JobScript) -> list[NodeCommand]:
    """The command of every node, head first, by the backend's rules."""
    topo = job.topology
    base = job.entry + _with_port(job.serve_args, API_PORT)
    headless = job.entry + _without_bind(job.serve_args)
    commands: list[NodeCommand] = []
    if topo.backend == "rpc":
        dp_flags: tuple[str, ...] = ()
        if topo.dp > 1:
            # --data-parallel-size DP is in the serve args already (from the layout).
            dp_flags = (
                "--data-parallel-size-local",
                str(topo.dp_local),
                "--data-parallel-address",
                HEAD_IP,
                "--data-parallel-rpc-port",
                RPC_PORT,
            )
        commands.append(NodeCommand(0, "head", base + dp_flags))
        for node in range(1, topo.nodes):
            worker = headless + dp_flags + ("--data-parallel-start-rank", str(topo.start_rank(node)), "--headless")
            commands.append(NodeCommand(node, "worker", worker))
    elif topo.backend == "ray":
        gpus = (f"--num-gpus={topo.gpus_per_node}",) if topo.gpus_per_node else ()
        head_ray = (
            job.ray,
            "start",
            "--head",
            Expanded("--port=${RAY_PORT}"),
            *gpus,
            "--disable-usage-stats",
            "--block",
        )
        ray_flags = ("--data-parallel-backend", "ray", "--data-parallel-address", HEAD_IP)
        commands.append(NodeCommand(0, "head", base + ray_flags, ray=head_ray))
        for node in range(1, topo.nodes):
            worker_ray = (
                job.ray,
                "start",
                Expanded("--address=${HEAD_IP}:${RAY_PORT}"),
                *gpus,
                "--disable-usage-stats",
                "--block",
            )
            commands.append(NodeCommand(node, "worker", None, ray=worker_ray))
    elif topo.backend == "mp":
        if topo.nodes == 1:
            commands.append(NodeCommand(0, "head", base))
        else:
            for node in range(topo.nodes):
                flags = (
                    "--nnodes",
                    str(topo.nodes),
                    "--node-rank",
                    str(node),
                    "--master-addr",
                    HEAD_IP,
                    "--master-port",
                    MASTER_PORT,
                )
                if node == 0:
                    commands.append(NodeCommand(0, "head", base + flags))
                else:
                    commands.append(NodeCommand(node, "worker", headless + flags + ("--headless",)))
    else:  # plan() only produces the three above
        raise ValueError(f"unknown SLURM backend {topo.backend!r}")
    return commands


# -- rendering ------------------------------------------------------------------------


def _array(name: str, words: tuple[str, ...], first_line: int, indent: str) -> list[str]:
    """A bash array assignment, one flag (with its value) per line."""
    lines = [f"{indent}{name}=("]
    current = [shell_word(w) for w in words[:first_line]]
    for word in words[first_line:]:
        if word.startswith("--") and current:
            lines.append(f"{indent}  " + " ".join(current))
            current = []
        current.append(shell_word(word))
    if current:
        lines.append(f"{indent}  " + " ".join(current))
    lines.append(f"{indent})")
    return lines


def _case_block(job: JobScript, commands: list[NodeCommand]) -> list[str]:
    lines = ['case "$NODE" in']
    for cmd in commands:
        what = "head: API server" if cmd.role == "head" else "worker"
        if cmd.role == "head":
            what += " on ${HEAD_IP}:${API_PORT}" if cmd.serve is not None else ""
        if job.topology.backend == "rpc" and cmd.node > 0:
            what += f", DP ranks from {job.topology.start_rank(cmd.node)}"
        lines.append(f"  {cmd.node})  # {what}")
        lines.append(f"    ROLE={cmd.role}")
        if cmd.ray is not None:
            lines += _array("RAY_START", cmd.ray, 2, "    ")
        if cmd.serve is not None:
            lines += _array("SERVE", cmd.serve, len(job.entry), "    ")
        lines.append("    ;;")
    lines.append('  *) log "error: no command for node $NODE: the job has more nodes than planned"; exit 1 ;;')
    lines.append("esac")
    return lines


def _container_block(job: JobScript) -> list[str]:
    c = job.container
    assert c is not None
    mounts = []
    for volume in c.volumes:
        mounts += ["-v", volume]
    env = []
    for name in c.env_names:
        env += ["-e", name]
    load = [
        f"IMAGE={shlex.quote(c.image)}",
        'CONTAINER="pvs-${SLURM_JOB_ID}-node${NODE}"  # this job\'s container on this node',
        'if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then',
    ]
    if c.tarball:
        tarball = shlex.quote(c.tarball)
        load += [
            f'  log "loading $IMAGE from {c.tarball}"',
            f"  case {tarball} in",
            f"    *.gz|*.tgz) {{ command -v pigz >/dev/null && pigz -dc {tarball} || gzip -dc {tarball}; }} | docker load ;;",
            f"    *) docker load -i {tarball} ;;",
            '  esac || { log "error: docker load failed"; exit 1; }',
        ]
    else:
        load += ['  log "pulling $IMAGE"', '  docker pull "$IMAGE" || { log "error: docker pull failed"; exit 1; }']
    load.append("fi")
    run = (
        [
            "docker",
            "run",
            "-d",
            "--name",
            Expanded("${CONTAINER}"),
            "--label",
            Expanded("pytest-vllm-serve.job=${SLURM_JOB_ID}"),
        ]
        + (["--gpus", "all"] if c.gpus else [])
        + [
            "--privileged",
            "--uts=host",
            "--ipc=host",
            "--net=host",
            "--ulimit",
            "stack=67108864",
            "--ulimit",
            "memlock=-1",
            "--security-opt",
            "seccomp=unconfined",
        ]
        + mounts
        + ["-e", "NCCL_SOCKET_IFNAME", "-e", "GLOO_SOCKET_IFNAME", "-e", "TP_SOCKET_IFNAME"]
        + env
        + ["--entrypoint", "sleep", Expanded("${IMAGE}"), "infinity"]
    )
    return load + [
        "# RDMA devices, where the node has them.",
        "DEVICES=()",
        'for dev in /dev/gdrdrv /dev/infiniband/uverbs*; do [ -e "$dev" ] && DEVICES+=(--device "$dev"); done',
        "NET_IF=$(ip -o -4 route show to default 2>/dev/null | awk '{print $5; exit}')",
        "export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-$NET_IF}",
        "export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-$NET_IF}",
        "export TP_SOCKET_IFNAME=${TP_SOCKET_IFNAME:-$NET_IF}",
        "# Only this job's own container is ever removed; other containers on the node are left alone.",
        'remove_container() { docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; }',
        "remove_container",
        shell_join(tuple(run[:-2]))
        + ' ${DEVICES[@]+"${DEVICES[@]}"} '
        + shell_join(tuple(run[-2:]))
        + ' >/dev/null || { log "error: docker run failed"; exit 1; }',
        "RUN=(docker exec -e HEAD_IP -e HEAD_NODE -e API_PORT -e RPC_PORT -e RAY_PORT -e MASTER_PORT -e NODE "
        '${VLLM_HOST_IP:+-e VLLM_HOST_IP} "$CONTAINER")',
    ]


def node_script(job: JobScript) -> str:
    """The script every node runs (as one task of the srun step)."""
    commands = node_commands(job)
    topo = job.topology
    lines = [
        "set -uo pipefail",
        "NODE=${SLURM_NODEID:?}  # this node's rank in the job, read here on the node itself",
        "export NODE",
        'log() { echo "[$(date +%Y-%m-%dT%H:%M:%S)][node $NODE $(hostname -s)] $*"; }',
        "# This node's own address, as SLURM has it (NodeAddr): the engines here run on it.",
        "SELF_NODE=${SLURMD_NODENAME:-$(hostname -s)}",
        "SELF_ADDR=$(scontrol show node -o \"$SELF_NODE\" 2>/dev/null | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')",
        'log "node ${SELF_NODE} at ${SELF_ADDR:-unknown address}; head ${HEAD_NODE} (${HEAD_IP}), API port ${API_PORT}"',
        "# vLLM advertises this node to the others at VLLM_HOST_IP, else at the source address of its",
        "# default route (0.0.0.0 on a node without one, which the other nodes cannot reach).",
        'if [ -z "${VLLM_HOST_IP:-}" ] && [ -n "$SELF_ADDR" ]; then',
        "  VLLM_HOST_IP=$(getent ahostsv4 \"$SELF_ADDR\" | awk '{print $1; exit}')",
        "  export VLLM_HOST_IP",
        "fi",
        "RUN=()  # prefix that runs a command in this node's container, if any",
        "NSYS=()",
    ]
    if job.container is not None:
        lines += _container_block(job)
    if job.nsys_dir:
        lines += [
            f"NSYS_DIR={shlex.quote(job.nsys_dir)}",
            'mkdir -p "$NSYS_DIR"',
            "NSYS=(" + shell_join(("nsys", *NSYS_ARGS, "-o", NSYS_OUTPUT)) + ")",
        ]
    lines += ["RAY_START=()", "SERVE=()"]
    lines += _case_block(job, commands)
    wait_ray: list[str] = []
    if topo.backend == "ray":
        address = 'address=os.environ["HEAD_IP"] + ":" + os.environ["RAY_PORT"], logging_level="ERROR"'
        if topo.gpus_per_node:
            count = 'int(ray.cluster_resources().get("GPU", 0))'
            target, unit = topo.total_gpus, "GPU(s)"
        else:
            count = 'sum(1 for n in ray.nodes() if n["Alive"])'
            target, unit = topo.nodes, "node(s)"
        check = f"import os, ray; ray.init({address}); print({count})"
        wait_ray = [
            "wait_for_ray() {",
            f'  log "waiting for the ray cluster to reach {target} {unit}"',
            f"  for _ in $(seq 1 {RAY_WAIT_TRIES}); do",
            f'    have=$(${{RUN[@]+"${{RUN[@]}}"}} {shlex.quote(job.python)} -c {shlex.quote(check)} 2>/dev/null | tail -n 1)',
            f'    [ "${{have:-0}}" -ge {target} ] 2>/dev/null && return 0',
            '    kill -0 "$RAY_PID" 2>/dev/null || { log "error: the ray head exited"; return 1; }',
            f"    sleep {RAY_WAIT_INTERVAL}",
            "  done",
            f'  log "error: the ray cluster did not reach {target} {unit} in {RAY_WAIT_TRIES * RAY_WAIT_INTERVAL} s"',
            "  return 1",
            "}",
        ]
    finish = [
        "PID= RAY_PID=",
        "# Stops what this node started, then exits with $1.",
        "finish() {",
        "  trap '' TERM INT  # a second signal must not cut the cleanup short",
    ]
    if job.nsys_dir:
        finish += [
            f"  # nsys writes its report on SIGINT; give it up to {NSYS_FINALIZE_SECONDS} s.",
            '  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then',
            '    if [ ${#RUN[@]} -gt 0 ]; then "${RUN[@]}" pkill -INT -f "^nsys profile"; else kill -INT "$PID"; fi 2>/dev/null',
            f'    for _ in $(seq 1 {NSYS_FINALIZE_SECONDS * 5}); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done',
            "  fi",
        ]
    if job.container is not None:
        finish.append(f'  docker stop -t {STOP_GRACE_SECONDS} "$CONTAINER" >/dev/null 2>&1')
    finish += [
        '  for pid in $PID $RAY_PID; do kill -TERM -- "-$pid" 2>/dev/null; done',
        f"  for _ in $(seq 1 {STOP_GRACE_SECONDS * 5}); do kill -0 $PID $RAY_PID 2>/dev/null || break; sleep 0.2; done",
        '  for pid in $PID $RAY_PID; do kill -KILL -- "-$pid" 2>/dev/null; done',
    ]
    if topo.backend == "ray" and job.container is None:
        finish.append("  " + shlex.quote(job.ray) + " stop --force >/dev/null 2>&1")
    if job.container is not None:
        finish.append("  remove_container")
    finish += [
        '  exit "$1"',
        "}",
        "trap 'log \"stopping\"; finish 143' TERM INT",
    ]
    body = [
        "# Each process runs in its own process group, so finish() reaches all of its children.",
        "if [ ${#RAY_START[@]} -gt 0 ]; then",
        '  log "starting ray ($ROLE)"',
        '  setsid ${RUN[@]+"${RUN[@]}"} "${RAY_START[@]}" &',
        "  RAY_PID=$!",
        "fi",
        "if [ ${#SERVE[@]} -gt 0 ]; then",
    ]
    if topo.backend == "ray":
        body.append("  wait_for_ray || finish 1")
    body += [
        '  log "starting vLLM ($ROLE)"',
        '  setsid ${RUN[@]+"${RUN[@]}"} ${NSYS[@]+"${NSYS[@]}"} "${SERVE[@]}" &',
        "  PID=$!",
        "else",
        "  PID=$RAY_PID",
        "fi",
        'wait "$PID"',
        "status=$?",
        'log "the server process exited with status $status"',
        "# A server never ends by itself: any exit is a failure, so the step and the job end.",
        '[ "$status" -ne 0 ] || status=1',
        'finish "$status"',
    ]
    return "\n".join(lines + wait_ray + finish + body) + "\n"


#: The node script's line when a node's own server process ends (``finish`` after ``wait``).
_EXIT_LINE = re.compile(r"^\[([^\]]+)\]\[node (\d+) (\S+)\] the server process exited with status (\d+)")
#: vLLM's lines that name a process that died or failed.
_PROCESS_LINE = re.compile(r"\b(?:died|dead|killed|exited unexpectedly)\b|\w+Error: |^Traceback", re.IGNORECASE)


def first_exit(node_logs: dict[int, list[str]]) -> str | None:
    """Which node's server ended by itself first, from the node logs (node number -> lines),
    and the last lines in which vLLM named a process there. None when no server ended by
    itself (e.g. the job was cancelled: the nodes log "stopping" instead)."""
    exits = []
    for node, lines in node_logs.items():
        for index, line in enumerate(lines):
            match = _EXIT_LINE.match(line.strip())
            if match:
                exits.append((match.group(1), node, match.group(3), match.group(4), index))
                break
    if not exits:
        return None
    when, node, host, status, index = min(exits)
    said = [
        line.strip()[:300]
        for line in node_logs[node][:index]
        if _PROCESS_LINE.search(line) and "[node " not in line and "Warning" not in line
    ][-3:]
    text = f"node {node} ({host}) ended first: its vLLM server exited with status {status} at {when}"
    if said:
        text += "; there vLLM logged:\n    " + "\n    ".join(said)
    return text


def _header(job: JobScript, sbatch_line: str) -> list[str]:
    topo = job.topology
    lines = [
        "#!/bin/bash",
        "# pytest-vllm-serve: one vLLM server as a SLURM job.",
    ]
    if job.title:
        lines.append(f"#   spec:     {job.title}")
    lines += [
        f"#   topology: {topo.describe()}",
        f"#   submit:   {sbatch_line}",
        "#   or, inside an allocation (salloc): bash THIS_FILE",
        "# One srun step runs NODE_SCRIPT on every node; each node picks its command by its own",
        "# SLURM_NODEID. Logs: node<N>.log (one per node) and batch-<job id>.log next to this file.",
        f"#SBATCH --job-name={job.job_name}",
        f"#SBATCH --nodes={topo.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if not re.search(r"\s", job.job_dir):
        lines.append(f"#SBATCH --output={job.job_dir}/batch-%j.log")
    return lines


def render_script(job: JobScript, sbatch_line: str = "sbatch --parsable THIS_FILE") -> str:
    """The whole batch script."""
    topo = job.topology
    offset = f"(SLURM_JOB_ID + PORT_SEQUENCE) % {PORT_SPREAD}"
    ports = [f"{name}=$(({base} + OFFSET))" for name, base in PORT_BASES.items()]
    srun = (
        [
            "srun",
            "--nodes=$NNODES",
            "--ntasks-per-node=1",
            "--kill-on-bad-exit=1",
            f"--job-name={shlex.quote(job.job_name)}",
            '--output="$JOB_DIR/node%n.log"',
        ]
        + [shlex.quote(o) for o in job.srun_options]
        + ['bash -c "$NODE_SCRIPT"']
    )
    gpus = str(topo.gpus_per_node) if topo.gpus_per_node else ""
    lines = _header(job, sbatch_line) + [
        "set -euo pipefail",
        "",
        f"JOB_DIR={shlex.quote(job.job_dir)}",
        f"NNODES={topo.nodes}",
        f"GPUS_PER_NODE={gpus}  # empty: CPU nodes",
        f"PORT_SEQUENCE={job.port_sequence}",
        "export JOB_DIR NNODES GPUS_PER_NODE",
        'log() { echo "[$(date +%Y-%m-%dT%H:%M:%S)][batch] $*"; }',
        'die() { log "error: $*"; exit 1; }',
        "",
        '[ -n "${SLURM_JOB_ID:-}" ] || die "not inside a SLURM job. fix: submit it with sbatch, or run it inside salloc"',
        '[ "${SLURM_JOB_NUM_NODES:-0}" -eq "$NNODES" ] || die "the job has ${SLURM_JOB_NUM_NODES:-0} node(s) '
        'but was planned for $NNODES. fix: ask for --nodes=$NNODES"',
        'if [ -n "$GPUS_PER_NODE" ] && [ -n "${SLURM_GPUS_ON_NODE:-}" ] && [ "$SLURM_GPUS_ON_NODE" -ne "$GPUS_PER_NODE" ]; then',
        '  die "a node has $SLURM_GPUS_ON_NODE GPU(s) but the plan needs $GPUS_PER_NODE. fix: ask for --gpus-per-node=$GPUS_PER_NODE"',
        "fi",
        "",
        "# The head is the job's first node; its address is the one SLURM uses for it (NodeAddr).",
        "node_address() {",
        "  local addr",
        "  addr=$(scontrol show node -o \"$1\" | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')",
        "  getent ahostsv4 \"${addr:-$1}\" | awk '{print $1; exit}'",
        "}",
        'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'HEAD_IP=$(node_address "$HEAD_NODE")',
        '[ -n "$HEAD_IP" ] || die "cannot resolve the head node $HEAD_NODE to an IPv4 address"',
        "# Ports derive from the job id, so concurrent jobs do not collide.",
        f"OFFSET=$(({offset}))",
        *ports,
        "export HEAD_NODE HEAD_IP " + " ".join(PORT_BASES),
        'log "job ${SLURM_JOB_ID}: nodes $(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd " "), '
        'head ${HEAD_NODE} (${HEAD_IP}), API port ${API_PORT}"',
        "",
        "NODE_SCRIPT=$(cat <<'NODE_SCRIPT_END'",
        node_script(job).rstrip("\n"),
        "NODE_SCRIPT_END",
        ")",
        "",
        " ".join(srun) + " &",
        "STEP=$!",
        'trap \'log "stopping"; kill -TERM "$STEP" 2>/dev/null; wait "$STEP"; exit 143\' TERM INT',
        "set +e",
        'wait "$STEP"',
        "status=$?",
        'log "the server step ended with status $status"',
        '[ "$status" -ne 0 ] || status=1',
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def sbatch_argv(script_path: str, job_dir: str, user_options: tuple[str, ...]) -> list[str]:
    """The submission command. The user's options come after the script's directives
    (the command line wins over ``#SBATCH`` lines)."""
    return ["sbatch", "--parsable", f"--output={job_dir}/batch-%j.log", *user_options, script_path]


def render_dry_run(job: JobScript, script_path: str, submit: list[str]) -> str:
    """What ``--vllm-slurm-dry-run`` prints for one server."""
    line = shlex.join(submit)
    out = [f"# submit: {line}", f"# topology: {job.topology.describe()}", "# per-node commands:"]
    for cmd in node_commands(job):
        out.append(f"#   node {cmd.node} ({cmd.role}):")
        out += [f"#     {text}" for text in cmd.render().splitlines()]
    out.append(f"# batch script, saved as {script_path}:")
    out.append(render_script(job, line))
    return "\n".join(out)
