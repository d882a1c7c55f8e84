"""The HTML report and the comparison (bench/sinks/report, python -m pytest_vllm_serve.report):
what they read, the figures, the verdicts, the Markdown, and the errors on bad input. The
pages in a real browser: tests/integration/browser."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_serve.bench.sinks.report import (
    ReportInputError,
    compare_markdown,
    compare_runs,
    load_run,
    render_compare,
    render_session,
)
from pytest_vllm_serve.bench.sinks.report.data import per_token_gaps, point_samples, point_timeline, thin
from pytest_vllm_serve.bench.sinks.report.figures import search_figures, suite_figures, x_positions
from pytest_vllm_serve.bench.sinks.report.render import script_json
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore
from pytest_vllm_serve.bench.sinks.slo_search import save_search
from pytest_vllm_serve.errors import ConfigError


def metrics(scale: float = 1.0) -> dict[str, float]:
    """A point's flat metrics; ``scale`` > 1 is a slower server (latencies up, throughput down)."""
    return {
        "completed": 10,
        "failed": 0,
        "request_throughput": 10 / scale,
        "output_throughput": 640 / scale,
        "total_token_throughput": 1280 / scale,
        "median_ttft_ms": 20 * scale,
        "p99_ttft_ms": 30 * scale,
        "median_tpot_ms": 2 * scale,
        "p99_tpot_ms": 3 * scale,
        "median_itl_ms": 2 * scale,
        "p99_itl_ms": 4 * scale,
        "median_e2el_ms": 150 * scale,
        "p99_e2el_ms": 200 * scale,
    }


def result_file(n: int = 4) -> dict:
    """The per-request lists of a point's result file (vLLM's keys, and our chunk_tokens)."""
    return {
        "ttfts": [0.02] * n,
        "latencies": [0.15] * n,
        "output_lens": [64] * n,
        "errors": [""] * n,
        "itls": [[0.002] * 3 for _ in range(n)],
        "chunk_tokens": [[1, 1, 2, 1] for _ in range(n)],
    }


def make_run(root: Path, scale: float = 1.0, rates=(1, 4, "inf"), repeats: list[float] | None = None, **extra) -> Path:
    store = ResultsStore(root)
    for rate in rates:
        values = metrics(scale)
        point = PointRecord(
            id=f"tests/test_sweeps.py::test_rate[rate={rate}]",
            suite="rate",
            params={"request_rate": rate, "num_prompts": 10},
            metrics=values,
            server={"url": "http://gpu-box:8000", "model": "m", "spec": "tp=1", "command": "vllm serve m"},
            **extra,
        )
        if repeats:
            point.repeats = {
                "n": len(repeats),
                "values": {k: [v * r for r in repeats] for k, v in values.items()},
                "metrics": {k: {"median": v, "ci_low": v * min(repeats), "ci_high": v * max(repeats)} for k, v in values.items()},
            }  # fmt: skip
        store.save_point(point, result_file())
    return root


# -- what a report reads ------------------------------------------------------------------------


def test_per_token_gaps_split_a_gap_over_the_tokens_of_its_chunk():
    # chunks of 1, 1, 2 and 1 tokens; the gaps before the 2nd, 3rd and 4th chunk
    assert per_token_gaps([0.01, 0.04, 0.02], [1, 1, 2, 1]) == [0.01, 0.02, 0.02, 0.02]
    # a chunk without tokens (a role chunk) adds its gap to the next one; the first token chunk has none
    assert per_token_gaps([0.01, 0.03], [0, 1, 1]) == [0.03]
    assert per_token_gaps([0.01, 0.03], []) == [0.01, 0.03]  # no counts: one sample per gap


def test_thin_keeps_the_extremes_and_the_shape():
    values = [float(v) for v in range(10_001)]
    kept = thin(values, 101)
    assert len(kept) == 101 and kept[0] == 0 and kept[-1] == 10_000 and kept[50] == 5000
    assert thin([3.0, math.nan, 1.0]) == [1.0, 3.0]
    assert thin([1.234567]) == [1.235]  # 4 significant digits


