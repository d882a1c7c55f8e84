"""The server's counts over a measured phase against the client's (docs/server-metrics.md).

A mismatch is a warning, in the point's JSON and on the progress writer: never silent, never a
failure (another client on a shared --vllm-url server, or a request the client gave up on,
makes one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.server_metrics.parse import Snapshot

#: A scrape answered this many intervals (and at least LATE_MIN_S) after its GET is late.
LATE_INTERVALS = 5
LATE_MIN_S = 1.0


def client_prompt_tokens(records: Iterable[RequestRecord]) -> int | None:
    """The sum of the measured requests' ``usage.prompt_tokens`` (the chat template included);
    None when a completed request's stream had no usage."""
    total = 0
    for record in records:
        if record.prompt_tokens is None:
            if record.success:
                return None
            continue
        total += record.prompt_tokens
    return total


def cross_checks(
    figures: dict[str, float], *, output_tokens: int, prompt_tokens: int | None, completed: int
) -> list[str]:
    """Δ generation tokens == the client's total_output_tokens; Δ prompt tokens == the sum of
    usage.prompt_tokens; the request histograms' count == completed. One line per mismatch."""
    pairs = [
        ("vllm:generation_tokens_total", "generation_tokens", output_tokens, "the client's total_output_tokens"),
        ("vllm:prompt_tokens_total", "prompt_tokens", prompt_tokens, "the sum of the requests' usage.prompt_tokens"),
        ("vllm:e2e_request_latency_seconds_count", "e2e_count", completed, "the client's completed requests"),
    ]
    warnings = []
    for metric, key, client, what in pairs:
        server = figures.get(key)
        if server is None or client is None:
            continue
        if round(server) != client:
            warnings.append(f"server {metric} grew by {server:g} over the measured phase, but {what} is {client}")
    return warnings


def late_scrapes(inside: Sequence[Snapshot], interval: float) -> str | None:
    """A warning when most scrapes during the phase were answered late: a server whose frontend
    is too busy to answer /metrics (vLLM on a few CPU cores, at saturation) answers them only when
    the load eases, so their gauges (running, waiting, KV cache) are of a later moment than
    their time stamps say, often after the phase. The counters' growth over the phase, and the
    histograms, come from the scrapes at its ends, and are not affected."""
    timed = [s for s in inside if s.took is not None]
    limit = max(LATE_MIN_S, LATE_INTERVALS * interval)
    late = [s for s in timed if s.took is not None and s.took > limit]
    if not timed or 2 * len(late) <= len(timed):
        return None
    worst = max(s.took for s in late if s.took is not None)
    return (
        f"{len(late)} of {len(timed)} scrapes during the phase were answered more than {limit:g} s after "
        f"they were sent (up to {worst:.1f} s): the server's frontend was too busy to answer /metrics, so the "
        "gauges (running, waiting, KV cache usage) lag the phase; the counters and histograms do not"
    )
