"""Static checks: an undefined name breaks only the code path that reaches it.

Fault-handling paths run rarely (a server dying mid-point), so a name lost in a
refactor would otherwise surface only in the slowest tests, or in a user's run.
"""

from __future__ import annotations

from pyflakes import api, messages
from pyflakes.reporter import Reporter

from tests.support import ROOT

FATAL = (messages.UndefinedName, messages.UndefinedExport, messages.UndefinedLocal)


class Collect(Reporter):
    def __init__(self) -> None:
        self.found: list[str] = []

    def unexpectedError(self, filename, msg):
        self.found.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        if isinstance(message, FATAL):
            self.found.append(str(message))


def test_no_undefined_names_in_the_package_tests_or_benchmarks():
    reporter = Collect()
    for folder in ("pytest_vllm_serve", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            api.checkPath(str(path), reporter)
    assert not reporter.found, "\n".join(reporter.found)
