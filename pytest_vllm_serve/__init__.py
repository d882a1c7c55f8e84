"""pytest-vllm-serve: vLLM servers as pytest fixtures, smoke tests and serving benchmarks."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pytest_vllm_serve.errors import ConfigError, ServerDiedError, ServerStartError, VllmServeError
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.server import serve
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

__all__ = [
    "ConfigError",
    "Layout",
    "LocalLauncher",
    "MeasureHook",
    "RandomWorkload",
    "RunningServer",
    "Schedule",
    "ServerDiedError",
    "ServerSpec",
    "ServerStartError",
    "ShareGPTWorkload",
    "SonnetWorkload",
    "VllmServeError",
    "Workload",
    "serve",
]
try:  # one version: the package metadata, from pyproject.toml
    __version__ = version("pytest-vllm-serve")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

#: Public names imported on first use, so that the plugin's small helper processes (the
#: reaper, the watchdogs, the load worker) do not pay for the benchmark half at start-up.
_LAZY = {
    "LocalLauncher": "pytest_vllm_serve.serving.launchers.local",
    "MeasureHook": "pytest_vllm_serve.bench.point",
    "RandomWorkload": "pytest_vllm_serve.bench.workloads",
    "Schedule": "pytest_vllm_serve.bench.schedule",
    "ShareGPTWorkload": "pytest_vllm_serve.bench.workloads",
    "SonnetWorkload": "pytest_vllm_serve.bench.workloads",
    "Workload": "pytest_vllm_serve.bench.workloads",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_vllm_serve' has no attribute {name!r}")
