"""The event loop the load generator runs on: uvloop's where it is installed, asyncio's
otherwise.

uvloop (libuv under asyncio's API) spends less CPU per callback, per socket read and per
task than asyncio's own loop; the client's cost per request is mostly such work
(docs/benchmarks.md, "Client CPU per request"). ``PYTEST_VLLM_SERVE_LOOP=asyncio`` keeps
asyncio's loop (to compare, or where uvloop misbehaves).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: The environment variable that picks the loop: ``uvloop`` (the default) or ``asyncio``.
LOOP_ENV = "PYTEST_VLLM_SERVE_LOOP"


def uvloop_module() -> Any | None:
    """The uvloop module, or None for asyncio's loop (uvloop missing, or asked for asyncio)."""
    if os.environ.get(LOOP_ENV, "uvloop").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` uses here."""
    return "asyncio" if uvloop_module() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the load generator's loop."""
    uvloop = uvloop_module()
    if uvloop is None:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
