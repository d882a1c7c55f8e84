"""The shared-prefix and trace-replay workloads (bench/workloads/synthetic.py, trace.py) and the
replayed schedule, with the built-in model's own tokenizer; through the plugin against servers:
tests/integration/vllm/test_workloads_against_servers.py."""

from __future__ import annotations

import json
import math

import pytest

from pytest_vllm_serve.bench.schedule import Schedule, arrival_offsets, requests_for_duration, target_rate
from pytest_vllm_serve.bench.workloads import (
    LocalTokenizer,
    PrefixWorkload,
    TraceWorkload,
    read_trace,
    shipped_trace,
    synthetic_trace,
)
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.models import ensure_tiny_model


@pytest.fixture(scope="module")
def tokenizer(vllm_session):
    return LocalTokenizer(ensure_tiny_model(vllm_session.settings.cache_dir))


def test_prefix_prompts_share_one_of_p_prefixes_in_a_shuffled_order(tokenizer):
    workload = PrefixWorkload(num_prefixes=3, prefix_len=40, suffixes_per_prefix=4, suffix_len=20, output_len=8, seed=5)
    prompts = workload.prompts(tokenizer)
    assert len(prompts) == workload.num_prompts == 12 and len({p.text for p in prompts}) == 12
    heads = [tokenizer.decode(tokenizer.encode(p.text)[:40]) for p in prompts]
    assert len(set(heads)) == 3 and all(heads.count(h) == 4 for h in set(heads))
    assert heads != sorted(heads, key=heads.index)  # shuffled: not grouped by prefix
    assert all(abs(len(tokenizer.encode(p.text)) - 60) <= 1 and p.output_len == 8 for p in prompts)
    assert prompts == workload.prompts(tokenizer)  # seeded
    assert workload.length_limit() == (68, "input 60 + output 8")
    assert workload.params()["num_prefixes"] == 3 and workload.params()["prefix_len"] == 40


def test_a_replay_sends_each_request_at_its_own_offset():
    schedule = Schedule.replay([0.0, 0.5, 0.5, 2.0])
    assert arrival_offsets(4, schedule) == [0.0, 0.5, 0.5, 2.0]
    assert schedule.rate == 2.0 and target_rate(schedule, [0.0, 0.5, 0.5, 2.0]) == 1.5
    assert requests_for_duration(schedule, 30, 4) is None  # a replay sends what it replays
    assert "replay of 4 requests over 2 s" in schedule.describe()
    with pytest.raises(ConfigError, match="must not decrease"):
        Schedule.replay([1.0, 0.5])
    with pytest.raises(ConfigError, match="one finite, non-negative offset"):
        Schedule.replay([])
    with pytest.raises(ConfigError, match="2 offsets for 3 requests"):
        arrival_offsets(3, Schedule.replay([0.0, 1.0]))
    assert Schedule.replay([3.0, 3.0]).rate == math.inf


def write_trace(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_trace_requests_share_the_prefix_their_hash_ids_share(tokenizer, tmp_path):
    rows = [
        {"timestamp": 1000, "input_length": 50, "output_length": 4, "hash_ids": [7, 8]},
        {"timestamp": 1500, "input_length": 45, "output_length": 6, "hash_ids": [7, 9]},
        {"timestamp": 3000, "input_length": 30, "output_length": 5, "hash_ids": [7]},
        {"timestamp": 3000, "input_length": 25, "output_length": 5, "hash_ids": []},
    ]
    workload = TraceWorkload(write_trace(tmp_path / "t.jsonl", rows), speedup=2, block_size=20)
    prompts = workload.prompts(tokenizer)
    ids = [tokenizer.encode(p.text) for p in prompts]
    block = tokenizer.decode(ids[0][:20])
    assert prompts[1].text.startswith(block) and prompts[2].text.startswith(block)  # hash id 7, shared
    assert tokenizer.decode(ids[0][20:40]) != tokenizer.decode(ids[1][20:40])  # 8 and 9 differ
    assert not prompts[3].text.startswith(block)
    assert [p.output_len for p in prompts] == [4, 6, 5, 5]
    assert all(abs(p.prompt_len - r["input_length"]) <= 1 for p, r in zip(prompts, rows))
    assert all(p.prompt_len == len(i) for p, i in zip(prompts, ids))
    assert arrival_offsets(4, workload.schedule()) == [0.0, 0.25, 1.0, 1.0]  # from the first, twice as fast
    assert workload.length_limit()[0] == 54 and workload.params()["speedup"] == 2


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "holds no request"),
        ('{"timestamp": 1, "input_length": 5}\n', "line 1: not a trace request"),
        ('{"timestamp": 1, "input_length": 5, "output_length": 5}\nnot json\n', "line 2"),
        ('{"timestamp": 1, "input_length": 0, "output_length": 5}\n', "lengths must be positive"),
    ],
)
def test_a_bad_trace_is_refused_with_the_line_and_the_fix(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        TraceWorkload(path)


def test_a_missing_trace_and_a_bad_speedup_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_trace(tmp_path / "none.jsonl")
    with pytest.raises(ConfigError, match="--vllm-trace-speedup must be a positive number"):
        TraceWorkload(shipped_trace(), speedup=0)


def test_the_shipped_trace_is_the_synthetic_one_and_shares_prefixes():
    rows = [json.loads(line) for line in shipped_trace().read_text().splitlines()]
    assert rows == synthetic_trace()
    requests = read_trace(shipped_trace())
    assert len(requests) == 48 and 15_000 < requests[-1].timestamp_ms < 30_000
    firsts = [r.hash_ids[0] for r in requests if r.hash_ids]
    assert max(firsts.count(h) for h in set(firsts)) >= 5  # shared prefixes
