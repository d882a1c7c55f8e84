"""One streaming request, timed: the load generator's unit of work.

Sends a streaming chat or completions request with ``stream_options.include_usage``
and records, with ``time.perf_counter()``, the arrival of every chunk that carries
a choice, the tokens in it, the usage counts, and how the stream ended. Problems are
recorded on the record, never raised, and sorted as ``vllm bench serve`` sorts them:

* ``error`` (a failed request): a non-200 answer (with the body's message), an
  exception (a cut connection), a timeout, or a stream with no chunk with a choice.
* ``stream_error`` (still a completed request for vLLM, which reads past both): an
  in-stream ``{"error": ...}`` event, or a stream that ends cleanly without ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.sse import SSEParser
from pytest_vllm_serve.bench.stall import Activity

ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@dataclass(frozen=True)
class Prompt:
    """One request's input: text (or chat messages) and the lengths it was made for."""

    text: str
    prompt_len: int
    output_len: int
    messages: tuple[dict[str, str], ...] | None = None  # set for multi-turn chat datasets


@dataclass(frozen=True)
class RequestOptions:
    """What every request of a run carries besides its prompt."""

    model: str
    endpoint: str = "chat"  # "chat" or "completions"
    ignore_eos: bool = True
    token_ids: bool = False  # ask vLLM for token_ids per chunk (exact per-token ITL); off, as vllm bench serve
    timeout: float | None = None  # seconds for the whole request; None: no limit
    extra_body: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return ENDPOINTS[self.endpoint]

    def payload(self, prompt: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "stream": True, "stream_options": {"include_usage": True}}
        if self.endpoint == "chat":
            body["messages"] = list(prompt.messages) if prompt.messages else [{"role": "user", "content": prompt.text}]
            body["max_completion_tokens"] = prompt.output_len
        else:
            body["prompt"] = prompt.text
            body["max_tokens"] = prompt.output_len
        if self.ignore_eos:
            body["ignore_eos"] = True
        if self.token_ids:
            body["return_token_ids"] = True
        body.update(self.extra_body)
        return body

    def encode(self, prompt: Prompt) -> bytes:
        """The request body, ready to send. The load generator encodes every body
        before the clock starts, so JSON encoding is not part of the send."""
        return json.dumps(self.payload(prompt), ensure_ascii=False, separators=(",", ":")).encode()


