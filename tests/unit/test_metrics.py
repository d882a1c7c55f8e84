"""Metrics on small hand-computed records, and a differential test against vLLM's own code.

Times are multiples of 1/8 s so most of the arithmetic is exact in binary floating
point; the comments show it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import types

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_serve.bench.metrics import (
    DEFAULT_PERCENTILES,
    DETAILED_KEYS,
    GOODPUT_METRICS,
    METRIC_DIRECTIONS,
    SERIES,
    AllRequestsFailedError,
    Direction,
    compute_metrics,
    compute_stats,
    exact_peak_concurrency,
    format_goodput,
    is_measured_success,
    metric_direction,
    metric_values,
    output_len,
    parse_goodput,
    per_token_itl,
    percentile_label,
    series_samples,
    to_vllm_result,
)
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.errors import ConfigError


def rec(
    index: int,
    *,
    scheduled: float,
    dispatch: float,
    send: float,
    chunks: list[float] = (),
    tokens: list[int] | None = None,
    completion: int | None = None,
    prompt_tokens: int | None = None,
    prompt_len: int = 100,
    error: str | None = None,
    stream_error: str | None = None,
    text: list[str] = (),
    warmup: bool = False,
) -> RequestRecord:
    chunks = list(chunks)
    return RequestRecord(
        index=index,
        scheduled_time=scheduled,
        dispatch_time=dispatch,
        send_time=send,
        prompt_len=prompt_len,
        chunk_times=chunks,
        chunk_tokens=list(tokens) if tokens is not None else [1] * len(chunks),
        completion_tokens=completion,
        prompt_tokens=prompt_tokens,
        status=200 if error is None else 500,
        error=error,
        stream_error=stream_error,
        text_parts=list(text),
        warmup=warmup,
    )


# Three successful requests, three failed ones, one warmup.
#
#        scheduled dispatch send   chunks (tokens)                        usage
#   A    9.75      9.875    10.0   10.5(1) 10.75(1) 11.0(1) 11.25(1)      prompt 8, completion 4
#   B    10.0      10.25    10.25  11.25(1) 12.25(3)                      prompt -, completion -
#   C    10.25     10.25    10.5   10.75(0: chat role chunk) 11.0(1)      prompt 4, completion 1
#   D    10.5      10.75    10.75  -                                      HTTP 500: boom
#   E    10.75     11.0     11.0   -                                      HTTP 500: boom
#   F    11.0      11.5     11.5   11.75(1), then the connection broke (an exception)
#   W    warmup, at other times entirely
#
# Per request (success only):        A        B          C
#   TTFT  = first chunk - send       0.5      1.0        0.25
#   E2EL  = last chunk - send        1.25     2.0        0.5
#   ITL   = chunk gaps               .25 x3   1.0        0.25 (role chunk -> token chunk)
#   out   = usage or sum(tokens)     4        1+3 = 4    1
#   in    = usage or prompt_len      8        100        4
#   TPOT  = (E2EL-TTFT)/(out-1)      .75/3=.25  1/3      - (out = 1; 0 for goodput)
#   queue = send - dispatch          0.125    0          0.25
def records() -> list[RequestRecord]:
    return [
        rec(
            0,
            scheduled=9.75,
            dispatch=9.875,
            send=10.0,
            chunks=[10.5, 10.75, 11.0, 11.25],
            completion=4,
            prompt_tokens=8,
        ),
        rec(1, scheduled=10.0, dispatch=10.25, send=10.25, chunks=[11.25, 12.25], tokens=[1, 3], prompt_len=100),
        rec(
            2,
            scheduled=10.25,
            dispatch=10.25,
            send=10.5,
            chunks=[10.75, 11.0],
            tokens=[0, 1],
            completion=1,
            prompt_tokens=4,
        ),
        rec(3, scheduled=10.5, dispatch=10.75, send=10.75, error="HTTP 500: boom"),
        rec(4, scheduled=10.75, dispatch=11.0, send=11.0, error="HTTP 500: boom"),
        rec(
            5,
            scheduled=11.0,
            dispatch=11.5,
            send=11.5,
            chunks=[11.75],
            error="ClientPayloadError: Response payload is not completed",
        ),
        rec(99, scheduled=0.0, dispatch=3.0, send=3.0, chunks=[3.5, 9.0], completion=2, prompt_tokens=7, warmup=True),
    ]


DURATION = 4.0


@pytest.fixture
def m():
    return compute_metrics(
        records(), DURATION, goodput_slos={"ttft": 600, "tpot": 300, "e2el": 1500}, target_request_rate=4.0
    )


# --------------------------------------------------------------------------- statistics


def test_stats_mean_median_population_std_linear_percentiles():
    s = compute_stats([4.0, 1.0, 3.0, 2.0], percentiles=(0, 50, 90, 99.9, 100))
    assert s.count == 4
    assert s.mean == 2.5  # 10 / 4
    assert s.median == 2.5  # (2 + 3) / 2
    # population: sqrt(((1.5)^2 + (0.5)^2 + (0.5)^2 + (1.5)^2) / 4) = sqrt(5 / 4)
    assert s.std == pytest.approx(math.sqrt(1.25))
    # linear interpolation on sorted [1, 2, 3, 4]: rank = p / 100 * (n - 1)
    assert s.percentiles[0] == 1.0
    assert s.percentiles[50] == 2.5  # rank 1.5
    assert s.percentiles[90] == pytest.approx(3.7)  # rank 2.7 -> 3 + 0.7 * (4 - 3)
    assert s.percentiles[99.9] == pytest.approx(3.997)  # rank 2.997
    assert s.percentiles[100] == 4.0


def test_stats_default_percentiles_and_bad_input():
    assert tuple(compute_stats([1.0]).percentiles) == DEFAULT_PERCENTILES == (50, 90, 95, 99)
    with pytest.raises(ValueError):
        compute_stats([])
    with pytest.raises(ConfigError, match="outside 0..100"):
        compute_stats([1.0], percentiles=(101,))


@pytest.mark.parametrize(
    ("p", "label"), [(99, "99"), (99.0, "99"), (99.9, "99.9"), (0.5, "0.5"), (100, "100"), (50.0, "50")]
)
def test_percentile_label_is_vllms(p, label):
    # vLLM: str(int(p)) if int(p) == p else str(p)
    assert percentile_label(p) == label


# --------------------------------------------------------------------------- counts and throughput


def test_counts_and_failure_reasons(m):
    assert m.completed == 3
    assert m.failed == 3  # D, E and F (F streamed a chunk, then broke)
    assert m.failure_reasons == {"HTTP 500: boom": 2, "ClientPayloadError: Response payload is not completed": 1}
    assert m.warmup_excluded == 1
    assert (m.completed_strict, m.stream_errors, m.stream_error_reasons) == (3, 0, {})


def test_a_stream_error_is_completed_as_in_vllm_and_counted_beside():
    """vLLM counts a stream with an {"error": ...} event (or no [DONE]) as completed,
    with all its latencies; the strict counts are beside vLLM's, which do not move."""
    base = records()
    flagged = records()
    flagged[1].stream_error = "error event in stream: boom"
    clean, marked = compute_metrics(base, DURATION), compute_metrics(flagged, DURATION)
    assert marked.completed == 3 and marked.completed_strict == 2 and marked.stream_errors == 1
    assert marked.stream_error_reasons == {"error event in stream: boom": 1}
    assert marked == dataclasses.replace(
        clean, completed_strict=2, stream_errors=1, stream_error_reasons={"error event in stream: boom": 1}
    )
    result = to_vllm_result(marked, flagged)
    assert result["errors"][1] == ""  # vLLM's key: a success
    assert (result["completed_strict"], result["stream_errors"]) == (2, 1)
    assert result["stream_error_per_request"] == ["", "error event in stream: boom", "", "", "", ""]
    assert (
        metric_values(marked)["stream_errors"] == 1 and metric_direction("stream_errors") is Direction.LOWER_IS_BETTER
    )


