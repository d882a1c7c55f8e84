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


_CAUSE = re.compile(
    r"(error:|Error\b|Exception\b|out of memory|OOM|not supported|Unsupported|No such file|Permission denied)"
)


def likely_cause(lines: list[str]) -> str | None:
    """The last log line that looks like the reason a process died."""
    for line in reversed(lines):
        if _CAUSE.search(line):
            return line.strip()
    return None
