"""ShareGPT conversations from a local JSON file, sampled as ``vllm bench serve`` does."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.workloads.base import Workload, _check_positive, _word_pool
from pytest_vllm_serve.bench.workloads.tokenizers import Tokenizer
from pytest_vllm_serve.errors import ConfigError


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
    """Each conversation's first (prompt, reply) pair."""
    return [chat[0] for chat in read_conversations(path)]


def read_conversations(path: Path) -> list[list[tuple[str, str]]]:
    """Every conversation of a ShareGPT-format file as its (human, reply) pairs in order: turns
    taken two by two, up to the first that is not a ``{"from", "value"}`` pair."""
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
    chats = []
    for entry in data:
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list):
            continue
        pairs = []
        for first, second in zip(turns[0::2], turns[1::2]):
            if not (isinstance(first, dict) and isinstance(second, dict) and "value" in first and "value" in second):
                break
            pairs.append((str(first["value"]), str(second["value"])))
        if pairs:
            chats.append(pairs)
    if not chats:
        raise ConfigError(
            f"--vllm-dataset-path {path} holds no ShareGPT conversations "
            '(entries with a \'conversations\' list of at least two {"from", "value"} turns)'
        )
    return chats


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