def test_output_tokens_without_usage_are_counted_from_the_text_when_a_tokenizer_is_given():
    """vLLM tokenizes the generated text when usage is missing or 0. Chunks of several
    tokens without token_ids count one each, so the chunk count would fall short."""
    r = rec(0, scheduled=0, dispatch=0, send=0.0, chunks=[0.5, 1.0, 1.5], tokens=[1, 1, 1],
            text=["one two ", "three four ", "five six"])  # fmt: skip
    zero = dataclasses.replace(r, index=1, completion_tokens=0)
    words = lambda text: len(text.split())  # noqa: E731
    assert compute_metrics([r], 2.0).total_output_tokens == 3  # no tokenizer: the chunk tokens
    m = compute_metrics([r, zero], 2.0, count_tokens=words)
    assert m.total_output_tokens == 12  # 6 words each
    assert m.tpot.mean == 0.2  # (1.5 - 0.5) / (6 - 1)
    assert to_vllm_result(m, [r, zero], count_tokens=words)["output_lens"] == [6, 6]
    usage = dataclasses.replace(r, completion_tokens=4)
    assert compute_metrics([usage], 2.0, count_tokens=words).total_output_tokens == 4  # usage wins


def test_a_tokenizer_that_cannot_answer_leaves_the_chunk_tokens():
    """A counter that gives None (the server's /tokenize after the server died) falls
    back to the chunk tokens, as without a tokenizer."""
    r = rec(0, scheduled=0, dispatch=0, send=0.0, chunks=[0.5, 1.0, 1.5], tokens=[1, 2, 1],
            text=["one two ", "three four ", "five six"])  # fmt: skip
    r = dataclasses.replace(r, completion_tokens=None)
    assert output_len(r, lambda text: None) == 4
    assert compute_metrics([r], 2.0, count_tokens=lambda text: None).total_output_tokens == 4


