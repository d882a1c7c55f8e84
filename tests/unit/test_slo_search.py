"""The SLO search's loop, files and baseline (bench/point/search.py, bench/sinks/slo_search.py,
slo_plot.py, baseline.py). The loop runs here over simulated probes whose metrics are set per
value (a stand-in for VllmBench, named as such); the real points run in
tests/integration/vllm/test_slo_search.py, against the latency test server and vLLM."""

from __future__ import annotations

import dataclasses
import json
import types

import pytest

from pytest_vllm_serve.bench.point.search import VllmSloSearch, probe_id
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks import slo_search
from pytest_vllm_serve.bench.sinks.baseline import load_baseline
from pytest_vllm_serve.bench.sinks.results import PointRecord
from pytest_vllm_serve.bench.sinks.slo_plot import draw_search_plots
from pytest_vllm_serve.bench.slo import parse_slo
from pytest_vllm_serve.bench.workloads import RandomWorkload
from pytest_vllm_serve.errors import ConfigError

TEST = "tests/test_capacity.py::test_search"


class SimulatedProbes:
    """Stands in for the VllmBench of each probe: answers ``ttft(value, index)`` as the probe's
    p99 TTFT, with an interval of +-``spread`` ms when the probe is repeated."""

    def __init__(self, ttft, spread=0.0):
        self.ttft = ttft
        self.spread = spread
        self.runs: list[tuple[str, int, int]] = []  # (probe id, repeat, of)

    def __call__(self, pid, repeat):
        probes = self

        class Bench:
            server = types.SimpleNamespace(death=lambda: None)
            all_failed = False

            def run(self, workload, schedule, suite, params):
                probes.runs.append((pid, repeat.index, repeat.count))
                if not repeat.last:
                    return types.SimpleNamespace(point=None)
                value = params.get("max_concurrency", params.get("request_rate"))
                ttft = probes.ttft(value, repeat.count)
                repeats = None
                if repeat.repeated:
                    spread = probes.spread / repeat.count  # more repeats, a narrower interval
                    repeats = {
                        "n": repeat.count,
                        "metrics": {"p99_ttft_ms": {"median": ttft, "ci_low": ttft - spread, "ci_high": ttft + spread}},
                    }
                point = PointRecord(pid, suite, dict(params), {"p99_ttft_ms": ttft}, repeats=repeats)
                return types.SimpleNamespace(point=point, values=point.metrics)

        return Bench()


def searcher(tmp_path, probes, **settings):
    s = dataclasses.replace(BenchSettings(), slo=tuple(parse_slo("p99_ttft_ms<=200")[0]), **settings)
    return VllmSloSearch(settings=s, node_id=TEST, new_bench=probes, root=tmp_path)


def workload(value):
    return RandomWorkload(4, 4, 4, 0)


def test_probe_ids_extend_the_tests_own():
    assert probe_id("t.py::test_a", "rate", 4.0) == "t.py::test_a[rate=4]"
    assert probe_id("t.py::test_a[spec1]", "concurrency", 12.0) == "t.py::test_a[spec1-concurrency=12]"
    assert probe_id("t.py::test_a", "rate", 2.5) == "t.py::test_a[rate=2.5]"


def test_the_loop_measures_each_probe_and_saves_after_each(tmp_path):
    probes = SimulatedProbes(lambda value, n: 100 if value <= 6 else 400)
    result = searcher(tmp_path, probes, slo_search="concurrency").run(workload)
    assert result.best == 6 and result.bracket == (6, 7)
    assert [pid.rsplit("=", 1)[1] for pid, _, _ in probes.runs] == ["1]", "2]", "4]", "8]", "6]", "7]"]
    doc = json.loads((tmp_path / "slo_search.json").read_text())
    assert doc["id"] == TEST and doc["best"] == 6 and [p["passed"] for p in doc["probes"]] == [1, 1, 1, 0, 1, 0]
    assert json.loads(slo_search.search_path(tmp_path, TEST).read_text()) == doc


