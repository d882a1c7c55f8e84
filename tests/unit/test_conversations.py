"""Multi-turn conversations: the workload's sessions (synthetic and from a ShareGPT file), the
metrics per turn, and the plan; sent through the plugin against servers in
tests/integration/vllm/test_workloads_against_servers.py."""

from __future__ import annotations

import json

import pytest

from pytest_vllm_serve.bench.loadgen.conversations import turn_indices
from pytest_vllm_serve.bench.metrics import per_turn_metrics
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.workloads import ConversationWorkload, LocalTokenizer, synthetic_multiturn
from pytest_vllm_serve.bench.workloads.conversation import has_multiturn
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.models import ensure_tiny_model


@pytest.fixture(scope="module")
def tokenizer(vllm_session):
    return LocalTokenizer(ensure_tiny_model(vllm_session.settings.cache_dir))


def test_synthetic_sessions_have_their_turns_of_exact_length(tokenizer):
    workload = ConversationWorkload(sessions=3, turns=4, turn_len=24, output_len=6, seed=1)
    sessions = workload.conversations(tokenizer)
    assert len(sessions) == 3 and all(len(s.turns) == 4 for s in sessions)
    assert all(t.tokens == 24 == len(tokenizer.encode(t.text)) and t.output_len == 6 for s in sessions for t in s.turns)
    assert len({t.text for s in sessions for t in s.turns}) == 12  # every message its own
    assert sessions == workload.conversations(tokenizer)  # seeded
    assert [p.text for p in workload.prompts(tokenizer)] == [s.turns[0].text for s in sessions]
    assert workload.length_limit() == (120, "4 turns of input 24 + output 6")
    assert turn_indices(sessions) == [0, 1, 2, 3] * 3


def test_sessions_from_a_sharegpt_file_keep_their_turns_and_answer_lengths(tokenizer, tmp_path):
    path = tmp_path / "multiturn.json"
    data = synthetic_multiturn(10, turns=4, seed=3)
    data.append({"conversations": [{"from": "human", "value": "only one turn"}, {"from": "gpt", "value": "ok"}]})
    path.write_text(json.dumps(data))
    workload = ConversationWorkload(sessions=20, turns=3, output_len=None, dataset_path=path, seed=2)
    sessions = workload.conversations(tokenizer)
    assert len(sessions) == 10  # the single-turn one is left out
    texts = {m["value"] for d in data for m in d["conversations"] if m["from"] == "human"}
    assert all(t.text in texts for s in sessions for t in s.turns)
    assert all(2 <= len(s.turns) <= 3 for s in sessions)
    answers = {m["value"] for d in data for m in d["conversations"] if m["from"] == "gpt"}
    lengths = {len(tokenizer.encode(a)) for a in answers}
    assert all(t.output_len in lengths for s in sessions for t in s.turns)  # each answer's own length
    assert workload.params()["dataset"] == "multiturn.json" and workload.length_limit() is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sessions": 0}, "sessions must be a positive integer"),
        ({"output_len": None}, "needs output_len"),
        ({"think_time": -1}, "think_time must be 0 or more"),
    ],
)
def test_bad_conversation_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConversationWorkload(**kwargs)


def test_a_file_without_multiturn_conversations_is_refused(tmp_path):
    path = tmp_path / "single.json"
    path.write_text(json.dumps([{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}]))
    with pytest.raises(ConfigError, match="has no multi-turn conversation"):
        ConversationWorkload(dataset_path=path, output_len=None)


def turn_record(index: int, send: float, ttft: float, prompt_tokens: int, error: str | None = None) -> RequestRecord:
    chunks = [] if error else [send + ttft, send + ttft + 0.01, send + ttft + 0.02]
    return RequestRecord(
        index=index, scheduled_time=send, dispatch_time=send, send_time=send, prompt_len=10,
        chunk_times=chunks, chunk_tokens=[1] * len(chunks), completion_tokens=len(chunks) or None,
        prompt_tokens=None if error else prompt_tokens, status=500 if error else 200, error=error,
        end_time=send + ttft + 0.02,
    )  # fmt: skip


def test_metrics_per_turn_show_the_growing_context():
    # two sessions of three turns; turn k's TTFT is 10 ms x k, its prompt 100 x k tokens;
    # session 2's third turn failed
    records = [turn_record(s * 3 + k, s + k, 0.01 * (k + 1), 100 * (k + 1)) for s in range(2) for k in range(3)]
    records[5] = turn_record(5, 3.0, 0.0, 0, error="HTTP 500: boom")
    figures = per_turn_metrics(records, [0, 1, 2] * 2, duration=4.0)
    assert list(figures) == ["1", "2", "3"]
    assert figures["1"]["completed"] == 2 and figures["1"]["median_ttft_ms"] == pytest.approx(10.0)
    assert figures["2"]["median_ttft_ms"] == pytest.approx(20.0) and figures["2"]["mean_prompt_tokens"] == 200
    assert (
        figures["3"]["completed"] == 1
        and figures["3"]["failed"] == 1
        and figures["3"]["p99_ttft_ms"] == pytest.approx(30.0)
    )
    assert "output_throughput" not in figures["1"]  # the turns share one duration: no throughputs
    failed = [turn_record(0, 0.0, 0.01, 100), turn_record(1, 1.0, 0.0, 0, error="HTTP 500: boom")]
    assert per_turn_metrics(failed, [0, 1], 2.0)["2"] == {"completed": 0.0, "failed": 1.0}


def test_a_file_is_told_multiturn_or_not(tmp_path):
    multi, single = tmp_path / "multi.json", tmp_path / "single.json"
    multi.write_text(json.dumps(synthetic_multiturn(3)))
    single.write_text(json.dumps([{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}]))
    assert has_multiturn(multi) and not has_multiturn(single)
