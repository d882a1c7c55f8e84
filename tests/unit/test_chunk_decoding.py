"""A streamed chunk's fast decoding (msgspec, into the fields a record takes) gives the same
record, or the same error, as the general path through the standard library's JSON, for
chunks of every shape: vLLM's own, and anything a broken server may send."""

from __future__ import annotations

import json
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_vllm_serve.bench.client import _handle_any_event, _handle_event
from pytest_vllm_serve.bench.records import RequestRecord

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**70), st.floats(allow_nan=False), st.text(max_size=6))
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def maybe(key: str, values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


choice = st.builds(
    lambda *parts: {k: v for part in parts for k, v in part.items()},
    maybe("text", st.one_of(st.text(max_size=5), anything)),
    maybe("delta", st.one_of(st.builds(dict), maybe("content", st.one_of(st.text(max_size=5), anything)), anything)),
    maybe("token_ids", st.one_of(st.lists(st.integers(0, 2**40), max_size=4), anything)),
    maybe("index", st.integers(0, 3)),
)
usage = st.one_of(
    st.builds(
        lambda *parts: {k: v for part in parts for k, v in part.items()},
        maybe("prompt_tokens", st.one_of(st.integers(0, 10**6), anything)),
        maybe("completion_tokens", st.one_of(st.integers(0, 10**6), anything)),
    ),
    anything,
)
chunk = st.one_of(
    st.builds(
        lambda *parts: {k: v for part in parts for k, v in part.items()},
        maybe("choices", st.one_of(st.lists(choice, max_size=2), anything)),
        maybe("usage", usage),
        maybe("error", st.one_of(st.fixed_dictionaries({"message": st.text(max_size=5)}), anything)),
        maybe("id", st.text(max_size=4)),
    ),
    anything,
)


def outcome(handle, data: str) -> tuple:
    record = RequestRecord(index=0, scheduled_time=0.0)
    try:
        done = handle(data, record, 1.5)
    except Exception as exc:  # the run records the error's type and message
        return ("raised", type(exc).__name__, str(exc))
    return ("ok", done, asdict(record))


@settings(max_examples=1500, deadline=None)
@given(chunk=chunk)
def test_the_fast_decoding_gives_the_general_paths_outcome(chunk):
    data = json.dumps(chunk)
    assert outcome(_handle_event, data) == outcome(_handle_any_event, data)


@settings(max_examples=300, deadline=None)
@given(data=st.text(max_size=30))
def test_garbage_gives_the_general_paths_outcome(data):
    assert outcome(_handle_event, data) == outcome(_handle_any_event, data)


def test_vllms_chunks_fill_the_record():
    record = RequestRecord(index=0, scheduled_time=0.0)
    chat = '{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"token_ids":[5,6]}]}'
    assert _handle_event(chat, record, 1.0) is False
    assert _handle_event('{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}', record, 2.0) is False
    assert _handle_event("[DONE]", record, 3.0) is True
    assert (record.chunk_times, record.chunk_tokens, record.text_parts) == ([1.0], [2], ["hi"])
    assert (record.prompt_tokens, record.completion_tokens, record.first_content_time, record.done_time) == (
        7,
        2,
        1.0,
        3.0,
    )
