"""Benchmark points through the plugin: results files, pytest-benchmark JSON,
regression gates against a deliberately slowed server, and bad input.

The server here is the latency test server (known timings, instant startup),
attached with --vllm-url; the suites' runs against real vLLM are in tests/benchmarks.
Bad input that fails before any server is reached: tests/unit/test_bench_plugin.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_serve.tools.latency_server import running
from tests.support import ROOT
from tests.support.inner_runs import BENCH_POINT, latest_results, output, run_against

SMALL = ["--vllm-num-prompts=12", "--vllm-input-len=6", "--vllm-output-len=5", "--vllm-warmup=1"]


def run(pytester, url, *args, timeout=120):
    return run_against(pytester, url, *SMALL, *args, timeout=timeout)


def latest(pytester) -> Path:
    return latest_results(pytester)


def test_point_results_files_and_benchmark_json(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=20, itl_ms=2) as url:
        result = run(pytester, url, "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    root = latest(pytester)
    point = json.loads(next((root / "points").glob("*.json")).read_text())
    assert point["completed"] == 12 and point["failed"] == 0
    assert point["completed_strict"] == 12 and point["stream_errors"] == 0
    assert point["warmup_excluded"] == 1  # --vllm-warmup=1: sent, counted, and left out of the rest
    assert len(point["ttfts"]) == 12 and all(0.019 < t < 0.2 for t in point["ttfts"])
    assert point["pytest_vllm_serve"]["id"].endswith(".py::test_point")
    summary = json.loads((root / "summary.json").read_text())
    assert summary["points"][0]["metrics"]["completed"] == 12
    assert "p99_ttft_ms" in (root / "summary.csv").read_text().splitlines()[0]
    # pytest-benchmark: every metric in extra_info, the TTFT series as its timing data.
    bench = json.loads((pytester.path / "bench.json").read_text())["benchmarks"][0]
    assert bench["extra_info"]["metrics"]["completed"] == 12
    assert bench["extra_info"]["recorded_series"] == "ttft"
    assert bench["stats"]["rounds"] == 12
    assert 0.019 < bench["stats"]["median"] < 0.2
    assert "vllm benchmark results" in result.stdout.str()


def test_result_file_has_every_key_of_vllm_bench_serve(pytester, tmp_path, vllm_session):
    """Run the real `vllm bench serve --save-result` and ours on the same server; compare keys."""
    from pytest_vllm_serve.serving.models import ensure_tiny_model

    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run(pytester, url)
        result.assert_outcomes(passed=1)
        peer = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "vllm_bench.py"),
                "bench",
                "serve",
                "--backend",
                "openai-chat",
                "--endpoint",
                "/v1/chat/completions",
                "--base-url",
                url,
                "--model",
                "latency-server",
                "--tokenizer",
                str(ensure_tiny_model(vllm_session.settings.cache_dir)),
                "--dataset-name",
                "random",
                "--random-input-len",
                "6",
                "--random-output-len",
                "5",
                "--num-prompts",
                "8",
                "--ignore-eos",
                "--percentile-metrics",
                "ttft,tpot,itl,e2el",
                "--metric-percentiles",
                "50,90,95,99",
                "--save-result",
                "--save-detailed",
                "--result-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert peer.returncode == 0, peer.stdout[-2000:] + peer.stderr[-2000:]
    theirs = json.loads(next(tmp_path.glob("*.json")).read_text())
    ours = json.loads(next((latest(pytester) / "points").glob("*.json")).read_text())
    missing = set(theirs) - set(ours)
    assert not missing, f"keys vllm bench serve writes that we do not: {sorted(missing)}"


def test_fail_on_catches_a_slowed_server(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=10, itl_ms=1) as fast:
        baseline_run = run(pytester, fast)
    baseline_run.assert_outcomes(passed=1)
    baseline = latest(pytester) / "summary.json"
    # Wide enough that a loaded CI machine's noise on a 12-request point never trips it (the p99
    # of 12 requests is their slowest; the gate over repeats is in test_repeats.py), and far
    # inside the slowed server's change (TTFT x8, ITL x8).
    gate = ["--vllm-baseline", str(baseline), "--vllm-fail-on", "median_ttft_ms:+100%,output_throughput:-40%"]
    with running(ttft_ms=10, itl_ms=1) as same:
        unchanged = run(pytester, same, *gate)
    unchanged.assert_outcomes(passed=1)
    with running(ttft_ms=80, itl_ms=8) as slow:
        slowed = run(pytester, slow, *gate)
    slowed.assert_outcomes(failed=1)
    out = output(slowed)
    assert "regression against --vllm-baseline" in out
    for needle in ("median_ttft_ms", "output_throughput", "+100%", "-40%"):
        assert needle in out
    base = json.loads(baseline.read_text())["points"][0]["metrics"]["median_ttft_ms"]
    assert f"{base:.4g}"[:3] in out  # the baseline value is quoted
    # Nothing measured is lost: the failing point is still in the new run's results.
    assert json.loads((latest(pytester) / "summary.json").read_text())["points"][0]["metrics"]["completed"] == 12


def test_pytest_benchmark_compare_fail_gates_the_recorded_series(pytester):
    pytester.makepyfile(BENCH_POINT)
    storage = f"--benchmark-storage=file://{pytester.path / 'storage'}"
    with running(ttft_ms=10) as fast:
        run(pytester, fast, "--benchmark-autosave", storage).assert_outcomes(passed=1)
    with running(ttft_ms=60) as slow:
        result = run(pytester, slow, "--benchmark-compare", "--benchmark-compare-fail=mean:10%", storage)
    assert result.ret != 0
    assert "Performance has regressed" in output(result)


def test_the_recorded_tpot_series_is_the_metrics_tpot(pytester):
    """pytest-benchmark's TPOT series holds exactly the samples of the point's TPOT."""
    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=10, itl_ms=3, tokens_per_chunk=2) as url:
        run(pytester, url, "--vllm-record-metric=tpot", "--benchmark-json=bench.json").assert_outcomes(passed=1)
    point = json.loads(next((latest(pytester) / "points").glob("*.json")).read_text())
    stats = json.loads((pytester.path / "bench.json").read_text())["benchmarks"][0]["stats"]
    assert stats["rounds"] == point["completed"] == 12
    assert stats["mean"] * 1000 == pytest.approx(point["mean_tpot_ms"], rel=1e-9)
    assert stats["median"] * 1000 == pytest.approx(point["median_tpot_ms"], rel=1e-9)


def test_every_request_failing_fails_the_point_and_keeps_the_evidence(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(fail_every=1) as broken:
        result = run(pytester, broken)
    result.assert_outcomes(failed=1)
    out = output(result)
    assert "every" in out.lower() and "failed" in out
    assert "HTTP 500" in out
    point = json.loads(next((latest(pytester) / "points").glob("*.json")).read_text())
    assert point["completed"] == 0 and point["failed"] == 12


def test_points_longer_than_the_servers_limit_are_skipped_with_the_reason(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(max_model_len=8) as short:
        result = run(pytester, short, "-rs")
    result.assert_outcomes(skipped=1)
    assert "input 6 + output 5 = 11 tokens exceeds the server's max model length 8" in result.stdout.str()
    assert "--max-model-len 11" in result.stdout.str()


def test_progress_is_shown_on_long_points(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=300) as slow:
        result = run(pytester, slow, "--vllm-progress-interval=0.1", "--vllm-num-prompts=4", "-s")
    result.assert_outcomes(passed=1)
    assert "[vllm-bench] test_point (rate inf (all at once), 4 prompts): starting" in result.stdout.str()
    assert "/4 done, 0 failed" in result.stdout.str()


def test_missing_dataset_fails_before_load(pytester):
    pytester.makepyfile(
        """
        import pytest
        from pytest_vllm_serve.bench.workloads import ShareGPTWorkload

        def test_sharegpt(vllm_bench):
            vllm_bench.run(ShareGPTWorkload(vllm_bench.settings.dataset_path or "missing.json"))
        """
    )
    with running() as url:
        result = run(pytester, url, "--vllm-dataset-path=missing.json")
    result.assert_outcomes(failed=1)
    assert "does not exist" in output(result)


def test_benchmarks_under_xdist_still_write_results(pytester):
    pytester.makepyfile(
        BENCH_POINT
        + """

@pytest.mark.benchmark
def test_point_two(vllm_bench):
    vllm_bench.run(RandomWorkload(4, 3, 6, 1), Schedule(rate=math.inf), suite="custom")
"""
    )
    with running(ttft_ms=5) as url:
        result = run(pytester, url, "-n", "2")
    result.assert_outcomes(passed=2)
    summary = json.loads((latest(pytester) / "summary.json").read_text())
    assert sorted(p["id"].split("::")[-1] for p in summary["points"]) == ["test_point", "test_point_two"]
