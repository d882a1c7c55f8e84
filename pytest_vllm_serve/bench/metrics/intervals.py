"""Medians and bootstrap confidence intervals over the repeats of one benchmark point.

``--vllm-repeats N`` measures a point N times on one server. Per metric the point then
reports the median of the N values, a percentile-bootstrap confidence interval of that
median, and the coefficient of variation of the N values:

* :func:`over_repeats` for a metric with one value per repeat (a throughput, a mean);
* :func:`over_requests` for a latency percentile (``p99_ttft_ms``): a two-level
  bootstrap over the repeats and over the requests within each repeat;
* :func:`difference` for the change of a metric between a baseline and this run;
* :func:`difference_over_requests` for the change of a latency percentile, each side
  bootstrapped as :func:`over_requests` does.

Conventions, shared by all three:

* The bootstrap is seeded (``seed``), so the same input gives the same interval.
* The interval's ends are order statistics of the bootstrap distribution rounded
  outward (numpy's ``lower`` and ``higher`` quantile methods), never interpolated
  between two resamples; then widened, if need be, to contain the point estimate, so
  a median never lies outside its own interval.
* A single run has no interval: with one repeat :func:`over_repeats` gives the value
  itself as both ends, and :func:`difference` takes a side with one value as exact.
* Percentiles are numpy's default (linear interpolation), as in :mod:`.stats` and in
  ``vllm bench serve``.

Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Bootstrap resamples by default: enough for a stable 95 % interval, fast with numpy.
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Interval:
    """A metric over ``n`` repeats: its median, a confidence interval of it, and its spread.

    ``cv`` is the coefficient of variation of the per-repeat values in percent: sample
    standard deviation (ddof=1) over the absolute mean, times 100. It is 0.0 for one
    repeat and for identical values (zeros included), and None when the mean is 0 but
    the values differ (no finite ratio).
    """

    n: int
    median: float
    ci_low: float
    ci_high: float
    cv: float | None

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low

    def as_dict(self) -> dict[str, float | None]:
        """``median``, ``ci_low``, ``ci_high`` and ``cv`` as plain floats (cv may be None)."""
        return {"median": self.median, "ci_low": self.ci_low, "ci_high": self.ci_high, "cv": self.cv}


@dataclass(frozen=True)
class Difference:
    """The change from a baseline to this run, with a confidence interval.

    ``change`` is this run's median minus the baseline's, in percent of the baseline's
    (absolute) median when ``relative``, else in the metric's unit.
    """

    change: float
    ci_low: float
    ci_high: float
    n_old: int
    n_new: int
    relative: bool
    over: str = "repeats"  # what was resampled: "repeats", or "requests" (within the resampled repeats)

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low


def _values(values: Sequence[float], what: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} needs a non-empty list of numbers, got {values!r}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} needs finite numbers, got {values!r}")
    return array


def _check(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples!r}")


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample std (ddof=1) / |mean| * 100; 0.0 for one value or identical values, None
    when the mean is 0 and the values differ."""
    array = _values(values, "coefficient_of_variation")
    if array.size == 1:
        return 0.0
    std = float(np.std(array, ddof=1))
    if std == 0:
        return 0.0
    mean = float(np.mean(array))
    return None if mean == 0 else std / abs(mean) * 100


def _bounds(stats: FloatArray, estimate: float, confidence: float) -> tuple[float, float]:
    """The percentile-bootstrap interval of ``stats``, rounded outward, containing ``estimate``."""
    tail = (1 - confidence) / 2
    low = float(np.quantile(stats, tail, method="lower"))
    high = float(np.quantile(stats, 1 - tail, method="higher"))
    return min(low, estimate), max(high, estimate)


def _bootstrap_medians(array: FloatArray, resamples: int, rng: np.random.Generator) -> FloatArray:
    """Medians of ``resamples`` resamples of ``array`` with replacement (its median when it has one value)."""
    if array.size == 1:
        return np.full(resamples, array[0])
    picks = rng.integers(0, array.size, size=(resamples, array.size))
    medians: FloatArray = np.median(array[picks], axis=1)
    return medians


def over_repeats(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The median of the per-repeat ``values`` and a percentile-bootstrap interval of it.

    With one value there is nothing to resample: the interval is that value at both ends
    (a single run has no interval) and ``cv`` is 0.0.
    """
    array = _values(values, "over_repeats")
    _check(confidence, resamples)
    median = float(np.median(array))
    if array.size == 1:
        return Interval(1, median, median, median, 0.0)
    stats = _bootstrap_medians(array, resamples, np.random.default_rng(seed))
    low, high = _bounds(stats, median, confidence)
    return Interval(int(array.size), median, low, high, coefficient_of_variation(values))


def _lerp(a: FloatArray, b: FloatArray, t: FloatArray) -> FloatArray:
    """numpy's percentile interpolation between neighbours ``a <= b`` at fraction ``t``."""
    out: FloatArray = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)
    return out


