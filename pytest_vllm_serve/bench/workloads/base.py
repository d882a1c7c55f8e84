"""What every workload shares: the Workload protocol, and random text of an exact token length."""

from __future__ import annotations

import random
from functools import lru_cache
from importlib import resources
from typing import Protocol, runtime_checkable

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.workloads.tokenizers import Tokenizer
from pytest_vllm_serve.errors import ConfigError


@lru_cache(maxsize=1)
def _word_pool() -> tuple[str, ...]:
    text = resources.files("pytest_vllm_serve").joinpath("data/corpus.txt").read_text("utf-8")
    return tuple(sorted(set(text.split())))


def exact_text(tokenizer: Tokenizer, rng: random.Random, length: int, prefix: str = "") -> tuple[str, int]:
    """Random text of ``length`` tokens (appended to ``prefix``). Returns (text, actual length).

    Words are drawn from the package's corpus, then the token ids are trimmed and
    re-checked until the count is exact (a merge across the cut can shift it by one).
    """
    pool = _word_pool()
    base = len(tokenizer.encode(prefix)) if prefix else 0
    want = base + length
    text = prefix + " ".join(rng.choice(pool) for _ in range(max(length, 1)))
    count = 0
    for _ in range(12):
        ids = tokenizer.encode(text)
        count = len(ids)
        if count == want:
            break
        if count > want:
            text = tokenizer.decode(ids[:want])
        else:
            text = text + " " + " ".join(rng.choice(pool) for _ in range(want - count))
    return text, count - base


@runtime_checkable
class Workload(Protocol):
    """What ``vllm_bench.run()`` sends. Subclass it for a workload of your own: ``name`` and
    ``prompts()`` are yours to write; the other members have defaults.
    """

    name: str

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        """The requests to send, in order, each with its prompt and output token counts."""
        ...

    def length_limit(self) -> tuple[int, str] | None:
        """The longest request's prompt + output tokens and how to say it ("input 512 + output
        256"), so a point the server cannot hold is skipped before it runs; None (the default):
        lengths vary per prompt, and the workload keeps to its own limits."""
        return None

    def params(self) -> dict[str, int | float | str]:
        """What a point records about the workload: by default its int, float and str fields."""
        return {k: v for k, v in vars(self).items() if isinstance(v, (int, float, str)) and k != "name"}


def _fixed_lengths(input_len: int, output_len: int) -> tuple[int, str]:
    return input_len + output_len, f"input {input_len} + output {output_len}"


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
