"""Sending multi-turn conversations: each session a chain of requests, each turn after the last answer.

Session *s* starts at ``t0 + offset[s]`` (the point's arrival schedule). Its turn k is sent
with the whole history (every earlier user message and the server's answer to it) and the new
user message; when the answer has streamed in and ``think_time`` has passed, turn k+1 is due.
A turn's record is scheduled at that due time, so a client that falls behind shows as send
lag, as for independent requests. Under a concurrency cap, each turn holds one slot while it
streams (not while the session thinks). A failed turn ends its session: there is no answer to
build the next turn on, and the turns left are recorded as not sent.

Request ``index`` numbers run session by session: session s's turn k is
``first[s] + k``. ``turns[index]`` says which turn a record is (for per-turn metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from pytest_vllm_serve.bench.client import Prompt, RequestOptions, StreamClient, send
from pytest_vllm_serve.bench.loadgen.drive import SPIN_WINDOW, Abort, Slots, not_sent
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.stall import Activity
from pytest_vllm_serve.bench.workloads.conversation import Conversation


def turn_indices(conversations: Sequence[Conversation]) -> list[int]:
    """Each request index's turn number (0-based), session by session."""
    return [k for c in conversations for k in range(len(c.turns))]


async def _sleep_until(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > SPIN_WINDOW:
        await asyncio.sleep(delay - SPIN_WINDOW)
    while time.perf_counter() < when:
        await asyncio.sleep(0)


async def drive_conversations(
    client: StreamClient,
    options: RequestOptions,
    conversations: Sequence[Conversation],
    offsets: Sequence[float],
    t0: float,
    slots: Slots | None,
    think_time: float = 0.0,
    on_done: Callable[[RequestRecord], None] | None = None,
    abort: Abort | None = None,
    activity: Activity | None = None,
) -> list[RequestRecord]:
    """Run every session; one record per turn, in index order (see the module's docstring)."""
    records: dict[int, RequestRecord] = {}
    first, index = [], 0
    for conversation in conversations:
        first.append(index)
        index += len(conversation.turns)

    async def session(s: int) -> None:
        history: list[dict[str, str]] = []
        due = t0 + offsets[s]
        context = 0  # tokens of the history so far, as the workload made them
        for k, turn in enumerate(conversations[s].turns):
            await _sleep_until(due)
            history.append({"role": "user", "content": turn.text})
            prompt = Prompt(turn.text, context + turn.tokens, turn.output_len, messages=tuple(history))
            record = RequestRecord(
                index=first[s] + k,
                scheduled_time=due,
                dispatch_time=time.perf_counter(),
                prompt_len=prompt.prompt_len,
                expected_output_len=turn.output_len,
            )
            records[record.index] = record
            async with slots if slots is not None else contextlib.nullcontext():
                if activity is not None:
                    activity.started(time.perf_counter())
                try:
                    await send(client, options, options.encode(prompt), record, activity)
                finally:
                    if activity is not None:
                        activity.ended()
            if on_done is not None:
                on_done(record)
            if not record.success:
                return  # no answer to build the next turn on
            history.append({"role": "assistant", "content": record.generated_text})
            context = prompt.prompt_len + (record.completion_tokens or turn.output_len)
            due = time.perf_counter() + think_time

    tasks = [asyncio.create_task(session(s)) for s in range(len(conversations))]
    reason = await _wait(tasks, abort)
    return _in_order(conversations, first, records, t0, reason)


def _in_order(
    conversations: Sequence[Conversation],
    first: Sequence[int],
    records: dict[int, RequestRecord],
    t0: float,
    reason: str | None,
) -> list[RequestRecord]:
    """Every turn's record in index order: a turn never sent is recorded as such, with why, and
    one cut in flight by the abort ends now, with the abort's reason."""
    stopped = time.perf_counter()
    out = []
    for s, conversation in enumerate(conversations):
        for k, turn in enumerate(conversation.turns):
            record = records.get(first[s] + k)
            if record is None:
                why = reason or "an earlier turn of its conversation failed"
                out.append(not_sent(first[s] + k, Prompt(turn.text, turn.tokens, turn.output_len), t0, why))
                continue
            if record.end_time is None:  # cancelled in flight by the abort
                record.end_time = stopped
                record.error = record.error or f"aborted: {reason}"
            out.append(record)
    return out


async def _wait(tasks: list[asyncio.Task[None]], abort: Abort | None) -> str | None:
    """Wait for every session, polling ``abort`` twice a second; on a reason, cancel them all."""
    pending = set(tasks)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=0.5 if abort else None)
        reason = abort() if abort is not None and pending else None
        if reason:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return reason
    for task in tasks:
        task.result()  # a bug in a session surfaces here
    return None
