"""pytest-vllm-serve: vLLM servers as pytest fixtures, smoke tests and serving benchmarks."""

from importlib.metadata import PackageNotFoundError, version

from pytest_vllm_serve.errors import ConfigError, ServerDiedError, ServerStartError, VllmServeError
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.server import serve
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

__all__ = [
    "ConfigError",
    "Layout",
    "RunningServer",
    "ServerDiedError",
    "ServerSpec",
    "ServerStartError",
    "VllmServeError",
    "serve",
]
try:  # one version: the package metadata, from pyproject.toml
    __version__ = version("pytest-vllm-serve")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