def test_point_samples_are_in_ms_and_leave_failures_out():
    data = result_file(3)
    data["errors"][2] = "HTTP 500"
    samples = point_samples(data)
    assert samples["ttft"] == pytest.approx([20.0, 20.0])
    assert samples["tpot"] == pytest.approx([(150 - 20) / 63] * 2, rel=1e-3)  # 4 significant digits
    assert samples["per_token_itl"] == pytest.approx(sorted([2.0, 1.0, 1.0, 2.0] * 2))  # sorted, for the CDF


def test_a_path_that_is_not_a_run_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ReportInputError, match="(?s)does not exist.*fix: give a session's results directory"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(ReportInputError, match="not a results directory: it has no summary.json"):
        load_run(tmp_path)
    other = tmp_path / "summary.json"
    other.write_text(json.dumps({"format": "pytest-vllm-serve/results-v0", "points": []}))
    with pytest.raises(ReportInputError, match="results-v0.*this version reads 'pytest-vllm-serve/results-v1'"):
        load_run(other)
    other.write_text("{not json")
    with pytest.raises(ReportInputError, match="not valid JSON"):
        load_run(other)


def test_a_points_server_timeline_is_read_and_thinned(tmp_path):
    root = make_run(tmp_path / "r", rates=(1,))
    rows = "\n".join(f"{i * 0.1:.1f},{i % 3},0,0.5" for i in range(1000))
    (root / "points" / "s.metrics.csv").write_text("t_s,running,waiting,kv_cache_usage\n" + rows + "\n")
    run = load_run(root)
    run.points[0].server_metrics = {"series_file": "points/s.metrics.csv"}
    timeline = point_timeline(run, run.points[0])
    assert set(timeline) == {"t_s", "running", "waiting", "kv_cache_usage"}
    assert len(timeline["t_s"]) == 334 and timeline["t_s"][:2] == [0.0, 0.3]  # every 3rd row of 1000
    run.points[0].server_metrics = {"series_file": None}
    assert point_timeline(run, run.points[0]) is None


def test_the_gates_verdict_is_kept_in_the_points_file(tmp_path):
    root = make_run(tmp_path / "r", rates=(1,))
    store = ResultsStore(root)
    (point,) = store.load_points()
    point.gate = {"verdict": "fail", "reasons": ["median_ttft_ms rose 50%"]}
    store.update_point(point)
    data = json.loads((root / point.file).read_text())
    assert data["pytest_vllm_serve"]["gate"]["verdict"] == "fail" and data["ttfts"]  # the rest is kept
    assert load_run(root).points[0].gate["verdict"] == "fail"  # the summary too
    assert '<span class="gate fail">fail</span>' in render_session(load_run(root))


# -- the figures --------------------------------------------------------------------------------


def test_a_suite_gets_a_figure_per_latency_and_one_for_throughput(tmp_path):
    run = load_run(make_run(tmp_path / "r", repeats=[0.9, 1.0, 1.1]))
    (suite,) = suite_figures([(run.label, run.points)], {"ttft": 25.0})
    titles = [title for title, _ in suite.figures]
    assert titles == ["TTFT (ms)", "TPOT (ms)", "ITL (ms)", "E2EL (ms)", "throughput (tok/s)"]
    ttft = suite.figures[0][1]
    p50 = next(t for t in ttft["data"] if t["name"] == "p50")
    assert p50["x"] == [1.0, 4.0, 8.0]  # inf one doubling past 4
    assert p50["y"] == [20.0, 20.0, 20.0]
    assert p50["error_y"]["array"] == pytest.approx([2.0] * 3) and p50["error_y"]["arrayminus"] == pytest.approx(
        [2.0] * 3
    )
    assert ttft["layout"]["shapes"][0]["y0"] == 25.0  # the SLO
    assert ttft["layout"]["xaxis"]["ticktext"] == ["1", "4", "inf"]
    assert "shapes" not in suite.figures[2][1]["layout"]  # no SLO on ITL


