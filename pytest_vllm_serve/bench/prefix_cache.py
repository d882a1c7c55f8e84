"""``--vllm-reset-prefix-cache``: empty the server's prefix cache before a measured phase, so that
no point profits from the prompts of the one before it.

vLLM serves ``POST /reset_prefix_cache`` only with ``VLLM_SERVER_DEV_MODE=1``; the plugin starts
the servers it launches with that variable while the option is on. A server without the route
(a --vllm-url server started without it, an older vLLM) is said once per point and the point
goes on: the point records what happened.
"""

from __future__ import annotations

from typing import Literal

import httpx

from pytest_vllm_serve.serving.running import RunningServer

#: What a point records under ``prefix_cache_reset``.
ResetOutcome = Literal["done", "off", "unavailable"]
#: The environment a launched server needs for the route.
DEV_MODE_ENV = {"VLLM_SERVER_DEV_MODE": "1"}


def wanted(mode: str, server: RunningServer) -> bool:
    """``auto``: on for servers the plugin launched, off for --vllm-url; ``on``/``off``: as said."""
    if mode == "auto":
        return server.launcher != "external"
    return mode == "on"


def reset_prefix_cache(server: RunningServer, timeout: float = 30.0) -> str | None:
    """POST /reset_prefix_cache; None when the server confirmed it, else why not."""
    try:
        response = server.client.post(f"{server.url}/reset_prefix_cache", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"POST /reset_prefix_cache failed: {type(exc).__name__}: {exc}"
    if response.status_code == 404:
        return (
            "the server has no /reset_prefix_cache route (vLLM serves it only with VLLM_SERVER_DEV_MODE=1): "
            "start it with that variable, or give --vllm-reset-prefix-cache off"
        )
    if response.status_code != 200:
        return f"POST /reset_prefix_cache answered HTTP {response.status_code}: {response.text[:200]}"
    try:
        answer = response.json()
    except ValueError:
        return None  # an empty 200: older vLLMs answer so
    if isinstance(answer, dict) and answer.get("success") is False:
        return f"POST /reset_prefix_cache answered {answer}"
    return None
