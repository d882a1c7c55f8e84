"""The HTML report as a person sees it: real pytest sessions write the pages, and a real
headless Chromium opens them (tests/support/browser.py).

The sessions run the shipped rate sweep from an empty directory against the latency test
server (a stand-in that is not vLLM: its latencies are set exactly, so a deliberately slowed
server is one flag away); the second server is three times slower, and its session is gated
against the first with --vllm-fail-on. The pages must load with
no console error and no request but their own file, draw every plot, and the comparison must
list every slowed point as regressed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_serve.tools import latency_server
from tests.support.browser import open_page, plot_trace_counts, screenshot_colours

SWEEP = ["--pyargs", "pytest_vllm_serve.suites", "-m", "benchmark", "-k", "test_rate"]
GRID = ["--vllm-sweep-rate=8,inf", "--vllm-num-prompts=12", "--vllm-output-len=16", "--vllm-goodput=ttft:60"]


def session(cwd: Path, url: str, results: Path, *extra: str, exit_code: int = 0) -> Path:
    """A user's sweep from ``cwd``; returns its results directory."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            *SWEEP,
            *GRID,
            f"--vllm-url={url}",
            f"--vllm-results-dir={results}",
            *extra,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == exit_code, result.stdout[-3000:] + result.stderr[-2000:]
    assert "report: " in result.stdout, result.stdout[-2000:]
    return (results / "latest").resolve()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A run against a fast server (two repeats per point), one against a 3x slower one."""
    cwd = tmp_path_factory.mktemp("user")  # an empty directory: no pyproject, no conftest
    with latency_server.running(ttft_ms=15, itl_ms=2) as fast, latency_server.running(ttft_ms=45, itl_ms=6) as slow:
        first = session(cwd, fast, cwd / "fast", "--vllm-repeats=2")
        # gated against the first run: every point regresses, so the session fails
        gate = [f"--vllm-baseline={first / 'summary.json'}", "--vllm-fail-on=median_ttft_ms:+50%"]
        return {"fast": first, "slow": session(cwd, slow, cwd / "slow", *gate, exit_code=1), "cwd": cwd}


def assert_clean(opened) -> None:
    assert opened.console_errors == [] and opened.page_errors == [], (opened.console_errors, opened.page_errors)
    assert opened.foreign_requests == [], opened.foreign_requests  # no network, no other file


def test_the_session_page_opens_offline_and_draws_every_plot(runs, tmp_path):
    page_file = runs["fast"] / "report.html"
    with open_page(page_file) as opened:
        assert_clean(opened)
        page = opened.page
        counts = plot_trace_counts(page, ".suite-plot")
        assert len(counts) == 5 and all(n > 0 for n in counts), counts  # 4 latencies + throughput
        data = json.loads(page.eval_on_selector("#report-data", "e => e.textContent"))
        ttft = data["suites"][0]["figures"][0]
        assert all("error_y" in t for t in ttft["data"] if t["name"] in ("p50", "p99"))  # two repeats
        assert ttft["layout"]["shapes"][0]["y0"] == 60  # --vllm-goodput ttft:60
        header = page.inner_text("header")
        assert "pytest-vllm-serve" in header and "CPUs" in header and "latency-server" in header
        page.click("tbody.point button.open")
        page.wait_for_function("document.querySelectorAll('.detail-plot .main-svg').length >= 5")
        details = plot_trace_counts(page, ".detail-plot")
        assert len(details) >= 5 and all(n > 0 for n in details), details  # 4 histograms and the CDF
        assert_clean(opened)
        assert screenshot_colours(page, tmp_path / "report.png") > 50  # not blank


def test_the_points_table_sorts_and_filters(runs):
    with open_page(runs["slow"] / "report.html") as opened:
        page = opened.page
        names = "() => [...document.querySelectorAll('tbody.point:not([hidden]) button.open')].map(b => b.textContent)"
        page.click("th:has-text('req/s') >> nth=0")
        ascending = page.evaluate(names)
        page.click("th:has-text('req/s') >> nth=0")
        assert page.evaluate(names) == ascending[::-1] and len(ascending) == 2
        assert ascending[0] == "test_rate[rate=8]"  # 8 req/s before the uncapped point
        gates = page.evaluate("() => [...document.querySelectorAll('span.gate')].map(e => e.textContent)")
        assert gates == ["fail", "fail"]  # --vllm-fail-on's verdict, recorded in each point's file
        page.fill("#filter", "rate=inf")
        assert page.evaluate(names) == ["test_rate[rate=inf]"] and page.inner_text("#shown") == "1"
        assert_clean(opened)


def compare(runs: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    """``python -m pytest_vllm_serve.report compare FAST SLOW ARGS`` from the user's directory."""
    command = [sys.executable, "-m", "pytest_vllm_serve.report", "compare", str(runs["fast"]), str(runs["slow"])]
    return subprocess.run([*command, *args], cwd=runs["cwd"], capture_output=True, text=True, timeout=120)


def test_the_comparison_lists_every_slowed_point_as_regressed(runs):
    out = compare(runs, "-o", "compare.html", "--exit-code")
    assert out.returncode == 1 and "2 regressed, 0 undecided" in out.stderr, out.stderr
    with open_page(runs["cwd"] / "compare.html") as opened:
        assert_clean(opened)
        page = opened.page
        regressed = page.inner_text("#verdicts li.regressed")
        assert regressed.startswith("2 regressed") and "test_rate[rate=8]" in regressed and "rate=inf" in regressed
        counts = plot_trace_counts(page, ".suite-plot")
        assert len(counts) == 5 and all(n >= 4 for n in counts), counts  # both runs' lines on each
    md = compare(runs, "--format", "md")
    assert md.returncode == 0 and md.stdout.count("🔴 regressed") == 2, md.stdout


CRASH = """
import os, signal
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

def test_a_point(vllm_bench):
    vllm_bench.run(RandomWorkload(8, 8, 6), Schedule(rate=float("inf")), suite="custom")

def test_then_pytest_dies(vllm_bench):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_session_killed_after_a_point_still_leaves_its_page(tmp_path):
    (tmp_path / "test_crash.py").write_text(CRASH)
    with latency_server.running(ttft_ms=5, itl_ms=1) as url:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "test_crash.py",
                f"--vllm-url={url}",
                f"--vllm-results-dir={tmp_path / 'results'}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    assert result.returncode == -9, result.stdout[-2000:]
    page_file = (tmp_path / "results" / "latest" / "report.html").resolve()
    assert page_file.exists(), "no report.html after the first point"
    with open_page(page_file) as opened:
        assert_clean(opened)
        assert opened.page.evaluate("document.querySelectorAll('tbody.point').length") == 1
        assert "test_a_point" in opened.page.inner_text("#points-table")
