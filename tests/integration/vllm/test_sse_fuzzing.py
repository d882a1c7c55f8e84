"""The incremental SSE parser under coverage-guided fuzzing (atheris, 15 s; too slow for
tests/unit, which holds the parser's other tests)."""

from __future__ import annotations

import pytest

from tests.support import ROOT


@pytest.mark.slow  # fuzzing for half a minute
def test_a_short_fuzzing_run_finds_nothing(tmp_path):
    """atheris (coverage-guided) for 15 s; benchmarks/fuzz_sse.py runs longer ones."""
    import subprocess
    import sys

    script = ROOT / "benchmarks" / "fuzz_sse.py"
    seed = tmp_path / "corpus"
    seed.mkdir()
    (seed / "stream").write_bytes(b'\x05data: {"choices":[{"text":"a"}]}\r\n\r\ndata: [DONE]\n\n')
    done = subprocess.run(
        [sys.executable, str(script), "-max_total_time=15", "-seed=1", str(seed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr and "runs in" in done.stderr
