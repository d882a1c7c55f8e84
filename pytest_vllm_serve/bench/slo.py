"""Service-level objectives and the search for the highest load that meets them (pure).

``--vllm-slo "p99_ttft_ms<=500,p99_tpot_ms<=50"``: any metric name of
:func:`~pytest_vllm_serve.bench.metrics.metric_values`, with ``<=`` or ``>=`` and a number.

:class:`SloSearch` finds the largest value of the searched variable (a request rate or a
max concurrency) whose probe meets every bound: from ``start`` it doubles until a probe
fails (or ``upper`` is reached), then bisects the bracket until it is within ``tolerance``
of its upper end or ``max_probes`` probes have run. It only proposes values and takes the
probes' verdicts; measuring a probe is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_vllm_serve.bench.metrics import SEARCH_DIRECTIONS, Direction, require_metric
from pytest_vllm_serve.errors import ConfigError

Verdict = Literal["pass", "fail", "undecided"]

Op = Literal["<=", ">="]
_FIX = '  fix: write METRIC<=VALUE or METRIC>=VALUE items separated by commas, e.g. --vllm-slo "p99_ttft_ms<=500"'


@dataclass(frozen=True)
class SloBound:
    metric: str
    op: Op
    value: float

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        """Whether ``metrics`` meet the bound; a metric that was not measured does not."""
        got = metrics.get(self.metric)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got):
            return False
        return got <= self.value if self.op == "<=" else got >= self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_slo(spec: str) -> tuple[list[SloBound], list[str]]:
    """``"p99_ttft_ms<=500,output_throughput>=1000"`` -> (bounds, warnings).

    Raises ConfigError for an empty or malformed item, an unknown metric (with the valid
    names) or a value that is not a number. A bound that points the better way (``<=`` on a
    throughput, ``>=`` on a latency) is kept, with a warning: it is surely a typo."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--vllm-slo {spec!r} is empty.\n{_FIX}")
    bounds, warnings = [], []
    for item in spec.split(","):
        op: Op | None = "<=" if "<=" in item else ">=" if ">=" in item else None
        name, _, number = (part.strip() for part in item.partition(op or "\0"))
        if op is None or not name or not number:
            raise ConfigError(f"--vllm-slo item {item.strip()!r} is not METRIC<=VALUE or METRIC>=VALUE.\n{_FIX}")
        direction = require_metric(name, "--vllm-slo", _FIX)
        if name in SEARCH_DIRECTIONS:
            raise ConfigError(f"--vllm-slo {name}: {name} is the search's answer, not a point's metric.\n{_FIX}")
        try:
            value = float(number)
        except ValueError:
            raise ConfigError(f"--vllm-slo {item.strip()!r}: {number!r} is not a number.\n{_FIX}") from None
        if not math.isfinite(value):
            raise ConfigError(f"--vllm-slo {item.strip()!r}: the bound must be a finite number.\n{_FIX}")
        wrong = (op == "<=" and direction is Direction.HIGHER_IS_BETTER) or (
            op == ">=" and direction is Direction.LOWER_IS_BETTER
        )
        if wrong:
            better = "higher" if direction is Direction.HIGHER_IS_BETTER else "lower"
            other = ">=" if op == "<=" else "<="
            warnings.append(
                f"--vllm-slo {name}{op}{number}: {better} {name} is better, so this bound is met by a worse "
                f"server; did you mean {name}{other}{number}?"
            )
        bounds.append(SloBound(name, op, value))
    return bounds, warnings


def meets(bounds: list[SloBound], metrics: Mapping[str, Any]) -> bool:
    return all(b.holds(metrics) for b in bounds)


def parse_tolerance(text: Any) -> float:
    """--vllm-slo-tolerance: ``10%`` or ``0.1`` -> 0.1."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise ConfigError(
            f"--vllm-slo-tolerance {text!r} must be a fraction between 0 and 1 or a percentage, e.g. 0.1 or 10%"
        )
    return value


def probe_verdict(
    bounds: list[SloBound], metrics: Mapping[str, Any], intervals: Mapping[str, Mapping[str, float]] | None = None
) -> tuple[Verdict, list[str]]:
    """Whether a probe meets every bound, and why not.

    ``intervals`` (a repeated point's ``repeats["metrics"]``: per metric its median, ci_low and
    ci_high) make the verdict confident: a bound passes only when the whole interval meets it,
    fails when the whole interval breaks it, and is undecided when the interval straddles it.
    Without them (a single run) the measured value decides. A metric not measured fails."""
    verdict: Verdict = "pass"
    reasons: list[str] = []
    for bound in bounds:
        interval = (intervals or {}).get(bound.metric)
        if interval is not None and all(isinstance(interval.get(k), (int, float)) for k in ("ci_low", "ci_high")):
            low, high = float(interval["ci_low"]), float(interval["ci_high"])
            worst, best = (high, low) if bound.op == "<=" else (low, high)
            if bound.holds({bound.metric: worst}):
                continue
            shown = f"{_g(float(interval.get('median', low)))} [{_g(low)}, {_g(high)}]"
            if bound.holds({bound.metric: best}):
                reasons.append(f"{bound.metric} {shown} straddles {bound}")
                verdict = "fail" if verdict == "fail" else "undecided"
            else:
                reasons.append(f"{bound.metric} {shown} breaks {bound}")
                verdict = "fail"
            continue
        if not bound.holds(metrics):
            got = metrics.get(bound.metric)
            shown = _g(float(got)) if isinstance(got, (int, float)) else "not measured"
            reasons.append(f"{bound.metric} {shown} breaks {bound}")
            verdict = "fail"
    return verdict, reasons


def gate_best(thresholds: list[Any], baseline: float, best: float | None) -> list[str]:
    """--vllm-fail-on slo_best thresholds (gates.Threshold) against the baseline's answer."""
    messages = []
    for t in thresholds:
        low, _ = t.limits(baseline)
        if best is None:
            messages.append(f"slo_best: no load met the SLO in this run (baseline {baseline:g}; threshold {t})")
        elif best < low:
            change = (best - baseline) / abs(baseline) * 100 if baseline else math.nan
            messages.append(
                f"slo_best regressed: baseline {baseline:g}, new {best:g} ({change:+.1f}%), "
                f"threshold {t} (limit {low:g}; higher is better)"
            )
    return messages


