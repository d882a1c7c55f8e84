"""Traffic shaped like what users send: shared prefixes, and a production trace replayed.

| test        | workload                                                         | arrivals            |
|-------------|------------------------------------------------------------------|---------------------|
| test_prefix | --vllm-prefix-count prefixes of --vllm-prefix-len tokens, each   | rate inf, max       |
|             | under distinct suffixes up to --vllm-input-len (shuffled)        | concurrency P       |
| test_trace  | --vllm-trace (default: the package's synthetic Mooncake trace)   | the trace's own     |
|             |                                                                  | clock, sped up by   |
|             |                                                                  | --vllm-trace-speedup|

The prefix point runs P requests at a time (P = --vllm-prefix-count), so that a request mostly
finds its prefix computed by an earlier one of its group (requests that run in one batch cannot
share what none of them has computed yet). Its server metrics record the prefix cache's hit
rate, where the server reports it (``server_prefix_cache_hit_rate`` in summary.csv).
"""

from __future__ import annotations

import math

import pytest

from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import PrefixWorkload, TraceWorkload, shipped_trace
from pytest_vllm_serve.errors import ConfigError

pytestmark = pytest.mark.benchmark


def test_prefix(vllm_bench):
    s = vllm_bench.settings
    suffix = s.input_len - s.prefix_len
    if suffix <= 0:
        raise ConfigError(
            f"test_prefix: --vllm-prefix-len {s.prefix_len} leaves no suffix within --vllm-input-len {s.input_len}.\n"
            "  fix: a prefix shorter than the input length"
        )
    workload = PrefixWorkload(
        num_prefixes=s.prefix_count,
        prefix_len=s.prefix_len,
        suffixes_per_prefix=max(1, s.num_prompts // s.prefix_count),
        suffix_len=suffix,
        output_len=s.output_len,
        seed=s.seed,
    )
    schedule = Schedule(rate=math.inf, max_concurrency=s.prefix_count, seed=s.seed)
    vllm_bench.run(workload, schedule, suite="prefix", params={"max_concurrency": s.prefix_count})


def test_trace(vllm_bench):
    s = vllm_bench.settings
    workload = TraceWorkload(s.trace_path or shipped_trace(), speedup=s.trace_speedup, seed=s.seed)
    vllm_bench.run(workload, workload.schedule(), suite="trace")
