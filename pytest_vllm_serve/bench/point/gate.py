"""The point's regression gate, --vllm-fail-on against --vllm-baseline: as a threshold check for
single runs on both sides, and noise-aware (bootstrap intervals of the difference) where either
side was repeated."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_vllm_serve.bench.gates import check_thresholds
from pytest_vllm_serve.bench.metrics import percentile_of
from pytest_vllm_serve.bench.noise_gate import Decision, check_decisions
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks.baseline import Baseline
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore
from pytest_vllm_serve.errors import ResultsWriteError


@dataclass
class PointGate:
    settings: BenchSettings
    baseline: Baseline | None
    node_id: str
    say: Callable[[str], None] | None = None
    samples: Sequence[Mapping[str, Sequence[float]]] = ()  # this run's, per repeat: the series' samples (ms)
    decisions: list[Decision] = field(default_factory=list)  # the noise-aware gate's, per threshold
    #: what the report shows: {"verdict": pass|fail|undecided|not gated, "reasons": [...]};
    #: None when no gate was asked for (no --vllm-fail-on or no --vllm-baseline)
    outcome: dict[str, object] | None = None

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
            self.outcome = {"verdict": "not gated", "reasons": [why]}
            return []
        current = (point.repeats or {}).get("values")
        base_repeats = self.baseline.repeat_values(self.node_id)
        if current is None and base_repeats is None:  # single runs on both sides: as before repeats
            messages = [v.message for v in check_thresholds(base, values, thresholds)]
            self.outcome = {"verdict": "fail" if messages else "pass", "reasons": messages}
            return messages
        messages = self._noise_aware(base, base_repeats, point.metrics, current)
        undecided = [d.message for d in self.decisions if d.verdict == "undecided"]
        verdict = "fail" if messages else "undecided" if undecided else "pass"
        self.outcome = {"verdict": verdict, "reasons": messages or undecided}
        return messages

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
        base_samples = self.baseline.repeat_samples(self.node_id) if self.baseline and base_repeats else None
        if base_repeats and current and base_samples is None and self._gates_percentiles():
            self._say(
                f"[vllm-bench] no repeat files of the baseline of {self.node_id} (a --benchmark-json "
                "baseline has none; a summary.json's results dir keeps them under points/repeats/): "
                "its latency percentiles are gated over the repeats, not over the requests"
            )
        result = check_decisions(
            {**base, **(base_repeats or {})},
            {**metrics, **(current or {})},
            s.fail_on,
            s.gate_confidence,
            s.fail_on_undecided,
            base_samples,
            self.samples or None,
        )
        self.decisions = result.decisions
        for decision in result.decisions:
            if decision.verdict == "undecided" and decision not in result.failures:
                self._say(f"[vllm-bench] {self.node_id}: {decision.message}")
        return result.messages

    def record(self, point: PointRecord, store: ResultsStore) -> None:
        """Keep the verdict in the point's saved file (for the report), when a gate was asked for."""
        if self.outcome is None:
            return
        point.gate = self.outcome
        try:
            store.update_point(point)
        except ResultsWriteError as exc:
            self._say(f"[vllm-bench] {exc}")

    def _gates_percentiles(self) -> bool:
        return any(percentile_of(t.metric) for t in self.settings.fail_on)
