"""Part n: repeats on the GPU. One point measured N times by the plugin (--vllm-repeats, its
medians and 95 % intervals), and N times by `vllm bench serve` against the same server, so the
spread and the intervals of both clients sit side by side. Run through run_repeats.sh.

REP_POINT picks the point: ``inf`` (rate inf, no cap: every request at once) or ``c64``
(rate inf, at most 64 in flight); REP_PROMPTS the prompts (default 320); 512 in / 128 out.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

HERE = Path(__file__).resolve().parent
POINT = os.environ.get("REP_POINT", "inf")
PROMPTS = int(os.environ.get("REP_PROMPTS", "320"))
CAP = None if POINT == "inf" else int(POINT.removeprefix("c"))
RUNS = int(os.environ.get("REP_PEER_RUNS", "5"))


@pytest.mark.benchmark
def test_rep_point(vllm_bench):
    vllm_bench.run(
        RandomWorkload(512, 128, PROMPTS, seed=42),
        Schedule(rate=math.inf, max_concurrency=CAP, seed=42),
        suite="rep",
        params={"point": POINT},
    )


@pytest.mark.parametrize("run", range(1, RUNS + 1), ids=lambda r: f"run={r}")
def test_rep_peer(vllm_server, run):
    out = Path(os.environ["REP_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        str(HERE.parent / "vllm_bench.py"),
        "bench",
        "serve",
        "--backend",
        "openai-chat",
        "--endpoint",
        "/v1/chat/completions",
        "--base-url",
        vllm_server.url,
        "--model",
        vllm_server.model,
        "--tokenizer",
        os.environ["PEER_TOKENIZER"],
        "--dataset-name",
        "random",
        "--random-input-len",
        "512",
        "--random-output-len",
        "128",
        "--num-prompts",
        str(PROMPTS),
        "--ignore-eos",
        "--seed",
        "42",
        "--num-warmups",
        "2",
        "--request-rate",
        "inf",
        *(["--max-concurrency", str(CAP)] if CAP else []),
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--save-result",
        "--result-dir",
        str(out),
        "--result-filename",
        f"peer-{POINT}-{run}.json",
        "--disable-tqdm",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True)
    (out / f"peer-{POINT}-{run}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
