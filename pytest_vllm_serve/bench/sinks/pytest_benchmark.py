"""pytest-benchmark as a sink: each point's latency series as the fixture's timing data.

pytest-benchmark has no public way to record samples that were measured elsewhere: its
fixture times a callable it runs itself. So this module, and only this one, uses two of its
fixture's internals: ``_make_stats(iterations)`` (the stats container that its JSON,
``--benchmark-compare`` and ``--benchmark-compare-fail`` read) and ``_mode`` (marks the
fixture used, as ``benchmark(...)`` does). Both exist unchanged from 4.0 through 5.3; the
check below refuses other releases with a clear warning instead of breaking, and
tests/unit/test_pytest_benchmark_sink.py runs against the installed (newest pinned) release.
Everything else goes through public API (``group``, ``extra_info``, ``disabled``).
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: Releases whose fixture internals this module was written against: [lowest, below).
SUPPORTED = ((4, 0), (6, 0))


def _release(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)(?:\.(\d+))?", text)
    return (int(match.group(1)), int(match.group(2) or 0)) if match else (0, 0)


def supported(text: str | None = None) -> bool:
    """Whether the installed pytest-benchmark (or release ``text``) is one this sink knows."""
    if text is None:
        try:
            text = version("pytest-benchmark")
        except PackageNotFoundError:
            return False
    low, below = SUPPORTED
    return low <= _release(text) < below


def record(
    fixture: Any,
    values: dict[str, float],
    params: dict[str, Any],
    suite: str,
    series_name: str,
    series: list[float],
    extra: dict[str, Any] | None = None,
) -> None:
    """Put a point into pytest-benchmark: every metric in extra_info (with ``extra``, e.g. the
    repeats' intervals), one latency series (seconds) as its timing data, so
    --benchmark-compare(-fail) works on it."""
    if fixture is None or getattr(fixture, "disabled", True):
        return  # pytest-benchmark is off (e.g. under xdist); our own results files still exist
    fixture.group = fixture.group or suite
    fixture.extra_info.update({"metrics": values, "params": params, "recorded_series": series_name, **(extra or {})})
    if not supported():
        warnings.warn(
            f"pytest-benchmark {version('pytest-benchmark')} is not a release pytest-vllm-serve supports "
            f"(>= {'.'.join(map(str, SUPPORTED[0]))}, < {'.'.join(map(str, SUPPORTED[1]))}): the point's metrics "
            "are in its extra_info, but not its timing data; pip install 'pytest-benchmark<6'",
            stacklevel=2,
        )
        return
    stats = fixture._make_stats(1)  # pytest-benchmark's own container, fed our samples
    for value in series:
        stats.update(value)
    fixture._mode = "pytest-vllm-serve"
