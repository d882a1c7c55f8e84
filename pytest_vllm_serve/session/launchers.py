"""Which launcher the session's options choose: SLURM, Docker or local (each lives in
serving/launchers/), with what the profiling options add, for a given owner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_vllm_serve.config import Settings
from pytest_vllm_serve.serving.launchers.base import Launcher
from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.placement import GpuLedger
from pytest_vllm_serve.session.profiling import ProfilingWiring


@dataclass
class Launchers:
    """``for_owner(pid)``: the launcher for servers that stop when process ``pid`` dies;
    ``for_owner(None)``: for servers nobody's death stops (kept with --vllm-reuse)."""

    settings: Settings
    results_dir: Path
    profiling: ProfilingWiring
    extra_env: Mapping[str, str] = field(default_factory=dict)  # for every server, e.g. VLLM_SERVER_DEV_MODE
    _docker: dict[int | None, Launcher] = field(default_factory=dict, init=False, repr=False)

    @property
    def logs_dir(self) -> Path:
        return self.results_dir / "logs"

    def for_owner(self, owner_pid: int | None) -> Launcher:
        if self.settings.slurm:  # with --vllm-docker too: the job runs the image on every node
            return self._slurm(owner_pid)
        if self.settings.docker:
            return self._docker_for(owner_pid)
        return self._local(owner_pid)

    def _slurm(self, owner_pid: int | None) -> Launcher:
        from pytest_vllm_serve.serving.launchers.slurm.launcher import slurm_launcher

        added = self.profiling.launch(in_container=bool(self.settings.docker), nsys_here=False)
        return slurm_launcher(
            self.settings,
            self.logs_dir,
            owner_pid=owner_pid,
            extra_args=added.args,
            extra_env={**added.env, **self.extra_env},
            nsys_dir=self.profiling.nsys_dir if self.settings.nsys else None,  # per node, on the node
        )

    def _docker_for(self, owner_pid: int | None) -> Launcher:
        """One per owner: it connects, reaps stale containers and loads the image once."""
        if owner_pid not in self._docker:
            from pytest_vllm_serve.serving.launchers.docker.launcher import DockerLauncher

            added = self.profiling.launch(in_container=True)
            profiles = self.results_dir.resolve() / "profiles"
            mounts = self.settings.container_mounts + ((f"{profiles}:{profiles}:rw",) if self.profiling.enabled else ())
            self._docker[owner_pid] = DockerLauncher(
                image=self.settings.docker,
                logs_dir=self.logs_dir,
                host=self.settings.host,
                api_key=self.settings.api_key,
                mounts=mounts,
                flavor=self.settings.docker_flavor,
                session=str(self.results_dir.resolve()),
                owner_pid=owner_pid,
                extra_args=added.args,
                extra_env={**added.env, **self.extra_env},
                wrap=added.wrap,
            )
        return self._docker[owner_pid]

    def _local(self, owner_pid: int | None) -> Launcher:
        added = self.profiling.launch()
        return LocalLauncher(
            logs_dir=self.logs_dir,
            host=self.settings.host,
            api_key=self.settings.api_key,
            owner_pid=owner_pid,
            gpu_ledger=GpuLedger(self.settings.results_root / "gpu-ledger.json"),
            extra_args=added.args,
            extra_env={**added.env, **self.extra_env},
            wrap=added.wrap,
        )
