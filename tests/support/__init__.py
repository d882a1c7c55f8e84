"""What the project's own tests share (tests/unit and tests/integration).

- inner_runs: inner pytest runs, the processes they start, and their bad-input checks
- slurm: the real SLURM cluster (scripts/services/slurm.sh)
- fault_proxy: an HTTP proxy that fails or cuts answers of a real server
- loadgen: the load generator's test prompts and plan, and a concurrency measure
- leaks: the secrets the security tests plant, and the places they must never reach

``ROOT`` is the repository and ``DATA`` holds the tests' data files (tests/data).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
