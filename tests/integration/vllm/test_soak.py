"""Soak, bounded for CI: the smoke suite repeated while the server is saturated.

benchmarks/soak.py does the work (and runs longer for docs/reliability.md).
Nothing may fail and nothing may leak: the load generator's memory and open
file descriptors after the soak are those of its first, warm round.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT


@pytest.mark.slow  # about 1 min of saturating load
def test_smoke_under_saturating_load_leaks_nothing(vllm_server, tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "soak.py"),
            f"--url={vllm_server.url}",
            "--seconds=60",
            "--prompts=48",
            f"--json={out}",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["smoke_runs"] >= 2 and figures["smoke_runs_failed"] == 0, figures
    assert figures["requests_failed"] == 0, figures
    assert figures["load_rounds"] >= 3, figures
    assert figures["client_rss_growth_mb"] < 25, figures
    assert figures["open_fds_after"] <= figures["open_fds_before"] + 2, figures
