"""The regression gate over repeats: ``--vllm-fail-on`` when each point was measured N times.

The thresholds are those of :mod:`.gates`; what changes is the evidence. Each side (the
baseline and this run) gives one value per repeat; :func:`decide` compares their
medians and bootstraps a confidence interval of the change
(:func:`~pytest_vllm_serve.bench.metrics.difference`), then rules:

* **fail**: the median moved beyond the threshold in the worse direction (the limits
  of :meth:`.Threshold.limits`, as :func:`.check_thresholds` applies them) *and* the
  interval of the change excludes zero on that side;
* **undecided**: not a fail, but too noisy to decide at this threshold: the interval
  is wider than the threshold (in its unit: percent when relative) and reaches past
  the allowed change. ``repeats_needed`` estimates, from the 1/sqrt(n) shrinkage of
  the width, how many repeats would decide it;
* **pass**: otherwise, including an interval wider than the threshold that lies wholly
  within the allowed change (a clear improvement is no reason to measure more).

A side with a single value is taken as exact, so with one run on each side the
interval is a point and the verdict is that of :func:`.check_thresholds`.

A latency percentile (``p99_ttft_ms``, ``median_itl_ms``) whose per-request samples both
sides kept in every repeat (:class:`RequestSamples`) is decided over the requests: its
value is the percentile of the pooled requests (what a repeated point reports) and its
interval the two-level bootstrap of
:func:`~pytest_vllm_serve.bench.metrics.difference_over_requests`. With five repeats a
side, the interval of a median over repeats is about the range of the five values; over
the requests it is as wide as the drift between repeats and the requests' own spread make it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pytest_vllm_serve.bench.gates import Threshold, check_baseline
from pytest_vllm_serve.bench.metrics import (
    DEFAULT_CONFIDENCE,
    Difference,
    Interval,
    difference,
    difference_over_requests,
    format_number,
    over_repeats,
    over_requests,
    percentile_of,
)

Verdict = Literal["pass", "fail", "undecided"]


@dataclass(frozen=True)
class Decision:
    """The verdict on one threshold, from both sides' repeats.

    ``difference`` and ``current`` are None when this run did not measure the metric
    in every repeat (the verdict is then "fail"). ``repeats_needed`` is set when the
    verdict is "undecided": the repeats of each side that would narrow the interval to
    the threshold (None when no number would: a threshold of 0).
    """

    threshold: Threshold
    verdict: Verdict
    difference: Difference | None
    baseline: Interval
    current: Interval | None
    repeats_needed: int | None
    message: str

    @property
    def metric(self) -> str:
        return self.threshold.metric


@dataclass(frozen=True)
class GateResult:
    """Every threshold's decision, in the thresholds' order, and those that fail the point."""

    decisions: list[Decision]
    failures: list[Decision]

    @property
    def messages(self) -> list[str]:
        return [d.message for d in self.failures]


@dataclass(frozen=True)
class RequestSamples:
    """A latency percentile's per-request samples on both sides: one sequence per repeat."""

    q: float
    baseline: Sequence[Sequence[float]]
    current: Sequence[Sequence[float]]


#: Per repeat: each series' per-request samples (ms), as the repeat files keep them.
SeriesSamples = Sequence[Mapping[str, Sequence[float]]]


