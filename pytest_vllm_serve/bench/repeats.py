"""``--vllm-repeats N``: one benchmark point measured N times on the same server.

Each repeat is its own test item (``test_rate[rate=4-repeat=2]``): the plugin parametrizes
``vllm_repeat`` and orders the items interleaved (every point once, then every point again,
so a drifting server spreads over all points) or grouped (a point's repeats back to back).
Every repeat keeps its own result file (``points/repeats/``). The last repeat of a point
reads the others', and the point is then recorded once: per metric the median over the
repeats, its confidence interval and its CV (:mod:`.metrics.intervals`), under ``repeats``.

The point's id leaves the repeat out, so a repeated point gates against a single-run
baseline of the same test and the other way round.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.metrics import TokenCounter, percentile_of, series_samples
from pytest_vllm_serve.bench.metrics.intervals import Interval, over_repeats, over_requests
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.sinks.results import REPEAT_KEY, ResultsStore

#: The fixture the plugin parametrizes, and the id of one repeat in a test id.
PARAM = "vllm_repeat"
_ID = re.compile(r"repeat=\d+")
#: Per-request series a repeat keeps (ms), for the latency percentiles' intervals over requests.
SAMPLED_SERIES = ("ttft", "tpot", "itl", "e2el", "per_token_itl")


@dataclass(frozen=True)
class Repeat:
    """Repeat ``index`` (1-based) of ``count``."""

    index: int = 1
    count: int = 1

    @property
    def repeated(self) -> bool:
        return self.count > 1

    @property
    def last(self) -> bool:
        return self.index == self.count

    def test_id(self) -> str:
        return f"repeat={self.index}"


def without_repeat(node_id: str) -> str:
    """A test id with its repeat part taken out: ``t[rate=4-repeat=2]`` -> ``t[rate=4]``."""
    if "[" not in node_id or not node_id.endswith("]"):
        return node_id
    head, _, params = node_id[:-1].partition("[")
    kept = [part for part in params.split("-") if not _ID.fullmatch(part)]
    return f"{head}[{'-'.join(kept)}]" if kept else head


def samples_of(records: Sequence[RequestRecord], count_tokens: TokenCounter | None) -> dict[str, list[float]]:
    """The per-request series of one repeat, in ms, as compute_metrics summarizes them."""
    return {
        series: [1000 * value for value in series_samples(records, series, count_tokens)] for series in SAMPLED_SERIES
    }


@dataclass(frozen=True)
class RepeatSummary:
    """A point over its repeats: per metric the values of every repeat and their interval."""

    values: dict[str, list[float]]
    intervals: dict[str, Interval]

    @property
    def n(self) -> int:
        return max((len(v) for v in self.values.values()), default=0)

    def medians(self) -> dict[str, float]:
        return {key: interval.median for key, interval in self.intervals.items()}

    def cv(self, metric: str) -> float | None:
        interval = self.intervals.get(metric)
        return interval.cv if interval is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "metrics": {key: interval.as_dict() for key, interval in self.intervals.items()},
            "values": self.values,
        }


def summarize(
    per_repeat: Sequence[Mapping[str, float]],
    samples: Sequence[Mapping[str, Sequence[float]]],
    confidence: float,
) -> RepeatSummary:
    """Every metric that all repeats have, as a finite number: a latency percentile over the
    requests of every repeat (when each repeat kept its samples), anything else over repeats."""
    keys = [key for key in per_repeat[0] if all(_finite(values.get(key)) for values in per_repeat)]
    values = {key: [float(values[key]) for values in per_repeat] for key in keys}
    intervals: dict[str, Interval] = {}
    for key in keys:
        pooled = _percentile_samples(key, samples)
        if pooled is not None:
            intervals[key] = over_requests(pooled[1], pooled[0], confidence)
        else:
            intervals[key] = over_repeats(values[key], confidence)
    return RepeatSummary(values, intervals)


def _percentile_samples(
    key: str, samples: Sequence[Mapping[str, Sequence[float]]]
) -> tuple[float, list[Sequence[float]]] | None:
    """(q, each repeat's samples) for a latency percentile or median whose samples every repeat kept."""
    named = percentile_of(key)
    if named is None:
        return None
    series = [repeat.get(named[1]) for repeat in samples]
    if not series or any(not s for s in series):
        return None
    return named[0], [s for s in series if s]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Gathered:
    """What the repeats of one point kept, read back by its last repeat."""

    values: list[dict[str, float]]  # per complete repeat: its flat metrics
    samples: list[dict[str, list[float]]]  # per complete repeat: its per-request series (ms)
    durations: list[float]  # per complete repeat: its measured phase (s)
    steady: list[dict[str, float]]  # per complete repeat that had a steady state
    files: list[str]  # every repeat file found, relative to the results dir
    problems: list[str]  # repeats missing or cut short

    def steady_medians(self) -> dict[str, float] | None:
        if not self.steady or len(self.steady) < len(self.values):
            return None
        keys = [k for k in self.steady[0] if all(_finite(s.get(k)) for s in self.steady)]
        return {k: float(statistics.median(s[k] for s in self.steady)) for k in keys}


@dataclass(frozen=True)
class RepeatFiles:
    """The repeat files of one point in a results store: ``points/repeats/<point>.r<K>.json``."""

    store: ResultsStore
    point_id: str
    repeat: Repeat

    def save(
        self,
        result: dict[str, Any],
        values: Mapping[str, float],
        samples: Mapping[str, list[float]],
        duration: float,
        steady: Mapping[str, float] | None,
        partial: str | None,
    ) -> Path:
        """This repeat's ``vllm bench serve``-compatible result, with what the last repeat needs."""
        kept = {
            "id": self.point_id,
            "repeat": self.repeat.index,
            "of": self.repeat.count,
            "metrics": dict(values),
            "samples": dict(samples),
            "duration": duration,
            "steady_state": dict(steady) if steady else None,
            "partial": partial,
        }
        return self.store.save_repeat(self.point_id, self.repeat.index, {**result, REPEAT_KEY: kept})

    def gather(self) -> Gathered:
        values, samples, durations, steady, files, problems = [], [], [], [], [], []
        for index in range(1, self.repeat.count + 1):
            data = self.store.load_repeat(self.point_id, index)
            kept = data.get(REPEAT_KEY) if data else None
            if not isinstance(kept, dict):
                problems.append(f"repeat {index} is missing")
                continue
            files.append(str(self.store.repeat_path(self.point_id, index).relative_to(self.store.root)))
            if kept.get("partial"):
                problems.append(f"repeat {index} was cut short ({kept['partial']})")
                continue
            values.append(kept["metrics"])
            samples.append(kept.get("samples") or {})
            durations.append(float(kept.get("duration") or 0.0))
            if kept.get("steady_state"):
                steady.append(kept["steady_state"])
        return Gathered(values, samples, durations, steady, files, problems)

    def problem(self, gathered: Gathered) -> str | None:
        """Why the point's aggregate is partial (None: every repeat is there and complete)."""
        if not gathered.problems:
            return None
        hint = (
            "; with pytest-xdist, run repeated points with --dist loadgroup, so that a point's repeats share a worker"
            if any("missing" in p for p in gathered.problems)
            else ""
        )
        return f"{len(gathered.values)} of {self.repeat.count} repeats complete: {'; '.join(gathered.problems)}{hint}"
