"""Bad input that only a launched vLLM server reveals: a crash during startup, and a KV cache
too small for one request. Each fails within seconds, naming the problem and the fix (the
bad input caught before launch is in tests/unit/test_errors.py).
"""

from __future__ import annotations

from tests.support.inner_runs import USES_SERVER, output, run_timed


def test_server_crash_during_startup_shows_the_log_tail(pytester, inner_args, procs):
    pytester.makepyfile(
        USES_SERVER
        + """
def test_second_user_of_the_same_spec(vllm_server):
    pass
"""
    )
    result, seconds = run_timed(pytester, *inner_args, "--vllm-serve-args=--no-such-flag 7")
    result.assert_outcomes(errors=2)
    text = output(result)
    assert "the vLLM server died during startup: process" in text
    assert "exited with code" in text
    assert "last " in text and "lines of" in text
    assert "--no-such-flag" in text  # vLLM's own complaint, quoted from the log
    assert "already failed earlier in the session; not retrying" in text
    assert seconds < 60


def test_startup_memory_failure_names_its_root_cause(pytester, inner_args, procs):
    """The CPU twin of a GPU startup OOM: a KV cache too small for one request at the max length.

    The KV cache is given a fixed 4 MiB, so the failure does not depend on the machine's RAM
    (a share of RAM by --gpu-memory-utilization fits on a machine with more of it).
    """
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(
        pytester,
        *inner_args,
        "--vllm-serve-args=--kv-cache-memory-bytes 4194304 --max-model-len 32768",
        timeout=300,
    )
    result.assert_outcomes(errors=1)
    text = output(result)
    assert "  cause: out of memory for the KV cache: one request" in text, text[-3000:]
    assert "--kv-cache-memory-bytes where it is set" in text, text[-3000:]
    evidence = next(line for line in text.splitlines() if "from its log:" in line)
    assert "KV cache is needed, which is larger" in evidence and "See root cause above" not in evidence
    assert seconds < 120
