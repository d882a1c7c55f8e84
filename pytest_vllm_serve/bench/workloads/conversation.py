"""Multi-turn conversations: N sessions of T turns, each turn sent with the whole history so far.

A session's turn k is its k-th user message; the load generator sends it with every earlier
user message and the server's answers to them, waits for the answer, waits ``think_time``
seconds, then sends the next turn (``bench/loadgen/conversations.py``). Sessions start at the
point's arrival schedule. The turns are synthetic (``turn_len`` tokens of seeded text each) or
the human turns of a ShareGPT-style file's multi-turn conversations, whose assistant turns'
lengths become the turns' output lengths (unless ``output_len`` is given).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.workloads.base import Workload, _check_positive, exact_text
from pytest_vllm_serve.bench.workloads.sharegpt import read_conversations
from pytest_vllm_serve.bench.workloads.tokenizers import Tokenizer
from pytest_vllm_serve.errors import ConfigError


@dataclass(frozen=True)
class Turn:
    """One user message of a session and the answer length it asks for."""

    text: str
    tokens: int
    output_len: int


@dataclass(frozen=True)
class Conversation:
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class ConversationWorkload(Workload):
    """``sessions`` conversations of ``turns`` turns: synthetic turns of ``turn_len`` tokens
    asking ``output_len``, or the multi-turn conversations of ``dataset_path``."""

    sessions: int = 16
    turns: int = 4
    turn_len: int = 64
    output_len: int | None = 64  # None with a dataset: each assistant turn's own length
    think_time: float = 0.0  # seconds between an answer and the next turn
    seed: int = 42
    dataset_path: Path | None = None
    name: str = "conversation"

    def __post_init__(self) -> None:
        _check_positive(sessions=self.sessions, turns=self.turns, turn_len=self.turn_len)
        if self.output_len is not None:
            _check_positive(output_len=self.output_len)
        elif self.dataset_path is None:
            raise ConfigError("a synthetic conversation workload needs output_len")
        if not self.think_time >= 0:
            raise ConfigError(f"think_time must be 0 or more seconds, got {self.think_time!r}")
        if self.dataset_path is not None:
            self._dataset()  # a missing or malformed file fails here, before any load

    def _dataset(self) -> list[list[tuple[str, str]]]:
        assert self.dataset_path is not None
        found = [c for c in read_conversations(Path(self.dataset_path)) if len(c) >= 2]
        if not found:
            raise ConfigError(
                f"--vllm-dataset-path {self.dataset_path} has no multi-turn conversation "
                "(two or more human turns, each answered)"
            )
        return found

    def length_limit(self) -> tuple[int, str] | None:
        if self.dataset_path is not None or self.output_len is None:
            return None
        total = self.turns * (self.turn_len + self.output_len)
        return total, f"{self.turns} turns of input {self.turn_len} + output {self.output_len}"

    def conversations(self, tokenizer: Tokenizer) -> list[Conversation]:
        """Each session's turns, seeded."""
        if self.dataset_path is None:
            rng = random.Random(self.seed)
            out = []
            for _ in range(self.sessions):
                turns = []
                for _ in range(self.turns):
                    text, tokens = exact_text(tokenizer, rng, self.turn_len)
                    turns.append(Turn(text, tokens, int(self.output_len or 0)))
                out.append(Conversation(tuple(turns)))
            return out
        chats = self._dataset()
        random.Random(self.seed).shuffle(chats)
        out = []
        for chat in chats[: self.sessions]:
            turns = []
            for human, answer in chat[: self.turns]:
                output = self.output_len or max(1, len(tokenizer.encode(answer)))
                turns.append(Turn(human, len(tokenizer.encode(human)), output))
            out.append(Conversation(tuple(turns)))
        return out

    def prompts(self, tokenizer: Tokenizer) -> list[Prompt]:
        """Each session's first turn (what the warmup sends, and what sizes the client)."""
        return [first_prompt(c) for c in self.conversations(tokenizer)]

    def params(self) -> dict[str, int | float | str]:
        out = {k: v for k, v in super().params().items() if k != "dataset_path"}
        if self.dataset_path is not None:
            out["dataset"] = Path(self.dataset_path).name
        return out


def has_multiturn(path: Path) -> bool:
    """Whether a ShareGPT-format file holds a conversation of two or more answered human turns."""
    return any(len(chat) >= 2 for chat in read_conversations(Path(path)))


def first_prompt(conversation: Conversation) -> Prompt:
    turn = conversation.turns[0]
    return Prompt(turn.text, turn.tokens, turn.output_len)


def synthetic_multiturn(num: int = 12, turns: int = 4, seed: int = 0) -> list[dict]:
    """A small ShareGPT-format dataset of multi-turn conversations, for tests and demos."""
    from pytest_vllm_serve.bench.workloads.base import _word_pool

    rng = random.Random(seed)
    pool = _word_pool()
    data = []
    for i in range(num):
        messages = []
        for _ in range(rng.randint(2, turns)):
            messages.append({"from": "human", "value": " ".join(rng.choice(pool) for _ in range(rng.randint(8, 40)))})
            messages.append({"from": "gpt", "value": " ".join(rng.choice(pool) for _ in range(rng.randint(8, 40)))})
        data.append({"id": f"multiturn-{i}", "conversations": messages})
    return data
