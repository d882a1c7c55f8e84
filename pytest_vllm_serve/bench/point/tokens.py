"""The point's tokenizer (``--vllm-tokenizer``, else the server's own /tokenize) and its token
count of a generated text, which survives the server's death."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pytest_vllm_serve.bench.workloads import LocalTokenizer, Tokenizer, server_tokenizer
from pytest_vllm_serve.serving.running import RunningServer


@dataclass
class PointTokens:
    server: RunningServer
    path: Path | None  # --vllm-tokenizer
    say: Callable[[str], None] | None = None
    _tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    _lost: bool = field(default=False, init=False, repr=False)

    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            if self.path is not None:
                self._tokenizer = LocalTokenizer(self.path)
            else:
                self._tokenizer = server_tokenizer(self.server.client, self.server.model)
        return self._tokenizer

    def count(self, text: str) -> int | None:
        """Tokens of a generated text without special tokens: how vLLM counts the output
        of a request whose stream had no usage.

        None once the server's /tokenize has failed (the server died during the point):
        those requests count their chunk tokens, so what was measured is still saved."""
        if self._lost:
            return None
        try:
            return len(self.tokenizer().encode(text))
        except httpx.HTTPError as exc:
            self._lost = True
            if self.say is not None:
                self.say(
                    f"[vllm-bench] the server's /tokenize failed ({type(exc).__name__}: {exc}); requests "
                    "without usage count their streamed chunks as output tokens"
                )
            return None
