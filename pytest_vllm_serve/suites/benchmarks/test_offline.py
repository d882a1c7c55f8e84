"""The offline benchmark (the reference offline_bench): LLM.generate, no API server.

Model and TP/PP/DP/EP come from the vllm marker and options, lengths and
counts from the benchmark options.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.benchmark


def test_offline_random(vllm_offline):
    s = vllm_offline.settings
    result = vllm_offline.run(input_len=s.input_len, output_len=s.output_len, num_prompts=s.num_prompts)
    assert result.metrics.num_requests == s.num_prompts


def test_offline_sharegpt(vllm_offline):
    s = vllm_offline.settings
    if s.dataset_path is None:
        pytest.skip("the sharegpt offline point needs a local dataset: pass --vllm-dataset-path FILE")
    result = vllm_offline.run(dataset_path=s.dataset_path, num_prompts=s.num_prompts)
    assert result.metrics.num_requests > 0