def test_two_runs_overlay_in_two_line_styles(tmp_path):
    old, new = load_run(make_run(tmp_path / "old")), load_run(make_run(tmp_path / "new", scale=2))
    (suite,) = suite_figures([("old", old.points), ("new", new.points)])
    traces = suite.figures[0][1]["data"]
    dashes = {t["name"]: t["line"]["dash"] for t in traces}
    assert dashes == {"old: p50": "dot", "old: p99": "dot", "new: p50": "solid", "new: p99": "solid"}


def test_a_suite_with_one_swept_value_has_no_curve(tmp_path):
    run = load_run(make_run(tmp_path / "r", rates=(4,)))
    assert suite_figures([(run.label, run.points)]) == []
    assert x_positions([math.inf]) == {math.inf: 1.0}


# -- the comparison -----------------------------------------------------------------------------


def test_a_slowed_run_regresses_and_a_faster_one_improves(tmp_path):
    base = make_run(tmp_path / "base")
    slow = compare_runs(load_run(base), load_run(make_run(tmp_path / "slow", scale=1.5)))
    assert [p.outcome for p in slow.points] == ["regressed"] * 3
    row = next(r for r in slow.points[0].rows if r.metric == "median_ttft_ms")
    assert (row.old, row.new, row.verdict) == (20.0, 30.0, "fail") and row.change == pytest.approx(50.0)
    fast = compare_runs(load_run(base), load_run(make_run(tmp_path / "fast", scale=0.5)))
    assert [p.outcome for p in fast.points] == ["improved"] * 3
    same = compare_runs(load_run(base), load_run(make_run(tmp_path / "same", scale=1.02)))
    assert [p.outcome for p in same.points] == ["unchanged"] * 3


def test_repeats_that_overlap_are_undecided_not_regressed(tmp_path):
    """The gate's noise-aware decision: a 12 % median change whose repeats spread ±30 % is
    too noisy to call a regression at a 10 % threshold."""
    old = load_run(make_run(tmp_path / "old", repeats=[0.7, 1.0, 1.3, 0.8, 1.2]))
    new = load_run(make_run(tmp_path / "new", scale=1.12, repeats=[0.7, 1.0, 1.3, 0.8, 1.2]))
    result = compare_runs(old, new, "median_ttft_ms:+10%")
    assert [p.outcome for p in result.points] == ["undecided"] * 3
    assert result.points[0].repeats == (5, 5) and "median_ttft_ms" in result.points[0].reasons[0]


def test_points_that_cannot_be_compared_are_noted(tmp_path):
    old = load_run(make_run(tmp_path / "old", rates=(1, 4)))
    new = load_run(make_run(tmp_path / "new", rates=(4, 16), partial=None))
    result = compare_runs(old, new)
    assert [p.id.split("::")[-1] for p in result.points] == ["test_rate[rate=4]"]
    assert any("rate=1]: only in old" in n for n in result.notes)
    assert any("rate=16]: only in new" in n for n in result.notes)
    partial = load_run(make_run(tmp_path / "partial", rates=(4,), partial="the server died"))
    assert "the new point is partial (the server died)" in compare_runs(old, partial).notes[-1]
    with pytest.raises(ConfigError, match="(?s)no point in common.*fix: compare two runs of the same tests"):
        compare_runs(old, load_run(make_run(tmp_path / "other", rates=(64,))))


def test_the_markdown_names_each_verdict_and_fits_a_table(tmp_path):
    result = compare_runs(load_run(make_run(tmp_path / "old")), load_run(make_run(tmp_path / "new", scale=1.5)))
    text = compare_markdown(result)
    assert "3 regressed, 0 undecided, 0 improved, 0 unchanged" in text
    rows = [line for line in text.splitlines() if line.startswith("| `test_rate")]
    assert len(rows) == 3 and all("regressed" in row for row in rows)
    assert all(row.count("|") == text.splitlines()[4].count("|") for row in rows)  # as many cells as the header
    assert "20 → 30 (+50.0%)" in rows[0]
    assert "- **regressed** `tests/test_sweeps.py::test_rate[rate=1]`: request_throughput -33.3%" in text


