"""Part h: the plugin's client as it was and as it is, on one server started by hand.

Each pytest run measures one point (concurrency 64, 512 prompts of 512 in / 128 out, no token
ids) against ``--vllm-url``, with whichever pytest_vllm_serve is first on PYTHONPATH: that is
how run_ab.sh puts an older checkout of the client beside this one. ``test_ab_peer`` measures the
same point with ``vllm bench serve``. Around every run the server's /metrics counters and the CPU
seconds of its process tree (``SERVER_PID``) are written to ``AB_OUT/server-AB_NAME.json``.

Only APIs that both versions have are used here.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
from test_h200 import counter_delta, run_peer, server_counters

import pytest_vllm_serve
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

PROMPTS = int(os.environ.get("AB_PROMPTS", "512"))  # fewer to try the part on a CPU


def counters(server) -> dict:
    return server_counters(server, int(os.environ["SERVER_PID"]))


def save(name: str, before: dict, after: dict) -> None:
    delta = counter_delta(before, after)
    delta["client_package"] = str(Path(pytest_vllm_serve.__file__).parent)  # which tree measured
    out = Path(os.environ["AB_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"server-{name}.json").write_text(json.dumps(delta, indent=1))


@pytest.mark.benchmark
def test_ab_point(vllm_bench, vllm_server):
    name = os.environ["AB_NAME"]
    before = counters(vllm_server)
    vllm_bench.settings = replace(
        vllm_bench.settings, processes=int(os.environ.get("AB_PROCESSES", "1")), token_ids=False
    )
    vllm_bench.run(
        RandomWorkload(512, 128, PROMPTS, seed=42),
        Schedule(rate=math.inf, max_concurrency=64, seed=42),
        suite="ab",
        params={"name": name},
    )
    save(name, before, counters(vllm_server))


@pytest.mark.benchmark
def test_ab_peer(vllm_server):
    name = os.environ["AB_NAME"]
    before = counters(vllm_server)
    run_peer(vllm_server, "gap", 64, PROMPTS, Path(os.environ["AB_OUT"]), os.environ["PEER_TOKENIZER"], name=name)
    save(name, before, counters(vllm_server))