def test_an_undecided_probe_is_measured_again_then_counted_failing(tmp_path):
    # at 4 the interval straddles the bound with 2 repeats; with 4 it is decided (value 4 passes).
    # at 8 it straddles even over 4 repeats: counted as failing.
    probes = SimulatedProbes(lambda value, n: 190 if value == 4 else 195 if value == 8 else 100, spread=30)
    result = searcher(tmp_path, probes, slo_search="concurrency", repeats=2, slo_max_probes=4).run(workload)
    runs = [(pid.rsplit("=", 1)[1], i, n) for pid, i, n in probes.runs]
    assert runs[:4] == [("1]", 1, 2), ("1]", 2, 2), ("2]", 1, 2), ("2]", 2, 2)]
    assert runs[4:8] == [("4]", 1, 2), ("4]", 2, 2), ("4]", 3, 4), ("4]", 4, 4)]  # measured again: 2N repeats
    doc = result.document
    by_value = {p["value"]: p for p in doc["probes"]}
    assert by_value[4]["passed"] and by_value[4]["repeats"] == 4
    assert (
        not by_value[8]["passed"] and by_value[8]["reasons"][-1] == "still undecided over 4 repeats: counted as failing"
    )


def test_no_passing_probe_fails_the_test_with_the_fix(tmp_path):
    probes = SimulatedProbes(lambda value, n: 900)
    with pytest.raises(pytest.fail.Exception, match=r"no rate met the SLO p99_ttft_ms<=200: the first probe \(1\)"):
        searcher(tmp_path, probes).run(workload)
    assert json.loads((tmp_path / "slo_search.json").read_text())["best"] is None  # saved before the failure


def test_search_files_hold_one_document_or_every_search(tmp_path):
    one = {"id": "a::t", "variable": "rate", "slo": {}, "best": 4.0, "bracket": [4, 8], "probes": []}
    slo_search.save_search(tmp_path, one)
    assert json.loads((tmp_path / "slo_search.json").read_text()) == one
    slo_search.save_search(tmp_path, {**one, "id": "b::t", "best": None})
    combined = json.loads((tmp_path / "slo_search.json").read_text())
    assert [d["id"] for d in combined["searches"]] == ["a::t", "b::t"]
    assert slo_search.bests(slo_search.documents(combined)) == {"a::t": 4.0, "b::t": None}
    assert slo_search.search_table([one])[:2] == [
        "t: best rate 4 (bracket 4..8) for ",
        "  probes (+ met, - missed): ",
    ]


def test_a_baseline_reads_searches_from_every_kind_of_file(tmp_path):
    doc = {"id": TEST, "variable": "rate", "slo": {}, "best": 6.0, "bracket": [6, 7], "probes": []}
    slo_search.save_search(tmp_path, doc)
    assert load_baseline(tmp_path / "slo_search.json").search_best(TEST) == (True, 6.0)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"format": "pytest-vllm-serve/results-v1", "points": []}))
    assert load_baseline(summary).search_best(TEST) == (True, 6.0)  # the slo_search.json beside it
    bench = tmp_path / "bench.json"
    extra = {"point_id": TEST, "metrics": {"slo_best": 5.0}}
    bench.write_text(json.dumps({"benchmarks": [{"fullname": "x", "extra_info": extra}]}))
    assert load_baseline(bench).search_best(TEST) == (True, 5.0)
    assert load_baseline(bench).search_best("other") == (False, None)
    bad = tmp_path / "other" / "slo_search.json"
    bad.parent.mkdir()
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="is not a slo_search.json"):
        load_baseline(bad)


def test_the_plot_is_drawn_per_search(tmp_path):
    probes = [{"value": v, "passed": v <= 4, "metrics": {"p99_ttft_ms": 100 if v <= 4 else 400}} for v in (1, 2, 4, 8)]
    slo_search.save_search(
        tmp_path,
        {
            "id": TEST,
            "variable": "rate",
            "slo": {"p99_ttft_ms": "<=200"},
            "best": 4,
            "bracket": [4, 8],
            "probes": probes,
        },
    )
    (plot,) = draw_search_plots(tmp_path)
    assert plot.name == "slo_test_search.png" and plot.stat().st_size > 10_000
