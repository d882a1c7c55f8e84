"""The offline benchmark: raw ``LLM.generate`` throughput and latency, no API server.

The engine runs in a subprocess (``python -m pytest_vllm_serve.bench.offline.engine run``,
started by ``serving/offline.py``),
one per data-parallel rank under ``torch.distributed.run`` when DP > 1, as the
reference offline_bench does with torchrun. Each rank takes the prompts with
``i % dp == rank``, does one warmup ``generate``, then times one ``generate``
over its prompts and writes its per-request samples from the engine's own
timestamps. The parent combines ranks: the duration is the slowest rank's,
and per-request samples are pooled before any percentile is taken (the
reference averages per-rank medians, which is not a median of anything).

Per request, from the engine core's monotonic timestamps:
  TTFT = first_token_ts - queued_ts   (queueing included, as a user would see it)
  TPOT = (last_token_ts - first_token_ts) / (output tokens - 1)
  E2EL = last_token_ts - queued_ts
The reference's TTFT (first_token_ts - scheduled_ts) is kept as ``ttft_from_scheduled``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.metrics import DEFAULT_PERCENTILES, Stats, compute_stats

#: What ``serving/offline.py`` runs with ``python -m`` (see ``_main``).
ENGINE_MODULE = "pytest_vllm_serve.bench.offline.engine"


@dataclass(frozen=True)
class OfflineConfig:
    model: str
    num_prompts: int = 100
    input_len: int = 512
    output_len: int = 256
    dataset_path: str | None = None  # ShareGPT JSON; else random token ids of exact length
    seed: int = 42
    warmup: int = 1
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: bool = False
    engine_args: dict[str, Any] = field(default_factory=dict)
    viztracer: str | None = None  # write a VizTracer trace of the timed generate here


@dataclass
class RankResult:
    rank: int
    duration: float  # the timed generate, seconds
    prompt_tokens: list[int]
    output_tokens: list[int]
    ttft: list[float]
    ttft_from_scheduled: list[float]
    tpot: list[float]
    e2el: list[float]


@dataclass(frozen=True)
class OfflineMetrics:
    ranks: int
    num_requests: int
    duration: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    ttft: Stats
    ttft_from_scheduled: Stats
    tpot: Stats | None
    e2el: Stats

    def values(self) -> dict[str, float]:
        out = {
            "completed": float(self.num_requests),
            "duration": self.duration,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_token_throughput": self.total_token_throughput,
            "dp_ranks": float(self.ranks),
        }
        for name in ("ttft", "ttft_from_scheduled", "tpot", "e2el"):
            stats: Stats | None = getattr(self, name)
            if stats is None:
                continue
            out[f"mean_{name}_ms"] = stats.mean * 1000
            out[f"median_{name}_ms"] = stats.median * 1000
            out[f"std_{name}_ms"] = stats.std * 1000
            for p, value in stats.percentiles.items():
                label = str(int(p)) if float(p).is_integer() else str(p)
                out[f"p{label}_{name}_ms"] = value * 1000
        return out


def combine(ranks: list[RankResult], percentiles=DEFAULT_PERCENTILES) -> OfflineMetrics:
    """Pool per-request samples of every rank; the run lasts as long as its slowest rank."""
    if not ranks:
        raise ValueError("no rank results to combine")
    duration = max(r.duration for r in ranks)
    prompt = sum(sum(r.prompt_tokens) for r in ranks)
    output = sum(sum(r.output_tokens) for r in ranks)
    n = sum(len(r.output_tokens) for r in ranks)

    def pooled(name: str) -> list[float]:
        return [v for r in ranks for v in getattr(r, name)]

    tpots = pooled("tpot")
    return OfflineMetrics(
        ranks=len(ranks),
        num_requests=n,
        duration=duration,
        request_throughput=n / duration,
        output_throughput=output / duration,
        total_token_throughput=(prompt + output) / duration,
        ttft=compute_stats(pooled("ttft"), percentiles),
        ttft_from_scheduled=compute_stats(pooled("ttft_from_scheduled"), percentiles),
        tpot=compute_stats(tpots, percentiles) if tpots else None,
        e2el=compute_stats(pooled("e2el"), percentiles),
    )


# -- inside the engine subprocess ---------------------------------------------------------


def _prompts(config: OfflineConfig, tokenizer, rank: int, dp: int) -> list[tuple[Any, int, int]]:
    """(prompt, prompt_len, output_len) for this rank: random exact-length token ids or ShareGPT."""
    rng = random.Random(config.seed)
    items: list[tuple[Any, int, int]] = []
    if config.dataset_path:
        from pytest_vllm_serve.bench.workloads import ShareGPTWorkload

        class _Adapter:  # the workload needs encode/decode
            def encode(self, text):
                return tokenizer.encode(text, add_special_tokens=False)

            def decode(self, ids):
                return tokenizer.decode(ids)

        for prompt in ShareGPTWorkload(
            Path(config.dataset_path), config.num_prompts, config.seed, output_len=None
        ).prompts(_Adapter()):
            items.append((prompt.text, prompt.prompt_len, prompt.output_len))
    else:
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        vocab = [i for i in range(len(tokenizer)) if i not in special]
        for _ in range(config.num_prompts):
            ids = [rng.choice(vocab) for _ in range(config.input_len)]
            items.append(({"prompt_token_ids": ids}, config.input_len, config.output_len))
    return [item for i, item in enumerate(items) if i % dp == rank]


def run_rank(config: OfflineConfig, rank: int, dp: int) -> RankResult:
    from vllm import LLM, SamplingParams

    engine_args: dict[str, Any] = dict(
        model=config.model,
        tensor_parallel_size=config.tp,
        pipeline_parallel_size=config.pp,
        enable_expert_parallel=config.ep,
        disable_log_stats=False,  # the per-request timestamps come from the stats path
        seed=config.seed,
    )
    if dp > 1:
        engine_args["distributed_executor_backend"] = "external_launcher"
        engine_args["data_parallel_size"] = dp
    engine_args.update(config.engine_args)
    llm = LLM(**engine_args)
    items = _prompts(config, llm.get_tokenizer(), rank, dp)
    if config.warmup:
        warm = [items[0][0]] * config.warmup
        llm.generate(
            warm, SamplingParams(max_tokens=min(8, items[0][2]), ignore_eos=True, temperature=0), use_tqdm=False
        )
    params = [SamplingParams(max_tokens=out, ignore_eos=True, temperature=0) for _, _, out in items]
    tracer = None
    if config.viztracer:
        from viztracer import VizTracer

        tracer = VizTracer(output_file=config.viztracer)
        tracer.start()
    start = time.perf_counter()
    outputs = llm.generate([prompt for prompt, _, _ in items], params, use_tqdm=False)
    duration = time.perf_counter() - start
    if tracer is not None:
        tracer.stop()
        tracer.save()
    result = RankResult(rank, duration, [], [], [], [], [], [])
    for out, (_, prompt_len, _) in zip(outputs, items):
        m = out.metrics
        if m is None:
            raise RuntimeError("the engine returned no per-request metrics (is log stats disabled?)")
        n = len(out.outputs[0].token_ids)
        result.prompt_tokens.append(len(out.prompt_token_ids or []) or prompt_len)
        result.output_tokens.append(n)
        result.ttft.append(m.first_token_ts - m.queued_ts)
        result.ttft_from_scheduled.append(m.first_token_ts - m.scheduled_ts)
        result.e2el.append(m.last_token_ts - m.queued_ts)
        if n > 1:
            result.tpot.append((m.last_token_ts - m.first_token_ts) / (n - 1))
    return result


def _main(argv: list[str]) -> int:
    """``python -m pytest_vllm_serve.bench.offline.engine run CONFIG.json OUT_DIR``; the rank comes from torchrun's env."""
    _, config_path, out_dir = argv
    config = OfflineConfig(**json.loads(Path(config_path).read_text()))
    rank = int(os.environ.get("RANK", "0"))
    result = run_rank(config, rank, config.dp)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(_main(sys.argv[1:]))
    print(__doc__)
