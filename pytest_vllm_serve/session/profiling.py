"""What the profiling options (--vllm-profile, --vllm-nsys, --vllm-viztracer) add to a launch,
and the checks that fail a bad profiling setup before anything launches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_vllm_serve.config import Settings
from pytest_vllm_serve.errors import ConfigError


@dataclass(frozen=True)
class LaunchAdditions:
    """Serve arguments, environment and a command prefix that a launcher adds to every server."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    wrap: tuple[str, ...] = ()  # e.g. the nsys command the server runs under


@dataclass(frozen=True)
class ProfilingWiring:
    settings: Settings
    results_dir: Path

    @property
    def enabled(self) -> bool:
        """Whether launched servers run a profiler (torch, or CUDA's under nsys)."""
        return self.settings.profile or self.settings.nsys

    @property
    def server_trace_dir(self) -> Path:
        """Where launched servers write torch profiler traces (moved per test afterwards)."""
        return self.results_dir / "profiles" / ".server-traces"

    @property
    def nsys_dir(self) -> Path:
        return self.results_dir / "profiles" / "nsys"

    def launch(self, in_container: bool = False, nsys_here: bool = True) -> LaunchAdditions:
        """What the profiling options add to a launch. ``in_container``: the server runs an
        image's vLLM (assumed current); ``nsys_here=False``: the launcher wraps in nsys itself,
        elsewhere (on SLURM nodes)."""
        if not self.enabled:
            return LaunchAdditions()
        from pytest_vllm_serve.bench.profiling import profiler_serve_config
        from pytest_vllm_serve.serving.hardware import find_vllm
        from pytest_vllm_serve.serving.nsys import nsys_command

        install = None if in_container else find_vllm()
        profiler = "torch" if self.settings.profile else "cuda"  # nsys captures between CUDA profiler calls
        args, env = profiler_serve_config(
            install.version if install else None,
            self.server_trace_dir.resolve(),
            self.settings.profiler_config,
            profiler,
        )
        wrap: list[str] = []
        if self.settings.nsys and nsys_here:
            wrap = nsys_command(self.nsys_dir.resolve() / "profile-node0", binary="nsys" if in_container else None)
        return LaunchAdditions(tuple(args), env, tuple(wrap))

    def check(self) -> None:
        """Bad profiling setups fail before anything launches."""
        from pytest_vllm_serve.bench.profiling import ClientTracer, check_trace_dir
        from pytest_vllm_serve.serving.nsys import nsys_command

        settings = self.settings
        if settings.profile and settings.nsys and settings.profiler_config is None:
            raise ConfigError(
                "--vllm-profile (torch profiler) and --vllm-nsys (CUDA profiler under nsys) cannot drive one server "
                "at once: vLLM runs one profiler.\n  fix: use one of them per run"
            )
        if self.enabled:
            check_trace_dir(self.server_trace_dir)
        if settings.nsys and not (settings.url or settings.slurm or settings.docker):
            nsys_command(self.nsys_dir / "profile-node0")
        if settings.viztracer:
            ClientTracer.check_installed()
            check_trace_dir(self.results_dir / "profiles")
