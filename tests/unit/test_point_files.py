"""What a point writes beside its metrics: vLLM's result file head and the all-failed evidence."""

from __future__ import annotations

import math

from pytest_vllm_serve.bench.loadgen.generator import LoadResult
from pytest_vllm_serve.bench.metrics import compute_metrics
from pytest_vllm_serve.bench.point.files import ResultHead, failed_result_file, vllm_result_file
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.schedule import Schedule


def _load(records: list[RequestRecord]) -> LoadResult:
    return LoadResult(
        records=records,
        warmup_records=[],
        t0=0.0,
        duration=2.0,
        offsets=[0.0] * len(records),
        client_cpu_seconds=0.5,
        processes=2,
    )


def _ok(index: int) -> RequestRecord:
    return RequestRecord(
        index=index,
        scheduled_time=0.0,
        send_time=0.0,
        prompt_len=4,
        expected_output_len=2,
        chunk_times=[0.1, 0.2],
        chunk_tokens=[1, 1],
        text_parts=["a", "b"],
        first_content_time=0.1,
        done_time=0.2,
        end_time=0.2,
        prompt_tokens=4,
        completion_tokens=2,
        status=200,
    )


def test_the_result_file_head_says_how_the_run_was_made():
    load = _load([_ok(0), _ok(1)])
    metrics = compute_metrics(load.records, load.duration)
    head = ResultHead(model="served", tokenizer="tok", endpoint="chat", num_prompts=2)
    result = vllm_result_file(head, metrics, load, Schedule(rate=math.inf, max_concurrency=8), None)
    assert (result["backend"], result["endpoint_type"]) == ("openai-chat", "openai-chat")
    assert (result["model_id"], result["tokenizer_id"], result["num_prompts"]) == ("served", "tok", 2)
    assert (result["request_rate"], result["max_concurrency"]) == ("inf", 8)
    assert (result["client_processes"], result["client_cpu_seconds"]) == (2, 0.5)
    assert result["completed"] == 2
    completions = vllm_result_file(ResultHead("m", "m", "completions", 2), metrics, load, Schedule(rate=4.0), None)
    assert (completions["backend"], completions["request_rate"]) == ("openai", 4.0)


def test_an_all_failed_point_keeps_its_errors_by_reason():
    failed = [RequestRecord(index=i, scheduled_time=0.0, error=e) for i, e in enumerate(["503", "503", "timeout"])]
    result = failed_result_file(_load(failed), "every request failed", partial=None)
    assert result["errors_by_reason"] == {"503": 2, "timeout": 1}
    assert (result["completed"], result["failed"], result["error"]) == (0, 3, "every request failed")