def _error_message(status: int, body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message") if isinstance(err, dict) else None
        if message:
            return f"HTTP {status}: {message}"
    except ValueError:
        pass
    return f"HTTP {status}: {text[:300].strip() or '(empty body)'}"


def _chunk_tokens(choice: dict[str, Any]) -> int:
    ids = choice.get("token_ids")
    if ids is not None:
        return len(ids)
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return 1 if text else 0


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    text: str | None = None
    delta: _Delta | None = None
    token_ids: list[int] | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | msgspec.UnsetType | None = msgspec.UNSET
    completion_tokens: int | msgspec.UnsetType | None = msgspec.UNSET


class _Chunk(msgspec.Struct):
    """The fields of a streamed chunk that a record takes; the others are skipped unread."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = msgspec.UNSET


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _handle_event(data: str, record: RequestRecord, now: float) -> bool:
    """Apply one SSE data payload to the record. Returns True on [DONE].

    A chunk of the usual shape is decoded straight into the fields it sets (msgspec); any
    other payload (another shape, invalid JSON) takes the general path, whose outcome
    (record or error) is the same as it would be for every payload."""
    if data == "[DONE]":
        record.done_time = now
        return True
    try:
        chunk = _decode_chunk(data)
    except msgspec.MsgspecError:
        return _handle_any_event(data, record, now)
    if chunk.error is not msgspec.UNSET and not chunk.choices:
        return _handle_any_event(data, record, now)
    if chunk.choices:
        choice = chunk.choices[0]
        record.chunk_times.append(now)
        text = choice.delta.content if choice.delta is not None else choice.text
        ids = choice.token_ids
        record.chunk_tokens.append(len(ids) if ids is not None else 1 if text else 0)
        if text:
            record.text_parts.append(text)
            if record.first_content_time is None:
                record.first_content_time = now
    usage = chunk.usage
    if usage is not None:
        if usage.prompt_tokens is not msgspec.UNSET:
            record.prompt_tokens = usage.prompt_tokens
        if usage.completion_tokens is not msgspec.UNSET:
            record.completion_tokens = usage.completion_tokens
    return False


def _handle_any_event(data: str, record: RequestRecord, now: float) -> bool:
    """:func:`_handle_event` for any payload, through the standard library's JSON."""
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise ValueError(f"stream event is not a JSON object: {data[:100]!r}")
    if "error" in chunk and not chunk.get("choices"):
        # vLLM's client skips an event without choices and reads on (vLLM's server
        # follows its error event with [DONE]); the first such event is kept.
        err = chunk["error"]
        message = err.get("message") if isinstance(err, dict) else err
        if record.stream_error is None:
            record.stream_error = f"error event in stream: {message}"
        return False
    choices = chunk.get("choices")
    if choices:
        choice = choices[0]
        record.chunk_times.append(now)
        record.chunk_tokens.append(_chunk_tokens(choice))
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text:
            record.text_parts.append(text)
            if record.first_content_time is None:
                record.first_content_time = now
    usage = chunk.get("usage")
    if usage:
        record.prompt_tokens = usage.get("prompt_tokens", record.prompt_tokens)
        record.completion_tokens = usage.get("completion_tokens", record.completion_tokens)
    return False


JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class StreamClient:
    """The HTTP session the load generator streams with (aiohttp's, called directly: no
    layer between the request and aiohttp's C parser), and the server's base URL."""

    session: aiohttp.ClientSession
    base_url: str
    _urls: dict[str, URL] = field(default_factory=dict, init=False, repr=False)

    def url(self, path: str) -> URL:
        """``base_url`` + ``path``, parsed once (a base URL's own path is kept)."""
        found = self._urls.get(path)
        if found is None:
            found = self._urls[path] = URL(self.base_url.rstrip("/") + path)
        return found

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()


async def _stream(
    client: StreamClient,
    options: RequestOptions,
    body: bytes,
    record: RequestRecord,
    activity: Activity | None = None,
) -> None:
    clock = time.perf_counter
    record.send_time = clock()
    async with client.session.post(client.url(options.path), data=body, headers=JSON_HEADERS) as response:
        record.status = response.status
        if activity is not None:
            activity.last_byte = clock()
        if response.status != 200:
            record.error = _error_message(response.status, await response.read())
            return
        parser = SSEParser()
        done = False
        async for raw in response.content.iter_any():
            now = clock()
            if activity is not None:
                activity.last_byte = now
            for data in parser.feed_data(raw):
                if not done:
                    done = _handle_event(data, record, now)
        for event in parser.close():
            if not done:
                done = _handle_event(event.data, record, clock())
    if not record.chunk_times:
        seen = f" ({record.stream_error})" if record.stream_error else ""
        record.error = f"empty stream: no chunk with a choice arrived{seen}"
    elif not done and record.stream_error is None:
        record.stream_error = "the stream stopped without [DONE]"


async def send(
    client: StreamClient,
    options: RequestOptions,
    body: bytes,
    record: RequestRecord,
    activity: Activity | None = None,
) -> RequestRecord:
    """Send one streaming request (its body from :meth:`RequestOptions.encode`) and fill
    ``record``, ending with its ``end_time``. Never raises (except cancellation).
    ``activity`` is stamped with each arriving byte (stall detection)."""
    try:
        if options.timeout:
            async with asyncio.timeout(options.timeout):
                await _stream(client, options, body, record, activity)
        else:
            await _stream(client, options, body, record, activity)
    except TimeoutError:
        record.error = f"timeout: no complete answer within {options.timeout:g} s (--vllm-request-timeout)"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # recorded, never raised out of the run: aiohttp's own error names
        record.error = f"{type(exc).__name__}: {exc}"
    record.end_time = time.perf_counter()
    return record
