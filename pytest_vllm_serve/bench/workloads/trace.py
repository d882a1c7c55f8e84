"""Trace replay: a JSONL trace in the Mooncake format, sent on its own clock.

Each line is one request::

    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]}

``timestamp`` is in ms from the trace's start; ``hash_ids`` name the prompt's blocks of
``block_size`` (512) tokens, so two requests whose hash ids start alike share that prompt
prefix. Each hash id becomes one block of seeded random text of exactly ``block_size`` tokens
(the same text wherever it appears); the last block is cut to the request's ``input_length``.
The replay's offsets are the time stamps divided by ``speedup``
(:func:`~pytest_vllm_serve.bench.schedule.Schedule.replay`). Nothing is downloaded: the
package ships a small synthetic trace (:func:`synthetic_trace`, ``data/trace-synthetic.jsonl``).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads.base import Workload, exact_text
from pytest_vllm_serve.bench.workloads.tokenizers import Tokenizer
from pytest_vllm_serve.errors import ConfigError

BLOCK_SIZE = 512
SYNTHETIC = "trace-synthetic.jsonl"
_FIX = (
    "  fix: give a JSONL file with one request per line: "
    '{"timestamp": MS, "input_length": N, "output_length": N, "hash_ids": [...]}'
)


@dataclass(frozen=True)
class TraceRequest:
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


def shipped_trace() -> Path:
    """The package's synthetic trace (see :func:`synthetic_trace`)."""
    return Path(str(resources.files("pytest_vllm_serve").joinpath(f"data/{SYNTHETIC}")))


def read_trace(path: Path) -> list[TraceRequest]:
    """The trace's requests, sorted by time stamp; a clear error for a bad file or line."""
    if not path.exists():
        raise ConfigError(f"--vllm-trace {path} does not exist.\n{_FIX}")
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--vllm-trace {path} is not readable: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            request = TraceRequest(
                float(entry["timestamp"]),
                int(entry["input_length"]),
                int(entry["output_length"]),
                tuple(int(h) for h in entry.get("hash_ids") or ()),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"--vllm-trace {path} line {number}: not a trace request ({exc!r}).\n{_FIX}") from None
        if request.input_length <= 0 or request.output_length <= 0 or not math.isfinite(request.timestamp_ms):
            raise ConfigError(f"--vllm-trace {path} line {number}: lengths must be positive, the time stamp finite")
        out.append(request)
    if not out:
        raise ConfigError(f"--vllm-trace {path} holds no request.\n{_FIX}")
    return sorted(out, key=lambda r: r.timestamp_ms)


@dataclass(frozen=True)
class TraceWorkload(Workload):
    """The requests of a Mooncake-format trace (``path``), with their lengths and shared prefixes."""

    path: Path
    speedup: float = 1.0
    block_size: int = BLOCK_SIZE
    max_requests: int | None = None  # the first N requests only
    seed: int = 42
    name: str = "trace"

    def __post_init__(self) -> None:
        if not (self.speedup > 0 and math.isfinite(self.speedup)):
            raise ConfigError(f"--vllm-trace-speedup must be a positive number, got {self.speedup!r}")
        self.requests()  # a missing or malformed file fails here, before any load

    def requests(self) -> list[TraceRequest]:
        found = read_trace(Path(self.path))
        return found[: self.max_requests] if self.max_requests else found

    def schedule(self, max_concurrency: int | None = None) -> Schedule:
        """The replay: each request at its time stamp (from the first), ``speedup`` times faster."""
        found = self.requests()
        start = found[0].timestamp_ms
        return Schedule.replay([(r.timestamp_ms - start) / 1000 / self.speedup for r in found], max_concurrency)

    def length_limit(self) -> tuple[int, str] | None:
        longest = max(self.requests(), key=lambda r: r.input_length + r.output_length)
        total = longest.input_length + longest.output_length
        return total, f"the trace's longest request, input {longest.input_length} + output {longest.output_length}"

    def params(self) -> dict[str, int | float | str]:
        return {"trace": Path(self.path).name, "speedup": self.speedup, "block_size": self.block_size}

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        blocks: dict[int, list[int]] = {}
        out = []
        for index, request in enumerate(self.requests()):
            ids: list[int] = []
            for h in request.hash_ids:
                if len(ids) >= request.input_length:
                    break
                if h not in blocks:
                    text, _ = exact_text(tokenizer, random.Random(f"{self.seed}:block:{h}"), self.block_size)
                    blocks[h] = tokenizer.encode(text)
                ids.extend(blocks[h])
            ids = ids[: request.input_length]
            text = tokenizer.decode(ids) if ids else ""
            if len(ids) < request.input_length:  # beyond the hashed blocks: text of this request's own
                rest = request.input_length - len(ids)
                text, _ = exact_text(
                    tokenizer, random.Random(f"{self.seed}:tail:{index}"), rest, prefix=text + " " if text else ""
                )
            out.append(Prompt(text, len(tokenizer.encode(text)), request.output_length))
        return out


def synthetic_trace(num: int = 48, seed: int = 0) -> list[dict[str, object]]:
    """A small trace in the Mooncake format, for tests and demos: about 24 s of bursty arrivals;
    four shared prompt prefixes of one to three blocks (a system prompt, a document, ...) under
    most requests; inputs of about 150 to 2,050 tokens, outputs of 16 to 128."""
    rng = random.Random(seed)
    prefixes = [[1], [1, 2], [3, 4, 5], [6]]
    next_id, t, out = 100, 0.0, []
    for _ in range(num):
        t += rng.expovariate(2.0) * 1000
        shared = rng.choice(prefixes) if rng.random() < 0.8 else []
        input_length = len(shared) * BLOCK_SIZE + rng.randint(40, 500)
        own = math.ceil(input_length / BLOCK_SIZE) - len(shared)
        hash_ids = [*shared, *range(next_id, next_id + own)]
        next_id += own
        output = rng.randint(16, 128)
        out.append({"timestamp": round(t), "input_length": input_length, "output_length": output, "hash_ids": hash_ids})
    return out
