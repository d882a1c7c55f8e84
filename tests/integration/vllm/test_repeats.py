"""--vllm-repeats and the numbers that hold still, through the plugin, against the latency test
server (known timings, instant start): interleaved and grouped order, every repeat's file, the
medians and intervals in every sink, the noise-aware gate, stability marks, warmup and the
prefix-cache reset's record. The same against vLLM: tests/integration/vllm/test_repeats_on_vllm.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pytest_vllm_serve.tools.latency_server import running
from tests.support.inner_runs import latest_results, output, run_against

SMALL = ["--vllm-num-prompts=8", "--vllm-input-len=6", "--vllm-output-len=4", "--vllm-warmup=1"]

TWO_POINTS = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.benchmark
@pytest.mark.parametrize("cap", [1, 4], ids=["cap1", "cap4"])
def test_point(vllm_bench, cap):
    s = vllm_bench.settings
    vllm_bench.run(RandomWorkload(s.input_len, s.output_len, s.num_prompts, s.seed),
                   Schedule(rate=math.inf, max_concurrency=cap), suite="custom", params={"cap": cap})
"""


def run(pytester, url, *args, timeout=180):
    return run_against(pytester, url, "-v", *SMALL, *args, timeout=timeout)


def latest(pytester) -> Path:
    return latest_results(pytester)


def ran(result) -> list[str]:
    """The test ids in the order they ran (from -v's PASSED lines)."""
    return [line.split("::")[-1].split()[0] for line in result.stdout.lines if " PASSED" in line and "::" in line]


def test_repeats_interleave_and_the_point_gets_medians_and_intervals(pytester):
    pytester.makepyfile(TWO_POINTS)
    with running(ttft_ms=20, itl_ms=2) as url:
        result = run(pytester, url, "--vllm-repeats=3", "--benchmark-json=bench.json")
    result.assert_outcomes(passed=6)
    assert ran(result) == [f"test_point[cap{c}-repeat={r}]" for r in (1, 2, 3) for c in (1, 4)]
    root = latest(pytester)
    assert len(list((root / "points" / "repeats").glob("*.json"))) == 6  # every repeat keeps its own file
    for repeat in (root / "points" / "repeats").glob("*.json"):
        kept = json.loads(repeat.read_text())
        assert kept["completed"] == 8 and len(kept["ttfts"]) == 8  # vllm bench serve's keys, per repeat
    points = [json.loads(p.read_text())["pytest_vllm_serve"] for p in sorted((root / "points").glob("*.json"))]
    assert [p["id"].split("::")[-1] for p in points] == ["test_point[cap1]", "test_point[cap4]"]
    for point in points:
        repeats = point["repeats"]
        assert repeats["n"] == 3 and len(repeats["values"]["median_ttft_ms"]) == 3
        ttft = repeats["metrics"]["median_ttft_ms"]
        assert ttft["ci_low"] <= ttft["median"] <= ttft["ci_high"]
        assert 19 < ttft["median"] < 200 and ttft["cv"] is not None
        assert point["metrics"]["median_ttft_ms"] == ttft["median"]
        assert point["metrics"]["completed"] == 8  # the median over repeats of 8 each
    with open(root / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["repeats"] for row in rows} == {"3"}
    assert all(float(row["median_ttft_ms_ci_low"]) <= float(row["median_ttft_ms"]) for row in rows)
    table = output(result)
    assert "±" in table and "vllm benchmark results" in table
    bench = json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    assert len(bench) == 2  # one per point, recorded by its last repeat
    assert all(b["stats"]["rounds"] == 24 for b in bench)  # the TTFT series of all three repeats, pooled
    assert all(b["extra_info"]["repeats"]["n"] == 3 for b in bench)


def test_grouped_order_runs_a_points_repeats_back_to_back(pytester):
    pytester.makepyfile(TWO_POINTS)
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run(pytester, url, "--vllm-repeats=2", "--vllm-repeat-order=grouped")
    result.assert_outcomes(passed=4)
    assert ran(result) == [f"test_point[cap{c}-repeat={r}]" for c in (1, 4) for r in (1, 2)]


def test_noise_aware_gate_passes_the_same_server_and_fails_a_slower_one(pytester):
    pytester.makepyfile(TWO_POINTS)
    with running(ttft_ms=20, itl_ms=2) as url:
        first = run(pytester, url, "--vllm-repeats=3", "-k", "cap1")
        first.assert_outcomes(passed=3)
        baseline = latest(pytester) / "summary.json"
        again = run(
            pytester,
            url,
            "--vllm-repeats=3",
            "-k",
            "cap1",
            f"--vllm-baseline={baseline}",
            "--vllm-fail-on=median_ttft_ms:+50%",
        )
    again.assert_outcomes(passed=3)
    with running(ttft_ms=60, itl_ms=2) as slower:
        slow = run(
            pytester,
            slower,
            "--vllm-repeats=3",
            "-k",
            "cap1",
            f"--vllm-baseline={baseline}",
            "--vllm-fail-on=median_ttft_ms:+50%",
        )
    slow.assert_outcomes(passed=2, failed=1)  # the point's last repeat gates it
    text = output(slow)
    assert "regression against --vllm-baseline" in text
    assert "median_ttft_ms" in text and "CI" in text  # both sides' medians and intervals


