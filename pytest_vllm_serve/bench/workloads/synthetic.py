"""Synthetic prompts: random text of exact lengths, with or without shared prefixes."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.workloads.base import Workload, _check_positive, _fixed_lengths, exact_text
from pytest_vllm_serve.bench.workloads.tokenizers import Tokenizer
from pytest_vllm_serve.errors import ConfigError


@dataclass(frozen=True)
class RandomWorkload(Workload):
    """``num_prompts`` distinct prompts of exactly ``input_len`` tokens, asking ``output_len``."""

    input_len: int
    output_len: int
    num_prompts: int = 100
    seed: int = 42
    name: str = "random"

    def __post_init__(self) -> None:
        _check_positive(input_len=self.input_len, output_len=self.output_len, num_prompts=self.num_prompts)

    @property
    def max_total_len(self) -> int:
        return self.input_len + self.output_len

    def length_limit(self) -> tuple[int, str] | None:
        return _fixed_lengths(self.input_len, self.output_len)

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        rng = random.Random(self.seed)
        out = []
        for _ in range(self.num_prompts):
            text, actual = exact_text(tokenizer, rng, self.input_len)
            out.append(Prompt(text, actual, self.output_len))
        return out


@dataclass(frozen=True)
class SonnetWorkload(Workload):
    """A shared prefix of ``prefix_len`` tokens plus a varying suffix up to ``input_len``."""

    input_len: int = 550
    output_len: int = 150
    prefix_len: int = 200
    num_prompts: int = 100
    seed: int = 42
    name: str = "sonnet"

    def __post_init__(self) -> None:
        _check_positive(
            input_len=self.input_len,
            output_len=self.output_len,
            num_prompts=self.num_prompts,
            prefix_len=self.prefix_len,
        )
        if self.prefix_len >= self.input_len:
            raise ConfigError(f"sonnet prefix_len ({self.prefix_len}) must be below input_len ({self.input_len})")

    @property
    def max_total_len(self) -> int:
        return self.input_len + self.output_len

    def length_limit(self) -> tuple[int, str] | None:
        return _fixed_lengths(self.input_len, self.output_len)

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        # The prefix is the same for every prompt of every seed: that is what the cache can reuse.
        prefix, _ = exact_text(tokenizer, random.Random(0), self.prefix_len)
        rng = random.Random(self.seed)
        suffix_len = self.input_len - self.prefix_len
        return _under_prefix(tokenizer, rng, prefix, self.prefix_len, suffix_len, self.num_prompts, self.output_len)


@dataclass(frozen=True)
class PrefixWorkload(Workload):
    """``num_prefixes`` distinct prefixes of ``prefix_len`` tokens, each followed by
    ``suffixes_per_prefix`` distinct suffixes of ``suffix_len`` tokens, asking ``output_len``;
    sent in a seeded shuffled order. What ``vllm bench serve`` calls prefix_repetition: the
    prefix cache can serve every prompt's prefix but the first of its group."""

    num_prefixes: int = 5
    prefix_len: int = 256
    suffixes_per_prefix: int = 20
    suffix_len: int = 256
    output_len: int = 256
    seed: int = 42
    name: str = "prefix"

    def __post_init__(self) -> None:
        _check_positive(
            num_prefixes=self.num_prefixes,
            prefix_len=self.prefix_len,
            suffixes_per_prefix=self.suffixes_per_prefix,
            suffix_len=self.suffix_len,
            output_len=self.output_len,
        )

    @property
    def num_prompts(self) -> int:
        return self.num_prefixes * self.suffixes_per_prefix

    def length_limit(self) -> tuple[int, str] | None:
        return _fixed_lengths(self.prefix_len + self.suffix_len, self.output_len)

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        rng = random.Random(self.seed)
        out = []
        for group in range(self.num_prefixes):
            prefix, _ = exact_text(tokenizer, random.Random(f"{self.seed}:prefix:{group}"), self.prefix_len)
            count = self.suffixes_per_prefix
            out += _under_prefix(tokenizer, rng, prefix, self.prefix_len, self.suffix_len, count, self.output_len)
        rng.shuffle(out)
        return out


def _under_prefix(
    tokenizer: Tokenizer, rng: random.Random, prefix: str, prefix_len: int, suffix_len: int, count: int, output_len: int
) -> list[Prompt]:
    """``count`` prompts: ``prefix`` and a distinct random suffix of ``suffix_len`` tokens each."""
    out = []
    for _ in range(count):
        text, actual = exact_text(tokenizer, rng, suffix_len, prefix=prefix + " ")
        out.append(Prompt(text, prefix_len + actual, output_len))
    return out
