"""The readiness strategy, driven by a scripted transport and a fake clock.

These check the waiting logic alone (what to do on each answer); the real
server path is covered by the smoke suite and the lifecycle tests.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_vllm_serve.errors import ServerStartError
from pytest_vllm_serve.serving.readiness import ReadinessProbe, served_models


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(polls):
    """One (health, models) answer per poll; the last one repeats.

    health: a status code or an exception to raise; models: (status, json body).
    """
    state = {"poll": -1}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            state["poll"] += 1
        health, models = polls[min(state["poll"], len(polls) - 1)]
        if request.url.path == "/health":
            if isinstance(health, Exception):
                raise health
            return httpx.Response(health)
        status, body = models
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


def make_probe(polls, clock, model="m", timeout=10.0, **kw):
    return ReadinessProbe(
        "http://x",
        model,
        timeout=timeout,
        interval=0.5,
        clock=clock,
        sleep=clock.sleep,
        transport=scripted(polls),
        **kw,
    )


def test_sleeps_between_polls_on_every_non_ready_answer():
    clock = FakeClock()
    polls = [
        (httpx.ConnectError("refused"), None),
        (503, None),
        (200, (503, {})),
        (200, (200, {"data": []})),
        (200, (200, {"data": [{"id": "other"}]})),
        (200, (200, {"data": [{"id": "m"}]})),
    ]
    assert make_probe(polls, clock).wait() == "m"
    assert clock.sleeps == [0.5] * 5


def test_fails_at_once_when_the_process_dies():
    clock = FakeClock()
    deaths = iter([None, None, "process 1 exited with code 2"])
    probe = make_probe(
        [(503, None)],
        clock,
        is_dead=lambda: next(deaths),
        log_tail=lambda n: ["error: unrecognized arguments: --bogus"],
    )
    with pytest.raises(ServerStartError) as info:
        probe.wait()
    message = str(info.value)
    assert "exited with code 2" in message
    assert "unrecognized arguments: --bogus" in message
    assert clock.now == 1.0  # two sleeps, no waiting for the timeout


def test_times_out_with_the_last_answer_and_log_tail():
    clock = FakeClock()
    probe = make_probe([(503, None)], clock, timeout=3.0, log_tail=lambda n: ["loading weights"])
    with pytest.raises(ServerStartError) as info:
        probe.wait()
    assert "not ready after 3 s" in str(info.value)
    assert "/health answered 503" in str(info.value)
    assert "loading weights" in str(info.value)
    assert "--vllm-startup-timeout" in str(info.value)


def test_accepts_the_first_listed_model_when_none_is_expected():
    clock = FakeClock()
    assert make_probe([(200, (200, {"data": [{"id": "a"}, {"id": "b"}]}))], clock, model=None).wait() == "a"


@pytest.mark.parametrize(
    "body, expected",
    [({"data": [{"id": "x"}]}, ["x"]), ({"data": []}, []), ({"models": []}, None), ([], None), ("html", None)],
)
def test_served_models_parses_only_model_lists(body, expected):
    assert served_models(body) == expected
