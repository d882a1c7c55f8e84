"""What one request record measures: success, lengths, TTFT, TPOT, per-token ITL."""

from __future__ import annotations

from pytest_vllm_serve.bench.metrics.common import TokenCounter
from pytest_vllm_serve.bench.records import RequestRecord


def is_measured_success(record: RequestRecord) -> bool:
    """Succeeded as ``vllm bench serve`` counts it: no failure, and at least one chunk
    with a choice streamed.

    vLLM marks a stream without such a chunk as failed ("Never received a valid chunk
    to calculate TTFT"). It does count a stream that carried an ``{"error": ...}``
    event, or ended without ``[DONE]``, as completed; so does this function (the
    record's ``stream_error`` holds that, for :func:`is_strict_success`).
    """
    return record.success and bool(record.chunk_times)


def is_strict_success(record: RequestRecord) -> bool:
    """Succeeded as vLLM counts it, and its stream carried no error event and closed
    with ``[DONE]``."""
    return is_measured_success(record) and record.stream_error is None


def input_len(record: RequestRecord) -> int:
    """Prompt tokens: the server's usage when it reported them, else the workload's length.

    vLLM overwrites ``prompt_len`` with ``usage.prompt_tokens`` when that is not None.
    """
    return record.prompt_tokens if record.prompt_tokens is not None else record.prompt_len


def output_len(record: RequestRecord, count_tokens: TokenCounter | None = None) -> int:
    """Output tokens of a successful request, as vLLM counts them.

    vLLM takes ``usage.completion_tokens`` and, when that is missing or 0, tokenizes
    the generated text (``count_tokens`` here). Without a tokenizer vLLM writes 1;
    this function counts the tokens of the chunks instead (exact with ``token_ids``,
    one per text chunk without them), and so when ``count_tokens`` gives None.
    """
    if record.completion_tokens:
        return record.completion_tokens
    if count_tokens is not None:
        counted = count_tokens(record.generated_text)
        if counted is not None:
            return counted
    return sum(record.chunk_tokens)


def request_ttft(record: RequestRecord) -> float:
    """``record.ttft`` of a request with a token chunk (every measured success has one)."""
    ttft = record.ttft
    if ttft is None:  # the TypeError that arithmetic on None would raise, with a reason
        raise TypeError(f"request {record.index} has no token chunk, so no TTFT")
    return ttft


def request_latency(record: RequestRecord) -> float:
    """``record.latency`` of a request with a token chunk (every measured success has one)."""
    latency = record.latency
    if latency is None:  # the TypeError that arithmetic on None would raise, with a reason
        raise TypeError(f"request {record.index} has no token chunk, so no E2EL")
    return latency


def request_tpot(record: RequestRecord, n: int) -> float | None:
    """vLLM's TPOT of one successful request with ``n`` output tokens: the time after
    the first token chunk per further token; None when ``n <= 1``."""
    if n <= 1:
        return None
    return (request_latency(record) - request_ttft(record)) / (n - 1)


def per_token_itl(record: RequestRecord) -> list[float]:
    """Inter-token latency per token: one sample per token after the first token chunk.

    A chunk carrying ``k`` tokens that arrived ``g`` seconds after the previous
    token-carrying chunk contributes ``k`` samples of ``g / k``. Chunks with no token
    (a chat role chunk, an empty text) neither contribute nor split a gap; the tokens
    of the first token-carrying chunk have no gap (they belong to TTFT).
    """
    times, tokens = record.chunk_times, record.chunk_tokens
    if len(times) != len(tokens):
        raise ValueError(
            f"request {record.index}: {len(times)} chunk times but {len(tokens)} chunk token counts; "
            "the load generator must record one count per chunk"
        )
    out: list[float] = []
    previous: float | None = None
    for t, k in zip(times, tokens):
        if k <= 0:
            continue
        if previous is not None:
            out.extend([(t - previous) / k] * k)
        previous = t
    return out


def failure_reason(record: RequestRecord) -> str:
    """A short reason to group failures by: the error's first line (a traceback's last)."""
    if record.success:
        return "no chunk with a choice arrived"
    lines = [line.strip() for line in (record.error or "").splitlines() if line.strip()]
    if not lines:
        return "unknown error (empty message)"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= 200 else line[:197] + "..."
