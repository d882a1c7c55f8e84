"""Two runs side by side: points matched by test id, each metric's old and new value and
change, and a verdict per point from the gate's own decision (bench/noise_gate.py).

With repeats on either side the verdict is the noise-aware one (fail only when the interval
of the change excludes zero); with one run on each side it is the threshold check. A point
*regressed* when a threshold fails, is *undecided* when one is too noisy to tell, *improved*
when a metric moved past its threshold the better way (the interval excluding zero), and is
*unchanged* otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_vllm_serve.bench.gates import Threshold, parse_fail_on
from pytest_vllm_serve.bench.metrics import DEFAULT_CONFIDENCE, Direction, metric_direction
from pytest_vllm_serve.bench.noise_gate import Decision, check_decisions
from pytest_vllm_serve.bench.sinks.report.data import Run
from pytest_vllm_serve.bench.sinks.results import PointRecord
from pytest_vllm_serve.errors import ConfigError

Outcome = Literal["regressed", "undecided", "improved", "unchanged"]
#: What a comparison decides on when no --fail-on is given.
DEFAULT_THRESHOLDS = (
    "request_throughput:-5%,output_throughput:-5%,median_ttft_ms:+10%,median_tpot_ms:+10%,"
    "median_itl_ms:+10%,p99_e2el_ms:+10%"
)
#: The metrics every compared point shows, besides its thresholds' (in this order).
SHOWN = (
    "request_throughput",
    "output_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "median_itl_ms",
    "p99_e2el_ms",
    "failed",
)
ORDER: tuple[Outcome, ...] = ("regressed", "undecided", "improved", "unchanged")


@dataclass(frozen=True)
class MetricRow:
    metric: str
    old: float | None
    new: float | None
    verdict: str = ""  # the threshold's verdict (pass, fail, undecided), or "" when not gated

    @property
    def change(self) -> float | None:
        """Relative change in percent (None when a side is missing or the old value is 0)."""
        if self.old is None or self.new is None or self.old == 0:
            return None
        return (self.new - self.old) / abs(self.old) * 100


@dataclass(frozen=True)
class PointComparison:
    id: str
    suite: str
    outcome: Outcome
    rows: list[MetricRow]
    reasons: list[str]  # the decisive messages: a failing or undecided threshold, an improvement
    repeats: tuple[int, int]  # each side's number of repeats


@dataclass
class Comparison:
    old: Run
    new: Run
    thresholds: list[Threshold]
    points: list[PointComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # points not compared, and why

    def by_outcome(self, outcome: Outcome) -> list[PointComparison]:
        return [p for p in self.points if p.outcome == outcome]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # not NaN


def _repeat_values(point: PointRecord) -> dict[str, list[float]]:
    values = (point.repeats or {}).get("values") or {}
    return {k: [float(x) for x in v] for k, v in values.items() if isinstance(v, list) and v}


def _improved(decision: Decision) -> bool:
    """The metric moved past its threshold the better way, and the interval excludes zero."""
    diff, t = decision.difference, decision.threshold
    if diff is None or decision.verdict != "pass":
        return False
    amount = t.amount if t.relative == diff.relative else 0.0
    direction = metric_direction(t.metric)
    if direction is Direction.LOWER_IS_BETTER:
        return diff.change < -amount and diff.ci_high < 0
    if direction is Direction.HIGHER_IS_BETTER:
        return diff.change > amount and diff.ci_low > 0
    return False


def compare_points(
    old: PointRecord, new: PointRecord, thresholds: Sequence[Threshold], confidence: float
) -> PointComparison:
    """One matched point's rows and outcome."""
    base, now = _repeat_values(old), _repeat_values(new)
    result = check_decisions({**old.metrics, **base}, {**new.metrics, **now}, thresholds, confidence)
    verdicts = {d.metric: d.verdict for d in result.decisions}
    names = list(dict.fromkeys([*SHOWN, *(t.metric for t in thresholds)]))
    rows = [MetricRow(m, _number(old.metrics.get(m)), _number(new.metrics.get(m)), verdicts.get(m, "")) for m in names]
    fails = [d for d in result.decisions if d.verdict == "fail"]
    undecided = [d for d in result.decisions if d.verdict == "undecided"]
    better = [d for d in result.decisions if _improved(d)]
    outcome: Outcome = "regressed" if fails else "undecided" if undecided else "improved" if better else "unchanged"
    decisive = fails or undecided or better
    repeats = (int((old.repeats or {}).get("n", 1)), int((new.repeats or {}).get("n", 1)))
    return PointComparison(new.id, new.suite, outcome, rows, [d.message for d in decisive], repeats)


def compare_runs(
    old: Run, new: Run, thresholds: str | None = None, confidence: float = DEFAULT_CONFIDENCE
) -> Comparison:
    """Every point both runs measured, compared; a note for each that could not be.

    Raises ConfigError when the runs have no point in common (with the ids of each)."""
    parsed = parse_fail_on(thresholds or DEFAULT_THRESHOLDS)
    comparison = Comparison(old, new, parsed)
    before = {p.id: p for p in old.points}
    after = {p.id: p for p in new.points}
    common = [pid for pid in after if pid in before]
    if not common:
        raise ConfigError(
            f"the runs have no point in common: {old.label} has {_ids(before)}, {new.label} has {_ids(after)}.\n"
            "  fix: compare two runs of the same tests (points are matched by their pytest node id)"
        )
    for pid in common:
        a, b = before[pid], after[pid]
        if a.partial or b.partial:
            side = "old" if a.partial else "new"
            comparison.notes.append(f"{pid}: not compared, the {side} point is partial ({a.partial or b.partial})")
            continue
        try:
            comparison.points.append(compare_points(a, b, parsed, confidence))
        except ConfigError as exc:  # the old side lacks a gated metric
            comparison.notes.append(f"{pid}: not compared: {str(exc).splitlines()[0]}")
    for pid in before.keys() - after.keys():
        comparison.notes.append(f"{pid}: only in {old.label}")
    for pid in after.keys() - before.keys():
        comparison.notes.append(f"{pid}: only in {new.label}")
    comparison.points.sort(key=lambda p: (ORDER.index(p.outcome), p.id))
    comparison.notes.sort()
    return comparison


def _ids(points: dict[str, PointRecord]) -> str:
    if not points:
        return "no points"
    names = sorted(points)
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{len(names)} point(s) ({shown})"
