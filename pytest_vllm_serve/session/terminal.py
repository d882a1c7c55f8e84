"""Lines on pytest's terminal, also from inside a test's setup (past pytest's capture)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

Say = Callable[[str], None]


def write_line(config: pytest.Config, line: str) -> None:
    """One line on the terminal, if there is one. The reporter is looked up at each call: it
    is registered after this plugin's pytest_configure."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


def terminal_writer(config: pytest.Config) -> Say | None:
    """A function that writes one line to the terminal, or None when there is no terminal."""
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        return None
    return lambda line: write_line(config, line)