def test_the_runner_counts_chunks_once_the_servers_tokenizer_is_gone():
    """A point whose server died must still compute and save its metrics: the runner's
    counter answers None (and says so once) when /tokenize stops answering."""
    from pytest_vllm_serve.bench.point.runner import VllmBench

    alive = [True]

    def tokenize(request: httpx.Request) -> httpx.Response:
        if not alive[0]:
            raise httpx.ConnectError("Connection refused", request=request)
        return httpx.Response(200, json={"tokens": [1] * len(json.loads(request.content)["prompt"].split())})

    lines: list[str] = []
    with httpx.Client(base_url="http://server", transport=httpx.MockTransport(tokenize)) as client:
        server = types.SimpleNamespace(client=client, model="m")
        bench = VllmBench(server, types.SimpleNamespace(tokenizer=None), None, "t", progress_writer=lines.append)
        assert bench.count_tokens("one two") == 2
        alive[0] = False  # the server died
        assert bench.count_tokens("one two") is None
        assert bench.count_tokens("three") is None
    assert len(lines) == 1 and "/tokenize failed (ConnectError" in lines[0] and "streamed chunks" in lines[0]


def test_series_samples_are_what_the_metrics_summarize():
    words = lambda text: len(text.split())  # noqa: E731
    rs = records() + [
        rec(7, scheduled=12.0, dispatch=12.0, send=12.0, chunks=[12.5, 13.0, 14.0], text=["a b", "c d e", "f"]),
        rec(8, scheduled=12.0, dispatch=12.0, send=12.0, chunks=[12.25, 13.25], completion=0, text=["a", "b c d"]),
    ]
    m = compute_metrics(rs, DURATION, count_tokens=words)
    for series in ("ttft", "tpot", "itl", "e2el", "per_token_itl"):
        assert compute_stats(series_samples(rs, series, words), m.percentiles) == getattr(m, series), series
    with pytest.raises(ValueError, match="use ttft, tpot"):
        series_samples(rs, "send_lag")


def test_a_failed_requests_text_is_empty_as_in_vllm():
    rs = [
        rec(0, scheduled=0, dispatch=0, send=0.0, chunks=[0.5], text=["kept"]),
        rec(1, scheduled=0, dispatch=0, send=0.0, chunks=[0.5], text=["lost"], error="ClientPayloadError: cut"),
    ]
    result = to_vllm_result(compute_metrics(rs, 1.0), rs)
    assert result["generated_texts"] == ["kept", ""]
    assert result["errors"] == ["", "ClientPayloadError: cut"]


def test_token_totals_and_throughputs(m):
    assert m.total_input_tokens == 112  # 8 (usage) + 100 (no usage: workload length) + 4
    assert m.total_output_tokens == 9  # 4 (usage) + 1+3 (chunk tokens, no usage) + 1
    assert m.request_throughput == 0.75  # 3 completed / 4 s
    assert m.output_throughput == 2.25  # 9 / 4
    assert m.total_token_throughput == 30.25  # (112 + 9) / 4


def test_goodput_counts_requests_within_every_slo(m):
    # SLOs ttft 600 ms, tpot 300 ms, e2el 1500 ms:
    #   A: .5 <= .6, .25 <= .3, 1.25 <= 1.5 -> good
    #   B: ttft 1.0 > .6                    -> not good
    #   C: .25, tpot 0 (one token), .5      -> good
    assert m.request_goodput == 0.5  # 2 good / 4 s
    assert m.goodput_slos == {"ttft": 600.0, "tpot": 300.0, "e2el": 1500.0}


def test_goodput_uses_tpot_zero_for_single_token_requests():
    # tpot <= 0 ms: only C (one output token, so tpot counts as 0) -> 1 / 4 s
    assert compute_metrics(records(), DURATION, goodput_slos={"tpot": 0}).request_goodput == 0.25
    # tpot <= 300 ms: A (.25) and C (0); B's 1/3 s is over -> 2 / 4 s
    assert compute_metrics(records(), DURATION, goodput_slos={"tpot": 300}).request_goodput == 0.5


def test_goodput_absent_without_slos():
    assert compute_metrics(records(), DURATION).request_goodput is None
    assert compute_metrics(records(), DURATION, goodput_slos={}).request_goodput is None
    with pytest.raises(ConfigError, match="unknown goodput SLO 'itl'"):
        compute_metrics(records(), DURATION, goodput_slos={"itl": 5})


# --------------------------------------------------------------------------- latencies


def test_ttft(m):
    # [0.5, 1.0, 0.25]: mean 1.75 / 3; median 0.5; sorted [.25, .5, 1.0]
    assert m.ttft.count == 3
    assert m.ttft.mean == pytest.approx(1.75 / 3)
    assert m.ttft.median == 0.5
    # deviations from 7/12: -1/12, 5/12, -4/12 -> variance (1 + 25 + 16) / 144 / 3 = 14 / 144
    assert m.ttft.std == pytest.approx(math.sqrt(14) / 12)
    assert m.ttft.percentiles[90] == pytest.approx(0.9)  # rank 1.8 -> .5 + .8 * .5
    assert m.ttft.percentiles[99] == pytest.approx(0.99)  # rank 1.98 -> .5 + .98 * .5


