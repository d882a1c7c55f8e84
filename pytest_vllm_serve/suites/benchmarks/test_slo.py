"""Capacity planning: the highest load that meets --vllm-slo.

``pytest --vllm-suite benchmarks -k slo_search --vllm-slo "p99_ttft_ms<=500,p99_tpot_ms<=50"``
finds the largest request rate (``--vllm-slo-search rate``, the default; Poisson arrivals) or
max concurrency (``concurrency``; rate inf) that meets every bound. It doubles from
--vllm-slo-start until a probe fails, then bisects to --vllm-slo-tolerance, in at most
--vllm-slo-max-probes points of random 512/256 prompts (--vllm-input-len/--vllm-output-len).
A rate probe sends --vllm-num-prompts prompts, or sends for --vllm-duration seconds; a
concurrency probe at least --vllm-prompts-per-concurrency times its cap. Skipped, with the
reason, when no --vllm-slo is given.
"""

from __future__ import annotations

import pytest

from pytest_vllm_serve.bench.workloads import RandomWorkload

pytestmark = pytest.mark.benchmark


def test_slo_search(vllm_slo_search):
    s = vllm_slo_search.settings

    def workload(value: float) -> RandomWorkload:
        count = s.prompts_for(int(value)) if s.slo_search == "concurrency" else s.num_prompts
        return RandomWorkload(s.input_len, s.output_len, count, s.seed)

    result = vllm_slo_search.run(workload)
    assert result.best is not None  # (the search fails the test itself, with the reason, otherwise)
