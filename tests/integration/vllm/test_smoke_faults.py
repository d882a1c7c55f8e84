"""The shipped smoke suite against a server whose answers are not UTF-8 (latency server, --bad-utf8).

Each run is an inner pytest of ``--vllm-suite smoke`` attached with ``--vllm-url`` to the
project's latency test server, which is a real streaming HTTP server. With ``--bad-utf8``
the first token of every completion is the bytes ``t\\xffk``: in the JSON body, and in a
stream's first token chunk. ``/health`` and ``/v1/models`` stay clean, so the plugin attaches.
"""

from __future__ import annotations

import ast
import re

from pytest_vllm_serve.tools.latency_server import running

#: The smoke tests that meet a completion: all but test_health and test_models_lists_served_model.
GENERATING = 11

#: What the latency server does not implement: batched prompts, logprobs, echo, n > 1.
UNSUPPORTED = (
    "test_02_batch_of_two_prompts",
    "test_06_logprobs_five_alternatives_per_token",
    "test_08_echo",
    "test_09_n_equals_two",
)

FULL = re.compile(
    r"^(?P<endpoint>POST /v1/\S+) answered (?P<status>\d+) \((?P<type>[^)]+)\) with bytes that are not UTF-8: "
    r"invalid start byte at byte (?P<offset>\d+) of (?P<length>\d+), in (?P<excerpt>b'.*')$",
    re.MULTILINE,
)
POINTER = re.compile(
    r"^POST /v1/\S+ \((?P<type>[^)]+)\) answered bytes that are not UTF-8 too, at byte \d+: "
    r"the same fault as in (?P<first>\S+ \(POST /v1/\S+\)), reported above$",
    re.MULTILINE,
)


def smoke(pytester, url, *args):
    result = pytester.runpytest_subprocess(
        # -rN: no short summary, which repeats each message in full when CI is set (as in CI)
        "-p",
        "no:cacheprovider",
        "-rN",
        "--vllm-suite",
        "smoke",
        f"--vllm-url={url}",
        f"--vllm-results-dir={pytester.path / 'results'}",
        *args,
        timeout=120,
    )
    return result, result.stdout.str() + "\n" + result.stderr.str()


def check_full_report(text: str, url: str) -> re.Match:
    """The one full report: endpoint, status, content type, offset, an excerpt that holds the bad byte there, the fix."""
    reports = list(FULL.finditer(text))
    assert len(reports) == 1, text
    report = reports[0]
    assert report["status"] == "200"
    excerpt = ast.literal_eval(report["excerpt"])
    offset = int(report["offset"])
    assert b"t\xffk" in excerpt
    # The excerpt starts 32 bytes before the offset: the bad byte is where the offset says.
    assert excerpt.index(b"\xff") == min(offset, 32)
    assert offset < int(report["length"])
    fix = f"fix: the server at {url} is not speaking OpenAI's API as UTF-8 JSON/SSE"
    assert text.count(fix) == 1, text
    return report


def test_answers_that_are_not_utf8_are_reported_once_and_pointed_back_to(pytester):
    """11 tests meet the fault: the first says what and where, the other 10 point back to it in one line."""
    with running(bad_utf8=True) as url:
        result, text = smoke(pytester, url)
    result.assert_outcomes(passed=2, failed=GENERATING)
    assert "UnicodeDecodeError" not in text
    assert "Traceback" not in text
    report = check_full_report(text, url)
    # The first test in the file that posts is the chat check, on a JSON (non-stream) answer.
    assert report["endpoint"] == "POST /v1/chat/completions"
    assert report["type"] == "application/json"
    pointers = list(POINTER.finditer(text))
    assert len(pointers) == GENERATING - 1, text
    assert {p["first"] for p in pointers} == {"test_chat_completion_is_well_formed (POST /v1/chat/completions)"}
    assert sum(p["type"] == "text/event-stream" for p in pointers) == 1  # the streaming check: no silent U+FFFD


def test_a_stream_that_is_not_utf8_is_reported_with_its_offset(pytester):
    """The streaming check alone: the SSE parser would turn the bad byte into U+FFFD and pass; the suite must not."""
    with running(bad_utf8=True) as url:
        result, text = smoke(pytester, url, "-k", "test_05_streaming")
    result.assert_outcomes(failed=1)
    assert "UnicodeDecodeError" not in text
    report = check_full_report(text, url)
    assert report["endpoint"] == "POST /v1/completions"
    assert report["type"] == "text/event-stream"
    assert ast.literal_eval(report["excerpt"]).count(b"data: ") >= 1  # the offset counts the stream's bytes
    assert not POINTER.search(text)


def test_the_same_smoke_tests_pass_against_the_latency_server_without_faults(pytester):
    """Without the fault, the smoke tests the latency server can answer pass, so the failures above are the fault's.

    The latency server answers /health, /v1/models, and /v1/completions and /v1/chat/completions
    (JSON and SSE, ``max_tokens`` and ``stop`` respected), so 9 of the 13 smoke tests apply. It has
    no batched prompts, logprobs, echo or ``n`` > 1: those 4 tests (UNSUPPORTED) are left out with -k.
    """
    with running() as url:
        result, text = smoke(pytester, url, "-k", " and ".join(f"not {name}" for name in UNSUPPORTED))
    result.assert_outcomes(passed=13 - len(UNSUPPORTED))
    assert "not UTF-8" not in text


def test_the_left_out_tests_are_those_the_latency_server_cannot_answer(pytester):
    """The -k above hides only what the latency server lacks: each of those tests fails against it, on the feature."""
    with running() as url:
        result, text = smoke(pytester, url, "-k", " or ".join(UNSUPPORTED))
    result.assert_outcomes(failed=len(UNSUPPORTED))
    assert "not UTF-8" not in text
