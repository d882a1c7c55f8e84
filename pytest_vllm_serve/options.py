"""Command-line options and ini keys, declared once, resolved into ``Settings``.

Precedence for every setting: marker (where it applies) > command line > ini
file > built-in default. Every option has help text (``pytest --help``).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from .errors import ConfigError


@dataclass(frozen=True)
class Opt:
    name: str  # without the leading dashes, e.g. "vllm-model"
    help: str
    default: Any = None
    metavar: str | None = None
    flag: bool = False  # store_true
    ini: bool = True  # also readable from [tool.pytest.ini_options]

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


OPTIONS: tuple[Opt, ...] = (
    # -- which server ------------------------------------------------------
    Opt("vllm-model", "Model to serve: a Hugging Face id or a local directory. Default: the built-in "
        "tiny model, generated locally (no download). Example: --vllm-model Qwen/Qwen2.5-7B-Instruct",
        metavar="NAME_OR_PATH"),
    Opt("vllm-url", "Attach to a running OpenAI-compatible server instead of launching one. "
        "Example: --vllm-url http://10.0.0.5:8000", metavar="URL"),
    Opt("vllm-api-key", "API key: passed to the launched server and sent with every request. "
        "Default: $VLLM_API_KEY. Never written to logs or reports.", metavar="KEY", ini=False),
    Opt("vllm-serve-args", "Extra arguments for `vllm serve`, as one shell-quoted string. "
        "Example: --vllm-serve-args \"--max-model-len 8192 --enable-prefix-caching\"", metavar="ARGS"),
    Opt("vllm-host", "Address launched servers bind to. Default 127.0.0.1 (loopback only); "
        "use 0.0.0.0 to expose them.", default="127.0.0.1", metavar="ADDR"),
    Opt("vllm-startup-timeout", "Seconds to wait for a launched server to become ready. Default 600.",
        default="600", metavar="SECONDS"),
    Opt("vllm-results-dir", "Where logs and results go; each session writes a timestamped folder "
        "inside it. Default: ./vllm-results", default="vllm-results", metavar="DIR"),
    Opt("vllm-cache-dir", "Cache for the built-in model. Default: $PYTEST_VLLM_SERVE_CACHE, else "
        "$XDG_CACHE_HOME/pytest-vllm-serve, else ~/.cache/pytest-vllm-serve", metavar="DIR"),
    # -- parallel layout (the vllm marker overrides these) -------------------------
    Opt("vllm-tp", "Tensor-parallel size. Example: --vllm-tp 8", metavar="N"),
    Opt("vllm-pp", "Pipeline-parallel size (selects the mp backend; no DP with PP).", metavar="N"),
    Opt("vllm-dp", "Data-parallel size, or 'auto' for visible GPUs / (TP x PP).", metavar="N|auto"),
    Opt("vllm-ep", "Enable expert parallelism (EP size = TP x DP, derived by vLLM).", flag=True),
    Opt("vllm-backend", "Distributed executor backend: mp or ray. Default: vLLM's choice "
        "(mp when PP > 1).", metavar="mp|ray"),
)

BY_DEST = {opt.dest: opt for opt in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vllm", "pytest-vllm-serve: vLLM servers as fixtures, smoke tests and benchmarks")
    for opt in OPTIONS:
        if opt.flag:
            group.addoption(f"--{opt.name}", action="store_true", default=None, dest=opt.dest, help=opt.help)
        else:
            group.addoption(f"--{opt.name}", action="store", default=None, dest=opt.dest,
                            metavar=opt.metavar, help=opt.help)
        if opt.ini:
            parser.addini(opt.dest, help=opt.help, type="bool" if opt.flag else "string", default=None)


def raw(config: pytest.Config, dest: str) -> Any:
    """A setting's value by precedence: command line > ini > default."""
    opt = BY_DEST[dest]
    value = config.getoption(dest, default=None)
    if value is None and opt.ini:
        ini_value = config.getini(dest)
        if ini_value not in (None, "", []):
            value = ini_value
    return opt.default if value is None else value


def _number(dest: str, value: Any, cast: Callable[[str], Any], positive: bool = True) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{BY_DEST[dest].name} must be a number, got {value!r}") from None
    if positive and number <= 0:
        raise ConfigError(f"--{BY_DEST[dest].name} must be positive, got {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    """The session's resolved options."""

    model: str | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    serve_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    startup_timeout: float = 600.0
    results_root: Path = Path("vllm-results")
    cache_dir: Path | None = None
    tp: str | None = None
    pp: str | None = None
    dp: str | None = None
    ep: bool | None = None
    backend: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        serve_args = raw(config, "vllm_serve_args") or ""
        try:
            args = tuple(shlex.split(serve_args))
        except ValueError as exc:
            raise ConfigError(f"--vllm-serve-args cannot be parsed as shell words: {exc}") from None
        cache = raw(config, "vllm_cache_dir")
        ep = raw(config, "vllm_ep")
        return cls(
            model=raw(config, "vllm_model"),
            url=raw(config, "vllm_url"),
            api_key=raw(config, "vllm_api_key") or os.environ.get("VLLM_API_KEY") or None,
            serve_args=args,
            host=raw(config, "vllm_host"),
            startup_timeout=_number("vllm_startup_timeout", raw(config, "vllm_startup_timeout"), float),
            results_root=Path(raw(config, "vllm_results_dir")),
            cache_dir=Path(cache) if cache else None,
            tp=raw(config, "vllm_tp"),
            pp=raw(config, "vllm_pp"),
            dp=raw(config, "vllm_dp"),
            ep=bool(ep) if ep is not None else None,
            backend=raw(config, "vllm_backend"),
        )
