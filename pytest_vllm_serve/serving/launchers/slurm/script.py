"""The batch script and the per-node commands of one vLLM server job. No I/O but its templates.

The shell is in ``templates/*.sh`` (``batch.sh``, ``node.sh``, its ``container.sh``), rendered
with Jinja2; this module decides what each node runs and quotes every word it passes them.

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

import functools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import jinja2

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
#: The package whose templates/ folder holds the scripts' shell.
_PACKAGE = "pytest_vllm_serve.serving.launchers.slurm"

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


def _rpc_commands(job: JobScript, base: tuple[str, ...], headless: tuple[str, ...]) -> list[NodeCommand]:
    """Every node runs ``vllm serve``: the head with the API, the others ``--headless`` with
    their DP start rank."""
    topo = job.topology
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
    commands = [NodeCommand(0, "head", base + dp_flags)]
    for node in range(1, topo.nodes):
        worker = headless + dp_flags + ("--data-parallel-start-rank", str(topo.start_rank(node)), "--headless")
        commands.append(NodeCommand(node, "worker", worker))
    return commands


def _ray_commands(job: JobScript, base: tuple[str, ...], headless: tuple[str, ...]) -> list[NodeCommand]:
    """The head starts the ray cluster and serves; the other nodes only join the cluster."""
    topo = job.topology
    gpus = (f"--num-gpus={topo.gpus_per_node}",) if topo.gpus_per_node else ()
    tail = (*gpus, "--disable-usage-stats", "--block")
    head_ray = (job.ray, "start", "--head", Expanded("--port=${RAY_PORT}"), *tail)
    ray_flags = ("--data-parallel-backend", "ray", "--data-parallel-address", HEAD_IP)
    commands = [NodeCommand(0, "head", base + ray_flags, ray=head_ray)]
    for node in range(1, topo.nodes):
        worker_ray = (job.ray, "start", Expanded("--address=${HEAD_IP}:${RAY_PORT}"), *tail)
        commands.append(NodeCommand(node, "worker", None, ray=worker_ray))
    return commands


def _mp_commands(job: JobScript, base: tuple[str, ...], headless: tuple[str, ...]) -> list[NodeCommand]:
    """One TP x PP world over all nodes: each node passes its rank and the head's address."""
    topo = job.topology
    if topo.nodes == 1:
        return [NodeCommand(0, "head", base)]
    commands = []
    for node in range(topo.nodes):
        flags: tuple[str, ...] = ("--nnodes", str(topo.nodes), "--node-rank", str(node))
        flags += ("--master-addr", HEAD_IP, "--master-port", MASTER_PORT)
        if node == 0:
            commands.append(NodeCommand(0, "head", base + flags))
        else:
            commands.append(NodeCommand(node, "worker", headless + flags + ("--headless",)))
    return commands


_BACKEND_COMMANDS: dict[str, Callable[[JobScript, tuple[str, ...], tuple[str, ...]], list[NodeCommand]]] = {
    "rpc": _rpc_commands,
    "ray": _ray_commands,
    "mp": _mp_commands,
}


def node_commands(job: JobScript) -> list[NodeCommand]:
    """The command of every node, head first, by the backend's rules."""
    build = _BACKEND_COMMANDS.get(job.topology.backend)
    if build is None:  # plan() only produces the three above
        raise ValueError(f"unknown SLURM backend {job.topology.backend!r}")
    base = job.entry + _with_port(job.serve_args, API_PORT)
    headless = job.entry + _without_bind(job.serve_args)
    return build(job, base, headless)


# -- rendering: the shell is in templates/*.sh; here are the values it is rendered with ---------


def _template_source(name: str) -> str:
    return (resources.files(_PACKAGE) / "templates" / name).read_text(encoding="utf-8")


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # shell, not HTML: quoting is done by the q and words filters
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        comment_start_string="{##",  # {# alone would open one in the shell's ${#ARRAY[@]}
        comment_end_string="##}",
    )
    env.filters["q"] = shlex.quote
    env.filters["words"] = shell_join
    return env


def _render(name: str, **values: object) -> str:
    return _templates().get_template(name).render(**values)


