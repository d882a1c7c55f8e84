"""The four sweeps of the reference sweep.sh, one test id per point.

Grids: --vllm-sweep-rate, --vllm-sweep-concurrency, --vllm-sweep-input-len,
--vllm-sweep-output-len (defaults: the reference cheat sheet's). Fixed lengths:
512 in / 256 out for rate and concurrency (--vllm-input-len/--vllm-output-len),
output 128 for the input sweep and input 512 for the output sweep unless those
options are given.
"""

from __future__ import annotations

import math

import pytest

from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

pytestmark = pytest.mark.benchmark


def random_workload(s, input_len=None, output_len=None, num_prompts=None):
    return RandomWorkload(input_len or s.input_len, output_len or s.output_len, num_prompts or s.num_prompts, s.seed)


def fixed(s, option: str, default: int) -> int:
    """A sweep's fixed length: the option when the user gave it, else the reference value."""
    return getattr(s, option) if f"vllm_{option}" in s.given else default


def test_rate(vllm_bench, vllm_rate):
    s = vllm_bench.settings
    vllm_bench.run(
        random_workload(s),
        Schedule(rate=vllm_rate, burstiness=s.burstiness, seed=s.seed),
        suite="rate",
        params={"request_rate": vllm_rate},
    )


def test_concurrency(vllm_bench, vllm_concurrency):
    s = vllm_bench.settings
    vllm_bench.run(
        random_workload(s, num_prompts=s.prompts_for(vllm_concurrency)),  # K x concurrency, at least
        Schedule(rate=math.inf, max_concurrency=vllm_concurrency, seed=s.seed),
        suite="concurrency",
        params={"max_concurrency": vllm_concurrency},
    )


def test_input_len(vllm_bench, vllm_input_len):
    s = vllm_bench.settings
    vllm_bench.run(
        random_workload(s, input_len=vllm_input_len, output_len=fixed(s, "output_len", 128)),
        Schedule(rate=math.inf, seed=s.seed),
        suite="input",
    )


def test_output_len(vllm_bench, vllm_output_len):
    s = vllm_bench.settings
    vllm_bench.run(
        random_workload(s, input_len=fixed(s, "input_len", 512), output_len=vllm_output_len),
        Schedule(rate=math.inf, seed=s.seed),
        suite="output",
    )
