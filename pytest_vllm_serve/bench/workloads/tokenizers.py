"""Tokenizers that size prompts: the server's own (``/tokenize``), or a local ``tokenizer.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

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