def test_tpot_only_for_more_than_one_output_token(m):
    # A: (1.25 - 0.5) / (4 - 1) = 0.25;  B: (2.0 - 1.0) / (4 - 1) = 1/3;  C has one token: left out
    assert m.tpot.count == 2
    assert m.tpot.mean == pytest.approx((0.25 + 1 / 3) / 2)
    assert m.tpot.median == pytest.approx((0.25 + 1 / 3) / 2)
    assert m.tpot.std == pytest.approx((1 / 3 - 0.25) / 2)


def test_itl_is_every_chunk_gap_of_successful_requests(m):
    # A: .25 .25 .25; B: 1.0; C: .25 (the role chunk is a chunk for vLLM); F failed: none
    assert m.itl.count == 5
    assert m.itl.mean == pytest.approx(0.4)  # 2.0 / 5
    assert m.itl.median == 0.25
    assert m.itl.percentiles[90] == pytest.approx(0.7)  # sorted [.25 x4, 1], rank 3.6 -> .25 + .6 * .75


def test_e2el(m):
    # [1.25, 2.0, 0.5]
    assert m.e2el.mean == 1.25  # 3.75 / 3
    assert m.e2el.median == 1.25
    assert m.e2el.percentiles[50] == 1.25


def test_per_token_itl_divides_each_gap_by_the_chunks_tokens(m):
    # A: three 1-token gaps of .25; B: one gap of 1.0 carrying 3 tokens -> 3 x 1/3;
    # C: the role chunk carries no token, so C's only token chunk has no gap before it.
    assert per_token_itl(records()[0]) == [0.25, 0.25, 0.25]
    assert per_token_itl(records()[1]) == pytest.approx([1 / 3] * 3)
    assert per_token_itl(records()[2]) == []
    assert m.per_token_itl.count == 6
    assert m.per_token_itl.mean == pytest.approx((0.75 + 1.0) / 6)  # (decode time) / (decode tokens)
    assert m.per_token_itl.median == pytest.approx((0.25 + 1 / 3) / 2)


def test_per_token_itl_zero_token_chunk_does_not_split_a_gap():
    r = rec(0, scheduled=0, dispatch=0, send=0, chunks=[1.0, 1.5, 2.0, 3.0], tokens=[1, 0, 2, 0])
    # token chunks at 1.0 (1) and 2.0 (2): one gap of 1.0 over 2 tokens -> [.5, .5]
    assert per_token_itl(r) == [0.5, 0.5]
    bad = rec(0, scheduled=0, dispatch=0, send=0, chunks=[1.0, 2.0], tokens=[1])
    with pytest.raises(ValueError, match="2 chunk times but 1 chunk token counts"):
        per_token_itl(bad)


def test_multi_token_chunks_do_not_change_vllms_itl_but_do_change_per_token_itl():
    # One request streaming 8 tokens in 2 chunks of 4, 0.4 s apart (speculative decoding).
    r = rec(0, scheduled=0, dispatch=0, send=0, chunks=[0.5, 0.9], tokens=[4, 4], completion=8)
    m = compute_metrics([r], 1.0)
    assert m.itl.mean == pytest.approx(0.4)  # vLLM: the chunk gap
    assert m.per_token_itl.mean == pytest.approx(0.1)  # 0.4 / 4 tokens
    assert m.tpot.mean == pytest.approx(0.4 / 7)  # vLLM: (0.9 - 0.5) / (8 - 1)


def test_client_queue_time_and_e2el_including_it(m):
    # queue = send - dispatch over successful requests: [.125, 0, .25]
    assert m.client_queue_time.mean == 0.125
    # E2EL + queue: [1.375, 2.0, 0.75]
    assert m.e2el_including_client_queue.mean == 1.375  # 4.125 / 3


# --------------------------------------------------------------------------- send side


def test_send_lag_over_every_measured_request(m):
    # dispatch - scheduled: A .125, B .25, C 0, D .25, E .25, F .5 (failed requests were sent too)
    assert m.send_lag.count == 6
    assert m.send_lag.mean == pytest.approx(1.375 / 6)
    assert m.send_lag.median == 0.25  # sorted [0, .125, .25, .25, .25, .5]


def test_scheduled_and_achieved_request_rates(m):
    # 6 requests = 5 gaps. Scheduled 9.75 .. 11.0: 5 / 1.25 = 4.0. Sent 10.0 .. 11.5: 5 / 1.5
    assert m.target_request_rate == 4.0
    assert m.scheduled_request_rate == 4.0
    assert m.achieved_request_rate == pytest.approx(10 / 3)


def test_rates_need_two_requests():
    r = rec(0, scheduled=0, dispatch=0, send=0, chunks=[1.0])
    m = compute_metrics([r], 1.0)
    assert m.scheduled_request_rate is None and m.achieved_request_rate is None
    # rate inf: every request due at one instant
    same = [rec(i, scheduled=0, dispatch=0, send=0.5 * i, chunks=[1.0 + i]) for i in range(3)]
    m = compute_metrics(same, 4.0)
    assert m.scheduled_request_rate == math.inf
    assert m.achieved_request_rate == 2.0  # 2 gaps / 1.0 s
    assert "scheduled_request_rate" not in metric_values(m)


