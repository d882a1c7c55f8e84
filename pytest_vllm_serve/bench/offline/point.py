"""The object behind the ``vllm_offline`` fixture: one offline benchmark point.

Same inputs as a served point (the test's ServerSpec gives the model and the
TP/PP/DP/EP layout, the benchmark options give lengths and counts), same
outputs (a results file, pytest-benchmark's JSON, the session table).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_vllm_serve.bench.offline.engine import ENGINE_MODULE, OfflineConfig, OfflineMetrics, RankResult, combine
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks import pytest_benchmark
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore, safe_name
from pytest_vllm_serve.errors import ConfigError


@dataclass
class OfflineResult:
    id: str
    metrics: OfflineMetrics
    values: dict[str, float]
    file: Path


class Engine(Protocol):
    """The offline engine the serving half resolved for the test's spec (serving/offline.py)."""

    model: str
    tp: int
    pp: int
    dp: int
    ep: bool
    engine_args: dict[str, Any]
    description: str
    vllm_version: str | None


#: Runs the engine processes: (module, config, dp, work dir, log) -> each rank's result as JSON.
EngineRunner = Callable[[str, dict[str, Any], int, Path, Path], list[dict[str, Any]]]


@dataclass
class OfflineBench:
    """One offline point. The serving half comes in as two callables (wired by the plugin):
    ``resolve_engine`` (model, layout and engine arguments) and ``run_engine``."""

    resolve_engine: Callable[[], Engine]
    run_engine: EngineRunner
    settings: BenchSettings
    store: ResultsStore
    node_id: str
    logs_dir: Path
    benchmark: Any = None
    viztracer: str | None = None
    before_run: Callable[[], None] | None = None  # frees accelerators held by running servers
    progress_writer: Callable[[str], None] | None = None
    on_point: Callable[[PointRecord], None] | None = None
    extra_files: list[Path] = field(default_factory=list)
    _engine: Engine | None = field(default=None, init=False, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.resolve_engine()
        return self._engine

    def config(self, **overrides: Any) -> OfflineConfig:
        engine, s = self.engine, self.settings
        values = dict(
            model=engine.model,
            num_prompts=s.num_prompts,
            input_len=s.input_len,
            output_len=s.output_len,
            seed=s.seed,
            tp=engine.tp,
            pp=engine.pp,
            dp=engine.dp,
            ep=engine.ep,
            engine_args=dict(engine.engine_args),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return OfflineConfig(**values)

    def run(
        self,
        *,
        input_len: int | None = None,
        output_len: int | None = None,
        num_prompts: int | None = None,
        dataset_path: Path | str | None = None,
        suite: str = "offline",
    ) -> OfflineResult:
        config = self._checked_config(input_len, output_len, num_prompts, dataset_path)
        if self.viztracer:
            config = self._traced(config, self.viztracer)
        if self.before_run is not None:
            self.before_run()
        started = time.monotonic()
        ranks = self._run_ranks(config)
        metrics = combine(ranks, self.settings.percentiles)
        values = metrics.values()
        file = self._record(config, ranks, values, suite)
        if self.progress_writer:
            self.progress_writer(
                f"[vllm-offline] {self.node_id.split('::')[-1]}: {metrics.output_throughput:.1f} output tok/s, "
                f"median TTFT {metrics.ttft.median * 1000:.1f} ms ({time.monotonic() - started:.0f} s)"
            )
        return OfflineResult(self.node_id, metrics, values, file)

    def _checked_config(
        self,
        input_len: int | None,
        output_len: int | None,
        num_prompts: int | None,
        dataset_path: Path | str | None,
    ) -> OfflineConfig:
        """The point's config with the test's overrides; positive sizes, an existing dataset."""
        config = self.config(
            input_len=input_len,
            output_len=output_len,
            num_prompts=num_prompts,
            dataset_path=str(dataset_path) if dataset_path else None,
        )
        for name in ("input_len", "output_len", "num_prompts"):
            if getattr(config, name) <= 0:
                raise ConfigError(f"offline benchmark {name} must be positive, got {getattr(config, name)}")
        if config.dataset_path and not Path(config.dataset_path).exists():
            raise ConfigError(
                f"--vllm-dataset-path {config.dataset_path} does not exist.\n  fix: give a local ShareGPT JSON file"
            )
        return config

    def _traced(self, config: OfflineConfig, viztracer: str) -> OfflineConfig:
        """``config`` writing a viztracer trace into the results' profiles folder."""
        trace = self.store.root / "profiles" / safe_name(self.node_id) / viztracer
        trace.parent.mkdir(parents=True, exist_ok=True)
        traced = OfflineConfig(**{**config.__dict__, "viztracer": str(trace)})
        self.extra_files.append(trace)
        return traced

    def _run_ranks(self, config: OfflineConfig) -> list[RankResult]:
        """Run the engine processes, one per DP rank; their results."""
        work = self.store.root / "offline" / safe_name(self.node_id)
        log = self.logs_dir / f"offline-{safe_name(self.node_id)}.log"
        if self.progress_writer:
            self.progress_writer(
                f"[vllm-offline] {self.node_id.split('::')[-1]}: {config.num_prompts} prompts, "
                f"TP={config.tp} PP={config.pp} DP={config.dp} EP={config.ep} (log: {log})"
            )
        return [RankResult(**rank) for rank in self.run_engine(ENGINE_MODULE, asdict(config), config.dp, work, log)]

    def _record(self, config: OfflineConfig, ranks: list[RankResult], values: dict[str, float], suite: str) -> Path:
        """Save the point (results file, on_point, pytest-benchmark); the results file."""
        params = {
            "workload": "sharegpt" if config.dataset_path else "random",
            "num_prompts": config.num_prompts,
            "input_len": config.input_len,
            "output_len": config.output_len,
            "tp": config.tp,
            "pp": config.pp,
            "dp": config.dp,
            "ep": config.ep,
        }
        point = PointRecord(
            id=self.node_id,
            suite=suite,
            params=params,
            metrics=values,
            server={
                "model": config.model,
                "spec": self.engine.description,
                "mode": "offline (LLM.generate)",
                "vllm": self.engine.vllm_version,
            },
        )
        full = {"mode": "offline", "metrics": values, "ranks": [r.__dict__ for r in ranks], "config": config.__dict__}
        file = self.store.save_point(point, full)
        if self.on_point is not None:
            self.on_point(point)
        ttfts = [v for r in ranks for v in r.ttft]
        pytest_benchmark.record(self.benchmark, values, params, suite, "ttft", ttfts)
        return file
