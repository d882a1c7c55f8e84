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
