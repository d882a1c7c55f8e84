"""The load generator against the latency test server (known TTFT and ITL).

The latency server is the project's stand-in with exact timings; it is what
lets these tests state what the client must measure.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import time

import pytest

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, run_load
from pytest_vllm_serve.bench.metrics import compute_metrics, per_token_itl, to_vllm_result
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.tools.latency_server import LatencyServer, Timing, drift_factor, lognormal_factor, running
from tests.support.loadgen import PROMPTS, below_cap_fraction, plan


@pytest.fixture(scope="module")
def timed_server():
    with running(ttft_ms=40, itl_ms=5) as url:
        yield url


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_measures_the_known_ttft_and_itl(timed_server, endpoint):
    result = run_load(plan(timed_server, Schedule(rate=50, burstiness=math.inf), endpoint=endpoint, warmup=1))
    assert all(r.success for r in result.records), [r.error for r in result.records]
    ttft = statistics.median(r.ttft for r in result.records)
    assert 0.040 <= ttft < 0.050
    token_gaps = [g for r in result.records for g in per_token_itl(r)]
    assert statistics.median(token_gaps) == pytest.approx(0.005, abs=0.0015)
    assert all(r.output_tokens == 8 for r in result.records)
    assert all(r.completion_tokens == 8 and r.prompt_tokens == 4 for r in result.records)


def test_warmup_requests_are_marked_and_kept_apart(timed_server):
    result = run_load(plan(timed_server, warmup=3))
    assert len(result.warmup_records) == 3 and all(r.warmup for r in result.warmup_records)
    assert len(result.records) == len(PROMPTS) and not any(r.warmup for r in result.records)
    assert sorted(r.index for r in result.records) == list(range(len(PROMPTS)))
    # Warmups finish before the measured phase starts.
    assert max(r.done_time for r in result.warmup_records) <= result.t0


def test_follows_an_absolute_schedule_without_drift(timed_server):
    schedule = Schedule(rate=40, burstiness=math.inf)
    result = run_load(plan(timed_server, schedule, warmup=0))
    metrics = compute_metrics(result.records, result.duration, target_request_rate=40)
    assert metrics.achieved_request_rate == pytest.approx(40, rel=0.02)
    lags = [r.send_lag for r in result.records]
    assert statistics.median(lags) < 0.001
    # The last send is due at n / rate after t0; no accumulated lateness.
    last = max(result.records, key=lambda r: r.index)
    assert last.dispatch_time - result.t0 == pytest.approx(len(PROMPTS) / 40, abs=0.005)


def test_max_concurrency_is_a_hard_cap(timed_server):
    result = run_load(plan(timed_server, Schedule(max_concurrency=3), warmup=0))
    metrics = compute_metrics(result.records, result.duration)
    assert metrics.exact_peak_concurrent_requests == 3
    assert max(r.queue_time for r in result.records) > 0.05  # later requests waited for a slot


def test_several_client_processes_share_one_schedule(timed_server):
    schedule = Schedule(rate=60, burstiness=math.inf)
    result = run_load(plan(timed_server, schedule, processes=2, warmup=1))
    assert result.processes == 2
    assert [r.index for r in result.records] == list(range(len(PROMPTS)))
    assert all(r.success for r in result.records)
    for record in result.records:  # both processes used the same t0 and offsets
        assert record.scheduled_time == pytest.approx(result.t0 + result.offsets[record.index])
    assert statistics.median(r.send_lag for r in result.records) < 0.002
    assert result.client_cpu_seconds > 0


def test_multi_token_chunks_keep_per_token_itl_honest():
    """With --vllm-token-ids each chunk's tokens are known, so per-token ITL stays exact."""
    with running(ttft_ms=10, itl_ms=4, tokens_per_chunk=4) as url:
        result = run_load(
            plan(
                url,
                prompts=tuple(Prompt("a b", 2, 16) for _ in range(4)),
                warmup=0,
                endpoint="completions",
                token_ids=True,
            )
        )
    record = result.records[0]
    assert record.chunk_tokens == [1, 4, 4, 4, 3]
    assert statistics.median(record.itl) == pytest.approx(0.016, abs=0.002)  # chunk gaps: 4 tokens each
    assert statistics.median(per_token_itl(record)) == pytest.approx(0.004, abs=0.0008)


