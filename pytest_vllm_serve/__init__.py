"""pytest-vllm-serve: vLLM servers as pytest fixtures, smoke tests and serving benchmarks."""

from importlib.metadata import PackageNotFoundError, version

from .errors import ConfigError, ServerDiedError, ServerStartError, VllmServeError
from .launchers.base import RunningServer
from .server import serve
from .spec import Layout, ServerSpec

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