@dataclass
class Probe:
    value: float
    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # the point's id, the reasons, the repeats


@dataclass
class SloSearch:
    """The search's state: the probes so far and what to probe next."""

    start: float
    tolerance: float = 0.10  # the bracket's width, relative to its upper end
    max_probes: int = 12
    upper: float | None = None  # never probe above this (e.g. the highest sensible rate)
    integer: bool = False  # max concurrency: whole numbers only
    probes: list[Probe] = field(default_factory=list)
    stopped: str | None = None  # why the search ended early

    def __post_init__(self) -> None:
        if not (self.start > 0 and math.isfinite(self.start)):
            raise ConfigError(f"the SLO search's start {self.start!r} must be a positive number")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"--vllm-slo-tolerance {self.tolerance!r} must be between 0 and 1 (0.1 is 10 %)")
        if self.max_probes < 1:
            raise ConfigError(f"--vllm-slo-max-probes {self.max_probes!r} must be at least 1")

    @property
    def best(self) -> float | None:
        """The highest passing value below the lowest failing one (None: none passed)."""
        low, _ = self.bracket
        return low

    @property
    def bracket(self) -> tuple[float | None, float | None]:
        """(highest pass, lowest fail above it): the answer lies between."""
        fails = [p.value for p in self.probes if not p.passed]
        ceiling = min(fails) if fails else None
        passes = [p.value for p in self.probes if p.passed and (ceiling is None or p.value < ceiling)]
        return (max(passes) if passes else None), ceiling

    def record(self, value: float, passed: bool, metrics: Mapping[str, Any] | None = None, **extra: Any) -> None:
        self.probes.append(Probe(value, passed, dict(metrics or {}), dict(extra)))
        if not passed and len(self.probes) == 1:
            self.stopped = f"the first probe ({value:g}) already fails the SLO: the answer is below it"

    def stop(self, reason: str) -> None:
        """End the search early, saying why (e.g. every request of a probe failed)."""
        self.stopped = reason

    def next_value(self) -> float | None:
        """The next value to probe, or None when the search is done."""
        if self.stopped:
            return None
        if len(self.probes) >= self.max_probes:
            if not self._narrow():
                budget = f"the probe budget ({self.max_probes}, --vllm-slo-max-probes) ran out"
                high = self.bracket[1]
                self.stopped = (
                    f"{budget} before the bracket narrowed to the tolerance"
                    if high is not None
                    else f"{budget} while every probe met the SLO: the answer is above {self.bracket[0]:g}"
                )
            return None
        if not self.probes:
            return self._round(self.start)
        low, high = self.bracket
        if high is None:  # everything passed so far: keep doubling
            top = max(p.value for p in self.probes)
            if self.upper is not None and top >= self.upper:
                self.stopped = f"every probe up to the upper bound {self.upper:g} meets the SLO"
                return None
            nxt = top * 2 if self.upper is None else min(top * 2, self.upper)
            return self._round(nxt)
        if low is None:
            return None  # the lowest probe failed
        if (high - low) <= self.tolerance * high:
            return None
        mid = self._round((low + high) / 2)
        if mid in (low, high):  # whole numbers that cannot split further
            return None
        return mid

    def _narrow(self) -> bool:
        """Whether the bracket is closed and within the tolerance (or cannot split further)."""
        low, high = self.bracket
        if low is None or high is None:
            return low is None and high is not None  # the lowest probe failed: nothing to narrow
        mid = self._round((low + high) / 2)
        return (high - low) <= self.tolerance * high or mid in (low, high)

    def _round(self, value: float) -> float:
        return float(max(1, round(value))) if self.integer else value

    def to_json(self, variable: str, bounds: list[SloBound]) -> dict[str, Any]:
        """What ``slo_search.json`` holds."""
        low, high = self.bracket
        return {
            "variable": variable,
            "slo": {b.metric: f"{b.op}{b.value:g}" for b in bounds},
            "best": low,
            "bracket": [low, high],
            "stopped": self.stopped,
            "probes": [{"value": p.value, "passed": p.passed, "metrics": p.metrics, **p.extra} for p in self.probes],
        }


def _g(value: float) -> str:
    return f"{value:.4g}"