@dataclass
class _Search:
    """Bisection state of one rank per resample: its range of sorted positions
    ``[lo, hi)``, the rank within that range, and how many draws of each repeat fall in it."""

    lo: IntArray
    hi: IntArray
    rank: IntArray
    draws: IntArray  # (resamples, repeats)

    def copy(self) -> _Search:
        return _Search(self.lo.copy(), self.hi.copy(), self.rank.copy(), self.draws.copy())

    def split(
        self, prefix: IntArray, rng: np.random.Generator, rows: BoolArray | None = None
    ) -> tuple[IntArray, IntArray]:
        """The midpoint of each range, and for ``rows`` a draw of how many of each
        repeat's draws fall below it (the other rows' counts are left at 0)."""
        mid = (self.lo + self.hi) // 2
        start = prefix[self.lo]
        inside = prefix[self.hi] - start
        below = prefix[mid] - start
        left = np.where(below == inside, self.draws, 0)
        split = (self.draws > 0) & (below > 0) & (below < inside)
        if rows is not None:
            left[~rows] = 0
            split[~rows] = False
        left[split] = rng.binomial(self.draws[split], below[split] / inside[split])
        return mid, left

    def step(self, mid: IntArray, left: IntArray) -> None:
        n_left = left.sum(axis=1)
        go_left = self.rank < n_left
        self.hi = np.where(go_left, mid, self.hi)
        self.lo = np.where(go_left, self.lo, mid)
        self.rank = np.where(go_left, self.rank, self.rank - n_left)
        self.draws = np.where(go_left[:, None], left, self.draws - left)


def _pooled_percentiles(groups: Sequence[FloatArray], q: float, resamples: int, rng: np.random.Generator) -> FloatArray:
    """The q-th percentile of the pooled sample of each two-level bootstrap resample.

    A resample draws the repeats with replacement, then each drawn repeat's requests
    with replacement. Only the two order statistics the percentile interpolates between
    are needed, so they are drawn directly, without materialising a resample: the draws
    of every repeat are split between the halves of the sorted pooled values with
    binomial draws, and the half holding the rank is bisected again (exact: given how
    many draws of a repeat fall in a range, they are uniform over its values there).
    """
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    values = np.concatenate(groups)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    owner = np.repeat(np.arange(len(groups)), sizes)[order]
    prefix = np.zeros((values.size + 1, len(groups)), dtype=np.int64)  # draws of each repeat before a position
    prefix[1:] = np.cumsum(owner[:, None] == np.arange(len(groups))[None, :], axis=0)

    picks = rng.multinomial(len(groups), np.full(len(groups), 1 / len(groups)), size=resamples)
    draws = picks.astype(np.int64) * sizes
    total = draws.sum(axis=1)
    virtual = (total - 1) * (q / 100)
    rank = np.floor(virtual).astype(np.int64)
    fraction = virtual - rank
    zero = np.zeros(resamples, dtype=np.int64)
    first = _Search(zero.copy(), np.full(resamples, values.size, dtype=np.int64), rank, draws)
    second = first.copy()
    second.rank = np.minimum(rank + 1, total - 1)
    for _ in range(int(values.size - 1).bit_length() + 1):  # halvings down to one position, and one more
        merged = (first.lo == second.lo) & (first.hi == second.hi)  # one range: one draw for both
        mid, left = first.split(prefix, rng)
        if merged.all():
            second.step(mid, left)
        else:
            mid2, left2 = second.split(prefix, rng, ~merged)
            second.step(mid2, np.where(merged[:, None], left, left2))
        first.step(mid, left)
    return _lerp(ordered[first.lo], ordered[second.lo], fraction)


def _groups(
    samples_per_repeat: Sequence[Sequence[float]], q: float, confidence: float, resamples: int, what: str
) -> list[FloatArray]:
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must lie within 0..100, got {q!r}")
    _check(confidence, resamples)
    if len(samples_per_repeat) == 0:
        raise ValueError(f"{what} needs the samples of at least one repeat")
    return [_values(samples, f"{what} (repeat {i})") for i, samples in enumerate(samples_per_repeat)]


