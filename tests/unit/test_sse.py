"""The incremental SSE parser: splits anywhere, garbage never raises (coverage-guided fuzzing:
tests/integration/vllm/test_sse_fuzzing.py)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_vllm_serve.bench.sse import SSEEvent, SSEParser, parse_all


def pieces(payload: bytes, cuts: list[int]) -> list[bytes]:
    """The payload cut at the given points (modulo its length + 1)."""
    points = sorted({c % (len(payload) + 1) for c in cuts}) + [len(payload)]
    return [payload[start:end] for start, end in zip([0, *points], points)]


def feed_in_pieces(payload: bytes, cuts: list[int]) -> list[SSEEvent]:
    parser = SSEParser()
    events = [event for piece in pieces(payload, cuts) for event in parser.feed(piece)]
    return events + parser.close()


def vllm_like_stream(texts: list[str], newline: str) -> bytes:
    out = []
    for i, text in enumerate(texts):
        chunk = {"id": "cmpl-1", "choices": [{"index": 0, "text": text, "token_ids": [i]}]}
        out.append(f"data: {json.dumps(chunk, ensure_ascii=False)}{newline}{newline}")
    out.append(f"data: [DONE]{newline}{newline}")
    return "".join(out).encode()


def test_several_events_in_one_read_and_a_partial_one_waits():
    parser = SSEParser()
    first = parser.feed(b"data: a\n\ndata: b\n\ndata: c")
    assert [e.data for e in first] == ["a", "b"]
    assert parser.has_partial
    assert [e.data for e in parser.feed(b"\n\n")] == ["c"]
    assert not parser.has_partial


def test_fields_comments_multiline_and_crlf():
    events = parse_all(b": ping\r\nevent: delta\r\nid: 7\r\ndata: x\r\ndata: y\r\n\r\ndata:no-space\n\n")
    assert events == [SSEEvent("x\ny", "delta", "7"), SSEEvent("no-space", "message", "7")]


def test_an_event_without_its_blank_line_is_dropped_at_the_end():
    assert [e.data for e in parse_all(b"data: a\n\ndata: cut")] == ["a"]


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_arbitrary_splits_parse_identically(texts, newline, cuts):
    payload = vllm_like_stream(texts, newline)
    whole = parse_all(payload)
    assert feed_in_pieces(payload, cuts) == whole
    assert [json.loads(e.data)["choices"][0]["text"] for e in whole[:-1]] == texts
    assert whole[-1].data == "[DONE]"


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=20))
def test_garbage_never_raises_and_splits_do_not_matter(payload, cuts):
    assert feed_in_pieces(payload, cuts) == parse_all(payload)


def data_in_pieces(payload: bytes, cuts: list[int]) -> list[str]:
    """feed_data over the same pieces as feed_in_pieces."""
    parser = SSEParser()
    data = [item for piece in pieces(payload, cuts) for item in parser.feed_data(piece)]
    return data + [e.data for e in parser.close()]


def test_feed_data_splits_whole_events_and_parses_the_rest():
    parser = SSEParser()
    assert parser.feed_data(b"data: a\n\ndata: \n\n") == ["a", ""]  # the fast path
    assert parser.feed_data(b"data: b\n\ndata: c") == ["b"]  # a partial event: the parser
    assert parser.feed_data(b"\n\nevent: x\ndata: d\n\n") == ["c", "d"]
    assert parser.feed_data(b"data:e\n\n\n") == ["e"]


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_feed_data_gives_the_data_of_feeds_events(texts, newline, cuts):
    payload = vllm_like_stream(texts, newline)
    assert data_in_pieces(payload, cuts) == [e.data for e in feed_in_pieces(payload, cuts)]


@settings(max_examples=500, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=400),
        st.lists(
            st.sampled_from([b"data: ", b"data:", b"x", b"\n", b"\r", b"\n\n", b": c", b"event: e"]), max_size=40
        ).map(b"".join),
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=20),
)
def test_feed_data_on_garbage_gives_the_data_of_feeds_events(payload, cuts):
    assert data_in_pieces(payload, cuts) == [e.data for e in feed_in_pieces(payload, cuts)]