# -- the pages ----------------------------------------------------------------------------------


def test_script_json_cannot_end_its_script_block():
    text = script_json({"id": "</script><script>alert(1)</script>", "x": math.inf})
    assert "</" not in text and json.loads(text) == {"id": "</script><script>alert(1)</script>", "x": None}


def test_the_session_page_is_self_contained_and_escapes_what_it_shows(tmp_path):
    root = make_run(tmp_path / "r")
    point = PointRecord(id="t.py::test_x[<b>bold</b>]", suite="custom", params={}, metrics=metrics(),
                        server={"command": "vllm serve m --api-key ***"})  # fmt: skip
    ResultsStore(root).save_point(point, result_file())
    page = render_session(load_run(root))
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?https?:""", page)
    assert page.count('class="plot suite-plot"') == 5 and page.count('<tbody class="point"') == 4
    assert "vllm serve m --api-key ***" in page


def test_the_compare_page_lists_the_verdicts_first(tmp_path):
    result = compare_runs(load_run(make_run(tmp_path / "old")), load_run(make_run(tmp_path / "new", scale=1.5)))
    page = render_compare(result)
    verdicts = page[page.index('<ul class="verdicts"') : page.index("</ul>")]
    assert "3 regressed" in verdicts and verdicts.count("test_rate[rate=") == 3


# -- the command line ---------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_vllm_serve.report", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_compare_on_bad_input_says_what_and_how_without_a_traceback(tmp_path):
    make_run(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    make_run(tmp_path / "other", rates=(64,))
    for args, message in (
        (["nowhere", "good"], "OLD nowhere does not exist"),
        (["good", "empty"], "NEW empty is not a results directory"),
        (["good", "other"], "the runs have no point in common"),
    ):
        result = cli("compare", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "fix:" in result.stderr and "Traceback" not in result.stderr


def test_compare_writes_both_formats_and_can_gate(tmp_path):
    make_run(tmp_path / "old")
    make_run(tmp_path / "new", scale=1.5)
    page = cli("compare", "old", "new", "-o", "cmp.html", cwd=tmp_path)
    assert page.returncode == 0 and "3 regressed" in page.stderr
    assert (tmp_path / "cmp.html").read_text().startswith("<!DOCTYPE html>")
    md = cli("compare", "old/summary.json", "new", "--format", "md", "--exit-code", cwd=tmp_path)
    assert md.returncode == 1 and md.stdout.startswith("## pytest-vllm-serve: old → new")
    build = cli("build", "new", cwd=tmp_path)
    assert build.returncode == 0 and (tmp_path / "new" / "report.html").exists()


def test_an_slo_search_gets_its_figures_with_the_bound_and_the_answer(tmp_path):
    root = make_run(tmp_path / "r")
    probes = [
        {"value": v, "passed": v <= 4, "metrics": {"p99_ttft_ms": 100.0 if v <= 4 else 400.0}} for v in (1, 2, 4, 8, 6)
    ]
    doc = {"id": "s.py::test_search", "variable": "rate", "slo": {"p99_ttft_ms": "<=200"}, "best": 4, "bracket": [4, 6], "probes": probes}  # fmt: skip
    save_search(root, doc)
    run = load_run(root)
    (search,) = search_figures(run.searches)
    assert search.suite == "SLO search test_search" and search.swept == "rate"
    ((title, figure),) = search.figures
    met, missed = figure["data"]
    assert title == "p99_ttft_ms" and met["x"] == [1, 2, 4] and missed["x"] == [6, 8] and missed["y"] == [400.0, 400.0]
    bound, answer = figure["layout"]["shapes"]
    assert bound["y0"] == 200 and answer["x0"] == 4 and "SLO <=200" in figure["layout"]["annotations"][0]["text"]
    page = render_session(run)
    assert 'id="suite-SLO-search-test_search"' in page and page.count('class="plot suite-plot"') == 6