# --------------------------------------------------------------------------- peaks


def test_vllm_peaks_use_one_second_buckets(m):
    # Buckets from the first send (10.0); one token per chunk, as vLLM counts:
    #   A 10.5 10.75 -> b0, 11.0 11.25 -> b1;  B 11.25 -> b1, 12.25 -> b2;  C 10.75 -> b0, 11.0 -> b1
    #   b0 = 3, b1 = 4, b2 = 1
    assert m.max_output_tokens_per_s == 4.0
    # active from the send's bucket to the last chunk's: A b0-b1, B b0-b2, C b0-b1 -> b0 = 3
    assert m.max_concurrent_requests == 3
    # exactly: at 10.5, A [10, 11.25), B [10.25, 12.25) and C [10.5, 11) are all open
    assert m.exact_peak_concurrent_requests == 3


def test_exact_peak_differs_from_vllms_buckets_for_short_sequential_requests():
    # Two requests one after the other inside one second: never concurrent, yet vLLM
    # counts both in bucket 0.
    rs = [
        rec(0, scheduled=0, dispatch=0, send=0.0, chunks=[0.125, 0.25]),
        rec(1, scheduled=0.5, dispatch=0.5, send=0.5, chunks=[0.625, 0.75]),
    ]
    m = compute_metrics(rs, 1.0)
    assert m.max_concurrent_requests == 2
    assert m.exact_peak_concurrent_requests == 1


def test_exact_peak_concurrency_sweep_line():
    assert exact_peak_concurrency([]) == 0
    assert exact_peak_concurrency([(0, 2), (1, 3), (1.5, 1.75)]) == 3
    assert exact_peak_concurrency([(0, 1), (1, 2), (2, 3)]) == 1  # end == next start: not overlapping
    assert exact_peak_concurrency([(0, 10), (1, 2), (3, 4), (5, 6)]) == 2


# --------------------------------------------------------------------------- exclusions and failures


def test_warmup_records_are_excluded_from_everything():
    measured = [r for r in records() if not r.warmup]
    with_warmup = compute_metrics(records(), DURATION)
    without = compute_metrics(measured, DURATION)
    assert with_warmup == dataclasses.replace(without, warmup_excluded=1)


def test_failed_requests_are_excluded_from_latencies_even_with_chunks(m):
    # F streamed a chunk, then failed: it adds no TTFT, E2EL, TPOT or peak, only a send lag
    assert (m.ttft.count, m.e2el.count, m.tpot.count, m.itl.count) == (3, 3, 2, 5)
    assert m.send_lag.count == 6


def test_success_without_a_chunk_counts_as_failed():
    empty = rec(0, scheduled=0, dispatch=0, send=0)  # error None, but nothing streamed
    ok = rec(1, scheduled=0, dispatch=0, send=0, chunks=[1.0])
    m = compute_metrics([empty, ok], 1.0)
    assert (m.completed, m.failed) == (1, 1)
    assert m.failure_reasons == {"no chunk with a choice arrived": 1}


def test_failure_reason_groups_by_first_line_or_traceback_last_line():
    tb = "Traceback (most recent call last):\n  File x\nConnectionResetError: reset by peer\n"
    rs = [
        rec(0, scheduled=0, dispatch=0, send=0, error=tb),
        rec(1, scheduled=0, dispatch=0, send=0, error="HTTP 400: too long\nmore detail"),
        rec(2, scheduled=0, dispatch=0, send=0, error=""),
        rec(3, scheduled=0, dispatch=0, send=0, chunks=[1.0]),
    ]
    m = compute_metrics(rs, 1.0)
    assert m.failure_reasons == {
        "ConnectionResetError: reset by peer": 1,
        "HTTP 400: too long": 1,
        "unknown error (empty message)": 1,
    }


def test_all_failed_raises_instead_of_reporting_zeros():
    rs = [rec(i, scheduled=0, dispatch=0, send=0, error="HTTP 404: model not found") for i in range(5)]
    rs.append(rec(9, scheduled=0, dispatch=0, send=0, chunks=[1.0], warmup=True))  # a warmup success does not count
    with pytest.raises(AllRequestsFailedError) as info:
        compute_metrics(rs, 10.0)
    text = str(info.value)
    assert "all 5 measured requests failed" in text
    assert "5 x HTTP 404: model not found" in text
    assert "fix:" in text
    assert info.value.failure_reasons == {"HTTP 404: model not found": 5}


def test_no_measured_request_raises():
    with pytest.raises(AllRequestsFailedError, match="no measured request"):
        compute_metrics([rec(0, scheduled=0, dispatch=0, send=0, chunks=[1.0], warmup=True)], 1.0)
    with pytest.raises(AllRequestsFailedError):
        compute_metrics([], 1.0)


@pytest.mark.parametrize("duration", [0, -1.0, math.inf, math.nan, "x"])
def test_bad_duration(duration):
    with pytest.raises(ValueError, match="duration must be a positive number"):
        compute_metrics(records(), duration)


