"""Exception types. Every message names the problem and, where there is one, the fix."""

from __future__ import annotations

import re


class VllmServeError(Exception):
    """Base class for every error the plugin raises on purpose."""


class ConfigError(VllmServeError):
    """Bad input: an option, marker, spec or file that cannot work. Raised before launch."""


class ServerStartError(VllmServeError):
    """A server did not come up: it crashed, timed out, or is not an OpenAI server."""


class ServerDiedError(VllmServeError):
    """A server that was healthy has gone away while tests were using it."""


class ResultsWriteError(VllmServeError):
    """A measured result could not be written (disk full, permissions)."""


def format_log_tail(lines: list[str], source: str) -> str:
    """Render the last lines of a log for an error message."""
    if not lines:
        return f"(the log {source} is empty)"
    body = "\n".join("    " + line.rstrip("\n") for line in lines)
    return f"last {len(lines)} lines of {source}:\n{body}"


_EXCEPTION = re.compile(r"(?:^|\s)([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")
_CAUSE = re.compile(
    r"(error:|Error\b|Exception\b|out of memory|OOM|not supported|Unsupported|No such file|Permission denied)"
)
#: vLLM wraps an engine's failure in an error that only points back at it.
_WRAPPERS = ("See root cause above", "Engine core initialization failed")


def likely_cause(lines: list[str]) -> str | None:
    """The line of a log that best says why a process died.

    The root cause of a crash is usually the last exception line that is not
    one of vLLM's wrappers ("See root cause above"); failing that, the last line
    that looks like an error.
    """
    for line in reversed(lines):
        if _EXCEPTION.search(line) and not any(w in line for w in _WRAPPERS):
            return line.strip()
    for line in reversed(lines):
        if _CAUSE.search(line) and not any(w in line for w in _WRAPPERS):
            return line.strip()
    return None