def test_by_default_the_request_is_vllm_bench_serves_and_counts_come_from_usage():
    """No return_token_ids by default (the body vllm bench serve sends): each chunk with text counts
    one token for per-token ITL, and the output tokens still come from the server's usage."""
    body = RequestOptions(model="m", endpoint="completions").payload(Prompt("a b", 2, 16))
    assert "return_token_ids" not in body
    with running(ttft_ms=10, itl_ms=4, tokens_per_chunk=4) as url:
        result = run_load(
            plan(url, prompts=tuple(Prompt("a b", 2, 16) for _ in range(2)), warmup=0, endpoint="completions")
        )
    record = result.records[0]
    assert record.chunk_tokens == [1, 1, 1, 1, 1]
    assert record.output_tokens == 16


@pytest.mark.parametrize(
    "fault, expected, count",
    [
        ({"fail_every": 2}, "HTTP 500: injected failure", 3),
        ({"cut_after": 3}, "ClientPayloadError: Response payload is not completed", 6),
        ({"empty_stream": True}, "empty stream", 6),
    ],
)
def test_errors_are_recorded_never_raised(fault, expected, count):
    with running(**fault) as url:
        result = run_load(plan(url, prompts=PROMPTS[:6], warmup=0))
    failed = [r for r in result.records if not r.success]
    assert len(failed) == count, [r.error for r in result.records]
    for record in failed:
        assert expected in record.error
    if "fail_every" in fault:
        assert all(r.status == 500 for r in failed)
    if "cut_after" in fault:  # a cut connection is an exception, as in vLLM's client
        assert all(r.chunk_times and len(r.chunk_times) <= 4 for r in failed)


@pytest.mark.parametrize(
    "fault, expected, chunks",
    [
        ({"error_after": 3}, "error event in stream: injected error mid-stream", 4),  # role chunk + 3 tokens
        ({"no_done": True}, "the stream stopped without [DONE]", 9),
    ],
)
def test_streams_vllm_counts_as_completed_keep_their_stream_error(fault, expected, chunks):
    """vLLM's client reads past an {"error": ...} event and does not need [DONE]: such a
    request is completed in vLLM's keys, and counted apart in the strict ones."""
    with running(**fault) as url:
        result = run_load(plan(url, prompts=PROMPTS[:6], warmup=0))
    assert all(r.success and not r.strict_success for r in result.records), [r.error for r in result.records]
    assert all(r.stream_error == expected and len(r.chunk_times) == chunks for r in result.records)
    metrics = compute_metrics(result.records, result.duration)
    assert (metrics.completed, metrics.failed, metrics.completed_strict, metrics.stream_errors) == (6, 0, 0, 6)
    assert metrics.stream_error_reasons == {expected: 6}


def test_one_concurrency_cap_across_client_processes():
    """Three client processes keep the cap as full as one does. Every third request is
    long, and requests are dealt to processes round-robin, so one process gets every
    long one: with a cap split into a share per process (as before), the other two ran
    out of work early and the run spent most of its sending time below the cap."""
    cap = 6
    prompts = tuple(Prompt("a b", 2, 40 if i % 3 == 0 else 4) for i in range(60))
    below = {}
    with running(ttft_ms=50, itl_ms=10) as url:
        for processes in (1, 3):
            schedule = Schedule(max_concurrency=cap)
            result = run_load(plan(url, schedule, prompts, warmup=0, endpoint="completions", processes=processes))
            metrics = compute_metrics(result.records, result.duration)
            assert metrics.completed == 60 and result.processes == processes
            assert metrics.exact_peak_concurrent_requests == cap  # the cap holds over all processes
            point = to_vllm_result(metrics, result.records)  # the point's own lists
            below[processes] = below_cap_fraction(point["start_times"], point["latencies"], cap)
    assert abs(below[3] - below[1]) <= 0.02, below


@pytest.mark.parametrize("processes", [1, 2])
def test_duration_waits_for_a_request_that_fails_last(processes):
    """vLLM's duration ends when every request has ended, failed ones included: one
    request timing out after the others finished must not inflate the throughput."""
    with running(ttft_ms=10, itl_ms=1, stall_every=6, stall_ms=5000) as url:
        options = RequestOptions(model="latency-server", endpoint="completions", timeout=1.0)
        result = run_load(LoadPlan(url, options, PROMPTS[:6], warmup=0, processes=processes))
    [late] = [r for r in result.records if not r.success]
    assert late.error.startswith("timeout:") and not late.chunk_times
    assert max(r.end_time for r in result.records if r.success) - result.t0 < 0.5  # the others were done early
    assert result.duration == late.end_time - result.t0 >= 1.0
    metrics = compute_metrics(result.records, result.duration)
    assert metrics.request_throughput == 5 / result.duration < 5.0


