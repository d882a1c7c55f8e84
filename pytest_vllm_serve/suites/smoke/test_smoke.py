"""The smoke suite: endpoint checks against a vLLM server.

Runs against the server the plugin launches (default: the built-in tiny model)
or any OpenAI-compatible server given with ``--vllm-url``. Each check tests
structure and counts, never the model's text.

The numbered checks are the ten of the reference ``test.sh``.
"""

from __future__ import annotations

import json
import os

import pytest

from pytest_vllm_serve.bench.sse import SSEParser

pytestmark = pytest.mark.smoke


#: The first answer that was not UTF-8, per server URL: "test (endpoint)". Later tests that
#: meet the same fault point back to that report instead of repeating it.
NOT_UTF8: dict[str, str] = {}


def utf8_text(server, response, body: bytes) -> str:
    """``body`` as text. A body that is not UTF-8 fails the test, in full the first time per server."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        error = exc  # fail outside the except block, so the report is not chained to a raw traceback
    fail_not_utf8(server, response, body, error)


def fail_not_utf8(server, response, body: bytes, error: UnicodeDecodeError) -> None:
    endpoint = f"{response.request.method} {response.request.url.path}"
    content_type = response.headers.get("content-type", "no content-type")
    first = NOT_UTF8.get(server.url)
    if first is not None:
        pytest.fail(
            f"{endpoint} ({content_type}) answered bytes that are not UTF-8 too, at byte {error.start}: "
            f"the same fault as in {first}, reported above",
            pytrace=False,
        )
    # PYTEST_CURRENT_TEST is "path::test_name (call)".
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].rpartition("::")[2] or "an earlier test"
    NOT_UTF8[server.url] = f"{test} ({endpoint})"
    excerpt = body[max(0, error.start - 32) : error.end + 16]
    pytest.fail(
        f"{endpoint} answered {response.status_code} ({content_type}) with bytes that are not UTF-8: "
        f"{error.reason} at byte {error.start} of {len(body)}, in {excerpt!r}\n"
        f"  fix: the server at {server.url} is not speaking OpenAI's API as UTF-8 JSON/SSE; check what answers "
        "there (a server that is not OpenAI-compatible, or a proxy in between that rewrites its answers)",
        pytrace=False,
    )


def json_body(server, response) -> object:
    return json.loads(utf8_text(server, response, response.content))


def post(server, path: str, body: dict) -> dict:
    response = server.client.post(path, json={"model": server.model, **body})
    assert response.status_code == 200, f"{path} answered {response.status_code}: {response.text[:500]}"
    return json_body(server, response)


def assert_usage(usage: dict, max_tokens: int | None = None) -> None:
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if max_tokens is not None:
        assert usage["completion_tokens"] <= max_tokens


# -- base checks -----------------------------------------------------------------


def test_health(vllm_server):
    assert vllm_server.client.get("/health").status_code == 200


def test_models_lists_served_model(vllm_server):
    response = vllm_server.client.get("/v1/models")
    assert response.status_code == 200
    ids = [m["id"] for m in json_body(vllm_server, response)["data"]]
    assert vllm_server.model in ids


def test_chat_completion_is_well_formed(vllm_server):
    body = post(
        vllm_server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
    )
    assert body["object"] == "chat.completion"
    assert body["model"] == vllm_server.model
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert_usage(body["usage"], 16)


# -- the ten checks of the reference test.sh -------------------------------------------


def test_01_completions(vllm_server):
    body = post(vllm_server, "/v1/completions", {"prompt": "Hello", "max_tokens": 10})
    assert body["object"] == "text_completion"
    assert len(body["choices"]) == 1
    assert isinstance(body["choices"][0]["text"], str)
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert_usage(body["usage"], 10)


def test_02_batch_of_two_prompts(vllm_server):
    body = post(vllm_server, "/v1/completions", {"prompt": ["Once", "In"], "max_tokens": 8})
    assert sorted(c["index"] for c in body["choices"]) == [0, 1]
    assert all(isinstance(c["text"], str) for c in body["choices"])
    assert body["usage"]["completion_tokens"] <= 2 * 8


def test_03_chat(vllm_server):
    body = post(
        vllm_server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}
    )
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert_usage(body["usage"], 10)


def test_04_sampling_temperature_top_p(vllm_server):
    body = post(
        vllm_server,
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10, "temperature": 0.9, "top_p": 0.95},
    )
    assert len(body["choices"]) == 1
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert_usage(body["usage"], 10)


def test_05_streaming_sse_in_order_ending_in_done(vllm_server):
    payload = {
        "model": vllm_server.model,
        "prompt": "Hello",
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parser = SSEParser()
    events = []
    received = bytearray()
    with vllm_server.client.stream("POST", "/v1/completions", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            received += chunk
            events += parser.feed(chunk)
    events += parser.close()
    # The parser turns bytes that are not UTF-8 into U+FFFD, as the SSE format says; a server must not send them.
    utf8_text(vllm_server, response, bytes(received))
    assert not parser.has_partial
    assert events, "no SSE events"
    assert events[-1].data == "[DONE]", "the stream must end in data: [DONE]"
    assert sum(e.data == "[DONE]" for e in events) == 1
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1, "all chunks belong to one completion"
    token_chunks = [c for c in chunks if c["choices"]]
    usage_chunks = [c for c in chunks if c.get("usage") and not c["choices"]]
    assert token_chunks, "no token chunks"
    assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0], "usage comes last, once"
    finishes = [i for i, c in enumerate(token_chunks) if c["choices"][0].get("finish_reason")]
    assert finishes == [len(token_chunks) - 1], "finish_reason appears once, on the last token chunk"
    usage = usage_chunks[0]["usage"]
    assert_usage(usage, 12)
    assert len(token_chunks) <= usage["completion_tokens"] + 1


def test_06_logprobs_five_alternatives_per_token(vllm_server):
    body = post(vllm_server, "/v1/completions", {"prompt": "Hello", "max_tokens": 6, "logprobs": 5})
    logprobs = body["choices"][0]["logprobs"]
    n = body["usage"]["completion_tokens"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == n
    for alternatives, chosen in zip(logprobs["top_logprobs"], logprobs["token_logprobs"]):
        # Five alternatives; a sixth when the sampled token is not among them.
        assert len(alternatives) in (5, 6), alternatives
        assert all(value <= 0.0 for value in alternatives.values())
        assert chosen <= 0.0


def test_07_stop_sequence(vllm_server):
    body = post(vllm_server, "/v1/completions", {"prompt": "1.", "max_tokens": 20, "stop": ["3."]})
    choice = body["choices"][0]
    assert "3." not in choice["text"]
    assert choice["finish_reason"] in ("stop", "length")
    if choice["finish_reason"] == "length":
        assert body["usage"]["completion_tokens"] == 20


def test_08_echo(vllm_server):
    prompt = "Hello there"
    body = post(vllm_server, "/v1/completions", {"prompt": prompt, "max_tokens": 5, "echo": True})
    assert body["choices"][0]["text"].startswith(prompt)


def test_09_n_equals_two(vllm_server):
    body = post(vllm_server, "/v1/completions", {"prompt": "Hello", "max_tokens": 5, "n": 2})
    assert sorted(c["index"] for c in body["choices"]) == [0, 1]
    assert body["usage"]["completion_tokens"] <= 2 * 5


def test_10_max_tokens_respected(vllm_server):
    body = post(vllm_server, "/v1/completions", {"prompt": "Hello", "max_tokens": 7})
    used = body["usage"]["completion_tokens"]
    assert 1 <= used <= 7
    if body["choices"][0]["finish_reason"] == "length":
        assert used == 7