def test_single_token_outputs_have_no_tpot_or_itl():
    rs = [rec(i, scheduled=0, dispatch=0, send=0, chunks=[0.5], completion=1) for i in range(2)]
    m = compute_metrics(rs, 1.0)
    assert m.tpot is None and m.itl is None and m.per_token_itl is None
    values = metric_values(m)
    assert "mean_tpot_ms" not in values and "mean_itl_ms" not in values and "mean_ttft_ms" in values
    result = to_vllm_result(m, rs)
    assert result["mean_tpot_ms"] == 0.0 and result["p99_itl_ms"] == 0.0  # what vLLM writes
    assert result["mean_per_token_itl_ms"] is None  # ours: not measured


# --------------------------------------------------------------------------- names and the result file


def test_metric_values_names_and_ms(m):
    v = metric_values(m)
    assert v["mean_ttft_ms"] == pytest.approx(1750 / 3)
    assert v["p90_ttft_ms"] == pytest.approx(900)
    assert v["median_e2el_ms"] == 1250
    assert v["mean_per_token_itl_ms"] == pytest.approx(1750 / 6)
    assert v["median_send_lag_ms"] == 250
    assert v["output_throughput"] == 2.25
    assert v["request_goodput"] == 0.5
    assert v["completed"] == 3 and v["failed"] == 3
    assert v["max_concurrent_requests"] == 3 and v["exact_peak_concurrent_requests"] == 3
    assert v["achieved_request_rate"] == pytest.approx(10 / 3)
    assert "target_request_rate" not in v  # an input, not a measurement
    for name in v:
        assert metric_direction(name) is not None, name
    expected = {f"{s}_{series}_ms" for series in SERIES for s in ("mean", "median", "std", "p50", "p90", "p95", "p99")}
    assert expected <= set(v)


def test_directions():
    assert METRIC_DIRECTIONS["p99_ttft_ms"] is Direction.LOWER_IS_BETTER
    assert METRIC_DIRECTIONS["output_throughput"] is Direction.HIGHER_IS_BETTER
    assert METRIC_DIRECTIONS["request_goodput"] is Direction.HIGHER_IS_BETTER
    assert METRIC_DIRECTIONS["failed"] is Direction.LOWER_IS_BETTER
    assert METRIC_DIRECTIONS["total_output_tokens"] is Direction.NEITHER
    assert metric_direction("p99.9_ttft_ms") is Direction.LOWER_IS_BETTER
    assert metric_direction("p0.5_per_token_itl_ms") is Direction.LOWER_IS_BETTER
    for bad in ("p99.0_ttft_ms", "p101_ttft_ms", "p99_ttft", "ttft", "p99_foo_ms", "mean_ttft_s", "p99_ttft_ms\n"):
        assert metric_direction(bad) is None, bad


def test_percentile_naming_with_p99_9():
    m = compute_metrics(records(), DURATION, percentiles=(50, 99.9))
    v = metric_values(m)
    assert "p99.9_ttft_ms" in v and "p50_ttft_ms" in v
    assert "p99_ttft_ms" not in v and "p99.0_ttft_ms" not in v
    # ttft sorted [.25, .5, 1.0]: rank .999 * 2 = 1.998 -> .5 + .998 * .5 = .999 s
    assert v["p99.9_ttft_ms"] == pytest.approx(999)
    assert to_vllm_result(m, records())["p99.9_ttft_ms"] == v["p99.9_ttft_ms"]


# The keys vllm bench serve's benchmark() writes for a generation run, in its order,
# with percentiles 50/90/95/99 and
# --percentile-metrics ttft,tpot,itl,e2el,client_queue_time,e2el_including_client_queue.
VLLM_KEYS = [
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
    "input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "queue_times",
    "generated_texts", "errors", "max_output_tokens_per_s", "max_concurrent_requests", "rtfx",
] + [
    f"{s}_{series}_ms"
    for series in ("ttft", "tpot", "itl", "e2el", "client_queue_time", "e2el_including_client_queue")
    for s in ("mean", "median", "std", "p50", "p90", "p95", "p99")
]  # fmt: skip


def test_vllm_result_keys_and_values(m):
    result = to_vllm_result(m, records())
    keys = list(result)
    assert keys[: len(VLLM_KEYS)] == VLLM_KEYS
    extras = keys[len(VLLM_KEYS) :]
    assert "mean_per_token_itl_ms" in extras and "p99_send_lag_ms" in extras
    ours = {"achieved_request_rate", "scheduled_request_rate", "target_request_rate", "exact_peak_concurrent_requests"}
    assert ours <= set(extras)
    assert not set(extras) & set(VLLM_KEYS)
    json.dumps(result, allow_nan=False)  # plain JSON
    # per request, in workload order, the warmup left out; failed ones as vLLM leaves them
    assert result["input_lens"] == [8, 100, 4, 100, 100, 100]
    assert result["output_lens"] == [4, 4, 1, 0, 0, 0]
    assert result["ttfts"] == [0.5, 1.0, 0.25, 0.0, 0.0, 0.25]
    assert result["latencies"] == [1.25, 2.0, 0.5, 0.0, 0.0, 0.0]
    assert result["itls"] == [[0.25, 0.25, 0.25], [1.0], [0.25], [], [], []]
    assert result["start_times"] == [10.0, 10.25, 10.5, 10.75, 11.0, 11.5]
    assert result["queue_times"] == [0.125, 0.0, 0.25, 0.0, 0.0, 0.0]
    assert result["errors"] == [
        "",
        "",
        "",
        "HTTP 500: boom",
        "HTTP 500: boom",
        "ClientPayloadError: Response payload is not completed",
    ]
    assert result["scheduled_times"] == [9.75, 10.0, 10.25, 10.5, 10.75, 11.0]
    assert result["request_goodput"] == 0.5
    assert result["failure_reasons"] == m.failure_reasons
    # every value metric_values gives is in the file under the same name, so a saved
    # file can serve as the baseline of the gate
    for name, value in metric_values(m).items():
        assert result[name] == value, name


