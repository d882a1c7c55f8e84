"""vLLM's ``/metrics`` text into samples, with prometheus_client's parser.

A sample is keyed by its full name (``vllm:prompt_tokens_total``, ``..._bucket``) and its
labels, so that every engine of a data-parallel server is read; only ``vllm:`` families are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

#: (sample name, sorted (label, value) pairs)
Key = tuple[str, tuple[tuple[str, str], ...]]


class MetricsTextError(ValueError):
    """The text is not Prometheus exposition text with vLLM's metrics."""


@dataclass(frozen=True)
class Snapshot:
    """One scrape: when (``time.monotonic()`` seconds, the clock every process on the
    machine shares) and its samples."""

    t: float
    values: dict[Key, float]
    answered: float | None = None  # when the answer came (same clock); None: not known

    @property
    def took(self) -> float | None:
        """Seconds from the GET to its answer: the gauges are of some moment in between."""
        return None if self.answered is None else self.answered - self.t

    def total(self, name: str, **match: str) -> float | None:
        """The sum over every label set (engines) of ``name``'s samples whose labels include
        ``match``; None when there is none."""
        found = [
            v for (n, labels), v in self.values.items() if n == name and all((k, m) in labels for k, m in match.items())
        ]
        return sum(found) if found else None

    def engines(self) -> list[str]:
        return sorted({v for (_, labels) in self.values for k, v in labels if k == "engine"})


def parse_metrics(text: str) -> dict[Key, float]:
    """The ``vllm:`` samples of a ``/metrics`` answer; MetricsTextError when it is not
    Prometheus text or has no vLLM metric."""
    values: dict[Key, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("vllm:"):
                continue
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise MetricsTextError(f"not Prometheus text: {exc}") from None
    if not values:
        raise MetricsTextError("no vllm: metric in the answer")
    return values
