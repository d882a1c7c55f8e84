"""The pytest-benchmark sink against the installed release of pytest-benchmark.

bench/sinks/pytest_benchmark.py is the one module that uses pytest-benchmark's fixture
internals; these tests run a real pytest-benchmark session, so a release that changes them
fails here, not in a user's CI.
"""

from __future__ import annotations

import json
import warnings

import pytest

from pytest_vllm_serve.bench.sinks import pytest_benchmark as sink

INNER = """
from pytest_vllm_serve.bench.sinks import pytest_benchmark as sink

def test_point(benchmark):
    sink.record(benchmark, {"median_ttft_ms": 200.0}, {"request_rate": 4}, "rate", "ttft", [0.1, 0.3, 0.2])
"""


def test_the_installed_release_is_supported():
    assert sink.supported(), "the installed pytest-benchmark is outside the sink's supported range"


@pytest.mark.parametrize(
    ("release", "ok"),
    [
        ("4.0.0", True),
        ("5.3.1", True),
        ("5.10.0", True),
        ("6.0.0", False),
        ("3.4.1", False),
        ("6.0.0rc1", False),
        ("garbage", False),
    ],
)
def test_the_version_check(release, ok):
    assert sink.supported(release) is ok


def test_a_point_lands_in_the_benchmark_json(pytester):
    pytester.makepyfile(INNER)
    out = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--benchmark-json={out}")
    result.assert_outcomes(passed=1)
    (bench,) = json.loads(out.read_text())["benchmarks"]
    assert bench["group"] == "rate"
    assert bench["extra_info"]["metrics"] == {"median_ttft_ms": 200.0}
    assert bench["extra_info"]["recorded_series"] == "ttft"
    stats = bench["stats"]
    assert (stats["min"], stats["max"], stats["rounds"]) == (0.1, 0.3, 3)
    assert stats["median"] == pytest.approx(0.2)


def test_an_unknown_release_keeps_the_metrics_and_warns(monkeypatch):
    monkeypatch.setattr(sink, "supported", lambda text=None: False)

    class Fixture:  # a stand-in with the public surface the sink reads first
        disabled = False
        group = None

        def __init__(self):
            self.extra_info = {}

        def _make_stats(self, iterations):  # must not be reached
            raise AssertionError("internals used on an unsupported release")

    fixture = Fixture()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.record(fixture, {"m": 1.0}, {}, "rate", "ttft", [0.1])
    assert fixture.extra_info["metrics"] == {"m": 1.0}
    assert any("pytest-benchmark<6" in str(w.message) for w in caught)
