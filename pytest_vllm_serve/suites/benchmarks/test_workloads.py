"""Traffic shaped like what users send: shared prefixes, and a production trace replayed.

| test               | workload                                                  | arrivals             |
|--------------------|-----------------------------------------------------------|----------------------|
| test_shared_prefix | --vllm-prefix-count prefixes of --vllm-prefix-len tokens, | rate inf, max        |
|                    | each under distinct suffixes up to --vllm-input-len       | concurrency P        |
|                    | (shuffled)                                                |                      |
| test_trace_replay  | --vllm-trace (default: the package's synthetic Mooncake   | the trace's own      |
|                    | trace)                                                    | clock, sped up by    |
|                    |                                                           | --vllm-trace-speedup |
| test_conversation  | --vllm-conversation-sessions sessions of                  | every session at     |
|                    | --vllm-conversation-turns turns: each the whole history   | once, each turn      |
|                    | and a new message of --vllm-input-len tokens, asking      | after the last       |
|                    | --vllm-output-len (or the multi-turn conversations of     | answer + think time  |
|                    | --vllm-dataset-path)                                      |                      |

The prefix point runs P requests at a time (P = --vllm-prefix-count), so that a request mostly
finds its prefix computed by an earlier one of its group (requests that run in one batch cannot
share what none of them has computed yet). Its server metrics record the prefix cache's hit
rate, where the server reports it (``server_prefix_cache_hit_rate`` in summary.csv).
"""

from __future__ import annotations

import math

import pytest

from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import ConversationWorkload, PrefixWorkload, TraceWorkload, shipped_trace
from pytest_vllm_serve.bench.workloads.conversation import has_multiturn
from pytest_vllm_serve.errors import ConfigError

pytestmark = pytest.mark.benchmark


def test_shared_prefix(vllm_bench):
    s = vllm_bench.settings
    suffix = s.input_len - s.prefix_len
    if suffix <= 0:
        raise ConfigError(
            f"test_shared_prefix: --vllm-prefix-len {s.prefix_len} leaves no suffix within --vllm-input-len {s.input_len}.\n"
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


def test_trace_replay(vllm_bench):
    s = vllm_bench.settings
    workload = TraceWorkload(s.trace_path or shipped_trace(), speedup=s.trace_speedup, seed=s.seed)
    vllm_bench.run(workload, workload.schedule(), suite="trace")


def test_conversation(vllm_bench):
    s = vllm_bench.settings
    dataset = s.dataset_path
    if dataset is not None and not has_multiturn(dataset):
        raise ConfigError(
            f"test_conversation: --vllm-dataset-path {dataset} has no multi-turn conversation (two or more "
            "answered human turns).\n  fix: a ShareGPT file with multi-turn conversations, or no --vllm-dataset-path "
            "for synthetic turns of --vllm-input-len tokens"
        )
    workload = ConversationWorkload(
        sessions=s.conversation_sessions,
        turns=s.conversation_turns,
        turn_len=s.input_len,
        output_len=s.output_len if dataset is None or "vllm_output_len" in s.given else None,
        think_time=s.think_time,
        seed=s.seed,
        dataset_path=dataset,
    )
    vllm_bench.run(workload, Schedule(rate=math.inf, seed=s.seed), suite="conversation")
