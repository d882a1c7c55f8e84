"""Benchmark points through the plugin, the parts that need no server: bad input fails
before any load, and plot titles. The points against the latency test server are in
tests/integration/vllm/test_bench_plugin_against_servers.py.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.inner_runs import BENCH_POINT, output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vllm-sweep-rate=0,4"], "must be positive"),
        (["--vllm-sweep-rate=1,,2"], "--vllm-sweep-rate '1,,2': item 2 of 3 is empty"),
        (["--vllm-sweep-concurrency=1,2,"], "--vllm-sweep-concurrency '1,2,': item 3 of 3 is empty"),
        (["--vllm-sweep-concurrency=-2"], "must be positive"),
        (["--vllm-sweep-input-len=abc"], "is not a number"),
        (["--vllm-num-prompts=0"], "--vllm-num-prompts must be positive"),
        (["--vllm-fail-on=p99_ttft_ms:+10%"], "--vllm-fail-on needs --vllm-baseline"),
        (["--vllm-baseline=summary.json", "--vllm-fail-on=p99_bogus_ms:+10%"], "unknown metric 'p99_bogus_ms'"),
        (["--vllm-goodput=latency:5"], "goodput"),
        (["--vllm-endpoint=grpc"], "use chat or completions"),
        (["--vllm-token-ids", "--vllm-no-token-ids"], "--vllm-token-ids and --vllm-no-token-ids contradict"),
        (["--vllm-repeats=0"], "--vllm-repeats must be positive"),
        (["--vllm-duration=0"], "--vllm-duration must be positive"),
        (["--vllm-duration=-5"], "--vllm-duration must be positive"),
        (["--vllm-max-cv=0"], "--vllm-max-cv must be positive"),
        (["--vllm-max-cv=150"], "--vllm-max-cv is a percentage in (0, 100]"),
        (["--vllm-gate-confidence=1.5"], "--vllm-gate-confidence must be between 0 and 1"),
        (["--vllm-repeat-order=random"], "--vllm-repeat-order must be interleaved or grouped"),
        (["--vllm-reset-prefix-cache=maybe"], "--vllm-reset-prefix-cache must be auto, on or off"),
        (["--vllm-warmup=some"], "--vllm-warmup must be a number or auto"),
        (["--vllm-metrics-interval=-1"], "--vllm-metrics-interval must be 0 (off) or positive"),
        (["--vllm-metrics-interval=often"], "--vllm-metrics-interval must be a number"),
    ],
)
def test_bad_input_fails_before_any_load(pytester, args, message):
    pytester.makepyfile(BENCH_POINT)
    (pytester.path / "summary.json").write_text(json.dumps({"format": "pytest-vllm-serve/results-v1", "points": []}))
    start = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vllm-url=http://127.0.0.1:9", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in output(result)
    assert time.monotonic() - start < 20


def test_a_baseline_that_is_not_a_results_file(pytester):
    pytester.makepyfile(BENCH_POINT)
    (pytester.path / "other.json").write_text(json.dumps({"hello": "world"}))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--vllm-url=http://127.0.0.1:9",
        "--vllm-baseline=other.json",
        "--vllm-fail-on=p99_ttft_ms:+10%",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "is not a results file" in output(result)


def test_plot_titles_name_a_local_model_by_its_directory():
    from pytest_vllm_serve.bench.sinks.plots import model_label

    assert model_label("/data/models/llama-8b") == "llama-8b"
    assert model_label("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
