"""Metrics per turn of a multi-turn point: how TTFT and the others move as the context grows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_vllm_serve.bench.metrics.common import DEFAULT_PERCENTILES, TokenCounter
from pytest_vllm_serve.bench.metrics.compute import compute_metrics
from pytest_vllm_serve.bench.metrics.names import metric_values
from pytest_vllm_serve.bench.records import RequestRecord

#: The metrics a turn reports (throughputs are left out: the turns share one duration).
TURN_METRICS = (
    "completed",
    "failed",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
)


def per_turn_metrics(
    records: Sequence[RequestRecord],
    turns: Sequence[int],
    duration: float,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
    count_tokens: TokenCounter | None = None,
) -> dict[str, dict[str, float]]:
    """``{"1": {...}, "2": {...}}``: each turn's (1-based) metrics over the sessions that reached
    it, with ``mean_prompt_tokens`` (the server's count: the whole history and the template).
    ``turns[record.index]`` is the record's 0-based turn. A turn that no session sent is left out."""
    by_turn: dict[int, list[RequestRecord]] = {}
    for record in records:
        by_turn.setdefault(turns[record.index], []).append(record)
    pcts = tuple(percentiles)
    out: dict[str, dict[str, float]] = {}
    for turn in sorted(by_turn):
        sent = by_turn[turn]
        if not any(r.success for r in sent):
            out[str(turn + 1)] = {"completed": 0.0, "failed": float(len(sent))}
            continue
        values = metric_values(compute_metrics(sent, duration, pcts, count_tokens=count_tokens))
        figures = {k: float(values[k]) for k in TURN_METRICS if k in values}
        prompt_tokens = [r.prompt_tokens for r in sent if r.success and r.prompt_tokens is not None]
        if prompt_tokens:
            figures["mean_prompt_tokens"] = sum(prompt_tokens) / len(prompt_tokens)
        out[str(turn + 1)] = figures
    return out
