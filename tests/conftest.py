"""The project's own tests (tests/unit, tests/integration) need the test extra; the suites do not.

Without the extra (``pip install -e .`` alone), ``pytest -m smoke`` still runs the
smoke suite, and tests/unit and tests/integration are left out of the collection, which
the report header and the summary say, naming what is missing and the fix.

Where a test lives says what it needs, and its markers say the same (pyproject.toml declares
them): ``unit`` for tests/unit (no service), ``integration`` for tests/integration, plus
``docker``, ``slurm`` or ``browser`` for tests/integration/docker, tests/integration/slurm and
tests/integration/browser (a headless Chromium).
The fixtures both kinds use are here; helpers are in tests/support.
"""

from __future__ import annotations

import importlib.metadata
import re
import uuid
from pathlib import Path

import pytest

from pytest_vllm_serve.serving.models import default_cache_dir
from tests.support.inner_runs import TAG_VAR, ProcessWatcher

TESTS = Path(__file__).resolve().parent
OWN_TESTS = ("unit", "integration")  # the folders that need the test extra
#: tests/integration/<folder> -> the marker beside ``integration``
SERVICE_MARKERS = {"docker": "docker", "slurm": "slurm", "browser": "browser"}


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
    f"tests/unit and tests/integration not collected: the test extra is not installed "
    f"(missing: {', '.join(MISSING)}); fix: pip install -e '.[test]'"
)
collect_ignore = list(OWN_TESTS) if MISSING else []


def pytest_report_header(config: pytest.Config) -> str | None:
    return NOTE if MISSING else None


def pytest_terminal_summary(terminalreporter) -> None:
    if MISSING:
        terminalreporter.write_line(f"WARNING: {NOTE}", yellow=True, bold=True)


def folder_markers(path: Path) -> list[str]:
    """The markers a test file gets from where it lives under tests/."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return []
    if len(parts) < 2:
        return []
    if parts[0] == "unit":
        return ["unit"]
    if parts[0] == "integration":
        return ["integration"] + ([SERVICE_MARKERS[parts[1]]] if parts[1] in SERVICE_MARKERS else [])
    return []


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    by_file: dict[Path, list[str]] = {}
    for item in items:
        if item.path not in by_file:
            by_file[item.path] = folder_markers(item.path)
        for name in by_file[item.path]:
            item.add_marker(name)


# -- fixtures of tests/unit and tests/integration ------------------------------------------------


@pytest.fixture
def procs(monkeypatch):
    """Watches every process that inner runs started from this test (see tests/support/inner_runs.py)."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VAR, value)
    with ProcessWatcher(value) as watcher:
        yield watcher
        watcher.kill_all()  # never leak into the rest of the suite, even when a test fails


@pytest.fixture
def inner_args(tmp_path, vllm_session):
    """Arguments every inner run gets: its own results dir and the session's model cache."""
    # pytester gives inner runs their own HOME, so name the model cache, or each would rebuild it.
    cache = vllm_session.settings.cache_dir or default_cache_dir()
    return ["-p", "no:cacheprovider", f"--vllm-results-dir={tmp_path / 'results'}", f"--vllm-cache-dir={cache}"]