@pytest.mark.parametrize("processes", [1, 3])
def test_the_measured_phase_begins_right_before_the_first_send(timed_server, processes):
    """before_measure (profilers, the server-metrics scraper) runs once the client processes
    are started, the bodies encoded and the connections open: their set-up is not in the phase."""
    times: dict[str, float] = {}
    prompts = tuple(Prompt("one two three", 3, 2) for _ in range(3000))  # a large plan: slow to set up
    result = run_load(
        plan(timed_server, Schedule(rate=200, seed=1), prompts, warmup=0, processes=processes, send_for=0.3),
        before_measure=lambda: times.setdefault("begin", time.perf_counter()),
        after_measure=lambda: times.setdefault("end", time.perf_counter()),
    )
    first = min(r.send_time for r in result.records if r.send_time)
    assert 0 <= first - times["begin"] < 0.15, first - times["begin"]  # 3 worker starts take longer than that
    assert times["end"] >= max(r.end_time for r in result.records if r.end_time)


def test_request_timeout_marks_requests_failed():
    with running(ttft_ms=2000) as url:
        options = RequestOptions(model="latency-server", timeout=0.3)
        result = run_load(LoadPlan(url, options, PROMPTS[:3], warmup=0))
    assert all(r.error and r.error.startswith("timeout:") for r in result.records)


def test_more_than_a_hundred_requests_are_in_flight_at_once():
    """A 150-request burst must reach the server as 150 concurrent streams (the transport's
    default pool holds 100 connections; the load generator must size it to the run)."""
    with running(ttft_ms=1500, itl_ms=1) as url:
        prompts = tuple(Prompt("a b", 2, 2) for _ in range(150))
        result = run_load(plan(url, prompts=prompts, warmup=0, endpoint="completions"))
    metrics = compute_metrics(result.records, result.duration)
    assert metrics.completed == 150
    assert metrics.exact_peak_concurrent_requests == 150
    assert max(r.ttft for r in result.records) < 2.5  # nobody waited for a connection to free up


@pytest.mark.parametrize("processes", [1, 2])
def test_an_abort_fails_in_flight_requests_and_marks_the_rest_not_sent(processes):
    """When the server dies mid-point, the run stops at once and every request is accounted for."""
    with running(ttft_ms=20, itl_ms=500) as url:  # each request streams for ~4 s, well past the abort
        calls = {"n": 0}

        def abort():
            calls["n"] += 1
            return "engine core died" if calls["n"] >= 2 else None

        prompts = tuple(Prompt("one two three four", 4, 8) for _ in range(20))
        # 10 req/s over 2 s: some are in flight, some not yet sent, when the abort comes.
        result = run_load(
            plan(url, Schedule(rate=10, burstiness=math.inf), prompts, warmup=0, processes=processes), abort=abort
        )
    assert len(result.records) == 20
    errors = [r.error or "" for r in result.records]
    assert all(not r.success for r in result.records), errors
    assert any(e.startswith("aborted: engine core died") for e in errors), errors
    if processes == 1:  # client processes are killed, so their requests all count as aborted
        assert any(e.startswith("not sent: engine core died") for e in errors), errors
    assert result.duration < 5


def _traced(trace_file):
    """The latency server's trace: request tag -> {accepted, arrived, writes}."""
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    return {line["tag"]: line for line in lines}