def test_vllm_result_without_details_drops_what_vllm_drops(m):
    result = to_vllm_result(m, records(), detailed=False)
    for key in DETAILED_KEYS:
        assert key not in result
    assert "latencies" in result and "queue_times" in result  # vLLM keeps these
    assert to_vllm_result(compute_metrics(records(), DURATION), records())["request_goodput"] is None


# --------------------------------------------------------------------------- goodput spec


def test_parse_goodput():
    assert parse_goodput("ttft:500,tpot:50,e2el:2000") == {"ttft": 500.0, "tpot": 50.0, "e2el": 2000.0}
    assert parse_goodput(" tpot : 12.5 ") == {"tpot": 12.5}
    assert parse_goodput("e2el:0") == {"e2el": 0.0}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("ttft", "is not KEY:MS"),
        ("ttft:", "is not KEY:MS"),
        ("itl:50", "unknown goodput metric 'itl'"),
        ("TTFT:50", "unknown goodput metric 'TTFT'"),
        ("ttft:-1", "not a non-negative number"),
        ("ttft:abc", "not a non-negative number"),
        ("ttft:inf", "not a non-negative number"),
        ("ttft:nan", "not a non-negative number"),
        ("ttft:500,ttft:400", "given twice"),
        ("ttft:500,", "is not KEY:MS"),
    ],
)
def test_parse_goodput_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_goodput(spec)
    assert "fix:" in str(info.value)


GOODPUT_ATOMS = ["ttft", "tpot", "e2el", "itl", ":", ",", " ", "-", "1", "0.5", "e3", "nan", "%"]


@given(st.one_of(st.text(), st.lists(st.sampled_from(GOODPUT_ATOMS)).map("".join)))
def test_parse_goodput_garbage_raises_only_config_error(spec):
    try:
        slos = parse_goodput(spec)
    except ConfigError:
        return
    assert set(slos) <= set(GOODPUT_METRICS)
    assert all(math.isfinite(v) and v >= 0 for v in slos.values())


@given(st.dictionaries(st.sampled_from(GOODPUT_METRICS), st.floats(min_value=0, allow_infinity=False), min_size=1))
def test_goodput_round_trips(slos):
    assert parse_goodput(format_goodput(slos)) == slos


# --------------------------------------------------------------------------- vLLM's own code


WORDS = ("alpha", "beta", "gamma", "delta")


def _synthetic_records(rng: random.Random, n: int = 60) -> list[RequestRecord]:
    """Random arrivals, chunk gaps and multi-token chunks; HTTP failures, failures by an
    exception after some chunks, streams with an error event, answers without usage
    (or with 0 completion tokens), one-token answers and chat role chunks."""
    out: list[RequestRecord] = []
    t = 100.0
    for i in range(n):
        t += rng.expovariate(8.0)
        dispatch = t + rng.uniform(0, 0.002)
        send = dispatch + rng.choice([0.0, rng.uniform(0, 0.3)])
        kind = (0.0, 0.1, 0.15)[i] if i < 3 else rng.random()  # one of each failure kind at least
        if kind < 0.08:
            out.append(rec(i, scheduled=t, dispatch=dispatch, send=send, error="HTTP 503: overloaded", prompt_len=50))
            continue
        chunk_count = 1 if rng.random() < 0.15 else rng.randint(2, 30)
        now = send + rng.uniform(0.05, 1.5)
        chunks, tokens, text = [], [], []
        for c in range(chunk_count):
            chunks.append(now)
            k = 0 if c == 0 and rng.random() < 0.3 else rng.choice([1, 1, 1, 2, 4])  # 0: a chat role chunk
            k = 2 if i == 3 else k
            tokens.append(k)
            text.append(" ".join(rng.choice(WORDS) for _ in range(k)) + (" " if k else ""))
            now += rng.uniform(0.005, 0.2)
        usage = 0.0 if i == 3 else rng.random()  # an answer without usage at least
        if i == 3 or rng.random() < 0.5:  # without token_ids the client counts 1 per chunk with text
            tokens = [1 if k else 0 for k in tokens]
        completion = None if usage < 0.15 else 0 if usage < 0.2 else sum(tokens)
        record = rec(
            i,
            scheduled=t,
            dispatch=dispatch,
            send=send,
            chunks=chunks,
            tokens=tokens,
            text=text,
            completion=completion,
            prompt_tokens=None if usage < 0.15 else rng.randint(10, 500),
        )
        if 0.08 <= kind < 0.14:
            record.error = "ClientPayloadError: Response payload is not completed"  # cut after some chunks
        elif 0.14 <= kind < 0.2:
            record.stream_error = "error event in stream: boom"  # then [DONE]: vLLM counts it completed
        out.append(record)
    return out


