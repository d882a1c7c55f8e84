"""The --vllm-goodput SLO spec: parsing and formatting."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from pytest_vllm_serve.bench.metrics.common import GOODPUT_METRICS
from pytest_vllm_serve.errors import ConfigError

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_number(text: str) -> float | None:
    """A finite decimal number (``10``, ``2.5``, ``1e3``), or None."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def format_number(value: float) -> str:
    """Shortest text that parses back to ``value``: 500.0 -> "500", 0.1 -> "0.1"."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def parse_goodput(spec: str) -> dict[str, float]:
    """``"ttft:500,tpot:50,e2el:2000"`` -> ``{"ttft": 500.0, ...}`` (milliseconds).

    The same SLOs as ``vllm bench serve --goodput ttft:500 tpot:50``, comma-separated.
    Only ttft, tpot and e2el; each a non-negative number, each at most once.
    Raises ConfigError naming the problem and the fix.
    """
    fix = '  fix: write KEY:MS pairs separated by commas, e.g. --vllm-goodput "ttft:500,tpot:50,e2el:2000"'
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"the goodput SLOs {spec!r} are empty.\n{fix}")
    slos: dict[str, float] = {}
    for item in spec.split(","):
        name, colon, value_text = (part.strip() for part in item.partition(":"))
        if not colon or not name or not value_text:
            raise ConfigError(f"goodput SLO {item.strip()!r} in {spec!r} is not KEY:MS.\n{fix}")
        if name not in GOODPUT_METRICS:
            raise ConfigError(
                f"unknown goodput metric {name!r} in {spec!r}; goodput SLOs can use "
                f"{', '.join(GOODPUT_METRICS)} (as vllm bench serve).\n{fix}"
            )
        if name in slos:
            raise ConfigError(f"goodput metric {name!r} is given twice in {spec!r}.\n{fix}")
        value = parse_number(value_text)
        if value is None or value < 0:
            raise ConfigError(
                f"goodput SLO {name}:{value_text} in {spec!r} is not a non-negative number of milliseconds.\n{fix}"
            )
        slos[name] = abs(value)  # -0 -> 0
    return slos


def format_goodput(slos: Mapping[str, float]) -> str:
    """The spec :func:`parse_goodput` reads back into ``slos``."""
    return ",".join(f"{name}:{format_number(value)}" for name, value in slos.items())