def test_a_single_run_baseline_gated_with_repeats_is_taken_as_exact(pytester):
    pytester.makepyfile(TWO_POINTS)
    with running(ttft_ms=20, itl_ms=2) as url:
        run(pytester, url, "-k", "cap1").assert_outcomes(passed=1)
        baseline = latest(pytester) / "summary.json"
        again = run(
            pytester,
            url,
            "--vllm-repeats=2",
            "-k",
            "cap1",
            f"--vllm-baseline={baseline}",
            "--vllm-fail-on=median_ttft_ms:+50%",
        )
    again.assert_outcomes(passed=2)
    assert "is a single run: taken as exact" in output(again)


def test_a_short_point_is_marked_unstable_with_its_fix(pytester):
    pytester.makepyfile(TWO_POINTS)
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run(pytester, url, "-k", "cap4", "--vllm-min-duration=10")
        steady = run(pytester, url, "-k", "cap4", "--vllm-min-duration=0")
    result.assert_outcomes(passed=1)
    point = json.loads(next((latest(pytester) / "points").glob("*.json")).read_text())
    stability = point["pytest_vllm_serve"]["stability"]
    steady.assert_outcomes(passed=1)
    assert "--vllm-duration" in output(result) and "unstable" in output(result)
    newest = sorted(p for p in (pytester.path / "results").iterdir() if p.name != "latest")
    first = json.loads(next((newest[0] / "points").glob("*.json")).read_text())["pytest_vllm_serve"]
    assert first["stability"]["stable"] is False
    assert "under --vllm-min-duration 10 s" in first["stability"]["reasons"][0]
    assert stability["stable"] is True and stability["reasons"] == []


def test_warmup_auto_fills_the_concurrency_and_the_prefix_cache_reset_is_recorded(pytester):
    pytester.makepyfile(TWO_POINTS)
    with running(ttft_ms=5, itl_ms=1) as url:
        auto = run_against(
            pytester,
            url,
            "--vllm-num-prompts=8",
            "--vllm-input-len=6",
            "--vllm-output-len=4",
            "-k",
            "cap4",
            "--vllm-reset-prefix-cache=on",
            timeout=120,
        )
    auto.assert_outcomes(passed=1)
    point = json.loads(next((latest(pytester) / "points").glob("*.json")).read_text())
    assert point["warmup_excluded"] == 4  # auto: the point's concurrency, filled once
    assert point["pytest_vllm_serve"]["params"]["prefix_cache_reset"] == "unavailable"
    assert "could not reset the prefix cache" in output(auto)  # and the point went on


DURATION_POINTS = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.benchmark
@pytest.mark.parametrize("schedule", [Schedule(rate=20, seed=1), Schedule(max_concurrency=4)], ids=["rate20", "cap4"])
def test_point(vllm_bench, schedule):
    s = vllm_bench.settings
    vllm_bench.run(RandomWorkload(s.input_len, s.output_len, s.num_prompts, s.seed), schedule, suite="custom")
"""


def test_a_duration_bounds_the_sending_and_the_count_is_recorded(pytester):
    pytester.makepyfile(DURATION_POINTS)
    with running(ttft_ms=20, itl_ms=2) as url:
        result = run(pytester, url, "--vllm-duration=2")
    result.assert_outcomes(passed=2)
    points = {
        p["pytest_vllm_serve"]["id"].split("::")[-1]: p
        for p in (json.loads(f.read_text()) for f in (latest(pytester) / "points").glob("*.json"))
    }
    for name, point in points.items():
        params = point["pytest_vllm_serve"]["params"]
        assert params["duration_s"] == 2
        assert params["num_prompts"] == point["completed"] + point["failed"]  # the count the duration let through
        starts = point["start_times"]
        assert max(starts) - min(starts) < 2.0, name  # nothing was sent after the duration
        assert point["failed"] == 0
    assert 20 <= points["test_point[rate20]"]["completed"] <= 60  # about 20 req/s for 2 s, Poisson
    assert points["test_point[cap4]"]["completed"] > 8 * 5  # paced by the cap, far past the 8 prompts


def test_the_concurrency_suite_sends_k_prompts_per_slot(pytester):
    with running(ttft_ms=2, itl_ms=1) as url:
        result = run_against(
            pytester,
            url,
            "--vllm-suite=benchmarks",
            "-k",
            "test_sweeps and test_concurrency",
            "--vllm-sweep-concurrency=4",
            "--vllm-num-prompts=8",
            "--vllm-input-len=6",
            "--vllm-output-len=4",
            "--vllm-prompts-per-concurrency=5",
            timeout=120,
        )
    result.assert_outcomes(passed=1)
    point = json.loads(next((latest(pytester) / "points").glob("*.json")).read_text())
    assert point["pytest_vllm_serve"]["params"]["num_prompts"] == 20  # 5 x concurrency 4, over the 8 asked
    assert point["completed"] == 20
