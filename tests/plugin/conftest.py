"""Fixtures for the plugin's own tests (helpers live in helpers.py)."""

from __future__ import annotations

import uuid

import pytest

from pytest_vllm_serve.serving.models import default_cache_dir

from .helpers import TAG_VAR, ProcessWatcher


@pytest.fixture
def procs(monkeypatch):
    """Watches every process that inner runs started from this test (see helpers.py)."""
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
