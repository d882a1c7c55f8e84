"""The benchmark half's settings: one value, built by ``config.bench_settings``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: Latency series that can be recorded as pytest-benchmark's timing data (--vllm-record-metric).
RECORDABLE: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el", "per_token_itl")


@dataclass(frozen=True)
class BenchSettings:
    """Benchmark options, parsed and validated before any load is sent."""

    sweep_rate: tuple[float, ...] = (1, 2, 4, 8, 16, 32, math.inf)
    sweep_concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    sweep_input_len: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
    sweep_output_len: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    num_prompts: int = 100
    input_len: int = 512
    output_len: int = 256
    seed: int = 42
    warmup_requests: int | None = None  # --vllm-warmup; None: auto (see warmup_for)
    prompts_per_concurrency: int = 5  # 0: off
    duration: float | None = None  # seconds of sending per point; None: a fixed count
    endpoint: str = "chat"
    burstiness: float = 1.0
    processes: int | None = None  # None: auto
    percentiles: tuple[float, ...] = (50, 90, 95, 99)
    goodput: dict[str, float] | None = None
    request_timeout: float | None = None
    stall_timeout: float = 30.0  # 0: off
    ignore_eos: bool = True
    token_ids: bool = False  # return_token_ids: off, as vllm bench serve sends
    tokenizer: Path | None = None
    dataset_path: Path | None = None
    trace_path: Path | None = None  # --vllm-trace; None: the package's synthetic trace
    trace_speedup: float = 1.0
    prefix_len: int = 256  # test_shared_prefix: each shared prefix's tokens
    prefix_count: int = 5  # test_shared_prefix: distinct prefixes
    conversation_sessions: int = 16  # test_conversation: sessions, all started at once
    conversation_turns: int = 4
    think_time: float = 0.0  # seconds between an answer and the session's next turn
    record_metric: str = "ttft"
    baseline: Path | None = None
    fail_on: tuple = ()
    repeats: int = 1
    repeat_order: str = "interleaved"  # or "grouped"
    gate_confidence: float = 0.95
    fail_on_undecided: bool = False
    min_duration: float = 10.0  # seconds; a shorter measured phase is unstable
    max_cv: float = 5.0  # percent; repeats that vary more are unstable
    reset_prefix_cache: str = "auto"  # auto (launched servers), on, off
    plots: bool = True
    progress_interval: float = 10.0
    metrics_interval: float = 1.0  # seconds between /metrics scrapes in a measured phase; 0: off
    slo: tuple = ()  # --vllm-slo: SloBound values (bench/slo.py); empty: no SLO search
    slo_search: str = "rate"  # the variable test_slo_search raises: rate or concurrency
    slo_tolerance: float = 0.10  # the search ends when its bracket is this narrow (relative to its top)
    slo_max_probes: int = 12
    slo_start: float = 1.0  # the first probe's rate or concurrency
    slo_max: float | None = None  # never probe above this
    slo_fail_on: tuple = ()  # the --vllm-fail-on thresholds on the search's answer (slo_best)
    slo_warnings: tuple[str, ...] = ()  # bounds that point the better way (shown in the header)
    given: frozenset[str] = frozenset()  # options set explicitly (CLI or ini), not defaulted

    def prompts_for(self, concurrency: int | None) -> int:
        """Prompts for a point capped at ``concurrency``: at least --vllm-prompts-per-concurrency
        times the cap, so that every slot stays busy for more than one request."""
        if not concurrency or not self.prompts_per_concurrency:
            return self.num_prompts
        return max(self.num_prompts, self.prompts_per_concurrency * concurrency)

    def warmup_for(self, max_concurrency: int | None, num_prompts: int) -> int:
        """Warmup requests for a point: --vllm-warmup N, or (auto) enough to fill the point's
        concurrency once: its cap, else its prompts, at most 16."""
        if self.warmup_requests is not None:
            return self.warmup_requests
        if max_concurrency:
            return max_concurrency
        return max(1, min(num_prompts, 16))