def _word_lines(words: tuple[str, ...], first_line: int) -> list[str]:
    """The quoted words of a bash array, one flag (with its value) per line; the first
    ``first_line`` words share the first line."""
    lines: list[str] = []
    current = [shell_word(w) for w in words[:first_line]]
    for word in words[first_line:]:
        if word.startswith("--") and current:
            lines.append(" ".join(current))
            current = []
        current.append(shell_word(word))
    if current:
        lines.append(" ".join(current))
    return lines


def _branches(job: JobScript, commands: list[NodeCommand]) -> list[dict[str, object]]:
    """One branch of the node script's ``case`` per node."""
    branches: list[dict[str, object]] = []
    for cmd in commands:
        comment = "head: API server" if cmd.role == "head" else "worker"
        if cmd.role == "head" and cmd.serve is not None:
            comment += " on ${HEAD_IP}:${API_PORT}"
        if job.topology.backend == "rpc" and cmd.node > 0:
            comment += f", DP ranks from {job.topology.start_rank(cmd.node)}"
        branches.append(
            {
                "node": cmd.node,
                "role": cmd.role,
                "comment": comment,
                "ray_start": _word_lines(cmd.ray, 2) if cmd.ray is not None else [],
                "serve": _word_lines(cmd.serve, len(job.entry)) if cmd.serve is not None else [],
            }
        )
    return branches


def _ray_wait(job: JobScript) -> dict[str, object] | None:
    """How the ray head waits for its cluster before serving (None: not the ray backend)."""
    topo = job.topology
    if topo.backend != "ray":
        return None
    address = 'address=os.environ["HEAD_IP"] + ":" + os.environ["RAY_PORT"], logging_level="ERROR"'
    if topo.gpus_per_node:
        count, target, unit = 'int(ray.cluster_resources().get("GPU", 0))', topo.total_gpus, "GPU(s)"
    else:
        count, target, unit = 'sum(1 for n in ray.nodes() if n["Alive"])', topo.nodes, "node(s)"
    return {
        "cli": job.ray,
        "python": job.python,
        "check": f"import os, ray; ray.init({address}); print({count})",
        "target": target,
        "unit": unit,
        "tries": RAY_WAIT_TRIES,
        "interval": RAY_WAIT_INTERVAL,
    }


def _container_values(container: Container | None) -> dict[str, object] | None:
    """What templates/container.sh is rendered with (None: no container)."""
    if container is None:
        return None
    return {
        "image": container.image,
        "tarball": container.tarball,
        "compressed": bool(container.tarball and container.tarball.endswith((".gz", ".tgz"))),
        "gpus": container.gpus,
        "volumes": container.volumes,
        "env_names": container.env_names,
    }


def node_script(job: JobScript) -> str:
    """The script every node runs (as one task of the srun step): templates/node.sh."""
    return _render(
        "node.sh",
        container=_container_values(job.container),
        nsys_dir=job.nsys_dir,
        nsys_argv=("nsys", *NSYS_ARGS, "-o", NSYS_OUTPUT),
        commands=_branches(job, node_commands(job)),
        ray=_ray_wait(job),
        nsys_finalize_seconds=NSYS_FINALIZE_SECONDS,
        stop_grace_seconds=STOP_GRACE_SECONDS,
    )


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


def render_script(job: JobScript, sbatch_line: str = "sbatch --parsable THIS_FILE") -> str:
    """The whole batch script: templates/batch.sh, with the node script in it."""
    topo = job.topology
    return _render(
        "batch.sh",
        title=job.title,
        topology=topo.describe(),
        sbatch_line=sbatch_line,
        job_name=job.job_name,
        nodes=topo.nodes,
        # sbatch's --output cannot hold whitespace; then sbatch_argv's option names the file.
        output=None if re.search(r"\s", job.job_dir) else f"{job.job_dir}/batch-%j.log",
        job_dir=job.job_dir,
        gpus_per_node=topo.gpus_per_node or "",
        port_sequence=job.port_sequence,
        port_spread=PORT_SPREAD,
        ports=PORT_BASES,
        node_script=node_script(job).rstrip("\n"),
        srun_options=job.srun_options,
    )


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
