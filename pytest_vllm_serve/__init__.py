"""pytest-vllm-serve: vLLM servers as pytest fixtures, smoke tests and serving benchmarks."""

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
__version__ = "0.1.0"
