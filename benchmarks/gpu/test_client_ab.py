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

import psutil
import pytest

import pytest_vllm_serve

from pytest_vllm_serve.schedule import Schedule
from pytest_vllm_serve.workloads import RandomWorkload

PROMPTS = int(os.environ.get("AB_PROMPTS", "512"))  # fewer to try the part on a CPU
NAMES = ("vllm:iteration_tokens_total_count", "vllm:iteration_tokens_total_sum", "vllm:generation_tokens_total",
         "vllm:prompt_tokens_total", "vllm:request_success_total")


def counters(server) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict = {}
    for family in text_string_to_metric_families(server.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name in NAMES:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    root = psutil.Process(int(os.environ["SERVER_PID"]))
    cpu = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            cpu[f"{proc.pid}:{proc.name()}"] = times.user + times.system
        except psutil.Error:
            continue
    found["cpu"] = cpu
    return found


def save(name: str, before: dict, after: dict) -> None:
    delta = {key: after[key] - before.get(key, 0.0) for key in after if key != "cpu"}
    delta["cpu"] = {key: round(after["cpu"][key] - before["cpu"].get(key, 0.0), 3) for key in after["cpu"]}
    delta["client_package"] = str(Path(pytest_vllm_serve.__file__).parent)  # which tree measured
    out = Path(os.environ["AB_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"server-{name}.json").write_text(json.dumps(delta, indent=1))


@pytest.mark.benchmark
def test_ab_point(vllm_bench, vllm_server):
    name = os.environ["AB_NAME"]
    before = counters(vllm_server)
    vllm_bench.settings = replace(vllm_bench.settings, processes=int(os.environ.get("AB_PROCESSES", "1")),
                                  token_ids=False)
    vllm_bench.run(RandomWorkload(512, 128, PROMPTS, seed=42), Schedule(rate=math.inf, max_concurrency=64, seed=42),
                   suite="ab", params={"name": name})
    save(name, before, counters(vllm_server))


@pytest.mark.benchmark
def test_ab_peer(vllm_server):
    from test_h200 import run_peer

    name = os.environ["AB_NAME"]
    before = counters(vllm_server)
    run_peer(vllm_server, "gap", 64, PROMPTS, Path(os.environ["AB_OUT"]), os.environ["PEER_TOKENIZER"], name=name)
    save(name, before, counters(vllm_server))
