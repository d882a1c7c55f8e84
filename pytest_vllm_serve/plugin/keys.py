"""The stash keys the plugin's modules share: the session, and per test its server and profiles."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.session import VllmSession

SESSION_KEY = pytest.StashKey[VllmSession]()
SERVER_KEY = pytest.StashKey[RunningServer]()
PROFILE_KEY = pytest.StashKey[list]()  # profiling artifacts of a test, for its report
REJOINED_KEY = pytest.StashKey[str | None]()  # the note on option values given back (cmdline.py)
