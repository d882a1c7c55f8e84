"""The security tests' secrets (tests/unit/test_security.py and its servers' half), and every
place an inner run writes that they must never reach."""

from __future__ import annotations

import subprocess
from pathlib import Path

API_KEY = "sk-sec-" + "a1b2c3d4" * 3
HF_TOKEN = "hf_" + "Zq9Xw8Vu7" * 3
PASSWORD = "pw-" + "m5n6b7" * 3
SECRETS = (API_KEY, HF_TOKEN, PASSWORD)


def every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def sinks_of(done: subprocess.CompletedProcess, junit: Path, root: Path) -> dict[str, str]:
    """The run's output, its junit XML and every file under its results dir, by name."""
    sinks = {"pytest output": done.stdout + done.stderr, "junit xml": junit.read_text()}
    sinks.update({str(p): p.read_text(errors="replace") for p in every_file(root)})
    return sinks
