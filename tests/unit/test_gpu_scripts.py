"""The GPU evidence scripts' own logic, on CPU: waves.py's grouping and the request
variants of test_h200.py's concurrency-64 experiment."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from pytest_vllm_serve.bench.client import RequestOptions
from pytest_vllm_serve.bench.workloads import LocalTokenizer, RandomWorkload
from pytest_vllm_serve.serving.models import ensure_tiny_model
from tests.support import ROOT

GPU = ROOT / "benchmarks" / "gpu"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


waves = _load("waves")


def test_first_tokens_are_grouped_by_gap():
    found = waves.groups(np.array([0.303, 0.1, 0.3, 0.101, 0.302, 0.9]), gap=0.005)
    assert found == [(2, 0.1), (3, 0.3), (1, 0.9)]


def test_waves_follow_send_order():
    start = np.array([0.5, 0.0, 0.6, 0.1, 0.7])
    assert [list(w) for w in waves.waves(start, 2)] == [[1, 3], [0, 2], [4]]


def test_a_wave_that_finishes_together_trades_ttft_for_tpot(tmp_path):
    """Four requests sent at once, first tokens in two prefill steps (100 and 300 ms), all
    finishing at 1.1 s: TPOT falls as TTFT rises (correlation -1), the output says so."""
    ttft = [0.1, 0.1, 0.3, 0.3]
    itls = [[(1.1 - t) / 10] * 10 for t in ttft]
    result = {"start_times": [5.0] * 4, "ttfts": ttft, "itls": itls, "output_lens": [11] * 4}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(result))
    lines = waves.describe(waves.load(path), concurrency=4, gap=0.005)
    assert "first tokens 2 @ 100, 2 @ 300" in lines[1]
    assert "corr(TTFT, TPOT) -1.00" in lines[1]
    assert "end-to-end p50 1100 ms" in lines[1]
    assert "TPOT p50 90.00 ms" in lines[0]  # the median of 100, 100, 80, 80 ms


@pytest.fixture(scope="module")
def h200():
    return _load("test_h200")


def test_list_content_sends_one_text_part(h200, vllm_session):
    tokenizer = LocalTokenizer(ensure_tiny_model(vllm_session.settings.cache_dir))
    plain = RandomWorkload(16, 4, num_prompts=3, seed=1)
    listed = h200.ListContent(plain)
    options = RequestOptions(model="m")
    for a, b in zip(plain.prompts(tokenizer), listed.prompts(tokenizer)):
        string_body = json.loads(options.encode(a))
        list_body = json.loads(options.encode(b))
        assert string_body["messages"] == [{"role": "user", "content": a.text}]
        assert list_body["messages"] == [{"role": "user", "content": [{"type": "text", "text": a.text}]}]
        assert {k: v for k, v in list_body.items() if k != "messages"} == {
            k: v for k, v in string_body.items() if k != "messages"
        }
    assert listed.max_total_len == plain.max_total_len


def test_the_five_variants_rotate_through_three_rounds(h200):
    by_round = {}
    for r, variant in h200.CAUSE:
        by_round.setdefault(r, []).append(variant)
    assert all(sorted(v) == sorted(h200.CAUSE_VARIANTS) for v in by_round.values())
    assert [v[0] for v in by_round.values()] == list(h200.CAUSE_VARIANTS[:3])


def test_report_slo_tables_each_search_and_checks_the_sweep_against_its_slo(tmp_path, capsys):
    """report_slo.py over a run_slo.sh folder: the probes and the answer of each search, and
    every rate sweep point marked by whether it meets the search's SLO."""
    report_slo = _load("report_slo")
    search = tmp_path / "res-search-1" / "latest"
    search.mkdir(parents=True)
    probe = {"achieved_request_rate": 4.1, "completed": 40, "p99_ttft_ms": 90.0, "p99_tpot_ms": 8.0}
    doc = {
        "variable": "rate",
        "slo": {"p99_ttft_ms": "<=300", "p99_tpot_ms": "<=30"},
        "best": 4.0,
        "bracket": [4.0, 4.4],
        "stopped": None,
        "probes": [
            {"value": 4.0, "passed": True, "metrics": probe},
            {"value": 8.0, "passed": False, "metrics": {**probe, "p99_ttft_ms": 900.0}},
        ],
    }
    (search / "slo_search.json").write_text(json.dumps(doc))
    sweep = tmp_path / "res-sweep-2" / "latest"
    sweep.mkdir(parents=True)
    header = "request_rate,achieved_request_rate,completed,p99_ttft_ms,p99_tpot_ms,output_throughput"
    (sweep / "summary.csv").write_text(f"{header}\n8,7.9,76,63,7.0,1745\n2,2.0,20,50,40.0,400\n")
    report_slo.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "best rate 4.0 (bracket [4.0, 4.4]) for p99_ttft_ms<=300,p99_tpot_ms<=30" in out
    assert "| 1 | 4 | yes | 4.10 | 40 | 90 | 8.0 | - |" in out
    assert "| 2 | 8 | no | 4.10 | 40 | 900 | 8.0 | - |" in out
    # sorted by rate; rate 2 breaks the TPOT bound
    assert out.index("| 2 | 2.00 | 20 | 50 | 40.0 | 400 | no |") < out.index(
        "| 8 | 7.90 | 76 | 63 | 7.0 | 1745 | yes |"
    )
