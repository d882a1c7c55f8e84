"""Security without a server: secrets stay out of a generated sbatch script, a key in the
serve args is refused unechoed, and secret flags are masked (loopback, and secrets never
written by a real run: tests/integration/vllm/test_security_against_servers.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.inner_runs import results_dir
from tests.support.leaks import API_KEY, HF_TOKEN, sinks_of


def test_generated_sbatch_script_has_no_secrets(pytester, tmp_path):
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.vllm(env={"HF_TOKEN": os.environ["T_HF"]}, args=["--hf-token", os.environ["T_HF"]])
        def test_x(vllm_server):
            pass
        """
    )
    env = {**os.environ, "VLLM_API_KEY": API_KEY, "T_HF": HF_TOKEN}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--vllm-slurm-dry-run",
            f"--vllm-results-dir={tmp_path}",
        ],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "#SBATCH" in done.stdout or "sbatch" in done.stdout
    scripts = [p for p in tmp_path.rglob("*") if p.is_file()]
    for text in [done.stdout, done.stderr, *(p.read_text(errors="replace") for p in scripts)]:
        assert API_KEY not in text and HF_TOKEN not in text
    # The --hf-token value reaches the server through the job's environment, not the script.
    assert '--hf-token "${PVS_SECRET_ARG_1}"' in done.stdout, done.stdout[-3000:]
    assert "--hf-token ***" in done.stdout  # the spec, as the dry run titles it


def test_a_key_in_the_serve_args_is_refused_and_never_echoed(pytester, inner_args, procs):
    pytester.makepyfile("def test_x(vllm_server):\n    pass\n")
    junit = pytester.path / "junit.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *inner_args,
        "-rA",
        f"--junitxml={junit}",
        f"--vllm-serve-args=--max-num-seqs 4 --api-key={API_KEY}",
    ]
    done = subprocess.run(argv, cwd=pytester.path, capture_output=True, text=True, timeout=300)
    assert "--api-key is set by the plugin and cannot go in the serve args" in done.stdout, done.stdout[-3000:]
    assert "args=--max-num-seqs 4 --api-key=***" in done.stdout  # "[vllm] starting ServerSpec(...)"
    for name, text in sinks_of(done, junit, results_dir(inner_args)).items():
        assert API_KEY not in text, f"the key was written to {name}"
    assert not procs.alive()


def test_secret_flags_are_masked_by_word_and_value_shape():
    from pytest_vllm_serve.redact import redact_argv

    argv = [
        "--hf-token",
        "abc",
        "--api-key=xyz",
        "--db-password",
        "p",
        "--tokenizer",
        "tok",
        "--max-num-batched-tokens",
        "8",
        "--ssl-keyfile",
        "k.pem",
        "--foo",
        API_KEY,
        "--hf-token",
        "--enforce-eager",
    ]
    assert redact_argv(argv) == [
        "--hf-token",
        "***",
        "--api-key=***",
        "--db-password",
        "***",
        "--tokenizer",
        "tok",
        "--max-num-batched-tokens",
        "8",
        "--ssl-keyfile",
        "k.pem",
        "--foo",
        "***",
        "--hf-token",
        "--enforce-eager",
    ]
