"""--vllm-repeats' pieces without a server: repeat ids, the summary over repeats, the repeat
files, stability reasons, and the sinks' view of a repeated point (table, CSV, baseline)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from pytest_vllm_serve.bench.repeats import Repeat, RepeatFiles, summarize, without_repeat
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks.baseline import load_baseline
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore, summary_csv
from pytest_vllm_serve.bench.sinks.summary import points_table
from pytest_vllm_serve.bench.stability import stability_reasons


@pytest.mark.parametrize(
    "node_id, point_id",
    [
        ("t.py::test[repeat=2]", "t.py::test"),
        ("t.py::test[rate=4-repeat=2]", "t.py::test[rate=4]"),
        ("t.py::test[repeat=3-rate=inf]", "t.py::test[rate=inf]"),
        ("t.py::test[in=128-out=64-repeat=1]", "t.py::test[in=128-out=64]"),
        ("t.py::test[rate=4]", "t.py::test[rate=4]"),
        ("t.py::test", "t.py::test"),
        ("t.py::test[repeat=x]", "t.py::test[repeat=x]"),
    ],
)
def test_the_point_id_leaves_the_repeat_out(node_id, point_id):
    assert without_repeat(node_id) == point_id


def test_a_repeat_knows_whether_it_is_the_last():
    assert not Repeat().repeated and Repeat().last
    assert Repeat(2, 3).repeated and not Repeat(2, 3).last and Repeat(3, 3).last
    assert Repeat(2, 3).test_id() == "repeat=2"


def test_summary_takes_the_median_of_each_metric_and_its_interval():
    per_repeat = [
        {"request_throughput": 10.0, "p99_ttft_ms": 30.0, "target_request_rate": float("inf")},
        {"request_throughput": 12.0, "p99_ttft_ms": 32.0, "target_request_rate": float("inf")},
        {"request_throughput": 11.0, "p99_ttft_ms": 31.0, "target_request_rate": float("inf")},
    ]
    samples = [{"ttft": [10.0, 20.0, 30.0]}, {"ttft": [12.0, 22.0, 32.0]}, {"ttft": [11.0, 21.0, 31.0]}]
    summary = summarize(per_repeat, samples, 0.95)
    assert summary.n == 3
    assert summary.medians()["request_throughput"] == 11.0
    assert "target_request_rate" not in summary.intervals  # not finite: no interval
    throughput = summary.intervals["request_throughput"]
    assert throughput.ci_low <= 11.0 <= throughput.ci_high
    assert throughput.cv == pytest.approx(100 * 1.0 / 11.0)  # std 1 over mean 11
    # a latency percentile over the requests of every repeat: the pooled p99 of 9 samples
    assert summary.medians()["p99_ttft_ms"] == pytest.approx(31.92)
    assert summary.to_json()["values"]["request_throughput"] == [10.0, 12.0, 11.0]


def test_repeat_files_are_kept_and_read_back_with_what_is_missing(tmp_path):
    store = ResultsStore(tmp_path)
    for index in (1, 3):
        files = RepeatFiles(store, "t.py::test[rate=4]", Repeat(index, 3))
        files.save({"completed": 8}, {"request_throughput": 10.0 + index}, {"ttft": [1.0]}, 12.0, None, None)
    gathered = RepeatFiles(store, "t.py::test[rate=4]", Repeat(3, 3)).gather()
    assert [v["request_throughput"] for v in gathered.values] == [11.0, 13.0]
    assert gathered.problems == ["repeat 2 is missing"]
    assert len(gathered.files) == 2 and all(f.startswith("points/repeats/") for f in gathered.files)
    problem = RepeatFiles(store, "t.py::test[rate=4]", Repeat(3, 3)).problem(gathered)
    assert problem.startswith("2 of 3 repeats complete: repeat 2 is missing") and "--dist loadgroup" in problem
    assert json.loads(store.repeat_path("t.py::test[rate=4]", 1).read_text())["completed"] == 8
    assert not list((tmp_path / "points").glob("*.json"))  # the point's own file comes from its last repeat


def test_stability_reasons_name_the_fix():
    assert stability_reasons(30.0, 10.0, {"output_throughput": 2.0}, 5.0, 5) == []
    short = stability_reasons(3.2, 10.0, {}, 5.0, 1)
    assert len(short) == 1 and "3.2 s, under --vllm-min-duration 10 s" in short[0] and "--vllm-duration" in short[0]
    noisy = stability_reasons(30.0, 10.0, {"output_throughput": 9.5, "p99_e2el_ms": 50.0}, 5.0, 5)
    assert len(noisy) == 1 and "output_throughput 9.5 %" in noisy[0] and "p99_e2el_ms" not in noisy[0]
    assert stability_reasons(3.0, 0.0, {}, 5.0, 1) == []  # --vllm-min-duration 0: off


def test_prompts_scale_with_the_concurrency_and_warmup_fills_it():
    s = BenchSettings(num_prompts=100, prompts_per_concurrency=5)
    assert s.prompts_for(None) == 100 and s.prompts_for(8) == 100 and s.prompts_for(128) == 640
    assert BenchSettings(num_prompts=100, prompts_per_concurrency=0).prompts_for(128) == 100
    assert s.warmup_for(32, 640) == 32 and s.warmup_for(None, 100) == 16 and s.warmup_for(None, 4) == 4
    assert BenchSettings(warmup_requests=2).warmup_for(32, 640) == 2


def _repeated_point() -> PointRecord:
    interval = {"median": 11.0, "ci_low": 10.0, "ci_high": 12.0, "cv": 9.1}
    return PointRecord(
        id="t.py::test[rate=4]",
        suite="rate",
        params={"request_rate": 4},
        metrics={"request_throughput": 11.0, "completed": 8.0},
        repeats={"n": 3, "metrics": {"request_throughput": interval}, "values": {"request_throughput": [10, 12, 11]}},
        stability={"stable": False, "reasons": ["too short"]},
    )


def test_the_sinks_show_a_repeated_points_spread_and_stability(tmp_path):
    point = _repeated_point()
    table = "\n".join(points_table([point]))
    assert "±" in table and "±1.00" in table  # half the interval
    assert "test[rate=4] (unstable)" in table and "unstable: test[rate=4]: too short" in table
    row = next(csv.DictReader(io.StringIO(summary_csv([point]))))
    assert (row["repeats"], row["request_throughput_ci_low"], row["request_throughput_cv"]) == ("3", "10.0", "9.1")
    assert row["unstable"] == "too short"
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"format": "pytest-vllm-serve/results-v1", "points": [point.to_json()]}))
    baseline = load_baseline(summary)
    assert baseline.get(point.id)["request_throughput"] == 11.0
    assert baseline.repeat_values(point.id) == {"request_throughput": [10.0, 12.0, 11.0]}


def test_the_repeat_comes_last_in_the_id_and_the_sweeps_keep_their_place(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("x", [1], ids=["x1"])
        def test_a(vllm_bench, vllm_rate, x):
            pass

        def test_plain(vllm_rate):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--vllm-url=http://127.0.0.1:9",
        "--vllm-sweep-rate=4",
        "--vllm-repeats=2",
    )
    result.stdout.fnmatch_lines(
        [
            "*::test_plain[[]rate=4[]]",  # no vllm_bench: measured once, no repeat in its id
            "*::test_a[[]rate=4-x1-repeat=1[]]",
            "*::test_a[[]rate=4-x1-repeat=2[]]",
        ]
    )


def test_a_summary_baseline_reads_its_repeats_samples_and_skips_cut_short_ones(tmp_path):
    store = ResultsStore(tmp_path)
    point = _repeated_point()
    files = []
    for index, partial in ((1, None), (2, "server died"), (3, None)):
        kept = {"samples": {"itl": [float(index)] * 3}, "partial": partial}
        path = store.save_repeat(point.id, index, {"pytest_vllm_serve_repeat": kept})
        files.append(str(path.relative_to(tmp_path)))
    point.repeats = {**point.repeats, "files": files}
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"format": "pytest-vllm-serve/results-v1", "points": [point.to_json()]}))
    assert load_baseline(summary).repeat_samples(point.id) == [{"itl": [1.0] * 3}, {"itl": [3.0] * 3}]
    store.repeat_path(point.id, 3).unlink()
    assert load_baseline(summary).repeat_samples(point.id) is None  # a file gone: decided over the repeats


def test_points_load_in_natural_order(tmp_path):
    store = ResultsStore(tmp_path)
    for c in (128, 32, 1, 256, 8):
        point = PointRecord(
            id=f"t.py::test[concurrency={c}]", suite="concurrency", params={}, metrics={"completed": 1.0}
        )
        store.save_point(point, {})
    assert [p.id.split("=")[1] for p in store.load_points()] == ["1]", "8]", "32]", "128]", "256]"]
    assert [r.split(",")[0] for r in summary_csv(store.load_points()).splitlines()[1:]] == [
        f"t.py::test[concurrency={c}]" for c in (1, 8, 32, 128, 256)
    ]
