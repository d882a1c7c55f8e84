"""The object behind the ``vllm_offline`` fixture: one offline benchmark point.

Same inputs as a served point (the test's ServerSpec gives the model and the
TP/PP/DP/EP layout, the benchmark options give lengths and counts), same
outputs (a results file, pytest-benchmark's JSON, the session table).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .bench import record_into_benchmark
from .command import BUILTIN_DEFAULTS, CPU_DEFAULTS, merge_defaults, resolve_model
from .errors import ConfigError
from .hardware import find_vllm, has_cuda, require_vllm, visible_gpus
from .offline import OfflineConfig, OfflineMetrics, combine, launch
from .options import BenchSettings
from .results import PointRecord, ResultsStore, safe_name
from .spec import ServerSpec


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def engine_kwargs(args: list[str]) -> dict[str, Any]:
    """``vllm serve`` flags as ``LLM(...)`` keyword arguments (both are EngineArgs).

    ``--max-model-len 8192`` -> max_model_len=8192, ``--enforce-eager`` -> True,
    ``--no-enforce-eager`` -> False, ``--flag=value`` works too.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"cannot turn the serve argument {arg!r} into an engine argument for the offline benchmark")
        name, eq, inline = arg[2:].partition("=")
        if eq:
            value: Any = _value(inline)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            i += 1
            value = _value(args[i])
        elif name.startswith("no-"):
            name, value = name[3:], False
        else:
            value = True
        out[name.replace("-", "_")] = value
        i += 1
    return out


@dataclass
class OfflineResult:
    id: str
    metrics: OfflineMetrics
    values: dict[str, float]
    file: Path


@dataclass
class OfflineBench:
    spec: ServerSpec
    settings: BenchSettings
    store: ResultsStore
    node_id: str
    logs_dir: Path
    cache_dir: Path | None = None
    benchmark: Any = None
    viztracer: str | None = None
    before_run: Callable[[], None] | None = None  # frees accelerators held by running servers
    progress_writer: Callable[[str], None] | None = None
    on_point: Callable[[PointRecord], None] | None = None
    extra_files: list[Path] = field(default_factory=list)

    def config(self, **overrides: Any) -> OfflineConfig:
        install = require_vllm()
        cpu = install.is_cpu_build or not has_cuda()
        layout = self.spec.resolve(None if cpu else len(visible_gpus()))
        model = resolve_model(self.spec.model, self.cache_dir)
        defaults: list[str] = []
        if cpu:
            defaults += CPU_DEFAULTS
        if model.builtin:
            defaults += BUILTIN_DEFAULTS
        args = merge_defaults(defaults, list(self.spec.args))
        s = self.settings
        values = dict(
            model=model.argument,
            num_prompts=s.num_prompts,
            input_len=s.input_len,
            output_len=s.output_len,
            seed=s.seed,
            tp=layout.tp,
            pp=layout.pp,
            dp=layout.dp,
            ep=layout.ep,
            engine_args=engine_kwargs(args),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return OfflineConfig(**values)

    def run(self, *, input_len: int | None = None, output_len: int | None = None, num_prompts: int | None = None,
            dataset_path: Path | str | None = None, suite: str = "offline") -> OfflineResult:
        config = self.config(input_len=input_len, output_len=output_len, num_prompts=num_prompts,
                             dataset_path=str(dataset_path) if dataset_path else None)
        for name in ("input_len", "output_len", "num_prompts"):
            if getattr(config, name) <= 0:
                raise ConfigError(f"offline benchmark {name} must be positive, got {getattr(config, name)}")
        if config.dataset_path and not Path(config.dataset_path).exists():
            raise ConfigError(f"--vllm-dataset-path {config.dataset_path} does not exist.\n  fix: give a local ShareGPT JSON file")
        if self.viztracer:
            trace = self.store.root / "profiles" / safe_name(self.node_id) / self.viztracer
            trace.parent.mkdir(parents=True, exist_ok=True)
            config = OfflineConfig(**{**config.__dict__, "viztracer": str(trace)})
            self.extra_files.append(trace)
        if self.before_run is not None:
            self.before_run()
        work = self.store.root / "offline" / safe_name(self.node_id)
        log = self.logs_dir / f"offline-{safe_name(self.node_id)}.log"
        started = time.monotonic()
        if self.progress_writer:
            self.progress_writer(f"[vllm-offline] {self.node_id.split('::')[-1]}: {config.num_prompts} prompts, "
                                 f"TP={config.tp} PP={config.pp} DP={config.dp} EP={config.ep} (log: {log})")
        ranks = launch(config, work, log)
        metrics = combine(ranks, self.settings.percentiles)
        values = metrics.values()
        params = {"workload": "sharegpt" if config.dataset_path else "random", "num_prompts": config.num_prompts,
                  "input_len": config.input_len, "output_len": config.output_len, "tp": config.tp, "pp": config.pp,
                  "dp": config.dp, "ep": config.ep}
        point = PointRecord(id=self.node_id, suite=suite, params=params, metrics=values,
                            server={"model": config.model, "spec": self.spec.describe(), "mode": "offline (LLM.generate)",
                                    "vllm": (find_vllm().version if find_vllm() else None)})
        full = {"mode": "offline", "metrics": values, "ranks": [r.__dict__ for r in ranks], "config": config.__dict__}
        file = self.store.save_point(point, full)
        if self.on_point is not None:
            self.on_point(point)
        ttfts = [v for r in ranks for v in r.ttft]
        record_into_benchmark(self.benchmark, values, params, suite, "ttft", ttfts)
        if self.progress_writer:
            self.progress_writer(f"[vllm-offline] {self.node_id.split('::')[-1]}: {metrics.output_throughput:.1f} output tok/s, "
                                 f"median TTFT {metrics.ttft.median * 1000:.1f} ms ({time.monotonic() - started:.0f} s)")
        return OfflineResult(self.node_id, metrics, values, file)
