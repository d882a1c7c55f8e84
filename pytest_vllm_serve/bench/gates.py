"""The regression gate: ``--vllm-fail-on "p99_ttft_ms:+10%,output_throughput:-5%"``.

A threshold bounds how far a metric may move from the baseline in its *worse*
direction: up for latencies, down for throughputs. Unlike pytest-benchmark's
``--benchmark-compare-fail``, it understands higher-is-better metrics.

Syntax, item by item (comma-separated):

* ``NAME:+10%`` may rise by at most 10 % of the baseline (lower-is-better metrics);
* ``NAME:-5%`` may fall by at most 5 % of the baseline (higher-is-better metrics);
* ``NAME:+20`` / ``NAME:-20``: the same in the metric's own unit (ms, tok/s, ...);
* ``NAME:10%`` / ``NAME:20``: no sign, the worse direction is implied; for a metric
  that is neither higher- nor lower-is-better (``total_output_tokens``), both ways.

A sign that points the better way (``p99_ttft_ms:-10%``) is refused: it would bound
an improvement. Names are those of :func:`pytest_vllm_serve.bench.metrics.metric_values`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_vllm_serve.bench.metrics import (
    Direction,
    format_number,
    metric_direction,
    parse_number,
    parse_series_metric,
    require_metric,
)
from pytest_vllm_serve.errors import ConfigError

Bound = Literal["increase", "decrease", "both"]
_SIGN: dict[str, str] = {"increase": "+", "decrease": "-", "both": ""}
_WORSE: dict[Direction, Bound] = {
    Direction.LOWER_IS_BETTER: "increase",
    Direction.HIGHER_IS_BETTER: "decrease",
    Direction.NEITHER: "both",
}
_FIX = (
    '  fix: write METRIC:CHANGE items separated by commas, e.g. --vllm-fail-on "p99_ttft_ms:+10%,output_throughput:-5%"'
)


@dataclass(frozen=True)
class Threshold:
    """How far ``metric`` may move from the baseline before the run fails.

    ``amount`` is a magnitude (never negative): percent of the baseline when
    ``relative``, else the metric's own unit. ``bound`` says which change it limits.
    """

    metric: str
    amount: float
    relative: bool
    bound: Bound

    @property
    def signed_amount(self) -> float:
        """The change allowed, signed: +10 for ``+10%``, -5 for ``-5%`` (+ for "both")."""
        return -self.amount if self.bound == "decrease" else self.amount

    def limits(self, baseline: float) -> tuple[float, float]:
        """The lowest and highest values that pass against ``baseline``."""
        delta = abs(baseline) * self.amount / 100 if self.relative else self.amount
        low = baseline - delta if self.bound in ("decrease", "both") else -math.inf
        high = baseline + delta if self.bound in ("increase", "both") else math.inf
        return low, high

    def __str__(self) -> str:
        return f"{self.metric}:{_SIGN[self.bound]}{format_number(self.amount)}{'%' if self.relative else ''}"


@dataclass(frozen=True)
class Violation:
    """A threshold the current run broke; ``current`` is None when it was not measured."""

    threshold: Threshold
    baseline: float
    current: float | None
    message: str

    @property
    def metric(self) -> str:
        return self.threshold.metric


def _parse_item(item: str, spec: str) -> Threshold:
    name, colon, change = (part.strip() for part in item.partition(":"))
    if not colon or not name or not change:
        raise ConfigError(f"--vllm-fail-on item {item.strip()!r} in {spec!r} is not METRIC:CHANGE.\n{_FIX}")
    direction = require_metric(name, "--vllm-fail-on", _FIX)
    relative = change.endswith("%")
    number = change[:-1].rstrip() if relative else change
    value = parse_number(number)
    if value is None:
        raise ConfigError(f"--vllm-fail-on {name}:{change}: {change!r} is not a change like +10%, -5% or +20.\n{_FIX}")
    sign = number[0] if number[0] in "+-" else ""
    worse = _WORSE[direction]
    if not sign or (value == 0 and worse != "both"):
        bound = worse  # -0% on a latency is +0%
    else:
        bound = "increase" if sign == "+" else "decrease"
        if worse != "both" and bound != worse:
            better = "lower" if direction is Direction.LOWER_IS_BETTER else "higher"
            regression = "an increase (+)" if worse == "increase" else "a decrease (-)"
            raise ConfigError(
                f"--vllm-fail-on {name}:{change} bounds an improvement: {better} {name} is better, "
                f"so a regression is {regression}.\n"
                f"  fix: write {name}:{_SIGN[worse]}{number.lstrip('+-')}{'%' if relative else ''}"
            )
    amount = abs(value)
    if relative and bound == "decrease" and amount > 100:
        raise ConfigError(
            f"--vllm-fail-on {name}:{change}: a value cannot fall by more than 100% of its baseline "
            "(non-negative metrics), so this never fails.\n  fix: give at most 100%"
        )
    return Threshold(metric=name, amount=amount, relative=relative, bound=bound)


def parse_fail_on(spec: str) -> list[Threshold]:
    """``"p99_ttft_ms:+10%,output_throughput:-5%"`` -> thresholds, in order.

    Raises ConfigError naming the problem and the fix: an empty spec or item, an
    unknown metric (the valid names are listed), a change that is not a number, or a
    sign that points the better way.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--vllm-fail-on {spec!r} is empty.\n{_FIX}")
    return [_parse_item(item, spec) for item in spec.split(",")]