def _tag(record):
    return re.match(r"req-\d+", "".join(record.text_parts)).group()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_burst_leaves_request_by_request_on_open_connections(tmp_path, processes):
    """Rate inf: every request is written as soon as it is built, on a connection opened
    before the clock started, so its send stamp is when it really left.

    Before this, the requests of a burst were all built first and all written at the
    end, so the first ones' TTFT held the whole burst's build time (tens of ms)."""
    trace = tmp_path / "trace.jsonl"
    with running(ttft_ms=300, itl_ms=1, trace=str(trace)) as url:
        prompts = tuple(Prompt("a b c d", 4, 2) for _ in range(120))
        result = run_load(plan(url, prompts=prompts, warmup=0, endpoint="completions", processes=processes))
    assert all(r.success for r in result.records), [r.error for r in result.records][:3]
    served = _traced(trace)
    in_order = sorted(result.records, key=lambda r: r.send_time)
    lags = [served[_tag(r)]["arrived"] - r.send_time for r in in_order]
    spread = in_order[-1].send_time - in_order[0].send_time
    assert min(lags) > 0  # one clock: the server saw each request after the client stamped it
    # Each request reached the server right after its own stamp, not after the whole burst was
    # built. Had the burst been written at its end, the first quarter sent would have waited
    # for most of the burst's build time; here they lag as little as the rest. (The server's
    # reads lag by a few ms when two client processes share its two CPUs, so the bound is a
    # share of the burst's time, with a 5 ms floor, not a fixed figure.)
    first_quarter = statistics.median(lags[: len(lags) // 4])
    assert first_quarter < max(0.5 * spread, 0.005), (first_quarter, statistics.median(lags), spread)
    # Every connection was open before the clock started.
    assert max(served[_tag(r)]["accepted"] for r in result.records) < result.t0


def test_the_trace_holds_the_times_the_client_measured(tmp_path):
    """The latency server's trace is what the accuracy benchmark checks clients against."""
    trace = tmp_path / "trace.jsonl"
    with running(ttft_ms=30, itl_ms=5, trace=str(trace)) as url:
        result = run_load(plan(url, prompts=PROMPTS[:4], warmup=0, endpoint="completions"))
    served = _traced(trace)
    for record in result.records:
        line = served[_tag(record)]
        assert len(line["writes"]) == len(record.chunk_times) == 8
        # Each chunk arrived after the server wrote it, and soon after.
        delays = [c - w for c, w in zip(record.chunk_times, line["writes"])]
        assert all(0 < d < 0.05 for d in delays), delays
        assert line["writes"][0] - line["arrived"] == pytest.approx(0.030, abs=0.002)


def _iqr(values: list[float]) -> float:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q3 - q1


def test_jitter_spreads_the_latencies_around_the_set_mean_and_the_seed_fixes_them():
    """--jitter: each TTFT and ITL gap times exp(N(0, sigma^2) - sigma^2/2), request k's from
    the seed and k alone; --run-drift: one such factor on every latency of a server start."""
    prompts = tuple(Prompt("one two three four", 4, 8) for _ in range(60))
    ttfts, gaps = {}, {}
    for sigma in (0.0, 0.4):
        with running(ttft_ms=40, itl_ms=10, jitter=sigma, seed=7) as url:
            result = run_load(plan(url, Schedule(max_concurrency=4), prompts=prompts, warmup=0))
        assert all(r.success for r in result.records), [r.error for r in result.records]
        ttfts[sigma] = sorted(r.ttft for r in result.records)
        gaps[sigma] = [g for r in result.records for g in per_token_itl(r)]
    # The spread, as the interquartile range (robust to the client's own odd late wake-up);
    # without jitter it is the client's timing alone: under a millisecond on an idle machine.
    assert _iqr(ttfts[0.4]) > max(0.010, 2.5 * _iqr(ttfts[0.0]))  # 40 ms x (e^0.27 - e^-0.27) x e^-0.08 = 20 ms
    assert 0.012 < statistics.stdev(ttfts[0.4]) < 0.025  # 40 ms x sqrt(exp(0.16) - 1) = 16.7 ms
    assert _iqr(gaps[0.4]) > 0.0036  # 10 ms: 5 ms (a busy client reading late only widens it)
    # The means stay the set ones (a gap's mean is each request's decode time over its gaps).
    assert statistics.mean(ttfts[0.4]) == pytest.approx(0.040, rel=0.15)
    assert statistics.mean(gaps[0.4]) == pytest.approx(0.010, rel=0.1)
    # The seed fixes every request's latencies: the measured TTFTs are the planned ones.
    server = LatencyServer(Timing(ttft=0.040, itl=0.010, jitter=0.4, seed=7))
    planned = sorted(server.noise(k)(0.040) for k in range(1, 61))
    lags = [m - p for m, p in zip(ttfts[0.4], planned)]
    assert min(lags) >= 0 and statistics.median(lags) < 0.005 and max(lags) < 0.05, lags
    assert server.noise(3)(1.0) == LatencyServer(Timing(jitter=0.4, seed=7)).noise(3)(1.0)
    assert server.noise(3)(1.0) != LatencyServer(Timing(jitter=0.4, seed=8)).noise(3)(1.0)
    draws = [lognormal_factor(random.Random(f"0:{k}"), 0.5) for k in range(20_000)]
    assert statistics.mean(draws) == pytest.approx(1.0, abs=0.02)  # 5 standard errors
    assert statistics.median(draws) == pytest.approx(math.exp(-0.125), abs=0.02)
    drifting = LatencyServer(Timing(jitter=0.0, run_drift=0.1, seed=1))
    assert drifting.drift == drift_factor(Timing(run_drift=0.1, seed=1)) != 1.0
    assert drifting.noise(1)(1.0) == drifting.noise(2)(1.0) == drifting.drift  # one factor for all
