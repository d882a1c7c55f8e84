"""The project's own tests (tests/plugin) need the test extra; the suites do not.

Without the extra (``pip install -e .`` alone), ``pytest -m smoke`` still runs the
smoke suite, and tests/plugin is left out of the collection, which the report
header and the summary say, naming what is missing and the fix.
"""

from __future__ import annotations

import importlib.metadata
import re

import pytest


def _missing_test_extra() -> list[str]:
    try:
        requires = importlib.metadata.requires("pytest-vllm-serve") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requires:
        if not re.search(r"""extra\s*==\s*["']test["']""", requirement):
            continue
        name = re.split(r"[\s<>=!~\[;(]", requirement, maxsplit=1)[0]
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


MISSING = _missing_test_extra()
NOTE = (
    f"tests/plugin not collected: the test extra is not installed (missing: {', '.join(MISSING)}); "
    "fix: pip install -e '.[test]'"
)
collect_ignore = ["plugin"] if MISSING else []


def pytest_report_header(config: pytest.Config) -> str | None:
    return NOTE if MISSING else None


def pytest_terminal_summary(terminalreporter) -> None:
    if MISSING:
        terminalreporter.write_line(f"WARNING: {NOTE}", yellow=True, bold=True)