def request_samples(
    metric: str, baseline: SeriesSamples | None, current: SeriesSamples | None
) -> RequestSamples | None:
    """Both sides' samples of the series ``metric`` is a percentile of; None when it is no
    percentile, or either side lacks the series in a repeat, or a side was measured once."""
    named = percentile_of(metric)
    if named is None or not baseline or not current or len(baseline) < 2 or len(current) < 2:
        return None
    q, series = named
    old = [repeat.get(series) for repeat in baseline]
    new = [repeat.get(series) for repeat in current]
    if any(not s for s in old) or any(not s for s in new):
        return None
    return RequestSamples(q, [s for s in old if s], [s for s in new if s])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _repeats(value: Any) -> list[float | None]:
    """A metric's per-repeat values: a number is one repeat; a missing value none."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_number(v) for v in value]
    return [_number(value)]


def repeats_needed(diff: Difference, amount: float) -> int | None:
    """Repeats per side for the interval of ``diff`` to shrink, as 1/sqrt(n), to ``amount``.

    n is the harmonic mean of the sides' repeats (the width goes as sqrt(1/n_old +
    1/n_new)); a single-run side is exact and left out. At least one more than either
    side has; None for ``amount`` 0 or an infinite width.
    """
    sides = [n for n in (diff.n_old, diff.n_new) if n > 1]
    if amount <= 0 or not sides or not math.isfinite(diff.width):
        return None
    n = len(sides) / sum(1 / s for s in sides)
    return max(math.ceil(n * (diff.width / amount) ** 2), max(diff.n_old, diff.n_new) + 1)


def _verdict(threshold: Threshold, allowed: Threshold, base: float, now: float, diff: Difference) -> Verdict:
    low, high = threshold.limits(base)
    if (now > high and diff.ci_low > 0) or (now < low and diff.ci_high < 0):
        return "fail"
    past = (allowed.bound != "decrease" and diff.ci_high > allowed.amount) or (
        allowed.bound != "increase" and diff.ci_low < -allowed.amount
    )
    return "undecided" if past and diff.width > allowed.amount else "pass"


def decide(
    threshold: Threshold,
    baseline: Sequence[float],
    current: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    samples: RequestSamples | None = None,
) -> Decision:
    """The verdict on ``threshold`` from the baseline's and this run's per-repeat values,
    or, given ``samples``, from both sides' requests (a latency percentile).

    A relative threshold against a baseline median of 0 allows a change of 0 in the
    metric's unit (its limits are those of :meth:`.Threshold.limits`), and the change
    is compared in that unit. Raises ValueError for an empty side or a value that is
    not finite.
    """
    if samples is None:
        base, now = over_repeats(baseline, confidence), over_repeats(current, confidence)
    else:
        base = over_requests(samples.baseline, samples.q, confidence)
        now = over_requests(samples.current, samples.q, confidence)
    allowed = threshold
    if threshold.relative and base.median == 0:
        allowed = replace(threshold, amount=0.0, relative=False)
    if samples is None:
        diff = difference(baseline, current, allowed.relative, confidence)
    else:
        diff = difference_over_requests(samples.baseline, samples.current, samples.q, allowed.relative, confidence)
    verdict = _verdict(threshold, allowed, base.median, now.median, diff)
    needed = repeats_needed(diff, allowed.amount) if verdict == "undecided" else None
    decision = Decision(threshold, verdict, diff, base, now, needed, "")
    return replace(decision, message=_message(decision, allowed, confidence))


def _side(interval: Interval, single: str, several: str, label: str) -> str:
    if interval.n == 1:
        return f"{single} is a single run: taken as exact, {interval.median:.6g}"
    return f"{several} {interval.median:.6g} [{label}{interval.ci_low:.6g}, {interval.ci_high:.6g}], n={interval.n}"


def _message(d: Decision, allowed: Threshold, confidence: float) -> str:
    diff, now, t = d.difference, d.current, d.threshold
    assert diff is not None and now is not None
    unit = "%" if diff.relative else ""

    def number(x: float) -> str:
        return f"{x:.1f}" if diff.relative else f"{x:.6g}"

    verb = "rose" if diff.change > 0 else "fell" if diff.change < 0 else "did not change"
    size = "" if diff.change == 0 else f" {number(abs(diff.change))}{unit}"
    sign = {"increase": "+", "decrease": "-", "both": "+/-"}[t.bound]
    limit = f"{sign}{format_number(allowed.amount)}{'%' if allowed.relative else ''}"
    if allowed != t:
        limit += f" ({t} of a baseline median of 0)"
    change = f"{'+' if diff.change > 0 else ''}{number(diff.change)}{unit}"
    ci = f"{confidence * 100:g}% CI "  # said once, at the first interval
    baseline = _side(d.baseline, "the baseline", "baseline median", ci)
    current = _side(now, "this run", "this run", "" if d.baseline.n > 1 else ci)
    basis = " over the requests" if diff.over == "requests" else ""
    text = (
        f"{t.metric} {verb}{size} ({baseline}; {current}; "
        f"difference {change} [{number(diff.ci_low)}, {number(diff.ci_high)}]{basis}); allowed {limit}"
    )
    if d.verdict != "undecided":
        return text + (": a regression" if d.verdict == "fail" else ": passed")
    noisy = f"{text}: undecided, too noisy: the interval is {number(diff.width)}{unit} wide, more than the threshold"
    if d.repeats_needed is None:
        return noisy + ", and no number of repeats narrows it to 0"
    return (
        noisy + f"; about {d.repeats_needed} repeats of each side would decide it (--vllm-repeats {d.repeats_needed})"
    )


def _not_measured(t: Threshold, base: Interval, values: list[float | None]) -> Decision:
    missing = sum(v is None for v in values)
    where = "this run" if missing == len(values) else f"{missing} of the {len(values)} repeats of this run"
    message = f"{t.metric} was not measured in {where} (baseline median {base.median:.6g}; threshold {t})"
    return Decision(t, "fail", None, base, None, None, message)


def check_decisions(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    thresholds: Sequence[Threshold],
    confidence: float = DEFAULT_CONFIDENCE,
    fail_on_undecided: bool = False,
    baseline_samples: SeriesSamples | None = None,
    current_samples: SeriesSamples | None = None,
) -> GateResult:
    """Every threshold's :func:`decide` verdict, and those that fail the point.

    ``baseline`` and ``current`` map metric names to per-repeat values (a lone number
    counts as one repeat). A fail always fails the point; an undecided one only with
    ``fail_on_undecided``. As in :func:`.check_thresholds`, a gated metric this run did
    not measure (absent, None, NaN or infinite in any repeat) fails, and a baseline without a
    numeric value for it in every repeat (or with no "completed") raises ConfigError.
    """
    sides = {name: _repeats(value) for name, value in baseline.items()}
    flat = {name: (values[0] if values and None not in values else None) for name, values in sides.items()}
    check_baseline(flat, thresholds)
    decisions: list[Decision] = []
    for t in thresholds:
        base = [v for v in sides[t.metric] if v is not None]
        now = _repeats(current.get(t.metric))
        if not now or None in now:
            decisions.append(_not_measured(t, over_repeats(base, confidence), now or [None]))
            continue
        samples = request_samples(t.metric, baseline_samples, current_samples)
        decisions.append(decide(t, base, [v for v in now if v is not None], confidence, samples))
    failing = ("fail", "undecided") if fail_on_undecided else ("fail",)
    return GateResult(decisions, [d for d in decisions if d.verdict in failing])
