"""A known startup cause reported through the plugin, from a vLLM server that fails to start
(the causes matched on saved logs are in tests/unit/test_known_causes.py)."""

from __future__ import annotations

from pytest_vllm_serve.serving.known_causes import KNOWN_CAUSES
from tests.support.inner_runs import USES_SERVER, output, run_timed

BY_NAME = {known.name: known for known in KNOWN_CAUSES}


def test_a_bad_serve_flag_reports_its_cause_and_fix_through_the_plugin(pytester, inner_args, procs):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-serve-args=--no-such-flag")
    result.assert_outcomes(errors=1)
    text = output(result)
    known = BY_NAME["unknown-argument"]
    assert f"  {known.one_line()}" in text.splitlines()
    assert "from its log: api_server.py: error: unrecognized arguments: --no-such-flag" in text
    assert text.index(known.one_line()) < text.index("lines of ")  # before the log tail
    assert seconds < 60