def count_words(text: str) -> int:
    return len(text.split())


class WordTokenizer:
    """The tokenizer interface vLLM's calculate_metrics calls, counting words."""

    def __call__(self, text: str, add_special_tokens: bool = True):
        assert add_special_tokens is False  # vLLM counts the output without special tokens
        return types.SimpleNamespace(input_ids=text.split())


def as_vllm_output(r: RequestRecord, output_cls):
    """What vLLM's request function stores for the stream behind ``r``
    (vllm/benchmarks/lib/endpoint_request_func.py): ``success`` once a chunk with a
    choice arrived and no exception or non-200 answer came (it reads past an error
    event and needs no [DONE]); TTFT and ITL as far as the chunks came; latency, text
    and output tokens only on success; the prompt length from usage when sent."""
    ok = r.error is None and bool(r.chunk_times)
    return output_cls(
        success=ok,
        latency=r.chunk_times[-1] - r.send_time if ok else 0.0,
        output_tokens=r.completion_tokens if r.completion_tokens is not None else 0,
        ttft=r.chunk_times[0] - r.send_time if r.chunk_times else 0.0,
        itl=r.itl,
        prompt_len=r.prompt_tokens if r.prompt_tokens is not None else r.prompt_len,
        generated_text=r.generated_text if ok else "",
        error="" if ok else r.error,
        start_time=r.send_time,
        client_queue_time=r.queue_time,
    )


def vllm_per_request_lists(outputs, output_lens) -> dict:
    """The per-request lists of vLLM's result file, as benchmark() builds them."""
    return {
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": output_lens,
        "ttfts": [o.ttft for o in outputs],
        "itls": [o.itl for o in outputs],
        "latencies": [o.latency for o in outputs],
        "start_times": [o.start_time for o in outputs],
        "queue_times": [o.client_queue_time for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
    }


def vllm_metric_keys(theirs) -> dict[str, object]:
    """vLLM's BenchmarkMetrics by the result file's key names (``percentiles_ttft_ms``
    becomes ``p50_ttft_ms``...). Every field is mapped, so a field a vLLM upgrade adds
    shows up here."""
    renamed = {"total_input": "total_input_tokens", "total_output": "total_output_tokens"}
    out: dict[str, object] = {}
    for f in dataclasses.fields(theirs):
        value = getattr(theirs, f.name)
        if f.name.startswith("percentiles_"):
            series = f.name.removeprefix("percentiles_").removesuffix("_ms")
            out.update({f"p{percentile_label(p)}_{series}_ms": v for p, v in value})
        else:
            out[renamed.get(f.name, f.name)] = value
    return out


@pytest.mark.parametrize("seed", range(40))
def test_identical_to_vllm_calculate_metrics(seed):
    """The same random request records through vLLM's own calculate_metrics and this
    plugin's metrics: every key they share is equal, bit for bit."""
    serve = pytest.importorskip("vllm.benchmarks.serve")
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput

    rng = random.Random(seed)
    rs = _synthetic_records(rng)
    duration = max(r.chunk_times[-1] for r in rs if r.chunk_times) - min(r.scheduled_time for r in rs) + 0.01
    percentiles = [50.0, 90.0, 95.0, 99.0, 99.9]
    slos = {"ttft": rng.uniform(200, 1500), "tpot": rng.uniform(20, 200), "e2el": rng.uniform(1000, 5000)}

    outputs = [as_vllm_output(r, RequestFuncOutput) for r in rs]
    theirs, their_output_lens = serve.calculate_metrics(
        input_requests=[], outputs=outputs, dur_s=duration, tokenizer=WordTokenizer(),
        selected_percentiles=percentiles, goodput_config_dict=slos,
    )  # fmt: skip
    ours = compute_metrics(rs, duration, percentiles=percentiles, goodput_slos=slos, count_tokens=count_words)
    result = to_vllm_result(ours, rs, count_tokens=count_words)
    # the data exercises every rule
    assert ours.failed > 0 and 0 < ours.stream_errors < ours.completed and ours.tpot.count < ours.completed
    assert any(is_measured_success(r) and not r.completion_tokens and sum(r.chunk_tokens) < count_words(r.generated_text)
               for r in rs)  # fmt: skip

    expected = vllm_metric_keys(theirs)
    missing = sorted(set(expected) - set(result))
    assert not missing, f"vLLM reports {missing}, which this plugin does not"
    for key, value in expected.items():
        assert result[key] == value, key
    for key, values in vllm_per_request_lists(outputs, their_output_lens).items():
        assert result[key] == values, key
    assert [e == "" for e in result["errors"]] == [o.success for o in outputs]
