"""The point's regression gate, --vllm-fail-on against --vllm-baseline: as a threshold check for
single runs on both sides, and noise-aware (bootstrap intervals of the difference) where either
side was repeated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_vllm_serve.bench.gates import check_thresholds
from pytest_vllm_serve.bench.noise_gate import Decision, check_decisions
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks.results import Baseline, PointRecord


@dataclass
class PointGate:
    settings: BenchSettings
    baseline: Baseline | None
    node_id: str
    say: Callable[[str], None] | None = None
    decisions: list[Decision] = field(default_factory=list)  # the noise-aware gate's, per threshold

    def _say(self, line: str) -> None:
        if self.say is not None:
            self.say(line)

    def violations(self, values: dict[str, float], point: PointRecord) -> list[str]:
        """Why the point fails the gate (empty: it passes, or is not gated, which it says)."""
        thresholds = self.settings.fail_on
        if not thresholds or self.baseline is None:
            return []
        base = self.baseline.get(self.node_id) if self.settings.fail_on else None
        if base is None or point.partial:
            cause = self.baseline.partial.get(self.node_id)
            why = (
                f"{self.node_id} is partial ({point.partial})"
                if point.partial
                else f"the baseline of {self.node_id} is partial ({cause})"
                if cause
                else f"no baseline for {self.node_id}"
            )
            self._say(f"[vllm-bench] {why}; not gated")
            return []
        current = (point.repeats or {}).get("values")
        base_repeats = self.baseline.repeat_values(self.node_id)
        if current is None and base_repeats is None:  # single runs on both sides: as before repeats
            return [v.message for v in check_thresholds(base, values, thresholds)]
        return self._noise_aware(base, base_repeats, point.metrics, current)

    def _noise_aware(
        self,
        base: dict[str, float],
        base_repeats: dict[str, list[float]] | None,
        metrics: dict[str, float],
        current: dict[str, list[float]] | None,
    ) -> list[str]:
        """With repeats on either side: a point fails only when the change is beyond its threshold
        and the interval of the difference excludes zero; too noisy to tell is undecided."""
        s = self.settings
        if base_repeats is None:
            self._say(f"[vllm-bench] the baseline of {self.node_id} is a single run: taken as exact")
        result = check_decisions(
            {**base, **(base_repeats or {})},
            {**metrics, **(current or {})},
            s.fail_on,
            s.gate_confidence,
            s.fail_on_undecided,
        )
        self.decisions = result.decisions
        for decision in result.decisions:
            if decision.verdict == "undecided" and decision not in result.failures:
                self._say(f"[vllm-bench] {self.node_id}: {decision.message}")
        return result.messages
