"""Workloads: the prompts a benchmark point sends. All seeded.

* ``RandomWorkload``: prompts of an exact token length, counted with the
  server's own ``/tokenize`` (or a local tokenizer from ``--vllm-tokenizer``).
* ``ShareGPTWorkload``: conversations from a local ShareGPT-format JSON file
  (``--vllm-dataset-path``), sampled as ``vllm bench serve`` does. Nothing is
  downloaded.
* ``SonnetWorkload``: one shared prefix plus a varying suffix per prompt, to
  exercise prefix caching.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.errors import ConfigError


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass
class ServerTokenizer:
    """The server's own tokenizer through vLLM's ``/tokenize`` and ``/detokenize``."""

    client: httpx.Client
    model: str

    def encode(self, text: str) -> list[int]:
        response = self.client.post(
            "/tokenize", json={"model": self.model, "prompt": text, "add_special_tokens": False}
        )
        response.raise_for_status()
        return list(response.json()["tokens"])

    def decode(self, ids: list[int]) -> str:
        response = self.client.post("/detokenize", json={"model": self.model, "tokens": ids})
        response.raise_for_status()
        return response.json()["prompt"]


@dataclass
class LocalTokenizer:
    """A local ``tokenizer.json`` (a file, or a model directory holding one)."""

    path: Path

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        file = self.path / "tokenizer.json" if self.path.is_dir() else self.path
        if not file.exists():
            raise ConfigError(
                f"--vllm-tokenizer {self.path}: no tokenizer.json there.\n"
                "  fix: give a tokenizer.json file or a model directory that holds one"
            )
        self._tok = HFTokenizer.from_file(str(file))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


def server_tokenizer(client: httpx.Client, model: str) -> ServerTokenizer:
    """The server's tokenizer, or a clear error if it has no /tokenize."""
    try:
        response = client.post("/tokenize", json={"model": model, "prompt": "probe"})
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the server's /tokenize: {exc}") from None
    if response.status_code != 200 or "tokens" not in response.text:
        raise ConfigError(
            f"the server has no usable /tokenize endpoint (answered {response.status_code}), so prompts of an "
            "exact token length cannot be made with its tokenizer.\n"
            "  fix: pass --vllm-tokenizer PATH (a tokenizer.json or a model directory with the same tokenizer)"
        )
    return ServerTokenizer(client, model)


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
        out = []
        for _ in range(self.num_prompts):
            text, suffix_len = exact_text(tokenizer, rng, self.input_len - self.prefix_len, prefix=prefix + " ")
            out.append(Prompt(text, self.prefix_len + suffix_len, self.output_len))
        return out


@dataclass(frozen=True)
class ShareGPTWorkload(Workload):
    """Conversations from a ShareGPT JSON file: the first human turn is the prompt, the
    first reply's length is the output length (unless ``output_len`` fixes it).

    Like ``vllm bench serve``: shuffled with the seed; prompts or replies under 4
    tokens are skipped, and so are pairs longer than ``max_input_len``/``max_total_len``.
    """

    path: Path
    num_prompts: int = 100
    seed: int = 42
    output_len: int | None = None
    max_input_len: int = 1024
    max_total_len: int = 2048
    name: str = "sharegpt"

    def __post_init__(self) -> None:
        _check_positive(num_prompts=self.num_prompts)
        if self.output_len is not None:
            _check_positive(output_len=self.output_len)
        self.conversations()  # a missing or malformed file fails here, before any load

    def conversations(self) -> list[tuple[str, str]]:
        return _read_sharegpt(Path(self.path))

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        pairs = self.conversations()
        random.Random(self.seed).shuffle(pairs)
        out: list[Prompt] = []
        for prompt, reply in pairs:
            if len(out) == self.num_prompts:
                break
            prompt_len = len(tokenizer.encode(prompt))
            output_len = self.output_len or len(tokenizer.encode(reply))
            if prompt_len < 4 or output_len < 4:
                continue
            if prompt_len > self.max_input_len or prompt_len + output_len > self.max_total_len:
                continue
            out.append(Prompt(prompt, prompt_len, output_len))
        if not out:
            raise ConfigError(
                f"--vllm-dataset-path {self.path}: no conversation fits (prompt and reply of at least 4 tokens, "
                f"prompt <= {self.max_input_len}, total <= {self.max_total_len})"
            )
        return out


def _read_sharegpt(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        raise ConfigError(
            f"--vllm-dataset-path {path} does not exist.\n"
            '  fix: give a local ShareGPT-format JSON file (a list of {"conversations": [{"from", "value"}, ...]}); '
            "nothing is downloaded"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--vllm-dataset-path {path} is not readable JSON: {exc}") from None
    if not isinstance(data, list):
        raise ConfigError(
            f"--vllm-dataset-path {path}: expected a JSON list of conversations, got {type(data).__name__}"
        )
    pairs = []
    for entry in data:
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, second = turns[0], turns[1]
        if isinstance(first, dict) and isinstance(second, dict) and "value" in first and "value" in second:
            pairs.append((str(first["value"]), str(second["value"])))
    if not pairs:
        raise ConfigError(
            f"--vllm-dataset-path {path} holds no ShareGPT conversations "
            '(entries with a \'conversations\' list of at least two {"from", "value"} turns)'
        )
    return pairs


def synthetic_sharegpt(num: int = 40, seed: int = 0) -> list[dict]:
    """A small ShareGPT-format dataset made from the package corpus, for tests and demos.

    It has the real format (``conversations`` with ``human``/``gpt`` turns) and varied
    lengths; its text is word salad, so it says nothing about real conversations.
    """
    rng = random.Random(seed)
    pool = _word_pool()
    data = []
    for i in range(num):
        human = " ".join(rng.choice(pool) for _ in range(rng.randint(8, 120)))
        gpt = " ".join(rng.choice(pool) for _ in range(rng.randint(8, 200)))
        data.append(
            {
                "id": f"synthetic-{i}",
                "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
            }
        )
    return data
