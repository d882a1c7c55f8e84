"""Where SLO searches go: ``slo/<test>.json`` per search and ``slo_search.json`` over them.

A search's file is rewritten after every probe, so a crash keeps the probes measured so
far. ``slo_search.json`` (at the results dir's top) is the search's own document when the
session ran one search::

    {"id": ..., "variable": "rate", "slo": {"p99_ttft_ms": "<=500"}, "best": 6.0,
     "bracket": [6.0, 7.0], "stopped": null, "probes": [{"value": 1.0, "passed": true, ...}]}

and ``{"searches": [<document>, ...]}`` when it ran several (one per server, say).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_vllm_serve.bench.sinks.results import dumps, natural_key, safe_name
from pytest_vllm_serve.errors import ConfigError, ResultsWriteError
from pytest_vllm_serve.files import atomic_write_text

SLO_SEARCH_JSON = "slo_search.json"
SEARCHES_DIR = "slo"


def search_path(root: Path, search_id: str) -> Path:
    return root / SEARCHES_DIR / f"{safe_name(search_id)}.json"


def save_search(root: Path, document: Mapping[str, Any]) -> Path:
    """Write one search's document, then slo_search.json over every search of the session."""
    path = search_path(root, str(document["id"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / ".slo_search.lock")):
            atomic_write_text(path, dumps(dict(document)))
            searches = read_searches(root)
            combined = searches[0] if len(searches) == 1 else {"searches": searches}
            atomic_write_text(root / SLO_SEARCH_JSON, dumps(combined))
    except OSError as exc:
        raise ResultsWriteError(f"could not write the SLO search's results under {root}: {exc}") from exc
    return path


def read_searches(root: Path) -> list[dict[str, Any]]:
    """Every search document of a results dir, by test id."""
    folder = root / SEARCHES_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: natural_key(p.name)):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def documents(data: Any) -> list[dict[str, Any]] | None:
    """The search documents in a slo_search.json's content (None: it is not one)."""
    if isinstance(data, dict) and isinstance(data.get("searches"), list):
        return [d for d in data["searches"] if isinstance(d, dict)]
    if isinstance(data, dict) and "probes" in data and "variable" in data:
        return [data]
    return None


def bests(searches: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each search's answer by its test id (None: no probe met the SLO)."""
    out: dict[str, float | None] = {}
    for doc in searches:
        best = doc.get("best")
        ok = isinstance(best, (int, float)) and not isinstance(best, bool) and math.isfinite(best)
        out[str(doc.get("id"))] = float(best) if ok else None
    return out


def load_file(path: Path) -> list[dict[str, Any]]:
    """The searches of a slo_search.json, for a baseline; a clear error for anything else."""
    try:
        found = documents(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--vllm-baseline {path} is not valid JSON ({exc})") from None
    if found is None:
        raise ConfigError(
            f"--vllm-baseline {path} is not a {SLO_SEARCH_JSON} (no variable and probes).\n"
            "  fix: use vllm-results/<run>/slo_search.json or that run's summary.json"
        )
    return found


def search_table(searches: Iterable[Mapping[str, Any]]) -> list[str]:
    """The end-of-session lines: per search its answer, bracket, SLO and probes."""
    lines = []
    for doc in searches:
        slo = ",".join(f"{metric}{bound}" for metric, bound in (doc.get("slo") or {}).items())
        probes = doc.get("probes") or []
        marks = " ".join(f"{_g(p.get('value'))}{'+' if p.get('passed') else '-'}" for p in probes)
        low, high = (doc.get("bracket") or [None, None])[:2]
        answer = f"best {doc.get('variable')} {_g(doc.get('best'))}" if doc.get("best") is not None else "no load met"
        lines.append(f"{str(doc.get('id')).split('::')[-1]}: {answer} (bracket {_g(low)}..{_g(high)}) for {slo}")
        lines.append(f"  probes (+ met, - missed): {marks}")
        if doc.get("stopped"):
            lines.append(f"  stopped: {doc['stopped']}")
    return lines


def _g(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
