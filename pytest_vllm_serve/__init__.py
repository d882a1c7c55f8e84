"""pytest-vllm-serve: vLLM servers as pytest fixtures, smoke tests and serving benchmarks."""

from importlib.metadata import version as _version

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
__version__ = _version("pytest-vllm-serve")  # one version: the package metadata (pyproject.toml)
