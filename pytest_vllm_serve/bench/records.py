"""What the load generator records per request. Plain values, no behaviour.

All times are ``time.perf_counter()`` seconds in the process that sent the
request. A run spread over several client processes shares one clock because
``perf_counter`` is CLOCK_MONOTONIC on Linux, which is system-wide.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    index: int  # position in the workload
    scheduled_time: float  # when the arrival schedule said to send it
    dispatch_time: float = 0.0  # when the client got to it (late if the client is the bottleneck)
    send_time: float = 0.0  # when it was sent: after dispatch and any max_concurrency wait
    prompt_len: int = 0  # prompt tokens the workload intended
    expected_output_len: int = 0  # max_tokens asked for
    # One entry per streamed chunk that carried a choice (vllm bench serve's notion of a
    # token chunk): its arrival time and how many tokens it held.
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)  # generated text, chunk by chunk
    first_content_time: float | None = None  # first chunk with non-empty text
    done_time: float | None = None  # when [DONE] arrived
    prompt_tokens: int | None = None  # from the server's usage
    completion_tokens: int | None = None  # from the server's usage
    status: int | None = None  # HTTP status
    # A failure as vllm bench serve counts one (a non-200 answer, an exception, a
    # timeout, no chunk with a choice); None otherwise.
    error: str | None = None
    # What vllm bench serve does not count as a failure but a strict client would: an
    # in-stream {"error": ...} event, or a stream that ended without [DONE].
    stream_error: str | None = None
    end_time: float | None = None  # when the request ended, whatever its outcome
    warmup: bool = False

    @property
    def success(self) -> bool:
        """Succeeded as vllm bench serve counts it."""
        return self.error is None

    @property
    def strict_success(self) -> bool:
        """Succeeded, with no error event in the stream and a closing [DONE]."""
        return self.error is None and self.stream_error is None

    @property
    def generated_text(self) -> str:
        return "".join(self.text_parts)

    @property
    def ttft(self) -> float | None:
        """vllm bench serve: first chunk with choices minus send time."""
        return self.chunk_times[0] - self.send_time if self.chunk_times else None

    @property
    def latency(self) -> float | None:
        """vllm bench serve's E2EL: last token chunk minus send time."""
        return self.chunk_times[-1] - self.send_time if self.chunk_times else None

    @property
    def itl(self) -> list[float]:
        """Gaps between consecutive token chunks."""
        t = self.chunk_times
        return [t[i] - t[i - 1] for i in range(1, len(t))]

    @property
    def output_tokens(self) -> int:
        """Server-reported completion tokens (when not 0), else the tokens counted in
        chunks. The metrics count as vLLM does (``metrics.output_len``)."""
        return self.completion_tokens or sum(self.chunk_tokens)

    @property
    def send_lag(self) -> float:
        """The client's own lateness: dispatch minus schedule."""
        return self.dispatch_time - self.scheduled_time

    @property
    def queue_time(self) -> float:
        """Time waiting for a max_concurrency slot (vllm bench serve's client queue time)."""
        return self.send_time - self.dispatch_time