def over_requests(
    samples_per_repeat: Sequence[Sequence[float]],
    q: float,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """A latency percentile over the requests of every repeat (``q`` in 0..100).

    ``median`` is the q-th percentile of all repeats' samples pooled; the interval is a
    two-level bootstrap (repeats, then the requests of each drawn repeat) of that
    pooled percentile; ``cv`` is that of the per-repeat percentiles. With one repeat it
    is a bootstrap over that run's requests (and ``cv`` is 0.0).
    """
    groups = _groups(samples_per_repeat, q, confidence, resamples, "over_requests")
    median = float(np.percentile(np.concatenate(groups), q))
    stats = _pooled_percentiles(groups, q, resamples, np.random.default_rng(seed))
    low, high = _bounds(stats, median, confidence)
    per_repeat = [float(np.percentile(g, q)) for g in groups]
    return Interval(len(groups), median, low, high, coefficient_of_variation(per_repeat))


def _relative(new: FloatArray, old: FloatArray) -> FloatArray:
    """(new - old) / |old| * 100; +-inf where old is 0 and new differs, 0 where both are 0."""
    change = new - old
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out: FloatArray = np.where(old != 0, change / np.abs(old) * 100, np.sign(change) * np.inf)
    out[change == 0] = 0.0
    return out


def difference(
    old: Sequence[float],
    new: Sequence[float],
    relative: bool,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Difference:
    """The change of the median from ``old`` (the baseline's repeats) to ``new`` (this run's).

    Both sides are bootstrapped independently (one random stream, old side first); a
    side with a single value is taken as exact. When ``relative``, the change is in
    percent of the baseline's median, and a baseline median of 0 raises ValueError (no
    relative change from zero: compare in the metric's unit). A resample whose baseline
    median is 0 counts as +-inf (or 0 when its new median is 0 too).
    """
    old_array = _values(old, "difference (baseline)")
    new_array = _values(new, "difference (this run)")
    _check(confidence, resamples)
    old_median, new_median = float(np.median(old_array)), float(np.median(new_array))
    if relative and old_median == 0:
        raise ValueError("no relative change from a baseline median of 0; compare in the metric's unit")
    rng = np.random.default_rng(seed)
    old_stats = _bootstrap_medians(old_array, resamples, rng)
    new_stats = _bootstrap_medians(new_array, resamples, rng)
    change, low, high = _change(old_median, new_median, old_stats, new_stats, relative, confidence)
    return Difference(change, low, high, int(old_array.size), int(new_array.size), relative)


def _change(
    old: float, new: float, old_stats: FloatArray, new_stats: FloatArray, relative: bool, confidence: float
) -> tuple[float, float, float]:
    """The change from ``old`` to ``new`` and its bootstrap interval, from both sides' resamples."""
    if relative:
        change = (new - old) / abs(old) * 100
        stats = _relative(new_stats, old_stats)
    else:
        change = new - old
        stats = new_stats - old_stats
    low, high = _bounds(stats, change, confidence)
    return change, low, high


def difference_over_requests(
    old: Sequence[Sequence[float]],
    new: Sequence[Sequence[float]],
    q: float,
    relative: bool,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Difference:
    """The change of the q-th percentile of the pooled requests, from ``old`` (the
    baseline's per-repeat samples) to ``new`` (this run's).

    Each side is the two-level bootstrap of :func:`over_requests` (its repeats drawn with
    replacement, then the requests of each drawn repeat; one random stream, old side
    first), so a drift between repeats widens the interval as in :func:`difference`,
    while the requests within a repeat narrow it: with five repeats a side, the interval
    of a median over repeats is about the range of the five values, this one is not.
    ``change`` compares the pooled percentiles (what a repeated point reports). A
    baseline percentile of 0 raises ValueError when ``relative``, as in :func:`difference`.
    """
    old_groups = _groups(old, q, confidence, resamples, "difference_over_requests (baseline)")
    new_groups = _groups(new, q, confidence, resamples, "difference_over_requests (this run)")
    old_value = float(np.percentile(np.concatenate(old_groups), q))
    new_value = float(np.percentile(np.concatenate(new_groups), q))
    if relative and old_value == 0:
        raise ValueError("no relative change from a baseline percentile of 0; compare in the metric's unit")
    rng = np.random.default_rng(seed)
    old_stats = _pooled_percentiles(old_groups, q, resamples, rng)
    new_stats = _pooled_percentiles(new_groups, q, resamples, rng)
    change, low, high = _change(old_value, new_value, old_stats, new_stats, relative, confidence)
    return Difference(change, low, high, len(old_groups), len(new_groups), relative, over="requests")
