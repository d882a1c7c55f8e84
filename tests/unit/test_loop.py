"""The load generator's event loop: uvloop where it is installed, asyncio's on request."""

from __future__ import annotations

import asyncio

from pytest_vllm_serve.bench.loadgen import loop


async def running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_by_default(monkeypatch):
    import uvloop  # a dependency off Windows: its absence fails here  # noqa: F401

    monkeypatch.delenv(loop.LOOP_ENV, raising=False)
    assert loop.loop_name() == "uvloop"
    assert loop.run(running_loop_module()).startswith("uvloop")


def test_asyncio_on_request(monkeypatch):
    monkeypatch.setenv(loop.LOOP_ENV, "asyncio")
    assert loop.loop_name() == "asyncio"
    assert loop.run(running_loop_module()).startswith("asyncio")