def format_fail_on(thresholds: Iterable[Threshold]) -> str:
    """The spec :func:`parse_fail_on` reads back into ``thresholds``."""
    return ",".join(str(t) for t in thresholds)


def percentiles_needed(thresholds: Iterable[Any]) -> tuple[float, ...]:
    """Percentiles the thresholds (or SLO bounds: anything with a ``metric``) name
    (p99.9_ttft_ms -> 99.9), so the run computes them."""
    out: list[float] = []
    for t in thresholds:
        parsed = parse_series_metric(t.metric)
        if parsed and parsed[1] is not None and parsed[1] not in out:
            out.append(parsed[1])
    return tuple(out)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def check_baseline(baseline: Any, thresholds: Sequence[Threshold], source: str = "the baseline") -> None:
    """Raise ConfigError unless ``baseline`` is a results dict with every gated metric.

    Call it before sending any load, so a wrong baseline file fails at once.
    """
    if not isinstance(baseline, Mapping) or "completed" not in baseline:
        raise ConfigError(
            f"{source} is not a results file (metrics by name, such as vllm bench serve's 'completed').\n"
            "  fix: pass the results of an earlier run of this plugin (or of vllm bench serve --save-result)"
        )
    for t in thresholds:
        if _number(baseline.get(t.metric)) is None:
            if _number(baseline.get("completed")) == 0:
                raise ConfigError(
                    f"{source} has no {t.metric!r}: every request of that baseline run failed.\n"
                    "  fix: record a baseline from a run whose requests succeeded"
                )
            raise ConfigError(
                f"{source} has no numeric value for {t.metric!r}, which --vllm-fail-on gates "
                "(vllm bench serve's own files lack the metrics this plugin adds, and percentiles "
                "other than the ones that run computed).\n"
                f"  fix: record a new baseline with this plugin and the same percentiles, or drop {t.metric} "
                "from --vllm-fail-on"
            )


def _change(baseline: float, current: float) -> str:
    if baseline != 0:
        return f"{(current - baseline) / abs(baseline) * 100:+.1f}%"
    return f"{current - baseline:+.6g}"


def check_thresholds(
    baseline: Mapping[str, Any], current: Mapping[str, Any], thresholds: Sequence[Threshold]
) -> list[Violation]:
    """The thresholds ``current`` breaks against ``baseline`` (both name -> value).

    Values are compared as numbers; a gated metric the current run did not measure
    (absent, None or NaN) is a violation. A baseline without it raises ConfigError
    (see :func:`check_baseline`).
    """
    check_baseline(baseline, thresholds)
    violations: list[Violation] = []
    for t in thresholds:
        base = _number(baseline[t.metric])
        assert base is not None  # check_baseline
        now = _number(current.get(t.metric))
        if now is None:
            violations.append(
                Violation(
                    t, base, None, f"{t.metric} was not measured in this run (baseline {base:.6g}; threshold {t})"
                )
            )
            continue
        low, high = t.limits(base)
        if low <= now <= high:
            continue
        limit = high if now > high else low
        direction = metric_direction(t.metric)
        note = "" if direction is Direction.NEITHER else f"; {direction.value} is better"
        violations.append(
            Violation(
                t,
                base,
                now,
                f"{t.metric} regressed: baseline {base:.6g}, new {now:.6g} ({_change(base, now)}), "
                f"threshold {t} (limit {limit:.6g}{note})",
            )
        )
    return violations
